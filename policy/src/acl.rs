//! Authorization with Kafka's ACL semantics over a casbin model, plus RBAC role bindings.
//!
//! Every ACL binding and every permission a role binding grants becomes one casbin policy
//! line `p = sub, host, rtype, name, pattern, op, eft, rule`; the request is
//! `r = sub, host, rtype, name, op`; the effect is casbin's
//! `some(where (p.eft == allow)) && !some(where (p.eft == deny))` — DENY wins, and without a
//! matching ALLOW the answer is no. The matcher ([`MODEL`]) uses two custom functions:
//! `nameMatch` (LITERAL equality, LITERAL `*` wildcard, PREFIXED `starts_with`) and `opMatch`
//! (ALL matches every operation; an ALLOW of READ, WRITE, DELETE or ALTER implies DESCRIBE and
//! an ALLOW of ALTER_CONFIGS implies DESCRIBE_CONFIGS, as in Kafka's StandardAuthorizer;
//! implications never apply to DENY). `User:*` matches every principal and host `*` every
//! address.
//!
//! Super users are allowed everything (the caller keeps denying internal topics). Decisions
//! are cached per (principal, host, resource type, name, operation) and the cache is cleared on
//! every change; [`Authorizer::generation`] ticks with every change so callers can keep their
//! own per-connection caches. Next to casbin a native copy of the rules explains each decision
//! (which binding decided, for the audit trail) and cross-checks casbin: if the two ever
//! disagree the request is denied and an error is logged.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll, Waker};

use casbin::function_map::OperatorFunction;
use casbin::rhai::Dynamic;
use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter};
use serde::{Deserialize, Serialize};
use tracing::error;

use crate::principal::Principal;

/// The casbin model behind [`Authorizer`].
pub const MODEL: &str = r#"
[request_definition]
r = sub, host, rtype, name, op

[policy_definition]
p = sub, host, rtype, name, pattern, op, eft, rule

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = (p.sub == r.sub || p.sub == "User:*") && (p.host == r.host || p.host == "*") && (p.rtype == r.rtype || p.rtype == "*") && nameMatch(r.name, p.name, p.pattern) && opMatch(r.op, p.op, p.eft)
"#;

/// The only name of the CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// Most cached decisions before the cache is dropped and refilled.
const MAX_CACHED_DECISIONS: usize = 100_000;

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $code:expr, $text:expr;)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($(#[$vm])* $var,)*
        }

        impl $name {
            /// From Kafka's wire code.
            pub fn from_i8(code: i8) -> Option<Self> {
                match code {
                    $($code => Some(Self::$var),)*
                    _ => None,
                }
            }

            /// Kafka's wire code.
            pub fn as_i8(self) -> i8 {
                match self {
                    $(Self::$var => $code,)*
                }
            }

            /// Kafka's name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$var => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

wire_enum!(
    /// Kafka's `ResourceType` (plus our `Subject`, code 100, never on the Kafka wire).
    ResourceType {
        /// Filters only.
        Any = 1, "Any";
        /// A topic.
        Topic = 2, "Topic";
        /// A consumer group.
        Group = 3, "Group";
        /// The cluster (`kafka-cluster`).
        Cluster = 4, "Cluster";
        /// A transactional id.
        TransactionalId = 5, "TransactionalId";
        /// A delegation token.
        DelegationToken = 6, "DelegationToken";
        /// A user (quotas, SCRAM credentials).
        User = 7, "User";
        /// A schema-registry subject (Gatehouse only).
        Subject = 100, "Subject";
    }
);

wire_enum!(
    /// Kafka's `PatternType`.
    PatternType {
        /// Filters only: any pattern type, exact name.
        Any = 1, "ANY";
        /// Filters only: every binding that would apply to the name.
        Match = 2, "MATCH";
        /// The exact name (`*` = every name).
        Literal = 3, "LITERAL";
        /// Every name starting with the given prefix.
        Prefixed = 4, "PREFIXED";
    }
);

wire_enum!(
    /// Kafka's `AclOperation`.
    Operation {
        /// Filters only.
        Any = 1, "ANY";
        /// Every operation.
        All = 2, "ALL";
        /// Read.
        Read = 3, "READ";
        /// Write.
        Write = 4, "WRITE";
        /// Create.
        Create = 5, "CREATE";
        /// Delete.
        Delete = 6, "DELETE";
        /// Alter.
        Alter = 7, "ALTER";
        /// Describe.
        Describe = 8, "DESCRIBE";
        /// Inter-broker actions.
        ClusterAction = 9, "CLUSTER_ACTION";
        /// Describe configs.
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        /// Alter configs.
        AlterConfigs = 11, "ALTER_CONFIGS";
        /// Idempotent produce.
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
    }
);

wire_enum!(
    /// Kafka's `AclPermissionType`.
    Permission {
        /// Filters only.
        Any = 1, "ANY";
        /// Deny (wins over allow).
        Deny = 2, "DENY";
        /// Allow.
        Allow = 3, "ALLOW";
    }
);

impl Operation {
    /// Whether an ALLOW of `self` also allows `requested` (Kafka's implied operations).
    pub fn allow_implies(self, requested: Operation) -> bool {
        use Operation::*;
        self == requested
            || self == All
            || (requested == Describe && matches!(self, Read | Write | Delete | Alter))
            || (requested == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY of `self` denies `requested` (no implications).
    pub fn deny_covers(self, requested: Operation) -> bool {
        self == requested || self == Operation::All
    }
}

/// One ACL: who may (not) do what on which resources, from where.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    /// `User:alice` or `User:*`.
    pub principal: String,
    /// `*` or an IP address.
    pub host: String,
    /// The resource type (not `Any`).
    pub resource_type: ResourceType,
    /// The resource name or prefix (`*` with LITERAL = every resource).
    pub resource_name: String,
    /// `Literal` or `Prefixed`.
    pub pattern_type: PatternType,
    /// The operation (not `Any`).
    pub operation: Operation,
    /// `Allow` or `Deny`.
    pub permission: Permission,
}

impl fmt::Display for AclBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}:{} ({})",
            self.permission,
            self.principal,
            self.operation,
            self.resource_type,
            self.resource_name,
            self.pattern_type
        )?;
        if self.host != "*" {
            write!(f, " from {}", self.host)?;
        }
        Ok(())
    }
}

/// A DescribeAcls / DeleteAcls filter, with Kafka's filter semantics.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclFilter {
    /// `None`: any principal.
    pub principal: Option<String>,
    /// `None`: any host.
    pub host: Option<String>,
    /// `Any` or a type.
    pub resource_type: ResourceType,
    /// `None`: any name.
    pub resource_name: Option<String>,
    /// `Any` (exact name), `Match` (bindings that apply to the name), `Literal`, `Prefixed`.
    pub pattern_type: PatternType,
    /// `Any` or an operation.
    pub operation: Operation,
    /// `Any` or a permission.
    pub permission: Permission,
}

impl AclFilter {
    /// Matches every binding.
    pub fn any() -> Self {
        Self {
            principal: None,
            host: None,
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            operation: Operation::Any,
            permission: Permission::Any,
        }
    }

    /// Matches exactly `b`.
    pub fn exact(b: &AclBinding) -> Self {
        Self {
            principal: Some(b.principal.clone()),
            host: Some(b.host.clone()),
            resource_type: b.resource_type,
            resource_name: Some(b.resource_name.clone()),
            pattern_type: b.pattern_type,
            operation: b.operation,
            permission: b.permission,
        }
    }

    /// Kafka's `AclBindingFilter.matches`.
    pub fn matches(&self, b: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != b.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != b.pattern_type
        {
            return false;
        }
        if let Some(name) = &self.resource_name {
            let ok = match self.pattern_type {
                PatternType::Match => match b.pattern_type {
                    PatternType::Literal => *name == b.resource_name || b.resource_name == "*",
                    PatternType::Prefixed => name.starts_with(&b.resource_name),
                    PatternType::Any | PatternType::Match => false,
                },
                _ => *name == b.resource_name,
            };
            if !ok {
                return false;
            }
        }
        self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == Operation::Any || self.operation == b.operation)
            && (self.permission == Permission::Any || self.permission == b.permission)
    }
}

