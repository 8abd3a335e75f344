//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`, one
//! immediate transaction per batch, versioned schema migrations.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::group::{GroupCommit, GroupState};
use crate::sql::{DISCLOSURE_COLUMNS, PRINCIPAL_COLUMNS, scan_until, split_list};
use crate::sqlite_ops;
use crate::{
    AccountingRow, DisclosureKeys, DisclosureRow, EraseIntentFn, EraseLeafFn, EraseOutcome,
    ErasureFinish, Held, HoldRow, Intent, IntentRow, KeyAction, KeyItem, KeyStore, KeyUse, LeafFn,
    LeafIndex, LeafIndexRow, LeafTokens, LogState, LogStateSwap, PROTECTIVE_INDEX_CATEGORY, PlanFn,
    PrincipalChange, PrincipalRow, PurgeBatch, ReadLeafFn, ReadScope, RecordRow, RefilePlan,
    Refiled, RewrapCount, RewrapFn, RunRow, RunStep, StepFn, StoreError, SubjectData, SubjectKeys,
    SubjectRef, SubmitFacts, SubmitFn, SubmitQuery, SweepBatch, WriteBatch,
};
use crate::{
    LedgerStore, LogStore, OpsStore, PrincipalStore, RecordStore, RightsStore, StatsStore,
};

mod keys;
mod ledger;
mod log;
mod ops;
mod principals;
mod records;
mod rights;
mod schema;
mod stats;

pub use keys::SqliteKeyStore;
pub(crate) use schema::create_private;
use schema::{DATA_APP_ID, DATA_MIGRATIONS, KEYS_APP_ID, KEYS_MIGRATIONS, open_db};
pub use schema::{KEYS_SCHEMA_VERSION, OpenMode, SCHEMA_VERSION, SQLITE_PRAGMAS};

/// Prepared statements each connection keeps (rusqlite's default is 16).
/// The store's connection runs some 120 distinct statements, a dozen or
/// more in one erasure, correction or report: with 16 they pushed each
/// other out, and preparing them again was 10% of the CPU of erasures
/// over HTTP and 3-4% of corrections and reports (BENCHMARKS.md).
pub(super) const STATEMENT_CACHE: usize = 256;

/// Runs one statement without arguments from the connection's statement
/// cache (no parse per call: the group-commit path runs these per read).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The embedded SQLite data store.
///
/// Targeted reads and small written batches (at most 64 rows: one-line
/// collections, corrections, consents) commit in groups: each opens (or joins) the group transaction, does its
/// part in a savepoint of it (a read: the subject read and its leaf; a
/// write: its rows and leaves), and returns only once that transaction has
/// committed (`synchronous=FULL`). Those that arrive while one waits join
/// the same commit, so concurrent reads and small writes share one fsync;
/// a part that fails is rolled back alone. Any other operation first
/// commits an open group, then has the connection to itself; the group's
/// members return meanwhile, and readers that arrive wait for it. A long
/// operation that runs again and again (a bulk batch, a sweep's or a
/// purge's) first lets the readers waiting to join go (up to 2 ms), so a
/// bulk load's batches, back to back, do not keep a read waiting batch
/// after batch.
pub struct SqliteStore {
    group: GroupCommit<Inner>,
    /// Moves the WAL into the database file off the writers' path.
    _checkpointer: Option<Checkpointer>,
    /// The file, for the scanners' connections.
    path: std::path::PathBuf,
    /// Connections that only read, one per statistics scan running at once
    /// (kept for the next), so scans of disjoint subject ranges neither
    /// wait on the store's own connection nor on each other.
    scanners: Mutex<Vec<Connection>>,
    /// Connections that only read, not mapped, for what is read as
    /// committed beside the open group: the small reads every targeted read
    /// makes before joining its group (the erasure generation), the log's
    /// leaves, hashes, checkpoints and cosignatures, a person's holds. A
    /// mapped connection remaps the growing file at each transaction.
    lookers: Mutex<Vec<Connection>>,
}

