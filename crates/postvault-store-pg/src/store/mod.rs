//! [`PgStore`]: the data store on PostgreSQL.
//!
//! Every transaction that appends leaves (a collection batch, a read, a
//! disclosure step, an erasure, a hold) opens with
//! `SELECT size FROM tree_state WHERE id = 1 FOR UPDATE`: the size is the
//! index of its first leaf, and the lock orders it after every other such
//! transaction of every node until it commits. The erasure fence, quota
//! counts and pending erasures are read after that lock, so they see what
//! the transactions before it committed (READ COMMITTED takes a fresh
//! snapshot per statement; on a serializable database the retries do the
//! same work).

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Transaction;
use futures_util::pin_mut;
use postvault_store::sql::{
    DISCLOSURE_COLUMNS, PRINCIPAL_COLUMNS, scan_after, scan_until, split_list,
};
use postvault_store::{
    AccountingRow, ConsentRow, DisclosureKeys, DisclosureRow, EraseIntentFn, EraseLeafFn,
    EraseOutcome, ErasureFinish, Held, HoldRow, Intent, IntentRow, KeyUse, Leaf, LeafFn, LeafIndex,
    PROTECTIVE_INDEX_CATEGORY, PlanFn, PrincipalChange, PrincipalRow, PurgeBatch, ReadLeafFn,
    ReadScope, RecordRow, RunRow, RunStep, StepFn, StoreError, SubjectData, SubjectRef,
    SubmitFacts, SubmitFn, SubmitQuery, SweepBatch, WriteBatch,
};
use postvault_store::{
    LedgerStore, LogStore, OpsStore, PrincipalStore, RecordStore, RightsStore, StatsStore,
};
use tokio_postgres::IsolationLevel;
use tokio_postgres::Row;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::PgOptions;
use crate::db::{Db, Fail, guarded};
use crate::schema::{DATA_MIGRATIONS, Kind, migrate};

mod ledger;
mod log;
mod ops;
mod principals;
mod records;
mod rights;
mod stats;

#[cfg(test)]
pub(crate) use stats::scan_sql;

