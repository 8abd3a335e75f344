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

#[test]
fn a_master_key_sealed_under_an_external_key_opens_only_with_it() {
    let rng = SystemRandom::new();
    let legacy = master();
    let s = legacy.subject_ref("cust-1");
    let wrapped = legacy.new_wrapped(&rng, KeyKind::Data, &s).unwrap();
    // A new wrapping key: refs and blind indexes stay, wrapped keys move.
    let moved = legacy.with_new_kek(&rng).unwrap();
    assert_eq!(moved.subject_ref("cust-1"), s);
    assert_eq!(moved.blind_index("d", b"v"), legacy.blind_index("d", b"v"));
    assert_eq!(moved.data_key(&wrapped, &s).unwrap_err(), CryptoError::Open);
    let again = legacy
        .rewrap(&moved, &rng, KeyKind::Data, &s, &wrapped)
        .unwrap();
    let a = legacy.data_key(&wrapped, &s).unwrap();
    let b = moved.data_key(&again, &s).unwrap();
    let env = a.seal(&rng, b"x", b"same key").unwrap();
    assert_eq!(b.open(b"x", &env).unwrap(), b"same key");
    assert!(legacy.data_key(&again, &s).is_err());

    let ext = ExternalKey::generate(&rng).unwrap();
    let sealed = moved.seal_under(&ext, &rng, b"vault-1").unwrap();
    assert_eq!(MasterKey::sealed_key_id(&sealed), Some(ext.id()));
    let opened = MasterKey::unseal(&ext, &sealed, b"vault-1").unwrap();
    assert!(opened.data_key(&again, &s).is_ok());
    assert_eq!(opened.subject_ref("cust-1"), s);
    // Another key, another vault's id, or an altered byte: refused.
    let other = ExternalKey::generate(&rng).unwrap();
    match MasterKey::unseal(&other, &sealed, b"vault-1").unwrap_err() {
        CryptoError::WrongExternalKey {
            given,
            sealed_under,
        } => {
            assert_eq!((given, sealed_under), (other.id(), ext.id()));
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(
        MasterKey::unseal(&ext, &sealed, b"vault-2").unwrap_err(),
        CryptoError::Open
    );
    let mut bad = sealed.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(
        MasterKey::unseal(&ext, &bad, b"vault-1").unwrap_err(),
        CryptoError::Open
    );
    // The raw bytes of a sealed master key hold neither key.
    assert!(!sealed.windows(32).any(|w| w == moved.to_bytes().as_ref()));
}

#[test]
fn external_keys_parse_from_raw_hex_and_base64() {
    let rng = SystemRandom::new();
    let k = ExternalKey::generate(&rng).unwrap();
    let text = k.to_text();
    assert_eq!(text.len(), 65);
    let hex = ExternalKey::parse(text.as_bytes()).unwrap();
    assert_eq!(hex.id(), k.id());
    let raw: Vec<u8> = (0..32).map(|i| 0x80 | i).collect();
    let from_raw = ExternalKey::parse(&raw).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    assert_eq!(
        ExternalKey::parse(format!("{b64}\n").as_bytes())
            .unwrap()
            .id(),
        from_raw.id()
    );
    for bad in [&b"short"[..], b"", &[b'z'; 64]] {
        assert_eq!(
            ExternalKey::parse(bad).unwrap_err(),
            CryptoError::ExternalKeyFormat
        );
    }
    // Debug output names the key by its id, never its bytes.
    assert!(!format!("{k:?}").contains(text.trim()));
    assert!(format!("{k:?}").contains(&k.id()));
}