/// Scanners kept between scans.
const SCANNERS_KEPT: usize = 8;

/// A scanner reads only, and maps the file (up to 1 TiB, the cap the build
/// sets in `.cargo/config.toml`; SQLite maps no more than the file holds):
/// a scan's rows are fetched from the index's order, all over the table,
/// and a mapped page costs no system call and no copy. A mapped read that
/// fails (a disk error) ends the process with `SIGBUS` instead of returning
/// an error: loud, never a wrong answer.
const SCANNER_PRAGMAS: &str = "PRAGMA query_only = ON; PRAGMA mmap_size = 1099511627776;";

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
    /// The connection; `None` while lent to an operation that runs alone
    /// ([`SqliteStore::conn`]), when no group is open.
    conn: Option<Connection>,
    /// The thread the connection is lent to.
    lent_to: Option<std::thread::ThreadId>,
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
    /// The group a member is committing (the open one, or one another
    /// operation committed meanwhile).
    committing: Option<u64>,
}

impl GroupState for Inner {
    fn settled(&self) -> u64 {
        self.settled
    }
    fn failure(&self, group: u64) -> Option<&str> {
        self.failed.get(&group).map(String::as_str)
    }
    fn committing(&mut self) -> &mut Option<u64> {
        &mut self.committing
    }
    fn available(&self) -> bool {
        self.conn.is_some()
    }
    fn lent_here(&self) -> bool {
        self.lent_to == Some(std::thread::current().id())
    }
}

impl Inner {
    /// The connection, for a member of the group (which joins only while
    /// it is here).
    fn conn(&self) -> Result<&Connection, StoreError> {
        self.conn
            .as_ref()
            .ok_or_else(|| StoreError::NotCommitted("the store's connection was lent out".into()))
    }

    /// Runs `sql` (ending the open transaction) on the connection.
    fn end(&self, sql: &str) -> Result<(), String> {
        match &self.conn {
            Some(c) => run_cached(c, sql).map_err(|e| e.to_string()),
            None => Err("the store's connection was lent out".into()),
        }
    }

    /// Commits the open group, if any; its readers are woken by the caller.
    fn settle(&mut self) {
        if !self.open {
            return;
        }
        self.open = false;
        self.members = 0;
        if let Err(why) = self.end("COMMIT") {
            let _ = self.end("ROLLBACK");
            self.failed.insert(self.group, why);
        }
        self.settled = self.group;
    }

    /// Rolls the open group back: all its readers fail.
    fn fail(&mut self, why: &str) {
        if self.open {
            let _ = self.end("ROLLBACK");
            self.open = false;
            self.members = 0;
            self.failed.insert(self.group, why.to_string());
            self.settled = self.group;
        }
    }

    /// After a reader's part failed: a group no reader succeeded in is
    /// closed at once, so no idle transaction holds the write lock.
    fn close_if_empty(&mut self) {
        if self.open && self.members == 0 && self.committing != Some(self.group) {
            let _ = self.end("ROLLBACK");
            self.open = false;
            self.settled = self.group;
        }
    }
}

/// The connection, with no group transaction open, lent out of the group's
/// state: the state's lock is free meanwhile, so members of a group that
/// committed return, while new members wait for the connection to come
/// back. It goes back when the guard drops (after the operation's
/// transaction, which borrows it, has ended).
struct ConnGuard<'a> {
    store: &'a SqliteStore,
    conn: Option<Connection>,
}

impl std::ops::Deref for ConnGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match &self.conn {
            Some(c) => c,
            // Set when the guard is made, taken only in `drop`.
            None => unreachable!("a lent connection is held until its guard drops"),
        }
    }
}

