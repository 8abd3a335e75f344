//! Record generators: one function per stream unit (a mailpiece with its
//! scans, a web visit, a money order, a change of address ...). Each writes
//! its lines into a small per-stream buffer.

use std::collections::VecDeque;
use std::fmt::Write as _;

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::data::{self, City};
use crate::util::{self, Day, Rec, mix, perm16};

/// Tags for stateless hashes (never change: they fix the output).
pub(crate) const TAG_PERSON: u64 = 0x5045_5253_4f4e; // "PERSON"
pub(crate) const TAG_LETTER_BLOCK: u64 = 0x4c45_5454; // "LETT"
pub(crate) const TAG_PACKAGE_BLOCK: u64 = 0x5041_434b; // "PACK"
pub(crate) const TAG_POPULATION: u64 = 0x0050_4f50; // "POP"
pub(crate) const TAG_COVER: u64 = 0x0043_4f56_4552; // "COVER"

/// Scan events per letter, shuffled in blocks of 16 letters (mean 6.0).
pub(crate) const LETTER_TEMPLATE: [u8; 16] = [4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8];
/// Scan events per package and whether its delivery scan has a GPS point,
/// shuffled in blocks of 16 packages (mean 9.0 events, 15 of 16 with GPS:
/// the sixteenth stands for an older scanner without GPS).
pub(crate) const PACKAGE_TEMPLATE: [(u8, bool); 16] = [
    (6, true),
    (7, true),
    (7, true),
    (8, true),
    (8, true),
    (8, true),
    (9, true),
    (9, false),
    (9, true),
    (9, true),
    (10, true),
    (10, true),
    (10, true),
    (11, true),
    (11, true),
    (12, true),
];

/// Events of letter number `j` (0-based among letters and flats).
pub(crate) fn letter_events(seed: u64, j: u64) -> u8 {
    let p = perm16(seed, TAG_LETTER_BLOCK, j / 16);
    LETTER_TEMPLATE[usize::from(p[(j % 16) as usize])]
}

/// Events and GPS flag of package number `k`.
pub(crate) fn package_shape(seed: u64, k: u64) -> (u8, bool) {
    let p = perm16(seed, TAG_PACKAGE_BLOCK, k / 16);
    PACKAGE_TEMPLATE[usize::from(p[(k % 16) as usize])]
}

/// Sum over the first `n` letters of their scan events, in O(1).
pub(crate) fn letters_total_events(seed: u64, n: u64) -> u64 {
    let per_block: u64 = LETTER_TEMPLATE.iter().map(|&e| u64::from(e)).sum();
    let full = n / 16;
    let rest = n % 16;
    let p = perm16(seed, TAG_LETTER_BLOCK, full);
    let partial: u64 = p[..rest as usize]
        .iter()
        .map(|&i| u64::from(LETTER_TEMPLATE[usize::from(i)]))
        .sum();
    full.saturating_mul(per_block).saturating_add(partial)
}

/// (scan events, GPS delivery points) over the first `n` packages, in O(1).
pub(crate) fn packages_totals(seed: u64, n: u64) -> (u64, u64) {
    let ev_block: u64 = PACKAGE_TEMPLATE.iter().map(|&(e, _)| u64::from(e)).sum();
    let gps_block = PACKAGE_TEMPLATE.iter().filter(|&&(_, g)| g).count() as u64;
    let full = n / 16;
    let rest = n % 16;
    let p = perm16(seed, TAG_PACKAGE_BLOCK, full);
    let (mut ev, mut gps) = (0u64, 0u64);
    for &i in &p[..rest as usize] {
        let (e, g) = PACKAGE_TEMPLATE[usize::from(i)];
        ev += u64::from(e);
        gps += u64::from(g);
    }
    (
        full.saturating_mul(ev_block).saturating_add(ev),
        full.saturating_mul(gps_block).saturating_add(gps),
    )
}

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
    fn routing(&self, digits: usize) -> String {
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
    fn address_fields(&self, rec: &mut Rec) {
        rec.s("street", &self.street_line());
        if let Some(u) = self.unit_line() {
            rec.s("unit", &u);
        }
        rec.s("city", self.city.name)
            .s("state", self.city.state)
            .s("zip", &self.zip9());
    }
}

// ---------------------------------------------------------------------------
// Shared context and small samplers
// ---------------------------------------------------------------------------

