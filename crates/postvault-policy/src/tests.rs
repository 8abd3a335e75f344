#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// §8 of shared/reference/postal-privacy-rules.md, transcribed independently
/// of taxonomy.toml: rows P1-P20, columns C1-C13. `C` marks the cells §8
/// annotates "consented".
const REFERENCE_MATRIX: [(&str, &str); 20] = [
    ("delivery", "- Y Y - - - Y Y Y - Y - -"),
    ("forwarding", "Y Y Y Y - Y - - - - Y - -"),
    ("account_service", "Y Y - - - Y - - - - - - -"),
    ("payment_processing", "Y Y - Y - - - - - - - - -"),
    ("tracking_notifications", "Y Y - - - - Y Y - - - - -"),
    ("informed_delivery", "Y Y - - - - Y - Y Y - - -"),
    ("fraud_prevention", "Y Y Y - - Y - - - - Y - -"),
    ("aml_compliance", "Y Y - Y Y - - - - - - - -"),
    ("statistics", "- A A - - A A A - A - - A"),
    ("address_hygiene", "- Y Y - - - - - - - Y - -"),
    ("postal_crime_investigation", "L L L L L L L L L - Y L -"),
    ("mail_cover", "- - - - - - L - L - Y Y -"),
    ("law_enforcement_disclosure", "L L L L L L L L L - Y L -"),
    ("court_order", "L L L L L L L L L - Y L -"),
    ("census", "- Y - - - - - - - - - - -"),
    ("subject_access", "Y Y Y Y Y Y Y Y Y Y Y - Y"),
    ("security_operations", "- - - - - Y - - - - - - -"),
    ("marketing", "C C - - - - - - - A - - -"),
    ("bulk_analytics", "- - - - - - - - - - - - -"),
    ("immigration_enforcement", "- - - - - - - - - - - - -"),
];

const CATEGORIES: [&str; 13] = [
    "account_identity",
    "address",
    "change_of_address",
    "payment_card",
    "money_order",
    "online_activity",
    "scan_event",
    "delivery_location",
    "mail_image",
    "informed_delivery_engagement",
    "protective_order",
    "mail_cover_record",
    "disclosure_accounting",
];

fn pack() -> Pack {
    Pack::postal().unwrap()
}

fn req(pack: &Pack, role: &str, action: Action, purpose: &str, category: &str) -> DecisionRequest {
    let t = pack.taxonomy();
    DecisionRequest {
        role: t.role_ix(role).unwrap_or_else(|| panic!("role {role}")),
        action,
        purpose: t.purpose_ix(purpose).unwrap(),
        category: t.category_ix(category).unwrap(),
        consent: false,
    }
}

fn policies(d: &Decision) -> Vec<&str> {
    d.reasons.iter().map(|r| r.policy.as_str()).collect()
}

#[test]
fn ids_are_the_contract() {
    let p = pack();
    let t = p.taxonomy();
    let cats: Vec<&str> = t.categories.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(cats, CATEGORIES);
    let purposes: Vec<&str> = t.purposes.iter().map(|p| p.id.as_str()).collect();
    // §8's purposes, then the R19 prohibitions the engine fixes.
    let mut expected: Vec<&str> = REFERENCE_MATRIX.iter().map(|(p, _)| *p).collect();
    expected.extend(["first_amendment_monitoring", "correspondent_reverse_lookup"]);
    assert_eq!(purposes, expected);
    for extra in ["collector", "privacy_officer", "auditor", "agency"] {
        assert!(t.role_ix(extra).is_some(), "role {extra}");
    }
    for p in &t.purposes {
        assert_eq!(t.role_ix(&p.id).is_some(), p.internal, "role for {}", p.id);
    }
}

