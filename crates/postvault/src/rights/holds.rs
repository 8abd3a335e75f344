//! Legal holds: placed and released by an officer, each with its leaf;
//! records under a hold outlive their retention period.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;

use postvault_store::{HoldRow, SubjectRef, key_id};

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::vault::{Principal, SubjectKeyPair, Vault};

use super::*;

impl Vault {
    /// Places a legal hold on every person named by disclosure request
    /// `request`, which must be approved (or fetched) and still valid.
    /// `until` defaults to, and may not pass, [`MAX_HOLD_DAYS`] from now.
    /// One leaf per person, tagged for them unless a delay order stands.
    pub fn hold_place(
        &self,
        officer: &Principal,
        request: &str,
        until: Option<i64>,
    ) -> Result<HoldView, VaultError> {
        self.require_officer(officer, "place a legal hold", "hold_place")?;
        let now = self.clock.now_ms();
        let row = self
            .store
            .disclosure(request)?
            .filter(|d| matches!(d.status.as_str(), "approved" | "fetched"))
            .ok_or_else(|| {
                VaultError::NotPermitted(
                    "a hold rests on an approved disclosure request: `request` names none".into(),
                )
            })?;
        if row.valid_until.is_some_and(|v| v <= now) {
            return Err(VaultError::NotPermitted(
                "the instrument of that request is no longer valid".into(),
            ));
        }
        let max = now + MAX_HOLD_DAYS * DAY_MS;
        let until = until.unwrap_or(max);
        if until <= now || until > max {
            return Err(VaultError::Invalid {
                what: "until",
                why: format!(
                    "a hold ends after now and at most {MAX_HOLD_DAYS} days from now; place it again to renew"
                ),
            });
        }
        let id = format!("hold-{}", uuid::Uuid::from_bytes(self.ids.next(now)));
        let holds: Vec<HoldRow> = row
            .subjects
            .iter()
            .map(|s| HoldRow {
                id: id.clone(),
                disclosure: row.id.clone(),
                subject: *s,
                placed_by: officer.name.clone(),
                placed_at: now,
                until,
                notice_after: row.notice_after,
                released_at: None,
                released_by: None,
            })
            .collect();
        // An erasure running meanwhile (here or on another node) sees this
        // hold, with its delay order, inside its own transaction, or not
        // at all.
        let leaf_index = self.put_holds(officer, &holds, now)?;
        // Everything the people hold now goes under their hold keys: the
        // sweep cannot destroy it while the hold stands.
        for h in &holds {
            self.seal_under_hold(&h.subject, &|r| {
                matches!(r.key_id, key_id::PERIOD | key_id::SUBJECT)
            })?;
        }
        Ok(hold_view(&holds, Some(leaf_index), true, now))
    }

    /// Releases hold `id`; the people's records that have not expired go
    /// back under their period keys, and the next sweep removes the rest.
    pub fn hold_release(&self, officer: &Principal, id: &str) -> Result<HoldView, VaultError> {
        self.require_officer(officer, "release a legal hold", "hold_release")?;
        let now = self.clock.now_ms();
        let known: Vec<HoldRow> = self
            .store
            .holds(None)?
            .into_iter()
            .filter(|h| h.id == id)
            .collect();
        if known.is_empty() {
            return Err(VaultError::NotPermitted("no hold has that id".into()));
        }
        if known.iter().all(|h| h.released_at.is_some()) {
            return Err(VaultError::NotPermitted(
                "that hold is already released".into(),
            ));
        }
        let actor = Actor {
            role: officer.role.clone(),
            id: self.actor_id(&officer.name),
        };
        let tags = self.hold_tags(&known, now)?;
        let mut rng_error = None;
        let mut first = None;
        // The first row of each attempt starts the count again: a store may
        // run this callback again when it retries its transaction.
        let mut first_row: Option<SubjectRef> = None;
        let released = self
            .store
            .release_hold(id, &officer.name, now, &mut |idx, h| {
                if first_row.is_none_or(|s| s == h.subject) {
                    first_row = Some(h.subject);
                    first = Some(idx);
                    rng_error = None;
                }
                let (tag, index) = self.tag_or_random_key(
                    tags.get(&h.subject)
                        .and_then(|t| t.as_ref())
                        .map(|k| &k.tag),
                    idx,
                    now,
                    &mut rng_error,
                );
                postvault_store::Leaf {
                    bytes: hold_event(&actor, "hold_release", now, self.pack.version(), tag),
                    index,
                }
            })?;
        if let Some(e) = rng_error {
            return Err(e.into());
        }
        let still_held = self.held_subjects(now)?;
        let ending: Vec<SubjectRef> = released
            .iter()
            .map(|h| h.subject)
            .filter(|s| !still_held.contains(s))
            .collect();
        if !ending.is_empty() {
            let _destroying = self.destroying();
            // The hold keys go: written ahead, like every destruction.
            let b = crate::intents::HoldBody {
                subjects: ending.iter().map(crate::intents::hex_ref).collect(),
            };
            let leaf = self.destruction_leaf(
                &actor,
                "hold_intent",
                now,
                ending.len() as u64,
                vec![],
                format!("hold_keys:{}", ending.len()),
                vec![],
            );
            let id = self.store.put_intent(
                &postvault_store::Intent {
                    kind: crate::intents::HOLD.into(),
                    body: crate::intents::body(&b),
                    at: now,
                },
                &mut |_, _| leaf.clone().into(),
            )?;
            for s in &ending {
                self.unhold(s, now)?;
            }
            self.complete(id, &actor, false)?;
        }
        Ok(hold_view(&released, first, true, now))
    }

