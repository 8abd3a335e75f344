//! Creating and opening a vault: atomic `init`, a half-made vault told apart
//! from a vault that holds data, permissions reported as such, and the
//! master key found where it is kept (the key store, or sealed there under
//! an external key the operator holds).
//!
//! `init` builds the vault in a directory of its own beside the target and
//! renames it into place (the parent directory synced), so the target is a
//! whole vault or is not there. Into an existing directory it moves the
//! files in, the data store last: a data store with its vault id is what
//! makes a vault, and anything short of it is recognized as half-made.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postvault_crypto::{ExternalKey, MasterKey, SystemRandom};
use postvault_store::{KeyStore, OpenMode, SqliteKeyStore, SqliteStore, Store, StoreError};

use crate::clock::Clock;
use crate::error::VaultError;
use crate::vault::{
    DATA_FILE, KEYS_FILE, LOG_KEY_SECRET, MASTER_SECRET, OpenOptions, SEALED_MASTER_SECRET,
    VAULT_ID, Vault, load_pack,
};

/// How to create a vault.
#[derive(Clone, Copy, Debug, Default)]
pub struct InitOptions {
    /// Replace a half-made vault (one an interrupted `init` left, holding
    /// no data and no key of anyone) in the target.
    pub replace: bool,
}

/// Secrets a fresh vault holds before anything was collected.
const INIT_SECRETS: &[&str] = &[
    MASTER_SECRET,
    SEALED_MASTER_SECRET,
    VAULT_ID,
    LOG_KEY_SECRET,
    crate::vault::LOG_VERIFIER_SECRET,
];

/// What a vault directory holds.
#[derive(Debug)]
enum Found {
    Nothing,
    /// A vault (or what opening it will judge: another vault's key store,
    /// a newer schema).
    Vault,
    /// A file there is not a database: opening it says which.
    Damaged(String),
    /// Left by an interrupted `init`: no data, no key of anyone.
    HalfMade(String),
    /// The data store holds data and the key store is not there.
    KeysMissing,
    /// Holds keys or data, but no whole vault.
    HoldsData(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Whether `path` exists; a path that cannot be looked at (permissions) is
/// an error, never "missing".
fn exists(path: &Path) -> Result<bool, VaultError> {
    path.try_exists().map_err(io(path))
}

fn classify(dir: &Path) -> Result<Found, VaultError> {
    let data = dir.join(DATA_FILE);
    let keys = dir.join(KEYS_FILE);
    let (has_data, has_keys) = (exists(&data)?, exists(&keys)?);
    if !has_data && !has_keys {
        return Ok(Found::Nothing);
    }
    let probe = |p: &Path, there: bool| -> Result<Option<postvault_store::Probe>, VaultError> {
        if there {
            Ok(Some(postvault_store::probe(p)?))
        } else {
            Ok(None)
        }
    };
    let (d, k) = (probe(&data, has_data)?, probe(&keys, has_keys)?);
    for (p, path) in [(&d, &data), (&k, &keys)] {
        if p.as_ref().is_some_and(|p| p.not_a_database) {
            return Ok(Found::Damaged(format!(
                "`{}` is not a database",
                path.display()
            )));
        }
    }
    // A data store marked with its vault id was made whole: without its
    // key store, the keys are missing (not a half-made vault).
    if let Some(d) = &d
        && (d.leaves > 0 || d.records > 0 || (d.vault_id.is_some() && !has_keys))
    {
        return Ok(if has_keys {
            Found::Vault
        } else {
            Found::KeysMissing
        });
    }
    let has_master = k.as_ref().is_some_and(|k| {
        k.secrets
            .iter()
            .any(|s| s == MASTER_SECRET || s == SEALED_MASTER_SECRET)
    });
    // Both stores marked: a vault, whatever it holds (keys are made before
    // the records they seal, so keys without records are a vault's state).
    if d.as_ref().is_some_and(|d| d.vault_id.is_some()) && has_master {
        return Ok(Found::Vault);
    }
    let people = k.as_ref().map_or(0, |k| k.subject_keys);
    let holds_keys = people > 0
        || k.as_ref().is_some_and(|k| {
            k.secrets
                .iter()
                .any(|s| !INIT_SECRETS.contains(&s.as_str()))
        });
    if holds_keys {
        return Ok(Found::HoldsData(format!(
            "its key store holds keys (of {people} people), its data store no data: restore the data store from its backup (`postvault restore`)"
        )));
    }
    Ok(match (&d, &k) {
        (None, Some(_)) => Found::HalfMade("a key store without a data store".into()),
        (Some(_), None) => Found::HalfMade("a data store without a key store".into()),
        (Some(d), Some(_)) if d.vault_id.is_none() => {
            Found::HalfMade("a data store without its vault id".into())
        }
        _ => Found::HalfMade("a key store without its master key".into()),
    })
}

/// The file system or SQLite ran out of space.
fn disk_full(e: &VaultError) -> bool {
    match e {
        VaultError::Io { source, .. } => {
            source.kind() == std::io::ErrorKind::StorageFull || source.raw_os_error() == Some(28)
        }
        VaultError::Store(e) => e.is_disk_full(),
        _ => false,
    }
}

fn create_private_dir(dir: &Path) -> Result<(), VaultError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir(dir).map_err(io(dir))
    }
}

fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

fn random_suffix() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Removes what an interrupted `init` of this binary left inside `dir`.
fn remove_stale_builds(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(".postvault-init-")
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Vault {
    /// Creates a new vault in `dir` (created if missing, mode 0700).
    pub fn init(dir: &Path, opts: OpenOptions) -> Result<Vault, VaultError> {
        Vault::create(dir, opts, &InitOptions::default())
    }

    /// Creates a new vault in `dir`, atomically: the directory holds a
    /// whole vault afterwards, or what it held before. Replaces a half-made
    /// vault with `init.replace`; never one that holds data.
    pub fn create(dir: &Path, opts: OpenOptions, init: &InitOptions) -> Result<Vault, VaultError> {
        let (src, pack) = load_pack(&opts)?;
        let shown = dir.display().to_string();
        let target_exists = exists(dir)?;
        let mut replace_files = false;
        if target_exists {
            if !dir.is_dir() {
                return Err(VaultError::Invalid {
                    what: "vault directory",
                    why: format!("`{shown}` exists and is not a directory"),
                });
            }
            // Listing it tells a directory we may not read from an empty one.
            std::fs::read_dir(dir).map_err(io(dir))?;
            match classify(dir)? {
                Found::Nothing => {}
                Found::Vault => return Err(VaultError::AlreadyInitialized(shown)),
                Found::Damaged(what) => {
                    return Err(VaultError::NotAVault {
                        dir: shown,
                        what: format!("{what}; `init` will not replace it"),
                    });
                }
                Found::KeysMissing => {
                    return Err(VaultError::KeysMissing(
                        dir.join(KEYS_FILE).display().to_string(),
                    ));
                }
                Found::HoldsData(what) => {
                    return Err(VaultError::NotAVault {
                        dir: shown,
                        what: format!("{what}; `init` will not replace it"),
                    });
                }
                Found::HalfMade(what) if init.replace => {
                    let _ = what;
                    replace_files = true;
                }
                Found::HalfMade(what) => return Err(VaultError::HalfMade { dir: shown, what }),
            }
            remove_stale_builds(dir);
        }
        // Beside the target when it does not exist (renamed into place);
        // inside it otherwise (a mount point or the working directory
        // cannot be renamed over).
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let build = if target_exists {
            dir.join(format!(".postvault-init-{}", random_suffix()))
        } else {
            std::fs::create_dir_all(&parent).map_err(io(&parent))?;
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| "vault".into());
            parent.join(format!(".{name}.postvault-init-{}", random_suffix()))
        };
        let built = (|| -> Result<(), VaultError> {
            create_private_dir(&build)?;
            // Keys first: a data store without its key store is useless,
            // and the reverse is harmless.
            let keys = SqliteKeyStore::open(&build.join(KEYS_FILE), OpenMode::Create)?;
            let store = SqliteStore::open(&build.join(DATA_FILE), OpenMode::Create)?;
            let v = Vault::create_in(
                dir,
                Box::new(store),
                Box::new(keys),
                &src,
                pack.clone(),
                opts.clock.clone(),
                opts.master_key.clone(),
            )?;
            // Closed before the move: SQLite finds its WAL by path.
            drop(v);
            for name in [KEYS_FILE, DATA_FILE] {
                let p = build.join(name);
                std::fs::File::open(&p)
                    .and_then(|f| f.sync_all())
                    .map_err(io(&p))?;
            }
            sync_dir(&build)
        })();
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&build);
            if disk_full(&e) {
                return Err(VaultError::DiskFull(shown));
            }
            return Err(e);
        }
        let placed = if target_exists {
            (|| -> Result<(), VaultError> {
                if replace_files {
                    for name in [DATA_FILE, KEYS_FILE] {
                        for suffix in ["", "-wal", "-shm", "-journal"] {
                            let p = dir.join(format!("{name}{suffix}"));
                            if exists(&p)? {
                                std::fs::remove_file(&p).map_err(io(&p))?;
                            }
                        }
                    }
                }
                // The data store last: until it is there, what is there is
                // recognized as half-made.
                for name in [KEYS_FILE, DATA_FILE] {
                    let to = dir.join(name);
                    std::fs::rename(build.join(name), &to).map_err(io(&to))?;
                }
                sync_dir(dir)?;
                let _ = std::fs::remove_dir(&build);
                Ok(())
            })()
        } else {
            std::fs::rename(&build, dir)
                .map_err(io(dir))
                .and_then(|()| sync_dir(&parent))
        };
        if let Err(e) = placed {
            let _ = std::fs::remove_dir_all(&build);
            return Err(e);
        }
        Vault::open(dir, opts)
    }

    /// Creates a new vault over stores of another backend (PostgreSQL):
    /// generates the master key and the vault id in `keys`, then records the
    /// id in `store`. Refuses stores that already hold a vault; stores an
    /// interrupted `init` left half-made are replaced with `replace`.
    /// `location` names where the vault lives (a URL without its password).
    pub fn init_with(
        location: &Path,
        store: Box<dyn Store>,
        keys: Box<dyn KeyStore>,
        opts: OpenOptions,
    ) -> Result<Vault, VaultError> {
        Vault::create_with(location, store, keys, opts, &InitOptions::default())
    }

    /// [`Vault::init_with`], replacing a half-made vault when asked to.
    pub fn create_with(
        location: &Path,
        store: Box<dyn Store>,
        keys: Box<dyn KeyStore>,
        opts: OpenOptions,
        init: &InitOptions,
    ) -> Result<Vault, VaultError> {
        let (src, pack) = load_pack(&opts)?;
        let shown = location.display().to_string();
        let has_id = store.meta(VAULT_ID)?.is_some();
        let has_master =
            keys.secret(MASTER_SECRET)?.is_some() || keys.secret(SEALED_MASTER_SECRET)?.is_some();
        if has_id && has_master {
            return Err(VaultError::AlreadyInitialized(shown));
        }
        if has_id {
            return Err(VaultError::KeysMissing(format!("{shown} (key store)")));
        }
        if has_master || keys.secret(VAULT_ID)?.is_some() {
            // The key store was made and the data store was not marked:
            // half-made, unless anything was stored since.
            let mut holds = store.log_size()? > 0 || !keys.subject_refs(None, 1)?.is_empty();
            for prefix in ["retention:", "hold:", "cover:", "gateway_key"] {
                holds |= !keys.secret_names(prefix)?.is_empty();
            }
            if holds {
                return Err(VaultError::NotAVault {
                    dir: shown,
                    what: "its stores hold data or keys but no whole vault; `init` will not replace them".into(),
                });
            }
            if !init.replace {
                return Err(VaultError::HalfMade {
                    dir: shown,
                    what: "a key store whose data store was never marked".into(),
                });
            }
            keys.delete_secrets(
                &INIT_SECRETS
                    .iter()
                    .map(|s| (*s).to_string())
                    .collect::<Vec<_>>(),
            )?;
        }
        let v = Vault::create_in(
            location,
            store,
            keys,
            &src,
            pack,
            opts.clock.clone(),
            opts.master_key.clone(),
        )?;
        Ok(v)
    }

    /// Makes the master key (sealed under `external` when given), the vault
    /// id and the log's signing key; marks the data store last.
    fn create_in(
        dir: &Path,
        store: Box<dyn Store>,
        keys: Box<dyn KeyStore>,
        src: &postvault_policy::PackSources,
        pack: Arc<postvault_policy::Pack>,
        clock: Arc<dyn Clock>,
        external: Option<Arc<ExternalKey>>,
    ) -> Result<Vault, VaultError> {
        let rng = SystemRandom::new();
        let vault_id = uuid::Uuid::now_v7().to_string();
        let master = MasterKey::generate(&rng)?;
        let (master, name, value) = match &external {
            Some(ext) => {
                // A wrapping key of its own, not derived from the root.
                let m = master.with_new_kek(&rng)?;
                let sealed = m.seal_under(ext, &rng, vault_id.as_bytes())?;
                (m, SEALED_MASTER_SECRET, sealed)
            }
            None => {
                let raw = master.to_bytes().to_vec();
                (master, MASTER_SECRET, raw)
            }
        };
        match keys.put_secret(name, &value) {
            // Another node initialized the same stores first.
            Err(StoreError::SecretExists(_)) => {
                return Err(VaultError::AlreadyInitialized(dir.display().to_string()));
            }
            r => r?,
        }
        keys.put_secret(VAULT_ID, vault_id.as_bytes())?;
        store.set_meta("created_at", &clock.now_ms().to_string())?;
        crate::packs::record(&*store, src)?;
        store.set_meta(VAULT_ID, &vault_id)?;
        Vault::assemble(
            dir,
            store,
            keys,
            master,
            external.is_some(),
            pack,
            clock,
            None,
        )
    }

    /// Opens the vault in `dir`.
    pub fn open(dir: &Path, opts: OpenOptions) -> Result<Vault, VaultError> {
        let shown = dir.display().to_string();
        let data_path = dir.join(DATA_FILE);
        let keys_path = dir.join(KEYS_FILE);
        if !exists(dir)? {
            return Err(VaultError::NotInitialized(shown));
        }
        match classify(dir)? {
            Found::Nothing => return Err(VaultError::NotInitialized(shown)),
            Found::KeysMissing => {
                return Err(VaultError::KeysMissing(keys_path.display().to_string()));
            }
            Found::HalfMade(what) => return Err(VaultError::HalfMade { dir: shown, what }),
            Found::HoldsData(what) => return Err(VaultError::NotAVault { dir: shown, what }),
            // The stores' own checks say what is wrong, if anything is.
            Found::Vault | Found::Damaged(_) => {}
        }
        // Shared while open; a rotation or a restore takes it exclusively.
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .open(&keys_path)
            .map_err(io(&keys_path))?;
        match lock.try_lock_shared() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(VaultError::VaultInUse(format!(
                    "`{shown}` is being changed by another process (a master-key rotation or a restore); try again when it is done"
                )));
            }
            // A file system without locks (some network mounts): the vault
            // opens; a rotation or restore then cannot make sure it is
            // alone, and refuses.
            Err(std::fs::TryLockError::Error(_)) => {}
        }
        let keys = SqliteKeyStore::open(&keys_path, OpenMode::Existing)?;
        let store = SqliteStore::open(&data_path, OpenMode::Existing)?;
        let keys_shown = keys_path.display().to_string();
        let (master, external) = load_and_match(&keys, &store, &opts, &keys_shown)?;
        Vault::open_under_recorded_pack(
            dir,
            Box::new(store),
            Box::new(keys),
            master,
            external,
            &opts,
            Some(lock),
        )
    }

    /// Opens a vault over stores of another backend (PostgreSQL), checking
    /// that the key store holds the master key and belongs to the same vault
    /// as the data store. `location` names where the vault lives.
    pub fn open_with(
        location: &Path,
        store: Box<dyn Store>,
        keys: Box<dyn KeyStore>,
        opts: OpenOptions,
    ) -> Result<Vault, VaultError> {
        let shown = location.display().to_string();
        if store.meta(VAULT_ID)?.is_none() {
            if keys.secret(VAULT_ID)?.is_some() {
                return Err(VaultError::HalfMade {
                    dir: shown,
                    what: "a key store whose data store was never marked".into(),
                });
            }
            return Err(VaultError::NotInitialized(shown));
        }
        let keys_shown = format!("{shown} (key store)");
        let (master, external) = load_and_match(&*keys, &*store, &opts, &keys_shown)?;
        Vault::open_under_recorded_pack(location, store, keys, master, external, &opts, None)
    }
}

