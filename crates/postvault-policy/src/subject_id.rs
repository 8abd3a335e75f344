//! Subject identifiers: what the vault accepts as a person's id, wherever
//! one enters (collection, reads, rights, holds, HTTP paths, the subjects of
//! a legal instrument).
//!
//! An id is matched exactly (through a keyed hash), so two strings that
//! look the same must never be two people: `cust-1` and `cust-1` followed by
//! a zero-width no-break space would be. An id is refused when it holds a
//! character that does not show or that reorders what is shown: controls
//! (Cc), format characters (Cf: zero-width spaces and joiners, bidi
//! embeddings, overrides and isolates, the byte-order mark, invisible
//! operators, tags), line and paragraph separators, private-use and
//! unassigned code points, every Default_Ignorable_Code_Point (variation
//! selectors, Hangul fillers, the combining grapheme joiner, ...), and
//! whitespace other than an inner ASCII space. It must also be in Unicode
//! Normalization Form C, so a precomposed letter and the same letter
//! spelled with a combining mark are not two ids. The check never says
//! which character it found, and no message echoes the id.

use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

/// Longest accepted subject id, in bytes.
pub const MAX_SUBJECT_ID: usize = 128;

/// The stable code of a refused subject id.
pub const INVALID_SUBJECT_ID: &str = "invalid_subject_id";

/// Why a subject id is refused. The message names the rule, never the id
/// or the character.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubjectIdError {
    #[error("a subject id is 1 to {MAX_SUBJECT_ID} bytes; this one is empty")]
    Empty,
    #[error("a subject id is 1 to {MAX_SUBJECT_ID} bytes; this one is longer")]
    TooLong,
    #[error(
        "a subject id may not hold invisible, control, formatting or bidirectional characters, nor whitespace other than an inner space"
    )]
    Invisible,
    #[error("a subject id must be in Unicode Normalization Form C (NFC)")]
    NotNormalized,
}

impl SubjectIdError {
    /// The stable code: always [`INVALID_SUBJECT_ID`].
    pub fn code(&self) -> &'static str {
        INVALID_SUBJECT_ID
    }
}

/// Checks a subject id (see the module's docs).
pub fn check_subject_id(id: &str) -> Result<(), SubjectIdError> {
    if id.is_empty() {
        return Err(SubjectIdError::Empty);
    }
    if id.len() > MAX_SUBJECT_ID {
        return Err(SubjectIdError::TooLong);
    }
    check_subject_chars(id)
}

/// The character rules of [`check_subject_id`] alone, without its length
/// limit (the disclosure gateway's instrument parser keeps its own).
pub fn check_subject_chars(id: &str) -> Result<(), SubjectIdError> {
    if id.starts_with(' ') || id.ends_with(' ') || id.chars().any(hidden) {
        return Err(SubjectIdError::Invisible);
    }
    if !unicode_normalization::is_nfc(id) {
        return Err(SubjectIdError::NotNormalized);
    }
    Ok(())
}

/// Whether free text of an instrument shows what it holds: no control,
/// formatting, bidirectional, zero-width or line-separating character and
/// no space but U+0020, so what an officer reads is what was submitted (a
/// right-to-left override can make `7140` read `0417`).
pub fn is_plain_text(s: &str) -> bool {
    !s.chars().any(|c| c != ' ' && hidden(c))
}

/// A character that does not show, or changes how its neighbours show.
fn hidden(c: char) -> bool {
    if c.is_ascii() {
        // The common case, without a table look-up.
        return c.is_ascii_control();
    }
    let gc = CodePointMapData::<GeneralCategory>::new().get(c);
    matches!(
        gc,
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
            | GeneralCategory::Unassigned
    ) || c.is_whitespace()
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_reordering_characters_are_refused() {
        for ok in ["cust-1", "cust-000000000309", "Zoë Ågren", "客户-7", "a b"] {
            assert_eq!(check_subject_id(ok), Ok(()), "{ok:?}");
        }
        let mut refused = vec![
            String::new(),
            "x".repeat(MAX_SUBJECT_ID + 1),
            " cust-1".into(),
            "cust-1 ".into(),
            "cust\t1".into(),
            "cust-1\n".into(),
            "cust\u{a0}1".into(),
            "cust\u{3000}1".into(),
            "cust-1\u{2028}".into(),
            "cust-1\u{ad}".into(),
            "cust-1\u{34f}".into(),
            "cust-1\u{61c}".into(),
            "cust-1\u{115f}".into(),
            "cust-1\u{180e}".into(),
            "cust-1\u{fe0f}".into(),
            "cust-1\u{e0041}".into(),
            "cust-1\u{e000}".into(),
            "cust-1\u{378}".into(),
            // Decomposed: e + combining acute, which NFC composes.
            "caf\u{65}\u{301}".into(),
        ];
        for range in [
            0x200b..=0x200f,
            0x202a..=0x202e,
            0x2060..=0x2064,
            0x2066..=0x2069,
            0xfeff..=0xfeff,
        ] {
            for c in range {
                refused.push(format!("cust-1{}", char::from_u32(c).unwrap()));
            }
        }
        for id in &refused {
            let e = check_subject_id(id).unwrap_err();
            assert_eq!(e.code(), INVALID_SUBJECT_ID);
            assert!(!e.to_string().contains("cust"), "{e}");
        }
    }
}
