//! The subject access report: everything held about a person, their
//! consents and holds, the disclosures they may know of, and every log leaf
//! about them with its inclusion proof against the current signed
//! checkpoint, so the person can check each one without trusting the vault.

use base64::Engine as _;
use maud::{Markup, PreEscaped, html};
use serde::Serialize;

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::gateway::AccountingEntry;
use crate::leaf::Event;
use crate::log::InclusionProof;
use crate::read::ReadRecord;
use crate::rights::HoldView;
use crate::vault::{Principal, Vault};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One consent of the person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentView {
    pub purpose: String,
    pub granted: bool,
    pub at: String,
}

/// One log leaf about the person, with what they need to check it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportLeaf {
    pub index: u64,
    /// Base64 of the leaf bytes exactly as logged.
    pub leaf: String,
    pub event: Option<Event>,
    pub proof: InclusionProof,
}

/// The subject access report.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubjectReport {
    pub subject: String,
    pub generated_at: String,
    /// Records held, as the pack's subject-access purpose sees them.
    pub records: Vec<ReadRecord>,
    pub consents: Vec<ConsentView>,
    pub holds: Vec<HoldView>,
    /// Disclosures to outside parties (except under an active delay order).
    pub disclosures: Vec<AccountingEntry>,
    /// Every leaf about the person, oldest first (the person's page asks
    /// for a selection: see `log_total`).
    pub log: Vec<ReportLeaf>,
    /// How many leaves about the person the log holds.
    pub log_total: usize,
    /// The signed checkpoint every proof is against (a C2SP signed note),
    /// followed by the witness cosignatures gathered for it.
    pub checkpoint: String,
    /// The key that verifies the checkpoint's signature.
    pub log_verifier_key: String,
    /// Witnesses whose cosignatures of the checkpoint verify, `<name>+<key id>`.
    pub checkpoint_cosigners: Vec<String>,
    /// A quorum of the vault's witnesses cosigned the checkpoint (true
    /// when the vault has no witnesses).
    pub checkpoint_final: bool,
    /// The verifier keys of the vault's witnesses, and how many must cosign.
    pub witness_keys: Vec<String>,
    pub witness_quorum: usize,
    /// The vault checked every proof against the checkpoint before answering.
    pub proofs_verified: bool,
}

/// Which of the person's log leaves a report carries (all of them, in the
/// report the API and the CLI give; a page's worth on the person's page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogSelect {
    /// None: the report's other parts only (the log is not searched).
    Nothing,
    /// Every leaf, oldest first.
    All,
    /// The `take` newest after skipping the `skip` newest, newest first.
    Newest { skip: usize, take: usize },
    /// Those with an index in `first..=last`, at most `max`, oldest first.
    Between { first: u64, last: u64, max: usize },
}

impl Vault {
    /// The report on `subject`, as `principal` (a role acting for the pack's
    /// subject-access purpose, `[engine] subject_access_purpose`, answering
    /// the person's own request). The read and
    /// the accounting lookup are themselves logged, and appear in the report.
    pub fn subject_report(
        &self,
        principal: &Principal,
        subject: &str,
    ) -> Result<SubjectReport, VaultError> {
        self.subject_report_with(principal, subject, LogSelect::All)
    }

