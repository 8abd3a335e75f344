//! The files' schemas: versions, migrations, and how a store file is
//! opened (created private, checked to be ours, migrated in one transaction).

use super::*;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 18;

/// The key store's schema version this build writes and reads.
pub const KEYS_SCHEMA_VERSION: u32 = 2;

/// `PRAGMA application_id` of a postvault data store ("PVDS").
pub(super) const DATA_APP_ID: i32 = 0x5056_4453;
/// `PRAGMA application_id` of a postvault key store ("PVKS").
pub(super) const KEYS_APP_ID: i32 = 0x5056_4b53;

/// Migrations from version N-1 to N, index N-1.
pub(super) const DATA_MIGRATIONS: &[&str] = &[
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
    // 3: the disclosure gateway's ledger and the accounting of disclosures.
    "CREATE TABLE disclosures (
         id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, requester TEXT NOT NULL,
         kind TEXT NOT NULL, ground TEXT NOT NULL,
         instrument_key BLOB, case_key BLOB, extension_no INTEGER NOT NULL,
         subjects BLOB NOT NULL, portions TEXT NOT NULL, status TEXT NOT NULL,
         reasons TEXT NOT NULL, alerts TEXT NOT NULL, submitted_at INTEGER NOT NULL,
         data_from INTEGER, data_until INTEGER, valid_until INTEGER, notice_after INTEGER,
         decided_by TEXT, decided_at INTEGER, fetches INTEGER NOT NULL,
         last_fetched_at INTEGER, ended_at INTEGER, end_reason TEXT, notified_at INTEGER,
         retain_until INTEGER NOT NULL, sealed BLOB NOT NULL);
     CREATE INDEX disclosures_requester ON disclosures (requester, submitted_at);
     CREATE INDEX disclosures_case ON disclosures (case_key, submitted_at);
     CREATE INDEX disclosures_instrument ON disclosures (instrument_key);
     CREATE TABLE accounting (
         disclosure TEXT NOT NULL, subject BLOB NOT NULL, at INTEGER NOT NULL,
         leaf INTEGER NOT NULL, records INTEGER NOT NULL, categories TEXT NOT NULL,
         PRIMARY KEY (disclosure, leaf));
     CREATE INDEX accounting_subject ON accounting (subject, at);",
    // 4: retention sweeps, erasure and legal holds.
    "CREATE INDEX records_expiry ON records (expires_at);
     CREATE INDEX lookups_subject ON lookups (subject, record);
     CREATE TABLE holds (
         id TEXT NOT NULL, subject BLOB NOT NULL, disclosure TEXT NOT NULL,
         placed_by TEXT NOT NULL, placed_at INTEGER NOT NULL, until_at INTEGER NOT NULL,
         notice_after INTEGER, released_at INTEGER, released_by TEXT,
         PRIMARY KEY (id, subject));
     CREATE INDEX holds_subject ON holds (subject);
     CREATE TABLE erasures (subject BLOB PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
     INSERT INTO meta (key, value) VALUES ('erasure_gen', '0');",
    // 5: corrections keep history: a corrected record points at its successor.
    "ALTER TABLE records ADD COLUMN superseded_by BLOB;",
    // 6: principals can be revoked and their tokens rotated; a token is
    // found by a unique index on its hash; nodes caching tokens watch the
    // principals generation.
    "ALTER TABLE principals ADD COLUMN revoked_at INTEGER;
     CREATE UNIQUE INDEX principals_token ON principals (token_hash);
     INSERT INTO meta (key, value) VALUES ('principals_gen', '0');",
    // 7: witness cosignatures of the kept checkpoints, one line per cosigner.
    "CREATE TABLE log_cosignatures (
         size INTEGER NOT NULL, cosigner TEXT NOT NULL, line TEXT NOT NULL,
         PRIMARY KEY (size, cosigner)) WITHOUT ROWID;",
    // 8: idempotent collection (a run's committed progress, written with
    // each batch) and write-ahead intents of destruction.
    "CREATE TABLE runs (
         id BLOB PRIMARY KEY, principal TEXT NOT NULL, started_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL, through_line INTEGER NOT NULL, digest BLOB NOT NULL,
         finished_at INTEGER) WITHOUT ROWID;
     CREATE TABLE run_batches (
         run BLOB NOT NULL, first_line INTEGER NOT NULL, last_line INTEGER NOT NULL,
         leaf INTEGER, accepted INTEGER NOT NULL, rejected INTEGER NOT NULL,
         categories TEXT NOT NULL, errors TEXT NOT NULL,
         PRIMARY KEY (run, first_line)) WITHOUT ROWID;
     CREATE TABLE intents (
         id INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL, at INTEGER NOT NULL,
         progress INTEGER NOT NULL);
     INSERT INTO meta (key, value) VALUES ('intents_written', '0');",
    // 9: the gateway's notes for the privacy office only, mail-cover
    // extensions linked to the order they extend, and protective orders
    // found by their own small index (the same seek for every person, known
    // or not: no timing oracle).
    "ALTER TABLE disclosures ADD COLUMN office_notes TEXT NOT NULL DEFAULT '';
     ALTER TABLE disclosures ADD COLUMN extends TEXT;
     CREATE INDEX records_protective ON records (subject) WHERE category = 'protective_order';",
    // 10: the privacy-budget ledger of aggregate statistics, and the scan
    // of one category's records person by person.
    "CREATE TABLE privacy_budget (
         principal TEXT NOT NULL, purpose TEXT NOT NULL, period TEXT NOT NULL,
         spent INTEGER NOT NULL, queries INTEGER NOT NULL, refused INTEGER NOT NULL,
         updated_at INTEGER NOT NULL,
         PRIMARY KEY (principal, purpose, period)) WITHOUT ROWID;
     CREATE INDEX records_category ON records (category, subject, id);",
    // 11: erased people whose rows await the purge: their records and
    // lookups are dead from the erasure on (every read, scan and count
    // leaves them out) and deleted in bulk later.
    "CREATE TABLE purge (subject BLOB PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;",
    // 12: proof tiles, the tree's levels 0-15 grouped 30 hashes a row
    // (postvault_log::proof_tiles), kept from the hashed size at the
    // upgrade on; proofs of older leaves read the stored hashes.
    "CREATE TABLE log_tiles (id INTEGER PRIMARY KEY, hashes BLOB NOT NULL);
     INSERT INTO meta (key, value)
         SELECT 'log_tiled_from', value FROM meta WHERE key = 'log_hashed_size';",
    // 13: the leaf index (postvault_store::LeafIndex): one row per leaf
    // with a subject tag, under a token only the person's tag key makes,
    // sealed with a key of the vault's, and the months in use; kept from
    // the log size at the upgrade on (the report scans older leaves).
    "CREATE TABLE leaf_index (
         token BLOB PRIMARY KEY, idx INTEGER NOT NULL, seal BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE leaf_index_months (month INTEGER PRIMARY KEY);
     INSERT INTO meta (key, value)
         SELECT 'leaf_indexed_from', CAST(coalesce(max(idx) + 1, 0) AS TEXT) FROM leaves;",
    // 14: the data generation (sqlite::data_gen), which every change a read
    // could see bumps; an older binary, which would not, refuses the file.
    "INSERT INTO meta (key, value) VALUES ('data_gen', '0') ON CONFLICT DO NOTHING;",
    // 15: records sealed under a mail-cover order, by subject (a small
    // index: covers are few), so an erasure and a purge count the records
    // the person may know of without reading a record page.
    "CREATE INDEX IF NOT EXISTS records_cover ON records (subject) WHERE key_id BETWEEN 1 AND 2147483647;",
    // 16: one index of records by person instead of two. Every record
    // inserted is an insert at a random place in each index keyed by its
    // subject (a keyed hash); past the page cache, each such insert writes
    // a page of its own at the batch's commit, and `records_category`
    // (category, subject, id) doubled that. `records_subject` now carries
    // the category after the subject: a person's reads find their rows as
    // before, and the statistics scan walks people in order through it,
    // filtering the category in the index (a row of another category is
    // passed over without reading the table) and sorting each person's
    // few rows by id. Not (subject, category, id), which would spare that
    // sort (about a tenth of the scan's CPU) at 9-17% of the ingest
    // rate (BENCHMARKS.md): ingest is the daily path. Both old indexes are
    // dropped first, so the new one reuses their pages. Written to run
    // again on a store already at 16 (tests rewind `user_version` to
    // replay later migrations): the same index results.
    "DROP INDEX IF EXISTS records_category;
     DROP INDEX IF EXISTS records_subject;
     CREATE INDEX records_subject ON records (subject, category);",
    // 17: scan blocks (StatsStore::build_scan_blocks): a person's current
    // records of one category under one key, sealed together for the
    // statistics scan, with the row number up to which the person's rows
    // of the category are in them. In person order within a category, as
    // the scan reads them; a person's blocks are deleted with any change
    // to a row they cover.
    "CREATE TABLE IF NOT EXISTS scan_blocks (
         category TEXT NOT NULL, subject BLOB NOT NULL, key_id INTEGER NOT NULL,
         expires_at INTEGER NOT NULL, upto INTEGER NOT NULL, records INTEGER NOT NULL,
         tag TEXT NOT NULL, sealed BLOB NOT NULL);
     CREATE UNIQUE INDEX IF NOT EXISTS scan_blocks_key
         ON scan_blocks (category, subject, key_id, expires_at);",
    // 18: the scan blocks' tail: below `from_row`, each current row of
    // the category is in its person's blocks, or the person has a mark
    // (a `scan_blocks` row of key_id -1) that sends the scan to their
    // rows; rows from `from_row` on are read by row number, so the scan
    // finds its people from the blocks and the tail instead of walking
    // every row's index entry. `pending` is what the build in progress,
    // the `build`th of the category (only the last begun may finish),
    // sets `from_row` to when it finishes; both are lowered by each batch
    // of rows written after.
    "CREATE TABLE IF NOT EXISTS scan_tails (
         category TEXT PRIMARY KEY, from_row INTEGER NOT NULL,
         pending INTEGER, build INTEGER NOT NULL) WITHOUT ROWID;",
];

