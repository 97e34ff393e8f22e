//! Kafka's ACLs (KIP-11, KIP-290): bindings of a resource pattern (type, name, LITERAL or
//! PREFIXED) to an entry (principal, host, operation, ALLOW or DENY), the filters that
//! DescribeAcls and DeleteAcls match them with, and the decision of Kafka's StandardAuthorizer:
//! super users may do anything; a matching DENY wins over any ALLOW; DESCRIBE is implied by
//! READ, WRITE, DELETE and ALTER, DESCRIBE_CONFIGS by ALTER_CONFIGS; ALL matches every
//! operation, `User:*` every principal, `*` every host, and the LITERAL name `*` every resource
//! of its type; where no ACL names a resource at all, `allow.everyone.if.no.acl.found` decides.
//!
//! The bindings live in the cluster metadata; each image holds them indexed ([`Acls`]) so that a
//! check costs the ACLs of its resource, not all of them.

use std::collections::{BTreeMap, BTreeSet};

/// Defines an enum of Kafka codes with their names, both ways.
macro_rules! coded {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:expr, $text:expr;)* }) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code),* }
            }

            pub fn from_code(code: i8) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }

            /// Kafka's name (`TOPIC`, `PREFIXED`, `DESCRIBE_CONFIGS`, `ALLOW`).
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn from_name(text: &str) -> Option<$name> {
                let text = text.trim().to_ascii_uppercase().replace('-', "_");
                $name::ALL.iter().copied().find(|v| v.name() == text)
            }
        }
    };
}

coded!(
    /// What an ACL is about (Kafka's ResourceType; ANY only in filters).
    ResourceType {
        Any = 1, "ANY";
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
);

coded!(
    /// How a binding's name matches (ANY and MATCH only in filters).
    PatternType {
        Any = 1, "ANY";
        Match = 2, "MATCH";
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
);

coded!(
    /// Kafka's AclOperation.
    Operation {
        Any = 1, "ANY";
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
);

coded!(
    /// ALLOW or DENY (ANY only in filters).
    Permission {
        Any = 1, "ANY";
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
);

/// The name of the cluster resource.
pub const CLUSTER: &str = "kafka-cluster";
/// A LITERAL name, principal or host that matches every one.
pub const WILDCARD: &str = "*";
/// The principal that matches every principal.
pub const ANY_USER: &str = "User:*";

/// One ACL.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Why a binding cannot be created (CreateAcls answers INVALID_REQUEST with this).
pub fn validate(binding: &AclBinding) -> Result<(), String> {
    let concrete_type = !matches!(binding.resource_type, ResourceType::Any);
    let concrete_pattern = matches!(
        binding.pattern,
        PatternType::Literal | PatternType::Prefixed
    );
    let concrete_operation = !matches!(binding.operation, Operation::Any);
    let concrete_permission = !matches!(binding.permission, Permission::Any);
    if !(concrete_type && concrete_pattern && concrete_operation && concrete_permission) {
        return Err(
            "an ACL names one resource type, LITERAL or PREFIXED, one operation and \
                    ALLOW or DENY (ANY and MATCH are for filters)"
                .into(),
        );
    }
    if binding.name.is_empty() {
        return Err("the resource name is empty".into());
    }
    if binding.resource_type == ResourceType::Cluster && binding.name != CLUSTER {
        return Err(format!("the cluster resource is named `{CLUSTER}`"));
    }
    match binding.principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
        _ => {
            return Err(format!(
                "principal `{}` is not TYPE:NAME",
                binding.principal
            ))
        }
    }
    if binding.host.is_empty() {
        return Err("the host is empty (`*` for any)".into());
    }
    Ok(())
}

/// A DescribeAcls / DeleteAcls filter: `None` (or ANY) matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    pub pattern: Option<PatternType>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let any = |t: Option<ResourceType>| t.filter(|t| *t != ResourceType::Any);
        let type_ok = any(self.resource_type).is_none_or(|t| t == b.resource_type);
        let op_ok = self
            .operation
            .filter(|o| *o != Operation::Any)
            .is_none_or(|o| o == b.operation);
        let permission_ok = self
            .permission
            .filter(|p| *p != Permission::Any)
            .is_none_or(|p| p == b.permission);
        let principal_ok = self.principal.as_ref().is_none_or(|p| *p == b.principal);
        let host_ok = self.host.as_ref().is_none_or(|h| *h == b.host);
        type_ok && op_ok && permission_ok && principal_ok && host_ok && self.name_matches(b)
    }

    /// LITERAL and PREFIXED filters match bindings of that pattern and exact name; MATCH
    /// matches the bindings that would apply to a resource of that name; ANY any pattern with
    /// the exact name.
    fn name_matches(&self, b: &AclBinding) -> bool {
        let pattern = self.pattern.unwrap_or(PatternType::Any);
        let Some(name) = &self.name else {
            return matches!(pattern, PatternType::Any | PatternType::Match)
                || pattern == b.pattern;
        };
        match pattern {
            PatternType::Any => *name == b.name,
            PatternType::Literal | PatternType::Prefixed => pattern == b.pattern && *name == b.name,
            PatternType::Match => match b.pattern {
                PatternType::Literal => b.name == *name || b.name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&b.name),
                _ => false,
            },
        }
    }
}

