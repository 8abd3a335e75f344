//! [`SqliteKeyStore`]: the embedded key store, a separate SQLite file.

use super::*;

/// The embedded key store: a separate SQLite file, mode 0600.
pub struct SqliteKeyStore {
    conn: Mutex<Connection>,
    puts: PutQueue,
}

/// The key store connection's page cache, in KiB as SQLite's negative
/// `cache_size` takes it.
const KEYS_CACHE_KIB: i64 = -8192;

/// A put of at most this many subjects' keys joins the puts waiting beside
/// it in one transaction (group commit); a larger one commits alone.
pub const PUT_JOINED_MAX: usize = 64;

/// Concurrent small puts of new subjects' keys (one-line collections of new
/// people), committed together: the first to find no put running takes
/// every waiting one, writes each in its own savepoint, commits once and
/// answers each; the others wait for their answer. Every put returns only
/// once its keys are durable, as alone.
#[derive(Default)]
struct PutQueue {
    state: Mutex<PutState>,
    answered: std::sync::Condvar,
}

#[derive(Default)]
struct PutState {
    next: u64,
    waiting: Vec<(u64, Vec<SubjectKeys>)>,
    /// Answers for puts whose group has committed (or failed).
    answers: std::collections::HashMap<u64, Result<Vec<SubjectRef>, String>>,
    running: bool,
}

/// Answers the puts of a group its runner could not (it panicked), and
/// frees the queue: no put waits forever.
struct PutRunning<'a> {
    queue: &'a PutQueue,
    tickets: Vec<u64>,
}

impl Drop for PutRunning<'_> {
    fn drop(&mut self) {
        let mut q = self.queue.state.lock().unwrap_or_else(|e| e.into_inner());
        for t in self.tickets.drain(..) {
            q.answers
                .entry(t)
                .or_insert_with(|| Err("the key store's group commit stopped".into()));
        }
        q.running = false;
        drop(q);
        self.queue.answered.notify_all();
    }
}

impl std::fmt::Debug for SqliteKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteKeyStore")
    }
}

