//! A classic consumer-group member: FindCoordinator, JoinGroup/SyncGroup with protocol type
//! "consumer" and the "range" assignor (this member assigns when it is the leader), Heartbeat,
//! OffsetFetch, OffsetCommit and LeaveGroup, as the Java client and librdkafka do, so it shares
//! a group with them.

use crate::range::{self, Assignment};
use crate::session::{check, error_name, str_bytes, topic_name, Result, Session};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse,
};
use spate_bench::client::Connection;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";
/// Tries of a request the coordinator answers with a retriable error (loading, moving).
const COORDINATOR_TRIES: u32 = 100;

const MEMBER_ID_REQUIRED: i16 = 79;
const UNKNOWN_MEMBER_ID: i16 = 25;
const ILLEGAL_GENERATION: i16 = 22;
const REBALANCE_IN_PROGRESS: i16 = 27;
/// Commit errors that mean "rejoin first", not failure.
const REFUSED_DURING_REBALANCE: [&str; 3] = [
    "REBALANCE_IN_PROGRESS",
    "ILLEGAL_GENERATION",
    "UNKNOWN_MEMBER_ID",
];

pub fn group_id(group: &str) -> GroupId {
    GroupId(str_bytes(group))
}

fn coordinator_moved(code: i16) -> bool {
    // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
    matches!(code, 14..=16)
}

/// The coordinator of a group (retried while it is being set up).
pub async fn find_coordinator(session: &Session, group: &str) -> Result<Connection> {
    let request = FindCoordinatorRequest::default()
        .with_key(str_bytes(group))
        .with_key_type(0);
    for _ in 0..COORDINATOR_TRIES {
        let reply: FindCoordinatorResponse =
            session.call(ApiKey::FindCoordinator, 3, &request).await?;
        if coordinator_moved(reply.error_code) {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            continue;
        }
        check(reply.error_code, || {
            format!("group '{group}': find coordinator")
        })?;
        return session
            .connection(&format!("{}:{}", reply.host.as_str(), reply.port))
            .await;
    }
    Err(format!("group '{group}': no coordinator available"))
}

pub struct Member {
    coordinator: Connection,
    group: String,
    topics: Vec<String>,
    member_id: String,
    generation: i32,
    pub assignment: Assignment,
    last_heartbeat: Instant,
}

impl Member {
    /// Joins the group subscribed to `topics` and waits for an assignment.
    pub async fn join(session: &Session, group: &str, topics: Vec<String>) -> Result<Member> {
        let mut member = Member {
            coordinator: find_coordinator(session, group).await?,
            group: group.to_string(),
            topics,
            member_id: String::new(),
            generation: -1,
            assignment: Assignment::new(),
            last_heartbeat: Instant::now(),
        };
        member.rejoin(session).await?;
        Ok(member)
    }

    /// JoinGroup then SyncGroup until this member has an assignment of a stable generation.
    pub async fn rejoin(&mut self, session: &Session) -> Result<()> {
        for _ in 0..COORDINATOR_TRIES {
            let join = self.join_group().await?;
            match join.error_code {
                0 => {}
                MEMBER_ID_REQUIRED => {
                    self.member_id = join.member_id.to_string();
                    continue;
                }
                UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION => {
                    self.member_id.clear();
                    continue;
                }
                REBALANCE_IN_PROGRESS => continue,
                code if coordinator_moved(code) => {
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                    self.coordinator = find_coordinator(session, &self.group).await?;
                    continue;
                }
                code => {
                    return Err(format!(
                        "group '{}': join: {}",
                        self.group,
                        error_name(code)
                    ))
                }
            }
            self.member_id = join.member_id.to_string();
            self.generation = join.generation_id;
            let assignments = if join.leader == join.member_id {
                self.assign(session, &join).await?
            } else {
                Vec::new()
            };
            let request = SyncGroupRequest::default()
                .with_group_id(group_id(&self.group))
                .with_generation_id(self.generation)
                .with_member_id(str_bytes(&self.member_id))
                .with_protocol_type(Some(str_bytes(PROTOCOL_TYPE)))
                .with_protocol_name(Some(str_bytes(ASSIGNOR)))
                .with_assignments(assignments);
            let sync: SyncGroupResponse = self
                .coordinator
                .call(ApiKey::SyncGroup, 5, &request)
                .await?;
            match sync.error_code {
                0 => {
                    self.assignment = range::decode_assignment(&sync.assignment)?;
                    self.last_heartbeat = Instant::now();
                    return Ok(());
                }
                REBALANCE_IN_PROGRESS => continue,
                UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION => {
                    self.member_id.clear();
                    continue;
                }
                code => {
                    return Err(format!(
                        "group '{}': sync: {}",
                        self.group,
                        error_name(code)
                    ))
                }
            }
        }
        Err(format!("group '{}': could not join", self.group))
    }