/// Everything a generator needs besides its own RNG.
pub(crate) struct Ctx {
    pub seed: u64,
    pub day: Day,
    pub pop: Population,
    pub pieces: u64,
    pub packages: u64,
    pub cover_orders: u64,
    /// Approximate size of generated envelope images; 0 = no image bytes.
    pub image_bytes: usize,
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    rng.random::<f64>() < p
}

fn choose<T: Copy>(rng: &mut ChaCha8Rng, list: &[T]) -> T {
    list[rng.random_range(0..list.len())]
}

/// A second of the day following the web traffic curve.
fn diurnal_second(rng: &mut ChaCha8Rng) -> u32 {
    let total: u32 = data::DIURNAL.iter().sum();
    let mut x = rng.random_range(0..total);
    let mut hour = 0u32;
    for (h, &w) in data::DIURNAL.iter().enumerate() {
        if x < w {
            hour = h as u32;
            break;
        }
        x -= w;
    }
    hour * 3600 + rng.random_range(0..3600)
}

fn random_city(rng: &mut ChaCha8Rng) -> &'static City {
    &data::CITIES[rng.random_range(0..data::CITIES.len())]
}

/// A processing plant ZIP of a city (its three-digit prefix and "99").
fn plant_zip(city: &City) -> String {
    format!("{}99", city.zip3)
}

fn digits(rng: &mut ChaCha8Rng, out: &mut String, n: usize) {
    util::push_digits(out, n, || rng.next_u64());
}

/// An Intelligent Mail barcode of 20, 25, 29 or 31 digits for a recipient.
fn imb(rng: &mut ChaCha8Rng, to: &Person) -> String {
    let mut s = String::with_capacity(31);
    let _ = write!(
        s,
        "0{}",
        if chance(rng, 0.8) {
            0
        } else {
            rng.random_range(1..5)
        }
    );
    s.push_str(choose(rng, data::STIDS));
    if chance(rng, 0.7) {
        let _ = write!(s, "{}", rng.random_range(0..9));
        digits(rng, &mut s, 5);
        digits(rng, &mut s, 9);
    } else {
        s.push('9');
        digits(rng, &mut s, 8);
        digits(rng, &mut s, 6);
    }
    let r = rng.random_range(0..100);
    let routing = if r < 85 {
        11
    } else if r < 90 {
        9
    } else if r < 98 {
        5
    } else {
        0
    };
    s.push_str(&to.routing(routing));
    s
}

/// A 22-digit USPS tracking number with its mod-10 check digit.
fn tracking_number(rng: &mut ChaCha8Rng) -> String {
    let mut s = String::with_capacity(22);
    s.push_str(choose(rng, data::TRACKING_PREFIXES));
    digits(rng, &mut s, 17);
    let c = util::usps_mod10(&s);
    let _ = write!(s, "{c}");
    s
}

fn hex_random(rng: &mut ChaCha8Rng, nbytes: usize) -> String {
    let mut b = vec![0u8; nbytes];
    rng.fill_bytes(&mut b);
    let mut s = String::with_capacity(nbytes * 2);
    util::push_hex(&mut s, &b);
    s
}

// ---------------------------------------------------------------------------
// Mailpieces: scan events, envelope images, delivery GPS points
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Fac {
    /// The origin plant.
    Origin,
    /// The origin post office (acceptance).
    OriginUnit,
    /// A network distribution centre.
    Hub,
    /// The destination plant.
    Dest,
    /// The recipient's delivery unit.
    Unit,
}

/// A letter's full path; 0, 1 and 5 always happen, the others are optional.
const LETTER_STEPS: [(&str, &str, Fac); 8] = [
    ("accepted", "015", Fac::Origin),  // cancellation and imaging
    ("processed", "891", Fac::Origin), // outgoing primary
    ("processed", "892", Fac::Origin), // outgoing secondary
    ("departed", "894", Fac::Origin),  // dispatch
    ("arrived", "911", Fac::Dest),     // incoming primary
    ("processed", "918", Fac::Dest),   // DPS first pass
    ("processed", "919", Fac::Dest),   // DPS second pass
    ("out_for_delivery", "971", Fac::Unit),
];
const LETTER_REQUIRED: [usize; 3] = [0, 1, 5];
const LETTER_OPTIONAL: [usize; 5] = [2, 3, 4, 6, 7];

