//! A person's way in: one-time access codes (issued by the privacy office
//! only, one use, expiring, dead with the person's erasure, stored without
//! the identifier), and erasure requests that wait for the office.

use super::*;

use postvault::LogSelect;

const DAY: i64 = 86_400_000;

fn setup_on(b: &Backend, dir: &Path) -> (Vault, Arc<FixedClock>) {
    let c = clock();
    let v = vault_on(b, dir, &c);
    collect(&v, "ingest", &person("cust-portal-1", "Zephyrine"));
    (v, c)
}

pub fn access_codes_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (v, c) = setup_on(b, dir.path());
    let officer = v.principal("officer").unwrap();
    let agency = v.principal("agency").unwrap();

    // Only the privacy office issues codes; a refusal is one deny leaf.
    let before = v.checkpoint_size().unwrap();
    let e = v.issue_access_code(&agency, "cust-portal-1").unwrap_err();
    assert_eq!(e.code(), "not_permitted");
    assert_eq!(v.checkpoint_size().unwrap(), before + 1);

    let code = v.issue_access_code(&officer, "cust-portal-1").unwrap();
    assert_eq!(code.code.len(), 24, "{}", code.code);
    // Typed loosely: lower case, spaces for dashes.
    let typed = code.code.to_lowercase().replace('-', " ");
    let s = v
        .redeem_access_code(&typed)
        .unwrap()
        .expect("a fresh code opens");
    assert_eq!(s.subject, "cust-portal-1");
    assert_eq!(s.principal.role, "subject_access");
    // One use, whatever the node: the second redemption opens nothing.
    assert!(v.redeem_access_code(&code.code).unwrap().is_none());
    assert!(v.redeem_access_code("not a code").unwrap().is_none());
    assert!(
        v.redeem_access_code("0000-0000-0000-0000-0000")
            .unwrap()
            .is_none()
    );

    // The issue and the login are leaves the person finds with their key.
    let key = v.subject_tag_key("cust-portal-1").unwrap().unwrap();
    let (_, found) = v.find_leaves(&key).unwrap();
    let actions: Vec<String> = found
        .iter()
        .filter_map(|f| f.event.as_ref().map(|e| e.action.clone()))
        .collect();
    assert!(
        actions.contains(&"access_code_issue".to_string()),
        "{actions:?}"
    );
    assert!(actions.contains(&"portal_login".to_string()), "{actions:?}");
    assert_eq!(
        leaves_found(&v, &key),
        found.iter().map(|f| f.index).collect::<Vec<_>>()
    );
    assert!(found.iter().any(|f| f.index == s.log_index));

    // Expired after 30 days.
    let late = v.issue_access_code(&officer, "cust-portal-1").unwrap();
    c.advance(31 * DAY);
    assert!(v.redeem_access_code(&late.code).unwrap().is_none());

    // A code outstanding at the person's erasure opens nothing after it.
    let pending = v.issue_access_code(&officer, "cust-portal-1").unwrap();
    assert!(v.person_present("cust-portal-1").unwrap());
    v.erase(&officer, &["cust-portal-1".to_string()], &mut |_| {})
        .unwrap();
    assert!(!v.person_present("cust-portal-1").unwrap());
    assert!(v.redeem_access_code(&pending.code).unwrap().is_none());
}

#[test]
fn access_codes() {
    access_codes_on(&Backend::Sqlite);
}

/// The key store keeps a code's hash and the identifier sealed: neither the
/// code nor the identifier is in any file of the vault.
#[test]
fn codes_and_requests_are_stored_without_the_identifier() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _c) = setup_on(&Backend::Sqlite, dir.path());
    let officer = v.principal("officer").unwrap();
    let code = v.issue_access_code(&officer, "cust-portal-1").unwrap();
    let s = v.redeem_access_code(&code.code).unwrap().unwrap();
    v.request_erasure(&s.principal, &s.subject).unwrap();
    let other = v.issue_access_code(&officer, "cust-portal-1").unwrap();
    drop(v);
    let raw = other.code.replace('-', "");
    for (name, bytes) in vault_files(dir.path()) {
        assert!(
            !contains(&bytes, b"cust-portal-1"),
            "the identifier in {name}"
        );
        assert!(!contains(&bytes, raw.as_bytes()), "a code in {name}");
        assert!(!contains(&bytes, other.code.as_bytes()), "a code in {name}");
    }
}

