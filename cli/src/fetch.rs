//! Fetch for `consume`, with each partition's error code kept (the bench client's `fetch`
//! fails the whole call on any), so an out-of-range position can be moved and others named.

use crate::session::{topic_name, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse};
use spate_bench::client::Connection;

/// The newest Fetch that names topics (v13+ use topic ids), as the bench client uses.
const FETCH_VERSION: i16 = 12;
const RESPONSE_MAX_BYTES: i32 = 64 << 20;

/// What one partition of a fetch returned.
pub struct FetchedPartition {
    pub partition: i32,
    pub error_code: i16,
    pub records: Bytes,
}

/// Fetches partitions of a topic at the given offsets (no fetch session).
pub async fn fetch(
    connection: &Connection,
    topic: &str,
    offsets: &[(i32, i64)],
    max_wait_ms: i32,
    partition_max_bytes: i32,
) -> Result<Vec<FetchedPartition>> {
    let partitions = offsets
        .iter()
        .map(|&(partition, fetch_offset)| {
            FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(fetch_offset)
                .with_partition_max_bytes(partition_max_bytes)
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(partitions)]);
    let reply: FetchResponse = connection
        .call(ApiKey::Fetch, FETCH_VERSION, &request)
        .await?;
    crate::session::check(reply.error_code, || format!("topic '{topic}': fetch"))?;
    Ok(reply
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .map(|p| FetchedPartition {
            partition: p.partition_index,
            error_code: p.error_code,
            records: p.records.unwrap_or_default(),
        })
        .collect())
}
