//! The public page (`/`): the transparency report with its charts, the
//! log's current checkpoint and keys, and how to check the log with
//! standard tools. No login; counts of people below the report's threshold
//! are shown as "fewer than N", as the JSON report releases them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use postvault::TransparencyReport;

use super::{chart, human, page};
use crate::{AppState, blocking};

/// What the public page shows.
pub(crate) struct Public {
    pub(crate) report: TransparencyReport,
    pub(crate) checkpoint: Result<(String, u64), String>,
    pub(crate) verifier_key: String,
    pub(crate) witness_keys: Vec<String>,
    pub(crate) quorum: usize,
}

/// How long the public page's figures are shown before they are gathered
/// again: polling the page does not time each request as it arrives.
const PUBLIC_FRESH: std::time::Duration = std::time::Duration::from_secs(60);

pub(crate) async fn home(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> Response {
    if let Err(r) = state
        .addresses
        .check(&format!("ip:{}", crate::client(&req)))
    {
        return r;
    }
    let fresh = || {
        state
            .public
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < PUBLIC_FRESH)
            .map(|(_, p)| p.clone())
    };
    let p = match fresh() {
        Some(p) => p,
        None => {
            // One gathering at a time: a burst of requests that find the
            // figures stale waits for the first one's, then reads them.
            let _gathering = state.public_gathering.lock().await;
            match fresh() {
                Some(p) => p,
                None => match gather(&state).await {
                    Ok(p) => {
                        let p = Arc::new(p);
                        *state.public.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((std::time::Instant::now(), p.clone()));
                        p
                    }
                    Err(e) => return super::error_page(e, "/"),
                },
            }
        }
    };
    page(
        "How the postal service uses personal data",
        html! { a href="/me/" { "Your data" } },
        body(&p),
    )
}

pub(crate) async fn gather(state: &Arc<AppState>) -> Result<Public, crate::ApiError> {
    let checkpoint = state.checkpoint().await.map_err(|e| e.message);
    blocking(state, move |v| {
        let (witness_keys, quorum) = v.witness_policy();
        Ok(Public {
            report: v.transparency_report()?,
            checkpoint,
            verifier_key: v.log_verifier_key(),
            witness_keys,
            quorum,
        })
    })
    .await
}

fn body(p: &Public) -> Markup {
    let r = &p.report;
    html! {
        p.lead {
            "The postal service keeps the personal data it needs to deliver mail in this vault. \
             Every use of it, allowed or refused, is an entry in a public log that anyone can \
             copy and check. Outside agencies get data only under a court order or other legal \
             process naming each person, approved by a second person in the privacy office. \
             This page is computed from the vault's own ledger."
        }
        p.muted { "Report made " (r.generated_at) " under policy " code { (r.pack) } "; figures are refreshed every minute." }
        p.muted {
            "Small counts are not shown exactly: any count from 1 to " (SMALL - 1) " reads \"fewer than "
            (SMALL) "\". Totals are exact, so a hidden count can sometimes be worked out from its \
             total; and the log itself, public by design, has one entry per request and per \
             disclosure, naming no one."
        }
        (report_sections(r, true))
        (log_section(p))
    }
}

