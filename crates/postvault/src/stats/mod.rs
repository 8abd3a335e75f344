//! Aggregate statistics with differential privacy over the cells the pack
//! marks `A` (aggregate only).
//!
//! ```text
//! query: parse -> check against the pack (cell A, role, dimensions, epsilon cap)
//!        -> build the OpenDP measurement -> [spend the budget + one leaf, one
//!        durable transaction] -> scan the category person by person, decrypt in
//!        parallel, bound each person's contribution -> noise (OpenDP) -> answer
//! ```
//!
//! Architecture invariants kept here (ARCHITECTURE.md names the tests):
//! - a query the pack does not allow is refused with a code before any
//!   record is read, and spends nothing;
//! - a query is answered only after its budget is spent and its one leaf
//!   (purpose, category, dimensions, epsilon; no value) is durable, in the
//!   same transaction;
//! - each person adds at most `max_records` records to an answer, and at
//!   most `max_records_per_group` to any one group;
//! - a group key that is not public is released only through OpenDP's
//!   thresholded partition selection;
//! - memory grows with the number of groups, not of records: records come
//!   a page at a time, one person's together.

mod blocks;
mod release;

pub use blocks::BlocksBuilt;

use std::collections::{BTreeMap, HashMap};

use postvault_policy::stats::{self as pstats, Coarsen, Measure, Period, Plan, Query};
use postvault_store::{BudgetOutcome, BudgetSpend, RecordRow, SubjectRef};
use serde::{Deserialize, Serialize};

use postvault_time::format_day;

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::vault::{KeyCache, KeyOf, Principal, RecordKey, Vault};
use postvault_crypto::DataKey;
use std::sync::Arc;

pub use release::CONFIDENCE;

/// Records fetched per page of a scan.
const PAGE: usize = 8192;
/// People a page of a scan with blocks holds (their blocks and the rows
/// these do not cover).
const PAGE_PEOPLE: usize = 1024;
/// The most groups an answer over public keys may enumerate.
pub const MAX_GROUPS: usize = 100_000;
/// The longest query window, in days.
pub const MAX_WINDOW_DAYS: i64 = 366;
/// Separates the parts of a group key inside the vault.
const SEP: char = '\u{1f}';

/// A statistics query as sent (`postvault stats query`, `POST /v1/statistics`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StatsRequest {
    pub category: String,
    /// `"count"`, or `{"sum": FIELD, "bounds": [lo, hi]}`.
    pub measure: MeasureSpec,
    #[serde(default)]
    pub group_by: Vec<String>,
    /// RFC 3339 date (`2026-12-01`, UTC midnight) or date-time; inclusive.
    pub from: String,
    /// Exclusive.
    pub to: String,
    /// Above 0, at most 10 (the pack may cap it lower).
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0.0, maximum = 10.0))]
    pub epsilon: f64,
}

/// The measure of a query.
///
/// Deserialized from any string (so that a wrong name gets the message
/// below, not serde's "no variant matched"); its schema says exactly what
/// is accepted: the string `count`, or a sum with two bounds.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum MeasureSpec {
    /// `"count"`.
    Named(String),
    Sum {
        sum: String,
        /// `[lo, hi]`: each value is clamped to them.
        bounds: [i64; 2],
    },
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for MeasureSpec {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::KnownFormat;
        use utoipa::openapi::schema::{
            ArrayBuilder, ObjectBuilder, OneOfBuilder, SchemaFormat, SchemaType, Type,
        };
        let count = ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .enum_values(Some(["count"]))
            .description(Some("The number of records."));
        let bound = ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Integer))
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(-(1i64 << 40) as f64))
            .maximum(Some((1i64 << 40) as f64));
        let sum = ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .property(
                "sum",
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .description(Some("The numeric field summed.")),
            )
            .property(
                "bounds",
                ArrayBuilder::new()
                    .items(bound)
                    .min_items(Some(2))
                    .max_items(Some(2))
                    .description(Some("`[lo, hi]`, lo <= hi: each value is clamped to them.")),
            )
            .required("sum")
            .required("bounds");
        OneOfBuilder::new()
            .item(count)
            .item(sum)
            .description(Some(
                "`\"count\"`, or `{\"sum\": FIELD, \"bounds\": [lo, hi]}`.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for MeasureSpec {}

/// One released group.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsGroup {
    /// Dimension name to coarsened value.
    pub key: BTreeMap<String, String>,
    /// The noisy count or sum.
    pub value: i64,
}

/// The privacy parameters an answer spent.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrivacySpent {
    /// `pure` (epsilon-DP) or `approximate` ((epsilon, delta)-DP).
    pub definition: &'static str,
    /// OpenDP's `make_laplace` or `make_laplace_threshold` (discrete Laplace).
    pub mechanism: &'static str,
    pub epsilon: f64,
    pub delta: f64,
    /// The discrete Laplace scale.
    pub scale: f64,
    /// Keys not public are released only when their noisy count reaches it.
    pub threshold: Option<i64>,
    pub max_records: u32,
    pub max_records_per_group: u32,
}

/// How exact the released values are.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccuracyStatement {
    pub confidence: f64,
    /// With that confidence, each value is within this of the bounded
    /// exact value.
    pub plus_minus: f64,
    pub statement: String,
}

/// The principal's budget after the query.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BudgetView {
    pub purpose: String,
    pub period: String,
    pub limit: f64,
    pub spent: f64,
    pub remaining: f64,
}

/// The answer of a statistics query.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsAnswer {
    pub category: String,
    pub purpose: String,
    /// `count` or `sum`.
    pub measure: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub group_by: Vec<String>,
    pub from: String,
    pub to: String,
    pub groups: Vec<StatsGroup>,
    pub privacy: PrivacySpent,
    pub accuracy: AccuracyStatement,
    pub budget: BudgetView,
    /// The index of the query's leaf.
    pub log_index: u64,
    pub pack: String,
    /// For a purpose that needs the person's consent: that purpose; only
    /// the people whose consent to it stands are counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consented_only: Option<String>,
}

fn invalid(why: impl Into<String>) -> VaultError {
    VaultError::Invalid {
        what: "statistics query",
        why: why.into(),
    }
}

