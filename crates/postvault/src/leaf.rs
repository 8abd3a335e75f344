//! Access events and their leaf encoding: canonical JSON (RFC 8785 JCS:
//! sorted keys, no spaces) of what was decided, by which role and pseudonymous principal, for
//! which purpose, under which pack version, with a subject tag instead of any
//! identifier. Byte format: docs/formats.md.

use serde::{Deserialize, Serialize};

/// Leaf format version.
pub const LEAF_VERSION: u32 = 1;

/// Who acted, without naming them: the role and a keyed hash of the name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    /// Hex of a keyed hash of the principal name.
    pub id: String,
    pub role: String,
}

/// One access decision as recorded in the log. The leaf bytes do not depend
/// on the order the fields are declared in (see [`Event::to_leaf`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// `collect`, `read`, ... (docs/formats.md lists them).
    pub action: String,
    /// Categories returned (read) or stored (collect), sorted.
    pub categories: Vec<String>,
    /// Records returned (read) or stored (collect).
    pub count: u64,
    /// `allow` or `deny`.
    pub decision: String,
    /// The legal instrument, where one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instrument: Option<String>,
    pub pack: String,
    pub principal: Actor,
    /// The declared purpose; for a collection batch, its purposes joined by `,`.
    pub purpose: Option<String>,
    /// Ids of the policies behind withheld or rejected parts, sorted.
    pub reasons: Vec<String>,
    /// Lines rejected (collect only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<u64>,
    /// What an operational batch covered (collect: the batch id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Base64 of HMAC(subject tag key, leaf index) for targeted access; random
    /// bytes when the subject is unknown; absent for batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_tag: Option<String>,
    /// Unix milliseconds.
    pub time: i64,
    pub v: u32,
}

impl Event {
    /// The exact leaf bytes: the RFC 8785 (JCS) canonical JSON of the event,
    /// keys sorted by their UTF-16 code units whatever order the struct
    /// declares them in, so reordering or adding fields never changes how
    /// an existing field is encoded.
    pub fn to_leaf(&self) -> Vec<u8> {
        // Strings, integers, booleans and null only: canonicalization of
        // these cannot fail.
        serde_json_canonicalizer::to_vec(self).unwrap_or_default()
    }

