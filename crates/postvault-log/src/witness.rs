//! The C2SP tlog-witness protocol, sans-IO: the `add-checkpoint` request
//! body (both ways), the `text/x.tlog.size` answer, and the witness's
//! decision and state transition for one submission.
//!
//! A witness runs [`open_submission`] (format, origin, log signature), then,
//! inside the transaction that holds its state row for the origin,
//! [`Submission::check`] (old size, consistency), stores the new
//! [`WitnessedTree`] and only then cosigns. Each [`Refusal`] carries the
//! status code the specification fixes.

use base64::Engine as _;
use signed_note::{Note, NoteError, StandardVerifier, VerifierList};
use tlog_tiles as tlog;

use crate::{Checkpoint, EMPTY_ROOT, Hash, LogError, verify_consistency};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// At most this many consistency proof lines (the specification's limit).
pub const MAX_PROOF_LINES: usize = 63;

/// Largest `add-checkpoint` body a witness reads.
pub const MAX_BODY_LEN: usize = 1 << 20;

/// The `Content-Type` of a 409 answer: the witness's size in decimal and a newline.
pub const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// An `add-checkpoint` request: the size the client believes the witness
/// holds, a consistency proof from it, and the signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, signature lines included.
    pub checkpoint: String,
}

impl AddCheckpoint {
    /// The request body: `old <N>\n`, one base64 hash a line, a blank line,
    /// the checkpoint.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size);
        for h in &self.proof {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out.into_bytes()
    }
}

/// A decimal with no leading zeroes ("0" alone for zero), at most 2^63 - 1.
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse::<u64>().ok().filter(|n| *n <= i64::MAX as u64)
}

/// Parses an `add-checkpoint` request body. Checks its lines, not the
/// checkpoint's signatures.
pub fn parse_add_checkpoint(body: &[u8]) -> Result<AddCheckpoint, LogError> {
    if body.len() > MAX_BODY_LEN {
        return Err(LogError::MalformedNote("the request body is too large"));
    }
    let text = std::str::from_utf8(body).map_err(|_| LogError::MalformedNote("not UTF-8"))?;
    let (first, mut rest) = text
        .split_once('\n')
        .ok_or(LogError::MalformedNote("no old size line"))?;
    let old_size =
        first
            .strip_prefix("old ")
            .and_then(parse_decimal)
            .ok_or(LogError::MalformedNote(
                "the first line is not `old <size>`",
            ))?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest.split_once('\n').ok_or(LogError::MalformedNote(
            "no blank line before the checkpoint",
        ))?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(LogError::MalformedNote(
                "more than 63 consistency proof lines",
            ));
        }
        let raw = B64
            .decode(line)
            .map_err(|_| LogError::MalformedNote("a proof line is not base64"))?;
        let hash: Hash = raw
            .try_into()
            .map_err(|_| LogError::MalformedNote("a proof line is not a 32-byte hash"))?;
        proof.push(hash);
    }
    Ok(AddCheckpoint {
        old_size,
        proof,
        checkpoint: rest.to_owned(),
    })
}

/// The body of a 409 answer for a witness holding `size`.
pub fn format_tlog_size(size: u64) -> String {
    format!("{size}\n")
}

/// Parses the body of a 409 answer (`text/x.tlog.size`).
pub fn parse_tlog_size(body: &[u8]) -> Result<u64, LogError> {
    std::str::from_utf8(body)
        .ok()
        .and_then(|s| s.strip_suffix('\n'))
        .and_then(parse_decimal)
        .ok_or(LogError::MalformedNote("not a text/x.tlog.size body"))
}

/// The latest checkpoint a witness cosigned for one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WitnessedTree {
    pub size: u64,
    pub root: Hash,
}

/// Why a witness does not cosign, with the status code tlog-witness fixes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: the body or the checkpoint is not well formed.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// 404: the checkpoint's origin is not a log this witness follows.
    #[error("unknown log origin")]
    UnknownOrigin,
    /// 403: no signature verifies against a key trusted for the origin.
    #[error("no signature by a trusted key of this log")]
    NotSigned,
    /// 400: the old size is larger than the checkpoint's size.
    #[error("old size {old} is larger than the checkpoint size {size}")]
    OldSizeAboveNew { old: u64, size: u64 },
    /// 409: the old size is not the size this witness last cosigned.
    #[error("old size {old} is not the size this witness holds ({size})")]
    StaleOldSize { old: u64, size: u64 },
    /// 409: same size as the witness holds, another root (a fork).
    #[error("a different tree of size {size} was cosigned before")]
    RootMismatch { size: u64 },
    /// 422: the consistency proof does not verify.
    #[error("the consistency proof does not verify")]
    BadProof,
}

