//! `postvault demo`: a tour on a temporary vault that prints, in words, what
//! was allowed, what was withheld and why.

use std::collections::{BTreeSet, HashMap};
use std::io::BufReader;
use std::time::Instant;

use anyhow::{Context, Result};
use postvault::{Clock as _, CollectOptions, OpenOptions, ReadResponse, Vault};
use serde::Deserialize;

use crate::DemoArgs;
use postvault_sim::LinesReader;

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    subject: &'a str,
    #[serde(borrow)]
    category: &'a str,
}

pub fn run(a: &DemoArgs, master_key: Option<std::sync::Arc<postvault::ExternalKey>>) -> Result<u8> {
    let tmp;
    let dir = match &a.keep {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().context("creating a temporary directory")?;
            tmp.path().join("vault")
        }
    };
    // The demo's own clock, so the 2025 scenario can let days pass.
    let clock = std::sync::Arc::new(postvault::FixedClock::new(postvault::SystemClock.now_ms()));
    let vault = Vault::init(
        &dir,
        OpenOptions {
            pack: None,
            clock: clock.clone(),
            master_key: master_key.clone(),
        },
    )?;
    let t = vault.pack().taxonomy();
    outln!("postvault demo");
    outln!("==============");
    outln!(
        "A new vault in {} with the `{}` policy pack {} ({}).",
        dir.display(),
        t.name,
        t.version,
        vault.pack().version()
    );
    outln!("Data store and key store are separate files; the key store is mode 0600.\n");

    let principals = [
        ("ingest", "collector", "the ingest service"),
        ("sorting", "delivery", "a mail-sorting system"),
        ("customer-care", "account_service", "a customer-care agent"),
        ("promotions", "marketing", "the marketing department"),
        ("ice-ero", "agency", "an immigration enforcement agency"),
        ("privacy-officer", "privacy_officer", "the privacy officer"),
    ];
    outln!("Principals:");
    for (name, role, what) in principals {
        vault.add_principal(name, role)?;
        outln!("  {name:<14} role {role:<16} {what}");
    }

    let cfg = postvault_sim::SimConfig {
        scale: a.scale,
        seed: a.seed,
        ..postvault_sim::SimConfig::default()
    };
    let sim = postvault_sim::Simulator::new(&cfg);
    let total = sim.plan().total_records();
    outln!(
        "\nCollecting {total} simulated records ({} of a U.S. postal day: scans, images, web visits, address changes, money orders...).",
        a.scale
    );
    // Remember who has the most kinds of data, to read that person below.
    let mut kinds: HashMap<String, BTreeSet<String>> = HashMap::new();
    let lines = sim.inspect(|l| {
        if let Ok(h) = serde_json::from_str::<Head<'_>>(l) {
            kinds
                .entry(h.subject.to_string())
                .or_default()
                .insert(h.category.to_string());
        }
    });
    let ingest = vault.principal("ingest")?;
    let bar = crate::progress_bar(Some(total), "collecting");
    let started = Instant::now();
    let report = vault.collect(
        &ingest,
        &mut BufReader::new(LinesReader::new(lines)),
        &CollectOptions::default(),
        &mut |n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    if let Some(f) = &report.failure {
        anyhow::bail!("collection failed: {}", f.message);
    }
    let secs = started.elapsed().as_secs_f64();
    outln!(
        "  accepted {} records in {:.1} s ({:.0} records/s), {} rejected, in {} transactions,",
        report.accepted,
        secs,
        report.accepted as f64 / secs.max(1e-9),
        report.rejected,
        report.batches
    );
    outln!("  each transaction accounted for by one log leaf. By category:");
    for (c, n) in &report.categories {
        outln!("    {c:<30} {n:>9}");
    }

    let (person, cats) = kinds
        .into_iter()
        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(&a.0)))
        .context("the simulated slice was empty")?;
    outln!(
        "\nThe person read below, `{person}`, has data in {} categories: {}.",
        cats.len(),
        cats.iter().cloned().collect::<Vec<_>>().join(", ")
    );

    let reads = [
        ("sorting", "delivery", "A sorting system reads for delivery"),
        (
            "customer-care",
            "account_service",
            "Customer care reads for account service",
        ),
        (
            "promotions",
            "marketing",
            "Marketing reads without the person's consent",
        ),
        (
            "ice-ero",
            "immigration_enforcement",
            "An immigration agency asks for the person's data for immigration enforcement",
        ),
    ];
    let mut last = None;
    for (i, (who, purpose, title)) in reads.iter().enumerate() {
        let p = vault.principal(who)?;
        let r = vault.read(&p, &person, purpose)?;
        outln!("\n{}. {title}", i + 1);
        outln!("   postvault read --as {who} --purpose {purpose} --subject {person}");
        describe(&r)?;
        last = Some(r);
    }

    let p = vault.principal("ice-ero")?;
    let ghost = "cust-999999999999";
    let r = vault.read(&p, ghost, "immigration_enforcement")?;
    outln!("\n5. The same agency asks about someone who is not in the vault ({ghost})");
    let same = last.as_ref().is_some_and(|l| {
        l.withheld == r.withheld && l.records == r.records && l.decision == r.decision
    });
    outln!(
        "   The answer is {} the answer about a real person: nothing shows whether anyone exists.",
        if same {
            "identical to"
        } else {
            "DIFFERENT from"
        }
    );

    consent_scene(&vault, &person)?;
    crate::demo_stats::scene(&vault, clock.now_ms())?;

    let size = vault.store().log_size()?;
    let leaf = vault
        .store()
        .leaves(size.saturating_sub(1), size)?
        .pop()
        .unwrap_or_default();
    outln!(
        "\nThe transparency log holds {size} leaves: one per collection batch and one per read, allowed or denied."
    );
    outln!("The last leaf, exactly as recorded (no name, no identifier, a keyed subject tag):");
    outln!("   {}", String::from_utf8_lossy(&leaf));
    let note = vault.checkpoint()?;
    outln!("\nThe vault signs a checkpoint of the log (C2SP signed note, Ed25519):");
    for l in note.lines() {
        outln!("   {l}");
    }
    let proof = vault.prove_inclusion(size - 1, None)?;
    outln!(
        "An auditor can prove that leaf is in the signed tree with {} hashes (postvault log prove --index {}),",
        proof.hashes.len(),
        size - 1
    );
    let report = vault.verify_log(&postvault::VerifyOptions::default())?;
    outln!(
        "and recompute the whole tree from the leaves: {} (postvault log verify).",
        if report.ok {
            "it verifies"
        } else {
            "it does NOT verify"
        }
    );
    if let Some(key) = vault.subject_tag_key(&person)? {
        let (_, found) = vault.find_leaves(&key)?;
        outln!(
            "With their tag key, `{person}` finds the {} leaves about them, each with its proof (postvault log find).",
            found.len()
        );
    }
    let sample: Vec<String> = sample_subjects(a)?;
    scenario_2025(&vault, &clock, &person, &cats, &sample)?;
    rights_scene(&vault, &person, &sample)?;
    crate::demo_witness::scene(
        &dir,
        vault,
        OpenOptions {
            pack: None,
            clock: clock.clone(),
            master_key,
        },
        &person,
    )?;
    if a.keep.is_some() {
        outln!("\nThe vault is kept in {}.", dir.display());
    }
    Ok(0)
}

