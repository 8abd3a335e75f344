//! The SQLite side of [`crate::ops`]: collection runs, intents, the counts
//! `postvault check` needs, the durability settings read back at open, and
//! online backups.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::{IntentRow, KeyUse, RunBatch, RunRow, RunStep, StoreError, SubjectRef};

/// The settings that make a commit durable and a deletion overwrite its
/// bytes, as a connection reports them (read back, not assumed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durability {
    /// `wal`.
    pub journal_mode: String,
    /// 2 (`FULL`) or 3 (`EXTRA`).
    pub synchronous: i64,
    /// 1 (`ON`).
    pub secure_delete: i64,
}

/// Reads the durability settings of `conn` back from SQLite.
pub fn durability_of(conn: &Connection) -> Result<Durability, StoreError> {
    Ok(Durability {
        journal_mode: conn
            .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))?
            .to_ascii_lowercase(),
        synchronous: conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
        secure_delete: conn.query_row("PRAGMA secure_delete", [], |r| r.get(0))?,
    })
}

/// Refuses settings under which an acknowledged write could be lost (a
/// journal other than WAL, `synchronous` below `FULL`) or a destroyed key
/// could stay on disk (`secure_delete` off).
pub fn check_durability(d: &Durability) -> Result<(), String> {
    if d.journal_mode != "wal" {
        return Err(format!(
            "journal_mode is `{}`, not `wal` (the file system may not support WAL)",
            d.journal_mode
        ));
    }
    if d.synchronous < 2 {
        return Err(format!(
            "synchronous is {} (OFF=0, NORMAL=1), not FULL (2): a commit could be lost",
            d.synchronous
        ));
    }
    if d.secure_delete != 1 {
        return Err(format!(
            "secure_delete is {}, not ON: destroyed keys could stay in the file",
            d.secure_delete
        ));
    }
    Ok(())
}

/// Copies the SQLite database at `src` to a new file at `dst` with the
/// online backup API, in one step under one read transaction: the copy is
/// the database as of one commit, taken while writers go on (WAL). The copy
/// is written to a temporary file beside `dst` (mode 0600), synced, and
/// renamed into place; `dst` must not exist.
pub fn backup_file(src: &Path, dst: &Path) -> Result<(), StoreError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| StoreError::Io { path, source }
    };
    if dst.exists() {
        return Err(StoreError::Io {
            path: dst.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "it already exists"),
        });
    }
    let from = Connection::open_with_flags(
        src,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    from.busy_timeout(std::time::Duration::from_secs(10))?;
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dst.with_file_name(format!(".{name}.partial"));
    let _ = std::fs::remove_file(&tmp);
    crate::sqlite::create_private(&tmp)?;
    let copied = (|| -> Result<(), StoreError> {
        let mut to = Connection::open(&tmp)?;
        {
            let b = rusqlite::backup::Backup::new(&from, &mut to)?;
            // All pages in one step: one snapshot of the source.
            match b.step(-1)? {
                rusqlite::backup::StepResult::Done => {}
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "the backup of `{}` did not complete ({other:?})",
                        src.display()
                    )));
                }
            }
        }
        // A self-contained file: no WAL beside it.
        to.execute_batch("PRAGMA journal_mode = DELETE;")?;
        drop(to);
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        Ok(())
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dst).map_err(io(dst))?;
    if let Some(parent) = dst.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Makes a rename or a new file in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        })
}

fn digest32(v: Vec<u8>) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(v.as_slice())
        .map_err(|_| StoreError::Corrupt("a run's digest is not 32 bytes".into()))
}

