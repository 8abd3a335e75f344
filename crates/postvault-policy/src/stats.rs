//! Aggregate statistics: what the pack declares (`[statistics]` in
//! `taxonomy.toml`) and the check of a query against it.
//!
//! A statistics query may touch a category only where the matrix marks the
//! purpose's cell `A` (aggregate only) and the principal's role reads for
//! the purpose. It may group only by the dimensions the pack declares for the
//! category, each a coarsening of one field that cannot single a person out
//! (a day or week of a date, the first three digits of a ZIP code, an enum
//! value, a short code); the loader refuses a dimension over a free-text,
//! identifying, address or lookup field. Every refusal carries a stable code
//! and is decided from the pack and the query alone, before any record is
//! read.
//!
//! Privacy parameters are kept in micro-epsilon (integers), so budgets add up
//! exactly.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use toml::Spanned;

use crate::error::PackError;
use crate::taxonomy::{
    CategoryIx, Cell, FieldType, PurposeIx, RoleIx, TAXONOMY_FILE, Taxonomy, line_of,
};

/// One epsilon in the ledger's unit.
pub const MICRO: u64 = 1_000_000;
/// The largest epsilon the pack may declare, for a query or a period.
pub const MAX_EPSILON: f64 = 10.0;
/// The smallest epsilon one query may spend, in micro-epsilon (0.01). A
/// thresholded release adds its category's `delta` whatever its epsilon,
/// and the ledger counts epsilon: the floor bounds the queries a budget
/// pays for, so a period's delta adds up to at most
/// `budget / 0.01 * delta` (docs/statistics.md).
pub const MIN_QUERY_EPSILON: u64 = MICRO / 100;
/// The largest number of dimensions a query may group by.
pub const MAX_GROUP_BY: usize = 4;

/// How a field's value becomes a group key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coarsen {
    /// The value as it is (an enum or a short code).
    Value,
    /// A date or date-time to its UTC day, `YYYY-MM-DD`.
    Day,
    /// A date or date-time to the Monday of its ISO week, `YYYY-MM-DD`.
    Week,
    /// A ZIP code to its first three digits.
    Zip3,
}

impl Coarsen {
    fn parse(s: &str) -> Option<Coarsen> {
        Some(match s {
            "value" => Coarsen::Value,
            "day" => Coarsen::Day,
            "week" => Coarsen::Week,
            "zip3" => Coarsen::Zip3,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Coarsen::Value => "value",
            Coarsen::Day => "day",
            Coarsen::Week => "week",
            Coarsen::Zip3 => "zip3",
        }
    }
}

/// A dimension a query may group by.
#[derive(Clone, Debug, PartialEq)]
pub struct Dimension {
    pub name: String,
    /// Index of the field in the category.
    pub field: usize,
    pub coarsen: Coarsen,
    /// Every value of the dimension is known without looking at the data
    /// (an enum's values, the days or weeks of the query window), so its
    /// keys are released without partition selection.
    pub public: bool,
}

/// What the pack allows of statistics over one category.
#[derive(Clone, Debug, PartialEq)]
pub struct CategoryStats {
    pub category: CategoryIx,
    /// The date or date-time field the query window applies to.
    pub time_field: usize,
    pub dimensions: Vec<Dimension>,
    /// Integer or money fields a `sum` may add up.
    pub sum_fields: Vec<usize>,
    /// The largest epsilon one query may spend, in micro-epsilon.
    pub max_epsilon: u64,
    /// At most this many records of one person count, in all groups together.
    pub max_records: u32,
    /// At most this many records of one person count in any one group.
    pub max_records_per_group: u32,
    /// The delta of partition selection when a key is not public.
    pub delta: f64,
}

/// How long a budget lasts before it renews.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
}

/// A privacy budget: per principal, for one purpose, per period.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub purpose: PurposeIx,
    /// In micro-epsilon.
    pub epsilon: u64,
    pub period: Period,
}

/// Every statistics declaration of a pack.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statistics {
    pub categories: Vec<CategoryStats>,
    pub budgets: Vec<Budget>,
}

