//! [`OpsStore`] on PostgreSQL: collection runs, intents, `check`'s counts
//! (through [`crate::ops`]) and metadata.

use super::*;

impl OpsStore for PgStore {
    fn run(&self, run: &[u8; 16]) -> Result<Option<RunRow>, StoreError> {
        self.db
            .run(false, async |c| crate::ops::run(&*c, run).await)
    }

    fn finish_run(&self, step: &RunStep) -> Result<(), StoreError> {
        self.db.run(false, async |c| {
            let tx = begin(c, self.isolation).await?;
            // Ordered with the run's batches, which lock the tree first.
            lock_tree(&tx).await?;
            crate::ops::run_step(&tx, step, None, false).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn put_intent(&self, intent: &Intent, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        self.db.session(false, |w, c| {
            let (tx, first) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let first = lock_tree(&tx).await?;
                Ok::<_, Fail>((tx, first))
            })?;
            let bodies = build_leaves(first, 1, leaf)?;
            w.wait(async {
                append(&tx, first, &bodies).await?;
                crate::ops::insert_intent(&tx, first, intent).await?;
                tx.commit().await?;
                Ok(first)
            })
        })
    }

    fn intents(&self) -> Result<Vec<IntentRow>, StoreError> {
        self.db.run(false, async |c| crate::ops::intents(&*c).await)
    }

    fn finish_intent(
        &self,
        id: u64,
        leaf: &mut dyn FnMut(u64, &IntentRow) -> Vec<u8>,
    ) -> Result<Option<u64>, StoreError> {
        self.db.session(false, |w, c| {
            let (tx, first, row) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let first = lock_tree(&tx).await?;
                let row = crate::ops::take_intent(&tx, id).await?;
                Ok::<_, Fail>((tx, first, row))
            })?;
            let Some(row) = row else {
                return Ok(None);
            };
            let body: Leaf = guarded(|| leaf(first, &row))?.into();
            w.wait(async {
                append(&tx, first, std::slice::from_ref(&body)).await?;
                tx.commit().await?;
                Ok(Some(first))
            })
        })
    }

    fn key_usage(&self) -> Result<Vec<KeyUse>, StoreError> {
        self.db
            .run(false, async |c| crate::ops::key_usage(&*c).await)
    }

    fn record_subjects(
        &self,
        after: Option<&SubjectRef>,
        limit: usize,
    ) -> Result<Vec<(SubjectRef, u64)>, StoreError> {
        self.db.run(false, async |c| {
            crate::ops::record_subjects(&*c, after, limit).await
        })
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.db.run(false, async |c| {
            match c
                .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
                .await?
            {
                Some(r) => Ok(Some(r.try_get(0)?)),
                None => Ok(None),
            }
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.db.run(false, async |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await?;
            Ok(())
        })
    }
}
