//! The policy pack of postvault: what may be collected and read, by whom, for
//! which purpose.
//!
//! A pack is three files: `taxonomy.toml` (categories and fields, purposes as
//! a tree, roles, the purpose x category matrix), `schema.cedarschema` and
//! `policies.cedar`, plus an optional `disclosure.toml` (the rules for legal
//! instruments, see [`disclosure`]). [`Pack::load`] checks them all (Cedar
//! strict validation plus our own checks); a bad pack fails naming the file,
//! line and check.
//!
//! Architecture invariant: this crate does no IO, reads no clock and never
//! sees a personal-data value. A decision depends only on the pack version
//! and the [`DecisionRequest`], so it is deterministic and cacheable.

pub mod bounds;
pub mod contract;
mod decision;
pub mod diff;
pub mod disclosure;
mod engine;
mod error;
pub mod review;
pub mod stats;
pub mod subject_id;
pub mod taxonomy;

#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod contract_tests;
#[cfg(test)]
mod stats_tests;
#[cfg(test)]
mod tests;

use aws_lc_rs::digest;

pub use contract::EngineIds;
pub use decision::{Action, Decision, DecisionRequest, Effect, Reason};
pub use diff::{Access, CellChange, PackDiff, RuleChange};
pub use disclosure::{DISCLOSURE_FILE, DisclosureRules};
pub use engine::{POLICIES_FILE, SCHEMA_FILE};
pub use error::PackError;
pub use subject_id::{
    INVALID_SUBJECT_ID, MAX_SUBJECT_ID, SubjectIdError, check_subject_chars, check_subject_id,
};
pub use taxonomy::{
    Category, CategoryIx, Cell, DEFAULT_CHANGE_NOTICE_DAYS, FIXED_PROHIBITED_PURPOSES, FieldSpec,
    FieldType, Purpose, PurposeIx, Role, RoleIx, TAXONOMY_FILE, Taxonomy, Transform,
    fixed_prohibition,
};

use decision::DecisionCache;
use engine::Engine;

/// The text of a pack's files. The caller reads them (this crate does no IO).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackSources {
    pub taxonomy: String,
    pub schema: String,
    pub policies: String,
    /// `disclosure.toml`. Without it the pack has no disclosure gateway:
    /// every instrument is refused ([`DisclosureRules::none`]).
    #[serde(default)]
    pub disclosure: Option<String>,
}

impl PackSources {
    /// The version a pack of these files has (see [`Pack::version`]),
    /// without loading it.
    pub fn version(&self) -> String {
        content_version(self)
    }

    /// The default postal pack shipped with postvault (`packs/postal`).
    pub fn postal() -> PackSources {
        PackSources {
            taxonomy: include_str!("../../../packs/postal/taxonomy.toml").to_string(),
            schema: include_str!("../../../packs/postal/schema.cedarschema").to_string(),
            policies: include_str!("../../../packs/postal/policies.cedar").to_string(),
            disclosure: Some(include_str!("../../../packs/postal/disclosure.toml").to_string()),
        }
    }
}

/// A loaded, checked policy pack with its decision cache.
pub struct Pack {
    taxonomy: Taxonomy,
    engine: Engine,
    disclosure: DisclosureRules,
    version: String,
    cache: DecisionCache,
}

