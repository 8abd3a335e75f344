//! C2SP signed notes taken apart: the text and each signature line, with
//! the key name, key ID and signature bytes, whoever made them. Total: any
//! input gives a value or an error, never a panic.
//!
//! Structure (UTF-8, no control characters but newline, the text ends in a
//! newline, a blank line, then `— <name> <base64(key ID || signature)>`
//! lines) is checked by `signed_note`; this module only exposes the parts,
//! for cosignature lines and the witness protocol.

use base64::Engine as _;
use signed_note::{Note, Signature};

use crate::LogError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Notes larger than this are refused (as `signed_note` does).
pub const MAX_NOTE_LEN: usize = 1_000_000;

/// One signature line of a note: `— <name> <base64(key ID || signature)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The 32-bit key ID (big-endian in the line).
    pub key_id: u32,
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line, with its final newline.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("\u{2014} {} {}\n", self.name, B64.encode(raw))
    }
}

/// A signed note taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, with its final newline, without the blank line.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

/// Parses one signature line (with or without its final newline).
pub fn parse_signature_line(line: &str) -> Result<NoteSignature, LogError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line.contains('\n') {
        return Err(LogError::MalformedNote("a signature line holds a newline"));
    }
    let sig = Signature::from_bytes(line.as_bytes())
        .map_err(|_| LogError::MalformedNote("not a note signature line"))?;
    Ok(NoteSignature {
        name: sig.name().to_owned(),
        key_id: sig.id(),
        signature: sig.signature().to_vec(),
    })
}

/// Parses a signed note into its text and signature lines.
pub fn parse_note(bytes: &[u8]) -> Result<SignedNote, LogError> {
    if bytes.len() > MAX_NOTE_LEN {
        return Err(LogError::MalformedNote("the note is too large"));
    }
    // The whole structure, as the signed-note spec states it.
    Note::from_bytes(bytes).map_err(|_| LogError::MalformedNote("not a signed note"))?;
    let s = std::str::from_utf8(bytes).map_err(|_| LogError::MalformedNote("not UTF-8"))?;
    let (text, sigs) = s.rsplit_once("\n\n").ok_or(LogError::MalformedNote(
        "no blank line before the signatures",
    ))?;
    let sigs = sigs.strip_suffix('\n').ok_or(LogError::MalformedNote(
        "the last signature line has no newline",
    ))?;
    let signatures = sigs
        .split('\n')
        .map(parse_signature_line)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SignedNote {
        text: format!("{text}\n"),
        signatures,
    })
}

/// Parses newline-terminated signature lines (a witness's answer), at most
/// `max` of them.
pub fn parse_signature_lines(body: &str, max: usize) -> Result<Vec<NoteSignature>, LogError> {
    if body.is_empty() {
        return Err(LogError::MalformedNote("no signature line"));
    }
    let body = body.strip_suffix('\n').ok_or(LogError::MalformedNote(
        "the last signature line has no newline",
    ))?;
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() > max {
        return Err(LogError::MalformedNote("too many signature lines"));
    }
    lines.into_iter().map(parse_signature_line).collect()
}
