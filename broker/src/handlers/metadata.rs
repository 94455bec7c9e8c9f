//! Metadata (3): brokers, topics and partition leaders, with auto-creation of topics.

use crate::authorizer::Authz;
use crate::handlers::code;
use crate::listeners::ListenerInfo;
use crate::shard::Shard;
use controller::acl::{Operation, ResourceType, CLUSTER_NAME};
use controller::{MetadataCommand, MetadataImage, TopicMeta};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::rc::Rc;
use uuid::Uuid;

pub async fn handle(
    shard: &Rc<Shard>,
    request: MetadataRequest,
    version: i16,
    listener: &ListenerInfo,
    authz: &Authz,
) -> MetadataResponse {
    let mut image = shard.image();
    let topic_operations = request.include_topic_authorized_operations;
    let cluster_operations = request.include_cluster_authorized_operations;
    // v0 asks for all topics with an empty list; v1+ with a null one.
    let requested = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(topics),
        _ => None,
    };
    let topics = match requested {
        // Only the topics the principal may describe (Kafka).
        None => image
            .topics
            .values()
            .filter(|t| authz.topic(Operation::Describe, &t.name))
            .map(|t| topic_entry(&image, t))
            .collect(),
        Some(requested) => {
            let allow_auto_create = shard.config.auto_create_topics_enable
                && (version < 4 || request.allow_auto_topic_creation);
            let mut entries = Vec::with_capacity(requested.len());
            for wanted in requested {
                let entry = match wanted.name {
                    Some(name) if !authz.topic(Operation::Describe, name.as_str()) => {
                        refused(Some(name), Uuid::nil())
                    }
                    Some(name) => {
                        // Kafka: auto-creation needs Create on the cluster or the topic.
                        let create = allow_auto_create
                            && (authz.cluster(Operation::Create)
                                || authz.topic(Operation::Create, name.as_str()));
                        let refused_create = allow_auto_create && !create;
                        named_topic(shard, &mut image, name, create, refused_create).await
                    }
                    None => by_id(&image, wanted.topic_id, authz),
                };
                entries.push(entry);
            }
            entries
        }
    };
    let topics = match topic_operations {
        false => topics,
        true => with_topic_operations(topics, authz),
    };
    let brokers = live_brokers(shard, &image, &listener.name)
        .into_iter()
        .map(|b| on_listener(shard, listener, b))
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(image.cluster_id.clone())))
        .with_controller_id(BrokerId(controller_id(shard)))
        .with_topics(topics)
        .with_cluster_authorized_operations(match cluster_operations {
            true => authz.operations(ResourceType::Cluster, CLUSTER_NAME, &Operation::CLUSTER),
            false => crate::authorizer::OPERATIONS_NOT_ASKED,
        })
}

/// A topic the principal may not describe: TOPIC_AUTHORIZATION_FAILED, nothing about it.
fn refused(name: Option<TopicName>, id: Uuid) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name)
        .with_topic_id(id)
        .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
}

/// Each described topic's `topic_authorized_operations` (asked for from v8).
fn with_topic_operations(
    topics: Vec<MetadataResponseTopic>,
    authz: &Authz,
) -> Vec<MetadataResponseTopic> {
    topics
        .into_iter()
        .map(|t| match (&t.name, t.error_code) {
            (Some(name), code::NONE) => {
                let ops = authz.operations(ResourceType::Topic, name.as_str(), &Operation::TOPIC);
                t.with_topic_authorized_operations(ops)
            }
            _ => t,
        })
        .collect()
}

/// A broker as Metadata, DescribeCluster and FindCoordinator show it to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerView {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// The brokers clients that came in on listener `listener` may use: the unfenced registered
/// brokers of a multi-node cluster (its image has brokers) that have that listener, or this
/// node alone.
pub fn live_brokers(shard: &Shard, image: &MetadataImage, listener: &str) -> Vec<BrokerView> {
    if image.brokers.is_empty() {
        return vec![this_node(shard)];
    }
    image
        .live_brokers()
        .filter_map(|b| registered(b, listener))
        .collect()
}

