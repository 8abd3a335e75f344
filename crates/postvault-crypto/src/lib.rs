//! The key hierarchy of postvault, and the only crate that touches key bytes.
//!
//! ```text
//! external key (optional: a file, or a KMS through a command; never stored)
//!  └─ seals the master key's root and its wrapping key (the key store alone
//!     then opens nothing; see `MasterKey::seal_under`)
//! master key (32-byte root, and a wrapping key: derived from the root, or
//!     random once the master key lives outside the key store)
//!  ├─ wraps (AES-256-GCM, AAD = purpose label || subject ref) per-subject keys:
//!  │    ├─ data key    (AES-256-GCM)  seals the subject's records, combined
//!  │    │                  with a retention period key (`DataKey::record_key`)
//!  │    └─ tag key     (HMAC-SHA256)  tags the subject's log leaves
//!  ├─ wraps (AAD = label || key name) retention period keys, one per
//!  │    category and UTC day of expiry, and mail-cover order keys
//!  ├─ HKDF "postvault/v1/subject-ref"  -> keyed hash of subject ids
//!  └─ HKDF "postvault/v1/blind-index"  -> keyed hash of lookup values
//! ```
//!
//! Erasing a subject destroys its wrapped keys; its ciphertexts and its log
//! tags then belong to nobody. The end of a retention period destroys that
//! period's key; every record sealed under it is then unreadable, whoever
//! kept a copy. Randomness is passed in (`&dyn SecureRandom`).
//! Byte layouts are documented in docs/formats.md.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::{hkdf, hmac};
use zeroize::Zeroizing;

#[cfg(test)]
mod tests;

pub use aws_lc_rs::rand::SystemRandom;

/// Length of every symmetric key.
pub const KEY_LEN: usize = 32;
/// Length of a sealed envelope's overhead: nonce and tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 16;
/// Length of a wrapped key.
pub const WRAPPED_LEN: usize = KEY_LEN + SEAL_OVERHEAD;
/// Length of a subject ref, a blind-index token and a leaf tag.
pub const TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("a key must be {KEY_LEN} bytes, got {0}")]
    KeyLength(usize),
    #[error("the system random source failed")]
    Random,
    #[error("authentication failed: wrong key, or the data was altered")]
    Open,
    #[error("sealing failed")]
    Seal,
    #[error(
        "the master key given (key id {given}) is not the one this key store is sealed under (key id {sealed_under})"
    )]
    WrongExternalKey { given: String, sealed_under: String },
    #[error("a master key is 32 bytes: raw, 64 hex digits or base64")]
    ExternalKeyFormat,
}

fn random_key(rng: &dyn SecureRandom) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill(k.as_mut()).map_err(|_| CryptoError::Random)?;
    Ok(k)
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::KeyLength(bytes.len()))
}

/// `nonce || ciphertext || tag` of `plaintext` under `key`.
fn seal(
    key: &LessSafeKey,
    rng: &dyn SecureRandom,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).map_err(|_| CryptoError::Random)?;
    seal_nonce(key, nonce, aad, plaintext)
}

/// Random nonces drawn from the system random source in bulk: one call
/// for many seals instead of one each. The bytes are the same system
/// randomness, each handed out once.
pub struct Nonces {
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nonces(..)")
    }
}

impl Default for Nonces {
    fn default() -> Self {
        Nonces::new()
    }
}

impl Nonces {
    const BATCH: usize = 256;

    pub fn new() -> Nonces {
        Nonces {
            buf: Zeroizing::new(vec![0u8; NONCE_LEN * Nonces::BATCH]),
            pos: NONCE_LEN * Nonces::BATCH,
        }
    }

    fn next(&mut self, rng: &dyn SecureRandom) -> Result<[u8; NONCE_LEN], CryptoError> {
        if self.pos + NONCE_LEN > self.buf.len() {
            rng.fill(self.buf.as_mut_slice())
                .map_err(|_| CryptoError::Random)?;
            self.pos = 0;
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&self.buf[self.pos..self.pos + NONCE_LEN]);
        // Never handed out twice.
        self.buf[self.pos..self.pos + NONCE_LEN].fill(0);
        self.pos += NONCE_LEN;
        Ok(n)
    }
}

