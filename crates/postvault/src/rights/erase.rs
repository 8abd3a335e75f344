//! Erasure: a subject's keys destroyed and records made dead at once, the
//! dead rows purged (at once for a few people, in bulk for many),
//! write-ahead so an interrupted erasure is finished at the next open.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};

use base64::Engine as _;

use postvault_store::SubjectRef;

use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::vault::{Principal, Vault};

use super::*;

/// One-person erasures waiting to be erased together: the first to find
/// no group running takes every waiting request of the same principal (up
/// to [`ERASE_JOINED_MAX`], one per person) and erases them as one group:
/// one transaction for their rows and leaves, one for their keys, one for
/// the intent, one purge. Each request is answered with its own person's
/// part of the group only.
#[derive(Default)]
pub(crate) struct EraseQueue {
    state: Mutex<QueueState>,
    /// Signalled whenever a group has been answered.
    answered: Condvar,
}

#[derive(Default)]
struct QueueState {
    next: u64,
    waiting: Vec<Ask>,
    answers: HashMap<u64, Result<EraseReport, VaultError>>,
    /// A group is being erased.
    running: bool,
}

/// A one-person erasure waiting in the queue.
struct Ask {
    ticket: u64,
    actor: Actor,
    id: String,
    subject: SubjectRef,
}

impl EraseQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl QueueState {
    /// The next group: the waiting requests of the principal of the oldest
    /// one (so no principal's request waits behind another's for ever),
    /// oldest first, one per person, at most [`ERASE_JOINED_MAX`]; the rest
    /// keep waiting.
    fn take(&mut self) -> Vec<Ask> {
        let Some(actor) = self.waiting.first().map(|a| a.actor.clone()) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        let mut people = HashSet::new();
        let mut rest = Vec::with_capacity(self.waiting.len());
        for ask in self.waiting.drain(..) {
            if taken.len() < ERASE_JOINED_MAX && ask.actor == actor && people.insert(ask.subject) {
                taken.push(ask);
            } else {
                rest.push(ask);
            }
        }
        self.waiting = rest;
        taken
    }
}

/// Answers a group's requests even if its run panics: every request taken
/// gets an answer and the queue is free again, so no one waits forever.
struct Running<'a> {
    queue: &'a EraseQueue,
    tickets: Vec<u64>,
    /// The runner's own ticket: if the run panics, the panic is its answer.
    own: u64,
}

impl Running<'_> {
    /// Answers the group, in the order it was taken; a request the answers
    /// miss gets the error of an unexpected stop.
    fn answer(mut self, answers: Vec<Result<EraseReport, VaultError>>) {
        let mut answers = answers.into_iter();
        let mut q = self.queue.lock();
        for t in std::mem::take(&mut self.tickets) {
            q.answers
                .insert(t, answers.next().unwrap_or_else(|| Err(stopped())));
        }
        q.running = false;
        drop(q);
        self.queue.answered.notify_all();
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.tickets.is_empty() {
            return;
        }
        let mut q = self.queue.lock();
        for t in self.tickets.drain(..) {
            if t != self.own {
                q.answers.insert(t, Err(stopped()));
            }
        }
        q.running = false;
        drop(q);
        self.queue.answered.notify_all();
    }
}

/// What the others of a group are told when its run stops unexpectedly.
fn stopped() -> VaultError {
    VaultError::Joined {
        code: "internal",
        message: "the erasure stopped unexpectedly; run `postvault check`, then ask again".into(),
    }
}

/// What one erasure transaction and the key destruction after it did.
struct Chunk<'a> {
    /// The people, in the order of their keyed refs (the order of their
    /// leaves), and the identifiers asked for them.
    refs: Vec<SubjectRef>,
    ids: Vec<&'a String>,
    out: postvault_store::EraseOutcome,
    /// The people whose keys existed and were destroyed.
    destroyed: HashSet<SubjectRef>,
    /// The purge of the erased, when it ran with the finishing
    /// transaction: each person purged with their records. `None`: left to
    /// the caller (see [`PURGE_JOINED_MAX_RECORDS`]).
    purged: Option<HashMap<SubjectRef, u64>>,
    /// The refused people under a hold whose delay order still runs, as
    /// the erasure's own transaction found them ([`postvault_store::Held::Delayed`]).
    delayed: HashSet<SubjectRef>,
}

