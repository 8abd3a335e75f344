//! End-to-end tests of the facade: collection with minimization,
//! purpose-bound reads, rights, the disclosure gateway, the log and the
//! invariants of ARCHITECTURE.md, over the embedded store; the scenarios
//! written as `<name>_on(&Backend)` run again on PostgreSQL (`pg`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod collect;
mod contract;
mod disclosure;
mod invariants;
mod log;
mod officer;
mod oracles;
mod pg;
mod policy;
mod portal;
mod read;
mod reliability;
mod rights;
mod rollback;
mod stats;

use std::path::Path;
use std::sync::Arc;

use postvault::{CollectOptions, CollectReport, FixedClock, OpenOptions, Vault, VaultError};
use postvault_store::{KeyStore, OpenMode, SqliteKeyStore};
use postvault_store_pg::{PgKeyStore, PgOptions, PgStore};

/// 2026-11-02T00:00:00Z
pub const T0: i64 = 1_793_577_600_000;

pub fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(T0))
}

pub fn opts(clock: &Arc<FixedClock>) -> OpenOptions {
    OpenOptions {
        pack: None,
        clock: clock.clone(),
        ..OpenOptions::default()
    }
}

/// Where a scenario's vault lives: the embedded store in its directory, or
/// a pair of schemas on a PostgreSQL server (the directory is then unused).
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres { url: String, schema: String },
}

impl Backend {
    fn pg_opts(schema: &str, create: bool) -> PgOptions {
        PgOptions {
            schema: schema.to_string(),
            keys_schema: format!("{schema}_keys"),
            create,
            ..PgOptions::default()
        }
    }

    pub fn init(&self, dir: &Path, o: OpenOptions) -> Result<Vault, VaultError> {
        match self {
            Backend::Sqlite => Vault::init(dir, o),
            Backend::Postgres { url, schema } => {
                let po = Backend::pg_opts(schema, true);
                let keys = PgKeyStore::open(url, &po)?;
                let store = PgStore::open(url, &po)?;
                Vault::init_with(Path::new(url), Box::new(store), Box::new(keys), o)
            }
        }
    }

    pub fn open(&self, dir: &Path, o: OpenOptions) -> Result<Vault, VaultError> {
        match self {
            Backend::Sqlite => Vault::open(dir, o),
            Backend::Postgres { url, schema } => {
                let po = Backend::pg_opts(schema, false);
                let keys = PgKeyStore::open(url, &po)?;
                let store = PgStore::open(url, &po)?;
                Vault::open_with(Path::new(url), Box::new(store), Box::new(keys), o)
            }
        }
    }

    /// [`Backend::open`] with the data store's calls going through `faults`.
    pub fn open_faulty(
        &self,
        dir: &Path,
        o: OpenOptions,
        faults: &Arc<postvault_store::testing::Faults>,
    ) -> Vault {
        use postvault_store::testing::Faulty;
        match self {
            Backend::Sqlite => {
                let store =
                    postvault_store::SqliteStore::open(&dir.join("data.db"), OpenMode::Existing)
                        .unwrap();
                Vault::from_parts(dir, Box::new(Faulty::new(store, faults)), self.keys(dir), o)
                    .unwrap()
            }
            Backend::Postgres { url, schema } => {
                let po = Backend::pg_opts(schema, false);
                let store = Faulty::new(PgStore::open(url, &po).unwrap(), faults);
                Vault::open_with(Path::new(url), Box::new(store), self.keys(dir), o).unwrap()
            }
        }
    }

    /// The vault's key store, opened beside it.
    pub fn keys(&self, dir: &Path) -> Box<dyn KeyStore> {
        match self {
            Backend::Sqlite => {
                Box::new(SqliteKeyStore::open(&dir.join("keys.db"), OpenMode::Existing).unwrap())
            }
            Backend::Postgres { url, schema } => {
                Box::new(PgKeyStore::open(url, &Backend::pg_opts(schema, false)).unwrap())
            }
        }
    }
}

/// A vault with principals for the roles the tests use.
pub fn vault(dir: &Path, clock: &Arc<FixedClock>) -> Vault {
    vault_on(&Backend::Sqlite, dir, clock)
}