/// Broker `node_id` if clients on `listener` may use it.
pub fn live_broker(
    shard: &Shard,
    image: &MetadataImage,
    node_id: i32,
    listener: &str,
) -> Option<BrokerView> {
    if image.brokers.is_empty() {
        return (node_id == shard.config.node_id).then(|| this_node(shard));
    }
    live_registered(image, node_id, listener)
}

/// Broker `node_id` if clients on `listener` may use it, without a shard: `this_node` is
/// this broker, the only one an image without broker registrations (a single node) knows.
pub fn broker_view(
    image: &MetadataImage,
    this_node: &BrokerView,
    node_id: i32,
    listener: &str,
) -> Option<BrokerView> {
    if image.brokers.is_empty() {
        return (node_id == this_node.node_id).then(|| this_node.clone());
    }
    live_registered(image, node_id, listener)
}

fn live_registered(image: &MetadataImage, node_id: i32, listener: &str) -> Option<BrokerView> {
    image
        .brokers
        .get(&node_id)
        .filter(|b| !b.fenced)
        .and_then(|b| registered(b, listener))
}

/// The controller id clients are told. As in KRaft, a live broker, since clients cannot
/// reach the controllers: this node, which forwards admin requests to the active controller
/// (a dead broker is listed until its session expires, so naming another could send admin
/// clients to it).
pub fn controller_id(shard: &Shard) -> i32 {
    shard.config.node_id
}

/// A broker as clients that came in on `listener` reach it: this broker at the listener's
/// advertised address (other brokers already are, from their registered endpoints).
pub fn on_listener(shard: &Shard, listener: &ListenerInfo, broker: BrokerView) -> BrokerView {
    if broker.node_id != shard.config.node_id {
        return broker;
    }
    let host = match listener.advertised.host.as_str() {
        // `--listen :PORT` advertises no host; the registration says localhost.
        "" => "localhost".to_owned(),
        host => host.to_owned(),
    };
    BrokerView {
        host,
        port: listener.advertised.port,
        ..broker
    }
}

/// This broker as clients reach it.
pub fn this_node(shard: &Shard) -> BrokerView {
    BrokerView {
        node_id: shard.config.node_id,
        host: shard.advertised.host.clone(),
        port: shard.advertised.port,
        rack: None,
    }
}

/// Broker `b` on listener `listener`; `None` when it does not have that listener (Kafka
/// leaves such brokers out of the answers of clients on it).
fn registered(b: &controller::BrokerRegistration, listener: &str) -> Option<BrokerView> {
    let (host, port) = b.endpoint(listener)?;
    Some(BrokerView {
        node_id: b.node_id,
        host: host.to_owned(),
        port: i32::from(port),
        rack: b.rack.clone(),
    })
}

async fn named_topic(
    shard: &Rc<Shard>,
    image: &mut std::sync::Arc<MetadataImage>,
    name: TopicName,
    allow_auto_create: bool,
    refused_create: bool,
) -> MetadataResponseTopic {
    if let Some(topic) = image.topic(name.as_str()) {
        return topic_entry(image, topic);
    }
    let error = |error_code| {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(error_code)
    };
    if controller::validate_topic_name(name.as_str()).is_err() {
        return error(code::INVALID_TOPIC_EXCEPTION);
    }
    if refused_create {
        return error(code::TOPIC_AUTHORIZATION_FAILED);
    }
    if !allow_auto_create {
        return error(code::UNKNOWN_TOPIC_OR_PARTITION);
    }
    let command = MetadataCommand::CreateTopic {
        name: name.to_string(),
        partitions: shard.config.num_partitions,
        replication_factor: -1,
        default_replication_factor: crate::handlers::topics::default_replication_factor(shard),
        configs: BTreeMap::new(),
    };
    match shard.propose(command).await {
        Ok(_) => {}
        Err(e) if e.is_topic_already_exists() => {}
        Err(e) => return error(e.kafka_error_code()),
    }
    *image = shard.image();
    match image.topic(name.as_str()) {
        Some(topic) => topic_entry(image, topic),
        None => error(code::LEADER_NOT_AVAILABLE),
    }
}

