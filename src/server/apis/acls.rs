//! CreateAcls, DescribeAcls and DeleteAcls v0-v3 (KIP-140, KIP-290): the ACLs live in the
//! cluster metadata, so every broker checks against the same ones, and a change takes effect
//! with each connection's next request. With no authorizer (`authorizer.class.name` empty) they
//! answer SECURITY_DISABLED, as Kafka does; with one, they need ALTER (create, delete) or
//! DESCRIBE on the cluster.

use std::rc::Rc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, Answer, Api, Request};
use crate::cluster::Change;
use crate::protocol::ResponseError as E;
use crate::security::acl::{
    self, AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};
use crate::server::authz::Authz;
use crate::server::controller::Refusal;
use crate::server::Shard;

api!(DESCRIBE, DescribeAcls, 0, 3, describe);
api!(CREATE, CreateAcls, 0, 3, create);
api!(DELETE, DeleteAcls, 0, 3, delete);

/// Whether ACLs may be managed here by this principal: an error code and message if not.
fn refused(shard: &Shard, request: &Request, operation: Operation) -> Option<(i16, &'static str)> {
    let authz = Authz::of(shard, request);
    if !authz.enabled() {
        return Some((
            E::SecurityDisabled.code(),
            "no authorizer is configured (authorizer.class.name)",
        ));
    }
    (!authz.cluster(operation)).then_some((
        E::ClusterAuthorizationFailed.code(),
        "not authorized on the cluster",
    ))
}

/// A filter as the request gives it (null or ANY match anything).
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: &Option<StrBytes>,
    pattern: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
    version: i16,
) -> Result<AclFilter, String> {
    let bad = |what: &str, code: i8| format!("unknown {what} {code}");
    Ok(AclFilter {
        resource_type: Some(
            ResourceType::from_code(resource_type)
                .ok_or_else(|| bad("resource type", resource_type))?,
        ),
        name: name.as_ref().map(|n| n.to_string()),
        // Version 0 knows only literal names.
        pattern: Some(match version {
            0 => PatternType::Literal,
            _ => PatternType::from_code(pattern).ok_or_else(|| bad("pattern type", pattern))?,
        }),
        principal: principal.as_ref().map(|p| p.to_string()),
        host: host.as_ref().map(|h| h.to_string()),
        operation: Some(
            Operation::from_code(operation).ok_or_else(|| bad("operation", operation))?,
        ),
        permission: Some(
            Permission::from_code(permission).ok_or_else(|| bad("permission type", permission))?,
        ),
    })
}

async fn describe(shard: Rc<Shard>, request: Request) -> Answer {
    let body: DescribeAclsRequest = request.decode("DescribeAclsRequest")?;
    let mut response = DescribeAclsResponse::default();
    if let Some((code, message)) = refused(&shard, &request, Operation::Describe) {
        response.error_code = code;
        response.error_message = Some(str_bytes(message));
        return request.answer(&response);
    }
    let wanted = filter(
        body.resource_type_filter,
        &body.resource_name_filter,
        body.pattern_type_filter,
        &body.principal_filter,
        &body.host_filter,
        body.operation,
        body.permission_type,
        request.version,
    );
    let wanted = match wanted {
        Ok(wanted) => wanted,
        Err(message) => {
            response.error_code = E::InvalidRequest.code();
            response.error_message = Some(str_bytes(message));
            return request.answer(&response);
        }
    };
    let image = shard.image();
    for b in image.acls.bindings().filter(|b| wanted.matches(b)) {
        let same = |r: &DescribeAclsResource| {
            r.resource_type == b.resource_type.code()
                && r.resource_name.as_str() == b.name
                && r.pattern_type == b.pattern.code()
        };
        if !response.resources.last().is_some_and(same) {
            let mut resource = DescribeAclsResource::default();
            resource.resource_type = b.resource_type.code();
            resource.resource_name = str_bytes(b.name.clone());
            resource.pattern_type = b.pattern.code();
            response.resources.push(resource);
        }
        let mut description = AclDescription::default();
        description.principal = str_bytes(b.principal.clone());
        description.host = str_bytes(b.host.clone());
        description.operation = b.operation.code();
        description.permission_type = b.permission.code();
        let last = response.resources.last_mut().expect("pushed above");
        last.acls.push(description);
    }
    request.answer(&response)
}

