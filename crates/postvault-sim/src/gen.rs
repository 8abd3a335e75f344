//! Record generators: one function per stream unit (a mailpiece with its
//! scans, a web visit, a money order, a change of address ...). Each writes
//! its lines into a small per-stream buffer.

use std::collections::VecDeque;
use std::fmt::Write as _;

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::data::{self, City};
use crate::people::{Person, Population, Skew};
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

/// One draw of a percentage (0 to 99): the value of the first
/// `(bound, value)` whose bound is above it, else `rest`.
fn percent<T: Copy>(rng: &mut ChaCha8Rng, table: &[(i32, T)], rest: T) -> T {
    let r = rng.random_range(0..100);
    table
        .iter()
        .find(|(bound, _)| r < *bound)
        .map_or(rest, |&(_, v)| v)
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
    let routing = percent(rng, &[(85, 11), (90, 9), (98, 5)], 0);
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
    hex::encode(b)
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
        use base64::Engine as _;
        use sha2::Digest as _;
        rec.s("image_sha256", &hex::encode(sha2::Sha256::digest(&img)))
            .s(
                "image",
                &base64::engine::general_purpose::STANDARD.encode(&img),
            );
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
    let purpose = percent(
        rng,
        &[(85, "account_service"), (95, "security_operations")],
        "fraud_prevention",
    );
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
        let id_type = percent(
            rng,
            &[
                (70, "drivers_license"),
                (85, "state_id"),
                (93, "passport"),
                (96, "military_id"),
            ],
            "other",
        );
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
    let move_type = percent(rng, &[(55, "individual"), (96, "family")], "business");
    let permanent = chance(rng, 0.86);
    let effective = rng.random_range(0..=30i64);
    let channel = percent(rng, &[(44, "online"), (98, "hardcopy")], "phone");
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
    let event = percent(rng, &[(70, "open"), (90, "view")], "click");
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
    let class = percent(
        rng,
        &[
            (55, "first_class"),
            (80, "marketing"),
            (88, "priority"),
            (95, "package"),
        ],
        "periodical",
    );
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
