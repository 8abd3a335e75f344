//! Checks of [`crate::KeyStore`]: subject keys, secrets, rotation and the
//! log state.

use super::*;

pub fn subject_keys_are_kept_once(k: &dyn KeyStore) {
    let a = SubjectKeys {
        subject: [1; 16],
        data: vec![1; 60],
        tag: vec![2; 60],
    };
    let replacement = SubjectKeys {
        data: vec![9; 60],
        ..a.clone()
    };
    assert!(
        k.put_subject_keys(std::slice::from_ref(&a))
            .unwrap()
            .is_empty()
    );
    assert_eq!(k.put_subject_keys(&[replacement]).unwrap(), vec![[1; 16]]);
    assert_eq!(k.subject_keys(&[1; 16]).unwrap(), Some(a));
    assert_eq!(k.subject_keys(&[2; 16]).unwrap(), None);
}

/// `subject_keys_many` answers each ref asked for at its place, in order
/// or not, across gaps of refs not asked for, past the last key, and for a
/// ref asked twice.
pub fn subject_keys_are_found_many_at_once(k: &dyn KeyStore) {
    let keys_of = |i: u16| {
        let mut r = [0u8; 16];
        r[..2].copy_from_slice(&i.to_be_bytes());
        SubjectKeys {
            subject: r,
            data: vec![(i % 251) as u8; 60],
            tag: vec![1; 60],
        }
    };
    // Every third of 0..300 has keys.
    let stored: Vec<SubjectKeys> = (0..300u16)
        .filter(|i| i.is_multiple_of(3))
        .map(keys_of)
        .collect();
    assert!(k.put_subject_keys(&stored).unwrap().is_empty());
    let has = |i: u16| i.is_multiple_of(3) && i < 300;
    let check = |asked: &[u16]| {
        let refs: Vec<SubjectRef> = asked.iter().map(|&i| keys_of(i).subject).collect();
        let got = k.subject_keys_many(&refs).unwrap();
        assert_eq!(got.len(), asked.len());
        for (&i, g) in asked.iter().zip(&got) {
            assert_eq!(g.as_ref(), has(i).then(|| keys_of(i)).as_ref(), "ref {i}");
        }
    };
    // Dense, in order: a walk.
    check(&(0..120).collect::<Vec<_>>());
    // Gaps wider than a walk passes, and refs past the last key.
    check(&[0, 3, 90, 91, 93, 240, 297, 298, 299, 300, 301, 5000]);
    // The first ref missing, one asked twice, out of order.
    check(&[1, 3, 3, 4, 6]);
    check(&[9, 3, 600, 0]);
    check(&[]);
    check(&[7000, 7001]);
}

pub fn secrets_are_write_once(k: &dyn KeyStore) {
    k.put_secret("master", b"k1").unwrap();
    assert!(matches!(
        k.put_secret("master", b"k2"),
        Err(StoreError::SecretExists(_))
    ));
    assert_eq!(k.secret("master").unwrap(), Some(b"k1".to_vec()));
    assert_eq!(k.secret("other").unwrap(), None);
}

pub fn secrets_can_be_destroyed(k: &dyn KeyStore) {
    k.put_secret("cover:1", b"key").unwrap();
    assert!(k.delete_secret("cover:1").unwrap());
    assert_eq!(k.secret("cover:1").unwrap(), None);
    assert!(!k.delete_secret("cover:1").unwrap());
}