/// A package's full path; 0, 2, 9, 10 and 11 always happen.
const PACKAGE_STEPS: [(&str, &str, Fac); 12] = [
    ("accepted", "003", Fac::OriginUnit),
    ("arrived", "010", Fac::Origin),
    ("processed", "011", Fac::Origin),
    ("departed", "012", Fac::Origin),
    ("in_transit", "080", Fac::Hub),
    ("arrived", "081", Fac::Hub),
    ("processed", "082", Fac::Hub),
    ("departed", "083", Fac::Hub),
    ("arrived", "084", Fac::Dest),
    ("processed", "085", Fac::Dest),
    ("out_for_delivery", "007", Fac::Unit),
    ("delivered", "001", Fac::Unit),
];
const PACKAGE_REQUIRED: [usize; 5] = [0, 2, 9, 10, 11];
const PACKAGE_OPTIONAL: [usize; 7] = [1, 3, 4, 5, 6, 7, 8];

/// Which steps of a path happen: the required ones plus `n - required`
/// optional ones drawn at random; the caller walks them in path order.
fn choose_steps(
    rng: &mut ChaCha8Rng,
    required: &[usize],
    optional: &[usize],
    n: usize,
) -> [bool; 12] {
    let mut take = [false; 12];
    for &i in required {
        take[i] = true;
    }
    let mut opt = [0usize; 12];
    let m = optional.len().min(12);
    opt[..m].copy_from_slice(&optional[..m]);
    let extra = n.saturating_sub(required.len()).min(m);
    for k in 0..extra {
        let j = rng.random_range(k..m);
        opt.swap(k, j);
        take[opt[k]] = true;
    }
    take
}

/// Mailpiece number `i`: its scan events, then (letters and flats) one front
/// image right after the first scan, or (packages) one delivery point right
/// after the delivery scan.
pub(crate) fn piece(ctx: &Ctx, rng: &mut ChaCha8Rng, i: u64, out: &mut VecDeque<String>) {
    let n = u128::from(ctx.pieces.max(1));
    let p = u128::from(ctx.packages);
    let k = (u128::from(i) * p / n) as u64;
    let is_package = (u128::from(i) + 1) * p / n > u128::from(k);

    let subject = ctx.pop.draw(rng, Skew::Mail);
    let to = Person::of(ctx.seed, subject);
    let origin = random_city(rng);
    let origin_unit = format!("{}{:02}", origin.zip3, rng.random_range(1..99));
    let hub = choose(rng, data::NDC_ZIPS);

    let (kind, n_events, gps, steps): (&str, usize, bool, &[(&str, &str, Fac)]) = if is_package {
        let (e, g) = package_shape(ctx.seed, k);
        ("package", usize::from(e), g, &PACKAGE_STEPS)
    } else {
        let e = letter_events(ctx.seed, i - k);
        let kind = if chance(rng, 0.88) { "letter" } else { "flat" };
        (kind, usize::from(e), false, &LETTER_STEPS)
    };
    let take = if is_package {
        choose_steps(rng, &PACKAGE_REQUIRED, &PACKAGE_OPTIONAL, n_events)
    } else {
        choose_steps(rng, &LETTER_REQUIRED, &LETTER_OPTIONAL, n_events)
    };

    // Identifiers: letters and flats always carry an IMb; 15% of packages do,
    // the others are tracked by their IMpb tracking number only.
    let (imb_code, tracking) = if is_package {
        if chance(rng, 0.15) {
            (Some(imb(rng, &to)), None)
        } else {
            (None, Some(tracking_number(rng)))
        }
    } else {
        (Some(imb(rng, &to)), None)
    };

    // Scan times: in order, spread through the day.
    let (gap_lo, gap_hi) = if is_package {
        (15 * 60, 110 * 60)
    } else {
        (20 * 60, 150 * 60)
    };
    let mut gaps = [0u32; 12];
    for g in gaps.iter_mut().take(n_events.saturating_sub(1)) {
        *g = rng.random_range(gap_lo..=gap_hi);
    }
    let span: u32 = gaps.iter().sum();
    let mut t = if is_package {
        // Carriers deliver between 09:00 and 21:00: place the last scan
        // there (or as early as the path allows) and work back.
        let end = rng.random_range(span.max(9 * 3600)..=(21 * 3600).max(span));
        end - span
    } else {
        rng.random_range(0..=86_399u32.saturating_sub(span))
    };

    let dest_plant = plant_zip(to.city);
    let origin_plant = plant_zip(origin);
    let unit_zip = to.zip5();
    let mut gap_iter = gaps.into_iter();
    let mut first = true;
    for (idx, &(event, op, fac)) in steps.iter().enumerate() {
        if !take.get(idx).copied().unwrap_or(false) {
            continue;
        }
        if !first {
            t += gap_iter.next().unwrap_or(0);
        }
        first = false;
        let facility = match fac {
            Fac::Origin => origin_plant.as_str(),
            Fac::OriginUnit => origin_unit.as_str(),
            Fac::Hub => hub,
            Fac::Dest => dest_plant.as_str(),
            Fac::Unit => unit_zip.as_str(),
        };
        let mut rec = Rec::new(subject, "scan_event", "delivery");
        if let Some(code) = &imb_code {
            rec.s("imb", code);
        }
        if let Some(tn) = &tracking {
            rec.s("tracking_number", tn);
        }
        rec.s("piece", kind)
            .s("facility_zip", facility)
            .s("op_code", op)
            .s("event", event)
            .datetime("scanned_at", ctx.day, t);
        out.push_back(rec.finish(None));

        if let (false, "accepted", Some(code)) = (is_package, event, &imb_code) {
            out.push_back(mail_image(ctx, rng, subject, code, facility, t));
        }
        if event == "delivered" && gps {
            let mut rec = Rec::new(subject, "delivery_location", "delivery");
            let jitter = |rng: &mut ChaCha8Rng| (rng.random::<f64>() - 0.5) * 0.0002;
            let lat = (to.city.lat + to.lat_off + jitter(rng)).clamp(-90.0, 90.0);
            let lon = (to.city.lon + to.lon_off + jitter(rng)).clamp(-180.0, 180.0);
            let id = tracking.as_deref().or(imb_code.as_deref()).unwrap_or("");
            rec.s("tracking_number", id)
                .coord("lat", lat)
                .coord("lon", lon)
                .datetime("delivered_at", ctx.day, t);
            out.push_back(rec.finish(None));
        }
    }
}

