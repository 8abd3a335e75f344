//! A vault records the pack it runs under; another pack is refused at open
//! unless staged; a staged change that widens access waits for its notice
//! period (R4), one that narrows applies at once.

use std::path::Path;
use std::sync::Arc;

use postvault::{Clock, FixedClock, OpenOptions, PackSources, Vault};
use serde_json::json;

use super::{Backend, clock, collect, line, opts, vault_on};

const DAY: i64 = 86_400_000;

/// The postal pack with marketing reading identity and address without
/// consent: a widening.
pub fn widened() -> PackSources {
    let mut s = PackSources::postal();
    s.taxonomy = s.taxonomy.replace(
        "marketing                  = \" C  C ",
        "marketing                  = \" Y  Y ",
    );
    assert_ne!(s, PackSources::postal());
    s
}

/// `base` with delivery no longer reading scan events: a narrowing.
pub fn narrowed(mut s: PackSources) -> PackSources {
    let before = s.taxonomy.clone();
    s.taxonomy = s.taxonomy.replace(
        "delivery                   = \" -  Y  Y  -  -  -  Y ",
        "delivery                   = \" -  Y  Y  -  -  -  - ",
    );
    assert_ne!(s.taxonomy, before);
    s
}

fn with_pack(c: &Arc<FixedClock>, pack: PackSources) -> OpenOptions {
    OpenOptions {
        pack: Some(pack),
        ..opts(c)
    }
}

fn open_err(b: &Backend, dir: &Path, o: OpenOptions) -> &'static str {
    match b.open(dir, o) {
        Ok(v) => panic!("opened under {}", v.pack().version()),
        Err(e) => e.code(),
    }
}

/// What marketing reads of `cust-1` (who gave no consent).
fn marketing_reads(v: &Vault) -> usize {
    v.read(&v.principal("promo").unwrap(), "cust-1", "marketing")
        .unwrap()
        .records
        .len()
}

fn delivery_scans(v: &Vault) -> usize {
    v.read(&v.principal("sorting").unwrap(), "cust-1", "delivery")
        .unwrap()
        .records
        .iter()
        .filter(|r| r.category == "scan_event")
        .count()
}

#[test]
fn a_pack_change_waits_for_its_notice_when_it_widens() {
    a_pack_change_waits_for_its_notice_when_it_widens_on(&Backend::Sqlite);
}

