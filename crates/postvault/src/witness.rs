//! Witness cosignatures of the vault's checkpoints (C2SP tlog-witness and
//! tlog-cosignature/v1), gathered through the [`Witness`] trait. The facade
//! knows no HTTP: the service crate implements the trait over HTTP.
//!
//! A checkpoint is *final* once a quorum of the configured witnesses has
//! cosigned it; below the quorum it is *pending*: kept, served as pending,
//! and cosigned again on the next round. Readers and the public are given
//! the latest final checkpoint.
//!
//! Before its first signature in a process, the vault submits its last
//! signed checkpoint to every witness it has not heard from yet. A witness
//! that answers it holds a larger tree, or another tree of the same size,
//! makes a claim only (a 409 body is unsigned, and anyone on a plain-HTTP
//! path can forge it): one such witness is counted as failed for the round,
//! with a warning quoting its claim as unverified. Only when a quorum of
//! the configured witnesses report conflicts does the vault conclude its
//! own stores were rolled back together (a whole-vault restore) and refuse
//! to sign. Witness calls happen when a checkpoint is signed or a person
//! asks for their proofs, never on the read or ingest path.
//!
//! The witness policy (verifier keys and quorum) is recorded in the key
//! store when a vault is first configured with witnesses, and changed only
//! by the operator (`postvault log witnesses set`, one leaf). The vault
//! refuses to sign a checkpoint unless the witnesses configured for the
//! process are the recorded ones: a copy restored and run without its
//! witnesses cannot sign a fork no witness sees.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use postvault_log::{Checkpoint, CosignatureVerifier, Hash};
use serde::{Deserialize, Serialize};

use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::vault::Vault;

/// Key store entries of the recorded witness policy: one per version,
/// `log_witness_policy/<version, 10 digits>`, JSON; the highest is in force.
/// A version is written once (`put_secret` fails on an existing name), so
/// two operators changing the policy at once never both win.
const POLICY_PREFIX: &str = "log_witness_policy/";

/// The code of a signature refused because the configured witnesses are
/// not the recorded ones.
pub const WITNESSES_NOT_CONFIGURED: &str = "witnesses_not_configured";

/// Cosignature lines one witness may answer with.
const MAX_ANSWER_LINES: usize = 16;

/// A witness, as the vault calls it: C2SP tlog-witness `add-checkpoint`.
pub trait Witness: Send + Sync {
    /// Submits `checkpoint` (a signed note) with a consistency proof from
    /// `old_size`, the size the caller believes the witness holds. Returns
    /// the witness's answer: cosignature lines, newline-terminated.
    fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Hash],
        checkpoint: &str,
    ) -> Result<String, WitnessCallError>;
}

/// Why a witness did not cosign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessCallError {
    /// 409: the witness holds a checkpoint of this size.
    #[error("the witness holds a checkpoint of size {0}")]
    Conflict(u64),
    /// Any other refusal, with its HTTP status.
    #[error("the witness refused the checkpoint ({status}): {message}")]
    Refused { status: u16, message: String },
    /// No answer (connection, timeout, a malformed answer).
    #[error("the witness could not be reached: {0}")]
    Unavailable(String),
}

/// One witness of the vault: its cosigner key and how to reach it.
#[derive(Clone)]
pub struct ConfiguredWitness {
    pub verifier: CosignatureVerifier,
    pub client: Arc<dyn Witness>,
}

impl std::fmt::Debug for ConfiguredWitness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredWitness")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

/// The witnesses of a vault and how many must cosign a checkpoint.
#[derive(Clone, Debug, Default)]
pub struct WitnessPolicy {
    pub witnesses: Vec<ConfiguredWitness>,
    /// At least 1 and at most the number of witnesses.
    pub quorum: usize,
}

/// The witness policy recorded in the key store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedWitnessPolicy {
    /// Counts up from 1 with every change.
    pub version: u64,
    /// The witnesses' verifier keys (tlog-cosignature/v1), sorted; empty
    /// when the operator recorded that the vault has no witnesses.
    pub witnesses: Vec<String>,
    /// Cosignatures a checkpoint needs to be final (0 without witnesses).
    pub quorum: usize,
    /// When it was recorded (ms since the epoch).
    pub recorded_at: i64,
}

/// The recorded witness policy beside the one this process runs with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WitnessPolicyStatus {
    pub recorded: Option<RecordedWitnessPolicy>,
    /// The configured witnesses' verifier keys, sorted.
    pub configured: Vec<String>,
    pub configured_quorum: usize,
    /// Whether the vault may sign: nothing recorded, or the configured
    /// witnesses and quorum are the recorded ones.
    pub may_sign: bool,
}

