//! Produce (0): validate each partition's batch where the request arrived, append it on the
//! shard that owns the partition, and answer once the batch is written on the leader (acks=1)
//! or durable on every in-sync replica (acks=all; see `partition::Partition`). A partition
//! answered NOT_LEADER_OR_FOLLOWER names its current leader (v10+, `leader_hints`).

use crate::authorizer::Authz;
use crate::handlers::leader_hints::{self, Hints};
use crate::handlers::{code, resolve_authorized};
use crate::listeners::ListenerInfo;
use crate::shard::{Routed, Shard};
use controller::acl::Operation;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use latency::Stage;
use replication::Acks;
use std::rc::Rc;
use std::time::Instant;
use storage::batch::{check_client_batch, validate_produce_records, BatchHeader};

/// Kafka's words for a record without a key on a compacted topic (INVALID_RECORD).
const KEYLESS_ON_COMPACTED: &str = "Compacted topic cannot accept message without key";

/// The answer for one partition.
#[derive(Clone, Copy, Debug)]
struct Appended {
    error_code: i16,
    error_message: Option<&'static str>,
    base_offset: i64,
    log_start_offset: i64,
    log_append_time_ms: i64,
    /// When the owner shard answered (None: refused before routing).
    answered_at: Option<Instant>,
}

impl Appended {
    fn error(error_code: i16) -> Appended {
        Appended::refused(Refused::code(error_code))
    }

    fn refused(refused: Refused) -> Appended {
        Appended {
            error_code: refused.error_code,
            error_message: refused.message,
            base_offset: -1,
            log_start_offset: -1,
            log_append_time_ms: -1,
            answered_at: None,
        }
    }
}

/// Why a partition's batch was refused before it reached the log.
#[derive(Clone, Copy, Debug)]
struct Refused {
    error_code: i16,
    message: Option<&'static str>,
}

impl Refused {
    fn code(error_code: i16) -> Refused {
        Refused {
            error_code,
            message: None,
        }
    }
}

/// A validated batch on its way to its partition's owner.
struct Batch {
    records: bytes::Bytes,
    header: BatchHeader,
}

