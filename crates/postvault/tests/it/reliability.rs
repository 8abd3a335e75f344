//! Failing loudly, never twice: records whose keys are missing are an error
//! (the reliability campaign's three ways to lose keys), collection under a
//! batch id is idempotent, destruction is written ahead and finished on
//! open, `init` is atomic, backups are consistent, and the master key can
//! live outside the key store.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use postvault::{CollectOptions, Event, ExternalKey, OpenOptions, Vault, VaultError};
use postvault_store::testing::{Faults, Faulty};
use postvault_store::{KeyStore, OpenMode, SqliteKeyStore, SqliteStore, SubjectKeys};

use super::disclosure::{cover_with_a_record, gateway_vault_on};
use super::*;

const DAY: i64 = 86_400_000;

fn events(v: &Vault) -> Vec<Event> {
    let n = v.store().log_size().unwrap();
    v.log_entries(0, n)
        .unwrap()
        .into_iter()
        .map(|e| e.event.unwrap())
        .collect()
}

/// A gateway vault with `fbi`'s court order for cust-a (addresses and
/// changes of address), approved by `officer`.
fn approved_court_order(dir: &Path, c: &Arc<FixedClock>) -> (Vault, postvault::StepAnswer) {
    let v = gateway_vault_on(&Backend::Sqlite, dir, c);
    let a = super::disclosure::submit(&v, "fbi", &super::disclosure::court_order());
    assert!(!super::disclosure::approve(&v, "officer", &a.id).refused());
    (v, a)
}

/// The postal pack with its `[kind.court_order]` block made `edit` of it.
fn postal_with_court_order(edit: impl Fn(&str) -> String) -> postvault::PackSources {
    let mut pack = postvault::PackSources::postal();
    let rules = pack.disclosure.take().unwrap();
    let start = rules.find("[kind.court_order]").unwrap();
    let end = start + rules[start..].find("\n\n").unwrap();
    pack.disclosure = Some(format!(
        "{}{}{}",
        &rules[..start],
        edit(&rules[start..end]),
        &rules[end..]
    ));
    pack
}

fn copy_files(from: &Path, to: &Path, names: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for n in names {
        let p = from.join(n);
        if p.exists() {
            std::fs::copy(&p, to.join(n)).unwrap();
        }
    }
}

fn keys_missing(r: Result<postvault::ReadResponse, VaultError>) -> u64 {
    match r {
        Err(VaultError::RecordKeysMissing { records }) => records,
        other => panic!("expected keys_missing, got {other:?}"),
    }
}

/// The campaign's three ways a key store loses keys while the data store
/// keeps the rows. Each read answers an error naming the count (never
/// `allow` with no records), and `check` counts the records without keys.
#[test]
fn a_record_whose_key_is_missing_is_an_error_never_an_empty_answer() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    drop(vault(dir.path(), &c));
    // Running: the people's keys are still in keys.db-wal.
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let r = collect(&v, "ingest", &person("cust-w", "pvWal"));
    assert_eq!(r.accepted, 9);
    assert!(
        std::fs::metadata(dir.path().join("keys.db-wal"))
            .unwrap()
            .len()
            > 0,
        "the keys are in the key store's WAL"
    );

    // 1. A file copy of the running vault that took keys.db but not its WAL.
    let copy = tempfile::tempdir().unwrap();
    copy_files(
        dir.path(),
        copy.path(),
        &["data.db", "data.db-wal", "keys.db"],
    );
    // 2. A copy with the key WAL emptied, as a crash can leave it.
    let emptied = tempfile::tempdir().unwrap();
    copy_files(
        dir.path(),
        emptied.path(),
        &["data.db", "data.db-wal", "keys.db", "keys.db-wal"],
    );
    std::fs::write(emptied.path().join("keys.db-wal"), b"").unwrap();
    for d in [copy.path(), emptied.path()] {
        let v = Vault::open(d, opts(&c)).unwrap();
        let sorting = v.principal("sorting").unwrap();
        // What delivery may see of the person: five records.
        assert_eq!(keys_missing(v.read(&sorting, "cust-w", "delivery")), 5);
        let officer = v.principal("officer").unwrap();
        assert_eq!(
            keys_missing(v.read(&officer, "cust-w", "subject_access")),
            9
        );
        // The read's leaf says so, and carries no count of records.
        let last = events(&v).pop().unwrap();
        assert_eq!((last.action.as_str(), last.count), ("read", 0));
        assert!(last.reasons.contains(&"keys_missing".to_string()));
        // The access report fails alike; the accounting's leaf, committed
        // with the read's, says it was not answered and counts nothing.
        let e = v.subject_report(&officer, "cust-w").unwrap_err();
        assert_eq!(e.code(), "keys_missing");
        let all = events(&v);
        let (read, acc) = (&all[all.len() - 2], &all[all.len() - 1]);
        assert_eq!((read.action.as_str(), read.count), ("read", 0));
        assert_eq!(
            (acc.action.as_str(), acc.count, acc.reasons.as_slice()),
            ("accounting_read", 0, &["not_answered".to_string()][..])
        );
        let check = v.check().unwrap();
        assert!(!check.ok);
        assert_eq!(
            (
                check.records_without_keys.records,
                check.records_without_keys.keys
            ),
            (9, 1)
        );
        // The message names the count, never the person.
        let e = v.read(&sorting, "cust-w", "delivery").unwrap_err();
        assert_eq!(e.code(), "keys_missing");
        assert!(e.keys_missing());
        assert!(e.to_string().starts_with("5 records"), "{e}");
        assert!(!e.to_string().contains("cust-w"));
        // An unknown person still answers as before.
        assert!(
            v.read(&sorting, "nobody", "delivery")
                .unwrap()
                .records
                .is_empty()
        );
    }
    drop(v);

    // 3. One flipped byte in keys.db: in a wrapped key it no longer
    // unwraps; in a subject ref the row answers to nobody.
    let master = SqliteKeyStore::open(&dir.path().join("keys.db"), OpenMode::Existing)
        .unwrap()
        .secret("master")
        .unwrap()
        .unwrap();
    let r = postvault_crypto::MasterKey::from_bytes(&master)
        .unwrap()
        .subject_ref("cust-w");
    let wrapped = SqliteKeyStore::open(&dir.path().join("keys.db"), OpenMode::Existing)
        .unwrap()
        .subject_keys(&r)
        .unwrap()
        .unwrap();
    for (what, needle) in [("wrapped key", wrapped.data.clone()), ("ref", r.to_vec())] {
        let flipped = tempfile::tempdir().unwrap();
        copy_files(dir.path(), flipped.path(), &["data.db", "keys.db"]);
        let p = flipped.path().join("keys.db");
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
            .unwrap_or_else(|| panic!("the {what} is in keys.db"));
        bytes[at + needle.len() / 2] ^= 0x40;
        std::fs::write(&p, bytes).unwrap();
        let v = Vault::open(flipped.path(), opts(&c)).unwrap();
        let sorting = v.principal("sorting").unwrap();
        assert_eq!(
            keys_missing(v.read(&sorting, "cust-w", "delivery")),
            5,
            "{what}"
        );
        let check = v.check().unwrap();
        assert_eq!(check.records_without_keys.records, 9, "{what}");
        if what == "wrapped key" {
            assert_eq!(check.damaged_keys, 1);
        } else {
            // The row under the damaged ref is a key without records.
            assert_eq!(check.keys_without_records, 1);
        }
    }
}

/// The lawful ends of data are not errors: an erased person (rows deleted,
/// keys destroyed), records past retention (period key destroyed, rows
/// pending deletion), and a mail-cover order destroyed as improperly ordered.
#[test]
fn lawfully_destroyed_keys_answer_empty_and_check_counts_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(&Backend::Sqlite, dir.path(), &c);
    v.add_principal("sorting", "delivery").unwrap();
    let sorting = v.principal("sorting").unwrap();
    let officer = v.principal("officer").unwrap();
    // Erased.
    v.erase(&officer, &["cust-b".to_string()], &mut |_| {})
        .unwrap();
    assert!(
        v.read(&sorting, "cust-b", "delivery")
            .unwrap()
            .records
            .is_empty()
    );
    // A destroyed cover: its records are gone, lawfully.
    let a = cover_with_a_record(&v);
    v.disclose_end(&officer, &a.id, postvault::EndReason::ImproperlyOrdered)
        .unwrap();
    let inspector = v.principal("inspector").unwrap();
    let size = v.log_catch_up().unwrap();
    assert!(
        v.read(&inspector, "cust-a", "mail_cover")
            .unwrap()
            .records
            .iter()
            .all(|r| r.category != "mail_cover_record")
    );
    // This vault destroyed the order itself: its read knows, and leaves
    // one leaf (no `cover_key_gone` attempt first).
    assert_eq!(v.log_catch_up().unwrap(), size + 1);
    // Past retention: images go after 7 days; not returned, not an error.
    c.advance(8 * DAY);
    let read = v.read(&sorting, "cust-a", "delivery").unwrap();
    assert!(read.records.iter().all(|r| r.category != "mail_image"));
    let check = v.check().unwrap();
    assert!(check.ok, "{:?}", check.problems);
    assert_eq!(check.destroyed_cover_records, 1);
    assert_eq!(check.records_without_keys.records, 0);
    assert!(check.pending_erasures == 0 && check.pending_intents == 0);
}