/// Every purpose x category cell of §8, read by the purpose's own role (or,
/// for purposes with no role, by every role that exists).
#[test]
fn every_matrix_cell_decides_as_the_reference_says() {
    let p = pack();
    let t = p.taxonomy();
    for (purpose, row) in REFERENCE_MATRIX {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells.len(), 13);
        for (cat, cell) in CATEGORIES.iter().zip(cells) {
            let pix = t.purpose_ix(purpose).unwrap();
            let cix = t.category_ix(cat).unwrap();
            assert_eq!(t.cell(pix, cix).letter(), cell, "{purpose} x {cat}");
            let role = if t.role_ix(purpose).is_some() {
                purpose
            } else {
                "privacy_officer"
            };
            for consent in [false, true] {
                let r = DecisionRequest {
                    consent,
                    ..req(&p, role, Action::Read, purpose, cat)
                };
                let d = p.decide(&r);
                let why = policies(d);
                if t.role_ix(purpose).is_none() {
                    assert!(!d.allowed(), "{purpose} x {cat}: no role acts for it");
                    assert!(why.contains(&"R5-role-may-read-for-purpose"), "{why:?}");
                    continue;
                }
                match cell {
                    "Y" => {
                        assert!(d.allowed(), "{purpose} x {cat}: {why:?}");
                        assert_eq!(why, ["R3-compatible-use"]);
                    }
                    "C" if consent => assert!(d.allowed(), "{purpose} x {cat}"),
                    "C" => {
                        assert!(!d.allowed());
                        assert_eq!(why, ["HEW3-consent"]);
                    }
                    "A" => {
                        assert!(!d.allowed());
                        assert_eq!(why, ["R3-aggregate-only"]);
                    }
                    "L" => {
                        assert!(!d.allowed());
                        assert_eq!(why, ["R6-legal-instrument-only"]);
                    }
                    "-" => {
                        assert!(!d.allowed(), "{purpose} x {cat}");
                        assert_eq!(why, ["default-deny"]);
                        assert_eq!(d.reasons[0].rule, "R3");
                    }
                    other => panic!("bad cell {other}"),
                }
            }
        }
    }
}

#[test]
fn prohibited_purposes_read_nothing_for_anyone() {
    let p = pack();
    let t = p.taxonomy();
    for purpose in [
        "bulk_analytics",
        "immigration_enforcement",
        "first_amendment_monitoring",
        "correspondent_reverse_lookup",
    ] {
        for role in t.role_ixs() {
            for cat in t.category_ixs() {
                for action in Action::ALL {
                    for consent in [false, true] {
                        let r = DecisionRequest {
                            role,
                            action,
                            purpose: t.purpose_ix(purpose).unwrap(),
                            category: cat,
                            consent,
                        };
                        let d = p.decide(&r);
                        assert!(!d.allowed());
                        assert!(policies(d).contains(&"R25-prohibited-purpose"));
                    }
                }
            }
        }
    }
}

#[test]
fn roles_act_only_for_their_purposes() {
    let p = pack();
    let d = p.decide(&req(&p, "delivery", Action::Read, "marketing", "address"));
    assert!(!d.allowed());
    assert!(policies(d).contains(&"R5-role-may-read-for-purpose"));
    // The agency role reads nothing outside the gateway, whatever the purpose.
    let t = p.taxonomy();
    for purpose in t.purpose_ixs() {
        for category in t.category_ixs() {
            let r = DecisionRequest {
                role: t.role_ix("agency").unwrap(),
                action: Action::Read,
                purpose,
                category,
                consent: true,
            };
            assert!(!p.decide(&r).allowed());
        }
    }
    let d = p.decide(&req(
        &p,
        "privacy_officer",
        Action::Read,
        "subject_access",
        "money_order",
    ));
    assert!(d.allowed());
}

