//! IncrementalAlterConfigs (44): SET / DELETE / APPEND / SUBTRACT on topic configs through the
//! controller. The new image reaches every shard before the answer, and each shard hands the
//! new configs to the partition logs it owns (`Shard::install_image`). On a broker, only a TLS
//! listener's stores change at run time (`tls_reload`, as Kafka reloads them); the other
//! broker settings are static (`--set` at start) and are refused.

use crate::authorizer::Authz;
use crate::handlers::code;
use crate::shard::Shard;
use controller::acl::Operation;
use controller::{ConfigOp, MetadataCommand};
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use std::rc::Rc;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

pub async fn incremental(
    shard: &Rc<Shard>,
    request: IncrementalAlterConfigsRequest,
    authz: &Authz,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let (error_code, message) = match refused(resource, authz) {
            Some(error_code) => (error_code, Some("Authorization failed.".into())),
            None => alter(shard, resource, request.validate_only).await,
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(error_code)
                .with_error_message(message.map(StrBytes::from_string)),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// AlterConfigs on the topic (TOPIC_AUTHORIZATION_FAILED) or, for a broker, on the cluster
/// (CLUSTER_AUTHORIZATION_FAILED), as Kafka checks it.
fn refused(resource: &AlterConfigsResource, authz: &Authz) -> Option<i16> {
    match resource.resource_type {
        RESOURCE_TOPIC => (!authz.topic(Operation::AlterConfigs, resource.resource_name.as_str()))
            .then_some(code::TOPIC_AUTHORIZATION_FAILED),
        RESOURCE_BROKER => {
            (!authz.cluster(Operation::AlterConfigs)).then_some(code::CLUSTER_AUTHORIZATION_FAILED)
        }
        _ => None,
    }
}

async fn alter(
    shard: &Rc<Shard>,
    resource: &AlterConfigsResource,
    validate_only: bool,
) -> (i16, Option<String>) {
    let ops = match ops_of(resource) {
        Ok(ops) => ops,
        Err(message) => return (code::INVALID_REQUEST, Some(message)),
    };
    match resource.resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            let broker = resource.resource_name.as_str();
            return match crate::tls_reload::alter(shard, broker, &ops, validate_only).await {
                Ok(()) => (code::NONE, None),
                Err((error_code, message)) => (error_code, Some(message)),
            };
        }
        other => {
            return (
                code::INVALID_REQUEST,
                Some(format!("unsupported resource type {other}")),
            )
        }
    }
    let command = MetadataCommand::AlterTopicConfigs {
        name: resource.resource_name.to_string(),
        ops,
    };
    let result = if validate_only {
        shard.image().propose(command, || [0x42; 16]).map(|_| ())
    } else {
        shard.propose(command).await.map(|_| ())
    };
    match result {
        Ok(()) => (code::NONE, None),
        Err(e) => (e.kafka_error_code(), Some(e.to_string())),
    }
}

fn ops_of(resource: &AlterConfigsResource) -> Result<Vec<ConfigOp>, String> {
    resource
        .configs
        .iter()
        .map(|c| {
            let name = c.name.to_string();
            let value = || {
                c.value
                    .as_ref()
                    .map(|v| v.to_string())
                    .ok_or_else(|| format!("config {name}: a value is required"))
            };
            Ok(match c.config_operation {
                0 => ConfigOp::Set {
                    value: value()?,
                    name,
                },
                1 => ConfigOp::Delete { name },
                2 => ConfigOp::Append {
                    value: value()?,
                    name,
                },
                3 => ConfigOp::Subtract {
                    value: value()?,
                    name,
                },
                op => return Err(format!("config {name}: unknown operation {op}")),
            })
        })
        .collect()
}
