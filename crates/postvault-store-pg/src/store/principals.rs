//! [`PrincipalStore`] on PostgreSQL: principals by name and token hash, and
//! the principals generation.

use super::*;

impl PrincipalStore for PgStore {
    fn add_principal(&self, p: &PrincipalRow) -> Result<(), StoreError> {
        let n = self.db.run(false, async |c| {
            Ok(c.execute(
                "INSERT INTO principals (name, role, token_hash, created_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &p.name,
                    &p.role,
                    &p.token_hash,
                    &p.created_at,
                    &p.revoked_at,
                ],
            )
            .await?)
        })?;
        if n == 0 {
            return Err(StoreError::PrincipalExists(p.name.clone()));
        }
        Ok(())
    }

    fn principal(&self, name: &str) -> Result<Option<PrincipalRow>, StoreError> {
        self.db.run(false, async |c| {
            let s = c
                .prepare_cached(&format!(
                    "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE name = $1"
                ))
                .await?;
            match c.query_opt(&s, &[&name]).await? {
                Some(r) => Ok(Some(principal_from_row(&r)?)),
                None => Ok(None),
            }
        })
    }

    fn principals(&self) -> Result<Vec<PrincipalRow>, StoreError> {
        self.db.run(false, async |c| {
            let s = c
                .prepare_cached(&format!(
                    "SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY name COLLATE \"C\""
                ))
                .await?;
            c.query(&s, &[])
                .await?
                .iter()
                .map(principal_from_row)
                .collect()
        })
    }

    fn principal_by_token(&self, token_hash: &[u8]) -> Result<Option<PrincipalRow>, StoreError> {
        self.db.run(false, async |c| {
            // The unique index `principals_token` answers it.
            let s = c
                .prepare_cached(&format!(
                    "SELECT {PRINCIPAL_COLUMNS} FROM principals
                     WHERE token_hash = $1 AND revoked_at IS NULL"
                ))
                .await?;
            match c.query_opt(&s, &[&token_hash]).await? {
                Some(r) => Ok(Some(principal_from_row(&r)?)),
                None => Ok(None),
            }
        })
    }

    fn change_principal(
        &self,
        name: &str,
        change: PrincipalChange<'_>,
        leaf: &mut LeafFn<'_>,
    ) -> Result<u64, StoreError> {
        let (update, value): (&str, &(dyn ToSql + Sync)) = match &change {
            PrincipalChange::Revoke { at } => (
                "UPDATE principals SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
                at,
            ),
            PrincipalChange::Rotate { token_hash } => (
                "UPDATE principals SET token_hash = $2 WHERE name = $1 AND revoked_at IS NULL",
                token_hash,
            ),
        };
        // One transaction that holds the tree-state lock (the leaf's index
        // is the log's next).
        self.db.session(false, |w, c| {
            let (tx, first) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                let first = lock_tree(&tx).await?;
                let n = tx.execute(update, &[&name, value]).await?;
                if n != 1 {
                    return Err(Fail::Store(StoreError::PrincipalNotActive(name.to_string())));
                }
                tx.execute(
                    "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'principals_gen'",
                    &[],
                )
                .await?;
                Ok::<_, Fail>((tx, first))
            })?;
            let bodies = build_leaves(first, 1, leaf)?;
            w.wait(async {
                append(&tx, first, &bodies).await?;
                tx.commit().await?;
                Ok(first)
            })
        })
    }

    fn principals_gen(&self) -> Result<u64, StoreError> {
        self.db
            .run(false, async |c| meta_u64_of(c, "principals_gen").await)
    }
}

pub(super) fn principal_from_row(r: &Row) -> Result<PrincipalRow, Fail> {
    Ok(PrincipalRow {
        name: r.try_get(0)?,
        role: r.try_get(1)?,
        token_hash: r.try_get(2)?,
        created_at: r.try_get(3)?,
        revoked_at: r.try_get(4)?,
    })
}
