//! A person's own way in: one-time access codes, the session principal they
//! open, and the person's requests (erasure) that wait for the privacy office.
//!
//! An officer issues a code for one person (`access_code_issue`, one leaf
//! tagged for the person); it is mailed to them (the R20 notice channel).
//! The key store keeps only the code's SHA-256, when it expires, the
//! person's pseudonymous ref and their identifier sealed under their own
//! data key: a copy of the key store without the master key names nobody,
//! and an erasure (which destroys the data key) makes every outstanding code
//! for the person unopenable. Redeeming a code deletes it first (one use,
//! on every node: the delete succeeds once), then writes one leaf
//! (`portal_login`, tagged for the person) and returns a [`PersonSession`]:
//! the pack's subject-access role acting for that one person, a principal
//! that exists only in the serving process and that no token opens.
//!
//! Erasure requests wait in the key store under `rights-request/` with the
//! same sealing; granting one erases the person (the erasure's own leaves)
//! and keeps of the request only its kind, status and times.

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use postvault_store::SubjectRef;

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::leaf::{Event, LEAF_VERSION};
use crate::vault::{Principal, SubjectKeyPair, Vault};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const CODE_PREFIX: &str = "access-code/";
const REQUEST_PREFIX: &str = "rights-request/";
/// How long a mailed code stays valid.
pub const ACCESS_CODE_DAYS: i64 = 30;
/// A decision's claim left this long by an attempt that never finished is
/// taken over by the next attempt.
const CLAIM_STALE_MS: i64 = 5 * 60 * 1000;
/// Characters of a code: 20 of Crockford's base32, 100 bits.
const CODE_LEN: usize = 20;
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// The name the portal's principal acts under in the log (`actor_id` of
/// it); no principal name can take it (`:` is not allowed in names).
const PERSON_NAME: &str = "portal:person";
const DAY_MS: i64 = 86_400_000;

/// A code issued for one person, shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessCode {
    /// `XXXX-XXXX-XXXX-XXXX-XXXX`: to be mailed to the person.
    pub code: String,
    pub expires_at: String,
    /// The leaf that accounts for the issue.
    pub log_index: u64,
}

/// What a redeemed code opens: the person, and the principal that acts for
/// them (the pack's subject-access role). Never stored; no token opens it.
#[derive(Clone, Debug)]
pub struct PersonSession {
    pub subject: String,
    pub principal: Principal,
    /// The login's leaf.
    pub log_index: u64,
}

/// A person's request as the privacy office (or the person) sees it. It
/// names the person by no identifier: the office decides on the request,
/// the vault finds the person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RightsRequest {
    pub id: String,
    /// `erasure` or `correction`.
    pub kind: String,
    /// A correction: the category to correct.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// A correction, while it waits: the fields the person asks for (shown
    /// to the person and to the office that decides).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub proposed: Option<serde_json::Value>,
    /// `pending`, `granted` or `refused`.
    pub status: String,
    pub requested_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The refusal's reason code and note, or what the grant did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// The reasons an officer may give for refusing a request.
pub const REFUSAL_REASONS: &[(&str, &str)] = &[
    (
        "legal_hold",
        "a legal hold keeps the records (they are deleted when it ends)",
    ),
    (
        "retention_required",
        "the law requires keeping these records for now",
    ),
    (
        "identity_not_confirmed",
        "the request could not be tied to the person",
    ),
    ("other", "another reason, in the note"),
];

#[derive(Serialize, Deserialize)]
struct StoredCode {
    /// Hex of the person's ref.
    subject: String,
    expires: i64,
    /// Base64 of the identifier sealed under the person's data key.
    sealed: String,
}

#[derive(Serialize, Deserialize)]
struct StoredRequest {
    kind: String,
    status: String,
    requested: i64,
    /// A correction's category (a pack id, no personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    category: Option<String>,
    /// A correction: the id of the record to replace, when the person named
    /// it (a grant retried after a crash then finds it replaced already,
    /// and corrects nothing twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    /// The person's tag of the request (their tag key over the time it was
    /// made): they find their requests, decided ones too, and nobody can
    /// once their keys are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// A correction's fields (JSON) sealed under the person's data key,
    /// while the request waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proposed: Option<String>,
    /// Hex ref and the sealed identifier, while the request is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
    /// A refusal's note to the person, sealed under their data key (an
    /// officer's words may name something of theirs); the person's ref stays
    /// beside it so it can be opened, until their keys are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decided: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
}

