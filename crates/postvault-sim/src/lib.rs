//! Synthetic postal workload for postvault.
//!
//! Generates, deterministically and as a stream, the NDJSON collection lines
//! of a slice of one U.S. postal day: mailpiece scan events, envelope image
//! metadata, package delivery GPS points, usps.com visits, money orders,
//! changes of address, account registrations, card payments, Informed
//! Delivery engagement, protective-order flags, mail-cover items and
//! marketing opt-ins. Every line is one record for the vault to collect:
//!
//! ```text
//! {"subject":"cust-000000012345","category":"scan_event","purpose":"delivery","fields":{...}}
//! ```
//!
//! with `"legal_basis"` where the purpose needs one. Every line satisfies
//! the postal pack (`packs/postal/taxonomy.toml`): allowed purpose/category
//! pairs, required and purpose-bound fields, and the value rules of each
//! field type. Lines no collection can make acceptable on its own are
//! generated only when asked for: mail-cover items (they need an order in
//! force, and the inspection service's role to record them) and marketing opt-ins (they need the person's consent, which only
//! the rights channel records; [`Simulator::opt_ins`] names those people).
//!
//! Scale 1.0 is one postal day (reference §6.1): 318M mailpieces (7%
//! packages), 7M web visits, 209K money orders, 93K address changes and so
//! on, about 2.3 billion lines; [`Plan`] gives the exact per-category counts
//! for a configuration in O(1), and the output matches it exactly.
//!
//! Output is byte-identical for the same [`SimConfig`]: each stream of
//! records draws from its own ChaCha8 generator keyed by (seed, stream id),
//! and everything that must be known ahead (scan events per piece, which
//! packages carry a GPS point, per-subject names and addresses) comes from
//! stateless hashes of the seed. Memory stays bounded at any scale: streams
//! are interleaved in proportion to their size and each keeps at most one
//! mailpiece's lines buffered.

use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod data;
mod r#gen;
mod people;
mod reader;
mod util;

#[cfg(test)]
mod tests;

use r#gen::Ctx;
pub use reader::LinesReader;
use util::Day;

/// Daily volumes at scale 1.0 (one U.S. postal day). Sources are in the
/// reference, §6.1; rates marked [I] are design choices.
pub mod rates {
    /// Mailpieces delivered per day [V].
    pub const MAILPIECES: f64 = 318_000_000.0;
    /// Share of mailpieces that are packages, in percent [I].
    pub const PACKAGE_PERCENT: u64 = 7;
    /// usps.com visits per day [V].
    pub const WEB_VISITS: f64 = 7_000_000.0;
    /// Money orders per day [V].
    pub const MONEY_ORDERS: f64 = 209_000.0;
    /// Changes of address per day [V].
    pub const ADDRESS_CHANGES: f64 = 93_000.0;
    /// usps.com account registrations per day [I].
    pub const REGISTRATIONS: f64 = 50_000.0;
    /// Marketing opt-ins per day (identity collected with consent) [I].
    pub const MARKETING_OPT_INS: f64 = 2_500.0;
    /// Card payments per day (online postage, Click-N-Ship, store) [I].
    pub const CARD_PAYMENTS: f64 = 500_000.0;
    /// Informed Delivery opens, views and clicks per day [I] (about 16.6M
    /// digests a day in 2020, roughly 60% opened).
    pub const INFORMED_DELIVERY_EVENTS: f64 = 10_000_000.0;
    /// Protective-order flags recorded per day [I].
    pub const PROTECTIVE_ORDERS: f64 = 150.0;
    /// Items recorded under mail covers per day [I] (~6,700 covers a year,
    /// about 5 pieces each, over 30 days).
    pub const MAIL_COVER_ITEMS: f64 = 95.0;
    /// Mail-cover orders active on a day [I].
    pub const MAIL_COVER_ORDERS: f64 = 560.0;
    /// Delivery addresses (the subject population) [S].
    pub const DELIVERY_ADDRESSES: f64 = 163_000_000.0;
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Fraction of one U.S. postal day; 1.0 is the full day. Clamped to
    /// 0..=1e6 (NaN counts as 0).
    pub scale: f64,
    /// Seed of every random choice.
    pub seed: u64,
    /// (year, month, day) of the simulated day. Out-of-range values are
    /// clamped to a valid date (years 1900..=9899).
    pub day: (i32, u32, u32),
    /// Also generate items recorded under mail-cover orders (PS Form 2009).
    /// Off by default: a vault accepts them only while an approved order is
    /// in force for that person (R14), which a simulated day cannot bring,
    /// so the default day is one every line of which a vault accepts.
    pub mail_covers: bool,
    /// Also generate marketing opt-ins (identity collected for
    /// `marketing`). Off by default: a vault accepts them only for people
    /// whose consent to marketing the rights channel recorded
    /// (`postvault consent grant`), never from a collection line.
    pub marketing: bool,
}