/// A role granted to a principal on a resource scope (Confluent-style RBAC). A binding on the
/// `Cluster` resource applies to every resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoleBinding {
    /// `User:alice` or `User:*`.
    pub principal: String,
    /// One of [`ROLES`].
    pub role: String,
    /// The scope's resource type.
    pub resource_type: ResourceType,
    /// The scope's name or prefix.
    pub resource_name: String,
    /// `Literal` or `Prefixed`.
    pub pattern_type: PatternType,
}

/// Where a role's permission applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grant {
    /// Only on resources of this type.
    Type(ResourceType, Operation),
    /// On the bound resource, whatever its type.
    Bound(Operation),
}

/// The built-in roles.
pub const ROLES: [&str; 5] = [
    "developer-read",
    "developer-write",
    "resource-owner",
    "auditor",
    "plaintext-reader",
];

fn role_grants(role: &str) -> Option<&'static [Grant]> {
    use Grant::*;
    use Operation::*;
    use ResourceType::{Cluster, Group, Subject, Topic};
    Some(match role {
        "developer-read" => &[
            Type(Topic, Read),
            Type(Topic, Describe),
            Type(Group, Read),
            Type(Group, Describe),
            Type(Subject, Read),
            Type(Subject, Describe),
        ],
        "developer-write" => &[
            Type(Topic, Write),
            Type(Topic, Describe),
            Type(Topic, Create),
            Type(Subject, Write),
        ],
        "resource-owner" => &[Bound(All)],
        "auditor" => &[
            Type(Cluster, Describe),
            Bound(Describe),
            Bound(DescribeConfigs),
        ],
        "plaintext-reader" => &[],
        _ => return None,
    })
}

/// The outcome of [`Authorizer::authorize`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the operation is allowed.
    pub allowed: bool,
    /// What decided, for the audit event: `super-user`, the deciding binding, or `None` when
    /// nothing matched (denied by default).
    pub matched: Option<String>,
}

/// A binding that took part in an explained decision ([`Authorizer::explain`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MatchedBinding {
    /// `acl` (an ACL binding), `role` (a permission granted by a role binding) or
    /// `super-user`.
    pub source: &'static str,
    /// The principal the binding names (`User:*` for everyone).
    pub principal: String,
    /// `*` or the client address the binding is limited to.
    pub host: String,
    /// The resource type the permission covers (Kafka's name, `Topic`); `*` for every type
    /// (a role bound on the cluster).
    pub resource_type: String,
    /// The resource name or prefix (`*` with LITERAL: every resource).
    pub resource_name: String,
    /// `LITERAL` or `PREFIXED`.
    pub pattern_type: PatternType,
    /// The operation the binding allows or denies (`ALL`: every operation).
    pub operation: Operation,
    /// `ALLOW` or `DENY`.
    pub permission: Permission,
    /// The role, for source `role`.
    pub role: Option<String>,
    /// The role binding's scope (`Topic:orders (PREFIXED)`), for source `role`.
    pub scope: Option<String>,
    /// The rule as the audit trail names it (`matchedRule`).
    pub rule: String,
}

/// Why [`Authorizer::explain`] decided as it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The decision, exactly as [`Authorizer::authorize`] makes it.
    pub allowed: bool,
    /// One sentence: which binding decided, or that none allows the operation.
    pub reason: String,
    /// The bindings that decided: every matching DENY when one matched (DENY wins), else
    /// every matching ALLOW; empty when denied by default.
    pub matched: Vec<MatchedBinding>,
    /// ALLOW bindings that matched too but lost to a DENY.
    pub overridden: Vec<MatchedBinding>,
    /// How many bindings could apply to the principal and resource type (the principal's own
    /// and `User:*`'s), i.e. were evaluated.
    pub considered: usize,
    /// The principal is a super user (no binding is consulted).
    pub super_user: bool,
}

/// Why a binding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// The binding is not valid (Kafka's INVALID_REQUEST).
    #[error("invalid binding: {0}")]
    Invalid(String),
    /// The casbin model could not be built.
    #[error("authorization model: {0}")]
    Model(String),
}

/// One casbin policy line, mirrored natively.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    principal: String,
    host: String,
    /// `None`: every type.
    rtype: Option<ResourceType>,
    name: String,
    pattern: PatternType,
    op: Operation,
    allow: bool,
    label: String,
    /// The binding this rule comes from (not part of the casbin line).
    origin: Origin,
}

/// Where a [`Rule`] comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    Acl(AclBinding),
    Role(RoleBinding),
}

impl Rule {
    fn line(&self) -> Vec<String> {
        vec![
            self.principal.clone(),
            self.host.clone(),
            self.rtype
                .map_or_else(|| "*".to_string(), |t| t.as_i8().to_string()),
            self.name.clone(),
            pattern_code(self.pattern).to_string(),
            self.op.as_i8().to_string(),
            if self.allow { "allow" } else { "deny" }.to_string(),
            self.label.clone(),
        ]
    }

    fn name_matches(&self, name: &str) -> bool {
        name_match(name, &self.name, self.pattern)
    }

    fn op_matches(&self, op: Operation) -> bool {
        if self.allow {
            self.op.allow_implies(op)
        } else {
            self.op.deny_covers(op)
        }
    }

    fn subject_matches(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == "*" || self.host == host)
    }

    fn matches(
        &self,
        principal: &str,
        host: &str,
        rtype: ResourceType,
        name: &str,
        op: Operation,
    ) -> bool {
        self.subject_matches(principal, host)
            && self.rtype.is_none_or(|t| t == rtype)
            && self.name_matches(name)
            && self.op_matches(op)
    }
}

fn pattern_code(p: PatternType) -> &'static str {
    if p == PatternType::Prefixed { "P" } else { "L" }
}

fn name_match(name: &str, pattern_name: &str, pattern: PatternType) -> bool {
    match pattern {
        PatternType::Prefixed => name.starts_with(pattern_name),
        _ => pattern_name == "*" || pattern_name == name,
    }
}

fn acl_rule(b: &AclBinding) -> Rule {
    Rule {
        principal: b.principal.clone(),
        host: b.host.clone(),
        rtype: Some(b.resource_type),
        name: b.resource_name.clone(),
        pattern: b.pattern_type,
        op: b.operation,
        allow: b.permission == Permission::Allow,
        label: b.to_string(),
        origin: Origin::Acl(b.clone()),
    }
}

fn role_rules(b: &RoleBinding) -> Vec<Rule> {
    let Some(grants) = role_grants(&b.role) else {
        return Vec::new();
    };
    let cluster_scope = b.resource_type == ResourceType::Cluster;
    let mut out = Vec::new();
    for g in grants {
        let (rtype, op) = match (*g, cluster_scope) {
            (Grant::Type(t, op), true) => (Some(t), op),
            (Grant::Bound(op), true) => (None, op),
            (Grant::Type(t, op), false) if t == b.resource_type => (Some(t), op),
            (Grant::Type(..), false) => continue,
            (Grant::Bound(op), false) => (Some(b.resource_type), op),
        };
        let (name, pattern) = if cluster_scope {
            ("*".to_string(), PatternType::Literal)
        } else {
            (b.resource_name.clone(), b.pattern_type)
        };
        let what = rtype.map_or_else(|| "*".to_string(), |t| t.to_string());
        out.push(Rule {
            principal: b.principal.clone(),
            host: "*".to_string(),
            rtype,
            label: format!(
                "ALLOW {} {} {}:{} ({}) via role {} on {}:{} ({})",
                b.principal,
                op,
                what,
                name,
                pattern,
                b.role,
                b.resource_type,
                b.resource_name,
                b.pattern_type
            ),
            name,
            pattern,
            op,
            allow: true,
            origin: Origin::Role(b.clone()),
        });
    }
    out
}

