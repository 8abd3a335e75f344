//! [`StatsStore`] on SQLite: the `privacy_budget` ledger and the scan of
//! one category's records, person by person, through `records_subject`
//! (subject, category), each person's rows in row-number order.

use super::*;
use crate::{
    BlockMakeFn, BlockStep, BudgetLeafFn, BudgetOutcome, BudgetRow, BudgetSpend, ScanAsk,
    ScanBlock, ScanPage, ScanPos, stats_decide,
};

/// What both scans of rows read (`record_from_row`'s columns and the row
/// number), through the index by person.
macro_rules! scan_rows_from {
    () => {
        "SELECT id, subject, category, purpose, source, collected_at,
            expires_at, key_id, sealed, superseded_by, rowid
        FROM records INDEXED BY records_subject"
    };
}

/// The statistics scan's query, with `$consent` (a condition, or nothing)
/// before its order: one text for [`SCAN`] and [`SCAN_CONSENTED`].
macro_rules! scan_sql {
    ($consent:literal) => {
        concat!(
            scan_rows_from!(),
            " WHERE +category = ?1 AND (subject, rowid) > (?2, ?3) AND subject < ?6
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

/// The consent condition of the block-scan queries, on `$t.subject`.
macro_rules! consented_sql {
    ($t:literal) => {
        concat!(
            " AND EXISTS (SELECT 1 FROM consents c WHERE c.subject = ",
            $t,
            ".subject AND c.purpose = ?5 AND c.granted <> 0)"
        )
    };
}

/// A page of people for the block scan: the next ?4 subjects after ?2 and
/// before ?3 holding rows of category ?1, each with their highest row
/// number in it (every row, current or not: it is compared with their
/// blocks' position). On the index alone, in its order.
const BLOCK_SCAN_PEOPLE: &str = "SELECT subject, max(rowid) FROM records INDEXED BY records_subject
     WHERE +category = ?1 AND subject > ?2 AND subject < ?3
     GROUP BY subject ORDER BY subject LIMIT ?4";

/// The current blocks of category ?1 of the subjects in [?2, ?3] (not
/// expired at ?4, not awaiting the purge), by subject.
macro_rules! blocks_sql {
    ($consent:expr) => {
        concat!(
            "SELECT subject, key_id, expires_at, upto, records, tag, sealed FROM scan_blocks b
             WHERE category = ?1 AND subject >= ?2 AND subject <= ?3 AND expires_at > ?4
               AND subject NOT IN (SELECT subject FROM purge)",
            $consent,
            " ORDER BY category, subject, key_id, expires_at"
        )
    };
}
const BLOCKS: &str = blocks_sql!("");
const BLOCKS_CONSENTED: &str = blocks_sql!(consented_sql!("b"));

/// The current blocks and marks of category ?1 of the subjects from ?2 to
/// ?3 and before ?4 (not expired at ?5, not awaiting the purge), by
/// subject: the tail scan's page ([`SqliteStore::tail_page`]).
macro_rules! page_blocks_sql {
    ($consent:expr) => {
        concat!(
            "SELECT subject, key_id, expires_at, upto, records, tag, sealed FROM scan_blocks b
             WHERE category = ?1 AND subject >= ?2 AND subject <= ?3 AND subject < ?4
               AND expires_at > ?5 AND subject NOT IN (SELECT subject FROM purge)",
            $consent,
            " ORDER BY category, subject, key_id, expires_at"
        )
    };
}
/// The consent condition of [`PAGE_BLOCKS_CONSENTED`], on ?6.
macro_rules! consented_6_sql {
    ($t:literal) => {
        concat!(
            " AND EXISTS (SELECT 1 FROM consents c WHERE c.subject = ",
            $t,
            ".subject AND c.purpose = ?6 AND c.granted <> 0)"
        )
    };
}
const PAGE_BLOCKS: &str = page_blocks_sql!("");
const PAGE_BLOCKS_CONSENTED: &str = page_blocks_sql!(consented_6_sql!("b"));

/// The `key_id` of a mark: a `scan_blocks` row holding no records that
/// sends the scan to the person's rows of the category (their blocks were
/// deleted by a change to a row below the category's tail, or could not be
/// made).
const MARK: i64 = -1;

/// A tail of at most this share of the rows (1/8), or of `TAIL_MIN` rows,
/// and never of more than `TAIL_MAX` (its list of people: at most 16 MiB),
/// is read by row number at the start of a scan; a longer one (a build not
/// finished yet, or much written since) leaves the scan to walk the index.
const TAIL_SHARE: i64 = 8;
const TAIL_MIN: i64 = 1 << 16;
const TAIL_MAX: i64 = 1 << 20;

/// The people of category ?2's rows from row ?1 on, by row number.
const TAIL_PEOPLE: &str = "SELECT subject FROM records WHERE rowid >= ?1 AND +category = ?2";

/// One person's current rows of category ?1 after row ?3 (the rows their
/// blocks do not cover), by row number.
macro_rules! person_rows_sql {
    ($consent:expr) => {
        concat!(
            scan_rows_from!(),
            " WHERE subject = ?2 AND +category = ?1 AND rowid > ?3
              AND superseded_by IS NULL AND expires_at > ?4
              AND subject NOT IN (SELECT subject FROM purge)",
            $consent,
            " ORDER BY subject, category, rowid"
        )
    };
}
const PERSON_ROWS: &str = person_rows_sql!("");
const PERSON_ROWS_CONSENTED: &str = person_rows_sql!(consented_sql!("records"));

/// A row of [`BLOCKS`] into `out`, its buffers reused.
fn block_into(r: &rusqlite::Row<'_>, category: &str, out: &mut ScanBlock) -> rusqlite::Result<()> {
    let text = |i: usize| {
        r.get_ref(i)?.as_str().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
        })
    };
    out.subject = r.get(0)?;
    if out.category != category {
        out.category.clear();
        out.category.push_str(category);
    }
    out.key_id = r.get(1)?;
    out.expires_at = r.get(2)?;
    out.upto = at_of(r.get(3)?);
    out.records = r.get::<_, i64>(4)? as u64;
    let tag = text(5)?;
    if out.tag != tag {
        out.tag.clear();
        out.tag.push_str(tag);
    }
    let sealed = r.get_ref(6)?.as_blob().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Blob, e.into())
    })?;
    out.sealed.clear();
    out.sealed.extend_from_slice(sealed);
    Ok(())
}