pub fn erasure_requests_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (v, _c) = setup_on(b, dir.path());
    let officer = v.principal("officer").unwrap();
    collect(&v, "ingest", &person("cust-portal-2", "Quillon"));
    let code = v.issue_access_code(&officer, "cust-portal-1").unwrap();
    let s = v.redeem_access_code(&code.code).unwrap().unwrap();

    // Only the role acting for the person asks; the office alone decides.
    let sorting = v.principal("sorting").unwrap();
    assert_eq!(
        v.request_erasure(&sorting, "cust-portal-1")
            .unwrap_err()
            .code(),
        "not_permitted"
    );
    let r = v.request_erasure(&s.principal, &s.subject).unwrap();
    assert_eq!(r.status, "pending");
    // Asked again while pending: the same request.
    assert_eq!(
        v.request_erasure(&s.principal, &s.subject).unwrap().id,
        r.id
    );
    assert_eq!(
        v.person_requests(&s.principal, &s.subject).unwrap().len(),
        1
    );
    assert_eq!(
        v.rights_requests(&sorting).unwrap_err().code(),
        "not_permitted"
    );
    assert_eq!(
        v.grant_rights_request(&sorting, &r.id).unwrap_err().code(),
        "not_permitted"
    );
    let listed = v.rights_requests(&officer).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, r.id);

    // Granted: the person is erased; the other person is not.
    let g = v.grant_rights_request(&officer, &r.id).unwrap();
    assert_eq!(g.status, "granted");
    assert_eq!(g.decided_by.as_deref(), Some("officer"));
    assert!(!v.person_present("cust-portal-1").unwrap());
    assert!(v.person_present("cust-portal-2").unwrap());
    assert_eq!(
        v.grant_rights_request(&officer, &r.id).unwrap_err().code(),
        "already_decided"
    );
    assert_eq!(
        v.grant_rights_request(&officer, "er-nope")
            .unwrap_err()
            .code(),
        "no_such_request"
    );

    // A refusal names a reason of the list and keeps the note.
    let code2 = v.issue_access_code(&officer, "cust-portal-2").unwrap();
    let s2 = v.redeem_access_code(&code2.code).unwrap().unwrap();
    let r2 = v.request_erasure(&s2.principal, &s2.subject).unwrap();
    assert_eq!(
        v.refuse_rights_request(&officer, &r2.id, "because", "")
            .unwrap_err()
            .code(),
        "invalid"
    );
    let f = v
        .refuse_rights_request(
            &officer,
            &r2.id,
            "retention_required",
            "money order records, 5 years",
        )
        .unwrap();
    assert_eq!(f.status, "refused");
    assert_eq!(
        f.outcome.as_deref(),
        Some("retention_required: money order records, 5 years")
    );
    let mine = v.person_requests(&s2.principal, &s2.subject).unwrap();
    assert_eq!(mine[0].status, "refused");
    assert!(v.person_present("cust-portal-2").unwrap());
}

#[test]
fn erasure_requests() {
    erasure_requests_on(&Backend::Sqlite);
}

/// A grant and a refusal of one request at once: exactly one goes through,
/// and what the request says is what happened to the person.
#[test]
fn a_grant_and_a_refusal_at_once_never_both_go_through() {
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let (v, _c) = setup_on(&Backend::Sqlite, dir.path());
        let officer = v.principal("officer").unwrap();
        let code = v.issue_access_code(&officer, "cust-portal-1").unwrap();
        let s = v.redeem_access_code(&code.code).unwrap().unwrap();
        let r = v.request_erasure(&s.principal, &s.subject).unwrap();
        let (grant, refuse) = std::thread::scope(|scope| {
            let g = scope.spawn(|| v.grant_rights_request(&officer, &r.id));
            let f = scope.spawn(|| v.refuse_rights_request(&officer, &r.id, "other", ""));
            (g.join().unwrap(), f.join().unwrap())
        });
        assert!(
            grant.is_ok() != refuse.is_ok(),
            "round {round}: grant {grant:?}, refuse {refuse:?}"
        );
        let listed = v.rights_requests(&officer).unwrap();
        assert_eq!(listed.len(), 1);
        let erased = !v.person_present("cust-portal-1").unwrap();
        assert_eq!(listed[0].status == "granted", erased, "round {round}");
        assert_eq!(
            listed[0].status,
            if grant.is_ok() { "granted" } else { "refused" }
        );
    }
}