impl std::ops::DerefMut for ConnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        match &mut self.conn {
            Some(c) => c,
            None => unreachable!("a lent connection is held until its guard drops"),
        }
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        // A transaction the operation left open (rusqlite's rolls back when
        // dropped, so none should be) would fail every group after it.
        if let Some(c) = &self.conn
            && !c.is_autocommit()
        {
            let _ = c.execute_batch("ROLLBACK");
        }
        let mut g = self.store.lock();
        g.conn = self.conn.take();
        g.lent_to = None;
        drop(g);
        self.store.group.notify();
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
            group: GroupCommit::new(Inner {
                conn: Some(conn),
                lent_to: None,
                open: false,
                group: 0,
                settled: 0,
                failed: std::collections::HashMap::new(),
                members: 0,
                committing: None,
            }),
            _checkpointer: checkpointer,
            path: path.to_path_buf(),
            scanners: Mutex::new(Vec::new()),
            lookers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on a connection that only reads (`query_only`) and maps the
    /// file (see `SCANNER_PRAGMAS`): a kept one, or a new one; kept again
    /// afterwards (not after an error).
    pub(crate) fn with_scanner<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_reader(&self.scanners, SCANNER_PRAGMAS, f)
    }

    /// [`SqliteStore::with_scanner`] on a connection that does not map the
    /// file, in one read transaction (while it runs, the WAL cannot be
    /// reset past its snapshot: keep each call bounded, as the log's reads
    /// of at most a chunk of leaves are). Its statements
    /// read one snapshot, and the connection's page cache, which SQLite
    /// drops whenever a read transaction starts after another connection
    /// committed, is dropped at most once for all of them (a proof, a
    /// person's leaves or a batch of index look-ups is many statements).
    pub(crate) fn with_looker<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_reader(&self.lookers, "PRAGMA query_only = ON;", |conn| {
            conn.execute_batch("BEGIN")?;
            // On an error the connection is dropped, and its transaction
            // with it.
            let out = f(conn)?;
            conn.execute_batch("COMMIT")?;
            Ok(out)
        })
    }

    fn with_reader<T>(
        &self,
        pool: &Mutex<Vec<Connection>>,
        pragmas: &str,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let kept = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match kept {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(std::time::Duration::from_secs(5))?;
                c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                c.execute_batch(SQLITE_PRAGMAS)?;
                c.execute_batch(pragmas)?;
                c
            }
        };
        let out = f(&conn)?;
        let mut kept = pool.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < SCANNERS_KEPT {
            kept.push(conn);
        }
        Ok(out)
    }

    /// The durability settings of the store's connection, read back.
    pub fn durability(&self) -> Result<sqlite_ops::Durability, StoreError> {
        sqlite_ops::durability_of(&self.conn())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half transaction:
        // rusqlite rolls back on drop, and a group is failed.
        self.group.lock()
    }

    /// The connection, to this operation alone: once any other has given
    /// it back, the open group committed (see [`ConnGuard`]).
    fn conn(&self) -> ConnGuard<'_> {
        self.lend(self.group.lock_available())
    }

    /// [`SqliteStore::conn`] for a long operation that runs again and
    /// again (a bulk batch, a sweep's or a purge's batch): readers waiting
    /// to join the group go first (see `GroupCommit::lock_after_joiners`).
    fn conn_bulk(&self) -> ConnGuard<'_> {
        self.lend(self.group.lock_after_joiners())
    }

    /// The connection out of `g` (available), once the open group is
    /// committed.
    fn lend<'a>(&'a self, mut g: std::sync::MutexGuard<'a, Inner>) -> ConnGuard<'a> {
        if g.open {
            g.settle();
        }
        let conn = g.conn.take();
        g.lent_to = Some(std::thread::current().id());
        drop(g);
        // Members of the group just committed return now.
        self.group.notify();
        ConnGuard { store: self, conn }
    }

    /// One targeted read in the group commit (see the type's docs), and
    /// `then` appended after its leaf in the same member.
    fn read_grouped(
        &self,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut ReadLeafFn<'_>,
        mut then: Option<&mut LeafFn<'_>>,
    ) -> Result<(SubjectData, u64, Option<u64>), StoreError> {
        self.grouped(&mut |conn| {
            let data = read_scope(conn, subject, scope)?;
            let idx = append(conn, 1, &mut |idx, _| leaf(&data, idx))?;
            let next = match then.as_deref_mut() {
                Some(then) => Some(append(conn, 1, then)?),
                None => None,
            };
            Ok((data, idx, next))
        })
    }

    /// Runs `work` in the group commit (see the type's docs): in a savepoint
    /// of the open group's transaction (opening one if none is), and
    /// returns its result once the group has committed, or an error if
    /// `work` failed (its part undone alone) or the group did not commit.
    fn grouped<T>(
        &self,
        work: &mut dyn FnMut(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut g = self.group.join();
        if g.open && g.conn()?.is_autocommit() {
            // SQLite ended the transaction under us (an error rolled it back).
            g.fail("the group's transaction was rolled back");
            self.group.notify();
        }
        if !g.open {
            run_cached(g.conn()?, "BEGIN IMMEDIATE")?;
            g.open = true;
            g.group += 1;
            g.members = 0;
        }
        let my = g.group;
        // Each member's part is a savepoint: one that fails leaves the
        // group's other members untouched.
        if let Err(e) = run_cached(g.conn()?, "SAVEPOINT member") {
            g.fail("a member could not join the group's transaction");
            self.group.notify();
            return Err(e.into());
        }
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(g.conn()?)));
        let undo = |g: &mut Inner| {
            let undone = g.conn().is_ok_and(|c| {
                c.execute_batch("ROLLBACK TO member; RELEASE member")
                    .is_ok()
            });
            if undone {
                g.close_if_empty();
            } else {
                g.fail("a failed member could not be undone alone");
            }
        };
        let out = match done {
            Ok(Ok(out)) => {
                if let Err(e) = run_cached(g.conn()?, "RELEASE member") {
                    g.fail("a member could not be kept in the group's transaction");
                    self.group.notify();
                    return Err(e.into());
                }
                g.members += 1;
                out
            }
            Ok(Err(e)) => {
                undo(&mut g);
                self.group.notify();
                return Err(e);
            }
            Err(panic) => {
                undo(&mut g);
                self.group.notify();
                drop(g);
                std::panic::resume_unwind(panic);
            }
        };
        self.group.wait(g, my, Inner::settle).map(|()| out)
    }
}

