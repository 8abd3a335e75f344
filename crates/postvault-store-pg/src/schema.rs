//! The schema: the embedded store's tables translated (BLOB -> BYTEA,
//! INTEGER -> BIGINT, a boolean for consent), with the same versions and
//! migrations, plus what sequencing over several nodes needs: the single
//! `tree_state` row every leaf-appending transaction locks, and `batches`,
//! the ids of the collection batches written.
//!
//! Version N of this schema holds what version N of the SQLite schema
//! holds; `postvault_schema` records the version and which store (data or
//! keys) a schema is.

use postvault_store::{KEYS_SCHEMA_VERSION, SCHEMA_VERSION, StoreError};

use crate::db::{Db, Fail};

/// Migrations from version N-1 to N, index N-1.
pub(crate) const DATA_MIGRATIONS: &[&str] = &[
    // 1: the core tables, and the log's sequencing.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE principals (
         name TEXT PRIMARY KEY, role TEXT NOT NULL,
         token_hash BYTEA NOT NULL, created_at BIGINT NOT NULL);
     CREATE TABLE records (
         id BYTEA NOT NULL, subject BYTEA NOT NULL, category TEXT NOT NULL,
         purpose TEXT NOT NULL, source TEXT NOT NULL,
         collected_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
         key_id BIGINT NOT NULL, sealed BYTEA NOT NULL);
     CREATE INDEX records_subject ON records (subject);
     CREATE TABLE lookups (
         token BYTEA NOT NULL, subject BYTEA NOT NULL, record BYTEA NOT NULL,
         PRIMARY KEY (token, record));
     CREATE TABLE consents (
         subject BYTEA NOT NULL, purpose TEXT NOT NULL, granted BOOLEAN NOT NULL,
         at BIGINT NOT NULL, PRIMARY KEY (subject, purpose));
     CREATE TABLE leaves (idx BIGINT PRIMARY KEY, body BYTEA NOT NULL);
     CREATE TABLE tree_state (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL);
     INSERT INTO tree_state (id, size) VALUES (1, 0);
     CREATE TABLE batches (
         id BYTEA PRIMARY KEY, first_leaf BIGINT NOT NULL, leaves BIGINT NOT NULL,
         records BIGINT NOT NULL);",
    // 2: the Merkle tree over the leaves, and signed checkpoints.
    "CREATE TABLE log_hashes (idx BIGINT PRIMARY KEY, hash BYTEA NOT NULL);
     CREATE TABLE log_checkpoints (size BIGINT PRIMARY KEY, note TEXT NOT NULL);
     INSERT INTO meta (key, value) VALUES ('log_hashed_size', '0');",
    // 3: the disclosure gateway's ledger and the accounting of disclosures.
    "CREATE TABLE disclosures (
         id TEXT PRIMARY KEY, seq BIGINT NOT NULL UNIQUE, requester TEXT NOT NULL,
         kind TEXT NOT NULL, ground TEXT NOT NULL,
         instrument_key BYTEA, case_key BYTEA, extension_no BIGINT NOT NULL,
         subjects BYTEA NOT NULL, portions TEXT NOT NULL, status TEXT NOT NULL,
         reasons TEXT NOT NULL, alerts TEXT NOT NULL, submitted_at BIGINT NOT NULL,
         data_from BIGINT, data_until BIGINT, valid_until BIGINT, notice_after BIGINT,
         decided_by TEXT, decided_at BIGINT, fetches BIGINT NOT NULL,
         last_fetched_at BIGINT, ended_at BIGINT, end_reason TEXT, notified_at BIGINT,
         retain_until BIGINT NOT NULL, sealed BYTEA NOT NULL);
     CREATE INDEX disclosures_requester ON disclosures (requester, submitted_at);
     CREATE INDEX disclosures_case ON disclosures (case_key, submitted_at);
     CREATE INDEX disclosures_instrument ON disclosures (instrument_key);
     CREATE TABLE accounting (
         disclosure TEXT NOT NULL, subject BYTEA NOT NULL, at BIGINT NOT NULL,
         leaf BIGINT NOT NULL, records BIGINT NOT NULL, categories TEXT NOT NULL,
         PRIMARY KEY (disclosure, leaf));
     CREATE INDEX accounting_subject ON accounting (subject, at);",
    // 4: retention sweeps, erasure and legal holds.
    "CREATE INDEX records_expiry ON records (expires_at);
     CREATE INDEX lookups_subject ON lookups (subject, record);
     CREATE TABLE holds (
         id TEXT NOT NULL, subject BYTEA NOT NULL, disclosure TEXT NOT NULL,
         placed_by TEXT NOT NULL, placed_at BIGINT NOT NULL, until_at BIGINT NOT NULL,
         notice_after BIGINT, released_at BIGINT, released_by TEXT,
         PRIMARY KEY (id, subject));
     CREATE INDEX holds_subject ON holds (subject);
     CREATE TABLE erasures (subject BYTEA PRIMARY KEY, at BIGINT NOT NULL);
     INSERT INTO meta (key, value) VALUES ('erasure_gen', '0');",
    // 5: corrections keep history: a corrected record points at its successor.
    "ALTER TABLE records ADD COLUMN superseded_by BYTEA;",
    // 6: principals can be revoked and their tokens rotated; a token is
    // found by a unique index on its hash; nodes caching tokens watch the
    // principals generation.
    "ALTER TABLE principals ADD COLUMN revoked_at BIGINT;
     CREATE UNIQUE INDEX principals_token ON principals (token_hash);
     INSERT INTO meta (key, value) VALUES ('principals_gen', '0');",
    // 7: witness cosignatures of the kept checkpoints, one line per cosigner.
    "CREATE TABLE log_cosignatures (
         size BIGINT NOT NULL, cosigner TEXT NOT NULL, line TEXT NOT NULL,
         PRIMARY KEY (size, cosigner));",
    // 8: idempotent collection (a run's committed progress, written with
    // each batch, beside `batches`, which keeps a batch from being written
    // twice after an ambiguous commit) and write-ahead intents of
    // destruction.
    "CREATE TABLE runs (
         id BYTEA PRIMARY KEY, principal TEXT NOT NULL, started_at BIGINT NOT NULL,
         updated_at BIGINT NOT NULL, through_line BIGINT NOT NULL, digest BYTEA NOT NULL,
         finished_at BIGINT);
     CREATE TABLE run_batches (
         run BYTEA NOT NULL, first_line BIGINT NOT NULL, last_line BIGINT NOT NULL,
         leaf BIGINT, accepted BIGINT NOT NULL, rejected BIGINT NOT NULL,
         categories TEXT NOT NULL, errors TEXT NOT NULL,
         PRIMARY KEY (run, first_line));
     CREATE TABLE intents (
         id BIGINT PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL, at BIGINT NOT NULL,
         progress BIGINT NOT NULL);
     INSERT INTO meta (key, value) VALUES ('intents_written', '0');",
    // 9: the gateway's notes for the privacy office only, mail-cover
    // extensions linked to the order they extend, and protective orders
    // found by their own small index (the same seek for every person).
    "ALTER TABLE disclosures ADD COLUMN office_notes TEXT NOT NULL DEFAULT '';
     ALTER TABLE disclosures ADD COLUMN extends TEXT;
     CREATE INDEX records_protective ON records (subject) WHERE category = 'protective_order';",
    // 10: the privacy-budget ledger of aggregate statistics, and the scan
    // of one category's records person by person.
    "CREATE TABLE privacy_budget (
         principal TEXT NOT NULL, purpose TEXT NOT NULL, period TEXT NOT NULL,
         spent BIGINT NOT NULL, queries BIGINT NOT NULL, refused BIGINT NOT NULL,
         updated_at BIGINT NOT NULL,
         PRIMARY KEY (principal, purpose, period));
     CREATE INDEX records_category ON records (category, subject, id);",
    // 11: erased people whose rows await the purge: their records and
    // lookups are dead from the erasure on (every read, scan and count
    // leaves them out) and deleted in bulk later.
    "CREATE TABLE purge (subject BYTEA PRIMARY KEY, at BIGINT NOT NULL);",
    // 12: proof tiles, the tree's levels 0-15 grouped 30 hashes a row
    // (postvault_log::proof_tiles), kept from the hashed size at the
    // upgrade on; proofs of older leaves read the stored hashes.
    "CREATE TABLE log_tiles (id BIGINT PRIMARY KEY, hashes BYTEA NOT NULL);
     INSERT INTO meta (key, value)
         SELECT 'log_tiled_from', value FROM meta WHERE key = 'log_hashed_size';",
    // 13: the leaf index (postvault_store::LeafIndex): one row per leaf
    // with a subject tag, under a token only the person's tag key makes,
    // sealed with a key of the vault's, and the months in use; kept from
    // the log size at the upgrade on (the report scans older leaves).
    "CREATE TABLE leaf_index (token BYTEA PRIMARY KEY, idx BIGINT NOT NULL, seal BYTEA NOT NULL);
     CREATE TABLE leaf_index_months (month BIGINT PRIMARY KEY);
     INSERT INTO meta (key, value)
         SELECT 'leaf_indexed_from', (SELECT size FROM tree_state WHERE id = 1)::text;",
    // 14: the data generation SQLite's reads outside the log's lock check;
    // PostgreSQL reads only with the leaf, and keeps the version in step.
    "INSERT INTO meta (key, value) VALUES ('data_gen', '0') ON CONFLICT DO NOTHING;",
    // 15: records sealed under a mail-cover order, by subject (a small
    // index: covers are few), as in SQLite's schema 15; the counts of
    // what an erasure and a purge did, which leave them out, filter on
    // key_id in the rows they count.
    "CREATE INDEX IF NOT EXISTS records_cover ON records (subject) WHERE key_id BETWEEN 1 AND 2147483647;",
    // 16: one index of records by person instead of two, as in SQLite's
    // schema 16: `records_subject` on (subject, category, id) serves a
    // person's rows and the statistics scan (in its order: the category is
    // a constant of the scan's query); `records_category` is gone (an
    // insert at a random place per record in each index keyed by subject).
    // DROP INDEX holds the table's ACCESS EXCLUSIVE lock until the
    // migration commits (docs/postgres.md).
    // Written to run again on a store already at 16 (tests rewind
    // `user_version` to replay later migrations): the same index results.
    "DROP INDEX IF EXISTS records_category;
     DROP INDEX IF EXISTS records_subject;
     CREATE INDEX records_subject ON records (subject, category, id);",
    // 17: SQLite's scan blocks, for the schemas to hold the same tables.
    // This store keeps none (`build_scan_blocks` answers `None`): its
    // statistics scan reads rows, and the table stays empty.
    "CREATE TABLE IF NOT EXISTS scan_blocks (
         category TEXT NOT NULL, subject BYTEA NOT NULL, key_id BIGINT NOT NULL,
         expires_at BIGINT NOT NULL, upto BYTEA NOT NULL, records BIGINT NOT NULL,
         tag TEXT NOT NULL, sealed BYTEA NOT NULL,
         UNIQUE (category, subject, key_id, expires_at));",
    // 18: SQLite's scan tails, for the schemas to hold the same tables
    // (empty here, as `scan_blocks`).
    "CREATE TABLE IF NOT EXISTS scan_tails (
         category TEXT PRIMARY KEY, from_row BIGINT NOT NULL,
         pending BIGINT, build BIGINT NOT NULL);",
];

