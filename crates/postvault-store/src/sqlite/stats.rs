//! [`StatsStore`] on SQLite: the `privacy_budget` ledger and the scan of
//! one category's records, person by person, through `records_subject`
//! (subject, category), each person's rows in row-number order.

use super::*;
use crate::{BudgetLeafFn, BudgetOutcome, BudgetRow, BudgetSpend, ScanPage, ScanPos, stats_decide};

/// The statistics scan's query, with `$consent` (a condition, or nothing)
/// before its order: one text for [`SCAN`] and [`SCAN_CONSENTED`].
macro_rules! scan_sql {
    ($consent:literal) => {
        concat!(
            "SELECT id, subject, category, purpose, source, collected_at,
                expires_at, key_id, sealed, superseded_by, rowid
            FROM records INDEXED BY records_subject
            WHERE +category = ?1 AND (subject, rowid) > (?2, ?3) AND subject < ?6
              AND superseded_by IS NULL AND expires_at > ?4
              AND subject NOT IN (SELECT subject FROM purge)",
            $consent,
            " ORDER BY subject, category, rowid LIMIT ?5"
        )
    };
}

/// The statistics scan's page (`category_records`): one category's
/// current records of the subjects in [?2, ?6), after (?2, row ?3), each
/// person's by row number, at most ?5, with their row numbers; in the
/// index's order, so not sorted (`the_scan_walks_its_index_without_a_sort`).
const SCAN: &str = scan_sql!("");

/// [`SCAN`] for the people whose consent to purpose ?7 stands.
const SCAN_CONSENTED: &str = scan_sql!(
    " AND EXISTS (SELECT 1 FROM consents c WHERE c.subject = records.subject
                  AND c.purpose = ?7 AND c.granted <> 0)"
);

impl StatsStore for SqliteStore {
    fn category_records(
        &self,
        category: &str,
        now: i64,
        after: Option<&ScanPos>,
        until: Option<&SubjectRef>,
        limit: usize,
        consented: Option<&str>,
    ) -> Result<ScanPage, StoreError> {
        let mut page = ScanPage::default();
        self.category_records_into(category, now, after, until, limit, consented, &mut page)?;
        Ok(page)
    }

    fn category_records_into(
        &self,
        category: &str,
        now: i64,
        after: Option<&ScanPos>,
        until: Option<&SubjectRef>,
        limit: usize,
        consented: Option<&str>,
        page: &mut ScanPage,
    ) -> Result<(), StoreError> {
        let (subject, at): (&[u8], i64) = match after {
            Some((s, at)) => (s, row_of(at)),
            None => (&[], 0),
        };
        let until = scan_until(until);
        // On a connection of its own: scans of other ranges run beside it.
        // SQLite walks the subject range of `records_subject` (subject,
        // category, and the row number every index entry ends with) in its
        // own order, (subject, category, rowid), which with the category
        // fixed is each person's rows by row number: nothing is sorted (by
        // id, or by (subject, rowid), each person's rows were sorted in a
        // temporary B-tree). The category is tested on the index's entries
        // (`+category`: as a test, not a key; as a key the planner does not
        // see the order, the subject being a range).
        //
        // Each row is read into the page's row of the last page at its
        // place, whose strings and sealed bytes are overwritten, not
        // allocated again.
        let rows = &mut page.rows;
        let mut n = 0usize;
        let mut last = None;
        self.with_scanner(|conn| {
            let mut stmt;
            let mut q = match consented {
                None => {
                    stmt = conn.prepare_cached(SCAN)?;
                    stmt.query(params![category, subject, at, now, limit as i64, until])?
                }
                Some(purpose) => {
                    stmt = conn.prepare_cached(SCAN_CONSENTED)?;
                    stmt.query(params![
                        category,
                        subject,
                        at,
                        now,
                        limit as i64,
                        until,
                        purpose
                    ])?
                }
            };
            while let Some(r) = q.next()? {
                match rows.get_mut(n) {
                    Some(slot) => record_into(r, slot)?,
                    None => rows.push(record_from_row(r)?),
                }
                last = Some(r.get::<_, i64>(10)?);
                n += 1;
            }
            Ok(())
        })?;
        rows.truncate(n);
        page.next = match (rows.last(), last) {
            (Some(r), Some(row)) => Some((r.subject, at_of(row))),
            _ => None,
        };
        Ok(())
    }

    fn spend_budget(
        &self,
        spend: &BudgetSpend,
        leaf: &mut BudgetLeafFn<'_>,
    ) -> Result<(BudgetOutcome, u64), StoreError> {
        let mut conn = self.conn();
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
        let outcome = stats_decide(spend, spent as u64);
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
        let idx = append(&tx, 1, &mut |i, _| leaf(&outcome, i).into())?;
        tx.commit()?;
        Ok((outcome, idx))
    }

    fn budgets(&self) -> Result<Vec<BudgetRow>, StoreError> {
        let conn = self.conn();
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

/// A scan position's row number ([`ScanPos`]: big-endian in its first 8
/// bytes; the start, all zeros, is before every row, numbered from 1).
fn row_of(at: &[u8; 16]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&at[..8]);
    i64::from_be_bytes(b)
}

/// The scan position of row number `row` ([`row_of`]'s inverse).
fn at_of(row: i64) -> [u8; 16] {
    let mut at = [0u8; 16];
    at[..8].copy_from_slice(&row.to_be_bytes());
    at
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The scan walks `records_subject` in its own order: no sort of any
    /// part of the page (by id, each person's rows were sorted), for
    /// either form of the query.
    #[test]
    fn the_scan_walks_its_index_without_a_sort() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.db");
        drop(SqliteStore::open(&path, OpenMode::Create).unwrap());
        let conn = Connection::open(&path).unwrap();
        for sql in [SCAN, SCAN_CONSENTED] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(
                    params![
                        "scan_event",
                        &[0u8; 16][..],
                        0i64,
                        0i64,
                        10i64,
                        &[0xffu8; 17][..],
                        "marketing"
                    ]
                    .get(..if sql == SCAN { 6 } else { 7 })
                    .unwrap(),
                    |r| r.get::<_, String>(3),
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter()
                    .any(|d| d.contains("USING INDEX records_subject (subject>? AND subject<?)")),
                "{plan:?}"
            );
            assert!(!plan.iter().any(|d| d.contains("TEMP B-TREE")), "{plan:?}");
        }
        // The controls sort, so the check can fail: the plan by id, and
        // the category as a key (the planner then loses the order).
        let plan_of = |sql: &str| -> Vec<String> {
            conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(
                    params![
                        "scan_event",
                        &[0u8; 16][..],
                        &[0u8; 16][..],
                        0i64,
                        10i64,
                        &[0xffu8; 17][..]
                    ],
                    |r| r.get::<_, String>(3),
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let by_id = SCAN.replace("rowid) > (?2, ?3)", "id) > (?2, ?3)").replace(
            "ORDER BY subject, category, rowid",
            "ORDER BY subject, category, id",
        );
        let as_key = SCAN.replace("+category = ?1", "category = ?1");
        for control in [by_id, as_key] {
            assert_ne!(control, SCAN);
            let plan = plan_of(&control);
            assert!(plan.iter().any(|d| d.contains("TEMP B-TREE")), "{plan:?}");
        }
    }

    #[test]
    fn scan_positions_keep_the_row_number() {
        for row in [0, 1, 255, 256, 1 << 40, i64::MAX] {
            assert_eq!(row_of(&at_of(row)), row);
        }
        assert_eq!(row_of(&[0; 16]), 0);
    }
}
