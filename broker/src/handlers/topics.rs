//! CreateTopics (19) and DeleteTopics (20), applied through the controller.

use crate::authorizer::Authz;
use crate::handlers::code;
use crate::shard::Shard;
use controller::acl::Operation;
use controller::{topic_config, ApplyOutcome, MetadataCommand, TopicMeta};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use uuid::Uuid;

/// Kafka's config source for a topic's own setting, and for a default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

/// The `default.replication.factor` passed to the controller (which caps it at the live
/// brokers).
pub fn default_replication_factor(shard: &Shard) -> i16 {
    shard.config.default_replication_factor
}

pub async fn create(
    shard: &Rc<Shard>,
    request: CreateTopicsRequest,
    version: i16,
    authz: &Authz,
) -> CreateTopicsResponse {
    // Kafka: Create on the cluster, else Create on each topic.
    let cluster_create = authz.cluster(Operation::Create);
    let mut name_counts: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *name_counts.entry(topic.name.as_str()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        if name_counts[topic.name.as_str()] > 1 {
            results.push(failed(
                result,
                code::INVALID_REQUEST,
                "Duplicate topic name.",
            ));
            continue;
        }
        if !cluster_create && !authz.topic(Operation::Create, topic.name.as_str()) {
            let message = "Authorization failed.";
            results.push(failed(result, code::TOPIC_AUTHORIZATION_FAILED, message));
            continue;
        }
        let command = match command_for(shard, topic) {
            Ok(command) => command,
            Err((error_code, message)) => {
                results.push(failed(result, error_code, &message));
                continue;
            }
        };
        let outcome = if request.validate_only {
            // The checks the controller would make, without applying anything.
            shard
                .image()
                .propose(command, || *Uuid::new_v4().as_bytes())
                .map(|_| None)
        } else {
            shard.propose(command).await.map(|outcome| match outcome {
                ApplyOutcome::TopicCreated(meta) => {
                    log_capped(shard, topic, &meta);
                    Some(meta)
                }
                _ => None,
            })
        };
        results.push(match outcome {
            Ok(Some(meta)) => created(result, &meta, version),
            Ok(None) => result,
            Err(e) => failed(result, e.kafka_error_code(), &e.to_string()),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// The controller command for one requested topic, with Kafka's defaults filled in.
fn command_for(shard: &Shard, topic: &CreatableTopic) -> Result<MetadataCommand, (i16, String)> {
    let partitions = match (topic.num_partitions, topic.assignments.len()) {
        (-1, 0) => shard.config.num_partitions,
        (-1, assigned) => assigned as i32,
        (n, 0) => n,
        _ => {
            return Err((
                code::INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set.".into(),
            ))
        }
    };
    // -1 stays -1: the controller uses the default, capped at the live brokers.
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let Some(value) = &config.value else {
            return Err((
                code::INVALID_CONFIG,
                format!(
                    "Null value not supported for topic configs: {}",
                    config.name.as_str()
                ),
            ));
        };
        configs.insert(config.name.to_string(), value.to_string());
    }
    Ok(MetadataCommand::CreateTopic {
        name: topic.name.to_string(),
        partitions,
        replication_factor: topic.replication_factor,
        default_replication_factor: default_replication_factor(shard),
        configs,
    })
}

/// Logs a topic created with fewer replicas than `default.replication.factor` (too few
/// live brokers).
fn log_capped(shard: &Shard, topic: &CreatableTopic, meta: &TopicMeta) {
    let default = default_replication_factor(shard);
    if topic.replication_factor == -1 && meta.replication_factor < default {
        tracing::info!(
            topic = %meta.name,
            replication_factor = meta.replication_factor,
            default,
            "topic created with fewer replicas than default.replication.factor: too few live brokers"
        );
    }
}

fn created(result: CreatableTopicResult, meta: &TopicMeta, version: i16) -> CreatableTopicResult {
    let result = result.with_topic_id(Uuid::from_bytes(meta.id));
    if version < 5 {
        return result;
    }
    let configs = topic_config::effective(meta)
        .into_iter()
        .map(|(name, value, is_default)| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(name))
                .with_value(Some(StrBytes::from_string(value)))
                .with_config_source(if is_default {
                    SOURCE_DEFAULT
                } else {
                    SOURCE_TOPIC
                })
        })
        .collect();
    result
        .with_num_partitions(meta.partitions)
        .with_replication_factor(meta.replication_factor)
        .with_configs(Some(configs))
}

fn failed(result: CreatableTopicResult, error_code: i16, message: &str) -> CreatableTopicResult {
    result
        .with_error_code(error_code)
        .with_error_message(Some(StrBytes::from_string(message.to_string())))
}

pub async fn delete(
    shard: &Rc<Shard>,
    request: DeleteTopicsRequest,
    version: i16,
    authz: &Authz,
) -> DeleteTopicsResponse {
    // v0-5 name topics in `topic_names`; v6 in `topics`, by name or by id.
    let wanted: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|name| (Some(name.clone()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let image = shard.image();
        // Delete on the topic: checked before a named topic is looked up, after one by id.
        let meta = match &name {
            Some(name) if !authz.topic(Operation::Delete, name.as_str()) => {
                Err(code::TOPIC_AUTHORIZATION_FAILED)
            }
            Some(name) => image
                .topic(name.as_str())
                .ok_or(code::UNKNOWN_TOPIC_OR_PARTITION),
            None => image
                .topic_by_id(id.as_bytes())
                .ok_or(code::UNKNOWN_TOPIC_ID)
                .and_then(|meta| match authz.topic(Operation::Delete, &meta.name) {
                    true => Ok(meta),
                    false => Err(code::TOPIC_AUTHORIZATION_FAILED),
                }),
        };
        let mut result = DeletableTopicResult::default().with_name(name.clone());
        if version >= 6 {
            result = result.with_topic_id(id);
        }
        let error_code = match meta {
            Err(error_code) => error_code,
            Ok(meta) => {
                if version >= 6 {
                    result = result
                        .with_topic_id(Uuid::from_bytes(meta.id))
                        .with_name(Some(TopicName(StrBytes::from_string(meta.name.clone()))));
                }
                let command = MetadataCommand::DeleteTopic {
                    name: meta.name.clone(),
                };
                match shard.propose(command).await {
                    Ok(_) => {
                        crate::group::runtime::forget_topic(shard, meta.name.clone()).await;
                        code::NONE
                    }
                    Err(e) => e.kafka_error_code(),
                }
            }
        };
        responses.push(result.with_error_code(error_code));
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
