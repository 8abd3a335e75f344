//! Purpose-bound reads: transforms, consent, retention, tampering.

use postvault::{OpenOptions, Vault, VaultError};

use crate::*;

fn fields_of(
    r: &postvault::ReadResponse,
    category: &str,
) -> Vec<serde_json::Map<String, serde_json::Value>> {
    r.records
        .iter()
        .filter(|x| x.category == category)
        .map(|x| x.fields.to_map().unwrap())
        .collect()
}

#[test]
fn reads_return_only_what_the_purpose_may_see() {
    reads_return_only_what_the_purpose_may_see_on(&Backend::Sqlite);
}

pub fn reads_return_only_what_the_purpose_may_see_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    collect(&v, "ingest", &person("s1", "m"));
    let r = v
        .read(&v.principal("sorting").unwrap(), "s1", "delivery")
        .unwrap();
    let cats: std::collections::BTreeSet<&str> =
        r.records.iter().map(|x| x.category.as_str()).collect();
    assert_eq!(
        cats,
        [
            "address",
            "change_of_address",
            "delivery_location",
            "mail_image",
            "scan_event"
        ]
        .into()
    );
    let withheld: Vec<&str> = r.withheld.iter().map(|w| w.category.as_str()).collect();
    for c in ["account_identity", "payment_card", "online_activity"] {
        assert!(withheld.contains(&c), "{c}");
    }
    assert!(!r.denied());
    // The delivery purpose sees full GPS precision.
    assert_eq!(
        fields_of(&r, "delivery_location")[0]["lat"],
        serde_json::json!(41.878_113)
    );

    // Tracking notifications see delivery points rounded (geo_round outside delivery).
    let r = v
        .read(
            &v.principal("tracking").unwrap(),
            "s1",
            "tracking_notifications",
        )
        .unwrap();
    assert_eq!(
        fields_of(&r, "delivery_location")[0]["lat"],
        serde_json::json!(41.878)
    );
    assert_eq!(
        fields_of(&r, "delivery_location")[0]["lon"],
        serde_json::json!(-87.63)
    );
    // Fields passed on as their sealed text (and those transformed) are
    // written exactly as their map is.
    for rec in &r.records {
        assert_eq!(
            serde_json::to_string(&rec.fields).unwrap(),
            serde_json::to_string(&rec.fields.to_map().unwrap()).unwrap(),
            "{}",
            rec.category
        );
    }
}

#[test]
fn ip_addresses_and_cards_are_minimized() {
    ip_addresses_and_cards_are_minimized_on(&Backend::Sqlite);
}

pub fn ip_addresses_and_cards_are_minimized_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    collect(&v, "ingest", &person("s1", "m"));
    // Account service: both web records, IPs truncated to /24 (the
    // security-log one only on read).
    let r = v
        .read(&v.principal("care").unwrap(), "s1", "account_service")
        .unwrap();
    let ips: Vec<String> = fields_of(&r, "online_activity")
        .iter()
        .map(|f| f["ip"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ips, ["203.0.113.0/24", "203.0.113.0/24"]);
    // Security operations keep the full address of what they collected.
    let r = v
        .read(&v.principal("soc").unwrap(), "s1", "security_operations")
        .unwrap();
    let ips: Vec<String> = fields_of(&r, "online_activity")
        .iter()
        .map(|f| f["ip"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ips, ["203.0.113.0/24", "203.0.113.78"]);
    // Cards are stored as brand and last four, whoever reads.
    let r = v
        .read(&v.principal("officer").unwrap(), "s1", "subject_access")
        .unwrap();
    assert_eq!(
        fields_of(&r, "payment_card")[0]["card_number"],
        serde_json::json!({"brand": "visa", "last4": "1111"})
    );
}

#[test]
fn consent_opens_marketing_for_that_person_only() {
    consent_opens_marketing_for_that_person_only_on(&Backend::Sqlite);
}

pub fn consent_opens_marketing_for_that_person_only_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    collect(&v, "ingest", &person("s1", "m"));
    collect(&v, "ingest", &person("s2", "n"));
    // Consent comes through the rights channel, never with a record.
    let officer = v.principal("officer").unwrap();
    v.set_consent(&officer, "s1", "marketing", true).unwrap();
    let opt_in =
        serde_json::json!({"subject": "s1", "category": "account_identity", "purpose": "marketing",
        "fields": {"name": "Ada", "email": "ada@example.com"}})
        .to_string();
    assert_eq!(collect(&v, "ingest", &opt_in).accepted, 1);
    let promo = v.principal("promo").unwrap();
    let r1 = v.read(&promo, "s1", "marketing").unwrap();
    assert!(!r1.denied());
    // Consent opens the C cells of marketing: identity and address.
    assert!(
        r1.records
            .iter()
            .all(|r| ["account_identity", "address"].contains(&r.category.as_str()))
    );
    assert_eq!(r1.records.len(), 3);
    // Withdrawal takes effect on the next read.
    c.advance(1);
    v.set_consent(&officer, "s1", "marketing", false).unwrap();
    let withdrawn = v.read(&promo, "s1", "marketing").unwrap();
    assert!(withdrawn.denied());
    assert!(withdrawn.records.is_empty());
    c.advance(1);
    v.set_consent(&officer, "s1", "marketing", true).unwrap();
    assert_eq!(v.read(&promo, "s1", "marketing").unwrap().records.len(), 3);
    // Only a role answering the person records consent.
    assert!(v.set_consent(&promo, "s2", "marketing", true).is_err());
    let r2 = v.read(&promo, "s2", "marketing").unwrap();
    assert!(r2.denied());
    assert!(r2.records.is_empty());
    assert!(
        r2.withheld
            .iter()
            .any(|w| w.reasons.iter().any(|x| x.policy == "HEW3-consent"))
    );
}

