//! [`PgKeyStore`]: the key store on PostgreSQL, in a schema (by default
//! `postvault_keys`) of its own, or in a database or cluster of its own
//! when given its own URL, so that a dump of the data holds no key.
//!
//! PostgreSQL has no `secure_delete`: a deleted row stays in its heap page
//! until VACUUM makes the space reusable and a later write overwrites it,
//! and in WAL segments and base backups until they are recycled. Every
//! destruction therefore runs `VACUUM` on its table once committed, and
//! docs/postgres.md says what remains and for how long.

use std::collections::HashMap;

use postvault_store::{
    KeyAction, KeyItem, KeyStore, LogState, LogStateSwap, RewrapCount, RewrapFn, StoreError,
    SubjectKeys, SubjectRef,
};

use crate::PgOptions;
use crate::db::{Db, Fail};
use crate::schema::{KEYS_MIGRATIONS, Kind, migrate};

/// The key store on PostgreSQL.
pub struct PgKeyStore {
    db: Db,
}

impl std::fmt::Debug for PgKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgKeyStore")
            .field("url", &self.db.shown)
            .finish_non_exhaustive()
    }
}

fn keys_from_row(r: &tokio_postgres::Row) -> Result<SubjectKeys, Fail> {
    let subject: &[u8] = r.try_get(0)?;
    Ok(SubjectKeys {
        subject: <[u8; 16]>::try_from(subject).map_err(|_| {
            Fail::Store(StoreError::Corrupt(
                "a stored subject ref is not 16 bytes".into(),
            ))
        })?,
        data: r.try_get(1)?,
        tag: r.try_get(2)?,
    })
}

impl PgKeyStore {
    /// Connects to the key store in `opts.keys_schema` of the database at
    /// `url`, creating or migrating its tables.
    pub fn open(url: &str, opts: &PgOptions) -> Result<PgKeyStore, StoreError> {
        let db = Db::connect(url, &opts.keys_schema, opts.pool_size.min(4))?;
        migrate(
            &db,
            &opts.keys_schema,
            Kind::Keys,
            KEYS_MIGRATIONS,
            opts.create,
        )?;
        db.check_durability()?;
        Ok(PgKeyStore { db })
    }

    /// The settings that make a commit durable, as the server reports them
    /// for the key store's connections.
    pub fn durability(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db.durability()
    }

    /// Makes the space of deleted rows of `table` reusable. Databases
    /// without VACUUM (CockroachDB garbage-collects after its GC TTL) refuse
    /// it: that is not an error of the destruction, which has committed.
    fn vacuum(&self, table: &str) -> Result<(), StoreError> {
        let r = self.db.run(false, async |c| {
            c.batch_execute(&format!("VACUUM {table}")).await?;
            Ok(())
        });
        match r {
            Err(StoreError::Backend { code, .. }) if code == "0A000" || code == "42601" => Ok(()),
            other => other,
        }
    }

    fn destroy(
        &self,
        sql: &str,
        table: &str,
        keys: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.destroy_with(sql, table, &[keys])
    }

    /// [`PgKeyStore::destroy`] with several parameters.
    fn destroy_with(
        &self,
        sql: &str,
        table: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let rows = self.db.run(false, async |c| {
            let tx = c.transaction().await?;
            let rows = tx.query(sql, params).await?;
            tx.commit().await?;
            Ok(rows)
        })?;
        if !rows.is_empty() {
            self.vacuum(table)?;
        }
        Ok(rows)
    }
}

fn log_state_from_row(r: &tokio_postgres::Row) -> Result<LogState, Fail> {
    let root: &[u8] = r.try_get(1)?;
    Ok(LogState {
        size: r.try_get::<_, i64>(0)? as u64,
        root: <[u8; 32]>::try_from(root).map_err(|_| {
            Fail::Store(StoreError::Corrupt(
                "the log state's root is not 32 bytes".into(),
            ))
        })?,
        note: r.try_get(2)?,
        signed: r.try_get::<_, i64>(3)? as u64,
    })
}

/// Inserts of a secret a concurrent destruction undoes, before giving up.
const PUT_OR_GET_ATTEMPTS: usize = 8;

impl KeyStore for PgKeyStore {
    fn log_state(&self) -> Result<Option<LogState>, StoreError> {
        self.db.run(true, async |c| {
            match c
                .query_opt(
                    "SELECT size, root, note, signed FROM log_state WHERE id = 1",
                    &[],
                )
                .await?
            {
                Some(r) => Ok(Some(log_state_from_row(&r)?)),
                None => Ok(None),
            }
        })
    }