/// [`seal`] with a given nonce, which must never repeat under `key`.
fn seal_nonce(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| CryptoError::Seal)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

fn open(key: &LessSafeKey, aad: &[u8], envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut buf = Vec::new();
    open_into(key, aad, envelope, &mut buf)?;
    Ok(buf)
}

/// [`open`] into `buf` (its contents replaced): the plaintext, or an error
/// and `buf` emptied.
fn open_into(
    key: &LessSafeKey,
    aad: &[u8],
    envelope: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    buf.clear();
    if envelope.len() < SEAL_OVERHEAD {
        return Err(CryptoError::Open);
    }
    let (nonce, rest) = envelope.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
    buf.extend_from_slice(rest);
    match key.open_in_place(nonce, Aad::from(aad), buf) {
        Ok(plain) => {
            let n = plain.len();
            buf.truncate(n);
            Ok(())
        }
        Err(_) => {
            buf.clear();
            Err(CryptoError::Open)
        }
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(prk: &hkdf::Prk, info: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    let infos = [info];
    prk.expand(&infos, Len(KEY_LEN))
        .and_then(|okm| okm.fill(out.as_mut()))
        .map_err(|_| CryptoError::Seal)?;
    Ok(out)
}

/// What a wrapped key is for; part of the wrapping's associated data, so a
/// wrapped data key cannot be passed off as a tag key or moved to another
/// subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Data,
    Tag,
}

impl KeyKind {
    fn label(self) -> &'static [u8] {
        match self {
            KeyKind::Data => b"postvault/v1/data-key",
            KeyKind::Tag => b"postvault/v1/tag-key",
        }
    }
}