fn next_index(tx: &Connection) -> Result<u64, StoreError> {
    // From the statement cache: every read's leaf asks, inside the group's
    // transaction (parsing it each time was a sixth of a read's share).
    let n: i64 = tx
        .prepare_cached("SELECT coalesce(max(idx) + 1, 0) FROM leaves")?
        .query_row([], |r| r.get(0))?;
    Ok(n as u64)
}

fn append(tx: &Connection, count: usize, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
    let first = next_index(tx)?;
    let mut ins = tx.prepare_cached("INSERT INTO leaves (idx, body) VALUES (?1, ?2)")?;
    for i in 0..count {
        let idx = first + i as u64;
        let l = leaf(idx, i);
        ins.execute(params![idx as i64, l.bytes])?;
        file_leaf(tx, idx, &l.index)?;
    }
    Ok(first)
}

/// Files leaf `idx` in the leaf index (see [`LeafIndex`]): under the next
/// free slot of its month, found with the same number of look-ups for
/// everyone with fewer than 64 leaves that month.
fn file_leaf(tx: &Connection, idx: u64, index: &LeafIndex) -> Result<(), StoreError> {
    let LeafIndex::Person { tokens, month } = index else {
        return Ok(());
    };
    let mut probe = tx.prepare_cached("SELECT 1 FROM leaf_index WHERE token = ?1")?;
    let full = || StoreError::Corrupt(format!("the leaf index is full for month {month}"));
    let mut slot =
        crate::free_slot(|s| probe.exists([&tokens.token(*month, s)[..]]))?.ok_or_else(full)?;
    // The search assumes the taken slots are a prefix. A taken slot after
    // the one found means a filing was removed: filling its slot would
    // hide the gap, and the leaf it found, from every later report. The
    // leaf goes after the taken run instead, and the gap stays for the
    // person's report and `check` to find (as on PostgreSQL), while the
    // person's reads and writes go on. One more look-up for everyone, so
    // its time tells nothing.
    if probe.exists([&tokens.token(*month, slot.saturating_add(1))[..]])? {
        // After the last taken slot: one followed by a window's worth of
        // free ones (a second gap further on is not filled either).
        let (last, len) = crate::slot_window(crate::LAST_WINDOW);
        let mut taken = slot + 1;
        let mut s = slot.saturating_add(2);
        while s < last + len && s - taken <= crate::FIRST_WINDOW {
            if probe.exists([&tokens.token(*month, s)[..]])? {
                taken = s;
            }
            s += 1;
        }
        slot = taken + 1;
        if slot >= last + len {
            return Err(full());
        }
    }
    let token = tokens.token(*month, slot);
    tx.prepare_cached("INSERT INTO leaf_index (token, idx, seal) VALUES (?1, ?2, ?3)")?
        .execute(params![
            &token[..],
            idx as i64,
            &tokens.seal(&token, idx)[..]
        ])?;
    tx.prepare_cached("INSERT OR IGNORE INTO leaf_index_months (month) VALUES (?1)")?
        .execute([month])?;
    Ok(())
}