/// Consent is the person's act: a collection line cannot grant it, the
/// rights channel records it (one leaf, the person's tag), a withdrawal
/// closes marketing again.
fn consent_scene(vault: &Vault, person: &str) -> Result<()> {
    let promo = vault.principal("promotions")?;
    let officer = vault.principal("privacy-officer")?;
    let ingest = vault.principal("ingest")?;
    outln!("\n6. The ingest service sends a record claiming the person consented to marketing");
    let line = serde_json::json!({"subject": person, "category": "account_identity", "purpose": "marketing",
        "consent": true, "fields": {"name": "A. Person", "email": "a.person@example.com"}});
    let r = vault.collect(
        &ingest,
        &mut line.to_string().as_bytes(),
        &CollectOptions::default(),
        &mut |_| {},
    )?;
    match r.errors.first() {
        Some(e) => outln!("   REJECTED [{}]: {}", e.code, e.message),
        None => outln!("   ACCEPTED (consent was laundered through collection)"),
    }
    let still = vault.read(&promo, person, "marketing")?;
    outln!(
        "   Marketing reads again: {}. Collection never creates, changes or revives consent.",
        if still.denied() {
            "still DENIED"
        } else {
            "ALLOWED"
        }
    );
    outln!("\n7. The person opts in through the rights channel");
    outln!(
        "   postvault consent grant --as privacy-officer --subject {person} --purpose marketing"
    );
    let idx = vault.set_consent(&officer, person, "marketing", true)?;
    outln!("   Recorded as log leaf {idx}, tagged for the person.");
    let r = vault.read(&promo, person, "marketing")?;
    describe(&r)?;
    match vault.set_consent(&officer, person, "immigration_enforcement", true) {
        Err(e) => outln!(
            "   Consent to immigration enforcement is refused [{}]: no consent opens a prohibited purpose.",
            e.code()
        ),
        Ok(_) => outln!("   Consent to immigration enforcement was STORED"),
    }
    vault.set_consent(&officer, person, "marketing", false)?;
    let r = vault.read(&promo, person, "marketing")?;
    outln!(
        "   The person withdraws: marketing is {} again, until they grant it anew.",
        if r.denied() { "denied" } else { "ALLOWED" }
    );
    Ok(())
}

