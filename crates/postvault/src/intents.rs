//! Destruction written ahead: before any key is destroyed (a retention
//! sweep's period keys, an erasure's subject keys, a destroyed mail-cover
//! order's key, the hold keys of ended holds), an intent and its leaf are
//! committed saying what will be destroyed; after, a completion leaf says
//! what was. An intent a crash left open is carried out and completed when
//! the vault next opens, so the log accounts for every destruction whatever
//! the moment of the crash.
//!
//! Architecture invariant: no key is destroyed without an intent leaf
//! committed before, and every intent is completed by exactly one leaf.
//! Leaves name period and order keys (`retention:<category>:<day>`,
//! `cover:<n>`), which are no one's; subjects' and hold keys only by count.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use postvault_store::{Intent, IntentRow, SubjectRef};

use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::vault::Vault;

/// An intent's kind, as stored and as its leaves' actions say.
pub(crate) const RETENTION: &str = "retention";
pub(crate) const ERASE: &str = "erase";
pub(crate) const COVER: &str = "cover";
pub(crate) const HOLD: &str = "hold";

/// What opening the vault finished that a crash had left undone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Recovered {
    /// People whose erasure was finished (their keys destroyed).
    pub erasures: u64,
    /// Intents carried out and completed, by kind, with their leaves.
    pub intents: Vec<RecoveredIntent>,
}

/// One intent finished on open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecoveredIntent {
    pub kind: String,
    /// The intent's leaf.
    pub intent_leaf: u64,
    /// The completion leaf written on open.
    pub completion_leaf: u64,
}

