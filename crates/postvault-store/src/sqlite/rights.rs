//! [`RightsStore`] on SQLite: retention sweeps, erasure in steps, legal
//! holds and re-keying.

use super::*;
use crate::key_id::COVER_MAX;

impl RightsStore for SqliteStore {
    fn subject_records(&self, subject: &SubjectRef) -> Result<Vec<RecordRow>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        Ok(read_subject(&tx, subject)?.records)
    }

    fn subject_records_committed(
        &self,
        subject: &SubjectRef,
    ) -> Result<Vec<RecordRow>, StoreError> {
        // On a connection of its own (in one read transaction): a
        // correction reading the record it corrects neither waits for nor
        // commits early the open group.
        self.with_looker(|conn| Ok(read_subject(conn, subject)?.records))
    }

    fn rekey(&self, records: &[RecordRow]) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n = 0;
        {
            let mut s = tx.prepare_cached(
                "UPDATE records SET key_id = ?2, sealed = ?3 WHERE id = ?1 AND subject = ?4",
            )?;
            let blocks = super::stats::any_blocks(&tx)?;
            for r in records {
                // Blocks sealed under the record's old key go with it.
                if blocks {
                    super::stats::drop_blocks_of(&tx, &r.subject, Some(&r.id))?;
                }
                n += s.execute(params![r.id, r.key_id, r.sealed, r.subject])? as u64;
            }
        }
        bump_data_gen(&tx)?;
        tx.commit()?;
        Ok(n)
    }

    fn sweep_expired(
        &self,
        now: i64,
        limit: usize,
        intent: Option<u64>,
    ) -> Result<SweepBatch, StoreError> {
        let mut conn = self.conn_bulk();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = SweepBatch::default();
        {
            let mut q = tx.prepare_cached(
                "SELECT rowid, id, subject, category FROM records
                 WHERE expires_at <= ?1 AND subject NOT IN
                     (SELECT subject FROM holds WHERE released_at IS NULL AND until_at > ?1)
                   AND subject NOT IN (SELECT subject FROM purge)
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
            let blocks = super::stats::any_blocks(&tx)?;
            for (rowid, id, subject, category) in rows {
                if blocks {
                    super::stats::mark_blocks(&tx, &category, &subject)?;
                }
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
        if out.deleted > 0 {
            bump_data_gen(&tx)?;
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
        // Read in this transaction, with their delay orders: a hold placed
        // by another process is seen whole or not at all.
        let on_hold: std::collections::HashMap<SubjectRef, bool> = {
            let mut q = tx.prepare_cached(
                "SELECT subject, MIN(notice_after IS NOT NULL AND notice_after > ?1) FROM holds
                 WHERE released_at IS NULL AND until_at > ?1 GROUP BY subject",
            )?;
            q.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let held: Vec<Held> = subjects
            .iter()
            .map(|s| Held::found(on_hold.get(s).copied()))
            .collect();
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
                if h.refused() {
                    out.held.push(*s);
                } else {
                    pending.execute(params![s, now])?;
                    now_set.execute([s])?;
                    out.erased.push(*s);
                }
            }
        }
        // Set-based, this call's subjects only: their rows die here (the
        // purge deletes them later), their consents go now.
        out.records_by = kill_rows_of(&tx, "temp.erase_now", now)?;
        out.records = out.records_by.values().sum();
        tx.execute_batch("DELETE FROM temp.erase_now;")?;
        out.first_leaf = append(&tx, subjects.len(), &mut |idx, i| {
            leaf(idx, &subjects[i], held[i])
        })?;
        if !out.erased.is_empty() {
            bump_erasure_gen(&tx)?;
            bump_data_gen(&tx)?;
        }
        let idx = next_index(&tx)?;
        if let Some((row, body)) = intent(idx, &out) {
            append(&tx, 1, &mut |_, _| body.clone().into())?;
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
        finish_erasure_in(&tx, subjects)?;
        tx.commit()?;
        Ok(())
    }

    fn finish_erasure_with(
        &self,
        subjects: &[SubjectRef],
        intent: Option<u64>,
        leaf: &mut dyn FnMut(u64, &IntentRow) -> Vec<u8>,
        purge: &[SubjectRef],
        purge_max: u64,
    ) -> Result<ErasureFinish, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        finish_erasure_in(&tx, subjects)?;
        let mut out = ErasureFinish::default();
        if let Some(row) = intent
            .map(|id| sqlite_ops::take_intent(&tx, id))
            .transpose()?
            .flatten()
        {
            out.completion_leaf = Some(append(&tx, 1, &mut |idx, _| leaf(idx, &row).into())?);
        }
        if !purge.is_empty() {
            out.purged =
                purge_in(&tx, true, &|tx| pick_subjects(tx, purge), Some(purge_max))?.map(|p| p.1);
        }
        tx.commit()?;
        Ok(out)
    }

    fn purge_erased(&self, limit: usize) -> Result<PurgeBatch, StoreError> {
        purge_now(&mut self.conn_bulk(), false, &|tx| {
            Ok(tx
                .prepare_cached(
                    "INSERT INTO temp.purge_now (subject)
                     SELECT subject FROM purge
                     WHERE subject NOT IN (SELECT subject FROM erasures)
                     ORDER BY subject LIMIT ?1",
                )?
                .execute([limit as i64])? as u64)
        })
        .map(|(batch, _)| batch)
    }

    fn purge_subjects(
        &self,
        subjects: &[SubjectRef],
    ) -> Result<Vec<(SubjectRef, u64)>, StoreError> {
        purge_now(&mut self.conn(), true, &|tx| pick_subjects(tx, subjects)).map(|(_, each)| each)
    }

    fn purge_pending(&self) -> Result<PurgeBatch, StoreError> {
        let conn = self.conn();
        let people: i64 = conn.query_row("SELECT count(*) FROM purge", [], |r| r.get(0))?;
        // Not those under mail-cover orders, as the purge counts.
        let records: i64 = conn.query_row(
            &format!(
                "SELECT (SELECT count(*) FROM records WHERE subject IN (SELECT subject FROM purge))
                      - (SELECT count(*) FROM records INDEXED BY records_cover
                         WHERE key_id BETWEEN 1 AND {COVER_MAX}
                           AND subject IN (SELECT subject FROM purge))"
            ),
            [],
            |r| r.get(0),
        )?;
        Ok(PurgeBatch {
            people: people as u64,
            records: records as u64,
        })
    }

    fn erasure_gen(&self) -> Result<u64, StoreError> {
        // Every read asks first: on a connection of its own, so it neither
        // closes an open read group nor waits, outside the group's door,
        // for a group's commit to finish (readers held there would miss the
        // next group and commit alone). The value is the committed one: a
        // group never changes it.
        self.with_looker(erasure_gen)
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
        bump_data_gen(&tx)?;
        tx.commit()?;
        Ok(first)
    }

    fn holds(&self, subject: Option<&SubjectRef>) -> Result<Vec<HoldRow>, StoreError> {
        // As committed, beside the open group (an access report reads a
        // person's holds: it does not commit the readers' group early).
        self.with_looker(|conn| {
            let sql = "SELECT id, subject, disclosure, placed_by, placed_at, until_at,
                              notice_after, released_at, released_by FROM holds";
            match subject {
                Some(s) => {
                    let mut q = conn.prepare_cached(&format!(
                        "{sql} WHERE subject = ?1 ORDER BY placed_at, id"
                    ))?;
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
        })
    }

    fn release_hold(
        &self,
        id: &str,
        by: &str,
        at: i64,
        leaf: &mut dyn FnMut(u64, &HoldRow) -> crate::Leaf,
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
        bump_data_gen(&tx)?;
        tx.commit()?;
        Ok(rows)
    }
}

pub(super) fn bump_erasure_gen(tx: &Connection) -> Result<(), StoreError> {
    let next = erasure_gen(tx)? + 1;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('erasure_gen', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [next.to_string()],
    )?;
    Ok(())
}

/// One purge transaction: the records and lookups of the people of the
/// queue that `pick` puts in `temp.purge_now` (returning how many). With
/// `by_subject`, also each person's records deleted, in ref order.
fn purge_now(
    conn: &mut Connection,
    by_subject: bool,
    pick: &dyn Fn(&Connection) -> Result<u64, StoreError>,
) -> Result<(PurgeBatch, Vec<(SubjectRef, u64)>), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = purge_in(&tx, by_subject, pick, None)?;
    tx.commit()?;
    out.ok_or_else(|| StoreError::Corrupt("an unbounded purge was left undone".into()))
}

/// Erasure, last step, in `tx`: see [`RightsStore::finish_erasure`].
fn finish_erasure_in(tx: &Connection, subjects: &[SubjectRef]) -> Result<(), StoreError> {
    // Anything written meanwhile (by a process that had not yet seen the
    // erasure) dies with the rest.
    tx.execute_batch(
        "INSERT INTO purge (subject, at) SELECT subject, at FROM erasures AS t
         WHERE EXISTS (SELECT 1 FROM records WHERE records.subject = t.subject)
            OR EXISTS (SELECT 1 FROM lookups WHERE lookups.subject = t.subject)
         ON CONFLICT DO NOTHING;
         DELETE FROM consents WHERE subject IN (SELECT subject FROM erasures);",
    )?;
    {
        let mut done = tx.prepare_cached("DELETE FROM erasures WHERE subject = ?1")?;
        for s in subjects {
            done.execute([s])?;
        }
    }
    bump_data_gen(tx)?;
    bump_erasure_gen(tx)
}

/// Puts those of `subjects` in the purge queue (and not pending) in
/// `temp.purge_now`; returns how many.
fn pick_subjects(tx: &Connection, subjects: &[SubjectRef]) -> Result<u64, StoreError> {
    let mut s = tx.prepare_cached(
        "INSERT INTO temp.purge_now (subject)
         SELECT subject FROM purge
         WHERE subject = ?1 AND subject NOT IN (SELECT subject FROM erasures)
         ON CONFLICT DO NOTHING",
    )?;
    let mut n = 0;
    for subject in subjects {
        n += s.execute([subject])? as u64;
    }
    Ok(n)
}

/// The purge of the people `pick` puts in `temp.purge_now`, in `tx`; with
/// each person's records deleted when `by_subject`. `None` (nothing done)
/// when they hold more than `max` records.
#[allow(clippy::type_complexity)]
fn purge_in(
    tx: &Connection,
    by_subject: bool,
    pick: &dyn Fn(&Connection) -> Result<u64, StoreError>,
    max: Option<u64>,
) -> Result<Option<(PurgeBatch, Vec<(SubjectRef, u64)>)>, StoreError> {
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS purge_now (subject BLOB PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM temp.purge_now;",
    )?;
    let people = pick(tx)?;
    if let Some(max) = max.filter(|_| people > 0) {
        // On the subject index alone: every row of theirs, dead or alive,
        // but those of mail-cover orders (their own small index), so
        // whether the purge runs here does not turn on a cover's records.
        let rows: i64 = tx
            .prepare_cached(&format!(
                "SELECT (SELECT count(*) FROM records
                         WHERE subject IN (SELECT subject FROM temp.purge_now))
                      - (SELECT count(*) FROM records INDEXED BY records_cover
                         WHERE key_id BETWEEN 1 AND {COVER_MAX}
                           AND subject IN (SELECT subject FROM temp.purge_now))"
            ))?
            .query_row([], |r| r.get(0))?;
        if rows as u64 > max {
            tx.execute_batch("DELETE FROM temp.purge_now;")?;
            return Ok(None);
        }
    }
    let mut out = PurgeBatch { people, records: 0 };
    let mut each = Vec::new();
    // Records under mail-cover orders are deleted and not counted (see
    // `without_covers`); on their own small index, before the rows go.
    let covers: Vec<(SubjectRef, u64)> = if people > 0 {
        tx.prepare_cached(&format!(
            "SELECT subject, count(*) FROM records INDEXED BY records_cover
             WHERE key_id BETWEEN 1 AND {COVER_MAX}
               AND subject IN (SELECT subject FROM temp.purge_now) GROUP BY subject"
        ))?
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    if people > 0 && by_subject {
        // On the subject index alone, before the rows go.
        let mut by: std::collections::BTreeMap<SubjectRef, u64> = tx
            .prepare_cached(
                "SELECT p.subject, (SELECT count(*) FROM records r WHERE r.subject = p.subject)
                 FROM temp.purge_now p",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<_, _>>()?;
        let all: Vec<SubjectRef> = by.keys().copied().collect();
        without_covers(&mut by, covers.iter().copied());
        // Every person purged stays listed, with what is left to count.
        each = all
            .into_iter()
            .map(|s| (s, by.get(&s).copied().unwrap_or(0)))
            .collect();
    }
    if people > 0 {
        if super::stats::any_blocks(tx)? {
            let purged: Vec<SubjectRef> = tx
                .prepare_cached("SELECT subject FROM temp.purge_now")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for s in &purged {
                super::stats::drop_blocks_of(tx, s, None)?;
            }
        }
        let deleted = tx
            .prepare_cached(
                "DELETE FROM records WHERE subject IN (SELECT subject FROM temp.purge_now)",
            )?
            .execute([])? as u64;
        out.records = deleted.saturating_sub(covers.iter().map(|(_, n)| n).sum());
        for t in ["lookups", "purge"] {
            tx.prepare_cached(&format!(
                "DELETE FROM {t} WHERE subject IN (SELECT subject FROM temp.purge_now)"
            ))?
            .execute([])?;
        }
        bump_data_gen(tx)?;
    }
    tx.execute_batch("DELETE FROM temp.purge_now;")?;
    Ok(Some((out, each)))
}

/// Makes the rows of the subjects in `table` dead: puts them in the purge
/// queue (at `at`; one already there stays as it was) and deletes their
/// consents. Returns their records that were alive until now, by subject
/// (only subjects that had any).
fn kill_rows_of(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    at: i64,
) -> Result<std::collections::BTreeMap<SubjectRef, u64>, StoreError> {
    // Counted on the subject index alone: no record page is read or written.
    let mut by: std::collections::BTreeMap<SubjectRef, u64> = tx
        .prepare_cached(&format!(
            "SELECT subject, count(*) FROM records WHERE subject IN (SELECT subject FROM {table})
               AND subject NOT IN (SELECT subject FROM purge) GROUP BY subject"
        ))?
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<Result<_, _>>()?;
    // Less those recorded under mail-cover orders (see `without_covers`).
    let covers: Vec<(SubjectRef, u64)> = tx
        .prepare_cached(&format!(
            "SELECT subject, count(*) FROM records INDEXED BY records_cover
             WHERE key_id BETWEEN 1 AND {COVER_MAX}
               AND subject IN (SELECT subject FROM {table})
               AND subject NOT IN (SELECT subject FROM purge) GROUP BY subject"
        ))?
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<Result<_, _>>()?;
    without_covers(&mut by, covers);
    // Only people with rows: an identifier never collected leaves no ref.
    tx.prepare_cached(&format!(
        "INSERT INTO purge (subject, at) SELECT subject, ?1 FROM {table} AS t
         WHERE EXISTS (SELECT 1 FROM records WHERE records.subject = t.subject)
            OR EXISTS (SELECT 1 FROM lookups WHERE lookups.subject = t.subject)
         ON CONFLICT DO NOTHING"
    ))?
    .execute([at])?;
    tx.prepare_cached(&format!(
        "DELETE FROM consents WHERE subject IN (SELECT subject FROM {table})"
    ))?
    .execute([])?;
    Ok(by)
}

/// Takes the records sealed under mail-cover orders (`covers`, by
/// subject) out of the counts `by`, dropping subjects left with none. An
/// erasure's and a purge's counts reach the person (their answer) and the
/// public log (`records:` of `erase_intent` and `erase_done`), and the
/// person may not know of a cover: counting its records would tell them
/// (their report, which never shows them, against the erasure's count).
pub(crate) fn without_covers(
    by: &mut std::collections::BTreeMap<SubjectRef, u64>,
    covers: impl IntoIterator<Item = (SubjectRef, u64)>,
) {
    for (s, n) in covers {
        if let Some(all) = by.get_mut(&s) {
            *all = all.saturating_sub(n);
            if *all == 0 {
                by.remove(&s);
            }
        }
    }
}

pub(super) fn hold_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HoldRow> {
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
