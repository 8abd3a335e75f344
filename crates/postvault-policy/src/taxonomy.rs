//! The pack's taxonomy: categories and their fields, purposes as a tree,
//! roles, and the purpose x category matrix, parsed from `taxonomy.toml` and
//! checked. Everything here is declarative: field specs say what a value must
//! look like and how it is transformed, but this crate never touches a value
//! (the facade's minimizer does, so the policy crate never sees plaintext).

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use toml::Spanned;

use crate::contract::{EngineIds, RawEngine};
use crate::error::PackError;

/// The purpose group whose members are never a purpose of any use.
pub const PROHIBITED_GROUP: &str = "prohibited";

/// Purposes the engine prohibits whatever a pack says, each with the rule of
/// the reference behind it. A pack may declare them (in the `prohibited`
/// group, with an all-`-` matrix row) or leave them out; it can never make
/// them a purpose of any read, collection, role or disclosure.
pub const FIXED_PROHIBITED_PURPOSES: [(&str, &str); 4] = [
    // R25: customer data is not compatible with civil immigration
    // enforcement; an individual request goes through the gateway only.
    ("immigration_enforcement", "R25"),
    // R11, R19: bulk or link analysis across customer systems.
    ("bulk_analytics", "R11"),
    // R19, 5 U.S.C. 552a(e)(7): no record of how a person exercises First
    // Amendment rights.
    ("first_amendment_monitoring", "R19"),
    // R19: no queries keyed on correspondent identity ("who writes to X").
    ("correspondent_reverse_lookup", "R19"),
];

/// Parts of a purpose id that mark it as one of the fixed prohibitions under
/// another name (R25: immigration enforcement is never an internal purpose).
pub const FIXED_PROHIBITED_STEMS: [(&str, &str); 2] = [("immigration", "R25"), ("deport", "R25")];

/// The days a pack's widening change waits after it is staged when the pack
/// declares none (R4: a new purpose or routine use takes effect at least 30
/// days after publication, 39 CFR 266.4(d)).
pub const DEFAULT_CHANGE_NOTICE_DAYS: u32 = 30;

/// The rule under which the engine prohibits purpose `id` whatever a pack
/// says, if it does.
pub fn fixed_prohibition(id: &str) -> Option<&'static str> {
    FIXED_PROHIBITED_PURPOSES
        .iter()
        .find(|(p, _)| *p == id)
        .or_else(|| FIXED_PROHIBITED_STEMS.iter().find(|(s, _)| id.contains(s)))
        .map(|(_, rule)| *rule)
}

/// The file name of the taxonomy inside a pack directory.
pub const TAXONOMY_FILE: &str = "taxonomy.toml";

/// Index of a purpose in [`Taxonomy::purposes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PurposeIx(pub u16);

/// Index of a category in [`Taxonomy::categories`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CategoryIx(pub u16);

/// Index of a role in [`Taxonomy::roles`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleIx(pub u16);

/// One cell of the purpose x category matrix (§8 of the reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// `Y`: allowed.
    Allowed,
    /// `C`: allowed with the person's opt-in consent.
    Consent,
    /// `A`: aggregate or de-identified use only.
    Aggregate,
    /// `L`: only under a per-subject legal instrument.
    Instrument,
    /// `-`: denied.
    Denied,
}

impl Cell {
    fn parse(s: &str) -> Option<Cell> {
        Some(match s {
            "Y" => Cell::Allowed,
            "C" => Cell::Consent,
            "A" => Cell::Aggregate,
            "L" => Cell::Instrument,
            "-" => Cell::Denied,
            _ => return None,
        })
    }

    /// The letter used in `taxonomy.toml` and the reference.
    pub fn letter(self) -> &'static str {
        match self {
            Cell::Allowed => "Y",
            Cell::Consent => "C",
            Cell::Aggregate => "A",
            Cell::Instrument => "L",
            Cell::Denied => "-",
        }
    }
}