/// What the vault knows of one witness in this process.
#[derive(Clone, Debug, Default)]
struct Known {
    /// The size the witness holds, from its verified cosignature.
    size: Option<u64>,
    /// The size it last claimed to hold in a 409 (unsigned, unverified):
    /// only a hint for the next submission's old size.
    claimed: Option<u64>,
    /// It answered a submission of the last signed checkpoint (or a later one).
    confirmed: bool,
    last_error: Option<String>,
}

pub(crate) struct Witnessing {
    policy: WitnessPolicy,
    known: Mutex<HashMap<String, Known>>,
}

/// A checkpoint with the witness cosignatures the vault gathered for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CosignedCheckpoint {
    /// The signed note followed by the cosignature lines (a C2SP signed
    /// note: clients that do not know a witness ignore its line).
    pub note: String,
    pub size: u64,
    /// A quorum of the configured witnesses cosigned it (always true
    /// without witnesses).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The cosigners whose lines verified, `<name>+<key id>`.
    pub cosigners: Vec<String>,
    /// Cosignatures needed (0 without witnesses).
    pub quorum: usize,
}

/// One witness's part in a cosigning round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WitnessOutcome {
    /// `<name>+<key id>`.
    pub witness: String,
    /// Its cosignature of the checkpoint is kept.
    pub cosigned: bool,
    /// The size it holds, as last heard.
    pub size: Option<u64>,
    pub error: Option<String>,
}

/// What [`Vault::cosign`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CosignReport {
    /// The latest signed checkpoint, with the cosignatures it has.
    pub checkpoint: CosignedCheckpoint,
    pub witnesses: Vec<WitnessOutcome>,
    /// The latest final checkpoint (the one above if it is final).
    pub final_checkpoint: Option<CosignedCheckpoint>,
}

/// How a submission ended.
enum Submitted {
    Cosigned(String),
    /// The witness holds a larger tree than the checkpoint.
    Ahead(u64),
    /// The witness holds a tree the checkpoint does not extend.
    Forked(String),
    Failed(String),
}

impl Vault {
    /// Configures the witnesses that cosign this vault's checkpoints.
    pub fn with_witnesses(mut self, policy: WitnessPolicy) -> Result<Vault, VaultError> {
        let n = policy.witnesses.len();
        if n == 0 {
            self.witnessing = None;
            return Ok(self);
        }
        if policy.quorum == 0 || policy.quorum > n {
            return Err(VaultError::Invalid {
                what: "witness quorum",
                why: format!("must be between 1 and the number of witnesses ({n})"),
            });
        }
        let verifiers: Vec<CosignatureVerifier> = policy
            .witnesses
            .iter()
            .map(|w| w.verifier.clone())
            .collect();
        distinct_witnesses(&verifiers)?;
        self.witnessing = Some(Witnessing {
            policy,
            known: Mutex::new(HashMap::new()),
        });
        if self.recorded_witness_policy()?.is_none() {
            let (keys, quorum) = self.witness_policy();
            self.record_witness_policy(None, keys, quorum)?;
        }
        Ok(self)
    }

