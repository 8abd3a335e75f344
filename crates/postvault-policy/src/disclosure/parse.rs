//! Parsing an instrument: a walk over the JSON value that turns selectors,
//! wildcards, unknown keys and wrong types into refusals, then the typed
//! [`Instrument`].

use serde_json::{Map, Value};

use super::*;

/// Keys that ask for people by something other than identifier. Matched
/// case-insensitively; the first group also as part of a longer key.
pub(super) const SELECTOR_STEMS: [&str; 7] = [
    "selector", "query", "filter", "wildcard", "regex", "pattern", "search",
];
pub(super) const SELECTOR_KEYS: [&str; 19] = [
    "all",
    "any",
    "everyone",
    "where",
    "match",
    "matches",
    "like",
    "prefix",
    "range",
    "attributes",
    "attribute",
    "criteria",
    "conditions",
    "bulk",
    "batch",
    "list",
    "population",
    "all_names_at_address",
    "subjects_where",
];

/// Wildcard characters of shells, SQL and search engines.
pub(super) const WILDCARD_CHARS: [char; 3] = ['*', '?', '%'];
/// Characters of regular expressions and templates.
pub(super) const PATTERN_CHARS: [char; 9] = ['[', ']', '^', '$', '|', '\\', '{', '}', '~'];
/// Values that stand for everyone rather than someone.
pub(super) const PLACEHOLDER_IDS: [&str; 9] = [
    "all",
    "any",
    "everyone",
    "everybody",
    "anyone",
    "null",
    "none",
    "undefined",
    "nil",
];

pub(super) fn is_selector_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SELECTOR_KEYS.contains(&k.as_str()) || SELECTOR_STEMS.iter().any(|s| k.contains(s))
}

/// Why `id` is not a plain identifier, or `None` when it is one.
pub fn subject_id_problem(id: &str) -> Option<&'static str> {
    if id.trim().is_empty() {
        return Some("is empty");
    }
    if id.chars().count() > MAX_SUBJECT_ID_CHARS {
        return Some("is longer than 256 characters");
    }
    if id.trim() != id {
        return Some("has leading or trailing spaces: identifiers match exactly");
    }
    if id.chars().any(char::is_control) {
        return Some("has control characters");
    }
    if crate::subject_id::check_subject_chars(id).is_err() {
        return Some(
            "has invisible, formatting or bidirectional characters, or is not in Unicode NFC: identifiers match exactly",
        );
    }
    if id.chars().any(|c| WILDCARD_CHARS.contains(&c)) {
        return Some("has a wildcard character (* ? %): identifiers match exactly");
    }
    if id.chars().any(|c| PATTERN_CHARS.contains(&c)) || id.contains("..") {
        return Some("looks like a pattern or range: identifiers match exactly");
    }
    if !id.chars().any(char::is_alphanumeric) {
        return Some("has no letter or digit");
    }
    if PLACEHOLDER_IDS.contains(&id.to_ascii_lowercase().as_str()) {
        return Some("stands for everyone, not for one person");
    }
    None
}

