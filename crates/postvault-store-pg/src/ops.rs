//! The PostgreSQL side of collection runs, write-ahead intents and the
//! counts `postvault check` needs (the same rows as the SQLite store's).
//! Every function runs inside the caller's transaction; those that write
//! run after the tree-state lock, so they are ordered with every other
//! leaf-appending transaction of every node.

use deadpool_postgres::Transaction;
use postvault_store::{IntentRow, KeyUse, RunBatch, RunRow, RunStep, StoreError, SubjectRef};

use crate::db::Fail;
use crate::store::ref16;

fn digest32(v: &[u8]) -> Result<[u8; 32], Fail> {
    <[u8; 32]>::try_from(v)
        .map_err(|_| Fail::Store(StoreError::Corrupt("a run's digest is not 32 bytes".into())))
}

/// Checks a run's stored progress against `step.after_line` and writes the
/// step (and its batch row, with the batch's leaf).
pub(crate) async fn run_step(
    tx: &Transaction<'_>,
    step: &RunStep,
    leaf: Option<u64>,
    batch: bool,
) -> Result<(), Fail> {
    let s = tx
        .prepare_cached("SELECT through_line, finished_at FROM runs WHERE id = $1 FOR UPDATE")
        .await?;
    let stored = tx.query_opt(&s, &[&&step.run[..]]).await?;
    let finished_at = step.finished.then_some(step.at);
    match stored {
        None if step.after_line == 0 => {
            tx.execute(
                "INSERT INTO runs (id, principal, started_at, updated_at, through_line, digest, finished_at)
                 VALUES ($1, $2, $3, $3, $4, $5, $6)",
                &[
                    &&step.run[..],
                    &step.principal,
                    &step.at,
                    &(step.through_line as i64),
                    &&step.digest[..],
                    &finished_at,
                ],
            )
            .await?;
        }
        None => return Err(Fail::Store(StoreError::RunMoved(0))),
        Some(r) => {
            let through: i64 = r.try_get(0)?;
            let finished: Option<i64> = r.try_get(1)?;
            if through as u64 != step.after_line || finished.is_some() {
                return Err(Fail::Store(StoreError::RunMoved(through as u64)));
            }
            tx.execute(
                "UPDATE runs SET updated_at = $2, through_line = $3, digest = $4, finished_at = $5
                 WHERE id = $1",
                &[
                    &&step.run[..],
                    &step.at,
                    &(step.through_line as i64),
                    &&step.digest[..],
                    &finished_at,
                ],
            )
            .await?;
        }
    }
    if batch {
        let s = tx
            .prepare_cached(
                "INSERT INTO run_batches (run, first_line, last_line, leaf, accepted, rejected,
                     categories, errors) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .await?;
        tx.execute(
            &s,
            &[
                &&step.run[..],
                &((step.after_line + 1) as i64),
                &(step.through_line as i64),
                &leaf.map(|l| l as i64),
                &(step.accepted as i64),
                &(step.rejected as i64),
                &step.categories,
                &step.errors,
            ],
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn run<C: deadpool_postgres::GenericClient>(
    c: &C,
    id: &[u8; 16],
) -> Result<Option<RunRow>, Fail> {
    let Some(r) = c
        .query_opt(
            "SELECT principal, started_at, updated_at, through_line, digest, finished_at
             FROM runs WHERE id = $1",
            &[&&id[..]],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut row = RunRow {
        run: *id,
        principal: r.try_get(0)?,
        started_at: r.try_get(1)?,
        updated_at: r.try_get(2)?,
        through_line: r.try_get::<_, i64>(3)? as u64,
        digest: digest32(r.try_get(4)?)?,
        finished_at: r.try_get(5)?,
        batches: Vec::new(),
    };
    for b in c
        .query(
            "SELECT first_line, last_line, leaf, accepted, rejected, categories, errors
             FROM run_batches WHERE run = $1 ORDER BY first_line",
            &[&&id[..]],
        )
        .await?
    {
        row.batches.push(RunBatch {
            first_line: b.try_get::<_, i64>(0)? as u64,
            last_line: b.try_get::<_, i64>(1)? as u64,
            leaf: b.try_get::<_, Option<i64>>(2)?.map(|l| l as u64),
            accepted: b.try_get::<_, i64>(3)? as u64,
            rejected: b.try_get::<_, i64>(4)? as u64,
            categories: b.try_get(5)?,
            errors: b.try_get(6)?,
        });
    }
    Ok(Some(row))
}

/// Records an intent with the leaf at `idx` and counts it.
pub(crate) async fn insert_intent(
    tx: &Transaction<'_>,
    idx: u64,
    intent: &postvault_store::Intent,
) -> Result<(), Fail> {
    tx.execute(
        "INSERT INTO intents (id, kind, body, at, progress) VALUES ($1, $2, $3, $4, 0)",
        &[&(idx as i64), &intent.kind, &intent.body, &intent.at],
    )
    .await?;
    tx.execute(
        "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'intents_written'",
        &[],
    )
    .await?;
    Ok(())
}

fn intent_from_row(r: &tokio_postgres::Row) -> Result<IntentRow, Fail> {
    Ok(IntentRow {
        id: r.try_get::<_, i64>(0)? as u64,
        kind: r.try_get(1)?,
        body: r.try_get(2)?,
        at: r.try_get(3)?,
        progress: r.try_get::<_, i64>(4)? as u64,
    })
}

pub(crate) async fn intents<C: deadpool_postgres::GenericClient>(
    c: &C,
) -> Result<Vec<IntentRow>, Fail> {
    c.query(
        "SELECT id, kind, body, at, progress FROM intents ORDER BY id",
        &[],
    )
    .await?
    .iter()
    .map(intent_from_row)
    .collect()
}

/// Removes intent `id` and returns it, if it is still there.
pub(crate) async fn take_intent(tx: &Transaction<'_>, id: u64) -> Result<Option<IntentRow>, Fail> {
    match tx
        .query_opt(
            "DELETE FROM intents WHERE id = $1 RETURNING id, kind, body, at, progress",
            &[&(id as i64)],
        )
        .await?
    {
        Some(r) => Ok(Some(intent_from_row(&r)?)),
        None => Ok(None),
    }
}

pub(crate) async fn add_progress(tx: &Transaction<'_>, id: u64, n: u64) -> Result<(), Fail> {
    tx.execute(
        "UPDATE intents SET progress = progress + $2 WHERE id = $1",
        &[&(id as i64), &(n as i64)],
    )
    .await?;
    Ok(())
}

pub(crate) async fn key_usage<C: deadpool_postgres::GenericClient>(
    c: &C,
) -> Result<Vec<KeyUse>, Fail> {
    let hold = i64::from(postvault_store::key_id::HOLD);
    let mut out = Vec::new();
    for r in c
        .query(
            "SELECT key_id, category, expires_at,
                    CASE WHEN key_id = $1 THEN subject END AS holder, count(*)
             FROM records
             WHERE NOT EXISTS (SELECT 1 FROM purge p WHERE p.subject = records.subject)
             GROUP BY key_id, category, expires_at, holder
             ORDER BY key_id, category, expires_at, holder",
            &[&hold],
        )
        .await?
    {
        let subject: Option<&[u8]> = r.try_get(3)?;
        out.push(KeyUse {
            key_id: u32::try_from(r.try_get::<_, i64>(0)?).map_err(|_| {
                Fail::Store(StoreError::Corrupt(
                    "a record's key id is out of range".into(),
                ))
            })?,
            category: r.try_get(1)?,
            expires_at: r.try_get(2)?,
            subject: match subject {
                Some(s) => Some(ref16(s, "subject ref")?),
                None => None,
            },
            records: r.try_get::<_, i64>(4)? as u64,
        });
    }
    Ok(out)
}

pub(crate) async fn record_subjects<C: deadpool_postgres::GenericClient>(
    c: &C,
    after: Option<&SubjectRef>,
    limit: usize,
) -> Result<Vec<(SubjectRef, u64)>, Fail> {
    let from: &[u8] = after.map_or(&[], |a| &a[..]);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    c.query(
        "SELECT subject, count(*) FROM records WHERE subject > $1
           AND NOT EXISTS (SELECT 1 FROM purge p WHERE p.subject = records.subject)
         GROUP BY subject ORDER BY subject LIMIT $2",
        &[&from, &limit],
    )
    .await?
    .iter()
    .map(|r| {
        Ok((
            ref16(r.try_get(0)?, "subject ref")?,
            r.try_get::<_, i64>(1)? as u64,
        ))
    })
    .collect()
}

pub(crate) async fn count_expired<C: deadpool_postgres::GenericClient>(
    c: &C,
    now: i64,
) -> Result<u64, Fail> {
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM records WHERE expires_at <= $1 AND subject NOT IN
                 (SELECT subject FROM holds WHERE released_at IS NULL AND until_at > $1)
               AND NOT EXISTS (SELECT 1 FROM purge p WHERE p.subject = records.subject)",
            &[&now],
        )
        .await?
        .try_get(0)?;
    Ok(n as u64)
}
