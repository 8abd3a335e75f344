//! Scan blocks: a person's current records of one category under one key,
//! reduced to the fields the pack's statistics of the category may read,
//! sealed together under that same key, so a statistics scan reads one row
//! and opens one envelope for all of them instead of one per record.
//!
//! ```text
//! build: per person, in one write transaction of the store: their current
//!        rows -> open each -> keep the fields of the statistics declaration
//!        -> one block per (key_id, expiry), sealed with the rows' own key,
//!        bound to the person, category, key, expiry, the position the
//!        blocks cover up to and the tag
//! scan:  per person: their blocks (if of the query's tag), then the rows
//!        the blocks do not cover
//! ```
//!
//! A block is personal data sealed like the records it holds: destroying
//! the person's key, the period's key or a cover order's key makes it
//! unreadable with them; the store deletes a person's blocks of a category
//! with any change to a row they cover (correction, re-seal, expiry,
//! purge), in the same transaction. Blocks are never read but by the
//! statistics scan, whose contribution bounding is the same per person
//! whatever the records came from.

use postvault_policy::CategoryIx;
use postvault_store::{RecordRow, ScanBlock, SubjectRef};
use serde::Serialize;

use crate::error::VaultError;
use crate::leaf::{Event, LEAF_VERSION};
use crate::vault::{KeyCache, KeyOf, RecordKey, Vault};

/// People handed to the builder in one store transaction (which holds the
/// store's writer while they are opened and sealed).
const PEOPLE_A_STEP: usize = 64;

/// What a block holds, by the statistics declaration of its category:
/// `b2:`, the time field, `:` and the fields kept, sorted, comma-separated
/// (`b2:scanned_at:event,facility_zip,op_code,piece,scanned_at`). A block
/// of another tag (the pack's declaration changed) is not read: the rows
/// are, until blocks are built again.
pub(crate) fn block_tag(tax: &postvault_policy::Taxonomy, category: CategoryIx) -> Option<String> {
    let stats = tax.statistics.category(category)?;
    let time = &tax.category(category).fields[stats.time_field].name;
    Some(format!(
        "b2:{time}:{}",
        block_fields(tax, category)?.join(",")
    ))
}

/// Most fields a block keeps of a record.
pub(crate) const MAX_FIELDS: usize = 16;

/// Where each of `names` is among the fields a block of `category` keeps
/// (`None` if one is not kept).
pub(crate) fn field_map(
    tax: &postvault_policy::Taxonomy,
    category: CategoryIx,
    names: &[&str],
) -> Option<Vec<usize>> {
    let kept = block_fields(tax, category)?;
    names
        .iter()
        .map(|n| kept.iter().position(|k| k == n))
        .collect()
}

/// Reads one entry of a block: the time field's instant (`None` when the
/// record had none that parses) and each kept field's JSON text, in the
/// order of the tag, into `fields` (as bytes: the reader checks the UTF-8
/// of those it uses); `None` if it is not an entry.
pub(crate) fn read_entry<'e>(
    entry: &'e [u8],
    fields: &mut [Option<&'e [u8]>; MAX_FIELDS],
) -> Option<Option<i64>> {
    let (_seq, entry) = entry.split_first_chunk::<4>()?;
    let (at, mut rest) = entry.split_first_chunk::<8>()?;
    let at = i64::from_le_bytes(*at);
    let mut n = 0;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let len = u16::from_le_bytes(*len);
        let slot = fields.get_mut(n)?;
        n += 1;
        if len == ABSENT {
            *slot = None;
            rest = tail;
            continue;
        }
        let (text, tail) = tail.split_at_checked(usize::from(len))?;
        *slot = Some(text);
        rest = tail;
    }
    for slot in fields.iter_mut().skip(n) {
        *slot = None;
    }
    Some((at != NO_TIME).then_some(at))
}

/// An entry's place among its person's rows of the category (from 0, in
/// the order of the rows), `None` if it is not an entry.
pub(crate) fn entry_seq(entry: &[u8]) -> Option<u32> {
    entry.first_chunk::<4>().map(|b| u32::from_le_bytes(*b))
}

/// A block's entries do not read.
pub(crate) fn bad_entry() -> VaultError {
    VaultError::Store(postvault_store::StoreError::Corrupt(
        "a scan block's entry does not read".into(),
    ))
}