    async fn join_group(&self) -> Result<JoinGroupResponse> {
        let request = JoinGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_session_timeout_ms(SESSION_TIMEOUT_MS)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
            .with_member_id(str_bytes(&self.member_id))
            .with_protocol_type(str_bytes(PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(str_bytes(ASSIGNOR))
                .with_metadata(range::encode_subscription(&self.topics))]);
        self.coordinator.call(ApiKey::JoinGroup, 7, &request).await
    }

    /// The leader's job: the range assignment of every member's subscription.
    async fn assign(
        &self,
        session: &Session,
        join: &JoinGroupResponse,
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let mut members = BTreeMap::new();
        for m in &join.members {
            members.insert(
                m.member_id.to_string(),
                range::decode_subscription(&m.metadata)?,
            );
        }
        let mut topics: Vec<&str> = members.values().flatten().map(String::as_str).collect();
        topics.sort_unstable();
        topics.dedup();
        let metadata = session.metadata(Some(&topics), false).await?;
        let counts: BTreeMap<String, i32> = metadata
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| Some((t.name.as_ref()?.0.to_string(), t.partitions.len() as i32)))
            .collect();
        Ok(range::assign(&members, &counts)
            .into_iter()
            .map(|(member, assignment)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(str_bytes(&member))
                    .with_assignment(range::encode_assignment(&assignment))
            })
            .collect())
    }

    /// Sends a heartbeat when one is due; true when the group is rebalancing (rejoin).
    pub async fn heartbeat(&mut self) -> Result<bool> {
        if self.last_heartbeat.elapsed() < HEARTBEAT_INTERVAL {
            return Ok(false);
        }
        self.last_heartbeat = Instant::now();
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(str_bytes(&self.member_id));
        let reply: HeartbeatResponse = self
            .coordinator
            .call(ApiKey::Heartbeat, 4, &request)
            .await?;
        match reply.error_code {
            0 => Ok(false),
            REBALANCE_IN_PROGRESS => Ok(true),
            UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION => {
                self.member_id.clear();
                Ok(true)
            }
            code => Err(format!(
                "group '{}': heartbeat: {}",
                self.group,
                error_name(code)
            )),
        }
    }

    /// Committed offsets of partitions of a topic (absent: none committed).
    pub async fn committed(&self, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, i64>> {
        committed(&self.coordinator, &self.group, topic, partitions).await
    }

    /// Commits next-offsets as this member of the current generation; false when the group
    /// is rebalancing (or moved on to a new generation) and the commit was refused.
    pub async fn commit(&self, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<bool> {
        let result = commit(
            &self.coordinator,
            &self.group,
            self.generation,
            &self.member_id,
            topic,
            offsets,
        )
        .await;
        match result {
            Ok(()) => Ok(true),
            Err(e)
                if REFUSED_DURING_REBALANCE
                    .iter()
                    .any(|name| e.ends_with(name)) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Leaves the group, so its partitions move at once.
    pub async fn leave(&self) -> Result<()> {
        let request = LeaveGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_members(vec![MemberIdentity::default()
                .with_member_id(str_bytes(&self.member_id))
                .with_reason(Some(str_bytes("the spate consumer is exiting")))]);
        let reply: LeaveGroupResponse = self
            .coordinator
            .call(ApiKey::LeaveGroup, 4, &request)
            .await?;
        check(reply.error_code, || {
            format!("group '{}': leave", self.group)
        })
    }
}

/// OffsetFetch of one topic's partitions.
pub async fn committed(
    coordinator: &Connection,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partition_indexes(partitions.to_vec())]));
    let reply: OffsetFetchResponse = coordinator.call(ApiKey::OffsetFetch, 7, &request).await?;
    check(reply.error_code, || {
        format!("group '{group}': fetch offsets")
    })?;
    let mut out = BTreeMap::new();
    for t in reply.topics {
        for p in t.partitions {
            check(p.error_code, || {
                format!("group '{group}': offset of {topic}-{}", p.partition_index)
            })?;
            if p.committed_offset >= 0 {
                out.insert(p.partition_index, p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// OffsetCommit of next-offsets of one topic (generation -1 and no member: an admin commit,
/// which the coordinator accepts only while the group has no members).
pub async fn commit(
    coordinator: &Connection,
    group: &str,
    generation: i32,
    member_id: &str,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> Result<()> {
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(str_bytes(member_id))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(&p, &offset)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(-1)
                    })
                    .collect(),
            )]);
    let reply: OffsetCommitResponse = coordinator.call(ApiKey::OffsetCommit, 8, &request).await?;
    for t in reply.topics {
        for p in t.partitions {
            check(p.error_code, || {
                format!("group '{group}': commit {topic}-{}", p.partition_index)
            })?;
        }
    }
    Ok(())
}
