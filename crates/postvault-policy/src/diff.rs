//! What changes between two packs: for every role x action x purpose x
//! category cell, the access it gives before and after; and every setting of
//! the taxonomy and the disclosure rules that changes, each marked as
//! widening or narrowing. A vault runs a change that widens any access only
//! after the notice period the pack declares (R4); a narrowing applies at
//! once (`postvault policy stage`, `postvault policy diff`).
//!
//! Pure: two loaded packs in, a [`PackDiff`] out. The comparison is by ids,
//! so packs with different roles, purposes or categories compare too (what
//! a pack lacks gives no access).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::Pack;
use crate::decision::{Action, DecisionRequest};
use crate::disclosure::SignerLevel;
use crate::taxonomy::Cell;

/// The access one cell gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Deny,
    /// Only with the person's opt-in consent.
    Consent,
    Allow,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Deny => "deny",
            Access::Consent => "consent",
            Access::Allow => "allow",
        }
    }
}

/// One role x action x purpose x category cell whose access changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CellChange {
    pub role: String,
    pub action: &'static str,
    pub purpose: String,
    pub category: String,
    pub from: Access,
    pub to: Access,
    pub widens: bool,
}

/// One setting of the taxonomy or the disclosure rules that changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleChange {
    /// Where: `matrix.marketing.address`, `kind.subpoena.portions`,
    /// `quotas.agency_per_24h`, `category.online_activity.retention_days`,
    /// `engine.protective_order_category`, ...
    pub setting: String,
    /// The value before and after (`absent` where one pack lacks it).
    pub from: String,
    pub to: String,
    pub widens: bool,
}

/// Everything that changes from one pack to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackDiff {
    /// The pack versions compared.
    pub from: String,
    pub to: String,
    /// The days a widening change waits: the longer of the two packs'
    /// `change_notice_days` (what was promised stays promised).
    pub notice_days: u32,
    /// Whether any access widens.
    pub widens: bool,
    pub cells: Vec<CellChange>,
    pub rules: Vec<RuleChange>,
}

impl PackDiff {
    /// Compares `old` (the pack in force) with `new`.
    pub fn new(old: &Pack, new: &Pack) -> PackDiff {
        let cells = cell_changes(old, new);
        let rules = rule_changes(&settings(old), &settings(new));
        let widens = cells.iter().any(|c| c.widens) || rules.iter().any(|r| r.widens);
        PackDiff {
            from: old.version().to_string(),
            to: new.version().to_string(),
            notice_days: old
                .taxonomy()
                .change_notice_days
                .max(new.taxonomy().change_notice_days),
            widens,
            cells,
            rules,
        }
    }

    /// Nothing a decision depends on changes.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty() && self.rules.is_empty()
    }
}

/// The access `pack` gives role `role` to `action` category `category` for
/// `purpose` (ids; what the pack lacks is [`Access::Deny`]).
fn access(pack: &Pack, role: &str, action: Action, purpose: &str, category: &str) -> Access {
    let t = pack.taxonomy();
    let (Some(role), Some(purpose), Some(category)) = (
        t.role_ix(role),
        t.purpose_ix(purpose),
        t.category_ix(category),
    ) else {
        return Access::Deny;
    };
    let req = |consent| DecisionRequest {
        role,
        action,
        purpose,
        category,
        consent,
    };
    if pack.decide(&req(false)).allowed() {
        Access::Allow
    } else if pack.decide(&req(true)).allowed() {
        Access::Consent
    } else {
        Access::Deny
    }
}

fn ids<'a>(a: impl Iterator<Item = &'a str>, b: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let set: BTreeSet<&str> = a.chain(b).collect();
    set.into_iter().collect()
}

