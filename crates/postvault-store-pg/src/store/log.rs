//! [`LogStore`] on PostgreSQL: leaves, stored hashes, checkpoints and
//! cosignatures.

use super::*;

impl LogStore for PgStore {
    fn log_size(&self) -> Result<u64, StoreError> {
        self.db.run(false, async |c| {
            let s = c
                .prepare_cached("SELECT size FROM tree_state WHERE id = 1")
                .await?;
            Ok(c.query_one(&s, &[]).await?.try_get::<_, i64>(0)? as u64)
        })
    }

    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let (a, b) = (
            start.min(i64::MAX as u64) as i64,
            end.min(i64::MAX as u64) as i64,
        );
        self.db.run(false, async |c| {
            let s = c
                .prepare_cached(
                    "SELECT idx, body FROM leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                )
                .await?;
            let mut out = Vec::new();
            for (expect, r) in (start..).zip(c.query(&s, &[&a, &b]).await?) {
                let idx: i64 = r.try_get(0)?;
                if idx as u64 != expect {
                    return Err(Fail::Store(StoreError::Corrupt(format!(
                        "log leaf {expect} is missing (found {idx} next)"
                    ))));
                }
                out.push(r.try_get(1)?);
            }
            Ok(out)
        })
    }

    fn log_hashes(&self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
        let ix: Vec<i64> = indexes.iter().map(|&i| i as i64).collect();
        let found =
            self.bytes_by_id("SELECT idx, hash FROM log_hashes WHERE idx = ANY($1)", &ix)?;
        indexes
            .iter()
            .map(|&i| {
                found
                    .get(&(i as i64))
                    .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("log hash {i} is missing")))
            })
            .collect()
    }

    fn hashed_size(&self) -> Result<u64, StoreError> {
        self.db
            .run(false, async |c| meta_u64_of(c, "log_hashed_size").await)
    }

    fn put_log_hashes(
        &self,
        from: u64,
        to: u64,
        hashes: &[(u64, [u8; 32])],
        tiles: &[(u64, Vec<u8>)],
    ) -> Result<bool, StoreError> {
        let idx: Vec<i64> = hashes.iter().map(|(i, _)| *i as i64).collect();
        let hs: Vec<&[u8]> = hashes.iter().map(|(_, h)| &h[..]).collect();
        let tile_ids: Vec<i64> = tiles
            .iter()
            .map(|(i, _)| tile_row(*i))
            .collect::<Result<_, _>>()?;
        let tile_bytes: Vec<&[u8]> = tiles.iter().map(|(_, b)| b.as_slice()).collect();
        self.db.run(false, async |c| {
            let tx = begin(c, self.isolation).await?;
            // The hashed size's row orders hash writers of every node; they
            // do not wait for ingest.
            if meta_u64(&tx, "log_hashed_size", true).await? != from {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO log_hashes (idx, hash) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                &[&idx, &hs],
            )
            .await?;
            if !tiles.is_empty() {
                tx.execute(
                    "INSERT INTO log_tiles (id, hashes) SELECT * FROM unnest($1::bigint[], $2::bytea[])
                     ON CONFLICT (id) DO UPDATE SET hashes = excluded.hashes",
                    &[&tile_ids, &tile_bytes],
                )
                .await?;
            }
            tx.execute(
                "UPDATE meta SET value = $1 WHERE key = 'log_hashed_size'",
                &[&to.to_string()],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn log_tiled_from(&self) -> Result<u64, StoreError> {
        self.meta_number("log_tiled_from", "the log's tiled size")
    }

    fn leaves_at(&self, indexes: &[u64]) -> Result<Vec<Vec<u8>>, StoreError> {
        let ids: Vec<i64> = indexes
            .iter()
            .map(|&i| i.min(i64::MAX as u64) as i64)
            .collect();
        let found = self.bytes_by_id("SELECT idx, body FROM leaves WHERE idx = ANY($1)", &ids)?;
        ids.iter()
            .map(|i| {
                found
                    .get(i)
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt(format!("log leaf {i} is missing")))
            })
            .collect()
    }

    fn leaf_indexed_from(&self) -> Result<u64, StoreError> {
        self.meta_number("leaf_indexed_from", "the leaf index's start")
    }

    fn leaf_index_months(&self) -> Result<Vec<u32>, StoreError> {
        self.db.run(false, async |c| {
            c.query("SELECT month FROM leaf_index_months ORDER BY month", &[])
                .await?
                .iter()
                .map(|r| {
                    u32::try_from(r.try_get::<_, i64>(0)?).map_err(|_| {
                        Fail::Store(StoreError::Corrupt(
                            "a month of the leaf index is out of range".into(),
                        ))
                    })
                })
                .collect()
        })
    }

    fn leaf_index_find(&self, tokens: &[[u8; 16]]) -> Result<Vec<Option<u64>>, StoreError> {
        let wanted: Vec<&[u8]> = tokens.iter().map(|t| &t[..]).collect();
        let found: HashMap<Vec<u8>, u64> = self.db.run(false, async |c| {
            let s = c
                .prepare_cached("SELECT token, idx FROM leaf_index WHERE token = ANY($1)")
                .await?;
            let mut m = HashMap::with_capacity(wanted.len());
            for r in c.query(&s, &[&wanted]).await? {
                m.insert(r.try_get::<_, Vec<u8>>(0)?, leaf_at(r.try_get(1)?)?);
            }
            Ok(m)
        })?;
        Ok(tokens.iter().map(|t| found.get(&t[..]).copied()).collect())
    }

    fn refile_leaves(
        &self,
        tokens: &std::sync::Arc<dyn postvault_store::LeafTokens>,
        plan: &postvault_store::RefilePlan,
        tail: &mut dyn FnMut(u64, &[u8]) -> Option<u32>,
    ) -> Result<postvault_store::Refiled, StoreError> {
        let from = plan.scanned.min(i64::MAX as u64) as i64;
        self.db.session(false, |w, c| {
            // The tree's row locked: no leaf is appended until the
            // person's filings are whole again.
            let (tx, appended) = w.wait(async {
                let tx = begin(c, self.isolation).await?;
                lock_tree(&tx).await?;
                let appended: Vec<(i64, Vec<u8>)> = tx
                    .query(
                        "SELECT idx, body FROM leaves WHERE idx >= $1 ORDER BY idx",
                        &[&from],
                    )
                    .await?
                    .iter()
                    .map(|r| Ok::<_, Fail>((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<_, _>>()?;
                Ok::<_, Fail>((tx, appended))
            })?;
            let mut by_month: std::collections::BTreeMap<u32, Vec<u64>> =
                plan.months.iter().map(|&m| (m, Vec::new())).collect();
            for &(idx, month) in &plan.leaves {
                by_month.entry(month).or_default().push(idx);
            }
            let mut theirs_since: Vec<i64> = Vec::new();
            for (idx, body) in &appended {
                let idx = leaf_at(*idx)?;
                if let Some(month) = guarded(|| tail(idx, body))? {
                    by_month.entry(month).or_default().push(idx);
                    theirs_since.push(idx as i64);
                }
            }
            for idxs in by_month.values_mut() {
                idxs.sort_unstable();
                idxs.dedup();
            }
            w.wait(async {
                let mut out = postvault_store::Refiled::default();
                // The filings of their leaves appended since the scan,
                // wherever they went (the caller looked for strays before
                // they came): one pass over the index, only when any.
                if !theirs_since.is_empty() {
                    out.removed += tx
                        .execute("DELETE FROM leaf_index WHERE idx = ANY($1)", &[&theirs_since])
                        .await?;
                }
                let find = tx
                    .prepare_cached("SELECT token, idx, seal FROM leaf_index WHERE token = ANY($1)")
                    .await?;
                // Every month's slots read before anything is removed (a
                // stray row in a month's run counts as taken, so the read
                // goes past it), a window's worth a round trip.
                let mut changes = Vec::with_capacity(by_month.len());
                for (month, idxs) in &by_month {
                    let mut have: Vec<Option<u64>> = Vec::new();
                    while !postvault_store::refile_read_enough(&have, idxs.len()) {
                        let first = have.len() as u32;
                        let batch: Vec<[u8; 16]> = (first..first + postvault_store::FIRST_WINDOW)
                            .map(|slot| tokens.token(*month, slot))
                            .collect();
                        let asked: Vec<Vec<u8>> = batch.iter().map(|t| t.to_vec()).collect();
                        let found: HashMap<Vec<u8>, (i64, Vec<u8>)> = tx
                            .query(&find, &[&asked])
                            .await?
                            .iter()
                            .map(|r| Ok::<_, Fail>((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
                            .collect::<Result<_, _>>()?;
                        have.extend(batch.iter().map(|t| {
                            found.get(&t[..]).map(|(idx, seal)| {
                                postvault_store::refile_row(&**tokens, t, *idx, seal)
                            })
                        }));
                    }
                    changes.push((*month, postvault_store::refile_changes(&have, idxs)));
                }
                let mut cleared: Vec<Vec<u8>> = Vec::new();
                for (month, (clear, _)) in &changes {
                    cleared.extend(clear.iter().map(|&slot| tokens.token(*month, slot).to_vec()));
                }
                out.removed += tx
                    .execute("DELETE FROM leaf_index WHERE token = ANY($1)", &[&cleared])
                    .await?;
                let del_stray = tx
                    .prepare_cached("DELETE FROM leaf_index WHERE token = $1 AND idx = $2")
                    .await?;
                for (token, idx) in &plan.stray {
                    if !cleared.iter().any(|c| c[..] == token[..]) {
                        out.removed += tx
                            .execute(&del_stray, &[&&token[..], &(*idx as i64)])
                            .await?;
                    }
                }
                let mut new_tokens = Vec::new();
                let mut new_idx = Vec::new();
                let mut seals = Vec::new();
                for (month, (_, write)) in &changes {
                    for &(slot, idx) in write {
                        let token = tokens.token(*month, slot);
                        seals.push(tokens.seal(&token, idx).to_vec());
                        new_tokens.push(token.to_vec());
                        new_idx.push(idx as i64);
                    }
                    let own = by_month.get(month).map_or(0, Vec::len);
                    if own > 0 {
                        tx.execute(
                            "INSERT INTO leaf_index_months (month) VALUES ($1) ON CONFLICT DO NOTHING",
                            &[&i64::from(*month)],
                        )
                        .await?;
                        out.months += 1;
                        out.leaves += own as u64;
                    }
                }
                out.written += tx
                    .execute(
                        "INSERT INTO leaf_index (token, idx, seal)
                         SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[])",
                        &[&new_tokens, &new_idx, &seals],
                    )
                    .await?;
                tx.commit().await?;
                Ok(out)
            })
        })
    }

    fn leaf_index_page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<postvault_store::LeafIndexRow>, StoreError> {
        let after = after.unwrap_or(&[]).to_vec();
        let limit = limit.min(i64::MAX as usize) as i64;
        self.db.run(false, async |c| {
            c.query(
                "SELECT idx, token, seal FROM leaf_index WHERE token > $1 ORDER BY token LIMIT $2",
                &[&after, &limit],
            )
            .await?
            .iter()
            .map(|r| {
                let idx: i64 = r.try_get(0)?;
                Ok(postvault_store::LeafIndexRow {
                    idx: leaf_at(idx)?,
                    token: r.try_get(1)?,
                    seal: r.try_get(2)?,
                })
            })
            .collect()
        })
    }

    fn log_tile_hashes(&self, wanted: &[(u64, usize)]) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut ids: Vec<i64> = wanted
            .iter()
            .map(|(t, _)| tile_row(*t))
            .collect::<Result<_, _>>()?;
        ids.sort_unstable();
        ids.dedup();
        let found =
            self.bytes_by_id("SELECT id, hashes FROM log_tiles WHERE id = ANY($1)", &ids)?;
        wanted
            .iter()
            .map(|&(t, slot)| {
                let tile = found
                    .get(&(t as i64))
                    .ok_or_else(|| StoreError::Corrupt(format!("log proof tile {t} is missing")))?;
                tile.get(slot * 32..slot * 32 + 32)
                    .filter(|_| tile.len() == TILE_BYTES)
                    .and_then(|h| <[u8; 32]>::try_from(h).ok())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("log proof tile {t} has no hash {slot}"))
                    })
            })
            .collect()
    }

    fn log_tiles(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let (a, b) = (tile_row(start)?, tile_row(end)?);
        self.db.run(false, async |c| {
            c.query(
                "SELECT id, hashes FROM log_tiles WHERE id >= $1 AND id < $2 ORDER BY id",
                &[&a, &b],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get::<_, i64>(0)? as u64, r.try_get(1)?)))
            .collect()
        })
    }

    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        self.db.run(false, async |c| {
            c.execute(
                "INSERT INTO log_checkpoints (size, note) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&(size as i64), &note],
            )
            .await?;
            Ok(())
        })
    }

    fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        self.db.run(false, async |c| {
            c.query("SELECT size, note FROM log_checkpoints ORDER BY size", &[])
                .await?
                .iter()
                .map(|r| Ok((r.try_get::<_, i64>(0)? as u64, r.try_get(1)?)))
                .collect()
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.db.run(false, async |c| {
            match c
                .query_opt(
                    "SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1",
                    &[],
                )
                .await?
            {
                Some(r) => Ok(Some((r.try_get::<_, i64>(0)? as u64, r.try_get(1)?))),
                None => Ok(None),
            }
        })
    }

    fn checkpoint_note(&self, size: u64) -> Result<Option<String>, StoreError> {
        self.db.run(true, async |c| {
            Ok(c.query_opt(
                "SELECT note FROM log_checkpoints WHERE size = $1",
                &[&(size as i64)],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
        })
    }

    fn put_cosignatures(&self, size: u64, lines: &[(String, String)]) -> Result<(), StoreError> {
        let cosigners: Vec<&str> = lines.iter().map(|(c, _)| c.as_str()).collect();
        let texts: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        self.db.run(true, async |c| {
            c.execute(
                "INSERT INTO log_cosignatures (size, cosigner, line)
                 SELECT $1, c, l FROM unnest($2::text[], $3::text[]) AS x (c, l)
                 ON CONFLICT (size, cosigner) DO UPDATE SET line = excluded.line",
                &[&(size as i64), &cosigners, &texts],
            )
            .await?;
            Ok(())
        })
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.db.run(true, async |c| {
            c.query(
                "SELECT cosigner, line FROM log_cosignatures WHERE size = $1
                 ORDER BY cosigner COLLATE \"C\"",
                &[&(size as i64)],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    fn latest_cosigned(
        &self,
        cosigners: &[String],
        quorum: usize,
    ) -> Result<Option<u64>, StoreError> {
        if cosigners.is_empty() {
            return Ok(None);
        }
        self.db.run(true, async |c| {
            Ok(c.query_opt(
                "SELECT size FROM log_cosignatures WHERE cosigner = ANY($1)
                 GROUP BY size HAVING count(*) >= $2 ORDER BY size DESC LIMIT 1",
                &[&cosigners, &(quorum as i64)],
            )
            .await?
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()?
            .map(|n| n as u64))
        })
    }

    fn cosigned_by(&self, cosigner: &str) -> Result<Option<u64>, StoreError> {
        self.db.run(true, async |c| {
            let n: Option<i64> = c
                .query_one(
                    "SELECT max(size) FROM log_cosignatures WHERE cosigner = $1",
                    &[&cosigner],
                )
                .await?
                .try_get(0)?;
            Ok(n.map(|n| n as u64))
        })
    }
}

/// Bytes of a proof tile (`postvault_log::PROOF_TILE_BYTES`).
const TILE_BYTES: usize = 960;

fn tile_row(id: u64) -> Result<i64, StoreError> {
    i64::try_from(id)
        .map_err(|_| StoreError::Corrupt(format!("log proof tile id {id} is out of range")))
}

/// A leaf index the leaf index names: a negative one is corruption.
fn leaf_at(idx: i64) -> Result<u64, Fail> {
    u64::try_from(idx).map_err(|_| {
        Fail::Store(StoreError::Corrupt(format!(
            "the leaf index files a leaf {idx}"
        )))
    })
}

impl PgStore {
    /// The rows `sql` (`SELECT <id>, <bytes> ... = ANY($1)`) finds for
    /// `ids`, by id, in one round trip.
    fn bytes_by_id(&self, sql: &str, ids: &[i64]) -> Result<HashMap<i64, Vec<u8>>, StoreError> {
        self.db.run(false, async |c| {
            let s = c.prepare_cached(sql).await?;
            let mut m = HashMap::with_capacity(ids.len());
            for r in c.query(&s, &[&ids]).await? {
                m.insert(r.try_get::<_, i64>(0)?, r.try_get::<_, Vec<u8>>(1)?);
            }
            Ok(m)
        })
    }

    /// A number the store keeps in `meta` (`what` names it in errors): one
    /// missing or not a number is corruption.
    fn meta_number(&self, key: &str, what: &str) -> Result<u64, StoreError> {
        self.db.run(false, async |c| {
            let s = c
                .prepare_cached("SELECT value FROM meta WHERE key = $1")
                .await?;
            let v: String = match c.query_opt(&s, &[&key]).await? {
                Some(r) => r.try_get(0)?,
                None => {
                    return Err(Fail::Store(StoreError::Corrupt(format!(
                        "{what} is missing"
                    ))));
                }
            };
            v.parse()
                .map_err(|_| Fail::Store(StoreError::Corrupt(format!("{what} is not a number"))))
        })
    }
}
