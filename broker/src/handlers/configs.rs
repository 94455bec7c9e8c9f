//! DescribeConfigs (32): topic configs (explicit and defaults) and broker settings (static, and
//! a TLS listener's stores altered at run time as dynamic ones: `tls_reload`).

use crate::authorizer::Authz;
use crate::handlers::code;
use crate::shard::Shard;
use controller::acl::Operation;
use controller::topic_config;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

pub fn describe(
    shard: &Shard,
    request: DescribeConfigsRequest,
    _version: i16,
    authz: &Authz,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| match refused(resource, authz) {
            Some(error_code) => DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(error_code)
                .with_error_message(Some(StrBytes::from_static_str("Authorization failed."))),
            None => describe_resource(shard, resource),
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// DescribeConfigs on the topic (TOPIC_AUTHORIZATION_FAILED) or, for a broker, on the
/// cluster (CLUSTER_AUTHORIZATION_FAILED), as Kafka checks it.
fn refused(resource: &DescribeConfigsResource, authz: &Authz) -> Option<i16> {
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        RESOURCE_TOPIC => (!authz.topic(Operation::DescribeConfigs, name))
            .then_some(code::TOPIC_AUTHORIZATION_FAILED),
        RESOURCE_BROKER => (!authz.cluster(Operation::DescribeConfigs))
            .then_some(code::CLUSTER_AUTHORIZATION_FAILED),
        _ => None,
    }
}

/// The TLS listeners' settings altered at run time (`tls_reload`), as Kafka's dynamic ones.
fn altered_ssl(shard: &Shard) -> Vec<(String, String, i8)> {
    let slots = shard.tls_slots.borrow();
    let altered = slots.iter().flat_map(|slot| slot.altered_settings());
    altered
        .map(|(name, value)| (name, value, SOURCE_DYNAMIC_BROKER))
        .collect()
}

fn describe_resource(shard: &Shard, resource: &DescribeConfigsResource) -> DescribeConfigsResult {
    let result = DescribeConfigsResult::default()
        .with_resource_type(resource.resource_type)
        .with_resource_name(resource.resource_name.clone());
    let entries: Vec<(String, String, i8)> = match resource.resource_type {
        RESOURCE_TOPIC => {
            let image = shard.image();
            let Some(topic) = image.topic(resource.resource_name.as_str()) else {
                return result
                    .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                    .with_error_message(Some(StrBytes::from_static_str(
                        "This server does not host this topic-partition.",
                    )));
            };
            topic_config::effective(topic)
                .into_iter()
                .map(|(name, value, is_default)| {
                    let source = if is_default {
                        SOURCE_DEFAULT
                    } else {
                        SOURCE_TOPIC
                    };
                    (name, value, source)
                })
                .collect()
        }
        RESOURCE_BROKER => shard
            .config
            .entries()
            .map(|(name, value, is_default)| {
                let source = if is_default {
                    SOURCE_DEFAULT
                } else {
                    SOURCE_STATIC_BROKER
                };
                (name.to_string(), value.to_string(), source)
            })
            .chain(altered_ssl(shard))
            .collect(),
        _ => {
            return result
                .with_error_code(code::INVALID_REQUEST)
                .with_error_message(Some(StrBytes::from_static_str(
                    "Unsupported resource type.",
                )))
        }
    };
    let configs = entries
        .into_iter()
        .filter(|(name, _, _)| {
            resource
                .configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
        })
        .map(|(name, value, source)| {
            // A secret (a TLS private key) is named but not shown, as Kafka answers it.
            let sensitive = crate::config::is_sensitive(&name);
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_string(name))
                .with_value((!sensitive).then(|| StrBytes::from_string(value)))
                .with_is_sensitive(sensitive)
                .with_read_only(
                    resource.resource_type == RESOURCE_BROKER && source != SOURCE_DYNAMIC_BROKER,
                )
                .with_config_source(source)
        })
        .collect();
    result.with_configs(configs)
}