#[test]
fn expired_records_are_never_returned() {
    expired_records_are_never_returned_on(&Backend::Sqlite);
}

pub fn expired_records_are_never_returned_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    collect(&v, "ingest", &person("s1", "m"));
    let sorting = v.principal("sorting").unwrap();
    let before = v.read(&sorting, "s1", "delivery").unwrap();
    assert_eq!(fields_of(&before, "mail_image").len(), 1);
    // Mail images are kept 7 days (R23); scans 120.
    c.advance(7 * 86_400_000 + 1);
    let after = v.read(&sorting, "s1", "delivery").unwrap();
    assert!(fields_of(&after, "mail_image").is_empty());
    assert_eq!(fields_of(&after, "scan_event").len(), 1);
    assert_eq!(after.records.len(), before.records.len() - 1);
}

#[test]
fn a_tampered_record_fails_to_open_rather_than_lie() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    collect(&v, "ingest", &person("s1", "m"));
    drop(v);
    // Relabel a record's purpose in the store: the associated data no longer matches.
    let conn = rusqlite::Connection::open(dir.path().join("data.db")).unwrap();
    let n = conn
        .execute(
            "UPDATE records SET purpose = 'delivery' WHERE category = 'payment_card'",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(conn);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let e = v
        .read(&v.principal("officer").unwrap(), "s1", "subject_access")
        .unwrap_err();
    assert!(matches!(e, VaultError::Crypto(_)), "{e}");
}

#[test]
fn unknown_principal_purpose_and_missing_keys_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    assert!(matches!(
        v.principal("mallory"),
        Err(VaultError::UnknownPrincipal(_))
    ));
    let p = v.principal("sorting").unwrap();
    assert!(matches!(
        v.read(&p, "s", "dragnet"),
        Err(VaultError::UnknownPurpose(_))
    ));
    assert!(matches!(
        v.add_principal("x", "overlord"),
        Err(VaultError::UnknownRole(_))
    ));
    assert!(matches!(
        v.add_principal("bad name", "delivery"),
        Err(VaultError::Invalid { .. })
    ));
    assert_eq!(
        v.add_principal("sorting", "delivery").unwrap_err().code(),
        "principal_exists"
    );
    drop(v);
    assert!(matches!(
        Vault::init(dir.path(), OpenOptions::default()),
        Err(VaultError::AlreadyInitialized(_))
    ));

    // A corrupt key store.
    let keys = dir.path().join("keys.db");
    let saved = std::fs::read(&keys).unwrap();
    std::fs::write(
        &keys,
        b"garbage garbage garbage garbage garbage garbage garbage garbage garbage garbage garbage",
    )
    .unwrap();
    let e = Vault::open(dir.path(), OpenOptions::default()).unwrap_err();
    assert_eq!(e.code(), "not_a_store", "{e}");
    // A missing key store.
    std::fs::remove_file(&keys).unwrap();
    let e = Vault::open(dir.path(), OpenOptions::default()).unwrap_err();
    assert!(matches!(e, VaultError::KeysMissing(_)), "{e}");
    assert!(e.to_string().contains("restore it"), "{e}");
    // Another vault's key store.
    let other = tempfile::tempdir().unwrap();
    drop(Vault::init(other.path(), OpenOptions::default()).unwrap());
    std::fs::copy(other.path().join("keys.db"), &keys).unwrap();
    let e = Vault::open(dir.path(), OpenOptions::default()).unwrap_err();
    assert!(matches!(e, VaultError::KeysMismatch(_)), "{e}");
    std::fs::write(&keys, saved).unwrap();
    assert!(Vault::open(dir.path(), OpenOptions::default()).is_ok());
    // No vault at all.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Vault::open(empty.path(), OpenOptions::default()),
        Err(VaultError::NotInitialized(_))
    ));
}