/// The blocks of `subject` in a page's `blocks` (in subject order), from
/// `at` on; `at` moves past them.
fn blocks_of<'b>(blocks: &'b [ScanBlock], at: &mut usize, subject: &SubjectRef) -> &'b [ScanBlock] {
    while *at < blocks.len() && blocks[*at].subject < *subject {
        *at += 1;
    }
    let from = *at;
    while *at < blocks.len() && blocks[*at].subject == *subject {
        *at += 1;
    }
    &blocks[from..*at]
}

/// Appends `subject`'s current rows of the scan's category after row
/// `after` to a page's `rows` at `n` (buffers of the last page's rows at
/// their places reused), with the person-rows query `q`.
fn person_rows_into(
    q: &mut rusqlite::CachedStatement<'_>,
    ask: &ScanAsk<'_>,
    subject: &SubjectRef,
    after: i64,
    rows: &mut Vec<RecordRow>,
    n: &mut usize,
) -> Result<(), StoreError> {
    let mut r = match ask.consented {
        None => q.query(params![ask.category, subject, after, ask.now])?,
        Some(purpose) => q.query(params![ask.category, subject, after, ask.now, purpose])?,
    };
    while let Some(r) = r.next()? {
        match rows.get_mut(*n) {
            Some(slot) => record_into(r, slot)?,
            None => rows.push(record_from_row(r)?),
        }
        *n += 1;
    }
    Ok(())
}

/// Leaves out of a page's blocks those of people after `last` (when the
/// page ended with them) and those of the `unusable` people (sorted),
/// whose rows were read instead.
fn trim_blocks(blocks: &mut Vec<ScanBlock>, last: Option<&SubjectRef>, unusable: &[SubjectRef]) {
    if let Some(end) = last {
        let keep = blocks.partition_point(|b| b.subject <= *end);
        blocks.truncate(keep);
    }
    if !unusable.is_empty() {
        blocks.retain(|b| unusable.binary_search(&b.subject).is_err());
    }
}