/// Checks and writes one step of a run inside the caller's transaction;
/// `leaf` is the batch's leaf (none for a step without a batch).
pub(crate) fn run_step(
    tx: &Connection,
    step: &RunStep,
    leaf: Option<u64>,
    batch: bool,
) -> Result<(), StoreError> {
    let stored: Option<(i64, Option<i64>)> = tx
        .prepare_cached("SELECT through_line, finished_at FROM runs WHERE id = ?1")?
        .query_row([&step.run[..]], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match stored {
        None if step.after_line == 0 => {
            tx.prepare_cached(
                "INSERT INTO runs (id, principal, started_at, updated_at, through_line, digest, finished_at)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                &step.run[..],
                step.principal,
                step.at,
                step.through_line as i64,
                &step.digest[..],
                step.finished.then_some(step.at)
            ])?;
        }
        None => return Err(StoreError::RunMoved(0)),
        Some((through, finished)) => {
            if through as u64 != step.after_line || finished.is_some() {
                return Err(StoreError::RunMoved(through as u64));
            }
            tx.prepare_cached(
                "UPDATE runs SET updated_at = ?2, through_line = ?3, digest = ?4,
                     finished_at = ?5 WHERE id = ?1",
            )?
            .execute(params![
                &step.run[..],
                step.at,
                step.through_line as i64,
                &step.digest[..],
                step.finished.then_some(step.at)
            ])?;
        }
    }
    if batch {
        tx.prepare_cached(
            "INSERT INTO run_batches (run, first_line, last_line, leaf, accepted, rejected,
                 categories, errors) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            &step.run[..],
            (step.after_line + 1) as i64,
            step.through_line as i64,
            leaf.map(|l| l as i64),
            step.accepted as i64,
            step.rejected as i64,
            step.categories,
            step.errors
        ])?;
    }
    Ok(())
}

