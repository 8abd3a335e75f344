//! [`RightsStore`] on PostgreSQL: retention sweeps, erasure in steps, legal
//! holds and re-keying.

use std::collections::BTreeMap;

use super::*;

impl RightsStore for PgStore {
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
                           AND NOT EXISTS
                             (SELECT 1 FROM purge p WHERE p.subject = records.subject)
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
                // With their delay orders, in this transaction: a hold
                // another node places is seen whole or not at all.
                let on_hold: HashMap<SubjectRef, bool> = tx
                    .query(
                        "SELECT subject, bool_and(coalesce(notice_after > $1, false)) FROM holds
                         WHERE released_at IS NULL AND until_at > $1 AND subject = ANY($2)
                         GROUP BY subject",
                        &[&now, &asked],
                    )
                    .await?
                    .iter()
                    .map(|r| Ok((ref16(r.try_get(0)?, "subject ref")?, r.try_get(1)?)))
                    .collect::<Result<_, Fail>>()?;
                let held: Vec<Held> = subjects
                    .iter()
                    .map(|s| Held::found(on_hold.get(s).copied()))
                    .collect();
                let mut out = EraseOutcome {
                    first_leaf: first,
                    ..EraseOutcome::default()
                };
                for (s, &h) in subjects.iter().zip(&held) {
                    if h.refused() {
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
                    out.records_by = kill_rows_of(&tx, &erased, now).await?;
                    out.records = out.records_by.values().sum();
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
                    append(&tx, at, &[body.clone().into()]).await?;
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
            finish_erasure_in(&tx, &done).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn finish_erasure_with(
        &self,
        subjects: &[SubjectRef],
        intent: Option<u64>,
        leaf: &mut dyn FnMut(u64, &IntentRow) -> Vec<u8>,
        purge: &[SubjectRef],
        purge_max: u64,
    ) -> Result<ErasureFinish, StoreError> {
        let done = refs(subjects);
        let asked = refs(purge);
        self.db.session(false, |w, c| {
            let (tx, first, row) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let first = lock_tree(&tx).await?;
                finish_erasure_in(&tx, &done).await?;
                let row = match intent {
                    Some(id) => crate::ops::take_intent(&tx, id).await?,
                    None => None,
                };
                Ok::<_, Fail>((tx, first, row))
            })?;
            let body: Option<Leaf> = match &row {
                Some(row) => Some(guarded(|| leaf(first, row))?.into()),
                None => None,
            };
            w.wait(async {
                if let Some(body) = &body {
                    append(&tx, first, std::slice::from_ref(body)).await?;
                }
                // Every row of theirs, dead or alive, but a mail cover's
                // (which are purged, not counted): more than the bound are
                // left to the caller's purge, after this commit.
                let rows: i64 = if asked.is_empty() {
                    0
                } else {
                    tx.query_one(
                        "SELECT count(*) FILTER (WHERE NOT key_id BETWEEN 1 AND 2147483647)
                         FROM records
                         WHERE subject = ANY($1) AND subject IN (SELECT subject FROM purge)",
                        &[&asked],
                    )
                    .await?
                    .try_get(0)?
                };
                let purged = if asked.is_empty() || rows as u64 > purge_max {
                    None
                } else {
                    Some(purge_in(&tx, PURGE_SUBJECTS, &[&asked]).await?)
                };
                tx.commit().await?;
                Ok(ErasureFinish {
                    completion_leaf: body.map(|_| first),
                    purged,
                })
            })
        })
    }