/// The data store on PostgreSQL. See the crate docs for how several nodes
/// share it.
pub struct PgStore {
    pub(crate) db: Db,
    isolation: IsolationLevel,
    reads: crate::reads::Reads,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.db.shown)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the data store in `opts.schema` of the database at `url`,
    /// creating or migrating its tables.
    pub fn open(url: &str, opts: &PgOptions) -> Result<PgStore, StoreError> {
        let db = Db::connect(url, &opts.schema, opts.pool_size)?;
        migrate(&db, &opts.schema, Kind::Data, DATA_MIGRATIONS, opts.create)?;
        db.check_durability()?;
        let isolation = match opts.isolation {
            crate::Isolation::ReadCommitted => IsolationLevel::ReadCommitted,
            crate::Isolation::Serializable => IsolationLevel::Serializable,
        };
        Ok(PgStore {
            db,
            isolation,
            reads: crate::reads::Reads::new(),
        })
    }

    /// The settings that make a commit durable, as the server reports them
    /// for the store's connections.
    pub fn durability(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db.durability()
    }

    /// Read groups committed or failed since the store opened (concurrent
    /// reads share one).
    pub fn read_groups(&self) -> u64 {
        self.reads.groups()
    }

    /// Transactions run again after a serialization failure, a deadlock or
    /// (for a batch with an id) a broken connection, since the store opened.
    pub fn retries(&self) -> u64 {
        self.db.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Raw binary COPY of rows into `records`, in one transaction, nothing
    /// else: the baseline the ingest benchmark compares the full path with.
    #[cfg(any(test, feature = "test-util"))]
    pub fn danger_raw_copy_records(&self, rows: &[RecordRow]) -> Result<(), StoreError> {
        self.db.run(false, async |c| {
            let tx = begin(c, self.isolation).await?;
            copy_records(&tx, rows).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Runs one SQL statement (tests and the benchmark's setup).
    #[cfg(any(test, feature = "test-util"))]
    pub fn danger_execute(&self, sql: &str) -> Result<(), StoreError> {
        self.db.run(false, async |c| {
            c.batch_execute(sql).await?;
            Ok(())
        })
    }
}

async fn begin(
    c: &mut deadpool_postgres::Client,
    isolation: IsolationLevel,
) -> Result<Transaction<'_>, Fail> {
    Ok(c.build_transaction()
        .isolation_level(isolation)
        .start()
        .await?)
}

/// Locks the tree state; returns the log size (the next leaf's index).
async fn lock_tree(tx: &Transaction<'_>) -> Result<u64, Fail> {
    let s = tx
        .prepare_cached("SELECT size FROM tree_state WHERE id = 1 FOR UPDATE")
        .await?;
    let row = tx.query_one(&s, &[]).await?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

/// Appends `leaves` at `first..`, files them in the leaf index, and moves
/// the tree size past them.
async fn append(tx: &Transaction<'_>, first: u64, leaves: &[Leaf]) -> Result<(), Fail> {
    if leaves.is_empty() {
        return Ok(());
    }
    let idx: Vec<i64> = (0..leaves.len())
        .map(|i| (first + i as u64) as i64)
        .collect();
    let bodies: Vec<&[u8]> = leaves.iter().map(|l| &l.bytes[..]).collect();
    let s = tx
        .prepare_cached(
            "INSERT INTO leaves (idx, body) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
        )
        .await?;
    tx.execute(&s, &[&idx, &bodies]).await?;
    file_leaves(tx, first, leaves).await?;
    let s = tx
        .prepare_cached("UPDATE tree_state SET size = $1 WHERE id = 1")
        .await?;
    tx.execute(&s, &[&((first + leaves.len() as u64) as i64)])
        .await?;
    Ok(())
}

/// One statement that files leaf `idx` under the first free slot of its
/// month's first window (`$1` the window's tokens slot by slot, `$4` the
/// seal of each with this leaf): counts the window's taken slots (a
/// prefix) and inserts the token after them, in one round trip. Affects no
/// row if the window is full (or the slot counted is taken: a gap someone
/// made; the next window files it). Also notes the month.
pub(crate) const FILE_LEAF: &str =
    "WITH c AS (SELECT count(*) AS n FROM leaf_index WHERE token = ANY($1::bytea[])),
     m AS (INSERT INTO leaf_index_months (month) VALUES ($3) ON CONFLICT DO NOTHING)
 INSERT INTO leaf_index (token, idx, seal)
 SELECT ($1::bytea[])[c.n + 1], $2, ($4::bytea[])[c.n + 1] FROM c
 WHERE c.n < cardinality($1::bytea[])
 ON CONFLICT DO NOTHING";

/// Files leaf `idx` in the windows after the first, found full (a person
/// with more than 64 leaves in a month): each by the binary search of
/// [`postvault_store::free_slot_in`], one look-up a round trip.
pub(crate) async fn file_leaf_later<C: deadpool_postgres::GenericClient>(
    c: &C,
    idx: u64,
    index: &LeafIndex,
) -> Result<(), Fail> {
    let LeafIndex::Person { tokens, month } = index else {
        return Ok(());
    };
    let probe = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM leaf_index WHERE token = $1)")
        .await?;
    let insert = c
        .prepare_cached(
            "INSERT INTO leaf_index (token, idx, seal) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .await?;
    for w in 1..=postvault_store::LAST_WINDOW {
        // free_slot_in's search, its look-ups answered by the server.
        let (start, len) = postvault_store::slot_window(w);
        let (mut lo, mut hi) = (start, start + len);
        for _ in 0..=len.trailing_zeros() {
            let mid = if lo < hi {
                lo + (hi - lo) / 2
            } else {
                lo.min(start + len - 1)
            };
            let t = tokens.token(*month, mid).to_vec();
            let taken: bool = c.query_one(&probe, &[&t]).await?.try_get(0)?;
            if lo < hi {
                if taken {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
        }
        if lo < start + len {
            let slot = lo;
            let token = tokens.token(*month, slot);
            let seal = tokens.seal(&token, idx);
            if c.execute(&insert, &[&&token[..], &(idx as i64), &&seal[..]])
                .await?
                == 1
            {
                c.execute(
                    "INSERT INTO leaf_index_months (month) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&i64::from(*month)],
                )
                .await?;
                return Ok(());
            }
        }
    }
    Err(Fail::Store(StoreError::Corrupt(format!(
        "the leaf index is full for month {month}"
    ))))
}

/// The first window's statement of leaf `idx` ([`FILE_LEAF`], prepared as
/// `s`), to pipeline with others; `Ok(false)` if that window was full
/// (then [`file_leaf_later`]).
pub(crate) async fn file_leaf_first<C: deadpool_postgres::GenericClient>(
    c: &C,
    s: &tokio_postgres::Statement,
    idx: u64,
    index: &LeafIndex,
) -> Result<bool, Fail> {
    let LeafIndex::Person { tokens, month } = index else {
        return Ok(true);
    };
    let (start, len) = postvault_store::slot_window(0);
    let window: Vec<[u8; 16]> = (start..start + len)
        .map(|slot| tokens.token(*month, slot))
        .collect();
    let seals: Vec<Vec<u8>> = window
        .iter()
        .map(|t| tokens.seal(t, idx).to_vec())
        .collect();
    let window: Vec<Vec<u8>> = window.iter().map(|t| t.to_vec()).collect();
    Ok(
        c.execute(s, &[&window, &(idx as i64), &i64::from(*month), &seals])
            .await?
            == 1,
    )
}

/// Files `leaves` (at `first..`): their first windows' statements sent at
/// once (PostgreSQL runs them in order), then any that found a window full.
async fn file_leaves(tx: &Transaction<'_>, first: u64, leaves: &[Leaf]) -> Result<(), Fail> {
    if !leaves
        .iter()
        .any(|l| matches!(l.index, LeafIndex::Person { .. }))
    {
        return Ok(());
    }
    let s = tx.prepare_cached(FILE_LEAF).await?;
    let filed = futures_util::future::try_join_all(
        leaves
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l.index, LeafIndex::Person { .. }))
            .map(|(i, l)| {
                let s = &s;
                async move {
                    let idx = first + i as u64;
                    Ok::<_, Fail>((idx, &l.index, file_leaf_first(tx, s, idx, &l.index).await?))
                }
            }),
    )
    .await?;
    for (idx, index, done) in filed {
        if !done {
            file_leaf_later(tx, idx, index).await?;
        }
    }
    Ok(())
}

/// Builds `count` leaves through the caller's callback.
fn build_leaves(first: u64, count: usize, leaf: &mut LeafFn<'_>) -> Result<Vec<Leaf>, Fail> {
    guarded(|| (0..count).map(|i| leaf(first + i as u64, i)).collect())
}

async fn copy_records(tx: &Transaction<'_>, rows: &[RecordRow]) -> Result<(), Fail> {
    if rows.is_empty() {
        return Ok(());
    }
    let sink = tx
        .copy_in(
            "COPY records (id, subject, category, purpose, source, collected_at, expires_at,
                 key_id, sealed) FROM STDIN (FORMAT binary)",
        )
        .await?;
    let w = BinaryCopyInWriter::new(
        sink,
        &[
            Type::BYTEA,
            Type::BYTEA,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::BYTEA,
        ],
    );
    pin_mut!(w);
    for r in rows {
        let key_id = i64::from(r.key_id);
        w.as_mut()
            .write(&[
                &&r.id[..],
                &&r.subject[..],
                &r.category,
                &r.purpose,
                &r.source,
                &r.collected_at,
                &r.expires_at,
                &key_id,
                &r.sealed,
            ])
            .await?;
    }
    w.finish().await?;
    Ok(())
}

async fn copy_lookups(tx: &Transaction<'_>, batch: &WriteBatch) -> Result<(), Fail> {
    if batch.lookups.is_empty() {
        return Ok(());
    }
    // COPY has no ON CONFLICT: drop repeats within the batch (its records
    // are new, so no stored row shares their (token, record)).
    let mut seen = HashSet::with_capacity(batch.lookups.len());
    let sink = tx
        .copy_in("COPY lookups (token, subject, record) FROM STDIN (FORMAT binary)")
        .await?;
    let w = BinaryCopyInWriter::new(sink, &[Type::BYTEA, Type::BYTEA, Type::BYTEA]);
    pin_mut!(w);
    for l in &batch.lookups {
        if !seen.insert((l.token, l.record)) {
            continue;
        }
        w.as_mut()
            .write(&[&&l.token[..], &&l.subject[..], &&l.record[..]])
            .await?;
    }
    w.finish().await?;
    Ok(())
}

pub(crate) fn ref16(b: &[u8], what: &str) -> Result<[u8; 16], Fail> {
    <[u8; 16]>::try_from(b).map_err(|_| {
        Fail::Store(StoreError::Corrupt(format!(
            "a stored {what} is not 16 bytes"
        )))
    })
}

fn opt16(b: Option<&[u8]>, what: &str) -> Result<Option<[u8; 16]>, Fail> {
    b.map(|b| ref16(b, what)).transpose()
}

pub(crate) const RECORD_COLUMNS: &str =
    "id, subject, category, purpose, source, collected_at, expires_at,
    key_id, sealed, superseded_by";

pub(crate) fn record_from_row(r: &Row) -> Result<RecordRow, Fail> {
    Ok(RecordRow {
        id: ref16(r.try_get(0)?, "record id")?,
        subject: ref16(r.try_get(1)?, "subject ref")?,
        category: r.try_get(2)?,
        purpose: r.try_get(3)?,
        source: r.try_get(4)?,
        collected_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        key_id: u32::try_from(r.try_get::<_, i64>(7)?)
            .map_err(|_| Fail::Store(StoreError::Corrupt("a key id is out of range".into())))?,
        sealed: r.try_get(8)?,
        superseded_by: opt16(r.try_get(9)?, "record id")?,
    })
}

/// One look-up on the consents' primary key.
pub(crate) async fn consent_of<C: deadpool_postgres::GenericClient>(
    tx: &C,
    subject: &SubjectRef,
    purpose: &str,
) -> Result<Option<ConsentRow>, Fail> {
    let s = tx
        .prepare_cached(
            "SELECT subject, purpose, granted, at FROM consents WHERE subject = $1 AND purpose = $2",
        )
        .await?;
    let key = &subject[..];
    match tx.query_opt(&s, &[&key, &purpose]).await? {
        Some(r) => Ok(Some(ConsentRow {
            subject: ref16(r.try_get(0)?, "subject ref")?,
            purpose: r.try_get(1)?,
            granted: r.try_get(2)?,
            at: r.try_get(3)?,
        })),
        None => Ok(None),
    }
}

/// What `scope` allows of `subject` (see [`ReadScope`]).
pub(crate) async fn read_scope<C: deadpool_postgres::GenericClient>(
    tx: &C,
    subject: &SubjectRef,
    scope: ReadScope<'_>,
) -> Result<SubjectData, Fail> {
    match scope {
        ReadScope::LeafOnly => Ok(SubjectData::default()),
        ReadScope::All => read_subject(tx, subject, true).await,
        ReadScope::Person(now) => read_person(tx, subject, now).await,
        ReadScope::IfConsented(purpose) => {
            if consent_of(tx, subject, purpose)
                .await?
                .is_some_and(|c| c.granted)
            {
                read_subject(tx, subject, true).await
            } else {
                Ok(SubjectData::default())
            }
        }
    }
}

pub(crate) async fn read_subject<C: deadpool_postgres::GenericClient>(
    tx: &C,
    subject: &SubjectRef,
    with_consents: bool,
) -> Result<SubjectData, Fail> {
    let s = tx
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE subject = $1
               AND NOT EXISTS (SELECT 1 FROM purge WHERE subject = $1)
             ORDER BY collected_at, id"
        ))
        .await?;
    let key = &subject[..];
    let mut data = SubjectData::default();
    for r in tx.query(&s, &[&key]).await? {
        data.records.push(record_from_row(&r)?);
    }
    if with_consents {
        data.consents = read_subject_consents(tx, subject).await?.consents;
    }
    data.exists = !data.records.is_empty() || !data.consents.is_empty();
    Ok(data)
}

/// The subject's consents, in a [`SubjectData`] of nothing else.
async fn read_subject_consents<C: deadpool_postgres::GenericClient>(
    tx: &C,
    subject: &SubjectRef,
) -> Result<SubjectData, Fail> {
    let s = tx
        .prepare_cached(
            "SELECT subject, purpose, granted, at FROM consents WHERE subject = $1
             ORDER BY purpose COLLATE \"C\"",
        )
        .await?;
    let mut data = SubjectData::default();
    for r in tx.query(&s, &[&&subject[..]]).await? {
        data.consents.push(ConsentRow {
            subject: ref16(r.try_get(0)?, "subject ref")?,
            purpose: r.try_get(1)?,
            granted: r.try_get(2)?,
            at: r.try_get(3)?,
        });
    }
    Ok(data)
}

/// Everything held of `subject`, read for the person: the subject's holds
/// are columns of the records' own statement, so under READ COMMITTED they
/// are read in the records' snapshot (see [`SubjectData::shown_hold_since`];
/// `None` without records).
pub(crate) async fn read_person<C: deadpool_postgres::GenericClient>(
    tx: &C,
    subject: &SubjectRef,
    now: i64,
) -> Result<SubjectData, Fail> {
    let s = tx
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS},
                    (SELECT array_agg(h.placed_at ORDER BY h.id) FROM holds h WHERE h.subject = $1),
                    (SELECT array_agg(h.until_at ORDER BY h.id) FROM holds h WHERE h.subject = $1),
                    (SELECT array_agg(h.released_at ORDER BY h.id) FROM holds h WHERE h.subject = $1),
                    (SELECT array_agg(h.notice_after ORDER BY h.id) FROM holds h WHERE h.subject = $1)
             FROM records WHERE subject = $1
               AND NOT EXISTS (SELECT 1 FROM purge WHERE subject = $1)
             ORDER BY collected_at, id"
        ))
        .await?;
    let key = &subject[..];
    let mut records = Vec::new();
    let mut shown_hold_since = None;
    for r in tx.query(&s, &[&key]).await? {
        records.push(record_from_row(&r)?);
        if records.len() == 1 {
            let placed: Option<Vec<i64>> = r.try_get(10)?;
            let until: Option<Vec<i64>> = r.try_get(11)?;
            let released: Option<Vec<Option<i64>>> = r.try_get(12)?;
            let notice: Option<Vec<Option<i64>>> = r.try_get(13)?;
            let (placed, until, released, notice) = (
                placed.unwrap_or_default(),
                until.unwrap_or_default(),
                released.unwrap_or_default(),
                notice.unwrap_or_default(),
            );
            if [until.len(), released.len(), notice.len()] != [placed.len(); 3] {
                return Err(Fail::Store(StoreError::Corrupt(
                    "a subject's holds were read unevenly".into(),
                )));
            }
            shown_hold_since = postvault_store::known_hold_span(
                (0..placed.len()).map(|i| (placed[i], until[i], released[i], notice[i])),
                now,
            );
        }
    }
    let mut data = read_subject_consents(tx, subject).await?;
    data.records = records;
    data.shown_hold_since = shown_hold_since;
    data.exists = !data.records.is_empty() || !data.consents.is_empty();
    Ok(data)
}

