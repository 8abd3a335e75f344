//! A C2SP tlog-witness: it follows logs (an origin and the verifier keys
//! trusted for it), keeps the latest checkpoint it cosigned for each, and
//! cosigns a new one only if it extends that one (tlog-cosignature/v1,
//! Ed25519). Any conforming log can submit to it; the vault's own log is
//! one of them.
//!
//! The protocol's decisions are `postvault_log`'s ([`open_submission`],
//! [`Submission::check`]); this crate keeps the key and the state in one
//! SQLite file (mode 0600) and runs the check and the update of a log's
//! state row in one immediate transaction, so two submissions at once can
//! never roll the state back (the race tlog-witness describes). The state
//! is durable (`synchronous=FULL`) before the cosignature is made. HTTP is
//! the service crate's.

use std::path::Path;
use std::sync::Mutex;

use postvault_log::{CosignerKey, Refusal, Submission, WitnessedTree, open_submission};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

#[cfg(test)]
mod tests;

/// `PRAGMA application_id` of a witness database ("PVWS").
const APP_ID: i32 = 0x5056_5753;

const SCHEMA: &str = "CREATE TABLE witness (
         id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL, seed BLOB NOT NULL);
     CREATE TABLE log_keys (origin TEXT NOT NULL, vkey TEXT NOT NULL, PRIMARY KEY (origin, vkey));
     CREATE TABLE log_state (
         origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL,
         note TEXT NOT NULL, cosigned_at INTEGER NOT NULL);";

/// Errors of the witness other than a refusal.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("witness database `{path}`: {message}")]
    Database { path: String, message: String },
    #[error("no witness at `{0}`: run `postvault witness init` first")]
    NotInitialized(String),
    #[error("a witness already exists at `{0}`")]
    AlreadyInitialized(String),
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
}

/// Why `add-checkpoint` was not answered with a cosignature.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// The protocol's refusal; `status()` is its HTTP status.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The state could not be read or written: 500, nothing cosigned.
    #[error("the witness state could not be updated: {0}")]
    Storage(String),
}

impl AddError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            AddError::Refused(r) => r.status(),
            AddError::Storage(_) => 500,
        }
    }
}

/// A log the witness follows, with what it last cosigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogView {
    pub origin: String,
    pub vkeys: Vec<String>,
    pub size: Option<u64>,
    pub root: Option<[u8; 32]>,
    /// POSIX seconds of the last cosignature.
    pub cosigned_at: Option<u64>,
}

