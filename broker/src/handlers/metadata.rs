//! Metadata (3): brokers, topics and partition leaders, with auto-creation of topics.

use crate::handlers::code;
use crate::shard::Shard;
use controller::{ApplyError, MetadataCommand, MetadataImage, TopicMeta};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::rc::Rc;
use uuid::Uuid;

pub async fn handle(shard: &Rc<Shard>, request: MetadataRequest, version: i16) -> MetadataResponse {
    let mut image = shard.image();
    // v0 asks for all topics with an empty list; v1+ with a null one.
    let requested = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(topics),
        _ => None,
    };
    let topics = match requested {
        None => image
            .topics
            .values()
            .map(|t| topic_entry(shard, t))
            .collect(),
        Some(requested) => {
            let allow_auto_create = shard.config.auto_create_topics_enable
                && (version < 4 || request.allow_auto_topic_creation);
            let mut entries = Vec::with_capacity(requested.len());
            for wanted in requested {
                let entry = match wanted.name {
                    Some(name) => named_topic(shard, &mut image, name, allow_auto_create).await,
                    None => by_id(shard, &image, wanted.topic_id),
                };
                entries.push(entry);
            }
            entries
        }
    };
    MetadataResponse::default()
        .with_brokers(vec![broker_entry(shard)])
        .with_cluster_id(Some(StrBytes::from_string(image.cluster_id.clone())))
        .with_controller_id(BrokerId(shard.config.node_id))
        .with_topics(topics)
}

/// The one broker of this single-node cluster.
pub fn broker_entry(shard: &Shard) -> MetadataResponseBroker {
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(shard.config.node_id))
        .with_host(StrBytes::from_string(shard.advertised.host.clone()))
        .with_port(shard.advertised.port)
}

async fn named_topic(
    shard: &Rc<Shard>,
    image: &mut std::sync::Arc<MetadataImage>,
    name: TopicName,
    allow_auto_create: bool,
) -> MetadataResponseTopic {
    if let Some(topic) = image.topic(name.as_str()) {
        return topic_entry(shard, topic);
    }
    let error = |error_code| {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(error_code)
    };
    if controller::validate_topic_name(name.as_str()).is_err() {
        return error(code::INVALID_TOPIC_EXCEPTION);
    }
    if !allow_auto_create {
        return error(code::UNKNOWN_TOPIC_OR_PARTITION);
    }
    let command = MetadataCommand::CreateTopic {
        name: name.to_string(),
        partitions: shard.config.num_partitions,
        replication_factor: shard.config.default_replication_factor,
        configs: BTreeMap::new(),
    };
    match shard.propose(command).await {
        Ok(_) | Err(ApplyError::TopicAlreadyExists(_)) => {
            *image = shard.image();
            match image.topic(name.as_str()) {
                Some(topic) => topic_entry(shard, topic),
                None => error(code::LEADER_NOT_AVAILABLE),
            }
        }
        Err(e) => error(e.kafka_error_code()),
    }
}

fn by_id(shard: &Shard, image: &MetadataImage, id: Uuid) -> MetadataResponseTopic {
    match image.topic_by_id(id.as_bytes()) {
        Some(topic) => topic_entry(shard, topic),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(code::UNKNOWN_TOPIC_ID),
    }
}

fn topic_entry(shard: &Shard, topic: &TopicMeta) -> MetadataResponseTopic {
    let node = BrokerId(shard.config.node_id);
    let partitions = (0..topic.partitions)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(Uuid::from_bytes(topic.id))
        .with_is_internal(topic.name == crate::group::OFFSETS_TOPIC)
        .with_partitions(partitions)
}