/// Subject ids of the simulated slice, for requests that name many people.
fn sample_subjects(a: &DemoArgs) -> Result<Vec<String>> {
    let cfg = postvault_sim::SimConfig {
        scale: a.scale,
        seed: a.seed,
        ..postvault_sim::SimConfig::default()
    };
    let mut ids = BTreeSet::new();
    let lines = postvault_sim::Simulator::new(&cfg).inspect(|_| {});
    for l in lines {
        if let Ok(h) = serde_json::from_str::<Head<'_>>(&l) {
            ids.insert(h.subject.to_string());
        }
        if ids.len() >= 40 {
            break;
        }
    }
    // A small slice has fewer people: the requests name others too (the
    // answer does not tell whether anyone is held).
    let mut n = 0;
    while ids.len() < 40 {
        ids.insert(format!("cust-9{n:011}"));
        n += 1;
    }
    Ok(ids.into_iter().collect())
}

fn day(ms: i64) -> String {
    postvault_policy::disclosure::format_iso(postvault_policy::disclosure::start_of_day_ms(ms))
}

fn reasons_line(a: &postvault::StepAnswer) -> String {
    let codes: BTreeSet<&str> = a.reasons.iter().map(|r| r.code.as_str()).collect();
    codes.into_iter().collect::<Vec<_>>().join(", ")
}