/// What `scope` allows of `subject` (see [`ReadScope`]).
fn read_scope(
    tx: &Connection,
    subject: &SubjectRef,
    scope: ReadScope<'_>,
) -> Result<SubjectData, StoreError> {
    // The erasure generation of the same snapshot, whatever the scope: the
    // reader checks its key cache against it (one row of a page every
    // transaction touches).
    let mut data = read_scope_data(tx, subject, scope)?;
    data.erasure_gen = Some(erasure_gen(tx)?);
    Ok(data)
}

fn read_scope_data(
    tx: &Connection,
    subject: &SubjectRef,
    scope: ReadScope<'_>,
) -> Result<SubjectData, StoreError> {
    match scope {
        ReadScope::LeafOnly => Ok(SubjectData::default()),
        ReadScope::All => read_subject(tx, subject),
        ReadScope::Person(now) => {
            let mut data = read_subject(tx, subject)?;
            data.shown_hold_since = shown_hold_since(tx, subject, now)?;
            Ok(data)
        }
        ReadScope::IfConsented(purpose) => {
            if consent_of(tx, subject, purpose)?.is_some_and(|c| c.granted) {
                read_subject(tx, subject)
            } else {
                Ok(SubjectData::default())
            }
        }
    }
}

/// Since when holds `subject` may know of at `now` have been in force
/// without a gap (see [`SubjectData::shown_hold_since`]).
fn shown_hold_since(
    tx: &Connection,
    subject: &SubjectRef,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let mut q = tx.prepare_cached(
        "SELECT placed_at, until_at, released_at, notice_after FROM holds WHERE subject = ?1",
    )?;
    let holds = q
        .query_map([subject], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::known_hold_span(holds, now))
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

/// Whether `subject` is in the purge queue (erased: their rows are dead).
/// Asked first, in a statement of its own, for every read: an erased
/// person's rows are then never walked, and cost what an unknown person's
/// absence costs (one seek).
fn queued(tx: &Connection, subject: &SubjectRef) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM purge WHERE subject = ?1")?
        .exists([subject])?)
}