/// The root of the hierarchy. Kept in the key file, never in the data store.
pub struct MasterKey {
    raw: Zeroizing<[u8; KEY_LEN]>,
    /// The wrapping key's bytes (derived from `raw`, or given).
    kek_raw: Zeroizing<[u8; KEY_LEN]>,
    kek: LessSafeKey,
    subject_ref: hmac::Key,
    blind_index: hmac::Key,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn generate(rng: &dyn SecureRandom) -> Result<MasterKey, CryptoError> {
        let raw = random_key(rng)?;
        MasterKey::from_bytes(raw.as_ref())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey, CryptoError> {
        let raw: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::KeyLength(bytes.len()))?;
        let raw = Zeroizing::new(raw);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"postvault master key").extract(raw.as_ref());
        let kek_raw = derive(&prk, b"postvault/v1/key-wrap")?;
        MasterKey::assemble(raw, kek_raw, &prk)
    }

    /// A master key with root `root` and the wrapping key `kek` (random,
    /// not derived from the root): what a vault whose master key lives
    /// outside its key store holds. Subject refs and blind indexes still
    /// come from the root alone, so they never change.
    pub fn from_parts(root: &[u8], kek: &[u8]) -> Result<MasterKey, CryptoError> {
        let raw: [u8; KEY_LEN] = root
            .try_into()
            .map_err(|_| CryptoError::KeyLength(root.len()))?;
        let kek_raw: [u8; KEY_LEN] = kek
            .try_into()
            .map_err(|_| CryptoError::KeyLength(kek.len()))?;
        let raw = Zeroizing::new(raw);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"postvault master key").extract(raw.as_ref());
        MasterKey::assemble(raw, Zeroizing::new(kek_raw), &prk)
    }

    /// The same root with a new random wrapping key: every key must then be
    /// wrapped again (`MasterKey::rewrap`).
    pub fn with_new_kek(&self, rng: &dyn SecureRandom) -> Result<MasterKey, CryptoError> {
        let kek = random_key(rng)?;
        MasterKey::from_parts(self.raw.as_ref(), kek.as_ref())
    }

    fn assemble(
        raw: Zeroizing<[u8; KEY_LEN]>,
        kek_raw: Zeroizing<[u8; KEY_LEN]>,
        prk: &hkdf::Prk,
    ) -> Result<MasterKey, CryptoError> {
        let kek = aead_key(kek_raw.as_ref())?;
        let subject_ref = hmac::Key::new(
            hmac::HMAC_SHA256,
            derive(prk, b"postvault/v1/subject-ref")?.as_ref(),
        );
        let blind_index = hmac::Key::new(
            hmac::HMAC_SHA256,
            derive(prk, b"postvault/v1/blind-index")?.as_ref(),
        );
        Ok(MasterKey {
            raw,
            kek_raw,
            kek,
            subject_ref,
            blind_index,
        })
    }

    /// The root and wrapping key sealed under `external` for the key store
    /// (`version 1 || external key id (8) || nonce || AES-256-GCM(root ||
    /// wrapping key)`, bound to `vault_id`).
    pub fn seal_under(
        &self,
        external: &ExternalKey,
        rng: &dyn SecureRandom,
        vault_id: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let id = external.id_bytes();
        let mut plain = Zeroizing::new([0u8; 2 * KEY_LEN]);
        plain[..KEY_LEN].copy_from_slice(self.raw.as_ref());
        plain[KEY_LEN..].copy_from_slice(self.kek_raw.as_ref());
        let mut out = vec![SEALED_MASTER_VERSION];
        out.extend_from_slice(&id);
        out.extend_from_slice(&seal(
            &aead_key(external.0.as_ref())?,
            rng,
            &sealed_aad(vault_id, &id),
            plain.as_ref(),
        )?);
        Ok(out)
    }

    /// Opens what [`MasterKey::seal_under`] made. A wrong external key is
    /// [`CryptoError::WrongExternalKey`], naming both key ids.
    pub fn unseal(
        external: &ExternalKey,
        sealed: &[u8],
        vault_id: &[u8],
    ) -> Result<MasterKey, CryptoError> {
        let (version, rest) = sealed.split_first().ok_or(CryptoError::Open)?;
        if *version != SEALED_MASTER_VERSION || rest.len() < 8 {
            return Err(CryptoError::Open);
        }
        let (id, envelope) = rest.split_at(8);
        let mut want = [0u8; 8];
        want.copy_from_slice(id);
        if want != external.id_bytes() {
            return Err(CryptoError::WrongExternalKey {
                given: external.id(),
                sealed_under: hex_of(&want),
            });
        }
        let plain = Zeroizing::new(open(
            &aead_key(external.0.as_ref())?,
            &sealed_aad(vault_id, &want),
            envelope,
        )?);
        if plain.len() != 2 * KEY_LEN {
            return Err(CryptoError::Open);
        }
        MasterKey::from_parts(&plain[..KEY_LEN], &plain[KEY_LEN..])
    }

    /// The id of the external key `sealed` was made under, if it is one.
    pub fn sealed_key_id(sealed: &[u8]) -> Option<String> {
        match sealed.split_first() {
            Some((&SEALED_MASTER_VERSION, rest)) if rest.len() >= 8 => Some(hex_of(&rest[..8])),
            _ => None,
        }
    }

    /// Unwraps a key wrapped by this master key for (`kind`, `subject_ref`)
    /// and wraps it for the same under `to`: the key itself is unchanged.
    pub fn rewrap(
        &self,
        to: &MasterKey,
        rng: &dyn SecureRandom,
        kind: KeyKind,
        subject_ref: &[u8],
        wrapped: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let aad = wrap_aad(kind, subject_ref);
        let raw = Zeroizing::new(open(&self.kek, &aad, wrapped)?);
        seal(&to.kek, rng, &aad, raw.as_ref())
    }

    /// Wraps given key bytes (a signing seed) for (`kind`, `subject_ref`).
    pub fn wrap_raw(
        &self,
        rng: &dyn SecureRandom,
        kind: KeyKind,
        subject_ref: &[u8],
        raw: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        seal(&self.kek, rng, &wrap_aad(kind, subject_ref), raw)
    }

    /// The key bytes [`MasterKey::wrap_raw`] wrapped.
    pub fn unwrap_raw(
        &self,
        kind: KeyKind,
        subject_ref: &[u8],
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        Ok(Zeroizing::new(open(
            &self.kek,
            &wrap_aad(kind, subject_ref),
            wrapped,
        )?))
    }

    /// The raw key, for writing the key file.
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        self.raw.clone()
    }

    /// The opaque reference under which the store knows a subject: a keyed
    /// hash of its external id, so the store holds no plaintext identifier.
    pub fn subject_ref(&self, external_id: &str) -> [u8; TOKEN_LEN] {
        truncate(hmac::sign(&self.subject_ref, external_id.as_bytes()).as_ref())
    }

    /// A blind-index token for an exact-match lookup of `value` in `domain`
    /// (e.g. `account_identity.email`). The caller normalizes `value`.
    pub fn blind_index(&self, domain: &str, value: &[u8]) -> [u8; TOKEN_LEN] {
        let mut ctx = hmac::Context::with_key(&self.blind_index);
        ctx.update(&(domain.len() as u32).to_be_bytes());
        ctx.update(domain.as_bytes());
        ctx.update(value);
        truncate(ctx.sign().as_ref())
    }

    /// A new random subject key of `kind`, wrapped for `subject_ref`.
    pub fn new_wrapped(
        &self,
        rng: &dyn SecureRandom,
        kind: KeyKind,
        subject_ref: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let key = random_key(rng)?;
        seal(&self.kek, rng, &wrap_aad(kind, subject_ref), key.as_ref())
    }

    /// New random data and tag keys for `subject_ref`: wrapped for storage,
    /// and ready for use (no unwrap round trip).
    pub fn new_subject_keys(
        &self,
        rng: &dyn SecureRandom,
        subject_ref: &[u8],
    ) -> Result<NewSubjectKeys, CryptoError> {
        let data = random_key(rng)?;
        let tag = random_key(rng)?;
        Ok(NewSubjectKeys {
            wrapped_data: seal(
                &self.kek,
                rng,
                &wrap_aad(KeyKind::Data, subject_ref),
                data.as_ref(),
            )?,
            wrapped_tag: seal(
                &self.kek,
                rng,
                &wrap_aad(KeyKind::Tag, subject_ref),
                tag.as_ref(),
            )?,
            data: DataKey::from_raw(data)?,
            tag: TagKey::from_bytes(tag.as_ref())?,
        })
    }

    /// Unwraps a data key.
    pub fn data_key(&self, wrapped: &[u8], subject_ref: &[u8]) -> Result<DataKey, CryptoError> {
        let raw = Zeroizing::new(open(
            &self.kek,
            &wrap_aad(KeyKind::Data, subject_ref),
            wrapped,
        )?);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if raw.len() != KEY_LEN {
            return Err(CryptoError::KeyLength(raw.len()));
        }
        key.copy_from_slice(&raw);
        DataKey::from_raw(key)
    }

    /// Unwraps a tag key.
    pub fn tag_key(&self, wrapped: &[u8], subject_ref: &[u8]) -> Result<TagKey, CryptoError> {
        let raw = Zeroizing::new(open(
            &self.kek,
            &wrap_aad(KeyKind::Tag, subject_ref),
            wrapped,
        )?);
        TagKey::from_bytes(&raw)
    }
}