    fn purge_erased(&self, limit: usize) -> Result<PurgeBatch, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let each = self.purge_now(
            "DELETE FROM purge WHERE subject IN (
                 SELECT subject FROM purge
                 WHERE subject NOT IN (SELECT subject FROM erasures)
                 ORDER BY subject LIMIT $1
                 FOR UPDATE SKIP LOCKED)
             RETURNING subject",
            &[&limit],
        )?;
        Ok(PurgeBatch {
            people: each.len() as u64,
            records: each.iter().map(|(_, n)| n).sum(),
        })
    }

    fn purge_subjects(
        &self,
        subjects: &[SubjectRef],
    ) -> Result<Vec<(SubjectRef, u64)>, StoreError> {
        let asked = refs(subjects);
        self.purge_now(PURGE_SUBJECTS, &[&asked])
    }

    fn purge_pending(&self) -> Result<PurgeBatch, StoreError> {
        self.db.run(false, async |c| {
            let r = c
                .query_one(
                    "SELECT (SELECT count(*) FROM purge),
                            (SELECT count(*) FILTER (WHERE NOT key_id BETWEEN 1 AND 2147483647)
                             FROM records WHERE subject IN (SELECT subject FROM purge))",
                    &[],
                )
                .await?;
            Ok(PurgeBatch {
                people: r.try_get::<_, i64>(0)? as u64,
                records: r.try_get::<_, i64>(1)? as u64,
            })
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

    fn release_hold(
        &self,
        id: &str,
        by: &str,
        at: i64,
        leaf: &mut dyn FnMut(u64, &HoldRow) -> Leaf,
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

impl PgStore {
    /// One purge transaction: takes the queue rows `take` deletes (and so
    /// locks: a write collecting one of these people again waits for this
    /// transaction, then finds them gone from the queue and their old rows
    /// deleted; one that took a person first is skipped here), then
    /// deletes their records and lookups. People whose erasure is still
    /// pending are left for later: their `finish_erasure` would wait here.
    /// One purge transaction: the people `take` removes from the queue
    /// (returning their refs), their records and lookups deleted. Returns
    /// them in ref order, each with its records deleted.
    fn purge_now(
        &self,
        take: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<(SubjectRef, u64)>, StoreError> {
        self.db.run(false, async |c| {
            let tx = begin(c, self.isolation).await?;
            let each = purge_in(&tx, take, params).await?;
            tx.commit().await?;
            Ok(each)
        })
    }
}

/// Takes the people [`RightsStore::purge_subjects`] asks for ($1) off the
/// purge queue, returning them.
const PURGE_SUBJECTS: &str = "DELETE FROM purge WHERE subject IN (
         SELECT subject FROM purge
         WHERE subject = ANY($1) AND subject NOT IN (SELECT subject FROM erasures)
         FOR UPDATE SKIP LOCKED)
     RETURNING subject";

/// Erasure, last step, in `tx`: see [`RightsStore::finish_erasure`].
async fn finish_erasure_in(tx: &Transaction<'_>, done: &[&[u8]]) -> Result<(), Fail> {
    let pending: Vec<Vec<u8>> = tx
        .query("SELECT subject FROM erasures", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let pending: Vec<&[u8]> = pending.iter().map(Vec::as_slice).collect();
    // Anything written meanwhile (by a node that had not yet seen the
    // erasure) dies with the rest.
    tx.execute(
        "INSERT INTO purge (subject, at) SELECT subject, at FROM erasures AS t
         WHERE EXISTS (SELECT 1 FROM records WHERE records.subject = t.subject)
            OR EXISTS (SELECT 1 FROM lookups WHERE lookups.subject = t.subject)
         ON CONFLICT DO NOTHING",
        &[],
    )
    .await?;
    tx.execute("DELETE FROM consents WHERE subject = ANY($1)", &[&pending])
        .await?;
    tx.execute("DELETE FROM erasures WHERE subject = ANY($1)", &[&done])
        .await?;
    bump_erasure_gen(tx).await
}

/// The purge, in `tx`, of the people `take` (with `params`) takes off the
/// queue: their records and lookups deleted; each with its records.
async fn purge_in(
    tx: &Transaction<'_>,
    take: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<(SubjectRef, u64)>, Fail> {
    let taken: Vec<Vec<u8>> = tx
        .query(take, params)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut each: BTreeMap<SubjectRef, u64> = taken
        .iter()
        .map(|t| Ok((ref16(t, "subject ref")?, 0)))
        .collect::<Result<_, Fail>>()?;
    if !taken.is_empty() {
        for r in tx
            .query(
                // Records under mail-cover orders are deleted, not counted.
                "WITH d AS (DELETE FROM records WHERE subject = ANY($1) RETURNING subject, key_id)
                 SELECT subject, count(*) FILTER (WHERE NOT key_id BETWEEN 1 AND 2147483647)
                 FROM d GROUP BY subject",
                &[&taken],
            )
            .await?
        {
            let n: i64 = r.try_get(1)?;
            each.insert(ref16(r.try_get(0)?, "subject ref")?, n as u64);
        }
        tx.execute("DELETE FROM lookups WHERE subject = ANY($1)", &[&taken])
            .await?;
    }
    Ok(each.into_iter().collect())
}

pub(super) async fn bump_erasure_gen(tx: &Transaction<'_>) -> Result<(), Fail> {
    tx.execute(
        "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'erasure_gen'",
        &[],
    )
    .await?;
    Ok(())
}

/// Makes the rows of `subjects` dead: puts them in the purge queue (at
/// `at`; one already there stays as it was) and deletes their consents.
/// Returns their records that were alive until now, by subject (only
/// subjects that had any).
async fn kill_rows_of(
    tx: &Transaction<'_>,
    subjects: &[&[u8]],
    at: i64,
) -> Result<BTreeMap<SubjectRef, u64>, Fail> {
    let mut by = BTreeMap::new();
    for r in tx
        .query(
            // Not those recorded under mail-cover orders: the person may
            // not know of a cover (see postvault_store's SQLite
            // `without_covers`).
            "SELECT subject, count(*) FILTER (WHERE NOT key_id BETWEEN 1 AND 2147483647) AS n
             FROM records WHERE subject = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM purge p WHERE p.subject = records.subject)
             GROUP BY subject
             HAVING count(*) FILTER (WHERE NOT key_id BETWEEN 1 AND 2147483647) > 0",
            &[&subjects],
        )
        .await?
    {
        let n: i64 = r.try_get(1)?;
        by.insert(ref16(r.try_get(0)?, "subject ref")?, n as u64);
    }
    // Only people with rows: an identifier never collected leaves no ref.
    tx.execute(
        "INSERT INTO purge (subject, at) SELECT DISTINCT s, $2::bigint
         FROM unnest($1::bytea[]) AS s
         WHERE EXISTS (SELECT 1 FROM records WHERE records.subject = s)
            OR EXISTS (SELECT 1 FROM lookups WHERE lookups.subject = s)
         ON CONFLICT DO NOTHING",
        &[&subjects, &at],
    )
    .await?;
    tx.execute("DELETE FROM consents WHERE subject = ANY($1)", &[&subjects])
        .await?;
    Ok(by)
}

pub(super) const HOLD_COLUMNS: &str = "id, subject, disclosure, placed_by, placed_at, until_at,
    notice_after, released_at, released_by";

pub(super) fn hold_from_row(r: &Row) -> Result<HoldRow, Fail> {
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
