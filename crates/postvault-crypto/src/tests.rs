#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::*;

fn master() -> MasterKey {
    MasterKey::generate(&SystemRandom::new()).unwrap()
}

#[test]
fn wrapped_keys_are_bound_to_subject_and_kind() {
    let rng = SystemRandom::new();
    let m = master();
    let a = m.subject_ref("cust-1");
    let b = m.subject_ref("cust-2");
    let w = m.new_wrapped(&rng, KeyKind::Data, &a).unwrap();
    assert_eq!(w.len(), WRAPPED_LEN);
    assert!(m.data_key(&w, &a).is_ok());
    assert_eq!(m.data_key(&w, &b).unwrap_err(), CryptoError::Open);
    assert_eq!(m.tag_key(&w, &a).unwrap_err(), CryptoError::Open);
    // Another master key cannot unwrap it.
    assert_eq!(master().data_key(&w, &a).unwrap_err(), CryptoError::Open);
}

#[test]
fn new_subject_keys_match_their_wrapped_forms() {
    let rng = SystemRandom::new();
    let m = master();
    let s = m.subject_ref("cust-1");
    let k = m.new_subject_keys(&rng, &s).unwrap();
    let env = k.data.seal(&rng, b"aad", b"hello").unwrap();
    let unwrapped = m.data_key(&k.wrapped_data, &s).unwrap();
    assert_eq!(unwrapped.open(b"aad", &env).unwrap(), b"hello");
    assert_eq!(m.tag_key(&k.wrapped_tag, &s).unwrap().tag(3), k.tag.tag(3));
    assert_eq!(
        m.data_key(&k.wrapped_tag, &s).unwrap_err(),
        CryptoError::Open
    );
}

#[test]
fn master_key_round_trips_and_rejects_bad_lengths() {
    let m = master();
    let again = MasterKey::from_bytes(m.to_bytes().as_ref()).unwrap();
    assert_eq!(m.subject_ref("x"), again.subject_ref("x"));
    assert_eq!(
        MasterKey::from_bytes(&[0u8; 31]).unwrap_err(),
        CryptoError::KeyLength(31)
    );
}

#[test]
fn keyed_hashes_separate_keys_and_domains() {
    let m = master();
    let n = master();
    assert_eq!(m.subject_ref("cust-1"), m.subject_ref("cust-1"));
    assert_ne!(m.subject_ref("cust-1"), n.subject_ref("cust-1"));
    assert_ne!(m.subject_ref("cust-1"), m.subject_ref("cust-2"));
    let e = m.blind_index("account_identity.email", b"a@example.com");
    assert_eq!(e, m.blind_index("account_identity.email", b"a@example.com"));
    assert_ne!(e, m.blind_index("account_identity.phone", b"a@example.com"));
    assert_ne!(e, n.blind_index("account_identity.email", b"a@example.com"));
}

#[test]
fn leaf_tags_depend_on_key_and_index() {
    let rng = SystemRandom::new();
    let m = master();
    let s = m.subject_ref("cust-1");
    let w = m.new_wrapped(&rng, KeyKind::Tag, &s).unwrap();
    let k = m.tag_key(&w, &s).unwrap();
    let k2 = TagKey::from_bytes(k.to_bytes().as_ref()).unwrap();
    assert_eq!(k.tag(7), k2.tag(7));
    assert_ne!(k.tag(7), k.tag(8));
    let other = m.new_wrapped(&rng, KeyKind::Tag, &s).unwrap();
    assert_ne!(k.tag(7), m.tag_key(&other, &s).unwrap().tag(7));
    assert_ne!(random_token(&rng).unwrap(), random_token(&rng).unwrap());
}

