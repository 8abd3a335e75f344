//! Collection: NDJSON records in, minimized and sealed rows out, one store
//! transaction and one accounting leaf per batch.
//!
//! Each line is all-or-nothing; a rejected line names the line, the field and
//! the rule, never a value. Accepted lines are durable when `collect` returns.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use postvault_policy::{Action, CategoryIx, DecisionRequest, PurposeIx};
use postvault_store::{ConsentRow, LookupRow, RecordRow, SubjectRef, WriteBatch};

use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::minimize::{FieldError, minimize};
use crate::vault::{Principal, Vault};

/// Longest accepted line, in bytes (room for a 1 MiB image in base64).
pub const MAX_LINE: usize = 2 << 20;
/// Longest accepted subject id, in bytes.
pub const MAX_SUBJECT_ID: usize = 128;
const MAX_ERRORS_KEPT: usize = 1000;

/// How to collect.
#[derive(Clone, Debug)]
pub struct CollectOptions {
    /// The purpose of lines that name none.
    pub default_purpose: Option<String>,
    /// Lines per transaction.
    pub batch_size: usize,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions {
            default_purpose: None,
            batch_size: 2048,
        }
    }
}

/// Why one line was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineError {
    pub line: u64,
    /// Stable code, e.g. `malformed_json`, `unknown_category`, `field_not_declared`, `denied`.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The rule of the reference behind the rejection (e.g. `R2`), or the policy id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub message: String,
}

/// What a collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CollectReport {
    pub accepted: u64,
    pub rejected: u64,
    pub batches: u64,
    /// Accepted records per category.
    pub categories: BTreeMap<String, u64>,
    /// The first rejections (at most 1000), in line order.
    pub errors: Vec<LineError>,
    /// Log index of each batch's leaf.
    pub leaves: Vec<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    subject: String,
    category: String,
    #[serde(default)]
    purpose: Option<String>,
    fields: Map<String, Value>,
    #[serde(default)]
    legal_basis: Option<String>,
    #[serde(default)]
    consent: Option<bool>,
}

/// A checked line, not yet sealed.
struct Accepted {
    subject: SubjectRef,
    category: CategoryIx,
    purpose: PurposeIx,
    legal_basis: Option<String>,
    consent: bool,
    fields: Map<String, Value>,
}

#[derive(Default)]
struct Batch {
    lines: Vec<Accepted>,
    rejected: u64,
    reasons: BTreeSet<String>,
}

impl Vault {
    /// Collects NDJSON records from `input` as `principal`. `progress` is
    /// called after each committed batch with the lines read so far.
    pub fn collect(
        &self,
        principal: &Principal,
        input: &mut dyn BufRead,
        opts: &CollectOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CollectReport, VaultError> {
        let default_purpose = match &opts.default_purpose {
            Some(p) => Some(
                self.pack
                    .taxonomy()
                    .purpose_ix(p)
                    .ok_or_else(|| VaultError::UnknownPurpose(p.clone()))?,
            ),
            None => None,
        };
        let batch_size = opts.batch_size.max(1);
        let mut report = CollectReport::default();
        let mut batch = Batch::default();
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let n = read_line_bounded(input, &mut buf).map_err(VaultError::Input)?;
            if n == LineRead::Eof {
                break;
            }
            line_no += 1;
            let checked = match n {
                LineRead::TooLong => Err(line_err(
                    line_no,
                    "line_too_long",
                    None,
                    None,
                    format!("the line is longer than {MAX_LINE} bytes"),
                )),
                _ => self.check_line(principal, line_no, &buf, default_purpose),
            };
            match checked {
                Ok(Some(a)) => batch.lines.push(a),
                Ok(None) => {} // blank line
                Err(e) => {
                    batch.rejected += 1;
                    batch
                        .reasons
                        .insert(e.rule.clone().unwrap_or_else(|| e.code.clone()));
                    report.rejected += 1;
                    if report.errors.len() < MAX_ERRORS_KEPT {
                        report.errors.push(e);
                    }
                }
            }
            if batch.lines.len() + batch.rejected as usize >= batch_size {
                self.commit_batch(principal, std::mem::take(&mut batch), &mut report)?;
                progress(line_no);
            }
        }
        if !batch.lines.is_empty() || batch.rejected > 0 {
            self.commit_batch(principal, batch, &mut report)?;
        }
        progress(line_no);
        Ok(report)
    }

