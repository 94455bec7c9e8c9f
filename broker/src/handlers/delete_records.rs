//! DeleteRecords (21): moves each partition's log start offset (low watermark) forward on its
//! owner shard; closed segments wholly below it are deleted there and then.

use crate::authorizer::Authz;
use crate::handlers::{code, partition_key, resolve_authorized};
use crate::shard::{Routed, Shard};
use controller::acl::Operation;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use std::rc::Rc;

/// Offset -1 means "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

/// (error_code, low_watermark) of one partition.
type Deleted = (i16, i64);

pub async fn handle(
    shard: &Rc<Shard>,
    request: DeleteRecordsRequest,
    authz: &Authz,
) -> DeleteRecordsResponse {
    let image = shard.image();
    let mut answers: Vec<Deleted> = Vec::new();
    let mut routed = Vec::new();
    for topic in &request.topics {
        let nil = uuid::Uuid::nil();
        let meta = resolve_authorized(&image, &topic.name, nil, false, authz, Operation::Delete);
        for p in &topic.partitions {
            let slot = answers.len();
            answers.push((code::NONE, -1));
            match partition_key(meta, p.partition_index) {
                Ok(key) => routed.push(Routed {
                    slot,
                    key,
                    item: p.offset,
                }),
                Err(error_code) => answers[slot].0 = error_code,
            }
        }
    }
    for (slot, answer) in shard.scatter(routed, delete_all).await {
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
                    let (error_code, low_watermark) = answers.next().expect("one per partition");
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error_code)
                        .with_low_watermark(low_watermark)
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

/// On the owner shard.
async fn delete_all(shard: Rc<Shard>, items: Vec<Routed<i64>>) -> Vec<(usize, Deleted)> {
    let mut out = Vec::with_capacity(items.len());
    for Routed { slot, key, item } in items {
        let Some(partition) = shard.partition(&key) else {
            out.push((slot, (code::NOT_LEADER_OR_FOLLOWER, -1)));
            continue;
        };
        if let Err(error_code) = partition.check_online() {
            out.push((slot, (error_code, -1)));
            continue;
        }
        let high_watermark = partition.high_watermark();
        let offset = if item == HIGH_WATERMARK {
            high_watermark
        } else {
            item
        };
        if !(0..=high_watermark).contains(&offset) {
            out.push((slot, (code::OFFSET_OUT_OF_RANGE, -1)));
            continue;
        }
        let answer = match partition.log().delete_records_before(offset).await {
            Ok(low_watermark) => (code::NONE, low_watermark),
            Err(e) => {
                tracing::error!(shard = shard.id, "delete records failed: {e}");
                (code::KAFKA_STORAGE_ERROR, -1)
            }
        };
        out.push((slot, answer));
    }
    out
}
