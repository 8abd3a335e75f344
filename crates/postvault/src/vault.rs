//! Opening and creating a vault directory, principals, and subject keys.
//!
//! A vault directory holds two files: `data.db` (the data store: sealed
//! records, wrapped nothing) and `keys.db` (the key store, mode 0600: the
//! master key and every subject's wrapped keys). A copy of `data.db` alone
//! holds no usable key. `Vault::init_with` and `Vault::open_with` do the
//! same over stores of another backend (PostgreSQL, shared by several nodes).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use postvault_crypto::{DataKey, MasterKey, RecordKeyer, SystemRandom, TagKey};
use postvault_policy::{Pack, PackSources, RoleIx};
use postvault_store::{KeyStore, Store, SubjectKeys, SubjectRef, key_id};

use crate::clock::{Clock, SystemClock};
use crate::error::VaultError;

pub const DATA_FILE: &str = "data.db";
pub const KEYS_FILE: &str = "keys.db";

/// The master key kept in the key store (the default).
pub(crate) const MASTER_SECRET: &str = "master";
/// The master key sealed under an external key (`keys externalize`).
pub(crate) const SEALED_MASTER_SECRET: &str = "master.sealed";
pub(crate) const LOG_KEY_SECRET: &str = "log_signing_key";
/// The wrapping label of the log's signing seed when the master key is
/// kept outside the key store.
pub(crate) const LOG_KEY_REF: &[u8] = b"log_signing_key";
/// The log's verifier key (public), kept beside its signing seed so the
/// key store's log state can be checked without the master key (the seed
/// is wrapped under it when the master key is kept outside the key store).
pub(crate) const LOG_VERIFIER_SECRET: &str = "log_verifier_key";
pub(crate) const VAULT_ID: &str = "vault_id";
/// Unwrapped subject keys kept in memory at most; past that the least
/// recently used leave the cache (they are read again from the key store).
const KEY_CACHE_MAX: std::num::NonZeroUsize = std::num::NonZeroUsize::MIN.saturating_add(65_535);

/// How to open a vault.
#[derive(Clone)]
pub struct OpenOptions {
    /// The policy pack. `init`: default the postal pack built in. `open`:
    /// default the pack the vault records; a pack given must be that one
    /// (or a staged change now in force, see `crate::packs`).
    pub pack: Option<PackSources>,
    pub clock: Arc<dyn Clock>,
    /// The external key that seals the master key, for a vault whose master
    /// key is kept outside its key store (`init` with one, or `keys
    /// externalize`); `None` for a vault that keeps it in its key store.
    pub master_key: Option<Arc<postvault_crypto::ExternalKey>>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            pack: None,
            clock: Arc::new(SystemClock),
            master_key: None,
        }
    }
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions").finish_non_exhaustive()
    }
}

/// A principal as the vault knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: String,
    pub(crate) role_ix: RoleIx,
}

/// The key of one record; `legacy` is a second key to try (a mail-cover
/// record sealed under its order key alone, as the first gateway release did).
pub(crate) struct RecordKey {
    pub(crate) key: DataKey,
    pub(crate) legacy: Option<DataKey>,
}

impl RecordKey {
    fn one(key: DataKey) -> RecordKey {
        RecordKey { key, legacy: None }
    }
}

/// The keys one operation derives, kept for its other records: a
/// subject's records of one category and expiry day share their key, so a
/// read derives it once, not once a record. Order keys by cover.
#[derive(Default)]
pub(crate) struct KeyCache {
    pub(crate) covers: HashMap<u32, Option<DataKey>>,
    #[allow(clippy::type_complexity)]
    records: HashMap<(SubjectRef, u32, i64), Vec<(String, Option<Arc<RecordKey>>)>>,
    /// Period keys found, prepared for deriving record keys, by expiry
    /// and category (an operation meets few).
    periods: Vec<(i64, String, Arc<RecordKeyer>)>,
    /// Record keys are not kept by person (a scan, which meets each
    /// person's keys once, in order).
    no_records: bool,
}

impl KeyCache {
    /// A cache that keeps order and period keys but not each person's
    /// record keys: for a scan, whose records come person by person.
    pub(crate) fn for_scan() -> KeyCache {
        KeyCache {
            no_records: true,
            ..KeyCache::default()
        }
    }

    /// Forgets every key, keeping the maps' memory for the next use.
    pub(crate) fn clear(&mut self) {
        self.covers.clear();
        self.records.clear();
        self.periods.clear();
    }
}

/// What a record's key is found by: its person, category, key and expiry.
#[derive(Clone, Copy)]
pub(crate) struct KeyOf<'a> {
    pub(crate) subject: &'a SubjectRef,
    pub(crate) category: &'a str,
    pub(crate) key_id: u32,
    pub(crate) expires_at: i64,
}

