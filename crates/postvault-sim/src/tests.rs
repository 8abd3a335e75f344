//! Tests: determinism, exact counts, realistic ratios, bounded memory, and
//! that every line would be accepted under the postal pack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::{Plan, SimConfig, Simulator, write_ndjson};

const TAXONOMY: &str = include_str!("../../../packs/postal/taxonomy.toml");

const USPS_STATES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "PR", "VI", "GU", "AS", "MP", "AA", "AE", "AP",
];

fn cfg(scale: f64, seed: u64) -> SimConfig {
    SimConfig {
        scale,
        seed,
        ..SimConfig::default()
    }
}

// ---------------------------------------------------------------------------
// A minimal checker of the postal pack's collection rules
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct FieldSpec {
    ty: String,
    max: Option<u64>,
    max_value: Option<f64>,
    values: Vec<String>,
    required: bool,
    collect_for: Option<Vec<String>>,
}

struct Pack {
    /// purpose -> (collects, legal_basis)
    purposes: HashMap<String, (bool, bool)>,
    fields: HashMap<String, HashMap<String, FieldSpec>>,
    /// (purpose, category) -> cell
    matrix: HashMap<(String, String), String>,
}

fn strings(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn load_pack() -> Pack {
    let t: toml::Table = TAXONOMY.parse().unwrap();
    let mut purposes = HashMap::new();
    for p in t["purpose"].as_array().unwrap() {
        let get = |k: &str| p.get(k).and_then(toml::Value::as_bool).unwrap_or(false);
        let prohibited = p.get("group").and_then(|g| g.as_str()) == Some("prohibited");
        purposes.insert(
            p["id"].as_str().unwrap().to_owned(),
            (get("collects") && !prohibited, get("legal_basis")),
        );
    }
    let mut fields = HashMap::new();
    for c in t["category"].as_array().unwrap() {
        let mut m = HashMap::new();
        for f in c["fields"].as_array().unwrap() {
            m.insert(
                f["name"].as_str().unwrap().to_owned(),
                FieldSpec {
                    ty: f["type"].as_str().unwrap().to_owned(),
                    max: f
                        .get("max")
                        .and_then(toml::Value::as_integer)
                        .map(|v| v as u64),
                    max_value: f
                        .get("max_value")
                        .and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64))),
                    values: strings(f.get("values")),
                    required: f
                        .get("required")
                        .and_then(toml::Value::as_bool)
                        .unwrap_or(false),
                    collect_for: f.get("collect_for").map(|v| strings(Some(v))),
                },
            );
        }
        fields.insert(c["id"].as_str().unwrap().to_owned(), m);
    }
    let mt = t["matrix"].as_table().unwrap();
    let columns = strings(mt.get("columns"));
    let mut matrix = HashMap::new();
    for (purpose, row) in mt {
        if purpose == "columns" {
            continue;
        }
        let cells: Vec<&str> = row.as_str().unwrap().split_whitespace().collect();
        assert_eq!(cells.len(), columns.len(), "matrix row {purpose}");
        for (col, cell) in columns.iter().zip(cells) {
            matrix.insert((purpose.clone(), col.clone()), cell.to_owned());
        }
    }
    assert_eq!(purposes.len(), 22);
    assert_eq!(fields.len(), 13);
    Pack {
        purposes,
        fields,
        matrix,
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    if !(all_digits(&s[..4]) && all_digits(&s[5..7]) && all_digits(&s[8..])) {
        return false;
    }
    let y: i64 = s[..4].parse().unwrap();
    let m: u32 = s[5..7].parse().unwrap();
    let d: u32 = s[8..].parse().unwrap();
    (1..=12).contains(&m) && d >= 1 && d <= crate::util::days_in_month(y, m)
}