impl Vault {
    /// Issues a one-time code for `subject`, as a privacy officer (one deny
    /// leaf otherwise). Any well-formed identifier gets a code, known to the
    /// vault or not (the person's keys are made if missing, as a consent
    /// does), so issuing tells the officer nothing about whether the vault
    /// holds the person. One leaf, tagged for the person.
    pub fn issue_access_code(
        &self,
        officer: &Principal,
        subject: &str,
    ) -> Result<AccessCode, VaultError> {
        self.require_officer(officer, "issue access codes", "access_code_issue")?;
        crate::vault::check_subject(subject)?;
        let r = self.subject_ref(subject);
        let pair = &self.person_keys(&r)?;
        let now = self.clock.now_ms();
        let expires = now + ACCESS_CODE_DAYS * DAY_MS;
        let code = self.new_access_code()?;
        let stored = StoredCode {
            subject: hex::encode(r),
            expires,
            sealed: B64.encode(
                pair.data
                    .seal(&self.rng, &code_aad(&r), subject.as_bytes())?,
            ),
        };
        // Expired codes go first, so nothing after the code is stored can
        // fail and leave a code nobody was shown; the leaf before the code:
        // a code that exists is always accounted for.
        self.forget_expired(CODE_PREFIX, now)?;
        let log_index = self.person_leaf(officer, "access_code_issue", Some(&**pair), now)?;
        self.keys.put_secret(
            &code_name(&code),
            &serde_json::to_vec(&stored).unwrap_or_default(),
        )?;
        Ok(AccessCode {
            code: group_code(&code),
            expires_at: format_ms(expires),
            log_index,
        })
    }

    /// Redeems a code: `None` for a code that is malformed, unknown, used,
    /// expired, or whose person was erased (all alike to the caller). A
    /// valid code is deleted (it never works twice, on any node) and one
    /// leaf records the login.
    pub fn redeem_access_code(&self, code: &str) -> Result<Option<PersonSession>, VaultError> {
        let Some(code) = normalize_code(code) else {
            return Ok(None);
        };
        let name = code_name(&code);
        let Some(raw) = self.keys.secret(&name)? else {
            return Ok(None);
        };
        // Whoever deletes it uses it.
        if !self.keys.delete_secret(&name)? {
            return Ok(None);
        }
        let Ok(stored) = serde_json::from_slice::<StoredCode>(&raw) else {
            return Ok(None);
        };
        let now = self.clock.now_ms();
        if stored.expires <= now {
            return Ok(None);
        }
        let Some((subject, pair)) = self.open_sealed(&stored.subject, &stored.sealed, code_aad)?
        else {
            return Ok(None);
        };
        let principal = self.person_principal()?;
        let log_index = self.person_leaf(&principal, "portal_login", Some(&*pair), now)?;
        Ok(Some(PersonSession {
            subject,
            principal,
            log_index,
        }))
    }

    /// Withdraws every outstanding code of `subject`, as a privacy officer
    /// (a letter went astray): returns how many. One leaf, tagged for the
    /// person. The sessions codes already opened are the server's to end.
    pub fn revoke_access_codes(
        &self,
        officer: &Principal,
        subject: &str,
    ) -> Result<u64, VaultError> {
        self.require_officer(officer, "withdraw access codes", "access_code_revoke")?;
        crate::vault::check_subject(subject)?;
        let r = self.subject_ref(subject);
        let hex_ref = hex::encode(r);
        let mut gone = Vec::new();
        for name in self.keys.secret_names(CODE_PREFIX)? {
            if let Some(raw) = self.keys.secret(&name)?
                && serde_json::from_slice::<StoredCode>(&raw).is_ok_and(|c| c.subject == hex_ref)
            {
                gone.push(name);
            }
        }
        let n = if gone.is_empty() {
            0
        } else {
            self.keys.delete_secrets(&gone)?
        };
        let keys = self.subject_keys(&r)?;
        self.person_leaf(
            officer,
            "access_code_revoke",
            keys.as_deref(),
            self.clock.now_ms(),
        )?;
        Ok(n)
    }

    /// Whether the vault still holds keys for `subject` (false once erased):
    /// a person's session ends with their erasure.
    pub fn person_present(&self, subject: &str) -> Result<bool, VaultError> {
        crate::vault::check_subject(subject)?;
        self.sync_erasures()?;
        Ok(self.subject_keys(&self.subject_ref(subject))?.is_some())
    }

