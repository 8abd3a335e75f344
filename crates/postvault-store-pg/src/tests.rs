#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use postvault_store::{
    LogStore, PrincipalStore, RecordRow, RecordStore, StoreError, WriteBatch, conformance,
};

use super::*;

fn cluster() -> TempCluster {
    TempCluster::start(ClusterOptions::default())
        .unwrap_or_else(|e| panic!("the PostgreSQL tests need a server: {e}"))
}

fn opts(schema: &str) -> PgOptions {
    PgOptions {
        schema: schema.into(),
        keys_schema: format!("{schema}_keys"),
        create: true,
        ..PgOptions::default()
    }
}

fn record(n: u32) -> RecordRow {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    RecordRow {
        id,
        subject: [(n % 7) as u8; 16],
        category: "address".into(),
        purpose: "delivery".into(),
        source: "svc".into(),
        collected_at: i64::from(n),
        expires_at: 9_000,
        key_id: 0,
        sealed: vec![1, 2, 3],
        superseded_by: None,
    }
}

#[test]
fn postgres_passes_the_conformance_suite() {
    let c = cluster();
    let url = c.url("postgres");
    let n = AtomicUsize::new(0);
    for isolation in [Isolation::ReadCommitted, Isolation::Serializable] {
        conformance::run_all(&|| {
            let mut o = opts(&format!("d{}", n.fetch_add(1, Ordering::SeqCst)));
            o.isolation = isolation;
            Box::new(PgStore::open(&url, &o).unwrap())
        });
    }
    conformance::run_all_keys(&|| {
        let o = opts(&format!("k{}", n.fetch_add(1, Ordering::SeqCst)));
        Box::new(PgKeyStore::open(&url, &o).unwrap())
    });
}

#[test]
fn schemas_are_versioned_and_checked() {
    let c = cluster();
    let url = c.url("postgres");
    let mut o = opts("v");
    o.create = false;
    let e = PgStore::open(&url, &o).unwrap_err();
    assert!(matches!(e, StoreError::NotAStore(..)), "{e}");
    o.create = true;
    let s = PgStore::open(&url, &o).unwrap();
    conformance::write_then_read_accounts_each(&s);
    drop(s);
    // Reopened without create: the same data.
    o.create = false;
    let s = PgStore::open(&url, &o).unwrap();
    assert_eq!((s.record_count().unwrap(), s.log_size().unwrap()), (3, 2));
    // A key store is not a data store, and the reverse.
    let mut k = opts("kk");
    k.keys_schema = "v".into();
    let e = PgKeyStore::open(&url, &k).unwrap_err();
    assert!(e.to_string().contains("not a postvault key store"), "{e}");
    // A newer schema is refused.
    s.danger_execute("UPDATE postvault_schema SET version = version + 1")
        .unwrap();
    drop(s);
    let e = PgStore::open(&url, &o).unwrap_err();
    assert!(matches!(e, StoreError::NewerSchema { .. }), "{e}");
    // Tables of something else are not taken over.
    let s = PgStore::open(&url, &opts("w")).unwrap();
    s.danger_execute("CREATE SCHEMA other; CREATE TABLE other.t (x int)")
        .unwrap();
    let e = PgStore::open(&url, &opts("other")).unwrap_err();
    assert!(e.to_string().contains("not a postvault data store"), "{e}");
}