fn valid_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
        return false;
    }
    if !valid_date(&s[..10]) {
        return false;
    }
    let hh = &s[11..13];
    let mm = &s[14..16];
    let ss = &s[17..19];
    all_digits(hh)
        && all_digits(mm)
        && all_digits(ss)
        && hh.parse::<u32>().unwrap() < 24
        && mm.parse::<u32>().unwrap() < 60
        && ss.parse::<u32>().unwrap() < 60
}

fn luhn_ok(s: &str) -> bool {
    let mut sum = 0;
    for (i, b) in s.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// Decoded length of valid standard base64, or None.
fn base64_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let ok = b[..b.len() - pad]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/');
    ok.then(|| b.len() / 4 * 3 - pad)
}

fn check_value(spec: &FieldSpec, v: &Value) -> Result<(), String> {
    let max = |default: u64| spec.max.unwrap_or(default) as usize;
    let as_str = || v.as_str().ok_or_else(|| format!("{v} is not a string"));
    let ok = match spec.ty.as_str() {
        "string" | "text" => {
            let s = as_str()?;
            !s.chars().any(char::is_control) && s.chars().count() <= max(200)
        }
        "email" => {
            let s = as_str()?;
            let parts: Vec<&str> = s.split('@').collect();
            parts.len() == 2
                && !parts[0].is_empty()
                && parts[1].contains('.')
                && s.len() <= 254
                && s.chars().count() <= max(254)
        }
        "phone" => {
            let s = as_str()?;
            let d = s.strip_prefix('+').unwrap_or(s);
            all_digits(d) && (10..=15).contains(&d.len())
        }
        "zip" => {
            let s = as_str()?;
            (s.len() == 5 && all_digits(s))
                || (s.len() == 10 && all_digits(&s[..5]) && &s[5..6] == "-" && all_digits(&s[6..]))
        }
        "state" => USPS_STATES.contains(&as_str()?),
        "date" => valid_date(as_str()?),
        "datetime" => valid_datetime(as_str()?),
        "ip" => as_str()?.parse::<std::net::IpAddr>().is_ok(),
        "card_number" => {
            let s = as_str()?;
            all_digits(s) && (13..=19).contains(&s.len()) && luhn_ok(s)
        }
        "money" => {
            let s = as_str()?;
            let ok = s.len() >= 4
                && all_digits(&s[..s.len() - 3])
                && &s[s.len() - 3..s.len() - 2] == "."
                && all_digits(&s[s.len() - 2..]);
            let val: f64 = s.parse().unwrap_or(-1.0);
            ok && val >= 0.0 && spec.max_value.is_none_or(|m| val <= m)
        }
        "integer" => v.is_i64() || v.is_u64(),
        "bool" => v.is_boolean(),
        "lat" => v.as_f64().is_some_and(|x| (-90.0..=90.0).contains(&x)),
        "lon" => v.as_f64().is_some_and(|x| (-180.0..=180.0).contains(&x)),
        "imb" => {
            let s = as_str()?;
            all_digits(s) && [20, 25, 29, 31].contains(&s.len())
        }
        "digits" => {
            let s = as_str()?;
            all_digits(s) && s.len() <= max(u64::MAX)
        }
        "hex" => {
            let s = as_str()?;
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && s.len() <= max(u64::MAX)
        }
        "enum" => spec.values.iter().any(|x| Some(x.as_str()) == v.as_str()),
        "bytes" => base64_len(as_str()?).is_some_and(|n| n <= max(u64::MAX)),
        other => return Err(format!("unknown type {other}")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{v} is not a valid {}", spec.ty))
    }
}

/// Checks one line as the vault would on collection; returns the parsed
/// line.
fn check_line(pack: &Pack, line: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
    let obj = v.as_object().ok_or("not an object")?;
    for k in obj.keys() {
        if !["subject", "category", "purpose", "fields", "legal_basis"].contains(&k.as_str()) {
            return Err(format!("unknown key {k}"));
        }
    }
    let subject = obj
        .get("subject")
        .and_then(Value::as_str)
        .ok_or("no subject")?;
    let num = subject.strip_prefix("cust-").ok_or("subject prefix")?;
    if num.len() != 12 || !all_digits(num) {
        return Err(format!("subject {subject}"));
    }
    let category = obj
        .get("category")
        .and_then(Value::as_str)
        .ok_or("no category")?;
    let purpose = obj
        .get("purpose")
        .and_then(Value::as_str)
        .ok_or("no purpose")?;
    let &(collects, needs_basis) = pack.purposes.get(purpose).ok_or("unknown purpose")?;
    let specs = pack.fields.get(category).ok_or("unknown category")?;
    let cell = pack
        .matrix
        .get(&(purpose.to_owned(), category.to_owned()))
        .ok_or("no matrix cell")?;
    if !collects || !(cell == "Y" || cell == "C") {
        return Err(format!(
            "{purpose} may not collect {category} (cell {cell})"
        ));
    }
    // A C cell needs the person's consent, which the rights channel
    // records: a line never carries it (the vault rejects one that does).
    match obj.get("legal_basis") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        None if !needs_basis => {}
        other => return Err(format!("legal_basis {other:?} for {purpose}")),
    }
    let fields = obj
        .get("fields")
        .and_then(Value::as_object)
        .ok_or("no fields")?;
    for (name, spec) in specs {
        if spec.required && !fields.contains_key(name) {
            return Err(format!("required field {name} missing"));
        }
    }
    for (name, val) in fields {
        let spec = specs
            .get(name)
            .ok_or_else(|| format!("unknown field {name}"))?;
        if spec
            .collect_for
            .as_ref()
            .is_some_and(|cf| !cf.iter().any(|p| p == purpose))
        {
            return Err(format!("field {name} not collectable for {purpose}"));
        }
        check_value(spec, val).map_err(|e| format!("{category}.{name}: {e}"))?;
    }
    Ok(v)
}