pub(super) const KEYS_MIGRATIONS: &[&str] = &[
    // 1: secrets and per-subject wrapped keys.
    "CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
     CREATE TABLE subject_keys (
         ref BLOB PRIMARY KEY, data BLOB NOT NULL, tag BLOB NOT NULL) WITHOUT ROWID;",
    // 2: the log's anti-rollback state: the last checkpoint signed.
    "CREATE TABLE log_state (
         id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL,
         root BLOB NOT NULL, note TEXT NOT NULL, signed INTEGER NOT NULL);",
];

const _: () = assert!(DATA_MIGRATIONS.len() == SCHEMA_VERSION as usize);
// Migration 15's index predicate names the last mail-cover key id: the
// counts that use it (`INDEXED BY records_cover`) format `COVER_MAX`.
const _: () = assert!(crate::key_id::COVER_MAX == 2_147_483_647);
const _: () = assert!(KEYS_MIGRATIONS.len() == KEYS_SCHEMA_VERSION as usize);

/// Options for opening a store file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist and be a postvault store.
    Existing,
    /// Create the file (mode 0600) if it does not exist.
    Create,
}

pub(super) fn open_db(
    path: &Path,
    mode: OpenMode,
    app_id: i32,
    migrations: &[&str],
    what: &str,
) -> Result<Connection, StoreError> {
    let shown = path.display().to_string();
    // A file that cannot be looked at (a directory without search
    // permission) is an IO error, not a missing file.
    let exists = path.try_exists().map_err(|source| StoreError::Io {
        path: shown.clone(),
        source,
    })?;
    if !exists {
        if mode == OpenMode::Existing {
            return Err(StoreError::NotAStore(shown, format!("no {what} file")));
        }
        create_private(path)?;
    }
    // SQLite says only "unable to open database file": ask the OS why.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| StoreError::Io {
            path: shown.clone(),
            source,
        })?;
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
    conn.set_prepared_statement_cache_capacity(super::STATEMENT_CACHE);
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
    conn.execute_batch(SQLITE_PRAGMAS)?;
    // Read back, not assumed: a file system without WAL support, or a
    // build with other defaults, must not run with weaker guarantees.
    sqlite_ops::check_durability(&sqlite_ops::durability_of(&conn)?).map_err(|why| {
        StoreError::NotDurable {
            path: shown.clone(),
            why,
        }
    })?;
    if version < supported {
        let mut conn = conn;
        // A migration that builds an index over every record sorts as many
        // keys (for 16: subject refs, categories and rowids; no sealed
        // payload): in temporary files, which SQLite unlinks as it opens
        // them (without overwriting them: docs/operations.md#upgrading),
        // not in memory, which would grow with the vault. Statement
        // journals spill there too: a future migration that rewrites
        // record rows would put sealed pages in them, and must keep the
        // temporary store in memory or in the vault's own directory.
        conn.execute_batch("PRAGMA temp_store = FILE;")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        // Re-read inside the lock: another process may have migrated.
        let v: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in migrations.iter().enumerate().skip(v as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as u32 + 1)?;
        }
        tx.pragma_update(None, "application_id", app_id)?;
        tx.commit()?;
        conn.execute_batch("PRAGMA temp_store = MEMORY;")?;
        return Ok(conn);
    }
    Ok(conn)
}

