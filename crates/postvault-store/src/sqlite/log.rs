//! [`LogStore`] on SQLite: leaves, the stored hashes of the Merkle tree,
//! checkpoints and cosignatures. What only reads runs on a looker
//! connection, beside the open group, as committed: taking the store's own
//! connection would commit the readers' group early, so an access report
//! (which reads checkpoints and cosignatures) would split the commits that
//! concurrent reads share.

use super::*;

impl LogStore for SqliteStore {
    fn log_size(&self) -> Result<u64, StoreError> {
        self.with_looker(|conn| {
            let n: i64 = conn
                .prepare_cached("SELECT coalesce(max(idx) + 1, 0) FROM leaves")?
                .query_row([], |r| r.get(0))?;
            Ok(n as u64)
        })
    }

    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with_looker(|conn| {
            let mut s = conn.prepare_cached(
                "SELECT idx, body FROM leaves WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )?;
            let mut out = Vec::new();
            let rows = s.query_map(
                params![
                    start.min(i64::MAX as u64) as i64,
                    end.min(i64::MAX as u64) as i64
                ],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )?;
            for (expect, row) in (start..).zip(rows) {
                let (idx, body) = row?;
                if idx as u64 != expect {
                    return Err(StoreError::Corrupt(format!(
                        "log leaf {expect} is missing (found {idx} next)"
                    )));
                }
                out.push(body);
            }
            Ok(out)
        })
    }

    fn leaves_at(&self, indexes: &[u64]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with_looker(|conn| {
            let mut s = conn.prepare_cached("SELECT body FROM leaves WHERE idx = ?1")?;
            indexes
                .iter()
                .map(|&i| {
                    s.query_row([i.min(i64::MAX as u64) as i64], |r| r.get(0))
                        .optional()?
                        .ok_or_else(|| StoreError::Corrupt(format!("log leaf {i} is missing")))
                })
                .collect()
        })
    }

    fn leaf_indexed_from(&self) -> Result<u64, StoreError> {
        self.meta_number("leaf_indexed_from", "the leaf index's start")
    }