impl Vault {
    /// Erases people by identifier, as a privacy officer granting their
    /// request (or, for one person, as the subject-access service passing
    /// on the person's own request): destroys their keys (every ciphertext and every log tag of
    /// theirs becomes unreadable or unlinkable) and makes their rows dead
    /// (no read, scan or count sees them again). A call naming at most
    /// [`ERASE_PURGE_INLINE`] people deletes their rows before it returns
    /// (`purged`); a longer one leaves them to [`Vault::purge_erased`], in
    /// bulk (the retention sweep runs it). People
    /// under a legal hold in force are refused (`held`). One leaf per
    /// identifier (in the order of their keyed refs, not of `subjects`),
    /// tagged for the person, so the erasure is the last leaf they can find
    /// and prove. Works in chunks of [`ERASE_CHUNK`]. Concurrent calls for
    /// one person each, by the same principal, are erased together (see
    /// [`EraseQueue`]); each answer is its own person's.
    pub fn erase(
        &self,
        officer: &Principal,
        subjects: &[String],
        progress: &mut dyn FnMut(u64),
    ) -> Result<EraseReport, VaultError> {
        // The person's own request comes through the subject-access
        // service (the role acting for the pack's subject-access purpose),
        // one person at a time; anything else needs an officer.
        let own_request = subjects.len() == 1 && self.acts_for_subject(officer);
        if !own_request {
            self.require_officer(officer, "erase", "erase")?;
        }
        for s in subjects {
            crate::vault::check_subject(s)?;
        }
        let actor = Actor {
            role: officer.role.clone(),
            id: self.actor_id(&officer.name),
        };
        if let [one] = subjects {
            let mut report = self.erase_joined(actor, one)?;
            if report.delayed && self.speaks_for_person(&officer.role) {
                report.delayed = false;
                // Held only by holds the person may not know of yet: their
                // leaf is their request, as the portal would have written
                // it (see `erase_part`), and the answer must not name the
                // hold either. The request is kept, as one made in the
                // portal, for the office to carry out once the hold allows
                // (the office sees the hold).
                report.held.clear();
                report.pending_request = Some(self.keep_erasure_request(one)?);
            }
            progress(report.erased + report.held.len() as u64);
            return Ok(report);
        }
        let mut report = EraseReport::default();
        let mut first = None;
        // A few people (a person's own request, an officer's short list)
        // are purged at once, in the transaction that finishes their
        // erasure when they hold few rows, else in one of its own once
        // the gates are released: their dead rows, ref and lookup tokens
        // leave the store now, not at the next sweep. A long list is left
        // to one bulk purge (the caller's, or the sweep). The erasure
        // stands whatever the purge does: a failure is reported with it,
        // and the sweep purges later.
        let purge = subjects.len() <= ERASE_PURGE_INLINE;
        let mut purge_later: Vec<SubjectRef> = Vec::new();
        for chunk in subjects.chunks(ERASE_CHUNK) {
            let people = chunk.iter().map(|s| (self.subject_ref(s), s)).collect();
            let done = self.erase_chunk(&actor, people, purge)?;
            report.records_deleted += done.out.records;
            report.erased += done.out.erased.len() as u64;
            report.keys_destroyed += 2 * done.destroyed.len() as u64;
            let held: HashSet<&SubjectRef> = done.out.held.iter().collect();
            for (id, r) in done.ids.iter().zip(&done.refs) {
                if held.contains(r) {
                    report.held.push((*id).clone());
                }
            }
            match done.purged {
                Some(each) => {
                    let p = report.purged.get_or_insert_with(PurgeReport::default);
                    p.people += each.values().filter(|&&n| n > 0).count() as u64;
                    p.records += each.values().sum::<u64>();
                }
                None if purge => purge_later.extend_from_slice(&done.out.erased),
                None => {}
            }
            first.get_or_insert(done.out.first_leaf);
            progress(report.erased + report.held.len() as u64);
        }
        report.first_leaf = first.unwrap_or(0);
        if !purge_later.is_empty() {
            match self.store.purge_subjects(&purge_later) {
                Ok(each) => {
                    let p = report.purged.get_or_insert_with(PurgeReport::default);
                    p.people += each.iter().filter(|(_, n)| *n > 0).count() as u64;
                    p.records += each.iter().map(|(_, n)| n).sum::<u64>();
                }
                Err(e) => {
                    report.purged = None;
                    report.purge_error = Some(e.to_string());
                }
            }
        }
        Ok(report)
    }