/// A vault on `dir`'s stores, each behind its own [`Faults`].
fn faulty_vault(
    dir: &Path,
    c: &Arc<FixedClock>,
    faults: &Arc<Faults>,
    key_faults: &Arc<Faults>,
) -> Vault {
    Vault::from_parts(
        dir,
        Box::new(Faulty::new(
            SqliteStore::open(&dir.join("data.db"), OpenMode::Existing).unwrap(),
            faults,
        )),
        Box::new(Faulty::new(
            SqliteKeyStore::open(&dir.join("keys.db"), OpenMode::Existing).unwrap(),
            key_faults,
        )),
        opts(c),
    )
    .unwrap()
}

/// A mail-cover order's key gone, or a key store that does not answer,
/// never leaves a read's leaf claiming records the read did not return.
/// An order destroyed by another vault (another process) this one has not
/// heard from: the read answers the person's other records, and its leaf
/// claims exactly those (judged under the log's lock first, an earlier leaf
/// of the same read claims nothing, reason `cover_key_gone`). A key store
/// that errs on a record's key: `keys_unavailable`, never a key lost. An
/// order's key lost unlawfully: the read fails and its leaf claims nothing.
#[test]
fn a_cover_key_gone_or_unanswered_never_leaves_a_read_leaf_claiming_what_was_not_returned() {
    const COVER: &str = "mail_cover_record";
    for outside_the_lock in [false, true] {
        let case = format!("outside the lock: {outside_the_lock}");
        let dir = tempfile::tempdir().unwrap();
        let c = clock();
        let v = gateway_vault_on(&Backend::Sqlite, dir.path(), &c);
        let a = cover_with_a_record(&v);
        // Something else the inspector's purpose may see.
        let order = line(
            "cust-a",
            "protective_order",
            "forwarding",
            serde_json::json!({"on_file": true, "issued_on": "2026-01-05"}),
        );
        assert_eq!(collect(&v, "ingest", &order).accepted, 1);
        drop(v);
        let faults = Faults::new();
        if outside_the_lock {
            faults.read_unlogged_always();
        }
        let key_faults = Faults::new();
        let open = || faulty_vault(dir.path(), &c, &faults, &key_faults);
        let first = open();
        let inspector = first.principal("inspector").unwrap();
        // The read's new leaves, and that its own claims what it returned.
        let read = |v: &Vault| {
            let size = v.log_catch_up().unwrap();
            let r = v.read(&inspector, "cust-a", "mail_cover");
            let n = v.log_catch_up().unwrap();
            let leaves: Vec<Event> = v
                .log_entries(size, n)
                .unwrap()
                .into_iter()
                .map(|e| e.event.unwrap())
                .collect();
            assert!(leaves.iter().all(|e| e.action == "read"), "{leaves:?}");
            if let Ok(r) = &r {
                let own = &leaves[usize::try_from(r.log_index - size).unwrap()];
                let mut categories: Vec<String> =
                    r.records.iter().map(|x| x.category.clone()).collect();
                categories.sort();
                categories.dedup();
                assert_eq!(
                    (own.count, &own.categories),
                    (r.records.len() as u64, &categories)
                );
            }
            (r, leaves)
        };
        let (before, _) = read(&first);
        let before = before.unwrap();
        let others = before
            .records
            .iter()
            .filter(|r| r.category != COVER)
            .count();
        assert!(
            others > 0 && before.records.len() > others,
            "{case}: {:?} {:?}",
            before
                .records
                .iter()
                .map(|r| &r.category)
                .collect::<Vec<_>>(),
            before.withheld
        );

        // The order's key lost (the order not destroyed): an error, and no
        // leaf claims the records the read withheld.
        let keys = SqliteKeyStore::open(&dir.path().join("keys.db"), OpenMode::Existing).unwrap();
        let names = keys.secret_names("cover:").unwrap();
        assert_eq!(names.len(), 1, "{case}: {names:?}");
        let wrapped = keys.secret(&names[0]).unwrap().unwrap();
        keys.delete_secret(&names[0]).unwrap();
        for v in [&first, &open()] {
            let (r, leaves) = read(v);
            assert_eq!(keys_missing(r), 1, "{case}");
            assert!(
                leaves
                    .iter()
                    .all(|e| (e.count, e.categories.len()) == (0, 0)
                        && e.reasons.iter().any(|r| r == "cover_key_gone")),
                "{case}: {leaves:?}"
            );
        }
        // Put back, as a restore does.
        keys.put_secret(&names[0], &wrapped).unwrap();
        assert_eq!(read(&first).0.unwrap().records.len(), others + 1, "{case}");

        // A key store that errs while a record's key is looked up.
        let third = open();
        let switch = Arc::new(AtomicBool::new(true));
        key_faults.fail_while(&switch, &["secret"]);
        let (r, leaves) = read(&third);
        assert!(matches!(r, Err(VaultError::Store(_))), "{case}: {r:?}");
        let last = leaves.last().unwrap();
        assert_eq!((last.count, last.categories.len()), (0, 0), "{case}");
        assert!(
            leaves
                .iter()
                .all(|e| e.count == 0 && !e.reasons.iter().any(|r| r == "keys_missing")),
            "{case}: {leaves:?}"
        );
        assert!(
            last.reasons.iter().any(|r| r == "keys_unavailable"),
            "{case}"
        );
        switch.store(false, Ordering::SeqCst);
        assert_eq!(read(&third).0.unwrap().records.len(), others + 1, "{case}");

        // Destroyed by another vault: lawful, and the other records come.
        let second = Vault::open(dir.path(), opts(&c)).unwrap();
        second
            .disclose_end(
                &second.principal("officer").unwrap(),
                &a.id,
                postvault::EndReason::ImproperlyOrdered,
            )
            .unwrap();
        let (after, leaves) = read(&first);
        let after = after.unwrap();
        assert_eq!(after.records.len(), others, "{case}");
        if outside_the_lock {
            // The ledger was looked at outside the lock, before the leaf.
            assert_eq!(leaves.len(), 1, "{case}: {leaves:?}");
        } else {
            assert_eq!(leaves.len(), 2, "{case}: {leaves:?}");
            assert_eq!((leaves[0].count, leaves[0].categories.len()), (0, 0));
            assert!(
                leaves[0].reasons.iter().any(|r| r == "cover_key_gone"),
                "{case}"
            );
        }
        // Seen destroyed now: one leaf.
        assert_eq!(read(&first).1.len(), 1, "{case}");
    }
}

/// A fetch whose key look-up fails (the key store errs) is refused with
/// `keys_unavailable`, never reported as keys lost: nothing is disclosed,
/// no leaf claims records, the request is not marked fetched. Asked again
/// once the key store answers, it is fetched.
#[test]
fn a_fetch_whose_key_look_up_fails_is_refused_as_unavailable_not_as_keys_lost() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let (v, a) = approved_court_order(dir.path(), &c);
    drop(v);
    let key_faults = Faults::new();
    let v = faulty_vault(dir.path(), &c, &Faults::new(), &key_faults);
    let fbi = v.principal("fbi").unwrap();
    let switch = Arc::new(AtomicBool::new(true));
    key_faults.fail_while(&switch, &["subject_keys"]);
    let size = v.log_catch_up().unwrap();
    let e = v.disclose_fetch(&fbi, &a.id).unwrap_err();
    assert!(matches!(e, VaultError::Store(_)), "{e:?}");
    let leaves = &events(&v)[usize::try_from(size).unwrap()..];
    assert_eq!(leaves.len(), 1, "{leaves:?}");
    // The step's leaf (it describes the request: its people, its portions),
    // refused; no `disclose` leaf of a person.
    assert_eq!(
        (leaves[0].action.as_str(), leaves[0].decision.as_str()),
        ("disclose", "deny")
    );
    assert!(leaves[0].reasons.iter().any(|r| r == "keys_unavailable"));
    assert!(!leaves[0].reasons.iter().any(|r| r == "keys_missing"));
    assert_eq!(
        v.store().disclosure(&a.id).unwrap().unwrap().status,
        "approved"
    );
    switch.store(false, Ordering::SeqCst);
    let p = v.disclose_fetch(&fbi, &a.id).unwrap();
    assert!(p.reasons.is_empty(), "{:?}", p.reasons);
    assert!(!p.subjects[0].records.is_empty());
}