/// Secrets destroyed only while a guard secret still holds the value given:
/// a guard deleted or changed meanwhile cancels the destruction.
pub fn secrets_are_destroyed_only_under_their_guard(k: &dyn KeyStore) {
    k.put_secret("hold:1", b"key").unwrap();
    k.put_secret("hold-ending:1", b"mine").unwrap();
    assert!(
        !k.delete_secrets_guarded("hold-ending:1", b"theirs", "sealing:1:", &["hold:1".into()])
            .unwrap(),
        "another value: nothing goes"
    );
    assert_eq!(k.secret("hold:1").unwrap().as_deref(), Some(&b"key"[..]));
    assert_eq!(
        k.secret("hold-ending:1").unwrap().as_deref(),
        Some(&b"mine"[..])
    );
    assert!(
        k.delete_secrets_guarded(
            "hold-ending:1",
            b"mine",
            "sealing:1:",
            &["hold:1".into(), "hold:9".into()]
        )
        .unwrap()
    );
    assert_eq!(k.secret("hold:1").unwrap(), None);
    assert_eq!(k.secret("hold-ending:1").unwrap(), None);
    // The guard cancelled (deleted by another process): the key stays.
    k.put_secret("hold:2", b"key").unwrap();
    k.put_secret("hold-ending:2", b"mine").unwrap();
    assert!(k.delete_secret("hold-ending:2").unwrap());
    assert!(
        !k.delete_secrets_guarded("hold-ending:2", b"mine", "sealing:2:", &["hold:2".into()])
            .unwrap()
    );
    assert_eq!(k.secret("hold:2").unwrap().as_deref(), Some(&b"key"[..]));
    // A secret under the prefix not named (a process sealing under the
    // key): nothing goes; named (a stale one, destroyed with the key): all
    // go.
    k.put_secret("hold-ending:3", b"mine").unwrap();
    k.put_secret("hold:3", b"key").unwrap();
    k.put_secret("sealing:3:a", b"t").unwrap();
    assert!(
        !k.delete_secrets_guarded("hold-ending:3", b"mine", "sealing:3:", &["hold:3".into()])
            .unwrap()
    );
    assert_eq!(k.secret("hold:3").unwrap().as_deref(), Some(&b"key"[..]));
    assert_eq!(
        k.secret("hold-ending:3").unwrap().as_deref(),
        Some(&b"mine"[..])
    );
    assert!(
        k.delete_secrets_guarded(
            "hold-ending:3",
            b"mine",
            "sealing:3:",
            &["hold:3".into(), "sealing:3:a".into()]
        )
        .unwrap()
    );
    assert!(k.secret_names("sealing:3:").unwrap().is_empty());
    assert_eq!(k.secret("hold:3").unwrap(), None);
}

pub fn secrets_are_listed_raced_and_destroyed_in_batches(k: &dyn KeyStore) {
    assert_eq!(
        k.put_secret_or_get("retention:a:1", b"first").unwrap(),
        b"first"
    );
    assert_eq!(
        k.put_secret_or_get("retention:a:1", b"second").unwrap(),
        b"first"
    );
    k.put_secret("retention:b:2", b"x").unwrap();
    k.put_secret("cover:1", b"y").unwrap();
    assert_eq!(
        k.secret_names("retention:").unwrap(),
        vec!["retention:a:1".to_string(), "retention:b:2".to_string()]
    );
    assert_eq!(
        k.delete_secrets(&["retention:a:1".into(), "retention:zz".into()])
            .unwrap(),
        1
    );
    assert_eq!(k.secret_names("retention:").unwrap().len(), 1);
    k.put_subject_keys(&[SubjectKeys {
        subject: [3; 16],
        data: vec![1],
        tag: vec![2],
    }])
    .unwrap();
    assert_eq!(
        k.delete_subject_keys(&[[4; 16], [3; 16], [3; 16]]).unwrap(),
        vec![[3; 16]],
        "only the subject whose keys existed, once"
    );
    assert_eq!(k.subject_keys(&[3; 16]).unwrap(), None);
}

/// Keys destroyed as they were read: a subject whose keys were made again
/// meanwhile keeps the new ones.
pub fn subject_keys_are_destroyed_only_as_read(k: &dyn KeyStore) {
    let keys = |i: u8, data: u8| SubjectKeys {
        subject: [i; 16],
        data: vec![data; 8],
        tag: vec![i; 8],
    };
    k.put_subject_keys(&[keys(5, 1), keys(6, 1)]).unwrap();
    // 6's keys destroyed and made again elsewhere: new bytes.
    k.delete_subject_keys(&[[6; 16]]).unwrap();
    k.put_subject_keys(&[keys(6, 2)]).unwrap();
    assert_eq!(
        k.delete_subject_keys_as(&[keys(5, 1), keys(6, 1), keys(7, 1)])
            .unwrap(),
        vec![[5; 16]],
        "only the keys still as read"
    );
    assert_eq!(k.subject_keys(&[5; 16]).unwrap(), None);
    assert_eq!(k.subject_keys(&[6; 16]).unwrap(), Some(keys(6, 2)));
}