/// The front image of a letter, captured at cancellation. Metadata only,
/// unless the simulator was asked for image bytes.
fn mail_image(
    ctx: &Ctx,
    rng: &mut ChaCha8Rng,
    subject: u64,
    imb_code: &str,
    facility: &str,
    t: u32,
) -> String {
    // Informed Delivery subscribers (~20% of households) get the image for
    // their digest; the rest is kept for sorting only.
    let purpose = if chance(rng, 0.2) {
        "informed_delivery"
    } else {
        "delivery"
    };
    let mut rec = Rec::new(subject, "mail_image", purpose);
    rec.s("imb", imb_code)
        .s("side", "front")
        .datetime("captured_at", ctx.day, t)
        .s("facility_zip", facility)
        .int("width", rng.random_range(1850..=1950))
        .int("height", rng.random_range(800..=850));
    if ctx.image_bytes > 0 {
        let target = ctx.image_bytes as f64 * (IMAGE_SIGMA * standard_normal(rng)).exp();
        let len = (target as usize).clamp(64, 1_048_576);
        let mut img = vec![0u8; len];
        rng.fill_bytes(&mut img);
        const SOI: [u8; 11] = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
        ];
        img[..SOI.len()].copy_from_slice(&SOI);
        img[len - 2] = 0xFF;
        img[len - 1] = 0xD9;
        let mut h = String::with_capacity(64);
        util::push_hex(&mut h, &util::sha256(&img));
        rec.s("image_sha256", &h).s("image", &util::base64(&img));
    } else {
        rec.s("image_sha256", &hex_random(rng, 32));
    }
    rec.finish(None)
}

/// Spread of envelope image sizes (the log's standard deviation).
const IMAGE_SIGMA: f64 = 0.5;

/// A standard normal deviate (Box-Muller).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

// ---------------------------------------------------------------------------
// Web visits
// ---------------------------------------------------------------------------

const IPV4_FIRST_OCTETS: &[u8] = &[
    24, 47, 50, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 96, 97, 98, 99, 104, 107,
    108, 136, 162, 166, 173, 174, 184, 199, 204, 208, 209,
];
const IPV6_PREFIXES: &[u16] = &[0x2600, 0x2601, 0x2603, 0x2605, 0x2607, 0x2804, 0x2a00];

