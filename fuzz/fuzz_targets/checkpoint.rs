//! Checkpoints and signed notes: `parse_note`, `open_checkpoint` and
//! `verify_cosigned`, what a client of the log (`log verify --checkpoint`,
//! a witness, an auditor) runs on a note it was handed.
//!
//! Input: `<log verifier key>\n<witness verifier key>\n<note>`
//! (`postvault_fuzz::keyed_input`). Holds: no panic; a note that parses
//! writes back byte for byte from its parts (text, blank line, signature
//! lines), so what is verified is what was received; a checkpoint that
//! opens is one `parse_note` accepts, of the key's origin; a cosigned
//! checkpoint is the same checkpoint, each cosigner named once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postvault_log::{
    CosignatureVerifier, log_key_name, open_checkpoint, parse_note, verify_cosigned,
};

fuzz_target!(|data: &[u8]| {
    let Some((log_key, witness_key, note)) = postvault_fuzz::keyed_input(data) else {
        return;
    };
    let parsed = parse_note(note);
    if let Ok(n) = &parsed {
        let mut again = n.text.clone().into_bytes();
        again.push(b'\n');
        for s in &n.signatures {
            again.extend_from_slice(s.to_line().as_bytes());
        }
        assert_eq!(again, note, "a parsed note writes back as received");
        assert!(n.text.ends_with('\n'));
        assert!(!n.signatures.is_empty());
    }
    let Ok(note) = std::str::from_utf8(note) else {
        return;
    };
    let opened = open_checkpoint(note, log_key);
    if let Ok(cp) = &opened {
        assert!(
            parsed.is_ok(),
            "a checkpoint that opens is a well-formed note"
        );
        assert_eq!(Ok(cp.origin.clone()), log_key_name(log_key).map_err(|_| ()));
    }
    let witnesses: Vec<CosignatureVerifier> =
        CosignatureVerifier::new(witness_key).into_iter().collect();
    if let Ok(w) = verify_cosigned(note, log_key, &witnesses) {
        assert_eq!(opened.as_ref().ok(), Some(&w.checkpoint));
        assert!(w.cosigned.len() <= witnesses.len());
        for c in &w.cosigned {
            assert!(
                note.contains(c.line.as_str()),
                "a cosignature is a line of the note"
            );
        }
    }
});
