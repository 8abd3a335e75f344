//! Text compared by what it says, not how it is spelled: instruments are
//! documents, and an attorney's address is a place, whatever characters
//! carry them. Two keys:
//!
//! - [`identity_key`]: NFKC, one case, the UTS #39 confusables skeleton
//!   (which also drops default-ignorable characters such as zero-width
//!   spaces and bidi controls), combining marks dropped, and everything but
//!   letters and digits removed. `W-309-A.`, `w 309 a`, `W‐309‐A` (Unicode
//!   hyphens), `Ｗ-３０９-Ａ` (full width) and `W-309-А` (a Cyrillic А) give
//!   one key.
//! - [`skeleton_key`]: the same, with common postal abbreviations (USPS
//!   Publication 28 street suffixes, unit designators and directions)
//!   expanded word by word first, so `1 Example Plz` and `1 Example Plaza`
//!   give one key.
//!
//! The Unicode work is done by maintained crates (`unicode-normalization`,
//! `unicode-security`); only the abbreviation list is ours, because it is
//! postal data, not Unicode data. Keys compare text; they are never shown,
//! stored in the clear or logged (the ledger keeps keyed hashes of them).

use std::sync::OnceLock;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use unicode_security::confusable_detection::skeleton;

/// Common postal abbreviations and what they stand for (USPS Publication
/// 28, appendices C1-C2 and B: street suffixes, secondary unit designators,
/// directionals).
const POSTAL_ABBREVIATIONS: &[(&str, &str)] = &[
    ("aly", "alley"),
    ("apt", "apartment"),
    ("ave", "avenue"),
    ("av", "avenue"),
    ("bldg", "building"),
    ("blvd", "boulevard"),
    ("cir", "circle"),
    ("ct", "court"),
    ("ctr", "center"),
    ("dept", "department"),
    ("dr", "drive"),
    ("e", "east"),
    ("expy", "expressway"),
    ("fl", "floor"),
    ("fwy", "freeway"),
    ("hwy", "highway"),
    ("ln", "lane"),
    ("n", "north"),
    ("ne", "northeast"),
    ("nw", "northwest"),
    ("pkwy", "parkway"),
    ("pl", "place"),
    ("plz", "plaza"),
    ("rd", "road"),
    ("rm", "room"),
    ("s", "south"),
    ("se", "southeast"),
    ("sq", "square"),
    ("st", "street"),
    ("ste", "suite"),
    ("str", "street"),
    ("sw", "southwest"),
    ("ter", "terrace"),
    ("trl", "trail"),
    ("w", "west"),
];

/// The skeleton of one piece of text, as lowercase words of letters and
/// digits: NFKC, uppercase, the UTS #39 skeleton, combining marks dropped,
/// lowercase. The skeleton is case-sensitive (`m` is `rn`, `M` is `M`; `I`
/// is `l`, `i` is `i`), so it is taken of one case: capitals, where Latin,
/// Greek and Cyrillic look-alikes meet (`Н`, `н` and `h` all give `h`).
fn words(text: &str) -> Vec<String> {
    let upper: String = text.nfkc().flat_map(char::to_uppercase).collect();
    let skel: String = skeleton(&upper)
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    skel.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The abbreviations, keyed by their own skeleton words (so a look-alike
/// spelling of `Plz` is still `plaza`).
fn abbreviations() -> &'static Vec<(String, String)> {
    static TABLE: OnceLock<Vec<(String, String)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        POSTAL_ABBREVIATIONS
            .iter()
            .map(|(a, full)| (words(a).concat(), words(full).concat()))
            .collect()
    })
}

/// The identity of a piece of text: look-alike, invisible, full-width and
/// punctuation differences removed (see the module docs).
pub fn identity_key(text: &str) -> String {
    words(text).concat()
}

/// The identity of a document's reference (a docket or instrument number):
/// [`identity_key`] of the text with the leading zeros of every run of
/// digits dropped (after NFKC, so full-width digits count), so
/// `26-mj-00123` and `26-MJ-123` are one docket. The zeros go first: the
/// UTS #39 skeleton turns a `0` into an `O`.
pub fn reference_key(text: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if !digits.is_empty() {
            let kept = digits.trim_start_matches('0');
            out.push_str(if kept.is_empty() { "0" } else { kept });
            digits.clear();
        }
    };
    for c in text.nfkc() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    identity_key(&out)
}