/// The type a field value must have.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldType {
    String,
    Email,
    Phone,
    Zip,
    State,
    Date,
    DateTime,
    Ip,
    CardNumber,
    Money,
    Integer,
    Bool,
    Lat,
    Lon,
    Imb,
    Digits,
    Hex,
    Enum(Vec<String>),
    Bytes,
}

impl FieldType {
    /// The name used in `taxonomy.toml`.
    pub fn name(&self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Zip => "zip",
            FieldType::State => "state",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Ip => "ip",
            FieldType::CardNumber => "card_number",
            FieldType::Money => "money",
            FieldType::Integer => "integer",
            FieldType::Bool => "bool",
            FieldType::Lat => "lat",
            FieldType::Lon => "lon",
            FieldType::Imb => "imb",
            FieldType::Digits => "digits",
            FieldType::Hex => "hex",
            FieldType::Enum(_) => "enum",
            FieldType::Bytes => "bytes",
        }
    }
}

/// A transform applied to a value at collection, and again on every read for
/// a purpose outside the field's `keep_for`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// IPv4 to its /24, IPv6 to its /48.
    IpPrefix,
    /// A card number becomes `{"brand", "last4"}`.
    CardLast4,
    /// Latitude or longitude rounded to 3 decimals.
    GeoRound,
}

/// What a field accepts.
#[derive(Clone, Debug)]
pub struct FieldSpec {
    pub name: String,
    pub kind: FieldType,
    /// Longest accepted value: characters for strings, bytes for `bytes`.
    pub max: Option<usize>,
    /// Largest accepted number for `money`.
    pub max_value: Option<f64>,
    pub required: bool,
    /// When set, the field is accepted only when collecting for these purposes.
    pub collect_for: Option<Vec<PurposeIx>>,
    pub transform: Option<Transform>,
    /// Purposes that see the value untransformed.
    pub keep_for: Vec<PurposeIx>,
}

impl FieldSpec {
    /// Whether this field may be collected for `purpose`.
    pub fn collectable_for(&self, purpose: PurposeIx) -> bool {
        self.collect_for
            .as_ref()
            .is_none_or(|list| list.contains(&purpose))
    }

    /// Whether `purpose` gets the value transformed.
    pub fn transformed_for(&self, purpose: PurposeIx) -> Option<Transform> {
        self.transform.filter(|_| !self.keep_for.contains(&purpose))
    }
}

/// A data category (C1-C13 in the postal pack).
#[derive(Clone, Debug)]
pub struct Category {
    pub id: String,
    pub reference: String,
    pub system_of_records: String,
    pub retention_days: u32,
    pub fields: Vec<FieldSpec>,
    /// Exact-match lookups, each a list of indexes into `fields` whose
    /// normalized values together form one blind-index token.
    pub lookups: Vec<Vec<usize>>,
}

impl Category {
    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<(usize, &FieldSpec)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name)
    }
}

/// A purpose (P1-P20 in the postal pack).
#[derive(Clone, Debug)]
pub struct Purpose {
    pub id: String,
    pub reference: String,
    pub group: String,
    pub internal: bool,
    pub collects: bool,
    pub legal_basis: bool,
    pub description: String,
}

impl Purpose {
    /// Whether the purpose sits under the prohibited group, or is one the
    /// engine prohibits whatever the pack says ([`fixed_prohibition`]).
    pub fn prohibited(&self) -> bool {
        self.group == PROHIBITED_GROUP || fixed_prohibition(&self.id).is_some()
    }
}

/// A node of the purpose tree.
#[derive(Clone, Debug)]
pub struct Group {
    pub id: String,
    pub description: String,
}

/// A role a principal acts in.
#[derive(Clone, Debug)]
pub struct Role {
    pub id: String,
    pub description: String,
    pub read_for: Vec<PurposeIx>,
    pub collect_for: Vec<PurposeIx>,
}