/// The row number a person's blocks `mine` cover up to, if there are
/// some and all are of tag `tag` and of one position (others are left
/// out: the person's rows are read).
fn usable_upto(mine: &[ScanBlock], tag: &str) -> Option<i64> {
    let b = mine.first()?;
    mine.iter()
        .all(|x| x.tag == tag && x.upto == b.upto)
        .then(|| row_of(&b.upto))
}

/// Whether `category` has any scan block (the block scan is used only
/// then: without blocks it would only add a look-up a person).
fn has_blocks(conn: &Connection, category: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM scan_blocks WHERE category = ?1)")?
        .query_row([category], |r| r.get(0))?)
}

/// The person and row number a scan position (from either scan) resumes
/// after (`at_of(i64::MAX)`: after every row of theirs).
fn resume(after: Option<&ScanPos>) -> Option<(SubjectRef, i64)> {
    after.map(|(s, at)| (*s, row_of(at)))
}

impl SqliteStore {
    /// The block scan's page ([`StatsStore::category_records_into`] with
    /// blocks): whole people, their blocks of tag `tag` and the rows these
    /// do not cover, all read in one snapshot.
    fn block_page(
        &self,
        ask: &ScanAsk<'_>,
        tag: &str,
        page: &mut ScanPage,
    ) -> Result<(), StoreError> {
        let until = scan_until(ask.until);
        let start = resume(ask.after);
        let rows = &mut page.rows;
        let blocks = &mut page.blocks;
        let mut nb = 0usize;
        let mut n = 0usize;
        let mut last = None;
        self.with_scanner(|conn| {
            // One snapshot: a correction between the blocks and the rows
            // would otherwise count its record twice.
            let tx = conn.unchecked_transaction()?;
            let mut people: Vec<(SubjectRef, i64, i64)> = Vec::new();
            // A person left midway by the row scan: the rest of their rows.
            let from: &[u8] = match &start {
                Some((s, at)) if *at != i64::MAX => {
                    people.push((*s, i64::MAX, *at));
                    s
                }
                Some((s, _)) => s,
                None => &[],
            };
            {
                let mut q = tx.prepare_cached(BLOCK_SCAN_PEOPLE)?;
                let mut r =
                    q.query(params![ask.category, from, until, ask.people.max(1) as i64])?;
                while let Some(row) = r.next()? {
                    people.push((row.get(0)?, row.get(1)?, 0));
                }
            }
            let (Some(first), Some(end)) = (people.first(), people.last()) else {
                return Ok(());
            };
            let (first, end) = (first.0, end.0);
            // People marked to be read from their rows.
            let mut marked: Vec<SubjectRef> = Vec::new();
            // The page's people's blocks, read into the last page's blocks
            // at their places (buffers reused: a page holds megabytes).
            {
                let mut q = match ask.consented {
                    None => tx.prepare_cached(BLOCKS)?,
                    Some(_) => tx.prepare_cached(BLOCKS_CONSENTED)?,
                };
                let mut r = match ask.consented {
                    None => q.query(params![ask.category, first, end, ask.now])?,
                    Some(purpose) => {
                        q.query(params![ask.category, first, end, ask.now, purpose])?
                    }
                };
                while let Some(row) = r.next()? {
                    if row.get::<_, i64>(1)? == MARK {
                        marked.push(row.get(0)?);
                        continue;
                    }
                    if nb == blocks.len() {
                        blocks.push(ScanBlock::default());
                    }
                    block_into(row, ask.category, &mut blocks[nb])?;
                    nb += 1;
                }
            }
            blocks.truncate(nb);
            let mut q = match ask.consented {
                None => tx.prepare_cached(PERSON_ROWS)?,
                Some(_) => tx.prepare_cached(PERSON_ROWS_CONSENTED)?,
            };
            let mut at = 0usize;
            let mut unusable: Vec<SubjectRef> = Vec::new();
            for (subject, highest, resumed) in &people {
                // A page holds at most `limit` rows: it ends with the
                // person who reaches it (their blocks and rows whole).
                if n >= ask.limit.max(1) {
                    break;
                }
                // This person's blocks, usable or not.
                let mine = blocks_of(blocks, &mut at, subject);
                // The row number their blocks cover up to (none: a person
                // resumed midway, blocks of another tag, or of unequal
                // positions; their blocks are then left out).
                let covered = match usable_upto(mine, tag) {
                    Some(upto) if *resumed == 0 && marked.binary_search(subject).is_err() => upto,
                    _ => {
                        if !mine.is_empty() {
                            unusable.push(*subject);
                        }
                        0
                    }
                };
                last = Some(*subject);
                let after = covered.max(*resumed);
                // Every row of theirs in their blocks: nothing to read.
                if after >= *highest {
                    continue;
                }
                person_rows_into(&mut q, ask, subject, after, rows, &mut n)?;
            }
            trim_blocks(blocks, last.as_ref(), &unusable);
            Ok(())
        })?;
        rows.truncate(n);
        if last.is_none() {
            blocks.clear();
        }
        page.next = last.map(|s| (s, at_of(i64::MAX)));
        Ok(())
    }
}

