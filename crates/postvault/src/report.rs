//! The subject access report: everything held about a person, their
//! consents and holds, the disclosures they may know of, and every log leaf
//! about them with its inclusion proof against the current signed
//! checkpoint, so the person can check each one without trusting the vault.

use base64::Engine as _;
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
    /// Records held, as purpose `subject_access` sees them.
    pub records: Vec<ReadRecord>,
    pub consents: Vec<ConsentView>,
    pub holds: Vec<HoldView>,
    /// Disclosures to outside parties (except under an active delay order).
    pub disclosures: Vec<AccountingEntry>,
    /// Every leaf about the person, oldest first.
    pub log: Vec<ReportLeaf>,
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

impl Vault {
    /// The report on `subject`, as `principal` (a role acting for
    /// `subject_access`, answering the person's own request). The read and
    /// the accounting lookup are themselves logged, and appear in the report.
    pub fn subject_report(
        &self,
        principal: &Principal,
        subject: &str,
    ) -> Result<SubjectReport, VaultError> {
        let (read, consents) = self.read_with_consents(principal, subject, "subject_access")?;
        let accounting = self.accounting(principal, subject, false)?;
        let subject_ref = self.subject_ref(subject);
        let holds = self.holds_for_person(&subject_ref)?;
        let mut log = Vec::new();
        let (checkpoint, proofs_verified) = match self.subject_tag_key(subject)? {
            Some(tag_key) => {
                let (cosigned, found) = self.find_leaves_cosigned(&tag_key)?;
                for f in found {
                    let leaf = self
                        .store
                        .leaves(f.index, f.index + 1)?
                        .pop()
                        .unwrap_or_default();
                    log.push(ReportLeaf {
                        index: f.index,
                        leaf: B64.encode(&leaf),
                        event: f.event,
                        proof: f.proof,
                    });
                }
                let ok =
                    verify_report_proofs(&cosigned.note, &self.log_verifier_key(), &log).is_ok();
                (cosigned, ok)
            }
            // No keys (never known, or erased): no leaf can be linked.
            None => (self.cosigned_checkpoint()?, true),
        };
        let (witness_keys, witness_quorum) = self.witness_policy();
        Ok(SubjectReport {
            subject: subject.to_string(),
            generated_at: format_ms(self.clock.now_ms()),
            records: read.records,
            consents: consents
                .into_iter()
                .map(|c| ConsentView {
                    purpose: c.purpose,
                    granted: c.granted,
                    at: format_ms(c.at),
                })
                .collect(),
            holds,
            disclosures: accounting.entries,
            log,
            checkpoint: checkpoint.note,
            log_verifier_key: self.log_verifier_key(),
            checkpoint_cosigners: checkpoint.cosigners,
            checkpoint_final: checkpoint.is_final,
            witness_keys,
            witness_quorum,
            proofs_verified,
        })
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

/// The report as one self-contained HTML page a person who is not an
/// engineer can read. Every value is escaped.
pub fn report_html(r: &SubjectReport) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>What the postal service holds about you</title><style>\
         body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#111}\
         table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}\
         th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}\
         th{background:#f3f3f3}.ok{color:#05620c;font-weight:bold}.bad{color:#a00;font-weight:bold}\
         pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;font-size:.85rem}\
         .muted{color:#555}</style></head><body>\n",
    );
    h.push_str("<h1>What the postal service holds about you</h1>\n");
    h.push_str(&format!(
        "<p>This report was made on {} for the person with identifier <b>{}</b>. \
         It lists everything stored about you, who may use it, every time it was \
         used or given to anyone, and a way to check that this list is complete.</p>\n",
        esc(&r.generated_at),
        esc(&r.subject)
    ));

    h.push_str("<h2>1. The information we hold</h2>\n");
    if r.records.is_empty() {
        h.push_str("<p>We hold no information about you that this report can show.</p>\n");
    }
    for rec in &r.records {
        if rec.superseded_by.is_some() {
            h.push_str("<p class=\"muted\">The record below was replaced by a correction; it is kept as history.</p>\n");
        }
        h.push_str(&format!(
            "<h3>{}</h3><p class=\"muted\">Collected on {} for <b>{}</b>; deleted automatically on {}.</p>\n<table><tr><th>Item</th><th>Value</th></tr>\n",
            esc(&human(&rec.category)),
            esc(&rec.collected_at),
            esc(&human(&rec.collected_for)),
            esc(&rec.expires_at)
        ));
        for (k, v) in &rec.fields {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>\n",
                esc(&human(k)),
                esc(&v)
            ));
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>2. What you agreed to</h2>\n");
    if r.consents.is_empty() {
        h.push_str("<p>You have not given consent for any optional use.</p>\n");
    } else {
        h.push_str("<table><tr><th>Use</th><th>Your choice</th><th>Since</th></tr>\n");
        for c in &r.consents {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&human(&c.purpose)),
                if c.granted { "agreed" } else { "withdrawn" },
                esc(&c.at)
            ));
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>3. Legal holds</h2>\n");
    if r.holds.is_empty() {
        h.push_str("<p>No legal hold keeps your information longer than usual.</p>\n");
    } else {
        h.push_str("<p>A legal hold keeps information that would otherwise be deleted, because a court or other legal process requires it.</p>\n<table><tr><th>Hold</th><th>Placed</th><th>Until</th><th>Status</th></tr>\n");
        for x in &r.holds {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&x.id),
                esc(&x.placed_at),
                esc(&x.until),
                esc(&x.status)
            ));
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>4. Information given to outside agencies</h2>\n");
    if r.disclosures.is_empty() {
        h.push_str("<p>None of your information has been given to anyone outside the postal service.</p>\n");
    } else {
        h.push_str(
            "<table><tr><th>Date</th><th>To</th><th>Under</th><th>Why</th><th>What</th></tr>\n",
        );
        for d in &r.disclosures {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td></tr>\n",
                esc(&d.date),
                esc(&d.recipient),
                esc(&human(&d.nature)),
                esc(&d.authority),
                esc(&human(&d.purpose)),
                esc(&d
                    .categories
                    .iter()
                    .map(|c| human(c))
                    .collect::<Vec<_>>()
                    .join(", "))
            ));
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>5. Every use of your information</h2>\n");
    h.push_str(&format!(
        "<p>Each line is an entry in the public transparency log. The mark {} means the vault \
         checked the entry's proof against the signed log below.</p>\n",
        if r.proofs_verified {
            "<span class=\"ok\">verified</span>"
        } else {
            "<span class=\"bad\">NOT verified</span>"
        }
    ));
    h.push_str("<table><tr><th>Entry</th><th>When</th><th>What happened</th><th>By (role)</th><th>Purpose</th><th>Outcome</th><th>Information</th></tr>\n");
    for l in &r.log {
        let (when, action, role, purpose, decision, cats) = match &l.event {
            Some(e) => (
                format_ms(e.time),
                human(&e.action),
                human(&e.principal.role),
                e.purpose.as_deref().map(human).unwrap_or_default(),
                if e.decision == "allow" {
                    "allowed".to_string()
                } else {
                    "refused".to_string()
                },
                e.categories
                    .iter()
                    .map(|c| human(c))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            None => Default::default(),
        };
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            l.index,
            esc(&when),
            esc(&action),
            esc(&role),
            esc(&purpose),
            esc(&decision),
            esc(&cats)
        ));
    }
    h.push_str("</table>\n");

    h.push_str("<h2>6. Checking this report yourself</h2>\n");
    h.push_str(
        "<p>The entries above are in a public log that anyone can copy and check. \
         The signed summary of the log below, with the key that signed it, lets anyone \
         confirm that each entry is really in the log (the JSON version of this report \
         carries the proofs). Someone you trust can run <code>postvault log verify</code> \
         on a copy of the log.</p>\n",
    );
    h.push_str(&format!(
        "<p>Signed log summary:</p><pre>{}</pre><p>Signing key:</p><pre>{}</pre>\n",
        esc(&r.checkpoint),
        esc(&r.log_verifier_key)
    ));
    if r.witness_quorum > 0 {
        h.push_str(&format!(
            "<p>Independent witnesses countersign the summary, so the vault cannot show you \
             one log and others another: {} of the {} required countersigned it{}. \
             Their keys:</p><pre>{}</pre>\n",
            r.checkpoint_cosigners.len(),
            r.witness_quorum,
            if r.checkpoint_final {
                ""
            } else {
                " (not yet enough: ask again later, or check it with someone you trust)"
            },
            esc(&r.witness_keys.join("\n"))
        ));
    }
    h.push_str("</body></html>\n");
    h
}

/// `change_of_address` -> `change of address`.
fn human(id: &str) -> String {
    id.replace('_', " ")
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}