fn wrap_aad(kind: KeyKind, subject_ref: &[u8]) -> Vec<u8> {
    let mut aad = kind.label().to_vec();
    aad.push(0);
    aad.extend_from_slice(subject_ref);
    aad
}

fn truncate(mac: &[u8]) -> [u8; TOKEN_LEN] {
    let mut out = [0u8; TOKEN_LEN];
    out.copy_from_slice(&mac[..TOKEN_LEN]);
    out
}

/// Keys made by [`MasterKey::new_subject_keys`].
#[derive(Debug)]
pub struct NewSubjectKeys {
    pub wrapped_data: Vec<u8>,
    pub wrapped_tag: Vec<u8>,
    pub data: DataKey,
    pub tag: TagKey,
}

/// A subject's data key: seals and opens that subject's records.
///
/// Only the 32 raw bytes are held until the key first seals or opens: most
/// subject keys only ever derive record keys, and a vault caches many
/// (the AES-GCM key schedule and tables are about a kilobyte each).
pub struct DataKey {
    key: std::sync::OnceLock<LessSafeKey>,
    raw: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    fn from_raw(raw: Zeroizing<[u8; KEY_LEN]>) -> Result<DataKey, CryptoError> {
        Ok(DataKey {
            key: std::sync::OnceLock::new(),
            raw,
        })
    }

    fn aead(&self) -> Result<&LessSafeKey, CryptoError> {
        if let Some(k) = self.key.get() {
            return Ok(k);
        }
        let k = aead_key(self.raw.as_ref())?;
        // Another thread may have set it first: the same key either way.
        let _ = self.key.set(k);
        self.key.get().ok_or(CryptoError::Seal)
    }