impl SqliteStore {
    /// The block scan's page when the category's tail is known
    /// ([`ScanAsk::tail`]): its people are those of the blocks and marks
    /// and those of the tail, read from the blocks' index and the list,
    /// not from every row's index entry. Whole people, their blocks of tag
    /// `tag` and the rows these do not cover: a person with blocks reads
    /// rows only if in the tail; a marked person, or one with blocks of
    /// another tag or resumed midway, reads their rows. All in one snapshot.
    fn tail_page(
        &self,
        ask: &ScanAsk<'_>,
        tag: &str,
        tail: &[SubjectRef],
        page: &mut ScanPage,
    ) -> Result<(), StoreError> {
        let until = scan_until(ask.until);
        let want = ask.people.max(1);
        // Where the page starts: at `from` itself (the range's start), or
        // after it, with a person the row scan left midway.
        let mut midway: Option<(SubjectRef, i64)> = None;
        let lower: Option<SubjectRef> = match ask.after {
            None => Some([0u8; 16]),
            Some((s, at)) => match row_of(at) {
                0 => Some(*s),
                row => {
                    if row != i64::MAX {
                        midway = Some((*s, row));
                    }
                    next_subject(s)
                }
            },
        };
        let rows = &mut page.rows;
        let blocks = &mut page.blocks;
        let mut nb = 0usize;
        let mut n = 0usize;
        // The last person handled, and where the next page starts.
        let mut last: Option<SubjectRef> = None;
        let mut next: Option<SubjectRef> = None;
        self.with_scanner(|conn| {
            let tx = conn.unchecked_transaction()?;
            let mut people: Vec<SubjectRef> = Vec::with_capacity(2 * want + 1);
            let mut marked: Vec<SubjectRef> = Vec::new();
            let (t0, t1) = match lower {
                None => (tail.len(), tail.len()),
                Some(lower) => {
                    // The page ends at the `want`th block row from its
                    // start (a person has one or more), or earlier if the
                    // tail has `want` people before, or at the range's end.
                    let end_b: Option<SubjectRef> = tx
                        .prepare_cached(
                            "SELECT subject FROM scan_blocks
                             WHERE category = ?1 AND subject >= ?2 AND subject < ?3
                             ORDER BY category, subject LIMIT 1 OFFSET ?4",
                        )?
                        .query_row(params![ask.category, lower, until, want as i64 - 1], |r| {
                            r.get(0)
                        })
                        .optional()?;
                    let t0 = tail.partition_point(|s| *s < lower);
                    let t_until = t0 + tail[t0..].partition_point(|s| s.as_slice() < until);
                    let cut = (t_until - t0 > want).then(|| tail[t0 + want - 1]);
                    let end = match (end_b, cut) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    let t1 = match &end {
                        Some(e) => t0 + tail[t0..t_until].partition_point(|s| s <= e),
                        None => t_until,
                    };
                    next = end;
                    // The blocks and marks of the people from `lower` to
                    // `end`, read into the last page's blocks at their
                    // places (buffers reused: a page holds megabytes).
                    let high: &[u8] = match &end {
                        Some(e) => e,
                        None => until,
                    };
                    let mut q = match ask.consented {
                        None => tx.prepare_cached(PAGE_BLOCKS)?,
                        Some(_) => tx.prepare_cached(PAGE_BLOCKS_CONSENTED)?,
                    };
                    let mut r = match ask.consented {
                        None => q.query(params![ask.category, lower, high, until, ask.now])?,
                        Some(purpose) => {
                            q.query(params![ask.category, lower, high, until, ask.now, purpose])?
                        }
                    };
                    while let Some(row) = r.next()? {
                        if row.get::<_, i64>(1)? == MARK {
                            let s: SubjectRef = row.get(0)?;
                            marked.push(s);
                            people.push(s);
                            continue;
                        }
                        if nb == blocks.len() {
                            blocks.push(ScanBlock::default());
                        }
                        block_into(row, ask.category, &mut blocks[nb])?;
                        if people.last() != Some(&blocks[nb].subject) {
                            people.push(blocks[nb].subject);
                        }
                        nb += 1;
                    }
                    (t0, t1)
                }
            };
            blocks.truncate(nb);
            let tail = &tail[t0..t1];
            people.extend_from_slice(tail);
            people.sort_unstable();
            people.dedup();
            // The person left midway comes first (before `lower`).
            if let Some((s, _)) = midway {
                people.insert(0, s);
            }
            let mut q = match ask.consented {
                None => tx.prepare_cached(PERSON_ROWS)?,
                Some(_) => tx.prepare_cached(PERSON_ROWS_CONSENTED)?,
            };
            let mut at = 0usize;
            let mut unusable: Vec<SubjectRef> = Vec::new();
            let mut full = false;
            for subject in &people {
                // A page holds at most `limit` rows: it ends with the
                // person who reaches it (their blocks and rows whole).
                if n >= ask.limit.max(1) {
                    full = true;
                    break;
                }
                let mine = blocks_of(blocks, &mut at, subject);
                let resumed = match midway {
                    Some((s, row)) if s == *subject => row,
                    _ => 0,
                };
                let covered = match usable_upto(mine, tag) {
                    Some(upto) if resumed == 0 && marked.binary_search(subject).is_err() => {
                        Some(upto)
                    }
                    _ => {
                        if !mine.is_empty() {
                            unusable.push(*subject);
                        }
                        None
                    }
                };
                last = Some(*subject);
                let after = match covered {
                    // Every row of theirs below the tail is in their
                    // blocks: only the tail can hold more.
                    Some(_) if tail.binary_search(subject).is_err() => continue,
                    Some(upto) => upto,
                    None => resumed,
                };
                person_rows_into(&mut q, ask, subject, after, rows, &mut n)?;
            }
            if full {
                next = last;
            }
            trim_blocks(blocks, last.as_ref().filter(|_| full), &unusable);
            Ok(())
        })?;
        rows.truncate(n);
        if next.is_none() && last.is_none() {
            blocks.clear();
        }
        // The page's end when it was reached; the range is done without one
        // (after its last person, when it had some).
        page.next = next.or(last).map(|s| (s, at_of(i64::MAX)));
        Ok(())
    }
}

