//! OffsetForLeaderEpoch (23): for each partition, the end offset of the largest leader epoch
//! at or below the one asked for (Kafka's `LeaderEpochFileCache.endOffsetFor`). Consumers ask
//! after a leader change to find out whether the log they read was truncated (KIP-320);
//! followers ask it too in Kafka, Spate's followers get the same answer from their fetch.

use crate::authorizer::Authz;
use crate::handlers::{code, partition_key, resolve_authorized};
use crate::shard::{Routed, Shard};
use controller::acl::Operation;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use std::rc::Rc;

/// Kafka's answer when no epoch fits: UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
const UNDEFINED: (i32, i64) = (-1, -1);

/// One partition's question: the epoch asked for and the client's current leader epoch.
#[derive(Clone, Copy)]
struct Asked {
    leader_epoch: i32,
    current_leader_epoch: i32,
}

/// (error code, epoch, end offset) of one partition.
type Answer = (i16, i32, i64);

pub async fn handle(
    shard: &Rc<Shard>,
    request: OffsetForLeaderEpochRequest,
    authz: &Authz,
) -> OffsetForLeaderEpochResponse {
    let image = shard.image();
    let mut answers: Vec<Answer> = Vec::new();
    let mut routed = Vec::new();
    for topic in &request.topics {
        let nil = uuid::Uuid::nil();
        let meta = resolve_authorized(&image, &topic.topic, nil, false, authz, Operation::Describe);
        for p in &topic.partitions {
            let slot = answers.len();
            answers.push((code::NONE, UNDEFINED.0, UNDEFINED.1));
            match partition_key(meta, p.partition) {
                Ok(key) => routed.push(Routed {
                    slot,
                    key,
                    item: Asked {
                        leader_epoch: p.leader_epoch,
                        current_leader_epoch: p.current_leader_epoch,
                    },
                }),
                Err(error_code) => answers[slot].0 = error_code,
            }
        }
    }
    for (slot, answer) in shard.scatter(routed, look_up_all).await {
        answers[slot] = answer;
    }
    let mut answers = answers.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let (error_code, epoch, end_offset) =
                        answers.next().expect("one per partition");
                    EpochEndOffset::default()
                        .with_error_code(error_code)
                        .with_partition(p.partition)
                        .with_leader_epoch(epoch)
                        .with_end_offset(end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// On the owner shard.
async fn look_up_all(shard: Rc<Shard>, items: Vec<Routed<Asked>>) -> Vec<(usize, Answer)> {
    items
        .into_iter()
        .map(|Routed { slot, key, item }| {
            let Some(partition) = shard.partition(&key) else {
                return (
                    slot,
                    (code::NOT_LEADER_OR_FOLLOWER, UNDEFINED.0, UNDEFINED.1),
                );
            };
            let checked = partition
                .check_leader_epoch(item.current_leader_epoch)
                .and_then(|()| partition.check_online());
            if let Err(error_code) = checked {
                return (slot, (error_code, UNDEFINED.0, UNDEFINED.1));
            }
            let (epoch, end_offset) = partition.end_offset_for_epoch(item.leader_epoch);
            (slot, (code::NONE, epoch, end_offset))
        })
        .collect()
}