/// Unix milliseconds of an RFC 3339 date (UTC midnight) or date-time.
fn parse_instant(s: &str) -> Option<i64> {
    postvault_time::parse_rfc3339(s)
}

/// The UTC day number (days since 1970-01-01) holding `ms`.
fn utc_day(ms: i64) -> i64 {
    ms.div_euclid(postvault_time::DAY_MS)
}

/// The day number of the Monday starting the week of day number `day`.
fn monday(day: i64) -> i64 {
    postvault_time::week_start(day)
}

/// The ledger's name of the period holding `now`.
fn period_of(period: Period, now: i64) -> String {
    let d = utc_day(now);
    match period {
        Period::Day => format!("day:{}", format_day(d)),
        Period::Week => format!("week:{}", format_day(monday(d))),
        Period::Month => {
            let (y, m, _) = postvault_time::civil_from_days(d);
            format!("month:{y:04}-{m:02}")
        }
    }
}

fn parse_query(req: &StatsRequest) -> Result<Query, VaultError> {
    let measure = match &req.measure {
        MeasureSpec::Named(n) if n == "count" => Measure::Count,
        MeasureSpec::Named(n) => {
            return Err(invalid(format!(
                "measure `{n}` is not `count` or {{\"sum\": FIELD, \"bounds\": [lo, hi]}}"
            )));
        }
        MeasureSpec::Sum { sum, bounds } => {
            if bounds[0] > bounds[1]
                || bounds[0].unsigned_abs().max(bounds[1].unsigned_abs()) > 1 << 40
            {
                return Err(invalid(
                    "sum bounds are [lo, hi] with lo <= hi, each within 2^40",
                ));
            }
            Measure::Sum {
                field: sum.clone(),
                bounds: (bounds[0], bounds[1]),
            }
        }
    };
    let from_ms = parse_instant(&req.from)
        .ok_or_else(|| invalid("`from` is an RFC 3339 date or date-time"))?;
    let to_ms =
        parse_instant(&req.to).ok_or_else(|| invalid("`to` is an RFC 3339 date or date-time"))?;
    if to_ms <= from_ms || to_ms - from_ms > MAX_WINDOW_DAYS * 86_400_000 {
        return Err(invalid(format!(
            "the window [from, to) is not empty and at most {MAX_WINDOW_DAYS} days"
        )));
    }
    let epsilon = pstats::micro_epsilon(req.epsilon).ok_or_else(|| VaultError::Refused {
        code: "bad_epsilon",
        message: format!("epsilon is above 0 and at most {}", pstats::MAX_EPSILON),
    })?;
    Ok(Query {
        category: req.category.clone(),
        measure,
        group_by: req.group_by.clone(),
        from_ms,
        to_ms,
        epsilon,
    })
}

/// The public values of one dimension over the window.
fn public_values(
    tax: &postvault_policy::Taxonomy,
    plan: &Plan<'_>,
    d: &pstats::Dimension,
    q: &Query,
) -> Result<Vec<String>, VaultError> {
    let field = &tax.category(plan.category).fields[d.field];
    match d.coarsen {
        Coarsen::Value => match &field.kind {
            postvault_policy::FieldType::Enum(values) => Ok(values.clone()),
            _ => Err(invalid(format!("`{}` is not public", d.name))),
        },
        Coarsen::Day | Coarsen::Week => {
            let first = utc_day(q.from_ms);
            let last = utc_day(q.to_ms - 1);
            let (mut d0, step) = match d.coarsen {
                Coarsen::Week => (monday(first), 7),
                _ => (first, 1),
            };
            let mut out = Vec::new();
            while d0 <= last {
                out.push(format_day(d0));
                d0 += step;
            }
            Ok(out)
        }
        Coarsen::Zip3 => Err(invalid(format!("`{}` is not public", d.name))),
    }
}

/// The cross product of the public values of every dimension, as keys.
fn public_keys(
    tax: &postvault_policy::Taxonomy,
    plan: &Plan<'_>,
    q: &Query,
) -> Result<Vec<String>, VaultError> {
    let mut keys = vec![String::new()];
    for (i, d) in plan.dimensions.iter().enumerate() {
        let values = public_values(tax, plan, d, q)?;
        if keys.len().saturating_mul(values.len()) > MAX_GROUPS {
            return Err(VaultError::Refused {
                code: "too_many_groups",
                message: format!("the query would release more than {MAX_GROUPS} groups"),
            });
        }
        keys = keys
            .iter()
            .flat_map(|k| {
                values.iter().map(move |v| {
                    if i == 0 {
                        v.clone()
                    } else {
                        format!("{k}{SEP}{v}")
                    }
                })
            })
            .collect();
    }
    Ok(keys)
}

/// The fields of a query read from a record's payload, borrowed from it.
struct Needed<'p> {
    /// Field names, each once.
    names: Vec<&'p str>,
    /// Where the time field, each dimension's field and the summed field
    /// are in `names`.
    time: usize,
    dims: Vec<usize>,
    sum: Option<usize>,
}

impl<'p> Needed<'p> {
    fn of(tax: &'p postvault_policy::Taxonomy, plan: &Plan<'_>) -> Needed<'p> {
        let cat = tax.category(plan.category);
        let mut names: Vec<&'p str> = Vec::new();
        let mut at = |ix: usize| {
            let n = cat.fields[ix].name.as_str();
            match names.iter().position(|x| *x == n) {
                Some(i) => i,
                None => {
                    names.push(n);
                    names.len() - 1
                }
            }
        };
        let time = at(plan.stats.time_field);
        let dims = plan.dimensions.iter().map(|d| at(d.field)).collect();
        let sum = plan.sum.map(|(ix, _)| at(ix));
        Needed {
            names,
            time,
            dims,
            sum,
        }
    }
}

/// A payload's `fields`, only those a query needs, as raw JSON borrowed
/// from the plaintext: no map, no string copied, the rest skipped.
struct FieldsSeed<'n, 'p, 'v, 'de> {
    names: &'n [&'p str],
    out: &'v mut [Option<&'de serde_json::value::RawValue>],
}

