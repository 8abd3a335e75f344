//! One NDJSON line: read within bounds, decided by the policy (deny by
//! default), then minimized; a rejected line names the line, the field and
//! the rule, never a value.

use std::io::BufRead;

use postvault_policy::{Action, DecisionRequest, PurposeIx};

use crate::minimize::{FieldError, minimize};
use crate::vault::{Principal, Vault};

use super::*;

impl Vault {
    pub(super) fn check_line(
        &self,
        principal: &Principal,
        line_no: u64,
        bytes: &[u8],
        default_purpose: Option<PurposeIx>,
    ) -> Result<Option<Accepted>, LineError> {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            line_err(
                line_no,
                "invalid_utf8",
                None,
                None,
                "the line is not valid UTF-8".into(),
            )
        })?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let line: Line = serde_json::from_str(text).map_err(|e| {
            // serde_json messages name the problem and position, or an unknown
            // key; they do not quote values.
            line_err(
                line_no,
                "malformed_json",
                None,
                None,
                format!("not a record: {}", safe_json_error(&e)),
            )
        })?;
        let tax = self.pack.taxonomy();
        if let Err(e) = postvault_policy::check_subject_id(&line.subject) {
            return Err(line_err(
                line_no,
                "invalid_subject",
                Some("subject"),
                None,
                format!("`subject`: {e}"),
            ));
        }
        if line.consent {
            return Err(line_err(
                line_no,
                "consent_not_collectable",
                Some("consent"),
                Some("HEW3"),
                "consent is the person's act: it is recorded through the rights channel \
                 (`postvault consent grant`, POST /v1/subjects/{id}/consent), never by collection"
                    .into(),
            ));
        }
        let category = tax.category_ix(&line.category).ok_or_else(|| {
            line_err(
                line_no,
                "unknown_category",
                Some("category"),
                Some("R1"),
                "unknown category (R1: no storage outside a declared category)".into(),
            )
        })?;
        let purpose = match &line.purpose {
            Some(p) => tax.purpose_ix(p).ok_or_else(|| {
                line_err(
                    line_no,
                    "unknown_purpose",
                    Some("purpose"),
                    Some("R3"),
                    "unknown purpose".into(),
                )
            })?,
            None => default_purpose.ok_or_else(|| {
                line_err(
                    line_no,
                    "missing_purpose",
                    Some("purpose"),
                    Some("R1"),
                    "no purpose: give `purpose` on the line or --purpose".into(),
                )
            })?,
        };
        let decide = |consent| {
            self.pack.decide(&DecisionRequest {
                role: principal.role_ix,
                action: Action::Collect,
                purpose,
                category,
                consent,
            })
        };
        let decision = decide(false);
        let denied = || {
            let first = decision.reasons.first();
            line_err(
                line_no,
                "denied",
                Some("purpose"),
                first.map(|r| r.policy.as_str()),
                format!(
                    "collecting `{}` for `{}` as role `{}` is denied: {}",
                    line.category,
                    tax.purpose(purpose).id,
                    principal.role,
                    decision
                        .reasons
                        .iter()
                        .map(|r| format!("{} ({})", r.message, r.rule))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )
        };
        // Allowed only with the person's consent: checked against the
        // rights channel's record once the line is otherwise in order.
        let needs_consent = match (decision.allowed(), decide(true).allowed()) {
            (true, _) => None,
            (false, true) => Some(denied()),
            (false, false) => return Err(denied()),
        };
        let p = tax.purpose(purpose);
        let legal_basis = match line.legal_basis {
            Some(b) if b.is_empty() || b.len() > 200 || b.chars().any(char::is_control) => {
                return Err(line_err(
                    line_no,
                    "invalid_legal_basis",
                    Some("legal_basis"),
                    None,
                    "`legal_basis` must be 1 to 200 bytes without control characters".into(),
                ));
            }
            Some(b) => Some(b),
            None if p.legal_basis => {
                return Err(line_err(
                    line_no,
                    "missing_legal_basis",
                    Some("legal_basis"),
                    Some("R1"),
                    format!("purpose `{}` requires a `legal_basis`", p.id),
                ));
            }
            None => None,
        };
        let subject = self.subject_ref(&line.subject);
        let fields = minimize(tax.category(category), purpose, line.fields).map_err(
            |FieldError {
                 code,
                 field,
                 message,
             }| line_err(line_no, code, Some(&field), Some("R2"), message),
        )?;
        let key_id = if tax
            .engine()
            .is_mail_cover_record(&tax.category(category).id)
        {
            self.check_cover_record(line_no, &subject, tax.category(category), &fields)?
        } else {
            0
        };
        Ok(Some(Accepted {
            subject,
            key_id,
            category,
            purpose,
            legal_basis,
            needs_consent,
            fields,
        }))
    }
}

pub(super) fn line_err(
    line: u64,
    code: &str,
    field: Option<&str>,
    rule: Option<&str>,
    message: String,
) -> LineError {
    LineError {
        line,
        code: code.to_string(),
        field: field.map(str::to_string),
        rule: rule.map(str::to_string),
        message,
    }
}

/// serde_json's message without anything quoted from the input. Unknown
/// fields and variants are named by serde in backticks: those are keys of the
/// record shape, not values, so they are kept.
pub(super) fn safe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            format!("malformed JSON at column {}", e.column())
        }
        Category::Data => {
            let msg = e.to_string();
            if msg.starts_with("missing field") {
                msg.split(" at line")
                    .next()
                    .unwrap_or("bad record")
                    .to_string()
            } else if msg.starts_with("unknown field") {
                // The key is input: echo it only if it looks like a key.
                let key = msg.split('`').nth(1).unwrap_or("");
                format!(
                    "unknown key {}; a record has subject, category, purpose, fields, legal_basis",
                    crate::minimize::shown_key(key)
                )
            } else {
                "a key has the wrong type (subject and category are strings, fields an object)"
                    .into()
            }
        }
    }
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub(crate) enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Appends one line to `buf` without ever holding more than MAX_LINE bytes
/// of it; the rest of an overlong line is skipped (and what was appended of
/// it taken back). Every byte consumed, newline included, goes into `hash`.
pub(crate) fn read_line_bounded(
    input: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    mut hash: Option<&mut aws_lc_rs::digest::Context>,
) -> std::io::Result<LineRead> {
    let start = buf.len();
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        any = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            let body = if done {
                &chunk[..take - 1]
            } else {
                &chunk[..take]
            };
            if buf.len() - start + body.len() > MAX_LINE {
                too_long = true;
                buf.truncate(start);
            } else {
                buf.extend_from_slice(body);
            }
        }
        if let Some(h) = hash.as_deref_mut() {
            h.update(&chunk[..take]);
        }
        input.consume(take);
        if done {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}
