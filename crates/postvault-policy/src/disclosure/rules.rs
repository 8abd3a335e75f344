//! The disclosure rules of a pack (`disclosure.toml`) as the checker reads
//! them.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::PackError;
use crate::taxonomy::{Taxonomy, line_of};

use super::*;

/// The rules for one instrument kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindRules {
    /// The taxonomy purpose the gateway reads for.
    pub purpose: String,
    pub grounds: Vec<String>,
    pub max_subjects: u32,
    pub portions: Vec<String>,
    /// Narrower portion lists for some grounds.
    pub portions_by_ground: BTreeMap<String, Vec<String>>,
    pub signer_level: SignerLevel,
    /// Higher signer levels for some grounds.
    pub signer_level_by_ground: BTreeMap<String, SignerLevel>,
    /// A signer below this level must cite a written delegation.
    pub delegation_below: Option<SignerLevel>,
    pub court_required: bool,
    /// The instrument is an order of a court (R7, R9).
    pub court_order: bool,
    pub max_validity_days: Option<u32>,
    pub max_range_days: Option<u32>,
}

impl KindRules {
    /// The signer level `ground` needs.
    pub fn signer_level_for(&self, ground: &str) -> SignerLevel {
        self.signer_level_by_ground
            .get(ground)
            .copied()
            .unwrap_or(self.signer_level)
    }

    /// The portions that may be asked for on `ground`.
    pub fn portions_for(&self, ground: &str) -> &[String] {
        self.portions_by_ground
            .get(ground)
            .map_or(self.portions.as_slice(), Vec::as_slice)
    }
}

/// Anti-enumeration limits over rolling windows (R10). A request beyond one
/// is held for review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    pub agency_per_24h: u32,
    pub agency_per_30d: u32,
    pub case_per_30d: u32,
}

/// The mail-cover limits of 39 CFR 233.3 as the pack sets them (never looser
/// than the regulation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailCoverLimits {
    /// Categories that are data on the outside of mail.
    pub exterior_portions: Vec<String>,
    pub max_days: u32,
    /// Longer orders for the grounds 233.3(g)(5) exempts.
    pub max_days_by_ground: BTreeMap<String, u32>,
    pub cumulative_cap_days: u32,
    pub oral_confirmation_days: u32,
    pub penalty_ground: String,
    pub penalty_must_exceed_years: u32,
    pub indictment_exempt_grounds: Vec<String>,
    pub grounds_by_requester: BTreeMap<RequesterType, Vec<String>>,
}

impl MailCoverLimits {
    /// The longest order on `ground`, in days.
    pub fn max_days_for(&self, ground: &str) -> u32 {
        self.max_days_by_ground
            .get(ground)
            .copied()
            .unwrap_or(self.max_days)
    }

    /// The end (exclusive) of an order on `ground` from `start_ms` for `days`.
    pub fn order_end_ms(&self, start_ms: i64, days: u32, ground: &str) -> i64 {
        mail_cover_order_end_ms(start_ms, days, self.max_days_for(ground))
    }

    /// The instant (exclusive) by which an oral request must be confirmed.
    pub fn confirmation_deadline_ms(&self, oral_at_ms: i64) -> i64 {
        confirmation_deadline_ms(oral_at_ms, self.oral_confirmation_days)
    }

    /// Whether `cumulative_days` is allowed, with or without the Chief Postal
    /// Inspector's personal approval.
    pub fn within_cumulative_cap(&self, cumulative_days: u32, cpi_approved: bool) -> bool {
        cpi_approved || cumulative_days <= self.cumulative_cap_days
    }

    /// Whether an indictment or information ends a cover on `ground`.
    pub fn ends_on_indictment(&self, ground: &str) -> bool {
        !self.indictment_exempt_grounds.iter().any(|g| g == ground)
    }
}

/// The checked disclosure rules of a pack. A pack without `disclosure.toml`
/// has [`DisclosureRules::none`]: every instrument is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisclosureRules {
    pub(super) kinds: BTreeMap<InstrumentKind, KindRules>,
    pub(super) approver_roles: Vec<String>,
    pub(super) requester_role: String,
    pub(super) court_order_portions: Vec<String>,
    pub(super) prohibited_purposes: Vec<String>,
    pub(super) categories: BTreeSet<String>,
    pub(super) quotas: Quotas,
    pub(super) mail_cover: Option<MailCoverLimits>,
}