impl<'de> serde::de::DeserializeSeed<'de> for FieldsSeed<'_, '_, '_, 'de> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldsSeed<'_, '_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a record's fields")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.names.iter().position(|n| *n == k) {
                Some(i) => self.out[i] = Some(m.next_value()?),
                None => {
                    m.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The payload around the fields: `{"fields": {...}, ...}`.
struct PayloadSeed<'n, 'p, 'v, 'de>(FieldsSeed<'n, 'p, 'v, 'de>);

impl<'de> serde::de::DeserializeSeed<'de> for PayloadSeed<'_, '_, '_, 'de> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PayloadSeed<'_, '_, '_, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a record payload")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<bool, A::Error> {
        let mut seed = Some(self.0);
        let mut found = false;
        while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            match (k.as_ref(), seed.take()) {
                ("fields", Some(f)) => {
                    m.next_value_seed(f)?;
                    found = true;
                }
                // Twice is not a payload (the full parse refuses it too).
                ("fields", None) => return Err(serde::de::Error::duplicate_field("fields")),
                (_, s) => {
                    seed = s;
                    m.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// The text of a raw JSON string, borrowed when it has no escape; `None`
/// for a value that is not a string, an error for a string that does not
/// decode (a lone surrogate escape).
fn raw_text(
    raw: &serde_json::value::RawValue,
) -> Result<Option<std::borrow::Cow<'_, str>>, serde_json::Error> {
    let s = raw.get();
    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Ok(Some(std::borrow::Cow::Borrowed(inner))),
        Some(_) => serde_json::from_str::<String>(s).map(|t| Some(std::borrow::Cow::Owned(t))),
        None => Ok(None),
    }
}

/// Turns decrypted payloads into group keys and values for one query.
struct Keyer<'p> {
    plan: &'p Plan<'p>,
    q: &'p Query,
    needed: Needed<'p>,
    /// Day numbers already formatted (the window holds at most 366).
    days: foldhash::HashMap<i64, String>,
    key: String,
}

impl<'p> Keyer<'p> {
    fn new(tax: &'p postvault_policy::Taxonomy, plan: &'p Plan<'p>, q: &'p Query) -> Keyer<'p> {
        let needed = Needed::of(tax, plan);
        Keyer {
            plan,
            q,
            needed,
            days: foldhash::HashMap::default(),
            key: String::new(),
        }
    }

    fn day(&mut self, day: i64) -> &str {
        self.days.entry(day).or_insert_with(|| format_day(day))
    }

    /// The group key and value `plain` adds, or `None` (outside the
    /// window, or a value no dimension can key); an error when it is not a
    /// record payload.
    fn contribution(&mut self, plain: &[u8]) -> Result<Option<(&str, i64)>, VaultError> {
        let corrupt = || {
            VaultError::Store(postvault_store::StoreError::Corrupt(
                "a sealed record does not hold a record payload".into(),
            ))
        };
        let n = self.needed.names.len();
        // On the stack for the usual few fields.
        let mut small = [None; 8];
        let mut large = Vec::new();
        let raw: &mut [Option<&serde_json::value::RawValue>] = if n <= small.len() {
            &mut small[..n]
        } else {
            large.resize(n, None);
            &mut large
        };
        // Values skipped are not checked for UTF-8 as they are passed over:
        // the whole payload is, first.
        let plain = std::str::from_utf8(plain).map_err(|_| corrupt())?;
        let mut de = serde_json::Deserializer::from_str(plain);
        let found = serde::de::DeserializeSeed::deserialize(
            PayloadSeed(FieldsSeed {
                names: &self.needed.names,
                out: raw,
            }),
            &mut de,
        )
        .and_then(|f| de.end().map(|()| f))
        .map_err(|_| corrupt())?;
        if !found {
            return Err(corrupt());
        }
        // Every needed string decodes, or the payload is not one.
        let mut texts: [Option<std::borrow::Cow<'_, str>>; 8] = Default::default();
        let mut more = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let t = match r {
                Some(r) => raw_text(r).map_err(|_| corrupt())?,
                None => None,
            };
            match texts.get_mut(i) {
                Some(slot) => *slot = t,
                None => more.push(t),
            }
        }
        let text = |i: usize| match texts.get(i) {
            Some(t) => t.clone(),
            None => more[i - texts.len()].clone(),
        };
        let at = text(self.needed.time).and_then(|t| parse_instant(&t));
        Ok(self.key_of(at, |i| raw[i].map(|r| r.get()), text))
    }

    /// [`Keyer::contribution`] of one entry of a scan block (its fields'
    /// JSON texts, and the time field's instant parsed when it was built),
    /// `map` giving each needed field's place in the block's fields.
    fn block_contribution(
        &mut self,
        entry: &[u8],
        map: &[usize],
    ) -> Result<Option<(&str, i64)>, VaultError> {
        let corrupt = || {
            VaultError::Store(postvault_store::StoreError::Corrupt(
                "a scan block's entry does not read".into(),
            ))
        };
        let mut fields: [Option<&[u8]>; blocks::MAX_FIELDS] = [None; blocks::MAX_FIELDS];
        let at = blocks::read_entry(entry, &mut fields).ok_or_else(corrupt)?;
        // The needed fields' JSON texts: only these are checked for UTF-8.
        let mut raws: [Option<&str>; blocks::MAX_FIELDS] = [None; blocks::MAX_FIELDS];
        for (slot, &b) in raws.iter_mut().zip(map) {
            if let Some(bytes) = fields.get(b).copied().flatten() {
                *slot = Some(std::str::from_utf8(bytes).map_err(|_| corrupt())?);
            }
        }
        let raw = |i: usize| raws.get(i).copied().flatten();
        // Every needed string decodes, or the entry is not one.
        let mut texts: [Option<std::borrow::Cow<'_, str>>; 16] = Default::default();
        for (i, slot) in texts.iter_mut().enumerate().take(map.len()) {
            if let Some(r) = raw(i) {
                *slot = match r.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                    Some(inner) if !inner.contains('\\') => Some(std::borrow::Cow::Borrowed(inner)),
                    Some(_) => Some(std::borrow::Cow::Owned(
                        serde_json::from_str::<String>(r).map_err(|_| corrupt())?,
                    )),
                    None => None,
                };
            }
        }
        let text = |i: usize| texts.get(i).cloned().flatten();
        Ok(self.key_of(at, raw, text))
    }

    fn key_of<'t>(
        &mut self,
        at: Option<i64>,
        raw: impl Fn(usize) -> Option<&'t str>,
        text: impl Fn(usize) -> Option<std::borrow::Cow<'t, str>>,
    ) -> Option<(&str, i64)> {
        let at = at?;
        if at < self.q.from_ms || at >= self.q.to_ms {
            return None;
        }
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        let mut ok = true;
        for (i, d) in self.plan.dimensions.iter().enumerate() {
            if i > 0 {
                key.push(SEP);
            }
            let ix = self.needed.dims[i];
            let Some(v) = text(ix) else {
                ok = false;
                break;
            };
            // The time field read once when a dimension coarsens it.
            let same = ix == self.needed.time;
            let instant = |v: &str| if same { Some(at) } else { parse_instant(v) };
            match d.coarsen {
                Coarsen::Value => key.push_str(&v),
                Coarsen::Zip3 => match v.get(..3) {
                    Some(z) => key.push_str(z),
                    None => ok = false,
                },
                Coarsen::Day | Coarsen::Week => match instant(&v) {
                    Some(ms) => {
                        let day = utc_day(ms);
                        let day = if d.coarsen == Coarsen::Week {
                            monday(day)
                        } else {
                            day
                        };
                        key.push_str(self.day(day));
                    }
                    None => ok = false,
                },
            }
            if !ok {
                break;
            }
        }
        let value = match (ok, self.plan.sum) {
            (false, _) => None,
            (true, None) => Some(1),
            (true, Some((_, (lo, hi)))) => self
                .needed
                .sum
                .and_then(|ix| raw(ix).and_then(sum_value).map(|v| v.clamp(lo, hi))),
        };
        self.key = key;
        value.map(|v| (self.key.as_str(), v))
    }
}