fn read_subject(tx: &Connection, subject: &SubjectRef) -> Result<SubjectData, StoreError> {
    let mut data = SubjectData::default();
    {
        if !queued(tx, subject)? {
            // Ordered here, not by SQLite: its sorter would copy every
            // row, sealed bytes and all, once more before handing it over.
            let mut s = tx.prepare_cached(
                "SELECT id, subject, category, purpose, source, collected_at,
                        expires_at, key_id, sealed, superseded_by
                 FROM records WHERE subject = ?1",
            )?;
            data.records = s
                .query_map([subject], record_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            // (collected_at, id), ids compared byte by byte as SQLite
            // compares blobs; stable, so even equal keys keep one order.
            data.records.sort_by_key(|r| (r.collected_at, r.id));
        }
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

/// The subject's records of the pack's protective-order category. The
/// postal pack's ([`PROTECTIVE_INDEX_CATEGORY`]) go through the partial
/// index `records_protective`: a seek that costs the same whether the person
/// holds one record or thousands, or none at all. Any other category is a
/// seek on `records_subject` (subject, category), which reads that
/// category's records of the person only.
fn read_protective(
    tx: &Connection,
    subject: &SubjectRef,
    category: &str,
) -> Result<SubjectData, StoreError> {
    let records = if queued(tx, subject)? {
        vec![]
    } else if category == PROTECTIVE_INDEX_CATEGORY {
        let mut s = tx.prepare_cached(
            "SELECT id, subject, category, purpose, source, collected_at,
                    expires_at, key_id, sealed, superseded_by
             FROM records INDEXED BY records_protective
             WHERE subject = ?1 AND category = 'protective_order' ORDER BY collected_at, id",
        )?;
        s.query_map([subject], record_from_row)?
            .collect::<Result<_, _>>()?
    } else {
        let mut s = tx.prepare_cached(
            "SELECT id, subject, category, purpose, source, collected_at,
                    expires_at, key_id, sealed, superseded_by
             FROM records
             WHERE subject = ?1 AND category = ?2 ORDER BY collected_at, id",
        )?;
        s.query_map(params![subject, category], record_from_row)?
            .collect::<Result<_, _>>()?
    };
    Ok(SubjectData {
        records,
        ..SubjectData::default()
    })
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
        superseded_by: r.get(9)?,
    })
}

/// [`record_from_row`] into `out`, its strings and sealed bytes
/// overwritten in place (a scan's page reuses its rows).
fn record_into(r: &rusqlite::Row<'_>, out: &mut RecordRow) -> rusqlite::Result<()> {
    fn text_into(r: &rusqlite::Row<'_>, i: usize, out: &mut String) -> rusqlite::Result<()> {
        let t = r.get_ref(i)?.as_str().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
        })?;
        if out != t {
            out.clear();
            out.push_str(t);
        }
        Ok(())
    }
    out.id = r.get(0)?;
    out.subject = r.get(1)?;
    text_into(r, 2, &mut out.category)?;
    text_into(r, 3, &mut out.purpose)?;
    text_into(r, 4, &mut out.source)?;
    out.collected_at = r.get(5)?;
    out.expires_at = r.get(6)?;
    out.key_id = r.get(7)?;
    let sealed = r.get_ref(8)?.as_blob().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Blob, e.into())
    })?;
    out.sealed.clear();
    out.sealed.extend_from_slice(sealed);
    out.superseded_by = r.get(9)?;
    Ok(())
}

/// The data generation: what every transaction that changes something a
/// read of some person could see (records, consents, holds, the purge
/// queue, pending erasures) bumps, in that transaction. A read made outside
/// the group commit ([`RecordStore::read_unlogged`]) is accounted for only
/// if it is unchanged under the group's lock
/// ([`RecordStore::append_read_leaf`]). Kept in `meta`; 0 until first bumped.
pub(super) fn data_gen(tx: &Connection) -> Result<u64, StoreError> {
    let v: Option<String> = tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'data_gen'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    v.map_or(Ok(0), |v| {
        v.parse()
            .map_err(|_| StoreError::Corrupt("data_gen is not a number".into()))
    })
}

/// Bumps [`data_gen`] in the caller's transaction.
pub(super) fn bump_data_gen(tx: &Connection) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('data_gen', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
    )?
    .execute([])?;
    Ok(())
}

fn erasure_gen(tx: &Connection) -> Result<u64, StoreError> {
    let v: Option<String> = tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'erasure_gen'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    v.unwrap_or_else(|| "0".into())
        .parse()
        .map_err(|_| StoreError::Corrupt("erasure_gen is not a number".into()))
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