#[test]
fn collection_follows_matrix_purpose_and_role() {
    let p = pack();
    let t = p.taxonomy();
    let collector = t.role_ix("collector").unwrap();
    for purpose in t.purpose_ixs() {
        for category in t.category_ixs() {
            let r = DecisionRequest {
                role: collector,
                action: Action::Collect,
                purpose,
                category,
                consent: true,
            };
            // Everything collectable but under mail-cover orders, which only
            // the inspection service records.
            assert_eq!(
                p.decide(&r).allowed(),
                t.collectable(purpose, category) && t.purpose(purpose).id != "mail_cover",
                "{} x {}",
                t.purpose(purpose).id,
                t.category(category).id
            );
        }
    }
    assert!(
        p.decide(&req(
            &p,
            "delivery",
            Action::Collect,
            "delivery",
            "scan_event"
        ))
        .allowed()
    );
    let d = p.decide(&req(
        &p,
        "delivery",
        Action::Collect,
        "marketing",
        "account_identity",
    ));
    assert!(policies(d).contains(&"R5-role-may-collect-for-purpose"));
    let d = p.decide(&req(
        &p,
        "collector",
        Action::Collect,
        "delivery",
        "payment_card",
    ));
    assert_eq!(policies(d), ["default-deny"]);
    // Marketing collection needs consent.
    let r = req(
        &p,
        "collector",
        Action::Collect,
        "marketing",
        "account_identity",
    );
    assert!(!p.decide(&r).allowed());
    assert!(p.decide(&DecisionRequest { consent: true, ..r }).allowed());
}

/// The cache is Cedar: enumerate the whole decision table and compare.
#[test]
fn cache_equals_cedar_on_the_whole_table() {
    let p = pack();
    let mut n = 0;
    let mut allowed = 0;
    for r in p.requests() {
        let cached = p.decide(&r).clone();
        assert_eq!(cached, p.evaluate(&r), "{r:?}");
        // Asking again returns the cached decision.
        assert_eq!(&cached, p.decide(&r));
        n += 1;
        allowed += usize::from(cached.allowed());
    }
    let t = p.taxonomy();
    assert_eq!(
        n,
        t.roles.len() * 2 * t.purposes.len() * t.categories.len() * 2
    );
    assert!(allowed > 0 && allowed < n);
}

#[test]
fn version_is_the_content_hash() {
    let a = pack();
    let b = pack();
    assert_eq!(a.version(), b.version());
    assert!(a.version().starts_with("sha256:"));
    let mut src = PackSources::postal();
    src.policies
        .push_str("\n// a comment changes the version\n");
    assert_ne!(Pack::load(&src).unwrap().version(), a.version());
}

fn load_err(edit: impl FnOnce(&mut PackSources)) -> PackError {
    let mut src = PackSources::postal();
    edit(&mut src);
    Pack::load(&src).expect_err("the pack should be refused")
}

#[test]
fn bad_packs_fail_naming_file_line_and_rule() {
    let e = load_err(|s| {
        s.taxonomy = s.taxonomy.replace(
            "census                     = \" -  Y ",
            "census                     = \" -  ",
        )
    });
    assert_eq!(
        (e.file.as_str(), e.rule.as_str()),
        (TAXONOMY_FILE, "matrix-row")
    );
    let line = e.line.unwrap();
    assert!(
        PackSources::postal()
            .taxonomy
            .lines()
            .nth(line - 1)
            .unwrap()
            .starts_with("census"),
        "{e}"
    );

    let e = load_err(|s| {
        s.taxonomy = s.taxonomy.replace(
            "immigration_enforcement    = \" -  - ",
            "immigration_enforcement    = \" Y  - ",
        )
    });
    assert_eq!(e.rule, "prohibited-purpose", "{e}");

    let e = load_err(|s| {
        s.taxonomy = s
            .taxonomy
            .replace("type = \"zip\", required", "type = \"zipcode\", required")
    });
    assert_eq!(e.rule, "field-type", "{e}");
    assert!(e.line.is_some());

    let e = load_err(|s| {
        s.taxonomy = s.taxonomy.replace(
            "[[purpose]]\nid = \"delivery\"",
            "[[purpose]\nid = \"delivery\"",
        )
    });
    assert_eq!(e.rule, "syntax", "{e}");
    assert!(e.line.is_some());

    let e = load_err(|s| {
        s.policies.push_str(
            "\n@id(\"bad\")\n@rule(\"R0\")\n@reason(\"x\")\npermit (principal, action, resource)\nwhen { principal.citizenship == \"x\" };\n",
        )
    });
    assert_eq!(
        (e.file.as_str(), e.rule.as_str()),
        (POLICIES_FILE, "cedar-validation"),
        "{e}"
    );
    assert!(e.message.contains("bad"), "{e}");
    let line = e.line.unwrap();
    assert!(PackSources::postal().policies.lines().count() < line, "{e}");

    let e = load_err(|s| {
        s.policies
            .push_str("\npermit (principal, action, resource);\n")
    });
    assert_eq!(e.rule, "cedar-annotation", "{e}");

    let e = load_err(|s| {
        s.policies
            .push_str("\npermit (principal, action resource);\n")
    });
    assert_eq!(e.rule, "cedar-syntax", "{e}");

    let e = load_err(|s| {
        s.schema = s
            .schema
            .replace("entity Role {", "entity Role {\n  nationality: String,")
    });
    assert_eq!(e.rule, "cedar-entities", "{e}");
}

