//! `postvault demo`: a tour on a temporary vault that prints, in words, what
//! was allowed, what was withheld and why.

use std::collections::{BTreeSet, HashMap};
use std::io::BufReader;
use std::time::Instant;

use anyhow::{Context, Result};
use postvault::{CollectOptions, OpenOptions, ReadResponse, Vault};
use serde::Deserialize;

use crate::{DemoArgs, LinesReader};

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    subject: &'a str,
    #[serde(borrow)]
    category: &'a str,
}

pub fn run(a: &DemoArgs) -> Result<u8> {
    let tmp;
    let dir = match &a.keep {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().context("creating a temporary directory")?;
            tmp.path().join("vault")
        }
    };
    let vault = Vault::init(&dir, OpenOptions::default())?;
    let t = vault.pack().taxonomy();
    println!("postvault demo");
    println!("==============");
    println!(
        "A new vault in {} with the `{}` policy pack {} ({}).",
        dir.display(),
        t.name,
        t.version,
        vault.pack().version()
    );
    println!("Data store and key store are separate files; the key store is mode 0600.\n");

    let principals = [
        ("ingest", "collector", "the ingest service"),
        ("sorting", "delivery", "a mail-sorting system"),
        ("customer-care", "account_service", "a customer-care agent"),
        ("promotions", "marketing", "the marketing department"),
        ("ice-ero", "agency", "an immigration enforcement agency"),
    ];
    println!("Principals:");
    for (name, role, what) in principals {
        vault.add_principal(name, role)?;
        println!("  {name:<14} role {role:<16} {what}");
    }

    let cfg = postvault_sim::SimConfig {
        scale: a.scale,
        seed: a.seed,
        ..postvault_sim::SimConfig::default()
    };
    let sim = postvault_sim::Simulator::new(&cfg);
    let total = sim.plan().total_records();
    println!(
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
    println!(
        "  accepted {} records in {:.1} s ({:.0} records/s), {} rejected, in {} transactions,",
        report.accepted,
        secs,
        report.accepted as f64 / secs.max(1e-9),
        report.rejected,
        report.batches
    );
    println!("  each transaction accounted for by one log leaf. By category:");
    for (c, n) in &report.categories {
        println!("    {c:<30} {n:>9}");
    }

    let (person, cats) = kinds
        .into_iter()
        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(&a.0)))
        .context("the simulated slice was empty")?;
    println!(
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
        println!("\n{}. {title}", i + 1);
        println!("   postvault read --as {who} --purpose {purpose} --subject {person}");
        describe(&r);
        last = Some(r);
    }

    let p = vault.principal("ice-ero")?;
    let ghost = "cust-999999999999";
    let r = vault.read(&p, ghost, "immigration_enforcement")?;
    println!("\n5. The same agency asks about someone who is not in the vault ({ghost})");
    let same = last.as_ref().is_some_and(|l| {
        l.withheld == r.withheld && l.records == r.records && l.decision == r.decision
    });
    println!(
        "   The answer is {} the answer about a real person: nothing shows whether anyone exists.",
        if same {
            "identical to"
        } else {
            "DIFFERENT from"
        }
    );

    let size = vault.store().log_size()?;
    let leaf = vault
        .store()
        .leaves(size.saturating_sub(1), size)?
        .pop()
        .unwrap_or_default();
    println!(
        "\nThe transparency log holds {size} leaves: one per collection batch and one per read, allowed or denied."
    );
    println!("The last leaf, exactly as recorded (no name, no identifier, a keyed subject tag):");
    println!("   {}", String::from_utf8_lossy(&leaf));
    let note = vault.checkpoint()?;
    println!("\nThe vault signs a checkpoint of the log (C2SP signed note, Ed25519):");
    for l in note.lines() {
        println!("   {l}");
    }
    let proof = vault.prove_inclusion(size - 1, None)?;
    println!(
        "An auditor can prove that leaf is in the signed tree with {} hashes (postvault log prove --index {}),",
        proof.hashes.len(),
        size - 1
    );
    let report = vault.verify_log(&postvault::VerifyOptions::default())?;
    println!(
        "and recompute the whole tree from the leaves: {} (postvault log verify).",
        if report.ok {
            "it verifies"
        } else {
            "it does NOT verify"
        }
    );
    if let Some(key) = vault.subject_tag_key(&person)? {
        let (_, found) = vault.find_leaves(&key)?;
        println!(
            "With their tag key, `{person}` finds the {} leaves about them, each with its proof (postvault log find).",
            found.len()
        );
    }
    if a.keep.is_some() {
        println!("\nThe vault is kept in {}.", dir.display());
    }
    Ok(0)
}

fn describe(r: &ReadResponse) {
    let mut by_cat: std::collections::BTreeMap<&str, usize> = Default::default();
    for rec in &r.records {
        *by_cat.entry(rec.category.as_str()).or_default() += 1;
    }
    if r.denied() {
        println!("   DENIED: this purpose may see nothing. No data left the vault.");
    } else if by_cat.is_empty() {
        println!("   ALLOWED for some categories, but the person has no data in them.");
    } else {
        let shown: Vec<String> = by_cat.iter().map(|(c, n)| format!("{c} ({n})")).collect();
        println!("   ALLOWED, returned: {}", shown.join(", "));
        if let Some(rec) = r.records.first() {
            println!(
                "   e.g. {} collected for {}: {}",
                rec.category,
                rec.collected_for,
                serde_json::Value::Object(rec.fields.clone())
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
        println!("   Withheld:");
        for (why, cats) in groups {
            println!("     {}: {why}", cats.join(", "));
        }
    }
    println!(
        "   Recorded as log leaf {} before any data was returned.",
        r.log_index
    );
}