impl Default for SimConfig {
    /// A "1/1000 nation" slice (reference §6.1) of 2026-11-02, seed 1.
    fn default() -> Self {
        SimConfig {
            scale: 0.001,
            seed: 1,
            day: (2026, 11, 2),
            mail_covers: false,
            marketing: false,
        }
    }
}

/// Scale below which categories with a nonzero rate may round to zero.
const MIN_SCALE_FOR_ALL: f64 = 0.00001;

fn clamp_scale(s: f64) -> f64 {
    if s.is_nan() { 0.0 } else { s.clamp(0.0, 1e6) }
}

/// `rate * scale`, rounded; at least 1 when the scale is at least 1e-5.
fn scaled(rate: f64, scale: f64) -> u64 {
    let v = (rate * scale).round();
    let v = if v.is_finite() && v > 0.0 {
        v as u64
    } else {
        0
    };
    if v == 0 && rate > 0.0 && scale >= MIN_SCALE_FOR_ALL {
        1
    } else {
        v
    }
}

/// Per-category record counts and the subject population of a config.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    scale: f64,
    seed: u64,
    day: (i32, u32, u32),
    subjects: u64,
    pieces: u64,
    packages: u64,
    scan_events: u64,
    delivery_locations: u64,
    web_visits: u64,
    money_orders: u64,
    address_changes: u64,
    registrations: u64,
    marketing_opt_ins: u64,
    card_payments: u64,
    informed_delivery_events: u64,
    protective_orders: u64,
    mail_cover_items: u64,
    mail_cover_orders: u64,
}

impl Plan {
    /// The exact plan of `cfg`, computed in constant time.
    pub fn new(cfg: &SimConfig) -> Plan {
        let scale = clamp_scale(cfg.scale);
        let (_, day) = Day::from_ymd(cfg.day.0, cfg.day.1, cfg.day.2);
        let pieces = scaled(rates::MAILPIECES, scale);
        let mut packages =
            ((u128::from(pieces) * u128::from(rates::PACKAGE_PERCENT) + 50) / 100) as u64;
        if packages == 0 && pieces >= 2 && scale >= MIN_SCALE_FOR_ALL {
            packages = 1;
        }
        let letters = pieces - packages;
        let letter_events = r#gen::letters_total_events(cfg.seed, letters);
        let (package_events, delivery_locations) = r#gen::packages_totals(cfg.seed, packages);
        Plan {
            scale,
            seed: cfg.seed,
            day,
            subjects: scaled(rates::DELIVERY_ADDRESSES, scale).max(1),
            pieces,
            packages,
            scan_events: letter_events.saturating_add(package_events),
            delivery_locations,
            web_visits: scaled(rates::WEB_VISITS, scale),
            money_orders: scaled(rates::MONEY_ORDERS, scale),
            address_changes: scaled(rates::ADDRESS_CHANGES, scale),
            registrations: scaled(rates::REGISTRATIONS, scale),
            marketing_opt_ins: if cfg.marketing {
                scaled(rates::MARKETING_OPT_INS, scale)
            } else {
                0
            },
            card_payments: scaled(rates::CARD_PAYMENTS, scale),
            informed_delivery_events: scaled(rates::INFORMED_DELIVERY_EVENTS, scale),
            protective_orders: scaled(rates::PROTECTIVE_ORDERS, scale),
            mail_cover_items: if cfg.mail_covers {
                scaled(rates::MAIL_COVER_ITEMS, scale)
            } else {
                0
            },
            mail_cover_orders: scaled(rates::MAIL_COVER_ORDERS, scale).max(1),
        }
    }

    /// Lines the simulator will produce.
    pub fn total_records(&self) -> u64 {
        self.counts()
            .iter()
            .map(|&(_, n)| n)
            .fold(0u64, u64::saturating_add)
    }

