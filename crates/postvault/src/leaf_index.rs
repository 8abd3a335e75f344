//! The vault's side of the leaf index ([`postvault_store::LeafIndex`]):
//! every leaf with a subject tag is filed, in the transaction that appends
//! it, under a token of the person's tag key (or, when the tag is not the
//! person's, of a key made for that leaf and thrown away), so a person's
//! report finds their leaves by look-ups instead of reading the whole log.
//! The store sees only pseudorandom tokens, none linked to another.

use std::sync::Arc;

use aws_lc_rs::rand::SecureRandom as _;
use postvault_crypto::{CryptoError, TagKey};
use postvault_store::{LeafIndex, LeafTokens};

use crate::error::VaultError;
use crate::vault::Vault;

/// Slots asked for at a time when a month's leaves are looked for.
const FIND_BATCH: u32 = 16;

/// A tag key's index tokens, sealed with the vault's seal key.
struct IndexTokens {
    key: TagKey,
    seal: Arc<TagKey>,
}

impl LeafTokens for IndexTokens {
    fn token(&self, month: u32, slot: u32) -> [u8; 16] {
        self.key.index_token(month, slot)
    }

    fn seal(&self, token: &[u8; 16], idx: u64) -> [u8; 16] {
        self.seal.filing_seal(token, idx)
    }
}

/// The month a leaf of time `ms` is filed under: months since January
/// 1970, UTC (0 for anything earlier).
pub(crate) fn month_of(ms: i64) -> u32 {
    let (year, month, _) = postvault_time::civil_from_days(ms.div_euclid(86_400_000));
    u32::try_from(((year - 1970) * 12 + i64::from(month) - 1).max(0)).unwrap_or(u32::MAX)
}

/// The subject tag a leaf carries, as written (base64), if it has one.
/// Leaves are canonical JSON: `"subject_tag":"<base64>"`, no space, and no
/// quote in base64.
pub(crate) fn leaf_tag(leaf: &[u8]) -> Option<&[u8]> {
    const NEEDLE: &[u8] = b"\"subject_tag\":\"";
    let at = leaf.windows(NEEDLE.len()).position(|w| w == NEEDLE)?;
    let rest = &leaf[at + NEEDLE.len()..];
    let close = rest.iter().position(|&b| b == b'"')?;
    Some(&rest[..close])
}