/// The witness: its key, the logs it follows, and their state.
pub struct Cosigner {
    key: CosignerKey,
    conn: Mutex<Connection>,
    path: String,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigner")
            .field("key", &self.key)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn db_err(path: &str) -> impl Fn(rusqlite::Error) -> WitnessError + '_ {
    move |e| WitnessError::Database {
        path: path.to_string(),
        message: e.to_string(),
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), WitnessError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                WitnessError::AlreadyInitialized(path.display().to_string())
            }
            _ => WitnessError::Database {
                path: path.display().to_string(),
                message: e.to_string(),
            },
        })
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> Result<(), WitnessError> {
    if path.exists() {
        return Err(WitnessError::AlreadyInitialized(path.display().to_string()));
    }
    std::fs::File::create(path)
        .map(drop)
        .map_err(|e| WitnessError::Database {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

fn connect(path: &Path) -> Result<Connection, WitnessError> {
    let shown = path.display().to_string();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err(&shown))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err(&shown))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .map_err(db_err(&shown))?;
    Ok(conn)
}

impl Cosigner {
    /// Creates a witness database at `path` (mode 0600) with a new key
    /// named `name` (a schema-less URL, e.g. `witness.example.org/w1`).
    pub fn create(path: &Path, name: &str) -> Result<Cosigner, WitnessError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| WitnessError::Invalid {
            what: "randomness",
            why: e.to_string(),
        })?;
        let key = CosignerKey::from_bytes(name, &seed).map_err(|e| WitnessError::Invalid {
            what: "witness name",
            why: e.to_string(),
        })?;
        create_private(path)?;
        let shown = path.display().to_string();
        let mut conn = connect(path)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(db_err(&shown))?;
        tx.execute_batch(SCHEMA).map_err(db_err(&shown))?;
        tx.execute(
            "INSERT INTO witness (id, name, seed) VALUES (1, ?1, ?2)",
            params![name, &key.to_bytes()[..]],
        )
        .map_err(db_err(&shown))?;
        tx.pragma_update(None, "application_id", APP_ID)
            .map_err(db_err(&shown))?;
        tx.pragma_update(None, "user_version", 1)
            .map_err(db_err(&shown))?;
        tx.commit().map_err(db_err(&shown))?;
        Ok(Cosigner {
            key,
            conn: Mutex::new(conn),
            path: shown,
        })
    }

    /// Opens the witness database at `path`.
    pub fn open(path: &Path) -> Result<Cosigner, WitnessError> {
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(WitnessError::NotInitialized(shown));
        }
        let conn = connect(path)?;
        let app: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(db_err(&shown))?;
        if app != APP_ID {
            return Err(WitnessError::Database {
                path: shown,
                message: "not a postvault witness database".into(),
            });
        }
        let (name, seed): (String, Vec<u8>) = conn
            .query_row("SELECT name, seed FROM witness WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(db_err(&shown))?;
        let key = CosignerKey::from_bytes(&name, &seed).map_err(|e| WitnessError::Database {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        Ok(Cosigner {
            key,
            conn: Mutex::new(conn),
            path: shown,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        self.key.name()
    }

    /// Its verifier key, `<name>+<key id>+<base64(0x04 || key)>`.
    pub fn verifier_key(&self) -> String {
        self.key.verifier_key()
    }

    /// Follows the log `origin`, trusting its Ed25519 verifier key `vkey`
    /// (a second key for an origin is trusted too: key rotation).
    pub fn add_log(&self, origin: &str, vkey: &str) -> Result<(), WitnessError> {
        if origin.is_empty() || origin.contains('\n') {
            return Err(WitnessError::Invalid {
                what: "origin",
                why: "an origin is one non-empty line".into(),
            });
        }
        postvault_log::log_key_name(vkey).map_err(|e| WitnessError::Invalid {
            what: "log verifier key",
            why: e.to_string(),
        })?;
        self.conn()
            .execute(
                "INSERT INTO log_keys (origin, vkey) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![origin, vkey],
            )
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    /// The logs followed, with their state.
    pub fn logs(&self) -> Result<Vec<LogView>, WitnessError> {
        let conn = self.conn();
        let mut s = conn
            .prepare(
                "SELECT k.origin, group_concat(k.vkey, char(10)), s.size, s.root, s.cosigned_at
                 FROM log_keys k LEFT JOIN log_state s ON s.origin = k.origin
                 GROUP BY k.origin ORDER BY k.origin",
            )
            .map_err(db_err(&self.path))?;
        let rows = s
            .query_map([], |r| {
                let vkeys: String = r.get(1)?;
                let root: Option<Vec<u8>> = r.get(3)?;
                Ok(LogView {
                    origin: r.get(0)?,
                    vkeys: vkeys.split('\n').map(str::to_owned).collect(),
                    size: r.get::<_, Option<i64>>(2)?.map(|n| n as u64),
                    root: root.and_then(|r| r.try_into().ok()),
                    cosigned_at: r.get::<_, Option<i64>>(4)?.map(|n| n as u64),
                })
            })
            .map_err(db_err(&self.path))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err(&self.path))?;
        Ok(rows)
    }

    fn trusted(&self, origin: &str) -> Result<Option<Vec<String>>, rusqlite::Error> {
        let conn = self.conn();
        let mut s = conn.prepare_cached("SELECT vkey FROM log_keys WHERE origin = ?1")?;
        let keys: Vec<String> = s
            .query_map([origin], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok((!keys.is_empty()).then_some(keys))
    }

    /// `POST add-checkpoint`: checks `body` against the state of its log
    /// and, if it extends it, stores the new state durably and returns the
    /// cosignature line, dated `now` (POSIX seconds).
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<String, AddError> {
        let storage = |e: rusqlite::Error| AddError::Storage(e.to_string());
        let failed = std::cell::RefCell::new(None);
        let sub = open_submission(body, &|origin: &str| match self.trusted(origin) {
            Ok(k) => k,
            Err(e) => {
                *failed.borrow_mut() = Some(e);
                None
            }
        });
        if let Some(e) = failed.into_inner() {
            return Err(storage(e));
        }
        let sub = sub?;
        self.advance(&sub, now).map_err(|e| match e {
            Advance::Refused(r) => AddError::Refused(r),
            Advance::Db(e) => storage(e),
        })?;
        self.key
            .cosign(&sub.text, now)
            .map_err(|e| AddError::Storage(e.to_string()))
    }

    /// The check and the state update, in one immediate transaction.
    fn advance(&self, sub: &Submission, now: u64) -> Result<WitnessedTree, Advance> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT size, root FROM log_state WHERE origin = ?1",
                [&sub.checkpoint.origin],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let held = match held {
            Some((size, root)) => Some(WitnessedTree {
                size: size as u64,
                root: root
                    .try_into()
                    .map_err(|_| Advance::Db(rusqlite::Error::InvalidQuery))?,
            }),
            None => None,
        };
        let new = sub.check(held.as_ref()).map_err(Advance::Refused)?;
        tx.execute(
            "INSERT INTO log_state (origin, size, root, note, cosigned_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root,
                 note = excluded.note, cosigned_at = excluded.cosigned_at",
            params![
                sub.checkpoint.origin,
                new.size as i64,
                &new.root[..],
                sub.note,
                now.min(i64::MAX as u64) as i64
            ],
        )?;
        tx.commit()?;
        Ok(new)
    }
}

enum Advance {
    Refused(Refusal),
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for Advance {
    fn from(e: rusqlite::Error) -> Self {
        Advance::Db(e)
    }
}