fn by_id(image: &MetadataImage, id: Uuid, authz: &Authz) -> MetadataResponseTopic {
    match image.topic_by_id(id.as_bytes()) {
        Some(topic) if !authz.topic(Operation::Describe, &topic.name) => refused(None, id),
        Some(topic) => topic_entry(image, topic),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(code::UNKNOWN_TOPIC_ID),
    }
}

fn topic_entry(image: &MetadataImage, topic: &TopicMeta) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|index| partition_entry(image, topic, index))
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(Uuid::from_bytes(topic.id))
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions)
}

/// A partition as its registration says; without a live leader (-1: its ISR is fenced, the
/// last-ISR rule) it is LEADER_NOT_AVAILABLE, as in Kafka.
fn partition_entry(
    image: &MetadataImage,
    topic: &TopicMeta,
    index: i32,
) -> MetadataResponsePartition {
    let entry = MetadataResponsePartition::default().with_partition_index(index);
    let offline = |entry: MetadataResponsePartition| {
        entry
            .with_error_code(code::LEADER_NOT_AVAILABLE)
            .with_leader_id(BrokerId(-1))
    };
    let Some(view) = partition_view(image, &topic.id, index) else {
        return offline(entry);
    };
    let entry = entry
        .with_leader_epoch(view.leader_epoch)
        .with_replica_nodes(view.replicas)
        .with_isr_nodes(view.isr)
        .with_offline_replicas(view.offline);
    match view.leader {
        Some(leader) => entry.with_leader_id(BrokerId(leader)),
        None => offline(entry),
    }
}

/// A partition as clients are shown it (Metadata, DescribeTopicPartitions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    /// The leader while its broker is live; `None`: offline.
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    /// Preferred leader first.
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// Replicas on brokers that are not live (fenced or unregistered).
    pub offline: Vec<BrokerId>,
}

/// Partition `index` of topic `id` from its registration; `None` when it has none yet.
pub fn partition_view(
    image: &MetadataImage,
    id: &controller::TopicId,
    index: i32,
) -> Option<PartitionView> {
    let registration = image.partition(id, index)?;
    Some(PartitionView {
        leader: image.partition_leader(id, index),
        leader_epoch: registration.leader_epoch,
        replicas: registration.replica_brokers().map(BrokerId).collect(),
        isr: registration.isr.iter().copied().map(BrokerId).collect(),
        offline: registration
            .replica_brokers()
            .filter(|b| !image.is_live(*b))
            .map(BrokerId)
            .collect(),
    })
}

/// Whether clients are told a topic is internal (Kafka's `Topic.isInternal`, less the
/// transaction and share-group topics Spate does not have).
pub fn is_internal(name: &str) -> bool {
    name == crate::group::OFFSETS_TOPIC
}

#[cfg(test)]
mod tests {
    use super::*;
    use controller::{
        BrokerRegistration, MetadataRecord, PartitionRegistration, PartitionsAssigned, Placement,
    };

    fn broker(node_id: i32, fenced: bool) -> MetadataRecord {
        MetadataRecord::BrokerRegistered(Box::new(BrokerRegistration {
            node_id,
            epoch: 1,
            host: "127.0.0.1".into(),
            port: 9090 + node_id as u16,
            shards: 1,
            rack: None,
            fenced,
            endpoints: Vec::new(),
        }))
    }

    fn cluster_with_topic(fenced_broker: i32) -> (MetadataImage, TopicMeta) {
        let topic = TopicMeta {
            name: "t".into(),
            id: [7; 16],
            partitions: 2,
            replication_factor: 1,
            configs: BTreeMap::new(),
        };
        let records = [
            MetadataRecord::ClusterInit {
                cluster_id: "c".into(),
            },
            broker(1, false),
            broker(2, false),
            MetadataRecord::TopicCreated(topic.clone()),
            MetadataRecord::PartitionsPlaced {
                id: topic.id,
                first: 0,
                placements: vec![
                    Placement {
                        broker: 1,
                        shard: 0,
                    },
                    Placement {
                        broker: 2,
                        shard: 0,
                    },
                ],
            },
            MetadataRecord::BrokerFenced {
                node_id: fenced_broker,
                fenced: true,
            },
        ];
        let (image, _) = MetadataImage::empty(1)
            .apply_batch(&records)
            .expect("records apply");
        (image, topic)
    }

