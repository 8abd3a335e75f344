//! C2SP tlog-cosignature/v1 with Ed25519: a witness's statement that, at a
//! time, the largest consistent tree it saw of a log has a given root.
//!
//! Byte by byte (docs/witness.md):
//! - the signed message is `cosignature/v1\n`, `time <T>\n` (T in ASCII
//!   decimal, no leading zeroes) and the whole checkpoint text, final
//!   newline included;
//! - the signature is a `timestamped_signature`: the 8-byte big-endian T,
//!   then the 64-byte Ed25519 signature;
//! - the key ID is `SHA-256(<name> || 0x0A || 0x04 || 32-byte public key)[:4]`
//!   and the verifier key `<name>+<8 hex key ID>+<base64(0x04 || public key)>`;
//! - in a note, the line is `— <name> base64(key ID || T || signature)`.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::note::{NoteSignature, parse_note, parse_signature_line};
use crate::{Checkpoint, LogError, open_checkpoint};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The signature type byte of Ed25519 cosignatures (tlog-cosignature/v1).
pub const COSIGNATURE_TYPE: u8 = 0x04;

/// Length of a cosignature after its key ID: timestamp and Ed25519 signature.
pub const COSIGNATURE_LEN: usize = 8 + 64;

/// Largest timestamp a cosignature may carry (2^63 - 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// The message a cosigner signs over `checkpoint_text` (the note text: the
/// checkpoint lines, final newline included) at `timestamp`.
pub fn cosignature_message(checkpoint_text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}")
}

/// The tlog-cosignature/v1 verifier key of Ed25519 key `public` under
/// `name`: `<name>+<key ID>+<base64(0x04 || key)>`.
pub fn cosignature_verifier_key(name: &str, public: &[u8; 32]) -> String {
    let mut key = vec![COSIGNATURE_TYPE];
    key.extend_from_slice(public);
    format!("{name}+{:08x}+{}", key_id(name, public), B64.encode(key))
}

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut key = Vec::with_capacity(33);
    key.push(COSIGNATURE_TYPE);
    key.extend_from_slice(public);
    signed_note::key_id(name, &key)
}

/// A witness's Ed25519 cosigner key. The secret is zeroized on drop.
pub struct CosignerKey {
    name: String,
    key_id: u32,
    signing_key: SigningKey,
}

impl fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosignerKey")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl CosignerKey {
    /// A new key named `name`, drawn from `rng`.
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(
        name: &str,
        rng: &mut R,
    ) -> Result<Self, LogError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut_slice());
        Self::from_bytes(name, seed.as_slice())
    }

    /// The key named `name` with a 32-byte Ed25519 seed.
    pub fn from_bytes(name: &str, secret: &[u8]) -> Result<Self, LogError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(LogError::InvalidKey(
                "key name must be non-empty, without spaces or '+'",
            ));
        }
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            secret
                .try_into()
                .map_err(|_| LogError::InvalidKey("secret key must be 32 bytes"))?,
        );
        let signing_key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, &signing_key.verifying_key().to_bytes());
        Ok(CosignerKey {
            name: name.to_owned(),
            key_id,
            signing_key,
        })
    }

    /// The 32-byte seed. Keep it secret.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.signing_key.as_bytes().to_vec())
    }

    /// The cosigner name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID (signature type 0x04).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing_key.verifying_key().to_bytes()
    }

    /// The verifier key `<name>+<key ID>+<base64(0x04 || public key)>`.
    pub fn verifier_key(&self) -> String {
        let mut key = vec![COSIGNATURE_TYPE];
        key.extend_from_slice(&self.public_key());
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(key))
    }

    /// The cosignature line (with its newline) over `checkpoint_text` at
    /// `timestamp` (POSIX seconds).
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> Result<String, LogError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(LogError::InvalidKey("timestamp above 2^63 - 1"));
        }
        if !checkpoint_text.ends_with('\n') {
            return Err(LogError::MalformedNote(
                "checkpoint text must end in a newline",
            ));
        }
        let msg = cosignature_message(checkpoint_text, timestamp);
        let sig = self.signing_key.sign(msg.as_bytes());
        let mut raw = Vec::with_capacity(COSIGNATURE_LEN);
        raw.extend_from_slice(&timestamp.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: raw,
        }
        .to_line())
    }
}

/// A cosigner's public key, from its verifier key (type 0x04).
#[derive(Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl fmt::Debug for CosignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.verifier_key())
    }
}