/// A read judged on a snapshot taken outside the log's lock is accounted
/// for only if nothing changed before its leaf: consent withdrawn between
/// the snapshot and the leaf is honoured (the read is made again, with its
/// leaf), so no data leaves after the withdrawal's leaf.
#[test]
fn a_consent_withdrawn_between_a_reads_snapshot_and_its_leaf_is_honoured() {
    let b = Backend::Sqlite;
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    {
        let v = vault_on(&b, dir.path(), &c);
        collect(&v, "ingest", &person("s1", "m"));
        let officer = v.principal("officer").unwrap();
        v.set_consent(&officer, "s1", "marketing", true).unwrap();
    }
    let faults = postvault_store::testing::Faults::new();
    faults.read_unlogged_always();
    let v = b.open_faulty(dir.path(), opts(&c), &faults);
    let officer = v.principal("officer").unwrap();
    let promo = v.principal("promo").unwrap();
    assert_eq!(v.read(&promo, "s1", "marketing").unwrap().records.len(), 2);
    // The read below goes outside the lock first.
    let outside = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = outside.clone();
    faults.before("read_unlogged", move || {
        seen.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    // The next read's leaf waits (up to a minute) until consent is withdrawn.
    let (entered, reading) = std::sync::mpsc::channel();
    let (withdrawn, go) = std::sync::mpsc::channel::<()>();
    faults.before("read_scoped", move || {
        entered.send(()).unwrap();
        let _ = go.recv_timeout(std::time::Duration::from_secs(60));
    });
    let (read, withdrawal) = std::thread::scope(|s| {
        let read = s.spawn(|| v.read(&promo, "s1", "marketing").unwrap());
        reading.recv().unwrap();
        c.advance(1);
        let at = v.set_consent(&officer, "s1", "marketing", false).unwrap();
        withdrawn.send(()).unwrap();
        (read.join().unwrap(), at)
    });
    assert!(outside.load(std::sync::atomic::Ordering::SeqCst));
    assert!(read.denied(), "{read:?}");
    assert!(read.records.is_empty());
    assert!(read.log_index > withdrawal);
    let n = v.log_catch_up().unwrap();
    let leaf = v
        .log_entries(read.log_index, n)
        .unwrap()
        .remove(0)
        .event
        .unwrap();
    assert_eq!((leaf.decision.as_str(), leaf.count), ("deny", 0));
}

/// A vault that holds a person's keys in its cache reads them after another
/// vault on the same store (another process) erased the person and collected
/// them again: the read checks its cache against the erasure generation of
/// its own snapshot, so it opens the new records with the new keys, and its
/// leaf carries the new tag the person's report finds. The other vault acts
/// before the read begins; after the read looked its keys up, before its
/// snapshot (in the log's lock, or outside it); or between a snapshot
/// outside the lock and the leaf, so the read is made again under the lock.
#[test]
fn a_read_with_cached_keys_follows_another_vaults_erasure_and_new_collection() {
    for (outside_the_lock, during) in [
        (false, None),
        (true, None),
        (false, Some("read_scoped")),
        (true, Some("read_unlogged")),
        (true, Some("read_scoped")),
    ] {
        let case = format!("outside the lock: {outside_the_lock}, during: {during:?}");
        let b = Backend::Sqlite;
        let dir = tempfile::tempdir().unwrap();
        let c = clock();
        drop(vault_on(&b, dir.path(), &c));
        let faults = postvault_store::testing::Faults::new();
        if outside_the_lock {
            faults.read_unlogged_always();
        }
        let first = b.open_faulty(dir.path(), opts(&c), &faults);
        let officer = first.principal("officer").unwrap();
        collect(&first, "ingest", &person("s1", "old"));
        let street = |r: &postvault::ReadResponse| {
            r.records
                .iter()
                .filter(|x| x.category == "address")
                .map(|x| x.fields.to_map().unwrap()["street"].clone())
                .collect::<Vec<_>>()
        };
        // Its keys are cached now.
        let before = first.read(&officer, "s1", "subject_access").unwrap();
        assert_eq!(street(&before), ["old Elm St"], "{case}");

        let other = {
            let (dir, c) = (dir.path().to_path_buf(), c.clone());
            move || {
                let second = Vault::open(&dir, opts(&c)).unwrap();
                let officer = second.principal("officer").unwrap();
                second
                    .erase(&officer, &["s1".to_string()], &mut |_| {})
                    .unwrap();
                c.advance(1);
                collect(&second, "ingest", &person("s1", "new"));
            }
        };
        match during {
            None => other(),
            Some(method) => {
                faults.before(method, other);
            }
        }
        let after = first.read(&officer, "s1", "subject_access").unwrap();
        assert_eq!(street(&after), ["new Elm St"], "{case}");
        let third = Vault::open(dir.path(), opts(&c)).unwrap();
        let report = third
            .subject_report(&third.principal("officer").unwrap(), "s1")
            .unwrap();
        assert!(
            report.log.iter().any(|l| l.index == after.log_index),
            "{case}: the read's leaf is tagged for the person as they are now"
        );
        assert!(
            !report.log.iter().any(|l| l.index == before.log_index),
            "{case}"
        );
        // The generation came with the rows: no read of its own.
        let switch = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        faults.fail_while(&switch, &["erasure_gen"]);
        assert_eq!(
            street(&first.read(&officer, "s1", "subject_access").unwrap()),
            ["new Elm St"],
            "{case}"
        );
    }
}

/// A read whose key look-up fails after another vault's erasure (the key
/// store errs) answers that error, and its leaf says the keys were
/// unavailable, claiming no records: not that keys are lost. Made again
/// under the lock, a read whose first look failed can still succeed.
#[test]
fn a_read_whose_key_look_up_fails_says_so_and_claims_nothing() {
    use postvault_store::testing::Faulty;
    for outside_the_lock in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let c = clock();
        drop(vault_on(&Backend::Sqlite, dir.path(), &c));
        let faults = postvault_store::testing::Faults::new();
        if outside_the_lock {
            faults.read_unlogged_always();
        }
        let keys = postvault_store::testing::Faults::new();
        let open = || {
            let store = postvault_store::SqliteStore::open(
                &dir.path().join("data.db"),
                postvault_store::OpenMode::Existing,
            )
            .unwrap();
            let key_store = postvault_store::SqliteKeyStore::open(
                &dir.path().join("keys.db"),
                postvault_store::OpenMode::Existing,
            )
            .unwrap();
            Vault::from_parts(
                dir.path(),
                Box::new(Faulty::new(store, &faults)),
                Box::new(Faulty::new(key_store, &keys)),
                opts(&c),
            )
            .unwrap()
        };
        let first = open();
        let officer = first.principal("officer").unwrap();
        collect(&first, "ingest", &person("s1", "old"));
        first.read(&officer, "s1", "subject_access").unwrap();
        // Another vault erases and collects the person again; then the key
        // store fails while the read looks their keys up again.
        let second = Vault::open(dir.path(), opts(&c)).unwrap();
        let officer2 = second.principal("officer").unwrap();
        second
            .erase(&officer2, &["s1".to_string()], &mut |_| {})
            .unwrap();
        c.advance(1);
        collect(&second, "ingest", &person("s1", "new"));
        let switch = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        keys.fail_while(&switch, &["subject_keys"]);
        let size = first.log_catch_up().unwrap();
        let e = first.read(&officer, "s1", "subject_access").unwrap_err();
        assert!(
            matches!(e, VaultError::Store(_)),
            "{outside_the_lock}: {e:?}"
        );
        let n = first.log_catch_up().unwrap();
        let leaf = first
            .log_entries(size, n)
            .unwrap()
            .pop()
            .unwrap()
            .event
            .unwrap();
        assert_eq!(
            (leaf.action.as_str(), leaf.count, leaf.categories.len()),
            ("read", 0, 0),
            "{outside_the_lock}"
        );
        assert!(
            leaf.reasons.iter().any(|r| r == "keys_unavailable")
                && !leaf.reasons.iter().any(|r| r == "keys_missing"),
            "{outside_the_lock}: {:?}",
            leaf.reasons
        );
        // The store answers again: so does the read.
        switch.store(false, std::sync::atomic::Ordering::SeqCst);
        let r = first.read(&officer, "s1", "subject_access").unwrap();
        assert!(!r.records.is_empty());

        // Outside the lock, a first look that fails is made again under it.
        if outside_the_lock {
            let third = Vault::open(dir.path(), opts(&c)).unwrap();
            third
                .erase(
                    &third.principal("officer").unwrap(),
                    &["s1".to_string()],
                    &mut |_| {},
                )
                .unwrap();
            c.advance(1);
            collect(&third, "ingest", &person("s1", "newer"));
            switch.store(true, std::sync::atomic::Ordering::SeqCst);
            let off = switch.clone();
            faults.before("read_scoped", move || {
                off.store(false, std::sync::atomic::Ordering::SeqCst);
            });
            let r = first.read(&officer, "s1", "subject_access").unwrap();
            assert!(r.records.iter().any(|x| x.category == "address"));
        }
    }
}