    /// The person's key to their own log entries (base64), for their own
    /// scan of the public log (`postvault log scan`: every entry about
    /// them, none left out), as `person`, a role acting for them (the
    /// portal's), with the index of the one leaf it writes,
    /// `tag_key_shown`, tagged for them (a scan must reach past it).
    /// `None` when the vault holds no keys for them (nothing collected, or
    /// erased): no leaf is written.
    pub fn person_tag_key(
        &self,
        person: &Principal,
        subject: &str,
    ) -> Result<Option<(String, u64)>, VaultError> {
        crate::vault::check_subject(subject)?;
        if !self.acts_for_subject(person) {
            self.deny_leaf(person, "tag_key_shown", None)?;
            return Err(VaultError::NotPermitted(format!(
                "role `{}` may not hand a person their key to the log; {}",
                person.role,
                self.subject_access_may()
            )));
        }
        self.sync_erasures()?;
        let r = self.subject_ref(subject);
        let Some(keys) = self.subject_keys(&r)? else {
            return Ok(None);
        };
        let leaf = self.person_leaf(person, "tag_key_shown", Some(&*keys), self.clock.now_ms())?;
        Ok(Some((B64.encode(keys.tag.to_bytes().as_ref()), leaf)))
    }

    /// The person's request to be erased, as the subject-access role acting
    /// for them: it waits for the privacy office. One leaf, tagged for the
    /// person. A second request while one is pending returns the first.
    pub fn request_erasure(
        &self,
        person: &Principal,
        subject: &str,
    ) -> Result<RightsRequest, VaultError> {
        crate::vault::check_subject(subject)?;
        if !self.acts_for_subject(person) {
            self.deny_leaf(person, "erasure_request", None)?;
            return Err(VaultError::NotPermitted(format!(
                "role `{}` may not request an erasure for a person; {}",
                person.role,
                self.subject_access_may()
            )));
        }
        let r = self.subject_ref(subject);
        if let Some((id, s)) = self.pending_erasure_of(&r)? {
            return Ok(self.request_view(id, &s, None));
        }
        let pair = &self.person_keys(&r)?;
        let now = self.clock.now_ms();
        self.person_leaf(person, "erasure_request", Some(&**pair), now)?;
        let (id, stored) = self.put_erasure_request(&r, subject, pair, now)?;
        Ok(self.request_view(id, &stored, None))
    }

    /// The pending erasure request of the person `r`, if one waits.
    fn pending_erasure_of(
        &self,
        r: &SubjectRef,
    ) -> Result<Option<(String, StoredRequest)>, VaultError> {
        let hex_ref = hex::encode(r);
        Ok(self.stored_requests()?.into_iter().find(|(_, s)| {
            s.kind == "erasure"
                && s.status == "pending"
                && s.subject.as_deref() == Some(hex_ref.as_str())
        }))
    }

    /// Keeps the person's erasure request whose leaf an erasure refused
    /// under holds they may not know of yet has written (their request,
    /// tagged for them, as [`Vault::request_erasure`] writes it): it waits
    /// for the office. The one already waiting, if any. A person without
    /// keys (never collected, or erased since) gets keys for the request,
    /// as in the portal: every such answer waits alike. If this fails, the
    /// leaf stands without a request and the caller gets the error.
    pub(crate) fn keep_erasure_request(&self, subject: &str) -> Result<String, VaultError> {
        let r = self.subject_ref(subject);
        if let Some((id, _)) = self.pending_erasure_of(&r)? {
            return Ok(id);
        }
        // Keys another process destroyed are not used to seal the request.
        self.sync_erasures()?;
        let pair = &self.person_keys(&r)?;
        let now = self.clock.now_ms();
        Ok(self.put_erasure_request(&r, subject, pair, now)?.0)
    }

    /// Stores a pending erasure request of the person `r` (`subject`).
    fn put_erasure_request(
        &self,
        r: &SubjectRef,
        subject: &str,
        pair: &SubjectKeyPair,
        now: i64,
    ) -> Result<(String, StoredRequest), VaultError> {
        let hex_ref = hex::encode(r);
        let stored = StoredRequest {
            kind: "erasure".into(),
            status: "pending".into(),
            requested: now,
            category: None,
            record: None,
            owner: Some(owner_tag(pair, now)),
            proposed: None,
            subject: Some(hex_ref),
            sealed: Some(B64.encode(pair.data.seal(
                &self.rng,
                &request_aad(r),
                subject.as_bytes(),
            )?)),
            note: None,
            decided: None,
            decided_by: None,
            outcome: None,
        };
        let id = format!(
            "er-{}",
            hex::encode(postvault_crypto::random_token(&self.rng)?)
        );
        self.put_request(&id, &stored)?;
        Ok((id, stored))
    }