impl<'a> KeyOf<'a> {
    pub(crate) fn of(r: &'a postvault_store::RecordRow) -> KeyOf<'a> {
        KeyOf {
            subject: &r.subject,
            category: &r.category,
            key_id: r.key_id,
            expires_at: r.expires_at,
        }
    }
}

/// A subject's unwrapped keys.
pub(crate) struct SubjectKeyPair {
    pub(crate) data: DataKey,
    pub(crate) tag: TagKey,
}

/// An open vault.
pub struct Vault {
    dir: PathBuf,
    /// The embedded store's key file, held with a shared lock while the
    /// vault is open (a rotation or a restore takes it exclusively).
    pub(crate) lock: Option<std::fs::File>,
    /// The master key is sealed under an external key, not in the key store.
    pub(crate) external_master: bool,
    /// What opening the vault finished that a crash had left undone.
    pub(crate) recovered: Mutex<crate::intents::Recovered>,
    /// Collection runs in progress in this process.
    pub(crate) runs_active: Mutex<std::collections::HashSet<[u8; 16]>>,
    /// Shared by every destruction of keys in this process (sweeps,
    /// erasures, destroyed orders, ended holds), held exclusively by a
    /// backup between its two copies.
    pub(crate) destroy_gate: std::sync::RwLock<()>,
    pub(crate) store: Box<dyn Store>,
    pub(crate) keys: Box<dyn KeyStore>,
    pub(crate) master: MasterKey,
    pub(crate) pack: Arc<Pack>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: SystemRandom,
    key_cache: Mutex<lru::LruCache<SubjectRef, Arc<SubjectKeyPair>>>,
    /// Stored hashes read for proofs (see `log::ProofHashes`).
    pub(crate) proof_hashes: Mutex<lru::LruCache<u64, postvault_log::Hash>>,
    /// The largest hashed size this process has read from the store: the
    /// hashed tree only grows, so a proof of a size within it needs no read
    /// of the store's (see `prove_inclusion`).
    pub(crate) hashed_seen: std::sync::atomic::AtomicU64,
    /// The store's `log_tiled_from` (fixed once the store is open).
    pub(crate) tiled_from: std::sync::OnceLock<u64>,
    /// Reports signing the checkpoint that covers their own leaves, one at
    /// a time, so concurrent reports share one signature (see
    /// `Vault::checkpoint_covering`).
    pub(crate) covering: crate::witness::Covering,
    /// The key the leaf index's rows are sealed with (from the master key:
    /// the same on every node).
    pub(crate) index_seal: Arc<TagKey>,
    /// The store's erasure generation the key cache is valid for.
    key_gen: std::sync::atomic::AtomicU64,
    /// Bumped, under the key cache's lock, whenever keys are forgotten
    /// (after an erasure, or the cache emptied for one): keys read from
    /// the key store before a bump are not cached after it, so a destroyed
    /// key never comes back into the cache.
    key_epoch: std::sync::atomic::AtomicU64,
    /// Mail-cover orders seen destroyed (a final status, committed before
    /// the order's key is deleted): a read that finds an order's key gone
    /// judges its records lawfully gone from this set, with no look at the
    /// ledger under the log's lock. Filled from the ledger when an order
    /// not in it is met.
    pub(crate) covers_destroyed: std::sync::RwLock<Arc<HashSet<u32>>>,
    /// Unwrapped retention period keys, by key-store name.
    period_cache: Mutex<lru::LruCache<String, Arc<DataKey>>>,
    /// Held exclusively by an erasure, shared by a batch sealed again after
    /// one: the second sealing cannot be overtaken by this process.
    erase_gate: std::sync::RwLock<()>,
    /// One-person erasures waiting to be erased together (group commit).
    pub(crate) erase_queue: crate::rights::EraseQueue,
    pub(crate) ids: RecordIds,
    pub(crate) signer: postvault_log::LogSigner,
    /// Notes of this log that verified with `signer`'s key.
    pub(crate) verified_notes: crate::log::VerifiedNotes,
    /// Wrapped keys of nobody, unwrapped in place of a person's whenever a
    /// look-up must cost the same for a known and an unknown id.
    decoy: SubjectKeys,

