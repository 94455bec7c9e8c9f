//! DescribeTopicPartitions (75): topics and their partitions (leader, leader epoch, replicas,
//! ISR, offline replicas), paginated by partitions; Kafka 4's admin client (and so
//! `kafka-topics.sh --describe`) describes topics with it rather than with Metadata.
//!
//! Pagination is Kafka's (`DescribeTopicPartitionsRequestHandler` and
//! `KRaftMetadataCache.describeTopicResponse`): the topics asked for (every topic when the
//! list is empty) at or after the cursor's topic, sorted by name; the cursor's topic starts
//! at the cursor's partition, the others at 0; an answer holds at most
//! `min(response_partition_limit, RESPONSE_PARTITIONS_MAX)` partitions (at least 1), and when
//! a topic is cut short, or the limit is reached before the next topic, `next_cursor` names
//! where the next request starts. Unknown topics asked for by name are answered
//! UNKNOWN_TOPIC_OR_PARTITION (INVALID_TOPIC_EXCEPTION for an invalid name) and take no room.
//! A cursor on a topic missing from a non-empty list, or with a negative partition, is
//! INVALID_REQUEST for every topic asked for, Kafka's error answer.

use crate::authorizer::Authz;
use crate::handlers::code;
use crate::handlers::metadata::{is_internal, partition_view};
use crate::shard::Shard;
use controller::acl::{Operation, ResourceType};
use controller::{MetadataImage, TopicMeta};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeSet;
use uuid::Uuid;

/// The most partitions one answer holds, whatever the request asks: Kafka's broker setting
/// `max.request.partition.size.limit` at its default (not configurable here).
pub const RESPONSE_PARTITIONS_MAX: i32 = 2000;

pub fn handle(
    shard: &Shard,
    request: DescribeTopicPartitionsRequest,
    authz: &Authz,
) -> DescribeTopicPartitionsResponse {
    let may_describe = |name: &str| authz.topic(Operation::Describe, name);
    let mut response = describe_some(
        &shard.image(),
        &request,
        RESPONSE_PARTITIONS_MAX,
        &may_describe,
    );
    // Kafka always answers the topics' authorized operations here.
    if authz.is_on() {
        for topic in response
            .topics
            .iter_mut()
            .filter(|t| t.error_code == code::NONE)
        {
            let name = topic.name.as_ref().map_or("", |n| n.as_str());
            topic.topic_authorized_operations =
                authz.operations(ResourceType::Topic, name, &Operation::TOPIC);
        }
    }
    response
}

/// The answer to `request` from `image`, at most `partitions_max` partitions per answer.
#[cfg(test)]
fn describe(
    image: &MetadataImage,
    request: &DescribeTopicPartitionsRequest,
    partitions_max: i32,
) -> DescribeTopicPartitionsResponse {
    describe_some(image, request, partitions_max, &|_| true)
}

/// [`describe`] of the topics `may_describe` lets the principal see: the others are left out
/// of a listing and answered TOPIC_AUTHORIZATION_FAILED when named (Kafka).
fn describe_some(
    image: &MetadataImage,
    request: &DescribeTopicPartitionsRequest,
    partitions_max: i32,
    may_describe: &dyn Fn(&str) -> bool,
) -> DescribeTopicPartitionsResponse {
    let Some(names) = topics_to_describe(image, request) else {
        return invalid_request(request);
    };
    let cursor = request.cursor.as_ref();
    let fetch_all = request.topics.is_empty();
    let mut remaining = request.response_partition_limit.min(partitions_max).max(1);
    let mut response = DescribeTopicPartitionsResponse::default();
    for name in names {
        if remaining == 0 {
            // The previous topics are complete: the next answer starts at this one.
            response.next_cursor = Some(cursor_at(name, 0));
            break;
        }
        if !may_describe(name) {
            if !fetch_all {
                let refused = unknown_topic(name).with_error_code(code::TOPIC_AUTHORIZATION_FAILED);
                response.topics.push(refused);
            }
            continue;
        }
        let Some(topic) = image.topic(name) else {
            if !fetch_all {
                response.topics.push(unknown_topic(name));
            }
            continue;
        };
        let first = match cursor {
            Some(c) if c.topic_name.as_str() == name => c.partition_index,
            _ => 0,
        };
        let (entry, next) = topic_entry(image, topic, first, remaining);
        remaining -= entry.partitions.len() as i32;
        response.topics.push(entry);
        if let Some(next) = next {
            response.next_cursor = Some(cursor_at(name, next));
            break;
        }
    }
    response
}