fn cell_changes(old: &Pack, new: &Pack) -> Vec<CellChange> {
    let (o, n) = (old.taxonomy(), new.taxonomy());
    let roles = ids(
        o.roles.iter().map(|r| r.id.as_str()),
        n.roles.iter().map(|r| r.id.as_str()),
    );
    let purposes = ids(
        o.purposes.iter().map(|p| p.id.as_str()),
        n.purposes.iter().map(|p| p.id.as_str()),
    );
    let categories = ids(
        o.categories.iter().map(|c| c.id.as_str()),
        n.categories.iter().map(|c| c.id.as_str()),
    );
    let mut out = Vec::new();
    for role in &roles {
        for action in Action::ALL {
            for purpose in &purposes {
                for category in &categories {
                    let from = access(old, role, action, purpose, category);
                    let to = access(new, role, action, purpose, category);
                    if from != to {
                        out.push(CellChange {
                            role: (*role).to_string(),
                            action: action.as_str(),
                            purpose: (*purpose).to_string(),
                            category: (*category).to_string(),
                            from,
                            to,
                            widens: to > from,
                        });
                    }
                }
            }
        }
    }
    out
}

/// One setting's value, with the direction in which it widens access.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Setting {
    /// A number; `None` is unbounded. `up_widens`: a larger value widens.
    Num(Option<i64>, bool),
    /// A set; `add_widens`: an added member widens (else a removed one).
    Set(BTreeSet<String>, bool),
    /// A flag; `on_widens`: turning it on widens.
    Flag(bool, bool),
    /// A matrix cell.
    Cell(Cell),
    /// Text where any change may widen.
    Text(String),
}

impl Setting {
    fn show(&self) -> String {
        match self {
            Setting::Num(Some(n), _) => n.to_string(),
            Setting::Num(None, _) => "unbounded".into(),
            Setting::Set(s, _) => format!("[{}]", s.iter().cloned().collect::<Vec<_>>().join(", ")),
            Setting::Flag(b, _) => b.to_string(),
            Setting::Cell(c) => c.letter().to_string(),
            Setting::Text(t) => t.clone(),
        }
    }

    /// The setting as a pack that lacks it has it: the most restrictive
    /// value of its kind (no cell, no member, nothing permitted).
    fn absent(&self) -> Setting {
        match self {
            Setting::Num(_, up) => Setting::Num(Some(if *up { 0 } else { i64::MAX }), *up),
            Setting::Set(_, add) => Setting::Set(BTreeSet::new(), *add),
            Setting::Flag(_, on) => Setting::Flag(!on, *on),
            Setting::Cell(_) => Setting::Cell(Cell::Denied),
            Setting::Text(_) => Setting::Text("absent".into()),
        }
    }

    /// Whether going from `self` to `to` widens access.
    fn widens_to(&self, to: &Setting) -> bool {
        match (self, to) {
            (Setting::Num(a, up), Setting::Num(b, _)) => {
                let (a, b) = (a.unwrap_or(i64::MAX), b.unwrap_or(i64::MAX));
                if *up { b > a } else { b < a }
            }
            (Setting::Set(a, add), Setting::Set(b, _)) => {
                if *add {
                    !b.is_subset(a)
                } else {
                    // A list that narrows (court-order-only portions): it
                    // widens when a member goes, never when the list is new.
                    !a.is_empty() && !a.is_subset(b)
                }
            }
            (Setting::Flag(a, on), Setting::Flag(b, _)) => {
                if *on {
                    !a && *b
                } else {
                    *a && !b
                }
            }
            (Setting::Cell(a), Setting::Cell(b)) => {
                let rank = |c: &Cell| match c {
                    Cell::Denied => 0,
                    Cell::Instrument | Cell::Aggregate => 1,
                    Cell::Consent => 2,
                    Cell::Allowed => 3,
                };
                // L and A give different kinds of access: either way widens.
                rank(b) > rank(a) || (rank(b) == rank(a) && a != b)
            }
            // Text that goes away closes; any other change may open.
            (Setting::Text(_), Setting::Text(b)) if b == "absent" => false,
            _ => self != to,
        }
    }
}

fn level(l: SignerLevel) -> i64 {
    match l {
        SignerLevel::Agent => 0,
        SignerLevel::Supervisor => 1,
        SignerLevel::SectionChief => 2,
        SignerLevel::AgencyHead => 3,
    }
}