/// The checked taxonomy of a pack.
#[derive(Clone, Debug)]
pub struct Taxonomy {
    pub name: String,
    pub version: String,
    pub description: String,
    /// Days a change that widens any access waits after it is staged
    /// (`[pack] change_notice_days`, R4).
    pub change_notice_days: u32,
    pub groups: Vec<Group>,
    pub purposes: Vec<Purpose>,
    pub roles: Vec<Role>,
    pub categories: Vec<Category>,
    /// `[statistics]`: dimensions, bounds and budgets of aggregate queries.
    pub statistics: crate::stats::Statistics,
    /// Which of the pack's ids play the engine's parts (`[engine]`).
    engine: EngineIds,
    matrix: Vec<Cell>,
    purpose_by_id: HashMap<String, PurposeIx>,
    category_by_id: HashMap<String, CategoryIx>,
    role_by_id: HashMap<String, RoleIx>,
}

impl Taxonomy {
    pub fn purpose(&self, ix: PurposeIx) -> &Purpose {
        &self.purposes[usize::from(ix.0)]
    }

    pub fn category(&self, ix: CategoryIx) -> &Category {
        &self.categories[usize::from(ix.0)]
    }

    pub fn role(&self, ix: RoleIx) -> &Role {
        &self.roles[usize::from(ix.0)]
    }

    /// Which of the pack's ids play the engine's parts (`[engine]`): the
    /// engine names no purpose, category or role of its own.
    pub fn engine(&self) -> &EngineIds {
        &self.engine
    }

    pub fn purpose_ix(&self, id: &str) -> Option<PurposeIx> {
        self.purpose_by_id.get(id).copied()
    }

    pub fn category_ix(&self, id: &str) -> Option<CategoryIx> {
        self.category_by_id.get(id).copied()
    }

    pub fn role_ix(&self, id: &str) -> Option<RoleIx> {
        self.role_by_id.get(id).copied()
    }

    pub fn purpose_ixs(&self) -> impl Iterator<Item = PurposeIx> + '_ {
        (0..self.purposes.len()).map(|i| PurposeIx(i as u16))
    }

    pub fn category_ixs(&self) -> impl Iterator<Item = CategoryIx> + '_ {
        (0..self.categories.len()).map(|i| CategoryIx(i as u16))
    }

    pub fn role_ixs(&self) -> impl Iterator<Item = RoleIx> + '_ {
        (0..self.roles.len()).map(|i| RoleIx(i as u16))
    }

    /// The matrix cell for `purpose` x `category`.
    pub fn cell(&self, purpose: PurposeIx, category: CategoryIx) -> Cell {
        self.matrix[usize::from(purpose.0) * self.categories.len() + usize::from(category.0)]
    }

    /// Whether `purpose` reaches people's data only with their consent: a
    /// cell of it needs consent (`C`). Its statistics then count only the
    /// people whose consent to it stands.
    pub fn needs_consent(&self, purpose: PurposeIx) -> bool {
        self.category_ixs()
            .any(|c| self.cell(purpose, c) == Cell::Consent)
    }

    /// Whether `category` may be collected for `purpose` at all (before roles).
    pub fn collectable(&self, purpose: PurposeIx, category: CategoryIx) -> bool {
        let p = self.purpose(purpose);
        p.collects
            && !p.prohibited()
            && matches!(self.cell(purpose, category), Cell::Allowed | Cell::Consent)
    }

    /// Parses and checks `taxonomy.toml`. Errors name the file, the line and
    /// the check that failed.
    pub fn parse(src: &str) -> Result<Taxonomy, PackError> {
        let raw: RawTaxonomy = toml::from_str(src).map_err(|e| {
            PackError::new(
                TAXONOMY_FILE,
                e.span().map(|s| line_of(src, s.start)),
                "syntax",
                e.message().trim().to_string(),
            )
        })?;
        Builder { src }.build(raw)
    }
}

