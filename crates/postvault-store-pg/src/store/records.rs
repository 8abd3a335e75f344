//! [`RecordStore`] on PostgreSQL: collection batches (binary COPY inside the
//! tree-state lock, known by their batch id), grouped reads, consents and
//! lookups.

use super::*;

impl RecordStore for PgStore {
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
                    "SELECT DISTINCT subject FROM lookups WHERE token = $1
                       AND NOT EXISTS (SELECT 1 FROM purge p WHERE p.subject = lookups.subject)
                     ORDER BY subject",
                )
                .await?;
            c.query(&s, &[&&token[..]])
                .await?
                .iter()
                .map(|r| ref16(r.try_get(0)?, "subject ref"))
                .collect()
        })
    }

    fn record_count(&self) -> Result<u64, StoreError> {
        self.db.run(false, async |c| {
            Ok(c.query_one(
                "SELECT count(*) FROM records
                 WHERE NOT EXISTS (SELECT 1 FROM purge p WHERE p.subject = records.subject)",
                &[],
            )
            .await?
            .try_get::<_, i64>(0)? as u64)
        })
    }
}

/// What a batch must pass before it is written; `Some(first leaf)` if it
/// was written already (an earlier attempt committed, though its caller did
/// not hear so): not a second time.
pub(super) async fn write_checks(
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
pub(super) async fn write_rows(
    tx: &Transaction<'_>,
    batch: &WriteBatch,
    id: Option<&[u8; 16]>,
    first: u64,
    bodies: &[Leaf],
) -> Result<(), Fail> {
    resolve_purge(tx, batch).await?;
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

/// The id a collection batch is known by: its first record's id (UUIDv7,
/// unique per batch). A batch without records has none and is not retried
/// after an ambiguous commit.
pub(super) fn batch_id(batch: &WriteBatch) -> Option<[u8; 16]> {
    batch.records.first().map(|r| r.id)
}

/// A person collected again after their erasure leaves the purge queue in
/// the transaction that writes their new rows, and their old (dead) rows
/// are deleted first. The queue row is deleted (and so locked) before the
/// rows: a purge running beside this takes its people with `FOR UPDATE
/// SKIP LOCKED`, so the two never both delete one person's rows.
async fn resolve_purge(tx: &Transaction<'_>, batch: &WriteBatch) -> Result<(), Fail> {
    if batch.records.is_empty() && batch.lookups.is_empty() {
        return Ok(());
    }
    let s = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM purge)")
        .await?;
    if !tx.query_one(&s, &[]).await?.try_get::<_, bool>(0)? {
        return Ok(());
    }
    let mut subjects: Vec<&[u8]> = batch
        .records
        .iter()
        .map(|r| &r.subject[..])
        .chain(batch.lookups.iter().map(|l| &l.subject[..]))
        .collect();
    subjects.sort_unstable();
    subjects.dedup();
    let s = tx
        .prepare_cached("DELETE FROM purge WHERE subject = ANY($1) RETURNING subject")
        .await?;
    let taken: Vec<Vec<u8>> = tx
        .query(&s, &[&subjects])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    if !taken.is_empty() {
        for t in ["records", "lookups"] {
            tx.execute(
                &format!("DELETE FROM {t} WHERE subject = ANY($1)"),
                &[&taken],
            )
            .await?;
        }
    }
    Ok(())
}