    /// A second handle on the same key.
    pub fn try_clone(&self) -> Result<DataKey, CryptoError> {
        DataKey::from_raw(self.raw.clone())
    }

    /// The key of one record sealed under both this subject key and a
    /// retention period key: HMAC-SHA256(period key, label || subject key).
    /// Destroying either key destroys the record: the subject's on erasure,
    /// the period's when the retention of everything in it has run out.
    pub fn record_key(&self, period: &DataKey) -> Result<DataKey, CryptoError> {
        period.record_keyer().record_key(self)
    }

    /// `nonce (12) || ciphertext || tag (16)`; `aad` is authenticated, not stored.
    pub fn seal(
        &self,
        rng: &dyn SecureRandom,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        seal(self.aead()?, rng, aad, plaintext)
    }

    /// [`DataKey::seal`] with the nonce taken from `nonces` (refilled from
    /// `rng` when empty): the same envelope, fewer calls to the system
    /// random source.
    pub fn seal_from(
        &self,
        nonces: &mut Nonces,
        rng: &dyn SecureRandom,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        seal_nonce(self.aead()?, nonces.next(rng)?, aad, plaintext)
    }

    /// The HMAC key of [`DataKey::record_key`] with this key as the period
    /// key, computed once for the many records of one period.
    pub fn record_keyer(&self) -> RecordKeyer {
        RecordKeyer(hmac::Key::new(hmac::HMAC_SHA256, self.raw.as_ref()))
    }

    pub fn open(&self, aad: &[u8], envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open(self.aead()?, aad, envelope)
    }

    /// [`DataKey::open`] into `out` (its contents replaced), reusing its
    /// allocation across many records; on an error `out` is left empty.
    pub fn open_into(
        &self,
        aad: &[u8],
        envelope: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        open_into(self.aead()?, aad, envelope, out)
    }
}

/// A period key prepared for deriving record keys (see
/// [`DataKey::record_key`]).
pub struct RecordKeyer(hmac::Key);

impl std::fmt::Debug for RecordKeyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordKeyer(..)")
    }
}

impl RecordKeyer {
    /// HMAC-SHA256(period key, label || `subject`'s key), as
    /// [`DataKey::record_key`].
    pub fn record_key(&self, subject: &DataKey) -> Result<DataKey, CryptoError> {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(b"postvault/v1/record-key");
        ctx.update(subject.raw.as_ref());
        let tag = ctx.sign();
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        raw.copy_from_slice(&tag.as_ref()[..KEY_LEN]);
        DataKey::from_raw(raw)
    }
}

/// A subject's tag key: the person who holds it can recognise the log leaves
/// about them; nobody else can link them.
pub struct TagKey {
    raw: Zeroizing<[u8; KEY_LEN]>,
    /// Prepared on first use, like [`DataKey`]'s (boxed: an HMAC context
    /// is over a kilobyte, and a vault caches many tag keys never used).
    key: std::sync::OnceLock<Box<hmac::Key>>,
}

impl std::fmt::Debug for TagKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TagKey(..)")
    }
}