/// A snake_case id of at most 40 characters is shown; anything else is not.
pub(super) fn looks_like_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub(super) fn show_key(key: &str) -> String {
    if looks_like_id(key) {
        format!("`{key}`")
    } else {
        "a key".to_string()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    All,
    Disclosure,
    MailCover,
}

impl Scope {
    pub(super) fn admits(self, kind: InstrumentKind) -> bool {
        match self {
            Scope::All => true,
            Scope::Disclosure => kind != InstrumentKind::MailCover,
            Scope::MailCover => kind == InstrumentKind::MailCover,
        }
    }
}

#[derive(Clone, Copy)]
pub(super) enum Ty {
    Str,
    Bool,
    Count,
    Years,
    Time,
    Level,
    Requester,
    Portions,
    Subjects,
    Signer,
    TimeRange,
    Court,
    Party,
}

pub(super) const FIELDS: [(&str, Ty, Scope); 28] = [
    ("instrument_id", Ty::Str, Scope::All),
    ("agency", Ty::Str, Scope::All),
    ("signer", Ty::Signer, Scope::All),
    ("authority", Ty::Str, Scope::All),
    ("ground", Ty::Str, Scope::All),
    ("case_id", Ty::Str, Scope::All),
    ("subjects", Ty::Subjects, Scope::All),
    ("portions", Ty::Portions, Scope::All),
    ("issued_at", Ty::Time, Scope::All),
    ("expires_at", Ty::Time, Scope::All),
    ("time_range", Ty::TimeRange, Scope::Disclosure),
    ("court", Ty::Court, Scope::Disclosure),
    ("delay_notice_until", Ty::Time, Scope::Disclosure),
    ("requester_type", Ty::Requester, Scope::MailCover),
    ("statute_cited", Ty::Str, Scope::MailCover),
    ("penalty_max_years", Ty::Years, Scope::MailCover),
    ("reasonable_grounds", Ty::Str, Scope::MailCover),
    ("oral", Ty::Bool, Scope::MailCover),
    ("written_confirmed_at", Ty::Time, Scope::MailCover),
    ("emergency", Ty::Bool, Scope::MailCover),
    ("start", Ty::Time, Scope::MailCover),
    ("days", Ty::Count, Scope::MailCover),
    ("extension_no", Ty::Count, Scope::MailCover),
    ("benefit_statement", Ty::Str, Scope::MailCover),
    ("cumulative_days", Ty::Count, Scope::MailCover),
    ("cpi_approval_ref", Ty::Str, Scope::MailCover),
    ("indicted_or_information_filed", Ty::Bool, Scope::MailCover),
    ("known_attorney", Ty::Party, Scope::MailCover),
];

pub(super) const SIGNER_FIELDS: [(&str, Ty); 4] = [
    ("name", Ty::Str),
    ("title", Ty::Str),
    ("level", Ty::Level),
    ("delegation_ref", Ty::Str),
];
pub(super) const TIME_RANGE_FIELDS: [(&str, Ty); 2] = [("from", Ty::Time), ("to", Ty::Time)];
pub(super) const COURT_FIELDS: [(&str, Ty); 4] = [
    ("name", Ty::Str),
    ("docket", Ty::Str),
    ("judge", Ty::Str),
    ("order_date", Ty::Time),
];
pub(super) const PARTY_FIELDS: [(&str, Ty); 2] = [("name", Ty::Str), ("address", Ty::Str)];

/// Drops `null` members of objects, at every level: an absent optional field.
pub(super) fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

#[derive(Default)]
pub(super) struct Walk {
    pub(super) out: Vec<Refusal>,
    /// An instrument the ledger already holds, opened again: the rules a
    /// submission meets today that it may not have met when it came in
    /// (plain text) are not applied, so nothing accepted before stops
    /// opening.
    pub(super) stored: bool,
}

impl Walk {
    pub(super) fn refuse(&mut self, code: RefusalCode, message: String) {
        self.out.push(Refusal { code, message });
    }

    pub(super) fn unknown_key(&mut self, path: Option<&str>, key: &str) {
        let at = path.map_or(String::new(), |p| format!(" in `{p}`"));
        if is_selector_key(key) {
            self.refuse(
                RefusalCode::SelectorNotIdentifier,
                format!(
                    "{}{at} is a selector: outside parties name subjects only by identifier",
                    show_key(key)
                ),
            );
        } else {
            self.refuse(
                RefusalCode::UnknownField,
                format!("{}{at} is not a field of an instrument", show_key(key)),
            );
        }
    }

    pub(super) fn value(&mut self, path: &str, ty: Ty, v: &Value) {
        let bad = |what: &str| format!("field `{path}` must be {what}");
        match ty {
            Ty::Str if !v.is_string() => self.refuse(RefusalCode::Malformed, bad("a string")),
            Ty::Str if !self.stored && !v.as_str().is_some_and(crate::subject_id::is_plain_text) => self.refuse(
                RefusalCode::Malformed,
                bad("plain text: no control, invisible, direction-changing or line-breaking character"),
            ),
            Ty::Bool if !v.is_boolean() => {
                self.refuse(RefusalCode::Malformed, bad("true or false"));
            }
            Ty::Count if v.as_u64().and_then(|n| u32::try_from(n).ok()).is_none() => {
                self.refuse(RefusalCode::Malformed, bad("a whole number"));
            }
            Ty::Years if v.as_f64().is_none_or(|x| !x.is_finite() || x < 0.0) => {
                self.refuse(RefusalCode::Malformed, bad("a number of years"));
            }
            Ty::Time if v.as_str().and_then(parse_iso).is_none() => self.refuse(
                RefusalCode::Malformed,
                bad("an iso 8601 date or date-time with a zone"),
            ),
            Ty::Level if v.as_str().and_then(SignerLevel::from_id).is_none() => self.refuse(
                RefusalCode::Malformed,
                bad("one of agent, supervisor, section_chief, agency_head"),
            ),
            Ty::Requester if v.as_str().and_then(RequesterType::from_id).is_none() => self.refuse(
                RefusalCode::Malformed,
                bad("one of postal_inspector, law_enforcement_agency"),
            ),
            Ty::Portions => match v.as_array() {
                Some(items) if items.iter().all(Value::is_string) => {}
                _ => self.refuse(RefusalCode::Malformed, bad("a list of category ids")),
            },
            Ty::Subjects => self.subjects(v),
            Ty::Signer => self.object(path, v, &SIGNER_FIELDS),
            Ty::Court => self.object(path, v, &COURT_FIELDS),
            Ty::Party => self.object(path, v, &PARTY_FIELDS),
            Ty::TimeRange => {
                self.object(path, v, &TIME_RANGE_FIELDS);
                if let Some(map) = v.as_object()
                    && !(map.contains_key("from") && map.contains_key("to"))
                {
                    self.refuse(
                        RefusalCode::TimeRangeInvalid,
                        "time_range needs both `from` and `to`".into(),
                    );
                }
            }
            _ => {}
        }
    }

    pub(super) fn object(&mut self, path: &str, v: &Value, fields: &[(&str, Ty)]) {
        let Some(map) = v.as_object() else {
            self.refuse(
                RefusalCode::Malformed,
                format!("field `{path}` must be an object"),
            );
            return;
        };
        for (key, val) in map {
            match fields.iter().find(|(name, _)| name == key) {
                Some((name, ty)) => self.value(&format!("{path}.{name}"), *ty, val),
                None => self.unknown_key(Some(path), key),
            }
        }
    }

    pub(super) fn subjects(&mut self, v: &Value) {
        let Some(items) = v.as_array() else {
            self.refuse(
                RefusalCode::SelectorNotIdentifier,
                "`subjects` must be a list of {\"id\": ...} entries: outside parties name subjects only by identifier".into(),
            );
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let Some(entry) = item.as_object() else {
                self.refuse(
                    RefusalCode::SelectorNotIdentifier,
                    format!("subjects[{i}] must be an object {{\"id\": ...}}"),
                );
                continue;
            };
            for key in entry.keys().filter(|k| *k != "id") {
                self.refuse(
                    RefusalCode::SelectorNotIdentifier,
                    format!(
                        "subjects[{i}] has {} besides `id`: outside parties name subjects only by identifier",
                        show_key(key)
                    ),
                );
            }
            match entry.get("id") {
                None => self.refuse(
                    RefusalCode::SelectorNotIdentifier,
                    format!("subjects[{i}] has no `id`"),
                ),
                Some(Value::String(id)) => {
                    if let Some(why) = subject_id_problem(id) {
                        self.refuse(
                            RefusalCode::SelectorNotIdentifier,
                            format!("subjects[{i}].id {why}"),
                        );
                    }
                }
                Some(_) => self.refuse(
                    RefusalCode::SelectorNotIdentifier,
                    format!("subjects[{i}].id must be a string identifier"),
                ),
            }
        }
    }

    pub(super) fn finish(mut self) -> Vec<Refusal> {
        self.out.sort();
        self.out.dedup();
        self.out
    }
}

/// Reads an instrument from JSON. First a walk over the value refuses
/// selectors and patterns (`selector_not_identifier`), keys that are not
/// fields of the kind (`unknown_field`), wrong types (`malformed`) and a
/// `time_range` without both ends (`time_range_invalid`), all at once; then
/// the typed [`Instrument`]. A `null` member counts as absent. Whether the
/// instrument is *acceptable* is [`check_instrument`]'s question.
pub fn parse_instrument(json: &str) -> Result<Instrument, Vec<Refusal>> {
    parse_as(json, false)
}

/// [`parse_instrument`] of an instrument the ledger holds already: what
/// was accepted when it was submitted opens the same way whatever rules
/// submissions have gained since (its free text may hold a line break).
pub fn parse_stored_instrument(json: &str) -> Result<Instrument, Vec<Refusal>> {
    parse_as(json, true)
}

fn parse_as(json: &str, stored: bool) -> Result<Instrument, Vec<Refusal>> {
    let value: Value = serde_json::from_str(json).map_err(|e| {
        vec![Refusal::new(
            RefusalCode::Malformed,
            format!(
                "not a json document (line {}, column {})",
                e.line(),
                e.column()
            ),
        )]
    })?;
    let value = strip_nulls(value);
    let Some(top) = value.as_object() else {
        return Err(vec![Refusal::new(
            RefusalCode::Malformed,
            "an instrument is a json object",
        )]);
    };
    let mut walk = Walk {
        stored,
        ..Walk::default()
    };
    let kind = walk_kind(&mut walk, top);
    for (key, v) in top {
        if key == "kind" {
            continue;
        }
        match FIELDS.iter().find(|(name, _, _)| name == key) {
            None => walk.unknown_key(None, key),
            Some(&(name, ty, scope)) => match kind {
                Some(k) if !scope.admits(k) => walk.refuse(
                    RefusalCode::UnknownField,
                    format!("field `{name}` does not apply to a {k}"),
                ),
                _ => walk.value(name, ty, v),
            },
        }
    }
    let refusals = walk.finish();
    if !refusals.is_empty() {
        return Err(refusals);
    }
    serde_json::from_value(value).map_err(|_| {
        vec![Refusal::new(
            RefusalCode::Malformed,
            "the instrument does not match the documented format",
        )]
    })
}

pub(super) fn walk_kind(walk: &mut Walk, top: &Map<String, Value>) -> Option<InstrumentKind> {
    let kind = top
        .get("kind")
        .and_then(Value::as_str)
        .and_then(InstrumentKind::from_id);
    if kind.is_none() {
        walk.refuse(
            RefusalCode::Malformed,
            "`kind` must be one of court_order, warrant, written_request, subpoena, mail_cover"
                .into(),
        );
    }
    kind
}
