//! [`StatsStore`] on PostgreSQL: the privacy-budget ledger and the
//! statistics scan.
//!
//! A spend runs after the log's append lock (`tree_state ... FOR UPDATE`),
//! so the spent amount it reads is what every earlier spend committed:
//! concurrent queries on any node never overspend.

use postvault_store::{
    BudgetLeafFn, BudgetOutcome, BudgetRow, BudgetSpend, ScanPage, ScanPos, stats_decide,
};

use super::*;

/// The statistics scan's page: one category's current records of the
/// subjects in [$2, $6), after ($2, $3), in (subject, id) order; with
/// `consented`, only of people whose consent to $7 stands. The category is
/// one value, so `records_subject` (subject, category, id) gives the rows
/// in this order without a sort (checked by a test of the plan).
pub(crate) fn scan_sql(consented: bool) -> String {
    let consent = if consented {
        "AND EXISTS (SELECT 1 FROM consents k WHERE k.subject = records.subject
                     AND k.purpose = $7 AND k.granted)"
    } else {
        ""
    };
    format!(
        "SELECT {RECORD_COLUMNS} FROM records
         WHERE subject >= $2 AND subject < $6 AND category = $1 AND (subject, id) > ($2, $3)
           AND superseded_by IS NULL AND expires_at > $4
           AND NOT EXISTS (SELECT 1 FROM purge p WHERE p.subject = records.subject)
           {consent}
         ORDER BY subject, id LIMIT $5"
    )
}

impl StatsStore for PgStore {
    fn category_records(
        &self,
        category: &str,
        now: i64,
        after: Option<&ScanPos>,
        until: Option<&SubjectRef>,
        limit: usize,
        consented: Option<&str>,
    ) -> Result<ScanPage, StoreError> {
        let (subject, id) = scan_after(after);
        let until = scan_until(until);
        self.db.run(false, async |c| {
            let s = c.prepare_cached(&scan_sql(consented.is_some())).await?;
            let limit = limit as i64;
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                vec![&category, &subject, &id, &now, &limit, &until];
            if let Some(purpose) = &consented {
                params.push(purpose);
            }
            let rows = c
                .query(&s, &params)
                .await?
                .iter()
                .map(record_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            // A person's rows come by id: the id is the position.
            let next = rows.last().map(|r| (r.subject, r.id));
            Ok(ScanPage {
                rows,
                next,
                ..ScanPage::default()
            })
        })
    }

    fn spend_budget(
        &self,
        spend: &BudgetSpend,
        leaf: &mut BudgetLeafFn<'_>,
    ) -> Result<(BudgetOutcome, u64), StoreError> {
        self.db.session(false, |w, c| {
            let (tx, idx, outcome) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let idx = lock_tree(&tx).await?;
                let row = tx
                    .query_opt(
                        "SELECT spent FROM privacy_budget
                         WHERE principal = $1 AND purpose = $2 AND period = $3",
                        &[&spend.principal, &spend.purpose, &spend.period],
                    )
                    .await?;
                let spent = match row {
                    Some(r) => r.try_get::<_, i64>(0)? as u64,
                    None => 0,
                };
                let outcome = stats_decide(spend, spent);
                let (add, queries, refused): (i64, i64, i64) = match outcome {
                    BudgetOutcome::Spent { .. } => (spend.amount as i64, 1, 0),
                    BudgetOutcome::Exhausted { .. } => (0, 0, 1),
                };
                tx.execute(
                    "INSERT INTO privacy_budget
                         (principal, purpose, period, spent, queries, refused, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (principal, purpose, period) DO UPDATE SET
                         spent = privacy_budget.spent + excluded.spent,
                         queries = privacy_budget.queries + excluded.queries,
                         refused = privacy_budget.refused + excluded.refused,
                         updated_at = excluded.updated_at",
                    &[
                        &spend.principal,
                        &spend.purpose,
                        &spend.period,
                        &add,
                        &queries,
                        &refused,
                        &spend.at,
                    ],
                )
                .await?;
                Ok::<_, Fail>((tx, idx, outcome))
            })?;
            let body = guarded(|| leaf(&outcome, idx))?;
            w.wait(async {
                append(&tx, idx, &[body.into()]).await?;
                tx.commit().await?;
                Ok::<_, Fail>(())
            })?;
            Ok((outcome, idx))
        })
    }

    fn budgets(&self) -> Result<Vec<BudgetRow>, StoreError> {
        self.db.run(false, async |c| {
            c.query(
                "SELECT principal, purpose, period, spent, queries, refused, updated_at
                 FROM privacy_budget ORDER BY principal, purpose, period",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(BudgetRow {
                    principal: r.try_get(0)?,
                    purpose: r.try_get(1)?,
                    period: r.try_get(2)?,
                    spent: r.try_get::<_, i64>(3)? as u64,
                    queries: r.try_get::<_, i64>(4)? as u64,
                    refused: r.try_get::<_, i64>(5)? as u64,
                    updated_at: r.try_get(6)?,
                })
            })
            .collect()
        })
    }
}