impl CosignatureVerifier {
    /// Parses `<name>+<8 hex key ID>+<base64(0x04 || 32-byte key)>`; the key
    /// ID must be the one the name and key give, and the key a usable
    /// Ed25519 point.
    pub fn new(vkey: &str) -> Result<Self, LogError> {
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(LogError::InvalidKey("a verifier key is <name>+<id>+<key>"));
        };
        if !signed_note::is_key_name_valid(name) {
            return Err(LogError::InvalidKey(
                "the key name is empty or holds a space or '+'",
            ));
        }
        if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LogError::InvalidKey("the key ID is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id, 16)
            .map_err(|_| LogError::InvalidKey("the key ID is not 8 hex digits"))?;
        let raw = B64
            .decode(key)
            .map_err(|_| LogError::InvalidKey("the key is not base64"))?;
        let Some((&kind, public)) = raw.split_first() else {
            return Err(LogError::InvalidKey("the key is empty"));
        };
        if kind != COSIGNATURE_TYPE {
            return Err(LogError::InvalidKey(
                "not a cosignature/v1 key (signature type 0x04)",
            ));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| LogError::InvalidKey("an Ed25519 key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| LogError::InvalidKey("not an Ed25519 public key"))?;
        if key.is_weak() {
            return Err(LogError::InvalidKey("a small-order Ed25519 key"));
        }
        if key_id(name, &public) != id {
            return Err(LogError::InvalidKey("the key ID does not match the key"));
        }
        Ok(CosignatureVerifier {
            name: name.to_owned(),
            key_id: id,
            key,
        })
    }

    /// The cosigner name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// `<name>+<key ID>`, which names this key in messages and storage.
    pub fn label(&self) -> String {
        format!("{}+{:08x}", self.name, self.key_id)
    }

    /// The Ed25519 public key (the cosigned message does not name the
    /// key: one key under two names is one witness).
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The verifier key, as [`CosignerKey::verifier_key`] prints it.
    pub fn verifier_key(&self) -> String {
        let mut key = vec![COSIGNATURE_TYPE];
        key.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(key))
    }

    /// Whether a signature line is this key's by name and key ID (lines of
    /// other keys are to be ignored, not failed).
    pub fn is_signer_of(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_id == self.key_id
    }

    /// Checks a signature of this key over `checkpoint_text`; returns its
    /// timestamp.
    pub fn verify(&self, checkpoint_text: &str, sig: &NoteSignature) -> Result<u64, LogError> {
        if !self.is_signer_of(sig) {
            return Err(LogError::BadSignature);
        }
        if sig.signature.len() != COSIGNATURE_LEN {
            return Err(LogError::BadSignature);
        }
        let (ts, raw) = sig.signature.split_at(8);
        let mut t = [0u8; 8];
        t.copy_from_slice(ts);
        let timestamp = u64::from_be_bytes(t);
        if timestamp > MAX_TIMESTAMP {
            return Err(LogError::BadSignature);
        }
        let raw: [u8; 64] = raw.try_into().map_err(|_| LogError::BadSignature)?;
        let signature = ed25519_dalek::Signature::from_bytes(&raw);
        let msg = cosignature_message(checkpoint_text, timestamp);
        self.key
            .verify_strict(msg.as_bytes(), &signature)
            .map_err(|_| LogError::BadSignature)?;
        Ok(timestamp)
    }

    /// Checks one cosignature line over `checkpoint_text`.
    pub fn verify_line(&self, checkpoint_text: &str, line: &str) -> Result<u64, LogError> {
        self.verify(checkpoint_text, &parse_signature_line(line)?)
    }
}

/// A cosignature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The cosigner's `<name>+<key ID>`.
    pub cosigner: String,
    /// When it cosigned (POSIX seconds).
    pub timestamp: u64,
    /// The signature line, newline included.
    pub line: String,
}

/// A checkpoint with the cosignatures that verified, by cosigner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessedCheckpoint {
    pub checkpoint: Checkpoint,
    /// One per cosigner whose signature verified, in the order of `witnesses`.
    pub cosigned: Vec<Cosigned>,
}

/// Verifies a checkpoint note signed by the log (`log_vkey`) and the
/// cosignatures in it by any of `witnesses`. Signature lines of unknown
/// keys are ignored; a line of a known witness that does not verify fails
/// the whole note (as signed-note asks of clients). Does not judge the
/// quorum: count [`WitnessedCheckpoint::cosigned`].
pub fn verify_cosigned(
    note: &str,
    log_vkey: &str,
    witnesses: &[CosignatureVerifier],
) -> Result<WitnessedCheckpoint, LogError> {
    let checkpoint = open_checkpoint(note, log_vkey)?;
    verify_cosignatures(note, checkpoint, witnesses)
}

/// The cosignatures in `note` by any of `witnesses`, as [`verify_cosigned`]
/// checks them, for a note whose log signature was already checked:
/// `checkpoint` is what [`open_checkpoint`] returned for this very `note`.
/// The log's signature is not checked again; a `checkpoint` that is not
/// the note's text (another note's) is refused.
pub fn verify_cosignatures(
    note: &str,
    checkpoint: Checkpoint,
    witnesses: &[CosignatureVerifier],
) -> Result<WitnessedCheckpoint, LogError> {
    let parsed = parse_note(note.as_bytes())?;
    if checkpoint.body()? != parsed.text {
        return Err(LogError::MalformedNote(
            "the checkpoint given is not the note's text",
        ));
    }
    let mut cosigned: Vec<Cosigned> = Vec::new();
    for w in witnesses {
        for sig in parsed.signatures.iter().filter(|s| w.is_signer_of(s)) {
            let timestamp = w.verify(&parsed.text, sig)?;
            if !cosigned.iter().any(|c| c.cosigner == w.label()) {
                cosigned.push(Cosigned {
                    cosigner: w.label(),
                    timestamp,
                    line: sig.to_line(),
                });
            }
        }
    }
    Ok(WitnessedCheckpoint {
        checkpoint,
        cosigned,
    })
}
