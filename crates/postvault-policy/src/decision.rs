//! Decisions: what the pack says about one request, and the cache that makes
//! asking again cost an array index.
//!
//! The request space is small and finite (role x action x purpose x category
//! x consent), so the cache is a dense table filled lazily from Cedar. It is
//! keyed by exactly the attributes the schema exposes; the pack version is
//! fixed per table because a table belongs to one loaded pack.

use std::sync::OnceLock;

use serde::Serialize;

use crate::taxonomy::{CategoryIx, PurposeIx, RoleIx};

/// The effect of a decision. Deny is the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
}

/// Why a decision came out as it did: the policy, the rule of the reference
/// it enforces, and a message for a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reason {
    pub policy: String,
    pub rule: String,
    pub message: String,
}

/// The answer to one request. Never an error: evaluation problems deny.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub effect: Effect,
    pub reasons: Vec<Reason>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
}

/// What a principal wants to do with a category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    Collect,
}

impl Action {
    pub const ALL: [Action; 2] = [Action::Read, Action::Collect];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Collect => "collect",
        }
    }
}

/// One request to the pack: every attribute a decision may depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecisionRequest {
    pub role: RoleIx,
    pub action: Action,
    pub purpose: PurposeIx,
    pub category: CategoryIx,
    /// The person has granted, and not withdrawn, consent for `purpose`.
    pub consent: bool,
}

/// Dense, lazily filled table of decisions for one pack.
pub(crate) struct DecisionCache {
    purposes: usize,
    categories: usize,
    cells: Vec<OnceLock<Decision>>,
}

impl DecisionCache {
    pub(crate) fn new(roles: usize, purposes: usize, categories: usize) -> Self {
        let n = roles * Action::ALL.len() * purposes * categories * 2;
        DecisionCache {
            purposes,
            categories,
            cells: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }

    pub(crate) fn slot(&self, r: &DecisionRequest) -> Option<&OnceLock<Decision>> {
        let action = match r.action {
            Action::Read => 0,
            Action::Collect => 1,
        };
        let ix = (((usize::from(r.role.0) * 2 + action) * self.purposes
            + usize::from(r.purpose.0))
            * self.categories
            + usize::from(r.category.0))
            * 2
            + usize::from(r.consent);
        self.cells.get(ix)
    }
}