/// A leaf's `time` (unix ms), read off its bytes like [`leaf_tag`].
pub(crate) fn leaf_time(leaf: &[u8]) -> Option<i64> {
    const NEEDLE: &[u8] = b"\"time\":";
    let at = leaf.windows(NEEDLE.len()).position(|w| w == NEEDLE)?;
    let rest = &leaf[at + NEEDLE.len()..];
    let end = rest
        .iter()
        .position(|&b| !(b.is_ascii_digit() || b == b'-'))
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

impl Vault {
    /// The subject tag of leaf `idx` (time `time`) and what it is filed
    /// under: with the person's tag key, their tag and their next slot;
    /// without, random bytes and a slot of a key made for this leaf alone
    /// (the same work and the same kind of row: the store cannot tell them
    /// apart).
    pub(crate) fn tag_and_index(
        &self,
        key: Option<&TagKey>,
        idx: u64,
        time: i64,
    ) -> Result<([u8; 16], LeafIndex), CryptoError> {
        match key {
            Some(k) => Ok((
                k.tag(idx),
                LeafIndex::Person {
                    tokens: Arc::new(IndexTokens {
                        key: TagKey::from_bytes(k.to_bytes().as_ref())?,
                        seal: self.index_seal.clone(),
                    }),
                    month: month_of(time),
                },
            )),
            None => Ok((
                postvault_crypto::random_token(&self.rng)?,
                self.unlinked_index(time)?,
            )),
        }
    }

    /// [`Vault::tagged_leaf`] of an event encoded beforehand
    /// ([`PreparedLeaf`]): under the store's lock only the tag and its
    /// index are made, and the tag spliced into the encoding.
    pub(crate) fn prepared_leaf(
        &self,
        prepared: &PreparedLeaf,
        key: Option<&TagKey>,
        idx: u64,
        err: &mut Option<CryptoError>,
    ) -> postvault_store::Leaf {
        let Some(template) = &prepared.template else {
            return self.tagged_leaf(prepared.event.clone(), key, idx, err);
        };
        match self.tag_and_index(key, idx, prepared.event.time) {
            Ok((tag, index)) => postvault_store::Leaf {
                bytes: template.leaf(&tag),
                index,
            },
            Err(e) => {
                *err = Some(e);
                prepared.event.to_leaf().into()
            }
        }
    }

    /// The leaf of `event` at index `idx`, tagged and filed for the person
    /// whose tag key is `key` ([`Vault::tag_and_index`]). If the system's
    /// randomness fails, `err` says so and the leaf carries no tag (the
    /// caller fails the call: the transaction's leaf is then unused).
    pub(crate) fn tagged_leaf(
        &self,
        mut event: crate::leaf::Event,
        key: Option<&TagKey>,
        idx: u64,
        err: &mut Option<CryptoError>,
    ) -> postvault_store::Leaf {
        match self.tag_and_index(key, idx, event.time) {
            Ok((tag, index)) => {
                event.subject_tag = Some(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    tag,
                ));
                postvault_store::Leaf {
                    bytes: event.to_leaf(),
                    index,
                }
            }
            Err(e) => {
                *err = Some(e);
                event.to_leaf().into()
            }
        }
    }

    /// What a leaf whose tag is not its person's (random, or a delayed
    /// disclosure's) is filed under: a slot of a key made for it alone.
    pub(crate) fn unlinked_index(&self, time: i64) -> Result<LeafIndex, CryptoError> {
        let mut raw = zeroize::Zeroizing::new([0u8; postvault_crypto::KEY_LEN]);
        self.rng
            .fill(raw.as_mut())
            .map_err(|_| CryptoError::Random)?;
        Ok(LeafIndex::Person {
            tokens: Arc::new(IndexTokens {
                key: TagKey::from_bytes(raw.as_ref())?,
                seal: self.index_seal.clone(),
            }),
            month: month_of(time),
        })
    }

    /// The months a person's leaves are looked for in, from the indexed
    /// leaf `from` (which must exist) on: every month listed, and every
    /// month from that leaf's to the next. A month's row removed from the
    /// store does not hide its leaves, and a month listed far off costs
    /// one look-up, not every month on the way.
    fn report_months(&self, from: u64) -> Result<Vec<u32>, VaultError> {
        let mut months: std::collections::BTreeSet<u32> =
            self.store.leaf_index_months()?.into_iter().collect();
        let next = month_of(self.clock.now_ms()).saturating_add(1);
        if let Some(first) = self
            .store
            .leaves_at(&[from])?
            .first()
            .and_then(|l| leaf_time(l))
            .map(month_of)
            .filter(|&f| f <= next)
        {
            months.extend(first..=next);
        }
        Ok(months.into_iter().collect())
    }

    /// The leaves `from..size` filed under `key`'s tokens, oldest first,
    /// each checked to carry `key`'s tag for its index (an index that
    /// points elsewhere is tampering, reported as such).
    pub(crate) fn indexed_leaves(
        &self,
        key: &TagKey,
        from: u64,
        size: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, VaultError> {
        let mut found = Vec::new();
        if from < size {
            let months = self.report_months(from)?;
            // Slot 0 and 1 of every month at once; then the months that have
            // slot 0, a batch of slots at a time, to the first free one, and
            // always the slot after it: a slot taken after a free one is a
            // filing someone removed or moved.
            let gap = |month: u32| {
                VaultError::LogVerification(format!(
                    "the leaf index has a gap in a person's filings of month {month}: a filing was removed or changed"
                ))
            };
            let firsts: Vec<[u8; 16]> = months
                .iter()
                .flat_map(|&m| [key.index_token(m, 0), key.index_token(m, 1)])
                .collect();
            // A store that answers fewer look-ups than asked is broken:
            // said so, never taken for "no leaves".
            let find = |tokens: &[[u8; 16]]| -> Result<Vec<Option<u64>>, VaultError> {
                let got = self.store.leaf_index_find(tokens)?;
                if got.len() != tokens.len() {
                    return Err(VaultError::Store(postvault_store::StoreError::Corrupt(
                        format!(
                            "the leaf index answered {} look-ups of {}",
                            got.len(),
                            tokens.len()
                        ),
                    )));
                }
                Ok(got)
            };
            let got = find(&firsts)?;
            for (&month, pair) in months.iter().zip(got.chunks(2)) {
                match pair {
                    [None, None] => continue,
                    [None, Some(_)] => return Err(gap(month)),
                    [Some(a), None] => {
                        if find(&[key.index_token(month, 2)])?[0].is_some() {
                            return Err(gap(month));
                        }
                        found.push(*a);
                        continue;
                    }
                    [Some(a), Some(b)] => found.extend([*a, *b]),
                    _ => continue,
                }
                let mut slot = 2;
                loop {
                    let batch: Vec<[u8; 16]> = (slot..slot + FIND_BATCH)
                        .map(|s| key.index_token(month, s))
                        .collect();
                    let mut got = find(&batch)?;
                    let taken = got.iter().take_while(|g| g.is_some()).count();
                    if taken + 1 == got.len() {
                        // The first free slot ends the batch: ask for the one after.
                        got.extend(find(&[key.index_token(month, slot + FIND_BATCH)])?);
                    }
                    if got[taken..].iter().any(Option::is_some) {
                        return Err(gap(month));
                    }
                    found.extend(got.into_iter().take(taken).flatten());
                    if taken < FIND_BATCH as usize {
                        break;
                    }
                    slot += FIND_BATCH;
                }
            }
        }
        found.retain(|i| (from..size).contains(i));
        found.sort_unstable();
        found.dedup();
        let leaves = self.store.leaves_at(&found)?;
        if leaves.len() != found.len() {
            return Err(VaultError::Store(postvault_store::StoreError::Corrupt(
                format!("{} of {} log leaves were read", leaves.len(), found.len()),
            )));
        }
        let mut tag = String::new();
        let mut out = Vec::with_capacity(found.len());
        for (index, leaf) in found.into_iter().zip(leaves) {
            tag.clear();
            base64::Engine::encode_string(
                &base64::engine::general_purpose::STANDARD,
                key.tag(index),
                &mut tag,
            );
            if leaf_tag(&leaf) != Some(tag.as_bytes()) {
                return Err(VaultError::LogVerification(format!(
                    "the leaf index files log leaf {index} under a person whose tag it does not carry"
                )));
            }
            out.push((index, leaf));
        }
        Ok(out)
    }
}

/// What [`Vault::refile_subject`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Refiled {
    /// The person's leaves in the indexed part of the log, each now filed
    /// once, in its month's slots in log order (the repair's own leaf too).
    pub leaves: u64,
    /// The months they are filed under.
    pub months: u64,
    /// Rows written: slots that were free or held another leaf. 0 (with
    /// `removed` 0) when the person's filings were whole.
    pub written: u64,
    /// Rows removed: filings of their leaves elsewhere, slots holding a
    /// leaf not theirs or beyond their leaves.
    pub removed: u64,
    /// Leaves with the person's tag but no time to file them under: left
    /// unfiled (`check` counts them).
    pub untimed: u64,
    /// The `leaf_refile` leaf that records the repair, tagged for the
    /// person (so their report shows it), appended before it.
    pub leaf: u64,
}