impl Refusal {
    /// The HTTP status code of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) | Refusal::OldSizeAboveNew { .. } => 400,
            Refusal::NotSigned => 403,
            Refusal::UnknownOrigin => 404,
            Refusal::StaleOldSize { .. } | Refusal::RootMismatch { .. } => 409,
            Refusal::BadProof => 422,
        }
    }

    /// The size a 409 answer names (`text/x.tlog.size`).
    pub fn conflict_size(&self) -> Option<u64> {
        match self {
            Refusal::StaleOldSize { size, .. } | Refusal::RootMismatch { size } => Some(*size),
            _ => None,
        }
    }
}

/// A request whose format, origin and log signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    pub checkpoint: Checkpoint,
    /// The checkpoint note's text (what a cosignature signs).
    pub text: String,
    /// The whole signed note as submitted.
    pub note: String,
}

/// The first checks of `add-checkpoint`, in the specification's order:
/// the body (400), the origin (404, through `trusted`, which gives the
/// verifier keys trusted for an origin), a signature by one of those keys
/// (403; signatures of unknown keys are ignored).
pub fn open_submission(
    body: &[u8],
    trusted: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Result<Submission, Refusal> {
    let req = parse_add_checkpoint(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let note = Note::from_bytes(req.checkpoint.as_bytes())
        .map_err(|_| Refusal::Malformed("the checkpoint is not a signed note".into()))?;
    let text = std::str::from_utf8(note.text())
        .map_err(|_| Refusal::Malformed("the checkpoint is not UTF-8".into()))?
        .to_owned();
    let parsed = tlog::Checkpoint::from_bytes(text.as_bytes())
        .map_err(|_| Refusal::Malformed("the note is not a checkpoint".into()))?;
    if parsed.size() > i64::MAX as u64 {
        return Err(Refusal::Malformed("the tree size is above 2^63 - 1".into()));
    }
    let checkpoint = Checkpoint {
        origin: parsed.origin().to_owned(),
        size: parsed.size(),
        root: parsed.hash().0,
        extensions: parsed.extension().lines().map(str::to_owned).collect(),
    };
    let keys = trusted(&checkpoint.origin).ok_or(Refusal::UnknownOrigin)?;
    let verifiers: Vec<Box<dyn signed_note::Verifier>> = keys
        .iter()
        .filter_map(|k| StandardVerifier::new(k).ok())
        .map(|v| Box::new(v) as Box<dyn signed_note::Verifier>)
        .collect();
    if verifiers.is_empty() {
        return Err(Refusal::NotSigned);
    }
    match note.verify(&VerifierList::new(verifiers)) {
        Ok(_) => {}
        Err(NoteError::MalformedNote) => {
            return Err(Refusal::Malformed(
                "the checkpoint is not a signed note".into(),
            ));
        }
        Err(_) => return Err(Refusal::NotSigned),
    }
    if req.old_size > checkpoint.size {
        return Err(Refusal::OldSizeAboveNew {
            old: req.old_size,
            size: checkpoint.size,
        });
    }
    Ok(Submission {
        old_size: req.old_size,
        proof: req.proof,
        checkpoint,
        text,
        note: req.checkpoint,
    })
}

impl Submission {
    /// The rest of `add-checkpoint` against `latest`, the tree this witness
    /// last cosigned for the origin (None: never): the old size must be its
    /// size (409 naming it), the proof must lead from its root to the new
    /// one (422), an equal size must have an equal root (409). Returns the
    /// witness's new state; the caller stores it before cosigning.
    pub fn check(&self, latest: Option<&WitnessedTree>) -> Result<WitnessedTree, Refusal> {
        let held = latest.copied().unwrap_or(WitnessedTree {
            size: 0,
            root: EMPTY_ROOT,
        });
        if self.old_size != held.size {
            return Err(Refusal::StaleOldSize {
                old: self.old_size,
                size: held.size,
            });
        }
        let new = WitnessedTree {
            size: self.checkpoint.size,
            root: self.checkpoint.root,
        };
        if new.size == held.size {
            if !self.proof.is_empty() {
                return Err(Refusal::BadProof);
            }
            // A fresh witness holds nothing at size 0: the empty tree has
            // one root only.
            if latest.is_none() && new.root != EMPTY_ROOT {
                return Err(Refusal::BadProof);
            }
            if new.root != held.root {
                return Err(Refusal::RootMismatch { size: held.size });
            }
            return Ok(new);
        }
        verify_consistency(held.size, new.size, &held.root, &new.root, &self.proof)
            .map_err(|_: LogError| Refusal::BadProof)?;
        Ok(new)
    }
}