#[test]
fn a_batch_written_twice_is_stored_once() {
    let c = cluster();
    let s = PgStore::open(&c.url("postgres"), &opts("b")).unwrap();
    let batch = WriteBatch {
        records: (0..50).map(record).collect(),
        leaves: 2,
        ..WriteBatch::default()
    };
    let first = s
        .write(&batch, &mut |i, _| i.to_be_bytes().to_vec().into())
        .unwrap();
    // The same batch again (a retry after an ambiguous commit): nothing new.
    let again = s
        .write(&batch, &mut |i, _| i.to_be_bytes().to_vec().into())
        .unwrap();
    assert_eq!((first, again), (0, 0));
    assert_eq!(s.record_count().unwrap(), 50);
    assert_eq!(s.log_size().unwrap(), 2);
    // A different batch reusing the id is refused, not merged.
    let other = WriteBatch {
        records: vec![record(0)],
        leaves: 1,
        ..WriteBatch::default()
    };
    assert!(matches!(
        s.write(&other, &mut |_, _| vec![].into()),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn writers_on_several_pools_keep_one_dense_log() {
    let c = cluster();
    let url = c.url("postgres");
    drop(PgStore::open(&url, &opts("m")).unwrap());
    // Four stores stand for four nodes; each writes and reads concurrently.
    let stores: Vec<Arc<PgStore>> = (0..4)
        .map(|_| Arc::new(PgStore::open(&url, &opts("m")).unwrap()))
        .collect();
    let handles: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(node, s)| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for b in 0..25u32 {
                    let base = (node as u32) * 1_000_000 + b * 10;
                    let batch = WriteBatch {
                        records: (base..base + 10).map(record).collect(),
                        leaves: 1,
                        ..WriteBatch::default()
                    };
                    let idx = s
                        .write(&batch, &mut |i, _| format!("w{i}").into_bytes().into())
                        .unwrap();
                    got.push(idx);
                    let (_, idx) = s
                        .read_accounted(&[1; 16], &mut |_, i| format!("r{i}").into_bytes().into())
                        .unwrap();
                    got.push(idx);
                }
                got
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..200).collect::<Vec<u64>>(), "dense, none twice");
    let s = &stores[0];
    assert_eq!(s.log_size().unwrap(), 200);
    assert_eq!(s.record_count().unwrap(), 1_000);
    for (i, l) in s.leaves(0, 200).unwrap().iter().enumerate() {
        let l = String::from_utf8(l.clone()).unwrap();
        assert_eq!(&l[1..], i.to_string(), "leaf {i} was built for its index");
    }
}

#[test]
fn a_panicking_callback_rolls_back_and_the_pool_stays_usable() {
    let c = cluster();
    let mut o = opts("p");
    o.pool_size = 1;
    let s = PgStore::open(&c.url("postgres"), &o).unwrap();
    for _ in 0..3 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.read_accounted(&[1; 16], &mut |_, _| panic!("injected"))
        }));
        assert!(r.is_err());
    }
    assert_eq!(s.log_size().unwrap(), 0);
    let (_, idx) = s
        .read_accounted(&[1; 16], &mut |_, _| vec![1].into())
        .unwrap();
    assert_eq!(idx, 0);
}

#[test]
fn errors_name_the_sqlstate_and_urls_hide_passwords() {
    assert_eq!(
        redact("postgres://u:secret@h:5432/db"),
        "postgres://u:***@h:5432/db"
    );
    assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    assert_eq!(
        redact("postgres://u@h/db?sslmode=disable&password=secret&x=1"),
        "postgres://u@h/db?sslmode=disable&password=***&x=1"
    );
    let e = PgStore::open("postgres://u:secret@127.0.0.1:1/db", &opts("x")).unwrap_err();
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[test]
fn serializable_transactions_are_retried_and_keep_one_dense_log() {
    let c = cluster();
    let url = c.url("postgres");
    let mut o = opts("s");
    o.isolation = Isolation::Serializable;
    drop(PgStore::open(&url, &o).unwrap());
    let stores: Vec<Arc<PgStore>> = (0..3)
        .map(|_| Arc::new(PgStore::open(&url, &o).unwrap()))
        .collect();
    let handles: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(node, s)| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..30u32)
                    .map(|b| {
                        let base = (node as u32) * 1_000_000 + b * 4;
                        let batch = WriteBatch {
                            records: (base..base + 4).map(record).collect(),
                            leaves: 1,
                            ..WriteBatch::default()
                        };
                        s.write(&batch, &mut |i, _| i.to_be_bytes().to_vec().into())
                            .unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..90).collect::<Vec<u64>>());
    assert_eq!(stores[0].record_count().unwrap(), 360);
    let retries: u64 = stores.iter().map(|s| s.retries()).sum();
    assert!(
        retries > 0,
        "concurrent serializable writers must have been retried"
    );
}

