//! `sluice acl create|list|delete`: ACLs through the Kafka API (CreateAcls, DescribeAcls,
//! DeleteAcls), as Kafka's `kafka-acls` manages them, against any cluster with an authorizer.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;
use sluice::security::acl::{self, Operation, PatternType, Permission, ResourceType};

use super::table::Table;
use super::{emit, error_name, Connection, Failure, Outcome};

/// The resource an ACL is about: one of these.
#[derive(clap::Args, Debug, Default)]
#[group(multiple = false)]
pub struct Resource {
    /// A topic (with --prefixed: every topic whose name starts so; `*`: every topic)
    #[arg(long)]
    topic: Option<String>,
    /// A consumer group
    #[arg(long)]
    group: Option<String>,
    /// A transactional id
    #[arg(long)]
    transactional_id: Option<String>,
    /// The cluster (creating topics, cluster actions, ACLs and users)
    #[arg(long)]
    cluster: bool,
}

impl Resource {
    fn named(&self) -> Option<(ResourceType, String)> {
        let (topic, group, txn) = (&self.topic, &self.group, &self.transactional_id);
        match () {
            _ if self.cluster => Some((ResourceType::Cluster, acl::CLUSTER.to_string())),
            _ if topic.is_some() => topic.clone().map(|t| (ResourceType::Topic, t)),
            _ if group.is_some() => group.clone().map(|g| (ResourceType::Group, g)),
            _ => txn.clone().map(|t| (ResourceType::TransactionalId, t)),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct AclArgs {
    #[command(flatten)]
    resource: Resource,
    /// The resource name is a prefix (PREFIXED) rather than a name (LITERAL)
    #[arg(long)]
    prefixed: bool,
    /// Who: `User:alice` (`User:*` for everyone)
    #[arg(long)]
    principal: Option<String>,
    /// What: read, write, create, delete, alter, describe, cluster-action, describe-configs,
    /// alter-configs, idempotent-write, all; repeat for more
    #[arg(long = "operation", value_name = "OPERATION")]
    operations: Vec<String>,
    /// A DENY (wins over any ALLOW) rather than an ALLOW
    #[arg(long)]
    deny: bool,
    /// The client host it applies to (`*`: any)
    #[arg(long, default_value = "*")]
    host: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum AclCommand {
    /// Allow (or, with --deny, deny) a principal operations on a resource
    Create(AclArgs),
    /// ACLs, all or those on a resource or of a principal
    List {
        #[command(flatten)]
        resource: Resource,
        #[arg(long)]
        principal: Option<String>,
    },
    /// Delete the ACLs that match (the options left out match anything)
    Delete(AclArgs),
}

fn operations(names: &[String]) -> Result<Vec<Operation>, Failure> {
    names
        .iter()
        .map(|name| {
            Operation::from_name(name)
                .filter(|op| *op != Operation::Any)
                .ok_or_else(|| Failure::Failed(format!("--operation {name}: not an ACL operation")))
        })
        .collect()
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

pub fn run(command: AclCommand, conn: &Connection) -> Outcome {
    match command {
        AclCommand::Create(args) => create(args, conn),
        AclCommand::List {
            resource,
            principal,
        } => list(&resource, principal.as_deref(), conn),
        AclCommand::Delete(args) => delete(args, conn),
    }
}

fn create(args: AclArgs, conn: &Connection) -> Outcome {
    let (resource_type, name) = args.resource.named().ok_or_else(|| {
        Failure::Failed(
            "name the resource: --topic, --group, --transactional-id or --cluster".into(),
        )
    })?;
    let principal = args
        .principal
        .ok_or_else(|| Failure::Failed("--principal User:NAME is needed".into()))?;
    let operations = operations(&args.operations)?;
    if operations.is_empty() {
        return Err(Failure::Failed(
            "--operation is needed (read, write, ...)".into(),
        ));
    }
    let mut request = CreateAclsRequest::default();
    for operation in &operations {
        let mut c = AclCreation::default();
        c.resource_type = resource_type.code();
        c.resource_name = s(&name);
        c.resource_pattern_type = pattern(args.prefixed).code();
        c.principal = s(&principal);
        c.host = s(&args.host);
        c.operation = operation.code();
        c.permission_type = permission(args.deny).code();
        request.creations.push(c);
    }
    let answer = conn.bootstrap()?.call(3, &request)?;
    let results = operations
        .iter()
        .zip(answer.results)
        .map(|(op, r)| {
            let what = format!(
                "{} {} on {} {name}",
                principal,
                op.name(),
                resource_type.name()
            );
            match r.error_code {
                0 => Ok(what),
                code => Err((
                    what,
                    format!(
                        "{}: {}",
                        error_name(code),
                        r.error_message.as_deref().unwrap_or("")
                    ),
                )),
            }
        })
        .collect();
    super::report_named(conn, "acl", "created", results)
}

fn pattern(prefixed: bool) -> PatternType {
    if prefixed {
        PatternType::Prefixed
    } else {
        PatternType::Literal
    }
}

fn permission(deny: bool) -> Permission {
    if deny {
        Permission::Deny
    } else {
        Permission::Allow
    }
}

fn list(resource: &Resource, principal: Option<&str>, conn: &Connection) -> Outcome {
    let mut request = DescribeAclsRequest::default();
    let named = resource.named();
    request.resource_type_filter = named.as_ref().map_or(ResourceType::Any, |(t, _)| *t).code();
    request.resource_name_filter = named.as_ref().map(|(_, n)| s(n));
    // Those that apply to the resource: literal, wildcard and prefixes alike.
    request.pattern_type_filter = match named {
        Some(_) => PatternType::Match.code(),
        None => PatternType::Any.code(),
    };
    request.principal_filter = principal.map(s);
    request.host_filter = None;
    request.operation = Operation::Any.code();
    request.permission_type = Permission::Any.code();
    let answer = conn.bootstrap()?.call(3, &request)?;
    if answer.error_code != 0 {
        return Err(Failure::Failed(format!(
            "listing ACLs: {}: {}",
            error_name(answer.error_code),
            answer.error_message.as_deref().unwrap_or("")
        )));
    }
    let mut table = Table::new(&[
        "RESOURCE",
        "NAME",
        "PATTERN",
        "PRINCIPAL",
        "HOST",
        "OPERATION",
        "PERMISSION",
    ]);
    let mut rows = Vec::new();
    let text = |code: i8, name: fn(i8) -> Option<&'static str>| {
        name(code).map_or(code.to_string(), str::to_string)
    };
    for resource in &answer.resources {
        for a in &resource.acls {
            let row = [
                text(resource.resource_type, |c| {
                    ResourceType::from_code(c).map(|t| t.name())
                }),
                resource.resource_name.to_string(),
                text(resource.pattern_type, |c| {
                    PatternType::from_code(c).map(|p| p.name())
                }),
                a.principal.to_string(),
                a.host.to_string(),
                text(a.operation, |c| Operation::from_code(c).map(|o| o.name())),
                text(a.permission_type, |c| {
                    Permission::from_code(c).map(|p| p.name())
                }),
            ];
            rows.push(json!({
                "resource_type": row[0], "name": row[1], "pattern": row[2], "principal": row[3],
                "host": row[4], "operation": row[5], "permission": row[6],
            }));
            table.row(row.to_vec());
        }
    }
    emit(conn, &table, &json!(rows));
    Ok(())
}

fn delete(args: AclArgs, conn: &Connection) -> Outcome {
    let named = args.resource.named();
    let operations = operations(&args.operations)?;
    let operations: Vec<Operation> = match operations.is_empty() {
        true => vec![Operation::Any],
        false => operations,
    };
    let mut request = DeleteAclsRequest::default();
    for operation in &operations {
        let mut f = DeleteAclsFilter::default();
        f.resource_type_filter = named.as_ref().map_or(ResourceType::Any, |(t, _)| *t).code();
        f.resource_name_filter = named.as_ref().map(|(_, n)| s(n));
        f.pattern_type_filter = match (&named, args.prefixed) {
            (None, _) => PatternType::Any.code(),
            (Some(_), prefixed) => pattern(prefixed).code(),
        };
        f.principal_filter = args.principal.as_deref().map(s);
        f.host_filter = (args.host != "*").then(|| s(&args.host));
        f.operation = operation.code();
        f.permission_type = match args.deny {
            true => Permission::Deny.code(),
            false => Permission::Any.code(),
        };
        request.filters.push(f);
    }
    let answer = conn.bootstrap()?.call(3, &request)?;
    let mut results = Vec::new();
    for result in answer.filter_results {
        if result.error_code != 0 {
            results.push(Err((
                "filter".to_string(),
                format!(
                    "{}: {}",
                    error_name(result.error_code),
                    result.error_message.as_deref().unwrap_or("")
                ),
            )));
            continue;
        }
        for m in result.matching_acls {
            let op = Operation::from_code(m.operation).map_or("?", |o| o.name());
            let kind = ResourceType::from_code(m.resource_type).map_or("?", |t| t.name());
            results.push(Ok(format!(
                "{} {op} on {kind} {}",
                m.principal.as_str(),
                m.resource_name.as_str()
            )));
        }
    }
    super::report_named(conn, "acl", "deleted", results)
}