/// Bounds each person's contribution as records stream by, one person's
/// records together: at most `max` in all, `per_group` in one group.
struct Bounder {
    max: u32,
    per_group: u32,
    person: Option<SubjectRef>,
    total: u32,
    /// This person's groups (by id) and their counts.
    groups: Vec<(u32, u32)>,
    /// Group ids by key, and each group's key and bounded exact value
    /// (summed wider than any value a sum can reach: 2^40 a record).
    ids: foldhash::HashMap<String, u32>,
    keys: Vec<String>,
    sums: Vec<i128>,
}

impl Bounder {
    fn new(max: u32, per_group: u32) -> Bounder {
        Bounder {
            max,
            per_group,
            person: None,
            total: 0,
            groups: Vec::new(),
            ids: foldhash::HashMap::default(),
            keys: Vec::new(),
            sums: Vec::new(),
        }
    }

    fn add(&mut self, subject: &SubjectRef, c: Option<(&str, i64)>) {
        if self.person.as_ref() != Some(subject) {
            self.person = Some(*subject);
            self.total = 0;
            self.groups.clear();
        }
        let Some((key, value)) = c else {
            return;
        };
        if self.total >= self.max {
            return;
        }
        let id = match self.ids.get(key) {
            Some(&id) => id,
            None => {
                let id = self.keys.len() as u32;
                self.ids.insert(key.to_string(), id);
                self.keys.push(key.to_string());
                self.sums.push(0);
                id
            }
        };
        let at = match self.groups.iter().position(|(g, _)| *g == id) {
            Some(at) => at,
            None => {
                self.groups.push((id, 0));
                self.groups.len() - 1
            }
        };
        let n = &mut self.groups[at].1;
        if *n >= self.per_group {
            return;
        }
        *n += 1;
        self.total += 1;
        self.sums[id as usize] += i128::from(value);
    }

    /// The bounded exact values by group key, added into `out`.
    fn merge_into(self, out: &mut HashMap<String, i128>) {
        for (k, v) in self.keys.into_iter().zip(self.sums) {
            *out.entry(k).or_insert(0) += v;
        }
    }
}

/// A release's measurement, made before the query spends.
enum Mechanism {
    Public(release::Public),
    Private(release::Private),
}

/// A summed field's value as sealed: an integer, or an amount of money
/// (`"12.50"`, as collection writes it) in cents.
fn sum_value(json: &str) -> Option<i64> {
    if json.starts_with('"') {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        return crate::minimize::money_cents(&v).and_then(|c| i64::try_from(c).ok());
    }
    json.parse().ok()
}

/// `v` clamped to the range of `i64`.
fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// What a scan found that stops the answer.
#[derive(Default)]
struct Trouble {
    /// Records whose keys were missing, by person.
    missing: HashMap<SubjectRef, u64>,
    covers: HashMap<u32, u64>,
}