/// The transparency report's tables and charts (shared with the office).
/// `public`: counts from 1 to [`SMALL`]` - 1` read "fewer than [`SMALL`]".
pub(crate) fn report_sections(r: &TransparencyReport, public: bool) -> Markup {
    let shown = |n: u64| shown(n, public);
    let outcome = counts(&r.by_outcome, public);
    let kinds = totals(&r.by_kind, public);
    let agencies = totals(&r.by_agency, public);
    let months = totals(&r.by_month, public);
    let refusals = counts(&r.refusals_by_reason, public);
    let c = &r.mail_covers;
    let covers = [
        ("requested", c.requested),
        ("approved", c.approved),
        ("refused", c.refused),
        ("extended", c.extended),
        ("ended", c.ended),
        ("destroyed", c.destroyed),
    ]
    .iter()
    .map(|(k, v)| row(k, *v, public))
    .collect::<Vec<_>>();
    let people = &r.statistics.people;
    html! {
        section aria-labelledby="requests-h" {
            h2 id="requests-h" { "Requests from outside agencies" }
            p { (shown(r.requests)) " requests in all; " (shown(r.held_for_review)) " held for the privacy office's review." }
            div.charts {
                (chart::bars("by-month", "Requests by month submitted", &months))
                (chart::bars("by-outcome", "Requests by outcome", &outcome))
                (chart::bars("by-kind", "Requests by kind of legal process", &kinds))
                (chart::bars("by-agency", "Requests by agency", &agencies))
                (chart::bars("refusals", "Refusals by reason", &refusals))
                (chart::bars("covers", "Mail covers (photographs of envelope exteriors)", &covers))
            }
            @if !r.by_month.is_empty() {
                table.by-month {
                    caption { "Requests by month and outcome" }
                    thead { tr { th scope="col" { "Month" } th scope="col" { "Outcomes" } } }
                    tbody {
                        @for (month, outcomes) in r.by_month.iter().rev() {
                            tr {
                                td { (month) }
                                td { (outcomes.iter().map(|(o, n)| format!("{}: {}", human(o), shown(*n))).collect::<Vec<_>>().join("; ")) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="people-h" {
            h2 id="people-h" { "People concerned" }
            p.muted { "Method: " (people.method) }
            table {
                thead { tr { th scope="col" { "People" } th scope="col" { "Count" } } }
                tbody {
                    tr { td { "whose data left the vault" } td { (people.disclosed) } }
                    tr { td { "under a mail cover" } td { (people.under_mail_cover) } }
                    @for (kind, n) in &people.named_by_kind {
                        tr { td { "named by an approved " (human(kind)) } td { (n) } }
                    }
                }
            }
            p { "Data left the vault " (shown(r.disclosures.fetches)) " times." }
        }
        @if !r.statistics.budgets.is_empty() {
            section aria-labelledby="stats-h" {
                h2 id="stats-h" { "Statistics with differential privacy" }
                table {
                    thead { tr {
                        th scope="col" { "Role" } th scope="col" { "Purpose" } th scope="col" { "Period" }
                        th scope="col" { "Privacy budget spent" } th scope="col" { "Queries" } th scope="col" { "Refused" }
                    } }
                    tbody {
                        @for b in &r.statistics.budgets {
                            tr {
                                td { (human(&b.role)) } td { (human(&b.purpose)) } td { (b.period) }
                                td { (format!("{:.3}", b.spent)) @if let Some(l) = b.limit { " of " (l) } }
                                td { (b.queries) } td { (b.refused) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn log_section(p: &Public) -> Markup {
    html! {
        section aria-labelledby="log-h" {
            h2 id="log-h" { "The transparency log" }
            @match &p.checkpoint {
                Ok((note, size)) => {
                    p { "The log holds " (size) " entries as of its latest checkpoint, signed by the vault"
                        @if p.quorum > 0 { " and countersigned by independent witnesses" } ":" }
                    pre.note { (note) }
                }
                Err(why) => { p.bad { "No checkpoint can be shown now: " (why) } }
            }
            p { "The key that verifies the vault's signature:" }
            pre { (p.verifier_key) }
            @if p.quorum > 0 {
                p { "Witness keys (" (p.quorum) " must countersign a checkpoint before it is shown):" }
                pre { (p.witness_keys.join("\n")) }
            }
            h3 { "Checking the log yourself" }
            ol {
                li { "Fetch the checkpoint: " code { "curl -s " (BASE) "/log/checkpoint" } "." }
                li {
                    "It is a C2SP signed note: any tool that speaks C2SP tlog-checkpoint and signed-note "
                    "(the Go module " code { "golang.org/x/mod/sumdb/note" } ", or " code { "postvault log verify" }
                    ") checks its signature with the key above."
                }
                li {
                    "The log's hashes are served as C2SP tlog-tiles under " code { "/log/tile/" }
                    "; the entries, inclusion and consistency proofs under " code { "/v1/log/" }
                    " (RFC 9162 Merkle trees). A mirror that fetches them can prove the log only grew."
                }
                li { "A person finds and proves every entry about them from their own page, " a href="/me/" { "Your data" } "." }
            }
        }
    }
}

/// The site's own address in examples (the reader's browser knows it).
const BASE: &str = "https://<this site>";

/// Counts below this are not shown exactly on the public page.
const SMALL: u64 = postvault::stats::PEOPLE_THRESHOLD;

fn shown(n: u64, public: bool) -> String {
    if public && n > 0 && n < SMALL {
        format!("fewer than {SMALL}")
    } else {
        n.to_string()
    }
}

/// A chart row: a small count on the public page has no bar (its length
/// would tell the number).
fn row(label: &str, n: u64, public: bool) -> (String, String, u64) {
    let bar = if public && n < SMALL { 0 } else { n };
    (human(label), shown(n, public), bar)
}

fn counts(m: &BTreeMap<String, u64>, public: bool) -> Vec<(String, String, u64)> {
    m.iter().map(|(k, v)| row(k, *v, public)).collect()
}

fn totals(m: &BTreeMap<String, BTreeMap<String, u64>>, public: bool) -> Vec<(String, String, u64)> {
    m.iter()
        .map(|(k, inner)| row(k, inner.values().sum(), public))
        .collect()
}