/// The master key, checked to belong to the data store's vault.
fn load_and_match(
    keys: &dyn KeyStore,
    store: &dyn Store,
    opts: &OpenOptions,
    keys_shown: &str,
) -> Result<(MasterKey, bool), VaultError> {
    let key_vault = keys.secret(VAULT_ID)?.unwrap_or_default();
    let data_vault = store.meta(VAULT_ID)?.unwrap_or_default();
    if key_vault != data_vault.as_bytes() {
        if keys.secret(MASTER_SECRET)?.is_none() && keys.secret(SEALED_MASTER_SECRET)?.is_none() {
            return Err(VaultError::KeysMissing(keys_shown.to_string()));
        }
        return Err(VaultError::KeysMismatch(keys_shown.to_string()));
    }
    load_master(keys, opts.master_key.as_deref(), keys_shown)
}

/// The master key, from where the key store says it is kept: in it, or
/// sealed in it under `external`. Returns it and whether it is external.
pub(crate) fn load_master(
    keys: &dyn KeyStore,
    external: Option<&ExternalKey>,
    shown: &str,
) -> Result<(MasterKey, bool), VaultError> {
    if let Some(sealed) = keys.secret(SEALED_MASTER_SECRET)? {
        let Some(ext) = external else {
            return Err(VaultError::MasterKeyRequired(shown.to_string()));
        };
        let vault_id = keys.secret(VAULT_ID)?.unwrap_or_default();
        return match MasterKey::unseal(ext, &sealed, &vault_id) {
            Ok(m) => Ok((m, true)),
            Err(e @ postvault_crypto::CryptoError::WrongExternalKey { .. }) => {
                Err(VaultError::MasterKeyWrong(e.to_string()))
            }
            Err(_) => Err(VaultError::MasterKeyWrong(format!(
                "the sealed master key in `{shown}` does not open with the key given (key id {}): the key store is damaged, or belongs to another vault",
                ext.id()
            ))),
        };
    }
    match keys.secret(MASTER_SECRET)? {
        Some(_) if external.is_some() => Err(VaultError::MasterKeyInStore(shown.to_string())),
        Some(raw) => Ok((MasterKey::from_bytes(&raw)?, false)),
        None => Err(VaultError::KeysMissing(shown.to_string())),
    }
}
