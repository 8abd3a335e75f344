//! The engine's contract with a pack: which of the pack's ids play the parts
//! the engine itself gives a meaning to (`[engine]` in `taxonomy.toml`).
//!
//! The engine never names a purpose, category or role of a pack: the rights
//! channel serves the person through the pack's subject-access purpose, the
//! gateway looks for protective orders in the pack's protective-order
//! category, seals a mail cover's records under their order's key when they
//! are of the pack's mail-cover record category, and so on. Each part is
//! checked at load: the id exists, is of the right kind, and the category has
//! the fields the engine reads. A part a pack leaves out turns off what needs
//! it; nothing is ever allowed for want of it (`docs/policy-pack.md`).

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::error::PackError;
use crate::taxonomy::{Category, FieldType, TAXONOMY_FILE, Taxonomy, line_of};

/// The table header in `taxonomy.toml`.
pub const ENGINE_TABLE: &str = "[engine]";

/// What a pack without an `[engine]` table gets: the ids the engine fixed
/// before packs declared them, each only where the pack has an id of that
/// name and kind. A vault that recorded a pack before the contract runs it
/// exactly as it did (`Taxonomy::engine`, [`EngineIds::declared`]).
pub const UNDECLARED_IDS: [(&str, &str); 5] = [
    ("subject_access_purpose", "subject_access"),
    ("disclosure_accounting_category", "disclosure_accounting"),
    ("protective_order_category", "protective_order"),
    ("mail_cover_record_category", "mail_cover_record"),
    ("auditor_role", "auditor"),
];

/// The field of the protective-order category the engine reads (`bool`):
/// an order is on file when it is `true`.
pub const PROTECTIVE_ORDER_FIELD: &str = "on_file";
/// The field of a mail-cover record naming the order it is recorded under
/// (a required `string`).
pub const COVER_ORDER_FIELD: &str = "order_id";
/// The fields of a mail-cover record compared with the subject's known
/// attorney (`string`): correspondence with the attorney is never recorded.
pub const COVER_PARTY_FIELDS: [&str; 2] = ["sender_as_shown", "return_address"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEngine {
    subject_access_purpose: Option<Spanned<String>>,
    disclosure_accounting_category: Option<Spanned<String>>,
    protective_order_category: Option<Spanned<String>>,
    mail_cover_record_category: Option<Spanned<String>>,
    auditor_role: Option<Spanned<String>>,
}

/// The ids of a pack that play the engine's parts (`[engine]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineIds {
    subject_access_purpose: Option<String>,
    disclosure_accounting_category: Option<String>,
    protective_order_category: Option<String>,
    mail_cover_record_category: Option<String>,
    auditor_role: Option<String>,
    declared: bool,
    line: Option<usize>,
}

impl EngineIds {
    /// Whether the pack declares `[engine]`. Without it (a pack from before
    /// the contract) the engine took [`UNDECLARED_IDS`].
    pub fn declared(&self) -> bool {
        self.declared
    }

    /// The line of the `[engine]` header in `taxonomy.toml`.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The purpose the person's own requests are served for: a role that
    /// reads for it records consent, corrects, erases one person, reads the
    /// accounting of disclosures and answers subject access; a read for it
    /// also sees corrected records' history. Required in `[engine]`.
    pub fn subject_access_purpose(&self) -> Option<&str> {
        self.subject_access_purpose.as_deref()
    }

    /// Whether `purpose` is the subject-access purpose.
    pub fn is_subject_access(&self, purpose: &str) -> bool {
        self.subject_access_purpose() == Some(purpose)
    }

    /// The category the accounting of disclosures is read as (its leaf names
    /// it); its records are never corrected. Required with
    /// `disclosure.toml`.
    pub fn disclosure_accounting_category(&self) -> Option<&str> {
        self.disclosure_accounting_category.as_deref()
    }

    /// The category where a protective order on file is recorded (R9): a
    /// submission naming a person with one (`on_file` true, not expired) is
    /// held for the privacy office. Required with `disclosure.toml`.
    pub fn protective_order_category(&self) -> Option<&str> {
        self.protective_order_category.as_deref()
    }

    /// The category of what a mail cover records: collected only under an
    /// approved, running cover of the line's subject (its `order_id`),
    /// sealed under the order's key, seen only by that order (and its
    /// requester's court orders), never corrected or moved under a hold.
    /// Required when `disclosure.toml` allows `mail_cover`.
    pub fn mail_cover_record_category(&self) -> Option<&str> {
        self.mail_cover_record_category.as_deref()
    }

