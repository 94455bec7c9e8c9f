//! OffsetCommit (8), OffsetFetch (9) and OffsetDelete (47). Unknown topics and partitions
//! are answered where the request arrived (as Kafka's request layer does); the rest goes to
//! the group's coordinator shard, which appends the offsets to `__consumer_offsets` and
//! fdatasyncs before answering.

use crate::authorizer::Authz;
use crate::group::machine::CommittedOffset;
use crate::group::{code, runtime};
use crate::shard::Shard;
use controller::acl::Operation;
use controller::MetadataImage;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::rc::Rc;

const TOPIC_AUTHORIZATION_FAILED: i16 = crate::handlers::code::TOPIC_AUTHORIZATION_FAILED;
const GROUP_AUTHORIZATION_FAILED: i16 = crate::handlers::code::GROUP_AUTHORIZATION_FAILED;

fn partition_exists(image: &MetadataImage, topic: &str, partition: i32) -> bool {
    image
        .topic(topic)
        .is_some_and(|t| (0..t.partitions).contains(&partition))
}

pub async fn commit(
    shard: &Rc<Shard>,
    request: OffsetCommitRequest,
    version: i16,
    authz: &Authz,
) -> OffsetCommitResponse {
    // Kafka: Read on the group, and Read on each topic.
    let group_allowed = authz.group(Operation::Read, request.group_id.as_str());
    let image = shard.image();
    let group_id = request.group_id.to_string();
    let now = runtime::now_ms();
    let metadata_max = shard.config.offset_metadata_max_bytes;
    // One error per partition, in request order; `None` = decided by the coordinator.
    let mut errors: Vec<Option<i16>> = Vec::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let error = if group_id.is_empty() {
                Some(code::INVALID_GROUP_ID)
            } else if !group_allowed {
                Some(GROUP_AUTHORIZATION_FAILED)
            } else if !authz.topic(Operation::Read, topic.name.as_str()) {
                Some(TOPIC_AUTHORIZATION_FAILED)
            } else if !partition_exists(&image, topic.name.as_str(), p.partition_index) {
                Some(code::UNKNOWN_TOPIC_OR_PARTITION)
            } else if metadata.len() > metadata_max {
                Some(code::OFFSET_METADATA_TOO_LARGE)
            } else {
                None
            };
            if error.is_none() {
                offsets.push((
                    (topic.name.to_string(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata,
                        commit_timestamp_ms: now,
                    },
                ));
            }
            errors.push(error);
        }
    }
    let outcome = if offsets.is_empty() {
        code::NONE
    } else {
        let commit = runtime::CommitRequest {
            group_id: group_id.clone(),
            generation: request.generation_id_or_member_epoch,
            member_id: request.member_id.to_string(),
            instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            version,
            offsets,
        };
        runtime::on_coordinator(shard, &group_id, move |owner| {
            runtime::commit(owner, commit)
        })
        .await
        .and_then(|r| r)
        .err()
        .unwrap_or(code::NONE)
    };
    let mut errors = errors.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let error = errors.next().expect("one per partition").unwrap_or(outcome);
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's requested partitions: `None` asks for every committed offset.
type Wanted = Option<Vec<(String, Vec<i32>)>>;
/// What came back for one group: a group-level error or offsets by topic.
type Found = Result<runtime::FetchedOffsets, i16>;

/// The topics of a request the principal may not describe, with their partitions.
type Refused = Vec<(String, Vec<i32>)>;

/// One group's offsets (Kafka: Describe on the group, GROUP_AUTHORIZATION_FAILED; Describe
/// on each topic: a named topic is refused, TOPIC_AUTHORIZATION_FAILED, and left out of
/// "every committed offset").
async fn fetch_group(
    shard: &Rc<Shard>,
    group_id: String,
    wanted: Wanted,
    authz: &Authz,
) -> (Found, Refused) {
    if group_id.is_empty() {
        return (Err(code::INVALID_GROUP_ID), Vec::new());
    }
    if !authz.group(Operation::Describe, &group_id) {
        return (Err(GROUP_AUTHORIZATION_FAILED), Vec::new());
    }
    let may = |topic: &str| authz.topic(Operation::Describe, topic);
    let (asked, refused): (Wanted, Refused) = match wanted {
        None => (None, Vec::new()),
        Some(topics) => {
            let (allowed, refused) = topics.into_iter().partition(|(t, _)| may(t));
            (Some(allowed), refused)
        }
    };
    let group = group_id.clone();
    let found = runtime::on_coordinator(shard, &group_id, move |owner| async move {
        runtime::fetch(&owner, &group, asked)
    })
    .await
    .map(|found| found.into_iter().filter(|(t, _)| may(t)).collect());
    (found, refused)
}

