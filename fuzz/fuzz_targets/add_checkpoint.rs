//! The tlog-witness `add-checkpoint` request body: `parse_add_checkpoint`,
//! `open_submission` and `Submission::check`, what a witness runs on any
//! body a client posts.
//!
//! Input: `<trusted log verifier key>\n<unused>\n<body>`
//! (`postvault_fuzz::keyed_input`). Holds: no panic; a body that parses
//! writes back byte for byte; a submission opened is the parsed request
//! with a checkpoint of a trusted origin, old size at most the new size;
//! every refusal carries one of the status codes tlog-witness fixes, and
//! a 409 names a size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postvault_log::{
    EMPTY_ROOT, Refusal, WitnessedTree, log_key_name, open_submission, parse_add_checkpoint,
};

fn statuses(r: &Refusal) {
    assert!(matches!(r.status(), 400 | 403 | 404 | 409 | 422), "{r:?}");
    assert_eq!(r.status() == 409, r.conflict_size().is_some(), "{r:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((log_key, _, body)) = postvault_fuzz::keyed_input(data) else {
        return;
    };
    let parsed = parse_add_checkpoint(body);
    if let Ok(req) = &parsed {
        assert_eq!(
            req.to_bytes(),
            body,
            "a parsed body writes back as received"
        );
    }
    let origin = log_key_name(log_key).ok();
    let trusted = |o: &str| (origin.as_deref() == Some(o)).then(|| vec![log_key.to_owned()]);
    let sub = match open_submission(body, &trusted) {
        Ok(sub) => sub,
        Err(r) => {
            statuses(&r);
            return;
        }
    };
    let req = parsed.expect("an opened submission parses");
    assert_eq!(sub.old_size, req.old_size);
    assert_eq!(sub.proof, req.proof);
    assert_eq!(sub.note, req.checkpoint);
    assert_eq!(Some(&sub.checkpoint.origin), origin.as_ref());
    assert!(sub.old_size <= sub.checkpoint.size);
    // A witness that never saw the log, one that holds the old size with
    // the empty tree's root, and one that holds the new tree itself.
    let held = [
        None,
        Some(WitnessedTree {
            size: sub.old_size,
            root: EMPTY_ROOT,
        }),
        Some(WitnessedTree {
            size: sub.checkpoint.size,
            root: sub.checkpoint.root,
        }),
    ];
    for latest in held {
        match sub.check(latest.as_ref()) {
            Ok(tree) => {
                assert_eq!(tree.size, sub.checkpoint.size);
                assert_eq!(tree.root, sub.checkpoint.root);
            }
            Err(r) => statuses(&r),
        }
    }
});