#[test]
fn concurrent_reads_share_commits_and_each_returns_after_its_leaf_is_durable() {
    let c = cluster();
    let url = c.url("postgres");
    let s = Arc::new(PgStore::open(&url, &opts("g")).unwrap());
    s.write(
        &WriteBatch {
            records: (0..7).map(record).collect(),
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut |_, _| b"batch".to_vec().into(),
    )
    .unwrap();
    // Another node's view: what it sees is committed.
    let other = Arc::new(PgStore::open(&url, &opts("g")).unwrap());
    let readers: Vec<_> = (0..8u8)
        .map(|t| {
            let (s, other) = (s.clone(), other.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..40 {
                    let (data, idx) = s
                        .read_accounted(&[t % 7; 16], &mut |d, i| {
                            format!("read {} at {i}", d.records.len())
                                .into_bytes()
                                .into()
                        })
                        .unwrap();
                    assert_eq!(data.records.len(), 1);
                    let seen = other.leaves(idx, idx + 1).unwrap();
                    assert_eq!(seen, vec![format!("read 1 at {idx}").into_bytes()]);
                    got.push(idx);
                }
                got
            })
        })
        .collect();
    let mut all: Vec<u64> = readers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=320).collect::<Vec<u64>>());
    assert_eq!(s.log_size().unwrap(), 321);
    let groups = s.read_groups();
    assert!(groups < 320, "{groups} commits for 320 concurrent reads");
}

/// A CA, and a server certificate for `names` signed by it (PEM).
fn tls_pki(names: &[&str]) -> (String, ClusterTls) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (
        ca.pem(),
        ClusterTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
    )
}

/// Whether the session at `url` (with its TLS parameters) is encrypted,
/// as the server sees it.
fn session_is_tls(url: &str) -> Result<bool, String> {
    let c = crate::tls::connect_params(url).map_err(|e| e.to_string())?;
    let mut cfg: tokio_postgres::Config = c.url.parse().unwrap();
    cfg.ssl_mode(c.ssl_mode);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = cfg.connect(c.tls).await.map_err(|e| format!("{e:?}"))?;
        let conn = tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        drop(client);
        let _ = conn.await;
        Ok(row.get::<_, bool>(0))
    })
}

#[test]
fn tls_to_postgres_honours_sslmode_and_verifies_the_certificate() {
    let (ca, tls) = tls_pki(&["127.0.0.1", "localhost"]);
    let c = TempCluster::start(ClusterOptions {
        tls: Some(tls),
        ..ClusterOptions::default()
    })
    .unwrap_or_else(|e| panic!("the PostgreSQL tests need a server: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let (other_ca, _) = tls_pki(&["127.0.0.1"]);
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_file, &other_ca).unwrap();
    let base = c.url("postgres");
    let with = |q: &str| format!("{base}?{q}");
    let root = format!("sslrootcert={}", ca_file.display());
    let wrong = format!("sslrootcert={}", other_file.display());

    // The server sees an encrypted session in every mode but `disable`.
    assert_eq!(
        session_is_tls(&with(&format!("sslmode=verify-full&{root}"))),
        Ok(true)
    );
    assert_eq!(
        session_is_tls(&with(&format!("sslmode=verify-ca&{root}"))),
        Ok(true)
    );
    assert_eq!(session_is_tls(&with("sslmode=require")), Ok(true));
    assert_eq!(session_is_tls(&base), Ok(true), "prefer is the default");
    assert_eq!(session_is_tls(&with("sslmode=disable")), Ok(false));

    // A store opens with verify-full and works.
    let url = with(&format!("sslmode=verify-full&{root}"));
    let s = PgStore::open(&url, &opts("tls_a")).unwrap();
    assert_eq!(s.log_size().unwrap(), 0);
    PgKeyStore::open(&url, &opts("tls_a")).unwrap();

    // A CA that did not sign the server's certificate: refused, whether
    // the chain is checked for verify-full, verify-ca, or require with a
    // root file.
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = with(&format!("sslmode={mode}&{wrong}"));
        let e = session_is_tls(&url).unwrap_err();
        assert!(e.to_lowercase().contains("certificate"), "{mode}: {e}");
        let e = PgStore::open(&url, &opts("tls_b")).unwrap_err();
        assert!(matches!(e, StoreError::Backend { .. }), "{mode}: {e}");
    }
    // Bad parameters are refused before connecting.
    for (q, says) in [
        ("sslmode=allow", "sslmode=allow"),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
        ("sslcert=/tmp/c.pem", "not supported"),
    ] {
        let e = PgStore::open(&with(q), &opts("tls_c")).unwrap_err();
        assert!(e.to_string().contains(says), "{q}: {e}");
    }
}

