//! C2SP tlog-checkpoint bodies, signed and verified as Ed25519 C2SP signed notes.
//!
//! Formatting and parsing of the checkpoint body is `tlog_tiles::Checkpoint`;
//! the note, key IDs, verifier keys and signature lines are `signed_note`.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use signed_note::{Note, NoteError, StandardVerifier, Verifier as _, VerifierError, VerifierList};
use tlog_tiles as tlog;
use zeroize::Zeroizing;

use crate::{Hash, LogError};

/// Signature algorithm byte of Ed25519 in C2SP signed-note keys.
const ALG_ED25519: u8 = 0x01;

/// A C2SP tlog-checkpoint: the log's origin, its size and its RFC 6962 root,
/// plus optional extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity (and the name of the key that signs it).
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 root of the tree of `size` leaves.
    pub root: Hash,
    /// Extension lines, each non-empty and without a newline. C2SP does not
    /// recommend them; usually empty.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text (the part that is signed): `<origin>\n<size>\n<base64
    /// root>\n` followed by one line per extension.
    pub fn body(&self) -> Result<String, LogError> {
        let text = self.to_tlog()?.to_bytes();
        String::from_utf8(text).map_err(|_| LogError::MalformedNote("checkpoint is not UTF-8"))
    }

    fn to_tlog(&self) -> Result<tlog::Checkpoint, LogError> {
        if self.origin.contains('\n') {
            return Err(LogError::MalformedNote("origin contains a newline"));
        }
        let mut extension = String::new();
        for line in &self.extensions {
            if line.is_empty() || line.contains('\n') {
                return Err(LogError::MalformedNote(
                    "extension line is empty or contains a newline",
                ));
            }
            extension.push_str(line);
            extension.push('\n');
        }
        tlog::Checkpoint::new(&self.origin, self.size, tlog::Hash(self.root), &extension)
            .map_err(|_| LogError::MalformedNote("invalid checkpoint"))
    }

    fn from_tlog(checkpoint: &tlog::Checkpoint) -> Self {
        Checkpoint {
            origin: checkpoint.origin().to_owned(),
            size: checkpoint.size(),
            root: checkpoint.hash().0,
            extensions: checkpoint.extension().lines().map(str::to_owned).collect(),
        }
    }
}

/// The log's Ed25519 signing key, named after the log's origin.
///
/// The name follows C2SP signed-note: non-empty, no Unicode whitespace, no
/// `+`. The secret is zeroized when the signer is dropped.
pub struct LogSigner {
    name: String,
    key_id: u32,
    signing_key: SigningKey,
}

impl fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl LogSigner {
    /// A new key for log `origin`, drawn from `rng`.
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(
        origin: &str,
        rng: &mut R,
    ) -> Result<Self, LogError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut_slice());
        Self::from_seed(origin, &seed)
    }

    /// The key for log `origin` with the given 32-byte Ed25519 seed (RFC 8032
    /// secret key), e.g. derived from the vault's master key.
    pub fn from_seed(origin: &str, seed: &[u8; 32]) -> Result<Self, LogError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(LogError::InvalidKey(
                "key name must be non-empty, without spaces or '+'",
            ));
        }
        let signing_key = SigningKey::from_bytes(seed);
        let key_id = signed_note::key_id(origin, &encoded_public_key(&signing_key));
        Ok(LogSigner {
            name: origin.to_owned(),
            key_id,
            signing_key,
        })
    }

    /// Restores a signer from [`LogSigner::to_bytes`] (a 32-byte Ed25519 seed).
    pub fn from_bytes(origin: &str, secret: &[u8]) -> Result<Self, LogError> {
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            secret
                .try_into()
                .map_err(|_| LogError::InvalidKey("secret key must be 32 bytes"))?,
        );
        Self::from_seed(origin, &seed)
    }

    /// The secret: the 32-byte Ed25519 seed. Keep it secret.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.signing_key.as_bytes().to_vec())
    }

    /// The key name, which is the origin of the checkpoints it signs.
    pub fn origin(&self) -> &str {
        &self.name
    }

    /// The C2SP signed-note key ID: the first 4 bytes (big-endian) of
    /// `SHA-256(name || 0x0A || 0x01 || public key)`.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing_key.verifying_key().to_bytes()
    }

    /// The C2SP verifier key `<name>+<8 hex digit key ID>+<base64(0x01 || public key)>`,
    /// to give to whoever checks the log with [`open_checkpoint`].
    pub fn verifier_key(&self) -> String {
        signed_note::new_ed25519_verifier_key(&self.name, &self.signing_key.verifying_key())
    }

    /// Signs `checkpoint` and returns the signed note, byte-exact C2SP:
    /// `<origin>\n<size>\n<base64 root>\n[<extension>\n…]\n— <name> <base64(key ID || signature)>\n`.
    ///
    /// Fails if the checkpoint's origin is not this key's name, or if an
    /// extension line is empty, holds a newline or a control character.
    pub fn sign(&self, checkpoint: &Checkpoint) -> Result<String, LogError> {
        if checkpoint.origin != self.name {
            return Err(LogError::OriginMismatch {
                expected: self.name.clone(),
                found: checkpoint.origin.clone(),
            });
        }
        let text = checkpoint.to_tlog()?.to_bytes();
        let mut note = Note::new(&text, &[])
            .map_err(|_| LogError::MalformedNote("checkpoint is not valid note text"))?;
        note.add_sigs(&[&NoteSigner(self)])
            .map_err(|_| LogError::InvalidKey("signing failed"))?;
        String::from_utf8(note.to_bytes())
            .map_err(|_| LogError::MalformedNote("signed note is not UTF-8"))
    }
}