#[test]
fn display_names_file_and_line() {
    let e = PackError::new(TAXONOMY_FILE, Some(12), "matrix-row", "bad".into());
    assert_eq!(e.to_string(), "taxonomy.toml:12: [matrix-row] bad");
}

/// Invariant 5: the policy crate does no IO, reads no clock or environment,
/// and depends on nothing that could; decisions are a function of (pack
/// version, request).
#[test]
fn invariant_5_policy_is_pure_and_deterministic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // Every source file, in modules at any depth, and those of the civil
    // time crate it uses (which must not read the clock either).
    let mut dirs = vec![root.join("src"), root.join("../postvault-time/src")];
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path
                    .file_name()
                    .is_some_and(|n| n == "tests.rs" || n.to_string_lossy().ends_with("_tests.rs"))
            {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 10, "{files:?}");
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        for banned in [
            "std::fs",
            "std::net",
            "std::env",
            "std::io",
            "SystemTime",
            "Instant::",
            "std::process",
            "rand::",
            "::now(",
        ] {
            assert!(!src.contains(banned), "{} uses {banned}", path.display());
        }
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    for line in deps.lines().filter(|l| l.contains('=')) {
        let name = line.split(['.', '=', ' ']).next().unwrap();
        assert!(
            [
                "cedar-policy",
                "serde",
                "serde_json",
                "toml",
                "thiserror",
                "aws-lc-rs",
                "hex",
                "miette",
                "icu_properties",
                "unicode-normalization",
                // Civil dates on jiff; checked above for clock reads.
                "postvault-time",
                // Optional (feature `openapi`): derives JSON Schemas, no IO.
                "utoipa"
            ]
            .contains(&name),
            "unexpected dependency `{name}` of the policy crate"
        );
    }
    let (a, b) = (pack(), pack());
    for r in a.requests() {
        assert_eq!(a.evaluate(&r), b.evaluate(&r));
    }
}

/// The line of `src` (1-based) that `needle` starts on.
fn line_with(src: &str, needle: &str) -> usize {
    let at = src
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in the pack"));
    src[..at].matches('\n').count() + 1
}