impl TagKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<TagKey, CryptoError> {
        let raw: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::KeyLength(bytes.len()))?;
        Ok(TagKey {
            key: std::sync::OnceLock::new(),
            raw: Zeroizing::new(raw),
        })
    }

    /// The raw key, to hand to the person through an authorized channel.
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        self.raw.clone()
    }

    /// The HMAC key, prepared on first use.
    fn hmac(&self) -> &hmac::Key {
        self.key
            .get_or_init(|| Box::new(hmac::Key::new(hmac::HMAC_SHA256, self.raw.as_ref())))
    }

    /// The tag of the leaf at `index`: HMAC-SHA256(tag key, "postvault/v1/leaf-tag" || index as u64 BE), first 16 bytes.
    pub fn tag(&self, index: u64) -> [u8; TOKEN_LEN] {
        let mut ctx = hmac::Context::with_key(self.hmac());
        ctx.update(b"postvault/v1/leaf-tag");
        ctx.update(&index.to_be_bytes());
        truncate(ctx.sign().as_ref())
    }

    /// The token a leaf about the person is filed under in the vault's leaf
    /// index: HMAC-SHA256(tag key, "postvault/v1/leaf-index" || month as
    /// u32 BE || slot as u32 BE), first 16 bytes. Another label than the
    /// tag's, so no token is ever a leaf's tag.
    pub fn index_token(&self, month: u32, slot: u32) -> [u8; TOKEN_LEN] {
        let mut ctx = hmac::Context::with_key(self.hmac());
        ctx.update(b"postvault/v1/leaf-index");
        ctx.update(&month.to_be_bytes());
        ctx.update(&slot.to_be_bytes());
        truncate(ctx.sign().as_ref())
    }

    /// The seal of a leaf-index row filing leaf `idx` under `token`, made
    /// with the vault's seal key (not a person's): HMAC-SHA256(key,
    /// "postvault/v1/leaf-index-seal" || token(16) || idx as u64 BE), first
    /// 16 bytes.
    pub fn filing_seal(&self, token: &[u8; TOKEN_LEN], idx: u64) -> [u8; TOKEN_LEN] {
        let mut ctx = hmac::Context::with_key(self.hmac());
        ctx.update(b"postvault/v1/leaf-index-seal");
        ctx.update(token);
        ctx.update(&idx.to_be_bytes());
        truncate(ctx.sign().as_ref())
    }
}

/// Fills `out` from `rng`: random tags for leaves that concern no known
/// subject, indistinguishable from real tags.
pub fn random_token(rng: &dyn SecureRandom) -> Result<[u8; TOKEN_LEN], CryptoError> {
    let mut out = [0u8; TOKEN_LEN];
    rng.fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

/// Version byte of a master key sealed under an external key.
const SEALED_MASTER_VERSION: u8 = 1;

fn sealed_aad(vault_id: &[u8], key_id: &[u8; 8]) -> Vec<u8> {
    let mut aad = b"postvault/v1/master-sealed".to_vec();
    aad.push(0);
    aad.extend_from_slice(key_id);
    aad.extend_from_slice(vault_id);
    aad
}

fn hex_of(b: &[u8]) -> String {
    hex::encode(b)
}

/// A key kept outside the key store (a file the operator guards, or what a
/// KMS command prints) that seals the master key: a stolen key store alone
/// then opens nothing.
pub struct ExternalKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for ExternalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExternalKey({})", self.id())
    }
}

impl ExternalKey {
    pub fn generate(rng: &dyn SecureRandom) -> Result<ExternalKey, CryptoError> {
        Ok(ExternalKey(random_key(rng)?))
    }

    /// A key from what a key file or command holds: 32 raw bytes, or (after
    /// trimming whitespace) 64 hex digits or the base64 of 32 bytes.
    pub fn parse(bytes: &[u8]) -> Result<ExternalKey, CryptoError> {
        use base64::Engine as _;
        if bytes.len() == KEY_LEN && std::str::from_utf8(bytes).is_err() {
            let mut k = Zeroizing::new([0u8; KEY_LEN]);
            k.copy_from_slice(bytes);
            return Ok(ExternalKey(k));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| CryptoError::ExternalKeyFormat)?;
        let text = text.trim();
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        if text.len() == 2 * KEY_LEN {
            hex::decode_to_slice(text, k.as_mut()).map_err(|_| CryptoError::ExternalKeyFormat)?;
            return Ok(ExternalKey(k));
        }
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| CryptoError::ExternalKeyFormat)?,
        );
        if raw.len() != KEY_LEN {
            return Err(CryptoError::ExternalKeyFormat);
        }
        k.copy_from_slice(&raw);
        Ok(ExternalKey(k))
    }

    /// The key as 64 hex digits and a newline, for a key file.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}\n", hex_of(self.0.as_ref())))
    }

    fn id_bytes(&self) -> [u8; 8] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, self.0.as_ref());
        let tag = hmac::sign(&k, b"postvault/v1/external-key-id");
        let mut id = [0u8; 8];
        id.copy_from_slice(&tag.as_ref()[..8]);
        id
    }

    /// A short public id of the key (16 hex digits), safe to print: it tells
    /// keys apart without revealing them.
    pub fn id(&self) -> String {
        hex_of(&self.id_bytes())
    }
}