/// An entry's time when the record's time field is missing or does not
/// parse.
const NO_TIME: i64 = i64::MIN;
/// A kept field the record does not have.
const ABSENT: u16 = u16::MAX;

/// The fields a block keeps: the statistics declaration's time field, the
/// fields of its dimensions and its summable fields; sorted.
pub(super) fn block_fields(
    tax: &postvault_policy::Taxonomy,
    category: CategoryIx,
) -> Option<Vec<&str>> {
    let stats = tax.statistics.category(category)?;
    let cat = tax.category(category);
    let mut names: Vec<&str> = std::iter::once(stats.time_field)
        .chain(stats.dimensions.iter().map(|d| d.field))
        .chain(stats.sum_fields.iter().copied())
        .map(|ix| cat.fields[ix].name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    Some(names)
}

/// What is authenticated with a block: everything that says whose records
/// of what it holds, and which of the person's rows it stands for.
pub(crate) fn block_aad(b: &ScanBlock) -> Vec<u8> {
    let mut aad = Vec::with_capacity(96 + b.tag.len());
    aad.extend_from_slice(b"postvault scan block v1\0");
    aad.extend_from_slice(&b.subject);
    aad.extend_from_slice(b.category.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&b.key_id.to_be_bytes());
    aad.extend_from_slice(&b.expires_at.to_be_bytes());
    aad.extend_from_slice(&b.records.to_be_bytes());
    aad.extend_from_slice(&b.upto);
    aad.extend_from_slice(b.tag.as_bytes());
    aad
}

/// A block's entries, each after its length (4 bytes, little-endian): the
/// record's place among its person's rows of the category (4 bytes,
/// little-endian: a person's blocks are read in the order of their rows),
/// the record's time field as an instant (8 bytes, little-endian; `i64::MIN`
/// when missing or not a time), then each kept field, in the order of the
/// tag, as its JSON text after its length (2 bytes, little-endian;
/// `0xffff` and nothing when the record lacks it).
pub(crate) fn entries(plain: &[u8]) -> impl Iterator<Item = Result<&[u8], VaultError>> {
    let mut rest = plain;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let corrupt = || {
            VaultError::Store(postvault_store::StoreError::Corrupt(
                "a scan block's entries do not add up".into(),
            ))
        };
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            rest = &[];
            return Some(Err(corrupt()));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            rest = &[];
            return Some(Err(corrupt()));
        }
        let (entry, tail) = tail.split_at(len);
        rest = tail;
        Some(Ok(entry))
    })
}

/// The record a block's key is looked up for and its loss judged by
/// ([`Vault::key_for`], `gone`): its person, category, key and expiry.
pub(crate) fn key_row(b: &ScanBlock) -> RecordRow {
    RecordRow {
        id: [0; 16],
        subject: b.subject,
        category: b.category.clone(),
        purpose: String::new(),
        source: String::new(),
        collected_at: 0,
        expires_at: b.expires_at,
        key_id: b.key_id,
        sealed: Vec::new(),
        superseded_by: None,
    }
}

/// What `postvault stats blocks` did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlocksBuilt {
    pub category: String,
    /// What the blocks hold: `b2:`, the time field and the fields kept.
    pub tag: String,
    /// False when the store keeps no blocks (PostgreSQL): nothing was
    /// built, and the scan reads rows.
    pub supported: bool,
    pub people: u64,
    pub blocks: u64,
    pub records: u64,
    /// The build's leaf (written before any record is opened).
    pub log_index: u64,
}

impl Vault {
    /// The categories the pack declares statistics over: those scan blocks
    /// can be built for.
    pub fn statistics_categories(&self) -> Vec<String> {
        let tax = self.pack.taxonomy();
        tax.statistics
            .categories
            .iter()
            .map(|c| tax.category(c.category).id.clone())
            .collect()
    }