    fn leaf_index_months(&self) -> Result<Vec<u32>, StoreError> {
        self.with_looker(|conn| {
            let mut s =
                conn.prepare_cached("SELECT month FROM leaf_index_months ORDER BY month")?;
            let rows = s.query_map([], |r| r.get::<_, u32>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn leaf_index_find(&self, tokens: &[[u8; 16]]) -> Result<Vec<Option<u64>>, StoreError> {
        self.with_looker(|conn| {
            let mut s = conn.prepare_cached("SELECT idx FROM leaf_index WHERE token = ?1")?;
            tokens
                .iter()
                .map(|t| {
                    s.query_row([&t[..]], |r| r.get::<_, i64>(0))
                        .optional()?
                        .map(|i| {
                            u64::try_from(i).map_err(|_| {
                                StoreError::Corrupt(format!("the leaf index files a leaf {i}"))
                            })
                        })
                        .transpose()
                })
                .collect()
        })
    }

    fn leaf_index_page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<LeafIndexRow>, StoreError> {
        self.with_looker(|conn| {
            let mut s = conn.prepare_cached(
                "SELECT idx, token, seal FROM leaf_index WHERE token > ?1 ORDER BY token LIMIT ?2",
            )?;
            let rows = s.query_map(
                params![after.unwrap_or(&[]), limit.min(i64::MAX as usize) as i64],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                },
            )?;
            rows.map(|r| {
                let (idx, token, seal) = r?;
                let idx = u64::try_from(idx).map_err(|_| {
                    StoreError::Corrupt(format!("the leaf index files a leaf {idx}"))
                })?;
                Ok(LeafIndexRow { idx, token, seal })
            })
            .collect()
        })
    }

    fn refile_leaves(
        &self,
        tokens: &std::sync::Arc<dyn LeafTokens>,
        plan: &RefilePlan,
        tail: &mut dyn FnMut(u64, &[u8]) -> Option<u32>,
    ) -> Result<Refiled, StoreError> {
        let mut conn = self.conn();
        // Immediate: no leaf is appended (by this process or another)
        // until the person's filings are whole again.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut by_month: std::collections::BTreeMap<u32, Vec<u64>> =
            plan.months.iter().map(|&m| (m, Vec::new())).collect();
        for &(idx, month) in &plan.leaves {
            by_month.entry(month).or_default().push(idx);
        }
        let mut appended: Vec<i64> = Vec::new();
        {
            let mut s =
                tx.prepare_cached("SELECT idx, body FROM leaves WHERE idx >= ?1 ORDER BY idx")?;
            let mut rows = s.query([plan.scanned.min(i64::MAX as u64) as i64])?;
            while let Some(r) = rows.next()? {
                let idx = u64::try_from(r.get::<_, i64>(0)?)
                    .map_err(|_| StoreError::Corrupt("a log leaf index is negative".into()))?;
                let body: Vec<u8> = r.get(1)?;
                if let Some(month) = tail(idx, &body) {
                    by_month.entry(month).or_default().push(idx);
                    appended.push(idx as i64);
                }
            }
        }
        let mut out = Refiled::default();
        // The filings of their leaves appended since the scan, wherever
        // they went (the caller looked for strays before they came): one
        // pass over the index, only when there are any.
        if !appended.is_empty() {
            let list = appended
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            out.removed +=
                tx.execute(&format!("DELETE FROM leaf_index WHERE idx IN ({list})"), [])? as u64;
        }
        let mut find = tx.prepare_cached("SELECT idx, seal FROM leaf_index WHERE token = ?1")?;
        let mut del = tx.prepare_cached("DELETE FROM leaf_index WHERE token = ?1")?;
        let mut del_stray =
            tx.prepare_cached("DELETE FROM leaf_index WHERE token = ?1 AND idx = ?2")?;
        let mut ins =
            tx.prepare_cached("INSERT INTO leaf_index (token, idx, seal) VALUES (?1, ?2, ?3)")?;
        let mut month_row =
            tx.prepare_cached("INSERT OR IGNORE INTO leaf_index_months (month) VALUES (?1)")?;
        // Every month's slots read before anything is removed (a stray row
        // in a month's run counts as taken, so the read goes past it), then
        // the changes made.
        let mut changes = Vec::with_capacity(by_month.len());
        for (month, idxs) in &mut by_month {
            idxs.sort_unstable();
            idxs.dedup();
            let mut have: Vec<Option<u64>> = Vec::new();
            while !crate::refile_read_enough(&have, idxs.len()) {
                let slot = have.len() as u32;
                let token = tokens.token(*month, slot);
                let row: Option<(i64, Vec<u8>)> = find
                    .query_row([&token[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                have.push(row.map(|(idx, seal)| crate::refile_row(&**tokens, &token, idx, &seal)));
            }
            changes.push((*month, crate::refile_changes(&have, idxs)));
        }
        let mut cleared = std::collections::HashSet::new();
        for (month, (clear, _)) in &changes {
            for &slot in clear {
                let token = tokens.token(*month, slot);
                out.removed += del.execute([&token[..]])? as u64;
                cleared.insert(token);
            }
        }
        for (token, idx) in &plan.stray {
            if !cleared.contains(token) {
                out.removed += del_stray.execute(params![&token[..], *idx as i64])? as u64;
            }
        }
        for (month, (_, write)) in &changes {
            for &(slot, idx) in write {
                let token = tokens.token(*month, slot);
                ins.execute(params![
                    &token[..],
                    idx as i64,
                    &tokens.seal(&token, idx)[..]
                ])?;
                out.written += 1;
            }
            let own = by_month.get(month).map_or(0, Vec::len);
            if own > 0 {
                month_row.execute([*month])?;
                out.months += 1;
                out.leaves += own as u64;
            }
        }
        drop((find, del, del_stray, ins, month_row));
        tx.commit()?;
        Ok(out)
    }

    fn log_hashes(&self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
        // Each stored hash by its row id (`idx` is the table's integer
        // key), through one blob handle moved from row to row: a seek on the
        // table's B-tree each, no statement run per hash. On a small
        // connection of its own: stored hashes are only ever committed by
        // catch-up, so a proof neither closes an open read group nor waits
        // on it. Not a mapped one: a mapped connection unmaps the file at
        // every transaction that follows another connection's commit, and
        // a serving vault commits all the time (10M leaves, a commit every
        // 0.2-0.4 ms beside: 38-46 us a proof unmapped, 57-64 us mapped).
        self.with_looker(|conn| {
            let missing = |i: u64| StoreError::Corrupt(format!("log hash {i} is missing"));
            let absent = |i: u64, e: rusqlite::Error| absent(e, || missing(i));
            let mut out = Vec::with_capacity(indexes.len());
            let mut blob: Option<rusqlite::blob::Blob<'_>> = None;
            for &i in indexes {
                let row = i64::try_from(i).map_err(|_| missing(i))?;
                let b = match blob.as_mut() {
                    Some(b) => {
                        b.reopen(row).map_err(|e| absent(i, e))?;
                        b
                    }
                    None => blob.insert(
                        conn.blob_open(rusqlite::MAIN_DB, "log_hashes", "hash", row, true)
                            .map_err(|e| absent(i, e))?,
                    ),
                };
                if b.size() != 32 {
                    return Err(StoreError::Corrupt(format!("log hash {i} is not 32 bytes")));
                }
                let mut h = [0u8; 32];
                b.read_at_exact(&mut h, 0)?;
                out.push(h);
            }
            Ok(out)
        })
    }

    fn log_tile_hashes(&self, wanted: &[(u64, usize)]) -> Result<Vec<[u8; 32]>, StoreError> {
        // One blob handle moved from tile to tile (a proof asks two), on
        // the small connection stored hashes are read from.
        self.with_looker(|conn| {
            let missing = |t: u64| StoreError::Corrupt(format!("log proof tile {t} is missing"));
            let mut out = Vec::with_capacity(wanted.len());
            let mut blob: Option<(u64, rusqlite::blob::Blob<'_>)> = None;
            for &(t, slot) in wanted {
                let at = match blob.as_mut() {
                    Some((open, b)) if *open == t => b,
                    Some((open, b)) => {
                        b.reopen(tile_row(t)?)
                            .map_err(|e| absent(e, || missing(t)))?;
                        *open = t;
                        b
                    }
                    None => {
                        let b = conn
                            .blob_open(rusqlite::MAIN_DB, "log_tiles", "hashes", tile_row(t)?, true)
                            .map_err(|e| absent(e, || missing(t)))?;
                        &mut blob.insert((t, b)).1
                    }
                };
                if at.size() as usize != TILE_BYTES || slot >= TILE_BYTES / 32 {
                    return Err(StoreError::Corrupt(format!(
                        "log proof tile {t} has no hash {slot}"
                    )));
                }
                let mut h = [0u8; 32];
                at.read_at_exact(&mut h, slot * 32)?;
                out.push(h);
            }
            Ok(out)
        })
    }

    fn log_tiled_from(&self) -> Result<u64, StoreError> {
        self.meta_number("log_tiled_from", "the log's tiled size")
    }

    fn log_tiles(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.with_looker(|conn| {
            let mut s = conn.prepare_cached(
                "SELECT id, hashes FROM log_tiles WHERE id >= ?1 AND id < ?2 ORDER BY id",
            )?;
            let rows = s
                .query_map(params![tile_row(start)?, tile_row(end)?], |r| {
                    // The bytes as a proof reads them (a blob handle reads a
                    // text value's bytes too); a number or NULL is returned
                    // empty, a tile that does not match, for verification.
                    let bytes = match r.get_ref(1)? {
                        rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => {
                            b.to_vec()
                        }
                        _ => Vec::new(),
                    };
                    Ok((r.get::<_, i64>(0)? as u64, bytes))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    fn hashed_size(&self) -> Result<u64, StoreError> {
        // Committed by catch-up only: read beside any open read group.
        self.with_looker(hashed_size)
    }

    fn put_log_hashes(
        &self,
        from: u64,
        to: u64,
        hashes: &[(u64, [u8; 32])],
        tiles: &[(u64, Vec<u8>)],
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if hashed_size(&tx)? != from {
            return Ok(false);
        }
        {
            let mut s = tx.prepare_cached("INSERT INTO log_hashes (idx, hash) VALUES (?1, ?2)")?;
            for (i, h) in hashes {
                s.execute(params![*i as i64, &h[..]])?;
            }
            let mut s =
                tx.prepare_cached("INSERT OR REPLACE INTO log_tiles (id, hashes) VALUES (?1, ?2)")?;
            for (id, bytes) in tiles {
                s.execute(params![tile_row(*id)?, bytes])?;
            }
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'log_hashed_size'",
            [to.to_string()],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO log_checkpoints (size, note) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![size as i64, note],
        )?;
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        self.with_looker(|conn| {
            let mut s =
                conn.prepare_cached("SELECT size, note FROM log_checkpoints ORDER BY size")?;
            let rows = s
                .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.with_looker(|conn| {
            // Cached: a report asks at every look for a covering checkpoint.
            Ok(conn
                .prepare_cached(
                    "SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1",
                )?
                .query_row([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
                .optional()?)
        })
    }

    fn checkpoint_note(&self, size: u64) -> Result<Option<String>, StoreError> {
        self.with_looker(|conn| {
            Ok(conn
                .prepare_cached("SELECT note FROM log_checkpoints WHERE size = ?1")?
                .query_row([size as i64], |r| r.get(0))
                .optional()?)
        })
    }

    fn put_cosignatures(&self, size: u64, lines: &[(String, String)]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut s = tx.prepare_cached(
                "INSERT INTO log_cosignatures (size, cosigner, line) VALUES (?1, ?2, ?3)
                 ON CONFLICT (size, cosigner) DO UPDATE SET line = excluded.line",
            )?;
            for (cosigner, line) in lines {
                s.execute(params![size as i64, cosigner, line])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.with_looker(|conn| {
            let mut s = conn.prepare_cached(
                "SELECT cosigner, line FROM log_cosignatures WHERE size = ?1 ORDER BY cosigner",
            )?;
            Ok(s.query_map([size as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?)
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
        self.with_looker(|conn| {
            let marks = vec!["?"; cosigners.len()].join(", ");
            let sql = format!(
                "SELECT size FROM log_cosignatures WHERE cosigner IN ({marks})
                 GROUP BY size HAVING count(*) >= ? ORDER BY size DESC LIMIT 1"
            );
            let mut args: Vec<&dyn rusqlite::ToSql> = cosigners
                .iter()
                .map(|c| c as &dyn rusqlite::ToSql)
                .collect();
            let q = quorum as i64;
            args.push(&q);
            Ok(conn
                .query_row(&sql, args.as_slice(), |r| r.get::<_, i64>(0))
                .optional()?
                .map(|n| n as u64))
        })
    }

    fn cosigned_by(&self, cosigner: &str) -> Result<Option<u64>, StoreError> {
        self.with_looker(|conn| {
            let n: Option<i64> = conn.query_row(
                "SELECT max(size) FROM log_cosignatures WHERE cosigner = ?1",
                [cosigner],
                |r| r.get(0),
            )?;
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

/// Opening a blob on a row that is not there fails with SQLITE_ERROR and
/// "no such rowid"; anything else is the error it is.
fn absent(e: rusqlite::Error, missing: impl FnOnce() -> StoreError) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, Some(m))
            if f.code == rusqlite::ErrorCode::Unknown && m.starts_with("no such rowid") =>
        {
            missing()
        }
        _ => e.into(),
    }
}

pub(super) fn hashed_size(conn: &Connection) -> Result<u64, StoreError> {
    let v: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'log_hashed_size'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    v.unwrap_or_default()
        .parse()
        .map_err(|_| StoreError::Corrupt("the log's hashed size is not a number".into()))
}

impl SqliteStore {
    /// A number the store keeps in `meta` (`what` names it in errors): one
    /// missing or not a number is corruption.
    fn meta_number(&self, key: &str, what: &str) -> Result<u64, StoreError> {
        self.with_looker(|conn| {
            let v: Option<String> = conn
                .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?;
            v.ok_or_else(|| StoreError::Corrupt(format!("{what} is missing")))?
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("{what} is not a number")))
        })
    }
}