    /// Records per category, in the pack's category order. Categories no
    /// purpose can collect (`disclosure_accounting`) are not listed.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        vec![
            (
                "account_identity",
                self.registrations + self.marketing_opt_ins,
            ),
            ("address", self.address_changes + self.registrations),
            ("change_of_address", self.address_changes),
            ("payment_card", self.card_payments),
            ("money_order", self.money_orders),
            ("online_activity", self.web_visits),
            ("scan_event", self.scan_events),
            ("delivery_location", self.delivery_locations),
            ("mail_image", self.letters()),
            (
                "informed_delivery_engagement",
                self.informed_delivery_events,
            ),
            ("protective_order", self.protective_orders),
            ("mail_cover_record", self.mail_cover_items),
        ]
    }

    /// Records of one category (0 for an unknown one).
    pub fn count(&self, category: &str) -> u64 {
        self.counts()
            .into_iter()
            .find(|&(c, _)| c == category)
            .map_or(0, |(_, n)| n)
    }

    /// Size of the subject population (delivery addresses), ids
    /// `cust-000000000001` to `cust-<subjects>`.
    pub fn subjects(&self) -> u64 {
        self.subjects
    }

    /// Mailpieces (letters, flats and packages).
    pub fn pieces(&self) -> u64 {
        self.pieces
    }

    /// Packages among the mailpieces.
    pub fn packages(&self) -> u64 {
        self.packages
    }

    /// Letters and flats among the mailpieces (each imaged once).
    pub fn letters(&self) -> u64 {
        self.pieces - self.packages
    }

    /// Mail-cover orders active on the day.
    pub fn mail_cover_orders(&self) -> u64 {
        self.mail_cover_orders
    }

    /// The scale after clamping.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The simulated day after normalisation.
    pub fn day(&self) -> (i32, u32, u32) {
        self.day
    }
}

/// The record streams. Their ids key the random generators: never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mail = 1,
    Web = 2,
    MoneyOrder = 3,
    AddressChange = 4,
    Registration = 5,
    Card = 6,
    InformedDelivery = 7,
    ProtectiveOrder = 8,
    MailCover = 9,
    Marketing = 10,
}

struct Stream {
    kind: Kind,
    rng: ChaCha8Rng,
    units_total: u64,
    units_done: u64,
    lines_total: u64,
    lines_done: u64,
    buf: VecDeque<String>,
}

fn stream_rng(seed: u64, id: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&id.to_le_bytes());
    key[16..].copy_from_slice(b"postvault-sim/v1");
    ChaCha8Rng::from_seed(key)
}

/// The generator: an iterator of NDJSON lines (without trailing newline).
///
/// Streams are interleaved so that every prefix of the output holds each
/// stream in proportion to its size; within a mailpiece, scan events come in
/// time order.
pub struct Simulator {
    plan: Plan,
    ctx: Ctx,
    streams: Vec<Stream>,
    emitted: u64,
}

impl Simulator {
    /// A simulator of `cfg`, positioned before the first line.
    pub fn new(cfg: &SimConfig) -> Simulator {
        let plan = Plan::new(cfg);
        let (day, _) = Day::from_ymd(plan.day.0, plan.day.1, plan.day.2);
        let ctx = Ctx {
            seed: cfg.seed,
            day,
            pop: people::Population::new(cfg.seed, plan.subjects),
            pieces: plan.pieces,
            packages: plan.packages,
            cover_orders: plan.mail_cover_orders,
            image_bytes: 0,
        };
        let p = &plan;
        let specs: [(Kind, u64, u64); 10] = [
            (
                Kind::Mail,
                p.pieces,
                p.scan_events
                    .saturating_add(p.letters())
                    .saturating_add(p.delivery_locations),
            ),
            (Kind::Web, p.web_visits, p.web_visits),
            (Kind::MoneyOrder, p.money_orders, p.money_orders),
            (
                Kind::AddressChange,
                p.address_changes,
                p.address_changes.saturating_mul(2),
            ),
            (
                Kind::Registration,
                p.registrations,
                p.registrations.saturating_mul(2),
            ),
            (Kind::Card, p.card_payments, p.card_payments),
            (
                Kind::InformedDelivery,
                p.informed_delivery_events,
                p.informed_delivery_events,
            ),
            (
                Kind::ProtectiveOrder,
                p.protective_orders,
                p.protective_orders,
            ),
            (Kind::MailCover, p.mail_cover_items, p.mail_cover_items),
            (Kind::Marketing, p.marketing_opt_ins, p.marketing_opt_ins),
        ];
        let streams = specs
            .into_iter()
            .map(|(kind, units, lines)| Stream {
                kind,
                rng: stream_rng(cfg.seed, kind as u64),
                units_total: units,
                units_done: 0,
                lines_total: lines,
                lines_done: 0,
                buf: VecDeque::with_capacity(16),
            })
            .collect();
        Simulator {
            plan,
            ctx,
            streams,
            emitted: 0,
        }
    }

