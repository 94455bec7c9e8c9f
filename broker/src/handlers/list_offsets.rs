//! ListOffsets (2): earliest, latest, the first offset at or after a timestamp, and the record
//! with the largest timestamp (MAX_TIMESTAMP).

use crate::authorizer::Authz;
use crate::handlers::{code, partition_key, resolve_authorized};
use crate::shard::{Routed, Shard};
use controller::acl::Operation;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use std::rc::Rc;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// (error_code, timestamp, offset) for one partition.
type Found = (i16, i64, i64);

pub async fn handle(
    shard: &Rc<Shard>,
    request: ListOffsetsRequest,
    version: i16,
    authz: &Authz,
) -> ListOffsetsResponse {
    let image = shard.image();
    let mut found: Vec<Found> = Vec::new();
    let mut routed = Vec::new();
    for topic in &request.topics {
        let nil = uuid::Uuid::nil();
        let meta = resolve_authorized(&image, &topic.name, nil, false, authz, Operation::Describe);
        for partition in &topic.partitions {
            let slot = found.len();
            found.push((code::NONE, -1, -1));
            match partition_key(meta, partition.partition_index) {
                Ok(key) => routed.push(Routed {
                    slot,
                    key,
                    item: (partition.timestamp, partition.current_leader_epoch),
                }),
                Err(error_code) => found[slot].0 = error_code,
            }
        }
    }
    let results = shard.scatter(routed, lookup_all).await;
    for (slot, result) in results {
        found[slot] = result;
    }
    let mut found = found.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let (error_code, timestamp, offset) = found.next().expect("one per partition");
                    let mut response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error_code)
                        .with_timestamp(timestamp)
                        .with_offset(offset);
                    if version >= 4 {
                        response = response.with_leader_epoch(if offset >= 0 { 0 } else { -1 });
                    }
                    response
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// On the owner shard.
async fn lookup_all(shard: Rc<Shard>, items: Vec<Routed<(i64, i32)>>) -> Vec<(usize, Found)> {
    let mut out = Vec::with_capacity(items.len());
    for Routed {
        slot,
        key,
        item: (timestamp, current_leader_epoch),
    } in items
    {
        let Some(partition) = shard.partition(&key) else {
            out.push((slot, (code::NOT_LEADER_OR_FOLLOWER, -1, -1)));
            continue;
        };
        let checked = partition
            .check_leader_epoch(current_leader_epoch)
            .and_then(|()| partition.check_online());
        if let Err(error_code) = checked {
            out.push((slot, (error_code, -1, -1)));
            continue;
        }
        let log = partition.log();
        let found = match timestamp {
            LATEST => (code::NONE, -1, partition.high_watermark()),
            EARLIEST | EARLIEST_LOCAL => (code::NONE, -1, partition.log_start_offset()),
            // Nothing is tiered: Kafka answers "no offset" for an untiered log.
            LATEST_TIERED => (code::NONE, -1, -1),
            MAX_TIMESTAMP => answer(&shard, log.max_timestamp_offset().await),
            ts if ts < 0 => (code::INVALID_REQUEST, -1, -1),
            ts => answer(&shard, log.offset_for_timestamp(ts).await),
        };
        out.push((slot, found));
    }
    out
}

/// A timestamp lookup's (offset, timestamp) as the partition's answer.
fn answer(shard: &Shard, found: Result<Option<(i64, i64)>, storage::StorageError>) -> Found {
    match found {
        Ok(Some((offset, timestamp))) => (code::NONE, timestamp, offset),
        Ok(None) => (code::NONE, -1, -1),
        Err(e) => {
            tracing::error!(shard = shard.id, "offset lookup failed: {e}");
            (code::KAFKA_STORAGE_ERROR, -1, -1)
        }
    }
}