/// The subject's records of the pack's protective-order category. The
/// postal pack's ([`PROTECTIVE_INDEX_CATEGORY`]) are asked for by the literal
/// the partial index `records_protective` names, so the planner seeks on it:
/// a cost that is the same whether the person holds one record or
/// thousands, or none at all. Any other category goes through
/// `records_subject`.
async fn read_protective(
    tx: &Transaction<'_>,
    subject: &SubjectRef,
    category: &str,
) -> Result<SubjectData, Fail> {
    let mut data = SubjectData::default();
    let rows = if category == PROTECTIVE_INDEX_CATEGORY {
        let s = tx
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records
                 WHERE subject = $1 AND category = 'protective_order'
                   AND NOT EXISTS (SELECT 1 FROM purge WHERE subject = $1)
                 ORDER BY collected_at, id"
            ))
            .await?;
        tx.query(&s, &[&&subject[..]]).await?
    } else {
        let s = tx
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records
                 WHERE subject = $1 AND category = $2
                   AND NOT EXISTS (SELECT 1 FROM purge WHERE subject = $1)
                 ORDER BY collected_at, id"
            ))
            .await?;
        tx.query(&s, &[&&subject[..], &category]).await?
    };
    for r in rows {
        data.records.push(record_from_row(&r)?);
    }
    Ok(data)
}