    /// The people of the marketing opt-ins of `cfg`, in the order their
    /// lines come (with repeats): whose consent to `marketing` the rights
    /// channel must record before those lines are collected. Empty unless
    /// `cfg.marketing`.
    pub fn opt_ins(cfg: &SimConfig) -> Vec<String> {
        let plan = Plan::new(cfg);
        let sim = Simulator::new(cfg);
        let mut rng = stream_rng(cfg.seed, Kind::Marketing as u64);
        let mut buf = VecDeque::new();
        let mut out = Vec::new();
        for _ in 0..plan.marketing_opt_ins {
            r#gen::marketing(&sim.ctx, &mut rng, &mut buf);
            for line in buf.drain(..) {
                if let Some(s) = line
                    .strip_prefix("{\"subject\":\"")
                    .and_then(|rest| rest.split('"').next())
                {
                    out.push(s.to_string());
                }
            }
        }
        out
    }

    /// Also generate envelope image bytes (`image`, base64), with
    /// `image_sha256` their real digest. Sizes are lognormal with median
    /// `median_bytes` (sigma 0.5: the middle 90% within 0.44x to 2.3x the
    /// median; at least 64 bytes, at most 1 MiB). 0 turns it off (the
    /// default: metadata only). Line counts do not change.
    pub fn with_images(mut self, median_bytes: usize) -> Simulator {
        self.ctx.image_bytes = median_bytes.min(1 << 20);
        self
    }

    /// The plan this simulator follows.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Lines produced so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Lines generated but not yet returned (bounded by one mailpiece).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.streams.iter().map(|s| s.buf.len()).sum()
    }

    /// The stream whose next line is most behind its share of the output.
    fn pick(&self) -> Option<usize> {
        let mut best: Option<(usize, u128, u128)> = None;
        for (i, s) in self.streams.iter().enumerate() {
            if s.buf.is_empty() && s.units_done >= s.units_total {
                continue;
            }
            let num = u128::from(s.lines_done) + 1;
            let den = u128::from(s.lines_total.max(1));
            let better = match best {
                None => true,
                Some((_, bn, bd)) => num * bd < bn * den,
            };
            if better {
                best = Some((i, num, den));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

impl Iterator for Simulator {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            let i = self.pick()?;
            let ctx = &self.ctx;
            let s = &mut self.streams[i];
            if s.buf.is_empty() {
                let unit = s.units_done;
                s.units_done += 1;
                let (rng, buf) = (&mut s.rng, &mut s.buf);
                match s.kind {
                    Kind::Mail => r#gen::piece(ctx, rng, unit, buf),
                    Kind::Web => r#gen::web_visit(ctx, rng, buf),
                    Kind::MoneyOrder => r#gen::money_order(ctx, rng, buf),
                    Kind::AddressChange => r#gen::change_of_address(ctx, rng, unit, buf),
                    Kind::Registration => r#gen::registration(ctx, rng, buf),
                    Kind::Card => r#gen::card_payment(ctx, rng, buf),
                    Kind::InformedDelivery => r#gen::informed_delivery(ctx, rng, buf),
                    Kind::ProtectiveOrder => r#gen::protective_order(ctx, rng, buf),
                    Kind::MailCover => r#gen::mail_cover_item(ctx, rng, buf),
                    Kind::Marketing => r#gen::marketing(ctx, rng, buf),
                }
            }
            if let Some(line) = s.buf.pop_front() {
                s.lines_done += 1;
                self.emitted += 1;
                return Some(line);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.plan.total_records().saturating_sub(self.emitted);
        let left = usize::try_from(left).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

/// Writes the whole simulation of `cfg` to `out` as NDJSON (one line per
/// record, each ending in `\n`), buffered. Calls `progress` with the number
/// of lines written so far every 10,000 lines, and once more at the end if
/// the total is not a multiple of 10,000. Returns the number of lines.
pub fn write_ndjson(
    cfg: &SimConfig,
    out: &mut impl Write,
    progress: &mut dyn FnMut(u64),
) -> io::Result<u64> {
    write_lines(Simulator::new(cfg), out, progress)
}

/// Writes the lines of `sim` as NDJSON to `out`, calling `progress` with the
/// count every 10,000 lines and at the end.
pub fn write_lines(
    sim: Simulator,
    out: impl Write,
    progress: &mut dyn FnMut(u64),
) -> io::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 16, out);
    let mut n = 0u64;
    for line in sim {
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
        n += 1;
        if n.is_multiple_of(10_000) {
            progress(n);
        }
    }
    if !n.is_multiple_of(10_000) {
        progress(n);
    }
    w.flush()?;
    Ok(n)
}