fn set<'a>(v: impl IntoIterator<Item = &'a String>, add_widens: bool) -> Setting {
    Setting::Set(v.into_iter().cloned().collect(), add_widens)
}

fn num(v: impl Into<i64>, up_widens: bool) -> Setting {
    Setting::Num(Some(v.into()), up_widens)
}

/// Every setting of `pack` that bears on access, by a stable path.
fn settings(pack: &Pack) -> BTreeMap<String, Setting> {
    let t = pack.taxonomy();
    let mut m = BTreeMap::new();
    m.insert(
        "pack.change_notice_days".into(),
        num(t.change_notice_days, false),
    );
    // Which ids play the engine's parts: another protective-order or
    // mail-cover category (or none) may open what the old one kept shut; an
    // auditor role sees every request.
    for (key, id) in t.engine().entries() {
        let setting = if key == "auditor_role" {
            Setting::Set(id.map(str::to_string).into_iter().collect(), true)
        } else {
            Setting::Text(id.unwrap_or("none").to_string())
        };
        m.insert(format!("engine.{key}"), setting);
    }
    for p in t.purposes.iter() {
        for c in t.category_ixs() {
            let cat = t.category(c);
            let ix = t.purpose_ix(&p.id);
            if let Some(ix) = ix {
                m.insert(
                    format!("matrix.{}.{}", p.id, cat.id),
                    Setting::Cell(t.cell(ix, c)),
                );
            }
        }
        m.insert(
            format!("purpose.{}.prohibited", p.id),
            Setting::Flag(p.prohibited(), false),
        );
        // A purpose whose last consent cell goes (to `A`, `-` or `Y`) has
        // its statistics count everyone, not only those who consented:
        // that widens, whatever its cells do to targeted reads.
        if let Some(ix) = t.purpose_ix(&p.id) {
            m.insert(
                format!("purpose.{}.statistics_consented_only", p.id),
                Setting::Flag(t.needs_consent(ix), false),
            );
        }
    }
    for cat in &t.categories {
        let base = format!("category.{}", cat.id);
        m.insert(
            format!("{base}.retention_days"),
            num(cat.retention_days, true),
        );
        let lookups: BTreeSet<String> = cat
            .lookups
            .iter()
            .map(|l| {
                l.iter()
                    .filter_map(|&ix| cat.fields.get(ix).map(|f| f.name.clone()))
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect();
        m.insert(format!("{base}.lookups"), Setting::Set(lookups, true));
        for f in &cat.fields {
            let fb = format!("{base}.field.{}", f.name);
            let purposes = |ixs: &[crate::PurposeIx]| -> BTreeSet<String> {
                ixs.iter().map(|&p| t.purpose(p).id.clone()).collect()
            };
            m.insert(
                format!("{fb}.collect_for"),
                match &f.collect_for {
                    Some(l) => Setting::Set(purposes(l), true),
                    // Every purpose: wider than any list.
                    None => Setting::Text("any purpose".into()),
                },
            );
            // Losing a transform (IP truncation, card last 4, rounding)
            // widens what every purpose outside `keep_for` sees.
            m.insert(
                format!("{fb}.untransformed"),
                Setting::Flag(f.transform.is_none(), true),
            );
            m.insert(
                format!("{fb}.keep_for"),
                Setting::Set(purposes(&f.keep_for), true),
            );
        }
    }
    for r in &t.roles {
        let purposes = |ixs: &[crate::PurposeIx]| -> BTreeSet<String> {
            ixs.iter().map(|&p| t.purpose(p).id.clone()).collect()
        };
        m.insert(
            format!("role.{}.read_for", r.id),
            Setting::Set(purposes(&r.read_for), true),
        );
        m.insert(
            format!("role.{}.collect_for", r.id),
            Setting::Set(purposes(&r.collect_for), true),
        );
    }

    let d = pack.disclosure();
    m.insert(
        "gateway.approver_roles".into(),
        set(d.approver_roles(), true),
    );
    m.insert(
        "gateway.requester_role".into(),
        Setting::Text(d.requester_role().to_string()),
    );
    m.insert(
        "gateway.court_order_portions".into(),
        set(d.court_order_portions(), false),
    );
    let q = d.quotas();
    m.insert("quotas.agency_per_24h".into(), num(q.agency_per_24h, true));
    m.insert("quotas.agency_per_30d".into(), num(q.agency_per_30d, true));
    m.insert("quotas.case_per_30d".into(), num(q.case_per_30d, true));
    for (kind, kr) in d.kinds() {
        let base = format!("kind.{kind}");
        m.insert(format!("{base}.purpose"), Setting::Text(kr.purpose.clone()));
        m.insert(format!("{base}.grounds"), set(&kr.grounds, true));
        m.insert(format!("{base}.max_subjects"), num(kr.max_subjects, true));
        m.insert(format!("{base}.portions"), set(&kr.portions, true));
        for g in &kr.grounds {
            m.insert(
                format!("{base}.portions_for.{g}"),
                set(kr.portions_for(g), true),
            );
            m.insert(
                format!("{base}.signer_level_for.{g}"),
                num(level(kr.signer_level_for(g)), false),
            );
        }
        m.insert(
            format!("{base}.signer_level"),
            num(level(kr.signer_level), false),
        );
        m.insert(
            format!("{base}.delegation_below"),
            Setting::Num(kr.delegation_below.map(level), true),
        );
        m.insert(
            format!("{base}.court_required"),
            Setting::Flag(kr.court_required, false),
        );
        m.insert(
            format!("{base}.court_order"),
            Setting::Flag(kr.court_order, true),
        );
        m.insert(
            format!("{base}.max_validity_days"),
            Setting::Num(kr.max_validity_days.map(i64::from), true),
        );
        m.insert(
            format!("{base}.max_range_days"),
            Setting::Num(kr.max_range_days.map(i64::from), true),
        );
    }
    if let Some(mc) = d.mail_cover() {
        m.insert(
            "mail_cover.exterior_portions".into(),
            set(&mc.exterior_portions, true),
        );
        m.insert("mail_cover.max_days".into(), num(mc.max_days, true));
        for (g, days) in &mc.max_days_by_ground {
            m.insert(
                format!("mail_cover.max_days_by_ground.{g}"),
                num(*days, true),
            );
        }
        m.insert(
            "mail_cover.cumulative_cap_days".into(),
            num(mc.cumulative_cap_days, true),
        );
        m.insert(
            "mail_cover.oral_confirmation_days".into(),
            num(mc.oral_confirmation_days, true),
        );
        m.insert(
            "mail_cover.penalty_must_exceed_years".into(),
            num(mc.penalty_must_exceed_years, false),
        );
        m.insert(
            "mail_cover.indictment_exempt_grounds".into(),
            set(&mc.indictment_exempt_grounds, true),
        );
        for (rt, grounds) in &mc.grounds_by_requester {
            m.insert(
                format!("mail_cover.grounds_by_requester.{rt}"),
                set(grounds, true),
            );
        }
    }
    m
}

fn rule_changes(
    old: &BTreeMap<String, Setting>,
    new: &BTreeMap<String, Setting>,
) -> Vec<RuleChange> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        // What one pack lacks compares as its most restrictive value: a new
        // purpose whose row is all `-` opens nothing.
        let change = match (old.get(k), new.get(k)) {
            (Some(a), Some(b)) if a != b => Some((a.show(), b.show(), a.widens_to(b))),
            (None, Some(b)) => Some(("absent".to_string(), b.show(), b.absent().widens_to(b))),
            (Some(a), None) => Some((a.show(), "absent".to_string(), a.widens_to(&a.absent()))),
            _ => None,
        };
        if let Some((from, to, widens)) = change {
            out.push(RuleChange {
                setting: k.clone(),
                from,
                to,
                widens,
            });
        }
    }
    out
}
