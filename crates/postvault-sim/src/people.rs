//! Who the records are about: the subject population (skewed draws of
//! subject ids) and each person's stable attributes (name, address, phone,
//! e-mail), derived from (seed, subject id) so that every stream agrees on
//! them without shared state.

use std::fmt::Write as _;

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::data::{self, City};
use crate::r#gen::{TAG_PERSON, TAG_POPULATION};
use crate::util::{self, Rec, mix};

// ---------------------------------------------------------------------------
// Subject population
// ---------------------------------------------------------------------------

/// How skewed a draw from the population is.
#[derive(Clone, Copy)]
pub(crate) enum Skew {
    /// Mail recipients: Zipf-like, exponent 0.7 (a few addresses, mostly
    /// businesses, receive a large share of the mail).
    Mail = 0,
    /// Online customers and other self-service activity: exponent 0.3.
    Customer = 1,
    /// Events that happen to anyone about equally (moves, court orders).
    Uniform = 2,
}

const SKEW_EXPONENT: [f64; 3] = [0.7, 0.3, 0.0];

/// The delivery-address population: ranks drawn from a bounded power law,
/// then scattered over subject ids by a bijective affine map so that heavy
/// subjects are not simply the first ids.
#[derive(Debug, Clone)]
pub(crate) struct Population {
    n: u64,
    a: u64,
    b: u64,
    /// (n + 1)^(1 - s) per skew.
    pw: [f64; 3],
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Population {
    pub(crate) fn new(seed: u64, n: u64) -> Population {
        let n = n.max(1);
        let mut a = (mix(seed, TAG_POPULATION, 1) % n) | 1;
        let mut tries = 0;
        while gcd(a, n) != 1 && tries < 10_000 {
            a = (a + 2) % n;
            tries += 1;
        }
        if gcd(a, n) != 1 {
            a = 1;
        }
        let b = mix(seed, TAG_POPULATION, 2) % n;
        let nf = n as f64 + 1.0;
        let pw = SKEW_EXPONENT.map(|s| nf.powf(1.0 - s));
        Population { n, a, b, pw }
    }

    /// Subject id (1..=n) of rank `r` (0-based).
    fn id_of_rank(&self, r: u64) -> u64 {
        let v = (u128::from(self.a) * u128::from(r) + u128::from(self.b)) % u128::from(self.n);
        v as u64 + 1
    }

    /// A subject id for a uniform variate `u` in [0, 1).
    pub(crate) fn sample(&self, u: f64, skew: Skew) -> u64 {
        if self.n <= 1 {
            return 1;
        }
        let i = skew as usize;
        let s = SKEW_EXPONENT[i];
        let x = if s == 0.0 {
            u * self.n as f64
        } else {
            let e = 1.0 - s;
            ((self.pw[i] - 1.0) * u + 1.0).powf(1.0 / e) - 1.0
        };
        // `as` saturates and maps NaN to 0.
        let r = (x as u64).min(self.n - 1);
        self.id_of_rank(r)
    }

    pub(crate) fn draw(&self, rng: &mut ChaCha8Rng, skew: Skew) -> u64 {
        self.sample(rng.random::<f64>(), skew)
    }

    /// A uniform subject id from a hash.
    pub(crate) fn id_from_hash(&self, h: u64) -> u64 {
        self.id_of_rank(h % self.n)
    }
}

// ---------------------------------------------------------------------------
// People: stable per-subject attributes derived from (seed, subject id)
// ---------------------------------------------------------------------------

pub(crate) struct Person {
    pub first: &'static str,
    pub last: &'static str,
    pub city: &'static City,
    zip2: u64,
    plus4: u64,
    dp: u64,
    house: u64,
    street: &'static str,
    suffix: &'static str,
    unit: Option<(&'static str, u64)>,
    /// Age in days (18 to 90 years).
    pub age_days: i64,
    phone7: u64,
    email_n: u64,
    email_domain: &'static str,
    pub lat_off: f64,
    pub lon_off: f64,
}

fn pick<T: Copy>(list: &[T], h: u64) -> T {
    list[(h % list.len() as u64) as usize]
}

impl Person {
    /// The person (household) at subject id `id`.
    pub(crate) fn of(seed: u64, id: u64) -> Person {
        let mut g = util::SplitMix(mix(seed, TAG_PERSON, id));
        Person::from_gen(&mut g)
    }

