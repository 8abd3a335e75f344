//! Online backups of the embedded store, and restoring one.
//!
//! The data store is copied first, then the key store, each with SQLite's
//! online backup API (one snapshot each, taken while the vault runs). In
//! that order the key-store copy holds every key made before the data copy
//! was taken, so it never lacks a key for a record in the data copy: keys
//! are made before the records they seal. The one way a key can be missing
//! is a destruction between the two copies; every destruction is written
//! ahead as an intent, counted in the data store (`intents_written`), so a
//! count that moved between the copies means both are taken again. A
//! destruction whose intent is in the data copy is finished when the
//! restored vault opens. The other way round, the key-store copy may hold a
//! key destroyed after the data copy was taken (an erasure between the
//! two): that is the gap key-backup rotation closes (docs/operations.md).
//!
//! On PostgreSQL, backups are `pg_dump` of the data schema, then of the key
//! store (docs/operations.md), in the same order.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use postvault_store::{OpenMode, SqliteKeyStore, SqliteStore};

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::integrity::CheckReport;
use crate::vault::{DATA_FILE, KEYS_FILE, OpenOptions, VAULT_ID, Vault};

/// The file beside each copy that says what it is.
pub const MANIFEST: &str = "backup.json";
/// Attempts before a backup gives up while destructions keep running.
const ATTEMPTS: u32 = 5;

/// What a backup wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    pub data: String,
    pub keys: String,
    pub vault_id: String,
    /// Shared by the two copies of one backup.
    pub backup_id: String,
    pub taken_at: String,
    pub log_size: u64,
    pub records: u64,
    /// Attempts it took (a destruction between the copies starts over).
    pub attempts: u32,
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    pub to: String,
    pub vault_id: String,
    pub backup_id: Option<String>,
    /// The two copies carry the same backup id (taken together).
    pub paired: bool,
    /// Where the vault that was in `to` was moved (`--replace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_moved_to: Option<String>,
    /// `postvault check` of the restored vault.
    pub check: CheckReport,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Manifest {
    kind: String,
    vault_id: String,
    backup_id: String,
    taken_at: i64,
    log_size: u64,
    records: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    master_key_id: Option<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn private_dir(dir: &Path) -> Result<(), VaultError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(io(dir))
    }
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), VaultError> {
    let p = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(m).unwrap_or_default() + "\n";
    std::fs::write(&p, text).map_err(io(&p))?;
    std::fs::File::open(&p)
        .and_then(|f| f.sync_all())
        .map_err(io(&p))
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).ok()?).ok()
}

