//! Fetch (1): read whole batches from each partition's owner shard; long-poll until
//! `min_bytes` are there or `max_wait_ms` has passed; bound the answer by `max_bytes` (capped
//! by the broker's `fetch.max.bytes`) and each partition's `partition_max_bytes`. The byte
//! budget is handed out to partitions in request order *before* they are read (`Grants`), so a
//! request for a thousand lagging partitions reads about `max_bytes`, not a thousand times
//! `partition_max_bytes`. A partition answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH
//! names its current leader (v16+, `leader_hints`).

use crate::authorizer::Authz;
use crate::handlers::leader_hints::{self, Hints, LeaderHint};
use crate::handlers::{code, partition_key, resolve_authorized, resolve_topic};
use crate::listeners::ListenerInfo;
use crate::partition::FollowerFetch;
use crate::shard::{PartitionKey, Routed, Shard};
use bytes::Bytes;
use controller::acl::Operation;
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
    /// Read with no bytes granted, and records wait at the fetch offset.
    unread: bool,
}

impl PartitionRead {
    fn error(error_code: i16) -> PartitionRead {
        PartitionRead {
            error_code,
            high_watermark: -1,
            log_start_offset: -1,
            batches: ReadBatches::default(),
            diverging: None,
            unread: false,
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

pub async fn handle(
    shard: &Rc<Shard>,
    request: FetchRequest,
    version: i16,
    listener: &ListenerInfo,
    authz: &Authz,
) -> FetchResponse {
    let image = shard.image();
    let by_id = version >= 13;
    let follower = follower_id(&request, version);
    // Kafka: a follower needs ClusterAction on the cluster, a consumer Read on each topic;
    // refused partitions get TOPIC_AUTHORIZATION_FAILED.
    let follower_allowed = follower.is_none() || authz.cluster(Operation::ClusterAction);
    let max_bytes = positive(request.max_bytes).min(shard.config.fetch_max_bytes);
    let wanted: Vec<Wanted> = request
        .topics
        .iter()
        .flat_map(|topic| {
            let meta = match follower {
                Some(_) if follower_allowed => {
                    resolve_topic(&image, &topic.topic, topic.topic_id, by_id)
                }
                Some(_) => Err(code::TOPIC_AUTHORIZATION_FAILED),
                None => resolve_authorized(
                    &image,
                    &topic.topic,
                    topic.topic_id,
                    by_id,
                    authz,
                    Operation::Read,
                ),
            };
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
    let mut reads = read_once(shard, &wanted, follower, max_bytes).await;
    loop {
        let total: usize = reads.iter().map(PartitionRead::bytes).sum();
        let any_news = reads
            .iter()
            .any(|r| r.error_code != code::NONE || r.diverging.is_some());
        let now = Instant::now();
        if total >= min_bytes.max(1) || any_news || now >= deadline || wanted.is_empty() {
            break;
        }
        // Wait for records past what was just read: a consumer's read ends at the high
        // watermark, so records short of `min_bytes` must not wake the wait again at once.
        let past: Vec<i64> = wanted
            .iter()
            .zip(&reads)
            .map(|(w, r)| match follower {
                None => w.read.offset.max(r.high_watermark),
                Some(_) => w.read.offset,
            })
            .collect();
        wait_for_data(shard, &wanted, &past, deadline - now, follower.is_some()).await;
        reads = read_once(shard, &wanted, follower, max_bytes).await;
    }
    limit_total_bytes(&mut reads, max_bytes);
    build_response(&request, version, reads, &wanted, &|| {
        Hints::of(shard, listener)
    })
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

/// Reads every wanted partition within `budget` bytes: partitions are granted bytes in
/// request order (each at most its `partition_max_bytes`) before anything is read; a partition
/// granted nothing is still asked for its offsets. What the reads leave of the budget goes, in
/// a further round, to the partitions that were granted nothing and have records waiting
/// (Kafka reads partitions one after another and stops at `max_bytes`; this reads them all at
/// once, a round at a time, with the same bound on what is held; at most `READ_ROUNDS_MAX`
/// rounds, so a budget left in crumbs is not chased over one partition per round).
async fn read_once(
    shard: &Rc<Shard>,
    wanted: &[Wanted],
    follower: Option<i32>,
    budget: usize,
) -> Vec<PartitionRead> {
    let mut reads = vec![PartitionRead::default(); wanted.len()];
    let mut waiting: Vec<usize> = Vec::with_capacity(wanted.len());
    for (slot, w) in wanted.iter().enumerate() {
        match w.key {
            Ok(_) => waiting.push(slot),
            Err(error_code) => reads[slot] = PartitionRead::error(error_code),
        }
    }
    let mut left = budget;
    let mut first_round = true;
    let mut rounds = 0;
    while !waiting.is_empty() && (first_round || left > 0) && rounds < READ_ROUNDS_MAX {
        rounds += 1;
        let grants = grant(&waiting, wanted, left);
        let routed: Vec<_> = waiting
            .iter()
            .zip(&grants)
            .filter(|(_, &bytes)| first_round || bytes > 0)
            .map(|(&slot, &bytes)| Routed {
                slot,
                key: wanted[slot].key.expect("only resolved partitions wait"),
                item: ReadItem {
                    max_bytes: bytes,
                    ..wanted[slot].read
                },
            })
            .collect();
        let results = shard
            .scatter(routed, move |owner, items| read_all(owner, items, follower))
            .await;
        for (slot, read) in results {
            left = left.saturating_sub(read.bytes());
            reads[slot] = read;
        }
        waiting = waiting
            .into_iter()
            .zip(grants)
            .filter(|&(slot, bytes)| bytes == 0 && reads[slot].unread)
            .map(|(slot, _)| slot)
            .collect();
        first_round = false;
    }
    reads
}

/// Rounds of reads one fetch makes at most (the first reads every partition).
const READ_ROUNDS_MAX: usize = 4;

/// The bytes each of `waiting` (slots, in request order) may read: its `partition_max_bytes`
/// while `budget` lasts, then what is left, then nothing.
fn grant(waiting: &[usize], wanted: &[Wanted], budget: usize) -> Vec<usize> {
    let mut left = budget;
    waiting
        .iter()
        .map(|&slot| {
            let bytes = wanted[slot].read.max_bytes.min(left);
            left -= bytes;
            bytes
        })
        .collect()
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
                unread: read.unread,
            };
            (slot, read)
        }
    });
    futures::future::join_all(reads).await
}

/// Returns when one of `wanted` has records at or after its offset in `past` (same order), or
/// after `timeout`.
async fn wait_for_data(
    shard: &Rc<Shard>,
    wanted: &[Wanted],
    past: &[i64],
    timeout: Duration,
    follower: bool,
) {
    let mut per_shard: Vec<Vec<(PartitionKey, i64)>> = vec![Vec::new(); shard.count];
    for (w, &offset) in wanted.iter().zip(past) {
        if let Ok(key) = w.key {
            per_shard[shard.owner_of(&key)].push((key, offset));
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

/// The answer, in request order. A partition answered NOT_LEADER_OR_FOLLOWER or
/// FENCED_LEADER_EPOCH names its current leader and epoch, and the answer the endpoints of
/// the leaders named (KIP-951), from hints that `new_hints` starts at the first such
/// partition. `wanted` is the request's partitions, in the same order as `reads`.
fn build_response(
    request: &FetchRequest,
    version: i16,
    reads: Vec<PartitionRead>,
    wanted: &[Wanted],
    new_hints: &dyn Fn() -> Hints,
) -> FetchResponse {
    let mut hints: Option<Hints> = None;
    let mut reads = reads.into_iter().zip(wanted);
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let (read, wanted) = reads.next().expect("one read per partition");
                    let error_code = read.error_code;
                    let mut data = partition_data(p.partition, read, version);
                    if leader_hints::fetch_wants_hint(version, error_code) {
                        let hint = match wanted.key {
                            Ok(key) => hints.get_or_insert_with(new_hints).hint(key),
                            Err(_) => LeaderHint::UNKNOWN,
                        };
                        data.current_leader = hint.for_fetch();
                    }
                    data
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    let mut response = FetchResponse::default().with_responses(responses);
    if let Some(hints) = hints {
        response.node_endpoints = hints.fetch_endpoints();
    }
    response
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

    #[test]
    fn the_budget_is_granted_in_request_order_before_reading() {
        let wanted: Vec<Wanted> = [100, 100, 30, 100]
            .iter()
            .map(|&max_bytes| Wanted {
                key: Err(0),
                read: ReadItem {
                    offset: 0,
                    max_bytes,
                    current_leader_epoch: -1,
                    last_fetched_epoch: -1,
                },
            })
            .collect();
        // (slots waiting, budget, grants)
        let cases: &[(&[usize], usize, &[usize])] = &[
            (&[0, 1, 2, 3], 1000, &[100, 100, 30, 100]),
            (&[0, 1, 2, 3], 250, &[100, 100, 30, 20]),
            (&[0, 1, 2, 3], 150, &[100, 50, 0, 0]),
            (&[2, 3], 50, &[30, 20]),
            (&[0, 1], 0, &[0, 0]),
        ];
        for (waiting, budget, grants) in cases {
            assert_eq!(
                &grant(waiting, &wanted, *budget),
                grants,
                "{waiting:?} {budget}"
            );
        }
    }

    mod hints {
        use super::super::*;
        use super::read_of;
        use crate::handlers::leader_hints::tests::{image, this_node, TOPIC_ID};
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::{ApiKey, ResponseHeader, TopicName};
        use kafka_protocol::protocol::{Decodable, StrBytes};

        fn wanted(key: Result<PartitionKey, i16>) -> Wanted {
            Wanted {
                key,
                read: ReadItem {
                    offset: 0,
                    max_bytes: 1024,
                    current_leader_epoch: -1,
                    last_fetched_epoch: -1,
                },
            }
        }

        /// Topic "t": partition 0 (led by 2, epoch 7) not led here, 1 with records,
        /// 2 (no leader, epoch 5) fenced; topic "gone", unknown.
        fn answer(version: i16) -> FetchResponse {
            let name = |n: &'static str| TopicName(StrBytes::from_static_str(n));
            let partitions = |indexes: &[i32]| {
                indexes
                    .iter()
                    .map(|&i| FetchPartition::default().with_partition(i))
                    .collect()
            };
            let request = FetchRequest::default().with_topics(vec![
                FetchTopic::default()
                    .with_topic(name("t"))
                    .with_topic_id(uuid::Uuid::from_bytes(TOPIC_ID))
                    .with_partitions(partitions(&[0, 1, 2])),
                FetchTopic::default()
                    .with_topic(name("gone"))
                    .with_partitions(partitions(&[0])),
            ]);
            let wanted = [
                wanted(Ok((TOPIC_ID, 0))),
                wanted(Ok((TOPIC_ID, 1))),
                wanted(Ok((TOPIC_ID, 2))),
                wanted(Err(code::UNKNOWN_TOPIC_OR_PARTITION)),
            ];
            let reads = vec![
                PartitionRead::error(code::NOT_LEADER_OR_FOLLOWER),
                PartitionRead {
                    high_watermark: 3,
                    log_start_offset: 0,
                    ..read_of(&[70])
                },
                PartitionRead::error(code::FENCED_LEADER_EPOCH),
                PartitionRead::error(code::UNKNOWN_TOPIC_OR_PARTITION),
            ];
            build_response(&request, version, reads, &wanted, &|| {
                Hints::new(image(), this_node(), "PLAINTEXT")
            })
        }

        /// Encoded by the splice encoder (records by reference), decoded as a client would.
        fn round_trip(body: &FetchResponse, version: i16) -> FetchResponse {
            let pieces = crate::splice::encode_fetch_response(version, 3, body).expect("encodes");
            let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
            let mut buf = Bytes::from(joined).slice(4..);
            let header_version = ApiKey::Fetch.response_header_version(version);
            ResponseHeader::decode(&mut buf, header_version).expect("header");
            let decoded = FetchResponse::decode(&mut buf, version).expect("decodes");
            assert!(buf.is_empty(), "v{version}: {} bytes left", buf.len());
            decoded
        }

        fn leaders(response: &FetchResponse) -> Vec<(i16, i32, i32)> {
            response
                .responses
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| {
                    let leader = &p.current_leader;
                    (p.error_code, leader.leader_id.0, leader.leader_epoch)
                })
                .collect()
        }

        #[test]
        fn not_leader_and_fenced_partitions_name_the_leader_from_v16() {
            for version in 16..=18 {
                let got = round_trip(&answer(version), version);
                assert_eq!(
                    leaders(&got),
                    vec![
                        (code::NOT_LEADER_OR_FOLLOWER, 2, 7),
                        (code::NONE, -1, -1),
                        (code::FENCED_LEADER_EPOCH, -1, 5),
                        (code::UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
                    ],
                    "v{version}"
                );
                let endpoints: Vec<_> = got
                    .node_endpoints
                    .iter()
                    .map(|e| (e.node_id.0, e.host.to_string(), e.port, e.rack.clone()))
                    .collect();
                let rack = Some(StrBytes::from_static_str("rack-b"));
                assert_eq!(
                    endpoints,
                    vec![(2, "host2".into(), 9092, rack)],
                    "v{version}"
                );
                let records = got.responses[0].partitions[1].records.as_ref();
                assert_eq!(records.map(Bytes::len), Some(70), "v{version}");
            }
        }

        #[test]
        fn older_versions_and_answers_without_those_errors_carry_no_hint() {
            for version in [4, 11, 12, 15] {
                let body = answer(version);
                assert!(body.node_endpoints.is_empty(), "v{version}");
                assert!(leaders(&body)
                    .iter()
                    .all(|&(_, id, epoch)| (id, epoch) == (-1, -1)));
            }
            // Successes only: no hints are started at all.
            let request = FetchRequest::default().with_topics(vec![FetchTopic::default()
                .with_topic_id(uuid::Uuid::from_bytes(TOPIC_ID))
                .with_partitions(vec![FetchPartition::default().with_partition(1)])]);
            let reads = vec![read_of(&[70])];
            let body = build_response(&request, 18, reads, &[wanted(Ok((TOPIC_ID, 1)))], &|| {
                unreachable!("no hint wanted, none started")
            });
            assert!(body.node_endpoints.is_empty());
        }
    }
}