impl Vault {
    /// Answers an aggregate `req` for `purpose` as `principal`, with
    /// differential privacy, spending the principal's budget.
    pub fn statistics(
        &self,
        principal: &Principal,
        purpose: &str,
        req: &StatsRequest,
    ) -> Result<StatsAnswer, VaultError> {
        let q = parse_query(req)?;
        let tax = self.pack.taxonomy();
        let plan = pstats::check(tax, principal.role_ix, purpose, &q).map_err(|r| {
            VaultError::Refused {
                code: r.code(),
                message: r.to_string(),
            }
        })?;
        let epsilon = q.epsilon as f64 / pstats::MICRO as f64;
        let keys = if plan.public_keys() {
            Some(public_keys(tax, &plan, &q)?)
        } else {
            None
        };
        let now = self.clock.now_ms();
        let period = period_of(plan.budget.period, now);
        let spend = BudgetSpend {
            principal: principal.name.clone(),
            purpose: purpose.to_string(),
            period: period.clone(),
            amount: q.epsilon,
            limit: plan.budget.epsilon,
            at: now,
        };
        let measure = match &q.measure {
            Measure::Count => "count".to_string(),
            Measure::Sum { field, .. } => format!("sum({field})"),
        };
        let selector = format!(
            "{measure} by [{}] epsilon {}",
            q.group_by.join(","),
            pstats::format_epsilon(q.epsilon)
        );
        let mut leaf = |outcome: &BudgetOutcome, _idx: u64| {
            let (decision, reasons) = match outcome {
                BudgetOutcome::Spent { .. } => ("allow", vec![]),
                BudgetOutcome::Exhausted { .. } => ("deny", vec!["budget_exhausted".to_string()]),
            };
            Event {
                v: LEAF_VERSION,
                time: now,
                action: "statistics".into(),
                principal: Actor {
                    role: principal.role.clone(),
                    id: self.actor_id(&principal.name),
                },
                purpose: Some(purpose.to_string()),
                decision: decision.into(),
                pack: self.pack.version().to_string(),
                reasons,
                categories: vec![q.category.clone()],
                count: 0,
                rejected: None,
                selector: Some(selector.clone()),
                instrument: None,
                subject_tag: None,
            }
            .to_leaf()
        };
        // The measurement is made before anything is spent: one OpenDP
        // refuses costs nothing.
        let stats = plan.stats;
        let mechanism = match &keys {
            Some(keys) => {
                let per_record = match plan.sum {
                    None => 1,
                    Some((_, (lo, hi))) => lo.unsigned_abs().max(hi.unsigned_abs()) as i64,
                };
                let groups = i64::try_from(keys.len()).unwrap_or(i64::MAX);
                let records = i64::from(stats.max_records)
                    .min(groups.saturating_mul(i64::from(stats.max_records_per_group)));
                Mechanism::Public(release::Public::prepare(
                    records.max(1) * per_record.max(1),
                    epsilon,
                )?)
            }
            None => Mechanism::Private(release::Private::prepare(
                stats.max_records,
                stats.max_records_per_group,
                epsilon,
                stats.delta,
            )?),
        };
        let (outcome, log_index) = self.store.spend_budget(&spend, &mut leaf)?;
        let remaining = match outcome {
            BudgetOutcome::Spent { remaining } => remaining,
            BudgetOutcome::Exhausted { remaining } => {
                return Err(VaultError::Refused {
                    code: "budget_exhausted",
                    message: format!(
                        "privacy budget exhausted: epsilon {} of {} remains for `{purpose}` in {period}; this query asks {}",
                        pstats::format_epsilon(remaining),
                        pstats::format_epsilon(plan.budget.epsilon),
                        pstats::format_epsilon(q.epsilon)
                    ),
                });
            }
        };

        // The spend and its leaf are durable: only now is anything read.
        let exact = self.bounded_scan(&plan, &q, now)?;
        let released = match (&keys, &mechanism) {
            (Some(keys), Mechanism::Public(m)) => m.release(keys, &exact)?,
            (None, Mechanism::Private(m)) => m.release(exact)?,
            _ => {
                return Err(VaultError::Refused {
                    code: "internal",
                    message: "the release was prepared for other keys".into(),
                });
            }
        };
        let groups = released
            .values
            .into_iter()
            .map(|(k, value)| StatsGroup {
                key: if q.group_by.is_empty() {
                    BTreeMap::new()
                } else {
                    q.group_by
                        .iter()
                        .cloned()
                        .zip(k.split(SEP).map(str::to_string))
                        .collect()
                },
                value,
            })
            .collect();
        let public = keys.is_some();
        let consented_only = self.consent_purpose(&plan).map(str::to_string);
        Ok(StatsAnswer {
            category: q.category.clone(),
            purpose: purpose.to_string(),
            measure: match &q.measure {
                Measure::Count => "count".into(),
                Measure::Sum { .. } => "sum".into(),
            },
            field: match &q.measure {
                Measure::Count => None,
                Measure::Sum { field, .. } => Some(field.clone()),
            },
            group_by: q.group_by.clone(),
            from: format_ms(q.from_ms),
            to: format_ms(q.to_ms),
            groups,
            privacy: PrivacySpent {
                definition: if public { "pure" } else { "approximate" },
                mechanism: if public {
                    "opendp make_laplace (discrete Laplace)"
                } else {
                    "opendp make_laplace_threshold (discrete Laplace, thresholded partition selection)"
                },
                epsilon: released.epsilon,
                delta: released.delta,
                scale: released.scale,
                threshold: released.threshold,
                max_records: stats.max_records,
                max_records_per_group: stats.max_records_per_group,
            },
            accuracy: AccuracyStatement {
                confidence: CONFIDENCE,
                plus_minus: released.accuracy,
                statement: format!(
                    "with 95% confidence each released value is within {:.1} of the exact value over the records that count after each person's contribution is bounded{}{}",
                    released.accuracy,
                    match &consented_only {
                        Some(p) => format!(
                            " (the records of people whose consent to `{p}` stands, no one else's)"
                        ),
                        None => String::new(),
                    },
                    if public {
                        ""
                    } else {
                        "; groups whose noisy count falls under the threshold are not released"
                    }
                ),
            },
            budget: BudgetView {
                purpose: purpose.to_string(),
                period,
                limit: plan.budget.epsilon as f64 / pstats::MICRO as f64,
                spent: (plan.budget.epsilon - remaining) as f64 / pstats::MICRO as f64,
                remaining: remaining as f64 / pstats::MICRO as f64,
            },
            log_index,
            pack: self.pack.version().to_string(),
            consented_only,
        })
    }

    /// Scans the plan's category and returns each group's exact value after
    /// bounding every person's contribution. The subject refs are split into
    /// one range per core, each scanned by a pipeline of its own (its own
    /// connection, keys, decryption and bounding); a person's records all
    /// fall in one range, so bounding stays exact, and the ranges' values
    /// are added at the end. Memory grows with the groups and a page.
    fn bounded_scan(
        &self,
        plan: &Plan<'_>,
        q: &Query,
        now: i64,
    ) -> Result<HashMap<String, i64>, VaultError> {
        let threads = crate::vault::cores().clamp(1, 8);
        self.bounded_scan_in(plan, q, now, threads)
    }

