//! [`LedgerStore`] on PostgreSQL: the `disclosures` and `accounting` tables;
//! a submission's facts are counted after the tree-state lock.

use super::*;

impl LedgerStore for PgStore {
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
                    data.push(read_protective(&tx, subject, &q.protective_category).await?);
                }
                Ok::<_, Fail>((tx, idx, facts, data))
            })?;
            let (mut row, body) = guarded(|| decide(&facts, &data, idx))?;
            row.seq = facts.seq;
            w.wait(async {
                insert_disclosure(&tx, &row).await?;
                append(&tx, idx, &[body.into()]).await?;
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
}

/// Quota counts and reuse of an instrument, read after the tree lock.
pub(super) async fn submit_facts(
    tx: &Transaction<'_>,
    q: &SubmitQuery,
) -> Result<SubmitFacts, Fail> {
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
        let row = tx
            .query_one(
                "SELECT coalesce(sum(greatest(octet_length(subjects) / 16, 1)), 0)::bigint,
                        coalesce(sum(greatest(octet_length(subjects) / 16, 1))
                            FILTER (WHERE requester = $3), 0)::bigint
                 FROM disclosures WHERE case_key = $1 AND submitted_at >= $2",
                &[&&case[..], &q.since_30d, &q.requester],
            )
            .await?;
        facts.case_people_30d = u32::try_from(row.try_get::<_, i64>(0)?).unwrap_or(u32::MAX);
        facts.case_people_30d_own = u32::try_from(row.try_get::<_, i64>(1)?).unwrap_or(u32::MAX);
    }
    if let Some(key) = &q.instrument_key {
        let row = tx
            .query_one(
                "SELECT count(*) FILTER (WHERE requester = $2), count(*) FILTER (WHERE requester <> $2)
                 FROM disclosures WHERE instrument_key = $1 AND status <> 'refused'",
                &[&&key[..], &q.requester],
            )
            .await?;
        facts.used_before = row.try_get::<_, i64>(0)? > 0;
        facts.used_by_other = row.try_get::<_, i64>(1)? > 0;
    }
    let seq: i64 = tx
        .query_one("SELECT coalesce(max(seq), 0) + 1 FROM disclosures", &[])
        .await?
        .try_get(0)?;
    facts.seq = seq as u64;
    Ok(facts)
}

pub(super) fn u32_of(v: i64, what: &str) -> Result<u32, Fail> {
    u32::try_from(v).map_err(|_| {
        Fail::Store(StoreError::Corrupt(format!(
            "a stored {what} is out of range"
        )))
    })
}

pub(super) fn disclosure_from_row(r: &Row) -> Result<DisclosureRow, Fail> {
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

pub(super) async fn load_disclosure(
    tx: &Transaction<'_>,
    id: &str,
) -> Result<Option<DisclosureRow>, Fail> {
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

/// Records a new request: what was submitted, then its state as a step
/// writes it ([`update_disclosure`]), in the caller's transaction.
pub(super) async fn insert_disclosure(tx: &Transaction<'_>, d: &DisclosureRow) -> Result<(), Fail> {
    let subjects: Vec<u8> = d.subjects.iter().flatten().copied().collect();
    let instrument = d.instrument_key.as_ref().map(|k| &k[..]);
    let case = d.case_key.as_ref().map(|k| &k[..]);
    let (seq, ext) = (d.seq as i64, i64::from(d.extension_no));
    tx.execute(
        "INSERT INTO disclosures (id, seq, requester, kind, ground, instrument_key, case_key,
             extension_no, subjects, submitted_at, sealed, extends,
             portions, status, reasons, alerts, fetches, retain_until)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, '', '', '', '', 0, 0)",
        &[
            &d.id,
            &seq,
            &d.requester,
            &d.kind,
            &d.ground,
            &instrument,
            &case,
            &ext,
            &subjects,
            &d.submitted_at,
            &d.sealed,
            &d.extends,
        ],
    )
    .await?;
    update_disclosure(tx, d).await
}

/// Writes the state that a request's steps may change; what was submitted
/// stays as it was.
pub(super) async fn update_disclosure(tx: &Transaction<'_>, d: &DisclosureRow) -> Result<(), Fail> {
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
