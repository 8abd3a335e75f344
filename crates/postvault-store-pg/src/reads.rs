//! Group commit for targeted reads: concurrent reads of one process share
//! one transaction and one WAL flush, as on SQLite.
//!
//! A read opens the group's transaction (taking the tree-state lock, so
//! its leaf indexes are the log's next ones) or joins the open one; reads
//! the subject and appends its leaf there, each reader in a savepoint of its
//! own, so one that fails leaves the others untouched; then waits until the
//! group has committed (`synchronous_commit=on`) and only then returns its
//! data. Readers at the door when a group commits join it first. Every
//! reader gets an error if the group's commit fails: nothing is returned.

use std::collections::HashMap;
use std::sync::MutexGuard;

use postvault_store::group::{GroupCommit, GroupState};
use postvault_store::{ConsentRow, ReadLeafFn, ReadScope, StoreError, SubjectData, SubjectRef};

use crate::db::{Db, Fail, MAX_ATTEMPTS, Waiter, guarded, retryable, to_store};
use crate::store::{RECORD_COLUMNS, record_from_row, ref16};

pub(crate) struct Reads {
    group: GroupCommit<Group>,
}

#[derive(Default)]
struct Group {
    /// The open group's connection, inside its transaction.
    conn: Option<deadpool_postgres::Client>,
    /// The index the next leaf of the open group gets.
    next: u64,
    /// The id of the open (or last) group.
    group: u64,
    /// Every group up to this id has committed or failed.
    settled: u64,
    /// Groups that failed, with the cause.
    failed: HashMap<u64, String>,
    /// Readers whose part of the open group succeeded.
    members: usize,
    /// The group a reader is committing, if one is.
    committing: Option<u64>,
}

impl GroupState for Group {
    fn settled(&self) -> u64 {
        self.settled
    }
    fn failure(&self, group: u64) -> Option<&str> {
        self.failed.get(&group).map(String::as_str)
    }
    fn committing(&mut self) -> &mut Option<u64> {
        &mut self.committing
    }
}

impl Group {
    /// Ends the open group by `sql` (COMMIT or ROLLBACK); returns why it
    /// failed, if it did. A connection that failed to end is not reused.
    fn end(&mut self, w: &Waiter<'_>, sql: &str) -> Option<String> {
        let conn = self.conn.take()?;
        self.members = 0;
        self.settled = self.group;
        let r = w.wait(conn.batch_execute(sql));
        match r {
            Ok(()) => None,
            Err(e) => {
                let why = to_store(Fail::Pg(e)).to_string();
                if w.wait(conn.batch_execute("ROLLBACK")).is_err() {
                    drop(deadpool_postgres::Object::take(conn));
                }
                Some(why)
            }
        }
    }

    /// Commits the open group, leaves and tree size, in one round trip. If
    /// the size update fails the transaction is aborted and its COMMIT only
    /// rolls it back; the error is the update's.
    fn commit(&mut self, w: &Waiter<'_>) {
        let next = self.next as i64;
        let Some(conn) = self.conn.take() else {
            return;
        };
        self.members = 0;
        self.settled = self.group;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&next];
        let r = w.wait(async {
            // Prepared first: a statement given as text is parsed in a round
            // trip of its own, and COMMIT would overtake it.
            let update = conn
                .prepare_cached("UPDATE tree_state SET size = $1 WHERE id = 1")
                .await?;
            tokio::try_join!(
                biased;
                conn.execute(&update, &params),
                conn.batch_execute("COMMIT")
            )
        });
        if let Err(e) = r {
            self.failed
                .insert(self.group, to_store(Fail::Pg(e)).to_string());
            // Whatever state it is in, the connection is not reused.
            drop(deadpool_postgres::Object::take(conn));
        }
    }

    /// Rolls the open group back: all its readers fail.
    fn fail(&mut self, w: &Waiter<'_>, why: &str) {
        if self.conn.is_some() {
            self.end(w, "ROLLBACK");
            self.failed.insert(self.group, why.to_string());
        }
    }

    /// After a reader's part failed: a group no reader succeeded in is
    /// closed at once, so no idle transaction holds the tree-state lock.
    fn close_if_empty(&mut self, w: &Waiter<'_>) {
        if self.members == 0 && self.committing != Some(self.group) {
            self.end(w, "ROLLBACK");
        }
    }
}

