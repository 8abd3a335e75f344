//! Size and nesting bounds of a pack's files, checked before any parser sees
//! them.
//!
//! Cedar's parser recurses once per nesting level without a guard: about a
//! hundred nested parentheses, sets or records overflow a 2 MiB thread stack
//! (a tokio worker's), and a few thousand nested `if`s overflow any stack.
//! Its validator gives up silently on very deep expressions (a policy that
//! was never type-checked would then pass). A pack is configuration, but a
//! crash of every command on a bad one is not an answer: these bounds turn
//! it into a [`PackError`] naming the file and line. They are far above what
//! a real pack needs (the postal pack nests 3 deep, its longest policy has
//! 30 tokens).

use crate::error::PackError;
use crate::taxonomy::line_of;

/// Largest file of a pack, in bytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Deepest nesting of brackets.
pub const MAX_NESTING: usize = 32;
/// Most tokens in one Cedar policy (annotations included).
pub const MAX_POLICY_TOKENS: usize = 2000;
/// Most `if` expressions in one Cedar policy.
pub const MAX_POLICY_IFS: usize = 32;

/// Checks one file's size.
pub(crate) fn check_size(file: &str, src: &str) -> Result<(), PackError> {
    if src.len() > MAX_FILE_BYTES {
        return Err(PackError::new(
            file,
            None,
            "pack-bounds",
            format!(
                "the file is {} bytes; a pack file is at most {MAX_FILE_BYTES}",
                src.len()
            ),
        ));
    }
    Ok(())
}

/// What kind of Cedar text: the schema also nests with `<` `>` (`Set<T>`),
/// where in policies they are comparisons.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CedarText {
    Policies,
    Schema,
}

/// Checks a Cedar file's size, nesting and per-policy size. Strings and
/// `//` comments are skipped; a policy ends at a `;` outside any bracket.
pub(crate) fn check_cedar(file: &str, src: &str, kind: CedarText) -> Result<(), PackError> {
    check_size(file, src)?;
    let err = |offset: usize, message: String| {
        PackError::new(file, Some(line_of(src, offset)), "pack-bounds", message)
    };
    let bytes = src.as_bytes();
    let mut depth = 0usize;
    let mut tokens = 0usize;
    let mut ifs = 0usize;
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        let start = i;
        i += 1;
        match b {
            b'"' => {
                // A string: to the next unescaped quote.
                while let Some(&c) = bytes.get(i) {
                    i += 1;
                    match c {
                        b'\\' => i += 1,
                        b'"' => break,
                        _ => {}
                    }
                }
                tokens += 1;
            }
            b'/' if bytes.get(i) == Some(&b'/') => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                tokens += 1;
            }
            b'<' if kind == CedarText::Schema => {
                depth += 1;
                tokens += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                tokens += 1;
            }
            b'>' if kind == CedarText::Schema => {
                depth = depth.saturating_sub(1);
                tokens += 1;
            }
            b';' if depth == 0 => {
                tokens = 0;
                ifs = 0;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                while bytes
                    .get(i)
                    .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    i += 1;
                }
                if kind == CedarText::Policies && bytes.get(start..i) == Some(b"if".as_slice()) {
                    ifs += 1;
                    if ifs > MAX_POLICY_IFS {
                        return Err(err(
                            start,
                            format!("a policy has more than {MAX_POLICY_IFS} `if` expressions"),
                        ));
                    }
                }
                tokens += 1;
            }
            c if c.is_ascii_whitespace() => {}
            _ => tokens += 1,
        }
        if depth > MAX_NESTING {
            return Err(err(
                start,
                format!("brackets nest deeper than {MAX_NESTING}"),
            ));
        }
        if kind == CedarText::Policies && tokens > MAX_POLICY_TOKENS {
            return Err(err(
                start,
                format!("a policy has more than {MAX_POLICY_TOKENS} tokens"),
            ));
        }
    }
    Ok(())
}