/// (offset, leader epoch, metadata) as OffsetFetch answers them; -1 and "" when none.
fn committed_fields(c: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, StrBytes::from_string(c.metadata)),
        None => (-1, -1, StrBytes::from_static_str("")),
    }
}

pub async fn fetch(
    shard: &Rc<Shard>,
    request: OffsetFetchRequest,
    version: i16,
    authz: &Authz,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for g in request.groups {
            let wanted: Wanted = g.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let (found, refused) = fetch_group(shard, g.group_id.to_string(), wanted, authz).await;
            groups.push(group_v8(g.group_id, found, refused));
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted: Wanted = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let group_id = request.group_id.to_string();
    let (found, refused) = fetch_group(shard, group_id, wanted.clone(), authz).await;
    let (error, found) = match found {
        Ok(found) => (code::NONE, found),
        // Old versions carry the error per partition; v2+ also at the top.
        Err(error) => (
            error,
            wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
                .collect(),
        ),
    };
    let refused = refused
        .into_iter()
        .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect(), true));
    let topics = found
        .into_iter()
        .map(|(t, ps)| (t, ps, false))
        .chain(refused)
        .map(|(topic, partitions, refused)| {
            let error = if refused {
                TOPIC_AUTHORIZATION_FAILED
            } else {
                error
            };
            let partitions = partitions
                .into_iter()
                .map(|(index, committed)| {
                    let (offset, epoch, metadata) = committed_fields(committed);
                    let mut p = OffsetFetchResponsePartition::default()
                        .with_partition_index(index)
                        .with_committed_offset(offset)
                        .with_metadata(Some(metadata))
                        .with_error_code(error);
                    if version >= 5 {
                        p = p.with_committed_leader_epoch(epoch);
                    }
                    p
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(partitions)
        })
        .collect();
    let mut response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response = response.with_error_code(error);
    }
    response
}

fn group_v8(group_id: GroupId, found: Found, refused: Refused) -> OffsetFetchResponseGroup {
    let (error, found) = match found {
        Ok(found) => (code::NONE, found),
        Err(error) => (error, Vec::new()),
    };
    let refused = refused.into_iter().map(|(t, ps)| {
        let ps = ps.into_iter().map(|p| (p, None)).collect();
        (t, ps, TOPIC_AUTHORIZATION_FAILED)
    });
    let topics = found
        .into_iter()
        .map(|(t, ps)| (t, ps, code::NONE))
        .chain(refused)
        .map(|(topic, partitions, partition_error)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, committed)| {
                    let (offset, epoch, metadata) = committed_fields(committed);
                    OffsetFetchResponsePartitions::default()
                        .with_error_code(partition_error)
                        .with_partition_index(index)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(metadata))
                })
                .collect();
            OffsetFetchResponseTopics::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponseGroup::default()
        .with_group_id(group_id)
        .with_error_code(error)
        .with_topics(topics)
}

pub async fn delete(
    shard: &Rc<Shard>,
    request: OffsetDeleteRequest,
    authz: &Authz,
) -> OffsetDeleteResponse {
    let image = shard.image();
    let group_id = request.group_id.to_string();
    // Kafka: Delete on the group, and Read on each topic.
    if !group_id.is_empty() && !authz.group(Operation::Delete, &group_id) {
        return OffsetDeleteResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED);
    }
    let mut errors: Vec<Option<i16>> = Vec::new();
    let mut partitions = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            if !authz.topic(Operation::Read, topic.name.as_str()) {
                errors.push(Some(TOPIC_AUTHORIZATION_FAILED));
            } else if partition_exists(&image, topic.name.as_str(), p.partition_index) {
                partitions.push((topic.name.to_string(), p.partition_index));
                errors.push(None);
            } else {
                errors.push(Some(code::UNKNOWN_TOPIC_OR_PARTITION));
            }
        }
    }
    let outcome = if group_id.is_empty() {
        Err(code::INVALID_GROUP_ID)
    } else {
        let group = group_id.clone();
        runtime::on_coordinator(shard, &group_id, move |owner| {
            runtime::delete_offsets(owner, group, partitions)
        })
        .await
        .and_then(|r| r)
    };
    let (top, mut decided) = match outcome {
        Ok(decided) => (code::NONE, decided.into_iter()),
        Err(error) => {
            return OffsetDeleteResponse::default().with_error_code(error);
        }
    };
    let mut errors = errors.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let error = errors
                        .next()
                        .expect("one per partition")
                        .unwrap_or_else(|| decided.next().unwrap_or(code::NONE));
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default()
        .with_error_code(top)
        .with_topics(topics)
}