    /// The witnesses that cosign checkpoints, if any.
    pub(crate) witnessing: Option<crate::witness::Witnessing>,
}

/// UUIDv7 record ids without a system call per id: a 48-bit millisecond
/// time, then 74 bits from a per-process random seed plus a counter, so ids
/// are unique within a process and collide across processes only by chance
/// of 2^-62 per same-millisecond pair.
pub(crate) struct RecordIds {
    rand_a: u16,
    seed: u64,
    counter: std::sync::atomic::AtomicU64,
}

impl RecordIds {
    fn new(rng: &SystemRandom) -> Result<RecordIds, VaultError> {
        let mut b = [0u8; 10];
        aws_lc_rs::rand::SecureRandom::fill(rng, &mut b)
            .map_err(|_| VaultError::Crypto(postvault_crypto::CryptoError::Random))?;
        Ok(RecordIds {
            rand_a: u16::from_be_bytes([b[0], b[1]]) & 0x0fff,
            seed: u64::from_be_bytes([b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]]),
            counter: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A UUIDv7 at `now_ms` (the vault's clock): 12 random bits fixed per
    /// process, then a counter from a random start, so ids made in the same
    /// millisecond are distinct and ordered.
    pub(crate) fn next(&self, now_ms: i64) -> [u8; 16] {
        let c = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(self.seed);
        let mut rand = [0u8; 10];
        rand[..2].copy_from_slice(&self.rand_a.to_be_bytes());
        rand[2..].copy_from_slice(&c.to_be_bytes());
        *uuid::Builder::from_unix_timestamp_millis(now_ms.max(0) as u64, &rand)
            .into_uuid()
            .as_bytes()
    }
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("dir", &self.dir)
            .field("pack", &self.pack.version())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens under the pack the vault records (or `opts.pack`, which must be
    /// that pack or a staged one now in force): see [`crate::packs`].
    pub(crate) fn open_under_recorded_pack(
        dir: &Path,
        store: Box<dyn Store>,
        keys: Box<dyn KeyStore>,
        master: MasterKey,
        external: bool,
        opts: &OpenOptions,
        lock: Option<std::fs::File>,
    ) -> Result<Vault, VaultError> {
        let (pack, adopted) =
            crate::packs::resolve(&*store, opts.pack.as_ref(), opts.clock.now_ms())?;
        let vault = Vault::assemble(
            dir,
            store,
            keys,
            master,
            external,
            pack,
            opts.clock.clone(),
            lock,
        )?;
        if adopted {
            vault.log_adoption()?;
        }
        Ok(vault)
    }

    /// Assembles a vault from parts: another store backend, or a store
    /// wrapped to inject faults in tests. `master` must be the key store's.
    pub fn from_parts(
        dir: &Path,
        store: Box<dyn Store>,
        keys: Box<dyn KeyStore>,
        opts: OpenOptions,
    ) -> Result<Vault, VaultError> {
        let (master, external) = crate::setup::load_master(
            &*keys,
            opts.master_key.as_deref(),
            &dir.display().to_string(),
        )?;
        Vault::open_under_recorded_pack(dir, store, keys, master, external, &opts, None)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        dir: &Path,
        store: Box<dyn Store>,
        keys: Box<dyn KeyStore>,
        master: MasterKey,
        external_master: bool,
        pack: Arc<Pack>,
        clock: Arc<dyn Clock>,
        lock: Option<std::fs::File>,
    ) -> Result<Vault, VaultError> {
        let rng = SystemRandom::new();
        // The log's signing key lives with the other keys; a vault made
        // before it existed gets one now. Where the master key is kept
        // outside the key store, the seed is wrapped under it too.
        let seed = match keys.secret(LOG_KEY_SECRET)? {
            Some(s) if s.len() == postvault_crypto::WRAPPED_LEN => master
                .unwrap_raw(postvault_crypto::KeyKind::Data, LOG_KEY_REF, &s)?
                .to_vec(),
            Some(s) => s,
            None => {
                let mut seed = zeroize::Zeroizing::new([0u8; 32]);
                aws_lc_rs::rand::SecureRandom::fill(&rng, seed.as_mut())
                    .map_err(|_| VaultError::Crypto(postvault_crypto::CryptoError::Random))?;
                let stored = if external_master {
                    master.wrap_raw(
                        &rng,
                        postvault_crypto::KeyKind::Data,
                        LOG_KEY_REF,
                        seed.as_ref(),
                    )?
                } else {
                    seed.to_vec()
                };
                match keys.put_secret(LOG_KEY_SECRET, &stored) {
                    Ok(()) => seed.to_vec(),
                    // Another process made it first.
                    Err(postvault_store::StoreError::SecretExists(_)) => {
                        let s = keys.secret(LOG_KEY_SECRET)?.unwrap_or_default();
                        if s.len() == postvault_crypto::WRAPPED_LEN {
                            master
                                .unwrap_raw(postvault_crypto::KeyKind::Data, LOG_KEY_REF, &s)?
                                .to_vec()
                        } else {
                            s
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let vault_id = store.meta(VAULT_ID)?.unwrap_or_default();
        let signer = crate::log::signer(&format!("postvault/{vault_id}"), &seed)?;
        if keys.secret(LOG_VERIFIER_SECRET)?.is_none() {
            keys.put_secret_or_get(LOG_VERIFIER_SECRET, signer.verifier_key().as_bytes())?;
        }
        let index_seal = {
            let mut raw = zeroize::Zeroizing::new([0u8; postvault_crypto::KEY_LEN]);
            raw[..16].copy_from_slice(&master.blind_index("postvault/v1/leaf-index-seal", b"0"));
            raw[16..].copy_from_slice(&master.blind_index("postvault/v1/leaf-index-seal", b"1"));
            Arc::new(TagKey::from_bytes(raw.as_ref())?)
        };
        let decoy_ref = postvault_crypto::random_token(&rng)?;
        let d = master.new_subject_keys(&rng, &decoy_ref)?;
        let decoy = SubjectKeys {
            subject: decoy_ref,
            data: d.wrapped_data,
            tag: d.wrapped_tag,
        };
        let vault = Vault {
            lock,
            external_master,
            recovered: Mutex::new(crate::intents::Recovered::default()),
            runs_active: Mutex::new(std::collections::HashSet::new()),
            destroy_gate: std::sync::RwLock::new(()),

            decoy,
            signer,
            verified_notes: crate::log::VerifiedNotes::default(),
            ids: RecordIds::new(&rng)?,
            dir: dir.to_path_buf(),
            store,
            keys,
            master,
            pack,
            clock,
            rng,
            key_cache: Mutex::new(lru::LruCache::new(KEY_CACHE_MAX)),
            proof_hashes: Mutex::new(lru::LruCache::new(crate::log::PROOF_HASHES_CACHED)),
            hashed_seen: std::sync::atomic::AtomicU64::new(0),
            tiled_from: std::sync::OnceLock::new(),
            covering: crate::witness::Covering::default(),
            index_seal,
            key_gen: std::sync::atomic::AtomicU64::new(u64::MAX),
            key_epoch: std::sync::atomic::AtomicU64::new(0),
            covers_destroyed: std::sync::RwLock::default(),
            period_cache: Mutex::new(lru::LruCache::new(KEY_CACHE_MAX)),
            erase_gate: std::sync::RwLock::new(()),
            erase_queue: crate::rights::EraseQueue::default(),
            witnessing: None,
        };
        // Before anything is written: the data store must extend the last
        // checkpoint the key store says was signed.
        vault.reconcile_log_state()?;
        // Destruction interrupted after its intent (an erasure after its
        // first transaction, a sweep, a destroyed cover or hold key) is
        // finished, and accounted, before anything else runs; so is a
        // change of the ledger's keys.
        let recovered = vault.finish_interrupted()?;
        *vault.recovered.lock().unwrap_or_else(|e| e.into_inner()) = recovered;
        vault.upgrade_ledger_keys()?;
        Ok(vault)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pack(&self) -> &Pack {
        &self.pack
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Registers a principal in `role`; returns its bearer token, shown once
    /// (only a hash is stored).
    pub fn add_principal(&self, name: &str, role: &str) -> Result<String, VaultError> {
        check_name(name)?;
        if self.pack.taxonomy().role_ix(role).is_none() {
            return Err(VaultError::UnknownRole(role.to_string()));
        }
        let token = self.new_token()?;
        self.store.add_principal(&postvault_store::PrincipalRow {
            name: name.to_string(),
            role: role.to_string(),
            token_hash: token_hash(&token),
            created_at: self.clock.now_ms(),
            revoked_at: None,
        })?;
        Ok(token)
    }

    /// The principal named `name`; a revoked one is refused
    /// (`principal_revoked`).
    pub fn principal(&self, name: &str) -> Result<Principal, VaultError> {
        let row = self
            .store
            .principal(name)?
            .ok_or_else(|| VaultError::UnknownPrincipal(name.to_string()))?;
        if row.revoked_at.is_some() {
            return Err(crate::principals::revoked(name));
        }
        self.principal_from_row(row)
    }

    /// The principal holding bearer `token`, if any and not revoked: one
    /// look-up of the token's hash on the store's unique index.
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>, VaultError> {
        match self.store.principal_by_token(&token_hash(token))? {
            Some(row) => self.principal_from_row(row).map(Some),
            None => Ok(None),
        }
    }

    /// Every principal in force (revoked ones are not listed).
    pub fn principals(&self) -> Result<Vec<Principal>, VaultError> {
        self.store
            .principals()?
            .into_iter()
            .filter(|r| r.revoked_at.is_none())
            .map(|r| self.principal_from_row(r))
            .collect()
    }

    fn principal_from_row(
        &self,
        row: postvault_store::PrincipalRow,
    ) -> Result<Principal, VaultError> {
        let role_ix = self
            .pack
            .taxonomy()
            .role_ix(&row.role)
            .ok_or_else(|| VaultError::UnknownRole(row.role.clone()))?;
        Ok(Principal {
            name: row.name,
            role: row.role,
            role_ix,
        })
    }

    /// Subjects holding a record whose declared lookup `fields` of `category`
    /// equal `values` exactly (after normalization: trimmed, lowercase,
    /// whitespace collapsed), through the keyed blind index. There is no
    /// prefix, pattern or attribute search.
    pub fn lookup_subjects(
        &self,
        category: &str,
        fields: &[&str],
        values: &[&str],
    ) -> Result<Vec<SubjectRef>, VaultError> {
        let tax = self.pack.taxonomy();
        let cat = tax
            .category_ix(category)
            .map(|c| tax.category(c))
            .ok_or_else(|| VaultError::Invalid {
                what: "lookup",
                why: format!("unknown category `{category}`"),
            })?;
        let lookup = cat
            .lookups
            .iter()
            .find(|l| {
                l.len() == fields.len()
                    && l.iter()
                        .zip(fields)
                        .all(|(&ix, f)| cat.fields.get(ix).is_some_and(|s| s.name == *f))
            })
            .ok_or_else(|| VaultError::Invalid {
                what: "lookup",
                why: format!(
                    "category `{category}` has no exact-match lookup on the fields {}",
                    fields.join("+")
                ),
            })?;
        if values.len() != lookup.len() {
            return Err(VaultError::Invalid {
                what: "lookup",
                why: "one value per lookup field".into(),
            });
        }
        let map: crate::minimize::Minimized = lookup
            .iter()
            .zip(values)
            .map(|(&ix, v)| (ix, serde_json::Value::String((*v).to_string())))
            .collect();
        let (domain, value) =
            crate::collect::lookup_value(cat, lookup, &map).ok_or_else(|| VaultError::Invalid {
                what: "lookup",
                why: "a value is missing".into(),
            })?;
        Ok(self
            .store
            .lookup(&self.master.blind_index(&domain, value.as_bytes()))?)
    }

    /// The pseudonymous id of a principal in log leaves.
    pub(crate) fn actor_id(&self, name: &str) -> String {
        hex::encode(self.master.blind_index("principal", name.as_bytes()))
    }

    pub(crate) fn subject_ref(&self, external_id: &str) -> SubjectRef {
        self.master.subject_ref(external_id)
    }

    /// The keys of an existing subject, from the cache or the key store.
    pub(crate) fn subject_keys(
        &self,
        subject: &SubjectRef,
    ) -> Result<Option<Arc<SubjectKeyPair>>, VaultError> {
        let epoch = {
            let mut c = self.cache();
            if let Some(k) = c.get(subject) {
                return Ok(Some(k.clone()));
            }
            self.epoch()
        };
        let Some(wrapped) = self.keys.subject_keys(subject)? else {
            return Ok(None);
        };
        let pair = Arc::new(SubjectKeyPair {
            data: self.master.data_key(&wrapped.data, subject)?,
            tag: self.master.tag_key(&wrapped.tag, subject)?,
        });
        self.remember(*subject, pair.clone(), epoch);
        Ok(Some(pair))
    }

    /// The keys of an existing subject, at the same cost whoever it is: one
    /// look-up on the key store's index and two unwraps, always. A person
    /// whose keys are cached is looked up as a random ref would be; a
    /// person without keys unwraps the decoy. So neither the key cache nor
    /// the key store tells, by time, whether an id is known.
    pub(crate) fn subject_keys_uniform(
        &self,
        subject: &SubjectRef,
    ) -> Result<Option<Arc<SubjectKeyPair>>, VaultError> {
        let (cached, epoch) = {
            let mut c = self.cache();
            (c.get(subject).cloned(), self.epoch())
        };
        let probe = match cached {
            Some(_) => postvault_crypto::random_token(&self.rng)?,
            None => *subject,
        };
        let found = self.keys.subject_keys(&probe)?;
        match (cached, found) {
            (Some(pair), _) => {
                self.unwrap_decoy();
                Ok(Some(pair))
            }
            (None, Some(wrapped)) => {
                let pair = Arc::new(self.unwrap_pair(Some(&wrapped), subject)?);
                self.remember(*subject, pair.clone(), epoch);
                Ok(Some(pair))
            }
            (None, None) => {
                self.unwrap_decoy();
                Ok(None)
            }
        }
    }

    /// The work of unwrapping a person's keys, on keys of nobody.
    fn unwrap_decoy(&self) {
        let d = &self.decoy;
        let _ = self.master.data_key(&d.data, &d.subject);
        let _ = self.master.tag_key(&d.tag, &d.subject);
    }

    /// The keys of each subject, creating (and durably storing) keys for
    /// subjects that have none.
    pub(crate) fn ensure_subject_keys(
        &self,
        subjects: &[SubjectRef],
    ) -> Result<HashMap<SubjectRef, Arc<SubjectKeyPair>>, VaultError> {
        let mut out = HashMap::with_capacity(subjects.len());
        let mut new = Vec::new();
        let mut misses = Vec::new();
        let epoch;
        {
            // Only the look-ups hold the cache's lock, which every read
            // takes: keys are made after it is released (a bulk batch's
            // new people would otherwise hold it for milliseconds).
            let mut cache = self.cache();
            epoch = self.epoch();
            let mut seen = std::collections::HashSet::with_capacity(subjects.len());
            for s in subjects {
                if !seen.insert(*s) {
                    continue;
                }
                match cache.get(s) {
                    Some(k) => {
                        out.insert(*s, k.clone());
                    }
                    None => misses.push(*s),
                }
            }
        }
        for s in &misses {
            // Not in memory: make keys optimistically; the key store keeps
            // existing keys and says which subjects had them.
            let k = self.master.new_subject_keys(&self.rng, s)?;
            new.push(SubjectKeys {
                subject: *s,
                data: k.wrapped_data,
                tag: k.wrapped_tag,
            });
            out.insert(
                *s,
                Arc::new(SubjectKeyPair {
                    data: k.data,
                    tag: k.tag,
                }),
            );
        }
        if !new.is_empty() {
            let mut existing = self.keys.put_subject_keys(&new)?;
            // A subject whose keys existed but are gone when read again was
            // erased in between: store the new keys after all.
            for _ in 0..4 {
                let mut gone = Vec::new();
                for subject in existing {
                    match self.keys.subject_keys(&subject)? {
                        Some(stored) => {
                            out.insert(
                                subject,
                                Arc::new(self.unwrap_pair(Some(&stored), &subject)?),
                            );
                        }
                        None => gone.extend(new.iter().filter(|k| k.subject == subject).cloned()),
                    }
                }
                if gone.is_empty() {
                    break;
                }
                existing = self.keys.put_subject_keys(&gone)?;
            }
            let mut cache = self.cache();
            if self.epoch() != epoch {
                // Keys left the cache meanwhile (an erasure): what was read
                // before may be destroyed; this batch's own write is fenced
                // by the erasure generation, and nothing is cached.
                return Ok(out);
            }
            for k in &new {
                if let Some(pair) = out.get(&k.subject) {
                    cache.put(k.subject, pair.clone());
                }
            }
        }
        Ok(out)
    }

    /// Reads the store's erasure generation and, if an erasure ran since the
    /// key cache was filled, empties it (another process may have destroyed
    /// keys this one still holds). Returns the generation to write under.
    pub(crate) fn sync_erasures(&self) -> Result<u64, VaultError> {
        let generation = self.store.erasure_gen()?;
        self.adopt_erasure_gen(generation);
        Ok(generation)
    }

    /// [`Vault::sync_erasures`] with a generation the store read already
    /// (with a subject's rows, see `SubjectData::erasure_gen`). Returns the
    /// key cache's epoch after it (see [`Vault::key_epoch`]).
    pub(crate) fn adopt_erasure_gen(&self, generation: u64) -> u64 {
        use std::sync::atomic::Ordering;
        // Under the cache's lock, so the generation only moves forward
        // however many threads sync at once.
        let mut c = self.cache();
        let seen = self.key_gen.load(Ordering::SeqCst);
        if seen == u64::MAX || generation > seen {
            self.key_gen.store(generation, Ordering::SeqCst);
            c.clear();
            self.bump_epoch();
        }
        self.epoch()
    }

    /// The key cache's epoch now: keys looked up while it stays the same
    /// came from a cache nothing was dropped from since.
    pub(crate) fn key_epoch(&self) -> u64 {
        let _c = self.cache();
        self.epoch()
    }

    /// Held while keys are destroyed (see `destroy_gate`).
    pub(crate) fn destroying(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.destroy_gate.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn erase_gate_shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.erase_gate.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn erase_gate_exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.erase_gate.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the unwrapped keys of `subjects`.
    pub(crate) fn forget_keys(&self, subjects: &[SubjectRef]) {
        let mut c = self.cache();
        for s in subjects {
            c.pop(s);
        }
        self.bump_epoch();
    }

    /// The key cache's epoch; read and bumped only under its lock.
    fn epoch(&self) -> u64 {
        self.key_epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn bump_epoch(&self) {
        self.key_epoch
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The retention period key for records of `category` expiring at
    /// `expires_at` (the start of a UTC day). `create` makes it when missing,
    /// but never for a period that has begun: its records have expired.
    pub(crate) fn period_key(
        &self,
        category: &str,
        expires_at: i64,
        create: bool,
    ) -> Result<Option<Arc<DataKey>>, VaultError> {
        let now = self.clock.now_ms();
        if create && crate::rights::period_start(expires_at) <= now {
            return Ok(None);
        }
        let name = crate::rights::period_secret(category, expires_at);
        // A key whose day has begun may be destroyed at any moment, by a
        // sweep in any process: it is looked up in the key store each
        // time, never kept, so no process opens what expiry destroyed.
        let due = crate::rights::period_start(expires_at) <= now;
        if due {
            self.periods().pop(&name);
        } else if let Some(k) = self.periods().get(&name) {
            return Ok(Some(k.clone()));
        }
        let Some(wrapped) = self.named_secret(&name, create)? else {
            return Ok(None);
        };
        let key = Arc::new(self.master.data_key(&wrapped, name.as_bytes())?);
        if !due {
            self.periods().put(name, key.clone());
        }
        Ok(Some(key))
    }

    /// Forgets destroyed period keys.
    pub(crate) fn forget_periods(&self, names: &[String]) {
        let mut c = self.periods();
        for n in names {
            c.pop(n);
        }
    }

    fn periods(&self) -> std::sync::MutexGuard<'_, lru::LruCache<String, Arc<DataKey>>> {
        self.period_cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key that seals record `r` (by its `key_id`), or `None` when one
    /// of the keys it needs is gone. `covers` caches order keys for one call.
    /// A mail-cover record needs its subject's key, its period's key and its
    /// order's key (records of the first gateway release: the order key
    /// alone, tried as `legacy`).
    pub(crate) fn key_for(
        &self,
        r: &postvault_store::RecordRow,
        subject: Option<&SubjectKeyPair>,
        cache: &mut KeyCache,
        create: bool,
    ) -> Result<Option<Arc<RecordKey>>, VaultError> {
        self.key_of(KeyOf::of(r), subject.map(|k| &k.data), cache, create)
    }

    /// [`Vault::key_for`] by what finds the key, with the person's data
    /// key alone.
    pub(crate) fn key_of(
        &self,
        r: KeyOf<'_>,
        subject: Option<&DataKey>,
        cache: &mut KeyCache,
        create: bool,
    ) -> Result<Option<Arc<RecordKey>>, VaultError> {
        let Some(k) = subject else {
            return Ok(None);
        };
        if !cache.no_records
            && let Some(slot) = cache.records.get(&(*r.subject, r.key_id, r.expires_at))
            && let Some((_, key)) = slot.iter().find(|(c, _)| *c == r.category)
        {
            return Ok(key.clone());
        }
        let key = match r.key_id {
            key_id::SUBJECT => Some(RecordKey::one(k.try_clone()?)),
            key_id::PERIOD => match self.period_keyer(r, cache, create)? {
                Some(p) => Some(RecordKey::one(p.record_key(k)?)),
                None => None,
            },
            key_id::HOLD => match self.hold_key(r.subject, create)? {
                Some(h) => Some(RecordKey::one(k.record_key(&h)?)),
                None => None,
            },
            seq => {
                if let std::collections::hash_map::Entry::Vacant(e) = cache.covers.entry(seq) {
                    e.insert(self.cover_key(u64::from(seq))?);
                }
                match self.period_keyer(r, cache, create)? {
                    Some(p) => match cache.covers.get(&seq).and_then(Option::as_ref) {
                        Some(c) => Some(RecordKey {
                            key: c.record_key(&p.record_key(k)?)?,
                            legacy: Some(c.try_clone()?),
                        }),
                        None => None,
                    },
                    None => None,
                }
            }
        }
        .map(Arc::new);
        // Only what `create` cannot change is kept: a key found, or one
        // missing when nothing may make it.
        if !cache.no_records && (key.is_some() || !create) {
            cache
                .records
                .entry((*r.subject, r.key_id, r.expires_at))
                .or_default()
                .push((r.category.to_string(), key.clone()));
        }
        Ok(key)
    }

    /// The period key of `r`'s category and expiry prepared for deriving
    /// record keys, kept in `cache` for the operation once found.
    fn period_keyer(
        &self,
        r: KeyOf<'_>,
        cache: &mut KeyCache,
        create: bool,
    ) -> Result<Option<Arc<RecordKeyer>>, VaultError> {
        // A key whose day has begun is looked up each time (`period_key`):
        // an operation that runs past the start of its day forgets it.
        let due = crate::rights::period_start(r.expires_at) <= self.clock.now_ms();
        let at = cache
            .periods
            .iter()
            .position(|(e, c, _)| *e == r.expires_at && c == r.category);
        match at {
            Some(i) if !due => return Ok(Some(cache.periods[i].2.clone())),
            Some(i) => {
                cache.periods.swap_remove(i);
            }
            None => {}
        }
        let Some(p) = self.period_key(r.category, r.expires_at, create)? else {
            return Ok(None);
        };
        let keyer = Arc::new(p.record_keyer());
        if !due {
            cache
                .periods
                .push((r.expires_at, r.category.to_string(), keyer.clone()));
        }
        Ok(Some(keyer))
    }

    /// The hold key of `subject` (key-store secret `hold:<hex ref>`).
    /// The wrapped data key kept under `name` in the key store, made (and
    /// kept, first writer wins) when `create` and there is none.
    pub(crate) fn named_secret(
        &self,
        name: &str,
        create: bool,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        if let Some(w) = self.keys.secret(name)? {
            return Ok(Some(w));
        }
        if !create {
            return Ok(None);
        }
        let w =
            self.master
                .new_wrapped(&self.rng, postvault_crypto::KeyKind::Data, name.as_bytes())?;
        Ok(Some(self.keys.put_secret_or_get(name, &w)?))
    }

    pub(crate) fn hold_key(
        &self,
        subject: &SubjectRef,
        create: bool,
    ) -> Result<Option<DataKey>, VaultError> {
        let name = crate::rights::hold_secret(subject);
        let Some(wrapped) = self.named_secret(&name, create)? else {
            return Ok(None);
        };
        Ok(Some(self.master.data_key(&wrapped, name.as_bytes())?))
    }

    /// The plaintext payload of record `r`, or `None` when a key it needs is
    /// gone; an error when the record does not open under its keys (altered).
    pub(crate) fn open_record(
        &self,
        r: &postvault_store::RecordRow,
        subject: Option<&SubjectKeyPair>,
        cache: &mut KeyCache,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        let aad = crate::collect::record_aad(
            &r.subject,
            &r.id,
            &r.category,
            &r.purpose,
            r.collected_at,
            r.expires_at,
        );
        let Some(k) = self.key_for(r, subject, cache, false)? else {
            return Ok(None);
        };
        match (k.key.open(&aad, &r.sealed), k.legacy.as_ref()) {
            (Ok(p), _) => Ok(Some(p)),
            (Err(_), Some(l)) => Ok(Some(l.open(&aad, &r.sealed)?)),
            // Altered, or sealed under keys since replaced: never a guess.
            (Err(e), None) => Err(e.into()),
        }
    }

    /// [`Vault::open_record`] with the record's key found already (by
    /// [`Vault::key_for`]), into `out`, with `aad` as scratch: for scans
    /// that open many records with few keys.
    pub(crate) fn open_record_with(
        &self,
        r: &postvault_store::RecordRow,
        k: &RecordKey,
        aad: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), VaultError> {
        crate::collect::record_aad_into(
            aad,
            &r.subject,
            &r.id,
            &r.category,
            &r.purpose,
            r.collected_at,
            r.expires_at,
        );
        match (k.key.open_into(aad, &r.sealed, out), k.legacy.as_ref()) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(l)) => Ok(l.open_into(aad, &r.sealed, out)?),
            // Altered, or sealed under keys since replaced: never a guess.
            (Err(e), None) => Err(e.into()),
        }
    }

    /// The subject's data key alone (a scan opens records, never tags).
    pub(crate) fn unwrap_data(
        &self,
        keys: &SubjectKeys,
        subject: &SubjectRef,
    ) -> Result<DataKey, VaultError> {
        Ok(self.master.data_key(&keys.data, subject)?)
    }

    pub(crate) fn unwrap_pair(
        &self,
        keys: Option<&SubjectKeys>,
        subject: &SubjectRef,
    ) -> Result<SubjectKeyPair, VaultError> {
        let k = keys.ok_or(VaultError::Crypto(postvault_crypto::CryptoError::Open))?;
        Ok(SubjectKeyPair {
            data: self.master.data_key(&k.data, subject)?,
            tag: self.master.tag_key(&k.tag, subject)?,
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, lru::LruCache<SubjectRef, Arc<SubjectKeyPair>>> {
        self.key_cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Caches `pair`, read from the key store at cache epoch `epoch`,
    /// unless keys have left the cache since.
    fn remember(&self, subject: SubjectRef, pair: Arc<SubjectKeyPair>, epoch: u64) {
        let mut c = self.cache();
        if self.epoch() != epoch {
            return;
        }
        c.put(subject, pair);
    }
}

pub(crate) fn load_pack(opts: &OpenOptions) -> Result<(PackSources, Arc<Pack>), VaultError> {
    let src = opts.pack.clone().unwrap_or_else(PackSources::postal);
    let pack = Arc::new(Pack::load(&src)?);
    Ok((src, pack))
}

/// The cores this process may use, read once: `available_parallelism`
/// reads the cgroup's files on every call (a few file opens and reads),
/// which a one-line collection would otherwise pay each time.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES
        .get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

/// Checks a subject id wherever one enters (see
/// [`postvault_policy::check_subject_id`]): refused with
/// `invalid_subject_id`, and a message that never echoes it.
pub(crate) fn check_subject(id: &str) -> Result<(), VaultError> {
    Ok(postvault_policy::check_subject_id(id)?)
}

fn check_name(name: &str) -> Result<(), VaultError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(VaultError::Invalid {
            what: "principal name",
            why: "use 1 to 64 letters, digits, `-`, `_` or `.`".into(),
        })
    }
}

impl Vault {
    /// A new bearer token: `pv_` and 64 hex digits of randomness.
    /// The vault's clock now, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(crate) fn new_token(&self) -> Result<String, VaultError> {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::SecureRandom::fill(&self.rng, &mut raw)
            .map_err(|_| VaultError::Crypto(postvault_crypto::CryptoError::Random))?;
        Ok(format!("pv_{}", hex::encode(raw)))
    }
}

pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}
