//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`, one
//! immediate transaction per batch, versioned schema migrations.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::{
    KeyStore, LeafFn, PrincipalRow, ReadLeafFn, RecordRow, Store, StoreError, SubjectData,
    SubjectKeys, SubjectRef, WriteBatch,
};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 2;

/// `PRAGMA application_id` of a postvault data store ("PVDS").
const DATA_APP_ID: i32 = 0x5056_4453;
/// `PRAGMA application_id` of a postvault key store ("PVKS").
const KEYS_APP_ID: i32 = 0x5056_4b53;

/// Migrations from version N-1 to N, index N-1.
const DATA_MIGRATIONS: &[&str] = &[
    // 1: the core tables.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE principals (
         name TEXT PRIMARY KEY, role TEXT NOT NULL,
         token_hash BLOB NOT NULL, created_at INTEGER NOT NULL);
     CREATE TABLE records (
         id BLOB NOT NULL, subject BLOB NOT NULL, category TEXT NOT NULL,
         purpose TEXT NOT NULL, source TEXT NOT NULL,
         collected_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
         key_id INTEGER NOT NULL, sealed BLOB NOT NULL);
     CREATE INDEX records_subject ON records (subject);
     CREATE TABLE lookups (
         token BLOB NOT NULL, subject BLOB NOT NULL, record BLOB NOT NULL,
         PRIMARY KEY (token, record)) WITHOUT ROWID;
     CREATE TABLE consents (
         subject BLOB NOT NULL, purpose TEXT NOT NULL, granted INTEGER NOT NULL,
         at INTEGER NOT NULL, PRIMARY KEY (subject, purpose)) WITHOUT ROWID;
     CREATE TABLE leaves (idx INTEGER PRIMARY KEY, body BLOB NOT NULL);",
    // 2: the Merkle tree over the leaves, and signed checkpoints.
    "CREATE TABLE log_hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
     CREATE TABLE log_checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL);
     INSERT INTO meta (key, value) VALUES ('log_hashed_size', '0');",
];

const KEYS_MIGRATIONS: &[&str] = &[
    // 1: secrets and per-subject wrapped keys.
    "CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
     CREATE TABLE subject_keys (
         ref BLOB PRIMARY KEY, data BLOB NOT NULL, tag BLOB NOT NULL) WITHOUT ROWID;",
];

/// Options for opening a store file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist and be a postvault store.
    Existing,
    /// Create the file (mode 0600) if it does not exist.
    Create,
}

fn open_db(
    path: &Path,
    mode: OpenMode,
    app_id: i32,
    migrations: &[&str],
    what: &str,
) -> Result<Connection, StoreError> {
    let shown = path.display().to_string();
    let exists = path.exists();
    if !exists {
        if mode == OpenMode::Existing {
            return Err(StoreError::NotAStore(shown, format!("no {what} file")));
        }
        create_private(path)?;
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let not_a_store = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            StoreError::NotAStore(shown.clone(), format!("the {what} file is not a database"))
        }
        _ => StoreError::Sqlite(e),
    };
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let found_app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(not_a_store)?;
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let fresh = found_app == 0 && version == 0;
    if !fresh && found_app != app_id {
        return Err(StoreError::NotAStore(
            shown,
            format!("it is not a postvault {what}"),
        ));
    }
    if fresh {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(StoreError::NotAStore(
                shown,
                format!("it is a database, but not a postvault {what}"),
            ));
        }
    }
    let supported = migrations.len() as u32;
    if version > supported {
        return Err(StoreError::NewerSchema {
            path: shown,
            found: version,
            supported,
        });
    }
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA secure_delete = ON;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -32768;",
    )?;
    if version < supported {
        let mut conn = conn;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        // Re-read inside the lock: another process may have migrated.
        let v: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in migrations.iter().enumerate().skip(v as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as u32 + 1)?;
        }
        tx.pragma_update(None, "application_id", app_id)?;
        tx.commit()?;
        return Ok(conn);
    }
    Ok(conn)
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> Result<(), StoreError> {
    std::fs::File::create(path)
        .map(drop)
        .map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// The embedded SQLite data store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    pub fn open(path: &Path, mode: OpenMode) -> Result<SqliteStore, StoreError> {
        let conn = open_db(path, mode, DATA_APP_ID, DATA_MIGRATIONS, "data store")?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half transaction:
        // rusqlite rolls back on drop. Recover the guard.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn next_index(tx: &rusqlite::Transaction<'_>) -> Result<u64, StoreError> {
    let n: i64 = tx.query_row("SELECT coalesce(max(idx) + 1, 0) FROM leaves", [], |r| {
        r.get(0)
    })?;
    Ok(n as u64)
}

