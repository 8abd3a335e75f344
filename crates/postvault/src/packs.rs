//! The pack a vault runs under, and changes to it with notice (R4).
//!
//! A vault records the pack it runs under: its version (the content hash)
//! and its files, in the data store's metadata. Opening it with another pack
//! is refused unless the change was staged (`postvault policy stage`): a
//! change that narrows access (or changes nothing a decision depends on)
//! applies at once; one that widens any access takes effect only after the
//! notice period the packs declare (the longer of the two), at the first
//! open from then on. Opened without a pack, a vault runs the pack it
//! recorded, so a new postvault binary whose built-in pack changed never
//! changes a vault's policy by itself: it says so, and
//! `postvault policy stage` (without a directory) stages the built-in pack
//! like any other.
//!
//! Architecture invariant: a vault decides under exactly one recorded pack,
//! and every change of it is a staged, logged step (one leaf with both
//! versions).

use std::sync::Arc;

use postvault_policy::{Pack, PackDiff, PackSources};
use postvault_store::Store;
use serde::{Deserialize, Serialize};

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::vault::Vault;

/// Meta key: the version of the pack in force.
const CURRENT: &str = "pack_version";
/// Meta key prefix: the files of a pack, by version.
const SOURCES: &str = "pack_sources:";
/// Meta key: the staged pack (JSON of [`StagedPack`]), empty when none.
const STAGED: &str = "pack_staged";
const DAY_MS: i64 = 86_400_000;

/// A staged pack change that waits for its notice period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedPack {
    /// The staged pack's version.
    pub version: String,
    /// The version in force when it was staged.
    pub from: String,
    pub staged_at: i64,
    /// It takes effect at the first open from this time on.
    pub effective_at: i64,
    pub notice_days: u32,
}

/// Where a vault's pack stands (`postvault policy diff`, the CLI's notice).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackStatus {
    /// The version in force.
    pub current: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged: Option<StagedView>,
    /// The pack built into this binary.
    pub built_in: String,
}

/// A staged change as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StagedView {
    pub version: String,
    pub from: String,
    pub staged_at: String,
    pub effective_at: String,
}

/// What `policy stage` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StageReport {
    pub from: String,
    pub to: String,
    /// Whether the change widens any access.
    pub widens: bool,
    /// In force now (a narrowing, or no change to any decision), or waiting.
    pub in_force: bool,
    pub effective_at: String,
    pub notice_days: u32,
    pub diff: PackDiff,
    /// The leaf that records the step.
    pub log_index: u64,
}

/// The pack a vault opened now runs under: `given` (a pack the caller
/// names) must be the one in force; without it, the recorded pack. A staged
/// pack whose time has come is put in force first. A vault that recorded no
/// pack yet (made before packs were recorded) adopts `given`, or the
/// built-in pack; the bool says so.
pub(crate) fn resolve(
    store: &dyn Store,
    given: Option<&PackSources>,
    now: i64,
) -> Result<(Arc<Pack>, bool), VaultError> {
    let Some(mut current) = store.meta(CURRENT)?.filter(|v| !v.is_empty()) else {
        let src = given.cloned().unwrap_or_else(PackSources::postal);
        let pack = Pack::load(&src)?;
        record(store, &src)?;
        return Ok((Arc::new(pack), true));
    };
    let staged = staged(store)?;
    if let Some(st) = &staged
        && now >= st.effective_at
    {
        store.set_meta(CURRENT, &st.version)?;
        store.set_meta(STAGED, "")?;
        current = st.version.clone();
    }
    let staged = staged.filter(|st| st.version != current);
    let (src, loaded) = match given {
        Some(src) => {
            // A pack given that does not load is reported as such, before
            // its version is compared with the one in force.
            let pack = Pack::load(src)?;
            let v = src.version();
            if v != current {
                return Err(match staged {
                    Some(st) if st.version == v => VaultError::PackNotInForce {
                        version: v,
                        effective_at: format_ms(st.effective_at),
                        current,
                    },
                    _ => VaultError::PackNotStaged { current, given: v },
                });
            }
            (src.clone(), Some(pack))
        }
        None => (sources(store, &current)?, None),
    };
    let pack = match loaded {
        Some(p) => p,
        None => Pack::load(&src).map_err(|error| VaultError::PackNoLongerLoads {
            version: current.clone(),
            error,
        })?,
    };
    Ok((Arc::new(pack), false))
}

/// Records `src` as the pack in force (a new vault, or one adopting).
pub(crate) fn record(store: &dyn Store, src: &PackSources) -> Result<(), VaultError> {
    let v = src.version();
    put_sources(store, &v, src)?;
    store.set_meta(CURRENT, &v)?;
    Ok(())
}

fn put_sources(store: &dyn Store, version: &str, src: &PackSources) -> Result<(), VaultError> {
    let json = serde_json::to_string(src).map_err(|e| VaultError::Invalid {
        what: "pack",
        why: e.to_string(),
    })?;
    store.set_meta(&format!("{SOURCES}{version}"), &json)?;
    Ok(())
}