/// Prohibitions are fixed in the engine: the attack of a custom pack that
/// moves `immigration_enforcement` into an internal group, gives it a full
/// matrix row and a role, fails `policy check` naming the file and line; so
/// does renaming it, and so does a Cedar policy that permits it.
#[test]
fn prohibitions_are_fixed_in_the_engine() {
    // The purpose moved into an internal group, with a role and a full row.
    let mut src = PackSources::postal();
    src.taxonomy = src
        .taxonomy
        .replace(
            "id = \"immigration_enforcement\"\nref = \"P20\"\ngroup = \"prohibited\"",
            "id = \"immigration_enforcement\"\nref = \"P20\"\ngroup = \"compliance\"\ninternal = true",
        )
        .replace(
            "immigration_enforcement    = \" -  -  -  -  -  -  -  -  -  -   -   -   - \"",
            "immigration_enforcement    = \" Y  Y  Y  Y  Y  Y  Y  Y  Y  Y   Y   -   - \"",
        );
    let e = Pack::load(&src).expect_err("a pack permitting immigration enforcement");
    assert_eq!(
        (e.file.as_str(), e.rule.as_str()),
        (TAXONOMY_FILE, "fixed-prohibition"),
        "{e}"
    );
    // The `group` line of the purpose, two below its id.
    assert_eq!(
        e.line,
        Some(line_with(&src.taxonomy, "id = \"immigration_enforcement\"") + 2)
    );
    assert!(e.to_string().contains("immigration_enforcement"), "{e}");

    // Under another name.
    let mut src = PackSources::postal();
    src.taxonomy = src.taxonomy.replace(
        "id = \"marketing\"\nref = \"P18\"",
        "id = \"immigration_support\"\nref = \"P18\"",
    );
    src.taxonomy = src
        .taxonomy
        .replace(
            "\nmarketing                  =",
            "\nimmigration_support        =",
        )
        .replace(
            "\"security_operations\", \"marketing\"]",
            "\"security_operations\", \"immigration_support\"]",
        );
    let e = Pack::load(&src).expect_err("a renamed immigration purpose");
    assert_eq!(e.rule, "fixed-prohibition", "{e}");

    // The R19 prohibitions, in the same place.
    let mut src = PackSources::postal();
    src.taxonomy = src.taxonomy.replace(
        "id = \"first_amendment_monitoring\"\nref = \"R19\"\ngroup = \"prohibited\"",
        "id = \"first_amendment_monitoring\"\nref = \"R19\"\ngroup = \"analysis\"",
    );
    assert_eq!(Pack::load(&src).unwrap_err().rule, "fixed-prohibition");

    // A Cedar policy that permits a prohibited purpose once the pack's own
    // forbids are gone.
    let mut src = PackSources::postal();
    for id in ["R25-prohibited-purpose", "R5-role-may-read-for-purpose"] {
        let start = src.policies.find(&format!("@id(\"{id}\")")).unwrap();
        let end = start + src.policies[start..].find("};").unwrap() + 2;
        src.policies.replace_range(start..end, "");
    }
    src.policies.push_str(
        "\n@id(\"ice-access\")\n@rule(\"none\")\n@reason(\"x\")\npermit (principal, action == Action::\"read\", resource)\nwhen { context.purpose == Purpose::\"immigration_enforcement\" };\n",
    );
    let e = Pack::load(&src).expect_err("a policy permitting a prohibited purpose");
    assert_eq!(
        (e.file.as_str(), e.rule.as_str()),
        (POLICIES_FILE, "fixed-prohibition"),
        "{e}"
    );
    assert!(e.message.contains("ice-access"), "{e}");
    assert_eq!(
        e.line,
        Some(line_with(&src.policies, "@id(\"ice-access\")"))
    );

    // A disclosure ground, even where the taxonomy never declares it.
    let mut src = PackSources::postal();
    src.disclosure = src.disclosure.map(|d| {
        d.replacen(
            "grounds = [\"criminal_law_enforcement\"",
            "grounds = [\"correspondent_reverse_lookup\", \"criminal_law_enforcement\"",
            1,
        )
    });
    let e = Pack::load(&src).expect_err("a prohibited ground");
    assert_eq!(
        (e.file.as_str(), e.rule.as_str()),
        (DISCLOSURE_FILE, "prohibited-purpose"),
        "{e}"
    );
    assert!(e.line.is_some());

    // The postal pack itself passes, and the engine's list is all in it.
    let p = pack();
    for (id, _) in FIXED_PROHIBITED_PURPOSES {
        let ix = p.taxonomy().purpose_ix(id).unwrap();
        assert!(p.taxonomy().purpose(ix).prohibited(), "{id}");
    }
    assert_eq!(p.taxonomy().change_notice_days, 30);
}

fn widened(src: &PackSources) -> Pack {
    Pack::load(src).unwrap()
}