/// The 1-based line of byte `offset` in `src`.
pub(crate) fn line_of(src: &str, offset: usize) -> usize {
    src.get(..offset)
        .map_or(0, |s| s.bytes().filter(|&b| b == b'\n').count())
        + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTaxonomy {
    pack: RawPack,
    #[serde(default)]
    group: Vec<RawGroup>,
    purpose: Vec<RawPurpose>,
    #[serde(default)]
    role: Vec<RawRole>,
    matrix: toml::Table,
    category: Vec<RawCategory>,
    #[serde(default)]
    statistics: crate::stats::RawStatistics,
    engine: Option<RawEngine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    change_notice_days: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    id: Spanned<String>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    id: Spanned<String>,
    #[serde(rename = "ref", default)]
    reference: String,
    group: Spanned<String>,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    collects: bool,
    #[serde(default)]
    legal_basis: bool,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    id: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    read_for: Vec<Spanned<String>>,
    #[serde(default)]
    collect_for: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    id: Spanned<String>,
    #[serde(rename = "ref", default)]
    reference: String,
    system_of_records: String,
    retention_days: Spanned<i64>,
    #[serde(default)]
    lookups: Vec<Vec<Spanned<String>>>,
    fields: Vec<Spanned<RawField>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    values: Vec<String>,
    max: Option<usize>,
    max_value: Option<f64>,
    #[serde(default)]
    required: bool,
    collect_for: Option<Vec<String>>,
    transform: Option<String>,
    #[serde(default)]
    keep_for: Vec<String>,
}

struct Builder<'a> {
    src: &'a str,
}

