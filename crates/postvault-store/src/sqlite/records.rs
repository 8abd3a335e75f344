//! [`RecordStore`] on SQLite: collection batches, reads (grouped commits:
//! see [`SqliteStore`]), consents and blind-index lookups.

use super::*;

impl RecordStore for SqliteStore {
    fn write(&self, batch: &WriteBatch, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        // A small batch in the group commit, as reads are: concurrent small
        // writes (and reads) share one commit, and each returns once its
        // batch is durable. A large one (bulk collection) runs alone, after
        // the readers waiting to join have gone and the open group has
        // committed; reads that arrive meanwhile wait for it.
        if batch.records.len() + batch.lookups.len() <= GROUP_WRITE_MAX_ROWS {
            return self.grouped(&mut |tx| write_in(tx, batch, leaf));
        }
        let mut conn = self.conn_bulk();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let first = write_in(&tx, batch, leaf)?;
        tx.commit()?;
        Ok(first)
    }

    fn read_scoped(
        &self,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut ReadLeafFn<'_>,
    ) -> Result<(SubjectData, u64), StoreError> {
        self.read_grouped(subject, scope, leaf, None)
            .map(|(data, idx, _)| (data, idx))
    }

    fn read_scoped_then(
        &self,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut ReadLeafFn<'_>,
        then: &mut LeafFn<'_>,
    ) -> Result<(SubjectData, u64, u64), StoreError> {
        let (data, idx, next) = self.read_grouped(subject, scope, leaf, Some(then))?;
        Ok((data, idx, next.ok_or_else(then_missing)?))
    }

    fn read_unlogged(
        &self,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
    ) -> Result<Option<crate::UnloggedRead>, StoreError> {
        // On a looker connection, in one read transaction: the rows and the
        // data generation of one snapshot, read without the group's lock.
        self.with_looker(|conn| {
            let stamp = data_gen(conn)?;
            Ok(Some((read_scope(conn, subject, scope)?, stamp)))
        })
    }

    fn reads_carry_erasure_gen(&self) -> bool {
        // `read_scope` reads it with the rows, on whichever connection.
        true
    }

    fn unlogged_reads_pay(&self) -> bool {
        // A lone reader reads under the group's lock, on the connection whose
        // page cache every commit keeps warm: quicker than a looker's, whose
        // cache a commit elsewhere empties. Only when readers would wait for
        // the group does reading outside it pay.
        self.group.busy()
    }

    fn append_read_leaf(
        &self,
        stamp: u64,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut crate::CheckedLeafFn<'_>,
    ) -> Result<(Option<SubjectData>, u64), StoreError> {
        self.append_read_leaf_grouped(stamp, subject, scope, leaf, None)
            .map(|(data, idx, _)| (data, idx))
    }

    fn append_read_leaf_then(
        &self,
        stamp: u64,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut crate::CheckedLeafFn<'_>,
        then: &mut LeafFn<'_>,
    ) -> Result<(Option<SubjectData>, u64, u64), StoreError> {
        let (data, idx, next) =
            self.append_read_leaf_grouped(stamp, subject, scope, leaf, Some(then))?;
        Ok((data, idx, next.ok_or_else(then_missing)?))
    }

    fn consent(
        &self,
        subject: &SubjectRef,
        purpose: &str,
    ) -> Result<Option<crate::ConsentRow>, StoreError> {
        // As committed, beside the group commit: a collection batch that
        // asks does not commit the open group early.
        self.with_looker(|conn| consent_of(conn, subject, purpose))
    }