#[test]
fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let (ca, tls) = tls_pki(&["db.example.invalid"]);
    let c = TempCluster::start(ClusterOptions {
        tls: Some(tls),
        ..ClusterOptions::default()
    })
    .unwrap_or_else(|e| panic!("the PostgreSQL tests need a server: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let base = c.url("postgres");
    let root = format!("sslrootcert={}", ca_file.display());
    assert_eq!(
        session_is_tls(&format!("{base}?sslmode=verify-ca&{root}")),
        Ok(true)
    );
    let e = session_is_tls(&format!("{base}?sslmode=verify-full&{root}")).unwrap_err();
    assert!(e.contains("NotValidForName"), "{e}");
}

/// A server without TLS: `prefer` falls back to plain, `require` refuses.
#[test]
fn without_tls_on_the_server_prefer_is_plain_and_require_refuses() {
    let c = cluster();
    let base = c.url("postgres");
    assert_eq!(session_is_tls(&base), Ok(false));
    assert!(session_is_tls(&format!("{base}?sslmode=require")).is_err());
}

/// The stores read the durability settings back from the server and refuse
/// one that could lose an acknowledged commit: a session forced to
/// `synchronous_commit=off` is overridden by the store's own setting, and a
/// server running without fsync is refused unless it declares itself a
/// throwaway cluster.
#[test]
fn stores_refuse_a_server_that_could_lose_commits() {
    let durable = TempCluster::start(ClusterOptions {
        durable: true,
        ..ClusterOptions::default()
    })
    .unwrap_or_else(|e| panic!("the PostgreSQL tests need a server: {e}"));
    // Asking for synchronous_commit=off in the URL changes nothing: the
    // store sets it on after, and reads it back.
    let url = format!(
        "{}?options=-c%20synchronous_commit%3Doff",
        durable.url("postgres")
    );
    let s = PgStore::open(&url, &opts("dur")).unwrap();
    let k = PgKeyStore::open(&url, &opts("dur")).unwrap();
    for d in [s.durability().unwrap(), k.durability().unwrap()] {
        assert_eq!(
            d,
            vec![
                ("synchronous_commit".to_string(), "on".to_string()),
                ("fsync".into(), "on".into()),
                ("full_page_writes".into(), "on".into()),
            ]
        );
    }
    drop((s, k));
    // The same server without full-page writes (a torn page after a crash
    // could lose a commit) is refused; the server itself was started with
    // fsync on its command line, which a setting cannot change.
    psql(&durable, "ALTER SYSTEM SET full_page_writes = off");
    psql(&durable, "SELECT pg_reload_conf()");
    std::thread::sleep(std::time::Duration::from_millis(300));
    match PgStore::open(&durable.url("postgres"), &opts("dur")) {
        Err(StoreError::NotDurable { why, .. }) => {
            assert!(why.contains("full_page_writes=off"), "{why}")
        }
        other => panic!("expected NotDurable, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        PgKeyStore::open(&durable.url("postgres"), &opts("dur")),
        Err(StoreError::NotDurable { .. })
    ));
    // A throwaway cluster says it runs without fsync, and is let through.
    let fast = cluster();
    PgStore::open(&fast.url("postgres"), &opts("fast")).unwrap();
}

fn psql(c: &TempCluster, sql: &str) {
    let st = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qc",
            sql,
        ])
        .arg("-p")
        .arg(c.port().to_string())
        .status()
        .unwrap();
    assert!(st.success(), "psql {sql}");
}

