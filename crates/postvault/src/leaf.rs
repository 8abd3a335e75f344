//! Access events and their leaf encoding: canonical JSON (sorted keys, no
//! spaces) of what was decided, by which role and pseudonymous principal, for
//! which purpose, under which pack version, with a subject tag instead of any
//! identifier. Byte format: docs/formats.md.

use serde::{Deserialize, Serialize};

/// Leaf format version.
pub const LEAF_VERSION: u32 = 1;

/// Who acted, without naming them: the role and a keyed hash of the name.
///
/// Fields are declared in sorted order, so serializing the struct directly
/// gives the canonical bytes (`to_leaf`, checked against [`canonical`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    /// Hex of a keyed hash of the principal name.
    pub id: String,
    pub role: String,
}

/// One access decision as recorded in the log. Fields are declared in
/// sorted order (see [`Actor`]).
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
    /// The exact leaf bytes: canonical JSON. The fields are declared in
    /// sorted order and hold no map, so direct serialization is canonical.
    pub fn to_leaf(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_leaf(bytes: &[u8]) -> Option<Event> {
        serde_json::from_slice(bytes).ok()
    }
}

/// `v` with every object's keys in sorted order (serde_json may be built to
/// preserve insertion order, so sorting is done here, not assumed).
pub fn canonical(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn direct_serialization_is_canonical() {
        let mut e = Event {
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
        };
        for _ in 0..2 {
            let canon = serde_json::to_vec(&canonical(serde_json::to_value(&e).unwrap())).unwrap();
            assert_eq!(e.to_leaf(), canon);
            e.instrument = None;
            e.rejected = None;
            e.selector = None;
            e.subject_tag = None;
            e.purpose = None;
        }
    }
}