async fn create(shard: Rc<Shard>, request: Request) -> Answer {
    let body: CreateAclsRequest = request.decode("CreateAclsRequest")?;
    let mut response = CreateAclsResponse::default();
    let refusal = refused(&shard, &request, Operation::Alter);
    let mut valid = Vec::new();
    let mut outcomes: Vec<Result<(), Refusal>> = Vec::new();
    for c in &body.creations {
        let binding = || -> Result<AclBinding, String> {
            let bad = |what: &str| format!("unknown {what}");
            let binding = AclBinding {
                resource_type: ResourceType::from_code(c.resource_type)
                    .ok_or_else(|| bad("resource type"))?,
                name: c.resource_name.to_string(),
                pattern: match request.version {
                    0 => PatternType::Literal,
                    _ => PatternType::from_code(c.resource_pattern_type)
                        .ok_or_else(|| bad("pattern type"))?,
                },
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: Operation::from_code(c.operation).ok_or_else(|| bad("operation"))?,
                permission: Permission::from_code(c.permission_type)
                    .ok_or_else(|| bad("permission type"))?,
            };
            acl::validate(&binding)?;
            Ok(binding)
        };
        let outcome = match (&refusal, binding()) {
            (Some((code, message)), _) => Err(Refusal {
                code: *code,
                message: message.to_string(),
            }),
            (None, Err(message)) => Err(Refusal::new(E::InvalidRequest, message)),
            (None, Ok(binding)) => {
                valid.push(binding);
                Ok(())
            }
        };
        outcomes.push(outcome);
    }
    // The valid ones in one change: all of them or none.
    if !valid.is_empty() {
        if let Err(e) = shard
            .change(Change::CreateAcls { acls: valid }, false)
            .await
        {
            let refusal = Refusal::from(e);
            for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *outcome = Err(refusal.clone());
            }
        }
    }
    for outcome in outcomes {
        let mut result = AclCreationResult::default();
        if let Err(refusal) = outcome {
            result.error_code = refusal.code;
            result.error_message = Some(str_bytes(refusal.message));
        }
        response.results.push(result);
    }
    request.answer(&response)
}

async fn delete(shard: Rc<Shard>, request: Request) -> Answer {
    let body: DeleteAclsRequest = request.decode("DeleteAclsRequest")?;
    let mut response = DeleteAclsResponse::default();
    let refusal = refused(&shard, &request, Operation::Alter);
    let image = shard.image();
    let mut removed: Vec<AclBinding> = Vec::new();
    let mut results = Vec::new();
    for f in &body.filters {
        let mut result = DeleteAclsFilterResult::default();
        let wanted = filter(
            f.resource_type_filter,
            &f.resource_name_filter,
            f.pattern_type_filter,
            &f.principal_filter,
            &f.host_filter,
            f.operation,
            f.permission_type,
            request.version,
        );
        match (&refusal, wanted) {
            (Some((code, message)), _) => {
                result.error_code = *code;
                result.error_message = Some(str_bytes(*message));
            }
            (None, Err(message)) => {
                result.error_code = E::InvalidRequest.code();
                result.error_message = Some(str_bytes(message));
            }
            (None, Ok(wanted)) => {
                for b in image.acls.bindings().filter(|b| wanted.matches(b)) {
                    result.matching_acls.push(matching(b));
                    if !removed.contains(b) {
                        removed.push(b.clone());
                    }
                }
            }
        }
        results.push(result);
    }
    if !removed.is_empty() {
        if let Err(e) = shard
            .change(Change::DeleteAcls { acls: removed }, false)
            .await
        {
            let refusal = Refusal::from(e);
            for result in results.iter_mut().filter(|r| r.error_code == 0) {
                result.error_code = refusal.code;
                result.error_message = Some(str_bytes(refusal.message.clone()));
                result.matching_acls.clear();
            }
        }
    }
    response.filter_results = results;
    request.answer(&response)
}

fn matching(b: &AclBinding) -> DeleteAclsMatchingAcl {
    let mut m = DeleteAclsMatchingAcl::default();
    m.resource_type = b.resource_type.code();
    m.resource_name = str_bytes(b.name.clone());
    m.pattern_type = b.pattern.code();
    m.principal = str_bytes(b.principal.clone());
    m.host = str_bytes(b.host.clone());
    m.operation = b.operation.code();
    m.permission_type = b.permission.code();
    m
}
