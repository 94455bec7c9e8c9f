//! CreateAcls (30), DescribeAcls (29) and DeleteAcls (31): ACL bindings kept in the metadata
//! log (`controller::acl`) through the controller, so every node of a cluster enforces the
//! same ones. As Kafka: SECURITY_DISABLED without an authorizer; Alter on the Cluster to
//! create or delete, Describe on the Cluster to describe (CLUSTER_AUTHORIZATION_FAILED);
//! INVALID_REQUEST for a binding or filter Kafka's controller refuses.

use crate::authorizer::Authz;
use crate::handlers::code;
use crate::shard::Shard;
use controller::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use controller::{ApplyOutcome, MetadataCommand};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Kafka's message when no authorizer is configured.
const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

/// Why a request may not touch ACLs at all: (error code, message).
fn refusal(authz: &Authz, operation: Operation) -> Option<(i16, String)> {
    if !authz.is_on() {
        return Some((code::SECURITY_DISABLED, NO_AUTHORIZER.into()));
    }
    if !authz.cluster(operation) {
        let message = "Cluster authorization failed.".to_string();
        return Some((code::CLUSTER_AUTHORIZATION_FAILED, message));
    }
    None
}

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub async fn create(
    shard: &Rc<Shard>,
    request: CreateAclsRequest,
    authz: &Authz,
) -> CreateAclsResponse {
    let result = |error_code: i16, message: Option<String>| {
        AclCreationResult::default()
            .with_error_code(error_code)
            .with_error_message(message.map(text))
    };
    if let Some((error_code, message)) = refusal(authz, Operation::Alter) {
        let results = request
            .creations
            .iter()
            .map(|_| result(error_code, Some(message.clone())))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let checked: Vec<Result<AclBinding, String>> =
        request.creations.iter().map(binding_of).collect();
    let valid: Vec<AclBinding> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let applied = if valid.is_empty() {
        Ok(())
    } else {
        let command = MetadataCommand::CreateAcls { acls: valid };
        shard.propose(command).await.map(|_| ())
    };
    let results = checked
        .into_iter()
        .map(|c| match (c, &applied) {
            (Err(message), _) => result(code::INVALID_REQUEST, Some(message)),
            (Ok(_), Ok(())) => result(code::NONE, None),
            (Ok(_), Err(e)) => result(e.kafka_error_code(), Some(e.to_string())),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// A creation as a binding, checked as Kafka's controller checks it.
fn binding_of(c: &AclCreation) -> Result<AclBinding, String> {
    let unknown = || {
        format!(
            "Invalid ACL creation: unknown resource type {}, pattern type {}, operation {} or \
             permission type {}",
            c.resource_type, c.resource_pattern_type, c.operation, c.permission_type
        )
    };
    let binding = AclBinding {
        resource_type: ResourceType::from_code(c.resource_type).ok_or_else(unknown)?,
        resource_name: c.resource_name.to_string(),
        pattern_type: PatternType::from_code(c.resource_pattern_type).ok_or_else(unknown)?,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: Operation::from_code(c.operation).ok_or_else(unknown)?,
        permission: Permission::from_code(c.permission_type).ok_or_else(unknown)?,
    };
    binding.validate()?;
    Ok(binding)
}

/// The fields of a DescribeAcls or DeleteAcls filter.
struct FilterFields<'a> {
    resource_type: i8,
    resource_name: Option<&'a StrBytes>,
    pattern_type: i8,
    principal: Option<&'a StrBytes>,
    host: Option<&'a StrBytes>,
    operation: i8,
    permission: i8,
}

/// A filter from the wire; `Err` (INVALID_REQUEST) for a code Kafka calls UNKNOWN.
fn filter_of(f: FilterFields<'_>) -> Result<AclFilter, String> {
    let unknown = || {
        "The filter has an unknown resource type, pattern type, operation or \
                      permission type"
            .to_string()
    };
    Ok(AclFilter {
        resource_type: ResourceType::from_code(f.resource_type).ok_or_else(unknown)?,
        resource_name: f.resource_name.map(|s| s.to_string()),
        pattern_type: PatternType::from_code(f.pattern_type).ok_or_else(unknown)?,
        principal: f.principal.map(|s| s.to_string()),
        host: f.host.map(|s| s.to_string()),
        operation: Operation::from_code(f.operation).ok_or_else(unknown)?,
        permission: Permission::from_code(f.permission).ok_or_else(unknown)?,
    })
}

pub fn describe(request: DescribeAclsRequest, authz: &Authz) -> DescribeAclsResponse {
    let failed = |error_code: i16, message: String| {
        DescribeAclsResponse::default()
            .with_error_code(error_code)
            .with_error_message(Some(text(message)))
    };
    if let Some((error_code, message)) = refusal(authz, Operation::Describe) {
        return failed(error_code, message);
    }
    let filter = match filter_of(FilterFields {
        resource_type: request.resource_type_filter,
        resource_name: request.resource_name_filter.as_ref(),
        pattern_type: request.pattern_type_filter,
        principal: request.principal_filter.as_ref(),
        host: request.host_filter.as_ref(),
        operation: request.operation,
        permission: request.permission_type,
    }) {
        Ok(filter) => filter,
        Err(message) => return failed(code::INVALID_REQUEST, message),
    };
    let acls = authz.acls();
    // Grouped by resource pattern, as Kafka answers.
    let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in acls.matching(&filter) {
        let key = (
            acl.resource_type.code(),
            acl.resource_name.clone(),
            acl.pattern_type.code(),
        );
        resources.entry(key).or_default().push(
            AclDescription::default()
                .with_principal(text(acl.principal.clone()))
                .with_host(text(acl.host.clone()))
                .with_operation(acl.operation.code())
                .with_permission_type(acl.permission.code()),
        );
    }
    let resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(text(name))
                .with_pattern_type(pattern_type)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

pub async fn delete(
    shard: &Rc<Shard>,
    request: DeleteAclsRequest,
    authz: &Authz,
) -> DeleteAclsResponse {
    let failed = |error_code: i16, message: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(error_code)
            .with_error_message(Some(text(message)))
    };
    if let Some((error_code, message)) = refusal(authz, Operation::Alter) {
        let results = request
            .filters
            .iter()
            .map(|_| failed(error_code, message.clone()))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let filters: Vec<Result<AclFilter, String>> =
        request.filters.iter().map(delete_filter).collect();
    let valid: Vec<AclFilter> = filters.iter().filter_map(|f| f.clone().ok()).collect();
    let acls = authz.acls();
    let any_match = valid.iter().any(|f| acls.matching(f).next().is_some());
    let deleted = if any_match {
        let command = MetadataCommand::DeleteAcls { filters: valid };
        shard.propose(command).await.map(|outcome| match outcome {
            ApplyOutcome::AclsDeleted(deleted) => deleted,
            _ => Vec::new(),
        })
    } else {
        Ok(Vec::new())
    };
    let results = filters
        .into_iter()
        .map(|filter| match (filter, &deleted) {
            (Err(message), _) => failed(code::INVALID_REQUEST, message),
            (Ok(_), Err(e)) => failed(e.kafka_error_code(), e.to_string()),
            (Ok(filter), Ok(deleted)) => {
                let matching = deleted
                    .iter()
                    .filter(|acl| filter.matches(acl))
                    .map(matching_acl)
                    .collect();
                DeleteAclsFilterResult::default().with_matching_acls(matching)
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

fn delete_filter(f: &DeleteAclsFilter) -> Result<AclFilter, String> {
    filter_of(FilterFields {
        resource_type: f.resource_type_filter,
        resource_name: f.resource_name_filter.as_ref(),
        pattern_type: f.pattern_type_filter,
        principal: f.principal_filter.as_ref(),
        host: f.host_filter.as_ref(),
        operation: f.operation,
        permission: f.permission_type,
    })
}

fn matching_acl(acl: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(acl.resource_type.code())
        .with_resource_name(text(acl.resource_name.clone()))
        .with_pattern_type(acl.pattern_type.code())
        .with_principal(text(acl.principal.clone()))
        .with_host(text(acl.host.clone()))
        .with_operation(acl.operation.code())
        .with_permission_type(acl.permission.code())
}