/// A request whose sealed instrument does not open (its bytes damaged in
/// the ledger): the fetch is refused with `instrument_unreadable`, answers
/// `crypto` (not `keys_unavailable`, which asking again would mend), and
/// discloses nothing; the request stays approved.
#[test]
fn a_fetch_whose_instrument_does_not_open_is_refused_as_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let (v, a) = approved_court_order(dir.path(), &c);
    drop(v);
    let conn = rusqlite::Connection::open(dir.path().join("data.db")).unwrap();
    let changed = conn
        .execute(
            "UPDATE disclosures SET sealed = CAST(zeroblob(length(sealed)) AS BLOB) WHERE id = ?1",
            [&a.id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let fbi = v.principal("fbi").unwrap();
    let size = v.log_catch_up().unwrap();
    let e = v.disclose_fetch(&fbi, &a.id).unwrap_err();
    assert!(matches!(e, VaultError::Crypto(_)), "{e:?}");
    let leaves = &events(&v)[usize::try_from(size).unwrap()..];
    assert_eq!(leaves.len(), 1, "{leaves:?}");
    assert_eq!(
        (leaves[0].action.as_str(), leaves[0].decision.as_str()),
        ("disclose", "deny")
    );
    assert_eq!(leaves[0].reasons, ["instrument_unreadable"]);
    // The step's leaf, naming no person.
    assert!(leaves[0].subject_tag.is_none());
    assert_eq!(
        v.store().disclosure(&a.id).unwrap().unwrap().status,
        "approved"
    );
}

/// An approved request whose kind the pack in force no longer discloses
/// (a pack without the `court_order` kind staged since the approval, a
/// narrowing in force at once): the fetch is refused before anything is
/// read, with one leaf naming no person, and the request stays approved.
#[test]
fn a_fetch_under_a_pack_that_no_longer_discloses_its_kind_is_refused_before_any_read() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let (v, a) = approved_court_order(dir.path(), &c);
    // The postal pack without its `court_order` kind.
    let narrowed = postal_with_court_order(|_| String::new());
    let st = v.policy_stage(&narrowed).unwrap();
    assert!(st.in_force, "{st:?}");
    drop(v);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert_eq!(v.pack().version(), st.to);
    let fbi = v.principal("fbi").unwrap();
    let size = v.log_catch_up().unwrap();
    let p = v.disclose_fetch(&fbi, &a.id).unwrap();
    let codes: Vec<&str> = p.reasons.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, ["not_permitted"]);
    assert!(p.subjects.is_empty());
    assert_eq!(p.status, "approved");
    let leaves = &events(&v)[usize::try_from(size).unwrap()..];
    assert_eq!(leaves.len(), 1, "{leaves:?}");
    assert_eq!(leaves[0].decision, "deny");
    assert_eq!(leaves[0].reasons, ["not_permitted"]);
    assert!(leaves[0].subject_tag.is_none());
    assert_eq!(
        v.store().disclosure(&a.id).unwrap().unwrap().status,
        "approved"
    );
}

/// An approved court order for addresses and changes of address, then a
/// pack that no longer lets court orders reach addresses (a narrowing, in
/// force at once): the fetch discloses the changes of address only, its
/// leaves claim only those, and the package says which portions it holds.
#[test]
fn a_fetch_under_a_pack_that_narrowed_the_kinds_portions_discloses_only_what_it_still_allows() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    // cust-a has addresses and a change of address.
    let (v, a) = approved_court_order(dir.path(), &c);
    let narrowed = postal_with_court_order(|block| {
        let fewer = block.replacen("\"address\", ", "", 1);
        assert_ne!(fewer, block);
        fewer
    });
    let st = v.policy_stage(&narrowed).unwrap();
    assert!(st.in_force, "{st:?}");
    drop(v);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let fbi = v.principal("fbi").unwrap();
    let size = v.log_catch_up().unwrap();
    let p = v.disclose_fetch(&fbi, &a.id).unwrap();
    assert!(p.reasons.is_empty(), "{:?}", p.reasons);
    assert_eq!(p.portions, ["change_of_address"]);
    let got: Vec<&str> = p.subjects[0]
        .records
        .iter()
        .map(|r| r.category.as_str())
        .collect();
    assert!(
        !got.is_empty() && got.iter().all(|c| *c == "change_of_address"),
        "{got:?}"
    );
    let leaves = &events(&v)[usize::try_from(size).unwrap()..];
    let own = leaves
        .iter()
        .find(|e| e.action == "disclose" && e.subject_tag.is_some())
        .unwrap();
    assert_eq!(
        (own.count, own.categories.clone()),
        (got.len() as u64, vec!["change_of_address".to_string()])
    );
}

/// A fetch's step that the backend runs again (a transaction the database
/// refused, as PostgreSQL's serialization failures are retried): what the
/// first run found (here, a key store that did not answer) does not count.
/// The committed run disclosed, so the fetch answers its package.
#[test]
fn a_fetch_step_run_again_answers_what_the_committed_run_found() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let (v, a) = approved_court_order(dir.path(), &c);
    drop(v);
    let (faults, key_faults) = (Faults::new(), Faults::new());
    let v = faulty_vault(dir.path(), &c, &faults, &key_faults);
    let fbi = v.principal("fbi").unwrap();
    faults.retry(&["disclosure_step"]);
    key_faults.fail_first(1, &["subject_keys"]);
    let size = v.log_catch_up().unwrap();
    let p = v.disclose_fetch(&fbi, &a.id).unwrap();
    assert!(p.reasons.is_empty(), "{:?}", p.reasons);
    let records = p.subjects[0].records.len() as u64;
    assert!(records > 0);
    // What committed claims what was answered.
    let leaves = &events(&v)[usize::try_from(size).unwrap()..];
    let own = leaves
        .iter()
        .find(|e| e.action == "disclose" && e.subject_tag.is_some() && e.decision == "allow")
        .unwrap();
    assert_eq!(own.count, records);
    assert_eq!(
        v.store().disclosure(&a.id).unwrap().unwrap().status,
        "fetched"
    );
}

/// A court order reaching its agency's own mail-cover records, fetched as
/// another vault destroys that cover (after the fetch read the ledger,
/// before its step): the step finds the order's key gone, is refused with
/// an office-only code (its public leaf says `not_permitted`), finds the
/// order destroyed in the ledger, and is made again: the package holds the
/// person's other records, every disclosed one claimed by its leaf.
#[test]
fn a_fetch_meeting_a_cover_destroyed_meanwhile_is_made_again_without_its_records() {
    use super::disclosure::{approve, court_order, submit, with};
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(&Backend::Sqlite, dir.path(), &c);
    let cover = cover_with_a_record(&v);
    let order = with(
        court_order(),
        &[(
            "portions",
            serde_json::json!(["address", "mail_cover_record"]),
        )],
    );
    let a = submit(&v, "fbi", &order);
    assert!(!approve(&v, "officer", &a.id).refused(), "{a:?}");
    drop(v);
    let faults = Faults::new();
    let v = faulty_vault(dir.path(), &c, &faults, &Faults::new());
    let other = {
        let (dir, c, id) = (dir.path().to_path_buf(), c.clone(), cover.id.clone());
        move || {
            let second = Vault::open(&dir, opts(&c)).unwrap();
            second
                .disclose_end(
                    &second.principal("officer").unwrap(),
                    &id,
                    postvault::EndReason::ImproperlyOrdered,
                )
                .unwrap();
        }
    };
    faults.before("disclosure_step", other);
    let size = v.log_catch_up().unwrap();
    let p = v
        .disclose_fetch(&v.principal("fbi").unwrap(), &a.id)
        .unwrap();
    assert!(p.reasons.is_empty(), "{:?}", p.reasons);
    let records = &p.subjects[0].records;
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r.category == "address"));
    let leaves = &events(&v)[usize::try_from(size).unwrap()..];
    let refused: Vec<&Event> = leaves
        .iter()
        .filter(|e| e.action == "disclose" && e.decision == "deny")
        .collect();
    assert_eq!(refused.len(), 1, "{leaves:?}");
    assert_eq!(refused[0].reasons, ["not_permitted"]);
    assert!(refused[0].instrument.is_none(), "{:?}", refused[0]);
    let own = leaves
        .iter()
        .find(|e| e.action == "disclose" && e.decision == "allow" && e.subject_tag.is_some())
        .unwrap();
    assert_eq!(own.count, records.len() as u64);
}