    /// The person's request that the current record of `category` read
    /// `fields` (a JSON object of the category's fields; `record`: which
    /// record, when they hold several or named it), as the
    /// subject-access role acting for them: it waits for the privacy office,
    /// which grants it with [`Vault::correct`] (checked and minimized then)
    /// or refuses it. The fields are sealed under the person's data key
    /// while it waits. One leaf, tagged for the person.
    pub fn request_correction(
        &self,
        person: &Principal,
        subject: &str,
        category: &str,
        fields: &str,
        record: Option<&str>,
    ) -> Result<RightsRequest, VaultError> {
        crate::vault::check_subject(subject)?;
        if !self.acts_for_subject(person) {
            self.deny_leaf(person, "correction_request", None)?;
            return Err(VaultError::NotPermitted(format!(
                "role `{}` may not request a correction for a person; {}",
                person.role,
                self.subject_access_may()
            )));
        }
        let tax = self.pack.taxonomy();
        let known = tax
            .category_ix(category)
            .is_some_and(|c| !tax.engine().kept_by_vault(&tax.category(c).id));
        if !known {
            return Err(VaultError::Invalid {
                what: "category",
                why: "not a category of the pack a person may correct".into(),
            });
        }
        crate::rights::parse_correction(fields)?;
        let r = self.subject_ref(subject);
        let pair = &self.person_keys(&r)?;
        let now = self.clock.now_ms();
        let sealed = |plain: &[u8]| -> Result<String, VaultError> {
            Ok(B64.encode(pair.data.seal(&self.rng, &request_aad(&r), plain)?))
        };
        let stored = StoredRequest {
            kind: "correction".into(),
            status: "pending".into(),
            requested: now,
            category: Some(category.to_string()),
            record: record.map(str::to_string),
            owner: Some(owner_tag(pair, now)),
            proposed: Some(sealed(fields.as_bytes())?),
            subject: Some(hex::encode(r)),
            sealed: Some(sealed(subject.as_bytes())?),
            note: None,
            decided: None,
            decided_by: None,
            outcome: None,
        };
        self.person_leaf(person, "correction_request", Some(&**pair), now)?;
        let id = format!(
            "cr-{}",
            hex::encode(postvault_crypto::random_token(&self.rng)?)
        );
        self.put_request(&id, &stored)?;
        let proposed = serde_json::from_str(fields).ok();
        Ok(self.request_view(id, &stored, proposed))
    }