async fn meta_u64(tx: &Transaction<'_>, key: &str, lock: bool) -> Result<u64, Fail> {
    let sql = if lock {
        "SELECT value FROM meta WHERE key = $1 FOR UPDATE"
    } else {
        "SELECT value FROM meta WHERE key = $1"
    };
    let s = tx.prepare_cached(sql).await?;
    let v: Option<String> = match tx.query_opt(&s, &[&key]).await? {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    };
    v.unwrap_or_else(|| "0".into())
        .parse()
        .map_err(|_| Fail::Store(StoreError::Corrupt(format!("meta `{key}` is not a number"))))
}

/// A numeric meta value, read outside a transaction.
async fn meta_u64_of(c: &deadpool_postgres::Client, key: &str) -> Result<u64, Fail> {
    let s = c
        .prepare_cached("SELECT value FROM meta WHERE key = $1")
        .await?;
    let v: Option<String> = match c.query_opt(&s, &[&key]).await? {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    };
    v.unwrap_or_else(|| "0".into())
        .parse()
        .map_err(|_| Fail::Store(StoreError::Corrupt(format!("meta `{key}` is not a number"))))
}

fn refs(subjects: &[SubjectRef]) -> Vec<&[u8]> {
    subjects.iter().map(|s| &s[..]).collect()
}