/// Under a batch id, a collection cut midway resumes after its last
/// committed line when sent again (each line stored once), a finished one
/// is answered with its first report, other input under the same id is
/// refused, and a resend while the first is still running is refused.
pub fn collection_under_a_batch_id_is_idempotent_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    let ingest = v.principal("ingest").unwrap();
    let lines: Vec<String> = (0..100)
        .map(|i| {
            line(
                &format!("run-{i}"),
                "address",
                "delivery",
                serde_json::json!({"street": format!("{i} Elm St"), "city": "Springfield",
                    "state": "IL", "zip": "62701"}),
            )
        })
        .collect();
    let input = lines.join("\n") + "\n";
    let opts = |id: &str| CollectOptions {
        batch_size: 10,
        run: Some(id.to_string()),
        ..CollectOptions::default()
    };
    // A reader that fails after 35 lines, as a cut connection does.
    let head: &[u8] = &input.as_bytes()[..lines[..35].iter().map(|l| l.len() + 1).sum::<usize>()];
    let mut cut = std::io::BufReader::new(std::io::Read::chain(head, FailingRead));
    let first = v
        .collect(&ingest, &mut cut, &opts("batch-1"), &mut |_| {})
        .unwrap();
    assert!(first.failure.is_some());
    assert_eq!(first.committed_through_line, 30, "three whole batches");
    assert_eq!(first.accepted, 30);
    assert_eq!(v.store().record_count().unwrap(), 30);
    // Sent again whole: lines 31..100 only.
    let second = v
        .collect(
            &ingest,
            &mut input.as_bytes(),
            &opts("batch-1"),
            &mut |_| {},
        )
        .unwrap();
    assert!(second.failure.is_none(), "{:?}", second.failure);
    let run = second.run.clone().unwrap();
    assert_eq!((run.resumed_after_line, run.replayed), (30, false));
    assert_eq!((second.accepted, second.committed_through_line), (100, 100));
    assert_eq!(second.batches, 10);
    assert_eq!(v.store().record_count().unwrap(), 100);
    // Each person once.
    let sorting = v.principal("sorting").unwrap();
    for i in [0, 29, 30, 31, 99] {
        let r = v.read(&sorting, &format!("run-{i}"), "delivery").unwrap();
        assert_eq!(r.records.len(), 1, "run-{i}");
    }
    // Finished: the same input again is answered with the report, and
    // stores nothing.
    let size = v.store().log_size().unwrap();
    let third = v
        .collect(
            &ingest,
            &mut input.as_bytes(),
            &opts("batch-1"),
            &mut |_| {},
        )
        .unwrap();
    assert!(third.run.as_ref().unwrap().replayed);
    assert_eq!(
        (third.accepted, third.batches, third.leaves.clone()),
        (second.accepted, second.batches, second.leaves.clone())
    );
    assert_eq!(v.store().record_count().unwrap(), 100);
    assert_eq!(v.store().log_size().unwrap(), size);
    // The same id with other input: refused, nothing stored.
    let other = lines[..50].join("\n") + "\nX\n";
    let e = v
        .collect(
            &ingest,
            &mut other.as_bytes(),
            &opts("batch-1"),
            &mut |_| {},
        )
        .unwrap_err();
    assert_eq!(e.code(), "run_mismatch");
    // The same id by another principal is another run.
    v.add_principal("ingest2", "collector").unwrap();
    let ingest2 = v.principal("ingest2").unwrap();
    let r = v
        .collect(
            &ingest2,
            &mut lines[0].as_bytes(),
            &opts("batch-1"),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(r.accepted, 1);
    // A resend while the first is still running (it waits in its input).
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (started, has_started) = std::sync::mpsc::channel::<()>();
    let v = Arc::new(v);
    let running = {
        let (v, ingest) = (v.clone(), ingest.clone());
        std::thread::spawn(move || {
            let mut slow = std::io::BufReader::new(Gate(Some((started, wait))));
            v.collect(&ingest, &mut slow, &opts("batch-2"), &mut |_| {})
        })
    };
    has_started.recv().unwrap();
    let e = v
        .collect(&ingest, &mut b"".as_slice(), &opts("batch-2"), &mut |_| {})
        .unwrap_err();
    assert_eq!(e.code(), "run_in_progress");
    go.send(()).unwrap();
    assert!(running.join().unwrap().is_ok());
}

#[test]
fn collection_under_a_batch_id_is_idempotent() {
    collection_under_a_batch_id_is_idempotent_on(&Backend::Sqlite);
}

struct FailingRead;

impl std::io::Read for FailingRead {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("the connection was cut"))
    }
}

/// A reader that says it was asked, gives nothing until told, then ends.
#[allow(clippy::type_complexity)]
struct Gate(Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>);

impl std::io::Read for Gate {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        if let Some((started, wait)) = self.0.take() {
            let _ = started.send(());
            let _ = wait.recv();
        }
        Ok(0)
    }
}

/// The destructions of keys, which fail while a test's switch is on (as a
/// process killed between an intent and its destruction leaves things), and
/// the rotation, which then dies midway.
const KEY_DESTRUCTIONS: &[&str] = &[
    "delete_secret",
    "delete_secrets",
    "delete_secrets_guarded",
    "delete_subject_keys",
    "delete_subject_keys_as",
    "rewrap",
];

/// The vault's key store in `dir`, failing [`KEY_DESTRUCTIONS`] while `fail`
/// is on.
fn failing_keys(dir: &Path, fail: &Arc<AtomicBool>) -> Faulty<SqliteKeyStore> {
    let faults = Faults::new();
    faults.fail_while(fail, KEY_DESTRUCTIONS);
    Faulty::new(
        SqliteKeyStore::open(&dir.join("keys.db"), OpenMode::Existing).unwrap(),
        &faults,
    )
}

fn with_failing_keys(dir: &Path, c: &Arc<FixedClock>, fail: &Arc<AtomicBool>) -> Vault {
    Vault::from_parts(
        dir,
        Box::new(SqliteStore::open(&dir.join("data.db"), OpenMode::Existing).unwrap()),
        Box::new(failing_keys(dir, fail)),
        opts(c),
    )
    .unwrap()
}

use postvault::FixedClock;

fn actions(v: &Vault) -> Vec<(String, u64, Option<String>, Vec<String>)> {
    events(v)
        .into_iter()
        .map(|e| (e.action, e.count, e.selector, e.reasons))
        .collect()
}