pub fn vault_on(b: &Backend, dir: &Path, clock: &Arc<FixedClock>) -> Vault {
    let v = b.init(dir, opts(clock)).unwrap();
    for (name, role) in [
        ("ingest", "collector"),
        ("sorting", "delivery"),
        ("care", "account_service"),
        ("promo", "marketing"),
        ("soc", "security_operations"),
        ("officer", "privacy_officer"),
        ("agency", "agency"),
        ("tracking", "tracking_notifications"),
    ] {
        v.add_principal(name, role).unwrap();
    }
    v
}

pub fn collect(v: &Vault, who: &str, ndjson: &str) -> CollectReport {
    let p = v.principal(who).unwrap();
    v.collect(
        &p,
        &mut ndjson.as_bytes(),
        &CollectOptions::default(),
        &mut |_| {},
    )
    .unwrap()
}

/// One NDJSON line.
pub fn line(subject: &str, category: &str, purpose: &str, fields: serde_json::Value) -> String {
    serde_json::json!({"subject": subject, "category": category, "purpose": purpose, "fields": fields})
        .to_string()
}

/// Records of every category a collector may collect, for `subject`, each
/// string field carrying `marker`.
pub fn person(subject: &str, marker: &str) -> String {
    [
        line(subject, "account_identity", "account_service", serde_json::json!({
            "name": format!("Ada {marker}"), "email": format!("{marker}@example.com"),
            "phone": "+15555550123", "username": format!("u{marker}")})),
        line(subject, "address", "delivery", serde_json::json!({
            "street": format!("{marker} Elm St"), "city": "Springfield", "state": "IL", "zip": "62701"})),
        line(subject, "change_of_address", "forwarding", serde_json::json!({
            "coa_id": "COA1", "move_type": "individual", "permanence": "permanent",
            "filing_date": "2026-10-01", "effective_date": "2026-10-15",
            "old_address": format!("{marker} Elm St, Springfield IL"),
            "new_address": format!("{marker} Oak Ave, Chicago IL")})),
        line(subject, "payment_card", "payment_processing", serde_json::json!({
            "card_number": "4111111111111111", "expiry": "12/29",
            "cardholder_name": format!("Ada {marker}"), "amount": "12.50"})),
        line(subject, "online_activity", "account_service", serde_json::json!({
            "ts": "2026-11-02T10:00:00Z", "ip": "203.0.113.77", "user_agent": format!("UA {marker}"), "path": "/track"})),
        line(subject, "online_activity", "security_operations", serde_json::json!({
            "ts": "2026-11-02T10:00:01Z", "ip": "203.0.113.78", "device_id": format!("dev-{marker}")})),
        line(subject, "scan_event", "delivery", serde_json::json!({
            "imb": "00270123456123456789", "piece": "letter", "facility_zip": "60601",
            "op_code": "918", "event": "processed", "scanned_at": "2026-11-02T03:00:00Z"})),
        line(subject, "delivery_location", "delivery", serde_json::json!({
            "tracking_number": "9400100000000000000001", "lat": 41.878_113, "lon": -87.629_799,
            "delivered_at": "2026-11-02T15:00:00Z"})),
        line(subject, "mail_image", "delivery", serde_json::json!({
            "imb": "00270123456123456789", "side": "front", "captured_at": "2026-11-02T03:00:00Z"})),
    ]
    .join("\n")
}

/// Every file of a vault directory with its bytes (database, WAL, key store).
pub fn vault_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Holds the first `erase` call through `faults` open for a second, once
/// the returned receiver has been told it began: requests made meanwhile
/// wait, and are erased together in the next group.
pub fn hold_first_erasure(
    faults: &Arc<postvault_store::testing::Faults>,
) -> std::sync::mpsc::Receiver<()> {
    let (entered, first_entered) = std::sync::mpsc::channel();
    faults.before("erase", move || {
        entered.send(()).unwrap();
        std::thread::sleep(std::time::Duration::from_secs(1));
    });
    first_entered
}

/// The indexes of the leaves `tag_key` finds, through the leaf index;
/// asserts a scan of the whole log finds the very same.
pub fn leaves_found(v: &Vault, tag_key: &str) -> Vec<u64> {
    let indexed: Vec<u64> = v
        .find_leaves(tag_key)
        .unwrap()
        .1
        .iter()
        .map(|f| f.index)
        .collect();
    let scanned: Vec<u64> = v
        .find_leaves_scanned(tag_key)
        .unwrap()
        .1
        .iter()
        .map(|f| f.index)
        .collect();
    assert_eq!(indexed, scanned, "the leaf index and a scan disagree");
    indexed
}