pub fn a_pack_change_waits_for_its_notice_when_it_widens_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let postal = PackSources::postal().version();
    let v = vault_on(b, dir.path(), &c);
    let r = collect(
        &v,
        "ingest",
        &[
            line("cust-1", "address", "delivery", json!({"street": "1 Elm St", "city": "Springfield", "state": "IL", "zip": "62701"})),
            line("cust-1", "scan_event", "delivery", json!({"imb": "00270123456123456789", "piece": "letter", "facility_zip": "60601", "op_code": "918", "event": "processed", "scanned_at": "2026-11-02T03:00:00Z"})),
        ]
        .join("\n"),
    );
    assert_eq!(r.rejected, 0, "{:?}", r.errors);
    assert_eq!(v.pack_status().unwrap().current, postal);
    assert_eq!(marketing_reads(&v), 0);
    drop(v);

    // Another pack, not staged: refused at open, with a way forward.
    assert_eq!(
        open_err(b, dir.path(), with_pack(&c, widened())),
        "pack_not_staged"
    );
    // The same pack named explicitly opens.
    drop(
        b.open(dir.path(), with_pack(&c, PackSources::postal()))
            .unwrap(),
    );

    // Staged: one leaf with both versions; it widens, so it waits 30 days.
    let v = b.open(dir.path(), opts(&c)).unwrap();
    let diff = v.policy_diff(Some(&widened())).unwrap();
    assert!(diff.widens);
    assert!(
        diff.cells
            .iter()
            .any(|c| c.role == "marketing" && c.category == "address")
    );
    let st = v.policy_stage(&widened()).unwrap();
    assert!(st.widens && !st.in_force);
    assert_eq!(st.notice_days, 30);
    assert_eq!(st.effective_at, postvault::format_ms(super::T0 + 30 * DAY));
    let l = crate::disclosure::leaf(&v, st.log_index);
    assert_eq!(l["action"], "policy_stage");
    assert_eq!(l["pack"], json!(postal));
    assert!(l["selector"].as_str().unwrap().starts_with(&st.to));
    assert_eq!(l["reasons"], json!(["widens"]));
    assert_eq!(v.pack_status().unwrap().staged.unwrap().version, st.to);
    // `policy diff` without a pack shows the staged change.
    assert_eq!(v.policy_diff(None).unwrap().to, st.to);
    drop(v);

    // During the notice period the vault runs the pack in force.
    c.advance(29 * DAY);
    assert_eq!(
        open_err(b, dir.path(), with_pack(&c, widened())),
        "pack_not_in_force"
    );
    let v = b.open(dir.path(), opts(&c)).unwrap();
    assert_eq!(v.pack().version(), postal);
    assert_eq!(marketing_reads(&v), 0);
    drop(v);

    // After it, the widened pack is in force; the old one is refused.
    c.advance(DAY);
    let v = b.open(dir.path(), opts(&c)).unwrap();
    assert_eq!(v.pack().version(), st.to);
    assert!(marketing_reads(&v) > 0);
    drop(v);
    drop(b.open(dir.path(), with_pack(&c, widened())).unwrap());
    assert_eq!(
        open_err(b, dir.path(), with_pack(&c, PackSources::postal())),
        "pack_not_staged"
    );

    // A narrowing applies at once.
    let v = b.open(dir.path(), opts(&c)).unwrap();
    assert_eq!(delivery_scans(&v), 1);
    let st = v.policy_stage(&narrowed(widened())).unwrap();
    assert!(!st.widens && st.in_force, "{:?}", st.diff.rules);
    assert_eq!(st.effective_at, postvault::format_ms(c.now_ms()));
    drop(v);
    let v = b.open(dir.path(), opts(&c)).unwrap();
    assert_eq!(v.pack().version(), st.to);
    assert_eq!(delivery_scans(&v), 0);

    // A new binary whose built-in pack differs changes nothing by itself:
    // the vault runs its recorded pack, and says the built-in one differs.
    let status = v.pack_status().unwrap();
    assert_eq!(status.current, st.to);
    assert_eq!(status.built_in, postal);
    assert!(status.staged.is_none());
    // Back to the built-in pack: it widens (scan events, marketing stays
    // narrower), so it waits.
    let back = v.policy_stage(&PackSources::postal()).unwrap();
    assert!(back.widens && !back.in_force);
    drop(v);
    // A vault that recorded no pack (made before packs were recorded)
    // adopts the one it is opened with, in one leaf naming both.
    let v = b.open(dir.path(), opts(&c)).unwrap();
    v.store().set_meta("pack_version", "").unwrap();
    let size = v.store().log_size().unwrap();
    drop(v);
    let v = b
        .open(dir.path(), with_pack(&c, PackSources::postal()))
        .unwrap();
    assert_eq!(v.pack().version(), postal);
    let l = crate::disclosure::leaf(&v, size);
    assert_eq!(l["action"], "policy_adopt");
    assert_eq!(l["pack"], json!(postal));
    assert!(l["selector"].as_str().unwrap().contains(&st.to));
    assert!(
        v.verify_log(&postvault::VerifyOptions::default())
            .unwrap()
            .ok
    );
}

/// A vault made with a pack of its own keeps it: opening without a pack runs
/// it, never the built-in one.
#[test]
fn a_vault_runs_the_pack_it_was_made_with() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = Vault::init(dir.path(), with_pack(&c, widened())).unwrap();
    let made = v.pack().version().to_string();
    drop(v);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert_eq!(v.pack().version(), made);
    assert_ne!(made, PackSources::postal().version());
    let diff = v.policy_diff(None).unwrap();
    assert_eq!(diff.to, PackSources::postal().version());
    assert!(!diff.widens, "the built-in pack narrows marketing back");
}