fn ip(rng: &mut ChaCha8Rng) -> String {
    if chance(rng, 0.88) {
        format!(
            "{}.{}.{}.{}",
            choose(rng, IPV4_FIRST_OCTETS),
            rng.random_range(0..=255),
            rng.random_range(0..=255),
            rng.random_range(1..=254)
        )
    } else {
        let mut s = format!("{:x}", choose(rng, IPV6_PREFIXES));
        for _ in 0..7 {
            let _ = write!(s, ":{:x}", rng.random::<u16>());
        }
        s
    }
}

/// One usps.com visit: logged for the account service, and a share in the
/// security log and for change-of-address fraud checks.
pub(crate) fn web_visit(ctx: &Ctx, rng: &mut ChaCha8Rng, out: &mut VecDeque<String>) {
    let subject = ctx.pop.draw(rng, Skew::Customer);
    let r = rng.random_range(0..100);
    let purpose = if r < 85 {
        "account_service"
    } else if r < 95 {
        "security_operations"
    } else {
        "fraud_prevention"
    };
    let mut rec = Rec::new(subject, "online_activity", purpose);
    rec.datetime("ts", ctx.day, diurnal_second(rng))
        .s("ip", &ip(rng))
        .s("user_agent", choose(rng, data::USER_AGENTS))
        .s("path", choose(rng, data::PATHS));
    if purpose != "fraud_prevention" && chance(rng, 0.55) {
        rec.s("referrer", choose(rng, data::REFERRERS));
    }
    if purpose != "account_service" && chance(rng, 0.85) {
        rec.f("device_id", format_args!("dev-{}", hex_random(rng, 12)));
    }
    out.push_back(rec.finish(None));
}

// ---------------------------------------------------------------------------
// Money orders
// ---------------------------------------------------------------------------

/// One domestic money order, kept under the Bank Secrecy Act record rule.
/// About 4% carry the purchaser identification of a BSA record.
pub(crate) fn money_order(ctx: &Ctx, rng: &mut ChaCha8Rng, out: &mut VecDeque<String>) {
    let subject = ctx.pop.draw(rng, Skew::Customer);
    let who = Person::of(ctx.seed, subject);
    let mut serial = String::with_capacity(11);
    digits(rng, &mut serial, 10);
    let check = serial.bytes().map(|b| u32::from(b - b'0')).sum::<u32>() % 9;
    let _ = write!(serial, "{check}");

    // Amounts: rent-sized orders near the $1,000 cap, and smaller payments.
    let cents: u64 = if chance(rng, 0.4) {
        rng.random_range(500..=1000) * 100
    } else {
        let x = (rng.random::<f64>() * 2.0 - 1.0) * 1.6;
        let dollars = (150.0 * x.exp()).clamp(1.0, 1000.0);
        let whole = dollars as u64 * 100;
        if chance(rng, 0.6) {
            whole
        } else {
            (whole + rng.random_range(0..100)).min(100_000)
        }
    };
    let fee = if cents <= 50_000 { 255 } else { 360 };
    let office = random_city(rng);
    let payee = Person::random(rng);
    let mut rec = Rec::new(subject, "money_order", "aml_compliance");
    rec.s("serial", &serial)
        .money("amount", cents)
        .money("fee", fee)
        .date("issue_date", ctx.day, 0)
        .f(
            "issuing_office",
            format_args!("{}{:02}", office.zip3, rng.random_range(1..99)),
        );
    if chance(rng, 0.5) {
        rec.s("pay_to_name", choose(rng, data::PAYEES));
    } else {
        rec.s("pay_to_name", &payee.name());
    }
    rec.s("pay_to_address", &payee.one_line())
        .s("from_name", &who.name())
        .s("from_address", &who.one_line());
    if chance(rng, 0.5) {
        rec.s("memo", choose(rng, data::MEMOS));
    }
    rec.s(
        "payment_method",
        if chance(rng, 0.7) {
            "cash"
        } else {
            "pin_debit"
        },
    );
    if chance(rng, 0.04) {
        let r = rng.random_range(0..100);
        let id_type = if r < 70 {
            "drivers_license"
        } else if r < 85 {
            "state_id"
        } else if r < 93 {
            "passport"
        } else if r < 96 {
            "military_id"
        } else {
            "other"
        };
        let mut idn = String::new();
        let _ = write!(idn, "{}", who.city.state);
        digits(rng, &mut idn, 9);
        let mut tin = String::with_capacity(9);
        digits(rng, &mut tin, 9);
        rec.date("purchaser_dob", ctx.day, -who.age_days)
            .s("id_type", id_type)
            .s("id_number", &idn)
            .s("tin", &tin)
            .s("occupation", choose(rng, data::OCCUPATIONS));
    }
    out.push_back(rec.finish(Some("31 CFR 1010.415")));
}