    /// [`Vault::bounded_scan`] in `ranges` subject ranges.
    fn bounded_scan_in(
        &self,
        plan: &Plan<'_>,
        q: &Query,
        now: i64,
        ranges: usize,
    ) -> Result<HashMap<String, i64>, VaultError> {
        self.bounded_scan_with(plan, q, now, ranges, true)
    }

    /// [`Vault::bounded_scan_in`], reading scan blocks where the store has
    /// usable ones when `blocks` (rows only otherwise: tests compare).
    fn bounded_scan_with(
        &self,
        plan: &Plan<'_>,
        q: &Query,
        now: i64,
        ranges: usize,
        blocks: bool,
    ) -> Result<HashMap<String, i64>, VaultError> {
        self.sync_erasures()?;
        let consented = self.consent_purpose(plan);
        let ranges = subject_ranges(ranges.max(1));
        // The people whose rows the blocks may not hold, read once for
        // every range (none: the ranges find their people from the rows).
        let tail = if blocks {
            let tax = self.pack.taxonomy();
            self.store.scan_tail(&tax.category(plan.category).id)?
        } else {
            None
        };
        let tail = tail.as_deref();
        let results: Vec<Result<(Bounder, Trouble), VaultError>> = std::thread::scope(|s| {
            let handles: Vec<_> = ranges
                .iter()
                .map(|(from, until)| {
                    s.spawn(move || {
                        self.scan_range(
                            plan,
                            q,
                            now,
                            (*from, until.as_ref()),
                            consented,
                            (blocks, tail),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(VaultError::Refused {
                            code: "internal",
                            message: "a statistics worker failed".into(),
                        })
                    })
                })
                .collect()
        });
        let mut out: HashMap<String, i128> = HashMap::new();
        let mut trouble = Trouble::default();
        for r in results {
            let (bounder, t) = r?;
            bounder.merge_into(&mut out);
            for (s, n) in t.missing {
                *trouble.missing.entry(s).or_default() += n;
            }
            for (seq, n) in t.covers {
                *trouble.covers.entry(seq).or_default() += n;
            }
        }
        // A person erased between a page's rows and their keys' look-up:
        // their rows are dead now (no read sees them), so what the scan
        // could not open was gone lawfully. Anyone else's missing keys are
        // an error.
        let category = &self.pack.taxonomy().category(plan.category).id;
        let mut missing = 0u64;
        for (s, n) in &trouble.missing {
            let next = next_ref(s);
            let live = self.store.category_records(
                category,
                now,
                Some(&(*s, [0u8; 16])),
                next.as_ref(),
                1,
                None,
            )?;
            if live.rows.first().is_some_and(|r| r.subject == *s) {
                missing += n;
            }
        }
        if missing > 0 {
            return Err(VaultError::RecordKeysMissing { records: missing });
        }
        self.check_cover_keys(&trouble.covers)?;
        // Added without overflow, then clamped to what the measurement
        // takes: clamping moves two totals no further apart, so one
        // person still changes a value by at most the sensitivity (a
        // sum that wrapped around would not).
        Ok(out.into_iter().map(|(k, v)| (k, saturate(v))).collect())
    }

    /// The purpose a query's people must have consented to: its own, when
    /// any of its cells needs the person's consent (`marketing` in the
    /// postal pack, opt-in only). Such a purpose reaches a person's data
    /// only by their choice, in aggregate as in a targeted read, so the
    /// scan counts only the people whose consent to it stands.
    fn consent_purpose<'t>(&'t self, plan: &Plan<'_>) -> Option<&'t str> {
        let tax = self.pack.taxonomy();
        tax.needs_consent(plan.purpose)
            .then(|| tax.purpose(plan.purpose).id.as_str())
    }

    /// One pipeline: the category's records of subjects in [`from`,
    /// `until`) (of people who consented to `consented`, if given), a page
    /// at a time, each person's together.
    fn scan_range(
        &self,
        plan: &Plan<'_>,
        q: &Query,
        now: i64,
        (from, until): (SubjectRef, Option<&SubjectRef>),
        consented: Option<&str>,
        (use_blocks, tail): (bool, Option<&[SubjectRef]>),
    ) -> Result<(Bounder, Trouble), VaultError> {
        let tax = self.pack.taxonomy();
        let category = &tax.category(plan.category).id;
        let mut keyer = Keyer::new(tax, plan, q);
        let mut bounder = Bounder::new(plan.stats.max_records, plan.stats.max_records_per_group);
        let mut trouble = Trouble::default();
        // `(from, [0; 16])` is before every row of `from` (`ScanPos`): the
        // range starts there.
        let mut after = Some((from, [0u8; 16]));
        let mut subjects: Vec<SubjectRef> = Vec::new();
        let mut keys: HashMap<SubjectRef, Option<DataKey>> = HashMap::new();
        let (mut aad, mut plain) = (Vec::with_capacity(128), Vec::with_capacity(512));
        // The blocks this query can read: of the pack's declaration now.
        // Where each field the query needs is in a block's entries.
        let map = blocks::field_map(tax, plan.category, &keyer.needed.names);
        let tag = match &map {
            Some(_) if use_blocks => blocks::block_tag(tax, plan.category),
            _ => None,
        };
        let map = map.unwrap_or_default();
        // One page's rows and blocks, their buffers reused by the next.
        let mut page = postvault_store::ScanPage::default();
        // Derived keys are kept for one page (memory stays bounded), in
        // maps whose memory the next page reuses.
        let mut cache = KeyCache::for_scan();
        let mut opened: Vec<Vec<u8>> = Vec::new();
        loop {
            let ask = postvault_store::ScanAsk {
                category,
                now,
                after: after.as_ref(),
                until,
                limit: PAGE,
                consented,
                blocks: tag.as_deref(),
                people: PAGE_PEOPLE,
                tail,
            };
            self.store.category_records_into(&ask, &mut page)?;
            let Some(next) = page.next else {
                break;
            };
            after = Some(next);
            subjects.clear();
            subjects.extend(page.blocks.iter().map(|b| b.subject));
            subjects.extend(page.rows.iter().map(|r| r.subject));
            subjects.sort_unstable();
            subjects.dedup();
            let wrapped = self.keys.subject_keys_many(&subjects)?;
            keys.clear();
            for (s, w) in subjects.iter().zip(wrapped) {
                // Keys that do not unwrap are as good as missing: their
                // records are reported, never skipped.
                keys.insert(*s, w.and_then(|w| self.unwrap_data(&w, s).ok()));
            }
            // A person's records come together and mostly share one key:
            // the last one found is tried first.
            cache.clear();
            let mut last: Option<LastKey<'_>> = None;
            // A person's blocks, then their rows: one person's together.
            let mut at = 0usize;
            let mut blocks = BlockScan {
                blocks: &page.blocks,
                at: &mut at,
                keys: &keys,
                now,
                map: &map,
                opened: &mut opened,
            };
            for r in &page.rows {
                // The blocks of the people before this one, and this one's.
                self.take_blocks(
                    &mut blocks,
                    Some(&r.subject),
                    (&mut keyer, &mut bounder, &mut trouble),
                    &mut cache,
                    &mut plain,
                )?;
                let (k, key) = match last.as_ref() {
                    Some((p, k, key))
                        if p.subject == r.subject
                            && p.key_id == r.key_id
                            && p.expires_at == r.expires_at
                            && p.category == r.category =>
                    {
                        (*k, key.clone())
                    }
                    _ => {
                        let k = keys.get(&r.subject).and_then(Option::as_ref);
                        let key = self.key_of(KeyOf::of(r), k, &mut cache, false)?;
                        last = Some((r, k, key.clone()));
                        (k, key)
                    }
                };
                let opened = match &key {
                    Some(key) => {
                        self.open_record_with(r, key, &mut aad, &mut plain)?;
                        true
                    }
                    None => false,
                };
                if !opened {
                    match self.gone(r, k, &mut cache, now)? {
                        crate::integrity::Gone::No | crate::integrity::Gone::Lawfully => {}
                        crate::integrity::Gone::Missing => {
                            *trouble.missing.entry(r.subject).or_default() += 1;
                        }
                        crate::integrity::Gone::CoverKey(seq) => {
                            *trouble.covers.entry(seq).or_default() += 1;
                        }
                    }
                    bounder.add(&r.subject, None);
                    continue;
                }
                bounder.add(&r.subject, keyer.contribution(&plain)?);
            }
            self.take_blocks(
                &mut blocks,
                None,
                (&mut keyer, &mut bounder, &mut trouble),
                &mut cache,
                &mut plain,
            )?;
        }
        Ok((bounder, trouble))
    }
}

/// Where a page's scan stands in the page's blocks.
struct BlockScan<'a> {
    blocks: &'a [postvault_store::ScanBlock],
    at: &'a mut usize,
    keys: &'a HashMap<SubjectRef, Option<DataKey>>,
    now: i64,
    /// Where each field the query needs is in the blocks' entries.
    map: &'a [usize],
    /// Buffers for a person's blocks opened together.
    opened: &'a mut Vec<Vec<u8>>,
}