fn same_place(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

impl Vault {
    /// Copies the data store to `data_to/data.db`, then the key store to
    /// `keys_to/keys.db` (two places: a backup of the data must hold no
    /// key), consistent with each other (see the module docs), each with a
    /// `backup.json` naming the vault and the backup.
    pub fn backup(&self, data_to: &Path, keys_to: &Path) -> Result<BackupReport, VaultError> {
        if self.lock.is_none() {
            return Err(VaultError::Invalid {
                what: "backup",
                why: "this vault is not in a directory of SQLite files: on PostgreSQL, dump the data schema, then the key store, with pg_dump (docs/operations.md)".into(),
            });
        }
        private_dir(data_to)?;
        private_dir(keys_to)?;
        if same_place(data_to, keys_to) {
            return Err(VaultError::Invalid {
                what: "backup",
                why: "the keys go to another place than the data: a copy of the data must hold no key".into(),
            });
        }
        let data = data_to.join(DATA_FILE);
        let keys = keys_to.join(KEYS_FILE);
        for p in [&data, &keys] {
            if p.try_exists().map_err(io(p))? {
                return Err(VaultError::Invalid {
                    what: "backup",
                    why: format!(
                        "`{}` exists: back up into a new directory (one per backup, for rotation)",
                        p.display()
                    ),
                });
            }
        }
        // The rows of erased people are purged first, so the copy holds
        // none of their refs and lookup tokens (an erasure running at this
        // moment may still leave its own in it, until the next backup).
        self.purge_erased(&mut |_| {})?;
        let written = || -> Result<u64, VaultError> {
            Ok(self
                .store
                .meta("intents_written")?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0))
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            // No destruction of this process starts between the copies;
            // another process's is seen in the count and taken again.
            let pause = self.destroy_gate.write().unwrap_or_else(|e| e.into_inner());
            let before = written()?;
            postvault_store::backup_file(&self.dir().join(DATA_FILE), &data)?;
            postvault_store::backup_file(&self.dir().join(KEYS_FILE), &keys)?;
            let after = written()?;
            drop(pause);
            if after == before {
                break;
            }
            // A destruction began between the copies: the key copy may lack
            // keys the data copy needs. Again.
            let _ = std::fs::remove_file(&data);
            let _ = std::fs::remove_file(&keys);
            if attempts >= ATTEMPTS {
                return Err(VaultError::VaultInUse(format!(
                    "keys were being destroyed during each of {ATTEMPTS} attempts at a backup (retention sweeps, erasures); try again when it is quieter"
                )));
            }
        }
        // What the copy holds, read from the copy.
        let copy = SqliteStore::open(&data, OpenMode::Existing)?;
        let (log_size, records) = (
            postvault_store::LogStore::log_size(&copy)?,
            postvault_store::RecordStore::record_count(&copy)?,
        );
        drop(copy);
        // Opening the copy may have left a WAL beside it: fold it back.
        postvault_store::fold_wal(&data)?;
        let vault_id = self.store.meta(VAULT_ID)?.unwrap_or_default();
        let now = self.clock.now_ms();
        let backup_id = uuid::Uuid::now_v7().to_string();
        let master_key_id = self
            .keys
            .secret(crate::vault::SEALED_MASTER_SECRET)?
            .and_then(|s| postvault_crypto::MasterKey::sealed_key_id(&s));
        let m = |kind: &str, master_key_id: Option<String>| Manifest {
            kind: kind.into(),
            vault_id: vault_id.clone(),
            backup_id: backup_id.clone(),
            taken_at: now,
            log_size,
            records,
            master_key_id,
        };
        write_manifest(data_to, &m("data", None))?;
        write_manifest(keys_to, &m("keys", master_key_id))?;
        Ok(BackupReport {
            data: data.display().to_string(),
            keys: keys.display().to_string(),
            vault_id,
            backup_id,
            taken_at: format_ms(now),
            log_size,
            records,
            attempts,
        })
    }

    /// Restores a backup (`data_from/data.db`, `keys_from/keys.db`) into
    /// `to`, which must not hold a vault unless `replace` (the vault there,
    /// not in use, is then moved aside, never deleted). The copies are put
    /// in place atomically, the vault opened (which finishes destructions
    /// the data copy recorded as begun) and checked.
    pub fn restore(
        data_from: &Path,
        keys_from: &Path,
        to: &Path,
        opts: OpenOptions,
        replace: bool,
    ) -> Result<(Vault, RestoreReport), VaultError> {
        let data_src = data_from.join(DATA_FILE);
        let keys_src = keys_from.join(KEYS_FILE);
        for p in [&data_src, &keys_src] {
            if !p.try_exists().map_err(io(p))? {
                return Err(VaultError::Invalid {
                    what: "restore",
                    why: format!("`{}` is not there", p.display()),
                });
            }
        }
        let (dm, km) = (read_manifest(data_from), read_manifest(keys_from));
        let paired = matches!((&dm, &km), (Some(d), Some(k)) if d.backup_id == k.backup_id);
        let shown = to.display().to_string();
        let parent = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = to
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "vault".into());
        let occupied = to.try_exists().map_err(io(to))?
            && std::fs::read_dir(to).map_err(io(to))?.next().is_some();
        if occupied && !replace {
            return Err(VaultError::Invalid {
                what: "restore",
                why: format!(
                    "`{shown}` is not empty: restore into a new directory, or pass --replace to move what is there aside"
                ),
            });
        }
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        let suffix = uuid::Uuid::now_v7().simple().to_string();
        let build = parent.join(format!(".{name}.postvault-restore-{suffix}"));
        let built = (|| -> Result<String, VaultError> {
            private_dir(&build)?;
            for (src, name) in [(&keys_src, KEYS_FILE), (&data_src, DATA_FILE)] {
                let dst = build.join(name);
                postvault_store::backup_file(src, &dst)?;
            }
            // The two belong to one vault.
            let keys = SqliteKeyStore::open(&build.join(KEYS_FILE), OpenMode::Existing)?;
            let data = SqliteStore::open(&build.join(DATA_FILE), OpenMode::Existing)?;
            let key_vault = postvault_store::KeyStore::secret(&keys, VAULT_ID)?.unwrap_or_default();
            let data_vault = postvault_store::OpsStore::meta(&data, VAULT_ID)?.unwrap_or_default();
            drop((keys, data));
            for name in [KEYS_FILE, DATA_FILE] {
                postvault_store::fold_wal(&build.join(name))?;
            }
            if key_vault != data_vault.as_bytes() {
                return Err(VaultError::KeysMismatch(keys_src.display().to_string()));
            }
            Ok(data_vault)
        })();
        let vault_id = match built {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&build);
                return Err(e);
            }
        };
        let mut moved = None;
        if to.try_exists().map_err(io(to))? {
            if occupied {
                // Not while it is open anywhere.
                let keys = to.join(KEYS_FILE);
                if keys.try_exists().map_err(io(&keys))? {
                    let f = std::fs::File::open(&keys).map_err(io(&keys))?;
                    if let Err(std::fs::TryLockError::WouldBlock) = f.try_lock() {
                        let _ = std::fs::remove_dir_all(&build);
                        return Err(VaultError::VaultInUse(format!(
                            "the vault at `{shown}` is open in another process: stop it before restoring over it"
                        )));
                    }
                }
                let aside = parent.join(format!(".{name}.before-restore-{suffix}"));
                std::fs::rename(to, &aside).map_err(io(to))?;
                moved = Some(aside.display().to_string());
            } else {
                std::fs::remove_dir(to).map_err(io(to))?;
            }
        }
        std::fs::rename(&build, to).map_err(io(to))?;
        std::fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(io(&parent))?;
        // Opening finishes what the data copy recorded as begun (an
        // erasure, a sweep, a destroyed order) before the check looks.
        let v = Vault::open(to, opts)?;
        // The log's anti-rollback state (the key store's last signed
        // checkpoint against this data store's tree) is compared here once
        // the key store keeps it: a restore is a rollback of the log to the
        // backup's size, and is reported as such.
        let check = v.check()?;
        Ok((
            v,
            RestoreReport {
                to: shown,
                vault_id,
                backup_id: dm.map(|m| m.backup_id),
                paired,
                replaced_moved_to: moved,
                check,
            },
        ))
    }
}
