//! One NDJSON collection line, through the facade's real path: `Vault::
//! collect` of a vault under the postal pack, as the `collector` role
//! (`postvault collect`, `POST /v1/records`). The line is parsed, its
//! subject id checked, its category, purpose and legal basis decided, its
//! fields minimized, and, if accepted, sealed and stored with its leaf.
//!
//! The vault lives in `$TMPDIR` for the process (`.ci/fuzz.sh` gives each
//! run a scratch directory it removes).
//!
//! Holds: no panic; a line is never a fault of the vault (`collect`
//! answers, it does not fail); a blank line counts for nothing, any other
//! is accepted or rejected, once; a rejection names line 1 and a stable
//! code, a field only by a pack's name or `?`, and its message never
//! quotes a value of the line (ARCHITECTURE.md invariant 1: a value that
//! holds `@`, `#` or a non-ASCII character, as an address or a name does,
//! must not appear in it).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use postvault::{CollectOptions, OpenOptions, Principal, Vault};
use serde_json::Value;

static VAULT: LazyLock<(Vault, Principal)> = LazyLock::new(|| {
    let dir = tempfile::Builder::new()
        .prefix("postvault-fuzz-")
        .tempdir()
        .expect("a scratch directory")
        .keep();
    let vault = Vault::init(&dir.join("vault"), OpenOptions::default()).expect("init");
    vault
        .add_principal("fuzz-ingest", "collector")
        .expect("a collector");
    let principal = vault.principal("fuzz-ingest").expect("the collector");
    (vault, principal)
});

/// Every string of a JSON value, keys included.
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => {
            for (k, v) in o {
                out.push(k);
                strings(v, out);
            }
        }
        _ => {}
    }
}

fn identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fuzz_target!(|data: &[u8]| {
    let line = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let (vault, principal) = &*VAULT;
    let report = vault
        .collect(
            principal,
            &mut &line[..],
            &CollectOptions::default(),
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("collect failed on one line: {e} ({})", e.code()));
    assert!(report.failure.is_none(), "{report:?}");
    let blank = std::str::from_utf8(line).is_ok_and(|s| s.trim().is_empty());
    if blank {
        assert_eq!((report.accepted, report.rejected), (0, 0), "{report:?}");
        return;
    }
    assert_eq!(report.accepted + report.rejected, 1, "{report:?}");
    assert_eq!(report.errors.len() as u64, report.rejected, "{report:?}");
    let Some(e) = report.errors.first() else {
        return;
    };
    assert_eq!(e.line, 1);
    assert!(identifier(&e.code), "{e:?}");
    if let Some(field) = &e.field {
        assert!(field == "?" || identifier(field), "{e:?}");
    }
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return;
    };
    let mut found = Vec::new();
    strings(&value, &mut found);
    for s in found {
        let personal =
            s.chars().count() >= 4 && s.chars().any(|c| c == '@' || c == '#' || !c.is_ascii());
        assert!(
            !(personal && e.message.contains(s)),
            "a rejection quotes a value of the line: {e:?}"
        );
    }
});