/// Like [`identity_key`], with postal abbreviations expanded word by word.
pub fn skeleton_key(text: &str) -> String {
    let table = abbreviations();
    words(text)
        .into_iter()
        .map(|w| {
            table
                .iter()
                .find(|(a, _)| *a == w)
                .map_or(w, |(_, full)| full.clone())
        })
        .collect()
}

/// Titles and post-nominals a party's name may carry that a sender line
/// need not repeat (compared as skeleton words).
const NAME_AFFIXES: &[&str] = &[
    "mr", "mrs", "ms", "mx", "dr", "esq", "esquire", "jr", "sr", "atty", "attorney", "hon",
];

/// The name tokens of a party's name: its skeleton words, titles and
/// post-nominals left out (unless nothing else is left).
fn name_tokens(name: &str) -> Vec<String> {
    let all = words(name);
    let affixes: Vec<String> = NAME_AFFIXES.iter().map(|a| words(a).concat()).collect();
    let kept: Vec<String> = all
        .iter()
        .filter(|w| !affixes.contains(w))
        .cloned()
        .collect();
    if kept.is_empty() { all } else { kept }
}

/// Whether two name tokens can name the same word: equal, or one is an
/// initial (a single letter) and the other starts with it.
fn token_matches(a: &str, b: &str) -> bool {
    let initial = |x: &str| x.chars().count() == 1;
    a == b
        || (initial(a) && b.starts_with(a) && !initial(b))
        || (initial(b) && a.starts_with(b) && !initial(a))
}

