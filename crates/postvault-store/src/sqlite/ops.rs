//! [`OpsStore`] on SQLite: collection runs, intents, `check`'s counts
//! (through [`crate::sqlite_ops`]) and metadata.

use super::*;

impl OpsStore for SqliteStore {
    fn run(&self, run: &[u8; 16]) -> Result<Option<RunRow>, StoreError> {
        sqlite_ops::run(&self.conn(), run)
    }

    fn finish_run(&self, step: &RunStep) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        sqlite_ops::run_step(&tx, step, None, false)?;
        tx.commit()?;
        Ok(())
    }

    fn put_intent(&self, intent: &Intent, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let idx = append(&tx, 1, leaf)?;
        sqlite_ops::insert_intent(&tx, idx, intent)?;
        tx.commit()?;
        Ok(idx)
    }

    fn intents(&self) -> Result<Vec<IntentRow>, StoreError> {
        sqlite_ops::intents(&self.conn())
    }

    fn finish_intent(
        &self,
        id: u64,
        leaf: &mut dyn FnMut(u64, &IntentRow) -> Vec<u8>,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(row) = sqlite_ops::take_intent(&tx, id)? else {
            return Ok(None);
        };
        let idx = append(&tx, 1, &mut |idx, _| leaf(idx, &row).into())?;
        tx.commit()?;
        Ok(Some(idx))
    }

    fn key_usage(&self) -> Result<Vec<KeyUse>, StoreError> {
        sqlite_ops::key_usage(&self.conn())
    }

    fn record_subjects(
        &self,
        after: Option<&SubjectRef>,
        limit: usize,
    ) -> Result<Vec<(SubjectRef, u64)>, StoreError> {
        sqlite_ops::record_subjects(&self.conn(), after, limit)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}