pub(crate) fn run(conn: &Connection, id: &[u8; 16]) -> Result<Option<RunRow>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT principal, started_at, updated_at, through_line, digest, finished_at
             FROM runs WHERE id = ?1",
        )?
        .query_row([&id[..]], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })
        .optional()?;
    let Some((principal, started_at, updated_at, through, digest, finished_at)) = row else {
        return Ok(None);
    };
    let mut s = conn.prepare_cached(
        "SELECT first_line, last_line, leaf, accepted, rejected, categories, errors
         FROM run_batches WHERE run = ?1 ORDER BY first_line",
    )?;
    let batches = s
        .query_map([&id[..]], |r| {
            Ok(RunBatch {
                first_line: r.get::<_, i64>(0)? as u64,
                last_line: r.get::<_, i64>(1)? as u64,
                leaf: r.get::<_, Option<i64>>(2)?.map(|l| l as u64),
                accepted: r.get::<_, i64>(3)? as u64,
                rejected: r.get::<_, i64>(4)? as u64,
                categories: r.get(5)?,
                errors: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(RunRow {
        run: *id,
        principal,
        started_at,
        updated_at,
        through_line: through as u64,
        digest: digest32(digest)?,
        finished_at,
        batches,
    }))
}

/// Records an intent with the leaf at `idx`, and counts it, inside the
/// caller's transaction.
pub(crate) fn insert_intent(
    tx: &Connection,
    idx: u64,
    intent: &crate::Intent,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO intents (id, kind, body, at, progress) VALUES (?1, ?2, ?3, ?4, 0)",
    )?
    .execute(params![idx as i64, intent.kind, intent.body, intent.at])?;
    // Every intent ever written is counted: a backup taken while one was
    // written sees the count move and is taken again.
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('intents_written', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
    )?
    .execute([])?;
    Ok(())
}

pub(crate) fn intents(conn: &Connection) -> Result<Vec<IntentRow>, StoreError> {
    let mut s =
        conn.prepare_cached("SELECT id, kind, body, at, progress FROM intents ORDER BY id")?;
    let rows = s
        .query_map([], intent_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn intent_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IntentRow> {
    Ok(IntentRow {
        id: r.get::<_, i64>(0)? as u64,
        kind: r.get(1)?,
        body: r.get(2)?,
        at: r.get(3)?,
        progress: r.get::<_, i64>(4)? as u64,
    })
}

pub(crate) fn take_intent(tx: &Connection, id: u64) -> Result<Option<IntentRow>, StoreError> {
    let row = tx
        .prepare_cached("SELECT id, kind, body, at, progress FROM intents WHERE id = ?1")?
        .query_row([id as i64], intent_from_row)
        .optional()?;
    if row.is_some() {
        tx.prepare_cached("DELETE FROM intents WHERE id = ?1")?
            .execute([id as i64])?;
    }
    Ok(row)
}

pub(crate) fn add_progress(tx: &Connection, id: u64, n: u64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE intents SET progress = progress + ?2 WHERE id = ?1")?
        .execute(params![id as i64, n as i64])?;
    Ok(())
}

pub(crate) fn key_usage(conn: &Connection) -> Result<Vec<KeyUse>, StoreError> {
    let mut s = conn.prepare_cached(
        "SELECT key_id, category, expires_at,
                CASE WHEN key_id = ?1 THEN subject END AS holder, count(*)
         FROM records WHERE subject NOT IN (SELECT subject FROM purge)
         GROUP BY key_id, category, expires_at, holder
         ORDER BY key_id, category, expires_at, holder",
    )?;
    let rows = s
        .query_map([i64::from(crate::key_id::HOLD)], |r| {
            Ok(KeyUse {
                key_id: r.get::<_, i64>(0)? as u32,
                category: r.get(1)?,
                expires_at: r.get(2)?,
                subject: r.get::<_, Option<SubjectRef>>(3)?,
                records: r.get::<_, i64>(4)? as u64,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(crate) fn record_subjects(
    conn: &Connection,
    after: Option<&SubjectRef>,
    limit: usize,
) -> Result<Vec<(SubjectRef, u64)>, StoreError> {
    let mut s = conn.prepare_cached(
        "SELECT subject, count(*) FROM records WHERE subject > ?1
           AND subject NOT IN (SELECT subject FROM purge)
         GROUP BY subject ORDER BY subject LIMIT ?2",
    )?;
    let from: &[u8] = after.map_or(&[], |a| &a[..]);
    let rows = s
        .query_map(params![from, limit as i64], |r| {
            Ok((r.get::<_, SubjectRef>(0)?, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(crate) fn count_expired(conn: &Connection, now: i64) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM records WHERE expires_at <= ?1
               AND subject NOT IN
                 (SELECT subject FROM holds WHERE released_at IS NULL AND until_at > ?1)
               AND subject NOT IN (SELECT subject FROM purge)",
        )?
        .query_row([now], |r| r.get(0))?;
    Ok(n as u64)
}

/// What a store file holds, read without changing it: a file an
/// interrupted `init` left may hold no schema, or half of one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// The data store's vault id, if it got one.
    pub vault_id: Option<String>,
    /// Log leaves and records of a data store.
    pub leaves: u64,
    pub records: u64,
    /// Secret names of a key store, and how many subjects hold keys.
    pub secrets: Vec<String>,
    pub subject_keys: u64,
    /// The file is not a SQLite database at all.
    pub not_a_database: bool,
}

/// Reads what `path` holds, read-only. An error only when the file cannot
/// be read at all (permissions); a damaged or empty file reads as empty.
pub fn probe(path: &Path) -> Result<Probe, StoreError> {
    std::fs::File::open(path).map_err(|source| StoreError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut p = Probe::default();
    let Ok(conn) = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        p.not_a_database = true;
        return Ok(p);
    };
    if conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .is_err()
    {
        p.not_a_database = true;
        return Ok(p);
    }
    let count = |sql: &str| -> u64 {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map_or(0, |n| n as u64)
    };
    p.vault_id = conn
        .query_row("SELECT value FROM meta WHERE key = 'vault_id'", [], |r| {
            r.get(0)
        })
        .ok();
    p.leaves = count("SELECT count(*) FROM leaves");
    p.records = count("SELECT count(*) FROM records");
    p.subject_keys = count("SELECT count(*) FROM subject_keys");
    if let Ok(mut s) = conn.prepare("SELECT name FROM secrets ORDER BY name") {
        p.secrets = s
            .query_map([], |r| r.get(0))
            .map(|rows| rows.filter_map(Result::ok).collect())
            .unwrap_or_default();
    }
    Ok(p)
}

/// Moves a database's WAL back into it and removes the WAL, so the file
/// stands alone (a backup copy, a restore being put in place).
pub fn fold_wal(path: &Path) -> Result<(), StoreError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if !path.with_file_name(format!("{name}-wal")).exists() {
        return Ok(());
    }
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    c.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
    Ok(())
}