/// The log is scanned outside the lock until fewer leaves than this were
/// appended meanwhile: the refiling transaction, which holds the log's
/// lock, reads only those.
const REFILE_TAIL: u64 = 4_096;

impl Vault {
    /// Files a person's log leaves in the leaf index again, found by
    /// reading the whole indexed log with their tag key: the repair once
    /// their report or `check` found a filing removed or moved (the report
    /// refuses a gap, and a gap is never filled by a new leaf). The
    /// operator's command (`postvault log refile`): it needs the key
    /// store. First one leaf, `leaf_refile`, tagged for the person, so an
    /// attempt is in the log even if the repair then fails. Only rows that
    /// differ from the right filing are written or removed. A person the
    /// vault holds no keys for is refused `no_such_subject` (their leaves,
    /// if any, are unlinkable now).
    pub fn refile_subject(&self, subject: &str) -> Result<Refiled, VaultError> {
        crate::vault::check_subject(subject)?;
        self.sync_erasures()?;
        let r = self.subject_ref(subject);
        let Some(keys) = self.subject_keys(&r)? else {
            return Err(VaultError::Refused {
                code: "no_such_subject",
                message: "the vault holds no keys for this identifier: nothing to refile".into(),
            });
        };
        let key = TagKey::from_bytes(keys.tag.to_bytes().as_ref())?;
        let event = crate::leaf::Event {
            v: crate::leaf::LEAF_VERSION,
            time: self.clock.now_ms(),
            action: "leaf_refile".into(),
            principal: crate::leaf::Actor {
                role: "operator".into(),
                id: self.actor_id("operator"),
            },
            purpose: None,
            decision: "allow".into(),
            pack: self.pack.version().to_string(),
            reasons: vec![],
            categories: vec![],
            count: 0,
            rejected: None,
            selector: None,
            instrument: None,
            subject_tag: None,
        };
        let mut err = None;
        let leaf = self.store.append_leaves(1, &mut |idx, _| {
            self.tagged_leaf(event.clone(), Some(&key), idx, &mut err)
        })?;
        if let Some(e) = err {
            return Err(e.into());
        }
        // Some(month) for a leaf of theirs, Some(None) for one without a time.
        let month_of_theirs = |index: u64, leaf: &[u8], tag: &mut String| {
            let t = leaf_tag(leaf)?;
            tag.clear();
            base64::Engine::encode_string(
                &base64::engine::general_purpose::STANDARD,
                key.tag(index),
                tag,
            );
            (t == tag.as_bytes()).then(|| leaf_time(leaf).map(month_of))
        };
        let from = self.store.leaf_indexed_from()?;
        let mut plan = postvault_store::RefilePlan {
            scanned: from,
            ..Default::default()
        };
        // By index: a transaction made again reads its tail again.
        let mut untimed = std::collections::BTreeSet::new();
        let mut tag = String::new();
        // Reads the log from `plan.scanned` on, outside any lock, until
        // fewer than REFILE_TAIL leaves arrived meanwhile.
        let catch_up = |plan: &mut postvault_store::RefilePlan,
                        untimed: &mut std::collections::BTreeSet<u64>,
                        tag: &mut String|
         -> Result<(), VaultError> {
            loop {
                let size = self.store.log_size()?;
                while plan.scanned < size {
                    let end = size.min(plan.scanned + 4_096);
                    let leaves = self.store.leaves(plan.scanned, end)?;
                    for (leaf, index) in leaves.into_iter().zip(plan.scanned..) {
                        match month_of_theirs(index, &leaf, tag) {
                            Some(Some(m)) => plan.leaves.push((index, m)),
                            Some(None) => {
                                untimed.insert(index);
                            }
                            None => {}
                        }
                    }
                    plan.scanned = end;
                }
                if self.store.log_size()?.saturating_sub(plan.scanned) < REFILE_TAIL {
                    return Ok(());
                }
            }
        };
        catch_up(&mut plan, &mut untimed, &mut tag)?;
        // Where each of their leaves belongs; any other filing of it,
        // found by reading the whole index, is stray.
        let mut by_month: std::collections::BTreeMap<u32, Vec<u64>> = Default::default();
        for &(idx, m) in &plan.leaves {
            by_month.entry(m).or_default().push(idx);
        }
        let mut home: std::collections::HashMap<u64, [u8; 16]> = Default::default();
        for (&m, idxs) in &by_month {
            for (slot, &idx) in (0u32..).zip(idxs) {
                home.insert(idx, key.index_token(m, slot));
            }
        }
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.store.leaf_index_page(after.as_deref(), 8_192)?;
            for row in &page {
                if let (Some(t), Ok(token)) =
                    (home.get(&row.idx), <[u8; 16]>::try_from(&row.token[..]))
                    && *t != token
                {
                    plan.stray.push((token, row.idx));
                }
            }
            match page.last() {
                Some(r) if page.len() == 8_192 => after = Some(r.token.clone()),
                _ => break,
            }
        }
        // What arrived while the index was read: it ranks after every leaf
        // above, so no home changes; its own filings are read in the
        // refiling transaction.
        catch_up(&mut plan, &mut untimed, &mut tag)?;
        // The months the person's report looks in (the leaf at `from`
        // exists: the repair's own leaf was appended at or after it).
        plan.months = self.report_months(from)?;
        let tokens: Arc<dyn LeafTokens> = Arc::new(IndexTokens {
            key: TagKey::from_bytes(key.to_bytes().as_ref())?,
            seal: self.index_seal.clone(),
        });
        let mut tail_tag = String::new();
        let done = self
            .store
            .refile_leaves(&tokens, &plan, &mut |index, leaf| match month_of_theirs(
                index,
                leaf,
                &mut tail_tag,
            ) {
                Some(Some(m)) => Some(m),
                Some(None) => {
                    untimed.insert(index);
                    None
                }
                None => None,
            })?;
        Ok(Refiled {
            leaves: done.leaves,
            months: done.months,
            written: done.written,
            removed: done.removed,
            untimed: untimed.len() as u64,
            leaf,
        })
    }
}

