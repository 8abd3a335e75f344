//! What the SQL backends share of their tables' layout: the column lists
//! their row readers index by position, and the encoding of code lists in
//! one text column. Both schemas (SQLite's and PostgreSQL's) name these
//! columns alike; a reader and its list change together, here.

/// The columns of `disclosures`, in the order the row readers expect.
pub const DISCLOSURE_COLUMNS: &str = "id, seq, requester, kind, ground, instrument_key, case_key,
    extension_no, subjects, portions, status, reasons, alerts, submitted_at, data_from, data_until,
    valid_until, notice_after, decided_by, decided_at, fetches, last_fetched_at, ended_at,
    end_reason, notified_at, retain_until, sealed, office_notes, extends";

/// The columns of `principals`, in the order the row readers expect.
pub const PRINCIPAL_COLUMNS: &str = "name, role, token_hash, created_at, revoked_at";

/// A list of codes (portions, reasons, categories) as stored: joined with
/// commas; the empty text is the empty list.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// The exclusive upper bound of a category scan: `until`, or a value above
/// every subject ref (17 bytes of 0xff sort after any 16-byte ref).
pub fn scan_until(until: Option<&crate::SubjectRef>) -> &[u8] {
    const ABOVE_ALL: [u8; 17] = [0xff; 17];
    match until {
        Some(u) => u,
        None => &ABOVE_ALL,
    }
}

/// The position after which a paged scan resumes as two keys (subject,
/// the store's key of a row among the person's, see [`crate::ScanPos`]),
/// or the start (two empty keys, which sort before every real one).
pub fn scan_after(after: Option<&crate::ScanPos>) -> (&[u8], &[u8]) {
    match after {
        Some((s, i)) => (s, i),
        None => (&[], &[]),
    }
}