proptest! {
    #[test]
    fn seal_open_round_trip(plain in proptest::collection::vec(any::<u8>(), 0..2048),
                            aad in proptest::collection::vec(any::<u8>(), 0..64),
                            flip in any::<prop::sample::Index>()) {
        let rng = SystemRandom::new();
        let m = master();
        let s = m.subject_ref("p");
        let key = m.data_key(&m.new_wrapped(&rng, KeyKind::Data, &s).unwrap(), &s).unwrap();
        let env = key.seal(&rng, &aad, &plain).unwrap();
        prop_assert_eq!(env.len(), plain.len() + SEAL_OVERHEAD);
        prop_assert_eq!(key.open(&aad, &env).unwrap(), plain.clone());
        // Any changed byte, or other associated data, fails to open.
        let mut bad = env.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 0x01;
        prop_assert_eq!(key.open(&aad, &bad).unwrap_err(), CryptoError::Open);
        let mut other_aad = aad.clone();
        other_aad.push(1);
        prop_assert_eq!(key.open(&other_aad, &env).unwrap_err(), CryptoError::Open);
        prop_assert_eq!(key.open(&aad, &env[..env.len().min(SEAL_OVERHEAD - 1)]).unwrap_err(), CryptoError::Open);
        // A plaintext of some length never shows up in its envelope.
        if plain.len() >= 16 {
            prop_assert!(!env.windows(plain.len()).any(|w| w == plain.as_slice()));
        }
    }
}

#[test]
fn a_record_key_needs_both_the_subject_and_the_period_key() {
    let rng = SystemRandom::new();
    let m = MasterKey::generate(&rng).unwrap();
    let subject = m
        .data_key(&m.new_wrapped(&rng, KeyKind::Data, b"s1").unwrap(), b"s1")
        .unwrap();
    let other = m
        .data_key(&m.new_wrapped(&rng, KeyKind::Data, b"s2").unwrap(), b"s2")
        .unwrap();
    let day1 = m
        .data_key(&m.new_wrapped(&rng, KeyKind::Data, b"p1").unwrap(), b"p1")
        .unwrap();
    let day2 = m
        .data_key(&m.new_wrapped(&rng, KeyKind::Data, b"p2").unwrap(), b"p2")
        .unwrap();
    let sealed = subject
        .record_key(&day1)
        .unwrap()
        .seal(&rng, b"aad", b"secret")
        .unwrap();
    assert_eq!(
        subject
            .record_key(&day1)
            .unwrap()
            .open(b"aad", &sealed)
            .unwrap(),
        b"secret"
    );
    assert!(
        subject
            .record_key(&day2)
            .unwrap()
            .open(b"aad", &sealed)
            .is_err()
    );
    assert!(
        other
            .record_key(&day1)
            .unwrap()
            .open(b"aad", &sealed)
            .is_err()
    );
    assert!(subject.open(b"aad", &sealed).is_err());
    assert!(day1.open(b"aad", &sealed).is_err());
}

#[test]
fn pooled_nonces_never_repeat_and_seal_the_same_envelope_format() {
    let rng = SystemRandom::new();
    let m = MasterKey::generate(&rng).unwrap();
    let subject = m
        .data_key(&m.new_wrapped(&rng, KeyKind::Data, b"s1").unwrap(), b"s1")
        .unwrap();
    let period = m
        .data_key(&m.new_wrapped(&rng, KeyKind::Data, b"p1").unwrap(), b"p1")
        .unwrap();
    // The prepared keyer derives the very key record_key does.
    let keyer = period.record_keyer();
    let k1 = keyer.record_key(&subject).unwrap();
    let k2 = subject.record_key(&period).unwrap();
    let sealed = k1.seal(&rng, b"aad", b"secret").unwrap();
    assert_eq!(k2.open(b"aad", &sealed).unwrap(), b"secret");
    // Across several refills of the pool, every nonce is distinct and every
    // envelope opens.
    let mut nonces = Nonces::new();
    let mut seen = std::collections::HashSet::new();
    for i in 0..2000u32 {
        let env = k1
            .seal_from(&mut nonces, &rng, b"aad", &i.to_be_bytes())
            .unwrap();
        assert_eq!(env.len(), 4 + SEAL_OVERHEAD);
        assert!(seen.insert(env[..12].to_vec()), "nonce repeated at {i}");
        assert_eq!(k2.open(b"aad", &env).unwrap(), i.to_be_bytes());
    }
}

#[test]
fn cached_keys_stay_small_until_used() {
    // A vault caches tens of thousands of subject keys: what is not yet
    // used must not carry an AES-GCM or HMAC context.
    assert!(std::mem::size_of::<DataKey>() <= 96);
    assert!(std::mem::size_of::<TagKey>() <= 96);
}