    /// The witness policy recorded in the key store (None: never recorded).
    pub fn recorded_witness_policy(&self) -> Result<Option<RecordedWitnessPolicy>, VaultError> {
        let Some(name) = self.keys.secret_names(POLICY_PREFIX)?.pop() else {
            return Ok(None);
        };
        let bytes = self.keys.secret(&name)?.ok_or_else(|| {
            VaultError::LogVerification(format!("the key store lost its entry `{name}`"))
        })?;
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            VaultError::LogVerification(format!(
                "the key store's witness policy `{name}` does not parse: {e}"
            ))
        })
    }

    /// The recorded policy beside the configured one.
    pub fn witness_policy_status(&self) -> Result<WitnessPolicyStatus, VaultError> {
        let recorded = self.recorded_witness_policy()?;
        let (mut configured, configured_quorum) = self.witness_policy();
        configured.sort();
        let may_sign = match &recorded {
            None => true,
            Some(r) => r.witnesses == configured && r.quorum == configured_quorum,
        };
        Ok(WitnessPolicyStatus {
            recorded,
            configured,
            configured_quorum,
            may_sign,
        })
    }

    /// The operator changes the recorded witness policy (the verifier keys
    /// and the quorum; no keys: the vault has no witnesses). One leaf. The
    /// vault signs from then on only with exactly these witnesses.
    pub fn set_witness_policy(
        &self,
        keys: &[String],
        quorum: usize,
    ) -> Result<RecordedWitnessPolicy, VaultError> {
        let mut verifiers = Vec::new();
        for k in keys {
            verifiers.push(CosignatureVerifier::new(k.trim()).map_err(|e| {
                VaultError::Invalid {
                    what: "witness key",
                    why: e.to_string(),
                }
            })?);
        }
        distinct_witnesses(&verifiers)?;
        let mut vkeys: Vec<String> = verifiers.iter().map(|v| v.verifier_key()).collect();
        vkeys.sort();
        let n = vkeys.len();
        if (n == 0 && quorum != 0) || (n > 0 && (quorum == 0 || quorum > n)) {
            return Err(VaultError::Invalid {
                what: "witness quorum",
                why: format!("must be between 1 and the number of witnesses ({n}), or 0 with none"),
            });
        }
        let current = self.recorded_witness_policy()?;
        self.record_witness_policy(current.map(|c| c.version), vkeys, quorum)
    }

    /// Writes version `after + 1` of the policy, then its leaf
    /// (`witness_policy`, the operator as actor, `selector`
    /// `witnesses:<n>;quorum:<q>;version:<v>`).
    fn record_witness_policy(
        &self,
        after: Option<u64>,
        mut witnesses: Vec<String>,
        quorum: usize,
    ) -> Result<RecordedWitnessPolicy, VaultError> {
        witnesses.sort();
        let now = self.clock.now_ms();
        let version = after.unwrap_or(0) + 1;
        let p = RecordedWitnessPolicy {
            version,
            witnesses,
            quorum,
            recorded_at: now,
        };
        let bytes = serde_json::to_vec(&p).map_err(|e| VaultError::Invalid {
            what: "witness policy",
            why: e.to_string(),
        })?;
        self.keys
            .put_secret(&format!("{POLICY_PREFIX}{version:010}"), &bytes)
            .map_err(|e| match e {
                postvault_store::StoreError::Io { .. } => VaultError::from(e),
                _ => VaultError::Refused {
                    code: "witness_policy_changed",
                    message: format!(
                        "another change recorded witness policy version {version} first; show it with `postvault log witnesses show` and try again"
                    ),
                },
            })?;
        let leaf = Event {
            v: LEAF_VERSION,
            time: now,
            action: "witness_policy".into(),
            principal: Actor {
                role: "operator".into(),
                id: self.actor_id("operator"),
            },
            purpose: None,
            decision: "allow".into(),
            pack: self.pack.version().to_string(),
            reasons: vec![],
            categories: vec![],
            count: 1,
            rejected: None,
            selector: Some(format!(
                "witnesses:{};quorum:{quorum};version:{version}",
                p.witnesses.len()
            )),
            instrument: None,
            subject_tag: None,
        }
        .to_leaf();
        self.store
            .append_leaves(1, &mut |_, _| leaf.clone().into())?;
        Ok(p)
    }

    /// Before a signature: the configured witnesses must be the recorded
    /// ones, with the recorded quorum.
    pub(crate) fn require_recorded_witnesses(&self) -> Result<(), VaultError> {
        let s = self.witness_policy_status()?;
        let Some(r) = s.recorded.filter(|_| !s.may_sign) else {
            return Ok(());
        };
        Err(VaultError::Refused {
            code: WITNESSES_NOT_CONFIGURED,
            message: format!(
                "this vault's key store records {} witness(es) with quorum {} (policy version {}), but this process is configured with {} witness(es) with quorum {}{}; refusing to sign a checkpoint no recorded witness would see: give each recorded witness with --log-witness URL=VKEY (and --log-witness-quorum {}), or change the record with `postvault log witnesses set` (`postvault log witnesses show` lists the recorded keys)",
                r.witnesses.len(),
                r.quorum,
                r.version,
                s.configured.len(),
                s.configured_quorum,
                if s.configured.iter().any(|k| !r.witnesses.contains(k)) {
                    ", some of them not recorded"
                } else {
                    ""
                },
                r.quorum
            ),
        })
    }

    /// The configured witnesses' verifier keys and the quorum (empty, 0
    /// without witnesses).
    pub fn witness_policy(&self) -> (Vec<String>, usize) {
        match &self.witnessing {
            Some(w) => (
                w.policy
                    .witnesses
                    .iter()
                    .map(|c| c.verifier.verifier_key())
                    .collect(),
                w.policy.quorum,
            ),
            None => (Vec::new(), 0),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        match &self.witnessing {
            Some(w) => w.known.lock().unwrap_or_else(|e| e.into_inner()),
            None => unreachable_known(),
        }
    }

    /// The largest size a witness verifiably holds in this process: one it
    /// cosigned for this vault (its cosignature verified). Every such size
    /// was the key store's state once, and the state only grows. A size a
    /// witness only claims (an unsigned 409) is not counted here.
    pub(crate) fn witnessed_max(&self) -> Option<(String, u64)> {
        self.witnessing.as_ref()?;
        self.known()
            .iter()
            .filter_map(|(k, v)| v.size.map(|s| (k.clone(), s)))
            .max_by_key(|(_, s)| *s)
    }

    /// Before a signature: submits the last signed checkpoint `note` to
    /// every witness not heard from in this process. A witness holding a
    /// larger or another tree refuses the signature; one that cannot be
    /// reached does not (what is signed then stays pending until a quorum
    /// cosigns it, which no witness does for a fork).
    pub(crate) fn probe_witnesses(&self, note: &str) -> Result<(), VaultError> {
        let Some(w) = &self.witnessing else {
            return Ok(());
        };
        let todo: Vec<&ConfiguredWitness> = {
            let known = self.known();
            w.policy
                .witnesses
                .iter()
                .filter(|c| !known.get(&c.verifier.label()).is_some_and(|k| k.confirmed))
                .collect()
        };
        if todo.is_empty() {
            return Ok(());
        }
        let cp = self.open_own_checkpoint(note)?;
        let outcomes = self.submit_all(&todo, note, &cp);
        let mut conflicts = Vec::new();
        for (c, out) in todo.iter().zip(outcomes) {
            let label = c.verifier.label();
            match out {
                Submitted::Cosigned(line) => {
                    self.store.put_cosignatures(cp.size, &[(label, line)])?;
                }
                Submitted::Ahead(m) => conflicts.push(format!(
                    "`{label}` claims to hold a checkpoint of {m} leaves"
                )),
                Submitted::Forked(why) => conflicts.push(format!("`{label}`: {why}")),
                Submitted::Failed(_) => {}
            }
        }
        // A conflict is an unsigned claim. The vault concludes it was rolled
        // back only when a quorum of the witnesses report conflicts and no
        // quorum verifiably cosigned its last signed checkpoint (a verified
        // cosignature outweighs a claim).
        let quorum = w.policy.quorum.max(1);
        let confirmed = w
            .policy
            .witnesses
            .iter()
            .filter(|c| {
                self.known()
                    .get(&c.verifier.label())
                    .is_some_and(|k| k.confirmed)
            })
            .count();
        if conflicts.len() >= quorum && confirmed < quorum {
            return Err(VaultError::LogRollback(format!(
                "{} of the {} configured witnesses (quorum {quorum}) report a tree this vault's last signed checkpoint ({} leaves, as its key store keeps it) does not extend, and only {confirmed} cosigned that checkpoint: {}; these 409 answers are unsigned claims, but a quorum of them means the vault's stores were most likely rolled back together (a restored copy of the whole vault) or rewritten; restore the latest copy of both stores; the vault will not sign until then",
                conflicts.len(),
                w.policy.witnesses.len(),
                cp.size,
                conflicts.join("; ")
            )));
        }
        Ok(())
    }

    /// Submits `note` to each witness of `todo` at once.
    fn submit_all(
        &self,
        todo: &[&ConfiguredWitness],
        note: &str,
        cp: &Checkpoint,
    ) -> Vec<Submitted> {
        std::thread::scope(|s| {
            let handles: Vec<_> = todo
                .iter()
                .map(|c| s.spawn(move || self.submit(c, note, cp)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Submitted::Failed("the submission stopped".into()))
                })
                .collect()
        })
    }

    /// One witness: `add-checkpoint` from the size it is believed to hold,
    /// again from the size a 409 names, and its answer verified.
    fn submit(&self, c: &ConfiguredWitness, note: &str, cp: &Checkpoint) -> Submitted {
        let label = c.verifier.label();
        let hint = self
            .known()
            .get(&label)
            .and_then(|k| k.claimed.filter(|c| *c <= cp.size).or(k.size));
        let hint = match hint {
            Some(h) => Some(h),
            None => self.store.cosigned_by(&label).ok().flatten(),
        };
        let mut old = hint.filter(|h| *h <= cp.size).unwrap_or(0);
        let text = match postvault_log::parse_note(note.as_bytes()) {
            Ok(n) => n.text,
            Err(e) => return Submitted::Failed(e.to_string()),
        };
        let mut tried = Vec::new();
        let out = loop {
            if tried.contains(&old) || tried.len() >= 4 {
                break Submitted::Failed("the witness keeps naming other sizes".into());
            }
            tried.push(old);
            let proof = if old == 0 || old == cp.size {
                Vec::new()
            } else {
                match postvault_log::prove_consistency(
                    old,
                    cp.size,
                    &crate::log::StoreHashes(&*self.store),
                ) {
                    Ok(p) => p,
                    Err(e) => break Submitted::Failed(e.to_string()),
                }
            };
            match c.client.add_checkpoint(old, &proof, note) {
                Ok(body) => {
                    let lines = match postvault_log::parse_signature_lines(&body, MAX_ANSWER_LINES)
                    {
                        Ok(l) => l,
                        Err(e) => break Submitted::Failed(format!("a malformed answer: {e}")),
                    };
                    let mine: Vec<_> = lines
                        .iter()
                        .filter(|l| c.verifier.is_signer_of(l))
                        .collect();
                    if mine.is_empty() {
                        break Submitted::Failed("the answer holds no line of this witness".into());
                    }
                    match mine
                        .iter()
                        .try_for_each(|l| c.verifier.verify(&text, l).map(|_| ()))
                    {
                        Ok(()) => {
                            self.heard(&label, Some(cp.size), true, None);
                            break Submitted::Cosigned(mine[0].to_line());
                        }
                        Err(_) => break Submitted::Failed("a cosignature does not verify".into()),
                    }
                }
                Err(WitnessCallError::Conflict(m)) => {
                    self.known().entry(label.clone()).or_default().claimed = Some(m);
                    if m > cp.size {
                        break Submitted::Ahead(m);
                    }
                    if m == cp.size && old == cp.size {
                        break Submitted::Forked(format!("it cosigned another tree of {m} leaves"));
                    }
                    old = m;
                }
                // The witness's tree of `old` leaves is not the first `old`
                // leaves of this log (v1.1 witnesses also answer 422 to an
                // equal size with another root).
                Err(WitnessCallError::Refused { status: 422, .. }) if old != 0 || cp.size == 0 => {
                    break Submitted::Forked(format!("its tree of {old} leaves is not this log's"));
                }
                Err(e) => break Submitted::Failed(e.to_string()),
            }
        };
        match &out {
            Submitted::Failed(e) => self.heard(&label, None, false, Some(e.clone())),
            Submitted::Ahead(m) => self.heard(
                &label,
                None,
                false,
                Some(unverified_claim(&format!(
                    "holds a checkpoint of {m} leaves"
                ))),
            ),
            Submitted::Forked(why) => {
                self.heard(&label, None, false, Some(unverified_claim(why)));
            }
            Submitted::Cosigned(_) => {}
        }
        out
    }

    fn heard(&self, label: &str, size: Option<u64>, confirmed: bool, error: Option<String>) {
        let mut known = self.known();
        let k = known.entry(label.to_string()).or_default();
        if size.is_some() {
            k.size = size;
        }
        if confirmed {
            k.confirmed = true;
            k.claimed = None;
            k.last_error = None;
        }
        if error.is_some() {
            k.last_error = error;
        }
    }

    /// Signs a checkpoint if the log grew, then gathers the cosignatures it
    /// lacks from the witnesses, in parallel, keeping every line that
    /// verifies. Without witnesses, the signed checkpoint is final.
    pub fn cosign(&self) -> Result<CosignReport, VaultError> {
        let note = self.checkpoint()?;
        let cp = self.open_own_checkpoint(&note)?;
        let Some(w) = &self.witnessing else {
            let c = CosignedCheckpoint {
                note,
                size: cp.size,
                is_final: true,
                cosigners: Vec::new(),
                quorum: 0,
            };
            return Ok(CosignReport {
                final_checkpoint: Some(c.clone()),
                checkpoint: c,
                witnesses: Vec::new(),
            });
        };
        let have = self.cosigned(cp.size, &note)?;
        let todo: Vec<&ConfiguredWitness> = w
            .policy
            .witnesses
            .iter()
            .filter(|c| !have.cosigners.contains(&c.verifier.label()))
            .collect();
        let outcomes = self.submit_all(&todo, &note, &cp);
        let mut lines = Vec::new();
        let mut errors: HashMap<String, String> = HashMap::new();
        for (c, out) in todo.iter().zip(outcomes) {
            let label = c.verifier.label();
            match out {
                Submitted::Cosigned(line) => lines.push((label, line)),
                Submitted::Ahead(m) => {
                    errors.insert(
                        label,
                        unverified_claim(&format!("holds a checkpoint of {m} leaves")),
                    );
                }
                Submitted::Forked(why) => {
                    errors.insert(label, unverified_claim(&why));
                }
                Submitted::Failed(e) => {
                    errors.insert(label, e);
                }
            }
        }
        if !lines.is_empty() {
            self.store.put_cosignatures(cp.size, &lines)?;
        }
        let checkpoint = self.cosigned(cp.size, &note)?;
        let known = self.known().clone();
        let witnesses = w
            .policy
            .witnesses
            .iter()
            .map(|c| {
                let label = c.verifier.label();
                WitnessOutcome {
                    cosigned: checkpoint.cosigners.contains(&label),
                    size: known.get(&label).and_then(|k| k.size),
                    error: errors.remove(&label),
                    witness: label,
                }
            })
            .collect();
        let final_checkpoint = if checkpoint.is_final {
            Some(checkpoint.clone())
        } else {
            self.final_checkpoint()?
        };
        Ok(CosignReport {
            checkpoint,
            witnesses,
            final_checkpoint,
        })
    }

    /// The kept checkpoint of `size` (signed note `note`) with the kept
    /// cosignature lines of configured witnesses that verify.
    fn cosigned(&self, size: u64, note: &str) -> Result<CosignedCheckpoint, VaultError> {
        let (verifiers, quorum) = match &self.witnessing {
            Some(w) => (
                w.policy
                    .witnesses
                    .iter()
                    .map(|c| c.verifier.clone())
                    .collect::<Vec<_>>(),
                w.policy.quorum,
            ),
            None => (Vec::new(), 0),
        };
        let kept = self.store.cosignatures(size)?;
        let mut full = note.to_string();
        for v in &verifiers {
            if let Some((_, line)) = kept.iter().find(|(c, _)| *c == v.label()) {
                full.push_str(line);
            }
        }
        let checked = self
            .open_own_checkpoint(&full)
            .and_then(|cp| postvault_log::verify_cosignatures(&full, cp, &verifiers))
            .map_err(|e| {
                VaultError::LogVerification(format!(
                    "a kept cosignature of the checkpoint of size {size} does not verify: {e}"
                ))
            })?;
        let cosigners: Vec<String> = checked
            .cosigned
            .iter()
            .map(|c| c.cosigner.clone())
            .collect();
        // Only verified lines go out.
        let mut out = note.to_string();
        for c in &checked.cosigned {
            out.push_str(&c.line);
        }
        Ok(CosignedCheckpoint {
            note: out,
            size,
            is_final: cosigners.len() >= quorum,
            cosigners,
            quorum,
        })
    }

    /// The latest checkpoint a quorum of the witnesses cosigned, with their
    /// lines, from what is kept (no witness is called). Without witnesses:
    /// the latest signed checkpoint.
    pub fn final_checkpoint(&self) -> Result<Option<CosignedCheckpoint>, VaultError> {
        let Some(w) = &self.witnessing else {
            return Ok(self
                .store
                .latest_checkpoint()?
                .map(|(size, note)| CosignedCheckpoint {
                    note,
                    size,
                    is_final: true,
                    cosigners: Vec::new(),
                    quorum: 0,
                }));
        };
        let labels: Vec<String> = w
            .policy
            .witnesses
            .iter()
            .map(|c| c.verifier.label())
            .collect();
        let Some(size) = self.store.latest_cosigned(&labels, w.policy.quorum)? else {
            return Ok(None);
        };
        let note = self.store.checkpoint_note(size)?.ok_or_else(|| {
            VaultError::LogVerification(format!(
                "cosignatures are kept for a checkpoint of size {size} the data store does not keep"
            ))
        })?;
        let c = self.cosigned(size, &note)?;
        if !c.is_final {
            return Err(VaultError::LogVerification(format!(
                "the kept cosignatures of the checkpoint of size {size} do not reach the quorum"
            )));
        }
        Ok(Some(c))
    }

    /// The checkpoint a person's proofs are given against: the latest one
    /// (signed now if the log grew), with the cosignatures gathered for it
    /// now; `is_final` says whether it reached the quorum.
    pub fn cosigned_checkpoint(&self) -> Result<CosignedCheckpoint, VaultError> {
        Ok(self.cosign()?.checkpoint)
    }

    /// A checkpoint that covers the first `size` leaves (a report's own
    /// leaves). With witnesses: the latest kept one if it does, is final
    /// (cosigned by a quorum), its signature checks, the data store's tree
    /// still has its root and the key store's state is at least as large
    /// (no rollback since it was signed), and the witnesses the key store
    /// records are configured; else [`Vault::cosigned_checkpoint`], which
    /// signs with every check of [`Vault::checkpoint`]. Rounds are not
    /// serialized there (a witness down would make every report wait on
    /// the one before).
    ///
    /// Without witnesses, reports sign one at a time ([`Covering`]), so
    /// reports that arrive together share the signature one of them makes
    /// instead of each signing for the others' leaves. A report takes the
    /// last checkpoint this vault signed ([`Vault::checkpoint`]) if it
    /// covers its leaves and the stores still stand behind it (checked as
    /// above), without waiting for a signing in progress; until there is
    /// one, the latest kept one, checked alike. Otherwise it waits for the
    /// signing in progress (which may cover it), looks again, and with its
    /// turn takes the latest kept one if it covers it (another process may
    /// have signed) or signs.
    pub(crate) fn checkpoint_covering(&self, size: u64) -> Result<CosignedCheckpoint, VaultError> {
        if self.witnessing.is_some() {
            if let Some(kept) = self.kept_checkpoint_covering(size)? {
                return Ok(kept);
            }
            return self.cosigned_checkpoint();
        }
        // Each pass either returns or follows a signing that ended after
        // the pass looked; a signing that begins after this report's
        // leaves were appended covers them, so a pass or two suffice. The
        // bound only keeps a store that never shows a covering checkpoint
        // (the signing path then says why) from holding the report.
        for _ in 0..COVERING_PASSES {
            let look = self.covering.look(size);
            if let Some(c) = look.signed {
                match self.open_own_checkpoint(&c.note) {
                    Ok(cp) if cp.size == c.size && self.still_holds(&cp)? => return Ok(c),
                    // The stores no longer stand behind it (restored
                    // under the running vault): never offered again.
                    _ => self.covering.forget(c.size),
                }
            }
            // Until this process has signed, a checkpoint signed before it
            // opened, or by another process, may cover the report.
            if !look.signed_any
                && let Some(kept) = self.kept_checkpoint_covering(size)?
            {
                return Ok(kept);
            }
            if let Some(_turn) = self.covering.turn(look.rounds) {
                return self.sign_covering(size);
            }
        }
        let _turn = self.covering.turn_now();
        self.sign_covering(size)
    }

    /// With the turn to sign: the latest kept checkpoint if it covers the
    /// first `size` leaves (another process or node may have signed one
    /// since this one did), else [`Vault::cosigned_checkpoint`].
    fn sign_covering(&self, size: u64) -> Result<CosignedCheckpoint, VaultError> {
        if let Some(kept) = self.kept_checkpoint_covering(size)? {
            return Ok(kept);
        }
        self.cosigned_checkpoint()
    }

    /// The reusable checkpoint of [`Vault::checkpoint_covering`], if any.
    pub(crate) fn kept_checkpoint_covering(
        &self,
        size: u64,
    ) -> Result<Option<CosignedCheckpoint>, VaultError> {
        let Some((n, note)) = self.store.latest_checkpoint()? else {
            return Ok(None);
        };
        let Ok(cp) = self.open_own_checkpoint(&note) else {
            return Ok(None);
        };
        if n < size || cp.size != n || !self.still_holds(&cp)? {
            return Ok(None);
        }
        let kept = self.cosigned(n, &note)?;
        Ok(kept.is_final.then_some(kept))
    }

    /// Whether the stores still stand behind `cp`, one of this vault's
    /// checkpoints, for it to be handed out again without a signature: the
    /// witnesses the key store records are configured, the key store's
    /// state is at least as large (no rollback since it was signed), and
    /// the data store's tree is hashed that far and still has its root.
    fn still_holds(&self, cp: &Checkpoint) -> Result<bool, VaultError> {
        self.require_recorded_witnesses()?;
        Ok(self.keys.log_state()?.is_some_and(|s| s.size >= cp.size)
            && self.store.hashed_size()? >= cp.size
            && self.log_root(cp.size)? == cp.root)
    }

    /// Whether witnesses are configured.
    pub fn has_witnesses(&self) -> bool {
        self.witnessing.is_some()
    }
}