pub fn rewrap_changes_every_key_in_one_transaction(k: &dyn KeyStore) {
    let keys: Vec<SubjectKeys> = (1..=5u8)
        .map(|i| SubjectKeys {
            subject: [i; 16],
            data: vec![i; 4],
            tag: vec![i, i],
        })
        .collect();
    k.put_subject_keys(&keys).unwrap();
    k.put_secret("retention:a:1", b"old").unwrap();
    k.put_secret("plain", b"p").unwrap();
    k.put_secret("gone", b"g").unwrap();
    assert_eq!(k.subject_refs(None, 2).unwrap(), vec![[1; 16], [2; 16]]);
    assert_eq!(
        k.subject_refs(Some(&[2; 16]), 10).unwrap(),
        vec![[3; 16], [4; 16], [5; 16]]
    );
    // A failure midway changes nothing.
    let r = k.rewrap(
        &mut |item| match item {
            crate::KeyItem::Subject(sk) if sk.subject == [4; 16] => {
                Err(StoreError::Corrupt("injected".into()))
            }
            crate::KeyItem::Subject(sk) => {
                Ok(crate::KeyAction::Subject(vec![0], vec![0, sk.subject[0]]))
            }
            crate::KeyItem::Secret(..) => Ok(crate::KeyAction::Keep),
        },
        &[("new".into(), b"n".to_vec())],
    );
    assert!(r.is_err());
    assert_eq!(k.subject_keys(&[1; 16]).unwrap().unwrap().data, vec![1; 4]);
    assert!(k.secret("new").unwrap().is_none());
    let n = k
        .rewrap(
            &mut |item| {
                Ok(match item {
                    crate::KeyItem::Subject(sk) => {
                        crate::KeyAction::Subject(vec![sk.subject[0], 9], vec![9])
                    }
                    crate::KeyItem::Secret("retention:a:1", _) => {
                        crate::KeyAction::Secret(b"new wrap".to_vec())
                    }
                    crate::KeyItem::Secret("gone", _) => crate::KeyAction::Delete,
                    crate::KeyItem::Secret(..) => crate::KeyAction::Keep,
                })
            },
            &[("new".into(), b"n".to_vec())],
        )
        .unwrap();
    assert_eq!(
        n,
        crate::RewrapCount {
            subjects: 5,
            secrets: 1,
            deleted: 1,
            inserted: 1
        }
    );
    for i in 1..=5u8 {
        let sk = k.subject_keys(&[i; 16]).unwrap().unwrap();
        assert_eq!((sk.data, sk.tag), (vec![i, 9], vec![9]));
    }
    assert_eq!(k.secret("retention:a:1").unwrap().unwrap(), b"new wrap");
    assert_eq!(k.secret("plain").unwrap().unwrap(), b"p");
    assert!(k.secret("gone").unwrap().is_none());
    assert_eq!(k.secret("new").unwrap().unwrap(), b"n");
}

pub fn log_state_swaps_only_from_the_state_expected(k: &dyn KeyStore) {
    use crate::{LogState, LogStateSwap};
    let state = |size: u64, signed: u64| LogState {
        size,
        root: [size as u8; 32],
        note: format!("note {size}\n"),
        signed,
    };
    assert_eq!(k.log_state().unwrap(), None);
    assert_eq!(
        k.swap_log_state(None, &state(5, 1)).unwrap(),
        LogStateSwap::Swapped
    );
    assert_eq!(k.log_state().unwrap(), Some(state(5, 1)));
    // A second signer that also read "nothing yet" loses.
    assert_eq!(
        k.swap_log_state(None, &state(6, 1)).unwrap(),
        LogStateSwap::Changed(Some(state(5, 1)))
    );
    // So does one that read an older or another state.
    assert_eq!(
        k.swap_log_state(Some(&state(4, 1)), &state(9, 2)).unwrap(),
        LogStateSwap::Changed(Some(state(5, 1)))
    );
    let mut other_root = state(5, 1);
    other_root.root = [0; 32];
    assert_eq!(
        k.swap_log_state(Some(&other_root), &state(9, 2)).unwrap(),
        LogStateSwap::Changed(Some(state(5, 1)))
    );
    assert_eq!(
        k.swap_log_state(Some(&state(5, 1)), &state(9, 2)).unwrap(),
        LogStateSwap::Swapped
    );
    assert_eq!(k.log_state().unwrap(), Some(state(9, 2)));
}