fn encoded_public_key(signing_key: &SigningKey) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(ALG_ED25519);
    key.extend_from_slice(signing_key.verifying_key().as_bytes());
    key
}

/// [`LogSigner`] as a `signed_note::Signer`, kept private so that the
/// signed_note types stay out of this crate's API.
struct NoteSigner<'a>(&'a LogSigner);

impl signed_note::Signer for NoteSigner<'_> {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn key_id(&self) -> u32 {
        self.0.key_id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.0.signing_key.try_sign(msg)?.to_vec())
    }
}

/// Checks a log's verifier key (`<name>+<key id>+<base64(0x01 || key)>`,
/// Ed25519) and returns its name.
pub fn log_key_name(verifier_key: &str) -> Result<String, LogError> {
    StandardVerifier::new(verifier_key)
        .map(|v| v.name().to_owned())
        .map_err(|e| match e {
            VerifierError::Format => LogError::InvalidKey("malformed verifier key"),
            VerifierError::Alg => LogError::InvalidKey("verifier key is not Ed25519 (type 0x01)"),
            VerifierError::Id => LogError::InvalidKey("verifier key ID does not match the key"),
        })
}

/// Verifies a signed checkpoint note against `verifier_key` (a C2SP verifier
/// key as made by [`LogSigner::verifier_key`]) and returns the checkpoint.
///
/// The note must be well formed, carry a valid signature by that key, and its
/// body must be a C2SP checkpoint whose origin is the key's name. As C2SP
/// requires, signatures by other keys (witness cosignatures, say) are
/// ignored.
pub fn open_checkpoint(note: &str, verifier_key: &str) -> Result<Checkpoint, LogError> {
    let verifier = StandardVerifier::new(verifier_key).map_err(|e| match e {
        VerifierError::Format => LogError::InvalidKey("malformed verifier key"),
        VerifierError::Alg => LogError::InvalidKey("verifier key is not Ed25519"),
        VerifierError::Id => LogError::InvalidKey("verifier key ID does not match the key"),
    })?;
    let name = verifier.name().to_owned();
    let parsed = Note::from_bytes(note.as_bytes())
        .map_err(|_| LogError::MalformedNote("not a signed note"))?;
    parsed
        .verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| match e {
            NoteError::MalformedNote => LogError::MalformedNote("not a signed note"),
            _ => LogError::BadSignature,
        })?;
    let checkpoint = tlog::Checkpoint::from_bytes(parsed.text())
        .map_err(|_| LogError::MalformedNote("note text is not a checkpoint"))?;
    if checkpoint.origin() != name {
        return Err(LogError::OriginMismatch {
            expected: name,
            found: checkpoint.origin().to_owned(),
        });
    }
    Ok(Checkpoint::from_tlog(&checkpoint))
}