/// A retention sweep's plan: everything it will destroy.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct RetentionBody {
    /// The sweep's time: records expired at it are deleted.
    pub now: i64,
    /// Period keys to destroy (names: category and day, no one's).
    pub periods: Vec<String>,
    /// Subjects (hex refs) whose holds ended: their hold keys go.
    pub holds_ending: Vec<String>,
    /// Records expired at `now`, not held.
    pub records: u64,
    pub categories: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct EraseBody {
    pub subjects: u64,
    pub records: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct CoverBody {
    pub seq: u64,
    pub records: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct HoldBody {
    /// Subjects (hex refs) whose hold keys go.
    pub subjects: Vec<String>,
}

pub(crate) fn hex_ref(s: &SubjectRef) -> String {
    hex::encode(s)
}

pub(crate) fn ref_of(hex_ref: &str) -> Option<SubjectRef> {
    hex::decode(hex_ref).ok()?.try_into().ok()
}

/// `;kept:<k>` when `k` of the people whose hold keys an intent planned to
/// destroy have a hold key in `hold_keys` as it completes (a hold placed
/// meanwhile kept theirs or made a new one; a key whose hold is over by
/// then goes at the next sweep): the completion does not claim those
/// destroyed. Empty when none has; `;kept:unknown` when the key store
/// could not say.
fn kept_hold_keys(subjects: &[String], hold_keys: Option<&HashSet<String>>) -> String {
    let Some(hold_keys) = hold_keys else {
        return ";kept:unknown".into();
    };
    let n = subjects
        .iter()
        .filter_map(|h| ref_of(h))
        .filter(|s| hold_keys.contains(&crate::rights::hold_secret(s)))
        .count();
    if n == 0 {
        String::new()
    } else {
        format!(";kept:{n}")
    }
}

/// The category of a period key name (`retention:<category>:<day>`).
fn period_category(name: &str) -> Option<&str> {
    name.strip_prefix(crate::rights::PERIOD_PREFIX)?
        .rsplit_once(':')
        .map(|(c, _)| c)
}

pub(crate) fn body<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn parse<T: for<'de> Deserialize<'de> + Default>(row: &IntentRow) -> Result<T, VaultError> {
    serde_json::from_str(&row.body).map_err(|_| {
        VaultError::Store(postvault_store::StoreError::Corrupt(format!(
            "the {} intent of leaf {} cannot be read",
            row.kind, row.id
        )))
    })
}

impl RetentionBody {
    pub(crate) fn new(
        now: i64,
        periods: Vec<String>,
        holds_ending: &[SubjectRef],
        records: u64,
    ) -> RetentionBody {
        let categories: BTreeSet<String> = periods
            .iter()
            .filter_map(|p| period_category(p).map(str::to_string))
            .collect();
        RetentionBody {
            now,
            periods,
            holds_ending: holds_ending.iter().map(hex_ref).collect(),
            records,
            categories: categories.into_iter().collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.periods.is_empty() && self.holds_ending.is_empty() && self.records == 0
    }
}

impl Vault {
    pub(crate) fn system_actor(&self, name: &str) -> Actor {
        Actor {
            role: "system".into(),
            id: self.actor_id(name),
        }
    }

    /// An intent's leaf or a completion leaf.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn destruction_leaf(
        &self,
        actor: &Actor,
        action: &str,
        time: i64,
        count: u64,
        categories: Vec<String>,
        selector: String,
        reasons: Vec<String>,
    ) -> Vec<u8> {
        Event {
            v: LEAF_VERSION,
            time,
            action: action.into(),
            principal: actor.clone(),
            purpose: None,
            decision: "allow".into(),
            pack: self.pack.version().to_string(),
            reasons,
            categories,
            count,
            rejected: None,
            selector: Some(selector),
            instrument: None,
            subject_tag: None,
        }
        .to_leaf()
    }

    /// Records the intent of a retention sweep (one leaf) before it
    /// destroys anything; returns the intent's id.
    pub(crate) fn retention_intent(&self, b: &RetentionBody) -> Result<u64, VaultError> {
        let actor = self.system_actor("retention-sweeper");
        let selector = format!(
            "keys:{};hold_keys:{}",
            b.periods.join(","),
            b.holds_ending.len()
        );
        let leaf = self.destruction_leaf(
            &actor,
            "retention_intent",
            b.now,
            b.records,
            b.categories.clone(),
            selector,
            vec!["R22".into()],
        );
        Ok(self.store.put_intent(
            &Intent {
                kind: RETENTION.into(),
                body: body(b),
                at: b.now,
            },
            &mut |_, _| leaf.clone().into(),
        )?)
    }

    /// Completes intent `id` with its leaf; `None` if another process did.
    pub(crate) fn complete(
        &self,
        id: u64,
        actor: &Actor,
        recovered: bool,
    ) -> Result<Option<u64>, VaultError> {
        let now = self.clock.now_ms();
        // The hold keys there are as it completes, read before the
        // completion's transaction (which holds the log's lock); `None`
        // if the key store cannot say.
        let hold_keys: Option<HashSet<String>> = self
            .keys
            .secret_names(crate::rights::HOLD_PREFIX)
            .ok()
            .map(|names| names.into_iter().collect());
        let mut bad = None;
        let done = self.store.finish_intent(id, &mut |_, row| {
            // A store may run this again when it retries its transaction.
            bad = None;
            self.completion_leaf(row, actor, recovered, now, hold_keys.as_ref(), &mut bad)
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        Ok(done)
    }

    /// The leaf that completes intent `row` (`recovered` when opening the
    /// vault finished it); `hold_keys`, the names of the hold keys there
    /// are (`None`: unknown), for what a hold's end kept. A retention body
    /// that does not parse is kept in `bad`: the caller fails.
    pub(crate) fn completion_leaf(
        &self,
        row: &IntentRow,
        actor: &Actor,
        recovered: bool,
        now: i64,
        hold_keys: Option<&HashSet<String>>,
        bad: &mut Option<VaultError>,
    ) -> Vec<u8> {
        let mut reasons = Vec::new();
        if recovered {
            reasons.push("recovered".to_string());
        }
        let (action, count, categories, selector) = match row.kind.as_str() {
            RETENTION => {
                let b: RetentionBody = parse(row).unwrap_or_else(|e| {
                    *bad = Some(e);
                    RetentionBody::default()
                });
                reasons.insert(0, "R22".into());
                let kept = kept_hold_keys(&b.holds_ending, hold_keys);
                (
                    "retention",
                    row.progress,
                    b.categories,
                    format!(
                        "periods:{};hold_keys:{};intent:{}{kept}",
                        b.periods.len(),
                        b.holds_ending.len(),
                        row.id
                    ),
                )
            }
            ERASE => {
                let b: EraseBody = parse(row).unwrap_or_default();
                (
                    "erase_done",
                    b.subjects,
                    vec![],
                    format!(
                        "keys:{};records:{};intent:{}",
                        2 * b.subjects,
                        b.records,
                        row.id
                    ),
                )
            }
            COVER => {
                let b: CoverBody = parse(row).unwrap_or_default();
                (
                    "cover_done",
                    b.records,
                    self.cover_categories(),
                    format!("keys:cover:{};intent:{}", b.seq, row.id),
                )
            }
            _ => {
                let b: HoldBody = parse(row).unwrap_or_default();
                let kept = kept_hold_keys(&b.subjects, hold_keys);
                (
                    "hold_done",
                    b.subjects.len() as u64,
                    vec![],
                    format!("hold_keys:{};intent:{}{kept}", b.subjects.len(), row.id),
                )
            }
        };
        self.destruction_leaf(actor, action, now, count, categories, selector, reasons)
    }

    /// Finishes what a crash interrupted: erasures after their first
    /// transaction, then every open intent, each completed with its leaf.
    pub(crate) fn finish_interrupted(&self) -> Result<Recovered, VaultError> {
        let mut out = Recovered {
            erasures: self.finish_pending_erasures()?,
            ..Recovered::default()
        };
        let actor = self.system_actor("recovery");
        for row in self.store.intents()? {
            match row.kind.as_str() {
                RETENTION => {
                    let b: RetentionBody = parse(&row)?;
                    let mut ignored = crate::rights::RetentionReport::default();
                    self.carry_out_retention(&b, row.id, &mut ignored, &mut |_| {})?;
                }
                COVER => {
                    let b: CoverBody = parse(&row)?;
                    self.keys
                        .delete_secrets(&[crate::gateway::cover_secret(b.seq)])?;
                }
                HOLD => {
                    let b: HoldBody = parse(&row)?;
                    let now = self.clock.now_ms();
                    for s in b.subjects.iter().filter_map(|h| ref_of(h)) {
                        self.unhold(&s, now)?;
                    }
                }
                // An erasure's keys went with the pending marks above.
                _ => {}
            }
            if let Some(leaf) = self.complete(row.id, &actor, true)? {
                out.intents.push(RecoveredIntent {
                    kind: row.kind.clone(),
                    intent_leaf: row.id,
                    completion_leaf: leaf,
                });
            }
        }
        Ok(out)
    }

    /// What opening this vault finished that a crash had left undone.
    pub fn recovered(&self) -> Recovered {
        self.recovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