/// Opens a group's transaction; returns the log size (its first index).
/// The statements are pipelined: one round trip. Only prepared statements
/// are pipelined, so each is sent whole in its turn.
async fn open(c: &deadpool_postgres::Client) -> Result<u64, Fail> {
    let s = c
        .prepare_cached("SELECT size FROM tree_state WHERE id = 1 FOR UPDATE")
        .await?;
    let (_, row) = tokio::try_join!(
        biased;
        c.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
        c.query_one(&s, &[])
    )?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

/// A reader's savepoint and what `scope` allows of `subject`.
async fn read_part(
    c: &deadpool_postgres::Client,
    subject: &SubjectRef,
    scope: ReadScope<'_>,
) -> Result<SubjectData, Fail> {
    match scope {
        ReadScope::All => read_all(c, subject).await,
        ReadScope::Person(now) => {
            c.batch_execute("SAVEPOINT reader").await?;
            crate::store::read_person(c, subject, now).await
        }
        ReadScope::LeafOnly => {
            c.batch_execute("SAVEPOINT reader").await?;
            Ok(SubjectData::default())
        }
        ReadScope::IfConsented(purpose) => {
            c.batch_execute("SAVEPOINT reader").await?;
            if crate::store::consent_of(c, subject, purpose)
                .await?
                .is_some_and(|r| r.granted)
            {
                let data = crate::store::read_subject(c, subject, true).await?;
                Ok(data)
            } else {
                Ok(SubjectData::default())
            }
        }
    }
}

/// A reader's savepoint and everything held of `subject`, pipelined.
async fn read_all(
    c: &deadpool_postgres::Client,
    subject: &SubjectRef,
) -> Result<SubjectData, Fail> {
    let records = c
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE subject = $1
               AND NOT EXISTS (SELECT 1 FROM purge WHERE subject = $1)
             ORDER BY collected_at, id"
        ))
        .await?;
    let consents = c
        .prepare_cached(
            "SELECT subject, purpose, granted, at FROM consents WHERE subject = $1
             ORDER BY purpose COLLATE \"C\"",
        )
        .await?;
    let key = &subject[..];
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&key];
    let (_, rs, cs) = tokio::try_join!(
        biased;
        c.batch_execute("SAVEPOINT reader"),
        c.query(&records, &params),
        c.query(&consents, &params)
    )?;
    let mut data = SubjectData::default();
    for r in &rs {
        data.records.push(record_from_row(r)?);
    }
    for r in &cs {
        data.consents.push(ConsentRow {
            subject: ref16(r.try_get(0)?, "subject ref")?,
            purpose: r.try_get(1)?,
            granted: r.try_get(2)?,
            at: r.try_get(3)?,
        });
    }
    data.exists = !data.records.is_empty() || !data.consents.is_empty();
    Ok(data)
}

impl Reads {
    pub(crate) fn new() -> Reads {
        Reads {
            group: GroupCommit::new(Group::default()),
        }
    }

    /// Groups opened so far.
    pub(crate) fn groups(&self) -> u64 {
        self.lock().group
    }

    fn lock(&self) -> MutexGuard<'_, Group> {
        // A panic while holding the lock cannot leave a half group: the
        // reader's savepoint is rolled back or the group failed first.
        self.group.lock()
    }

    pub(crate) fn read(
        &self,
        db: &Db,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut ReadLeafFn<'_>,
    ) -> Result<(SubjectData, u64), StoreError> {
        let w = db.waiter()?;
        let mut g = self.group.join();
        if g.conn.is_none() {
            let mut attempt = 0;
            let (conn, size) = loop {
                attempt += 1;
                let conn = db.client(&w)?;
                match w.wait(open(&conn)) {
                    Ok(size) => break (conn, size),
                    Err(e) => {
                        drop(deadpool_postgres::Object::take(conn));
                        if attempt < MAX_ATTEMPTS && retryable(&e, false) {
                            continue;
                        }
                        return Err(to_store(e));
                    }
                }
            };
            g.conn = Some(conn);
            g.next = size;
            g.group += 1;
            g.members = 0;
        }
        let my = g.group;
        let idx = g.next;
        let part = match &g.conn {
            Some(c) => w.wait(read_part(c, subject, scope)),
            None => Err(Fail::Store(StoreError::NotCommitted(
                "the read's group closed".into(),
            ))),
        };
        let undo = |g: &mut Group| {
            let undone = match &g.conn {
                Some(c) => w
                    .wait(c.batch_execute("ROLLBACK TO SAVEPOINT reader; RELEASE SAVEPOINT reader"))
                    .is_ok(),
                None => true,
            };
            if undone {
                g.close_if_empty(&w);
            } else {
                g.fail(&w, "a failed read could not be undone alone");
            }
        };
        let data = match part {
            Ok(d) => d,
            Err(e) => {
                undo(&mut g);
                self.group.notify();
                return Err(to_store(e));
            }
        };
        let body = match guarded(|| leaf(&data, idx)) {
            Ok(b) => b,
            Err(Fail::Panic(p)) => {
                undo(&mut g);
                self.group.notify();
                drop(g);
                std::panic::resume_unwind(p);
            }
            Err(e) => return Err(to_store(e)),
        };
        let kept = match &g.conn {
            Some(c) => w.wait(async {
                let s = c
                    .prepare_cached("INSERT INTO leaves (idx, body) VALUES ($1, $2)")
                    .await?;
                let file = c.prepare_cached(crate::store::FILE_LEAF).await?;
                let at = idx as i64;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&at, &body.bytes];
                // The leaf, its filing in the leaf index and the savepoint's
                // end in one round trip (both statements prepared first, so
                // the three are sent in this order and run inside the
                // savepoint). A month's first window full (more than 64
                // leaves of one person) takes more round trips after: if
                // those fail, the group fails, loudly, as after any failure
                // past the savepoint.
                let (_, filed, _) = tokio::try_join!(
                    biased;
                    async { Ok::<_, Fail>(c.execute(&s, &params).await?) },
                    crate::store::file_leaf_first(c, &file, idx, &body.index),
                    async { Ok::<_, Fail>(c.batch_execute("RELEASE SAVEPOINT reader").await?) }
                )?;
                if !filed {
                    crate::store::file_leaf_later(c, idx, &body.index).await?;
                }
                Ok::<_, Fail>(())
            }),
            None => Ok(()),
        };
        if let Err(e) = kept {
            undo(&mut g);
            self.group.notify();
            return Err(to_store(e));
        }
        g.next += 1;
        g.members += 1;
        self.group
            .wait(g, my, |g| g.commit(&w))
            .map(|()| (data, idx))
    }
}