impl Builder<'_> {
    fn err(&self, span: std::ops::Range<usize>, rule: &str, message: String) -> PackError {
        PackError::new(
            TAXONOMY_FILE,
            Some(line_of(self.src, span.start)),
            rule,
            message,
        )
    }

    fn build(&self, raw: RawTaxonomy) -> Result<Taxonomy, PackError> {
        let mut groups = Vec::new();
        let mut group_ids = BTreeSet::new();
        for g in raw.group {
            if !valid_id(g.id.get_ref()) || !group_ids.insert(g.id.get_ref().clone()) {
                return Err(self.err(
                    g.id.span(),
                    "group-id",
                    format!(
                        "group id `{}` is not a unique snake_case id",
                        g.id.get_ref()
                    ),
                ));
            }
            groups.push(Group {
                id: g.id.into_inner(),
                description: g.description,
            });
        }

        let mut purposes = Vec::new();
        let mut purpose_by_id = HashMap::new();
        for p in raw.purpose {
            let id = p.id.get_ref().clone();
            if !valid_id(&id) || purpose_by_id.contains_key(&id) {
                return Err(self.err(
                    p.id.span(),
                    "purpose-id",
                    format!("purpose id `{id}` is not a unique snake_case id"),
                ));
            }
            if !group_ids.contains(p.group.get_ref()) {
                return Err(self.err(
                    p.group.span(),
                    "purpose-group",
                    format!("purpose `{id}` names unknown group `{}`", p.group.get_ref()),
                ));
            }
            let prohibited = p.group.get_ref() == PROHIBITED_GROUP;
            if let Some(rule) = fixed_prohibition(&id)
                && !prohibited
            {
                return Err(self.err(
                    p.group.span(),
                    "fixed-prohibition",
                    format!(
                        "purpose `{id}` is prohibited by the engine ({rule}): no pack may place it outside the `{PROHIBITED_GROUP}` group"
                    ),
                ));
            }
            if prohibited && (p.internal || p.collects) {
                return Err(self.err(
                    p.id.span(),
                    "prohibited-purpose",
                    format!("prohibited purpose `{id}` cannot be internal or collect"),
                ));
            }
            purpose_by_id.insert(id.clone(), PurposeIx(purposes.len() as u16));
            purposes.push(Purpose {
                id,
                reference: p.reference,
                group: p.group.into_inner(),
                internal: p.internal,
                collects: p.collects,
                legal_basis: p.legal_basis,
                description: p.description,
            });
        }
        if purposes.len() > 256 {
            return Err(PackError::new(
                TAXONOMY_FILE,
                None,
                "purpose-count",
                "at most 256 purposes".into(),
            ));
        }
        let lookup_purpose = |s: &Spanned<String>, what: &str| {
            purpose_by_id.get(s.get_ref()).copied().ok_or_else(|| {
                self.err(
                    s.span(),
                    "unknown-purpose",
                    format!("{what} names unknown purpose `{}`", s.get_ref()),
                )
            })
        };

        // Roles: one per internal purpose, then the declared ones.
        let mut roles = Vec::new();
        let mut role_by_id = HashMap::new();
        for (i, p) in purposes.iter().enumerate() {
            if p.internal {
                let ix = PurposeIx(i as u16);
                role_by_id.insert(p.id.clone(), RoleIx(roles.len() as u16));
                roles.push(Role {
                    id: p.id.clone(),
                    description: format!("acts for purpose `{}` only", p.id),
                    read_for: vec![ix],
                    collect_for: if p.collects { vec![ix] } else { vec![] },
                });
            }
        }
        for r in raw.role {
            let id = r.id.get_ref().clone();
            if !valid_id(&id) || role_by_id.contains_key(&id) {
                return Err(self.err(
                    r.id.span(),
                    "role-id",
                    format!("role id `{id}` is not a unique snake_case id (internal purposes already have a role of their id)"),
                ));
            }
            let read_for = r
                .read_for
                .iter()
                .map(|p| lookup_purpose(p, &format!("role `{id}` read_for")))
                .collect::<Result<Vec<_>, _>>()?;
            let collect_for = r
                .collect_for
                .iter()
                .map(|p| lookup_purpose(p, &format!("role `{id}` collect_for")))
                .collect::<Result<Vec<_>, _>>()?;
            for (s, &ix) in r.collect_for.iter().zip(&collect_for) {
                if !purposes[usize::from(ix.0)].collects {
                    return Err(self.err(
                        s.span(),
                        "role-collect",
                        format!(
                            "role `{id}` collects for `{}`, a purpose that does not collect",
                            s.get_ref()
                        ),
                    ));
                }
            }
            for (s, &ix) in r.read_for.iter().zip(&read_for) {
                if purposes[usize::from(ix.0)].prohibited() {
                    return Err(self.err(
                        s.span(),
                        "prohibited-purpose",
                        format!("role `{id}` reads for prohibited purpose `{}`", s.get_ref()),
                    ));
                }
            }
            role_by_id.insert(id.clone(), RoleIx(roles.len() as u16));
            roles.push(Role {
                id,
                description: r.description,
                read_for,
                collect_for,
            });
        }

        let mut categories = Vec::new();
        let mut category_by_id = HashMap::new();
        for c in raw.category {
            let cat = self.category(c, &purpose_by_id)?;
            if category_by_id.contains_key(&cat.id) {
                return Err(PackError::new(
                    TAXONOMY_FILE,
                    None,
                    "category-id",
                    format!("category `{}` is declared twice", cat.id),
                ));
            }
            category_by_id.insert(cat.id.clone(), CategoryIx(categories.len() as u16));
            categories.push(cat);
        }

        let matrix = self.matrix(&raw.matrix, &purposes, &categories)?;

        let change_notice_days = match &raw.pack.change_notice_days {
            None => DEFAULT_CHANGE_NOTICE_DAYS,
            Some(d) => u32::try_from(*d.get_ref())
                .ok()
                .filter(|&d| d <= 3650)
                .ok_or_else(|| {
                    self.err(
                        d.span(),
                        "change-notice",
                        "[pack] change_notice_days is a whole number of days from 0 to 3650".into(),
                    )
                })?,
        };

        let mut tax = Taxonomy {
            name: raw.pack.name,
            version: raw.pack.version,
            description: raw.pack.description,
            change_notice_days,
            groups,
            purposes,
            roles,
            categories,
            statistics: crate::stats::Statistics::default(),
            engine: EngineIds::default(),
            matrix,
            purpose_by_id,
            category_by_id,
            role_by_id,
        };
        tax.engine = crate::contract::resolve(raw.engine, self.src, &tax)?;
        tax.statistics = crate::stats::build(self.src, raw.statistics, &tax)?;
        Ok(tax)
    }

    fn category(
        &self,
        c: RawCategory,
        purpose_by_id: &HashMap<String, PurposeIx>,
    ) -> Result<Category, PackError> {
        let id = c.id.get_ref().clone();
        if !valid_id(&id) {
            return Err(self.err(
                c.id.span(),
                "category-id",
                format!("category id `{id}` is not a snake_case id"),
            ));
        }
        let retention_days = u32::try_from(*c.retention_days.get_ref())
            .ok()
            .filter(|&d| d > 0)
            .ok_or_else(|| {
                self.err(
                    c.retention_days.span(),
                    "retention",
                    format!("category `{id}`: retention_days must be a positive whole number"),
                )
            })?;
        let mut fields: Vec<FieldSpec> = Vec::new();
        for f in c.fields {
            let span = f.span();
            let f = f.into_inner();
            let at = |rule: &str, msg: String| self.err(span.clone(), rule, msg);
            if !valid_id(&f.name) || fields.iter().any(|g| g.name == f.name) {
                return Err(at(
                    "field-name",
                    format!(
                        "category `{id}`: field `{}` is not a unique snake_case name",
                        f.name
                    ),
                ));
            }
            let kind = match f.kind.as_str() {
                "string" => FieldType::String,
                "email" => FieldType::Email,
                "phone" => FieldType::Phone,
                "zip" => FieldType::Zip,
                "state" => FieldType::State,
                "date" => FieldType::Date,
                "datetime" => FieldType::DateTime,
                "ip" => FieldType::Ip,
                "card_number" => FieldType::CardNumber,
                "money" => FieldType::Money,
                "integer" => FieldType::Integer,
                "bool" => FieldType::Bool,
                "lat" => FieldType::Lat,
                "lon" => FieldType::Lon,
                "imb" => FieldType::Imb,
                "digits" => FieldType::Digits,
                "hex" => FieldType::Hex,
                "bytes" => FieldType::Bytes,
                "enum" if !f.values.is_empty() => FieldType::Enum(f.values.clone()),
                "enum" => {
                    return Err(at(
                        "field-type",
                        format!("category `{id}`: enum field `{}` lists no values", f.name),
                    ));
                }
                other => {
                    return Err(at(
                        "field-type",
                        format!(
                            "category `{id}`: field `{}` has unknown type `{other}`",
                            f.name
                        ),
                    ));
                }
            };
            let transform = match f.transform.as_deref() {
                None => None,
                Some("ip_prefix") if kind == FieldType::Ip => Some(Transform::IpPrefix),
                Some("card_last4") if kind == FieldType::CardNumber => Some(Transform::CardLast4),
                Some("geo_round") if matches!(kind, FieldType::Lat | FieldType::Lon) => {
                    Some(Transform::GeoRound)
                }
                Some(other) => {
                    return Err(at(
                        "field-transform",
                        format!(
                            "category `{id}`: transform `{other}` does not apply to field `{}` of type `{}`",
                            f.name,
                            kind.name()
                        ),
                    ));
                }
            };
            let purpose_list = |list: &[String], what: &str| {
                list.iter()
                    .map(|p| {
                        purpose_by_id.get(p).copied().ok_or_else(|| {
                            at(
                                "unknown-purpose",
                                format!(
                                    "category `{id}`: field `{}` {what} names unknown purpose `{p}`",
                                    f.name
                                ),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            let collect_for = f
                .collect_for
                .as_deref()
                .map(|l| purpose_list(l, "collect_for"))
                .transpose()?;
            let keep_for = purpose_list(&f.keep_for, "keep_for")?;
            if !keep_for.is_empty() && transform.is_none() {
                return Err(at(
                    "field-transform",
                    format!(
                        "category `{id}`: field `{}` has keep_for but no transform",
                        f.name
                    ),
                ));
            }
            if f.required && f.collect_for.is_some() {
                return Err(at(
                    "field-required",
                    format!(
                        "category `{id}`: required field `{}` cannot be limited by collect_for",
                        f.name
                    ),
                ));
            }
            fields.push(FieldSpec {
                name: f.name,
                kind,
                max: f.max,
                max_value: f.max_value,
                required: f.required,
                collect_for,
                transform,
                keep_for,
            });
        }
        let mut lookups = Vec::new();
        for l in c.lookups {
            let mut ixs = Vec::new();
            for name in &l {
                let ix = fields
                    .iter()
                    .position(|f| &f.name == name.get_ref())
                    .ok_or_else(|| {
                        self.err(
                            name.span(),
                            "lookup",
                            format!(
                                "category `{id}`: lookup names unknown field `{}`",
                                name.get_ref()
                            ),
                        )
                    })?;
                ixs.push(ix);
            }
            if ixs.is_empty() {
                return Err(self.err(
                    c.id.span(),
                    "lookup",
                    format!("category `{id}`: an empty lookup"),
                ));
            }
            lookups.push(ixs);
        }
        Ok(Category {
            id,
            reference: c.reference,
            system_of_records: c.system_of_records,
            retention_days,
            fields,
            lookups,
        })
    }

    fn matrix(
        &self,
        raw: &toml::Table,
        purposes: &[Purpose],
        categories: &[Category],
    ) -> Result<Vec<Cell>, PackError> {
        // Spans are not kept inside a Table; find lines by searching the source.
        let line_for = |key: &str| {
            self.src
                .find(&format!("\n{key} "))
                .or_else(|| self.src.find(&format!("\n{key}=")))
                .map(|o| line_of(self.src, o + 1))
        };
        let err = |key: &str, rule: &str, msg: String| {
            PackError::new(TAXONOMY_FILE, line_for(key), rule, msg)
        };
        let columns: Vec<&str> = raw
            .get("columns")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if columns.len() != categories.len()
            || columns
                .iter()
                .zip(categories)
                .any(|(col, cat)| *col != cat.id)
        {
            return Err(err(
                "columns",
                "matrix-columns",
                format!(
                    "[matrix] columns must list every category in declaration order: {}",
                    categories
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        for key in raw.keys() {
            if key != "columns" && !purposes.iter().any(|p| &p.id == key) {
                return Err(err(
                    key,
                    "matrix-row",
                    format!("[matrix] row `{key}` is not a declared purpose"),
                ));
            }
        }
        let mut cells = Vec::with_capacity(purposes.len() * categories.len());
        for p in purposes {
            let row = raw.get(&p.id).and_then(|v| v.as_str()).ok_or_else(|| {
                err(
                    "columns",
                    "matrix-row",
                    format!(
                        "[matrix] has no row (a string of cells) for purpose `{}`",
                        p.id
                    ),
                )
            })?;
            let parts: Vec<&str> = row.split_whitespace().collect();
            if parts.len() != categories.len() {
                return Err(err(
                    &p.id,
                    "matrix-row",
                    format!(
                        "[matrix] row `{}` has {} cells, expected {}",
                        p.id,
                        parts.len(),
                        categories.len()
                    ),
                ));
            }
            for (part, cat) in parts.iter().zip(categories) {
                let cell = Cell::parse(part).ok_or_else(|| {
                    err(
                        &p.id,
                        "matrix-cell",
                        format!(
                            "[matrix] row `{}`, column `{}`: `{part}` is not one of Y C A L -",
                            p.id, cat.id
                        ),
                    )
                })?;
                if p.prohibited() && cell != Cell::Denied {
                    return Err(err(
                        &p.id,
                        "prohibited-purpose",
                        format!(
                            "[matrix] row `{}` is a prohibited purpose: every cell must be `-`, column `{}` is `{part}`",
                            p.id, cat.id
                        ),
                    ));
                }
                cells.push(cell);
            }
        }
        Ok(cells)
    }
}

pub(crate) fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