impl Statistics {
    pub fn category(&self, c: CategoryIx) -> Option<&CategoryStats> {
        self.categories.iter().find(|s| s.category == c)
    }

    pub fn budget(&self, p: PurposeIx) -> Option<&Budget> {
        self.budgets.iter().find(|b| b.purpose == p)
    }
}

/// What a query asks for: a count of records, or a sum of one field's
/// values clamped to `bounds`.
#[derive(Clone, Debug, PartialEq)]
pub enum Measure {
    Count,
    Sum { field: String, bounds: (i64, i64) },
}

/// A statistics query, as parsed from its JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub category: String,
    pub measure: Measure,
    pub group_by: Vec<String>,
    /// Unix milliseconds, inclusive.
    pub from_ms: i64,
    /// Unix milliseconds, exclusive.
    pub to_ms: i64,
    /// In micro-epsilon.
    pub epsilon: u64,
}

/// Why a query is refused: stable machine-readable codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown category `{0}`")]
    UnknownCategory(String),
    #[error("unknown purpose `{0}`")]
    UnknownPurpose(String),
    #[error("the role may not act for purpose `{0}`")]
    PurposeNotPermitted(String),
    #[error("purpose `{purpose}` may not use `{category}` in aggregate: the cell is not marked A")]
    NotAggregate { purpose: String, category: String },
    #[error("the pack declares no statistics over `{0}`")]
    NoStatistics(String),
    #[error("the pack declares no privacy budget for purpose `{0}`")]
    NoBudget(String),
    #[error("`{dimension}` is not a declared dimension of `{category}`")]
    UndeclaredDimension { category: String, dimension: String },
    #[error("`{0}` is grouped by twice")]
    RepeatedDimension(String),
    #[error("at most {MAX_GROUP_BY} dimensions")]
    TooManyDimensions,
    #[error("`{field}` is not a declared sum field of `{category}`")]
    UndeclaredSumField { category: String, field: String },
    #[error("a sum is released over public group keys only; `{0}` is not public")]
    SumNeedsPublicKeys(String),
    #[error("epsilon {asked} is over this category's cap of {cap} per query")]
    EpsilonOverCap { asked: String, cap: String },
    #[error("epsilon must be above 0")]
    EpsilonNotPositive,
    #[error("epsilon {asked} is under the smallest a query may spend, {min}")]
    EpsilonUnderMinimum { asked: String, min: String },
}

impl Refusal {
    /// The stable code of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownCategory(_) => "unknown_category",
            Refusal::UnknownPurpose(_) => "unknown_purpose",
            Refusal::PurposeNotPermitted(_) => "purpose_not_permitted",
            Refusal::NotAggregate { .. } => "not_aggregate",
            Refusal::NoStatistics(_) => "no_statistics",
            Refusal::NoBudget(_) => "no_budget",
            Refusal::UndeclaredDimension { .. } => "undeclared_dimension",
            Refusal::RepeatedDimension(_) | Refusal::TooManyDimensions => "bad_group_by",
            Refusal::UndeclaredSumField { .. } => "undeclared_field",
            Refusal::SumNeedsPublicKeys(_) => "sum_needs_public_keys",
            Refusal::EpsilonOverCap { .. } => "epsilon_over_cap",
            Refusal::EpsilonNotPositive => "bad_epsilon",
            Refusal::EpsilonUnderMinimum { .. } => "epsilon_under_minimum",
        }
    }
}

/// A query the pack allows, resolved to indexes.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    pub purpose: PurposeIx,
    pub category: CategoryIx,
    pub stats: &'a CategoryStats,
    pub budget: &'a Budget,
    /// The query's dimensions, in its order.
    pub dimensions: Vec<&'a Dimension>,
    /// For a sum: the field and its bounds.
    pub sum: Option<(usize, (i64, i64))>,
}

impl Plan<'_> {
    /// Every key of the answer is public: no partition selection is needed.
    pub fn public_keys(&self) -> bool {
        self.dimensions.iter().all(|d| d.public)
    }
}