/// The ref after `s` in byte order (`None` past the last).
fn next_subject(s: &SubjectRef) -> Option<SubjectRef> {
    u128::from_be_bytes(*s)
        .checked_add(1)
        .map(u128::to_be_bytes)
}

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
        let ask = ScanAsk {
            category,
            now,
            after,
            until,
            limit,
            consented,
            blocks: None,
            people: 0,
            tail: None,
        };
        self.category_records_into(&ask, &mut page)?;
        Ok(page)
    }

    fn category_records_into(
        &self,
        ask: &ScanAsk<'_>,
        page: &mut ScanPage,
    ) -> Result<(), StoreError> {
        if let Some(tag) = ask.blocks
            && self.with_scanner(|conn| has_blocks(conn, ask.category))?
        {
            return match ask.tail {
                Some(tail) => self.tail_page(ask, tag, tail, page),
                None => self.block_page(ask, tag, page),
            };
        }
        let ScanAsk {
            category,
            now,
            after,
            until,
            limit,
            consented,
            ..
        } = *ask;
        page.blocks.clear();
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

    fn scan_tail(&self, category: &str) -> Result<Option<Vec<SubjectRef>>, StoreError> {
        self.with_scanner(|conn| {
            let tx = conn.unchecked_transaction()?;
            let Some(from) = tx
                .prepare_cached("SELECT from_row FROM scan_tails WHERE category = ?1")?
                .query_row([category], |r| r.get::<_, i64>(0))
                .optional()?
            else {
                return Ok(None);
            };
            let end: i64 = tx
                .prepare_cached("SELECT coalesce(max(rowid), 0) FROM records")?
                .query_row([], |r| r.get(0))?;
            let most = (end / TAIL_SHARE).clamp(TAIL_MIN, TAIL_MAX);
            if end.saturating_sub(from).saturating_add(1) > most {
                return Ok(None);
            }
            // By row number, from the tail's first row to the last.
            let mut people: Vec<SubjectRef> = tx
                .prepare_cached(TAIL_PEOPLE)?
                .query_map(params![from, category], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            people.sort_unstable();
            people.dedup();
            Ok(Some(people))
        })
    }

    fn build_scan_blocks(
        &self,
        category: &str,
        now: i64,
        after: Option<&SubjectRef>,
        build: i64,
        people: usize,
        tag: &str,
        make: &mut BlockMakeFn<'_>,
    ) -> Result<Option<BlockStep>, StoreError> {
        let mut conn = self.conn_bulk();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let from: &[u8] = after.map_or(&[], |s| s.as_slice());
        // The first step begins a build, numbered after the category's
        // last: each person's blocks will be made after this, so each row
        // below where the rows end now will be in them (or the person
        // marked), and the build, when it finishes, moves the category's
        // tail there (lowered by rows written since). A build begun later
        // takes the category over: only the last begun may finish.
        let build = match after {
            None => {
                let start: i64 = tx
                    .prepare_cached("SELECT coalesce(max(rowid), 0) + 1 FROM records")?
                    .query_row([], |r| r.get(0))?;
                tx.prepare_cached(
                    "INSERT INTO scan_tails (category, from_row, pending, build)
                     VALUES (?1, 0, ?2, 1)
                     ON CONFLICT (category) DO UPDATE
                     SET pending = excluded.pending, build = scan_tails.build + 1
                     RETURNING build",
                )?
                .query_row(params![category, start], |r| r.get(0))?
            }
            Some(_) => build,
        };
        let mut step = BlockStep {
            build,
            ..BlockStep::default()
        };
        {
            let who: Vec<(SubjectRef, i64)> = tx
                .prepare_cached(BLOCK_SCAN_PEOPLE)?
                .query_map(
                    params![category, from, scan_until(None), people.max(1) as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect::<Result<_, _>>()?;
            let mut rows_q = tx.prepare_cached(PERSON_ROWS)?;
            let mut ins = tx.prepare_cached(
                "INSERT INTO scan_blocks
                     (category, subject, key_id, expires_at, upto, records, tag, sealed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (subject, highest) in &who {
                step.people += 1;
                step.next = Some(*subject);
                let rows: Vec<RecordRow> = rows_q
                    .query_map(params![category, subject, 0, now], record_from_row)?
                    .collect::<Result<_, _>>()?;
                drop_blocks(&tx, category, subject)?;
                let Some(blocks) = make(subject, &rows, &at_of(*highest))? else {
                    // Left to their rows: marked, so the scan reads them.
                    tx.prepare_cached(MARK_SQL)?
                        .execute(params![category, subject])?;
                    continue;
                };
                for b in &blocks {
                    ins.execute(params![
                        category,
                        subject,
                        b.key_id,
                        b.expires_at,
                        highest,
                        b.records as i64,
                        tag,
                        b.sealed
                    ])?;
                    step.blocks += 1;
                    step.records += b.records;
                }
            }
            if who.is_empty() {
                // Everyone done: the tail starts where the build began, if
                // no later build has begun since.
                tx.prepare_cached(
                    "UPDATE scan_tails SET from_row = pending, pending = NULL
                     WHERE category = ?1 AND build = ?2 AND pending IS NOT NULL",
                )?
                .execute(params![category, step.build])?;
            }
        }
        tx.commit()?;
        Ok(Some(step))
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

/// Marks person ?2 in category ?1: the scan reads their rows.
const MARK_SQL: &str = "INSERT OR IGNORE INTO scan_blocks
         (category, subject, key_id, expires_at, upto, records, tag, sealed)
     VALUES (?1, ?2, -1, 9223372036854775807, 0, 0, '', x'')";

/// Deletes `subject`'s scan blocks of the categories of their rows: before
/// those rows change (`record`, the one that changes: the person is marked
/// where they had blocks, so the scan reads their rows) or all go (`None`:
/// their marks go too).
pub(super) fn drop_blocks_of(
    tx: &Connection,
    subject: &SubjectRef,
    record: Option<&[u8; 16]>,
) -> Result<(), StoreError> {
    match record {
        None => tx
            .prepare_cached(
                "DELETE FROM scan_blocks WHERE subject = ?1
                   AND category IN (SELECT category FROM records WHERE subject = ?1)",
            )?
            .execute([subject])?,
        Some(id) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO scan_blocks
                     (category, subject, key_id, expires_at, upto, records, tag, sealed)
                 SELECT DISTINCT category, subject, -1, 9223372036854775807, 0, 0, '', x''
                 FROM scan_blocks WHERE subject = ?1 AND key_id >= 0
                   AND category IN (SELECT category FROM records WHERE subject = ?1 AND id = ?2)",
            )?
            .execute(params![subject, id])?;
            tx.prepare_cached(
                "DELETE FROM scan_blocks WHERE subject = ?1 AND key_id >= 0
                   AND category IN (SELECT category FROM records WHERE subject = ?1 AND id = ?2)",
            )?
            .execute(params![subject, id])?
        }
    };
    Ok(())
}

/// Deletes `subject`'s scan blocks and mark of `category` (a build, which
/// makes them again).
pub(super) fn drop_blocks(
    tx: &Connection,
    category: &str,
    subject: &SubjectRef,
) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM scan_blocks WHERE category = ?1 AND subject = ?2")?
        .execute(params![category, subject])?;
    Ok(())
}

/// Replaces `subject`'s scan blocks of `category` with a mark, if they
/// had any: before a row of theirs in it goes (expiry).
pub(super) fn mark_blocks(
    tx: &Connection,
    category: &str,
    subject: &SubjectRef,
) -> Result<(), StoreError> {
    let had = tx
        .prepare_cached(
            "DELETE FROM scan_blocks WHERE category = ?1 AND subject = ?2 AND key_id >= 0",
        )?
        .execute(params![category, subject])?;
    if had > 0 {
        tx.prepare_cached(MARK_SQL)?
            .execute(params![category, subject])?;
    }
    Ok(())
}

/// Lowers every category's tail, and any build's, to `row`, the first row
/// of a batch just written: a row number freed by a deletion may be given
/// again, below where the tail began.
pub(super) fn extend_tails(tx: &Connection, row: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE scan_tails SET from_row = min(from_row, ?1), pending = min(pending, ?1)
         WHERE from_row > ?1 OR pending > ?1",
    )?
    .execute([row])?;
    Ok(())
}

/// Whether the store holds any scan block (changes to rows look for the
/// blocks to delete only then).
pub(super) fn any_blocks(tx: &Connection) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM scan_blocks)")?
        .query_row([], |r| r.get(0))?)
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

    /// The tail scan reads no index of rows: its page's end and blocks
    /// come from the blocks' index, the tail by row number.
    #[test]
    fn the_tail_scan_reads_the_blocks_index_and_the_rows_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.db");
        drop(SqliteStore::open(&path, OpenMode::Create).unwrap());
        let conn = Connection::open(&path).unwrap();
        let plan_of = |sql: &str, n: usize| -> Vec<String> {
            let args = params![
                "scan_event",
                &[0u8; 16][..],
                &[0xffu8; 16][..],
                &[0xffu8; 17][..],
                0i64,
                "marketing"
            ];
            conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(args.get(..n).unwrap(), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        for (sql, n) in [(PAGE_BLOCKS, 5), (PAGE_BLOCKS_CONSENTED, 6)] {
            let plan = plan_of(sql, n);
            assert!(
                plan.iter()
                    .any(|d| d.contains("USING INDEX scan_blocks_key")),
                "{plan:?}"
            );
            assert!(!plan.iter().any(|d| d.contains("records")), "{plan:?}");
            assert!(!plan.iter().any(|d| d.contains("TEMP B-TREE")), "{plan:?}");
        }
        let tail: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {TAIL_PEOPLE}"))
            .unwrap()
            .query_map(params![1i64, "scan_event"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            tail.iter()
                .any(|d| d.contains("USING INTEGER PRIMARY KEY (rowid>?)")),
            "{tail:?}"
        );
    }

    #[test]
    fn scan_positions_keep_the_row_number() {
        for row in [0, 1, 255, 256, 1 << 40, i64::MAX] {
            assert_eq!(row_of(&at_of(row)), row);
        }
        assert_eq!(row_of(&[0; 16]), 0);
    }
}
