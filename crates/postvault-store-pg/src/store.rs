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
use postvault_store::{
    AccountingRow, ConsentRow, DisclosureKeys, DisclosureRow, EraseIntentFn, EraseLeafFn,
    EraseOutcome, HoldRow, Intent, IntentRow, KeyUse, LeafFn, PlanFn, PrincipalRow, ReadLeafFn,
    ReadScope, RecordRow, RunRow, RunStep, StepFn, Store, StoreError, SubjectData, SubjectRef,
    SubmitFacts, SubmitFn, SubmitQuery, SweepBatch, WriteBatch,
};
use tokio_postgres::IsolationLevel;
use tokio_postgres::Row;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::PgOptions;
use crate::db::{Db, Fail, guarded};
use crate::schema::{DATA_MIGRATIONS, Kind, migrate};

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

/// Appends `bodies` at `first..` and moves the tree size past them.
async fn append(tx: &Transaction<'_>, first: u64, bodies: &[Vec<u8>]) -> Result<(), Fail> {
    if bodies.is_empty() {
        return Ok(());
    }
    let idx: Vec<i64> = (0..bodies.len())
        .map(|i| (first + i as u64) as i64)
        .collect();
    let s = tx
        .prepare_cached(
            "INSERT INTO leaves (idx, body) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
        )
        .await?;
    tx.execute(&s, &[&idx, &bodies]).await?;
    let s = tx
        .prepare_cached("UPDATE tree_state SET size = $1 WHERE id = 1")
        .await?;
    tx.execute(&s, &[&((first + bodies.len() as u64) as i64)])
        .await?;
    Ok(())
}

/// Builds `count` leaves through the caller's callback.
fn build_leaves(first: u64, count: usize, leaf: &mut LeafFn<'_>) -> Result<Vec<Vec<u8>>, Fail> {
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
            "SELECT {RECORD_COLUMNS} FROM records WHERE subject = $1 ORDER BY collected_at, id"
        ))
        .await?;
    let key = &subject[..];
    let mut data = SubjectData::default();
    for r in tx.query(&s, &[&key]).await? {
        data.records.push(record_from_row(&r)?);
    }
    if with_consents {
        let s = tx
            .prepare_cached(
                "SELECT subject, purpose, granted, at FROM consents WHERE subject = $1
                 ORDER BY purpose COLLATE \"C\"",
            )
            .await?;
        for r in tx.query(&s, &[&key]).await? {
            data.consents.push(ConsentRow {
                subject: ref16(r.try_get(0)?, "subject ref")?,
                purpose: r.try_get(1)?,
                granted: r.try_get(2)?,
                at: r.try_get(3)?,
            });
        }
    }
    data.exists = !data.records.is_empty() || !data.consents.is_empty();
    Ok(data)
}