impl DisclosureRules {
    /// No disclosure at all: every kind is refused (`kind_not_allowed`).
    pub fn none(taxonomy: &Taxonomy) -> DisclosureRules {
        DisclosureRules {
            kinds: BTreeMap::new(),
            approver_roles: Vec::new(),
            requester_role: String::new(),
            court_order_portions: Vec::new(),
            prohibited_purposes: prohibited_purposes(taxonomy),
            categories: taxonomy.categories.iter().map(|c| c.id.clone()).collect(),
            quotas: Quotas {
                agency_per_24h: u32::MAX,
                agency_per_30d: u32::MAX,
                case_per_30d: u32::MAX,
            },
            mail_cover: None,
        }
    }

    /// Parses and checks `disclosure.toml` against the pack's taxonomy.
    /// Errors read `disclosure.toml:LINE: [check] message`.
    pub fn parse(src: &str, taxonomy: &Taxonomy) -> Result<DisclosureRules, PackError> {
        let raw: RawRules = toml::from_str(src).map_err(|e| {
            PackError::new(
                DISCLOSURE_FILE,
                e.span().map(|s| line_of(src, s.start)),
                "syntax",
                e.message().trim().to_string(),
            )
        })?;
        Loader { src, taxonomy }.build(raw)
    }

    /// The rules of `kind`, if the pack allows it at all.
    pub fn kind(&self, kind: InstrumentKind) -> Option<&KindRules> {
        self.kinds.get(&kind)
    }

    /// The kinds the pack allows, in order.
    pub fn kinds(&self) -> impl Iterator<Item = (InstrumentKind, &KindRules)> {
        self.kinds.iter().map(|(k, r)| (*k, r))
    }

    pub fn approver_roles(&self) -> &[String] {
        &self.approver_roles
    }

    pub fn requester_role(&self) -> &str {
        &self.requester_role
    }

    /// Portions that go out only under a court order (R7).
    pub fn court_order_portions(&self) -> &[String] {
        &self.court_order_portions
    }

    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    pub fn mail_cover(&self) -> Option<&MailCoverLimits> {
        self.mail_cover.as_ref()
    }

    /// When `inst` stops being valid (exclusive), as far as the rules tell:
    /// for a mail cover the end of the order (capped), otherwise `expires_at`
    /// or the kind's longest validity after `issued_at`, whichever is first.
    /// `None` when it cannot be told (missing dates, unknown kind) or the
    /// instrument has no end.
    pub fn valid_until_ms(&self, inst: &Instrument) -> Option<i64> {
        let kr = self.kind(inst.kind)?;
        let expires = inst.expires_at.map(|t| t.0);
        let end = if inst.kind == InstrumentKind::MailCover {
            let mc = self.mail_cover.as_ref()?;
            Some(mc.order_end_ms(inst.start?.0, inst.days?, &inst.ground))
        } else {
            let issued = inst.issued_at?.0;
            kr.max_validity_days
                .map(|d| issued.saturating_add(i64::from(d).saturating_mul(DAY_MS)))
        };
        match (expires, end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The pack's prohibited purposes and the engine's fixed ones.
pub(super) fn prohibited_purposes(t: &Taxonomy) -> Vec<String> {
    let mut ids: BTreeSet<String> = t
        .purposes
        .iter()
        .filter(|p| p.prohibited())
        .map(|p| p.id.clone())
        .collect();
    ids.extend(
        crate::taxonomy::FIXED_PROHIBITED_PURPOSES
            .iter()
            .map(|(p, _)| (*p).to_string()),
    );
    ids.into_iter().collect()
}

impl DisclosureRules {
    /// A request's ground as a ledger keeps it: folded by [`fold_id`] (the
    /// folding the check uses, so a prohibited ground spelled with Unicode
    /// hyphens or full-width letters is counted as itself), kept when it is
    /// a ground of the pack, a mail-cover ground or a purpose of `taxonomy`
    /// (a prohibited purpose a request was refused for), else `other`;
    /// never free text.
    pub fn ledger_ground(&self, taxonomy: &Taxonomy, ground: &str) -> String {
        let g = fold_id(ground);
        if g.is_empty() {
            return g;
        }
        let known = self.kinds().any(|(_, kr)| kr.grounds.contains(&g))
            || MAIL_COVER_GROUNDS.contains(&g.as_str())
            || taxonomy.purpose_ix(&g).is_some();
        if known { g } else { "other".into() }
    }
}

/// A ground or purpose as an id: NFKC (full-width letters, compatibility
/// hyphens), lowercase, every run of other characters one `_`. So
/// `Immigration‐Enforcement` (a Unicode hyphen) and `ＩＭＭＩＧＲＡＴＩＯＮ
/// enforcement` are `immigration_enforcement`.
pub fn fold_id(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let mut out = String::new();
    let mut gap = false;
    for c in s.nfkc().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c);
        } else if !unicode_normalization::char::is_combining_mark(c) {
            gap = true;
        }
    }
    out
}