/// A witness's conflict answer, as a warning: its claim is quoted, not
/// believed.
fn unverified_claim(claim: &str) -> String {
    format!(
        "counted as failed this round: it answered that it {claim} (an unsigned claim, not verified; the vault refuses to sign only when a quorum of its witnesses report conflicts and no quorum cosigned its last checkpoint)"
    )
}

fn unreachable_known() -> std::sync::MutexGuard<'static, HashMap<String, Known>> {
    static EMPTY: std::sync::LazyLock<Mutex<HashMap<String, Known>>> =
        std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));
    EMPTY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Witnesses that are distinct: no key given twice, under the same name or
/// another (the cosigned message does not name the key, so one key under
/// two names would count twice toward a quorum), and no two keys of one
/// name and key ID (a key made to collide with another witness's would
/// stop the vault from starting with its witnesses).
pub(crate) fn distinct_witnesses(verifiers: &[CosignatureVerifier]) -> Result<(), VaultError> {
    let mut keys = std::collections::BTreeSet::new();
    let mut labels = std::collections::BTreeSet::new();
    for v in verifiers {
        if !keys.insert(v.public_key()) {
            return Err(VaultError::Invalid {
                what: "witnesses",
                why: format!("the key of `{}` is given twice", v.label()),
            });
        }
        if !labels.insert(v.label()) {
            return Err(VaultError::Invalid {
                what: "witnesses",
                why: format!(
                    "two different keys share the name and key ID `{}`",
                    v.label()
                ),
            });
        }
    }
    Ok(())
}