    fn swap_log_state(
        &self,
        expected: Option<&LogState>,
        new: &LogState,
    ) -> Result<LogStateSwap, StoreError> {
        // Not idempotent: after an ambiguous commit the retry would find
        // its own state and report it as changed, which the caller handles
        // by reading again.
        self.db.run(false, async |c| {
            let tx = c.transaction().await?;
            // The row lock orders every signer on every node; a signer that
            // finds no row yet races on the primary key instead.
            let found = match tx
                .query_opt(
                    "SELECT size, root, note, signed FROM log_state WHERE id = 1 FOR UPDATE",
                    &[],
                )
                .await?
            {
                Some(r) => Some(log_state_from_row(&r)?),
                None => None,
            };
            if found.as_ref() != expected {
                return Ok(LogStateSwap::Changed(found));
            }
            let n = tx
                .execute(
                    "INSERT INTO log_state (id, size, root, note, signed) VALUES (1, $1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET size = excluded.size, root = excluded.root,
                         note = excluded.note, signed = excluded.signed
                     WHERE $5",
                    &[
                        &(new.size as i64),
                        &&new.root[..],
                        &new.note,
                        &(new.signed as i64),
                        &found.is_some(),
                    ],
                )
                .await?;
            if n == 0 {
                // Another node inserted the first state meanwhile.
                return Ok(LogStateSwap::Changed(None));
            }
            tx.commit().await?;
            Ok(LogStateSwap::Swapped)
        })
    }