    fn lookup(&self, token: &[u8; 16]) -> Result<Vec<SubjectRef>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(
            "SELECT DISTINCT subject FROM lookups WHERE token = ?1
               AND subject NOT IN (SELECT subject FROM purge) ORDER BY subject",
        )?;
        let rows = s
            .query_map([token], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn record_count(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM records WHERE subject NOT IN (SELECT subject FROM purge)",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}

impl SqliteStore {
    /// [`RecordStore::append_read_leaf`], with `then` appended after the
    /// read's leaf in the same member of the group.
    fn append_read_leaf_grouped(
        &self,
        stamp: u64,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut crate::CheckedLeafFn<'_>,
        mut then: Option<&mut LeafFn<'_>>,
    ) -> Result<(Option<SubjectData>, u64, Option<u64>), StoreError> {
        // Under the group's lock, inside its transaction: no other writer
        // can commit until the group does, so an unchanged generation means
        // the snapshot read is the store's state where the leaf stands. A
        // changed one: read again here, in the same member (one wait).
        self.grouped(&mut |tx| {
            let (data, idx) = if data_gen(tx)? == stamp {
                (None, append(tx, 1, &mut |idx, _| leaf(None, idx))?)
            } else {
                let data = read_scope(tx, subject, scope)?;
                let idx = append(tx, 1, &mut |idx, _| leaf(Some(&data), idx))?;
                (Some(data), idx)
            };
            let next = match then.as_deref_mut() {
                Some(then) => Some(append(tx, 1, then)?),
                None => None,
            };
            Ok((data, idx, next))
        })
    }
}

/// A read asked to append a leaf after its own did not.
fn then_missing() -> StoreError {
    StoreError::Corrupt("a read's second leaf was not appended".into())
}

/// Batches of at most this many rows (records and lookup tokens) join the
/// group commit; larger ones commit alone.
const GROUP_WRITE_MAX_ROWS: usize = 64;

/// One collection batch's rows, lookups, consents, supersessions, leaves and
/// run step, inside the caller's transaction (a savepoint of the group's).
fn write_in(tx: &Connection, batch: &WriteBatch, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
    if let Some(expected) = batch.erasure_gen
        && erasure_gen(tx)? != expected
    {
        return Err(StoreError::Conflict);
    }
    if !batch.records.is_empty()
        || !batch.consents.is_empty()
        || !batch.supersede.is_empty()
        || !batch.lookups.is_empty()
    {
        bump_data_gen(tx)?;
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
    resolve_purge(tx, batch)?;
    {
        let mut s = tx.prepare_cached(
            "INSERT INTO records (id, subject, category, purpose, source,
                 collected_at, expires_at, key_id, sealed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut first_row: Option<i64> = None;
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
            let row = tx.last_insert_rowid();
            first_row = Some(first_row.map_or(row, |f| f.min(row)));
        }
        if let Some(row) = first_row {
            super::stats::extend_tails(tx, row)?;
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
        let blocks = !batch.supersede.is_empty() && super::stats::any_blocks(tx)?;
        for (old, subject, new) in &batch.supersede {
            // The scan blocks holding the old value go with it.
            if blocks {
                super::stats::drop_blocks_of(tx, subject, Some(old))?;
            }
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
    let first = append(tx, batch.leaves, leaf)?;
    if let Some(step) = &batch.run {
        sqlite_ops::run_step(tx, step, (batch.leaves > 0).then_some(first), true)?;
    }
    Ok(first)
}

/// A person collected again after their erasure leaves the purge queue in
/// the transaction that writes their new rows, and their old (dead) rows
/// are deleted first: what is queued for the purge is only ever the rows of
/// people without keys.
fn resolve_purge(tx: &Connection, batch: &WriteBatch) -> Result<(), StoreError> {
    if batch.records.is_empty() && batch.lookups.is_empty() {
        return Ok(());
    }
    let queued: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM purge)")?
        .query_row([], |r| r.get(0))?;
    if !queued {
        return Ok(());
    }
    let subjects: std::collections::BTreeSet<&SubjectRef> = batch
        .records
        .iter()
        .map(|r| &r.subject)
        .chain(batch.lookups.iter().map(|l| &l.subject))
        .collect();
    let mut take = tx.prepare_cached("DELETE FROM purge WHERE subject = ?1")?;
    let mut records = tx.prepare_cached("DELETE FROM records WHERE subject = ?1")?;
    let mut lookups = tx.prepare_cached("DELETE FROM lookups WHERE subject = ?1")?;
    let blocks = super::stats::any_blocks(tx)?;
    for s in subjects {
        if take.execute([s])? > 0 {
            if blocks {
                super::stats::drop_blocks_of(tx, s, None)?;
            }
            records.execute([s])?;
            lookups.execute([s])?;
        }
    }
    Ok(())
}