/// A tagged leaf's event, untagged, and its encoding with a place for the
/// tag ([`crate::leaf::TaggedLeaves`]), made before a write takes the
/// store's lock: under it, [`Vault::prepared_leaf`] only makes the tag.
pub(crate) struct PreparedLeaf {
    event: crate::leaf::Event,
    template: Option<crate::leaf::TaggedLeaves>,
}

impl PreparedLeaf {
    pub(crate) fn new(event: crate::leaf::Event) -> PreparedLeaf {
        PreparedLeaf {
            template: crate::leaf::TaggedLeaves::new(event.clone()),
            event,
        }
    }

    /// The event, untagged.
    pub(crate) fn event(&self) -> &crate::leaf::Event {
        &self.event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_count_from_january_1970() {
        assert_eq!(month_of(0), 0);
        assert_eq!(month_of(-1), 0);
        // 2026-12-06 and 2027-01-01, UTC.
        assert_eq!(month_of(1_796_515_200_000), 56 * 12 + 11);
        assert_eq!(month_of(1_798_761_600_000), 57 * 12);
        assert_eq!(month_of(1_798_761_599_999), 56 * 12 + 11);
    }

    #[test]
    fn a_leaf_tag_is_read_off_its_bytes() {
        assert_eq!(
            leaf_tag(br#"{"a":1,"subject_tag":"QUJD","time":2}"#),
            Some(&b"QUJD"[..])
        );
        assert_eq!(leaf_tag(br#"{"a":1}"#), None);
    }
}