/// The subject's protective-order records, through the partial index
/// `records_protective`: a seek that costs the same whether the person holds
/// one record or thousands, or none at all.
async fn read_protective(tx: &Transaction<'_>, subject: &SubjectRef) -> Result<SubjectData, Fail> {
    let s = tx
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM records
             WHERE subject = $1 AND category = 'protective_order' ORDER BY collected_at, id"
        ))
        .await?;
    let mut data = SubjectData::default();
    for r in tx.query(&s, &[&&subject[..]]).await? {
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

async fn bump_erasure_gen(tx: &Transaction<'_>) -> Result<(), Fail> {
    tx.execute(
        "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'erasure_gen'",
        &[],
    )
    .await?;
    Ok(())
}

fn refs(subjects: &[SubjectRef]) -> Vec<&[u8]> {
    subjects.iter().map(|s| &s[..]).collect()
}

/// Deletes every record, lookup and consent of `subjects`; returns the
/// records deleted.
async fn delete_rows_of(tx: &Transaction<'_>, subjects: &[&[u8]]) -> Result<u64, Fail> {
    let n = tx
        .execute("DELETE FROM records WHERE subject = ANY($1)", &[&subjects])
        .await?;
    for t in ["lookups", "consents"] {
        tx.execute(
            &format!("DELETE FROM {t} WHERE subject = ANY($1)"),
            &[&subjects],
        )
        .await?;
    }
    Ok(n)
}

/// The id a collection batch is known by: its first record's id (UUIDv7,
/// unique per batch). A batch without records has none and is not retried
/// after an ambiguous commit.
fn batch_id(batch: &WriteBatch) -> Option<[u8; 16]> {
    batch.records.first().map(|r| r.id)
}

const DISCLOSURE_COLUMNS: &str = "id, seq, requester, kind, ground, instrument_key, case_key,
    extension_no, subjects, portions, status, reasons, alerts, submitted_at, data_from, data_until,
    valid_until, notice_after, decided_by, decided_at, fetches, last_fetched_at, ended_at,
    end_reason, notified_at, retain_until, sealed, office_notes, extends";

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn u32_of(v: i64, what: &str) -> Result<u32, Fail> {
    u32::try_from(v).map_err(|_| {
        Fail::Store(StoreError::Corrupt(format!(
            "a stored {what} is out of range"
        )))
    })
}

fn disclosure_from_row(r: &Row) -> Result<DisclosureRow, Fail> {
    let subjects: &[u8] = r.try_get(8)?;
    if !subjects.len().is_multiple_of(16) {
        return Err(Fail::Store(StoreError::Corrupt(
            "a disclosure's subject list is not a list of refs".into(),
        )));
    }
    let subjects = subjects
        .chunks_exact(16)
        .map(|c| ref16(c, "subject ref"))
        .collect::<Result<_, _>>()?;
    Ok(DisclosureRow {
        id: r.try_get(0)?,
        seq: r.try_get::<_, i64>(1)? as u64,
        requester: r.try_get(2)?,
        kind: r.try_get(3)?,
        ground: r.try_get(4)?,
        instrument_key: opt16(r.try_get(5)?, "instrument key")?,
        case_key: opt16(r.try_get(6)?, "case key")?,
        extension_no: u32_of(r.try_get(7)?, "extension number")?,
        subjects,
        portions: split_list(r.try_get(9)?),
        status: r.try_get(10)?,
        reasons: split_list(r.try_get(11)?),
        alerts: split_list(r.try_get(12)?),
        submitted_at: r.try_get(13)?,
        data_from: r.try_get(14)?,
        data_until: r.try_get(15)?,
        valid_until: r.try_get(16)?,
        notice_after: r.try_get(17)?,
        decided_by: r.try_get(18)?,
        decided_at: r.try_get(19)?,
        fetches: u32_of(r.try_get(20)?, "fetch count")?,
        last_fetched_at: r.try_get(21)?,
        ended_at: r.try_get(22)?,
        end_reason: r.try_get(23)?,
        notified_at: r.try_get(24)?,
        retain_until: r.try_get(25)?,
        sealed: r.try_get(26)?,
        office_notes: split_list(r.try_get(27)?),
        extends: r.try_get(28)?,
    })
}

async fn load_disclosure(tx: &Transaction<'_>, id: &str) -> Result<Option<DisclosureRow>, Fail> {
    let s = tx
        .prepare_cached(&format!(
            "SELECT {DISCLOSURE_COLUMNS} FROM disclosures WHERE id = $1"
        ))
        .await?;
    match tx.query_opt(&s, &[&id]).await? {
        Some(r) => Ok(Some(disclosure_from_row(&r)?)),
        None => Ok(None),
    }
}

async fn insert_disclosure(tx: &Transaction<'_>, d: &DisclosureRow) -> Result<(), Fail> {
    let subjects: Vec<u8> = d.subjects.iter().flatten().copied().collect();
    let instrument = d.instrument_key.as_ref().map(|k| &k[..]);
    let case = d.case_key.as_ref().map(|k| &k[..]);
    let (portions, reasons, alerts, notes) = (
        d.portions.join(","),
        d.reasons.join(","),
        d.alerts.join(","),
        d.office_notes.join(","),
    );
    let (seq, ext, fetches) = (
        d.seq as i64,
        i64::from(d.extension_no),
        i64::from(d.fetches),
    );
    let params: [&(dyn ToSql + Sync); 29] = [
        &d.id,
        &seq,
        &d.requester,
        &d.kind,
        &d.ground,
        &instrument,
        &case,
        &ext,
        &subjects,
        &portions,
        &d.status,
        &reasons,
        &alerts,
        &d.submitted_at,
        &d.data_from,
        &d.data_until,
        &d.valid_until,
        &d.notice_after,
        &d.decided_by,
        &d.decided_at,
        &fetches,
        &d.last_fetched_at,
        &d.ended_at,
        &d.end_reason,
        &d.notified_at,
        &d.retain_until,
        &d.sealed,
        &notes,
        &d.extends,
    ];
    tx.execute(
        &format!(
            "INSERT INTO disclosures ({DISCLOSURE_COLUMNS}) VALUES
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
              $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)"
        ),
        &params,
    )
    .await?;
    Ok(())
}

/// Writes the state that a request's steps may change; what was submitted
/// stays as it was.
async fn update_disclosure(tx: &Transaction<'_>, d: &DisclosureRow) -> Result<(), Fail> {
    let (portions, reasons, alerts, notes) = (
        d.portions.join(","),
        d.reasons.join(","),
        d.alerts.join(","),
        d.office_notes.join(","),
    );
    let fetches = i64::from(d.fetches);
    tx.execute(
        "UPDATE disclosures SET portions = $2, status = $3, reasons = $4, alerts = $5,
             data_from = $6, data_until = $7, valid_until = $8, notice_after = $9,
             decided_by = $10, decided_at = $11, fetches = $12, last_fetched_at = $13,
             ended_at = $14, end_reason = $15, notified_at = $16, retain_until = $17,
             office_notes = $18
         WHERE id = $1",
        &[
            &d.id,
            &portions,
            &d.status,
            &reasons,
            &alerts,
            &d.data_from,
            &d.data_until,
            &d.valid_until,
            &d.notice_after,
            &d.decided_by,
            &d.decided_at,
            &fetches,
            &d.last_fetched_at,
            &d.ended_at,
            &d.end_reason,
            &d.notified_at,
            &d.retain_until,
            &notes,
        ],
    )
    .await?;
    Ok(())
}

fn hold_from_row(r: &Row) -> Result<HoldRow, Fail> {
    Ok(HoldRow {
        id: r.try_get(0)?,
        subject: ref16(r.try_get(1)?, "subject ref")?,
        disclosure: r.try_get(2)?,
        placed_by: r.try_get(3)?,
        placed_at: r.try_get(4)?,
        until: r.try_get(5)?,
        notice_after: r.try_get(6)?,
        released_at: r.try_get(7)?,
        released_by: r.try_get(8)?,
    })
}

const HOLD_COLUMNS: &str = "id, subject, disclosure, placed_by, placed_at, until_at,
    notice_after, released_at, released_by";

const PRINCIPAL_COLUMNS: &str = "name, role, token_hash, created_at, revoked_at";

fn principal_from_row(r: &Row) -> Result<PrincipalRow, Fail> {
    Ok(PrincipalRow {
        name: r.try_get(0)?,
        role: r.try_get(1)?,
        token_hash: r.try_get(2)?,
        created_at: r.try_get(3)?,
        revoked_at: r.try_get(4)?,
    })
}

