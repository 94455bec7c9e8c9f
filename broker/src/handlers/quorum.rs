//! DescribeQuorum (55). On a single node the node is the only voter and the leader of the
//! metadata log (`__cluster_metadata` partition 0), whose high watermark is the image
//! version; a broker of a multi-node cluster asks the active controller for the Raft state
//! (term, commit index, each voter's matched index). Kafka's `kafka-metadata-quorum
//! --bootstrap-server` reads it.

use super::code;
use crate::authorizer::Authz;
use crate::shard::Shard;
use controller::acl::Operation;
use controller::quorum::QuorumStatus;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;
use std::rc::Rc;

pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// A single node is its own leader from the first term on.
const LEADER_EPOCH: i32 = 1;

/// The metadata log as DescribeQuorum reports it.
struct LogView {
    leader: i32,
    epoch: i32,
    high_watermark: i64,
    /// Voter id and its log end offset (-1: unknown).
    voters: Vec<(i32, i64)>,
    /// Voter id and its controller listener.
    listeners: Vec<(i32, String, u16)>,
}

pub async fn describe(
    shard: &Rc<Shard>,
    request: DescribeQuorumRequest,
    version: i16,
    authz: &Authz,
) -> DescribeQuorumResponse {
    // Kafka: Describe on the cluster.
    if !authz.cluster(Operation::Describe) {
        return DescribeQuorumResponse::default()
            .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED);
    }
    let view = match shard.describe_quorum().await {
        None => single_node(shard),
        Some(Ok((status, voters))) => cluster(status, voters),
        Some(Err(e)) => {
            tracing::warn!("DescribeQuorum: {e}");
            return DescribeQuorumResponse::default()
                .with_error_code(code::NOT_LEADER_OR_FOLLOWER)
                .with_error_message(Some(StrBytes::from_string(e)));
        }
    };
    respond(view, request, version)
}

fn single_node(shard: &Shard) -> LogView {
    let node = shard.config.node_id;
    let high_watermark = shard.image().version as i64;
    LogView {
        leader: node,
        epoch: LEADER_EPOCH,
        high_watermark,
        voters: vec![(node, high_watermark)],
        listeners: vec![(
            node,
            shard.advertised.host.clone(),
            shard.advertised.port as u16,
        )],
    }
}

fn cluster(status: QuorumStatus, addresses: Vec<(u64, String)>) -> LogView {
    let voters = status
        .voters
        .iter()
        .map(|(id, matched)| (*id as i32, matched.map_or(-1, |m| m as i64)))
        .collect();
    let listeners = addresses
        .into_iter()
        .filter_map(|(id, address)| {
            let (host, port) = address.rsplit_once(':')?;
            Some((id as i32, host.to_owned(), port.parse().ok()?))
        })
        .collect();
    LogView {
        leader: status.leader.map_or(-1, |l| l as i32),
        epoch: i32::try_from(status.term).unwrap_or(i32::MAX),
        high_watermark: status.commit_index as i64,
        voters,
        listeners,
    }
}

fn respond(view: LogView, request: DescribeQuorumRequest, version: i16) -> DescribeQuorumResponse {
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
                    let voters = view
                        .voters
                        .iter()
                        .map(|(id, log_end_offset)| {
                            ReplicaState::default()
                                .with_replica_id(BrokerId(*id))
                                .with_log_end_offset(*log_end_offset)
                                .with_last_fetch_timestamp(now_ms)
                                .with_last_caught_up_timestamp(now_ms)
                        })
                        .collect();
                    answer
                        .with_leader_id(BrokerId(view.leader))
                        .with_leader_epoch(view.epoch)
                        .with_high_watermark(view.high_watermark)
                        .with_current_voters(voters)
                })
                .collect();
            TopicData::default()
                .with_topic_name(topic.topic_name)
                .with_partitions(partitions)
        })
        .collect();
    let mut response = DescribeQuorumResponse::default().with_topics(topics);
    if version >= 2 {
        let nodes = view
            .listeners
            .into_iter()
            .map(|(id, host, port)| {
                let listener = Listener::default()
                    .with_name(StrBytes::from_static_str("CONTROLLER"))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port);
                Node::default()
                    .with_node_id(BrokerId(id))
                    .with_listeners(vec![listener])
            })
            .collect();
        response = response.with_nodes(nodes);
    }
    response
}
