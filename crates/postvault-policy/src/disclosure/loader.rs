//! The loader of `disclosure.toml`: every rule is checked against the
//! taxonomy, and a mistake is a [`PackError`] naming the file, line and rule.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::error::PackError;
use crate::taxonomy::{Cell, TAXONOMY_FILE, Taxonomy, line_of};

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRules {
    pub(super) gateway: RawGateway,
    pub(super) quotas: RawQuotas,
    #[serde(default)]
    pub(super) kind: BTreeMap<String, Spanned<RawKind>>,
    pub(super) mail_cover: Option<RawMailCover>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    pub(super) approver_roles: Spanned<Vec<Spanned<String>>>,
    pub(super) requester_role: Spanned<String>,
    #[serde(default)]
    pub(super) court_order_portions: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuotas {
    pub(super) agency_per_24h: Spanned<i64>,
    pub(super) agency_per_30d: Spanned<i64>,
    pub(super) case_per_30d: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKind {
    pub(super) purpose: Spanned<String>,
    pub(super) grounds: Spanned<Vec<Spanned<String>>>,
    pub(super) max_subjects: Spanned<i64>,
    pub(super) portions: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) portions_by_ground: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    pub(super) signer_level: Spanned<String>,
    #[serde(default)]
    pub(super) signer_level_by_ground: BTreeMap<String, Spanned<String>>,
    pub(super) delegation_below: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) court_required: bool,
    pub(super) court_order: Option<Spanned<bool>>,
    pub(super) max_validity_days: Option<Spanned<i64>>,
    pub(super) max_range_days: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMailCover {
    pub(super) exterior_portions: Spanned<Vec<Spanned<String>>>,
    pub(super) max_days: Spanned<i64>,
    #[serde(default)]
    pub(super) max_days_by_ground: BTreeMap<String, Spanned<i64>>,
    pub(super) cumulative_cap_days: Spanned<i64>,
    pub(super) oral_confirmation_days: Spanned<i64>,
    pub(super) penalty_ground: Spanned<String>,
    pub(super) penalty_must_exceed_years: Spanned<i64>,
    #[serde(default)]
    pub(super) indictment_exempt_grounds: Vec<Spanned<String>>,
    pub(super) grounds_by_requester: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
}

pub(super) struct Loader<'a> {
    pub(super) src: &'a str,
    pub(super) taxonomy: &'a Taxonomy,
}

pub(super) type Span = Range<usize>;