pub(crate) const KEYS_MIGRATIONS: &[&str] = &[
    // 1: secrets and per-subject wrapped keys.
    "CREATE TABLE secrets (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
     CREATE TABLE subject_keys (
         ref BYTEA PRIMARY KEY, data BYTEA NOT NULL, tag BYTEA NOT NULL);",
    // 2: the log's anti-rollback state: the last checkpoint signed, one
    // row that every signing node locks.
    "CREATE TABLE log_state (
         id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL,
         root BYTEA NOT NULL, note TEXT NOT NULL, signed BIGINT NOT NULL);",
];

const _: () = assert!(DATA_MIGRATIONS.len() == SCHEMA_VERSION as usize);
const _: () = assert!(KEYS_MIGRATIONS.len() == KEYS_SCHEMA_VERSION as usize);

/// Which store a schema holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Data,
    Keys,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Data => "data",
            Kind::Keys => "keys",
        }
    }
    fn what(self) -> &'static str {
        match self {
            Kind::Data => "data store",
            Kind::Keys => "key store",
        }
    }
}

/// Brings `schema` to the latest version of `kind` (creating it first when
/// `create`), in transactions that lock the version row, so nodes starting
/// together migrate once.
pub(crate) fn migrate(
    db: &Db,
    schema: &str,
    kind: Kind,
    migrations: &[&str],
    create: bool,
) -> Result<(), StoreError> {
    let shown = format!("{} (schema {schema})", db.shown);
    let supported = migrations.len() as i64;
    // Is it there, and what is it?
    let found = db.run(false, async |c| {
        let tables: Vec<String> = c
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                &[&schema],
            )
            .await?
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<_, _>>()?;
        if !tables.iter().any(|t| t == "postvault_schema") {
            return Ok::<_, Fail>((tables.len(), None));
        }
        let rows = c
            .query("SELECT kind, version FROM postvault_schema", &[])
            .await?;
        let mut kinds = Vec::new();
        for r in rows {
            kinds.push((r.try_get::<_, String>(0)?, r.try_get::<_, i64>(1)?));
        }
        Ok((tables.len(), Some(kinds)))
    })?;
    match found {
        (0, None) if !create => {
            return Err(StoreError::NotAStore(
                shown,
                format!("no {} here: run `postvault init` first", kind.what()),
            ));
        }
        (n, None) if n > 0 => {
            return Err(StoreError::NotAStore(
                shown,
                format!(
                    "the schema holds tables, but not a postvault {}",
                    kind.what()
                ),
            ));
        }
        (_, Some(kinds)) => {
            if kinds.iter().any(|(k, _)| k != kind.name()) {
                return Err(StoreError::NotAStore(
                    shown,
                    format!("it is not a postvault {}", kind.what()),
                ));
            }
            if let Some((_, v)) = kinds.first()
                && *v > supported
            {
                return Err(StoreError::NewerSchema {
                    path: shown,
                    found: u32::try_from(*v).unwrap_or(u32::MAX),
                    supported: supported as u32,
                });
            }
            if kinds.first().is_some_and(|(_, v)| *v == supported) {
                return Ok(());
            }
        }
        _ => {}
    }
    // Create the version table; two nodes racing here both succeed or one
    // retries on the other's catalog row.
    db.run(true, async |c| {
        let tx = c.transaction().await?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.postvault_schema (
                 kind TEXT PRIMARY KEY, version BIGINT NOT NULL);"
        ))
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO {schema}.postvault_schema (kind, version) VALUES ($1, 0)
                 ON CONFLICT DO NOTHING"
            ),
            &[&kind.name()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    })
    .or_else(|e| match &e {
        // Another node created the schema or table at the same moment.
        StoreError::Backend { code, .. } if code == "23505" || code == "42P07" => Ok(()),
        _ => Err(e),
    })?;
    db.run(false, async |c| {
        let tx = c.transaction().await?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT version FROM {schema}.postvault_schema WHERE kind = $1 FOR UPDATE"
                ),
                &[&kind.name()],
            )
            .await?;
        let v: i64 = row.try_get(0)?;
        for (i, sql) in migrations.iter().enumerate().skip(v.max(0) as usize) {
            tx.batch_execute(sql).await?;
            tx.execute(
                &format!("UPDATE {schema}.postvault_schema SET version = $1 WHERE kind = $2"),
                &[&(i as i64 + 1), &kind.name()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    })
}