/// Checks `query` by a principal of `role` for `purpose` against the pack.
/// Decided from the pack alone: nothing of any person is looked at.
pub fn check<'a>(
    tax: &'a Taxonomy,
    role: RoleIx,
    purpose: &str,
    query: &Query,
) -> Result<Plan<'a>, Refusal> {
    let p = tax
        .purpose_ix(purpose)
        .ok_or_else(|| Refusal::UnknownPurpose(purpose.into()))?;
    let c = tax
        .category_ix(&query.category)
        .ok_or_else(|| Refusal::UnknownCategory(query.category.clone()))?;
    if tax.purpose(p).prohibited() || !tax.role(role).read_for.contains(&p) {
        return Err(Refusal::PurposeNotPermitted(purpose.into()));
    }
    if tax.cell(p, c) != Cell::Aggregate {
        return Err(Refusal::NotAggregate {
            purpose: purpose.into(),
            category: query.category.clone(),
        });
    }
    let stats = tax
        .statistics
        .category(c)
        .ok_or_else(|| Refusal::NoStatistics(query.category.clone()))?;
    let budget = tax
        .statistics
        .budget(p)
        .ok_or_else(|| Refusal::NoBudget(purpose.into()))?;
    if query.group_by.len() > MAX_GROUP_BY {
        return Err(Refusal::TooManyDimensions);
    }
    let mut seen = BTreeSet::new();
    let mut dimensions = Vec::new();
    for g in &query.group_by {
        let d = stats
            .dimensions
            .iter()
            .find(|d| &d.name == g)
            .ok_or_else(|| Refusal::UndeclaredDimension {
                category: query.category.clone(),
                dimension: g.clone(),
            })?;
        if !seen.insert(g.as_str()) {
            return Err(Refusal::RepeatedDimension(g.clone()));
        }
        dimensions.push(d);
    }
    let cat = tax.category(c);
    let sum = match &query.measure {
        Measure::Count => None,
        Measure::Sum { field, bounds } => {
            let ix = cat
                .field(field)
                .map(|(i, _)| i)
                .filter(|i| stats.sum_fields.contains(i))
                .ok_or_else(|| Refusal::UndeclaredSumField {
                    category: query.category.clone(),
                    field: field.clone(),
                })?;
            if let Some(d) = dimensions.iter().find(|d| !d.public) {
                return Err(Refusal::SumNeedsPublicKeys(d.name.clone()));
            }
            Some((ix, *bounds))
        }
    };
    if query.epsilon == 0 {
        return Err(Refusal::EpsilonNotPositive);
    }
    if query.epsilon < MIN_QUERY_EPSILON {
        return Err(Refusal::EpsilonUnderMinimum {
            asked: format_epsilon(query.epsilon),
            min: format_epsilon(MIN_QUERY_EPSILON),
        });
    }
    if query.epsilon > stats.max_epsilon {
        return Err(Refusal::EpsilonOverCap {
            asked: format_epsilon(query.epsilon),
            cap: format_epsilon(stats.max_epsilon),
        });
    }
    Ok(Plan {
        purpose: p,
        category: c,
        stats,
        budget,
        dimensions,
        sum,
    })
}