    /// Every hold, for an officer.
    pub fn holds(&self, officer: &Principal) -> Result<Vec<HoldView>, VaultError> {
        self.require_officer(officer, "list legal holds", "hold_list")?;
        let now = self.clock.now_ms();
        let mut by_id: BTreeMap<(i64, String), Vec<HoldRow>> = BTreeMap::new();
        for h in self.store.holds(None)? {
            by_id
                .entry((h.placed_at, h.id.clone()))
                .or_default()
                .push(h);
        }
        Ok(by_id
            .into_values()
            .map(|rows| hold_view(&rows, None, true, now))
            .collect())
    }

    /// The holds on one person as the person may see them: none a delay
    /// order still covers.
    pub(crate) fn holds_for_person(
        &self,
        subject: &SubjectRef,
    ) -> Result<Vec<HoldView>, VaultError> {
        let now = self.clock.now_ms();
        Ok(self
            .store
            .holds(Some(subject))?
            .into_iter()
            .filter(|h| h.notice_after.is_none_or(|t| t <= now))
            .map(|h| hold_view(std::slice::from_ref(&h), None, false, now))
            .collect())
    }

    /// When a hold on `subject` (in force or not) carries a delay order
    /// still running and no hold in force is one the person may know of:
    /// the first time they may know of one. A refusal naming a legal hold
    /// would tell them of it before then. `None` otherwise.
    pub(crate) fn hidden_holds_until(
        &self,
        subject: &SubjectRef,
    ) -> Result<Option<i64>, VaultError> {
        let now = self.clock.now_ms();
        let mut until: Option<i64> = None;
        for h in self.store.holds(Some(subject))? {
            match h.notice_after.filter(|&t| t > now) {
                Some(t) => until = Some(until.map_or(t, |u| u.min(t))),
                None if h.active(now) => return Ok(None),
                None => {}
            }
        }
        Ok(until)
    }

    pub(super) fn hold_tags(
        &self,
        holds: &[HoldRow],
        now: i64,
    ) -> Result<std::collections::HashMap<SubjectRef, Option<Arc<SubjectKeyPair>>>, VaultError>
    {
        let mut out = std::collections::HashMap::new();
        for h in holds {
            // Under a delay order the leaf carries random bytes: the person
            // cannot find it before they may know.
            let tag = if h.notice_after.is_some_and(|t| t > now) {
                None
            } else {
                self.subject_keys(&h.subject)?
            };
            out.insert(h.subject, tag);
        }
        Ok(out)
    }

    /// Stores `holds` with one leaf per person.
    pub(super) fn put_holds(
        &self,
        officer: &Principal,
        holds: &[HoldRow],
        now: i64,
    ) -> Result<u64, VaultError> {
        let actor = Actor {
            role: officer.role.clone(),
            id: self.actor_id(&officer.name),
        };
        let tags = self.hold_tags(holds, now)?;
        let mut rng_error = None;
        let pack = self.pack.version().to_string();
        let first = self.store.put_holds(holds, &mut |idx, i| {
            // A retried transaction builds its leaves again.
            if i == 0 {
                rng_error = None;
            }
            let (tag, index) = self.tag_or_random_key(
                tags.get(&holds[i].subject)
                    .and_then(|t| t.as_ref())
                    .map(|k| &k.tag),
                idx,
                now,
                &mut rng_error,
            );
            postvault_store::Leaf {
                bytes: hold_event(&actor, "hold_place", now, &pack, tag),
                index,
            }
        })?;
        if let Some(e) = rng_error {
            return Err(e.into());
        }
        Ok(first)
    }
}

pub(super) fn hold_event(
    actor: &Actor,
    action: &str,
    now: i64,
    pack: &str,
    tag: [u8; 16],
) -> Vec<u8> {
    Event {
        v: LEAF_VERSION,
        time: now,
        action: action.into(),
        principal: actor.clone(),
        purpose: None,
        decision: "allow".into(),
        pack: pack.into(),
        reasons: vec![],
        categories: vec![],
        count: 0,
        rejected: None,
        selector: None,
        instrument: None,
        subject_tag: Some(base64::engine::general_purpose::STANDARD.encode(tag)),
    }
    .to_leaf()
}

pub(super) fn hold_view(
    rows: &[HoldRow],
    log_index: Option<u64>,
    officer: bool,
    now: i64,
) -> HoldView {
    let first = &rows[0];
    let status = if first.released_at.is_some() {
        "released"
    } else if first.until <= now {
        "lapsed"
    } else {
        "active"
    };
    HoldView {
        id: first.id.clone(),
        request: first.disclosure.clone(),
        subjects: if officer {
            rows.iter().map(|h| hex::encode(h.subject)).collect()
        } else {
            vec![]
        },
        placed_by: first.placed_by.clone(),
        placed_at: format_ms(first.placed_at),
        until: format_ms(first.until),
        status: status.into(),
        released_at: first.released_at.map(format_ms),
        withheld_until: if officer {
            first.notice_after.filter(|&t| t > now).map(format_ms)
        } else {
            None
        },
        log_index,
    }
}