impl PgStore {
    /// Runs `update` on one active principal, moves the principals
    /// generation and appends one leaf, in one transaction that holds the
    /// tree-state lock (the leaf's index is the log's next).
    fn principal_step(
        &self,
        name: &str,
        update: &str,
        value: &(dyn ToSql + Sync),
        leaf: &mut LeafFn<'_>,
    ) -> Result<u64, StoreError> {
        self.db.session(false, |w, c| {
            let (tx, first) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let first = lock_tree(&tx).await?;
                let n = tx.execute(update, &[&name, value]).await?;
                if n != 1 {
                    return Err(Fail::Store(StoreError::PrincipalNotActive(name.to_string())));
                }
                tx.execute(
                    "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'principals_gen'",
                    &[],
                )
                .await?;
                Ok::<_, Fail>((tx, first))
            })?;
            let bodies = build_leaves(first, 1, leaf)?;
            w.wait(async {
                append(&tx, first, &bodies).await?;
                tx.commit().await?;
                Ok(first)
            })
        })
    }
}

/// What a batch must pass before it is written; `Some(first leaf)` if it
/// was written already (an earlier attempt committed, though its caller did
/// not hear so): not a second time.
async fn write_checks(
    tx: &Transaction<'_>,
    batch: &WriteBatch,
    id: Option<&[u8; 16]>,
) -> Result<Option<u64>, Fail> {
    if let Some(id) = id {
        let s = tx
            .prepare_cached("SELECT first_leaf, leaves, records FROM batches WHERE id = $1")
            .await?;
        if let Some(r) = tx.query_opt(&s, &[&&id[..]]).await? {
            let (f, l, n): (i64, i64, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            if l as usize != batch.leaves || n as usize != batch.records.len() {
                return Err(Fail::Store(StoreError::Corrupt(
                    "a batch id was used by another batch".into(),
                )));
            }
            return Ok(Some(f as u64));
        }
    }
    if let Some(expected) = batch.erasure_gen
        && meta_u64(tx, "erasure_gen", false).await? != expected
    {
        return Err(Fail::Store(StoreError::Conflict));
    }
    // A subject whose erasure has begun and not finished takes no new
    // record until it has.
    if !batch.records.is_empty() {
        let s = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM erasures)")
            .await?;
        let pending: bool = tx.query_one(&s, &[]).await?.try_get(0)?;
        if pending {
            let subjects: Vec<&[u8]> = batch.records.iter().map(|r| &r.subject[..]).collect();
            let s = tx
                .prepare_cached("SELECT 1 FROM erasures WHERE subject = ANY($1) LIMIT 1")
                .await?;
            if tx.query_opt(&s, &[&subjects]).await?.is_some() {
                return Err(Fail::Store(StoreError::Conflict));
            }
        }
    }
    Ok(None)
}