#[test]
fn the_office_withdraws_a_persons_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _c) = setup_on(&Backend::Sqlite, dir.path());
    collect(&v, "ingest", &person("cust-portal-2", "Quillon"));
    let officer = v.principal("officer").unwrap();
    let a = v.issue_access_code(&officer, "cust-portal-1").unwrap();
    let b = v.issue_access_code(&officer, "cust-portal-1").unwrap();
    let other = v.issue_access_code(&officer, "cust-portal-2").unwrap();
    let agency = v.principal("agency").unwrap();
    assert_eq!(
        v.revoke_access_codes(&agency, "cust-portal-1")
            .unwrap_err()
            .code(),
        "not_permitted"
    );
    assert_eq!(v.revoke_access_codes(&officer, "cust-portal-1").unwrap(), 2);
    assert!(v.redeem_access_code(&a.code).unwrap().is_none());
    assert!(v.redeem_access_code(&b.code).unwrap().is_none());
    assert!(v.redeem_access_code(&other.code).unwrap().is_some());
    assert_eq!(v.revoke_access_codes(&officer, "cust-portal-1").unwrap(), 0);
}

/// The person's page asks for a page of their leaves: the newest first, or
/// those it shows by index, each proved; nothing is read, so nothing is
/// logged; a role that does not act for the person gets nothing.
#[test]
fn a_page_of_a_persons_log() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _c) = setup_on(&Backend::Sqlite, dir.path());
    let officer = v.principal("officer").unwrap();
    for _ in 0..3 {
        v.subject_report(&officer, "cust-portal-1").unwrap();
    }
    let all = v.subject_report(&officer, "cust-portal-1").unwrap();
    assert_eq!(all.log_total, all.log.len());
    let indexes: Vec<u64> = all.log.iter().map(|l| l.index).collect();
    let code = v.issue_access_code(&officer, "cust-portal-1").unwrap();
    let s = v.redeem_access_code(&code.code).unwrap().unwrap();
    let size = v.checkpoint_size().unwrap();
    let page = v
        .subject_log(
            &s.principal,
            &s.subject,
            LogSelect::Newest { skip: 1, take: 3 },
        )
        .unwrap();
    assert_eq!(
        v.checkpoint_size().unwrap(),
        size,
        "a page of the log logs nothing"
    );
    assert!(page.proofs_verified && page.records.is_empty());
    assert_eq!(
        page.log_total,
        indexes.len() + 2,
        "the issue and the login leaves too"
    );
    let got: Vec<u64> = page.log.iter().map(|l| l.index).collect();
    assert_eq!(got.len(), 3);
    assert!(got.windows(2).all(|w| w[0] > w[1]), "{got:?}");
    let (first, last) = (indexes[1], indexes[3]);
    let between = v
        .subject_log(
            &s.principal,
            &s.subject,
            LogSelect::Between {
                first,
                last,
                max: 100,
            },
        )
        .unwrap();
    assert_eq!(
        between.log.iter().map(|l| l.index).collect::<Vec<_>>(),
        indexes[1..=3].to_vec()
    );
    assert!(
        postvault::verify_report_proofs(
            &between.checkpoint,
            &between.log_verifier_key,
            &between.log
        )
        .is_ok()
    );
    let none = v
        .subject_report_with(&s.principal, &s.subject, LogSelect::Nothing)
        .unwrap();
    assert!(none.log.is_empty() && !none.records.is_empty());
    let sorting = v.principal("sorting").unwrap();
    assert_eq!(
        v.subject_log(&sorting, "cust-portal-1", LogSelect::All)
            .unwrap_err()
            .code(),
        "not_permitted"
    );
}