    /// The person's own requests (as the role acting for them), newest first.
    pub fn person_requests(
        &self,
        person: &Principal,
        subject: &str,
    ) -> Result<Vec<RightsRequest>, VaultError> {
        crate::vault::check_subject(subject)?;
        if !self.acts_for_subject(person) {
            return Err(VaultError::NotPermitted(self.subject_access_may()));
        }
        self.sync_erasures()?;
        let Some(pair) = self.subject_keys(&self.subject_ref(subject))? else {
            return Ok(vec![]);
        };
        let mut out: Vec<_> = self
            .stored_requests()?
            .into_iter()
            .filter(|(_, s)| s.owner.as_deref() == Some(owner_tag(&pair, s.requested).as_str()))
            .map(|(id, s)| (s.requested, self.request_view(id, &s, None)))
            .collect();
        out.sort_by_key(|b| std::cmp::Reverse(b.0));
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    /// Every request, for the privacy office: pending first, oldest first.
    /// A waiting correction's fields are opened for the office to decide
    /// on: each opening is one leaf (`correction_open`), tagged for the
    /// person, written before the list is returned.
    pub fn rights_requests(&self, officer: &Principal) -> Result<Vec<RightsRequest>, VaultError> {
        self.require_officer(officer, "list people's requests", "rights_requests")?;
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for (id, s) in self.stored_requests()? {
            let proposed = match self.open_proposed(&s) {
                Some((fields, pair)) => {
                    self.person_leaf(officer, "correction_open", Some(&pair), now)?;
                    Some(fields)
                }
                None => None,
            };
            let key = (s.status != "pending", s.requested);
            out.push((key, self.request_view(id, &s, proposed)));
        }
        out.sort_by_key(|a| a.0);
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    /// How many people's requests wait for the office (nothing opened).
    pub fn rights_requests_waiting(&self, officer: &Principal) -> Result<usize, VaultError> {
        self.require_officer(officer, "list people's requests", "rights_requests")?;
        Ok(self
            .stored_requests()?
            .iter()
            .filter(|(_, s)| s.status == "pending")
            .count())
    }

    /// Grants a pending erasure request as a privacy officer: the person is
    /// erased ([`Vault::erase`], its leaves and refusals, `held` among
    /// them); the request keeps only its kind, status and times.
    pub fn grant_rights_request(
        &self,
        officer: &Principal,
        id: &str,
    ) -> Result<RightsRequest, VaultError> {
        self.require_officer(officer, "decide people's requests", "rights_grant")?;
        let s = self.pending_request(id)?;
        let claim = self.claim_request(id, "granted")?;
        let opened = match (&s.subject, &s.sealed) {
            (Some(r), Some(sealed)) => self.open_sealed(r, sealed, request_aad),
            _ => Ok(None),
        };
        if s.kind == "correction" {
            let fields = self.open_proposed(&s).map(|(f, _)| f);
            let outcome = match (opened, fields, &s.category) {
                (Ok(Some((subject, _))), Some(fields), Some(category)) => self
                    .correct(
                        officer,
                        &subject,
                        category,
                        &fields.to_string(),
                        s.record.as_deref(),
                    )
                    .map(|c| format!("corrected: record {} replaces {}", c.record, c.supersedes)),
                (Err(e), _, _) => Err(e),
                (Ok(None), _, _) => Ok("the person was erased: nothing to correct".into()),
                // Kept but not openable: a fault, never a silent grant.
                (Ok(Some(_)), _, _) => Err(VaultError::Invalid {
                    what: "correction request",
                    why: "its fields could not be opened".into(),
                }),
            };
            return match outcome {
                Ok(o) => self.finish_request(officer, id, s, "granted", o, None),
                Err(e) => {
                    self.unclaim_request(id, &claim)?;
                    Err(e)
                }
            };
        }
        let erased = match opened {
            Ok(Some((subject, _))) => self.erase(officer, &[subject], &mut |_| {}).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        let erased = match erased {
            Ok(r) => r,
            Err(e) => {
                self.unclaim_request(id, &claim)?;
                return Err(e);
            }
        };
        let outcome = match erased {
            Some(rep) => {
                if !rep.held.is_empty() {
                    self.unclaim_request(id, &claim)?;
                    // The request stays pending; the erasure's leaf says why.
                    let message = if rep.delayed {
                        "a legal hold whose instrument carries a delay order is in force for the person: the erasure waits until it ends; leave the request waiting (refusing it with `legal_hold` would tell the person of the hold before they may know)"
                    } else {
                        "a legal hold is in force for the person: the erasure waits until it ends (or refuse the request with `legal_hold`)"
                    };
                    return Err(VaultError::Refused {
                        code: "held",
                        message: message.into(),
                    });
                }
                format!("erased: {} records deleted", rep.records_deleted)
            }
            // The person's keys are already gone.
            None => "the person was already erased".into(),
        };
        self.finish_request(officer, id, s, "granted", outcome, None)
    }

    /// Records a decision: the request keeps its kind, category, status,
    /// times, outcome and the person's tag, and no longer their ref,
    /// identifier or proposed fields.
    fn finish_request(
        &self,
        officer: &Principal,
        id: &str,
        mut s: StoredRequest,
        status: &str,
        outcome: String,
        note: Option<String>,
    ) -> Result<RightsRequest, VaultError> {
        s.status = status.into();
        if note.is_none() {
            s.subject = None;
        }
        s.note = note;
        s.sealed = None;
        s.proposed = None;
        s.decided = Some(self.clock.now_ms());
        s.decided_by = Some(officer.name.clone());
        s.outcome = Some(outcome);
        self.put_request(id, &s)?;
        Ok(self.request_view(id.to_string(), &s, None))
    }

    /// What the office and the person see of a request: its outcome with
    /// the refusal's note opened (while the person's keys exist).
    fn request_view(
        &self,
        id: String,
        s: &StoredRequest,
        proposed: Option<serde_json::Value>,
    ) -> RightsRequest {
        let note = self
            .open_with_ref(s, s.note.as_deref())
            .and_then(|(plain, _)| String::from_utf8(plain).ok());
        let outcome = match (&s.outcome, note) {
            (Some(o), Some(n)) => Some(format!("{o}: {n}")),
            (o, _) => o.clone(),
        };
        RightsRequest {
            id,
            kind: s.kind.clone(),
            category: s.category.clone(),
            proposed,
            status: s.status.clone(),
            requested_at: format_ms(s.requested),
            decided_at: s.decided.map(format_ms),
            decided_by: s.decided_by.clone(),
            outcome,
        }
    }

    /// A waiting correction's fields, opened with the person's data key,
    /// and their keys.
    fn open_proposed(&self, s: &StoredRequest) -> Option<(serde_json::Value, Arc<SubjectKeyPair>)> {
        let (plain, pair) = self.open_with_ref(s, s.proposed.as_deref())?;
        Some((serde_json::from_slice(&plain).ok()?, pair))
    }

    /// `sealed` (base64, under the data key of the request's person) opened.
    fn open_with_ref(
        &self,
        s: &StoredRequest,
        sealed: Option<&str>,
    ) -> Option<(Vec<u8>, Arc<SubjectKeyPair>)> {
        let (hex_ref, sealed) = (s.subject.as_deref()?, sealed?);
        let r = hex::decode(hex_ref)
            .ok()
            .and_then(|b| SubjectRef::try_from(b).ok())?;
        let pair = self.subject_keys(&r).ok()??;
        let plain = pair
            .data
            .open(&request_aad(&r), &B64.decode(sealed).ok()?)
            .ok()?;
        Some((plain, pair))
    }

    /// Refuses a pending request as a privacy officer, with a reason code of
    /// [`REFUSAL_REASONS`] and a note (no personal data belongs in it). One
    /// leaf, tagged for the person.
    pub fn refuse_rights_request(
        &self,
        officer: &Principal,
        id: &str,
        reason: &str,
        note: &str,
    ) -> Result<RightsRequest, VaultError> {
        self.require_officer(officer, "decide people's requests", "rights_refuse")?;
        if !REFUSAL_REASONS.iter().any(|(c, _)| *c == reason) {
            return Err(VaultError::Invalid {
                what: "reason",
                why: format!(
                    "one of {}",
                    REFUSAL_REASONS
                        .iter()
                        .map(|(c, _)| *c)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let note = note.trim();
        if note.chars().count() > 500 || note.chars().any(char::is_control) {
            return Err(VaultError::Invalid {
                what: "note",
                why: "at most 500 characters on one line".into(),
            });
        }
        let s = self.pending_request(id)?;
        // The reason is the person's to read: it must not name a hold they
        // may not know of yet.
        if reason == "legal_hold"
            && let Some(r) = s.subject.as_deref().and_then(|h| hex::decode(h).ok())
            && let Ok(r) = SubjectRef::try_from(r)
            && let Some(t) = self.hidden_holds_until(&r)?
        {
            return Err(VaultError::Refused {
                code: "delay_order",
                message: format!(
                    "the holds on this person carry a delay order until {}: a refusal with `legal_hold` would tell them; leave the request waiting until then",
                    format_ms(t)
                ),
            });
        }
        self.claim_request(id, "refused")?;
        let pair = match (&s.subject, &s.sealed) {
            (Some(r), Some(sealed)) => self.open_sealed(r, sealed, request_aad)?.map(|(_, p)| p),
            _ => None,
        };
        let now = self.clock.now_ms();
        let action = if s.kind == "correction" {
            "correction_refuse"
        } else {
            "erasure_refuse"
        };
        self.person_leaf(officer, action, pair.as_deref(), now)?;
        // The note is sealed for the person; with their keys gone there is
        // nobody to read it, and it is not kept.
        let sealed_note = match (&pair, &s.subject) {
            (Some(p), Some(hex_ref)) if !note.is_empty() => {
                let r = hex::decode(hex_ref)
                    .ok()
                    .and_then(|b| SubjectRef::try_from(b).ok())
                    .ok_or_else(|| VaultError::Invalid {
                        what: "stored request",
                        why: "its person's ref is malformed".into(),
                    })?;
                Some(B64.encode(p.data.seal(&self.rng, &request_aad(&r), note.as_bytes())?))
            }
            _ => None,
        };
        self.finish_request(officer, id, s, "refused", reason.to_string(), sealed_note)
    }

    /// The keys of the person `r`, made if they have none yet.
    fn person_keys(&self, r: &SubjectRef) -> Result<Arc<SubjectKeyPair>, VaultError> {
        let mut keys = self.ensure_subject_keys(&[*r])?;
        keys.remove(r).ok_or_else(|| VaultError::Invalid {
            what: "subject",
            why: "its keys could not be made".into(),
        })
    }

    /// The person's own acts in the log, as the portal writes them.
    pub(crate) fn person_actor(&self) -> Result<crate::leaf::Actor, VaultError> {
        Ok(self.actor(&self.person_principal()?))
    }

    /// The principal of a person's session: the pack's subject-access role.
    fn person_principal(&self) -> Result<Principal, VaultError> {
        let tax = self.pack.taxonomy();
        let role = tax.engine().subject_access_purpose().ok_or_else(|| {
            VaultError::NotPermitted(
                "the pack names no subject-access purpose ([engine] subject_access_purpose): it has no portal".into(),
            )
        })?;
        let role_ix = tax
            .role_ix(role)
            .ok_or_else(|| VaultError::UnknownRole(role.to_string()))?;
        Ok(Principal {
            name: PERSON_NAME.into(),
            role: role.to_string(),
            role_ix,
        })
    }

    /// One allowed leaf about the person, tagged with their tag key (random
    /// when they have none).
    fn person_leaf(
        &self,
        by: &Principal,
        action: &str,
        keys: Option<&SubjectKeyPair>,
        now: i64,
    ) -> Result<u64, VaultError> {
        let mut index_error = None;
        let actor = self.actor(by);
        let purpose = self
            .pack
            .taxonomy()
            .engine()
            .subject_access_purpose()
            .map(str::to_string);
        let at = self.store.append_leaves(1, &mut |idx, _| {
            index_error = None;
            let event = Event {
                v: LEAF_VERSION,
                time: now,
                action: action.into(),
                principal: actor.clone(),
                purpose: purpose.clone(),
                decision: "allow".into(),
                pack: self.pack.version().to_string(),
                reasons: vec![],
                categories: vec![],
                count: 0,
                rejected: None,
                selector: None,
                instrument: None,
                subject_tag: None,
            };
            self.tagged_leaf(event, keys.map(|k| &k.tag), idx, &mut index_error)
        })?;
        if let Some(e) = index_error {
            return Err(e.into());
        }
        Ok(at)
    }

    /// The identifier sealed under the person's data key, and their keys;
    /// `None` when the keys are gone (erased) or the seal does not open.
    fn open_sealed(
        &self,
        hex_ref: &str,
        sealed: &str,
        aad: fn(&SubjectRef) -> Vec<u8>,
    ) -> Result<Option<(String, Arc<SubjectKeyPair>)>, VaultError> {
        let Some(r) = hex::decode(hex_ref)
            .ok()
            .and_then(|b| SubjectRef::try_from(b).ok())
        else {
            return Ok(None);
        };
        self.sync_erasures()?;
        let Some(pair) = self.subject_keys(&r)? else {
            return Ok(None);
        };
        let Some(subject) = B64
            .decode(sealed)
            .ok()
            .and_then(|s| pair.data.open(&aad(&r), &s).ok())
            .and_then(|p| String::from_utf8(p).ok())
            .filter(|s| self.subject_ref(s) == r)
        else {
            return Ok(None);
        };
        Ok(Some((subject, pair)))
    }

    fn new_access_code(&self) -> Result<String, VaultError> {
        let mut raw = [0u8; CODE_LEN];
        aws_lc_rs::rand::SecureRandom::fill(&self.rng, &mut raw)
            .map_err(|_| VaultError::Crypto(postvault_crypto::CryptoError::Random))?;
        // 256 is a multiple of 32: every character is uniform.
        Ok(raw
            .iter()
            .map(|b| ALPHABET[usize::from(b & 31)] as char)
            .collect())
    }

    /// Deletes every expired code (each keeps a person's ref until then).
    fn forget_expired(&self, prefix: &str, now: i64) -> Result<(), VaultError> {
        let mut gone = Vec::new();
        for name in self.keys.secret_names(prefix)? {
            if let Some(raw) = self.keys.secret(&name)?
                && serde_json::from_slice::<StoredCode>(&raw).is_ok_and(|c| c.expires <= now)
            {
                gone.push(name);
            }
        }
        if !gone.is_empty() {
            self.keys.delete_secrets(&gone)?;
        }
        Ok(())
    }

    /// Claims a pending request for one decision attempt:
    /// `rights-request/<id>/claim` holds `<decision> <time> <nonce>`, written
    /// once, before anything is done; only its writer goes on. Any other
    /// attempt, for either decision, is refused (`already_decided`), so a
    /// grant and a refusal never both go through and a correction is never
    /// applied twice. A claim whose attempt never finished (a crash) is taken
    /// over after [`CLAIM_STALE_MS`]; a finished decision keeps its claim.
    /// Returns the claim, to give it up with.
    fn claim_request(&self, id: &str, decision: &str) -> Result<String, VaultError> {
        let name = format!("{REQUEST_PREFIX}{id}/claim");
        let now = self.clock.now_ms();
        let mine = format!(
            "{decision} {now} {}",
            hex::encode(postvault_crypto::random_token(&self.rng)?)
        );
        for _ in 0..2 {
            match self.keys.put_secret(&name, mine.as_bytes()) {
                Ok(()) => return Ok(mine),
                Err(postvault_store::StoreError::SecretExists(_)) => {
                    let Some(held) = self.keys.secret(&name)? else {
                        continue;
                    };
                    let held = String::from_utf8_lossy(&held).into_owned();
                    let mut parts = held.split(' ');
                    let what = parts.next().unwrap_or("decided").to_string();
                    let at = parts.next().and_then(|t| t.parse::<i64>().ok());
                    let stale = at.is_some_and(|t| now.saturating_sub(t) > CLAIM_STALE_MS);
                    if stale && self.keys.delete_secret(&name)? {
                        continue;
                    }
                    return Err(already(&what));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(already("decided"))
    }

    /// Gives up `claim` (its decision did not go through), if it is still
    /// the request's.
    fn unclaim_request(&self, id: &str, claim: &str) -> Result<(), VaultError> {
        let name = format!("{REQUEST_PREFIX}{id}/claim");
        if self.keys.secret(&name)?.as_deref() == Some(claim.as_bytes()) {
            self.keys.delete_secret(&name)?;
        }
        Ok(())
    }

    /// Every request: a request is `rights-request/<id>/pending` until it
    /// is decided, then `rights-request/<id>/<decision>` (written first, so
    /// a crash between the two leaves the decision, which wins).
    fn stored_requests(&self) -> Result<Vec<(String, StoredRequest)>, VaultError> {
        let mut out: Vec<(String, StoredRequest)> = Vec::new();
        for name in self.keys.secret_names(REQUEST_PREFIX)? {
            let Some((id, state)) = name[REQUEST_PREFIX.len()..].split_once('/') else {
                continue;
            };
            if state == "claim" {
                continue;
            }
            let Some(raw) = self.keys.secret(&name)? else {
                continue;
            };
            let s: StoredRequest =
                serde_json::from_slice(&raw).map_err(|e| VaultError::Invalid {
                    what: "stored request",
                    why: e.to_string(),
                })?;
            match out.iter_mut().find(|(i, _)| i == id) {
                Some((_, have)) if have.status == "pending" => *have = s,
                Some(_) => {}
                None => out.push((id.to_string(), s)),
            }
        }
        Ok(out)
    }

    fn pending_request(&self, id: &str) -> Result<StoredRequest, VaultError> {
        let unknown = || VaultError::Refused {
            code: "no_such_request",
            message: "no pending request has this id".into(),
        };
        if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(unknown());
        }
        for decided in ["granted", "refused"] {
            if self
                .keys
                .secret(&format!("{REQUEST_PREFIX}{id}/{decided}"))?
                .is_some()
            {
                return Err(already(decided));
            }
        }
        let raw = self
            .keys
            .secret(&format!("{REQUEST_PREFIX}{id}/pending"))?
            .ok_or_else(unknown)?;
        serde_json::from_slice(&raw).map_err(|_| unknown())
    }

    /// Writes a request in its state; a decision replaces the pending entry
    /// (and loses to a decision written first: `already_decided`).
    fn put_request(&self, id: &str, s: &StoredRequest) -> Result<(), VaultError> {
        let name = format!("{REQUEST_PREFIX}{id}/{}", s.status);
        match self
            .keys
            .put_secret(&name, &serde_json::to_vec(s).unwrap_or_default())
        {
            Ok(()) => {}
            Err(postvault_store::StoreError::SecretExists(_)) if s.status != "pending" => {
                return Err(already(&s.status));
            }
            Err(e) => return Err(e.into()),
        }
        if s.status != "pending" {
            // The claim stays: it is what keeps the other decision out.
            self.keys
                .delete_secret(&format!("{REQUEST_PREFIX}{id}/pending"))?;
        }
        Ok(())
    }
}

fn already(status: &str) -> VaultError {
    VaultError::Refused {
        code: "already_decided",
        message: format!("the request was already {status}"),
    }
}

fn owner_tag(pair: &SubjectKeyPair, at: i64) -> String {
    B64.encode(pair.tag.tag(at as u64))
}

fn code_aad(r: &SubjectRef) -> Vec<u8> {
    let mut a = b"postvault access code v1\n".to_vec();
    a.extend_from_slice(r);
    a
}

fn request_aad(r: &SubjectRef) -> Vec<u8> {
    let mut a = b"postvault rights request v1\n".to_vec();
    a.extend_from_slice(r);
    a
}

fn code_name(code: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, code.as_bytes());
    format!("{CODE_PREFIX}{}", hex::encode(d.as_ref()))
}

/// A code as typed: case, spaces and dashes ignored, `O` read as `0` and
/// `I`/`L` as `1` (Crockford). `None` unless 20 characters of the alphabet.
pub fn normalize_code(typed: &str) -> Option<String> {
    let mut out = String::with_capacity(CODE_LEN);
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            ' ' | '-' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) || out.len() >= CODE_LEN {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_LEN).then_some(out)
}

fn group_code(code: &str) -> String {
    code.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_normalize_as_typed() {
        let c = "0123456789ABCDEFGHJK";
        assert_eq!(
            normalize_code("0123-4567-89ab-cdef-ghjk").as_deref(),
            Some(c)
        );
        assert_eq!(
            normalize_code("O123 4567 89AB CDEF GHJK").as_deref(),
            Some(c)
        );
        assert_eq!(normalize_code("0123456789ABCDEFGHJ"), None);
        assert_eq!(normalize_code("0123456789ABCDEFGHJKM"), None);
        assert_eq!(normalize_code("0123456789ABCDEFGHJU"), None);
        assert_eq!(normalize_code("0123456789ABCDEFGHJé"), None);
        assert_eq!(group_code(c), "0123-4567-89AB-CDEF-GHJK");
    }
}