fn sources(store: &dyn Store, version: &str) -> Result<PackSources, VaultError> {
    let text = store
        .meta(&format!("{SOURCES}{version}"))?
        .ok_or_else(|| VaultError::Invalid {
            what: "vault",
            why: format!("the files of pack `{version}` it runs under are missing from the store"),
        })?;
    serde_json::from_str(&text).map_err(|e| VaultError::Invalid {
        what: "vault",
        why: format!("the stored files of pack `{version}` do not parse: {e}"),
    })
}

fn staged(store: &dyn Store) -> Result<Option<StagedPack>, VaultError> {
    match store.meta(STAGED)?.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| VaultError::Invalid {
                what: "vault",
                why: format!("the staged pack record does not parse: {e}"),
            }),
    }
}

impl Vault {
    /// The version in force, the staged change if any, and the built-in
    /// pack's version.
    pub fn pack_status(&self) -> Result<PackStatus, VaultError> {
        let staged = staged(&*self.store)?
            .filter(|st| st.version != self.pack.version())
            .map(|st| StagedView {
                version: st.version,
                from: st.from,
                staged_at: format_ms(st.staged_at),
                effective_at: format_ms(st.effective_at),
            });
        Ok(PackStatus {
            current: self.pack.version().to_string(),
            staged,
            built_in: PackSources::postal().version(),
        })
    }

    /// What changes from the pack in force to `new`; without `new`, to the
    /// staged pack, or else to the pack built into this binary.
    pub fn policy_diff(&self, new: Option<&PackSources>) -> Result<PackDiff, VaultError> {
        let src = match new {
            Some(s) => s.clone(),
            None => match staged(&*self.store)?.filter(|st| st.version != self.pack.version()) {
                Some(st) => sources(&*self.store, &st.version)?,
                None => PackSources::postal(),
            },
        };
        Ok(PackDiff::new(&self.pack, &Pack::load(&src)?))
    }

    /// Stages `new` as the vault's pack (R4): one leaf records both
    /// versions. A change that widens any access takes effect after the
    /// notice period (the longer of the two packs' `change_notice_days`);
    /// any other change is in force at once. Staging replaces a change
    /// staged before and not yet in force.
    pub fn policy_stage(&self, new: &PackSources) -> Result<StageReport, VaultError> {
        let pack = Pack::load(new)?;
        let now = self.clock.now_ms();
        let diff = PackDiff::new(&self.pack, &pack);
        let from = self.pack.version().to_string();
        let to = pack.version().to_string();
        let effective_at = if diff.widens {
            now.saturating_add(i64::from(diff.notice_days).saturating_mul(DAY_MS))
        } else {
            now
        };
        let in_force = !diff.widens;
        put_sources(&*self.store, &to, new)?;
        let changed_categories: std::collections::BTreeSet<String> =
            diff.cells.iter().map(|c| c.category.clone()).collect();
        let log_index = self.store.append_leaves(1, &mut |_, _| {
            Event {
                v: LEAF_VERSION,
                time: now,
                action: "policy_stage".into(),
                principal: Actor {
                    role: "operator".into(),
                    id: self.actor_id("operator"),
                },
                purpose: None,
                decision: "allow".into(),
                pack: from.clone(),
                reasons: vec![if diff.widens { "widens" } else { "narrows" }.into()],
                categories: changed_categories.iter().cloned().collect(),
                count: diff.cells.len() as u64,
                rejected: None,
                selector: Some(format!("{to} effective {}", format_ms(effective_at))),
                instrument: None,
                subject_tag: None,
            }
            .to_leaf()
            .into()
        })?;
        if in_force {
            self.store.set_meta(CURRENT, &to)?;
            self.store.set_meta(STAGED, "")?;
        } else {
            let st = StagedPack {
                version: to.clone(),
                from: from.clone(),
                staged_at: now,
                effective_at,
                notice_days: diff.notice_days,
            };
            let json = serde_json::to_string(&st).map_err(|e| VaultError::Invalid {
                what: "pack",
                why: e.to_string(),
            })?;
            self.store.set_meta(STAGED, &json)?;
        }
        Ok(StageReport {
            from,
            to,
            widens: diff.widens,
            in_force,
            effective_at: format_ms(effective_at),
            notice_days: diff.notice_days,
            diff,
            log_index,
        })
    }

    /// A vault that recorded no pack before adopted the one it was opened
    /// with: one leaf says so, naming the pack its log last recorded, when
    /// the log already holds decisions made under whatever pack was used.
    pub(crate) fn log_adoption(&self) -> Result<(), VaultError> {
        let size = self.store.log_size()?;
        if size == 0 {
            return Ok(());
        }
        let last = self
            .store
            .leaves(size - 1, size)?
            .first()
            .and_then(|l| Event::from_leaf(l))
            .map(|e| e.pack)
            .unwrap_or_default();
        let now = self.clock.now_ms();
        let v = self.pack.version().to_string();
        self.store.append_leaves(1, &mut |_, _| {
            Event {
                v: LEAF_VERSION,
                time: now,
                action: "policy_adopt".into(),
                principal: Actor {
                    role: "operator".into(),
                    id: self.actor_id("operator"),
                },
                purpose: None,
                decision: "allow".into(),
                pack: v.clone(),
                reasons: vec![],
                categories: vec![],
                count: 0,
                rejected: None,
                selector: Some(format!("from {last}")),
                instrument: None,
                subject_tag: None,
            }
            .to_leaf()
            .into()
        })?;
        Ok(())
    }
}
