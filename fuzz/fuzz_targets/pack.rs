//! Policy packs: one of the four files of the postal pack replaced by the
//! input, loaded by `Pack::load` with its bounds, on a thread with a 2 MiB
//! stack (a tokio worker's, where `serve` loads a staged pack).
//!
//! Input: the file's name on the first line (`taxonomy.toml`,
//! `schema.cedarschema`, `policies.cedar` or `disclosure.toml`; any other
//! first line picks one by its length), then the file's text.
//!
//! Holds: no panic and no stack overflow (the bounds refuse what Cedar's
//! recursive parser cannot take); a refusal names a file of the pack, the
//! check and a line from 1; a pack that loads has the version of its
//! sources and denies every request for a prohibited purpose (R25: the
//! load refuses a pack that permits one, and the engine's guard denies it
//! anyway).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postvault_policy::{
    DISCLOSURE_FILE, Effect, POLICIES_FILE, Pack, PackSources, SCHEMA_FILE, TAXONOMY_FILE,
};

const FILES: [&str; 4] = [TAXONOMY_FILE, SCHEMA_FILE, POLICIES_FILE, DISCLOSURE_FILE];

fn check(src: PackSources) {
    match Pack::load(&src) {
        Ok(pack) => {
            assert_eq!(pack.version(), src.version());
            let t = pack.taxonomy();
            for req in pack.requests() {
                if t.purpose(req.purpose).prohibited() {
                    assert_eq!(pack.decide(&req).effect, Effect::Deny, "{req:?}");
                }
            }
        }
        Err(e) => {
            assert!(FILES.contains(&e.file.as_str()), "{e:?}");
            assert!(!e.rule.is_empty() && !e.message.is_empty(), "{e:?}");
            assert_ne!(e.line, Some(0), "{e:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
    let file = FILES
        .into_iter()
        .find(|f| *f == first)
        .unwrap_or(FILES[first.len() % FILES.len()]);
    let mut src = PackSources::postal();
    let slot = match file {
        TAXONOMY_FILE => &mut src.taxonomy,
        SCHEMA_FILE => &mut src.schema,
        POLICIES_FILE => &mut src.policies,
        _ => src.disclosure.get_or_insert_default(),
    };
    *slot = body.to_owned();
    let worker = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || check(src))
        .expect("a thread starts");
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
});