impl std::fmt::Debug for Pack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pack")
            .field("name", &self.taxonomy.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Pack {
    /// Loads and checks a pack.
    ///
    /// Every file is checked against [`bounds`] before it is parsed.
    pub fn load(src: &PackSources) -> Result<Pack, PackError> {
        bounds::check_size(TAXONOMY_FILE, &src.taxonomy)?;
        bounds::check_cedar(SCHEMA_FILE, &src.schema, bounds::CedarText::Schema)?;
        bounds::check_cedar(POLICIES_FILE, &src.policies, bounds::CedarText::Policies)?;
        if let Some(d) = &src.disclosure {
            bounds::check_size(DISCLOSURE_FILE, d)?;
        }
        let taxonomy = Taxonomy::parse(&src.taxonomy)?;
        let engine = Engine::new(&taxonomy, &src.schema, &src.policies)?;
        let disclosure = match &src.disclosure {
            Some(text) => DisclosureRules::parse(text, &taxonomy)?,
            None => DisclosureRules::none(&taxonomy),
        };
        let version = content_version(src);
        let cache = DecisionCache::new(
            taxonomy.roles.len(),
            taxonomy.purposes.len(),
            taxonomy.categories.len(),
        );
        let pack = Pack {
            taxonomy,
            engine,
            disclosure,
            version,
            cache,
        };
        pack.check_prohibitions()?;
        Ok(pack)
    }

    /// No policy may permit anything for a prohibited purpose (the pack's
    /// `prohibited` group and the engine's fixed list): every request the
    /// pack can be asked for one must be denied by the policies themselves.
    /// The first one permitted names the policy that permits it.
    fn check_prohibitions(&self) -> Result<(), PackError> {
        let t = &self.taxonomy;
        for req in self.requests() {
            let purpose = t.purpose(req.purpose);
            if !purpose.prohibited() {
                continue;
            }
            let d = self.engine.evaluate(t, &req);
            if d.effect == Effect::Allow {
                let policy = d.reasons.first().map_or("", |r| r.policy.as_str());
                return Err(PackError::new(
                    POLICIES_FILE,
                    self.engine.policy_line(policy),
                    "fixed-prohibition",
                    format!(
                        "policy `{policy}` permits role `{}` to {} `{}` for prohibited purpose `{}`: no pack may permit a prohibited purpose",
                        t.role(req.role).id,
                        req.action.as_str(),
                        t.category(req.category).id,
                        purpose.id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The engine's last word on a decision: nothing is ever allowed for a
    /// prohibited purpose, whatever the policies say (the load refuses such
    /// a pack; this holds even if a check were missed).
    fn guard(&self, req: &DecisionRequest, d: Decision) -> Decision {
        if d.effect == Effect::Allow && self.taxonomy.purpose(req.purpose).prohibited() {
            return Decision {
                effect: Effect::Deny,
                reasons: vec![Reason {
                    policy: "engine-prohibited-purpose".into(),
                    rule: taxonomy::fixed_prohibition(&self.taxonomy.purpose(req.purpose).id)
                        .unwrap_or("R25")
                        .into(),
                    message: "the purpose is prohibited: no pack may permit it".into(),
                }],
            };
        }
        d
    }

    /// The default postal pack.
    pub fn postal() -> Result<Pack, PackError> {
        Pack::load(&PackSources::postal())
    }

    pub fn taxonomy(&self) -> &Taxonomy {
        &self.taxonomy
    }

    /// The disclosure rules (`disclosure.toml`).
    pub fn disclosure(&self) -> &DisclosureRules {
        &self.disclosure
    }

    /// The pack version: `sha256:` and the first 16 hex digits of the hash of
    /// its files (`disclosure.toml` only when present). Every decision and
    /// log leaf records it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The number of Cedar policies.
    pub fn policy_count(&self) -> usize {
        self.engine.policy_count()
    }

    /// The decision for `req`, from the cache (filled from Cedar on first use).
    pub fn decide(&self, req: &DecisionRequest) -> &Decision {
        static INVALID: std::sync::OnceLock<Decision> = std::sync::OnceLock::new();
        match self.in_range(req).then(|| self.cache.slot(req)).flatten() {
            Some(slot) => {
                slot.get_or_init(|| self.guard(req, self.engine.evaluate(&self.taxonomy, req)))
            }
            None => INVALID.get_or_init(|| Decision {
                effect: Effect::Deny,
                reasons: vec![Reason {
                    policy: "unknown-id".into(),
                    rule: "R3".into(),
                    message: "unknown role, purpose or category".into(),
                }],
            }),
        }
    }

    /// The decision for `req` straight from Cedar, bypassing the cache.
    pub fn evaluate(&self, req: &DecisionRequest) -> Decision {
        self.guard(req, self.engine.evaluate(&self.taxonomy, req))
    }

    /// Every request the pack can be asked: the whole decision table.
    pub fn requests(&self) -> impl Iterator<Item = DecisionRequest> + '_ {
        let t = &self.taxonomy;
        t.role_ixs().flat_map(move |role| {
            Action::ALL.into_iter().flat_map(move |action| {
                t.purpose_ixs().flat_map(move |purpose| {
                    t.category_ixs().flat_map(move |category| {
                        [false, true]
                            .into_iter()
                            .map(move |consent| DecisionRequest {
                                role,
                                action,
                                purpose,
                                category,
                                consent,
                            })
                    })
                })
            })
        })
    }

    fn in_range(&self, r: &DecisionRequest) -> bool {
        usize::from(r.role.0) < self.taxonomy.roles.len()
            && usize::from(r.purpose.0) < self.taxonomy.purposes.len()
            && usize::from(r.category.0) < self.taxonomy.categories.len()
    }
}

fn content_version(src: &PackSources) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let files = [
        (TAXONOMY_FILE, Some(&src.taxonomy)),
        (SCHEMA_FILE, Some(&src.schema)),
        (POLICIES_FILE, Some(&src.policies)),
        (DISCLOSURE_FILE, src.disclosure.as_ref()),
    ];
    for (name, text) in files.into_iter().filter_map(|(n, t)| Some((n, t?))) {
        ctx.update(name.as_bytes());
        ctx.update(&[0]);
        ctx.update(&(text.len() as u64).to_be_bytes());
        ctx.update(text.as_bytes());
    }
    let d = ctx.finish();
    format!("sha256:{}", hex::encode(&d.as_ref()[..8]))
}