/// The names to describe, sorted, from the cursor's topic on; `None` when the cursor is
/// invalid (Kafka's InvalidRequestException).
fn topics_to_describe<'a>(
    image: &'a MetadataImage,
    request: &'a DescribeTopicPartitionsRequest,
) -> Option<BTreeSet<&'a str>> {
    let from = request
        .cursor
        .as_ref()
        .map_or("", |c| c.topic_name.as_str());
    let names: BTreeSet<&str> = if request.topics.is_empty() {
        image.topics.keys().map(String::as_str).collect()
    } else {
        request.topics.iter().map(|t| t.name.as_str()).collect()
    };
    let names: BTreeSet<&str> = names.into_iter().filter(|n| *n >= from).collect();
    if let Some(cursor) = &request.cursor {
        let listed = request.topics.is_empty() || names.contains(from);
        if !listed || cursor.partition_index < 0 {
            return None;
        }
    }
    Some(names)
}

/// A known topic's partitions from `first`, at most `room` of them, and the index of the
/// next partition when some are left for the next answer.
fn topic_entry(
    image: &MetadataImage,
    topic: &TopicMeta,
    first: i32,
    room: i32,
) -> (DescribeTopicPartitionsResponseTopic, Option<i32>) {
    let end = topic.partitions.min(first.saturating_add(room));
    let partitions = (first..end)
        .filter_map(|index| partition_entry(image, topic, index))
        .collect();
    let next = (end < topic.partitions).then_some(end);
    let entry = DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(Uuid::from_bytes(topic.id))
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions);
    (entry, next)
}

/// A partition as its registration says; the leader is -1 while it is not live. Kafka leaves
/// out a partition without a registration (Spate's: only while an old single-node log is
/// replayed). Eligible leader replicas (KIP-966's ELR) are always empty here.
fn partition_entry(
    image: &MetadataImage,
    topic: &TopicMeta,
    index: i32,
) -> Option<DescribeTopicPartitionsResponsePartition> {
    let view = partition_view(image, &topic.id, index)?;
    Some(
        DescribeTopicPartitionsResponsePartition::default()
            .with_partition_index(index)
            .with_leader_id(BrokerId(view.leader.unwrap_or(-1)))
            .with_leader_epoch(view.leader_epoch)
            .with_replica_nodes(view.replicas)
            .with_isr_nodes(view.isr)
            .with_eligible_leader_replicas(Some(Vec::new()))
            .with_last_known_elr(Some(Vec::new()))
            .with_offline_replicas(view.offline),
    )
}

fn unknown_topic(name: &str) -> DescribeTopicPartitionsResponseTopic {
    let error_code = match controller::validate_topic_name(name) {
        Ok(()) => code::UNKNOWN_TOPIC_OR_PARTITION,
        Err(_) => code::INVALID_TOPIC_EXCEPTION,
    };
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(error_code)
        .with_name(Some(topic_name(name)))
        .with_is_internal(is_internal(name))
}

/// Kafka's error answer: every topic asked for, with the error and nothing else.
fn invalid_request(request: &DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(code::INVALID_REQUEST)
                .with_name(Some(t.name.clone()))
        })
        .collect();
    DescribeTopicPartitionsResponse::default().with_topics(topics)
}

