//! The privacy-budget ledger of aggregate statistics, and the scan that
//! feeds them.
//!
//! Architecture invariant: a statistics query's spend is checked against
//! the budget and recorded, together with the query's one leaf, in one
//! transaction that holds the log's append lock; two queries never both
//! pass a check that only one of them fits.

use crate::{RecordRow, StoreError, SubjectRef};

/// What one query asks to spend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetSpend {
    pub principal: String,
    pub purpose: String,
    /// The period the spend counts in, e.g. `day:2026-12-03`.
    pub period: String,
    /// Micro-epsilon this query spends.
    pub amount: u64,
    /// Micro-epsilon the period allows in all.
    pub limit: u64,
    /// Unix milliseconds.
    pub at: i64,
}

/// What the ledger decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetOutcome {
    /// Spent; this much remains in the period.
    Spent { remaining: u64 },
    /// Nothing spent: the query would go over; this much remains.
    Exhausted { remaining: u64 },
}

/// One principal's spending for one purpose in one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetRow {
    pub principal: String,
    pub purpose: String,
    pub period: String,
    /// Micro-epsilon spent.
    pub spent: u64,
    /// Queries answered.
    pub queries: u64,
    /// Queries refused as over budget.
    pub refused: u64,
    /// Unix milliseconds of the last query.
    pub updated_at: i64,
}

/// Builds the query's leaf from the ledger's decision, given its index.
pub type BudgetLeafFn<'a> = dyn FnMut(&BudgetOutcome, u64) -> Vec<u8> + 'a;

/// Where the statistics of a vault are accounted and read from.
pub trait StatsStore {
    /// Current records (not superseded, expiring after `now`) of
    /// `category`, in (subject, id) order strictly after `after`; at most
    /// `limit`. Records of one person come together, so a scan bounds each
    /// person's contribution holding one person's counts at a time.
    fn category_records(
        &self,
        category: &str,
        now: i64,
        after: Option<&(SubjectRef, [u8; 16])>,
        limit: usize,
    ) -> Result<Vec<RecordRow>, StoreError>;

    /// Checks `spend` against what its principal has spent for its purpose
    /// in its period, spends it if it fits, and appends the query's one
    /// leaf (for a refusal too), all in one durable transaction. Returns
    /// the decision and the leaf's index.
    fn spend_budget(
        &self,
        spend: &BudgetSpend,
        leaf: &mut BudgetLeafFn<'_>,
    ) -> Result<(BudgetOutcome, u64), StoreError>;

    /// Every ledger row, by principal, purpose and period.
    fn budgets(&self) -> Result<Vec<BudgetRow>, StoreError>;
}

/// The decision of the ledger on `spend`, given what was spent before.
pub fn decide(spend: &BudgetSpend, spent: u64) -> BudgetOutcome {
    let remaining = spend.limit.saturating_sub(spent);
    if spend.amount <= remaining {
        BudgetOutcome::Spent {
            remaining: remaining - spend.amount,
        }
    } else {
        BudgetOutcome::Exhausted { remaining }
    }
}

pub(crate) mod sqlite {
    use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

    use super::*;