impl Loader<'_> {
    pub(super) fn err(&self, span: Span, rule: &str, message: String) -> PackError {
        PackError::new(
            DISCLOSURE_FILE,
            Some(line_of(self.src, span.start)),
            rule,
            message,
        )
    }

    /// The line of a table header such as `[kind.warrant]`, if present.
    pub(super) fn header_line(&self, header: &str) -> Option<usize> {
        self.src.find(header).map(|o| line_of(self.src, o))
    }

    pub(super) fn err_at_header(&self, header: &str, rule: &str, message: String) -> PackError {
        PackError::new(DISCLOSURE_FILE, self.header_line(header), rule, message)
    }

    pub(super) fn positive(
        &self,
        v: &Spanned<i64>,
        rule: &str,
        what: &str,
    ) -> Result<u32, PackError> {
        u32::try_from(*v.get_ref())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                self.err(
                    v.span(),
                    rule,
                    format!("{what} must be a positive whole number"),
                )
            })
    }

    pub(super) fn category(&self, s: &Spanned<String>, what: &str) -> Result<String, PackError> {
        let id = s.get_ref();
        if self.taxonomy.category_ix(id).is_none() {
            return Err(self.err(
                s.span(),
                "unknown-category",
                format!("{what} names unknown category `{id}`"),
            ));
        }
        Ok(id.clone())
    }

    pub(super) fn ground(&self, s: &Spanned<String>, what: &str) -> Result<String, PackError> {
        let id = s.get_ref();
        let fixed = crate::taxonomy::FIXED_PROHIBITED_PURPOSES
            .iter()
            .any(|(p, _)| p == id);
        if fixed
            || self
                .taxonomy
                .purposes
                .iter()
                .any(|p| p.prohibited() && &p.id == id)
        {
            return Err(self.err(
                s.span(),
                "prohibited-purpose",
                format!(
                    "{what}: `{id}` is a prohibited purpose and never a ground of a disclosure"
                ),
            ));
        }
        if !looks_like_id(id) {
            return Err(self.err(
                s.span(),
                "ground-id",
                format!("{what}: ground `{id}` is not a snake_case id"),
            ));
        }
        Ok(id.clone())
    }

    pub(super) fn level(&self, s: &Spanned<String>, what: &str) -> Result<SignerLevel, PackError> {
        SignerLevel::from_id(s.get_ref()).ok_or_else(|| {
            self.err(
                s.span(),
                "signer-level",
                format!(
                    "{what}: `{}` is not one of agent, supervisor, section_chief, agency_head",
                    s.get_ref()
                ),
            )
        })
    }

    pub(super) fn unique(
        &self,
        list: &[Spanned<String>],
        rule: &str,
        what: &str,
    ) -> Result<(), PackError> {
        let mut seen = BTreeSet::new();
        for s in list {
            if !seen.insert(s.get_ref()) {
                return Err(self.err(
                    s.span(),
                    rule,
                    format!("{what} lists `{}` twice", s.get_ref()),
                ));
            }
        }
        Ok(())
    }

    /// Refuses a list of a kind's `noun` (grounds, portions) that is empty
    /// or names an id twice.
    fn listed_once(
        &self,
        list: &Spanned<Vec<Spanned<String>>>,
        rule: &str,
        what: &str,
        noun: &str,
    ) -> Result<(), PackError> {
        if list.get_ref().is_empty() {
            return Err(self.err(list.span(), rule, format!("{what} lists no {noun}")));
        }
        self.unique(list.get_ref(), rule, &format!("{what} {noun}"))
    }

    pub(super) fn build(&self, raw: RawRules) -> Result<DisclosureRules, PackError> {
        let t = self.taxonomy;
        let gw = raw.gateway;

        let requester_role = gw.requester_role.get_ref().clone();
        if t.role_ix(&requester_role).is_none() {
            return Err(self.err(
                gw.requester_role.span(),
                "unknown-role",
                format!("[gateway] requester_role names unknown role `{requester_role}`"),
            ));
        }
        let mut approver_roles = Vec::new();
        for r in gw.approver_roles.get_ref() {
            let id = r.get_ref();
            if t.role_ix(id).is_none() {
                return Err(self.err(
                    r.span(),
                    "unknown-role",
                    format!("[gateway] approver_roles names unknown role `{id}`"),
                ));
            }
            if *id == requester_role || approver_roles.contains(id) {
                return Err(self.err(
                    r.span(),
                    "approver-role",
                    format!("[gateway] approver role `{id}` is the requester role or listed twice"),
                ));
            }
            approver_roles.push(id.clone());
        }
        if approver_roles.is_empty() {
            return Err(self.err(
                gw.approver_roles.span(),
                "approver-role",
                "[gateway] approver_roles lists no role".into(),
            ));
        }
        // The gateway accounts for every disclosure to the person and holds
        // a request naming someone with a protective order on file (R9): a
        // pack that declares the engine's parts names where both are.
        let engine = t.engine();
        if engine.declared() {
            for (key, id, why) in [
                (
                    "disclosure_accounting_category",
                    engine.disclosure_accounting_category(),
                    "the category the accounting of disclosures is read as (R13)",
                ),
                (
                    "protective_order_category",
                    engine.protective_order_category(),
                    "where a protective order on file is recorded, so a request naming its person is held (R9)",
                ),
            ] {
                if id.is_none() {
                    return Err(self.err_at_header(
                        "[gateway]",
                        "engine-id",
                        format!(
                            "a pack with {DISCLOSURE_FILE} names its {key} in the [engine] table of {TAXONOMY_FILE}: {why}"
                        ),
                    ));
                }
            }
        }
        let court_order_portions = gw
            .court_order_portions
            .iter()
            .map(|s| self.category(s, "[gateway] court_order_portions"))
            .collect::<Result<Vec<_>, _>>()?;
        self.unique(
            &gw.court_order_portions,
            "portion",
            "[gateway] court_order_portions",
        )?;

        let q = raw.quotas;
        let quotas = Quotas {
            agency_per_24h: self.positive(&q.agency_per_24h, "quota", "[quotas] agency_per_24h")?,
            agency_per_30d: self.positive(&q.agency_per_30d, "quota", "[quotas] agency_per_30d")?,
            case_per_30d: self.positive(&q.case_per_30d, "quota", "[quotas] case_per_30d")?,
        };
        if quotas.agency_per_24h > quotas.agency_per_30d {
            return Err(self.err(
                q.agency_per_24h.span(),
                "quota",
                "[quotas] agency_per_24h is larger than agency_per_30d".into(),
            ));
        }

        let mail_cover = raw
            .mail_cover
            .as_ref()
            .map(|m| self.mail_cover(m))
            .transpose()?;

        let mut kinds = BTreeMap::new();
        for (name, rk) in &raw.kind {
            let header = format!("[kind.{name}]");
            let Some(kind) = InstrumentKind::from_id(name) else {
                return Err(self.err_at_header(
                    &header,
                    "unknown-kind",
                    format!(
                        "`{name}` is not an instrument kind: court_order, warrant, written_request, subpoena, mail_cover"
                    ),
                ));
            };
            let kr = self.kind(
                kind,
                rk.get_ref(),
                &court_order_portions,
                mail_cover.as_ref(),
                &header,
            )?;
            kinds.insert(kind, kr);
        }

        Ok(DisclosureRules {
            kinds,
            approver_roles,
            requester_role,
            court_order_portions,
            prohibited_purposes: prohibited_purposes(t),
            categories: t.categories.iter().map(|c| c.id.clone()).collect(),
            quotas,
            mail_cover,
        })
    }

    pub(super) fn kind(
        &self,
        kind: InstrumentKind,
        rk: &RawKind,
        court_order_portions: &[String],
        mail_cover: Option<&MailCoverLimits>,
        header: &str,
    ) -> Result<KindRules, PackError> {
        let t = self.taxonomy;
        let what = format!("[kind.{kind}]");

        let purpose = rk.purpose.get_ref();
        let Some(pix) = t.purpose_ix(purpose) else {
            return Err(self.err(
                rk.purpose.span(),
                "unknown-purpose",
                format!("{what} purpose names unknown purpose `{purpose}`"),
            ));
        };
        if t.purpose(pix).prohibited() {
            return Err(self.err(
                rk.purpose.span(),
                "prohibited-purpose",
                format!("{what} purpose `{purpose}` is prohibited"),
            ));
        }

        let grounds = rk
            .grounds
            .get_ref()
            .iter()
            .map(|g| self.ground(g, &format!("{what} grounds")))
            .collect::<Result<Vec<_>, _>>()?;
        self.listed_once(&rk.grounds, "ground-id", &what, "grounds")?;
        if kind == InstrumentKind::MailCover {
            if t.engine().declared() && t.engine().mail_cover_record_category().is_none() {
                return Err(self.err_at_header(
                    header,
                    "engine-id",
                    format!(
                        "{what} needs the mail_cover_record_category in the [engine] table of {TAXONOMY_FILE}: the category a cover's records are kept in, sealed under its order's key"
                    ),
                ));
            }
            if mail_cover.is_none() {
                return Err(self.err_at_header(
                    header,
                    "mail-cover",
                    format!("{what} needs a [mail_cover] table with the limits of 39 cfr 233.3"),
                ));
            }
            for g in rk.grounds.get_ref() {
                if !MAIL_COVER_GROUNDS.contains(&g.get_ref().as_str()) {
                    return Err(self.err(
                        g.span(),
                        "mail-cover-ground",
                        format!(
                            "{what}: `{}` is not a ground of 39 cfr 233.3(c)(1): {}",
                            g.get_ref(),
                            MAIL_COVER_GROUNDS.join(", ")
                        ),
                    ));
                }
            }
        }

        let court_order = rk.court_order.as_ref().is_some_and(|b| *b.get_ref());
        let court_order_span = rk.court_order.as_ref().map_or(0..0, Spanned::span);
        if court_order && !kind.may_be_court_order() {
            return Err(self.err(
                court_order_span.clone(),
                "court-order",
                format!("{what}: only court_order and warrant may count as a court order"),
            ));
        }
        if court_order && !rk.court_required {
            return Err(self.err(
                court_order_span,
                "court-order",
                format!("{what}: a court order must require a court block (court_required)"),
            ));
        }

        let max_subjects = self.positive(
            &rk.max_subjects,
            "max-subjects",
            &format!("{what} max_subjects"),
        )?;
        if !court_order && max_subjects != 1 {
            return Err(self.err(
                rk.max_subjects.span(),
                "max-subjects",
                format!("{what}: only a court order may name more than one subject"),
            ));
        }

        let mut portions = Vec::new();
        for p in rk.portions.get_ref() {
            let id = self.category(p, &format!("{what} portions"))?;
            let cix = t
                .category_ix(&id)
                .ok_or_else(|| self.err(p.span(), "unknown-category", format!("unknown `{id}`")))?;
            if !matches!(t.cell(pix, cix), Cell::Instrument | Cell::Allowed) {
                return Err(self.err(
                    p.span(),
                    "portion-matrix",
                    format!(
                        "{what}: purpose `{purpose}` may not read `{id}` under an instrument (matrix cell `{}`)",
                        t.cell(pix, cix).letter()
                    ),
                ));
            }
            if !court_order && court_order_portions.contains(&id) {
                return Err(self.err(
                    p.span(),
                    "court-order-portion",
                    format!("{what}: `{id}` goes out only under a court order"),
                ));
            }
            if let Some(mc) = mail_cover
                && kind == InstrumentKind::MailCover
                && !mc.exterior_portions.contains(&id)
            {
                return Err(self.err(
                    p.span(),
                    "mail-cover-exterior",
                    format!("{what}: `{id}` is not in [mail_cover] exterior_portions"),
                ));
            }
            portions.push(id);
        }
        self.listed_once(&rk.portions, "portion", &what, "portions")?;

        let mut portions_by_ground = BTreeMap::new();
        for (g, list) in &rk.portions_by_ground {
            if !grounds.contains(g) {
                return Err(self.err(
                    list.span(),
                    "unknown-ground",
                    format!("{what} portions_by_ground: `{g}` is not one of the kind's grounds"),
                ));
            }
            let mut narrowed = Vec::new();
            for p in list.get_ref() {
                if !portions.contains(p.get_ref()) {
                    return Err(self.err(
                        p.span(),
                        "portion",
                        format!(
                            "{what} portions_by_ground.{g}: `{}` is not in the kind's portions",
                            p.get_ref()
                        ),
                    ));
                }
                narrowed.push(p.get_ref().clone());
            }
            portions_by_ground.insert(g.clone(), narrowed);
        }

        let signer_level = self.level(&rk.signer_level, &format!("{what} signer_level"))?;
        let mut signer_level_by_ground = BTreeMap::new();
        for (g, lv) in &rk.signer_level_by_ground {
            if !grounds.contains(g) {
                return Err(self.err(
                    lv.span(),
                    "unknown-ground",
                    format!(
                        "{what} signer_level_by_ground: `{g}` is not one of the kind's grounds"
                    ),
                ));
            }
            let level = self.level(lv, &format!("{what} signer_level_by_ground.{g}"))?;
            if level < signer_level {
                return Err(self.err(
                    lv.span(),
                    "signer-level",
                    format!("{what} signer_level_by_ground.{g} may only raise signer_level"),
                ));
            }
            signer_level_by_ground.insert(g.clone(), level);
        }
        let delegation_below = rk
            .delegation_below
            .as_ref()
            .map(|s| self.level(s, &format!("{what} delegation_below")))
            .transpose()?;
        // Floors the pack may not go below.
        if kind == InstrumentKind::WrittenRequest && signer_level < SignerLevel::SectionChief {
            return Err(self.err(
                rk.signer_level.span(),
                "signer-level",
                format!(
                    "{what}: a (b)(7) request is signed by the agency head or a delegate not below section_chief"
                ),
            ));
        }
        if kind == InstrumentKind::MailCover
            && grounds.iter().any(|g| g == "national_security")
            && signer_level_by_ground
                .get("national_security")
                .copied()
                .unwrap_or(signer_level)
                < SignerLevel::AgencyHead
        {
            let span = rk
                .signer_level_by_ground
                .get("national_security")
                .map_or_else(|| rk.signer_level.span(), Spanned::span);
            return Err(self.err(
                span,
                "signer-level",
                format!(
                    "{what}: a national-security cover is approved personally by the agency head (233.3(g)(8)): set signer_level_by_ground.national_security = \"agency_head\""
                ),
            ));
        }

        let max_validity_days = rk
            .max_validity_days
            .as_ref()
            .map(|d| self.positive(d, "duration", &format!("{what} max_validity_days")))
            .transpose()?;
        let max_range_days = rk
            .max_range_days
            .as_ref()
            .map(|d| self.positive(d, "duration", &format!("{what} max_range_days")))
            .transpose()?;

        Ok(KindRules {
            purpose: purpose.clone(),
            grounds,
            max_subjects,
            portions,
            portions_by_ground,
            signer_level,
            signer_level_by_ground,
            delegation_below,
            court_required: rk.court_required,
            court_order,
            max_validity_days,
            max_range_days,
        })
    }

    pub(super) fn mail_cover(&self, m: &RawMailCover) -> Result<MailCoverLimits, PackError> {
        let what = "[mail_cover]";
        let exterior_portions = m
            .exterior_portions
            .get_ref()
            .iter()
            .map(|s| self.category(s, "[mail_cover] exterior_portions"))
            .collect::<Result<Vec<_>, _>>()?;
        let limit = |v: &Spanned<i64>, name: &str, lo: i64, hi: i64, why: &str| {
            let n = *v.get_ref();
            if n < lo || n > hi {
                return Err(self.err(
                    v.span(),
                    "mail-cover-limit",
                    format!("{what} {name} must be between {lo} and {hi}: {why}"),
                ));
            }
            u32::try_from(n).map_err(|_| {
                self.err(
                    v.span(),
                    "mail-cover-limit",
                    format!("{what} {name} is out of range"),
                )
            })
        };
        let max_days = limit(
            &m.max_days,
            "max_days",
            1,
            REG_MAX_DAYS,
            "233.3(g)(5) allows 30 days per order",
        )?;
        let cumulative_cap_days = limit(
            &m.cumulative_cap_days,
            "cumulative_cap_days",
            1,
            REG_CUMULATIVE_CAP,
            "233.3(g)(6) caps covers at 120 continuous days",
        )?;
        let oral_confirmation_days = limit(
            &m.oral_confirmation_days,
            "oral_confirmation_days",
            0,
            REG_ORAL_DAYS,
            "233.3(e)(3) wants written confirmation within 3 calendar days",
        )?;
        let penalty_must_exceed_years = limit(
            &m.penalty_must_exceed_years,
            "penalty_must_exceed_years",
            REG_PENALTY_YEARS,
            99,
            "233.3(c)(6) defines a crime as punishable by over one year",
        )?;
        let mc_ground = |s: &Spanned<String>, name: &str, allowed: &[&str]| {
            let g = self.ground(s, &format!("{what} {name}"))?;
            if !allowed.contains(&g.as_str()) {
                return Err(self.err(
                    s.span(),
                    "mail-cover-ground",
                    format!(
                        "{what} {name}: `{g}` may not appear here (allowed: {})",
                        allowed.join(", ")
                    ),
                ));
            }
            Ok(g)
        };
        let penalty_ground = mc_ground(&m.penalty_ground, "penalty_ground", &["crime"])?;
        let indictment_exempt_grounds = m
            .indictment_exempt_grounds
            .iter()
            .map(|g| mc_ground(g, "indictment_exempt_grounds", &INDICTMENT_EXEMPT_GROUNDS))
            .collect::<Result<Vec<_>, _>>()?;
        let mut max_days_by_ground = BTreeMap::new();
        for (g, v) in &m.max_days_by_ground {
            if !DURATION_EXEMPT_GROUNDS.contains(&g.as_str()) {
                return Err(self.err(
                    v.span(),
                    "mail-cover-limit",
                    format!(
                        "{what} max_days_by_ground: `{g}` is not exempt from the 30 days (233.3(g)(5) exempts {})",
                        DURATION_EXEMPT_GROUNDS.join(", ")
                    ),
                ));
            }
            let days = limit(
                v,
                &format!("max_days_by_ground.{g}"),
                1,
                i64::from(cumulative_cap_days),
                "an order never runs past the cumulative cap",
            )?;
            max_days_by_ground.insert(g.clone(), days);
        }
        let mut grounds_by_requester = BTreeMap::new();
        for (name, list) in &m.grounds_by_requester {
            let Some(rt) = RequesterType::from_id(name) else {
                return Err(self.err(
                    list.span(),
                    "mail-cover-ground",
                    format!(
                        "{what} grounds_by_requester: `{name}` is not postal_inspector or law_enforcement_agency"
                    ),
                ));
            };
            // 233.3(e)(1): inspectors ask for postal-statute covers; (e)(2):
            // law enforcement agencies for the other grounds.
            let allowed: &[&str] = match rt {
                RequesterType::PostalInspector => &["postal_statute"],
                RequesterType::LawEnforcementAgency => {
                    &["national_security", "fugitive", "crime", "forfeiture"]
                }
            };
            let grounds = list
                .get_ref()
                .iter()
                .map(|g| mc_ground(g, &format!("grounds_by_requester.{name}"), allowed))
                .collect::<Result<Vec<_>, _>>()?;
            grounds_by_requester.insert(rt, grounds);
        }
        Ok(MailCoverLimits {
            exterior_portions,
            max_days,
            max_days_by_ground,
            cumulative_cap_days,
            oral_confirmation_days,
            penalty_ground,
            penalty_must_exceed_years,
            indictment_exempt_grounds,
            grounds_by_requester,
        })
    }
}
