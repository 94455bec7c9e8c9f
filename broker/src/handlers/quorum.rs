//! DescribeQuorum (55) on a single node: the node is the only voter and the leader of the
//! metadata log (`__cluster_metadata` partition 0), whose high watermark is the image
//! version. Kafka's `kafka-metadata-quorum --bootstrap-server` reads it.

use super::code;
use crate::shard::Shard;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;

pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// A single node is its own leader from the first term on.
const LEADER_EPOCH: i32 = 1;

pub fn describe(
    shard: &Shard,
    request: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let node = BrokerId(shard.config.node_id);
    let high_watermark = shard.image().version as i64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let known_topic = topic.topic_name.as_str() == METADATA_TOPIC;
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let answer = PartitionData::default().with_partition_index(p.partition_index);
                    if !known_topic || p.partition_index != 0 {
                        return answer.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                    }
                    let voter = ReplicaState::default()
                        .with_replica_id(node)
                        .with_log_end_offset(high_watermark)
                        .with_last_fetch_timestamp(now_ms)
                        .with_last_caught_up_timestamp(now_ms);
                    answer
                        .with_leader_id(node)
                        .with_leader_epoch(LEADER_EPOCH)
                        .with_high_watermark(high_watermark)
                        .with_current_voters(vec![voter])
                })
                .collect();
            TopicData::default()
                .with_topic_name(topic.topic_name)
                .with_partitions(partitions)
        })
        .collect();
    let mut response = DescribeQuorumResponse::default().with_topics(topics);
    if version >= 2 {
        let listener = Listener::default()
            .with_name(StrBytes::from_static_str("CONTROLLER"))
            .with_host(StrBytes::from_string(shard.advertised.host.clone()))
            .with_port(shard.advertised.port as u16);
        response = response.with_nodes(vec![Node::default()
            .with_node_id(node)
            .with_listeners(vec![listener])]);
    }
    response
}
