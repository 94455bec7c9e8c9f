//! The classic consumer protocol's member metadata (`ConsumerProtocolSubscription`) and
//! assignments (`ConsumerProtocolAssignment`), each a version (int16) followed by the struct
//! at that version, and the `range` assignor, as the Java client's `RangeAssignor` computes it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, Message};
use std::collections::BTreeMap;

/// Versions written; any version is read (newer ones at the newest this codec knows, as the
/// Java client does).
const SUBSCRIPTION_VERSION: i16 = 0;
const ASSIGNMENT_VERSION: i16 = 0;

/// Partitions by topic.
pub type Assignment = BTreeMap<String, Vec<i32>>;

fn encode<T: Encodable>(value: &T, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    value
        .encode(&mut buf, version)
        .expect("consumer protocol structs encode");
    buf.freeze()
}

fn decode<T: Decodable + Message>(bytes: &[u8], what: &str) -> Result<T, String> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Err(format!("{what}: truncated"));
    }
    let version = buf.get_i16().clamp(0, T::VERSIONS.max);
    T::decode(&mut buf, version).map_err(|e| format!("{what}: {e}"))
}

pub fn encode_subscription(topics: &[String]) -> Bytes {
    let subscription = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| crate::session::str_bytes(t))
            .collect(),
    );
    encode(&subscription, SUBSCRIPTION_VERSION)
}

/// The topics a member subscribes to.
pub fn decode_subscription(bytes: &[u8]) -> Result<Vec<String>, String> {
    let subscription: ConsumerProtocolSubscription = decode(bytes, "member subscription")?;
    Ok(subscription.topics.iter().map(|t| t.to_string()).collect())
}

pub fn encode_assignment(assignment: &Assignment) -> Bytes {
    let value = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .map(|(topic, partitions)| {
                TopicPartition::default()
                    .with_topic(crate::session::topic_name(topic))
                    .with_partitions(partitions.clone())
            })
            .collect(),
    );
    encode(&value, ASSIGNMENT_VERSION)
}

/// A member's assignment; empty bytes are an empty assignment.
pub fn decode_assignment(bytes: &[u8]) -> Result<Assignment, String> {
    if bytes.is_empty() {
        return Ok(Assignment::new());
    }
    let value: ConsumerProtocolAssignment = decode(bytes, "member assignment")?;
    let mut assignment = Assignment::new();
    for tp in value.assigned_partitions {
        assignment
            .entry(tp.topic.0.to_string())
            .or_default()
            .extend(tp.partitions);
    }
    Ok(assignment)
}

/// The range assignor: for each topic, its subscribers sorted by member id share its
/// partitions in contiguous ranges, the first `partitions % members` getting one more.
/// `members` maps member id → subscribed topics; `partition_counts` topic → partitions
/// (topics missing there are skipped). Every member gets an entry.
pub fn assign(
    members: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    let mut subscribers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (member, topics) in members {
        for topic in topics {
            subscribers.entry(topic).or_default().push(member);
        }
    }
    for (topic, mut consumers) in subscribers {
        let Some(&count) = partition_counts.get(topic) else {
            continue;
        };
        consumers.sort_unstable();
        consumers.dedup();
        let per = count / consumers.len() as i32;
        let extra = count % consumers.len() as i32;
        for (i, member) in consumers.into_iter().enumerate() {
            let i = i as i32;
            let start = per * i + i.min(extra);
            let length = per + i32::from(i < extra);
            if length > 0 {
                result
                    .get_mut(member)
                    .expect("every member has an entry")
                    .insert(topic.to_string(), (start..start + length).collect());
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    #[test]
    fn range_assignment_matches_javas() {
        // Java's RangeAssignor: 7 partitions over 3 consumers → 3, 2, 2.
        let counts: BTreeMap<String, i32> = [("t".to_string(), 7), ("u".to_string(), 2)].into();
        let m = members(&[("c", &["t"]), ("a", &["t", "u"]), ("b", &["t", "u"])]);
        let out = assign(&m, &counts);
        assert_eq!(out["a"]["t"], vec![0, 1, 2]);
        assert_eq!(out["b"]["t"], vec![3, 4]);
        assert_eq!(out["c"]["t"], vec![5, 6]);
        assert_eq!(out["a"]["u"], vec![0]);
        assert_eq!(out["b"]["u"], vec![1]);
        assert!(!out["c"].contains_key("u"));
        // More members than partitions: the last ones get nothing, but an entry.
        let out = assign(
            &members(&[("a", &["u"]), ("b", &["u"]), ("c", &["u"])]),
            &counts,
        );
        assert_eq!(out["c"], Assignment::new());
        assert_eq!(out["a"]["u"], vec![0]);
    }

    #[test]
    fn consumer_protocol_round_trips_in_kafkas_layout() {
        let bytes = encode_subscription(&["orders".to_string()]);
        // version 0, one topic (int32 count 1), string "orders", null user data.
        let mut expected = vec![0, 0, 0, 0, 0, 1, 0, 6];
        expected.extend_from_slice(b"orders");
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(&bytes[..], &expected[..]);
        assert_eq!(decode_subscription(&bytes).unwrap(), vec!["orders"]);

        let assignment: Assignment = [("orders".to_string(), vec![0, 2])].into();
        let bytes = encode_assignment(&assignment);
        assert_eq!(decode_assignment(&bytes).unwrap(), assignment);
        assert!(decode_assignment(&[]).unwrap().is_empty());
        assert!(decode_subscription(&[0]).is_err());
    }

    #[test]
    fn newer_subscription_versions_are_read() {
        // A v3 subscription as the Java client sends it.
        let v3 = ConsumerProtocolSubscription::default()
            .with_topics(vec![crate::session::str_bytes("t")])
            .with_generation_id(4)
            .with_rack_id(Some(crate::session::str_bytes("r1")));
        assert_eq!(decode_subscription(&encode(&v3, 3)).unwrap(), vec!["t"]);
    }
}
