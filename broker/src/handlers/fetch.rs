//! Fetch (1): read whole batches from each partition's owner shard; long-poll until
//! `min_bytes` are there or `max_wait_ms` has passed; bound the answer by `max_bytes` and
//! each partition's `partition_max_bytes`.

use crate::handlers::{code, partition_key, resolve_topic};
use crate::partition::FollowerFetch;
use crate::shard::{PartitionKey, Routed, Shard};
use bytes::Bytes;
use futures::future::{select, select_all, Either};
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use std::rc::Rc;
use std::time::{Duration, Instant};
use storage::log::ReadBatches;

/// What to read from one partition.
#[derive(Clone, Copy)]
struct ReadItem {
    offset: i64,
    max_bytes: usize,
    /// The leader epoch the client believes current (-1: unknown, not checked).
    current_leader_epoch: i32,
    /// A follower's: the epoch of its last batch (-1: none).
    last_fetched_epoch: i32,
}

/// What one partition gave.
#[derive(Clone, Default)]
struct PartitionRead {
    error_code: i16,
    high_watermark: i64,
    log_start_offset: i64,
    /// Back to back in one buffer, sent as is (the read made the one copy).
    batches: ReadBatches,
    /// A follower's log diverges from this leader's: (epoch, end offset) here.
    diverging: Option<(i32, i64)>,
}

impl PartitionRead {
    fn error(error_code: i16) -> PartitionRead {
        PartitionRead {
            error_code,
            high_watermark: -1,
            log_start_offset: -1,
            batches: ReadBatches::default(),
            diverging: None,
        }
    }

    fn bytes(&self) -> usize {
        self.batches.total_bytes()
    }
}

/// A partition of the request, resolved once.
struct Wanted {
    key: Result<PartitionKey, i16>,
    read: ReadItem,
}