/// The settings of every connection to a store: WAL, a durable commit
/// (`synchronous = FULL`), deleted content overwritten, a 32 MiB cache.
pub const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL;
     PRAGMA synchronous = FULL;
     PRAGMA secure_delete = ON;
     PRAGMA foreign_keys = OFF;
     PRAGMA temp_store = MEMORY;
     PRAGMA cache_size = -32768;";

#[cfg(unix)]
pub(crate) fn create_private(path: &Path) -> Result<(), StoreError> {
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
pub(crate) fn create_private(path: &Path) -> Result<(), StoreError> {
    std::fs::File::create(path)
        .map(drop)
        .map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{RightsStore, StatsStore};

    /// A store written at schema 15 (two indexes keyed by subject) opens at
    /// 16 with the one index by person and category, and the scan and a
    /// person's rows find what they found before.
    #[test]
    fn a_version_15_store_opens_with_one_index_by_person() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data.db");
        create_private(&p).unwrap();
        let mut rows = Vec::new();
        {
            let mut c = Connection::open(&p).unwrap();
            c.execute_batch(SQLITE_PRAGMAS).unwrap();
            let tx = c.transaction().unwrap();
            for sql in &DATA_MIGRATIONS[..15] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 15).unwrap();
            tx.pragma_update(None, "application_id", DATA_APP_ID)
                .unwrap();
            let mut ins = tx
                .prepare(
                    "INSERT INTO records (id, subject, category, purpose, source,
                         collected_at, expires_at, key_id, sealed)
                     VALUES (?1, ?2, ?3, 'delivery', 'src', ?4, ?5, 0, ?6)",
                )
                .unwrap();
            // Ids out of insertion order within a person, and two categories
            // interleaved: the scan gives subject order, each person's rows
            // in the order they were written (not by id: no sort).
            for n in 0u8..40 {
                let subject = [n % 5; 16];
                let id = [39 - n; 16];
                let category = if n % 3 == 0 { "address" } else { "scan_event" };
                ins.execute(params![id, subject, category, i64::from(n), 1_000, vec![n]])
                    .unwrap();
                rows.push((subject, id, category));
            }
            drop(ins);
            tx.commit().unwrap();
        }
        let s = SqliteStore::open(&p, OpenMode::Existing).unwrap();
        let c = Connection::open(&p).unwrap();
        let version: u32 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let columns: Vec<String> = c
            .prepare("SELECT name FROM pragma_index_info('records_subject') ORDER BY seqno")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(columns, ["subject", "category"]);
        let category_index: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'records_category'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(category_index, 0);

        // The scan, a row a page, in subject order (a stable sort keeps
        // each person's rows as written), one category only.
        let mut want: Vec<([u8; 16], [u8; 16])> = rows
            .iter()
            .filter(|r| r.2 == "scan_event")
            .map(|r| (r.0, r.1))
            .collect();
        want.sort_by_key(|r| r.0);
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .category_records("scan_event", 0, after.as_ref(), None, 1, None)
                .unwrap();
            let Some(next) = page.next else { break };
            after = Some(next);
            got.extend(page.rows.iter().map(|r| (r.subject, r.id)));
        }
        assert_eq!(got, want);
        // A person's rows: every category.
        let theirs = s.subject_records(&[2; 16]).unwrap();
        assert_eq!(theirs.len(), 8);
    }
}