/// One binding's entry, as the index keeps it under its resource pattern.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    principal: String,
    host: String,
    operation: Operation,
    permission: Permission,
}

/// Every ACL of the cluster, indexed by resource type and name: the literal names in one map,
/// the prefixes in another walked over the name's own prefixes. A check looks names up as
/// `&str` (no allocation per check: Metadata checks every topic).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acls {
    bindings: BTreeSet<AclBinding>,
    literal: BTreeMap<ResourceType, BTreeMap<String, Vec<Entry>>>,
    prefixed: BTreeMap<ResourceType, BTreeMap<String, Vec<Entry>>>,
}

impl Acls {
    /// The bindings as the image's text keeps them: one table each.
    pub fn to_toml(&self) -> Vec<toml::Value> {
        self.bindings
            .iter()
            .map(|b| {
                let mut table = toml::Table::new();
                table.insert("resource_type".into(), b.resource_type.name().into());
                table.insert("name".into(), b.name.clone().into());
                table.insert("pattern".into(), b.pattern.name().into());
                table.insert("principal".into(), b.principal.clone().into());
                table.insert("host".into(), b.host.clone().into());
                table.insert("operation".into(), b.operation.name().into());
                table.insert("permission".into(), b.permission.name().into());
                toml::Value::Table(table)
            })
            .collect()
    }

    pub fn from_toml(values: &[toml::Value]) -> Result<Acls, String> {
        let mut bindings = Vec::new();
        for value in values {
            let field = |key: &str| {
                value
                    .get(key)
                    .and_then(toml::Value::as_str)
                    .ok_or_else(|| format!("an ACL without {key}"))
            };
            let bad = |key: &str| format!("an ACL with a bad {key}");
            let binding = AclBinding {
                resource_type: ResourceType::from_name(field("resource_type")?)
                    .ok_or_else(|| bad("resource_type"))?,
                name: field("name")?.to_string(),
                pattern: PatternType::from_name(field("pattern")?).ok_or_else(|| bad("pattern"))?,
                principal: field("principal")?.to_string(),
                host: field("host")?.to_string(),
                operation: Operation::from_name(field("operation")?)
                    .ok_or_else(|| bad("operation"))?,
                permission: Permission::from_name(field("permission")?)
                    .ok_or_else(|| bad("permission"))?,
            };
            validate(&binding)?;
            bindings.push(binding);
        }
        Ok(Acls::new(bindings))
    }

    pub fn new(bindings: impl IntoIterator<Item = AclBinding>) -> Acls {
        let mut acls = Acls::default();
        for binding in bindings {
            acls.add(binding);
        }
        acls
    }