// ---------------------------------------------------------------------------
// Change of address, protective orders
// ---------------------------------------------------------------------------

/// One change-of-address order for forwarding, then the new address.
pub(crate) fn change_of_address(
    ctx: &Ctx,
    rng: &mut ChaCha8Rng,
    unit_index: u64,
    out: &mut VecDeque<String>,
) {
    let subject = ctx.pop.draw(rng, Skew::Uniform);
    let who = Person::of(ctx.seed, subject);
    let new = Person::random(rng);
    let r = rng.random_range(0..100);
    let move_type = if r < 55 {
        "individual"
    } else if r < 96 {
        "family"
    } else {
        "business"
    };
    let permanent = chance(rng, 0.86);
    let effective = rng.random_range(0..=30i64);
    let r = rng.random_range(0..100);
    let channel = if r < 44 {
        "online"
    } else if r < 98 {
        "hardcopy"
    } else {
        "phone"
    };
    let mut rec = Rec::new(subject, "change_of_address", "forwarding");
    rec.f(
        "coa_id",
        format_args!("COA-{}-{:08}", ctx.day.compact(), unit_index + 1),
    )
    .s("move_type", move_type)
    .s(
        "permanence",
        if permanent { "permanent" } else { "temporary" },
    )
    .date("filing_date", ctx.day, 0)
    .date("effective_date", ctx.day, effective);
    if !permanent {
        rec.date(
            "temp_end_date",
            ctx.day,
            effective + rng.random_range(15..=364),
        );
    }
    rec.s("channel", channel)
        .s("old_address", &who.one_line())
        .s("new_address", &new.one_line());
    out.push_back(rec.finish(None));

    let mut rec = Rec::new(subject, "address", "forwarding");
    new.address_fields(&mut rec);
    out.push_back(rec.finish(None));
}

/// A protective-order flag on file for forwarding (the new address must not
/// be disclosed).
pub(crate) fn protective_order(ctx: &Ctx, rng: &mut ChaCha8Rng, out: &mut VecDeque<String>) {
    let subject = ctx.pop.draw(rng, Skew::Uniform);
    let mut rec = Rec::new(subject, "protective_order", "forwarding");
    rec.bool("on_file", true)
        .date("issued_on", ctx.day, -rng.random_range(1..=1500i64))
        .date("expires_on", ctx.day, rng.random_range(30..=1800i64));
    out.push_back(rec.finish(None));
}

// ---------------------------------------------------------------------------
// Accounts, marketing consent, card payments, Informed Delivery
// ---------------------------------------------------------------------------

/// A usps.com registration: identity, then address.
pub(crate) fn registration(ctx: &Ctx, rng: &mut ChaCha8Rng, out: &mut VecDeque<String>) {
    let subject = ctx.pop.draw(rng, Skew::Customer);
    let who = Person::of(ctx.seed, subject);
    let mut rec = Rec::new(subject, "account_identity", "account_service");
    rec.s("name", &who.name()).s("email", &who.email());
    if chance(rng, 0.7) {
        rec.s("phone", &who.phone());
    }
    if chance(rng, 0.6) {
        rec.s("username", &who.username());
    }
    out.push_back(rec.finish(None));

    let mut rec = Rec::new(subject, "address", "account_service");
    who.address_fields(&mut rec);
    out.push_back(rec.finish(None));
}

/// An opt-in to marketing email: identity collected for marketing. The
/// consent itself is the person's act, recorded through the rights channel,
/// so the line carries none.
pub(crate) fn marketing(ctx: &Ctx, rng: &mut ChaCha8Rng, out: &mut VecDeque<String>) {
    let subject = ctx.pop.draw(rng, Skew::Customer);
    let who = Person::of(ctx.seed, subject);
    let mut rec = Rec::new(subject, "account_identity", "marketing");
    rec.s("name", &who.name()).s("email", &who.email());
    out.push_back(rec.finish(None));
}