fn cursor_at(name: &str, partition_index: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(topic_name(name))
        .with_partition_index(partition_index)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use controller::{BrokerRegistration, MetadataRecord, PartitionRegistration, Placement};
    use kafka_protocol::messages::describe_topic_partitions_request::{
        Cursor as RequestCursor, TopicRequest,
    };
    use std::collections::BTreeMap;

    /// Brokers 1-3 (3 fenced); topics "a" (3 partitions), "b" (1), "c" (4), each partition `i`
    /// on brokers [1 + i % 3, ...], led by its first replica in epoch `i`.
    fn image() -> MetadataImage {
        let mut records = vec![MetadataRecord::ClusterInit {
            cluster_id: "c".into(),
        }];
        for node_id in 1..=3 {
            records.push(MetadataRecord::BrokerRegistered(Box::new(
                BrokerRegistration {
                    node_id,
                    epoch: 1,
                    host: "127.0.0.1".into(),
                    port: 9090 + node_id as u16,
                    shards: 1,
                    rack: None,
                    fenced: false,
                    endpoints: Vec::new(),
                },
            )));
        }
        for (n, (name, partitions)) in [("a", 3), ("b", 1), ("c", 4)].into_iter().enumerate() {
            let id = [n as u8 + 1; 16];
            records.push(MetadataRecord::TopicCreated(TopicMeta {
                name: name.into(),
                id,
                partitions,
                replication_factor: 3,
                configs: BTreeMap::new(),
            }));
            let registrations = (0..partitions)
                .map(|i| {
                    let brokers = (0..3).map(|k| 1 + (i + k) % 3);
                    let mut r = PartitionRegistration::new(
                        brokers
                            .map(|broker| Placement { broker, shard: 0 })
                            .collect(),
                    );
                    r.leader_epoch = i;
                    r
                })
                .collect();
            records.push(MetadataRecord::PartitionsAssigned(Box::new(
                controller::PartitionsAssigned {
                    id,
                    first: 0,
                    partitions: registrations,
                },
            )));
        }
        records.push(MetadataRecord::BrokerFenced {
            node_id: 3,
            fenced: true,
        });
        MetadataImage::empty(1)
            .apply_batch(&records)
            .expect("records apply")
            .0
    }

    fn request(
        topics: &[&str],
        limit: i32,
        cursor: Option<(&str, i32)>,
    ) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| TopicRequest::default().with_name(topic_name(t)))
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                RequestCursor::default()
                    .with_topic_name(topic_name(t))
                    .with_partition_index(p)
            }))
    }

    /// (topic, error, [partition indexes]) of each topic, and the next cursor.
    type Page = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);

    fn page(response: &DescribeTopicPartitionsResponse) -> Page {
        let topics = response
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map_or(String::new(), |n| n.to_string());
                let indexes = t.partitions.iter().map(|p| p.partition_index).collect();
                (name, t.error_code, indexes)
            })
            .collect();
        let cursor = response
            .next_cursor
            .as_ref()
            .map(|c| (c.topic_name.to_string(), c.partition_index));
        (topics, cursor)
    }

    fn topic(name: &str, error: i16, indexes: &[i32]) -> (String, i16, Vec<i32>) {
        (name.into(), error, indexes.to_vec())
    }

    fn at(name: &str, partition: i32) -> Option<(String, i32)> {
        Some((name.into(), partition))
    }

    #[test]
    fn pagination_follows_kafka() {
        let image = image();
        const UNKNOWN: i16 = code::UNKNOWN_TOPIC_OR_PARTITION;
        // (topics asked for, response_partition_limit, cursor, expected page)
        type Case<'a> = (&'a [&'a str], i32, Option<(&'a str, i32)>, Page);
        let cases: Vec<Case> = vec![
            // Everything fits: sorted by name, no cursor.
            (
                &[],
                2000,
                None,
                (
                    vec![
                        topic("a", 0, &[0, 1, 2]),
                        topic("b", 0, &[0]),
                        topic("c", 0, &[0, 1, 2, 3]),
                    ],
                    None,
                ),
            ),
            // Sorted and deduplicated whatever the request's order.
            (
                &["c", "a", "c"],
                2000,
                None,
                (
                    vec![topic("a", 0, &[0, 1, 2]), topic("c", 0, &[0, 1, 2, 3])],
                    None,
                ),
            ),
            // Cut inside a topic: the cursor names its next partition.
            (&[], 2, None, (vec![topic("a", 0, &[0, 1])], at("a", 2))),
            // Resumed there: the rest of "a", then "b"; the limit is reached before "c".
            (
                &[],
                2,
                Some(("a", 2)),
                (vec![topic("a", 0, &[2]), topic("b", 0, &[0])], at("c", 0)),
            ),
            (
                &[],
                2,
                Some(("c", 0)),
                (vec![topic("c", 0, &[0, 1])], at("c", 2)),
            ),
            (&[], 2, Some(("c", 2)), (vec![topic("c", 0, &[2, 3])], None)),
            // A limit that ends exactly at a topic's end cuts before the next one.
            (&[], 3, None, (vec![topic("a", 0, &[0, 1, 2])], at("b", 0))),
            // 0 and negative limits are 1.
            (&[], 0, None, (vec![topic("a", 0, &[0])], at("a", 1))),
            (&[], -5, None, (vec![topic("a", 0, &[0])], at("a", 1))),
            // Unknown names take no room; an invalid name is INVALID_TOPIC_EXCEPTION.
            (
                &["b", "zz", "a!", "c"],
                3,
                None,
                (
                    vec![
                        topic("a!", code::INVALID_TOPIC_EXCEPTION, &[]),
                        topic("b", 0, &[0]),
                        topic("c", 0, &[0, 1]),
                    ],
                    at("c", 2),
                ),
            ),
            (
                &["b", "zz", "c"],
                3,
                Some(("c", 2)),
                (
                    vec![topic("c", 0, &[2, 3]), topic("zz", UNKNOWN, &[])],
                    None,
                ),
            ),
            // A cursor past a topic's end gives it no partitions.
            (&["c"], 10, Some(("c", 9)), (vec![topic("c", 0, &[])], None)),
            // A cursor on a topic the cluster lacks (all topics asked): the later ones.
            (
                &[],
                10,
                Some(("bb", 0)),
                (vec![topic("c", 0, &[0, 1, 2, 3])], None),
            ),
            // Invalid cursors: every topic asked for gets INVALID_REQUEST.
            (
                &["c", "a"],
                10,
                Some(("b", 0)),
                (
                    vec![
                        topic("c", code::INVALID_REQUEST, &[]),
                        topic("a", code::INVALID_REQUEST, &[]),
                    ],
                    None,
                ),
            ),
            (&[], 10, Some(("a", -1)), (vec![], None)),
        ];
        for (topics, limit, cursor, expected) in cases {
            let got = describe(&image, &request(topics, limit, cursor), 2000);
            assert_eq!(
                page(&got),
                expected,
                "{topics:?} limit {limit} cursor {cursor:?}"
            );
        }
    }

    #[test]
    fn the_broker_bound_caps_the_requested_limit() {
        let got = describe(&image(), &request(&[], 2000, None), 4);
        assert_eq!(
            page(&got),
            (
                vec![topic("a", 0, &[0, 1, 2]), topic("b", 0, &[0])],
                at("c", 0)
            )
        );
    }

    #[test]
    fn walking_the_cursor_visits_every_partition_once() {
        let image = image();
        for limit in 1..=9 {
            let mut seen = Vec::new();
            let mut cursor: Option<(String, i32)> = None;
            for _ in 0..20 {
                let c = cursor.as_ref().map(|(t, p)| (t.as_str(), *p));
                let got = describe(&image, &request(&[], limit, c), 2000);
                let (topics, next) = page(&got);
                for (name, _, indexes) in topics {
                    seen.extend(indexes.into_iter().map(|i| (name.clone(), i)));
                }
                cursor = next;
                if cursor.is_none() {
                    break;
                }
            }
            let all: Vec<(String, i32)> = [("a", 3), ("b", 1), ("c", 4)]
                .iter()
                .flat_map(|(t, n)| (0..*n).map(move |i| (t.to_string(), i)))
                .collect();
            assert_eq!(seen, all, "limit {limit}");
        }
    }

    #[test]
    fn partitions_show_leader_epoch_replicas_isr_and_offline_replicas() {
        let got = describe(&image(), &request(&["a"], 2000, None), 2000);
        let a = &got.topics[0];
        assert_eq!(a.topic_id, Uuid::from_bytes([1; 16]));
        assert!(!a.is_internal);
        assert_eq!(a.topic_authorized_operations, i32::MIN);
        let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
        // Partition 1: replicas [2, 3, 1], led by 2 in epoch 1; broker 3 is fenced.
        let p = &a.partitions[1];
        assert_eq!(
            (p.error_code, p.leader_id, p.leader_epoch),
            (0, BrokerId(2), 1)
        );
        assert_eq!(p.replica_nodes, ids(&[2, 3, 1]));
        assert_eq!(p.offline_replicas, ids(&[3]));
        assert_eq!(p.eligible_leader_replicas, Some(vec![]));
        assert_eq!(p.last_known_elr, Some(vec![]));
        // Partition 2: led by the fenced broker 3: no live leader, error still 0 (as Kafka).
        let p = &a.partitions[2];
        assert_eq!(
            (p.error_code, p.leader_id, p.leader_epoch),
            (0, BrokerId(-1), 2)
        );
        assert_eq!(p.isr_nodes, ids(&[3, 1, 2]));
    }
}