impl SqliteKeyStore {
    pub fn open(path: &Path, mode: OpenMode) -> Result<SqliteKeyStore, StoreError> {
        let conn = open_db(path, mode, KEYS_APP_ID, KEYS_MIGRATIONS, "key store")?;
        // The key store's rows are looked up by random refs, one page a
        // person: a cache beyond its interior pages buys little, and is
        // memory held for the life of the process (BENCHMARKS.md).
        conn.pragma_update(None, "cache_size", KEYS_CACHE_KIB)?;
        Ok(SqliteKeyStore {
            conn: Mutex::new(conn),
            puts: PutQueue::default(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The durability settings of the key store's connection, read back.
    pub fn durability(&self) -> Result<sqlite_ops::Durability, StoreError> {
        sqlite_ops::durability_of(&self.conn())
    }

    /// Puts `keys` in a group with the puts waiting beside it (see
    /// [`PutQueue`]).
    fn put_joined(&self, keys: &[SubjectKeys]) -> Result<Vec<SubjectRef>, StoreError> {
        let queue = &self.puts;
        let lock = || queue.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut q = lock();
        let ticket = q.next;
        q.next += 1;
        q.waiting.push((ticket, keys.to_vec()));
        loop {
            if let Some(answer) = q.answers.remove(&ticket) {
                return answer.map_err(StoreError::NotCommitted);
            }
            if q.running {
                q = queue.answered.wait(q).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Ours is still waiting (none taken is unanswered while no
            // group runs): commit every waiting put, ours among them.
            q.running = true;
            let group = std::mem::take(&mut q.waiting);
            drop(q);
            let mut running = PutRunning {
                queue,
                tickets: group.iter().map(|(t, _)| *t).collect(),
            };
            // Our own answer keeps its error; the others get its message.
            let mut own = None;
            let mut answers: Vec<(u64, Result<Vec<SubjectRef>, String>)> = Vec::new();
            match self.put_group(&group) {
                Ok(each) => {
                    for ((t, _), r) in group.iter().zip(each) {
                        if *t == ticket {
                            own = Some(r);
                        } else {
                            answers.push((*t, r.map_err(|e| e.to_string())));
                        }
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    answers.extend(
                        group
                            .iter()
                            .filter(|(t, _)| *t != ticket)
                            .map(|(t, _)| (*t, Err(why.clone()))),
                    );
                    own = Some(Err(e));
                }
            }
            q = lock();
            q.answers.extend(answers);
            running.tickets.clear();
            drop(q);
            drop(running);
            if let Some(r) = own {
                return r;
            }
            q = lock();
        }
    }

    /// One transaction for every put of `group`, each in its own savepoint
    /// (one that fails is rolled back alone); each put's answer, or the
    /// commit's error for all.
    #[allow(clippy::type_complexity)]
    fn put_group(
        &self,
        group: &[(u64, Vec<SubjectKeys>)],
    ) -> Result<Vec<Result<Vec<SubjectRef>, StoreError>>, StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(group.len());
        for (_, keys) in group {
            let sp = tx.savepoint()?;
            match insert_subject_keys(&sp, keys) {
                Ok(existing) => {
                    sp.commit()?;
                    out.push(Ok(existing));
                }
                // Dropped: rolled back. An error that made SQLite roll
                // back the whole transaction (a full disk, an I/O error)
                // fails the group: what the others wrote is gone too.
                Err(e) if sp.is_autocommit() => return Err(e),
                Err(e) => out.push(Err(e)),
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Runs `delete` for each key in one transaction, then moves the
    /// deletion out of the WAL (`overwrite_wal`); returns, for each key,
    /// whether it deleted a row.
    fn destroy<K: rusqlite::ToSql>(
        &self,
        delete: &str,
        keys: &[K],
    ) -> Result<Vec<bool>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut existed = Vec::with_capacity(keys.len());
        {
            let mut s = tx.prepare_cached(delete)?;
            for k in keys {
                existed.push(s.execute([k])? > 0);
            }
        }
        tx.commit()?;
        overwrite_wal(&conn)?;
        Ok(existed)
    }
}

/// Inserts the keys of subjects that have none; returns those that had.
fn insert_subject_keys(
    conn: &Connection,
    keys: &[SubjectKeys],
) -> Result<Vec<SubjectRef>, StoreError> {
    let mut existing = Vec::new();
    let mut s = conn.prepare_cached(
        "INSERT INTO subject_keys (ref, data, tag) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?;
    for k in keys {
        if s.execute(params![k.subject, k.data, k.tag])? == 0 {
            existing.push(k.subject);
        }
    }
    Ok(existing)
}

fn log_state_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<LogState, StoreError>> {
    let root: Vec<u8> = r.get(1)?;
    let Ok(root) = <[u8; 32]>::try_from(root) else {
        return Ok(Err(StoreError::Corrupt(
            "the log state's root is not 32 bytes".into(),
        )));
    };
    Ok(Ok(LogState {
        size: r.get::<_, i64>(0)? as u64,
        root,
        note: r.get(2)?,
        signed: r.get::<_, i64>(3)? as u64,
    }))
}

fn read_log_state(conn: &Connection) -> Result<Option<LogState>, StoreError> {
    conn.query_row(
        "SELECT size, root, note, signed FROM log_state WHERE id = 1",
        [],
        log_state_row,
    )
    .optional()?
    .transpose()
}

/// Rows not asked for that a walk of the keys in order passes before it
/// seeks the next ref asked for instead.
const KEY_WALK_GAP: usize = 8;

impl KeyStore for SqliteKeyStore {
    fn log_state(&self) -> Result<Option<LogState>, StoreError> {
        read_log_state(&self.conn())
    }

    fn swap_log_state(
        &self,
        expected: Option<&LogState>,
        new: &LogState,
    ) -> Result<LogStateSwap, StoreError> {
        let mut conn = self.conn();
        // Immediate: the write lock on the key store file is taken before
        // the read, so no other process can swap in between.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = read_log_state(&tx)?;
        if found.as_ref() != expected {
            return Ok(LogStateSwap::Changed(found));
        }
        tx.execute(
            "INSERT INTO log_state (id, size, root, note, signed) VALUES (1, ?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET size = excluded.size, root = excluded.root,
                 note = excluded.note, signed = excluded.signed",
            params![new.size as i64, &new.root[..], new.note, new.signed as i64],
        )?;
        tx.commit()?;
        Ok(LogStateSwap::Swapped)
    }

    fn put_subject_keys(&self, keys: &[SubjectKeys]) -> Result<Vec<SubjectRef>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if keys.len() <= PUT_JOINED_MAX {
            return self.put_joined(keys);
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing = insert_subject_keys(&tx, keys)?;
        tx.commit()?;
        Ok(existing)
    }

    fn subject_keys(&self, subject: &SubjectRef) -> Result<Option<SubjectKeys>, StoreError> {
        let conn = self.conn();
        let mut s =
            conn.prepare_cached("SELECT ref, data, tag FROM subject_keys WHERE ref = ?1")?;
        Ok(s.query_row([subject], |r| {
            Ok(SubjectKeys {
                subject: r.get(0)?,
                data: r.get(1)?,
                tag: r.get(2)?,
            })
        })
        .optional()?)
    }

    fn subject_keys_many(
        &self,
        subjects: &[SubjectRef],
    ) -> Result<Vec<Option<SubjectKeys>>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut out = Vec::with_capacity(subjects.len());
        let keys_of = |r: &rusqlite::Row<'_>| -> rusqlite::Result<SubjectKeys> {
            Ok(SubjectKeys {
                subject: r.get(0)?,
                data: r.get(1)?,
                tag: r.get(2)?,
            })
        };
        if subjects.is_sorted() {
            // In order (a statistics scan's page of people): the table is
            // walked from the first ref on, each row met once, and sought
            // again only past a gap of refs not asked for, so a dense page
            // costs one descent of the tree, not one a person.
            let mut walk = tx.prepare_cached(
                "SELECT ref, data, tag FROM subject_keys WHERE ref >= ?1 ORDER BY ref",
            )?;
            let mut i = 0;
            while i < subjects.len() {
                let mut rows = walk.query([&subjects[i]])?;
                let mut passed = 0usize;
                loop {
                    let Some(r) = rows.next()? else {
                        // Past the last key: the rest have none.
                        out.resize_with(subjects.len(), || None);
                        i = subjects.len();
                        break;
                    };
                    let at = r.get_ref(0)?.as_blob().map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            0,
                            rusqlite::types::Type::Blob,
                            e.into(),
                        )
                    })?;
                    // Refs before this row have no key; this row's, if
                    // asked for, is its.
                    while i < subjects.len() && subjects[i].as_slice() < at {
                        out.push(None);
                        i += 1;
                    }
                    let mut wanted = false;
                    while i < subjects.len() && subjects[i].as_slice() == at {
                        out.push(Some(keys_of(r)?));
                        i += 1;
                        wanted = true;
                    }
                    if i == subjects.len() {
                        break;
                    }
                    passed = if wanted { 0 } else { passed + 1 };
                    if passed > KEY_WALK_GAP {
                        break;
                    }
                }
            }
        } else {
            let mut s =
                tx.prepare_cached("SELECT ref, data, tag FROM subject_keys WHERE ref = ?1")?;
            for subject in subjects {
                out.push(s.query_row([subject], keys_of).optional()?);
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let conn = self.conn();
        let n = conn.execute(
            "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![name, value],
        )?;
        if n == 0 {
            return Err(StoreError::SecretExists(name.to_string()));
        }
        Ok(())
    }

    fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        let conn = self.conn();
        // secure_delete overwrites the freed bytes in the database file; the
        // checkpoint moves the deletion out of the WAL and truncates it, so
        // no older copy of the page stays behind there either.
        let n = conn.execute("DELETE FROM secrets WHERE name = ?1", [name])?;
        if n > 0 {
            overwrite_wal(&conn)?;
        }
        Ok(n > 0)
    }

    fn put_secret_or_get(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut conn = self.conn();
        // One transaction: another process cannot delete the secret
        // between the insert that found it and the read.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![name, value],
        )?;
        let stored = tx.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| {
            r.get(0)
        })?;
        tx.commit()?;
        Ok(stored)
    }

    fn secret_names(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(
            "SELECT name FROM secrets WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
        )?;
        Ok(s.query_map([prefix], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?)
    }

    fn delete_secrets(&self, names: &[String]) -> Result<u64, StoreError> {
        let existed = self.destroy("DELETE FROM secrets WHERE name = ?1", names)?;
        Ok(existed.into_iter().filter(|&e| e).count() as u64)
    }

    fn delete_secrets_guarded(
        &self,
        guard: &str,
        value: &[u8],
        unless_prefix: &str,
        names: &[String],
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let others: Vec<String> = tx
            .prepare_cached("SELECT name FROM secrets WHERE substr(name, 1, length(?1)) = ?1")?
            .query_map([unless_prefix], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if others.iter().any(|n| !names.contains(n)) {
            return Ok(false);
        }
        if tx.execute(
            "DELETE FROM secrets WHERE name = ?1 AND value = ?2",
            params![guard, value],
        )? == 0
        {
            return Ok(false);
        }
        {
            let mut s = tx.prepare_cached("DELETE FROM secrets WHERE name = ?1")?;
            for n in names {
                s.execute([n])?;
            }
        }
        tx.commit()?;
        overwrite_wal(&conn)?;
        Ok(true)
    }

    fn delete_subject_keys_as(&self, keys: &[SubjectKeys]) -> Result<Vec<SubjectRef>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut gone = Vec::with_capacity(keys.len());
        {
            let mut s =
                tx.prepare_cached("DELETE FROM subject_keys WHERE ref = ?1 AND data = ?2")?;
            for k in keys {
                if s.execute(params![k.subject, k.data])? > 0 {
                    gone.push(k.subject);
                }
            }
        }
        tx.commit()?;
        overwrite_wal(&conn)?;
        Ok(gone)
    }

    fn delete_subject_keys(&self, subjects: &[SubjectRef]) -> Result<Vec<SubjectRef>, StoreError> {
        let existed = self.destroy("DELETE FROM subject_keys WHERE ref = ?1", subjects)?;
        Ok(subjects
            .iter()
            .zip(existed)
            .filter_map(|(s, e)| e.then_some(*s))
            .collect())
    }

    fn subject_refs(
        &self,
        after: Option<&SubjectRef>,
        limit: usize,
    ) -> Result<Vec<SubjectRef>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached("SELECT ref FROM subject_keys WHERE ref > ?1 ORDER BY ref LIMIT ?2")?;
        let from: &[u8] = after.map_or(&[], |a| &a[..]);
        Ok(s.query_map(params![from, limit as i64], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?)
    }

    fn rewrap(
        &self,
        f: &mut RewrapFn<'_>,
        insert: &[(String, Vec<u8>)],
    ) -> Result<RewrapCount, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let mut n = RewrapCount::default();
        // Page through by ref: the whole store need not fit in memory.
        let mut after: Vec<u8> = Vec::new();
        loop {
            let page: Vec<SubjectKeys> = tx
                .prepare_cached(
                    "SELECT ref, data, tag FROM subject_keys WHERE ref > ?1 ORDER BY ref LIMIT 4096",
                )?
                .query_map([&after], |r| {
                    Ok(SubjectKeys {
                        subject: r.get(0)?,
                        data: r.get(1)?,
                        tag: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let Some(last) = page.last() else { break };
            after = last.subject.to_vec();
            let mut up =
                tx.prepare_cached("UPDATE subject_keys SET data = ?2, tag = ?3 WHERE ref = ?1")?;
            let mut del = tx.prepare_cached("DELETE FROM subject_keys WHERE ref = ?1")?;
            for k in &page {
                match f(KeyItem::Subject(k))? {
                    KeyAction::Keep => {}
                    KeyAction::Subject(d, t) => {
                        up.execute(params![k.subject, d, t])?;
                        n.subjects += 1;
                    }
                    KeyAction::Delete => {
                        del.execute([k.subject])?;
                        n.deleted += 1;
                    }
                    KeyAction::Secret(_) => {
                        return Err(StoreError::Corrupt(
                            "a subject's keys cannot become a secret".into(),
                        ));
                    }
                }
            }
        }
        let secrets: Vec<(String, Vec<u8>)> = tx
            .prepare_cached("SELECT name, value FROM secrets ORDER BY name")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (name, value) in &secrets {
            match f(KeyItem::Secret(name, value))? {
                KeyAction::Keep => {}
                KeyAction::Secret(v) => {
                    tx.execute(
                        "UPDATE secrets SET value = ?2 WHERE name = ?1",
                        params![name, v],
                    )?;
                    n.secrets += 1;
                }
                KeyAction::Delete => {
                    tx.execute("DELETE FROM secrets WHERE name = ?1", [name])?;
                    n.deleted += 1;
                }
                KeyAction::Subject(..) => {
                    return Err(StoreError::Corrupt(
                        "a secret cannot become a subject's keys".into(),
                    ));
                }
            }
        }
        for (name, value) in insert {
            tx.execute(
                "INSERT INTO secrets (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )?;
            n.inserted += 1;
        }
        tx.commit()?;
        // The old wrapped values are overwritten in the file (secure_delete)
        // and moved out of the WAL.
        overwrite_wal(&conn)?;
        Ok(n)
    }
}