/// Writes a checked batch, its leaves and its id.
async fn write_rows(
    tx: &Transaction<'_>,
    batch: &WriteBatch,
    id: Option<&[u8; 16]>,
    first: u64,
    bodies: &[Vec<u8>],
) -> Result<(), Fail> {
    copy_records(tx, &batch.records).await?;
    copy_lookups(tx, batch).await?;
    if !batch.supersede.is_empty() {
        let s = tx
            .prepare_cached(
                "UPDATE records SET superseded_by = $3
                 WHERE id = $1 AND subject = $2 AND superseded_by IS NULL",
            )
            .await?;
        let drop_lookups = tx
            .prepare_cached("DELETE FROM lookups WHERE subject = $1 AND record = $2")
            .await?;
        for (old, subject, new) in &batch.supersede {
            let (old, subject, new) = (&old[..], &subject[..], &new[..]);
            if tx.execute(&s, &[&old, &subject, &new]).await? != 1 {
                return Err(Fail::Store(StoreError::Stale));
            }
            // The corrected value no longer finds the person.
            tx.execute(&drop_lookups, &[&subject, &old]).await?;
        }
    }
    if !batch.consents.is_empty() {
        let s = tx
            .prepare_cached(
                "INSERT INTO consents (subject, purpose, granted, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (subject, purpose) DO UPDATE
                 SET granted = excluded.granted, at = excluded.at
                 WHERE excluded.at >= consents.at",
            )
            .await?;
        for cr in &batch.consents {
            tx.execute(&s, &[&&cr.subject[..], &cr.purpose, &cr.granted, &cr.at])
                .await?;
        }
    }
    append(tx, first, bodies).await?;
    if let Some(step) = &batch.run {
        crate::ops::run_step(tx, step, (batch.leaves > 0).then_some(first), true).await?;
    }
    if let Some(id) = id {
        let s = tx
            .prepare_cached(
                "INSERT INTO batches (id, first_leaf, leaves, records) VALUES ($1, $2, $3, $4)",
            )
            .await?;
        tx.execute(
            &s,
            &[
                &&id[..],
                &(first as i64),
                &(batch.leaves as i64),
                &(batch.records.len() as i64),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Quota counts and reuse of an instrument, read after the tree lock.
async fn submit_facts(tx: &Transaction<'_>, q: &SubmitQuery) -> Result<SubmitFacts, Fail> {
    let count = async |sql: &str, key: &(dyn ToSql + Sync), since: i64| {
        let n: i64 = tx.query_one(sql, &[key, &since]).await?.try_get(0)?;
        Ok::<_, Fail>(u32::try_from(n).unwrap_or(u32::MAX))
    };
    // People, not requests: each request counts the subjects it names
    // (16 bytes each), and one if it names nobody.
    let by_requester = "SELECT coalesce(sum(greatest(octet_length(subjects) / 16, 1)), 0)
         FROM disclosures WHERE requester = $1 AND submitted_at >= $2";
    let mut facts = SubmitFacts {
        requester_people_24h: count(by_requester, &q.requester, q.since_24h).await?,
        requester_people_30d: count(by_requester, &q.requester, q.since_30d).await?,
        ..SubmitFacts::default()
    };
    if let Some(case) = &q.case_key {
        facts.case_people_30d = count(
            "SELECT coalesce(sum(greatest(octet_length(subjects) / 16, 1)), 0)
             FROM disclosures WHERE case_key = $1 AND submitted_at >= $2",
            &&case[..],
            q.since_30d,
        )
        .await?;
    }
    if let Some(key) = &q.instrument_key {
        let n: i64 = tx
            .query_one(
                "SELECT count(*) FROM disclosures WHERE instrument_key = $1 AND status <> 'refused'",
                &[&&key[..]],
            )
            .await?
            .try_get(0)?;
        facts.used_before = n > 0;
    }
    let seq: i64 = tx
        .query_one("SELECT coalesce(max(seq), 0) + 1 FROM disclosures", &[])
        .await?
        .try_get(0)?;
    facts.seq = seq as u64;
    Ok(facts)
}

impl Store for PgStore {
    fn write(&self, batch: &WriteBatch, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        let id = batch_id(batch);
        self.db.session(id.is_some(), |w, c| {
            let (tx, first, done) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let first = lock_tree(&tx).await?;
                let done = write_checks(&tx, batch, id.as_ref()).await?;
                Ok::<_, Fail>((tx, first, done))
            })?;
            if let Some(first) = done {
                return Ok(first);
            }
            let bodies = build_leaves(first, batch.leaves, leaf)?;
            w.wait(async {
                write_rows(&tx, batch, id.as_ref(), first, &bodies).await?;
                tx.commit().await?;
                Ok(first)
            })
        })
    }

    fn read_scoped(
        &self,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut ReadLeafFn<'_>,
    ) -> Result<(SubjectData, u64), StoreError> {
        // Returns only after COMMIT is flushed (synchronous_commit=on): no
        // data leaves before its leaf is durable. Concurrent reads share a
        // commit; under serializable isolation each read is its own
        // transaction, retried on a serialization failure.
        if !matches!(self.isolation, IsolationLevel::Serializable) {
            return self.reads.read(&self.db, subject, scope, leaf);
        }
        self.db.session(false, |w, c| {
            let (tx, idx, data) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let idx = lock_tree(&tx).await?;
                let data = read_scope(&tx, subject, scope).await?;
                Ok::<_, Fail>((tx, idx, data))
            })?;
            let body = guarded(|| leaf(&data, idx))?;
            w.wait(async {
                append(&tx, idx, &[body]).await?;
                tx.commit().await?;
                Ok::<_, Fail>(())
            })?;
            Ok((data, idx))
        })
    }

    fn consent(
        &self,
        subject: &SubjectRef,
        purpose: &str,
    ) -> Result<Option<ConsentRow>, StoreError> {
        self.db
            .run(false, async |c| consent_of(&*c, subject, purpose).await)
    }

    fn lookup(&self, token: &[u8; 16]) -> Result<Vec<SubjectRef>, StoreError> {
        self.db.run(false, async |c| {
            let s = c
                .prepare_cached(
                    "SELECT DISTINCT subject FROM lookups WHERE token = $1 ORDER BY subject",
                )
                .await?;
            c.query(&s, &[&&token[..]])
                .await?
                .iter()
                .map(|r| ref16(r.try_get(0)?, "subject ref"))
                .collect()
        })
    }

    fn add_principal(&self, p: &PrincipalRow) -> Result<(), StoreError> {
        let n = self.db.run(false, async |c| {
            Ok(c.execute(
                "INSERT INTO principals (name, role, token_hash, created_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &p.name,
                    &p.role,
                    &p.token_hash,
                    &p.created_at,
                    &p.revoked_at,
                ],
            )
            .await?)
        })?;
        if n == 0 {
            return Err(StoreError::PrincipalExists(p.name.clone()));
        }
        Ok(())
    }

    fn principal(&self, name: &str) -> Result<Option<PrincipalRow>, StoreError> {
        self.db.run(false, async |c| {
            let s = c
                .prepare_cached(&format!(
                    "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE name = $1"
                ))
                .await?;
            match c.query_opt(&s, &[&name]).await? {
                Some(r) => Ok(Some(principal_from_row(&r)?)),
                None => Ok(None),
            }
        })
    }

    fn principals(&self) -> Result<Vec<PrincipalRow>, StoreError> {
        self.db.run(false, async |c| {
            let s = c
                .prepare_cached(&format!(
                    "SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY name COLLATE \"C\""
                ))
                .await?;
            c.query(&s, &[])
                .await?
                .iter()
                .map(principal_from_row)
                .collect()
        })
    }

    fn principal_by_token(&self, token_hash: &[u8]) -> Result<Option<PrincipalRow>, StoreError> {
        self.db.run(false, async |c| {
            // The unique index `principals_token` answers it.
            let s = c
                .prepare_cached(&format!(
                    "SELECT {PRINCIPAL_COLUMNS} FROM principals
                     WHERE token_hash = $1 AND revoked_at IS NULL"
                ))
                .await?;
            match c.query_opt(&s, &[&token_hash]).await? {
                Some(r) => Ok(Some(principal_from_row(&r)?)),
                None => Ok(None),
            }
        })
    }

    fn revoke_principal(
        &self,
        name: &str,
        at: i64,
        leaf: &mut LeafFn<'_>,
    ) -> Result<u64, StoreError> {
        self.principal_step(
            name,
            "UPDATE principals SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
            &at,
            leaf,
        )
    }

    fn rotate_principal(
        &self,
        name: &str,
        token_hash: &[u8],
        leaf: &mut LeafFn<'_>,
    ) -> Result<u64, StoreError> {
        self.principal_step(
            name,
            "UPDATE principals SET token_hash = $2 WHERE name = $1 AND revoked_at IS NULL",
            &token_hash,
            leaf,
        )
    }

    fn principals_gen(&self) -> Result<u64, StoreError> {
        self.db
            .run(false, async |c| meta_u64_of(c, "principals_gen").await)
    }

    fn log_size(&self) -> Result<u64, StoreError> {
        self.db.run(false, async |c| {
            let s = c
                .prepare_cached("SELECT size FROM tree_state WHERE id = 1")
                .await?;
            Ok(c.query_one(&s, &[]).await?.try_get::<_, i64>(0)? as u64)
        })
    }

    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let (a, b) = (
            start.min(i64::MAX as u64) as i64,
            end.min(i64::MAX as u64) as i64,
        );
        self.db.run(false, async |c| {
            let s = c
                .prepare_cached(
                    "SELECT idx, body FROM leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                )
                .await?;
            let mut out = Vec::new();
            for (expect, r) in (start..).zip(c.query(&s, &[&a, &b]).await?) {
                let idx: i64 = r.try_get(0)?;
                if idx as u64 != expect {
                    return Err(Fail::Store(StoreError::Corrupt(format!(
                        "log leaf {expect} is missing (found {idx} next)"
                    ))));
                }
                out.push(r.try_get(1)?);
            }
            Ok(out)
        })
    }

    fn log_hashes(&self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
        let ix: Vec<i64> = indexes.iter().map(|&i| i as i64).collect();
        let found: HashMap<i64, Vec<u8>> = self.db.run(false, async |c| {
            let s = c
                .prepare_cached("SELECT idx, hash FROM log_hashes WHERE idx = ANY($1)")
                .await?;
            let mut m = HashMap::with_capacity(ix.len());
            for r in c.query(&s, &[&ix]).await? {
                m.insert(r.try_get::<_, i64>(0)?, r.try_get::<_, Vec<u8>>(1)?);
            }
            Ok(m)
        })?;
        indexes
            .iter()
            .map(|&i| {
                found
                    .get(&(i as i64))
                    .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("log hash {i} is missing")))
            })
            .collect()
    }

    fn hashed_size(&self) -> Result<u64, StoreError> {
        self.db
            .run(false, async |c| meta_u64_of(c, "log_hashed_size").await)
    }

    fn put_log_hashes(
        &self,
        from: u64,
        to: u64,
        hashes: &[(u64, [u8; 32])],
    ) -> Result<bool, StoreError> {
        let idx: Vec<i64> = hashes.iter().map(|(i, _)| *i as i64).collect();
        let hs: Vec<&[u8]> = hashes.iter().map(|(_, h)| &h[..]).collect();
        self.db.run(false, async |c| {
            let tx = begin(c, self.isolation).await?;
            // The hashed size's row orders hash writers of every node; they
            // do not wait for ingest.
            if meta_u64(&tx, "log_hashed_size", true).await? != from {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO log_hashes (idx, hash) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                &[&idx, &hs],
            )
            .await?;
            tx.execute(
                "UPDATE meta SET value = $1 WHERE key = 'log_hashed_size'",
                &[&to.to_string()],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        self.db.run(false, async |c| {
            c.execute(
                "INSERT INTO log_checkpoints (size, note) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&(size as i64), &note],
            )
            .await?;
            Ok(())
        })
    }

    fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        self.db.run(false, async |c| {
            c.query("SELECT size, note FROM log_checkpoints ORDER BY size", &[])
                .await?
                .iter()
                .map(|r| Ok((r.try_get::<_, i64>(0)? as u64, r.try_get(1)?)))
                .collect()
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.db.run(false, async |c| {
            match c
                .query_opt(
                    "SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1",
                    &[],
                )
                .await?
            {
                Some(r) => Ok(Some((r.try_get::<_, i64>(0)? as u64, r.try_get(1)?))),
                None => Ok(None),
            }
        })
    }

    fn checkpoint_note(&self, size: u64) -> Result<Option<String>, StoreError> {
        self.db.run(true, async |c| {
            Ok(c.query_opt(
                "SELECT note FROM log_checkpoints WHERE size = $1",
                &[&(size as i64)],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
        })
    }

    fn put_cosignatures(&self, size: u64, lines: &[(String, String)]) -> Result<(), StoreError> {
        let cosigners: Vec<&str> = lines.iter().map(|(c, _)| c.as_str()).collect();
        let texts: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        self.db.run(true, async |c| {
            c.execute(
                "INSERT INTO log_cosignatures (size, cosigner, line)
                 SELECT $1, c, l FROM unnest($2::text[], $3::text[]) AS x (c, l)
                 ON CONFLICT (size, cosigner) DO UPDATE SET line = excluded.line",
                &[&(size as i64), &cosigners, &texts],
            )
            .await?;
            Ok(())
        })
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.db.run(true, async |c| {
            c.query(
                "SELECT cosigner, line FROM log_cosignatures WHERE size = $1
                 ORDER BY cosigner COLLATE \"C\"",
                &[&(size as i64)],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    fn latest_cosigned(
        &self,
        cosigners: &[String],
        quorum: usize,
    ) -> Result<Option<u64>, StoreError> {
        if cosigners.is_empty() {
            return Ok(None);
        }
        self.db.run(true, async |c| {
            Ok(c.query_opt(
                "SELECT size FROM log_cosignatures WHERE cosigner = ANY($1)
                 GROUP BY size HAVING count(*) >= $2 ORDER BY size DESC LIMIT 1",
                &[&cosigners, &(quorum as i64)],
            )
            .await?
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()?
            .map(|n| n as u64))
        })
    }

    fn cosigned_by(&self, cosigner: &str) -> Result<Option<u64>, StoreError> {
        self.db.run(true, async |c| {
            let n: Option<i64> = c
                .query_one(
                    "SELECT max(size) FROM log_cosignatures WHERE cosigner = $1",
                    &[&cosigner],
                )
                .await?
                .try_get(0)?;
            Ok(n.map(|n| n as u64))
        })
    }

    fn record_count(&self) -> Result<u64, StoreError> {
        self.db.run(false, async |c| {
            Ok(c.query_one("SELECT count(*) FROM records", &[])
                .await?
                .try_get::<_, i64>(0)? as u64)
        })
    }

    fn submit_disclosure(
        &self,
        q: &SubmitQuery,
        decide: &mut SubmitFn<'_>,
    ) -> Result<(DisclosureRow, u64), StoreError> {
        self.db.session(false, |w, c| {
            let (tx, idx, facts, data) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let idx = lock_tree(&tx).await?;
                let facts = submit_facts(&tx, q).await?;
                let mut data = Vec::with_capacity(q.subjects.len());
                for subject in &q.subjects {
                    data.push(read_protective(&tx, subject).await?);
                }
                Ok::<_, Fail>((tx, idx, facts, data))
            })?;
            let (mut row, body) = guarded(|| decide(&facts, &data, idx))?;
            row.seq = facts.seq;
            w.wait(async {
                insert_disclosure(&tx, &row).await?;
                append(&tx, idx, &[body]).await?;
                tx.commit().await?;
                Ok::<_, Fail>(())
            })?;
            Ok((row, idx))
        })
    }

    fn disclosure_step(
        &self,
        id: &str,
        plan: &mut PlanFn<'_>,
        step: &mut StepFn<'_>,
    ) -> Result<(Vec<SubjectData>, u64), StoreError> {
        self.db.session(false, |w, c| {
            let (tx, first, row) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let first = lock_tree(&tx).await?;
                let row = load_disclosure(&tx, id).await?;
                Ok::<_, Fail>((tx, first, row))
            })?;
            let planned = guarded(|| plan(row.as_ref()))?;
            let data = w.wait(async {
                let mut data = Vec::with_capacity(planned.len());
                for subject in &planned {
                    data.push(read_subject(&tx, subject, true).await?);
                }
                Ok::<_, Fail>(data)
            })?;
            let st = guarded(|| step(row.as_ref(), &data, first))?;
            if st.leaves.is_empty() {
                return Err(Fail::Store(StoreError::Corrupt(
                    "a disclosure step must be accounted for by a leaf".into(),
                )));
            }
            if let Some(new) = &st.row
                && (row.is_none() || new.id != id)
            {
                return Err(Fail::Store(StoreError::Corrupt(
                    "a disclosure step may only change the request it was given".into(),
                )));
            }
            w.wait(async {
                if let Some(new) = &st.row {
                    update_disclosure(&tx, new).await?;
                }
                append(&tx, first, &st.leaves).await?;
                if let Some((at, intent)) = &st.intent {
                    if *at >= st.leaves.len() {
                        return Err(Fail::Store(StoreError::Corrupt(
                            "a disclosure step's intent must point at one of its leaves".into(),
                        )));
                    }
                    crate::ops::insert_intent(&tx, first + *at as u64, intent).await?;
                }
                for (i, a) in st.accounting.iter().enumerate() {
                    let leaf = st.accounting_leaf.get(i).copied().unwrap_or(0);
                    tx.execute(
                        "INSERT INTO accounting (disclosure, subject, at, leaf, records, categories)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[
                            &a.disclosure,
                            &&a.subject[..],
                            &a.at,
                            &((first + leaf as u64) as i64),
                            &(a.records as i64),
                            &a.categories.join(","),
                        ],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok::<_, Fail>(())
            })?;
            Ok((data, first))
        })
    }

    fn set_disclosure_keys(&self, keys: &[DisclosureKeys]) -> Result<(), StoreError> {
        self.db.run(true, async |c| {
            let tx = c.transaction().await?;
            for k in keys {
                let (i, c) = (
                    k.instrument_key.as_ref().map(|k| &k[..]),
                    k.case_key.as_ref().map(|k| &k[..]),
                );
                tx.execute(
                    "UPDATE disclosures SET instrument_key = $2, case_key = $3 WHERE id = $1",
                    &[&k.id, &i, &c],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn disclosure(&self, id: &str) -> Result<Option<DisclosureRow>, StoreError> {
        self.db.run(false, async |c| {
            let tx = c.transaction().await?;
            let row = load_disclosure(&tx, id).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    fn disclosures(&self) -> Result<Vec<DisclosureRow>, StoreError> {
        self.db.run(false, async |c| {
            c.query(
                &format!("SELECT {DISCLOSURE_COLUMNS} FROM disclosures ORDER BY seq"),
                &[],
            )
            .await?
            .iter()
            .map(disclosure_from_row)
            .collect()
        })
    }

    fn accounting(&self, subject: &SubjectRef) -> Result<Vec<AccountingRow>, StoreError> {
        self.db.run(false, async |c| {
            c.query(
                "SELECT disclosure, subject, at, leaf, records, categories FROM accounting
                 WHERE subject = $1 ORDER BY at, leaf",
                &[&&subject[..]],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(AccountingRow {
                    disclosure: r.try_get(0)?,
                    subject: ref16(r.try_get(1)?, "subject ref")?,
                    at: r.try_get(2)?,
                    leaf: r.try_get::<_, i64>(3)? as u64,
                    records: r.try_get::<_, i64>(4)? as u64,
                    categories: split_list(r.try_get(5)?),
                })
            })
            .collect()
        })
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.db.run(false, async |c| {
            match c
                .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
                .await?
            {
                Some(r) => Ok(Some(r.try_get(0)?)),
                None => Ok(None),
            }
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.db.run(false, async |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await?;
            Ok(())
        })
    }

    fn subject_records(&self, subject: &SubjectRef) -> Result<Vec<RecordRow>, StoreError> {
        self.db.run(false, async |c| {
            let tx = c.transaction().await?;
            let data = read_subject(&tx, subject, false).await?;
            tx.commit().await?;
            Ok(data.records)
        })
    }

    fn rekey(&self, records: &[RecordRow]) -> Result<u64, StoreError> {
        let ids: Vec<&[u8]> = records.iter().map(|r| &r.id[..]).collect();
        let subjects: Vec<&[u8]> = records.iter().map(|r| &r.subject[..]).collect();
        let key_ids: Vec<i64> = records.iter().map(|r| i64::from(r.key_id)).collect();
        let sealed: Vec<&[u8]> = records.iter().map(|r| r.sealed.as_slice()).collect();
        self.db.run(false, async |c| {
            let tx = begin(c, self.isolation).await?;
            let n = tx
                .execute(
                    "UPDATE records r SET key_id = d.key_id, sealed = d.sealed
                     FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bytea[])
                         AS d (id, subject, key_id, sealed)
                     WHERE r.id = d.id AND r.subject = d.subject",
                    &[&ids, &subjects, &key_ids, &sealed],
                )
                .await?;
            tx.commit().await?;
            Ok(n)
        })
    }

    fn sweep_expired(
        &self,
        now: i64,
        limit: usize,
        intent: Option<u64>,
    ) -> Result<SweepBatch, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db.run(false, async |c| {
            let tx = begin(c, self.isolation).await?;
            // Ordered with hold placements, so a hold committed before the
            // sweep is seen by it.
            lock_tree(&tx).await?;
            let rows = tx
                .query(
                    "DELETE FROM records WHERE (id, subject) IN (
                         SELECT id, subject FROM records
                         WHERE expires_at <= $1 AND subject NOT IN
                             (SELECT subject FROM holds WHERE released_at IS NULL AND until_at > $1)
                         ORDER BY expires_at LIMIT $2)
                     RETURNING id, subject, category",
                    &[&now, &limit],
                )
                .await?;
            let mut out = SweepBatch::default();
            let mut ids: Vec<&[u8]> = Vec::with_capacity(rows.len());
            let mut subjects: Vec<&[u8]> = Vec::with_capacity(rows.len());
            for r in &rows {
                ids.push(r.try_get(0)?);
                subjects.push(r.try_get(1)?);
                let category: String = r.try_get(2)?;
                out.deleted += 1;
                *out.by_category.entry(category).or_default() += 1;
            }
            if !ids.is_empty() {
                tx.execute(
                    "DELETE FROM lookups l USING unnest($1::bytea[], $2::bytea[]) AS d (subject, record)
                     WHERE l.subject = d.subject AND l.record = d.record",
                    &[&subjects, &ids],
                )
                .await?;
            }
            if let Some(id) = intent
                && out.deleted > 0
            {
                crate::ops::add_progress(&tx, id, out.deleted).await?;
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    fn count_expired(&self, now: i64) -> Result<u64, StoreError> {
        self.db
            .run(false, async |c| crate::ops::count_expired(&*c, now).await)
    }

    fn erase(
        &self,
        subjects: &[SubjectRef],
        now: i64,
        leaf: &mut EraseLeafFn<'_>,
        intent: &mut EraseIntentFn<'_>,
    ) -> Result<EraseOutcome, StoreError> {
        self.db.session(false, |w, c| {
            let (tx, out, held) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let first = lock_tree(&tx).await?;
                let asked = refs(subjects);
                let on_hold: HashSet<SubjectRef> = tx
                    .query(
                        "SELECT subject FROM holds
                         WHERE released_at IS NULL AND until_at > $1 AND subject = ANY($2)",
                        &[&now, &asked],
                    )
                    .await?
                    .iter()
                    .map(|r| ref16(r.try_get(0)?, "subject ref"))
                    .collect::<Result<_, _>>()?;
                let held: Vec<bool> = subjects.iter().map(|s| on_hold.contains(s)).collect();
                let mut out = EraseOutcome {
                    first_leaf: first,
                    ..EraseOutcome::default()
                };
                for (s, &h) in subjects.iter().zip(&held) {
                    if h {
                        out.held.push(*s);
                    } else {
                        out.erased.push(*s);
                    }
                }
                let erased = refs(&out.erased);
                if !erased.is_empty() {
                    tx.execute(
                        "INSERT INTO erasures (subject, at) SELECT DISTINCT s, $2::bigint
                         FROM unnest($1::bytea[]) AS s ON CONFLICT DO NOTHING",
                        &[&erased, &now],
                    )
                    .await?;
                    out.records = delete_rows_of(&tx, &erased).await?;
                    bump_erasure_gen(&tx).await?;
                }
                Ok::<_, Fail>((tx, out, held))
            })?;
            let first = out.first_leaf;
            let bodies = guarded(|| {
                subjects
                    .iter()
                    .zip(&held)
                    .enumerate()
                    .map(|(i, (s, &h))| leaf(first + i as u64, s, h))
                    .collect::<Vec<_>>()
            })?;
            let at = first + bodies.len() as u64;
            let planned = guarded(|| intent(at, &out))?;
            w.wait(async {
                append(&tx, first, &bodies).await?;
                if let Some((row, body)) = &planned {
                    append(&tx, at, std::slice::from_ref(body)).await?;
                    crate::ops::insert_intent(&tx, at, row).await?;
                }
                tx.commit().await?;
                Ok::<_, Fail>(())
            })?;
            Ok(out)
        })
    }

    fn pending_erasures(&self) -> Result<Vec<SubjectRef>, StoreError> {
        self.db.run(false, async |c| {
            c.query("SELECT subject FROM erasures ORDER BY subject", &[])
                .await?
                .iter()
                .map(|r| ref16(r.try_get(0)?, "subject ref"))
                .collect()
        })
    }

    fn finish_erasure(&self, subjects: &[SubjectRef]) -> Result<(), StoreError> {
        let done = refs(subjects);
        self.db.run(false, async |c| {
            let tx = begin(c, self.isolation).await?;
            lock_tree(&tx).await?;
            let pending: Vec<Vec<u8>> = tx
                .query("SELECT subject FROM erasures", &[])
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            let pending: Vec<&[u8]> = pending.iter().map(Vec::as_slice).collect();
            delete_rows_of(&tx, &pending).await?;
            tx.execute("DELETE FROM erasures WHERE subject = ANY($1)", &[&done])
                .await?;
            bump_erasure_gen(&tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn erasure_gen(&self) -> Result<u64, StoreError> {
        // One statement, no transaction: the facade asks before every read.
        self.db
            .run(false, async |c| meta_u64_of(c, "erasure_gen").await)
    }

    fn put_holds(&self, holds: &[HoldRow], leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        self.db.session(false, |w, c| {
            let (tx, first) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let first = lock_tree(&tx).await?;
                let s = tx
                    .prepare_cached(&format!(
                        "INSERT INTO holds ({HOLD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ))
                    .await?;
                for h in holds {
                    tx.execute(
                        &s,
                        &[
                            &h.id,
                            &&h.subject[..],
                            &h.disclosure,
                            &h.placed_by,
                            &h.placed_at,
                            &h.until,
                            &h.notice_after,
                            &h.released_at,
                            &h.released_by,
                        ],
                    )
                    .await?;
                }
                Ok::<_, Fail>((tx, first))
            })?;
            let bodies = build_leaves(first, holds.len(), leaf)?;
            w.wait(async {
                append(&tx, first, &bodies).await?;
                tx.commit().await?;
                Ok(first)
            })
        })
    }

    fn holds(&self, subject: Option<&SubjectRef>) -> Result<Vec<HoldRow>, StoreError> {
        self.db.run(false, async |c| {
            let rows = match subject {
                Some(s) => {
                    c.query(
                        &format!(
                            "SELECT {HOLD_COLUMNS} FROM holds WHERE subject = $1
                             ORDER BY placed_at, id COLLATE \"C\""
                        ),
                        &[&&s[..]],
                    )
                    .await?
                }
                None => {
                    c.query(
                        &format!(
                            "SELECT {HOLD_COLUMNS} FROM holds
                             ORDER BY placed_at, id COLLATE \"C\", subject"
                        ),
                        &[],
                    )
                    .await?
                }
            };
            rows.iter().map(hold_from_row).collect()
        })
    }

    fn run(&self, run: &[u8; 16]) -> Result<Option<RunRow>, StoreError> {
        self.db
            .run(false, async |c| crate::ops::run(&*c, run).await)
    }

    fn finish_run(&self, step: &RunStep) -> Result<(), StoreError> {
        self.db.run(false, async |c| {
            let tx = begin(c, self.isolation).await?;
            // Ordered with the run's batches, which lock the tree first.
            lock_tree(&tx).await?;
            crate::ops::run_step(&tx, step, None, false).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn put_intent(&self, intent: &Intent, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        self.db.session(false, |w, c| {
            let (tx, first) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let first = lock_tree(&tx).await?;
                Ok::<_, Fail>((tx, first))
            })?;
            let bodies = build_leaves(first, 1, leaf)?;
            w.wait(async {
                append(&tx, first, &bodies).await?;
                crate::ops::insert_intent(&tx, first, intent).await?;
                tx.commit().await?;
                Ok(first)
            })
        })
    }

    fn intents(&self) -> Result<Vec<IntentRow>, StoreError> {
        self.db.run(false, async |c| crate::ops::intents(&*c).await)
    }

    fn finish_intent(
        &self,
        id: u64,
        leaf: &mut dyn FnMut(u64, &IntentRow) -> Vec<u8>,
    ) -> Result<Option<u64>, StoreError> {
        self.db.session(false, |w, c| {
            let (tx, first, row) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let first = lock_tree(&tx).await?;
                let row = crate::ops::take_intent(&tx, id).await?;
                Ok::<_, Fail>((tx, first, row))
            })?;
            let Some(row) = row else {
                return Ok(None);
            };
            let body = guarded(|| leaf(first, &row))?;
            w.wait(async {
                append(&tx, first, std::slice::from_ref(&body)).await?;
                tx.commit().await?;
                Ok(Some(first))
            })
        })
    }

    fn key_usage(&self) -> Result<Vec<KeyUse>, StoreError> {
        self.db
            .run(false, async |c| crate::ops::key_usage(&*c).await)
    }

    fn record_subjects(
        &self,
        after: Option<&SubjectRef>,
        limit: usize,
    ) -> Result<Vec<(SubjectRef, u64)>, StoreError> {
        self.db.run(false, async |c| {
            crate::ops::record_subjects(&*c, after, limit).await
        })
    }

    fn release_hold(
        &self,
        id: &str,
        by: &str,
        at: i64,
        leaf: &mut dyn FnMut(u64, &HoldRow) -> Vec<u8>,
    ) -> Result<Vec<HoldRow>, StoreError> {
        self.db.session(false, |w, c| {
            let (tx, first, mut rows) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let first = lock_tree(&tx).await?;
                let rows = tx
                    .query(
                        &format!(
                            "UPDATE holds SET released_at = $2, released_by = $3
                             WHERE id = $1 AND released_at IS NULL RETURNING {HOLD_COLUMNS}"
                        ),
                        &[&id, &at, &by],
                    )
                    .await?
                    .iter()
                    .map(hold_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok::<_, Fail>((tx, first, rows))
            })?;
            rows.sort_by_key(|r| r.subject);
            let bodies = guarded(|| {
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| leaf(first + i as u64, r))
                    .collect::<Vec<_>>()
            })?;
            w.wait(async {
                append(&tx, first, &bodies).await?;
                tx.commit().await?;
                Ok::<_, Fail>(())
            })?;
            Ok(rows)
        })
    }
}
