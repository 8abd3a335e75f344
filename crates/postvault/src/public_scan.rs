//! A person's own scan of the public log: every entry about them, found
//! with their tag key in a copy of the whole log (its C2SP entry bundles),
//! whose tree the scan rebuilds and checks against a checkpoint signed by
//! the log's key and cosigned by witnesses the person trusts. Nothing the
//! service says is taken on trust: not the leaf index, not a report's list,
//! not the keys it lists. What the scan finds is every entry about the
//! person in the log everybody else sees, none left out.

use base64::Engine as _;
use postvault_crypto::TagKey;
use serde::Serialize;

use crate::error::VaultError;
use crate::leaf::Event;

/// An entry about the person, found by [`scan_public_log`].
#[derive(Clone, Debug, Serialize)]
pub struct ScannedLeaf {
    pub index: u64,
    /// The entry as it is in the log, base64.
    pub leaf: String,
    /// The entry's event (`None` if it does not parse as one).
    pub event: Option<Event>,
}

/// What [`scan_public_log`] checked and found.
#[derive(Clone, Debug, Serialize)]
pub struct PublicScan {
    /// The checkpoint read (its signed note with the cosignature lines), to
    /// compare with one a witness or another mirror gives.
    pub checkpoint: String,
    /// The checkpoint's tree size: every entry below it was read.
    pub checkpoint_size: u64,
    /// The entries rebuilt the checkpoint's tree (always true in an answer:
    /// otherwise the scan fails).
    pub root_verified: bool,
    /// The witnesses whose cosignature verified, `<name>+<key id>`, and when
    /// each cosigned (POSIX seconds).
    pub cosigners: Vec<String>,
    pub cosigned_at: Vec<u64>,
    /// Cosignatures required; `witnessed` false when none were checked.
    pub quorum: usize,
    pub witnessed: bool,
    /// Every entry about the person, oldest first.
    pub leaves: Vec<ScannedLeaf>,
}

/// Scans the log of `checkpoint` for the entries tagged with `tag_key`
/// (base64, the person's key to their entries). The checkpoint must be
/// signed by `log_key` and carry `quorum` (default: all) cosignatures of
/// `witnesses` (none: the check is only that the service signed it, said
/// by `witnessed: false`). `fetch` returns the bytes of a C2SP entry bundle
/// path (`tile/entries/...`); every bundle below the checkpoint's size is
/// read, the tree rebuilt from their entries, and its root compared with
/// the checkpoint's, so an entry changed, dropped, added or reordered by
/// whoever serves the bundles fails the scan. `progress` is told the
/// entries read so far.
pub fn scan_public_log(
    checkpoint: &str,
    log_key: &str,
    witnesses: &[String],
    quorum: Option<usize>,
    tag_key: &str,
    fetch: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    progress: &mut dyn FnMut(u64),
) -> Result<PublicScan, VaultError> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(tag_key.trim())
        .map_err(|_| VaultError::Invalid {
            what: "tag key",
            why: "not base64".into(),
        })
        .and_then(|raw| Ok(TagKey::from_bytes(&raw)?))?;
    let (witnessed, quorum) =
        crate::report::check_witnessed(checkpoint, log_key, witnesses, quorum)?;
    let bad = |why: String| VaultError::LogVerification(why);
    let size = witnessed.checkpoint.size;
    let mut root = postvault_log::RootBuilder::new();
    let mut leaves = Vec::new();
    let mut tag = String::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut index = 0u64;
    while index < size {
        let bundle = index / 256;
        let width = u16::try_from((size - index).min(256)).unwrap_or(256);
        let path = postvault_log::entry_bundle_path(bundle, width);
        let bytes = fetch(&path).map_err(|e| VaultError::Invalid {
            what: "log copy",
            why: format!("{path}: {e}"),
        })?;
        let entries =
            postvault_log::parse_entry_bundle(&bytes).map_err(|e| bad(format!("{path}: {e}")))?;
        if entries.len() != usize::from(width) {
            return Err(bad(format!(
                "{path} holds {} entries, not {width}",
                entries.len()
            )));
        }
        for entry in entries {
            root.push(postvault_log::leaf_hash(&entry));
            if let Some(theirs) = crate::leaf_index::leaf_tag(&entry) {
                tag.clear();
                b64.encode_string(key.tag(index), &mut tag);
                if theirs == tag.as_bytes() {
                    leaves.push(ScannedLeaf {
                        index,
                        leaf: b64.encode(&entry),
                        event: Event::from_leaf(&entry),
                    });
                }
            }
            index += 1;
        }
        progress(index);
    }
    if root.root() != witnessed.checkpoint.root {
        return Err(bad(format!(
            "the {size} entries read do not make the checkpoint's tree: an entry was changed, \
             dropped, added or reordered in the copy read"
        )));
    }
    Ok(PublicScan {
        checkpoint: checkpoint.to_string(),
        checkpoint_size: size,
        root_verified: true,
        cosigned_at: witnessed.cosigned.iter().map(|c| c.timestamp).collect(),
        cosigners: witnessed.cosigned.into_iter().map(|c| c.cosigner).collect(),
        quorum,
        witnessed: quorum > 0,
        leaves,
    })
}