    /// Whether `category` is the mail-cover record category.
    pub fn is_mail_cover_record(&self, category: &str) -> bool {
        self.mail_cover_record_category() == Some(category)
    }

    /// A role that sees every disclosure request as its requester would
    /// (no instrument, no office notes), besides the approver roles.
    /// Optional.
    pub fn auditor_role(&self) -> Option<&str> {
        self.auditor_role.as_deref()
    }

    /// Whether records of `category` are kept by the vault itself (mail-cover
    /// records, the accounting of disclosures), so no one corrects them.
    pub fn kept_by_vault(&self, category: &str) -> bool {
        self.is_mail_cover_record(category)
            || self.disclosure_accounting_category() == Some(category)
    }

    /// Every key of `[engine]` and the id it names (`None`: the part is off).
    pub fn entries(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("subject_access_purpose", self.subject_access_purpose()),
            (
                "disclosure_accounting_category",
                self.disclosure_accounting_category(),
            ),
            (
                "protective_order_category",
                self.protective_order_category(),
            ),
            (
                "mail_cover_record_category",
                self.mail_cover_record_category(),
            ),
            ("auditor_role", self.auditor_role()),
        ]
    }
}

/// The engine's ids of `t`: the `[engine]` table checked against the
/// taxonomy, or the undeclared ones.
pub(crate) fn resolve(
    raw: Option<RawEngine>,
    src: &str,
    t: &Taxonomy,
) -> Result<EngineIds, PackError> {
    let Some(raw) = raw else {
        return Ok(undeclared(t));
    };
    let c = Checker {
        src,
        t,
        header: header_line(src),
    };
    let sa = raw.subject_access_purpose.as_ref().ok_or_else(|| {
        c.err(
            None,
            "engine-id",
            "[engine] subject_access_purpose is required: the purpose the person's own requests are served for".into(),
        )
    })?;
    let subject_access = c.purpose(sa)?;
    let accounting = c.category(
        raw.disclosure_accounting_category.as_ref(),
        "disclosure_accounting_category",
    )?;
    let protective = c.category(
        raw.protective_order_category.as_ref(),
        "protective_order_category",
    )?;
    let cover = c.category(
        raw.mail_cover_record_category.as_ref(),
        "mail_cover_record_category",
    )?;
    let auditor = raw.auditor_role.as_ref().map(|s| c.role(s)).transpose()?;

    let named = [
        (
            "disclosure_accounting_category",
            raw.disclosure_accounting_category.as_ref(),
            accounting,
        ),
        (
            "protective_order_category",
            raw.protective_order_category.as_ref(),
            protective,
        ),
        (
            "mail_cover_record_category",
            raw.mail_cover_record_category.as_ref(),
            cover,
        ),
    ];
    for (i, &(key, span, id)) in named.iter().enumerate() {
        for &(other, _, earlier) in &named[..i] {
            if let (Some(s), Some(a), Some(b)) = (span, id, earlier)
                && a.id == b.id
            {
                return Err(c.err(
                    Some(s.span()),
                    "engine-id",
                    format!(
                        "[engine] {key} and {other} both name `{}`: each part needs its own category",
                        a.id
                    ),
                ));
            }
        }
    }
    if let (Some(cat), Some(s)) = (protective, &raw.protective_order_category) {
        c.field(
            s,
            cat,
            PROTECTIVE_ORDER_FIELD,
            &FieldType::Bool,
            false,
            "the engine reads it to tell whether an order is on file (R9)",
        )?;
    }
    if let (Some(cat), Some(s)) = (cover, &raw.mail_cover_record_category) {
        c.field(
            s,
            cat,
            COVER_ORDER_FIELD,
            &FieldType::String,
            true,
            "it names the order a record is made under (R14)",
        )?;
        for name in COVER_PARTY_FIELDS {
            c.field(
                s,
                cat,
                name,
                &FieldType::String,
                false,
                "the engine compares it with the subject's known attorney (R15)",
            )?;
        }
    }
    Ok(EngineIds {
        subject_access_purpose: Some(subject_access),
        disclosure_accounting_category: accounting.map(|c| c.id.clone()),
        protective_order_category: protective.map(|c| c.id.clone()),
        mail_cover_record_category: cover.map(|c| c.id.clone()),
        auditor_role: auditor,
        declared: true,
        line: c.header,
    })
}