/// The diff names every role x action x purpose x category cell that
/// changes, and every rule, each widening or narrowing.
#[test]
fn the_diff_names_each_cell_and_rule_that_changes() {
    let old = pack();
    assert!(PackDiff::new(&old, &pack()).is_empty());

    // Marketing without consent: widens two cells for the marketing role.
    let mut src = PackSources::postal();
    src.taxonomy = src.taxonomy.replace(
        "marketing                  = \" C  C ",
        "marketing                  = \" Y  Y ",
    );
    let d = PackDiff::new(&old, &widened(&src));
    assert!(d.widens);
    assert_eq!(d.notice_days, 30);
    let cells: Vec<(&str, &str, &str, &str, Access, Access)> = d
        .cells
        .iter()
        .map(|c| {
            (
                c.role.as_str(),
                c.action,
                c.purpose.as_str(),
                c.category.as_str(),
                c.from,
                c.to,
            )
        })
        .collect();
    for cat in ["account_identity", "address"] {
        assert!(
            cells.contains(&(
                "marketing",
                "read",
                "marketing",
                cat,
                Access::Consent,
                Access::Allow
            )),
            "{cells:?}"
        );
    }
    assert!(d.cells.iter().all(|c| c.widens));
    assert!(
        d.rules
            .iter()
            .any(|r| r.setting == "matrix.marketing.address"
                && r.from == "C"
                && r.to == "Y"
                && r.widens)
    );

    // Marketing loses its consent cells (to none): its targeted reads
    // narrow, but its statistics would count people who never consented,
    // so the pack widens.
    let mut src = PackSources::postal();
    src.taxonomy = src.taxonomy.replace(
        "marketing                  = \" C  C ",
        "marketing                  = \" -  - ",
    );
    let d = PackDiff::new(&old, &widened(&src));
    assert!(d.widens, "{:?}", d.rules);
    assert!(d.cells.iter().all(|c| !c.widens));
    assert!(
        d.rules
            .iter()
            .any(|r| r.setting == "purpose.marketing.statistics_consented_only" && r.widens),
        "{:?}",
        d.rules
    );

    // Delivery loses the scan events: narrows; nothing widens.
    let mut src = PackSources::postal();
    src.taxonomy = src.taxonomy.replace(
        "delivery                   = \" -  Y  Y  -  -  -  Y ",
        "delivery                   = \" -  Y  Y  -  -  -  - ",
    );
    let d = PackDiff::new(&old, &widened(&src));
    assert!(!d.widens, "{:?}", d.rules);
    assert!(d.cells.iter().any(|c| c.role == "delivery"
        && c.category == "scan_event"
        && c.from == Access::Allow
        && c.to == Access::Deny));

    // The gateway's rules count too: a higher quota widens, a lower one
    // narrows; a shorter notice period widens.
    let mut src = PackSources::postal();
    src.disclosure = src
        .disclosure
        .map(|d| d.replace("agency_per_24h = 25", "agency_per_24h = 250"));
    let d = PackDiff::new(&old, &widened(&src));
    assert!(d.widens && d.cells.is_empty());
    assert_eq!(d.rules.len(), 1);
    assert_eq!(
        (
            d.rules[0].setting.as_str(),
            d.rules[0].from.as_str(),
            d.rules[0].to.as_str()
        ),
        ("quotas.agency_per_24h", "25", "250")
    );
    let mut src = PackSources::postal();
    src.disclosure = src
        .disclosure
        .map(|d| d.replace("agency_per_24h = 25", "agency_per_24h = 5"));
    assert!(!PackDiff::new(&old, &widened(&src)).widens);
    let mut src = PackSources::postal();
    src.taxonomy = src
        .taxonomy
        .replace("change_notice_days = 30", "change_notice_days = 0");
    let d = PackDiff::new(&old, &widened(&src));
    assert!(d.widens);
    assert_eq!(d.notice_days, 30, "what was promised stays promised");

    // Losing a transform widens what every purpose sees.
    let mut src = PackSources::postal();
    src.taxonomy = src.taxonomy.replacen(
        ", transform = \"ip_prefix\", keep_for = [\"security_operations\"]",
        "",
        1,
    );
    let d = PackDiff::new(&old, &widened(&src));
    assert!(d.widens);
    assert!(
        d.rules
            .iter()
            .any(|r| r.setting == "category.online_activity.field.ip.untransformed" && r.widens),
        "{:?}",
        d.rules
    );
}
