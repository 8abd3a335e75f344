//! The Cedar side of a pack: the schema, the policies (strictly validated),
//! and the entities built from the taxonomy (roles, purposes and their tree,
//! categories with their matrix rows). Evaluates one request with Cedar.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode,
    Validator,
};
use miette::Diagnostic;

use crate::decision::{Action, Decision, DecisionRequest, Effect, Reason};
use crate::error::PackError;
use crate::taxonomy::{Cell, Taxonomy, line_of};

pub const SCHEMA_FILE: &str = "schema.cedarschema";
pub const POLICIES_FILE: &str = "policies.cedar";

pub(crate) struct Engine {
    schema: Schema,
    policies: PolicySet,
    entities: Entities,
    authorizer: Authorizer,
    reasons: HashMap<PolicyId, (String, String)>,
    /// The line of each policy in `policies.cedar`.
    lines: HashMap<String, usize>,
    roles: Vec<EntityUid>,
    purposes: Vec<EntityUid>,
    categories: Vec<EntityUid>,
    read: EntityUid,
    collect: EntityUid,
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, PackError> {
    let t = EntityTypeName::from_str(kind).map_err(|e| {
        PackError::new(
            SCHEMA_FILE,
            None,
            "cedar-entity",
            format!("bad type `{kind}`: {e}"),
        )
    })?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

/// The first source line a Cedar diagnostic points at.
fn diag_line(src: &str, d: &dyn Diagnostic) -> Option<usize> {
    d.labels()
        .and_then(|mut l| l.next())
        .map(|l| line_of(src, l.offset()))
}

fn set(uids: impl IntoIterator<Item = EntityUid>) -> RestrictedExpression {
    RestrictedExpression::new_set(uids.into_iter().map(RestrictedExpression::new_entity_uid))
}

impl Engine {
    pub(crate) fn new(
        tax: &Taxonomy,
        schema_src: &str,
        policies_src: &str,
    ) -> Result<Engine, PackError> {
        let (schema, _warnings) = Schema::from_cedarschema_str(schema_src).map_err(|e| {
            PackError::new(
                SCHEMA_FILE,
                diag_line(schema_src, &e),
                "cedar-schema",
                e.to_string(),
            )
        })?;

        // Parse, then give each policy the id of its @id annotation (Cedar
        // does not do this itself), and demand @rule and @reason.
        let parsed = PolicySet::from_str(policies_src).map_err(|e| {
            PackError::new(
                POLICIES_FILE,
                diag_line(policies_src, &e),
                "cedar-syntax",
                e.to_string(),
            )
        })?;
        // Without a permit every decision is deny: a file emptied or cut
        // short by mistake must not pass as a pack.
        if !parsed
            .policies()
            .any(|p| p.effect() == cedar_policy::Effect::Permit)
        {
            return Err(PackError::new(
                POLICIES_FILE,
                None,
                "cedar-empty",
                "the file holds no permit policy, so every decision would be deny".into(),
            ));
        }
        let mut policies = PolicySet::new();
        let mut reasons = HashMap::new();
        let mut lines = HashMap::new();
        for p in parsed.policies() {
            // The policy's own text, as parsed, locates it in the file.
            let line = policies_src
                .find(p.to_string().trim())
                .map(|o| line_of(policies_src, o));
            let need = |key: &str| {
                p.annotation(key).map(str::to_string).ok_or_else(|| {
                    PackError::new(
                        POLICIES_FILE,
                        line,
                        "cedar-annotation",
                        format!("every policy needs an @{key}(\"...\") annotation"),
                    )
                })
            };
            let id = need("id")?;
            let rule = need("rule")?;
            let reason = need("reason")?;
            let pid = PolicyId::new(&id);
            if let Some(l) = line {
                lines.insert(id.clone(), l);
            }
            policies.add(p.new_id(pid.clone())).map_err(|e| {
                PackError::new(POLICIES_FILE, line, "cedar-policy-id", e.to_string())
            })?;
            reasons.insert(pid, (rule, reason));
        }

        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if let Some(e) = validation.validation_errors().next() {
            let rule_id = e.policy_id().to_string();
            return Err(PackError::new(
                POLICIES_FILE,
                diag_line(policies_src, e),
                "cedar-validation",
                format!("policy `{rule_id}`: {e}"),
            ));
        }

        let entities_err = |e: &dyn std::fmt::Display| {
            PackError::new(
                SCHEMA_FILE,
                None,
                "cedar-entities",
                format!("the taxonomy does not fit the schema: {e}"),
            )
        };
        let mut entities = Vec::new();
        let mut group_uids = HashMap::new();
        for g in &tax.groups {
            let u = uid("PurposeGroup", &g.id)?;
            group_uids.insert(g.id.clone(), u.clone());
            entities.push(Entity::new_no_attrs(u, HashSet::new()));
        }
        let mut purposes = Vec::new();
        for p in &tax.purposes {
            let u = uid("Purpose", &p.id)?;
            let parents = group_uids.get(&p.group).cloned().into_iter().collect();
            let attrs = HashMap::from([(
                "collects".to_string(),
                RestrictedExpression::new_bool(p.collects),
            )]);
            entities.push(Entity::new(u.clone(), attrs, parents).map_err(|e| entities_err(&e))?);
            purposes.push(u);
        }
        let purpose_uids = |ixs: &[crate::taxonomy::PurposeIx]| {
            ixs.iter()
                .map(|ix| purposes[usize::from(ix.0)].clone())
                .collect::<Vec<_>>()
        };
        let mut roles = Vec::new();
        for r in &tax.roles {
            let u = uid("Role", &r.id)?;
            let attrs = HashMap::from([
                ("read_for".to_string(), set(purpose_uids(&r.read_for))),
                ("collect_for".to_string(), set(purpose_uids(&r.collect_for))),
            ]);
            entities
                .push(Entity::new(u.clone(), attrs, HashSet::new()).map_err(|e| entities_err(&e))?);
            roles.push(u);
        }
        let mut categories = Vec::new();
        for c in tax.category_ixs() {
            let cat = tax.category(c);
            let u = uid("Category", &cat.id)?;
            let with = |pred: &dyn Fn(crate::taxonomy::PurposeIx) -> bool| {
                set(tax
                    .purpose_ixs()
                    .filter(|&p| pred(p))
                    .map(|p| purposes[usize::from(p.0)].clone()))
            };
            let cell = |p| tax.cell(p, c);
            let attrs = HashMap::from([
                (
                    "read_allowed".to_string(),
                    with(&|p| matches!(cell(p), Cell::Allowed | Cell::Consent)),
                ),
                (
                    "read_aggregate".to_string(),
                    with(&|p| cell(p) == Cell::Aggregate),
                ),
                (
                    "read_instrument".to_string(),
                    with(&|p| cell(p) == Cell::Instrument),
                ),
                (
                    "consent_required".to_string(),
                    with(&|p| cell(p) == Cell::Consent),
                ),
                (
                    "collect_allowed".to_string(),
                    with(&|p| tax.collectable(p, c)),
                ),
            ]);
            entities
                .push(Entity::new(u.clone(), attrs, HashSet::new()).map_err(|e| entities_err(&e))?);
            categories.push(u);
        }
        let entities =
            Entities::from_entities(entities, Some(&schema)).map_err(|e| entities_err(&e))?;

        Ok(Engine {
            schema,
            policies,
            entities,
            authorizer: Authorizer::new(),
            reasons,
            lines,
            roles,
            purposes,
            categories,
            read: uid("Action", "read")?,
            collect: uid("Action", "collect")?,
        })
    }

    /// The line of policy `id` in `policies.cedar`, where known.
    pub(crate) fn policy_line(&self, id: &str) -> Option<usize> {
        self.lines.get(id).copied()
    }

    /// The number of policies.
    pub(crate) fn policy_count(&self) -> usize {
        self.policies.policies().count()
    }

    /// Evaluates `req` with Cedar. Deny by default; any evaluation error denies.
    pub(crate) fn evaluate(&self, tax: &Taxonomy, req: &DecisionRequest) -> Decision {
        let (Some(principal), Some(purpose), Some(resource)) = (
            self.roles.get(usize::from(req.role.0)),
            self.purposes.get(usize::from(req.purpose.0)),
            self.categories.get(usize::from(req.category.0)),
        ) else {
            return deny(
                "unknown-id",
                "R3",
                "unknown role, purpose or category".into(),
            );
        };
        let action = match req.action {
            Action::Read => &self.read,
            Action::Collect => &self.collect,
        };
        let context = Context::from_pairs([
            (
                "purpose".to_string(),
                RestrictedExpression::new_entity_uid(purpose.clone()),
            ),
            (
                "consent".to_string(),
                RestrictedExpression::new_bool(req.consent),
            ),
        ]);
        let request = context.ok().and_then(|ctx| {
            Request::new(
                principal.clone(),
                action.clone(),
                resource.clone(),
                ctx,
                Some(&self.schema),
            )
            .ok()
        });
        let Some(request) = request else {
            return deny(
                "invalid-request",
                "R3",
                "the request does not fit the schema".into(),
            );
        };
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &self.entities);
        if let Some(err) = response.diagnostics().errors().next() {
            return deny(
                "evaluation-error",
                "R3",
                format!("policy evaluation failed, denied by default: {err}"),
            );
        }
        let mut reasons: Vec<Reason> = response
            .diagnostics()
            .reason()
            .map(|id| {
                let (rule, message) = self
                    .reasons
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| ("R3".into(), "policy".into()));
                Reason {
                    policy: id.to_string(),
                    rule,
                    message,
                }
            })
            .collect();
        reasons.sort_by(|a, b| a.policy.cmp(&b.policy));
        match response.decision() {
            CedarDecision::Allow => Decision {
                effect: Effect::Allow,
                reasons,
            },
            CedarDecision::Deny if reasons.is_empty() => deny(
                "default-deny",
                "R3",
                format!(
                    "no policy permits this: the purpose is not compatible with the category (matrix cell {})",
                    tax.cell(req.purpose, req.category).letter()
                ),
            ),
            CedarDecision::Deny => Decision {
                effect: Effect::Deny,
                reasons,
            },
        }
    }
}

fn deny(policy: &str, rule: &str, message: String) -> Decision {
    Decision {
        effect: Effect::Deny,
        reasons: vec![Reason {
            policy: policy.into(),
            rule: rule.into(),
            message,
        }],
    }
}
