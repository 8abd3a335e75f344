//! [`LedgerStore`] on SQLite: the `disclosures` and `accounting` tables.

use super::*;

impl LedgerStore for SqliteStore {
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
            let (all, own): (i64, i64) = tx.query_row(
                "SELECT coalesce(sum(max(length(subjects) / 16, 1)), 0),
                        coalesce(sum(CASE WHEN requester = ?3 THEN max(length(subjects) / 16, 1) ELSE 0 END), 0)
                 FROM disclosures WHERE case_key = ?1 AND submitted_at >= ?2",
                params![case, q.since_30d, q.requester],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            facts.case_people_30d = u32::try_from(all).unwrap_or(u32::MAX);
            facts.case_people_30d_own = u32::try_from(own).unwrap_or(u32::MAX);
        }
        if let Some(key) = &q.instrument_key {
            let (own, other): (i64, i64) = tx.query_row(
                "SELECT coalesce(sum(requester = ?2), 0), coalesce(sum(requester <> ?2), 0)
                 FROM disclosures WHERE instrument_key = ?1 AND status <> 'refused'",
                params![key, q.requester],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            facts.used_before = own > 0;
            facts.used_by_other = other > 0;
        }
        let seq: i64 = tx.query_row(
            "SELECT coalesce(max(seq), 0) + 1 FROM disclosures",
            [],
            |r| r.get(0),
        )?;
        facts.seq = seq as u64;
        let mut data = Vec::with_capacity(q.subjects.len());
        for subject in &q.subjects {
            data.push(read_protective(&tx, subject, &q.protective_category)?);
        }
        let idx = next_index(&tx)?;
        let (mut row, leaf) = decide(&facts, &data, idx);
        row.seq = facts.seq;
        insert_disclosure(&tx, &row)?;
        append(&tx, 1, &mut |_, _| leaf.clone().into())?;
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
        // As committed, beside the group commit (see `subject_records`).
        self.with_looker(|conn| accounting_of(conn, subject))
    }
}

fn accounting_of(
    conn: &Connection,
    subject: &SubjectRef,
) -> Result<Vec<AccountingRow>, StoreError> {
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

pub(super) fn join_subjects(subjects: &[SubjectRef]) -> Vec<u8> {
    subjects.iter().flatten().copied().collect()
}

pub(super) fn split_subjects(b: &[u8]) -> Result<Vec<SubjectRef>, StoreError> {
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

pub(super) fn token(v: Option<Vec<u8>>) -> Option<[u8; 16]> {
    v.and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
}

/// A row, or the reason it is not one (kept apart from rusqlite's errors so
/// a malformed subject list reads as corruption).
pub(super) fn disclosure_from_row(
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

pub(super) fn load_disclosure(
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

/// Records a new request: what was submitted, then its state as a step
/// writes it ([`update_disclosure`]), in the caller's transaction.
pub(super) fn insert_disclosure(
    tx: &rusqlite::Transaction<'_>,
    d: &DisclosureRow,
) -> Result<(), StoreError> {
    let mut s = tx.prepare_cached(
        "INSERT INTO disclosures (id, seq, requester, kind, ground, instrument_key, case_key,
             extension_no, subjects, submitted_at, sealed, extends,
             portions, status, reasons, alerts, fetches, retain_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, '', '', '', '', 0, 0)",
    )?;
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
        d.submitted_at,
        d.sealed,
        d.extends,
    ])?;
    update_disclosure(tx, d)
}

/// Writes the state that a request's steps may change; what was submitted
/// (requester, kind, instrument, subjects asked for, ...) stays as it was.
pub(super) fn update_disclosure(
    tx: &rusqlite::Transaction<'_>,
    d: &DisclosureRow,
) -> Result<(), StoreError> {
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