    /// [`Vault::subject_report`] with the selection of log leaves `select`.
    pub fn subject_report_with(
        &self,
        principal: &Principal,
        subject: &str,
        select: LogSelect,
    ) -> Result<SubjectReport, VaultError> {
        let purpose = self
            .pack
            .taxonomy()
            .engine()
            .subject_access_purpose()
            .ok_or_else(|| {
                VaultError::NotPermitted(
                    "the pack names no subject-access purpose ([engine] subject_access_purpose): it has no subject access report".into(),
                )
            })?;
        // For a role that reads for the person, the accounting is read
        // first and its leaf appended after the read's (on SQLite at the
        // next index, in the read's commit). Keys that do not unwrap are
        // left to the read, which logs them missing, as before.
        let acc = if self.acts_for_subject(principal) {
            match self.accounting_read(principal, subject, false) {
                Ok(acc) => Some(acc),
                Err(VaultError::Crypto(_)) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let (read, consents, accounting) = if let Some(acc) = acc {
            let mut index_error = None;
            let then: &mut crate::read::ThenLeafFn<'_> =
                &mut |idx, answered| acc.leaf(self, idx, answered, &mut index_error);
            let (read, consents, at) =
                self.read_with_consents_then(principal, subject, purpose, Some(then))?;
            if let Some(e) = index_error {
                return Err(e.into());
            }
            let at = at.ok_or_else(|| {
                VaultError::Store(postvault_store::StoreError::Corrupt(
                    "the report's accounting leaf was not appended".into(),
                ))
            })?;
            (read, consents, acc.into_accounting(at))
        } else {
            // Another role: refused (one deny leaf each), as any other
            // role's read is; keys that do not unwrap: the read fails.
            let (read, consents) = self.read_with_consents(principal, subject, purpose)?;
            let accounting = self.accounting(principal, subject, false)?;
            (read, consents, accounting)
        };
        let subject_ref = self.subject_ref(subject);
        let holds = self.holds_for_person(&subject_ref)?;
        let mut r = self.empty_report(subject)?;
        r.records = read.records;
        r.consents = consents
            .into_iter()
            .map(|c| ConsentView {
                purpose: c.purpose,
                granted: c.granted,
                at: format_ms(c.at),
            })
            .collect();
        r.holds = holds;
        r.disclosures = accounting.entries;
        // The report's own two leaves are the last it must show.
        let own = read.log_index.max(accounting.log_index) + 1;
        self.fill_log(&mut r, subject, select, Some(own))?;
        Ok(r)
    }

    /// The person's log leaves alone (`select`), with their proofs against
    /// the current checkpoint, as a role acting for the subject-access
    /// purpose (one deny leaf for any other). No record is read, so nothing
    /// is logged: the leaves are the public log's, found with the person's
    /// tag key.
    pub fn subject_log(
        &self,
        principal: &Principal,
        subject: &str,
        select: LogSelect,
    ) -> Result<SubjectReport, VaultError> {
        crate::vault::check_subject(subject)?;
        if !self.acts_for_subject(principal) {
            self.deny_leaf(principal, "log_find", None)?;
            return Err(VaultError::NotPermitted(format!(
                "role `{}` may not look up a person's log entries; {}",
                principal.role,
                self.subject_access_may()
            )));
        }
        let mut r = self.empty_report(subject)?;
        self.fill_log(&mut r, subject, select, None)?;
        Ok(r)
    }

    fn empty_report(&self, subject: &str) -> Result<SubjectReport, VaultError> {
        let (witness_keys, witness_quorum) = self.witness_policy();
        Ok(SubjectReport {
            subject: subject.to_string(),
            generated_at: format_ms(self.clock.now_ms()),
            records: vec![],
            consents: vec![],
            holds: vec![],
            disclosures: vec![],
            log: vec![],
            log_total: 0,
            checkpoint: String::new(),
            log_verifier_key: self.log_verifier_key(),
            checkpoint_cosigners: vec![],
            checkpoint_final: false,
            witness_keys,
            witness_quorum,
            proofs_verified: true,
        })
    }

    /// The checkpoint, and the leaves `select` picks with their proofs
    /// against it (each checked before the answer). With `covering`, a
    /// checkpoint of at least that many leaves (the report's own leaves
    /// among them), else the latest, signed now if the log grew.
    fn fill_log(
        &self,
        r: &mut SubjectReport,
        subject: &str,
        select: LogSelect,
        covering: Option<u64>,
    ) -> Result<(), VaultError> {
        let cosigned = match covering {
            Some(size) => self.checkpoint_covering(size)?,
            None => self.cosigned_checkpoint()?,
        };
        self.sync_erasures()?;
        let keys = self.subject_keys(&self.subject_ref(subject))?;
        // No keys (never known, or erased): no leaf can be linked.
        if let (Some(k), false) = (keys, select == LogSelect::Nothing) {
            let mut found = self.tagged_leaves(&k.tag, cosigned.size)?;
            r.log_total = found.len();
            found = match select {
                LogSelect::Nothing => vec![],
                LogSelect::All => found,
                LogSelect::Newest { skip, take } => {
                    found.into_iter().rev().skip(skip).take(take).collect()
                }
                LogSelect::Between { first, last, max } => found
                    .into_iter()
                    .filter(|(i, _)| (first..=last).contains(i))
                    .take(max)
                    .collect(),
            };
            for (index, leaf) in found {
                r.log.push(ReportLeaf {
                    index,
                    event: Event::from_leaf(&leaf),
                    leaf: B64.encode(&leaf),
                    proof: self.prove_inclusion(index, Some(cosigned.size))?,
                });
            }
            r.proofs_verified = self
                .open_own_checkpoint(&cosigned.note)
                .map_err(VaultError::from)
                .and_then(|cp| verify_leaves(&cp, &r.log))
                .is_ok();
        }
        r.checkpoint = cosigned.note;
        r.checkpoint_cosigners = cosigned.cosigners;
        r.checkpoint_final = cosigned.is_final;
        Ok(())
    }
}

/// Checks every leaf of a report against its checkpoint: the signature, the
/// leaf hash of the bytes given, and the inclusion proof. Anyone can run
/// this with the report and the verifier key alone.
pub fn verify_report_proofs(
    checkpoint: &str,
    verifier_key: &str,
    log: &[ReportLeaf],
) -> Result<(), VaultError> {
    let cp = postvault_log::open_checkpoint(checkpoint, verifier_key)?;
    verify_leaves(&cp, log)
}

/// Checks every leaf of `log` (its bytes, their hash, its inclusion proof)
/// against `cp`, a checkpoint whose signature was checked.
fn verify_leaves(cp: &postvault_log::Checkpoint, log: &[ReportLeaf]) -> Result<(), VaultError> {
    let bad = |why: String| VaultError::LogVerification(why);
    for l in log {
        let leaf = B64
            .decode(&l.leaf)
            .map_err(|_| bad(format!("leaf {} is not base64", l.index)))?;
        let hash = postvault_log::leaf_hash(&leaf);
        if B64.encode(hash) != l.proof.leaf_hash || l.proof.size != cp.size {
            return Err(bad(format!("leaf {} does not match its proof", l.index)));
        }
        let path = l
            .proof
            .hashes
            .iter()
            .map(|h| {
                B64.decode(h)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| bad(format!("leaf {}: a proof hash is malformed", l.index)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        postvault_log::verify_inclusion(l.index, cp.size, &hash, &path, &cp.root)
            .map_err(|e| bad(format!("leaf {}: {e}", l.index)))?;
    }
    Ok(())
}

/// What [`verify_report_offline`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportVerification {
    /// The subject the report names.
    pub subject: String,
    /// The size of the checkpoint the leaves are proved against.
    pub checkpoint_size: u64,
    /// Leaves whose inclusion proof verified (all of the report's).
    pub leaves_verified: usize,
    /// The witnesses whose cosignature verified, `<name>+<key id>`.
    pub cosigners: Vec<String>,
    /// When each of them cosigned (POSIX seconds, in the order of
    /// `cosigners`): how old the checkpoint the proofs stop at is.
    pub cosigned_at: Vec<u64>,
    /// Cosignatures required.
    pub quorum: usize,
    /// Whether witnesses were checked at all. Without, the report is only
    /// shown to be in a log the service signed, not in the one everybody
    /// else sees.
    pub witnessed: bool,
}

/// Checks a saved subject access report (its JSON, as `subject report`
/// and the person's page's `report.json` give it) with keys the checker
/// brings, not the ones the report carries: the checkpoint must be signed
/// by `log_key` and cosigned by `quorum` of `witnesses`, and every leaf
/// must be included in it. A node that holds the log's key can sign a
/// second version of the log; only witnesses' cosignatures, checked
/// against keys obtained elsewhere, show the person sees the one everybody
/// else does.
pub fn verify_report_offline(
    report_json: &str,
    log_key: &str,
    witnesses: &[String],
    quorum: Option<usize>,
) -> Result<ReportVerification, VaultError> {
    #[derive(serde::Deserialize)]
    struct Saved {
        subject: String,
        checkpoint: String,
        log: Vec<SavedLeaf>,
    }
    #[derive(serde::Deserialize)]
    struct SavedLeaf {
        index: u64,
        leaf: String,
        proof: SavedProof,
    }
    #[derive(serde::Deserialize)]
    struct SavedProof {
        index: u64,
        size: u64,
        leaf_hash: String,
        hashes: Vec<String>,
    }
    let saved: Saved = serde_json::from_str(report_json).map_err(|e| VaultError::Invalid {
        what: "report",
        why: format!("not a subject access report's JSON: {e}"),
    })?;
    let (witnessed, quorum) = check_witnessed(&saved.checkpoint, log_key, witnesses, quorum)?;
    let bad = |why: String| VaultError::LogVerification(why);
    let log: Vec<ReportLeaf> = saved
        .log
        .into_iter()
        .map(|l| {
            if l.proof.index != l.index {
                return Err(bad(format!(
                    "leaf {} carries the proof of another",
                    l.index
                )));
            }
            Ok(ReportLeaf {
                index: l.index,
                leaf: l.leaf,
                event: None,
                proof: InclusionProof {
                    index: l.proof.index,
                    size: l.proof.size,
                    leaf_hash: l.proof.leaf_hash,
                    hashes: l.proof.hashes,
                },
            })
        })
        .collect::<Result<_, _>>()?;
    verify_report_proofs(&saved.checkpoint, log_key.trim(), &log)?;
    Ok(ReportVerification {
        subject: saved.subject,
        checkpoint_size: witnessed.checkpoint.size,
        leaves_verified: log.len(),
        cosigned_at: witnessed.cosigned.iter().map(|c| c.timestamp).collect(),
        cosigners: witnessed.cosigned.into_iter().map(|c| c.cosigner).collect(),
        quorum,
        witnessed: quorum > 0,
    })
}

/// A checkpoint checked with keys the checker brings: signed by
/// `log_key`, with at least `quorum` (1 to the number of `witnesses`,
/// default all; 0 without witnesses) cosignatures by distinct `witnesses`.
/// Returns it with the quorum applied.
pub(crate) fn check_witnessed(
    checkpoint: &str,
    log_key: &str,
    witnesses: &[String],
    quorum: Option<usize>,
) -> Result<(postvault_log::WitnessedCheckpoint, usize), VaultError> {
    let verifiers = witnesses
        .iter()
        .map(|k| {
            postvault_log::CosignatureVerifier::new(k.trim()).map_err(|e| VaultError::Invalid {
                what: "witness key",
                why: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    crate::witness::distinct_witnesses(&verifiers)?;
    let quorum = quorum.unwrap_or(verifiers.len());
    if quorum > verifiers.len() || (quorum == 0 && !verifiers.is_empty()) {
        return Err(VaultError::Invalid {
            what: "quorum",
            why: format!(
                "must be between 1 and the {} witnesses given",
                verifiers.len()
            ),
        });
    }
    let witnessed = postvault_log::verify_cosigned(checkpoint, log_key.trim(), &verifiers)
        .map_err(|e| VaultError::LogVerification(format!("the checkpoint: {e}")))?;
    if witnessed.cosigned.len() < quorum {
        return Err(VaultError::LogVerification(format!(
            "the checkpoint carries {} of the {quorum} witness cosignatures required",
            witnessed.cosigned.len()
        )));
    }
    Ok((witnessed, quorum))
}

/// The report as one self-contained HTML page a person who is not an
/// engineer can read. Every value is escaped by construction (`maud`
/// templates escape whatever they interpolate unless told otherwise). The
/// person's portal (`/me/`) shows the same sections from the same templates.
pub fn report_html(r: &SubjectReport) -> String {
    html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "What the postal service holds about you" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "What the postal service holds about you" }
                p {
                    "This report was made on " (r.generated_at) " for the person with identifier "
                    b { (r.subject) }
                    ". It lists everything stored about you, who may use it, every time it was \
                     used or given to anyone, and a way to check that this list is complete."
                }
                h2 { "1. The information we hold" }
                (summary_html(&r.records))
                @for (category, records) in by_category(&r.records) {
                    (category_html(category, &records, None))
                }
                h2 { "2. What you agreed to" }
                (consents_html(r))
                h2 { "3. Legal holds" }
                (holds_html(r))
                h2 { "4. Information given to outside agencies" }
                (disclosures_html(r))
                h2 { "5. Every use of your information" }
                p {
                    "Each line is an entry in the public transparency log. The mark "
                    @if r.proofs_verified {
                        span.ok { "verified" }
                    } @else {
                        span.bad { "NOT verified" }
                    }
                    " means the vault checked the entry's proof against the signed log below."
                }
                (log_html(r, false))
                h2 { "6. Checking this report yourself" }
                (checking_html(r))
            }
        }
    }
    .into_string()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#111}\
     table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}\
     th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}\
     th{background:#f3f3f3}.ok{color:#05620c;font-weight:bold}.bad{color:#a00;font-weight:bold}\
     pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;font-size:.85rem}\
     .muted{color:#555}";

/// The records grouped by category (in the pack's order of first
/// appearance), each group newest first.
pub fn by_category(records: &[ReadRecord]) -> Vec<(&str, Vec<&ReadRecord>)> {
    let mut out: Vec<(&str, Vec<&ReadRecord>)> = Vec::new();
    for rec in records {
        match out.iter_mut().find(|(c, _)| *c == rec.category) {
            Some((_, v)) => v.push(rec),
            None => out.push((&rec.category, vec![rec])),
        }
    }
    for (_, v) in &mut out {
        v.sort_by(|a, b| b.collected_at.cmp(&a.collected_at));
    }
    out
}

/// One line per category: how many records, from when to when, collected
/// for what, and when the next one is deleted.
pub fn summary_html(records: &[ReadRecord]) -> Markup {
    let groups = by_category(records);
    html! {
        @if groups.is_empty() {
            p { "We hold no information about you that this report can show." }
        } @else {
            table.summary {
                caption { "Summary" }
                thead {
                    tr {
                        th scope="col" { "Kind of information" } th scope="col" { "Records" }
                        th scope="col" { "Collected" } th scope="col" { "Collected for" }
                        th scope="col" { "Next deletion" }
                    }
                }
                tbody {
                    @for (category, recs) in &groups {
                        @let first = recs.iter().map(|r| r.collected_at.as_str()).min().unwrap_or("");
                        @let last = recs.iter().map(|r| r.collected_at.as_str()).max().unwrap_or("");
                        @let next = recs.iter().map(|r| r.expires_at.as_str()).min().unwrap_or("");
                        @let purposes = purposes_of(recs);
                        tr {
                            td { (human(category)) }
                            td { (recs.len()) }
                            td { @if first == last { (day(first)) } @else { (day(first)) " to " (day(last)) } }
                            td { (purposes) }
                            td { (day(next)) }
                        }
                    }
                }
            }
        }
    }
}

/// One table for a category: a row per record (newest first), a column per
/// field any of them has. `more`: the link to the next page, when cut.
pub fn category_html(category: &str, records: &[&ReadRecord], more: Option<&str>) -> Markup {
    // `None`: a record whose sealed fields do not read as a map (which the
    // vault never writes); its row says so rather than showing it empty.
    let fields: Vec<Option<serde_json::Map<String, serde_json::Value>>> =
        records.iter().map(|r| r.fields.to_map().ok()).collect();
    let mut columns: Vec<&str> = Vec::new();
    for f in fields.iter().flatten() {
        for k in f.keys() {
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    html! {
        section.category {
            h3 id=(format!("cat-{category}")) { (human(category)) }
            table {
                thead {
                    tr {
                        th scope="col" { "Collected" } th scope="col" { "For" }
                        @for c in &columns { th scope="col" { (human(c)) } }
                        th scope="col" { "Deleted on" }
                    }
                }
                tbody {
                    @for (r, f) in records.iter().zip(&fields) {
                        tr.superseded[r.superseded_by.is_some()] {
                            td { (day(&r.collected_at)) }
                            td { (human(&r.collected_for)) }
                            @if let Some(f) = f {
                                @for c in &columns {
                                    td {
                                        @match f.get(*c) {
                                            Some(serde_json::Value::String(s)) => (s),
                                            Some(serde_json::Value::Null) | None => "",
                                            Some(other) => (other.to_string()),
                                        }
                                    }
                                }
                            } @else {
                                td colspan=(columns.len().max(1)) {
                                    "This record could not be read: please tell the privacy office."
                                }
                            }
                            td {
                                (day(&r.expires_at))
                                @if r.superseded_by.is_some() { br; span.muted { "(replaced by a correction)" } }
                            }
                        }
                    }
                }
            }
            @if let Some(href) = more {
                p { a href=(href) { "More " (human(category)) " records" } }
            }
        }
    }
}

fn purposes_of(recs: &[&ReadRecord]) -> String {
    let mut p: Vec<String> = recs.iter().map(|r| human(&r.collected_for)).collect();
    p.sort();
    p.dedup();
    p.join(", ")
}

/// `2026-12-04T10:00:00.000Z` -> `2026-12-04`.
fn day(ts: &str) -> &str {
    ts.get(..10).unwrap_or(ts)
}

pub fn consents_html(r: &SubjectReport) -> Markup {
    html! {
        @if r.consents.is_empty() {
            p { "You have not given consent for any optional use." }
        } @else {
            table {
                thead { tr { th scope="col" { "Use" } th scope="col" { "Your choice" } th scope="col" { "Since" } } }
                tbody {
                    @for c in &r.consents {
                        tr {
                            td { (human(&c.purpose)) }
                            td { @if c.granted { "agreed" } @else { "withdrawn" } }
                            td { (c.at) }
                        }
                    }
                }
            }
        }
    }
}

pub fn holds_html(r: &SubjectReport) -> Markup {
    html! {
        @if r.holds.is_empty() {
            p { "No legal hold keeps your information longer than usual." }
        } @else {
            p {
                "A legal hold keeps information that would otherwise be deleted, because a court \
                 or other legal process requires it."
            }
            table {
                thead { tr { th scope="col" { "Hold" } th scope="col" { "Placed" } th scope="col" { "Until" } th scope="col" { "Status" } } }
                tbody {
                    @for x in &r.holds {
                        tr { td { (x.id) } td { (x.placed_at) } td { (x.until) } td { (x.status) } }
                    }
                }
            }
        }
    }
}

pub fn disclosures_html(r: &SubjectReport) -> Markup {
    html! {
        @if r.disclosures.is_empty() {
            p { "None of your information has been given to anyone outside the postal service." }
        } @else {
            table.disclosures {
                thead { tr { th scope="col" { "Date" } th scope="col" { "To" } th scope="col" { "Under" } th scope="col" { "Why" } th scope="col" { "What" } } }
                tbody {
                    @for d in &r.disclosures {
                        tr {
                            td { (d.date) }
                            td { (d.recipient) }
                            td { (human(&d.nature)) " (" (d.authority) ")" }
                            td { (human(&d.purpose)) }
                            td { (humans(&d.categories)) }
                        }
                    }
                }
            }
        }
    }
}

/// The leaves about the person, oldest first. `browser_check`: a cell per
/// leaf (`data-leaf`) that the portal's proof checker fills in.
pub fn log_html(r: &SubjectReport, browser_check: bool) -> Markup {
    html! {
        table.log {
            thead {
                tr {
                    th scope="col" { "Entry" } th scope="col" { "When" } th scope="col" { "What happened" }
                    th scope="col" { "By (role)" } th scope="col" { "Purpose" } th scope="col" { "Outcome" }
                    th scope="col" { "Information" }
                    @if browser_check { th scope="col" { "Proof" } }
                }
            }
            tbody {
                @for l in &r.log {
                    tr {
                        td { (l.index) }
                        @if let Some(e) = &l.event {
                            td data-field="time" { (format_ms(e.time)) }
                            td data-field="action" { (human(&e.action)) }
                            td data-field="role" { (human(&e.principal.role)) }
                            td data-field="purpose" { (e.purpose.as_deref().map(human).unwrap_or_default()) }
                            td data-field="decision" { @if e.decision == "allow" { "allowed" } @else { "refused" } }
                            td data-field="categories" { (humans(&e.categories)) }
                        } @else {
                            td {} td {} td {} td {} td {} td {}
                        }
                        @if browser_check { td data-leaf=(l.index) { "checking…" } }
                    }
                }
            }
        }
    }
}

pub fn checking_html(r: &SubjectReport) -> Markup {
    html! {
        p {
            "The entries above are in a public log that anyone can copy and check. The signed \
             summary of the log below, with the key that signed it, lets anyone confirm that \
             each entry is really in the log (the JSON version of this report carries the \
             proofs). Someone you trust can run "
            code { "postvault log verify" }
            " on a copy of the log."
        }
        p { "Signed log summary:" }
        pre { (r.checkpoint) }
        p { "Signing key:" }
        pre { (r.log_verifier_key) }
        @if r.witness_quorum > 0 {
            p {
                "Independent witnesses countersign the summary, so a second version of the log \
                 shown to you alone would be caught, once their countersignatures are checked \
                 against their own published keys (not the ones listed here, which come from \
                 the service): `postvault report verify` does that with this report's data. "
                (r.checkpoint_cosigners.len()) " of the "
                (r.witness_quorum) " required countersigned it"
                @if !r.checkpoint_final {
                    " (not yet enough: ask again later, or check it with someone you trust)"
                }
                ". Their keys:"
            }
            pre { (r.witness_keys.join("\n")) }
        }
    }
}

/// `change_of_address` -> `change of address`.
pub fn human(id: &str) -> String {
    id.replace('_', " ")
}

/// `["scan_event", "address"]` -> `scan event, address`.
fn humans(ids: &[String]) -> String {
    ids.iter().map(|c| human(c)).collect::<Vec<_>>().join(", ")
}
