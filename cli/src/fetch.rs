//! Fetch for `consume`, with each partition's error code kept (the bench client's `fetch`
//! fails the whole call on any), so an out-of-range position can be moved and others named.

use crate::session::Result;
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, FetchResponse};
use spate_bench::client::{fetch_request, Connection, FETCH_VERSION};

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
    let request = fetch_request(topic, offsets, max_wait_ms, partition_max_bytes);
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