/// A person asks for a correction; the office sees what they ask, grants
/// it (the record is corrected as `correct` does, the old one kept as
/// history) or refuses it; the request then keeps no field and no ref.
#[test]
fn correction_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (v, c) = setup_on(&Backend::Sqlite, dir.path());
    let officer = v.principal("officer").unwrap();
    let code = v.issue_access_code(&officer, "cust-portal-1").unwrap();
    let s = v.redeem_access_code(&code.code).unwrap().unwrap();
    let ask = |fields: serde_json::Value| {
        v.request_correction(
            &s.principal,
            &s.subject,
            "address",
            &fields.to_string(),
            None,
        )
    };
    assert_eq!(
        v.request_correction(
            &s.principal,
            &s.subject,
            "disclosure_accounting",
            "{}",
            None
        )
        .unwrap_err()
        .code(),
        "invalid"
    );
    assert_eq!(
        v.request_correction(&s.principal, &s.subject, "address", "not json", None)
            .unwrap_err()
            .code(),
        "invalid"
    );
    let r = ask(serde_json::json!({"street": "9 Corrected Rd", "city": "Springfield", "state": "IL", "zip": "62701"})).unwrap();
    assert_eq!(
        (r.kind.as_str(), r.status.as_str()),
        ("correction", "pending")
    );
    let listed = v.rights_requests(&officer).unwrap();
    assert_eq!(listed[0].category.as_deref(), Some("address"));
    assert_eq!(
        listed[0].proposed.as_ref().unwrap()["street"],
        "9 Corrected Rd"
    );
    let g = v.grant_rights_request(&officer, &r.id).unwrap();
    assert_eq!(g.status, "granted");
    assert!(g.outcome.unwrap().starts_with("corrected: record "));
    assert!(g.proposed.is_none());
    let report = v.subject_report(&officer, "cust-portal-1").unwrap();
    let current: Vec<_> = report
        .records
        .iter()
        .filter(|x| x.category == "address" && x.superseded_by.is_none())
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(
        current[0].fields.to_map().unwrap()["street"],
        "9 Corrected Rd"
    );
    // Decided: the person still finds it, the office sees no field.
    let mine = v.person_requests(&s.principal, &s.subject).unwrap();
    assert_eq!(mine[0].status, "granted");
    assert!(v.rights_requests(&officer).unwrap()[0].proposed.is_none());
    // A refusal, read by the person.
    c.advance(60_000);
    let r2 =
        ask(serde_json::json!({"street": "1 Nowhere", "city": "X", "state": "IL", "zip": "62701"}))
            .unwrap();
    v.refuse_rights_request(
        &officer,
        &r2.id,
        "identity_not_confirmed",
        "send proof of address",
    )
    .unwrap();
    let mine = v.person_requests(&s.principal, &s.subject).unwrap();
    assert_eq!(mine[0].id, r2.id);
    assert_eq!(mine[0].status, "refused");
    assert_eq!(
        mine[0].outcome.as_deref(),
        Some("identity_not_confirmed: send proof of address")
    );
}

/// The office opening a waiting correction's fields is one leaf; the
/// queue's count opens nothing; a refusal's note is sealed for the person
/// (no file of the vault holds it in the clear) and read back by them.
#[test]
fn opening_a_correction_is_logged_and_a_note_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (v, c) = setup_on(&Backend::Sqlite, dir.path());
    let officer = v.principal("officer").unwrap();
    let code = v.issue_access_code(&officer, "cust-portal-1").unwrap();
    let s = v.redeem_access_code(&code.code).unwrap().unwrap();
    let fields = serde_json::json!({"street": "7 Quenby Ct", "city": "Springfield", "state": "IL", "zip": "62701"});
    let r = v
        .request_correction(
            &s.principal,
            &s.subject,
            "address",
            &fields.to_string(),
            None,
        )
        .unwrap();
    let size = v.checkpoint_size().unwrap();
    assert_eq!(v.rights_requests_waiting(&officer).unwrap(), 1);
    assert_eq!(v.checkpoint_size().unwrap(), size, "a count opens nothing");
    let listed = v.rights_requests(&officer).unwrap();
    assert!(listed[0].proposed.is_some());
    assert_eq!(
        v.checkpoint_size().unwrap(),
        size + 1,
        "one leaf for the opening"
    );
    c.advance(1000);
    v.refuse_rights_request(&officer, &r.id, "other", "Ravensworth-note-marker")
        .unwrap();
    let mine = v.person_requests(&s.principal, &s.subject).unwrap();
    assert_eq!(
        mine[0].outcome.as_deref(),
        Some("other: Ravensworth-note-marker")
    );
    drop(v);
    for (name, bytes) in vault_files(dir.path()) {
        assert!(
            !contains(&bytes, b"Ravensworth-note-marker"),
            "the note in {name}"
        );
        assert!(
            !contains(&bytes, b"Quenby"),
            "the proposed street in {name}"
        );
    }
}