impl Vault {
    /// Adds the page's blocks of the people up to `upto` (every one left
    /// when `None`) to `bounder`, each person's entries together.
    fn take_blocks(
        &self,
        s: &mut BlockScan<'_>,
        upto: Option<&SubjectRef>,
        (keyer, bounder, trouble): (&mut Keyer<'_>, &mut Bounder, &mut Trouble),
        cache: &mut KeyCache,
        plain: &mut Vec<u8>,
    ) -> Result<(), VaultError> {
        while let Some(first) = s.blocks.get(*s.at) {
            if upto.is_some_and(|u| first.subject > *u) {
                break;
            }
            // This person's blocks.
            let from = *s.at;
            while s
                .blocks
                .get(*s.at)
                .is_some_and(|b| b.subject == first.subject)
            {
                *s.at += 1;
            }
            let mine = &s.blocks[from..*s.at];
            // Each opened into a buffer of its own (one, most often).
            if s.opened.len() < mine.len() {
                s.opened.resize_with(mine.len(), Vec::new);
            }
            let mut opened = 0;
            for b in mine {
                let k = s.keys.get(&b.subject).and_then(Option::as_ref);
                let of = KeyOf {
                    subject: &b.subject,
                    category: &b.category,
                    key_id: b.key_id,
                    expires_at: b.expires_at,
                };
                let Some(key) = self.key_of(of, k, cache, false)? else {
                    match self.gone(&blocks::key_row(b), k, cache, s.now)? {
                        crate::integrity::Gone::No | crate::integrity::Gone::Lawfully => {}
                        crate::integrity::Gone::Missing => {
                            *trouble.missing.entry(b.subject).or_default() += b.records;
                        }
                        crate::integrity::Gone::CoverKey(seq) => {
                            *trouble.covers.entry(seq).or_default() += b.records;
                        }
                    }
                    bounder.add(&b.subject, None);
                    continue;
                };
                // Altered, or not sealed with the key of its rows: an
                // error, never a guess.
                let buf = if mine.len() == 1 {
                    &mut *plain
                } else {
                    &mut s.opened[opened]
                };
                key.key.open_into(&blocks::block_aad(b), &b.sealed, buf)?;
                opened += 1;
            }
            if mine.len() == 1 {
                if opened == 1 {
                    for entry in blocks::entries(plain) {
                        bounder.add(&first.subject, keyer.block_contribution(entry?, s.map)?);
                    }
                }
                continue;
            }
            // Several keys: their entries in the order of the person's
            // rows (each entry's place among them, given when built), as a
            // scan of rows counts them, which decides what the bounding
            // keeps of a person over the bounds.
            let mut order: Vec<(u32, &[u8])> = Vec::new();
            for buf in &s.opened[..opened] {
                for entry in blocks::entries(buf) {
                    let entry = entry?;
                    order.push((
                        blocks::entry_seq(entry).ok_or_else(blocks::bad_entry)?,
                        entry,
                    ));
                }
            }
            order.sort_unstable_by_key(|(seq, _)| *seq);
            for (_, entry) in order {
                bounder.add(&first.subject, keyer.block_contribution(entry, s.map)?);
            }
        }
        Ok(())
    }
}

/// The record a scan found a key for last, its person's keys and the
/// record key (none when gone).
type LastKey<'a> = (&'a RecordRow, Option<&'a DataKey>, Option<Arc<RecordKey>>);

/// `n` ranges of subject refs covering them all, split on their first two
/// bytes (refs are keyed hashes, spread evenly): (from, until), the last
/// one open.
/// The ref after `s` in byte order (`None` past the last).
fn next_ref(s: &SubjectRef) -> Option<SubjectRef> {
    u128::from_be_bytes(*s)
        .checked_add(1)
        .map(u128::to_be_bytes)
}

fn subject_ranges(n: usize) -> Vec<(SubjectRef, Option<SubjectRef>)> {
    let at = |i: usize| {
        let p = (i * 65_536 / n) as u16;
        let mut r = [0u8; 16];
        r[..2].copy_from_slice(&p.to_be_bytes());
        r
    };
    (0..n)
        .map(|i| (at(i), if i + 1 == n { None } else { Some(at(i + 1)) }))
        .collect()
}

#[cfg(test)]
mod tests;

/// One principal's statistics spending for one purpose in one period.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BudgetSpent {
    pub principal: String,
    pub purpose: String,
    pub period: String,
    pub spent: f64,
    /// The pack's budget for the purpose and period (none if the pack in
    /// force no longer declares one).
    pub limit: Option<f64>,
    pub queries: u64,
    /// Queries refused as over budget.
    pub refused: u64,
    pub last_query_at: String,
}

