//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`, one
//! immediate transaction per batch, versioned schema migrations.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::sqlite_ops;
use crate::{
    AccountingRow, DisclosureKeys, DisclosureRow, EraseIntentFn, EraseLeafFn, EraseOutcome,
    HoldRow, Intent, IntentRow, KeyAction, KeyItem, KeyStore, KeyUse, LeafFn, LogState,
    LogStateSwap, PlanFn, PrincipalRow, ReadLeafFn, ReadScope, RecordRow, RewrapCount, RewrapFn,
    RunRow, RunStep, StepFn, Store, StoreError, SubjectData, SubjectKeys, SubjectRef, SubmitFacts,
    SubmitFn, SubmitQuery, SweepBatch, WriteBatch,
};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 10;

/// The key store's schema version this build writes and reads.
pub const KEYS_SCHEMA_VERSION: u32 = 2;

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
];

const KEYS_MIGRATIONS: &[&str] = &[
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
const _: () = assert!(KEYS_MIGRATIONS.len() == KEYS_SCHEMA_VERSION as usize);

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

/// Runs one statement without arguments from the connection's statement
/// cache (no parse per call: the group-commit path runs these per read).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
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

/// The embedded SQLite data store.
///
/// Targeted reads commit in groups: a read opens (or joins) the group
/// transaction, reads the subject and appends its leaf in it, and returns
/// only once that transaction has committed (`synchronous=FULL`). Readers
/// that arrive while one waits join the same commit, so concurrent reads
/// share one fsync. Any other operation first commits an open group.
pub struct SqliteStore {
    inner: Mutex<Inner>,
    /// Signalled whenever a group commits or fails.
    settled: std::sync::Condvar,
    /// Readers waiting for the lock to join the open group.
    joining: std::sync::atomic::AtomicUsize,
    /// Moves the WAL into the database file off the writers' path.
    _checkpointer: Option<Checkpointer>,
}

/// A thread with its own connection that checkpoints the WAL every 25 ms
/// (PASSIVE: it never blocks a writer or a reader), and again at once when
/// 1,000 pages or more were in it, so commits do not pay for copying pages
/// into the database file and syncing it. The store's own connection still
/// checkpoints past 16,384 pages (64 MiB), should this thread fall behind.
pub struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// WAL pages the store's own connection lets accumulate before it
/// checkpoints inline.
pub const INLINE_CHECKPOINT_PAGES: u32 = 16_384;
/// WAL pages at which the checkpointer thread moves them.
const BACKGROUND_CHECKPOINT_PAGES: i64 = 1_000;

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checkpointer")
    }
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` in the background
    /// (`None` if its connection or thread cannot be made: the writer's
    /// inline checkpoints then do the work). The store starts one itself;
    /// benchmarks start one beside their raw connection to compare alike.
    pub fn start(path: &Path) -> Option<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        conn.busy_timeout(std::time::Duration::from_millis(50))
            .ok()?;
        // The checkpoint writes the database file; FULL syncs it. It reads
        // nothing, so it needs no cache of its own.
        conn.execute_batch(SQLITE_PRAGMAS).ok()?;
        conn.pragma_update(None, "cache_size", -256).ok()?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("pv-checkpoint".into())
            .spawn(move || {
                let tick = std::time::Duration::from_millis(25);
                loop {
                    match stopped.recv_timeout(tick) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    // (busy, frames in the WAL, frames checkpointed); a
                    // PASSIVE call with little to do is cheap.
                    let frames: i64 = conn
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                        .unwrap_or(0);
                    if frames >= BACKGROUND_CHECKPOINT_PAGES {
                        // More came in while copying: go again at once.
                        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    }
                }
            })
            .ok()?;
        Some(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Inner {
    conn: Connection,
    /// A group transaction is open.
    open: bool,
    /// The id of the open (or last) group.
    group: u64,
    /// Every group up to this id has committed or failed.
    settled: u64,
    /// Groups that failed (rolled back), with the cause: their readers get
    /// an error.
    failed: std::collections::HashMap<u64, String>,
    /// Readers whose part of the open group succeeded.
    members: usize,
    /// A reader is committing the open group.
    committing: bool,
}

impl Inner {
    /// Commits the open group, if any; its readers are woken by the caller.
    fn settle(&mut self) {
        if !self.open {
            return;
        }
        self.open = false;
        self.members = 0;
        if let Err(e) = run_cached(&self.conn, "COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.failed.insert(self.group, e.to_string());
        }
        self.settled = self.group;
    }

    /// Rolls the open group back: all its readers fail.
    fn fail(&mut self, why: &str) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.open = false;
            self.members = 0;
            self.failed.insert(self.group, why.to_string());
            self.settled = self.group;
        }
    }

    /// After a reader's part failed: a group no reader succeeded in is
    /// closed at once, so no idle transaction holds the write lock.
    fn close_if_empty(&mut self) {
        if self.open && self.members == 0 && !self.committing {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.open = false;
            self.settled = self.group;
        }
    }
}

/// The connection, with no group transaction open.
pub(crate) struct ConnGuard<'a>(std::sync::MutexGuard<'a, Inner>);

impl std::ops::Deref for ConnGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0.conn
    }
}

impl std::ops::DerefMut for ConnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0.conn
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    pub fn open(path: &Path, mode: OpenMode) -> Result<SqliteStore, StoreError> {
        let conn = open_db(path, mode, DATA_APP_ID, DATA_MIGRATIONS, "data store")?;
        conn.pragma_update(None, "wal_autocheckpoint", INLINE_CHECKPOINT_PAGES)?;
        let checkpointer = Checkpointer::start(path);
        Ok(SqliteStore {
            inner: Mutex::new(Inner {
                conn,
                open: false,
                group: 0,
                settled: 0,
                failed: std::collections::HashMap::new(),
                members: 0,
                committing: false,
            }),
            settled: std::sync::Condvar::new(),
            joining: std::sync::atomic::AtomicUsize::new(0),
            _checkpointer: checkpointer,
        })
    }

    /// The durability settings of the store's connection, read back.
    pub fn durability(&self) -> Result<sqlite_ops::Durability, StoreError> {
        sqlite_ops::durability_of(&self.conn())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half transaction:
        // rusqlite rolls back on drop, and a group is failed. Recover.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn conn(&self) -> ConnGuard<'_> {
        let mut g = self.lock();
        if g.open {
            g.settle();
            self.settled.notify_all();
        }
        ConnGuard(g)
    }

    /// One targeted read in the group commit (see the type's docs).
    fn read_grouped(
        &self,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut ReadLeafFn<'_>,
    ) -> Result<(SubjectData, u64), StoreError> {
        use std::sync::atomic::Ordering;
        self.joining.fetch_add(1, Ordering::SeqCst);
        let mut g = self.lock();
        self.joining.fetch_sub(1, Ordering::SeqCst);
        if g.open && g.conn.is_autocommit() {
            // SQLite ended the transaction under us (an error rolled it back).
            g.fail("the read's transaction was rolled back");
            self.settled.notify_all();
        }
        if !g.open {
            run_cached(&g.conn, "BEGIN IMMEDIATE")?;
            g.open = true;
            g.group += 1;
            g.members = 0;
        }
        let my = g.group;
        // Each reader's part is a savepoint: one that fails leaves the
        // group's other readers untouched.
        if let Err(e) = run_cached(&g.conn, "SAVEPOINT reader") {
            g.fail("the read could not join its transaction");
            self.settled.notify_all();
            return Err(e.into());
        }
        let work = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let data = read_scope(&g.conn, subject, scope)?;
            let idx = append(&g.conn, 1, &mut |idx, _| leaf(&data, idx))?;
            Ok::<_, StoreError>((data, idx))
        }));
        let undo = |g: &mut Inner| {
            if g.conn
                .execute_batch("ROLLBACK TO reader; RELEASE reader")
                .is_err()
            {
                g.fail("a failed read could not be undone alone");
            } else {
                g.close_if_empty();
            }
        };
        let out = match work {
            Ok(Ok(out)) => {
                if let Err(e) = run_cached(&g.conn, "RELEASE reader") {
                    g.fail("the read could not be kept in its transaction");
                    self.settled.notify_all();
                    return Err(e.into());
                }
                g.members += 1;
                out
            }
            Ok(Err(e)) => {
                undo(&mut g);
                self.settled.notify_all();
                return Err(e);
            }
            Err(panic) => {
                undo(&mut g);
                self.settled.notify_all();
                drop(g);
                std::panic::resume_unwind(panic);
            }
        };
        loop {
            if g.settled >= my {
                return match g.failed.get(&my) {
                    Some(why) => Err(StoreError::NotCommitted(why.clone())),
                    None => Ok(out),
                };
            }
            if g.committing {
                g = self.settled.wait(g).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Commit this group; first let readers at the door join it.
            g.committing = true;
            // Bounded: a joiner descheduled at the door joins the next group.
            let mut rounds = 0;
            while self.joining.load(Ordering::SeqCst) > 0 && g.settled < my && rounds < 64 {
                drop(g);
                std::thread::yield_now();
                rounds += 1;
                g = self.lock();
            }
            if g.settled < my {
                g.settle();
            }
            g.committing = false;
            self.settled.notify_all();
        }
    }
}

fn next_index(tx: &Connection) -> Result<u64, StoreError> {
    let n: i64 = tx.query_row("SELECT coalesce(max(idx) + 1, 0) FROM leaves", [], |r| {
        r.get(0)
    })?;
    Ok(n as u64)
}

pub(crate) fn append(
    tx: &Connection,
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

/// What `scope` allows of `subject` (see [`ReadScope`]).
fn read_scope(
    tx: &Connection,
    subject: &SubjectRef,
    scope: ReadScope<'_>,
) -> Result<SubjectData, StoreError> {
    match scope {
        ReadScope::LeafOnly => Ok(SubjectData::default()),
        ReadScope::All => read_subject(tx, subject),
        ReadScope::IfConsented(purpose) => {
            if consent_of(tx, subject, purpose)?.is_some_and(|c| c.granted) {
                read_subject(tx, subject)
            } else {
                Ok(SubjectData::default())
            }
        }
    }
}

/// One look-up on the consents' primary key.
fn consent_of(
    tx: &Connection,
    subject: &SubjectRef,
    purpose: &str,
) -> Result<Option<crate::ConsentRow>, StoreError> {
    let mut s = tx.prepare_cached(
        "SELECT subject, purpose, granted, at FROM consents WHERE subject = ?1 AND purpose = ?2",
    )?;
    Ok(s.query_row(params![subject, purpose], |r| {
        Ok(crate::ConsentRow {
            subject: r.get(0)?,
            purpose: r.get(1)?,
            granted: r.get(2)?,
            at: r.get(3)?,
        })
    })
    .optional()?)
}

fn read_subject(tx: &Connection, subject: &SubjectRef) -> Result<SubjectData, StoreError> {
    let mut data = SubjectData::default();
    {
        let mut s = tx.prepare_cached(
            "SELECT id, subject, category, purpose, source, collected_at,
                        expires_at, key_id, sealed, superseded_by
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
    Ok(data)
}

/// The subject's protective-order records, through the partial index
/// `records_protective`: a seek that costs the same whether the person holds
/// one record or thousands, or none at all.
fn read_protective(tx: &Connection, subject: &SubjectRef) -> Result<SubjectData, StoreError> {
    let mut s = tx.prepare_cached(
        "SELECT id, subject, category, purpose, source, collected_at,
                expires_at, key_id, sealed, superseded_by
         FROM records INDEXED BY records_protective
         WHERE subject = ?1 AND category = 'protective_order' ORDER BY collected_at, id",
    )?;
    let records = s
        .query_map([subject], record_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(SubjectData {
        exists: false,
        records,
        consents: vec![],
    })
}

pub(crate) fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordRow> {
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
        superseded_by: r.get(9)?,
    })
}

impl Store for SqliteStore {
    fn write(&self, batch: &WriteBatch, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(expected) = batch.erasure_gen
            && erasure_gen(&tx)? != expected
        {
            return Err(StoreError::Conflict);
        }
        // A subject whose erasure has begun and not finished takes no new
        // record until it has: the caller finishes it, then seals again.
        let pending: bool = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM erasures)")?
            .query_row([], |r| r.get(0))?;
        if pending && !batch.records.is_empty() {
            let mut q = tx.prepare_cached("SELECT 1 FROM erasures WHERE subject = ?1")?;
            for r in &batch.records {
                if q.exists([r.subject])? {
                    return Err(StoreError::Conflict);
                }
            }
        }
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
                "UPDATE records SET superseded_by = ?3
                 WHERE id = ?1 AND subject = ?2 AND superseded_by IS NULL",
            )?;
            let mut drop_lookups =
                tx.prepare_cached("DELETE FROM lookups WHERE subject = ?1 AND record = ?2")?;
            for (old, subject, new) in &batch.supersede {
                if s.execute(params![old, subject, new])? != 1 {
                    return Err(StoreError::Stale);
                }
                // The corrected value no longer finds the person.
                drop_lookups.execute(params![subject, old])?;
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
        if let Some(step) = &batch.run {
            sqlite_ops::run_step(&tx, step, (batch.leaves > 0).then_some(first), true)?;
        }
        tx.commit()?;
        Ok(first)
    }

    fn read_scoped(
        &self,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut ReadLeafFn<'_>,
    ) -> Result<(SubjectData, u64), StoreError> {
        self.read_grouped(subject, scope, leaf)
    }

    fn consent(
        &self,
        subject: &SubjectRef,
        purpose: &str,
    ) -> Result<Option<crate::ConsentRow>, StoreError> {
        let conn = self.conn();
        consent_of(&conn, subject, purpose)
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
        // A name is taken for good (a revoked one too); a token hash is
        // unique (its index): either refuses the row.
        let n = conn.execute(
            "INSERT INTO principals (name, role, token_hash, created_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![p.name, p.role, p.token_hash, p.created_at, p.revoked_at],
        )?;
        if n == 0 {
            return Err(StoreError::PrincipalExists(p.name.clone()));
        }
        Ok(())
    }

    fn principal(&self, name: &str) -> Result<Option<PrincipalRow>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE name = ?1"
        ))?;
        Ok(s.query_row([name], principal_from_row).optional()?)
    }

    fn principals(&self) -> Result<Vec<PrincipalRow>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY name"
        ))?;
        let rows = s
            .query_map([], principal_from_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn principal_by_token(&self, token_hash: &[u8]) -> Result<Option<PrincipalRow>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals INDEXED BY principals_token
             WHERE token_hash = ?1 AND revoked_at IS NULL"
        ))?;
        Ok(s.query_row([token_hash], principal_from_row).optional()?)
    }

    fn revoke_principal(
        &self,
        name: &str,
        at: i64,
        leaf: &mut LeafFn<'_>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE principals SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, at],
        )?;
        if n != 1 {
            return Err(StoreError::PrincipalNotActive(name.to_string()));
        }
        bump_principals_gen(&tx)?;
        let first = append(&tx, 1, leaf)?;
        tx.commit()?;
        Ok(first)
    }

    fn rotate_principal(
        &self,
        name: &str,
        token_hash: &[u8],
        leaf: &mut LeafFn<'_>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE principals SET token_hash = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, token_hash],
        )?;
        if n != 1 {
            return Err(StoreError::PrincipalNotActive(name.to_string()));
        }
        bump_principals_gen(&tx)?;
        let first = append(&tx, 1, leaf)?;
        tx.commit()?;
        Ok(first)
    }

    fn principals_gen(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        let v: String = conn
            .prepare_cached("SELECT value FROM meta WHERE key = 'principals_gen'")?
            .query_row([], |r| r.get(0))?;
        v.parse()
            .map_err(|_| StoreError::Corrupt("the principals generation is not a number".into()))
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

    fn checkpoint_note(&self, size: u64) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT note FROM log_checkpoints WHERE size = ?1",
                [size as i64],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn put_cosignatures(&self, size: u64, lines: &[(String, String)]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut s = tx.prepare_cached(
                "INSERT INTO log_cosignatures (size, cosigner, line) VALUES (?1, ?2, ?3)
                 ON CONFLICT (size, cosigner) DO UPDATE SET line = excluded.line",
            )?;
            for (cosigner, line) in lines {
                s.execute(params![size as i64, cosigner, line])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(
            "SELECT cosigner, line FROM log_cosignatures WHERE size = ?1 ORDER BY cosigner",
        )?;
        Ok(s.query_map([size as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?)
    }

    fn latest_cosigned(
        &self,
        cosigners: &[String],
        quorum: usize,
    ) -> Result<Option<u64>, StoreError> {
        if cosigners.is_empty() {
            return Ok(None);
        }
        let conn = self.conn();
        let marks = vec!["?"; cosigners.len()].join(", ");
        let sql = format!(
            "SELECT size FROM log_cosignatures WHERE cosigner IN ({marks})
             GROUP BY size HAVING count(*) >= ? ORDER BY size DESC LIMIT 1"
        );
        let mut args: Vec<&dyn rusqlite::ToSql> = cosigners
            .iter()
            .map(|c| c as &dyn rusqlite::ToSql)
            .collect();
        let q = quorum as i64;
        args.push(&q);
        Ok(conn
            .query_row(&sql, args.as_slice(), |r| r.get::<_, i64>(0))
            .optional()?
            .map(|n| n as u64))
    }

    fn cosigned_by(&self, cosigner: &str) -> Result<Option<u64>, StoreError> {
        let conn = self.conn();
        let n: Option<i64> = conn.query_row(
            "SELECT max(size) FROM log_cosignatures WHERE cosigner = ?1",
            [cosigner],
            |r| r.get(0),
        )?;
        Ok(n.map(|n| n as u64))
    }

    fn record_count(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        let n: i64 = conn.query_row("SELECT count(*) FROM records", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn submit_disclosure(
        &self,
        q: &SubmitQuery,
        decide: &mut SubmitFn<'_>,
    ) -> Result<(DisclosureRow, u64), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let count = |sql: &str, key: &dyn rusqlite::ToSql, since: i64| -> Result<u32, StoreError> {
            let n: i64 = tx.query_row(sql, params![key, since], |r| r.get(0))?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        };
        // People, not requests: each request counts the subjects it names
        // (16 bytes each), and one if it names nobody.
        let by_requester = "SELECT coalesce(sum(max(length(subjects) / 16, 1)), 0) FROM disclosures
             WHERE requester = ?1 AND submitted_at >= ?2";
        let mut facts = SubmitFacts {
            requester_people_24h: count(by_requester, &q.requester, q.since_24h)?,
            requester_people_30d: count(by_requester, &q.requester, q.since_30d)?,
            ..SubmitFacts::default()
        };
        if let Some(case) = &q.case_key {
            facts.case_people_30d = count(
                "SELECT coalesce(sum(max(length(subjects) / 16, 1)), 0) FROM disclosures
                 WHERE case_key = ?1 AND submitted_at >= ?2",
                case,
                q.since_30d,
            )?;
        }
        if let Some(key) = &q.instrument_key {
            facts.used_before = tx
                .query_row(
                    "SELECT count(*) FROM disclosures WHERE instrument_key = ?1 AND status <> 'refused'",
                    [key],
                    |r| r.get::<_, i64>(0),
                )?
                > 0;
        }
        let seq: i64 = tx.query_row(
            "SELECT coalesce(max(seq), 0) + 1 FROM disclosures",
            [],
            |r| r.get(0),
        )?;
        facts.seq = seq as u64;
        let mut data = Vec::with_capacity(q.subjects.len());
        for subject in &q.subjects {
            data.push(read_protective(&tx, subject)?);
        }
        let idx = next_index(&tx)?;
        let (mut row, leaf) = decide(&facts, &data, idx);
        row.seq = facts.seq;
        insert_disclosure(&tx, &row)?;
        append(&tx, 1, &mut |_, _| leaf.clone())?;
        tx.commit()?;
        Ok((row, idx))
    }

    fn disclosure_step(
        &self,
        id: &str,
        plan: &mut PlanFn<'_>,
        step: &mut StepFn<'_>,
    ) -> Result<(Vec<SubjectData>, u64), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = load_disclosure(&tx, id)?;
        let mut data = Vec::new();
        for subject in plan(row.as_ref()) {
            data.push(read_subject(&tx, &subject)?);
        }
        let first = next_index(&tx)?;
        let st = step(row.as_ref(), &data, first);
        if st.leaves.is_empty() {
            return Err(StoreError::Corrupt(
                "a disclosure step must be accounted for by a leaf".into(),
            ));
        }
        if let Some(new) = &st.row {
            if row.is_none() || new.id != id {
                return Err(StoreError::Corrupt(
                    "a disclosure step may only change the request it was given".into(),
                ));
            }
            update_disclosure(&tx, new)?;
        }
        let leaves = st.leaves;
        append(&tx, leaves.len(), &mut |_, i| {
            leaves.get(i).cloned().unwrap_or_default()
        })?;
        if let Some((at, intent)) = &st.intent {
            if *at >= leaves.len() {
                return Err(StoreError::Corrupt(
                    "a disclosure step's intent must point at one of its leaves".into(),
                ));
            }
            sqlite_ops::insert_intent(&tx, first + *at as u64, intent)?;
        }
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO accounting (disclosure, subject, at, leaf, records, categories)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (i, a) in st.accounting.iter().enumerate() {
                let leaf = st.accounting_leaf.get(i).copied().unwrap_or(0);
                ins.execute(params![
                    a.disclosure,
                    a.subject,
                    a.at,
                    (first + leaf as u64) as i64,
                    a.records as i64,
                    a.categories.join(",")
                ])?;
            }
        }
        tx.commit()?;
        Ok((data, first))
    }

    fn set_disclosure_keys(&self, keys: &[DisclosureKeys]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut s = tx.prepare_cached(
                "UPDATE disclosures SET instrument_key = ?2, case_key = ?3 WHERE id = ?1",
            )?;
            for k in keys {
                s.execute(params![
                    k.id,
                    k.instrument_key.as_ref().map(|k| &k[..]),
                    k.case_key.as_ref().map(|k| &k[..]),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn disclosure(&self, id: &str) -> Result<Option<DisclosureRow>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        load_disclosure(&tx, id)
    }

    fn disclosures(&self) -> Result<Vec<DisclosureRow>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(&format!(
            "SELECT {DISCLOSURE_COLUMNS} FROM disclosures ORDER BY seq"
        ))?;
        let rows = s
            .query_map([], disclosure_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().collect()
    }

    fn accounting(&self, subject: &SubjectRef) -> Result<Vec<AccountingRow>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(
            "SELECT disclosure, subject, at, leaf, records, categories FROM accounting
             WHERE subject = ?1 ORDER BY at, leaf",
        )?;
        let rows = s
            .query_map([subject], |r| {
                Ok(AccountingRow {
                    disclosure: r.get(0)?,
                    subject: r.get(1)?,
                    at: r.get(2)?,
                    leaf: r.get::<_, i64>(3)? as u64,
                    records: r.get::<_, i64>(4)? as u64,
                    categories: split_list(&r.get::<_, String>(5)?),
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn subject_records(&self, subject: &SubjectRef) -> Result<Vec<RecordRow>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        Ok(read_subject(&tx, subject)?.records)
    }

    fn rekey(&self, records: &[RecordRow]) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n = 0;
        {
            let mut s = tx.prepare_cached(
                "UPDATE records SET key_id = ?2, sealed = ?3 WHERE id = ?1 AND subject = ?4",
            )?;
            for r in records {
                n += s.execute(params![r.id, r.key_id, r.sealed, r.subject])? as u64;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    fn sweep_expired(
        &self,
        now: i64,
        limit: usize,
        intent: Option<u64>,
    ) -> Result<SweepBatch, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = SweepBatch::default();
        {
            let mut q = tx.prepare_cached(
                "SELECT rowid, id, subject, category FROM records
                 WHERE expires_at <= ?1 AND subject NOT IN
                     (SELECT subject FROM holds WHERE released_at IS NULL AND until_at > ?1)
                 ORDER BY expires_at LIMIT ?2",
            )?;
            let rows = q
                .query_map(params![now, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, [u8; 16]>(1)?,
                        r.get::<_, SubjectRef>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut del = tx.prepare_cached("DELETE FROM records WHERE rowid = ?1")?;
            let mut del_lookup =
                tx.prepare_cached("DELETE FROM lookups WHERE subject = ?1 AND record = ?2")?;
            for (rowid, id, subject, category) in rows {
                del.execute([rowid])?;
                del_lookup.execute(params![subject, id])?;
                out.deleted += 1;
                *out.by_category.entry(category).or_default() += 1;
            }
        }
        if let Some(id) = intent
            && out.deleted > 0
        {
            sqlite_ops::add_progress(&tx, id, out.deleted)?;
        }
        tx.commit()?;
        Ok(out)
    }

    fn count_expired(&self, now: i64) -> Result<u64, StoreError> {
        sqlite_ops::count_expired(&self.conn(), now)
    }

    fn erase(
        &self,
        subjects: &[SubjectRef],
        now: i64,
        leaf: &mut EraseLeafFn<'_>,
        intent: &mut EraseIntentFn<'_>,
    ) -> Result<EraseOutcome, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = EraseOutcome::default();
        let on_hold: std::collections::HashSet<SubjectRef> = {
            let mut q = tx.prepare_cached(
                "SELECT subject FROM holds WHERE released_at IS NULL AND until_at > ?1",
            )?;
            q.query_map([now], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let held: Vec<bool> = subjects.iter().map(|s| on_hold.contains(s)).collect();
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS erase_now (subject BLOB PRIMARY KEY) WITHOUT ROWID;
             DELETE FROM temp.erase_now;",
        )?;
        {
            let mut pending = tx.prepare_cached(
                "INSERT INTO erasures (subject, at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?;
            let mut now_set = tx.prepare_cached(
                "INSERT INTO temp.erase_now (subject) VALUES (?1) ON CONFLICT DO NOTHING",
            )?;
            for (s, &h) in subjects.iter().zip(&held) {
                if h {
                    out.held.push(*s);
                } else {
                    pending.execute(params![s, now])?;
                    now_set.execute([s])?;
                    out.erased.push(*s);
                }
            }
        }
        // Set-based, this call's subjects only.
        out.records = delete_rows_of(&tx, "temp.erase_now")?;
        tx.execute_batch("DELETE FROM temp.erase_now;")?;
        out.first_leaf = append(&tx, subjects.len(), &mut |idx, i| {
            leaf(idx, &subjects[i], held[i])
        })?;
        if !out.erased.is_empty() {
            bump_erasure_gen(&tx)?;
        }
        let idx = next_index(&tx)?;
        if let Some((row, body)) = intent(idx, &out) {
            append(&tx, 1, &mut |_, _| body.clone())?;
            sqlite_ops::insert_intent(&tx, idx, &row)?;
        }
        tx.commit()?;
        Ok(out)
    }

    fn pending_erasures(&self) -> Result<Vec<SubjectRef>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached("SELECT subject FROM erasures ORDER BY subject")?;
        Ok(s.query_map([], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?)
    }

    fn finish_erasure(&self, subjects: &[SubjectRef]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        delete_rows_of(&tx, "erasures")?;
        {
            let mut done = tx.prepare_cached("DELETE FROM erasures WHERE subject = ?1")?;
            for s in subjects {
                done.execute([s])?;
            }
        }
        bump_erasure_gen(&tx)?;
        tx.commit()?;
        Ok(())
    }

    fn erasure_gen(&self) -> Result<u64, StoreError> {
        // Read without closing an open read group: a group never changes it.
        let g = self.lock();
        erasure_gen(&g.conn)
    }

    fn put_holds(&self, holds: &[HoldRow], leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut s = tx.prepare_cached(
                "INSERT INTO holds (id, subject, disclosure, placed_by, placed_at, until_at,
                     notice_after, released_at, released_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for h in holds {
                s.execute(params![
                    h.id,
                    h.subject,
                    h.disclosure,
                    h.placed_by,
                    h.placed_at,
                    h.until,
                    h.notice_after,
                    h.released_at,
                    h.released_by
                ])?;
            }
        }
        let first = append(&tx, holds.len(), leaf)?;
        tx.commit()?;
        Ok(first)
    }

    fn holds(&self, subject: Option<&SubjectRef>) -> Result<Vec<HoldRow>, StoreError> {
        let conn = self.conn();
        let sql = "SELECT id, subject, disclosure, placed_by, placed_at, until_at,
                          notice_after, released_at, released_by FROM holds";
        match subject {
            Some(s) => {
                let mut q = conn
                    .prepare_cached(&format!("{sql} WHERE subject = ?1 ORDER BY placed_at, id"))?;
                Ok(q.query_map([s], hold_from_row)?
                    .collect::<Result<Vec<_>, _>>()?)
            }
            None => {
                let mut q =
                    conn.prepare_cached(&format!("{sql} ORDER BY placed_at, id, subject"))?;
                Ok(q.query_map([], hold_from_row)?
                    .collect::<Result<Vec<_>, _>>()?)
            }
        }
    }

    fn release_hold(
        &self,
        id: &str,
        by: &str,
        at: i64,
        leaf: &mut dyn FnMut(u64, &HoldRow) -> Vec<u8>,
    ) -> Result<Vec<HoldRow>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut rows = {
            let mut q = tx.prepare_cached(
                "SELECT id, subject, disclosure, placed_by, placed_at, until_at,
                        notice_after, released_at, released_by
                 FROM holds WHERE id = ?1 AND released_at IS NULL ORDER BY subject",
            )?;
            q.query_map([id], hold_from_row)?
                .collect::<Result<Vec<_>, _>>()?
        };
        tx.execute(
            "UPDATE holds SET released_at = ?2, released_by = ?3
             WHERE id = ?1 AND released_at IS NULL",
            params![id, at, by],
        )?;
        for r in &mut rows {
            r.released_at = Some(at);
            r.released_by = Some(by.to_string());
        }
        append(&tx, rows.len(), &mut |idx, i| leaf(idx, &rows[i]))?;
        tx.commit()?;
        Ok(rows)
    }

    fn run(&self, run: &[u8; 16]) -> Result<Option<RunRow>, StoreError> {
        sqlite_ops::run(&self.conn(), run)
    }

    fn finish_run(&self, step: &RunStep) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        sqlite_ops::run_step(&tx, step, None, false)?;
        tx.commit()?;
        Ok(())
    }

    fn put_intent(&self, intent: &Intent, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let idx = append(&tx, 1, leaf)?;
        sqlite_ops::insert_intent(&tx, idx, intent)?;
        tx.commit()?;
        Ok(idx)
    }

    fn intents(&self) -> Result<Vec<IntentRow>, StoreError> {
        sqlite_ops::intents(&self.conn())
    }

    fn finish_intent(
        &self,
        id: u64,
        leaf: &mut dyn FnMut(u64, &IntentRow) -> Vec<u8>,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(row) = sqlite_ops::take_intent(&tx, id)? else {
            return Ok(None);
        };
        let idx = append(&tx, 1, &mut |idx, _| leaf(idx, &row))?;
        tx.commit()?;
        Ok(Some(idx))
    }

    fn key_usage(&self) -> Result<Vec<KeyUse>, StoreError> {
        sqlite_ops::key_usage(&self.conn())
    }

    fn record_subjects(
        &self,
        after: Option<&SubjectRef>,
        limit: usize,
    ) -> Result<Vec<(SubjectRef, u64)>, StoreError> {
        sqlite_ops::record_subjects(&self.conn(), after, limit)
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

const DISCLOSURE_COLUMNS: &str = "id, seq, requester, kind, ground, instrument_key, case_key,
    extension_no, subjects, portions, status, reasons, alerts, submitted_at, data_from, data_until,
    valid_until, notice_after, decided_by, decided_at, fetches, last_fetched_at, ended_at,
    end_reason, notified_at, retain_until, sealed, office_notes, extends";

fn erasure_gen(tx: &Connection) -> Result<u64, StoreError> {
    let v: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'erasure_gen'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    v.unwrap_or_else(|| "0".into())
        .parse()
        .map_err(|_| StoreError::Corrupt("erasure_gen is not a number".into()))
}

fn bump_erasure_gen(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let next = erasure_gen(tx)? + 1;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('erasure_gen', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [next.to_string()],
    )?;
    Ok(())
}

/// Deletes every record, lookup and consent of every subject listed in
/// `table` (`erasures`: every one pending; `temp.erase_now`: one call's);
/// returns the records deleted.
fn delete_rows_of(tx: &rusqlite::Transaction<'_>, table: &str) -> Result<u64, StoreError> {
    let n = tx
        .prepare_cached(&format!(
            "DELETE FROM records WHERE subject IN (SELECT subject FROM {table})"
        ))?
        .execute([])?;
    for t in ["lookups", "consents"] {
        tx.prepare_cached(&format!(
            "DELETE FROM {t} WHERE subject IN (SELECT subject FROM {table})"
        ))?
        .execute([])?;
    }
    Ok(n as u64)
}

/// Moves every committed page out of the WAL into the database file (where
/// `secure_delete` has zeroed the freed bytes) and truncates the WAL, so a
/// destroyed key survives in neither. A reader in another connection can
/// hold the checkpoint back: retry for up to two seconds, then fail (the
/// deletion itself is committed; the next destruction checkpoints again).
fn overwrite_wal(conn: &Connection) -> Result<(), StoreError> {
    for _ in 0..100 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(StoreError::Busy)
}

fn hold_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HoldRow> {
    Ok(HoldRow {
        id: r.get(0)?,
        subject: r.get(1)?,
        disclosure: r.get(2)?,
        placed_by: r.get(3)?,
        placed_at: r.get(4)?,
        until: r.get(5)?,
        notice_after: r.get(6)?,
        released_at: r.get(7)?,
        released_by: r.get(8)?,
    })
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn join_subjects(subjects: &[SubjectRef]) -> Vec<u8> {
    subjects.iter().flatten().copied().collect()
}

fn split_subjects(b: &[u8]) -> Result<Vec<SubjectRef>, StoreError> {
    if !b.len().is_multiple_of(16) {
        return Err(StoreError::Corrupt(
            "a disclosure's subject list is not a list of refs".into(),
        ));
    }
    Ok(b.chunks_exact(16)
        .map(|c| {
            let mut r = [0u8; 16];
            r.copy_from_slice(c);
            r
        })
        .collect())
}

fn token(v: Option<Vec<u8>>) -> Option<[u8; 16]> {
    v.and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
}

/// A row, or the reason it is not one (kept apart from rusqlite's errors so
/// a malformed subject list reads as corruption).
fn disclosure_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<DisclosureRow, StoreError>> {
    let subjects: Vec<u8> = r.get(8)?;
    let subjects = match split_subjects(&subjects) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(DisclosureRow {
        id: r.get(0)?,
        seq: r.get::<_, i64>(1)? as u64,
        requester: r.get(2)?,
        kind: r.get(3)?,
        ground: r.get(4)?,
        instrument_key: token(r.get(5)?),
        case_key: token(r.get(6)?),
        extension_no: r.get(7)?,
        subjects,
        portions: split_list(&r.get::<_, String>(9)?),
        status: r.get(10)?,
        reasons: split_list(&r.get::<_, String>(11)?),
        alerts: split_list(&r.get::<_, String>(12)?),
        submitted_at: r.get(13)?,
        data_from: r.get(14)?,
        data_until: r.get(15)?,
        valid_until: r.get(16)?,
        notice_after: r.get(17)?,
        decided_by: r.get(18)?,
        decided_at: r.get(19)?,
        fetches: r.get(20)?,
        last_fetched_at: r.get(21)?,
        ended_at: r.get(22)?,
        end_reason: r.get(23)?,
        notified_at: r.get(24)?,
        retain_until: r.get(25)?,
        sealed: r.get(26)?,
        office_notes: split_list(&r.get::<_, String>(27)?),
        extends: r.get(28)?,
    }))
}

fn load_disclosure(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
) -> Result<Option<DisclosureRow>, StoreError> {
    let mut s = tx.prepare_cached(&format!(
        "SELECT {DISCLOSURE_COLUMNS} FROM disclosures WHERE id = ?1"
    ))?;
    s.query_row([id], disclosure_from_row)
        .optional()?
        .transpose()
}

fn insert_disclosure(tx: &rusqlite::Transaction<'_>, d: &DisclosureRow) -> Result<(), StoreError> {
    let mut s = tx.prepare_cached(&format!(
        "INSERT INTO disclosures ({DISCLOSURE_COLUMNS}) VALUES
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
          ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)"
    ))?;
    s.execute(params![
        d.id,
        d.seq as i64,
        d.requester,
        d.kind,
        d.ground,
        d.instrument_key.as_ref().map(|k| &k[..]),
        d.case_key.as_ref().map(|k| &k[..]),
        d.extension_no,
        join_subjects(&d.subjects),
        d.portions.join(","),
        d.status,
        d.reasons.join(","),
        d.alerts.join(","),
        d.submitted_at,
        d.data_from,
        d.data_until,
        d.valid_until,
        d.notice_after,
        d.decided_by,
        d.decided_at,
        d.fetches,
        d.last_fetched_at,
        d.ended_at,
        d.end_reason,
        d.notified_at,
        d.retain_until,
        d.sealed,
        d.office_notes.join(","),
        d.extends,
    ])?;
    Ok(())
}

/// Writes the state that a request's steps may change; what was submitted
/// (requester, kind, instrument, subjects asked for, ...) stays as it was.
fn update_disclosure(tx: &rusqlite::Transaction<'_>, d: &DisclosureRow) -> Result<(), StoreError> {
    let mut s = tx.prepare_cached(
        "UPDATE disclosures SET portions = ?2, status = ?3, reasons = ?4, alerts = ?5,
             data_from = ?6, data_until = ?7, valid_until = ?8, notice_after = ?9,
             decided_by = ?10, decided_at = ?11, fetches = ?12, last_fetched_at = ?13,
             ended_at = ?14, end_reason = ?15, notified_at = ?16, retain_until = ?17,
             office_notes = ?18
         WHERE id = ?1",
    )?;
    s.execute(params![
        d.id,
        d.portions.join(","),
        d.status,
        d.reasons.join(","),
        d.alerts.join(","),
        d.data_from,
        d.data_until,
        d.valid_until,
        d.notice_after,
        d.decided_by,
        d.decided_at,
        d.fetches,
        d.last_fetched_at,
        d.ended_at,
        d.end_reason,
        d.notified_at,
        d.retain_until,
        d.office_notes.join(","),
    ])?;
    Ok(())
}

const PRINCIPAL_COLUMNS: &str = "name, role, token_hash, created_at, revoked_at";

fn principal_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PrincipalRow> {
    Ok(PrincipalRow {
        name: r.get(0)?,
        role: r.get(1)?,
        token_hash: r.get(2)?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

/// Moves the principals generation, in the caller's transaction.
fn bump_principals_gen(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'principals_gen'",
        [],
    )?;
    Ok(())
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

    /// The durability settings of the key store's connection, read back.
    pub fn durability(&self) -> Result<sqlite_ops::Durability, StoreError> {
        sqlite_ops::durability_of(&self.conn())
    }

    /// Runs `delete` for each key in one transaction, then moves the
    /// deletion out of the WAL (`overwrite_wal`); returns the rows deleted.
    fn destroy<K: rusqlite::ToSql>(&self, delete: &str, keys: &[K]) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n = 0;
        {
            let mut s = tx.prepare_cached(delete)?;
            for k in keys {
                n += s.execute([k])? as u64;
            }
        }
        tx.commit()?;
        overwrite_wal(&conn)?;
        Ok(n)
    }
}

fn log_state_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<LogState, StoreError>> {
    let root: Vec<u8> = r.get(1)?;
    let Ok(root) = <[u8; 32]>::try_from(root) else {
        return Ok(Err(StoreError::Corrupt(
            "the log state's root is not 32 bytes".into(),
        )));
    };
    Ok(Ok(LogState {
        size: r.get::<_, i64>(0)? as u64,
        root,
        note: r.get(2)?,
        signed: r.get::<_, i64>(3)? as u64,
    }))
}

fn read_log_state(conn: &Connection) -> Result<Option<LogState>, StoreError> {
    conn.query_row(
        "SELECT size, root, note, signed FROM log_state WHERE id = 1",
        [],
        log_state_row,
    )
    .optional()?
    .transpose()
}

impl KeyStore for SqliteKeyStore {
    fn log_state(&self) -> Result<Option<LogState>, StoreError> {
        read_log_state(&self.conn())
    }

    fn swap_log_state(
        &self,
        expected: Option<&LogState>,
        new: &LogState,
    ) -> Result<LogStateSwap, StoreError> {
        let mut conn = self.conn();
        // Immediate: the write lock on the key store file is taken before
        // the read, so no other process can swap in between.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = read_log_state(&tx)?;
        if found.as_ref() != expected {
            return Ok(LogStateSwap::Changed(found));
        }
        tx.execute(
            "INSERT INTO log_state (id, size, root, note, signed) VALUES (1, ?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET size = excluded.size, root = excluded.root,
                 note = excluded.note, signed = excluded.signed",
            params![new.size as i64, &new.root[..], new.note, new.signed as i64],
        )?;
        tx.commit()?;
        Ok(LogStateSwap::Swapped)
    }

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

    fn subject_keys_many(
        &self,
        subjects: &[SubjectRef],
    ) -> Result<Vec<Option<SubjectKeys>>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut out = Vec::with_capacity(subjects.len());
        {
            let mut s =
                tx.prepare_cached("SELECT ref, data, tag FROM subject_keys WHERE ref = ?1")?;
            for subject in subjects {
                out.push(
                    s.query_row([subject], |r| {
                        Ok(SubjectKeys {
                            subject: r.get(0)?,
                            data: r.get(1)?,
                            tag: r.get(2)?,
                        })
                    })
                    .optional()?,
                );
            }
        }
        tx.commit()?;
        Ok(out)
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

    fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        let conn = self.conn();
        // secure_delete overwrites the freed bytes in the database file; the
        // checkpoint moves the deletion out of the WAL and truncates it, so
        // no older copy of the page stays behind there either.
        let n = conn.execute("DELETE FROM secrets WHERE name = ?1", [name])?;
        overwrite_wal(&conn)?;
        Ok(n > 0)
    }

    fn put_secret_or_get(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![name, value],
        )?;
        Ok(
            conn.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| {
                r.get(0)
            })?,
        )
    }

    fn secret_names(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(
            "SELECT name FROM secrets WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
        )?;
        Ok(s.query_map([prefix], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?)
    }

    fn delete_secrets(&self, names: &[String]) -> Result<u64, StoreError> {
        self.destroy("DELETE FROM secrets WHERE name = ?1", names)
    }

    fn delete_subject_keys(&self, subjects: &[SubjectRef]) -> Result<u64, StoreError> {
        self.destroy("DELETE FROM subject_keys WHERE ref = ?1", subjects)
    }

    fn subject_refs(
        &self,
        after: Option<&SubjectRef>,
        limit: usize,
    ) -> Result<Vec<SubjectRef>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached("SELECT ref FROM subject_keys WHERE ref > ?1 ORDER BY ref LIMIT ?2")?;
        let from: &[u8] = after.map_or(&[], |a| &a[..]);
        Ok(s.query_map(params![from, limit as i64], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?)
    }

    fn rewrap(
        &self,
        f: &mut RewrapFn<'_>,
        insert: &[(String, Vec<u8>)],
    ) -> Result<RewrapCount, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let mut n = RewrapCount::default();
        // Page through by ref: the whole store need not fit in memory.
        let mut after: Vec<u8> = Vec::new();
        loop {
            let page: Vec<SubjectKeys> = tx
                .prepare_cached(
                    "SELECT ref, data, tag FROM subject_keys WHERE ref > ?1 ORDER BY ref LIMIT 4096",
                )?
                .query_map([&after], |r| {
                    Ok(SubjectKeys {
                        subject: r.get(0)?,
                        data: r.get(1)?,
                        tag: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let Some(last) = page.last() else { break };
            after = last.subject.to_vec();
            let mut up =
                tx.prepare_cached("UPDATE subject_keys SET data = ?2, tag = ?3 WHERE ref = ?1")?;
            let mut del = tx.prepare_cached("DELETE FROM subject_keys WHERE ref = ?1")?;
            for k in &page {
                match f(KeyItem::Subject(k))? {
                    KeyAction::Keep => {}
                    KeyAction::Subject(d, t) => {
                        up.execute(params![k.subject, d, t])?;
                        n.subjects += 1;
                    }
                    KeyAction::Delete => {
                        del.execute([k.subject])?;
                        n.deleted += 1;
                    }
                    KeyAction::Secret(_) => {
                        return Err(StoreError::Corrupt(
                            "a subject's keys cannot become a secret".into(),
                        ));
                    }
                }
            }
        }
        let secrets: Vec<(String, Vec<u8>)> = tx
            .prepare_cached("SELECT name, value FROM secrets ORDER BY name")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (name, value) in &secrets {
            match f(KeyItem::Secret(name, value))? {
                KeyAction::Keep => {}
                KeyAction::Secret(v) => {
                    tx.execute(
                        "UPDATE secrets SET value = ?2 WHERE name = ?1",
                        params![name, v],
                    )?;
                    n.secrets += 1;
                }
                KeyAction::Delete => {
                    tx.execute("DELETE FROM secrets WHERE name = ?1", [name])?;
                    n.deleted += 1;
                }
                KeyAction::Subject(..) => {
                    return Err(StoreError::Corrupt(
                        "a secret cannot become a subject's keys".into(),
                    ));
                }
            }
        }
        for (name, value) in insert {
            tx.execute(
                "INSERT INTO secrets (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )?;
            n.inserted += 1;
        }
        tx.commit()?;
        // The old wrapped values are overwritten in the file (secure_delete)
        // and moved out of the WAL.
        overwrite_wal(&conn)?;
        Ok(n)
    }
}