/// Sweeps, erasures, destroyed cover keys and ended holds write an intent
/// leaf before destroying anything and a completion leaf after; killed in
/// between (the destruction fails), the next open finishes the work and
/// writes the completion, so the leaves account for everything.
#[test]
fn destruction_killed_between_its_steps_is_finished_and_accounted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(&Backend::Sqlite, dir.path(), &c);
    let a = cover_with_a_record(&v);
    drop(v);
    let fail = Arc::new(AtomicBool::new(true));
    let keys = || SqliteKeyStore::open(&dir.path().join("keys.db"), OpenMode::Existing).unwrap();

    // A retention sweep killed after its intent.
    c.advance(8 * DAY);
    let v = with_failing_keys(dir.path(), &c, &fail);
    let images = v.store().record_count().unwrap();
    assert!(v.retention_run(&mut |_| {}).is_err());
    let (action, count, selector, _) = actions(&v).pop().unwrap();
    assert_eq!(action, "retention_intent");
    assert_eq!(count, 3, "three images expired");
    let selector = selector.unwrap();
    assert!(
        selector.starts_with("keys:retention:mail_image:"),
        "{selector}"
    );
    assert!(!selector.contains("cust-"));
    assert_eq!(
        keys().secret_names("retention:mail_image:").unwrap().len(),
        1
    );
    drop(v);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let rec = v.recovered();
    assert_eq!(rec.intents.len(), 1);
    assert_eq!(rec.intents[0].kind, "retention");
    let (action, count, selector, reasons) = actions(&v).pop().unwrap();
    assert_eq!(action, "retention");
    assert_eq!(count, 3, "the completion accounts for the intent's records");
    assert!(
        selector
            .unwrap()
            .contains(&format!("intent:{}", rec.intents[0].intent_leaf))
    );
    assert!(reasons.contains(&"recovered".to_string()));
    assert!(
        keys()
            .secret_names("retention:mail_image:")
            .unwrap()
            .is_empty()
    );
    assert_eq!(v.store().record_count().unwrap(), images - 3);
    assert!(v.store().intents().unwrap().is_empty());
    drop(v);

    // An erasure killed after its first transaction (rows and leaves).
    let v = with_failing_keys(dir.path(), &c, &fail);
    let officer = v.principal("officer").unwrap();
    assert!(
        v.erase(&officer, &["cust-b".to_string()], &mut |_| {})
            .is_err()
    );
    let tail = actions(&v);
    let (action, count, selector, _) = tail.last().unwrap().clone();
    assert_eq!((action.as_str(), count), ("erase_intent", 1));
    assert!(selector.unwrap().starts_with("keys:2;records:"));
    // The per-person leaf keeps its contract: just before, tagged.
    assert_eq!(tail[tail.len() - 2].0, "erase");
    drop(v);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert_eq!(v.recovered().erasures, 1);
    assert_eq!(actions(&v).pop().unwrap().0, "erase_done");
    assert!(v.subject_tag_key("cust-b").unwrap().is_none());
    drop(v);

    // A mail cover destroyed as improperly ordered, killed before its key.
    let v = with_failing_keys(dir.path(), &c, &fail);
    let officer = v.principal("officer").unwrap();
    assert!(
        v.disclose_end(&officer, &a.id, postvault::EndReason::ImproperlyOrdered)
            .is_err()
    );
    let (action, count, selector, _) = actions(&v).pop().unwrap();
    assert_eq!((action.as_str(), count), ("cover_intent", 1));
    let seq = selector.unwrap().trim_start_matches("keys:").to_string();
    assert!(keys().secret(&seq).unwrap().is_some());
    drop(v);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert_eq!(actions(&v).pop().unwrap().0, "cover_done");
    assert!(keys().secret(&seq).unwrap().is_none());
    // Every intent has exactly one completion, and the log verifies.
    let all = events(&v);
    for (intent, done) in [
        ("retention_intent", "retention"),
        ("erase_intent", "erase_done"),
        ("cover_intent", "cover_done"),
    ] {
        let n = all.iter().filter(|e| e.action == intent).count();
        let m = all
            .iter()
            .filter(|e| {
                e.action == done && e.selector.as_deref().is_some_and(|s| s.contains("intent:"))
            })
            .count();
        assert_eq!((n, m), (1, 1), "{intent}");
    }
    assert!(
        v.verify_log(&postvault::VerifyOptions::default())
            .unwrap()
            .ok
    );
    assert!(v.check().unwrap().ok);
}

/// `init` leaves a whole vault or nothing; what an interrupted `init` left
/// is recognized (not "no vault" from one command and "a vault exists" from
/// another), and replaced only when asked and only when it holds nothing.
#[test]
fn init_is_atomic_and_a_half_made_vault_is_recognized_and_replaced() {
    let root = tempfile::tempdir().unwrap();
    let c = clock();
    // A key store alone, as a killed `init` of an older release left it.
    let dir = root.path().join("half");
    std::fs::create_dir(&dir).unwrap();
    let k = SqliteKeyStore::open(&dir.join("keys.db"), OpenMode::Create).unwrap();
    k.put_secret("master", &[7; 32]).unwrap();
    drop(k);
    for e in [
        Vault::open(&dir, opts(&c)).unwrap_err(),
        Vault::init(&dir, opts(&c)).unwrap_err(),
    ] {
        assert_eq!(e.code(), "half_made", "{e}");
        assert!(e.to_string().contains("init --replace"), "{e}");
    }
    let v = Vault::create(&dir, opts(&c), &postvault::InitOptions { replace: true }).unwrap();
    v.add_principal("ingest", "collector").unwrap();
    drop(v);
    assert!(Vault::open(&dir, opts(&c)).is_ok());
    assert_eq!(
        Vault::init(&dir, opts(&c)).unwrap_err().code(),
        "already_initialized"
    );
    // A data store without its vault id (killed before the last write).
    let dir2 = root.path().join("half2");
    std::fs::create_dir(&dir2).unwrap();
    drop(SqliteStore::open(&dir2.join("data.db"), OpenMode::Create).unwrap());
    drop(SqliteKeyStore::open(&dir2.join("keys.db"), OpenMode::Create).unwrap());
    assert_eq!(
        Vault::open(&dir2, opts(&c)).unwrap_err().code(),
        "half_made"
    );
    // A key store holding people's keys is never replaced.
    let dir3 = root.path().join("keys-only");
    drop(vault(&dir3, &c));
    let v = Vault::open(&dir3, opts(&c)).unwrap();
    collect(&v, "ingest", &person("cust-k", "pvK"));
    drop(v);
    std::fs::remove_file(dir3.join("data.db")).unwrap();
    let e = Vault::open(&dir3, opts(&c)).unwrap_err();
    assert_eq!(e.code(), "not_a_vault", "{e}");
    assert!(e.to_string().contains("restore"), "{e}");
    let e = Vault::create(&dir3, opts(&c), &postvault::InitOptions { replace: true }).unwrap_err();
    assert_eq!(e.code(), "not_a_vault");
    // Keys are made before the records they seal: a vault killed after
    // its first keys and before its first batch is a vault, not a stray.
    let early = root.path().join("early");
    drop(vault(&early, &c));
    let k = SqliteKeyStore::open(&early.join("keys.db"), OpenMode::Existing).unwrap();
    k.put_subject_keys(&[SubjectKeys {
        subject: [3; 16],
        data: vec![1; 60],
        tag: vec![2; 60],
    }])
    .unwrap();
    drop(k);
    assert!(Vault::open(&early, opts(&c)).is_ok());
    // A new vault leaves no building directory behind.
    let fresh = root.path().join("fresh");
    drop(Vault::init(&fresh, opts(&c)).unwrap());
    let leftovers: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("postvault-init"))
        .collect();
    assert!(leftovers.is_empty());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

/// A backup taken while collection and erasure run: the key copy holds a
/// key for every record of the data copy; the restore checks clean, and a
/// person erased after the backup still has a key in the key copy (the
/// crypto-shredding gap that rotating key backups closes).
#[test]
fn backups_are_consistent_and_restores_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let c = clock();
    let v = Arc::new(vault(dir.path(), &c));
    for i in 0..20 {
        collect(&v, "ingest", &person(&format!("b{i}"), &format!("m{i}")));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let (v, stop) = (v.clone(), stop.clone());
        std::thread::spawn(move || {
            let officer = v.principal("officer").unwrap();
            // Bounded, should the test fail before it says stop.
            for i in 100..1_100 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                collect(&v, "ingest", &person(&format!("b{i}"), "busy"));
                v.erase(&officer, &[format!("b{}", i - 95)], &mut |_| {})
                    .unwrap();
            }
        })
    };
    let mut reports = Vec::new();
    for n in 0..3 {
        let (d, k) = (
            out.path().join(format!("data-{n}")),
            out.path().join(format!("keys-{n}")),
        );
        reports.push((d.clone(), k.clone(), v.backup(&d, &k).unwrap()));
    }
    stop.store(true, Ordering::SeqCst);
    busy.join().unwrap();
    // The two copies go to two places, and a backup never overwrites.
    let (d0, k0, r0) = &reports[0];
    assert!(d0.join("data.db").exists() && !d0.join("keys.db").exists());
    assert!(k0.join("keys.db").exists() && !k0.join("data.db").exists());
    assert!(v.backup(d0, k0).is_err());
    assert!(
        v.backup(&out.path().join("same"), &out.path().join("same"))
            .is_err()
    );
    for (i, (d, k, r)) in reports.iter().enumerate() {
        let to = out.path().join(format!("restored-{i}"));
        let (restored, rr) = Vault::restore(d, k, &to, opts(&c), false).unwrap();
        assert!(rr.paired);
        assert_eq!(rr.vault_id, r.vault_id);
        assert!(rr.check.ok, "{:?}", rr.check.problems);
        assert_eq!(rr.check.records, r.records);
        assert!(
            restored
                .verify_log(&postvault::VerifyOptions::default())
                .unwrap()
                .ok
        );
    }
    // Restoring over a vault needs --replace, and keeps the old one aside.
    let target = out.path().join("restored-0");
    assert!(Vault::restore(d0, k0, &target, opts(&c), false).is_err());
    let (_, rr) = Vault::restore(d0, k0, &target, opts(&c), true).unwrap();
    assert!(
        Path::new(rr.replaced_moved_to.as_deref().unwrap())
            .join("data.db")
            .exists()
    );
    // Erased after the backup: the key copy still holds the person's key.
    let officer = v.principal("officer").unwrap();
    let erased_after = "b19";
    v.erase(&officer, &[erased_after.to_string()], &mut |_| {})
        .unwrap();
    let master = SqliteKeyStore::open(&dir.path().join("keys.db"), OpenMode::Existing)
        .unwrap()
        .secret("master")
        .unwrap()
        .unwrap();
    let r = postvault_crypto::MasterKey::from_bytes(&master)
        .unwrap()
        .subject_ref(erased_after);
    let copy = SqliteKeyStore::open(&k0.join("keys.db"), OpenMode::Existing).unwrap();
    assert!(copy.subject_keys(&r).unwrap().is_some());
    assert!(r0.records > 0);
}