/// A card payment (postage, Click-N-Ship, the online store). The full card
/// number goes in; the vault keeps only brand and last four.
pub(crate) fn card_payment(ctx: &Ctx, rng: &mut ChaCha8Rng, out: &mut VecDeque<String>) {
    let subject = ctx.pop.draw(rng, Skew::Customer);
    let who = Person::of(ctx.seed, subject);
    let (prefix, len) = choose(rng, data::CARD_BRANDS);
    let mut number = String::with_capacity(len);
    number.push_str(prefix);
    let body = len.saturating_sub(prefix.len() + 1);
    digits(rng, &mut number, body);
    let c = util::luhn_check_digit(&number);
    let _ = write!(number, "{c}");
    let yy = (ctx.day.year() % 100) + rng.random_range(1..=5);
    let cents = {
        let x = (rng.random::<f64>() * 2.0 - 1.0) * 1.8;
        ((12.0 * x.exp()).clamp(0.73, 2500.0) * 100.0) as u64
    };
    let mut rec = Rec::new(subject, "payment_card", "payment_processing");
    rec.s("card_number", &number)
        .f(
            "expiry",
            format_args!("{:02}/{:02}", rng.random_range(1..=12), yy % 100),
        )
        .s("cardholder_name", &who.name())
        .s("billing_zip", &who.zip5())
        .money("amount", cents)
        .datetime("paid_at", ctx.day, diurnal_second(rng));
    out.push_back(rec.finish(None));
}

/// An Informed Delivery digest open, image view or campaign click.
pub(crate) fn informed_delivery(ctx: &Ctx, rng: &mut ChaCha8Rng, out: &mut VecDeque<String>) {
    let subject = ctx.pop.draw(rng, Skew::Customer);
    let r = rng.random_range(0..100);
    let event = if r < 70 {
        "open"
    } else if r < 90 {
        "view"
    } else {
        "click"
    };
    let at = diurnal_second(rng);
    let mut rec = Rec::new(subject, "informed_delivery_engagement", "informed_delivery");
    if event == "click" || (event == "view" && chance(rng, 0.3)) {
        rec.f(
            "campaign_id",
            format_args!("idc-{}-{:06}", ctx.day.year(), rng.random_range(1..=80_322)),
        );
    }
    rec.s("event", event).datetime("at", ctx.day, at);
    // Digests go out in the morning; earlier events are on yesterday's.
    rec.date("digest_date", ctx.day, if at < 7 * 3600 { -1 } else { 0 });
    out.push_back(rec.finish(None));
}

// ---------------------------------------------------------------------------
// Mail covers
// ---------------------------------------------------------------------------

/// One item recorded under a mail-cover order (PS Form 2009). Each active
/// order has a fixed subject and number.
pub(crate) fn mail_cover_item(ctx: &Ctx, rng: &mut ChaCha8Rng, out: &mut VecDeque<String>) {
    let orders = ctx.cover_orders.max(1);
    let k = rng.random_range(0..orders);
    let base = mix(ctx.seed, TAG_COVER, 0) % 999_999;
    let number = 1 + (k.wrapping_mul(7919) % 999_999 + base) % 999_999;
    let order_id = format!("MC-{}-{:06}", ctx.day.year(), number);
    let subject = ctx.pop.id_from_hash(mix(ctx.seed, TAG_COVER, k + 1));
    let sender = Person::random(rng);
    let r = rng.random_range(0..100);
    let class = if r < 55 {
        "first_class"
    } else if r < 80 {
        "marketing"
    } else if r < 88 {
        "priority"
    } else if r < 95 {
        "package"
    } else {
        "periodical"
    };
    let mut rec = Rec::new(subject, "mail_cover_record", "mail_cover");
    rec.s("order_id", &order_id).date("recorded_on", ctx.day, 0);
    if chance(rng, 0.5) {
        rec.s("sender_as_shown", choose(rng, data::SENDERS));
    } else {
        rec.s("sender_as_shown", &sender.name());
    }
    rec.s("return_address", &sender.one_line())
        .f(
            "postmark_city",
            format_args!("{}, {}", sender.city.name, sender.city.state),
        )
        .date("postmark_date", ctx.day, -rng.random_range(1..=3i64))
        .s("mail_class", class);
    let basis = format!("39 CFR 233.3 order {order_id}");
    out.push_back(rec.finish(Some(&basis)));
}
