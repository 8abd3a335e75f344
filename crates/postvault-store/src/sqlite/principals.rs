//! [`PrincipalStore`] on SQLite: principals by name and token hash, and
//! the principals generation.

use super::*;

impl PrincipalStore for SqliteStore {
    fn add_principal(&self, p: &PrincipalRow) -> Result<(), StoreError> {
        let conn = self.conn();
        // A name is taken for good (a revoked one too); a token hash is
        // unique (its index): either refuses the row.
        let n = conn.execute(
            "INSERT INTO principals (name, role, token_hash, created_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![p.name, p.role, p.token_hash, p.created_at, p.revoked_at],
        )?;
        if n == 0 {
            return Err(StoreError::PrincipalExists(p.name.clone()));
        }
        Ok(())
    }

    fn principal(&self, name: &str) -> Result<Option<PrincipalRow>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE name = ?1"
        ))?;
        Ok(s.query_row([name], principal_from_row).optional()?)
    }

    fn principals(&self) -> Result<Vec<PrincipalRow>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY name"
        ))?;
        let rows = s
            .query_map([], principal_from_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn principal_by_token(&self, token_hash: &[u8]) -> Result<Option<PrincipalRow>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals INDEXED BY principals_token
             WHERE token_hash = ?1 AND revoked_at IS NULL"
        ))?;
        Ok(s.query_row([token_hash], principal_from_row).optional()?)
    }

    fn change_principal(
        &self,
        name: &str,
        change: PrincipalChange<'_>,
        leaf: &mut LeafFn<'_>,
    ) -> Result<u64, StoreError> {
        let (update, value): (&str, &dyn rusqlite::ToSql) = match &change {
            PrincipalChange::Revoke { at } => (
                "UPDATE principals SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                at,
            ),
            PrincipalChange::Rotate { token_hash } => (
                "UPDATE principals SET token_hash = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                token_hash,
            ),
        };
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(update, params![name, value])?;
        if n != 1 {
            return Err(StoreError::PrincipalNotActive(name.to_string()));
        }
        bump_principals_gen(&tx)?;
        let first = append(&tx, 1, leaf)?;
        tx.commit()?;
        Ok(first)
    }

    fn principals_gen(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        let v: String = conn
            .prepare_cached("SELECT value FROM meta WHERE key = 'principals_gen'")?
            .query_row([], |r| r.get(0))?;
        v.parse()
            .map_err(|_| StoreError::Corrupt("the principals generation is not a number".into()))
    }
}

pub(super) fn principal_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PrincipalRow> {
    Ok(PrincipalRow {
        name: r.get(0)?,
        role: r.get(1)?,
        token_hash: r.get(2)?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

/// Moves the principals generation, in the caller's transaction.
pub(super) fn bump_principals_gen(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'principals_gen'",
        [],
    )?;
    Ok(())
}