    #[test]
    fn brokers_are_answered_on_the_listener_the_client_came_in_on() {
        let endpoint = |name: &str, port: u16, protocol: i16| controller::BrokerEndpoint {
            name: name.into(),
            host: format!("{}.example", name.to_ascii_lowercase()),
            port,
            security_protocol: protocol,
        };
        let (image, _) = cluster_with_topic(2);
        let mut both = image.brokers[&1].clone();
        both.endpoints = vec![endpoint("PLAINTEXT", 9092, 0), endpoint("SSL", 9093, 1)];
        let mut plain_only = image.brokers[&1].clone();
        plain_only.endpoints = vec![endpoint("PLAINTEXT", 9092, 0)];
        let view = |b: &BrokerRegistration, l: &str| registered(b, l).map(|v| (v.host, v.port));
        assert_eq!(view(&both, "SSL"), Some(("ssl.example".into(), 9093)));
        assert_eq!(
            view(&both, "PLAINTEXT"),
            Some(("plaintext.example".into(), 9092))
        );
        // Kafka leaves a broker without the client's listener out.
        assert_eq!(view(&plain_only, "SSL"), None);
        // A registration written before endpoints answers its one address everywhere.
        let legacy = &image.brokers[&1];
        assert_eq!(view(legacy, "SSL"), Some(("127.0.0.1".into(), 9091)));
    }

    #[test]
    fn a_placed_partition_is_led_by_its_broker_and_offline_while_it_is_fenced() {
        let (image, topic) = cluster_with_topic(2);
        let led = partition_entry(&image, &topic, 0);
        assert_eq!((led.error_code, led.leader_id), (0, BrokerId(1)));
        assert_eq!(led.isr_nodes, vec![BrokerId(1)]);
        assert!(led.offline_replicas.is_empty());
        let offline = partition_entry(&image, &topic, 1);
        assert_eq!(
            (offline.error_code, offline.leader_id),
            (code::LEADER_NOT_AVAILABLE, BrokerId(-1))
        );
        assert_eq!(offline.replica_nodes, vec![BrokerId(2)]);
        assert_eq!(offline.offline_replicas, vec![BrokerId(2)]);
        // The last ISR member keeps its place while fenced.
        assert_eq!(offline.isr_nodes, vec![BrokerId(2)]);
    }

    #[test]
    fn replicas_isr_leader_and_epoch_come_from_the_registration() {
        let (image, topic) = cluster_with_topic(2);
        let mut registration = PartitionRegistration::new(vec![
            Placement {
                broker: 2,
                shard: 0,
            },
            Placement {
                broker: 1,
                shard: 0,
            },
        ]);
        registration.isr = vec![1];
        registration.leader = 1;
        registration.leader_epoch = 4;
        let records = [
            MetadataRecord::TopicCreated(TopicMeta {
                name: "r".into(),
                id: [8; 16],
                partitions: 1,
                ..topic.clone()
            }),
            MetadataRecord::PartitionsAssigned(Box::new(PartitionsAssigned {
                id: [8; 16],
                first: 0,
                partitions: vec![registration],
            })),
        ];
        let (image, _) = image.apply_batch(&records).expect("apply");
        let entry = partition_entry(&image, image.topic("r").expect("r"), 0);
        assert_eq!((entry.error_code, entry.leader_id), (0, BrokerId(1)));
        assert_eq!(entry.leader_epoch, 4);
        assert_eq!(entry.replica_nodes, vec![BrokerId(2), BrokerId(1)]);
        assert_eq!(entry.isr_nodes, vec![BrokerId(1)]);
        assert_eq!(entry.offline_replicas, vec![BrokerId(2)]);
    }
}