/// Passes [`Vault::checkpoint_covering`] makes before it signs whatever
/// it finds.
const COVERING_PASSES: usize = 8;

/// Reports signing the checkpoint that covers their own leaves: whether
/// one is signing now, how many signings have ended, and the last
/// checkpoint signed. A report whose leaves that checkpoint covers takes it
/// and never waits for a signing; the others wait for the signing in
/// progress (it may cover them), and one of them signs for all.
#[derive(Default)]
pub(crate) struct Covering {
    state: Mutex<CoveringState>,
    ended: std::sync::Condvar,
}

#[derive(Default)]
struct CoveringState {
    signing: bool,
    rounds: u64,
    /// The largest checkpoint [`Vault::checkpoint`] signed (without
    /// witnesses), after every check there, swapped into the key store and
    /// kept in the data store before it was returned.
    last: Option<CosignedCheckpoint>,
}

/// What [`Covering::look`] saw.
pub(crate) struct CoveringLook {
    /// Signings ended so far.
    pub(crate) rounds: u64,
    /// The last signing's checkpoint, if it covers the size asked.
    pub(crate) signed: Option<CosignedCheckpoint>,
    /// Whether this vault has signed a checkpoint since it opened.
    pub(crate) signed_any: bool,
}

/// The right to sign, held by one report at a time; its drop ends the
/// round (on an error or a panic too) and wakes the reports waiting.
pub(crate) struct CoveringTurn<'a>(&'a Covering);