    /// Builds the scan blocks of `category` for everyone holding records
    /// of it, replacing their old ones; `progress` is told the people done
    /// so far. One leaf, written first, accounts for the run.
    pub fn build_scan_blocks(
        &self,
        category: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<BlocksBuilt, VaultError> {
        let tax = self.pack.taxonomy();
        let cat = tax
            .category_ix(category)
            .ok_or_else(|| VaultError::Refused {
                code: "unknown_category",
                message: format!("no category `{category}` in the pack"),
            })?;
        let fields = block_fields(tax, cat).ok_or_else(|| VaultError::Refused {
            code: "no_statistics",
            message: format!("the pack declares no statistics over `{category}`"),
        })?;
        let tag = block_tag(tax, cat).ok_or_else(|| VaultError::Refused {
            code: "no_statistics",
            message: format!("the pack declares no statistics over `{category}`"),
        })?;
        if fields.len() > MAX_FIELDS {
            return Err(VaultError::Refused {
                code: "too_many_fields",
                message: format!(
                    "scan blocks keep at most {MAX_FIELDS} fields; the statistics of `{category}` read {}",
                    fields.len()
                ),
            });
        }
        let time = {
            let stats = tax.statistics.category(cat);
            let name = stats.map(|s| tax.category(cat).fields[s.time_field].name.as_str());
            fields
                .iter()
                .position(|f| Some(*f) == name)
                .unwrap_or(usize::MAX)
        };
        let now = self.clock.now_ms();
        self.sync_erasures()?;
        let leaf = Event {
            v: LEAF_VERSION,
            time: now,
            action: "scan_blocks".into(),
            principal: self.system_actor("statistics-blocks"),
            purpose: None,
            decision: "allow".into(),
            pack: self.pack.version().to_string(),
            reasons: vec![],
            categories: vec![category.to_string()],
            count: 0,
            rejected: None,
            selector: Some(tag.clone()),
            instrument: None,
            subject_tag: None,
        }
        .to_leaf();
        let log_index = self
            .store
            .append_leaves(1, &mut |_, _| leaf.clone().into())?;
        let mut out = BlocksBuilt {
            category: category.to_string(),
            tag: tag.clone(),
            supported: true,
            log_index,
            ..BlocksBuilt::default()
        };
        let mut after: Option<SubjectRef> = None;
        let mut begun = 0i64;
        let mut nonces = postvault_crypto::Nonces::new();
        let (mut aad, mut plain, mut block, mut reduced) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        loop {
            // The closure's own failures, kept whole (the store sees an
            // error that stops its transaction).
            let mut failed: Option<VaultError> = None;
            // Each step's own time: what expired is left out as of then.
            let step = self.store.build_scan_blocks(
                category,
                self.clock.now_ms(),
                after.as_ref(),
                begun,
                PEOPLE_A_STEP,
                &tag,
                &mut |subject, rows, upto| {
                    let made = self.make_blocks(
                        subject,
                        rows,
                        upto,
                        &tag,
                        (&fields, time),
                        &mut nonces,
                        (&mut aad, &mut plain, &mut block, &mut reduced),
                    );
                    made.map_err(|e| {
                        let stop = postvault_store::StoreError::Corrupt(format!(
                            "building scan blocks stopped: {e}"
                        ));
                        failed = Some(e);
                        stop
                    })
                },
            );
            let step = match (step, failed) {
                (_, Some(e)) => return Err(e),
                (Err(e), None) => return Err(e.into()),
                (Ok(None), None) => {
                    out.supported = false;
                    return Ok(out);
                }
                (Ok(Some(step)), None) => step,
            };
            begun = step.build;
            out.people += step.people;
            out.blocks += step.blocks;
            out.records += step.records;
            progress(out.people);
            match step.next {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// One person's blocks of their current `rows` of one category, or
    /// `None` when a key they need is gone (they keep their rows, marked).
    #[allow(clippy::too_many_arguments)]
    fn make_blocks(
        &self,
        subject: &SubjectRef,
        rows: &[RecordRow],
        upto: &[u8; 16],
        tag: &str,
        (fields, time): (&[&str], usize),
        nonces: &mut postvault_crypto::Nonces,
        (aad, plain, block, reduced): (&mut Vec<u8>, &mut Vec<u8>, &mut Vec<u8>, &mut Vec<u8>),
    ) -> Result<Option<Vec<ScanBlock>>, VaultError> {
        if rows.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let wrapped = self.keys.subject_keys(subject)?;
        // The data key alone: a block is sealed with its rows' key.
        let Some(data) = wrapped
            .as_ref()
            .and_then(|w| self.unwrap_data(w, subject).ok())
        else {
            return Ok(None);
        };
        // A person's groups are of distinct keys: none is looked up twice.
        let mut cache = KeyCache::for_scan();
        let mut out: Vec<ScanBlock> = Vec::new();
        // Rows of one key in one block, in the order the rows come, each
        // with its place among the person's rows.
        let mut groups: Vec<KeyGroup<'_>> = Vec::new();
        for (seq, r) in rows.iter().enumerate() {
            let Ok(seq) = u32::try_from(seq) else {
                return Ok(None);
            };
            match groups
                .iter_mut()
                .find(|(k, e, _)| *k == r.key_id && *e == r.expires_at)
            {
                Some(g) => g.2.push((seq, r)),
                None => groups.push((r.key_id, r.expires_at, vec![(seq, r)])),
            }
        }
        for (key_id, expires_at, group) in groups {
            let Some(key) = self.key_of(KeyOf::of(group[0].1), Some(&data), &mut cache, false)?
            else {
                return Ok(None);
            };
            block.clear();
            for (seq, r) in &group {
                self.open_record_with(r, &key, aad, plain)?;
                if !entry_of(plain, fields, (*seq, time), reduced)? {
                    return Ok(None);
                }
                let len = u32::try_from(reduced.len()).map_err(|_| {
                    VaultError::Store(postvault_store::StoreError::Corrupt(
                        "a record too large for a scan block".into(),
                    ))
                })?;
                block.extend_from_slice(&len.to_le_bytes());
                block.extend_from_slice(reduced);
            }
            let mut b = ScanBlock {
                subject: *subject,
                category: group[0].1.category.clone(),
                key_id,
                expires_at,
                records: group.len() as u64,
                upto: *upto,
                tag: tag.to_string(),
                sealed: Vec::new(),
            };
            b.sealed = seal(&key, nonces, self, &block_aad(&b), block)?;
            out.push(b);
        }
        Ok(Some(out))
    }
}

/// A person's rows under one key (key_id, expiry), each with its place
/// among the person's rows.
type KeyGroup<'r> = (u32, i64, Vec<(u32, &'r RecordRow)>);

/// Seals a block's entries with the key of its rows.
fn seal(
    key: &RecordKey,
    nonces: &mut postvault_crypto::Nonces,
    vault: &Vault,
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, VaultError> {
    Ok(key.key.seal_from(nonces, &vault.rng, aad, plain)?)
}

/// A record's entry of a block ([`entries`]) into `out`: its place `seq`
/// among its person's rows, the kept fields `names` taken out of its
/// payload as their JSON texts, as the scan's payload reader takes them,
/// and the instant of the time field (`names[time]`) parsed once. False
/// when a value is too long for an entry (64 KiB): the person keeps rows.
pub(super) fn entry_of(
    plain: &[u8],
    names: &[&str],
    (seq, time): (u32, usize),
    out: &mut Vec<u8>,
) -> Result<bool, VaultError> {
    let corrupt = || {
        VaultError::Store(postvault_store::StoreError::Corrupt(
            "a sealed record does not hold a record payload".into(),
        ))
    };
    let plain = std::str::from_utf8(plain).map_err(|_| corrupt())?;
    let mut raw: [Option<&serde_json::value::RawValue>; MAX_FIELDS] = [None; MAX_FIELDS];
    let raw = raw.get_mut(..names.len()).ok_or_else(corrupt)?;
    let mut de = serde_json::Deserializer::from_str(plain);
    let found = serde::de::DeserializeSeed::deserialize(
        super::PayloadSeed(super::FieldsSeed { names, out: raw }),
        &mut de,
    )
    .and_then(|f| de.end().map(|()| f))
    .map_err(|_| corrupt())?;
    if !found {
        return Err(corrupt());
    }
    let at = match raw.get(time).copied().flatten() {
        Some(r) => super::raw_text(r)
            .map_err(|_| corrupt())?
            .and_then(|t| super::parse_instant(&t)),
        None => None,
    };
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&at.unwrap_or(NO_TIME).to_le_bytes());
    for value in raw.iter() {
        match value {
            Some(v) => {
                // A value too long for an entry: the person keeps rows.
                let Some(len) = u16::try_from(v.get().len()).ok().filter(|l| *l != ABSENT) else {
                    return Ok(false);
                };
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(v.get().as_bytes());
            }
            None => out.extend_from_slice(&ABSENT.to_le_bytes()),
        }
    }
    Ok(true)
}