    fn add(&mut self, b: AclBinding) {
        if !self.bindings.insert(b.clone()) {
            return;
        }
        let entry = Entry {
            principal: b.principal,
            host: b.host,
            operation: b.operation,
            permission: b.permission,
        };
        let index = match b.pattern {
            PatternType::Prefixed => &mut self.prefixed,
            _ => &mut self.literal,
        };
        index
            .entry(b.resource_type)
            .or_default()
            .entry(b.name)
            .or_default()
            .push(entry);
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    pub fn bindings(&self) -> impl Iterator<Item = &AclBinding> {
        self.bindings.iter()
    }

    /// These ACLs with `added` and without `removed`.
    pub fn changed(&self, added: &[AclBinding], removed: &[AclBinding]) -> Acls {
        let mut all = self.bindings.clone();
        all.extend(added.iter().cloned());
        for b in removed {
            all.remove(b);
        }
        Acls::new(all)
    }

    /// The entries that apply to a resource of `resource_type` named `name`.
    fn entries<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        let literal = self.literal.get(&resource_type);
        let literal = [name, WILDCARD]
            .into_iter()
            .filter_map(move |n| literal?.get(n))
            .flatten();
        let prefixes = self.prefixed.get(&resource_type);
        let prefixed = (1..=name.len())
            .filter(move |end| prefixes.is_some() && name.is_char_boundary(*end))
            .filter_map(move |end| prefixes?.get(&name[..end]))
            .flatten();
        literal.chain(prefixed)
    }
}

/// Who is asking, and from where.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// The authorizer's settings: `authorizer.class.name` (on when set), `super.users`,
/// `allow.everyone.if.no.acl.found`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Authorizer {
    pub enabled: bool,
    pub super_users: BTreeSet<String>,
    pub allow_if_no_acl: bool,
}

impl Authorizer {
    /// Whether `subject` may do `operation` on the resource.
    pub fn allows(
        &self,
        acls: &Acls,
        subject: Subject<'_>,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if !self.enabled || self.super_users.contains(subject.principal) {
            return true;
        }
        let mut found = false;
        let mut allowed = false;
        for entry in acls.entries(resource_type, name) {
            found = true;
            let principal_ok = entry.principal == subject.principal || entry.principal == ANY_USER;
            let host_ok = entry.host == WILDCARD || entry.host == subject.host;
            if !(principal_ok && host_ok) {
                continue;
            }
            match entry.permission {
                Permission::Deny if denies(entry.operation, operation) => return false,
                Permission::Allow if allows(entry.operation, operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!found && self.allow_if_no_acl)
    }
}

impl Authorizer {
    /// Whether `subject` may do `operation` on some resource of the type (Kafka's
    /// `authorizeByResourceType`, as an idempotent producer's WRITE on any topic): an ALLOW
    /// for it on a resource no DENY of the same name takes back.
    pub fn allows_any(
        &self,
        acls: &Acls,
        subject: Subject<'_>,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if !self.enabled || self.super_users.contains(subject.principal) {
            return true;
        }
        let applies = |b: &AclBinding| {
            (b.principal == subject.principal || b.principal == ANY_USER)
                && (b.host == WILDCARD || b.host == subject.host)
                && b.resource_type == resource_type
        };
        acls.bindings().any(|b| {
            applies(b)
                && b.permission == Permission::Allow
                && allows(b.operation, operation)
                && self.allows(acls, subject, operation, resource_type, &b.name)
        })
    }
}

/// Whether a DENY of `denied` denies `asked` (denials imply nothing: a denied READ leaves
/// DESCRIBE as the ALLOWs have it).
fn denies(denied: Operation, asked: Operation) -> bool {
    denied == Operation::All || denied == asked
}

/// Whether an ALLOW of `granted` allows `asked`, implications included.
fn allows(granted: Operation, asked: Operation) -> bool {
    use Operation::*;
    granted == All
        || granted == asked
        || (asked == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (asked == DescribeConfigs && granted == AlterConfigs)
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