impl Covering {
    fn lock(&self) -> std::sync::MutexGuard<'_, CoveringState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rounds ended, and the last signing's checkpoint if it covers
    /// the first `size` leaves.
    pub(crate) fn look(&self, size: u64) -> CoveringLook {
        let s = self.lock();
        CoveringLook {
            rounds: s.rounds,
            signed: s.last.as_ref().filter(|c| c.size >= size).cloned(),
            signed_any: s.last.is_some(),
        }
    }

    /// The turn to sign, once no other report signs, if no signing ended
    /// since the caller saw `seen` rounds (one that did may cover it:
    /// `None`, look again).
    pub(crate) fn turn(&self, seen: u64) -> Option<CoveringTurn<'_>> {
        let mut s = self.wait_idle(self.lock());
        if s.rounds != seen {
            return None;
        }
        s.signing = true;
        Some(CoveringTurn(self))
    }

    /// The turn to sign, once no other report signs.
    pub(crate) fn turn_now(&self) -> CoveringTurn<'_> {
        let mut s = self.wait_idle(self.lock());
        s.signing = true;
        CoveringTurn(self)
    }

    fn wait_idle<'g>(
        &self,
        mut s: std::sync::MutexGuard<'g, CoveringState>,
    ) -> std::sync::MutexGuard<'g, CoveringState> {
        while s.signing {
            s = self.ended.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s
    }
}

impl Covering {
    /// Forgets the last checkpoint if it is of `size` leaves.
    pub(crate) fn forget(&self, size: u64) {
        let mut s = self.lock();
        if s.last.as_ref().is_some_and(|l| l.size == size) {
            s.last = None;
        }
    }

    /// Offers a checkpoint [`Vault::checkpoint`] signed: kept if it is
    /// larger than the last.
    pub(crate) fn offer(&self, size: u64, note: &str) {
        let mut s = self.lock();
        if s.last.as_ref().is_none_or(|l| l.size < size) {
            s.last = Some(CosignedCheckpoint {
                note: note.to_string(),
                size,
                is_final: true,
                cosigners: Vec::new(),
                quorum: 0,
            });
        }
    }
}

impl Drop for CoveringTurn<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.signing = false;
        s.rounds += 1;
        drop(s);
        self.0.ended.notify_all();
    }
}