pub async fn handle(
    shard: &Rc<Shard>,
    request: ProduceRequest,
    version: i16,
    listener: &ListenerInfo,
    authz: &Authz,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let image = shard.image();
    let by_id = version >= 13;
    let now_ms = storage::now_ms();
    let mut answers: Vec<Option<Appended>> = Vec::new();
    let mut routed = Vec::new();
    for topic in &request.topic_data {
        // Write on the topic (TOPIC_AUTHORIZATION_FAILED for each of its partitions).
        let meta = resolve_authorized(
            &image,
            &topic.name,
            topic.topic_id,
            by_id,
            authz,
            Operation::Write,
        );
        for partition in &topic.partition_data {
            let slot = answers.len();
            let checked = meta.map_err(Refused::code).and_then(|meta| {
                if request.transactional_id.is_some() {
                    return Err(Refused::code(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
                }
                if !matches!(acks, -1..=1) {
                    return Err(Refused::code(code::INVALID_REQUIRED_ACKS));
                }
                if partition.index < 0 || partition.index >= meta.partitions {
                    return Err(Refused::code(code::UNKNOWN_TOPIC_OR_PARTITION));
                }
                let records = partition.records.clone().unwrap_or_default();
                let header = check_batch(shard, meta, &records, now_ms)?;
                Ok((meta.id, Batch { records, header }))
            });
            match checked {
                Ok((topic_id, batch)) => {
                    answers.push(None);
                    routed.push(Routed {
                        slot,
                        key: (topic_id, partition.index),
                        item: batch,
                    });
                }
                Err(refused) => answers.push(Some(Appended::refused(refused))),
            }
        }
    }
    let acks = match acks {
        0 => Acks::None,
        1 => Acks::Leader,
        _ => Acks::All,
    };
    let timeout_ms = request.timeout_ms.max(0) as u64;
    let handed_off = Instant::now();
    let appended = shard
        .scatter(routed, move |owner, items| {
            append_all(owner, items, acks, timeout_ms, handed_off)
        })
        .await;
    if let Some(last) = appended.iter().filter_map(|(_, a)| a.answered_at).max() {
        latency::record_since(Stage::ProduceReturn, last);
    }
    for (slot, outcome) in appended {
        answers[slot] = Some(outcome);
    }
    if acks == Acks::None {
        return None;
    }
    let mut answers = answers.into_iter().map(|a| a.expect("every slot answered"));
    // Started at the first partition that gets a leader hint (none on the success path).
    let mut hints: Option<Hints> = None;
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .map(|partition| {
                    let answer = answers.next().expect("one answer per partition");
                    let mut response = PartitionProduceResponse::default()
                        .with_index(partition.index)
                        .with_error_code(answer.error_code)
                        .with_error_message(answer.error_message.map(|m| m.to_string().into()))
                        .with_base_offset(answer.base_offset)
                        .with_log_append_time_ms(answer.log_append_time_ms);
                    if version >= 5 {
                        response = response.with_log_start_offset(answer.log_start_offset);
                    }
                    if leader_hints::produce_wants_hint(version, answer.error_code) {
                        let hint = hints
                            .get_or_insert_with(|| Hints::of(shard, listener))
                            .hint_named(&topic.name, topic.topic_id, by_id, partition.index);
                        response.current_leader = hint.for_produce();
                    }
                    response
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partitions)
        })
        .collect();
    let mut response = ProduceResponse::default().with_responses(responses);
    if let Some(hints) = hints {
        response.node_endpoints = hints.produce_endpoints();
    }
    Some(response)
}

/// One partition's batch against its topic, in Kafka's order: size, format, the keys of a
/// compacted topic, the timestamp type and the timestamps of a CreateTime topic.
fn check_batch(
    shard: &Shard,
    topic: &controller::TopicMeta,
    records: &[u8],
    now_ms: i64,
) -> Result<BatchHeader, Refused> {
    if records.len() > max_message_bytes(shard, topic) {
        return Err(Refused::code(code::MESSAGE_TOO_LARGE));
    }
    let header = validate_produce_records(records)
        .and_then(|h| check_client_batch(&h).map(|()| h))
        .map_err(|e| Refused::code(e.kafka_error_code()))?;
    if crate::maintenance::is_compacted(topic)
        && storage::compaction::has_record_without_key(records, &header)
    {
        return Err(Refused {
            error_code: code::INVALID_RECORD,
            message: Some(KEYLESS_ON_COMPACTED),
        });
    }
    if !timestamps_in_range(&header, topic, now_ms) {
        return Err(Refused {
            error_code: code::INVALID_TIMESTAMP,
            message: Some(TIMESTAMP_OUT_OF_RANGE),
        });
    }
    Ok(header)
}

/// Kafka's words for a timestamp outside the topic's bounds (INVALID_TIMESTAMP).
const TIMESTAMP_OUT_OF_RANGE: &str = "Timestamp is out of range: it should be within \
     [now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms]";

/// `message.timestamp.before.max.ms` / `message.timestamp.after.max.ms` of a CreateTime topic
/// (Kafka's defaults: no bound / one hour), checked on the batch's first and largest record
/// timestamps (its header: compressed batches are not opened for it); records without a
/// timestamp (-1) and LogAppendTime topics are not checked, as in Kafka.
fn timestamps_in_range(header: &BatchHeader, topic: &controller::TopicMeta, now_ms: i64) -> bool {
    use crate::maintenance::{is_log_append_time, topic_long};
    if is_log_append_time(topic) {
        return true;
    }
    let after = topic_long(
        topic,
        "message.timestamp.after.max.ms",
        TIMESTAMP_AFTER_MAX_MS_DEFAULT,
    );
    let before = topic_long(topic, "message.timestamp.before.max.ms", i64::MAX);
    let too_late = header.max_timestamp >= 0 && header.max_timestamp > now_ms.saturating_add(after);
    // A batch claiming LogAppendTime (accepted as CreateTime, as Kafka does: the append
    // clears the attribute) gives every record its max timestamp, so only that is checked.
    let first = if header.is_log_append_time() {
        header.max_timestamp
    } else {
        header.base_timestamp
    };
    let too_early = first >= 0 && first < now_ms.saturating_sub(before);
    !too_late && !too_early
}

/// Kafka 4's default of `message.timestamp.after.max.ms` (one hour).
const TIMESTAMP_AFTER_MAX_MS_DEFAULT: i64 = 3_600_000;

fn max_message_bytes(shard: &Shard, topic: &controller::TopicMeta) -> usize {
    topic
        .configs
        .get("max.message.bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(shard.config.message_max_bytes)
}

/// On the owner shard: appends every batch (offsets are assigned here, in arrival order; a
/// partition whose write backlog is full holds its batch back until it has room, which is
/// the only back-pressure acks=0 gets), then waits until all of them are acknowledged
/// (`Partition::wait_acknowledged`). Times the `route`, `append` and `acknowledged` stages.
async fn append_all(
    shard: Rc<Shard>,
    items: Vec<Routed<Batch>>,
    acks: Acks,
    timeout_ms: u64,
    handed_off: Instant,
) -> Vec<(usize, Appended)> {
    let appending = latency::record_since(Stage::ProduceRoute, handed_off);
    let mut answers = acknowledge(shard, items, acks, timeout_ms, appending).await;
    let answered_at = Some(Instant::now());
    for (_, answer) in &mut answers {
        answer.answered_at = answered_at;
    }
    answers
}

/// The appends, then the waits, of `append_all`.
async fn acknowledge(
    shard: Rc<Shard>,
    items: Vec<Routed<Batch>>,
    acks: Acks,
    timeout_ms: u64,
    appending: Instant,
) -> Vec<(usize, Appended)> {
    let mut answers = Vec::with_capacity(items.len());
    let mut pending = Vec::new();
    for Routed { slot, key, item } in items {
        let Some(partition) = shard.partition(&key) else {
            answers.push((slot, Appended::error(code::NOT_LEADER_OR_FOLLOWER)));
            continue;
        };
        let waking_up = Shard::is_idle(partition.log(), storage::now_ms());
        match partition.append(&item.records, &item.header, acks).await {
            Ok(outcome) => {
                if waking_up {
                    shard.share_cache_after_wake_up();
                }
                pending.push((answers.len(), partition, outcome.last_offset));
                answers.push((
                    slot,
                    Appended {
                        error_code: code::NONE,
                        error_message: None,
                        base_offset: outcome.base_offset,
                        log_start_offset: outcome.log_start_offset,
                        log_append_time_ms: outcome.log_append_time_ms,
                        answered_at: None,
                    },
                ));
            }
            Err(error_code) => answers.push((slot, Appended::error(error_code))),
        }
    }
    let appended = latency::record_since(Stage::ProduceAppend, appending);
    if acks == Acks::None {
        return answers;
    }
    let waits = pending.iter().map(|(_, partition, last_offset)| {
        partition.wait_acknowledged(*last_offset, acks, timeout_ms)
    });
    let results = futures::future::join_all(waits).await;
    latency::record_since(Stage::ProduceAcknowledged, appended);
    for ((index, _, _), result) in pending.iter().zip(results) {
        if let Err(error_code) = result {
            answers[*index].1 = Appended::error(error_code);
        }
    }
    answers
}