    /// A person not tied to a subject (a payee, a new address ...).
    pub(crate) fn random(rng: &mut ChaCha8Rng) -> Person {
        let mut g = util::SplitMix(rng.next_u64());
        Person::from_gen(&mut g)
    }

    fn from_gen(g: &mut util::SplitMix) -> Person {
        let city = &data::CITIES[(g.next() % data::CITIES.len() as u64) as usize];
        let unit = if g.below(10) < 3 {
            Some((pick(data::UNIT_KINDS, g.next()), 1 + g.below(450)))
        } else {
            None
        };
        Person {
            first: pick(data::FIRST_NAMES, g.next()),
            last: pick(data::LAST_NAMES, g.next()),
            city,
            zip2: 1 + g.below(98),
            plus4: 1 + g.below(9998),
            dp: g.below(100),
            house: 1 + g.below(9899),
            street: pick(data::STREETS, g.next()),
            suffix: pick(data::SUFFIXES, g.next()),
            unit,
            age_days: 18 * 365 + g.below(72 * 365) as i64,
            phone7: 2_000_000 + g.below(8_000_000),
            email_n: g.below(1000),
            email_domain: pick(data::EMAIL_DOMAINS, g.next()),
            lat_off: (g.below(24_001) as f64 - 12_000.0) / 100_000.0,
            lon_off: (g.below(30_001) as f64 - 15_000.0) / 100_000.0,
        }
    }

    pub(crate) fn name(&self) -> String {
        format!("{} {}", self.first, self.last)
    }

    pub(crate) fn zip5(&self) -> String {
        format!("{}{:02}", self.city.zip3, self.zip2)
    }

    pub(crate) fn zip9(&self) -> String {
        format!("{}{:02}-{:04}", self.city.zip3, self.zip2, self.plus4)
    }

    /// The 11-digit delivery point routing code (ZIP + 4 + delivery point).
    pub(crate) fn routing(&self, digits: usize) -> String {
        let full = format!(
            "{}{:02}{:04}{:02}",
            self.city.zip3, self.zip2, self.plus4, self.dp
        );
        full.chars().take(digits).collect()
    }

    pub(crate) fn street_line(&self) -> String {
        format!("{} {} {}", self.house, self.street, self.suffix)
    }

    pub(crate) fn unit_line(&self) -> Option<String> {
        self.unit.map(|(k, n)| format!("{k} {n}"))
    }

    /// "123 Oak St Apt 4, Boise, ID 83701-1234"
    pub(crate) fn one_line(&self) -> String {
        let mut s = self.street_line();
        if let Some(u) = self.unit_line() {
            s.push(' ');
            s.push_str(&u);
        }
        let _ = write!(
            s,
            ", {}, {} {}",
            self.city.name,
            self.city.state,
            self.zip9()
        );
        s
    }

    pub(crate) fn email(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase()
        };
        format!(
            "{}.{}{}@{}",
            clean(self.first),
            clean(self.last),
            self.email_n,
            self.email_domain
        )
    }

    pub(crate) fn username(&self) -> String {
        let mut u: String = self.first.chars().take(1).collect();
        u.extend(self.last.chars().filter(char::is_ascii_alphanumeric));
        let _ = write!(u, "{}", self.email_n);
        u.to_ascii_lowercase()
    }

    pub(crate) fn phone(&self) -> String {
        format!("+1{}{}", self.city.area, self.phone7)
    }

    /// Writes this person's address as an `address` record's fields.
    pub(crate) fn address_fields(&self, rec: &mut Rec) {
        rec.s("street", &self.street_line());
        if let Some(u) = self.unit_line() {
            rec.s("unit", &u);
        }
        rec.s("city", self.city.name)
            .s("state", self.city.state)
            .s("zip", &self.zip9());
    }
}