fn append(
    tx: &rusqlite::Transaction<'_>,
    count: usize,
    leaf: &mut LeafFn<'_>,
) -> Result<u64, StoreError> {
    let first = next_index(tx)?;
    let mut ins = tx.prepare_cached("INSERT INTO leaves (idx, body) VALUES (?1, ?2)")?;
    for i in 0..count {
        let idx = first + i as u64;
        ins.execute(params![idx as i64, leaf(idx, i)])?;
    }
    Ok(first)
}

fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok(RecordRow {
        id: r.get(0)?,
        subject: r.get(1)?,
        category: r.get(2)?,
        purpose: r.get(3)?,
        source: r.get(4)?,
        collected_at: r.get(5)?,
        expires_at: r.get(6)?,
        key_id: r.get(7)?,
        sealed: r.get(8)?,
    })
}

impl Store for SqliteStore {
    fn write(&self, batch: &WriteBatch, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut s = tx.prepare_cached(
                "INSERT INTO records (id, subject, category, purpose, source,
                     collected_at, expires_at, key_id, sealed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for r in &batch.records {
                s.execute(params![
                    r.id,
                    r.subject,
                    r.category,
                    r.purpose,
                    r.source,
                    r.collected_at,
                    r.expires_at,
                    r.key_id,
                    r.sealed
                ])?;
            }
            let mut s = tx.prepare_cached(
                "INSERT INTO lookups (token, subject, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?;
            for l in &batch.lookups {
                s.execute(params![l.token, l.subject, l.record])?;
            }
            let mut s = tx.prepare_cached(
                "INSERT INTO consents (subject, purpose, granted, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (subject, purpose) DO UPDATE
                 SET granted = excluded.granted, at = excluded.at WHERE excluded.at >= consents.at",
            )?;
            for c in &batch.consents {
                s.execute(params![c.subject, c.purpose, c.granted, c.at])?;
            }
        }
        let first = append(&tx, batch.leaves, leaf)?;
        tx.commit()?;
        Ok(first)
    }

    fn read_accounted(
        &self,
        subject: &SubjectRef,
        leaf: &mut ReadLeafFn<'_>,
    ) -> Result<(SubjectData, u64), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut data = SubjectData::default();
        {
            let mut s = tx.prepare_cached(
                "SELECT id, subject, category, purpose, source, collected_at,
                        expires_at, key_id, sealed
                 FROM records WHERE subject = ?1 ORDER BY collected_at, id",
            )?;
            data.records = s
                .query_map([subject], record_from_row)?
                .collect::<Result<_, _>>()?;
            let mut s = tx.prepare_cached(
                "SELECT subject, purpose, granted, at FROM consents WHERE subject = ?1 ORDER BY purpose",
            )?;
            data.consents = s
                .query_map([subject], |r| {
                    Ok(crate::ConsentRow {
                        subject: r.get(0)?,
                        purpose: r.get(1)?,
                        granted: r.get(2)?,
                        at: r.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
        }
        data.exists = !data.records.is_empty() || !data.consents.is_empty();
        let idx = append(&tx, 1, &mut |idx, _| leaf(&data, idx))?;
        tx.commit()?;
        Ok((data, idx))
    }

    fn lookup(&self, token: &[u8; 16]) -> Result<Vec<SubjectRef>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(
            "SELECT DISTINCT subject FROM lookups WHERE token = ?1 ORDER BY subject",
        )?;
        let rows = s
            .query_map([token], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn add_principal(&self, p: &PrincipalRow) -> Result<(), StoreError> {
        let conn = self.conn();
        let n = conn.execute(
            "INSERT INTO principals (name, role, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            params![p.name, p.role, p.token_hash, p.created_at],
        )?;
        if n == 0 {
            return Err(StoreError::PrincipalExists(p.name.clone()));
        }
        Ok(())
    }

    fn principal(&self, name: &str) -> Result<Option<PrincipalRow>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(
            "SELECT name, role, token_hash, created_at FROM principals WHERE name = ?1",
        )?;
        Ok(s.query_row([name], principal_from_row).optional()?)
    }

    fn principals(&self) -> Result<Vec<PrincipalRow>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(
            "SELECT name, role, token_hash, created_at FROM principals ORDER BY name",
        )?;
        let rows = s
            .query_map([], principal_from_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn log_size(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        let n: i64 = conn.query_row("SELECT coalesce(max(idx) + 1, 0) FROM leaves", [], |r| {
            r.get(0)
        })?;
        Ok(n as u64)
    }

    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(
            "SELECT idx, body FROM leaves WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
        )?;
        let mut out = Vec::new();
        let rows = s.query_map(
            params![
                start.min(i64::MAX as u64) as i64,
                end.min(i64::MAX as u64) as i64
            ],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )?;
        for (expect, row) in (start..).zip(rows) {
            let (idx, body) = row?;
            if idx as u64 != expect {
                return Err(StoreError::Corrupt(format!(
                    "log leaf {expect} is missing (found {idx} next)"
                )));
            }
            out.push(body);
        }
        Ok(out)
    }

    fn log_hashes(&self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached("SELECT hash FROM log_hashes WHERE idx = ?1")?;
        let mut out = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let h: Option<Vec<u8>> = s.query_row([i as i64], |r| r.get(0)).optional()?;
            let h = h
                .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
                .ok_or_else(|| StoreError::Corrupt(format!("log hash {i} is missing")))?;
            out.push(h);
        }
        Ok(out)
    }

    fn hashed_size(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        hashed_size(&conn)
    }

    fn put_log_hashes(
        &self,
        from: u64,
        to: u64,
        hashes: &[(u64, [u8; 32])],
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if hashed_size(&tx)? != from {
            return Ok(false);
        }
        {
            let mut s = tx.prepare_cached("INSERT INTO log_hashes (idx, hash) VALUES (?1, ?2)")?;
            for (i, h) in hashes {
                s.execute(params![*i as i64, &h[..]])?;
            }
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'log_hashed_size'",
            [to.to_string()],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO log_checkpoints (size, note) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![size as i64, note],
        )?;
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached("SELECT size, note FROM log_checkpoints ORDER BY size")?;
        let rows = s
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .optional()?)
    }

    fn record_count(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        let n: i64 = conn.query_row("SELECT count(*) FROM records", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}

fn hashed_size(conn: &Connection) -> Result<u64, StoreError> {
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'log_hashed_size'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    v.unwrap_or_default()
        .parse()
        .map_err(|_| StoreError::Corrupt("the log's hashed size is not a number".into()))
}

fn principal_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PrincipalRow> {
    Ok(PrincipalRow {
        name: r.get(0)?,
        role: r.get(1)?,
        token_hash: r.get(2)?,
        created_at: r.get(3)?,
    })
}

/// The embedded key store: a separate SQLite file, mode 0600.
pub struct SqliteKeyStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteKeyStore")
    }
}

impl SqliteKeyStore {
    pub fn open(path: &Path, mode: OpenMode) -> Result<SqliteKeyStore, StoreError> {
        let conn = open_db(path, mode, KEYS_APP_ID, KEYS_MIGRATIONS, "key store")?;
        Ok(SqliteKeyStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KeyStore for SqliteKeyStore {
    fn put_subject_keys(&self, keys: &[SubjectKeys]) -> Result<Vec<SubjectRef>, StoreError> {
        let mut existing = Vec::new();
        if keys.is_empty() {
            return Ok(existing);
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut s = tx.prepare_cached(
                "INSERT INTO subject_keys (ref, data, tag) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?;
            for k in keys {
                if s.execute(params![k.subject, k.data, k.tag])? == 0 {
                    existing.push(k.subject);
                }
            }
        }
        tx.commit()?;
        Ok(existing)
    }

    fn subject_keys(&self, subject: &SubjectRef) -> Result<Option<SubjectKeys>, StoreError> {
        let conn = self.conn();
        let mut s =
            conn.prepare_cached("SELECT ref, data, tag FROM subject_keys WHERE ref = ?1")?;
        Ok(s.query_row([subject], |r| {
            Ok(SubjectKeys {
                subject: r.get(0)?,
                data: r.get(1)?,
                tag: r.get(2)?,
            })
        })
        .optional()?)
    }

    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let conn = self.conn();
        let n = conn.execute(
            "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![name, value],
        )?;
        if n == 0 {
            return Err(StoreError::SecretExists(name.to_string()));
        }
        Ok(())
    }
}