/// The 2025 scenario: an immigration agency asks for bulk data, for mail
/// covers on civil immigration grounds and for a stream of single-person
/// requests; then a court order for one named person in a felony case.
fn scenario_2025(
    vault: &Vault,
    clock: &postvault::FixedClock,
    person: &str,
    held_cats: &BTreeSet<String>,
    sample: &[String],
) -> Result<()> {
    const DAY: i64 = 86_400_000;
    let ice = vault.principal("ice-ero")?;
    let officer = vault.principal("privacy-officer")?;
    let now = clock.now_ms();
    let today = day(now);
    outln!("\n2025, replayed: the disclosure gateway");
    outln!("======================================");
    outln!(
        "An immigration agency asks the postal service for its customers' data. Every request is a legal\n\
         instrument checked by the pack, recorded in the ledger and the log, and counted."
    );

    // (a) Bulk access by selector.
    let bulk = serde_json::json!({
        "kind": "written_request", "instrument_id": "ERO-2025-BULK", "agency": "Immigration and Customs Enforcement",
        "signer": {"name": "Field Office Director", "title": "Field Office Director", "level": "section_chief", "delegation_ref": "DHS delegation 7030.2"},
        "authority": "8 U.S.C. 1357; 5 U.S.C. 552a(b)(7)", "ground": "immigration_enforcement", "case_id": "ERO-OPS-2025",
        "selector": {"all_account_holders": true, "born_abroad": true},
        "portions": ["account_identity", "online_activity", "scan_event", "payment_card", "money_order"],
        "time_range": {"from": day(now - 365 * DAY), "to": today}, "issued_at": today
    });
    let a = vault.disclose_submit(&ice, &bulk.to_string())?;
    outln!(
        "\n(a) Bulk access to online-account, tracking, card and financial data and IP addresses of"
    );
    outln!("    everyone matching a selector:");
    outln!("    postvault disclose submit --as ice-ero bulk.json");
    outln!("    {}: {}", a.status.to_uppercase(), reasons_line(&a));
    for r in a.reasons.iter().take(3) {
        outln!("      [{}] {}", r.code, r.message);
    }

    // (b) Mail covers on many addresses, civil immigration grounds.
    let many: Vec<serde_json::Value> = sample
        .iter()
        .take(12)
        .map(|s| serde_json::json!({"id": s}))
        .collect();
    let covers = serde_json::json!({
        "kind": "mail_cover", "instrument_id": "ERO-2025-MC", "agency": "Immigration and Customs Enforcement",
        "signer": {"name": "Supervisory Officer", "title": "Supervisory Deportation Officer", "level": "supervisor"},
        "authority": "39 CFR 233.3", "ground": "civil_immigration_enforcement", "case_id": "ERO-OPS-2025-MC",
        "subjects": many, "portions": ["scan_event", "mail_image", "mail_cover_record"], "issued_at": today,
        "requester_type": "law_enforcement_agency", "reasonable_grounds": "removal proceedings",
        "start": today, "days": 90, "indicted_or_information_filed": false
    });
    let b = vault.disclose_submit(&ice, &covers.to_string())?;
    outln!(
        "\n(b) Mail covers (photographs of envelope exteriors) on {} addresses, on civil immigration grounds:",
        sample.len().min(12)
    );
    outln!("    {}: {}", b.status.to_uppercase(), reasons_line(&b));

    // (c) A stream of single-person requests past the quota.
    let stream: Vec<String> = sample.iter().skip(12).take(28).cloned().collect();
    let (mut pending, mut held, mut ids) = (0, 0, Vec::new());
    let mut alert = None;
    for (i, s) in stream.iter().enumerate() {
        let one = serde_json::json!({
            "kind": "written_request", "instrument_id": format!("ERO-2025-{i:04}"), "agency": "Immigration and Customs Enforcement",
            "signer": {"name": "Field Office Director", "title": "Field Office Director", "level": "section_chief", "delegation_ref": "DHS delegation 7030.2"},
            "authority": "8 U.S.C. 1357; 5 U.S.C. 552a(b)(7)", "ground": "civil_law_enforcement", "case_id": format!("A{:09}", 200_000_000 + i),
            "subjects": [{"id": s}], "portions": ["address"],
            "time_range": {"from": day(now - 90 * DAY), "to": today}, "issued_at": today
        });
        let r = vault.disclose_submit(&ice, &one.to_string())?;
        match r.status.as_str() {
            "pending_approval" => pending += 1,
            "held_for_review" => {
                held += 1;
                alert = alert.or_else(|| r.alerts.first().cloned());
            }
            _ => {}
        }
        ids.push(r.id);
    }
    outln!(
        "\n(c) {} single-person requests for a current address, one after another:",
        stream.len()
    );
    outln!(
        "    {pending} wait for a privacy officer (none is answered by the software alone); {held} are HELD FOR REVIEW\n    (quotas count people named, the refused requests above included):"
    );
    if let Some(al) = alert {
        outln!("      alert {al}");
    }
    let mut refused = 0;
    for id in &ids {
        if !vault.disclose_refuse(&officer, id)?.refused() {
            refused += 1;
        }
    }
    outln!(
        "    The privacy officer sees a list being built one name at a time (R10) and refuses all {refused}."
    );
    outln!("    postvault disclose refuse --as privacy-officer ID");

    // (d) A court order for one named person in a felony case.
    clock.advance(2 * DAY);
    let now = clock.now_ms();
    let today = day(now);
    let order = serde_json::json!({
        "kind": "court_order", "instrument_id": "26-MJ-0417", "agency": "Homeland Security Investigations",
        "signer": {"name": "Assistant U.S. Attorney", "title": "Assistant United States Attorney", "level": "agent"},
        "authority": "5 U.S.C. 552a(b)(11); 39 CFR 265.14(d)(5)(iii)", "ground": "criminal_law_enforcement",
        "case_id": "HSI-CH-26-0417", "subjects": [{"id": person}], "portions": ["address", "scan_event"],
        "time_range": {"from": day(now - 30 * DAY), "to": today}, "issued_at": today,
        "expires_at": day(now + 30 * DAY), "delay_notice_until": day(now + 60 * DAY),
        "court": {"name": "U.S. District Court for the Northern District of Illinois", "docket": "1:26-mj-00417",
                  "judge": "Magistrate Judge", "order_date": today}
    });
    let d = vault.disclose_submit(&ice, &order.to_string())?;
    outln!(
        "\n(d) Two days later: a court order for one named person, `{person}`, in a felony case"
    );
    outln!(
        "    (document fraud, 18 U.S.C. 1546), for the address and scan events only, notice delayed 60 days."
    );
    outln!(
        "    {}{}",
        d.status.to_uppercase(),
        if d.refused() {
            format!(": {}", reasons_line(&d))
        } else {
            String::new()
        }
    );
    let own = vault.disclose_approve(&ice, &d.id, &postvault::ApproveOptions::default())?;
    outln!(
        "    The agency approves its own request: REFUSED ({})",
        reasons_line(&own)
    );
    // The officer approves a document, not a status: the instrument opened
    // (one leaf) beside every check the pack made.
    if let Some(o) = vault
        .disclosure_show(&officer, &d.id)?
        .and_then(|v| v.officer)
    {
        let passed = o
            .checks
            .iter()
            .filter(|c| c.result == postvault_policy::review::CheckStatus::Passed)
            .count();
        outln!(
            "    postvault disclose show --as privacy-officer ID: the officer opens the instrument (log leaf {}):",
            o.log_index
        );
        outln!(
            "    court, docket, judge, signer and title, authority, the person named; {passed} of {} checks passed,",
            o.checks.len()
        );
        outln!(
            "    and {} things no software can check for the officer to confirm (the court and judge are real, ...).",
            o.cannot_check.len()
        );
    }
    let ok = vault.disclose_approve(&officer, &d.id, &postvault::ApproveOptions::default())?;
    outln!(
        "    The privacy officer, a second person, approves: {}",
        ok.status.to_uppercase()
    );
    let pkg = vault.disclose_fetch(&ice, &d.id)?;
    let got: BTreeSet<String> = pkg
        .subjects
        .iter()
        .flat_map(|s| s.records.iter().map(|r| r.category.clone()))
        .collect();
    outln!("    postvault disclose fetch --as ice-ero {}", d.id);
    outln!(
        "    The package holds {} records of `{person}` in {}; of the {} categories held about them, nothing else.",
        pkg.subjects.iter().map(|s| s.records.len()).sum::<usize>(),
        got.iter().cloned().collect::<Vec<_>>().join(", "),
        held_cats.len()
    );
    outln!(
        "    Each person disclosed is one log leaf, written before any record was opened (leaf {}).",
        pkg.log_index
    );
    // The same order again, its references respelled: one document, one
    // disclosure, whoever presents it and however it is written.
    let mut reuse = order.clone();
    reuse["instrument_id"] = serde_json::json!("26\u{2011}mj\u{2011}0417.");
    reuse["court"]["name"] =
        serde_json::json!("U.S. DISTRICT COURT FOR THE NORTHERN DISTRICT OF ILLINOIS");
    reuse["court"]["docket"] = serde_json::json!("1:26-MJ-00417");
    let r = vault.disclose_submit(&ice, &reuse.to_string())?;
    outln!(
        "    The same order again, its id respelled `26\u{2011}mj\u{2011}0417.` (Unicode hyphens): {} ({})",
        r.status.to_uppercase(),
        reasons_line(&r)
    );
    let before = vault.accounting(&officer, person, false)?;
    outln!(
        "    The person's accounting of disclosures now shows {} entries: the court delayed notice.",
        before.entries.len()
    );
    clock.advance(61 * DAY);
    let notices = vault.disclosure_notices(&officer)?;
    let after = vault.accounting(&officer, person, false)?;
    outln!(
        "    61 days later the delay has expired: postvault disclose notices --as privacy-officer"
    );
    for n in &notices {
        outln!(
            "      notice to `{}`: {} disclosed data about you to {} on {} (log leaf {})",
            n.subject,
            n.nature,
            n.recipient,
            n.disclosed_at,
            n.log_index
        );
    }
    outln!(
        "    and the accounting shows {} entry: date, nature, purpose, recipient (5 U.S.C. 552a(c)).",
        after.entries.len()
    );

    let report = vault.transparency_report()?;
    outln!("\npostvault report transparency --format table");
    for l in crate::disclose::transparency_table(&report).lines() {
        outln!("   {l}");
    }
    Ok(())
}