fn matched_binding(r: &Rule) -> MatchedBinding {
    let (source, role, scope) = match &r.origin {
        Origin::Acl(_) => ("acl", None, None),
        Origin::Role(b) => (
            "role",
            Some(b.role.clone()),
            Some(format!(
                "{}:{} ({})",
                b.resource_type, b.resource_name, b.pattern_type
            )),
        ),
    };
    MatchedBinding {
        source,
        principal: r.principal.clone(),
        host: r.host.clone(),
        resource_type: r
            .rtype
            .map_or_else(|| "*".to_string(), |t| t.name().to_string()),
        resource_name: r.name.clone(),
        pattern_type: r.pattern,
        operation: r.op,
        permission: if r.allow {
            Permission::Allow
        } else {
            Permission::Deny
        },
        role,
        scope,
        rule: r.label.clone(),
    }
}

fn canonical_host(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

fn validate_scope(
    principal: &str,
    resource_type: ResourceType,
    name: &str,
    pattern: PatternType,
) -> Result<(), AclError> {
    let invalid = |why: String| Err(AclError::Invalid(why));
    if Principal::parse(principal).is_none() {
        return invalid(format!(
            "principal '{principal}' is not of the form Type:name"
        ));
    }
    if resource_type == ResourceType::Any {
        return invalid("resource type ANY is only valid in filters".into());
    }
    if !matches!(pattern, PatternType::Literal | PatternType::Prefixed) {
        return invalid(format!("pattern type {pattern} is only valid in filters"));
    }
    if name.is_empty() {
        return invalid("resource name must not be empty".into());
    }
    if resource_type == ResourceType::Cluster && name != CLUSTER_NAME {
        return invalid(format!(
            "the only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        ));
    }
    if resource_type == ResourceType::Cluster && pattern != PatternType::Literal {
        return invalid("CLUSTER bindings must be LITERAL".into());
    }
    Ok(())
}

/// Checks a binding for [`Authorizer::create_acls`] and returns it with a canonical host.
fn validate_acl(mut b: AclBinding) -> Result<AclBinding, AclError> {
    validate_scope(
        &b.principal,
        b.resource_type,
        &b.resource_name,
        b.pattern_type,
    )?;
    if b.operation == Operation::Any {
        return Err(AclError::Invalid(
            "operation ANY is only valid in filters".into(),
        ));
    }
    if b.permission == Permission::Any {
        return Err(AclError::Invalid(
            "permission ANY is only valid in filters".into(),
        ));
    }
    if b.host != "*" {
        match b.host.parse::<IpAddr>() {
            Ok(ip) => b.host = canonical_host(ip),
            Err(_) => {
                return Err(AclError::Invalid(format!(
                    "host '{}' is neither * nor an IP address",
                    b.host
                )));
            }
        }
    }
    Ok(b)
}

/// Drives an always-ready future (casbin's in-memory constructors) to completion.
fn ready<F: Future>(f: F) -> Result<F::Output, AclError> {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Ok(v);
        }
    }
    Err(AclError::Model("casbin set-up did not complete".into()))
}

fn dyn_str(d: &Dynamic) -> String {
    casbin::function_map::dynamic_to_str(d).into_owned()
}

fn name_match_fn(name: Dynamic, pattern_name: Dynamic, pattern: Dynamic) -> Dynamic {
    let pattern = if dyn_str(&pattern) == "P" {
        PatternType::Prefixed
    } else {
        PatternType::Literal
    };
    name_match(&dyn_str(&name), &dyn_str(&pattern_name), pattern).into()
}

fn op_match_fn(requested: Dynamic, granted: Dynamic, effect: Dynamic) -> Dynamic {
    let op = |d: &Dynamic| dyn_str(d).parse::<i8>().ok().and_then(Operation::from_i8);
    let (Some(requested), Some(granted)) = (op(&requested), op(&granted)) else {
        return false.into();
    };
    if dyn_str(&effect) == "allow" {
        granted.allow_implies(requested).into()
    } else {
        granted.deny_covers(requested).into()
    }
}

/// Resource types a type-less rule (a cluster-scoped role) applies to.
const ALL_TYPES: [ResourceType; 7] = [
    ResourceType::Topic,
    ResourceType::Group,
    ResourceType::Cluster,
    ResourceType::TransactionalId,
    ResourceType::DelegationToken,
    ResourceType::User,
    ResourceType::Subject,
];

/// The wildcard principal.
const ANY_PRINCIPAL: &str = "User:*";

/// One casbin enforcer over the rules that can apply to one (principal, resource type):
/// the principal's own rules plus the `User:*` rules. A request evaluates only its shard, so
/// the cost of a cache miss grows with the rules of that principal, not of the whole cluster.
struct Shard {
    enforcer: Enforcer,
    rules: BTreeMap<Vec<String>, Rule>,
}

impl Shard {
    fn new(template: &DefaultModel) -> Result<Self, AclError> {
        let mut enforcer = ready(Enforcer::new(template.clone(), MemoryAdapter::default()))?
            .map_err(|e| AclError::Model(e.to_string()))?;
        enforcer.add_function("nameMatch", OperatorFunction::Arg3(name_match_fn));
        enforcer.add_function("opMatch", OperatorFunction::Arg3(op_match_fn));
        enforcer.enable_auto_save(false);
        Ok(Self {
            enforcer,
            rules: BTreeMap::new(),
        })
    }

    fn add(&mut self, line: &[String], rule: &Rule) {
        if self.rules.contains_key(line) {
            return;
        }
        self.enforcer
            .get_mut_model()
            .add_policy("p", "p", line.to_vec());
        self.rules.insert(line.to_vec(), rule.clone());
    }

    fn remove(&mut self, line: &[String]) {
        if self.rules.remove(line).is_some() {
            self.enforcer
                .get_mut_model()
                .remove_policy("p", "p", line.to_vec());
        }
    }
}

struct State {
    acls: BTreeSet<AclBinding>,
    roles: BTreeSet<RoleBinding>,
    /// Every casbin policy line → its rule.
    rules: BTreeMap<Vec<String>, Rule>,
    /// (principal, resource type) → the enforcer over the rules that can apply.
    shards: HashMap<(String, ResourceType), Shard>,
    template: DefaultModel,
}

impl State {
    fn types(rule: &Rule) -> Vec<ResourceType> {
        rule.rtype.map_or_else(|| ALL_TYPES.to_vec(), |t| vec![t])
    }

    /// The shard of (principal, rtype), created with the wildcard rules if missing.
    fn shard(&mut self, principal: &str, rtype: ResourceType) -> Result<&mut Shard, AclError> {
        let key = (principal.to_string(), rtype);
        if !self.shards.contains_key(&key) {
            let mut shard = Shard::new(&self.template)?;
            for (line, rule) in &self.rules {
                if rule.principal == ANY_PRINCIPAL && rule.rtype.is_none_or(|t| t == rtype) {
                    shard.add(line, rule);
                }
            }
            self.shards.insert(key.clone(), shard);
        }
        self.shards
            .get_mut(&key)
            .ok_or_else(|| AclError::Model("shard vanished".into()))
    }

    fn add_rule(&mut self, rule: Rule) -> Result<(), AclError> {
        let line = rule.line();
        if self.rules.contains_key(&line) {
            return Ok(());
        }
        for t in Self::types(&rule) {
            self.shard(&rule.principal, t)?;
            if rule.principal == ANY_PRINCIPAL {
                for ((_, st), shard) in self.shards.iter_mut() {
                    if *st == t {
                        shard.add(&line, &rule);
                    }
                }
            } else if let Some(shard) = self.shards.get_mut(&(rule.principal.clone(), t)) {
                shard.add(&line, &rule);
            }
        }
        self.rules.insert(line, rule);
        Ok(())
    }

    fn remove_rule(&mut self, rule: &Rule) {
        let line = rule.line();
        if self.rules.remove(&line).is_none() {
            return;
        }
        for t in Self::types(rule) {
            for ((p, st), shard) in self.shards.iter_mut() {
                if *st == t && (rule.principal == ANY_PRINCIPAL || *p == rule.principal) {
                    shard.remove(&line);
                }
            }
        }
        // Drop shards left with only wildcard rules (the wildcard shard itself stays).
        self.shards.retain(|(p, _), shard| {
            p == ANY_PRINCIPAL || shard.rules.values().any(|r| r.principal == *p)
        });
    }

    /// The shard deciding for (principal, rtype).
    fn shard_for(&self, principal: &str, rtype: ResourceType) -> Option<&Shard> {
        self.shards
            .get(&(principal.to_string(), rtype))
            .or_else(|| self.shards.get(&(ANY_PRINCIPAL.to_string(), rtype)))
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    principal: String,
    host: IpAddr,
    rtype: ResourceType,
    name: String,
    op: Operation,
}

struct Inner {
    super_users: HashSet<String>,
    state: RwLock<State>,
    cache: RwLock<HashMap<u64, Vec<(CacheKey, Decision)>>>,
    hasher: RandomState,
    generation: AtomicU64,
}

/// Kafka-semantics authorizer with RBAC roles. Cloning is cheap; clones share state.
#[derive(Clone)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("super_users", &self.inner.super_users.len())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Authorizer {
    /// An authorizer with no bindings (everything denied except to `super_users`).
    pub fn new(super_users: Vec<Principal>) -> Result<Self, AclError> {
        let template =
            ready(DefaultModel::from_str(MODEL))?.map_err(|e| AclError::Model(e.to_string()))?;
        // Build one shard up front so a broken model fails here, not on first use.
        Shard::new(&template)?;
        Ok(Self {
            inner: Arc::new(Inner {
                super_users: super_users.iter().map(ToString::to_string).collect(),
                state: RwLock::new(State {
                    acls: BTreeSet::new(),
                    roles: BTreeSet::new(),
                    rules: BTreeMap::new(),
                    shards: HashMap::new(),
                    template,
                }),
                cache: RwLock::new(HashMap::new()),
                hasher: RandomState::new(),
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// Whether `principal` is a configured super user.
    pub fn is_super_user(&self, principal: &Principal) -> bool {
        self.inner.super_users.contains(&principal.to_string())
    }

    /// Ticks on every change of bindings.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Call with the state write lock held, after a change.
    fn changed(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        write(&self.inner.cache).clear();
    }

    fn key_hash(
        &self,
        principal: &Principal,
        host: IpAddr,
        rtype: ResourceType,
        name: &str,
        op: Operation,
    ) -> u64 {
        let mut h = self.inner.hasher.build_hasher();
        principal.kind.hash(&mut h);
        principal.name.hash(&mut h);
        host.hash(&mut h);
        rtype.hash(&mut h);
        name.hash(&mut h);
        op.hash(&mut h);
        h.finish()
    }

    /// Decides whether `principal` connected from `host` may do `op` on the resource.
    pub fn authorize(
        &self,
        principal: &Principal,
        host: IpAddr,
        resource_type: ResourceType,
        name: &str,
        op: Operation,
    ) -> Decision {
        if self.is_super_user(principal) {
            return Decision {
                allowed: true,
                matched: Some("super-user".to_string()),
            };
        }
        let host = host.to_canonical();
        let hash = self.key_hash(principal, host, resource_type, name, op);
        let hit = |k: &CacheKey| {
            k.host == host
                && k.rtype == resource_type
                && k.op == op
                && k.name == name
                && k.principal.len() == principal.kind.len() + 1 + principal.name.len()
                && k.principal.starts_with(principal.kind.as_str())
                && k.principal.as_bytes().get(principal.kind.len()) == Some(&b':')
                && k.principal.ends_with(principal.name.as_str())
        };
        if let Some(bucket) = read(&self.inner.cache).get(&hash)
            && let Some((_, d)) = bucket.iter().find(|(k, _)| hit(k))
        {
            return d.clone();
        }
        let principal_text = principal.to_string();
        let (decision, generation) = {
            let state = read(&self.inner.state);
            let generation = self.generation();
            (
                self.decide(&state, &principal_text, host, resource_type, name, op),
                generation,
            )
        };
        let mut cache = write(&self.inner.cache);
        if self.generation() == generation {
            if cache.len() >= MAX_CACHED_DECISIONS {
                cache.clear();
            }
            cache.entry(hash).or_default().push((
                CacheKey {
                    principal: principal_text,
                    host,
                    rtype: resource_type,
                    name: name.to_string(),
                    op,
                },
                decision.clone(),
            ));
        }
        decision
    }

    fn decide(
        &self,
        state: &State,
        principal: &str,
        host: IpAddr,
        rtype: ResourceType,
        name: &str,
        op: Operation,
    ) -> Decision {
        let Some(shard) = state.shard_for(principal, rtype) else {
            return Decision {
                allowed: false,
                matched: None,
            };
        };
        let host_text = host.to_string();
        let request = vec![
            principal.to_string(),
            host_text.clone(),
            rtype.as_i8().to_string(),
            name.to_string(),
            op.as_i8().to_string(),
        ];
        let casbin = match shard.enforcer.enforce(request) {
            Ok(v) => v,
            Err(e) => {
                error!(error = %e, "casbin enforcement failed; denying");
                return Decision {
                    allowed: false,
                    matched: Some("error".to_string()),
                };
            }
        };
        let mut deny = None;
        let mut allow = None;
        for rule in shard.rules.values() {
            if rule.matches(principal, &host_text, rtype, name, op) {
                if rule.allow {
                    allow.get_or_insert(rule);
                } else {
                    deny = Some(rule);
                    break;
                }
            }
        }
        let native = deny.is_none() && allow.is_some();
        if native != casbin {
            error!(
                principal,
                resource_type = %rtype,
                resource = name,
                operation = %op,
                casbin,
                native,
                "authorization model and rule index disagree; denying"
            );
            return Decision {
                allowed: false,
                matched: Some("inconsistent".to_string()),
            };
        }
        Decision {
            allowed: native,
            matched: deny.or(allow).map(|r| r.label.clone()),
        }
    }

    /// Explains the decision [`Authorizer::authorize`] makes for the same arguments: the
    /// decision itself (casbin with the native cross-check, without the decision cache), the
    /// binding(s) that decided — a DENY wins over every ALLOW, and no matching ALLOW means
    /// denied by default — and how many bindings were considered.
    pub fn explain(
        &self,
        principal: &Principal,
        host: IpAddr,
        resource_type: ResourceType,
        name: &str,
        op: Operation,
    ) -> Explanation {
        let principal_text = principal.to_string();
        let request = format!("{principal_text} {op} {resource_type}:{name}");
        if self.is_super_user(principal) {
            return Explanation {
                allowed: true,
                reason: format!(
                    "ALLOWED: {principal_text} is a super user (gateway.super_users), allowed every operation without consulting any binding"
                ),
                matched: vec![MatchedBinding {
                    source: "super-user",
                    principal: principal_text.clone(),
                    host: "*".to_string(),
                    resource_type: "*".to_string(),
                    resource_name: "*".to_string(),
                    pattern_type: PatternType::Literal,
                    operation: Operation::All,
                    permission: Permission::Allow,
                    role: None,
                    scope: None,
                    rule: "super-user".to_string(),
                }],
                overridden: Vec::new(),
                considered: 0,
                super_user: true,
            };
        }
        let host = host.to_canonical();
        let host_text = host.to_string();
        let state = read(&self.inner.state);
        let decision = self.decide(&state, &principal_text, host, resource_type, name, op);
        let shard = state.shard_for(&principal_text, resource_type);
        let considered = shard.map_or(0, |s| s.rules.len());
        let (mut denies, mut allows) = (Vec::new(), Vec::new());
        for rule in shard.iter().flat_map(|s| s.rules.values()) {
            if rule.matches(&principal_text, &host_text, resource_type, name, op) {
                if rule.allow {
                    allows.push(rule);
                } else {
                    denies.push(rule);
                }
            }
        }
        let listed = |rules: &[&Rule]| {
            rules
                .iter()
                .map(|r| r.label.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let (reason, matched, overridden) = if matches!(
            decision.matched.as_deref(),
            Some("inconsistent" | "error")
        ) {
            (
                format!(
                    "DENIED: the authorization model could not decide {request} consistently, so it is denied (see the gateway's log)"
                ),
                Vec::new(),
                Vec::new(),
            )
        } else if !denies.is_empty() {
            let mut reason = format!(
                "DENIED by the binding {} — a DENY wins over any ALLOW",
                listed(&denies)
            );
            if !allows.is_empty() {
                reason.push_str(&format!("; it overrides the matching {}", listed(&allows)));
            }
            (
                reason,
                denies.iter().copied().map(matched_binding).collect(),
                allows.iter().copied().map(matched_binding).collect(),
            )
        } else if let Some(first) = allows.first() {
            let mut reason = format!("ALLOWED by {}", listed(&allows));
            if first.op != op && first.op != Operation::All {
                reason.push_str(&format!(" ({} implies {op}, as in Kafka)", first.op));
            }
            (
                reason,
                allows.iter().copied().map(matched_binding).collect(),
                Vec::new(),
            )
        } else {
            (
                format!(
                    "DENIED by default: no binding allows {request} ({considered} binding{} considered)",
                    if considered == 1 { "" } else { "s" }
                ),
                Vec::new(),
                Vec::new(),
            )
        };
        Explanation {
            allowed: decision.allowed,
            reason,
            matched,
            overridden,
            considered,
            super_user: false,
        }
    }

    /// Whether `principal` may do `op` on at least one resource of `resource_type` (Kafka's
    /// `authorizeByResourceType`, used for "WRITE on any topic implies IDEMPOTENT_WRITE").
    pub fn allowed_any(
        &self,
        principal: &Principal,
        host: IpAddr,
        resource_type: ResourceType,
        op: Operation,
    ) -> bool {
        if self.is_super_user(principal) {
            return true;
        }
        let principal = principal.to_string();
        let host = host.to_canonical().to_string();
        let state = read(&self.inner.state);
        let Some(shard) = state.shard_for(&principal, resource_type) else {
            return false;
        };
        let relevant = shard.rules.values().filter(|r| {
            r.subject_matches(&principal, &host)
                && r.rtype.is_none_or(|t| t == resource_type)
                && r.op_matches(op)
        });
        let mut deny_literals = HashSet::new();
        let mut deny_prefixes = Vec::new();
        let mut allows = Vec::new();
        for r in relevant {
            match (r.allow, r.pattern) {
                (false, PatternType::Prefixed) => deny_prefixes.push(r.name.as_str()),
                (false, _) if r.name == "*" => return false,
                (false, _) => {
                    deny_literals.insert(r.name.as_str());
                }
                (true, _) => allows.push(r),
            }
        }
        allows.iter().any(|r| {
            let prefix_denied = deny_prefixes.iter().any(|d| r.name.starts_with(d));
            match r.pattern {
                PatternType::Prefixed => !prefix_denied,
                _ if r.name == "*" => true,
                _ => !prefix_denied && !deny_literals.contains(r.name.as_str()),
            }
        })
    }

    /// Whether `principal` (or `User:*`) holds `role` on the resource (a Cluster-scoped
    /// binding covers every resource). Super users get no implicit roles.
    pub fn has_role(
        &self,
        principal: &Principal,
        role: &str,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let principal = principal.to_string();
        read(&self.inner.state).roles.iter().any(|b| {
            b.role == role
                && (b.principal == principal || b.principal == "User:*")
                && (b.resource_type == ResourceType::Cluster
                    || (b.resource_type == resource_type
                        && name_match(name, &b.resource_name, b.pattern_type)))
        })
    }

    /// Adds bindings (Kafka's CreateAcls); one result per binding. Existing bindings are
    /// accepted again without change.
    pub fn create_acls(&self, bindings: Vec<AclBinding>) -> Vec<Result<(), AclError>> {
        let mut state = write(&self.inner.state);
        let mut changed = false;
        let out = bindings
            .into_iter()
            .map(|b| {
                let b = validate_acl(b)?;
                if state.acls.contains(&b) {
                    return Ok(());
                }
                state.add_rule(acl_rule(&b))?;
                state.acls.insert(b);
                changed = true;
                Ok(())
            })
            .collect();
        if changed {
            self.changed();
        }
        out
    }

    /// Validates a binding without adding it (what [`Authorizer::create_acls`] would store).
    pub fn validate_acl(&self, binding: AclBinding) -> Result<AclBinding, AclError> {
        validate_acl(binding)
    }

    /// Removes the bindings each filter matches (Kafka's DeleteAcls); per filter, what it
    /// deleted.
    pub fn delete_acls(&self, filters: &[AclFilter]) -> Vec<Vec<AclBinding>> {
        let mut state = write(&self.inner.state);
        let mut changed = false;
        let out = filters
            .iter()
            .map(|f| {
                let gone: Vec<AclBinding> = state
                    .acls
                    .iter()
                    .filter(|b| f.matches(b))
                    .cloned()
                    .collect();
                for b in &gone {
                    state.acls.remove(b);
                    state.remove_rule(&acl_rule(b));
                    changed = true;
                }
                gone
            })
            .collect();
        if changed {
            self.changed();
        }
        out
    }

    /// The bindings `filter` matches (Kafka's DescribeAcls), sorted.
    pub fn describe_acls(&self, filter: &AclFilter) -> Vec<AclBinding> {
        read(&self.inner.state)
            .acls
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect()
    }

    /// Validates a role binding without adding it.
    pub fn validate_role(&self, b: &RoleBinding) -> Result<(), AclError> {
        validate_scope(
            &b.principal,
            b.resource_type,
            &b.resource_name,
            b.pattern_type,
        )?;
        if role_grants(&b.role).is_none() {
            return Err(AclError::Invalid(format!(
                "unknown role '{}'; roles are {ROLES:?}",
                b.role
            )));
        }
        Ok(())
    }

    /// Grants a role. Binding the same role twice is not an error.
    pub fn bind_role(&self, b: RoleBinding) -> Result<(), AclError> {
        self.validate_role(&b)?;
        let mut state = write(&self.inner.state);
        if state.roles.contains(&b) {
            return Ok(());
        }
        let mut result = Ok(());
        for r in role_rules(&b) {
            if let Err(e) = state.add_rule(r) {
                result = Err(e);
            }
        }
        state.roles.insert(b);
        self.changed();
        result
    }

    /// Revokes a role binding; whether it existed.
    pub fn unbind_role(&self, b: &RoleBinding) -> bool {
        let mut state = write(&self.inner.state);
        if !state.roles.remove(b) {
            return false;
        }
        for r in role_rules(b) {
            state.remove_rule(&r);
        }
        self.changed();
        true
    }

    /// Every role binding, sorted.
    pub fn role_bindings(&self) -> Vec<RoleBinding> {
        read(&self.inner.state).roles.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Instant;

    const HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

    fn acl(
        p: &str,
        t: ResourceType,
        n: &str,
        pt: PatternType,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            principal: p.into(),
            host: "*".into(),
            resource_type: t,
            resource_name: n.into(),
            pattern_type: pt,
            operation: op,
            permission: perm,
        }
    }

    fn alice() -> Principal {
        Principal::user("alice")
    }

    fn ok(a: &Authorizer, p: &Principal, t: ResourceType, n: &str, op: Operation) -> bool {
        a.authorize(p, HOST, t, n, op).allowed
    }

    use Operation::*;
    use PatternType::{Literal, Prefixed};
    use Permission::{Allow, Deny};
    use ResourceType::{Cluster, Group, Subject, Topic};

    #[test]
    fn codes_round_trip() {
        for c in -2..=120i8 {
            if let Some(t) = ResourceType::from_i8(c) {
                assert_eq!(t.as_i8(), c);
            }
            if let Some(o) = Operation::from_i8(c) {
                assert_eq!(o.as_i8(), c);
            }
        }
        assert_eq!(ResourceType::from_i8(100), Some(Subject));
        assert_eq!(Operation::from_i8(12), Some(IdempotentWrite));
        assert_eq!(PatternType::from_i8(4), Some(Prefixed));
        assert_eq!(Permission::from_i8(0), None);
        assert_eq!(
            serde_json::to_string(&TransactionalIdOp()).expect("json"),
            "\"TRANSACTIONAL_ID\""
        );
    }

    #[allow(non_snake_case)]
    fn TransactionalIdOp() -> ResourceType {
        ResourceType::TransactionalId
    }

    #[test]
    fn kafka_semantics() {
        let a = Authorizer::new(vec![Principal::user("admin")]).expect("new");
        // Deny by default.
        assert!(!ok(&a, &alice(), Topic, "orders", Read));
        assert_eq!(
            a.authorize(&alice(), HOST, Topic, "orders", Read).matched,
            None
        );
        let g0 = a.generation();
        let r = a.create_acls(vec![
            acl("User:alice", Topic, "orders", Literal, Read, Allow),
            acl("User:alice", Topic, "pay-", Prefixed, Write, Allow),
            acl("User:*", Topic, "*", Literal, Describe, Allow),
            acl("User:alice", Topic, "pay-secret", Literal, All, Deny),
            acl("User:bob", Topic, "cfg", Literal, AlterConfigs, Allow),
        ]);
        assert!(r.iter().all(Result::is_ok));
        assert!(a.generation() > g0);
        let d = a.authorize(&alice(), HOST, Topic, "orders", Read);
        assert!(d.allowed);
        assert_eq!(
            d.matched.as_deref(),
            Some("ALLOW User:alice READ Topic:orders (LITERAL)")
        );
        assert!(!ok(&a, &alice(), Topic, "orders", Write));
        assert!(ok(&a, &alice(), Topic, "pay-in", Write));
        // WRITE implies DESCRIBE (and the wildcard allows it anyway).
        assert!(ok(&a, &alice(), Topic, "pay-in", Describe));
        // Deny wins, ALL covers every op.
        let d = a.authorize(&alice(), HOST, Topic, "pay-secret", Write);
        assert!(!d.allowed);
        assert_eq!(
            d.matched.as_deref(),
            Some("DENY User:alice ALL Topic:pay-secret (LITERAL)")
        );
        // User:* wildcard principal, literal * wildcard name.
        assert!(ok(&a, &Principal::user("carol"), Topic, "x", Describe));
        assert!(!ok(&a, &Principal::user("carol"), Topic, "x", Read));
        // ALTER_CONFIGS implies DESCRIBE_CONFIGS but not the reverse.
        let bob = Principal::user("bob");
        assert!(ok(&a, &bob, Topic, "cfg", DescribeConfigs));
        assert!(ok(&a, &bob, Topic, "cfg", AlterConfigs));
        assert!(!ok(&a, &bob, Topic, "cfg2", DescribeConfigs));
        // READ implies DESCRIBE but not WRITE; type matters.
        assert!(!ok(&a, &alice(), Group, "orders", Read));
        // Super user.
        let d = a.authorize(
            &Principal::user("admin"),
            HOST,
            Cluster,
            CLUSTER_NAME,
            Alter,
        );
        assert_eq!(d.matched.as_deref(), Some("super-user"));
    }

    #[test]
    fn deny_does_not_use_implications_and_hosts_match() {
        let a = Authorizer::new(vec![]).expect("new");
        let mut from_host = acl("User:alice", Topic, "t", Literal, All, Allow);
        from_host.host = "10.1.2.3".into();
        a.create_acls(vec![
            from_host,
            acl("User:alice", Topic, "t", Literal, Read, Deny),
        ]);
        assert!(!ok(&a, &alice(), Topic, "t", Read));
        // DENY READ does not deny DESCRIBE.
        assert!(ok(&a, &alice(), Topic, "t", Describe));
        let other = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));
        assert!(!a.authorize(&alice(), other, Topic, "t", Describe).allowed);
        // IPv4-mapped IPv6 addresses match their IPv4 form.
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert!(a.authorize(&alice(), mapped, Topic, "t", Describe).allowed);
    }

    #[test]
    fn validation() {
        let a = Authorizer::new(vec![]).expect("new");
        let bad = vec![
            acl("alice", Topic, "t", Literal, Read, Allow),
            acl("User:a", ResourceType::Any, "t", Literal, Read, Allow),
            acl("User:a", Topic, "t", PatternType::Match, Read, Allow),
            acl("User:a", Topic, "t", Literal, Operation::Any, Allow),
            acl("User:a", Topic, "t", Literal, Read, Permission::Any),
            acl("User:a", Topic, "", Literal, Read, Allow),
            acl("User:a", Cluster, "other", Literal, Alter, Allow),
            AclBinding {
                host: "not-an-ip".into(),
                ..acl("User:a", Topic, "t", Literal, Read, Allow)
            },
        ];
        let n = bad.len();
        let r = a.create_acls(bad);
        assert_eq!(r.len(), n);
        assert!(r.iter().all(Result::is_err), "{r:?}");
        assert_eq!(a.generation(), 0);
        assert!(
            a.create_acls(vec![acl(
                "User:a", Subject, "s-value", Literal, Read, Allow
            )])[0]
                .is_ok()
        );
    }

    #[test]
    fn filters_describe_and_delete() {
        let a = Authorizer::new(vec![]).expect("new");
        a.create_acls(vec![
            acl("User:a", Topic, "orders", Literal, Read, Allow),
            acl("User:a", Topic, "*", Literal, Describe, Allow),
            acl("User:a", Topic, "ord", Prefixed, Write, Allow),
            acl("User:b", Topic, "other", Literal, Read, Deny),
            acl("User:b", Group, "orders", Literal, Read, Allow),
        ]);
        let f = |t, n: Option<&str>, pt| AclFilter {
            resource_type: t,
            resource_name: n.map(str::to_string),
            pattern_type: pt,
            ..AclFilter::any()
        };
        assert_eq!(a.describe_acls(&AclFilter::any()).len(), 5);
        assert_eq!(
            a.describe_acls(&f(Topic, Some("orders"), PatternType::Any))
                .len(),
            1
        );
        assert_eq!(
            a.describe_acls(&f(Topic, Some("orders"), PatternType::Match))
                .len(),
            3
        );
        assert_eq!(
            a.describe_acls(&f(ResourceType::Any, Some("orders"), PatternType::Match))
                .len(),
            4
        );
        assert_eq!(a.describe_acls(&f(Topic, None, Prefixed)).len(), 1);
        let by_perm = AclFilter {
            permission: Deny,
            ..AclFilter::any()
        };
        assert_eq!(a.describe_acls(&by_perm).len(), 1);
        let g = a.generation();
        let deleted = a.delete_acls(&[f(Topic, None, Literal), f(Topic, None, Literal)]);
        assert_eq!(deleted[0].len(), 3);
        assert!(deleted[1].is_empty());
        assert!(a.generation() > g);
        assert_eq!(a.describe_acls(&AclFilter::any()).len(), 2);
        assert!(!ok(&a, &Principal::user("a"), Topic, "orders", Read));
    }

    #[test]
    fn allowed_any_follows_kafka() {
        let a = Authorizer::new(vec![]).expect("new");
        assert!(!a.allowed_any(&alice(), HOST, Topic, Write));
        a.create_acls(vec![acl(
            "User:alice",
            Topic,
            "pay-",
            Prefixed,
            Write,
            Allow,
        )]);
        assert!(a.allowed_any(&alice(), HOST, Topic, Write));
        assert!(!a.allowed_any(&alice(), HOST, Topic, Read));
        a.create_acls(vec![acl("User:alice", Topic, "pay", Prefixed, Write, Deny)]);
        assert!(!a.allowed_any(&alice(), HOST, Topic, Write));
        a.create_acls(vec![acl("User:alice", Topic, "x", Literal, Write, Allow)]);
        assert!(a.allowed_any(&alice(), HOST, Topic, Write));
        a.create_acls(vec![acl("User:*", Topic, "*", Literal, All, Deny)]);
        assert!(!a.allowed_any(&alice(), HOST, Topic, Write));
    }

    #[test]
    fn roles() {
        let a = Authorizer::new(vec![Principal::user("admin")]).expect("new");
        let rb = |p: &str, role: &str, t, n: &str, pt| RoleBinding {
            principal: p.into(),
            role: role.into(),
            resource_type: t,
            resource_name: n.into(),
            pattern_type: pt,
        };
        assert!(
            a.bind_role(rb("User:alice", "wizard", Topic, "t", Literal))
                .is_err()
        );
        a.bind_role(rb(
            "User:alice",
            "developer-read",
            Topic,
            "orders",
            Prefixed,
        ))
        .expect("bind");
        a.bind_role(rb("User:bob", "developer-write", Topic, "orders", Literal))
            .expect("bind");
        a.bind_role(rb("User:carol", "resource-owner", Group, "g1", Literal))
            .expect("bind");
        a.bind_role(rb("User:dave", "auditor", Cluster, CLUSTER_NAME, Literal))
            .expect("bind");
        a.bind_role(rb(
            "User:alice",
            "plaintext-reader",
            Topic,
            "orders",
            Literal,
        ))
        .expect("bind");
        let d = a.authorize(&alice(), HOST, Topic, "orders-eu", Read);
        assert!(d.allowed);
        assert!(
            d.matched
                .as_deref()
                .is_some_and(|m| m.contains("via role developer-read"))
        );
        assert!(!ok(&a, &alice(), Topic, "orders-eu", Write));
        assert!(!ok(&a, &alice(), Group, "orders-eu", Read));
        let bob = Principal::user("bob");
        assert!(ok(&a, &bob, Topic, "orders", Create));
        assert!(!ok(&a, &bob, Topic, "orders", Read));
        let carol = Principal::user("carol");
        assert!(ok(&a, &carol, Group, "g1", Delete));
        assert!(!ok(&a, &carol, Group, "g2", Read));
        let dave = Principal::user("dave");
        assert!(ok(&a, &dave, Cluster, CLUSTER_NAME, Describe));
        assert!(ok(&a, &dave, Topic, "anything", DescribeConfigs));
        assert!(ok(&a, &dave, Subject, "s", Describe));
        assert!(!ok(&a, &dave, Topic, "anything", Read));
        assert!(a.has_role(&alice(), "plaintext-reader", Topic, "orders"));
        assert!(!a.has_role(&alice(), "plaintext-reader", Topic, "orders2"));
        assert!(!a.has_role(
            &Principal::user("admin"),
            "plaintext-reader",
            Topic,
            "orders"
        ));
        assert!(a.has_role(&dave, "auditor", Topic, "x"));
        assert_eq!(a.role_bindings().len(), 5);
        assert!(a.unbind_role(&rb(
            "User:alice",
            "developer-read",
            Topic,
            "orders",
            Prefixed
        )));
        assert!(!a.unbind_role(&rb(
            "User:alice",
            "developer-read",
            Topic,
            "orders",
            Prefixed
        )));
        assert!(!ok(&a, &alice(), Topic, "orders-eu", Read));
    }

    #[test]
    fn cache_is_cleared_on_change() {
        let a = Authorizer::new(vec![]).expect("new");
        assert!(!ok(&a, &alice(), Topic, "t", Read));
        assert!(!ok(&a, &alice(), Topic, "t", Read));
        a.create_acls(vec![acl("User:alice", Topic, "t", Literal, Read, Allow)]);
        assert!(ok(&a, &alice(), Topic, "t", Read));
        // A principal whose kind/name split differs must not hit the same entry.
        let odd = Principal {
            kind: "User:al".into(),
            name: "ice".into(),
        };
        let _ = a.authorize(&odd, HOST, Topic, "t", Read);
        a.delete_acls(&[AclFilter::any()]);
        assert!(!ok(&a, &alice(), Topic, "t", Read));
    }

    #[test]
    fn wildcard_rules_reach_every_shard() {
        let a = Authorizer::new(vec![]).expect("new");
        a.create_acls(vec![acl("User:*", Topic, "shared", Literal, Read, Allow)]);
        assert!(ok(&a, &alice(), Topic, "shared", Read));
        // Alice gets her own shard; the wildcard rule must be in it, and later ones too.
        a.create_acls(vec![acl("User:alice", Topic, "mine", Literal, Read, Allow)]);
        a.create_acls(vec![acl("User:*", Topic, "later", Literal, Read, Allow)]);
        assert!(ok(&a, &alice(), Topic, "shared", Read));
        assert!(ok(&a, &alice(), Topic, "later", Read));
        assert!(ok(&a, &alice(), Topic, "mine", Read));
        a.create_acls(vec![acl("User:*", Topic, "mine", Literal, Read, Deny)]);
        assert!(!ok(&a, &alice(), Topic, "mine", Read));
        a.delete_acls(&[AclFilter {
            principal: Some("User:*".into()),
            ..AclFilter::any()
        }]);
        assert!(!ok(&a, &alice(), Topic, "shared", Read));
        assert!(ok(&a, &alice(), Topic, "mine", Read));
        a.delete_acls(&[AclFilter::any()]);
        assert!(!ok(&a, &alice(), Topic, "mine", Read));
        assert!(!a.allowed_any(&alice(), HOST, Topic, Read));
    }

    #[test]
    fn explain_says_which_binding_decided() {
        let a = Authorizer::new(vec![Principal::user("admin")]).expect("new");
        let bob = Principal::user("bob");
        // Deny by default, explained as such.
        let e = a.explain(&bob, HOST, Topic, "orders", Read);
        assert!(!e.allowed && !e.super_user);
        assert!(e.matched.is_empty() && e.overridden.is_empty());
        assert_eq!(e.considered, 0);
        assert!(
            e.reason
                .contains("no binding allows User:bob READ Topic:orders"),
            "{}",
            e.reason
        );
        a.create_acls(vec![
            acl("User:bob", Topic, "orders", Literal, Read, Allow),
            acl("User:bob", Topic, "pay-", Prefixed, All, Allow),
            acl("User:bob", Topic, "pay-secret", Literal, Write, Deny),
            acl("User:carol", Topic, "orders", Literal, Read, Allow),
        ]);
        // An ALLOW: the ACL binding with its pattern type, permission and source.
        let e = a.explain(&bob, HOST, Topic, "orders", Read);
        assert!(e.allowed);
        assert_eq!(e.matched.len(), 1);
        let m = &e.matched[0];
        assert_eq!(m.source, "acl");
        assert_eq!(m.principal, "User:bob");
        assert_eq!(m.resource_type, "Topic");
        assert_eq!(m.resource_name, "orders");
        assert_eq!(m.pattern_type, Literal);
        assert_eq!(m.operation, Read);
        assert_eq!(m.permission, Allow);
        assert_eq!(m.rule, "ALLOW User:bob READ Topic:orders (LITERAL)");
        assert_eq!(e.considered, 3, "bob's three bindings, not carol's");
        assert!(
            e.reason
                .starts_with("ALLOWED by ALLOW User:bob READ Topic:orders")
        );
        // Implied operations are named.
        let e = a.explain(&bob, HOST, Topic, "orders", Describe);
        assert!(e.allowed);
        assert!(e.reason.contains("READ implies DESCRIBE"), "{}", e.reason);
        // Prefixed ALLOW ALL, and a literal DENY that wins over it.
        let e = a.explain(&bob, HOST, Topic, "pay-in", Write);
        assert!(e.allowed);
        assert_eq!(e.matched[0].pattern_type, Prefixed);
        let e = a.explain(&bob, HOST, Topic, "pay-secret", Write);
        assert!(!e.allowed);
        assert_eq!(e.matched.len(), 1);
        assert_eq!(e.matched[0].permission, Deny);
        assert_eq!(e.matched[0].resource_name, "pay-secret");
        assert_eq!(e.overridden.len(), 1);
        assert_eq!(e.overridden[0].resource_name, "pay-");
        assert!(
            e.reason
                .contains("DENIED by the binding DENY User:bob WRITE Topic:pay-secret")
                && e.reason.contains("wins over any ALLOW")
                && e.reason
                    .contains("overrides the matching ALLOW User:bob ALL Topic:pay-"),
            "{}",
            e.reason
        );
        // A DENY does not use implications: DESCRIBE of pay-secret stays allowed.
        assert!(a.explain(&bob, HOST, Topic, "pay-secret", Describe).allowed);
        // Super users.
        let e = a.explain(
            &Principal::user("admin"),
            HOST,
            Cluster,
            CLUSTER_NAME,
            Alter,
        );
        assert!(e.allowed && e.super_user);
        assert_eq!(e.matched[0].source, "super-user");
        assert!(e.reason.contains("super user"));
    }

    #[test]
    fn explain_names_role_bindings() {
        let a = Authorizer::new(vec![]).expect("new");
        a.bind_role(RoleBinding {
            principal: "User:alice".into(),
            role: "developer-read".into(),
            resource_type: Topic,
            resource_name: "orders".into(),
            pattern_type: Prefixed,
        })
        .expect("bind");
        a.bind_role(RoleBinding {
            principal: "User:dave".into(),
            role: "auditor".into(),
            resource_type: Cluster,
            resource_name: CLUSTER_NAME.into(),
            pattern_type: Literal,
        })
        .expect("bind");
        let e = a.explain(&alice(), HOST, Topic, "orders-eu", Read);
        assert!(e.allowed);
        let m = &e.matched[0];
        assert_eq!(m.source, "role");
        assert_eq!(m.role.as_deref(), Some("developer-read"));
        assert_eq!(m.scope.as_deref(), Some("Topic:orders (PREFIXED)"));
        assert_eq!(m.pattern_type, Prefixed);
        assert!(e.reason.contains("via role developer-read"), "{}", e.reason);
        let e = a.explain(&alice(), HOST, Topic, "orders-eu", Write);
        assert!(!e.allowed && e.matched.is_empty());
        assert!(e.reason.contains("no binding allows"));
        // A cluster-scoped role covers every type: shown as `*`.
        let e = a.explain(&Principal::user("dave"), HOST, Topic, "x", DescribeConfigs);
        assert!(e.allowed);
        assert_eq!(e.matched[0].resource_type, "*");
        assert_eq!(e.matched[0].role.as_deref(), Some("auditor"));
        // A DENY ACL wins over a role's ALLOW.
        a.create_acls(vec![acl(
            "User:alice",
            Topic,
            "orders-eu",
            Literal,
            Read,
            Deny,
        )]);
        let e = a.explain(&alice(), HOST, Topic, "orders-eu", Read);
        assert!(!e.allowed);
        assert_eq!(e.matched[0].source, "acl");
        assert_eq!(e.overridden[0].source, "role");
    }

    #[test]
    fn explain_agrees_with_authorize() {
        let a = Authorizer::new(vec![Principal::user("root")]).expect("new");
        let mut from_host = acl("User:u1", Group, "g", Literal, Read, Allow);
        from_host.host = "10.1.2.3".into();
        a.create_acls(vec![
            acl("User:u1", Topic, "a", Literal, Read, Allow),
            acl("User:u1", Topic, "a", Literal, Write, Deny),
            acl("User:*", Topic, "pub-", Prefixed, Describe, Allow),
            acl("User:u2", Topic, "*", Literal, All, Allow),
            acl("User:u2", Topic, "secret", Prefixed, Read, Deny),
            acl(
                "User:*",
                Cluster,
                CLUSTER_NAME,
                Literal,
                IdempotentWrite,
                Allow,
            ),
            from_host,
        ]);
        a.bind_role(RoleBinding {
            principal: "User:u3".into(),
            role: "resource-owner".into(),
            resource_type: Group,
            resource_name: "team-".into(),
            pattern_type: Prefixed,
        })
        .expect("bind");
        let other: IpAddr = "10.9.9.9".parse().expect("ip");
        for p in ["u1", "u2", "u3", "u4", "root"] {
            let p = Principal::user(p);
            for (t, n) in [
                (Topic, "a"),
                (Topic, "pub-x"),
                (Topic, "secret-1"),
                (Group, "g"),
                (Group, "team-x"),
                (Cluster, CLUSTER_NAME),
            ] {
                for op in [Read, Write, Describe, Delete, AlterConfigs, IdempotentWrite] {
                    for h in [HOST, other] {
                        let d = a.authorize(&p, h, t, n, op);
                        let e = a.explain(&p, h, t, n, op);
                        assert_eq!(d.allowed, e.allowed, "{p} {op} {t}:{n} from {h}");
                        assert_eq!(e.allowed, !e.reason.starts_with("DENIED"), "{}", e.reason);
                        if !e.super_user {
                            assert_eq!(
                                d.matched.as_deref(),
                                e.matched.first().map(|m| m.rule.as_str()),
                                "{p} {op} {t}:{n} from {h}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Prints (does not assert) the cost of `authorize` with 1,000 bindings.
    #[test]
    fn authorize_cost_with_1000_bindings() {
        let a = Authorizer::new(vec![]).expect("new");
        let mut bindings = Vec::new();
        for i in 0..1000 {
            let (pt, name) = if i % 4 == 0 {
                (Prefixed, format!("team{i}-"))
            } else {
                (Literal, format!("topic-{i}"))
            };
            let perm = if i % 10 == 9 { Deny } else { Allow };
            bindings.push(acl(
                &format!("User:u{}", i % 50),
                Topic,
                &name,
                pt,
                Read,
                perm,
            ));
        }
        assert!(a.create_acls(bindings).iter().all(Result::is_ok));
        let users: Vec<Principal> = (0..50).map(|i| Principal::user(format!("u{i}"))).collect();
        let n = 200u32;
        let start = Instant::now();
        for i in 0..n {
            // Distinct keys each time: every call misses the cache.
            let name = format!("topic-{}", i * 5 % 1000);
            let _ = a.authorize(&users[(i % 50) as usize], HOST, Topic, &name, Read);
        }
        let uncached = start.elapsed() / n;
        let m = 100_000u32;
        let name = "topic-1";
        let _ = a.authorize(&users[1], HOST, Topic, name, Read);
        let start = Instant::now();
        for _ in 0..m {
            let d = a.authorize(&users[1], HOST, Topic, name, Read);
            std::hint::black_box(d);
        }
        let cached = start.elapsed() / m;
        // Worst case: all 1,000 bindings on one principal (one casbin shard).
        let b = Authorizer::new(vec![]).expect("new");
        let one: Vec<AclBinding> = (0..1000)
            .map(|i| {
                acl(
                    "User:u0",
                    Topic,
                    &format!("topic-{i}"),
                    Literal,
                    Read,
                    Allow,
                )
            })
            .collect();
        assert!(b.create_acls(one).iter().all(Result::is_ok));
        let k = 50u32;
        let start = Instant::now();
        for i in 0..k {
            let _ = b.authorize(&users[0], HOST, Topic, &format!("topic-{i}"), Read);
        }
        let one_shard = start.elapsed() / k;
        println!(
            "authorize with 1000 bindings: uncached {} ns (50 principals x 20 bindings), \
             uncached {} ns (1 principal x 1000 bindings), cached {} ns",
            uncached.as_nanos(),
            one_shard.as_nanos(),
            cached.as_nanos()
        );
    }
}