fn ext(n: u8) -> Arc<ExternalKey> {
    Arc::new(ExternalKey::parse(&[n; 32].map(|b| b | 0x80)).unwrap())
}

fn opts_with(c: &Arc<FixedClock>, key: Option<Arc<ExternalKey>>) -> OpenOptions {
    OpenOptions {
        master_key: key,
        ..opts(c)
    }
}

/// With the master key outside the key store, the key store alone opens
/// nothing; an in-store master key moves out, and rotates, in one
/// transaction each: interrupted, the old key still opens everything.
pub fn an_external_master_key_seals_the_key_store_and_rotates_atomically_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    collect(&v, "ingest", &person("cust-x", "pvExt"));
    let sorting = v.principal("sorting").unwrap();
    let before = v.read(&sorting, "cust-x", "delivery").unwrap().records;
    assert_eq!(before.len(), 5);
    assert!(!v.master_key_is_external());
    // Move it out.
    let r = v.rotate_master(&ext(1)).unwrap();
    assert!(r.moved_out_of_key_store);
    assert_eq!(r.subjects, 1);
    assert!(r.secrets >= 8, "period keys and the log key: {r:?}");
    assert_eq!(b.keys(dir.path()).secret("master").unwrap(), None);
    // Without it, or with another: refused, clearly.
    assert_eq!(
        b.open(dir.path(), opts(&c)).unwrap_err().code(),
        "master_key_required"
    );
    let e = b.open(dir.path(), opts_with(&c, Some(ext(2)))).unwrap_err();
    assert_eq!(e.code(), "master_key_wrong");
    assert!(e.to_string().contains(&ext(1).id()), "{e}");
    let v = b.open(dir.path(), opts_with(&c, Some(ext(1)))).unwrap();
    assert!(v.master_key_is_external());
    assert_eq!(
        v.read(&sorting, "cust-x", "delivery").unwrap().records,
        before
    );
    let key = v.log_verifier_key();
    // Rotate to a third key.
    let r = v.rotate_master(&ext(3)).unwrap();
    assert_eq!(r.previous_key_id, Some(ext(1).id()));
    assert!(!r.moved_out_of_key_store);
    assert_eq!(
        b.open(dir.path(), opts_with(&c, Some(ext(1))))
            .unwrap_err()
            .code(),
        "master_key_wrong"
    );
    let v = b.open(dir.path(), opts_with(&c, Some(ext(3)))).unwrap();
    assert_eq!(
        v.read(&sorting, "cust-x", "delivery").unwrap().records,
        before
    );
    assert_eq!(
        v.log_verifier_key(),
        key,
        "the log's signing key is the same"
    );
    assert!(
        v.verify_log(&postvault::VerifyOptions::default())
            .unwrap()
            .ok
    );
    assert!(v.check().unwrap().ok);
}

#[test]
fn an_external_master_key_seals_the_key_store_and_rotates_atomically() {
    an_external_master_key_seals_the_key_store_and_rotates_atomically_on(&Backend::Sqlite);
    // On the embedded store: the key file alone holds neither the root nor
    // the plain master key, a rotation killed midway changes nothing, and a
    // vault made with an external key never held its master key in clear.
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = Vault::init(dir.path(), opts_with(&c, Some(ext(5)))).unwrap();
    v.add_principal("ingest", "collector").unwrap();
    v.add_principal("sorting", "delivery").unwrap();
    collect(&v, "ingest", &person("cust-y", "pvExtInit"));
    assert!(v.master_key_is_external());
    drop(v);
    let keys = SqliteKeyStore::open(&dir.path().join("keys.db"), OpenMode::Existing).unwrap();
    assert!(keys.secret("master").unwrap().is_none());
    assert!(keys.secret("master.sealed").unwrap().is_some());
    drop(keys);
    let fail = Arc::new(AtomicBool::new(true));
    let v = Vault::from_parts(
        dir.path(),
        Box::new(SqliteStore::open(&dir.path().join("data.db"), OpenMode::Existing).unwrap()),
        Box::new(failing_keys(dir.path(), &fail)),
        opts_with(&c, Some(ext(5))),
    )
    .unwrap();
    assert!(v.rotate_master(&ext(6)).is_err());
    let v = Vault::open(dir.path(), opts_with(&c, Some(ext(5)))).unwrap();
    let sorting = v.principal("sorting").unwrap();
    assert_eq!(
        v.read(&sorting, "cust-y", "delivery")
            .unwrap()
            .records
            .len(),
        5
    );
    assert!(Vault::open(dir.path(), opts_with(&c, Some(ext(6)))).is_err());
    // A rotation needs the vault to itself.
    let other = Vault::open(dir.path(), opts_with(&c, Some(ext(5)))).unwrap();
    assert_eq!(v.rotate_master(&ext(6)).unwrap_err().code(), "vault_in_use");
    drop(other);
}

/// `check` counts stored tree hashes and kept checkpoints that do not
/// match the leaves, and a healthy vault checks clean.
#[test]
fn check_counts_log_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    collect(&v, "ingest", &person("cust-l", "pvLog"));
    let sorting = v.principal("sorting").unwrap();
    for _ in 0..3 {
        v.read(&sorting, "cust-l", "delivery").unwrap();
    }
    v.checkpoint().unwrap();
    let r = v.check().unwrap();
    assert!(r.ok, "{:?}", r.problems);
    assert_eq!(r.log.leaves, r.log.hashed);
    assert_eq!((r.log.checkpoints, r.log.checkpoint_mismatches), (1, 0));
    drop(v);
    let conn = rusqlite::Connection::open(dir.path().join("data.db")).unwrap();
    conn.execute(
        "UPDATE log_hashes SET hash = zeroblob(32) WHERE idx = 0",
        [],
    )
    .unwrap();
    conn.execute("UPDATE leaves SET body = X'00' WHERE idx = 1", [])
        .unwrap();
    drop(conn);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let r = v.check().unwrap();
    assert!(!r.ok);
    assert!(r.log.hash_mismatches >= 2, "{:?}", r.log);
    assert_eq!(r.log.checkpoint_mismatches, 1);
    assert!(r.log_mismatch() && !r.keys_missing());
}