    /// One person's erasure, in a group with the others waiting (group
    /// commit): the first caller to find no group running erases the
    /// waiting requests of the principal who has waited longest together
    /// (see [`QueueState::take`]), answers each, and hands on; the others
    /// wait for their answer, or run the next group.
    fn erase_joined(&self, actor: Actor, id: &str) -> Result<EraseReport, VaultError> {
        let queue = &self.erase_queue;
        let subject = self.subject_ref(id);
        let mut q = queue.lock();
        let ticket = q.next;
        q.next += 1;
        q.waiting.push(Ask {
            ticket,
            actor,
            id: id.to_string(),
            subject,
        });
        loop {
            if let Some(answer) = q.answers.remove(&ticket) {
                return answer;
            }
            if q.running {
                q = queue.answered.wait(q).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Our request is still waiting (none taken is unanswered while
            // no group runs): run the next group (ours, or an older one's).
            q.running = true;
            let group = q.take();
            drop(q);
            let running = Running {
                queue,
                tickets: group.iter().map(|a| a.ticket).collect(),
                own: ticket,
            };
            let answers = self.erase_group(&group, ticket);
            running.answer(answers);
            q = queue.lock();
        }
    }

    /// Erases a group of one-person requests as one erasure, and answers
    /// each with its own person's part: its leaf, records, keys and purge.
    /// A failure answers `own` (the runner's ticket) with the error itself
    /// and the others with its code and message.
    fn erase_group(&self, group: &[Ask], own: u64) -> Vec<Result<EraseReport, VaultError>> {
        let Some(actor) = group.first().map(|a| &a.actor) else {
            return Vec::new();
        };
        let people: Vec<(SubjectRef, &String)> = group.iter().map(|a| (a.subject, &a.id)).collect();
        let done = match self.erase_chunk(actor, people, true) {
            Ok(d) => d,
            Err(e) => {
                let (code, message) = (e.code(), e.to_string());
                let mut e = Some(e);
                return group
                    .iter()
                    .map(|a| {
                        Err(match e.take_if(|_| a.ticket == own) {
                            Some(e) => e,
                            None => VaultError::Joined {
                                code,
                                message: message.clone(),
                            },
                        })
                    })
                    .collect();
            }
        };
        // Purged with the finishing transaction, or now, outside the gates.
        let purged = match done.purged.clone() {
            Some(p) => Ok(p),
            None if done.out.erased.is_empty() => Ok(HashMap::new()),
            None => self
                .store
                .purge_subjects(&done.out.erased)
                .map(|each| each.into_iter().collect())
                .map_err(|e| e.to_string()),
        };
        let erased: HashSet<&SubjectRef> = done.out.erased.iter().collect();
        group
            .iter()
            .map(|a| {
                // The group's refs are distinct and sorted: the person's
                // leaf is at their place among them. Never another's.
                let Ok(at) = done.refs.binary_search(&a.subject) else {
                    return Err(stopped());
                };
                let was_erased = erased.contains(&a.subject);
                let held = if done.out.held.contains(&a.subject) {
                    vec![a.id.clone()]
                } else {
                    Vec::new()
                };
                let delayed = done.delayed.contains(&a.subject);
                let mut report = EraseReport {
                    erased: u64::from(was_erased),
                    held,
                    records_deleted: done.out.records_by.get(&a.subject).copied().unwrap_or(0),
                    keys_destroyed: 2 * u64::from(done.destroyed.contains(&a.subject)),
                    first_leaf: done.out.first_leaf + at as u64,
                    purged: None,
                    purge_error: None,
                    pending_request: None,
                    delayed,
                };
                if was_erased {
                    match &purged {
                        Ok(each) => {
                            // Counted only with records they may know of:
                            // someone whose only rows were a mail cover's
                            // is purged too, and told what a person with
                            // no rows is.
                            let n = each.get(&a.subject).copied().unwrap_or(0);
                            report.purged = Some(PurgeReport {
                                people: u64::from(n > 0),
                                records: n,
                            });
                        }
                        Err(e) => report.purge_error = Some(e.clone()),
                    }
                }
                Ok(report)
            })
            .collect()
    }

    /// One erasure transaction for `people` (their refs and identifiers; at
    /// most [`ERASE_CHUNK`]), then the keys of those it erased destroyed,
    /// then one transaction that finishes their erasure, completes its
    /// intent and, when `purge` and their records were few
    /// ([`PURGE_JOINED_MAX_RECORDS`]), purges their rows.
    fn erase_chunk<'a>(
        &self,
        actor: &Actor,
        mut people: Vec<(SubjectRef, &'a String)>,
        purge: bool,
    ) -> Result<Chunk<'a>, VaultError> {
        let _destroying = self.destroying();
        let _gate = self.erase_gate_exclusive();
        // In the order of their keyed refs: the stores keep rows of one
        // subject together by ref, so sorted deletes touch each page once.
        people.sort_unstable();
        let (refs, ids): (Vec<SubjectRef>, Vec<&String>) = people.into_iter().unzip();
        // The tag keys (for the leaves) are read from the key store on a
        // second thread while the transaction deletes the rows; the
        // leaves, written last in it, wait for them.
        let (send_tags, tags) = std::sync::mpsc::sync_channel(1);
        // The wrapped keys read there, before the first step commits: the
        // ones this erasure destroys (see `destroy_keys`).
        let mut wrapped: HashMap<SubjectRef, postvault_store::SubjectKeys> = HashMap::new();
        let out = std::thread::scope(|scope| {
            let refs = &refs;
            let wrapped = &mut wrapped;
            scope.spawn(move || {
                let mut read = || -> Result<Vec<Option<postvault_crypto::TagKey>>, VaultError> {
                    let mut out = Vec::with_capacity(refs.len());
                    // A key that does not unwrap leaves its own person's
                    // leaf tagged at random, no one else's.
                    for (r, k) in refs.iter().zip(self.keys.subject_keys_many(refs)?) {
                        out.push(k.as_ref().and_then(|k| self.master.tag_key(&k.tag, r).ok()));
                        if let Some(k) = k {
                            wrapped.insert(*r, k);
                        }
                    }
                    Ok(out)
                };
                let _ = send_tags.send(read());
            });
            self.erase_part(actor, refs, &tags)
        });
        // Whoever's first step committed loses their keys now, even if
        // something failed after it (the pending marks and the intent
        // carry a crash).
        let erased = match &out {
            Ok((o, _, _)) => o.erased.clone(),
            Err(_) => self.store.pending_erasures()?,
        };
        let destroyed = self.destroy_keys(&erased, &wrapped)?;
        let (out, intent, delayed) = match out {
            Ok(o) => o,
            Err(e) => {
                if !erased.is_empty() {
                    self.store.finish_erasure(&erased)?;
                }
                return Err(e);
            }
        };
        let purged = self.finish_erased(actor, &out.erased, intent, purge)?;
        Ok(Chunk {
            refs,
            ids,
            out,
            destroyed,
            purged,
            delayed,
        })
    }

    /// An erasure's last steps for `erased`, whose keys are destroyed: one
    /// transaction finishes them, completes `intent` and, when `purge` and
    /// they hold at most [`PURGE_JOINED_MAX_RECORDS`] rows (dead or alive),
    /// purges their rows (one commit, not three). If it fails, finishing
    /// and completing run alone, as they would have, and a failure there
    /// fails the erasure. Returns the purge when it ran here; `None` leaves
    /// it to the caller, outside the erasure's gates, where a failure is
    /// only reported (the sweep purges later), never a reason to fail an
    /// erasure that stands.
    fn finish_erased(
        &self,
        actor: &Actor,
        erased: &[SubjectRef],
        intent: Option<u64>,
        purge: bool,
    ) -> Result<Option<HashMap<SubjectRef, u64>>, VaultError> {
        if erased.is_empty() && intent.is_none() {
            return Ok(None);
        }
        let now = self.clock.now_ms();
        let mut bad = None;
        let joined = self.store.finish_erasure_with(
            erased,
            intent,
            &mut |_, row| self.completion_leaf(row, actor, false, now, None, &mut bad),
            if purge { erased } else { &[] },
            PURGE_JOINED_MAX_RECORDS,
        );
        if let Some(e) = bad {
            return Err(e);
        }
        if let Ok(done) = joined {
            return Ok(done
                .purged
                .filter(|_| purge)
                .map(|each| each.into_iter().collect()));
        }
        if !erased.is_empty() {
            self.store.finish_erasure(erased)?;
        }
        if let Some(id) = intent {
            self.complete(id, actor, false)?;
        }
        Ok(None)
    }

    /// Erasure, step one, for one transaction's people; `tags` delivers
    /// their tag keys (in order) when the leaves are written.
    fn erase_part(
        &self,
        actor: &Actor,
        refs: &[SubjectRef],
        tags: &std::sync::mpsc::Receiver<Result<Vec<Option<postvault_crypto::TagKey>>, VaultError>>,
    ) -> Result<
        (
            postvault_store::EraseOutcome,
            Option<u64>,
            HashSet<SubjectRef>,
        ),
        VaultError,
    > {
        let now = self.clock.now_ms();
        let mut delayed = HashSet::new();
        let mut keys: Option<Vec<Option<postvault_crypto::TagKey>>> = None;
        let mut rng_error = None;
        // By subject, not by call count: a store may run this callback again
        // when it retries its transaction (PostgreSQL, SQLSTATE 40001).
        let position: HashMap<SubjectRef, usize> =
            refs.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        let pack = self.pack.version().to_string();
        // The erasure answers the person: its leaves name the pack's
        // subject-access purpose.
        let subject_access = self
            .pack
            .taxonomy()
            .engine()
            .subject_access_purpose()
            .map(str::to_string);
        // A person refused under holds they may not know of yet, by a role
        // passing on their own request (not the office, which sees every
        // hold): their leaf is their request, as the portal writes it,
        // tagged for them; no refusal is written. Any other refusal under
        // such holds is tagged at random.
        let for_person = self.speaks_for_person(&actor.role);
        let person = if for_person {
            self.person_actor()?
        } else {
            actor.clone()
        };
        let mut intent_id = None;
        let mut intent = |idx: u64, out: &postvault_store::EraseOutcome| {
            if out.erased.is_empty() {
                intent_id = None;
                return None;
            }
            intent_id = Some(idx);
            let b = crate::intents::EraseBody {
                subjects: out.erased.len() as u64,
                records: out.records,
            };
            let leaf = self.destruction_leaf(
                actor,
                "erase_intent",
                now,
                b.subjects,
                vec![],
                format!("keys:{};records:{}", 2 * b.subjects, b.records),
                vec![],
            );
            Some((
                postvault_store::Intent {
                    kind: crate::intents::ERASE.into(),
                    body: crate::intents::body(&b),
                    at: now,
                },
                leaf,
            ))
        };
        // Every leaf of this erasure is one of three events (erased,
        // refused under a hold, or the person's request kept) with the
        // person's tag: each is encoded once.
        let event = |held: bool| Event {
            v: LEAF_VERSION,
            time: now,
            action: "erase".into(),
            principal: actor.clone(),
            purpose: subject_access.clone(),
            decision: if held { "deny" } else { "allow" }.into(),
            pack: pack.clone(),
            reasons: if held {
                vec!["legal_hold".into()]
            } else {
                vec![]
            },
            categories: vec![],
            count: 0,
            rejected: None,
            selector: None,
            instrument: None,
            subject_tag: None,
        };
        let request = || Event {
            action: "erasure_request".into(),
            principal: person.clone(),
            decision: "allow".into(),
            reasons: vec![],
            ..event(false)
        };
        let templates = [
            crate::leaf::TaggedLeaves::new(event(false)),
            crate::leaf::TaggedLeaves::new(event(true)),
            crate::leaf::TaggedLeaves::new(request()),
        ];
        let out = self.store.erase(
            refs,
            now,
            &mut |idx, subject, held| {
                // A retried transaction builds its leaves again: only the
                // last attempt's error counts.
                if refs.first() == Some(subject) {
                    rng_error = None;
                    delayed.clear();
                }
                if held == postvault_store::Held::Delayed {
                    delayed.insert(*subject);
                }
                // A key store that cannot be read leaves random tags: the
                // erasure goes on (and the key destruction that follows reports
                // the key store's failure).
                let k = keys.get_or_insert_with(|| {
                    tags.recv().ok().and_then(Result::ok).unwrap_or_default()
                });
                // A refusal under a hold whose instrument carries a delay
                // order still running is tagged at random: the person must
                // not learn of the hold from their own leaves before they
                // may know. The store decides that inside its transaction,
                // so a hold another node places meanwhile cannot slip
                // between a look at the holds and the refusal.
                let delayed_held = held == postvault_store::Held::Delayed;
                let as_request = delayed_held && for_person;
                let key = position
                    .get(subject)
                    .and_then(|&i| k.get(i))
                    .and_then(Option::as_ref)
                    .filter(|_| as_request || !delayed_held);
                let (tag, index) = self.tag_or_random_key(key, idx, now, &mut rng_error);
                let which = if as_request {
                    2
                } else {
                    usize::from(held.refused())
                };
                let bytes = match &templates[which] {
                    Some(t) => t.leaf(&tag),
                    None => Event {
                        subject_tag: Some(base64::engine::general_purpose::STANDARD.encode(tag)),
                        ..if as_request {
                            request()
                        } else {
                            event(held.refused())
                        }
                    }
                    .to_leaf(),
                };
                postvault_store::Leaf { bytes, index }
            },
            &mut intent,
        )?;
        if let Some(e) = rng_error {
            return Err(e.into());
        }
        Ok((out, intent_id, delayed))
    }

    /// [`Vault::tag_and_index`], the error kept in `err` (the leaf then
    /// carries zeros and is filed under nothing; the caller fails the call).
    pub(super) fn tag_or_random_key(
        &self,
        key: Option<&postvault_crypto::TagKey>,
        idx: u64,
        time: i64,
        err: &mut Option<postvault_crypto::CryptoError>,
    ) -> ([u8; 16], postvault_store::LeafIndex) {
        self.tag_and_index(key, idx, time).unwrap_or_else(|e| {
            *err = Some(e);
            ([0; 16], postvault_store::LeafIndex::None)
        })
    }

    /// Erasure, steps two and three: destroy the keys, then make anything
    /// written for these people meanwhile dead too. Returns the people
    /// whose keys existed.
    pub(super) fn destroy_subject_keys(
        &self,
        erased: &[SubjectRef],
    ) -> Result<HashSet<SubjectRef>, VaultError> {
        let destroyed = self.destroy_keys(erased, &HashMap::new())?;
        if !erased.is_empty() {
            self.store.finish_erasure(erased)?;
        }
        Ok(destroyed)
    }

    /// Erasure, step two: destroys the subject and hold keys of `erased`
    /// and forgets them here. Returns the people whose keys existed.
    fn destroy_keys(
        &self,
        erased: &[SubjectRef],
        wrapped: &HashMap<SubjectRef, postvault_store::SubjectKeys>,
    ) -> Result<HashSet<SubjectRef>, VaultError> {
        if erased.is_empty() {
            return Ok(HashSet::new());
        }
        // The keys read before the first step go only if they are still the
        // person's: another process may have finished this erasure (it met
        // the person's pending rows) and collected them again, with new
        // keys, before this one got here. Anyone whose keys were not read
        // loses whatever keys they have.
        let (known, unknown): (Vec<SubjectRef>, Vec<SubjectRef>) =
            erased.iter().partition(|s| wrapped.contains_key(*s));
        let as_read: Vec<postvault_store::SubjectKeys> =
            known.iter().map(|s| wrapped[s].clone()).collect();
        let mut destroyed = self.keys.delete_subject_keys_as(&as_read)?;
        if !unknown.is_empty() {
            destroyed.extend(self.keys.delete_subject_keys(&unknown)?);
        }
        // Hold keys are few: destroy those of the erased, with any mark of
        // an end left by a crash (it names the person's ref).
        let names: HashSet<String> = erased
            .iter()
            .flat_map(|s| [hold_secret(s), hold_ending_secret(s)])
            .collect();
        let mut holds: Vec<String> = self.keys.secret_names(HOLD_PREFIX)?;
        holds.extend(self.keys.secret_names(HOLD_ENDING_PREFIX)?);
        holds.retain(|n| names.contains(n));
        let sealing: Vec<String> = erased.iter().map(hold_sealing_prefix).collect();
        holds.extend(
            self.keys
                .secret_names(HOLD_SEALING_PREFIX)?
                .into_iter()
                .filter(|n| sealing.iter().any(|p| n.starts_with(p.as_str()))),
        );
        if !holds.is_empty() {
            self.keys.delete_secrets(&holds)?;
        }
        self.forget_keys(erased);
        Ok(destroyed.into_iter().collect())
    }

    /// Deletes the rows of every erased person still in the purge queue, in
    /// transactions of [`PURGE_CHUNK`] people (sorted by ref, so each
    /// touches every page once); `progress` is called with the people
    /// purged so far. The erasures' own leaves account for these people;
    /// the purge deletes ciphertext whose keys are already destroyed and
    /// writes no leaf. Safe beside reads and writes: a person collected
    /// again meanwhile has left the queue.
    pub fn purge_erased(&self, progress: &mut dyn FnMut(u64)) -> Result<PurgeReport, VaultError> {
        let mut report = PurgeReport::default();
        loop {
            let b = self.store.purge_erased(PURGE_CHUNK)?;
            report.people += b.people;
            report.records += b.records;
            progress(report.people);
            if (b.people as usize) < PURGE_CHUNK {
                return Ok(report);
            }
        }
    }

    /// The erased people whose rows await the purge, and those rows.
    pub fn purge_pending(&self) -> Result<PurgeReport, VaultError> {
        Ok(self.store.purge_pending()?.into())
    }

    /// Finishes erasures a crash interrupted after their first transaction;
    /// returns how many people's were.
    pub(crate) fn finish_pending_erasures(&self) -> Result<u64, VaultError> {
        let pending = self.store.pending_erasures()?;
        self.destroy_subject_keys(&pending)?;
        Ok(pending.len() as u64)
    }
}