/// The category of a line without a full parse.
fn category_of(line: &str) -> &str {
    let start = line.find("\"category\":\"").unwrap() + 12;
    let end = start + line[start..].find('"').unwrap();
    &line[start..end]
}

fn count_categories(cfg: &SimConfig) -> (HashMap<String, u64>, u64) {
    let mut m: HashMap<String, u64> = HashMap::new();
    let mut total = 0;
    for line in Simulator::new(cfg) {
        *m.entry(category_of(&line).to_owned()).or_default() += 1;
        total += 1;
    }
    (m, total)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn same_config_gives_identical_output() {
    let c = cfg(0.0001, 7);
    let a = Simulator::new(&c);
    let b = Simulator::new(&c);
    let mut n = 0;
    for (x, y) in a.zip(b) {
        assert_eq!(x, y);
        n += 1;
    }
    assert_eq!(n, Plan::new(&c).total_records());

    let mut out1 = Vec::new();
    let mut out2 = Vec::new();
    write_ndjson(&c, &mut out1, &mut |_| {}).unwrap();
    write_ndjson(&c, &mut out2, &mut |_| {}).unwrap();
    assert_eq!(out1, out2);
    let joined: String = Simulator::new(&c).map(|l| l + "\n").collect();
    assert_eq!(out1, joined.into_bytes());
}

/// The output of one configuration, byte for byte, as recorded: the
/// generators (and the crates they write digests, base64 and escapes with)
/// may be reorganized, never change what a seed produces.
#[test]
fn output_is_the_recorded_one() {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for line in Simulator::new(&cfg(0.00002, 11)).with_images(300) {
        h.update(line.as_bytes());
        h.update(b"\n");
    }
    assert_eq!(hex::encode(h.finalize()), GOLDEN_OUTPUT_SHA256);
}

/// SHA-256 of `cfg(0.00002, 11)` with 300-byte images, one line each.
const GOLDEN_OUTPUT_SHA256: &str =
    "3fff51000040a346060e47df2d7f84c6e85fd5f5488d89bfc9e3eadf30058f7d";

#[test]
fn different_seeds_differ() {
    let a: Vec<String> = Simulator::new(&cfg(0.0001, 1)).take(2000).collect();
    let b: Vec<String> = Simulator::new(&cfg(0.0001, 2)).take(2000).collect();
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(same < 10, "{same} identical lines across seeds");
    // A different day changes dates but nothing random.
    let mut d = cfg(0.0001, 1);
    d.day = (2027, 3, 15);
    let c: Vec<String> = Simulator::new(&d).take(2000).collect();
    assert!(c.iter().any(|l| l.contains("2027-03-15")));
    assert!(!c.iter().any(|l| l.contains("2026-11-02")));
}

#[test]
fn counts_match_plan_exactly() {
    for &(scale, seed, mail_covers) in &[
        (0.0, 1, false),
        (1e-7, 3, true),
        (0.00001, 1, false),
        (0.000037, 9, true),
        (0.0001, 42, false),
        (0.00037, 5, false),
        (0.0005, u64::MAX, true),
    ] {
        let c = SimConfig {
            mail_covers,
            marketing: mail_covers,
            ..cfg(scale, seed)
        };
        let plan = Plan::new(&c);
        let (got, total) = count_categories(&c);
        assert_eq!(total, plan.total_records(), "scale {scale}");
        for (cat, n) in plan.counts() {
            assert_eq!(
                got.get(cat).copied().unwrap_or(0),
                n,
                "{cat} at scale {scale}"
            );
        }
        let listed: HashSet<&str> = plan.counts().iter().map(|&(c, _)| c).collect();
        for cat in got.keys() {
            assert!(listed.contains(cat.as_str()), "unplanned category {cat}");
        }
        if scale >= 0.00001 {
            for (cat, n) in plan.counts() {
                // Mail-cover items come only when asked for.
                if cat != "mail_cover_record" {
                    assert!(n >= 1, "{cat} is empty at scale {scale}");
                }
            }
        }
    }
}

#[test]
fn zero_and_odd_configs() {
    let z = cfg(0.0, 1);
    assert_eq!(Plan::new(&z).total_records(), 0);
    assert_eq!(Simulator::new(&z).count(), 0);
    let mut out = Vec::new();
    assert_eq!(
        write_ndjson(&z, &mut out, &mut |_| panic!("no progress expected")).unwrap(),
        0
    );
    assert!(out.is_empty());

    let nan = cfg(f64::NAN, 1);
    assert_eq!(Plan::new(&nan).total_records(), 0);
    let neg = cfg(-3.0, 1);
    assert_eq!(Plan::new(&neg).total_records(), 0);
    let huge = Plan::new(&cfg(f64::INFINITY, 1));
    assert!(huge.total_records() > 0);

    let mut bad_day = cfg(0.00001, 1);
    bad_day.day = (2025, 2, 31);
    assert_eq!(Plan::new(&bad_day).day(), (2025, 2, 28));
    let pack = load_pack();
    for line in Simulator::new(&bad_day) {
        check_line(&pack, &line).unwrap();
    }
    bad_day.day = (-5, 0, 0);
    assert_eq!(Plan::new(&bad_day).day(), (1900, 1, 1));
    assert!(Simulator::new(&bad_day).count() > 0);
}

#[test]
fn every_line_is_accepted_by_the_pack() {
    let pack = load_pack();
    // The whole 1/1000 day in release builds, a fifth of it in debug.
    let scale = if cfg!(debug_assertions) {
        0.0002
    } else {
        0.001
    };
    let c = SimConfig {
        mail_covers: true,
        marketing: true,
        ..cfg(scale, 11)
    };
    let mut n = 0u64;
    let mut pairs: HashSet<(String, String)> = HashSet::new();
    for line in Simulator::new(&c) {
        assert!(!line.contains('\n'));
        let v = check_line(&pack, &line).unwrap_or_else(|e| panic!("{e}\n{line}"));
        pairs.insert((
            v["category"].as_str().unwrap().into(),
            v["purpose"].as_str().unwrap().into(),
        ));
        n += 1;
    }
    assert_eq!(n, Plan::new(&c).total_records());
    // The purposes the brief asks for are all present.
    for (cat, purpose) in [
        ("scan_event", "delivery"),
        ("mail_image", "delivery"),
        ("mail_image", "informed_delivery"),
        ("delivery_location", "delivery"),
        ("online_activity", "account_service"),
        ("online_activity", "security_operations"),
        ("online_activity", "fraud_prevention"),
        ("money_order", "aml_compliance"),
        ("change_of_address", "forwarding"),
        ("address", "forwarding"),
        ("address", "account_service"),
        ("account_identity", "account_service"),
        ("account_identity", "marketing"),
        ("payment_card", "payment_processing"),
        ("informed_delivery_engagement", "informed_delivery"),
        ("protective_order", "forwarding"),
        ("mail_cover_record", "mail_cover"),
    ] {
        assert!(
            pairs.contains(&(cat.into(), purpose.into())),
            "no {cat} for {purpose}"
        );
    }
}

#[test]
fn image_bytes_on_request() {
    let pack = load_pack();
    let c = cfg(0.00001, 3);
    let sim = Simulator::new(&c).with_images(4000);
    let mut sizes = Vec::new();
    for line in sim {
        let v = check_line(&pack, &line).unwrap_or_else(|e| panic!("{e}\n{line}"));
        if v["category"] == "mail_image" {
            let b64 = v["fields"]["image"].as_str().unwrap();
            let len = base64_len(b64).unwrap();
            assert!((64..=1 << 20).contains(&len), "{len}");
            // The digest is the image's SHA-256.
            use base64::Engine as _;
            use sha2::Digest as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            assert_eq!(
                v["fields"]["image_sha256"].as_str().unwrap(),
                hex::encode(sha2::Sha256::digest(&bytes))
            );
            sizes.push(len as f64);
        }
    }
    assert_eq!(sizes.len() as u64, Plan::new(&c).letters());
    // Lognormal around the median asked for: the median within 15%, the
    // log-sizes' spread near sigma 0.5, and a right tail (mean > median).
    sizes.sort_by(f64::total_cmp);
    let median = sizes[sizes.len() / 2];
    assert!((3400.0..=4600.0).contains(&median), "median {median}");
    let logs: Vec<f64> = sizes.iter().map(|s| s.ln()).collect();
    let mean_log = logs.iter().sum::<f64>() / logs.len() as f64;
    let sd = (logs.iter().map(|l| (l - mean_log).powi(2)).sum::<f64>() / logs.len() as f64).sqrt();
    assert!((0.4..=0.6).contains(&sd), "sigma {sd}");
    let mean = sizes.iter().sum::<f64>() / sizes.len() as f64;
    assert!(mean > median, "mean {mean} median {median}");
    // Without the flag, no bytes.
    assert!(!Simulator::new(&c).any(|l| l.contains("\"image\":")));
}

#[test]
fn ratios_match_the_reference() {
    // From the plan at 1/1000 of a day.
    let p = Plan::new(&cfg(0.001, 1));
    let pieces = p.pieces() as f64;
    let close = |got: f64, want: f64, tol: f64, what: &str| {
        assert!((got / want - 1.0).abs() <= tol, "{what}: {got} vs {want}");
    };
    close(pieces, 318_000.0, 0.0001, "pieces");
    close(p.packages() as f64 / pieces, 0.07, 0.01, "package share");
    close(
        p.count("online_activity") as f64 / pieces,
        7.0 / 318.0,
        0.01,
        "web per piece",
    );
    close(
        p.count("money_order") as f64 / pieces,
        209.0 / 318_000.0,
        0.01,
        "money orders per piece",
    );
    close(
        p.count("change_of_address") as f64 / pieces,
        93.0 / 318_000.0,
        0.01,
        "COA per piece",
    );
    close(p.subjects() as f64, 163_000.0, 0.001, "subjects");
    let scans = p.count("scan_event") as f64;
    close(
        scans / pieces,
        0.93 * 6.0 + 0.07 * 9.0,
        0.01,
        "scans per piece",
    );
    assert_eq!(p.count("mail_image"), p.letters());
    close(
        p.count("delivery_location") as f64 / p.packages() as f64,
        15.0 / 16.0,
        0.01,
        "GPS share",
    );
    // Mail-cover items only when asked for (a vault needs orders for them).
    assert_eq!(p.count("mail_cover_record"), 0);
    let covers = Plan::new(&SimConfig {
        mail_covers: true,
        ..cfg(0.001, 1)
    });
    assert_eq!(covers.count("mail_cover_record"), 1);
    assert_eq!(covers.total_records(), p.total_records() + 1);

    // Marketing opt-ins only when asked for (a vault needs consents for them).
    let opt_ins = Plan::new(&SimConfig {
        marketing: true,
        ..cfg(0.001, 1)
    });
    assert_eq!(p.total_records() + 3, opt_ins.total_records());

    // From the output at a smaller scale.
    let c = SimConfig {
        marketing: true,
        ..cfg(0.0002, 5)
    };
    let mut letters_events: Vec<u32> = Vec::new();
    let mut package_events: Vec<u32> = Vec::new();
    let mut purposes: HashMap<(String, String), u64> = HashMap::new();
    let mut bsa = 0u64;
    let mut ipv6 = 0u64;
    let mut current: Option<(bool, u32)> = None;
    let mut subjects_by_cat: HashMap<String, HashSet<String>> = HashMap::new();
    for line in Simulator::new(&c) {
        let v: Value = serde_json::from_str(&line).unwrap();
        let cat = v["category"].as_str().unwrap().to_owned();
        let purpose = v["purpose"].as_str().unwrap().to_owned();
        *purposes.entry((cat.clone(), purpose)).or_default() += 1;
        subjects_by_cat
            .entry(cat.clone())
            .or_default()
            .insert(v["subject"].as_str().unwrap().into());
        let f = &v["fields"];
        match cat.as_str() {
            "scan_event" => {
                let is_pkg = f["piece"] == "package";
                if f["event"] == "accepted" {
                    if let Some((p, n)) = current.take() {
                        if p {
                            package_events.push(n)
                        } else {
                            letters_events.push(n)
                        }
                    }
                    current = Some((is_pkg, 0));
                }
                if let Some((_, n)) = current.as_mut() {
                    *n += 1;
                }
            }
            "money_order" => bsa += u64::from(f.get("tin").is_some()),
            "online_activity" => ipv6 += u64::from(f["ip"].as_str().unwrap().contains(':')),
            _ => {}
        }
    }
    if let Some((p, n)) = current {
        if p {
            package_events.push(n)
        } else {
            letters_events.push(n)
        }
    }
    let plan = Plan::new(&c);
    assert_eq!(letters_events.len() as u64, plan.letters());
    assert_eq!(package_events.len() as u64, plan.packages());
    assert!(letters_events.iter().all(|n| (4..=8).contains(n)));
    assert!(package_events.iter().all(|n| (6..=12).contains(n)));
    let mean = |v: &[u32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    close(mean(&letters_events), 6.0, 0.01, "events per letter");
    close(mean(&package_events), 9.0, 0.03, "events per package");

    let get = |c: &str, p: &str| {
        purposes
            .get(&(c.to_owned(), p.to_owned()))
            .copied()
            .unwrap_or(0) as f64
    };
    let web = plan.count("online_activity") as f64;
    close(
        get("online_activity", "account_service") / web,
        0.85,
        0.05,
        "account_service share",
    );
    close(
        get("online_activity", "security_operations") / web,
        0.10,
        0.25,
        "security share",
    );
    close(
        get("online_activity", "fraud_prevention") / web,
        0.05,
        0.35,
        "fraud share",
    );
    close(ipv6 as f64 / web, 0.12, 0.35, "IPv6 share");
    close(
        get("mail_image", "informed_delivery") / plan.letters() as f64,
        0.2,
        0.05,
        "ID image share",
    );
    let mo = plan.count("money_order") as f64;
    assert!(bsa > 0 && (bsa as f64) / mo < 0.15, "BSA share {bsa}/{mo}");
    let ai = plan.count("account_identity") as f64;
    let mk = get("account_identity", "marketing");
    assert!(mk > 0.0 && mk / ai < 0.1, "marketing share {mk}/{ai}");

    // Subjects recur across categories.
    let mail = &subjects_by_cat["scan_event"];
    let web_subjects = &subjects_by_cat["online_activity"];
    let both = web_subjects.iter().filter(|s| mail.contains(*s)).count();
    assert!(
        both * 4 > web_subjects.len(),
        "only {both} web visitors also get mail"
    );
}

#[test]
fn scans_are_in_time_order_per_piece() {
    let c = cfg(0.00005, 8);
    let mut last: Option<(String, String)> = None; // (piece id, time)
    let mut delivered_pkgs = 0u64;
    let mut without_gps = 0u64;
    // A delivered scan waiting for its delivery point (the next line of the
    // mail stream, unless the scanner had no GPS).
    let mut pending: Option<(String, String)> = None;
    for line in Simulator::new(&c) {
        let v: Value = serde_json::from_str(&line).unwrap();
        let f = &v["fields"];
        let cat = v["category"].as_str().unwrap();
        if !["scan_event", "mail_image", "delivery_location"].contains(&cat) {
            continue;
        }
        if cat != "delivery_location" && pending.take().is_some() {
            without_gps += 1;
        }
        match cat {
            "scan_event" => {
                let id = f
                    .get("imb")
                    .or(f.get("tracking_number"))
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned();
                let t = f["scanned_at"].as_str().unwrap().to_owned();
                if f["event"] != "accepted" {
                    let (pid, pt) = last.as_ref().unwrap();
                    assert_eq!(
                        pid, &id,
                        "a piece's scans are consecutive in the mail stream"
                    );
                    assert!(&t > pt, "scan times increase: {pt} then {t}");
                }
                if f["event"] == "delivered" {
                    assert_eq!(f["piece"], "package");
                    pending = Some((id.clone(), t.clone()));
                }
                last = Some((id, t));
            }
            "delivery_location" => {
                let (id, t) = pending
                    .take()
                    .expect("delivery point follows a delivered scan");
                assert_eq!(f["tracking_number"].as_str().unwrap(), id);
                assert_eq!(f["delivered_at"].as_str().unwrap(), t);
                delivered_pkgs += 1;
            }
            _ => {
                let (id, t) = last.as_ref().unwrap();
                assert_eq!(f["imb"].as_str().unwrap(), id);
                assert_eq!(f["captured_at"].as_str().unwrap(), t);
            }
        }
    }
    without_gps += u64::from(pending.is_some());
    let plan = Plan::new(&c);
    assert_eq!(delivered_pkgs, plan.count("delivery_location"));
    assert_eq!(delivered_pkgs + without_gps, plan.packages());
}

#[test]
fn generation_does_not_accumulate() {
    let c = cfg(0.001, 1);
    let mut sim = Simulator::new(&c);
    let planned = sim.plan().total_records();
    assert_eq!(sim.size_hint(), (planned as usize, Some(planned as usize)));
    let mut n = 0u64;
    let mut max_buffered = 0;
    while let Some(line) = sim.next() {
        assert!(line.len() < 2048);
        max_buffered = max_buffered.max(sim.buffered());
        n += 1;
    }
    assert_eq!(n, planned);
    // At most one mailpiece's lines (12 scans and a delivery point, one of
    // them returned) plus the second line of a change of address and of a
    // registration wait in memory.
    assert!(max_buffered <= 14, "{max_buffered} lines buffered");
    assert_eq!(sim.next(), None);

    // write_ndjson streams to any writer and reports progress.
    let mut calls = Vec::new();
    let mut sink = std::io::sink();
    let c = cfg(0.0001, 1);
    let written = write_ndjson(&c, &mut sink, &mut |k| calls.push(k)).unwrap();
    assert_eq!(written, Plan::new(&c).total_records());
    assert!(calls.windows(2).all(|w| w[1] > w[0]));
    assert!(calls[..calls.len() - 1].iter().all(|k| k % 10_000 == 0));
    assert_eq!(calls.last().copied(), Some(written));
    assert_eq!(calls.len() as u64, written.div_ceil(10_000));
}

#[test]
fn prefixes_mix_all_streams() {
    let c = cfg(0.0001, 1);
    let total = Plan::new(&c).total_records() as usize;
    let first_half: HashSet<String> = Simulator::new(&c)
        .take(total / 2)
        .map(|l| category_of(&l).to_owned())
        .collect();
    for cat in [
        "scan_event",
        "online_activity",
        "money_order",
        "change_of_address",
        "payment_card",
    ] {
        assert!(
            first_half.contains(cat),
            "{cat} missing from the first half"
        );
    }
}

#[test]
fn subjects_are_skewed_and_in_range() {
    let c = cfg(0.0001, 2);
    let plan = Plan::new(&c);
    let mut per_subject: HashMap<u64, u64> = HashMap::new();
    let mut pieces = 0u64;
    for line in Simulator::new(&c) {
        if !line.contains("\"event\":\"accepted\"") {
            continue;
        }
        let v: Value = serde_json::from_str(&line).unwrap();
        let id: u64 = v["subject"].as_str().unwrap()[5..].parse().unwrap();
        assert!((1..=plan.subjects()).contains(&id));
        *per_subject.entry(id).or_default() += 1;
        pieces += 1;
    }
    assert_eq!(pieces, plan.pieces());
    let max = per_subject.values().copied().max().unwrap();
    let mean = pieces as f64 / per_subject.len() as f64;
    assert!(max as f64 > 20.0 * mean, "max {max}, mean {mean}");
    assert!(per_subject.len() as u64 > plan.subjects() / 4);
}

#[test]
fn config_and_plan_serde() {
    let c: SimConfig = serde_json::from_str(r#"{"scale": 0.5}"#).unwrap();
    assert_eq!(
        c,
        SimConfig {
            scale: 0.5,
            ..SimConfig::default()
        }
    );
    assert_eq!(SimConfig::default().day, (2026, 11, 2));
    let p = serde_json::to_value(Plan::new(&c)).unwrap();
    assert_eq!(p["pieces"], 159_000_000);
    assert_eq!(p["subjects"], 81_500_000);
}

#[test]
fn opt_ins_name_the_people_of_the_marketing_lines() {
    let c = SimConfig {
        marketing: true,
        ..cfg(0.0004, 3)
    };
    let from_lines: Vec<String> = Simulator::new(&c)
        .filter_map(|l| {
            let v: Value = serde_json::from_str(&l).ok()?;
            (v["purpose"] == "marketing").then(|| v["subject"].as_str().map(str::to_string))?
        })
        .collect();
    assert!(!from_lines.is_empty());
    assert_eq!(Simulator::opt_ins(&c), from_lines);
    assert!(Simulator::opt_ins(&cfg(0.0004, 3)).is_empty());
    assert!(Simulator::new(&cfg(0.0004, 3)).all(|l| !l.contains("\"marketing\"")));
}