/// A statistics scan meets a person whose keys are gone. Erased by another
/// process between the scan's page of rows and its look-up of their keys:
/// their rows are dead by then, so the query is answered (what it could not
/// open was gone lawfully). Keys lost while the rows live: `keys_missing`,
/// as ever.
#[test]
fn a_statistics_scan_meeting_an_erasure_answers_and_a_key_loss_is_an_error() {
    let query: postvault::StatsRequest = serde_json::from_value(serde_json::json!({
        "category": "scan_event", "measure": "count", "group_by": ["day"],
        "from": "2026-11-01", "to": "2026-11-03", "epsilon": 0.5,
    }))
    .unwrap();
    let lines: Vec<String> = (0..10)
        .map(|i| {
            line(
                &format!("p{i}"),
                "scan_event",
                "delivery",
                serde_json::json!({"piece": "letter", "facility_zip": "60601", "op_code": "918",
                    "event": "processed", "scanned_at": "2026-11-02T03:00:00Z"}),
            )
        })
        .collect();
    let made = |dir: &Path, c: &Arc<FixedClock>| {
        let v = vault_on(&Backend::Sqlite, dir, c);
        v.add_principal("analyst", "statistics").unwrap();
        assert_eq!(collect(&v, "ingest", &lines.join("\n")).accepted, 10);
    };

    // Erased meanwhile, by another vault on the same store.
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    made(dir.path(), &c);
    let key_faults = Faults::new();
    let v = faulty_vault(dir.path(), &c, &Faults::new(), &key_faults);
    let path = dir.path().to_path_buf();
    let c2 = c.clone();
    // Everyone, so the pipeline that looks keys up first (it has read its
    // page) meets people erased after its read, whichever range it scans.
    key_faults.before("subject_keys_many", move || {
        let other = Vault::open(&path, opts(&c2)).unwrap();
        let officer = other.principal("officer").unwrap();
        let all: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
        let r = other.erase(&officer, &all, &mut |_| {}).unwrap();
        assert_eq!(r.erased, 10);
    });
    let analyst = v.principal("analyst").unwrap();
    let a = v.statistics(&analyst, "statistics", &query).unwrap();
    assert_eq!(a.groups.len(), 2, "{a:?}");

    // Keys lost, rows alive: an error, whatever the scan's re-check.
    let dir = tempfile::tempdir().unwrap();
    made(dir.path(), &c);
    let keys = rusqlite::Connection::open(dir.path().join("keys.db")).unwrap();
    keys.execute("DELETE FROM subject_keys", []).unwrap();
    drop(keys);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let analyst = v.principal("analyst").unwrap();
    match v.statistics(&analyst, "statistics", &query) {
        Err(VaultError::RecordKeysMissing { records }) => assert_eq!(records, 10),
        other => panic!("expected keys_missing, got {other:?}"),
    }
}

/// A hold lapses and the sweep ends it; as the sweep moves the person's
/// records back under their periods, an officer on another node places a
/// new hold (which seals them under the hold key the sweep is about to
/// destroy). The sweep looks again before the key goes: the person is held,
/// the key stays, and every record of theirs still opens.
#[test]
fn a_hold_placed_while_the_sweep_ends_the_last_one_keeps_the_hold_key() {
    use postvault::Clock as _;
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let (v, a) = approved_court_order(dir.path(), &c);
    let off = v.principal("officer").unwrap();
    v.hold_place(&off, &a.id, Some(c.now_ms() + 2 * DAY))
        .unwrap();
    // Collected after the hold was placed: under its period key, which the
    // new hold seals under the hold key.
    let r = collect(
        &v,
        "ingest",
        &line(
            "cust-a",
            "address",
            "forwarding",
            serde_json::json!({"street": "9 Late St", "city": "Portland", "state": "OR", "zip": "97254"}),
        ),
    );
    assert_eq!(r.accepted, 1, "{:?}", r.errors);
    let before = v.subject_report(&off, "cust-a").unwrap().records.len();
    assert!(before > 0);
    drop(v);
    c.advance(2 * DAY + 1);
    let faults = Faults::new();
    let v = faulty_vault(dir.path(), &c, &faults, &Faults::new());
    // The other node is open already (opening it now would finish the
    // sweep's intent itself).
    let other = Vault::open(dir.path(), opts(&c)).unwrap();
    let (c2, id) = (c.clone(), a.id.clone());
    faults.before("rekey", move || {
        let off = other.principal("officer").unwrap();
        other
            .hold_place(&off, &id, Some(c2.now_ms() + 10 * DAY))
            .unwrap();
    });
    v.retention_run(&mut |_| {}).unwrap();
    let off = v.principal("officer").unwrap();
    assert!(
        v.holds(&off).unwrap().iter().any(|h| h.status == "active"),
        "the new hold stands"
    );
    drop(v);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    every_record_opens(&v, before);
}

/// The narrowest window of the same race: the sweep has looked at the
/// holds for the last time and is about to destroy the hold key when
/// another node places a hold, seals the person's records under that key
/// and finds it still there. The end destroys the key only while its mark
/// is there, and the new hold took the mark away before it looked the key
/// up: the key stays, and every record still opens.
#[test]
fn a_hold_placed_as_the_sweep_destroys_the_hold_key_keeps_it() {
    use postvault::Clock as _;
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let (v, a) = approved_court_order(dir.path(), &c);
    let off = v.principal("officer").unwrap();
    v.hold_place(&off, &a.id, Some(c.now_ms() + 2 * DAY))
        .unwrap();
    let before = v.subject_report(&off, "cust-a").unwrap().records.len();
    assert!(before > 0);
    drop(v);
    c.advance(2 * DAY + 1);
    let key_faults = Faults::new();
    let v = faulty_vault(dir.path(), &c, &Faults::new(), &key_faults);
    // The other node is open already (opening it now would finish the
    // sweep's intent itself).
    let other = Vault::open(dir.path(), opts(&c)).unwrap();
    let (c2, id) = (c.clone(), a.id.clone());
    let placed = Arc::new(AtomicBool::new(false));
    let placed2 = placed.clone();
    key_faults.before("delete_secrets_guarded", move || {
        placed2.store(true, Ordering::SeqCst);
        let off = other.principal("officer").unwrap();
        other
            .hold_place(&off, &id, Some(c2.now_ms() + 10 * DAY))
            .unwrap();
    });
    let size = v.store().log_size().unwrap();
    v.retention_run(&mut |_| {}).unwrap();
    assert!(
        placed.load(Ordering::SeqCst),
        "the end reached its destruction"
    );
    // The sweep's completion does not claim the kept key destroyed.
    let done: Vec<postvault::Event> = v
        .log_entries(size, v.store().log_size().unwrap())
        .unwrap()
        .into_iter()
        .filter_map(|e| e.event)
        .filter(|e| e.action == "retention")
        .collect();
    assert_eq!(done.len(), 1);
    let selector = done[0].selector.clone().unwrap();
    assert!(
        selector.starts_with("periods:") && selector.ends_with(";kept:1"),
        "{selector}"
    );
    drop(v);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let off = v.principal("officer").unwrap();
    assert!(
        v.holds(&off).unwrap().iter().any(|h| h.status == "active"),
        "the new hold stands"
    );
    every_record_opens(&v, before);
}

/// A hold placed on one node (its key store wrapped in `placing_keys`)
/// while another releases it: the placement stores its hold and reads its
/// key; the release runs until its end has moved back what it found and
/// looked at the holds; the placement then seals (running `at_rekey` just
/// before its rekey) and answers; then the end goes on. Returns the vault's
/// directory and clock, how many records the person had, and the
/// placement's answer.
fn place_while_released(
    placing_keys: &Arc<Faults>,
    at_rekey: impl FnOnce() + Send + 'static,
) -> (
    tempfile::TempDir,
    Arc<FixedClock>,
    usize,
    Result<postvault::HoldView, VaultError>,
) {
    use std::sync::mpsc::channel;
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let (v, a) = approved_court_order(dir.path(), &c);
    let off = v.principal("officer").unwrap();
    let before = v.subject_report(&off, "cust-a").unwrap().records.len();
    assert!(before > 0);
    drop(v);
    let placing = Faults::new();
    let h = faulty_vault(dir.path(), &c, &placing, placing_keys);
    let ending = Faults::new();
    let r = faulty_vault(dir.path(), &c, &Faults::new(), &ending);
    let (stored, on_stored) = channel::<()>();
    let (checked, on_checked) = channel::<()>();
    let (answered, on_answered) = channel::<()>();
    placing.before("rekey", move || {
        stored.send(()).unwrap();
        on_checked.recv().unwrap();
        at_rekey();
    });
    // The end is about to look at the sealing marks.
    ending.before("secret_names", move || {
        checked.send(()).unwrap();
        on_answered.recv().unwrap();
    });
    let releaser = std::thread::spawn(move || {
        on_stored.recv().unwrap();
        let off = r.principal("officer").unwrap();
        let id = r
            .holds(&off)
            .unwrap()
            .into_iter()
            .find(|h| h.status == "active")
            .unwrap()
            .id;
        r.hold_release(&off, &id).unwrap();
    });
    let off = h.principal("officer").unwrap();
    let placed = h.hold_place(&off, &a.id, None);
    answered.send(()).unwrap();
    releaser.join().unwrap();
    drop(h);
    (dir, c, before, placed)
}