impl Vault {
    /// Every principal's statistics spending, from the ledger.
    pub fn statistics_budgets(&self) -> Result<Vec<BudgetSpent>, VaultError> {
        let tax = self.pack.taxonomy();
        Ok(self
            .store
            .budgets()?
            .into_iter()
            .map(|b| BudgetSpent {
                limit: tax
                    .purpose_ix(&b.purpose)
                    .and_then(|p| tax.statistics.budget(p))
                    .map(|x| x.epsilon as f64 / pstats::MICRO as f64),
                spent: b.spent as f64 / pstats::MICRO as f64,
                principal: b.principal,
                purpose: b.purpose,
                period: b.period,
                queries: b.queries,
                refused: b.refused,
                last_query_at: format_ms(b.updated_at),
            })
            .collect())
    }
}

/// Counts of people under this are shown as "fewer than" it in the public
/// report.
pub const PEOPLE_THRESHOLD: u64 = 10;

/// A count of people as the public report releases it: the number, or
/// `"fewer than 10"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum PeopleCount {
    Count(u64),
    Fewer(String),
}

impl PeopleCount {
    fn of(n: u64) -> PeopleCount {
        if n < PEOPLE_THRESHOLD {
            PeopleCount::Fewer(format!("fewer than {PEOPLE_THRESHOLD}"))
        } else {
            PeopleCount::Count(n)
        }
    }
}

impl std::fmt::Display for PeopleCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeopleCount::Count(n) => write!(f, "{n}"),
            PeopleCount::Fewer(s) => f.write_str(s),
        }
    }
}

/// Counts that concern people, released with a stated threshold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeopleCounts {
    /// How the counts below are released.
    pub method: String,
    /// Distinct people whose data left the vault.
    pub disclosed: PeopleCount,
    /// Distinct people named by approved requests, by instrument kind.
    pub named_by_kind: BTreeMap<String, PeopleCount>,
    /// Distinct people under a mail cover approved at any time.
    pub under_mail_cover: PeopleCount,
}

/// One row of the statistics budgets in the transparency report.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BudgetReportRow {
    pub role: String,
    /// The pseudonymous id of the principal (as in log leaves).
    pub principal_id: String,
    pub purpose: String,
    pub period: String,
    pub spent: f64,
    pub limit: Option<f64>,
    pub queries: u64,
    pub refused: u64,
}

/// The transparency report's statistics: budgets spent, and counts of
/// people with the method that releases them.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatisticsReport {
    pub budgets: Vec<BudgetReportRow>,
    pub people: PeopleCounts,
}

impl Vault {
    /// The statistics part of the transparency report.
    pub(crate) fn statistics_report(
        &self,
        rows: &[postvault_store::DisclosureRow],
    ) -> Result<StatisticsReport, VaultError> {
        let mut roles = HashMap::new();
        for p in self.store.principals()? {
            roles.insert(p.name, p.role);
        }
        let budgets = self
            .statistics_budgets()?
            .into_iter()
            .map(|b| BudgetReportRow {
                role: roles.get(&b.principal).cloned().unwrap_or_default(),
                principal_id: self.actor_id(&b.principal),
                purpose: b.purpose,
                period: b.period,
                spent: b.spent,
                limit: b.limit,
                queries: b.queries,
                refused: b.refused,
            })
            .collect();
        let mut disclosed = std::collections::HashSet::new();
        let mut covered = std::collections::HashSet::new();
        let mut by_kind: BTreeMap<String, std::collections::HashSet<SubjectRef>> = BTreeMap::new();
        for d in rows {
            if d.fetches > 0 {
                disclosed.extend(d.subjects.iter().copied());
            }
            if d.decided_at.is_some() && d.status != crate::gateway::status::REFUSED {
                by_kind
                    .entry(if d.kind.is_empty() {
                        "unknown".into()
                    } else {
                        d.kind.clone()
                    })
                    .or_default()
                    .extend(d.subjects.iter().copied());
                if d.kind == "mail_cover" {
                    covered.extend(d.subjects.iter().copied());
                }
            }
        }
        Ok(StatisticsReport {
            budgets,
            people: PeopleCounts {
                method: format!(
                    "counts of distinct people, exact from the ledger; a count under {PEOPLE_THRESHOLD} is shown as \"fewer than {PEOPLE_THRESHOLD}\" (a stated threshold, not differential privacy)"
                ),
                disclosed: PeopleCount::of(disclosed.len() as u64),
                named_by_kind: by_kind
                    .into_iter()
                    .map(|(k, s)| (k, PeopleCount::of(s.len() as u64)))
                    .collect(),
                under_mail_cover: PeopleCount::of(covered.len() as u64),
            },
        })
    }
}