    fn check_line(
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
        if line.subject.is_empty()
            || line.subject.len() > MAX_SUBJECT_ID
            || line.subject.chars().any(char::is_control)
        {
            return Err(line_err(
                line_no,
                "invalid_subject",
                Some("subject"),
                None,
                format!("`subject` must be 1 to {MAX_SUBJECT_ID} bytes without control characters"),
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
        let consent = line.consent.unwrap_or(false);
        let decision = self.pack.decide(&DecisionRequest {
            role: principal.role_ix,
            action: Action::Collect,
            purpose,
            category,
            consent,
        });
        if !decision.allowed() {
            let first = decision.reasons.first();
            return Err(line_err(
                line_no,
                "denied",
                None,
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
            ));
        }
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
        let fields = minimize(tax.category(category), purpose, &line.fields).map_err(
            |FieldError {
                 code,
                 field,
                 message,
             }| line_err(line_no, code, Some(&field), Some("R2"), message),
        )?;
        Ok(Some(Accepted {
            subject: self.subject_ref(&line.subject),
            category,
            purpose,
            legal_basis,
            consent,
            fields,
        }))
    }

    fn commit_batch(
        &self,
        principal: &Principal,
        batch: Batch,
        report: &mut CollectReport,
    ) -> Result<(), VaultError> {
        let tax = self.pack.taxonomy();
        let now = self.clock.now_ms();
        let subjects: Vec<SubjectRef> = batch.lines.iter().map(|a| a.subject).collect();
        let keys = self.ensure_subject_keys(&subjects)?;
        let mut wb = WriteBatch {
            leaves: 1,
            ..WriteBatch::default()
        };
        let mut seen = BTreeSet::new();
        let mut categories: BTreeMap<String, u64> = BTreeMap::new();
        let mut purposes = BTreeSet::new();
        for a in &batch.lines {
            let cat = tax.category(a.category);
            let purpose = &tax.purpose(a.purpose).id;
            let key = keys
                .get(&a.subject)
                .ok_or(VaultError::Crypto(postvault_crypto::CryptoError::Open))?;
            let id = *uuid::Uuid::now_v7().as_bytes();
            let expires_at = now + i64::from(cat.retention_days) * 86_400_000;
            let plain = payload(&a.fields, a.legal_basis.as_deref());
            let aad = record_aad(&a.subject, &id, &cat.id, purpose, now, expires_at);
            let sealed = key.data.seal(&self.rng, &aad, &plain)?;
            for lookup in &cat.lookups {
                if let Some((domain, value)) = lookup_value(cat, lookup, &a.fields) {
                    wb.lookups.push(LookupRow {
                        token: self.master.blind_index(&domain, value.as_bytes()),
                        subject: a.subject,
                        record: id,
                    });
                }
            }
            if seen.insert(a.subject) {
                wb.subjects.push((a.subject, now));
            }
            if a.consent {
                wb.consents.push(ConsentRow {
                    subject: a.subject,
                    purpose: purpose.clone(),
                    granted: true,
                    at: now,
                });
            }
            wb.records.push(RecordRow {
                id,
                subject: a.subject,
                category: cat.id.clone(),
                purpose: purpose.clone(),
                source: principal.name.clone(),
                collected_at: now,
                expires_at,
                key_id: 0,
                sealed,
            });
            *categories.entry(cat.id.clone()).or_default() += 1;
            purposes.insert(purpose.clone());
        }
        let accepted = wb.records.len() as u64;
        let event = Event {
            v: LEAF_VERSION,
            time: now,
            action: "collect".into(),
            principal: Actor {
                role: principal.role.clone(),
                id: self.actor_id(&principal.name),
            },
            purpose: (!purposes.is_empty())
                .then(|| purposes.iter().cloned().collect::<Vec<_>>().join(",")),
            decision: if accepted > 0 { "allow" } else { "deny" }.into(),
            pack: self.pack.version().to_string(),
            reasons: batch.reasons.into_iter().collect(),
            categories: categories.keys().cloned().collect(),
            count: accepted,
            rejected: Some(batch.rejected),
            selector: Some(format!("batch:{}", uuid::Uuid::now_v7())),
            instrument: None,
            subject_tag: None,
        };
        let leaf = event.to_leaf();
        let first = self.store.write(&wb, &mut |_, _| leaf.clone())?;
        report.accepted += accepted;
        report.batches += 1;
        report.leaves.push(first);
        for (c, n) in categories {
            *report.categories.entry(c).or_default() += n;
        }
        Ok(())
    }
}

/// The sealed plaintext: `{"fields": {...}, "legal_basis": "..."}` (the
/// legal basis is free text, so it is sealed with the fields).
fn payload(fields: &Map<String, Value>, legal_basis: Option<&str>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Payload<'a> {
        fields: &'a Map<String, Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        legal_basis: Option<&'a str>,
    }
    serde_json::to_vec(&Payload {
        fields,
        legal_basis,
    })
    .unwrap_or_default()
}

/// The associated data sealed with a record: binds the ciphertext to its
/// subject, id, category, purpose and retention, so none can be swapped or
/// extended in the store. Layout in docs/formats.md.
pub(crate) fn record_aad(
    subject: &SubjectRef,
    id: &[u8; 16],
    category: &str,
    purpose: &str,
    collected_at: i64,
    expires_at: i64,
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(96);
    aad.extend_from_slice(b"postvault/v1/record\0");
    aad.extend_from_slice(subject);
    aad.extend_from_slice(id);
    for s in [category, purpose] {
        aad.extend_from_slice(&(s.len() as u16).to_be_bytes());
        aad.extend_from_slice(s.as_bytes());
    }
    aad.extend_from_slice(&collected_at.to_be_bytes());
    aad.extend_from_slice(&expires_at.to_be_bytes());
    aad
}

/// The blind-index domain and normalized value of one lookup, if every field
/// of it is present.
pub(crate) fn lookup_value(
    cat: &postvault_policy::Category,
    lookup: &[usize],
    fields: &Map<String, Value>,
) -> Option<(String, String)> {
    let mut names = Vec::new();
    let mut parts = Vec::new();
    for &ix in lookup {
        let spec = cat.fields.get(ix)?;
        names.push(spec.name.as_str());
        // An absent optional part of a composite lookup counts as empty.
        let v = fields.get(&spec.name).and_then(Value::as_str);
        if v.is_none() && lookup.len() == 1 {
            return None;
        }
        parts.push(normalize(v.unwrap_or("")));
    }
    Some((
        format!("{}.{}", cat.id, names.join("+")),
        parts.join("\u{1f}"),
    ))
}

/// Lookup normalization: trimmed, lowercase, inner whitespace collapsed.
pub fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn line_err(
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
fn safe_json_error(e: &serde_json::Error) -> String {
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
                    "unknown key {}; a record has subject, category, purpose, fields, legal_basis, consent",
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
enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads one line into `buf` without ever holding more than MAX_LINE bytes;
/// the rest of an overlong line is skipped.
fn read_line_bounded(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> std::io::Result<LineRead> {
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
            if buf.len() + body.len() > MAX_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(body);
            }
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