/// A release moves the person's records back under their period keys; a
/// hold placed on another node meanwhile (after the release looked at the
/// holds, before the move) finds them still under the hold key and leaves
/// them; a sweep on a third node whose day has reached a record's period
/// looks before the move (nothing of theirs under that period key) and
/// destroys the period key after it. The release, seeing the new hold when
/// it looks again, seals what it moved under the hold key once more, from
/// what it opened: nothing is lost while the hold stands.
#[test]
fn a_release_that_moved_records_back_as_a_hold_came_seals_them_again() {
    use postvault::Clock as _;
    use std::sync::mpsc::channel;
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let (v, a) = approved_court_order(dir.path(), &c);
    let off = v.principal("officer").unwrap();
    let first = v.hold_place(&off, &a.id, None).unwrap();
    let report = v.subject_report(&off, "cust-a").unwrap();
    let before = report.records.len();
    assert!(before > 0);
    // The sweep's day: the first record's period has ended.
    let expiry = report
        .records
        .iter()
        .map(|r| postvault_time::parse_rfc3339(&r.expires_at).unwrap())
        .min()
        .unwrap();
    let later = Arc::new(FixedClock::new(expiry.div_euclid(DAY) * DAY + DAY + 1));
    drop(v);
    let (releasing, releasing_keys) = (Faults::new(), Faults::new());
    let r = faulty_vault(dir.path(), &c, &releasing, &releasing_keys);
    // The other two nodes are open already (opening one later would finish
    // the release's intent itself).
    let placing = Vault::open(dir.path(), opts(&c)).unwrap();
    let sweeping = Faults::new();
    let s = faulty_vault(dir.path(), &later, &sweeping, &Faults::new());
    // A step not reached fails the test instead of hanging it.
    let wait = |rx: &std::sync::mpsc::Receiver<()>| {
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("the interleaving reached its next step")
    };
    let (go, on_go) = channel::<()>();
    let (looked, on_looked) = channel::<()>();
    let (moved, on_moved) = channel::<()>();
    let (swept, on_swept) = channel::<()>();
    // The sweep seals held people's records of its periods (an empty
    // rekey: everything of theirs is under the hold key still), then
    // waits for the move before it destroys the period keys.
    sweeping.before("rekey", move || {
        looked.send(()).unwrap();
        wait(&on_moved);
    });
    let sweeper = std::thread::spawn(move || {
        wait(&on_go);
        s.retention_run(&mut |_| {}).unwrap();
        swept.send(()).unwrap();
    });
    let (id, until) = (a.id.clone(), later.now_ms() + 10 * DAY);
    let keys = releasing_keys.clone();
    releasing.before("rekey", move || {
        let off = placing.principal("officer").unwrap();
        placing.hold_place(&off, &id, Some(until)).unwrap();
        go.send(()).unwrap();
        wait(&on_looked);
        // Once moved, before the release looks at the holds again: the
        // sweep destroys the period keys and ends.
        keys.before("subject_keys", move || {
            moved.send(()).unwrap();
            wait(&on_swept);
        });
    });
    r.hold_release(&off, &first.id).unwrap();
    sweeper.join().unwrap();
    drop(r);
    let v = Vault::open(dir.path(), opts(&later)).unwrap();
    let off = v.principal("officer").unwrap();
    assert!(
        v.holds(&off).unwrap().iter().any(|h| h.status == "active"),
        "the new hold stands"
    );
    every_record_opens(&v, before);
}

/// Every record of the person still opens, and `check` finds no hold key
/// missing.
fn every_record_opens(v: &Vault, before: usize) {
    let off = v.principal("officer").unwrap();
    let after = v.subject_report(&off, "cust-a").unwrap().records.len();
    assert_eq!(after, before, "every record still opens");
    assert_eq!(v.check().unwrap().hold_keys_missing.records, 0);
}

/// A hold is released on another node while it is being placed: the end
/// looks at the holds (none in force), and before it destroys the hold key
/// the placement seals the person's records under that key and finds it
/// still there. The placement takes the end's mark away after sealing, so
/// the key stays (the next sweep ends it, the hold being over) and every
/// record still opens.
#[test]
fn a_hold_released_on_another_node_while_it_seals_loses_nothing() {
    let (dir, c, before, placed) = place_while_released(&Faults::new(), || {});
    placed.unwrap();
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    every_record_opens(&v, before);
    // The hold being over, the next sweep ends its key; nothing is lost.
    v.retention_run(&mut |_| {}).unwrap();
    every_record_opens(&v, before);
}

/// The same release, but the placement dies just after sealing under the
/// key, before it takes the end's mark away (its key store failing from
/// then on, as a killed process would leave it): its sealing mark is still
/// there when the end looks, so the end keeps the key and nothing the
/// placement sealed is lost.
#[test]
fn a_hold_that_dies_after_sealing_keeps_the_key_from_an_end_elsewhere() {
    let placing_keys = Faults::new();
    let dead = Arc::new(AtomicBool::new(false));
    placing_keys.fail_while(&dead, &["secret", "delete_secret", "delete_secrets"]);
    let dying = dead.clone();
    // Its rekey commits; then nothing more of it reaches the key store.
    let (dir, c, before, placed) =
        place_while_released(&placing_keys, move || dying.store(true, Ordering::SeqCst));
    assert!(placed.is_err(), "it died");
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    every_record_opens(&v, before);
}

/// A hold seals a person's records under their hold key while another node
/// ends an earlier hold and destroys that key (between the key's look-up
/// and the rekey): the hold finds the key gone after its rekey and seals
/// them again under a new one, so none is left under a destroyed key.
#[test]
fn a_hold_whose_key_is_destroyed_while_it_seals_seals_again() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let (v, a) = approved_court_order(dir.path(), &c);
    let off = v.principal("officer").unwrap();
    let before = v.subject_report(&off, "cust-a").unwrap().records.len();
    assert!(before > 0);
    drop(v);
    let faults = Faults::new();
    let v = faulty_vault(dir.path(), &c, &faults, &Faults::new());
    let keys = dir.path().join("keys.db");
    faults.before("rekey", move || {
        let conn = rusqlite::Connection::open(&keys).unwrap();
        let gone = conn
            .execute("DELETE FROM secrets WHERE name LIKE 'hold:%'", [])
            .unwrap();
        assert_eq!(gone, 1);
    });
    let off = v.principal("officer").unwrap();
    v.hold_place(&off, &a.id, None).unwrap();
    drop(v);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    every_record_opens(&v, before);
}

/// An erasure's first step commits; before it destroys the person's keys,
/// another process meets the person's pending rows, finishes the erasure
/// itself and collects the person again, with new keys. The first erasure
/// destroys only the keys it read, so the new record stays readable.
#[test]
fn an_erasure_finished_elsewhere_and_collected_again_keeps_the_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(&Backend::Sqlite, dir.path(), &c);
    let address = |street: &str| {
        line(
            "cust-e",
            "address",
            "delivery",
            serde_json::json!({"street": street, "city": "Springfield", "state": "IL", "zip": "62701"}),
        )
    };
    assert_eq!(collect(&v, "ingest", &address("1 Old St")).accepted, 1);
    drop(v);
    let key_faults = Faults::new();
    let v = faulty_vault(dir.path(), &c, &Faults::new(), &key_faults);
    let (path, c2) = (dir.path().to_path_buf(), c.clone());
    let again = address("2 New St");
    key_faults.before("delete_subject_keys_as", move || {
        let other = Vault::open(&path, opts(&c2)).unwrap();
        assert_eq!(collect(&other, "ingest", &again).accepted, 1);
    });
    let off = v.principal("officer").unwrap();
    let r = v.erase(&off, &["cust-e".to_string()], &mut |_| {}).unwrap();
    assert_eq!(r.erased, 1);
    drop(v);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let read = v
        .read(&v.principal("sorting").unwrap(), "cust-e", "delivery")
        .unwrap();
    assert_eq!(read.records.len(), 1, "{read:?}");
    assert!(read.records[0].fields.json().contains("2 New St"));
}