    pub fn from_leaf(bytes: &[u8]) -> Option<Event> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The leaves of one event that differ only in their subject tag (an
/// erasure's, one a person): the canonical JSON is made once and each
/// leaf's tag spliced into it. The base64 of a 16-byte tag always has 24
/// characters, none of which JSON escapes, and `subject_tag`'s place among
/// the sorted keys does not depend on its value, so every leaf is byte for
/// byte what [`Event::to_leaf`] makes of the event with that tag (tested).
pub(crate) struct TaggedLeaves {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl TaggedLeaves {
    /// `None` when the event's encoding does not hold its tag exactly once
    /// where a tag goes (the caller then encodes each leaf in full).
    pub(crate) fn new(mut event: Event) -> Option<Self> {
        const MARK: &str = "PVTAGPLACEHOLDER00000000";
        event.subject_tag = Some(MARK.into());
        let bytes = event.to_leaf();
        let needle = format!("\"subject_tag\":\"{MARK}\"");
        let text = std::str::from_utf8(&bytes).ok()?;
        let at = text.find(&needle)?;
        if text.matches(MARK).count() != 1 {
            return None;
        }
        let head_end = at + needle.len() - MARK.len() - 1;
        Some(Self {
            head: bytes[..head_end].to_vec(),
            tail: bytes[head_end + MARK.len()..].to_vec(),
        })
    }

    /// The leaf with `tag`.
    pub(crate) fn leaf(&self, tag: &[u8; 16]) -> Vec<u8> {
        use base64::Engine as _;
        let mut out = Vec::with_capacity(self.head.len() + 24 + self.tail.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(tag)
                .as_bytes(),
        );
        out.extend_from_slice(&self.tail);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            action: "read".into(),
            categories: vec!["address".into()],
            count: 2,
            decision: "allow".into(),
            instrument: Some("x".into()),
            pack: "sha256:0".into(),
            principal: Actor {
                id: "ab".into(),
                role: "delivery".into(),
            },
            purpose: Some("delivery".into()),
            reasons: vec!["R1".into()],
            rejected: Some(1),
            selector: Some("batch:1".into()),
            subject_tag: Some("dGFn".into()),
            time: 5,
            v: LEAF_VERSION,
        }
    }

    /// The leaf bytes of existing leaves, byte for byte (they are hashed into
    /// the log: any change here breaks every published proof).
    #[test]
    fn leaf_bytes_are_those_of_existing_leaves() {
        let mut e = event();
        assert_eq!(
            String::from_utf8(e.to_leaf()).unwrap(),
            r#"{"action":"read","categories":["address"],"count":2,"decision":"allow","instrument":"x","pack":"sha256:0","principal":{"id":"ab","role":"delivery"},"purpose":"delivery","reasons":["R1"],"rejected":1,"selector":"batch:1","subject_tag":"dGFn","time":5,"v":1}"#
        );
        e.instrument = None;
        e.rejected = None;
        e.selector = None;
        e.subject_tag = None;
        e.purpose = None;
        e.time = -1_700_000_000_000;
        e.principal.role = "a\"b\\c\u{1}\n é".into();
        assert_eq!(
            String::from_utf8(e.to_leaf()).unwrap(),
            r#"{"action":"read","categories":["address"],"count":2,"decision":"allow","pack":"sha256:0","principal":{"id":"ab","role":"a\"b\\c\u0001\n é"},"purpose":null,"reasons":["R1"],"time":-1700000000000,"v":1}"#
        );
        assert_eq!(Event::from_leaf(&e.to_leaf()), Some(e));
    }

    /// A leaf spliced from a template is the leaf encoded in full, for any
    /// tag, and for events whose other strings need escaping.
    #[test]
    fn tagged_leaves_are_the_leaves_encoded_in_full() {
        use base64::Engine as _;
        let mut e = event();
        e.principal.role = "a\"b\\c\u{1}\n é".into();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for base in [e.clone(), {
            let mut d = e.clone();
            d.reasons = vec![];
            d.instrument = None;
            d
        }] {
            let t = TaggedLeaves::new(base.clone()).unwrap();
            for _ in 0..1_000 {
                let mut tag = [0u8; 16];
                for b in &mut tag {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                let mut full = base.clone();
                full.subject_tag = Some(base64::engine::general_purpose::STANDARD.encode(tag));
                assert_eq!(t.leaf(&tag), full.to_leaf());
            }
        }
        // A value that holds the placeholder elsewhere gets no template.
        let mut odd = event();
        odd.pack = "PVTAGPLACEHOLDER00000000".into();
        assert!(TaggedLeaves::new(odd).is_none());
    }

    /// The same fields declared in another order give the same bytes.
    #[test]
    fn leaf_bytes_do_not_depend_on_field_order() {
        #[derive(Serialize)]
        struct Shuffled<'a> {
            v: u32,
            time: i64,
            principal: &'a Actor,
            subject_tag: &'a Option<String>,
            selector: &'a Option<String>,
            rejected: &'a Option<u64>,
            reasons: &'a [String],
            purpose: &'a Option<String>,
            pack: &'a str,
            instrument: &'a Option<String>,
            decision: &'a str,
            count: u64,
            categories: &'a [String],
            action: &'a str,
        }
        let e = event();
        let shuffled = Shuffled {
            v: e.v,
            time: e.time,
            principal: &e.principal,
            subject_tag: &e.subject_tag,
            selector: &e.selector,
            rejected: &e.rejected,
            reasons: &e.reasons,
            purpose: &e.purpose,
            pack: &e.pack,
            instrument: &e.instrument,
            decision: &e.decision,
            count: e.count,
            categories: &e.categories,
            action: &e.action,
        };
        assert_ne!(serde_json::to_vec(&shuffled).unwrap(), e.to_leaf());
        assert_eq!(
            serde_json_canonicalizer::to_vec(&shuffled).unwrap(),
            e.to_leaf()
        );
    }
}