/// A token is found through the unique index on its hash: with sequential
/// scans priced out, the planner uses `principals_token`; the index is unique.
#[test]
fn tokens_are_found_by_their_unique_index() {
    let c = cluster();
    let url = c.url("postgres");
    let s = PgStore::open(&url, &opts("tok")).unwrap();
    for i in 0..200u8 {
        s.add_principal(&postvault_store::PrincipalRow {
            name: format!("p{i}"),
            role: "delivery".into(),
            token_hash: vec![i; 32],
            created_at: 0,
            revoked_at: None,
        })
        .unwrap();
    }
    assert_eq!(
        s.principal_by_token(&[42; 32]).unwrap().unwrap().name,
        "p42"
    );
    let (plan, unique) = s
        .db
        .run(false, async |c| {
            c.batch_execute("SET enable_seqscan = off").await?;
            let plan: Vec<String> = c
                .query(
                    "EXPLAIN SELECT name FROM principals WHERE token_hash = $1 AND revoked_at IS NULL",
                    &[&vec![1u8; 32]],
                )
                .await?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            c.batch_execute("RESET enable_seqscan").await?;
            let unique: bool = c
                .query_one(
                    "SELECT indisunique FROM pg_index WHERE indexrelid = 'principals_token'::regclass",
                    &[],
                )
                .await?
                .get(0);
            Ok((plan, unique))
        })
        .unwrap();
    assert!(
        plan.iter().any(|l| l.contains("principals_token")),
        "{plan:?}"
    );
    assert!(unique);
}

/// The statistics scan pages through `records_subject` (subject, category,
/// id) in its order: no sort of the subject range, with the plan made for
/// the values given and with the generic one a prepared statement settles
/// on (the category a parameter), with and without the consent filter.
#[test]
fn the_statistics_scan_takes_the_index_order_without_a_sort() {
    let c = cluster();
    let url = c.url("postgres");
    let s = PgStore::open(&url, &opts("scanplan")).unwrap();
    let plans =
        s.db.run(false, async |c| {
            c.batch_execute(
                "INSERT INTO records (id, subject, category, purpose, source,
                     collected_at, expires_at, key_id, sealed)
                 SELECT decode(md5(n::text), 'hex'), decode(md5((n % 5000)::text), 'hex'),
                        (ARRAY['scan_event', 'address', 'delivery_location'])[n % 3 + 1],
                        'delivery', 'src', n, 9000000000000, 0, '\\x00'::bytea
                 FROM generate_series(1, 30000) AS n;
                 INSERT INTO consents (subject, purpose, granted, at)
                 SELECT decode(md5(n::text), 'hex'), 'marketing', n % 5 <> 0, n
                 FROM generate_series(0, 2999) AS n;
                 ANALYZE records; ANALYZE purge; ANALYZE consents;",
            )
            .await?;
            let mut plans = Vec::new();
            for consented in [false, true] {
                let name = format!("scan_{consented}");
                c.batch_execute(&format!(
                    "PREPARE {name} AS {}",
                    crate::store::scan_sql(consented)
                ))
                .await?;
                let args = if consented {
                    "'scan_event', '\\x'::bytea, '\\x'::bytea, 0, 1024, '\\x80'::bytea, 'marketing'"
                } else {
                    "'scan_event', '\\x'::bytea, '\\x'::bytea, 0, 1024, '\\x80'::bytea"
                };
                for mode in ["force_custom_plan", "force_generic_plan"] {
                    c.batch_execute(&format!("SET plan_cache_mode = {mode}"))
                        .await?;
                    let plan: Vec<String> = c
                        .query(&format!("EXPLAIN EXECUTE {name}({args})"), &[])
                        .await?
                        .iter()
                        .map(|r| r.get::<_, String>(0))
                        .collect();
                    plans.push((format!("{name} {mode}"), plan.join("\n")));
                }
                c.batch_execute(&format!("DEALLOCATE {name}; RESET plan_cache_mode"))
                    .await?;
            }
            Ok(plans)
        })
        .unwrap();
    for (what, plan) in plans {
        assert!(
            plan.contains("Index Scan using records_subject on records"),
            "{what}:\n{plan}"
        );
        // The records are not sorted (a sort of the small purge or consent
        // side of an anti or semi join is no matter).
        assert!(
            !plan.contains("Sort Key: records.") && !plan.contains("Incremental Sort"),
            "{what}:\n{plan}"
        );
        eprintln!("{what}:\n{plan}");
    }
}