    pub(crate) fn category_records(
        conn: &Connection,
        category: &str,
        now: i64,
        after: Option<&(SubjectRef, [u8; 16])>,
        limit: usize,
    ) -> Result<Vec<RecordRow>, StoreError> {
        let (subject, id): (&[u8], &[u8]) = match after {
            Some((s, i)) => (s, i),
            None => (&[], &[]),
        };
        let mut s = conn.prepare_cached(
            "SELECT id, subject, category, purpose, source, collected_at,
                    expires_at, key_id, sealed, superseded_by
             FROM records INDEXED BY records_category
             WHERE category = ?1 AND (subject, id) > (?2, ?3)
               AND superseded_by IS NULL AND expires_at > ?4
             ORDER BY subject, id LIMIT ?5",
        )?;
        let rows = s
            .query_map(
                params![category, subject, id, now, limit as i64],
                crate::sqlite::record_from_row,
            )?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub(crate) fn spend_budget(
        conn: &mut Connection,
        spend: &BudgetSpend,
        leaf: &mut BudgetLeafFn<'_>,
    ) -> Result<(BudgetOutcome, u64), StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let spent: i64 = tx
            .prepare_cached(
                "SELECT spent FROM privacy_budget
                 WHERE principal = ?1 AND purpose = ?2 AND period = ?3",
            )?
            .query_row(params![spend.principal, spend.purpose, spend.period], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0);
        let outcome = decide(spend, spent as u64);
        let (add, queries, refused) = match outcome {
            BudgetOutcome::Spent { .. } => (spend.amount as i64, 1, 0),
            BudgetOutcome::Exhausted { .. } => (0, 0, 1),
        };
        tx.prepare_cached(
            "INSERT INTO privacy_budget
                 (principal, purpose, period, spent, queries, refused, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (principal, purpose, period) DO UPDATE SET
                 spent = spent + excluded.spent, queries = queries + excluded.queries,
                 refused = refused + excluded.refused, updated_at = excluded.updated_at",
        )?
        .execute(params![
            spend.principal,
            spend.purpose,
            spend.period,
            add,
            queries,
            refused,
            spend.at
        ])?;
        let idx = crate::sqlite::append(&tx, 1, &mut |i, _| leaf(&outcome, i))?;
        tx.commit()?;
        Ok((outcome, idx))
    }

    impl StatsStore for crate::SqliteStore {
        fn category_records(
            &self,
            category: &str,
            now: i64,
            after: Option<&(SubjectRef, [u8; 16])>,
            limit: usize,
        ) -> Result<Vec<RecordRow>, StoreError> {
            category_records(&self.conn(), category, now, after, limit)
        }

        fn spend_budget(
            &self,
            spend: &BudgetSpend,
            leaf: &mut BudgetLeafFn<'_>,
        ) -> Result<(BudgetOutcome, u64), StoreError> {
            spend_budget(&mut self.conn(), spend, leaf)
        }

        fn budgets(&self) -> Result<Vec<BudgetRow>, StoreError> {
            budgets(&self.conn())
        }
    }

    pub(crate) fn budgets(conn: &Connection) -> Result<Vec<BudgetRow>, StoreError> {
        let mut s = conn.prepare_cached(
            "SELECT principal, purpose, period, spent, queries, refused, updated_at
             FROM privacy_budget ORDER BY principal, purpose, period",
        )?;
        let rows = s
            .query_map([], |r| {
                Ok(BudgetRow {
                    principal: r.get(0)?,
                    purpose: r.get(1)?,
                    period: r.get(2)?,
                    spent: r.get::<_, i64>(3)? as u64,
                    queries: r.get::<_, i64>(4)? as u64,
                    refused: r.get::<_, i64>(5)? as u64,
                    updated_at: r.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}

/// Checks of the conformance suite ([`crate::conformance::run_all`]).
pub mod conformance {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{Store, WriteBatch};

    fn spend(amount: u64) -> BudgetSpend {
        BudgetSpend {
            principal: "analyst".into(),
            purpose: "statistics".into(),
            period: "day:2026-12-03".into(),
            amount,
            limit: 1_000_000,
            at: 5,
        }
    }

    /// A spend is checked, recorded and accounted by one leaf, for a
    /// refusal too; the ledger never goes over its limit.
    pub fn budget_spends_check_and_account_atomically(s: &dyn Store) {
        let mut leaf = |o: &BudgetOutcome, i: u64| format!("{o:?} at {i}").into_bytes();
        let (o, i) = s.spend_budget(&spend(600_000), &mut leaf).unwrap();
        assert_eq!(o, BudgetOutcome::Spent { remaining: 400_000 });
        assert_eq!(i, 0);
        let (o, i) = s.spend_budget(&spend(500_000), &mut leaf).unwrap();
        assert_eq!(o, BudgetOutcome::Exhausted { remaining: 400_000 });
        assert_eq!(i, 1);
        let (o, _) = s.spend_budget(&spend(400_000), &mut leaf).unwrap();
        assert_eq!(o, BudgetOutcome::Spent { remaining: 0 });
        // Another period, purpose or principal has its own budget.
        let mut other = spend(1_000_000);
        other.period = "day:2026-12-04".into();
        assert!(matches!(
            s.spend_budget(&other, &mut leaf).unwrap().0,
            BudgetOutcome::Spent { remaining: 0 }
        ));
        assert_eq!(s.log_size().unwrap(), 4);
        let leaves = s.leaves(0, 4).unwrap();
        assert_eq!(leaves[1], b"Exhausted { remaining: 400000 } at 1".to_vec());
        let rows = s.budgets().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].spent, rows[0].queries, rows[0].refused),
            (1_000_000, 2, 1)
        );
        assert_eq!(rows[0].period, "day:2026-12-03");
    }

    /// Concurrent spends that together would go over: exactly as many pass
    /// as fit, and each has its leaf.
    pub fn concurrent_spends_never_overspend(s: &dyn Store) {
        let before = s.log_size().unwrap();
        let spent: Vec<bool> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..6)
                .map(|_| {
                    sc.spawn(|| {
                        let mut leaf = |_: &BudgetOutcome, i: u64| format!("q {i}").into_bytes();
                        let (o, _) = s.spend_budget(&spend(400_000), &mut leaf).unwrap();
                        matches!(o, BudgetOutcome::Spent { .. })
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(spent.iter().filter(|&&x| x).count(), 2, "{spent:?}");
        assert_eq!(s.log_size().unwrap(), before + 6);
        let rows = s.budgets().unwrap();
        assert_eq!(rows[0].spent, 800_000);
    }

    /// A category's current records come person by person, paged.
    pub fn category_records_come_person_by_person(s: &dyn Store) {
        let rec = |subject: u8, n: u8, category: &str, expires_at: i64| RecordRow {
            id: [n; 16],
            subject: [subject; 16],
            category: category.into(),
            purpose: "delivery".into(),
            source: "svc".into(),
            collected_at: 1_000,
            expires_at,
            key_id: 0,
            sealed: vec![n],
            superseded_by: None,
        };
        let batch = WriteBatch {
            records: vec![
                rec(3, 1, "scan_event", 9_000),
                rec(1, 2, "scan_event", 9_000),
                rec(2, 3, "address", 9_000),
                rec(1, 4, "scan_event", 9_000),
                rec(2, 5, "scan_event", 9_000),
                // Expired at the scan's time: never returned.
                rec(2, 6, "scan_event", 100),
                rec(3, 7, "scan_event", 9_000),
            ],
            leaves: 1,
            ..WriteBatch::default()
        };
        s.write(&batch, &mut |_, _| b"w".to_vec()).unwrap();
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .category_records("scan_event", 500, after.as_ref(), 2)
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some((last.subject, last.id));
            got.extend(page.iter().map(|r| (r.subject[0], r.id[0])));
        }
        assert_eq!(got, vec![(1, 2), (1, 4), (2, 5), (3, 1), (3, 7)]);
    }
}