/// The person's rights and the end of data: the access report with its
/// proofs, the retention sweep, an erasure.
fn rights_scene(vault: &Vault, person: &str, sample: &[String]) -> Result<()> {
    let officer = vault.principal("privacy-officer")?;
    outln!("\nThe person's rights, and the end of data");
    outln!("========================================");
    let r = vault.subject_report(&officer, person)?;
    outln!("postvault subject report --as privacy-officer --subject {person} --format html");
    outln!(
        "    {} records held, {} disclosure(s) in the accounting, {} log leaves about them, every proof {} against the signed checkpoint.",
        r.records.len(),
        r.disclosures.len(),
        r.log.len(),
        if r.proofs_verified {
            "verified"
        } else {
            "NOT verified"
        }
    );
    let sweep = vault.retention_run(&mut |_| {})?;
    outln!("postvault retention run   (61 days have passed in this tour)");
    outln!(
        "    {} retention period keys destroyed, {} expired records deleted ({}): unreadable in every copy, backups included.",
        sweep.periods_destroyed,
        sweep.records_deleted,
        sweep
            .by_category
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let Some(other) = sample.iter().find(|s| s.as_str() != person) else {
        return Ok(());
    };
    let tag_key = vault.subject_tag_key(other)?;
    let e = vault.erase(&officer, std::slice::from_ref(other), &mut |_| {})?;
    outln!("postvault erase --as privacy-officer --subject {other}");
    outln!(
        "    {} records deleted and {} keys destroyed; the erasure is log leaf {}.",
        e.records_deleted,
        e.keys_destroyed,
        e.first_leaf
    );
    let after = vault.subject_report(&officer, other)?;
    let found = match tag_key {
        Some(k) => vault.find_leaves(&k)?.1.len(),
        None => 0,
    };
    outln!(
        "    Now the vault holds {} records of them and nobody can link a leaf to them; with the tag key they kept, \
         the person still finds and proves their {found} {}, the erasure last. The log {}.",
        after.records.len(),
        if found == 1 { "leaf" } else { "leaves" },
        if vault.verify_log(&postvault::VerifyOptions::default())?.ok {
            "still verifies"
        } else {
            "does NOT verify"
        }
    );
    Ok(())
}

fn describe(r: &ReadResponse) -> Result<()> {
    let mut by_cat: std::collections::BTreeMap<&str, usize> = Default::default();
    for rec in &r.records {
        *by_cat.entry(rec.category.as_str()).or_default() += 1;
    }
    if r.denied() {
        outln!("   DENIED: this purpose may see nothing. No data left the vault.");
    } else if by_cat.is_empty() {
        outln!("   ALLOWED for some categories, but the person has no data in them.");
    } else {
        let shown: Vec<String> = by_cat.iter().map(|(c, n)| format!("{c} ({n})")).collect();
        outln!("   ALLOWED, returned: {}", shown.join(", "));
        if let Some(rec) = r.records.first() {
            outln!(
                "   e.g. {} collected for {}: {}",
                rec.category,
                rec.collected_for,
                rec.fields.json()
            );
        }
    }
    // Group withheld categories by their reasons.
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for w in &r.withheld {
        let why = w
            .reasons
            .iter()
            .map(|x| format!("{} [{}]", x.message, x.rule))
            .collect::<Vec<_>>()
            .join("; ");
        match groups.iter_mut().find(|(k, _)| *k == why) {
            Some((_, cats)) => cats.push(&w.category),
            None => groups.push((why, vec![&w.category])),
        }
    }
    if !groups.is_empty() {
        outln!("   Withheld:");
        for (why, cats) in groups {
            outln!("     {}: {why}", cats.join(", "));
        }
    }
    outln!(
        "   Recorded as log leaf {} before any data was returned.",
        r.log_index
    );
    Ok(())
}