    fn put_subject_keys(&self, keys: &[SubjectKeys]) -> Result<Vec<SubjectRef>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let refs: Vec<&[u8]> = keys.iter().map(|k| &k.subject[..]).collect();
        let data: Vec<&[u8]> = keys.iter().map(|k| k.data.as_slice()).collect();
        let tag: Vec<&[u8]> = keys.iter().map(|k| k.tag.as_slice()).collect();
        let inserted: Vec<Vec<u8>> = self.db.run(false, async |c| {
            let tx = c.transaction().await?;
            let rows = tx
                .query(
                    // In ref order: concurrent inserts of overlapping
                    // people (several workers, several nodes) then wait for
                    // each other instead of deadlocking.
                    "INSERT INTO subject_keys (ref, data, tag)
                     SELECT r, d, t FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) AS k (r, d, t)
                     ORDER BY r
                     ON CONFLICT DO NOTHING RETURNING ref",
                    &[&refs, &data, &tag],
                )
                .await?;
            let out = rows
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            tx.commit().await?;
            Ok(out)
        })?;
        // The first occurrence of a ref that was inserted is new; every
        // other occurrence found keys there already.
        let mut fresh: std::collections::HashSet<Vec<u8>> = inserted.into_iter().collect();
        Ok(keys
            .iter()
            .filter(|k| !fresh.remove(&k.subject[..]))
            .map(|k| k.subject)
            .collect())
    }

    fn subject_keys(&self, subject: &SubjectRef) -> Result<Option<SubjectKeys>, StoreError> {
        self.db.run(false, async |c| {
            let s = c
                .prepare_cached("SELECT ref, data, tag FROM subject_keys WHERE ref = $1")
                .await?;
            match c.query_opt(&s, &[&&subject[..]]).await? {
                Some(r) => Ok(Some(keys_from_row(&r)?)),
                None => Ok(None),
            }
        })
    }

    fn subject_keys_many(
        &self,
        subjects: &[SubjectRef],
    ) -> Result<Vec<Option<SubjectKeys>>, StoreError> {
        let refs: Vec<&[u8]> = subjects.iter().map(|s| &s[..]).collect();
        let found: HashMap<SubjectRef, SubjectKeys> = self.db.run(false, async |c| {
            let s = c
                .prepare_cached("SELECT ref, data, tag FROM subject_keys WHERE ref = ANY($1)")
                .await?;
            let mut m = HashMap::new();
            for r in c.query(&s, &[&refs]).await? {
                let k = keys_from_row(&r)?;
                m.insert(k.subject, k);
            }
            Ok(m)
        })?;
        Ok(subjects.iter().map(|s| found.get(s).cloned()).collect())
    }

    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.run(false, async |c| {
            match c
                .query_opt("SELECT value FROM secrets WHERE name = $1", &[&name])
                .await?
            {
                Some(r) => Ok(Some(r.try_get(0)?)),
                None => Ok(None),
            }
        })
    }

    fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let n = self.db.run(false, async |c| {
            Ok(c.execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &value],
            )
            .await?)
        })?;
        if n == 0 {
            return Err(StoreError::SecretExists(name.to_string()));
        }
        Ok(())
    }

    fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.delete_secrets(&[name.to_string()])? > 0)
    }

    fn put_secret_or_get(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.db.run(false, async |c| {
            // Another process may delete the secret between the insert
            // that found it and the read: then insert again.
            for _ in 0..PUT_OR_GET_ATTEMPTS {
                c.execute(
                    "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&name, &value],
                )
                .await?;
                if let Some(r) = c
                    .query_opt("SELECT value FROM secrets WHERE name = $1", &[&name])
                    .await?
                {
                    return Ok(r.try_get(0)?);
                }
            }
            Err(Fail::Store(StoreError::NotCommitted(format!(
                "the secret {name} kept being destroyed as it was stored"
            ))))
        })
    }

    fn secret_names(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.db.run(false, async |c| {
            c.query(
                "SELECT name FROM secrets WHERE left(name, char_length($1::text)) = $1::text
                 ORDER BY name COLLATE \"C\"",
                &[&prefix],
            )
            .await?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
        })
    }

    fn delete_secrets(&self, names: &[String]) -> Result<u64, StoreError> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let gone = self.destroy(
            "DELETE FROM secrets WHERE name = ANY($1) RETURNING name",
            "secrets",
            &names,
        )?;
        Ok(gone.len() as u64)
    }

    fn delete_secrets_guarded(
        &self,
        guard: &str,
        value: &[u8],
        unless_prefix: &str,
        names: &[String],
    ) -> Result<bool, StoreError> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let done = self.db.run(false, async |c| {
            let tx = c.transaction().await?;
            // The guard first: its row stays locked until this commits, so
            // a process that stores a secret under `unless_prefix` and then
            // deletes the guard (as a hold does) either stored it before the
            // look below, which sees it, or waits here and finds the guard
            // gone only after this has decided.
            if tx
                .execute(
                    "DELETE FROM secrets WHERE name = $1 AND value = $2",
                    &[&guard, &value],
                )
                .await?
                == 0
            {
                return Ok(false);
            }
            let others = tx
                .query(
                    "SELECT name FROM secrets WHERE left(name, char_length($1::text)) = $1::text",
                    &[&unless_prefix],
                )
                .await?;
            for r in &others {
                let n: &str = r.try_get(0)?;
                if !names.contains(&n) {
                    // Dropped uncommitted: the guard stays.
                    return Ok(false);
                }
            }
            tx.execute("DELETE FROM secrets WHERE name = ANY($1)", &[&names])
                .await?;
            tx.commit().await?;
            Ok(true)
        })?;
        if done {
            self.vacuum("secrets")?;
        }
        Ok(done)
    }

    fn delete_subject_keys(&self, subjects: &[SubjectRef]) -> Result<Vec<SubjectRef>, StoreError> {
        let refs: Vec<&[u8]> = subjects.iter().map(|s| &s[..]).collect();
        let gone: std::collections::HashSet<Vec<u8>> = self
            .destroy(
                "DELETE FROM subject_keys WHERE ref = ANY($1) RETURNING ref",
                "subject_keys",
                &refs,
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(|e| crate::db::store_error(&e))?;
        // Each once, in the order asked (as SQLite answers).
        let mut seen = std::collections::HashSet::new();
        Ok(subjects
            .iter()
            .filter(|s| gone.contains(&s[..]) && seen.insert(**s))
            .copied()
            .collect())
    }

    fn delete_subject_keys_as(&self, keys: &[SubjectKeys]) -> Result<Vec<SubjectRef>, StoreError> {
        let refs: Vec<&[u8]> = keys.iter().map(|k| &k.subject[..]).collect();
        let data: Vec<&[u8]> = keys.iter().map(|k| &k.data[..]).collect();
        let gone: std::collections::HashSet<Vec<u8>> = self
            .destroy_with(
                "DELETE FROM subject_keys k USING unnest($1::bytea[], $2::bytea[]) AS g(ref, data)
                 WHERE k.ref = g.ref AND k.data = g.data RETURNING k.ref",
                "subject_keys",
                &[&refs, &data],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(|e| crate::db::store_error(&e))?;
        // Each once, in the order given (as SQLite answers).
        let mut seen = std::collections::HashSet::new();
        Ok(keys
            .iter()
            .map(|k| k.subject)
            .filter(|s| gone.contains(&s[..]) && seen.insert(*s))
            .collect())
    }

    fn subject_refs(
        &self,
        after: Option<&SubjectRef>,
        limit: usize,
    ) -> Result<Vec<SubjectRef>, StoreError> {
        let from: &[u8] = after.map_or(&[], |a| &a[..]);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db.run(false, async |c| {
            c.query(
                "SELECT ref FROM subject_keys WHERE ref > $1 ORDER BY ref LIMIT $2",
                &[&from, &limit],
            )
            .await?
            .iter()
            .map(|r| crate::store::ref16(r.try_get(0)?, "subject ref"))
            .collect()
        })
    }

    fn rewrap(
        &self,
        f: &mut RewrapFn<'_>,
        insert: &[(String, Vec<u8>)],
    ) -> Result<RewrapCount, StoreError> {
        let n = self.db.session(false, |w, c| {
            let tx = w.wait(async {
                let tx = c.transaction().await?;
                // Nothing else writes keys while they are re-wrapped.
                tx.batch_execute("LOCK TABLE subject_keys, secrets IN EXCLUSIVE MODE")
                    .await?;
                Ok::<_, Fail>(tx)
            })?;
            let mut n = RewrapCount::default();
            let mut after: Vec<u8> = Vec::new();
            loop {
                let page: Vec<SubjectKeys> = w.wait(async {
                    tx.query(
                        "SELECT ref, data, tag FROM subject_keys WHERE ref > $1 ORDER BY ref LIMIT 4096",
                        &[&after],
                    )
                    .await?
                    .iter()
                    .map(keys_from_row)
                    .collect::<Result<Vec<_>, Fail>>()
                })?;
                let Some(last) = page.last() else { break };
                after = last.subject.to_vec();
                let mut up_refs: Vec<&[u8]> = Vec::new();
                let mut up_data: Vec<Vec<u8>> = Vec::new();
                let mut up_tags: Vec<Vec<u8>> = Vec::new();
                let mut del: Vec<&[u8]> = Vec::new();
                for k in &page {
                    match crate::db::guarded(|| f(KeyItem::Subject(k)))?.map_err(Fail::Store)? {
                        KeyAction::Keep => {}
                        KeyAction::Subject(d, t) => {
                            up_refs.push(&k.subject[..]);
                            up_data.push(d);
                            up_tags.push(t);
                        }
                        KeyAction::Delete => del.push(&k.subject[..]),
                        KeyAction::Secret(_) => {
                            return Err(Fail::Store(StoreError::Corrupt(
                                "a subject's keys cannot become a secret".into(),
                            )));
                        }
                    }
                }
                n.subjects += up_refs.len() as u64;
                n.deleted += del.len() as u64;
                w.wait(async {
                    if !up_refs.is_empty() {
                        tx.execute(
                            "UPDATE subject_keys k SET data = d.data, tag = d.tag
                             FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) AS d (r, data, tag)
                             WHERE k.ref = d.r",
                            &[&up_refs, &up_data, &up_tags],
                        )
                        .await?;
                    }
                    if !del.is_empty() {
                        tx.execute("DELETE FROM subject_keys WHERE ref = ANY($1)", &[&del])
                            .await?;
                    }
                    Ok::<_, Fail>(())
                })?;
            }
            let secrets: Vec<(String, Vec<u8>)> = w.wait(async {
                tx.query("SELECT name, value FROM secrets ORDER BY name", &[])
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<Vec<_>, Fail>>()
            })?;
            for (name, value) in &secrets {
                let action = crate::db::guarded(|| f(KeyItem::Secret(name, value)))?
                    .map_err(Fail::Store)?;
                w.wait(async {
                    match action {
                        KeyAction::Keep => {}
                        KeyAction::Secret(v) => {
                            tx.execute(
                                "UPDATE secrets SET value = $2 WHERE name = $1",
                                &[name, &v],
                            )
                            .await?;
                            n.secrets += 1;
                        }
                        KeyAction::Delete => {
                            tx.execute("DELETE FROM secrets WHERE name = $1", &[name])
                                .await?;
                            n.deleted += 1;
                        }
                        KeyAction::Subject(..) => {
                            return Err(Fail::Store(StoreError::Corrupt(
                                "a secret cannot become a subject's keys".into(),
                            )));
                        }
                    }
                    Ok::<_, Fail>(())
                })?;
            }
            w.wait(async {
                for (name, value) in insert {
                    tx.execute(
                        "INSERT INTO secrets (name, value) VALUES ($1, $2)
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        &[name, value],
                    )
                    .await?;
                    n.inserted += 1;
                }
                tx.commit().await?;
                Ok::<_, Fail>(())
            })?;
            Ok(n)
        })?;
        self.vacuum("subject_keys")?;
        self.vacuum("secrets")?;
        Ok(n)
    }
}