/// Micro-epsilon as a decimal.
pub fn format_epsilon(micro: u64) -> String {
    let s = format!("{}.{:06}", micro / MICRO, micro % MICRO);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// An epsilon to micro-epsilon, rounded up (a spend is never under-counted).
pub fn micro_epsilon(epsilon: f64) -> Option<u64> {
    if !epsilon.is_finite() || epsilon <= 0.0 || epsilon > MAX_EPSILON {
        return None;
    }
    Some((epsilon * MICRO as f64).ceil() as u64)
}

// ---------------------------------------------------------------------------
// Loading the declarations.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStatistics {
    #[serde(default)]
    budget: Vec<RawBudget>,
    #[serde(default)]
    category: Vec<RawCategoryStats>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    purpose: Spanned<String>,
    epsilon: Spanned<f64>,
    period: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategoryStats {
    id: Spanned<String>,
    time: Spanned<String>,
    max_epsilon: Spanned<f64>,
    max_records: Spanned<i64>,
    max_records_per_group: Spanned<i64>,
    delta: Spanned<f64>,
    dimensions: Vec<Spanned<RawDimension>>,
    #[serde(default)]
    sum: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDimension {
    name: String,
    field: String,
    #[serde(default)]
    coarsen: Option<String>,
    #[serde(default)]
    public: bool,
}

fn err(src: &str, span: std::ops::Range<usize>, rule: &str, message: String) -> PackError {
    PackError::new(TAXONOMY_FILE, Some(line_of(src, span.start)), rule, message)
}

pub(crate) fn build(
    src: &str,
    raw: RawStatistics,
    tax: &Taxonomy,
) -> Result<Statistics, PackError> {
    let mut budgets: Vec<Budget> = Vec::new();
    for b in raw.budget {
        let purpose = tax.purpose_ix(b.purpose.get_ref()).ok_or_else(|| {
            err(
                src,
                b.purpose.span(),
                "statistics-budget",
                format!("unknown purpose `{}`", b.purpose.get_ref()),
            )
        })?;
        if budgets.iter().any(|x| x.purpose == purpose) {
            return Err(err(
                src,
                b.purpose.span(),
                "statistics-budget",
                format!("two budgets for `{}`", b.purpose.get_ref()),
            ));
        }
        if !tax
            .category_ixs()
            .any(|c| tax.cell(purpose, c) == Cell::Aggregate)
        {
            return Err(err(
                src,
                b.purpose.span(),
                "statistics-budget",
                format!(
                    "`{}` has no cell marked A: a budget for it would open nothing",
                    b.purpose.get_ref()
                ),
            ));
        }
        let epsilon = micro_epsilon(*b.epsilon.get_ref())
            .filter(|&e| e >= MIN_QUERY_EPSILON)
            .ok_or_else(|| {
            err(
                src,
                b.epsilon.span(),
                "statistics-epsilon",
                format!(
                    "epsilon is at least {} (what one query spends at least) and at most {MAX_EPSILON}",
                    format_epsilon(MIN_QUERY_EPSILON)
                ),
            )
        })?;
        let period = match b.period.get_ref().as_str() {
            "day" => Period::Day,
            "week" => Period::Week,
            "month" => Period::Month,
            other => {
                return Err(err(
                    src,
                    b.period.span(),
                    "statistics-budget",
                    format!("period `{other}` is not one of day, week, month"),
                ));
            }
        };
        budgets.push(Budget {
            purpose,
            epsilon,
            period,
        });
    }

    let mut categories: Vec<CategoryStats> = Vec::new();
    for c in raw.category {
        let id = c.id.get_ref();
        let cix = tax.category_ix(id).ok_or_else(|| {
            err(
                src,
                c.id.span(),
                "statistics-category",
                format!("unknown category `{id}`"),
            )
        })?;
        if categories.iter().any(|s| s.category == cix) {
            return Err(err(
                src,
                c.id.span(),
                "statistics-category",
                format!("`{id}` is declared twice"),
            ));
        }
        let cat = tax.category(cix);
        let time_field = cat
            .field(c.time.get_ref())
            .filter(|(_, f)| matches!(f.kind, FieldType::Date | FieldType::DateTime))
            .map(|(i, _)| i)
            .ok_or_else(|| {
                err(
                    src,
                    c.time.span(),
                    "statistics-time",
                    format!(
                        "`{}` is not a date or date-time field of `{id}`",
                        c.time.get_ref()
                    ),
                )
            })?;
        let max_epsilon = micro_epsilon(*c.max_epsilon.get_ref())
            .filter(|&e| e >= MIN_QUERY_EPSILON)
            .ok_or_else(|| {
            err(
                src,
                c.max_epsilon.span(),
                "statistics-epsilon",
                format!(
                    "max_epsilon is at least {} (what one query spends at least) and at most {MAX_EPSILON}",
                    format_epsilon(MIN_QUERY_EPSILON)
                ),
            )
        })?;
        let bound = |v: &Spanned<i64>, name: &str| {
            u32::try_from(*v.get_ref())
                .ok()
                .filter(|&k| (1..=1000).contains(&k))
                .ok_or_else(|| {
                    err(
                        src,
                        v.span(),
                        "statistics-bound",
                        format!("{name} is a whole number from 1 to 1000"),
                    )
                })
        };
        let max_records = bound(&c.max_records, "max_records")?;
        let max_records_per_group = bound(&c.max_records_per_group, "max_records_per_group")?;
        if max_records_per_group > max_records {
            return Err(err(
                src,
                c.max_records_per_group.span(),
                "statistics-bound",
                "max_records_per_group is at most max_records".into(),
            ));
        }
        let delta = *c.delta.get_ref();
        if !(delta > 0.0 && delta <= 1e-5) {
            return Err(err(
                src,
                c.delta.span(),
                "statistics-delta",
                "delta is above 0 and at most 1e-5".into(),
            ));
        }
        let mut dimensions: Vec<Dimension> = Vec::new();
        let mut names = HashMap::new();
        for d in &c.dimensions {
            let raw = d.get_ref();
            let bad = |message: String| err(src, d.span(), "statistics-dimension", message);
            if !crate::taxonomy::valid_id(&raw.name) || names.insert(raw.name.clone(), ()).is_some()
            {
                return Err(bad(format!(
                    "dimension `{}` needs a unique lowercase id",
                    raw.name
                )));
            }
            let (fix, field) = cat
                .field(&raw.field)
                .ok_or_else(|| bad(format!("`{}` is not a field of `{id}`", raw.field)))?;
            let coarsen = match &raw.coarsen {
                None => Coarsen::Value,
                Some(s) => {
                    Coarsen::parse(s).ok_or_else(|| bad(format!("unknown coarsening `{s}`")))?
                }
            };
            // A field an exact-match lookup finds a person by is never a
            // dimension, however coarsened; free text, contact details,
            // identifiers and coordinates have no coarsening at all.
            let lookup = cat.lookups.iter().any(|l| l.contains(&fix));
            let fits = !lookup
                && match coarsen {
                    Coarsen::Day | Coarsen::Week => {
                        matches!(field.kind, FieldType::Date | FieldType::DateTime)
                    }
                    Coarsen::Zip3 => field.kind == FieldType::Zip,
                    // Short codes only: a long digit string is a serial or an id.
                    Coarsen::Value => {
                        matches!(field.kind, FieldType::Enum(_))
                            || (field.kind == FieldType::Digits
                                && field.max.is_some_and(|m| m <= 4))
                    }
                };
            if !fits {
                return Err(bad(format!(
                    "`{}` ({}{}) cannot be a dimension coarsened by `{}`: never a subject, address or free-text field",
                    raw.field,
                    field.kind.name(),
                    if lookup { ", a lookup field" } else { "" },
                    coarsen.as_str()
                )));
            }
            // Only values known without the data are public.
            let enumerable = matches!(coarsen, Coarsen::Day | Coarsen::Week)
                || (coarsen == Coarsen::Value && matches!(field.kind, FieldType::Enum(_)));
            if raw.public && !enumerable {
                return Err(bad(format!(
                    "`{}` cannot be public: its values are not known without the data",
                    raw.name
                )));
            }
            dimensions.push(Dimension {
                name: raw.name.clone(),
                field: fix,
                coarsen,
                public: raw.public,
            });
        }
        let mut sum_fields = Vec::new();
        for s in &c.sum {
            let f = cat
                .field(s.get_ref())
                .filter(|(_, f)| matches!(f.kind, FieldType::Integer | FieldType::Money))
                .ok_or_else(|| {
                    err(
                        src,
                        s.span(),
                        "statistics-sum",
                        format!(
                            "`{}` is not an integer or money field of `{id}`",
                            s.get_ref()
                        ),
                    )
                })?;
            sum_fields.push(f.0);
        }
        categories.push(CategoryStats {
            category: cix,
            time_field,
            dimensions,
            sum_fields,
            max_epsilon,
            max_records,
            max_records_per_group,
            delta,
        });
    }
    Ok(Statistics {
        categories,
        budgets,
    })
}
