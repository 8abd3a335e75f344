#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// Loads `src` on a thread with the stack of a tokio worker (2 MiB), so a
/// parser that recursed without bound would overflow here.
fn load_small_stack(src: PackSources) -> Result<(), PackError> {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || Pack::load(&src).map(|_| ()))
        .unwrap()
        .join()
        .unwrap()
}

fn with_policy(expr: &str) -> PackSources {
    let mut src = PackSources::postal();
    src.policies.push_str(&format!(
        "\n@id(\"deep\")\n@rule(\"R0\")\n@reason(\"deep\")\npermit (principal, action, resource) when {{ {expr} }};\n"
    ));
    src
}

#[test]
fn deep_or_huge_cedar_is_refused_before_cedar_parses_it() {
    let n = 1000;
    let cases = [
        (
            format!("{}true{}", "(".repeat(n), ")".repeat(n)),
            "nest deeper",
        ),
        (
            format!("{}1{} == 1", "[".repeat(n), "]".repeat(n)),
            "nest deeper",
        ),
        (
            format!("{}1{} == 1", "{a: ".repeat(n), "}".repeat(n)),
            "nest deeper",
        ),
        (
            format!(
                "{}true{}",
                "if true then ".repeat(n),
                " else true".repeat(n)
            ),
            "`if`",
        ),
        (format!("context{} == 1", ".a".repeat(n)), "tokens"),
    ];
    for (expr, what) in cases {
        let e = load_small_stack(with_policy(&expr)).unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.rule.as_str()),
            (POLICIES_FILE, "pack-bounds")
        );
        assert!(e.message.contains(what), "{e}");
        assert!(e.line.is_some_and(|l| l > 50), "{e}");
    }
    // A deep schema type.
    let mut src = PackSources::postal();
    src.schema.push_str(&format!(
        "\ntype Deep = {}Long{};\n",
        "Set<".repeat(n),
        ">".repeat(n)
    ));
    let e = load_small_stack(src).unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.rule.as_str()),
        (SCHEMA_FILE, "pack-bounds")
    );
    // A file over the size bound, whichever it is.
    let mut src = PackSources::postal();
    src.taxonomy
        .push_str(&"# padding\n".repeat(bounds::MAX_FILE_BYTES / 10 + 1));
    let e = load_small_stack(src).unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.rule.as_str()),
        (TAXONOMY_FILE, "pack-bounds")
    );
    let mut src = PackSources::postal();
    src.disclosure = Some("#".repeat(bounds::MAX_FILE_BYTES + 1));
    let e = load_small_stack(src).unwrap_err();
    assert_eq!(e.file, DISCLOSURE_FILE);
}

#[test]
fn brackets_in_strings_and_comments_and_ordinary_nesting_pass() {
    let within = format!(
        "{}true{} // {}\n && \"{}\" == \"x\"",
        "(".repeat(bounds::MAX_NESTING - 2),
        ")".repeat(bounds::MAX_NESTING - 2),
        "(".repeat(100),
        "((\\\"(".repeat(100),
    );
    load_small_stack(with_policy(&within)).unwrap();
    // Every policy counts its own tokens: many small policies are fine.
    let mut src = PackSources::postal();
    for i in 0..200 {
        src.policies.push_str(&format!(
            "\n@id(\"p{i}\")\n@rule(\"R0\")\n@reason(\"r\")\nforbid (principal, action, resource) when {{ context.purpose == Purpose::\"statistics\" && context.consent && context.consent && context.consent }};\n"
        ));
    }
    load_small_stack(src).unwrap();
}

#[test]
fn a_pack_without_a_permit_policy_is_refused() {
    for policies in [
        "",
        "   \n// nothing here\n",
        "@id(\"f\")\n@rule(\"R0\")\n@reason(\"r\")\nforbid (principal, action, resource);\n",
    ] {
        let mut src = PackSources::postal();
        src.policies = policies.to_string();
        let e = Pack::load(&src).unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.rule.as_str()),
            (POLICIES_FILE, "cedar-empty"),
            "{e}"
        );
    }
}