/// [`UNDECLARED_IDS`] that `t` has, each of the right kind.
fn undeclared(t: &Taxonomy) -> EngineIds {
    let [(_, sa), (_, acc), (_, po), (_, mc), (_, aud)] = UNDECLARED_IDS;
    let category = |id: &str| t.category_ix(id).map(|_| id.to_string());
    EngineIds {
        subject_access_purpose: t.purpose_ix(sa).map(|_| sa.to_string()),
        disclosure_accounting_category: category(acc),
        protective_order_category: category(po),
        mail_cover_record_category: category(mc),
        auditor_role: t.role_ix(aud).map(|_| aud.to_string()),
        declared: false,
        line: None,
    }
}

/// The line of the `[engine]` header.
fn header_line(src: &str) -> Option<usize> {
    let mut offset = 0;
    for l in src.split_inclusive('\n') {
        if l.trim_start().starts_with(ENGINE_TABLE) {
            return Some(line_of(src, offset));
        }
        offset += l.len();
    }
    None
}

struct Checker<'a> {
    src: &'a str,
    t: &'a Taxonomy,
    header: Option<usize>,
}

impl<'a> Checker<'a> {
    fn err(&self, span: Option<Range<usize>>, rule: &str, message: String) -> PackError {
        let line = span.map(|s| line_of(self.src, s.start)).or(self.header);
        PackError::new(TAXONOMY_FILE, line, rule, message)
    }

    /// What `id` is in the taxonomy, for a message naming the wrong kind.
    fn kind_of(&self, id: &str) -> &'static str {
        if self.t.purpose_ix(id).is_some() {
            "a purpose"
        } else if self.t.category_ix(id).is_some() {
            "a category"
        } else if self.t.role_ix(id).is_some() {
            "a role"
        } else if self.t.groups.iter().any(|g| g.id == id) {
            "a purpose group"
        } else {
            "no id of the pack"
        }
    }

    fn wrong(&self, s: &Spanned<String>, key: &str, want: &str) -> PackError {
        self.err(
            Some(s.span()),
            "engine-id",
            format!(
                "[engine] {key} names `{}`, {}, not {want}",
                s.get_ref(),
                self.kind_of(s.get_ref())
            ),
        )
    }

    fn purpose(&self, s: &Spanned<String>) -> Result<String, PackError> {
        let key = "subject_access_purpose";
        let ix = self
            .t
            .purpose_ix(s.get_ref())
            .ok_or_else(|| self.wrong(s, key, "a purpose"))?;
        if self.t.purpose(ix).prohibited() {
            return Err(self.err(
                Some(s.span()),
                "engine-id",
                format!(
                    "[engine] {key} names `{}`, a prohibited purpose: it could serve no one",
                    s.get_ref()
                ),
            ));
        }
        Ok(s.get_ref().clone())
    }

    fn category(
        &self,
        s: Option<&Spanned<String>>,
        key: &str,
    ) -> Result<Option<&'a Category>, PackError> {
        let Some(s) = s else {
            return Ok(None);
        };
        let ix = self
            .t
            .category_ix(s.get_ref())
            .ok_or_else(|| self.wrong(s, key, "a category"))?;
        Ok(Some(self.t.category(ix)))
    }

    fn role(&self, s: &Spanned<String>) -> Result<String, PackError> {
        self.t
            .role_ix(s.get_ref())
            .ok_or_else(|| self.wrong(s, "auditor_role", "a role"))?;
        Ok(s.get_ref().clone())
    }

    /// `cat` (named at `s`) has field `name` of type `kind` (and required,
    /// when `required`).
    fn field(
        &self,
        s: &Spanned<String>,
        cat: &Category,
        name: &str,
        kind: &FieldType,
        required: bool,
        why: &str,
    ) -> Result<(), PackError> {
        let ok = cat
            .field(name)
            .is_some_and(|(_, f)| &f.kind == kind && (f.required || !required));
        if ok {
            return Ok(());
        }
        Err(self.err(
            Some(s.span()),
            "engine-field",
            format!(
                "[engine] category `{}` needs a {}`{}` field `{name}`: {why}",
                cat.id,
                if required { "required " } else { "" },
                kind.name()
            ),
        ))
    }
}