/// Whether every token of `name` is matched by its own token of `text`,
/// in any order (a small bipartite matching by backtracking: names have a
/// handful of tokens), with at least one whole word (not an initial) of
/// the name matched exactly, so a pair of initials alone names nobody.
fn names_match(name: &[String], text: &[String]) -> bool {
    fn assign(name: &[String], text: &[String], used: &mut [bool], exact: bool) -> bool {
        let Some((first, rest)) = name.split_first() else {
            return exact;
        };
        for (i, t) in text.iter().enumerate() {
            if !used[i] && token_matches(first, t) {
                used[i] = true;
                let whole = first == t && first.chars().count() > 1;
                if assign(rest, text, used, exact || whole) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }
    // Names are short; a text of many words with a name of many initials
    // must not make the search explode.
    if name.is_empty() || name.len() > 8 || text.len() > 64 {
        return false;
    }
    assign(name, text, &mut vec![false; text.len()], false)
}

/// Whether `text` (a sender or return address as shown on mail) names
/// `party_name` or `party_address`.
///
/// The name is compared as a set of name tokens (skeleton words): each
/// token of the name matched by its own word of the text, in any order,
/// an initial matching a word that starts with it, titles such as `Esq.`
/// left out, so `Counsel, H.`, `Harold Counsel` and `Law office of H.
/// COUNSEL` all name `H. Counsel`; the name's whole skeleton found in the
/// text's (a name split or run together) names it too.
///
/// The address is compared as a skeleton, also by its first line (before
/// the first comma) when that holds at least two words, so `1 Example
/// Plaza, Suite 200` still matches `1 Example Plz`.
pub fn names_party(text: &str, party_name: &str, party_address: &str) -> bool {
    let hay = skeleton_key(text);
    let hit = |needle: &str| !needle.is_empty() && hay.contains(needle);
    let street = party_address.split(',').next().unwrap_or("");
    hit(&identity_key(party_name))
        || names_match(&name_tokens(party_name), &words(text))
        || hit(&skeleton_key(party_address))
        || (words(street).len() >= 2 && hit(&skeleton_key(street)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_document_share_an_identity() {
        let base = identity_key("W-309-A");
        for v in [
            "W-309-A.",
            "w 309 a",
            "W\u{2010}309\u{2011}A",
            "W\u{2212}309\u{2013}A",
            "\u{ff37}-\u{ff13}\u{ff10}\u{ff19}-\u{ff21}",
            "W-309-\u{0410}",
            "W-30\u{200b}9-A",
            "\u{202e}W-309-A\u{202c}",
            " W–309–A ",
        ] {
            assert_eq!(identity_key(v), base, "{v:?}");
        }
        assert_ne!(identity_key("W-309-B"), base);
        assert_ne!(identity_key("W-3091-A"), base);
    }

    #[test]
    fn references_drop_leading_zeros_and_nothing_else() {
        let base = reference_key("26-mj-123");
        for v in [
            "26-MJ-00123",
            "026 mj 0123",
            "26\u{2013}mj\u{2013}\u{ff10}\u{ff11}\u{ff12}\u{ff13}",
            "26-mj-1\u{200b}23",
        ] {
            assert_eq!(reference_key(v), base, "{v:?}");
        }
        assert_ne!(reference_key("26-mj-1230"), base);
        assert_ne!(reference_key("26-mj-1023"), base);
        assert_eq!(reference_key("W-0"), reference_key("W-000"));
        assert_eq!(reference_key("W-309-A"), reference_key("W-0309-A"));
    }

    #[test]
    fn postal_spellings_of_one_address_share_a_skeleton() {
        let base = skeleton_key("1 Example Plaza, Chicago, IL 60601");
        for v in [
            "1 Example Plz, Chicago IL 60601",
            "1 EXAMPLE PLAZA CHICAGO IL 60601",
            "1  Example\tPlaza,Chicago,IL 60601",
            "1 Ex\u{0430}mple Plaza, Chicago, IL 60601",
            "\u{ff11} \u{ff25}xample \u{ff30}laza, Chicago, IL 60601",
            "1 Exam\u{200b}ple Pla\u{200d}za, Chicago, IL 60601",
            "1 Éxample Plaza, Chicago, IL 60601",
        ] {
            assert_eq!(skeleton_key(v), base, "{v:?}");
        }
        assert_eq!(
            skeleton_key("9 N Main St"),
            skeleton_key("9 North Main Street")
        );
        assert_ne!(skeleton_key("9 Main St"), skeleton_key("9 Main Ave"));
    }

    #[test]
    fn a_party_is_found_in_a_sender_line() {
        let (name, addr) = ("H. Counsel", "1 Example Plaza, Chicago IL");
        for sender in [
            "Law office of H.  COUNSEL",
            "Law office of H Counsel",
            "Law office of \u{041d}. \u{0421}\u{043e}unsel",
            "\u{ff28}\u{ff0e} \u{ff23}\u{ff4f}\u{ff55}\u{ff4e}\u{ff53}\u{ff45}\u{ff4c}",
            "H. Coun\u{200b}sel, Esq.",
            "1 Example Plz Suite 200, Chicago IL",
        ] {
            assert!(names_party(sender, name, addr), "{sender:?}");
        }
        assert!(!names_party("A. Sender, 9 Other St", name, addr));
        assert!(!names_party("anything", "", ""));
    }

    /// A name is a set of name tokens: order, initials and titles do not
    /// hide it.
    #[test]
    fn a_name_is_found_whatever_its_order_and_initials() {
        let addr = "1 Example Plaza, Chicago IL";
        for (name, sender) in [
            ("H. Counsel", "Counsel, H."),
            ("H. Counsel", "Harold Counsel"),
            ("H. Counsel", "COUNSEL HAROLD, attorney at law"),
            ("H. Counsel", "Law office of Harold J. Counsel"),
            ("H. Counsel", "Counsel Harold, Esq."),
            ("H. Counsel", "\u{ff23}ounsel, \u{041d}arold"),
            ("H. Counsel", "Coun\u{200b}sel H"),
            ("Harold Counsel", "H. Counsel"),
            ("Harold Counsel", "Counsel, H."),
            ("Harold J. Counsel, Esq.", "Counsel, Harold J"),
            ("Harold J. Counsel", "H J Counsel"),
            ("Mary-Ann O'Brien", "O Brien, Mary Ann"),
        ] {
            assert!(names_party(sender, name, addr), "{name:?} in {sender:?}");
        }
        for (name, sender) in [
            // Another person of the same family name.
            ("H. Counsel", "B. Counsel, 9 Other St"),
            ("Harold Counsel", "Bob Counsel"),
            // Only initials in common.
            ("H. Counsel", "H. C. Smith"),
            // A name token missing.
            ("Harold J. Counsel", "Harold Counsel-Smith"),
            ("H. Counsel", "Counselor Harold"),
        ] {
            assert!(!names_party(sender, name, addr), "{name:?} in {sender:?}");
        }
    }
}