pub async fn handle(shard: &Rc<Shard>, request: FetchRequest, version: i16) -> FetchResponse {
    let image = shard.image();
    let by_id = version >= 13;
    let max_bytes = positive(request.max_bytes);
    let wanted: Vec<Wanted> = request
        .topics
        .iter()
        .flat_map(|topic| {
            let meta = resolve_topic(&image, &topic.topic, topic.topic_id, by_id);
            topic.partitions.iter().map(move |p| Wanted {
                key: partition_key(meta, p.partition),
                read: ReadItem {
                    offset: p.fetch_offset,
                    max_bytes: positive(p.partition_max_bytes).min(max_bytes),
                    current_leader_epoch: p.current_leader_epoch,
                    last_fetched_epoch: p.last_fetched_epoch,
                },
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let follower = follower_id(&request, version);
    let mut reads = read_once(shard, &wanted, follower).await;
    loop {
        let total: usize = reads.iter().map(PartitionRead::bytes).sum();
        let any_news = reads
            .iter()
            .any(|r| r.error_code != code::NONE || r.diverging.is_some());
        let now = Instant::now();
        if total >= min_bytes.max(1) || any_news || now >= deadline || wanted.is_empty() {
            break;
        }
        wait_for_data(shard, &wanted, deadline - now, follower.is_some()).await;
        reads = read_once(shard, &wanted, follower).await;
    }
    limit_total_bytes(&mut reads, max_bytes);
    build_response(&request, version, reads)
}

fn positive(bytes: i32) -> usize {
    if bytes <= 0 {
        usize::MAX
    } else {
        bytes as usize
    }
}

/// The broker id of a follower's fetch (`replica_id`, in `replica_state` from v15), `None`
/// for a consumer's.
fn follower_id(request: &FetchRequest, version: i16) -> Option<i32> {
    let id = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    (id >= 0).then_some(id)
}

async fn read_once(
    shard: &Rc<Shard>,
    wanted: &[Wanted],
    follower: Option<i32>,
) -> Vec<PartitionRead> {
    let mut reads = vec![PartitionRead::default(); wanted.len()];
    let mut routed = Vec::new();
    for (slot, w) in wanted.iter().enumerate() {
        match w.key {
            Ok(key) => routed.push(Routed {
                slot,
                key,
                item: w.read,
            }),
            Err(error_code) => reads[slot] = PartitionRead::error(error_code),
        }
    }
    let results = shard
        .scatter(routed, move |owner, items| read_all(owner, items, follower))
        .await;
    for (slot, read) in results {
        reads[slot] = read;
    }
    reads
}

/// On the owner shard: reads each partition, for a consumer or for the follower `follower`.
async fn read_all(
    shard: Rc<Shard>,
    items: Vec<Routed<ReadItem>>,
    follower: Option<i32>,
) -> Vec<(usize, PartitionRead)> {
    let reads = items.into_iter().map(|Routed { slot, key, item }| {
        let partition = shard.partition(&key);
        let shard = shard.clone();
        async move {
            let Some(partition) = partition else {
                return (slot, PartitionRead::error(code::NOT_LEADER_OR_FOLLOWER));
            };
            let read = match follower {
                Some(follower) => {
                    let fetch = FollowerFetch {
                        follower,
                        fetch_offset: item.offset,
                        last_fetched_epoch: item.last_fetched_epoch,
                        current_leader_epoch: item.current_leader_epoch,
                    };
                    partition.follower_read(&shard, fetch, item.max_bytes).await
                }
                None => {
                    if let Err(error_code) = partition.check_leader_epoch(item.current_leader_epoch)
                    {
                        return (slot, PartitionRead::error(error_code));
                    }
                    partition.read(item.offset, item.max_bytes).await
                }
            };
            let (error_code, batches) = match read.batches {
                Ok(batches) => (code::NONE, batches),
                Err(error_code) => (error_code, ReadBatches::default()),
            };
            let read = PartitionRead {
                error_code,
                high_watermark: read.high_watermark,
                log_start_offset: read.log_start_offset,
                batches,
                diverging: read.diverging,
            };
            (slot, read)
        }
    });
    futures::future::join_all(reads).await
}

/// Returns when any wanted partition has data at its fetch offset, or after `timeout`.
async fn wait_for_data(shard: &Rc<Shard>, wanted: &[Wanted], timeout: Duration, follower: bool) {
    let mut per_shard: Vec<Vec<(PartitionKey, i64)>> = vec![Vec::new(); shard.count];
    for w in wanted {
        if let Ok(key) = w.key {
            per_shard[shard.owner_of(&key)].push((key, w.read.offset));
        }
    }
    let waits: Vec<_> = per_shard
        .into_iter()
        .enumerate()
        .filter(|(_, items)| !items.is_empty())
        .map(|(target, items)| {
            Box::pin(shard.run_on(target, move |owner| {
                wait_on_owner(owner, items, timeout, follower)
            }))
        })
        .collect();
    if waits.is_empty() {
        return;
    }
    let timer = Box::pin(glommio::timer::sleep(timeout));
    let _ = select(select_all(waits), timer).await;
}

/// On the owner shard: resolves when one of `items` has data after its offset, or at timeout.
async fn wait_on_owner(
    shard: Rc<Shard>,
    items: Vec<(PartitionKey, i64)>,
    timeout: Duration,
    follower: bool,
) {
    let waits: Vec<_> = items
        .into_iter()
        .filter_map(|(key, offset)| {
            let partition = shard.partition(&key)?;
            Some(Box::pin(async move {
                partition.wait_for_data_after(offset, follower).await
            }))
        })
        .collect();
    if waits.is_empty() {
        return;
    }
    let timer = Box::pin(glommio::timer::sleep(timeout));
    match select(select_all(waits), timer).await {
        Either::Left(_) | Either::Right(_) => {}
    }
}

/// Kafka's `max_bytes`: partitions are filled in request order; the first batch of the first
/// partition with data is always returned, so a client can make progress past a large batch.
fn limit_total_bytes(reads: &mut [PartitionRead], max_bytes: usize) {
    let mut remaining = max_bytes;
    let mut returned_any = false;
    for read in reads.iter_mut() {
        let mut kept = 0;
        for batch_len in read.batches.batch_sizes() {
            if batch_len > remaining && (returned_any || kept > 0) {
                break;
            }
            remaining = remaining.saturating_sub(batch_len);
            kept += 1;
        }
        read.batches.truncate(kept);
        returned_any |= kept > 0;
    }
}

fn build_response(
    request: &FetchRequest,
    version: i16,
    reads: Vec<PartitionRead>,
) -> FetchResponse {
    let mut reads = reads.into_iter();
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let read = reads.next().expect("one read per partition");
                    partition_data(p.partition, read, version)
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    FetchResponse::default().with_responses(responses)
}

fn partition_data(partition: i32, read: PartitionRead, version: i16) -> PartitionData {
    let records: Bytes = read.batches.into_bytes();
    let mut data = PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(read.error_code)
        .with_high_watermark(read.high_watermark)
        .with_last_stable_offset(read.high_watermark)
        .with_records(Some(records));
    if version >= 5 {
        data = data.with_log_start_offset(read.log_start_offset);
    }
    if let (Some((epoch, end_offset)), true) = (read.diverging, version >= 12) {
        data.diverging_epoch = EpochEndOffset::default()
            .with_epoch(epoch)
            .with_end_offset(end_offset);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_of(sizes: &[usize]) -> PartitionRead {
        PartitionRead {
            batches: ReadBatches::from_batches(sizes.iter().map(|&n| vec![0u8; n])),
            ..PartitionRead::default()
        }
    }

    #[test]
    fn max_bytes_keeps_whole_batches_and_always_the_first_one() {
        // (batch sizes per partition, max_bytes, batches kept per partition)
        type Case = (&'static [&'static [usize]], usize, &'static [usize]);
        let cases: &[Case] = &[
            (&[&[10, 10], &[10]], 100, &[2, 1]),
            (&[&[10, 10], &[10]], 15, &[1, 0]),
            (&[&[50, 10], &[10]], 20, &[1, 0]),
            (&[&[], &[50]], 20, &[0, 1]),
            (&[&[10], &[10, 10]], 25, &[1, 1]),
        ];
        for (partitions, max_bytes, kept) in cases {
            let mut reads: Vec<_> = partitions.iter().map(|s| read_of(s)).collect();
            limit_total_bytes(&mut reads, *max_bytes);
            let got: Vec<usize> = reads.iter().map(|r| r.batches.len()).collect();
            assert_eq!(&got, kept, "{partitions:?} max {max_bytes}");
        }
    }
}
