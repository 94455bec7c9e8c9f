//! The classic group coordinator of one shard, as a pure state machine.
//!
//! Follows Kafka's `ClassicGroup`/`GroupMetadataManager`: states Empty, PreparingRebalance,
//! CompletingRebalance, Stable and Dead; member ids `{client_id}-{uuid}`; MEMBER_ID_REQUIRED
//! for JoinGroup v4+; static membership; protocol selection by vote; session, rebalance and
//! pending-sync timeouts driven by [`Coordinator::tick`]. JoinGroup and SyncGroup answers may be
//! delayed: a caller passes a [`Token`] and gets its [`Reply`] in the [`Effects`] of whichever
//! later call completes it. Every token is answered exactly once.
//!
//! Records to persist come back in [`Effects::records`]. A change that writes records is a
//! pending [`Write`] of its group until the runtime reports the records durable
//! ([`Coordinator::write_done`]) or not ([`Coordinator::write_failed`]): the replies that
//! depend on it are held back until then, other requests for that group wait
//! ([`Coordinator::is_writing`]), DescribeGroups and ListGroups see the group as it was, and a
//! failed write restores it (Kafka's coordinator reverts to its last committed snapshot the
//! same way). Offset changes (commits, deletions, expiry) are applied only once durable.

use super::code;
use super::records::{GroupValue, MemberValue, OffsetValue, RecordKey, RecordValue, StoredRecord};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// Most characters of the client id that go into a generated member id.
const CLIENT_ID_IN_MEMBER_ID_MAX: usize = 1024;

/// Identifies a waiting JoinGroup or SyncGroup request.
pub type Token = u64;

/// Milliseconds since the epoch (wall clock, as Kafka's commit timestamps are).
pub type TimeMs = i64;

/// Bounds and delays of the coordinator (Kafka's `group.*` and `offsets.*` broker settings).
#[derive(Clone, Debug)]
pub struct Limits {
    pub session_timeout_ms_min: i32,
    pub session_timeout_ms_max: i32,
    pub initial_rebalance_delay_ms: i64,
    pub members_per_group_max: usize,
    pub offsets_retention_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            members_per_group_max: 10_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// A group's state, as DescribeGroups and ListGroups name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One protocol a member supports (e.g. "range" with its subscription).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    awaiting_join: Option<Token>,
    awaiting_sync: Option<Token>,
    heartbeat_deadline_ms: TimeMs,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }
}

/// A committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: TimeMs,
}

/// One group: membership, generation and committed offsets.
#[derive(Clone, Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to join by.
    pending_members: BTreeMap<String, TimeMs>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pending_sync: BTreeSet<String>,
    rebalance_deadline_ms: Option<TimeMs>,
    /// While the first join phase of an empty group is delayed: how much longer it may grow.
    initial_join_remaining_ms: Option<i64>,
    initial_join_delay_ms: i64,
    new_member_added: bool,
    sync_deadline_ms: Option<TimeMs>,
    pub state_timestamp_ms: TimeMs,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl Group {
    fn new(id: &str, now: TimeMs) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            rebalance_deadline_ms: None,
            initial_join_remaining_ms: None,
            initial_join_delay_ms: 0,
            new_member_added: false,
            sync_deadline_ms: None,
            state_timestamp_ms: now,
            offsets: BTreeMap::new(),
        }
    }

    /// The group less its committed offsets: what a failed membership write restores.
    fn without_offsets(&self) -> Group {
        Group {
            id: self.id.clone(),
            state: self.state,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            members: self.members.clone(),
            static_members: self.static_members.clone(),
            pending_members: self.pending_members.clone(),
            pending_sync: self.pending_sync.clone(),
            rebalance_deadline_ms: self.rebalance_deadline_ms,
            initial_join_remaining_ms: self.initial_join_remaining_ms,
            initial_join_delay_ms: self.initial_join_delay_ms,
            new_member_added: self.new_member_added,
            sync_deadline_ms: self.sync_deadline_ms,
            state_timestamp_ms: self.state_timestamp_ms,
            offsets: BTreeMap::new(),
        }
    }

    fn transition(&mut self, state: GroupState, now: TimeMs) {
        self.state = state;
        self.state_timestamp_ms = now;
    }

    /// Whether a joining member's protocols fit the group (Kafka's `supportsProtocols`).
    fn supports(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.values().all(|m| supports(m, &p.name)))
    }

    /// The protocol every member supports that most members prefer (Kafka's
    /// `selectProtocol`); ties go to the smallest name, so the choice is deterministic.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| supports(m, name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(vote) = member
                .protocols
                .iter()
                .find(|p| candidates.contains(&p.name.as_str()))
            {
                *votes.entry(vote.name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, count)| *count == best)
            .map(|(name, _)| name.to_string())
    }

    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0)
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Kafka's `validateMember`: UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID.
    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(instance) = instance_id {
            return match self.static_members.get(instance) {
                None => Err(code::UNKNOWN_MEMBER_ID),
                Some(id) if id != member_id => Err(code::FENCED_INSTANCE_ID),
                Some(_) => Ok(()),
            };
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(code::UNKNOWN_MEMBER_ID)
        }
    }

    fn metadata_record(&self) -> StoredRecord {
        let protocol = self.protocol_name.clone();
        let members = match &protocol {
            None => Vec::new(),
            Some(protocol) => self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        };
        StoredRecord {
            key: RecordKey::Group {
                group: self.id.clone(),
            },
            value: Some(RecordValue::Group(GroupValue {
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                generation: self.generation,
                protocol,
                leader: self.leader.clone(),
                state_timestamp_ms: self.state_timestamp_ms,
                members,
            })),
        }
    }

    /// The topics the members of a consumer group subscribe to; `None` when the group's
    /// subscriptions cannot be read (not a consumer group, or unknown metadata).
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            let mut metadata = member.metadata(protocol);
            if metadata.len() < 2 {
                return None;
            }
            // Every version of the consumer protocol starts with the v0 layout (Kafka reads it
            // the same way), whatever version the member wrote.
            let _version = bytes::Buf::get_i16(&mut metadata);
            let subscription = ConsumerProtocolSubscription::decode(&mut metadata, 0).ok()?;
            topics.extend(subscription.topics.iter().map(|t| t.to_string()));
        }
        Some(topics)
    }
}

/// A held-back reply of a write that failed: successes become `error`, errors stay.
fn failed_reply(reply: Reply, error: i16) -> Reply {
    match reply {
        Reply::Join(o) if o.error == code::NONE => {
            Reply::Join(JoinOutcome::error(error, &o.member_id))
        }
        Reply::Sync(o) if o.error == code::NONE => Reply::Sync(SyncOutcome::error(error)),
        other => other,
    }
}

fn supports(member: &Member, protocol: &str) -> bool {
    member.protocols.iter().any(|p| p.name == protocol)
}

/// JoinGroup, as the machine needs it.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// A fresh UUID (as text) for a new member id; injected so tests are deterministic.
    pub fresh_id: String,
}

/// One member in the leader's JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
    pub skip_assignment: bool,
}

impl JoinOutcome {
    pub fn error(error: i16, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error,
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinOutcome::default()
        }
    }
}

/// SyncGroup, as the machine needs it.
#[derive(Clone, Debug)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(error: i16) -> SyncOutcome {
        SyncOutcome {
            error,
            ..SyncOutcome::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Join(JoinOutcome),
    Sync(SyncOutcome),
}

/// What a call asks the runtime to do: deliver `replies` now, and persist `records` (in
/// order, one batch per group), then report each group's write with
/// [`Coordinator::write_done`] or [`Coordinator::write_failed`].
#[derive(Debug, Default)]
pub struct Effects {
    pub replies: Vec<(Token, Reply)>,
    pub records: Vec<StoredRecord>,
}

/// Identifies one pending write (a group written again after a failover gets a new one).
pub type WriteId = u64;

/// A group change whose records are on their way to disk.
#[derive(Debug)]
struct Write {
    id: WriteId,
    undo: Undo,
    /// Replies that tell of the change: delivered once it is durable, turned into errors if
    /// it is not.
    replies: Vec<(Token, Reply)>,
    /// Records applied only once durable (offset commits, deletions, expiry).
    apply: Vec<StoredRecord>,
}

/// How a failed write puts its group back.
#[derive(Debug)]
enum Undo {
    /// Nothing was applied ahead of the records.
    Nothing,
    /// The group without its offsets (they change only once durable), as it was.
    Restore(Box<Group>),
    /// The group did not exist.
    Remove,
}

/// The fields of an OffsetCommit the coordinator checks, and its offsets.
pub struct CommitRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub version: i16,
    pub offsets: Vec<((String, i32), CommittedOffset)>,
}

/// A group as DescribeGroups shows it.
#[derive(Clone, Debug, Default)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_data: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Clone, Debug, Default)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// All groups whose `__consumer_offsets` partition this shard owns.
#[derive(Debug)]
pub struct Coordinator {
    pub limits: Limits,
    groups: BTreeMap<String, Group>,
    /// At most one pending write per group.
    writes: BTreeMap<String, Write>,
    next_write: WriteId,
}

impl Coordinator {
    pub fn new(limits: Limits) -> Coordinator {
        Coordinator {
            limits,
            groups: BTreeMap::new(),
            writes: BTreeMap::new(),
            next_write: 1,
        }
    }

    // ---------------------------------------------------------------- pending writes

    /// The pending write of a group, if any: until it ends, every request that reads or
    /// changes the group's membership or offsets must wait (the runtime's job).
    pub fn writing(&self, group_id: &str) -> Option<WriteId> {
        self.writes.get(group_id).map(|w| w.id)
    }

    pub fn is_writing(&self, group_id: &str) -> bool {
        self.writes.contains_key(group_id)
    }

    fn begin_write(
        &mut self,
        group_id: &str,
        undo: Undo,
        replies: Vec<(Token, Reply)>,
        apply: Vec<StoredRecord>,
    ) {
        assert!(!self.is_writing(group_id), "one write at a time per group");
        let id = self.next_write;
        self.next_write += 1;
        let write = Write {
            id,
            undo,
            replies,
            apply,
        };
        self.writes.insert(group_id.to_string(), write);
    }

    /// The pending write `id` of a group is durable: its records that wait for it are
    /// applied and its held-back replies come back to be delivered. A write that is no longer
    /// pending (the group was unloaded meanwhile) is ignored.
    pub fn write_done(&mut self, now: TimeMs, group_id: &str, id: WriteId) -> Vec<(Token, Reply)> {
        let Some(write) = self.take_write(group_id, id) else {
            return Vec::new();
        };
        for record in &write.apply {
            debug_assert_eq!(record.key.group(), group_id, "a write holds one group");
            self.apply(now, record, false);
        }
        write.replies
    }

    /// The pending write `id` of a group failed with `error` (already a group error code):
    /// the group is back as it was, and each held-back success reply becomes `error`.
    /// A group that was completing a rebalance (its leader's assignment not stored) starts
    /// a new one, as Kafka's `resetAndPropagateAssignmentError` + `maybePrepareRebalance`.
    pub fn write_failed(
        &mut self,
        now: TimeMs,
        group_id: &str,
        id: WriteId,
        error: i16,
    ) -> Vec<(Token, Reply)> {
        debug_assert_ne!(error, code::NONE);
        let Some(write) = self.take_write(group_id, id) else {
            return Vec::new();
        };
        let answered: BTreeSet<Token> = write.replies.iter().map(|(t, _)| *t).collect();
        let mut fx = Effects {
            replies: write
                .replies
                .into_iter()
                .map(|(t, r)| (t, failed_reply(r, error)))
                .collect(),
            records: Vec::new(),
        };
        match write.undo {
            Undo::Nothing => {}
            Undo::Remove => {
                self.groups.remove(group_id);
            }
            Undo::Restore(mut before) => {
                if let Some(current) = self.groups.remove(group_id) {
                    before.offsets = current.offsets;
                }
                for member in before.members.values_mut() {
                    member.awaiting_join.take_if(|t| answered.contains(&*t));
                    member.awaiting_sync.take_if(|t| answered.contains(&*t));
                }
                if before.state == GroupState::CompletingRebalance {
                    for member in before.members.values_mut() {
                        member.assignment = Bytes::new();
                    }
                    prepare_rebalance(&mut before, now, &mut fx);
                }
                self.groups.insert(group_id.to_string(), *before);
            }
        }
        debug_assert!(fx.records.is_empty(), "a rollback writes nothing");
        fx.replies
    }

    fn take_write(&mut self, group_id: &str, id: WriteId) -> Option<Write> {
        if self.writing(group_id) != Some(id) {
            return None;
        }
        self.writes.remove(group_id)
    }

    /// Runs a change of one group; when it writes records, the group's state before it is
    /// kept (to restore if they fail) and the replies it made are held back until they are
    /// durable.
    fn staged(
        &mut self,
        group_id: &str,
        fx: &mut Effects,
        change: impl FnOnce(&mut Self, &mut Effects),
    ) {
        debug_assert!(
            !self.is_writing(group_id),
            "the runtime waits for the pending write"
        );
        let before = self.groups.get(group_id).map(Group::without_offsets);
        let (replies_at, records_at) = (fx.replies.len(), fx.records.len());
        change(self, fx);
        if fx.records.len() == records_at {
            return;
        }
        debug_assert!(fx.records[records_at..]
            .iter()
            .all(|r| r.key.group() == group_id));
        let replies = fx.replies.split_off(replies_at);
        let undo = match before {
            Some(group) => Undo::Restore(Box::new(group)),
            None => Undo::Remove,
        };
        self.begin_write(group_id, undo, replies, Vec::new());
    }

    /// A group as requests other than its pending write's may see it: as it was before a
    /// change still being written (offsets left out of the earlier view are not shown).
    fn durable_view<'a>(&'a self, group: &'a Group) -> Option<&'a Group> {
        match self.writes.get(&group.id).map(|w| &w.undo) {
            Some(Undo::Restore(before)) => Some(before),
            Some(Undo::Remove) => None,
            Some(Undo::Nothing) | None => Some(group),
        }
    }

    /// Groups as ListGroups shows them: changes still being written are not visible.
    pub fn durable_groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values().filter_map(|g| self.durable_view(g))
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// Forgets every group `leaving` names (this coordinator no longer leads their
    /// `__consumer_offsets` partition); members waiting for a JoinGroup or SyncGroup answer
    /// get NOT_COORDINATOR and look the coordinator up again.
    pub fn unload(&mut self, leaving: impl Fn(&str) -> bool) -> Effects {
        let mut fx = Effects::default();
        let gone: Vec<String> = self.groups.keys().filter(|g| leaving(g)).cloned().collect();
        let writes: Vec<String> = self.writes.keys().filter(|g| leaving(g)).cloned().collect();
        for id in writes {
            let write = self.writes.remove(&id).expect("listed");
            let replies = write.replies.into_iter();
            fx.replies
                .extend(replies.map(|(t, r)| (t, failed_reply(r, code::NOT_COORDINATOR))));
        }
        for id in gone {
            let Some(group) = self.groups.remove(&id) else {
                continue;
            };
            for member in group.members.values() {
                if let Some(token) = member.awaiting_join {
                    let outcome = JoinOutcome::error(code::NOT_COORDINATOR, &member.id);
                    fx.replies.push((token, Reply::Join(outcome)));
                }
                if let Some(token) = member.awaiting_sync {
                    let outcome = SyncOutcome::error(code::NOT_COORDINATOR);
                    fx.replies.push((token, Reply::Sync(outcome)));
                }
            }
        }
        fx
    }

    // ---------------------------------------------------------------- JoinGroup

    pub fn join(&mut self, now: TimeMs, token: Token, request: JoinRequest) -> Effects {
        let mut fx = Effects::default();
        self.staged(&request.group_id.clone(), &mut fx, |c, fx| {
            if let Err(error) = c.join_checked(now, token, &request, fx) {
                fx.replies.push((
                    token,
                    Reply::Join(JoinOutcome::error(error, &request.member_id)),
                ));
            }
        });
        fx
    }

    fn join_checked(
        &mut self,
        now: TimeMs,
        token: Token,
        request: &JoinRequest,
        fx: &mut Effects,
    ) -> Result<(), i16> {
        if request.group_id.is_empty() {
            return Err(code::INVALID_GROUP_ID);
        }
        let limits = &self.limits;
        if request.session_timeout_ms < limits.session_timeout_ms_min
            || request.session_timeout_ms > limits.session_timeout_ms_max
        {
            return Err(code::INVALID_SESSION_TIMEOUT);
        }
        let unknown_member = request.member_id.is_empty();
        if !self.groups.contains_key(&request.group_id) {
            if !unknown_member {
                return Err(code::UNKNOWN_MEMBER_ID);
            }
            let group = Group::new(&request.group_id, now);
            self.groups.insert(request.group_id.clone(), group);
        }
        let limits = self.limits.clone();
        let group = self.groups.get_mut(&request.group_id).expect("ensured");
        if group.state == GroupState::Dead {
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        }
        if !group.supports(&request.protocol_type, &request.protocols) {
            return Err(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        if unknown_member {
            join_new_member(group, &limits, now, token, request, fx)
        } else {
            join_known_member(group, &limits, now, token, request, fx)
        }
    }

    // ---------------------------------------------------------------- SyncGroup

    pub fn sync(&mut self, now: TimeMs, token: Token, request: SyncRequest) -> Effects {
        let mut fx = Effects::default();
        self.staged(&request.group_id.clone(), &mut fx, |c, fx| {
            if let Err(error) = c.sync_checked(now, token, &request, fx) {
                fx.replies
                    .push((token, Reply::Sync(SyncOutcome::error(error))));
            }
        });
        fx
    }

    fn sync_checked(
        &mut self,
        now: TimeMs,
        token: Token,
        request: &SyncRequest,
        fx: &mut Effects,
    ) -> Result<(), i16> {
        let group = self
            .groups
            .get_mut(&request.group_id)
            .ok_or(code::UNKNOWN_MEMBER_ID)?;
        if group.state == GroupState::Dead {
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        }
        group.validate_member(&request.member_id, request.instance_id.as_deref())?;
        if request.generation != group.generation {
            return Err(code::ILLEGAL_GENERATION);
        }
        let mismatch =
            |asked: &Option<String>, actual: &Option<String>| asked.is_some() && asked != actual;
        if mismatch(&request.protocol_type, &group.protocol_type)
            || mismatch(&request.protocol_name, &group.protocol_name)
        {
            return Err(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => Err(code::UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => Err(code::REBALANCE_IN_PROGRESS),
            GroupState::Stable => {
                remove_pending_sync(group, &request.member_id);
                let member = group.members.get_mut(&request.member_id).expect("valid");
                member.heartbeat_deadline_ms = now + member.session_timeout_ms as i64;
                let outcome = sync_outcome(group, &request.member_id);
                fx.replies.push((token, Reply::Sync(outcome)));
                Ok(())
            }
            GroupState::CompletingRebalance => {
                remove_pending_sync(group, &request.member_id);
                let member = group.members.get_mut(&request.member_id).expect("valid");
                member.heartbeat_deadline_ms = now + member.session_timeout_ms as i64;
                if let Some(old) = member.awaiting_sync.replace(token) {
                    fx.replies.push((
                        old,
                        Reply::Sync(SyncOutcome::error(code::REBALANCE_IN_PROGRESS)),
                    ));
                }
                if group.leader.as_deref() == Some(request.member_id.as_str()) {
                    complete_sync(group, now, &request.assignments, fx);
                }
                Ok(())
            }
        }
    }

    // ---------------------------------------------------------------- Heartbeat

    pub fn heartbeat(
        &mut self,
        now: TimeMs,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        match group.state {
            GroupState::Dead => return code::COORDINATOR_NOT_AVAILABLE,
            GroupState::Empty => return code::UNKNOWN_MEMBER_ID,
            _ => {}
        }
        if let Err(error) = group.validate_member(member_id, instance_id) {
            return error;
        }
        if generation != group.generation {
            return code::ILLEGAL_GENERATION;
        }
        let member = group.members.get_mut(member_id).expect("validated");
        member.heartbeat_deadline_ms = now + member.session_timeout_ms as i64;
        if group.state == GroupState::PreparingRebalance {
            code::REBALANCE_IN_PROGRESS
        } else {
            code::NONE
        }
    }

    // ---------------------------------------------------------------- LeaveGroup

    /// Removes members (by member id, or by group.instance.id for static members). Returns the
    /// top-level error and one error per member.
    pub fn leave(
        &mut self,
        now: TimeMs,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> (i16, Vec<i16>, Effects) {
        let mut fx = Effects::default();
        let mut answer = (code::NONE, Vec::new());
        self.staged(group_id, &mut fx, |c, fx| {
            answer = c.leave_members(now, group_id, leaving, fx);
        });
        (answer.0, answer.1, fx)
    }

    fn leave_members(
        &mut self,
        now: TimeMs,
        group_id: &str,
        leaving: &[(String, Option<String>)],
        fx: &mut Effects,
    ) -> (i16, Vec<i16>) {
        let Some(group) = self.groups.get_mut(group_id) else {
            let errors = vec![code::UNKNOWN_MEMBER_ID; leaving.len()];
            return (code::UNKNOWN_MEMBER_ID, errors);
        };
        if group.state == GroupState::Dead {
            return (code::COORDINATOR_NOT_AVAILABLE, Vec::new());
        }
        let mut errors = Vec::with_capacity(leaving.len());
        for (member_id, instance_id) in leaving {
            let target = match instance_id {
                Some(instance) => match group.static_members.get(instance) {
                    None => Err(code::UNKNOWN_MEMBER_ID),
                    Some(id) if !member_id.is_empty() && id != member_id => {
                        Err(code::FENCED_INSTANCE_ID)
                    }
                    Some(id) => Ok(id.clone()),
                },
                None => Ok(member_id.clone()),
            };
            let error = match target {
                Err(error) => error,
                Ok(id) if group.pending_members.remove(&id).is_some() => {
                    try_complete_join(group, now, fx);
                    code::NONE
                }
                Ok(id) if group.members.contains_key(&id) => {
                    remove_member_and_rebalance(group, &id, now, fx);
                    code::NONE
                }
                Ok(_) => code::UNKNOWN_MEMBER_ID,
            };
            errors.push(error);
        }
        (code::NONE, errors)
    }

    // ---------------------------------------------------------------- timers

    /// Expires sessions, pending members and rebalance/sync deadlines that passed by `now`.
    /// Groups with a pending write wait for it to end.
    pub fn tick(&mut self, now: TimeMs) -> Effects {
        let mut fx = Effects::default();
        let due: Vec<String> = self
            .groups
            .values()
            .filter(|g| !self.writes.contains_key(&g.id) && tick_due(g, now))
            .map(|g| g.id.clone())
            .collect();
        for id in due {
            self.staged(&id, &mut fx, |c, fx| {
                let group = c.groups.get_mut(&id).expect("listed");
                tick_group(group, now, fx);
            });
        }
        fx
    }

    // ---------------------------------------------------------------- offsets

    /// Kafka's `validateOffsetCommit` for classic groups. May create an empty group for a
    /// commit without generation (simple consumers, admin tools).
    pub fn check_commit(
        &mut self,
        now: TimeMs,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        version: i16,
    ) -> Result<(), i16> {
        if group_id.is_empty() {
            return Err(code::INVALID_GROUP_ID);
        }
        let Some(group) = self.groups.get(group_id) else {
            if generation < 0 {
                self.groups
                    .insert(group_id.to_string(), Group::new(group_id, now));
                return Ok(());
            }
            return Err(if version >= 9 {
                code::GROUP_ID_NOT_FOUND
            } else {
                code::ILLEGAL_GENERATION
            });
        };
        if group.state == GroupState::Dead {
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        }
        if generation < 0 && group.state == GroupState::Empty {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            group.validate_member(member_id, instance_id)?;
            if generation != group.generation {
                return Err(code::ILLEGAL_GENERATION);
            }
        } else if group.state != GroupState::Empty {
            return Err(code::UNKNOWN_MEMBER_ID);
        }
        if group.state == GroupState::CompletingRebalance {
            return Err(code::REBALANCE_IN_PROGRESS);
        }
        Ok(())
    }

    /// An OffsetCommit: checked, then its records are a pending write of the group, applied
    /// once durable ([`Coordinator::write_done`]). A group created for a commit without a
    /// generation goes away again if the write fails.
    pub fn commit(
        &mut self,
        now: TimeMs,
        request: &CommitRequest,
    ) -> Result<Vec<StoredRecord>, i16> {
        debug_assert!(
            !self.is_writing(&request.group_id),
            "the runtime waits for the pending write"
        );
        let existed = self.groups.contains_key(&request.group_id);
        self.check_commit(
            now,
            &request.group_id,
            request.generation,
            &request.member_id,
            request.instance_id.as_deref(),
            request.version,
        )?;
        let records = Coordinator::commit_records(&request.group_id, &request.offsets);
        let undo = if existed { Undo::Nothing } else { Undo::Remove };
        self.begin_write(&request.group_id, undo, Vec::new(), records.clone());
        Ok(records)
    }

    /// The records that commit `offsets` (key: topic, partition).
    pub fn commit_records(
        group_id: &str,
        offsets: &[((String, i32), CommittedOffset)],
    ) -> Vec<StoredRecord> {
        offsets
            .iter()
            .map(|((topic, partition), committed)| StoredRecord {
                key: RecordKey::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                },
                value: Some(RecordValue::Offset(OffsetValue {
                    offset: committed.offset,
                    leader_epoch: committed.leader_epoch,
                    metadata: committed.metadata.clone(),
                    commit_timestamp_ms: committed.commit_timestamp_ms,
                })),
            })
            .collect()
    }

    /// Makes persisted records current: commits after their append, and every record at
    /// replay. Group metadata only restores membership at replay (`replay = true`).
    pub fn apply(&mut self, now: TimeMs, record: &StoredRecord, replay: bool) {
        match (&record.key, &record.value) {
            (
                RecordKey::Offset {
                    group,
                    topic,
                    partition,
                },
                value,
            ) => {
                let entry = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group, now));
                let key = (topic.clone(), *partition);
                match value {
                    Some(RecordValue::Offset(v)) => {
                        entry.offsets.insert(
                            key,
                            CommittedOffset {
                                offset: v.offset,
                                leader_epoch: v.leader_epoch,
                                metadata: v.metadata.clone(),
                                commit_timestamp_ms: v.commit_timestamp_ms,
                            },
                        );
                    }
                    _ => {
                        entry.offsets.remove(&key);
                    }
                }
            }
            (RecordKey::Group { group }, Some(RecordValue::Group(value))) if replay => {
                let entry = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group, now));
                restore_group(entry, value, now);
            }
            (RecordKey::Group { group }, None) => {
                if let Some(existing) = self.groups.get(group) {
                    if existing.offsets.is_empty() || !replay {
                        self.groups.remove(group);
                    } else {
                        let offsets = existing.offsets.clone();
                        let mut fresh = Group::new(group, now);
                        fresh.offsets = offsets;
                        self.groups.insert(group.clone(), fresh);
                    }
                }
            }
            _ => {}
        }
    }

    /// DeleteGroups for one group: the tombstones to write, or GROUP_ID_NOT_FOUND /
    /// NON_EMPTY_GROUP. The tombstones are a pending write: the group is gone once they are
    /// durable.
    pub fn delete_group(&mut self, group_id: &str) -> Result<Vec<StoredRecord>, i16> {
        if group_id.is_empty() {
            return Err(code::INVALID_GROUP_ID);
        }
        let group = self.groups.get(group_id).ok_or(code::GROUP_ID_NOT_FOUND)?;
        match group.state {
            GroupState::Dead => return Err(code::GROUP_ID_NOT_FOUND),
            GroupState::Empty => {}
            _ => return Err(code::NON_EMPTY_GROUP),
        }
        let records = tombstones(group, group.offsets.keys());
        self.begin_write(group_id, Undo::Nothing, Vec::new(), records.clone());
        Ok(records)
    }

    /// OffsetDelete: the tombstones for `partitions` (a pending write, applied once
    /// durable) and an error per partition, or a top-level error.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<(Vec<i16>, Vec<StoredRecord>), i16> {
        if group_id.is_empty() {
            return Err(code::INVALID_GROUP_ID);
        }
        let group = self.groups.get(group_id).ok_or(code::GROUP_ID_NOT_FOUND)?;
        let subscribed = match group.state {
            GroupState::Dead => return Err(code::GROUP_ID_NOT_FOUND),
            GroupState::Empty => BTreeSet::new(),
            _ => group.subscribed_topics().ok_or(code::NON_EMPTY_GROUP)?,
        };
        let mut errors = Vec::with_capacity(partitions.len());
        let mut records = Vec::new();
        for (topic, partition) in partitions {
            if subscribed.contains(topic) {
                errors.push(code::GROUP_SUBSCRIBED_TO_TOPIC);
                continue;
            }
            errors.push(code::NONE);
            if group.offsets.contains_key(&(topic.clone(), *partition)) {
                records.push(offset_tombstone(group_id, topic, *partition));
            }
        }
        if !records.is_empty() {
            self.begin_write(group_id, Undo::Nothing, Vec::new(), records.clone());
        }
        Ok((errors, records))
    }

    /// The groups with committed offsets of `topic`.
    pub fn groups_with_topic(&self, topic: &str) -> Vec<String> {
        self.groups
            .values()
            .filter(|g| g.offsets.keys().any(|(t, _)| t == topic))
            .map(|g| g.id.clone())
            .collect()
    }

    /// Forgets a group's committed offsets of a deleted topic (Kafka's
    /// `onPartitionsDeleted`), so a topic created again under the same name is consumed from
    /// its start. Returns the tombstones, a pending write of the group (none if empty).
    pub fn delete_topic_offsets(&mut self, group_id: &str, topic: &str) -> Vec<StoredRecord> {
        debug_assert!(
            !self.is_writing(group_id),
            "the runtime waits for the pending write"
        );
        let Some(group) = self.groups.get(group_id) else {
            return Vec::new();
        };
        let records: Vec<StoredRecord> = group
            .offsets
            .keys()
            .filter(|(t, _)| t == topic)
            .map(|(t, p)| offset_tombstone(group_id, t, *p))
            .collect();
        if !records.is_empty() {
            self.begin_write(group_id, Undo::Nothing, Vec::new(), records.clone());
        }
        records
    }

    /// Expires the offsets of groups that stayed empty past the retention (Kafka's KIP-211
    /// rule), and removes empty groups left without offsets. Returns the tombstones; each
    /// group's are a pending write of it, applied once durable. Groups with a pending write
    /// wait for the next round.
    pub fn expire_offsets(&mut self, now: TimeMs) -> Vec<StoredRecord> {
        let mut planned: Vec<(String, Vec<StoredRecord>)> = Vec::new();
        let mut dead = Vec::new();
        for group in self.groups.values() {
            if self.writes.contains_key(&group.id) {
                continue;
            }
            let Some(expired) = self.expired_offsets(group, now) else {
                continue;
            };
            let empty_after = group.state == GroupState::Empty
                && group.offsets.len() == expired.len()
                && group.pending_members.is_empty();
            let mut records: Vec<StoredRecord> = expired
                .iter()
                .map(|(topic, partition)| offset_tombstone(&group.id, topic, *partition))
                .collect();
            if empty_after && (group.protocol_type.is_some() || group.generation > 0) {
                records.push(StoredRecord {
                    key: RecordKey::Group {
                        group: group.id.clone(),
                    },
                    value: None,
                });
            }
            match (records.is_empty(), empty_after) {
                (true, true) => dead.push(group.id.clone()),
                (true, false) => {}
                (false, _) => planned.push((group.id.clone(), records)),
            }
        }
        // Nothing was ever written for these: they go at once.
        for id in dead {
            self.groups.remove(&id);
        }
        let mut all = Vec::new();
        for (id, records) in planned {
            all.extend(records.iter().cloned());
            self.begin_write(&id, Undo::Nothing, Vec::new(), records);
        }
        all
    }

    /// The offsets of a group past the retention, or `None` when none can expire in its
    /// state. Kafka's offsetExpirationCondition: an empty consumer group counts from when it
    /// became empty, a simple group from each commit, and a stable consumer group expires
    /// only topics it no longer subscribes to (KIP-496), from each commit.
    fn expired_offsets(&self, group: &Group, now: TimeMs) -> Option<Vec<(String, i32)>> {
        let retention = self.limits.offsets_retention_ms;
        let (since_state, subscribed) = match (group.state, group.protocol_type.is_some()) {
            (GroupState::Empty, true) => (true, BTreeSet::new()),
            (GroupState::Empty, false) => (false, BTreeSet::new()),
            (GroupState::Stable, true) => (false, group.subscribed_topics()?),
            _ => return None,
        };
        let expired = group
            .offsets
            .iter()
            .filter(|((topic, _), o)| {
                let base = if since_state {
                    group.state_timestamp_ms
                } else {
                    o.commit_timestamp_ms
                };
                !subscribed.contains(topic) && now - base >= retention
            })
            .map(|(k, _)| k.clone())
            .collect();
        Some(expired)
    }

    /// DescribeGroups for one group; `None` when the group does not exist.
    /// A change still being written is not shown.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.durable_view(self.groups.get(group_id)?)?;
        let stable = group.state == GroupState::Stable;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        let members = group
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(&protocol)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        Some(GroupDescription {
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable { protocol } else { String::new() },
            members,
        })
    }
}

fn tombstones<'a>(
    group: &Group,
    offsets: impl Iterator<Item = &'a (String, i32)>,
) -> Vec<StoredRecord> {
    let mut records: Vec<StoredRecord> = offsets
        .map(|(topic, partition)| offset_tombstone(&group.id, topic, *partition))
        .collect();
    records.push(StoredRecord {
        key: RecordKey::Group {
            group: group.id.clone(),
        },
        value: None,
    });
    records
}

fn offset_tombstone(group: &str, topic: &str, partition: i32) -> StoredRecord {
    StoredRecord {
        key: RecordKey::Offset {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
        },
        value: None,
    }
}

/// Group metadata read back at startup: members are back, with fresh session timers.
fn restore_group(group: &mut Group, value: &GroupValue, now: TimeMs) {
    group.protocol_type = (!value.protocol_type.is_empty()).then(|| value.protocol_type.clone());
    group.generation = value.generation;
    group.protocol_name = value.protocol.clone();
    group.leader = value.leader.clone();
    group.members.clear();
    group.static_members.clear();
    for m in &value.members {
        let protocol = value.protocol.clone().unwrap_or_default();
        group.members.insert(
            m.member_id.clone(),
            Member {
                id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: vec![Protocol {
                    name: protocol,
                    metadata: m.subscription.clone(),
                }],
                assignment: m.assignment.clone(),
                awaiting_join: None,
                awaiting_sync: None,
                heartbeat_deadline_ms: now + m.session_timeout_ms as i64,
            },
        );
        if let Some(instance) = &m.instance_id {
            group
                .static_members
                .insert(instance.clone(), m.member_id.clone());
        }
    }
    group.state = if group.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
    group.state_timestamp_ms = if value.state_timestamp_ms > 0 {
        value.state_timestamp_ms
    } else {
        now
    };
}

fn new_member(request: &JoinRequest, id: String, now: TimeMs, token: Token) -> Member {
    Member {
        id,
        instance_id: request.instance_id.clone(),
        client_id: request.client_id.clone(),
        client_host: request.client_host.clone(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        protocols: request.protocols.clone(),
        assignment: Bytes::new(),
        awaiting_join: Some(token),
        awaiting_sync: None,
        heartbeat_deadline_ms: now + request.session_timeout_ms as i64,
    }
}

fn join_new_member(
    group: &mut Group,
    limits: &Limits,
    now: TimeMs,
    token: Token,
    request: &JoinRequest,
    fx: &mut Effects,
) -> Result<(), i16> {
    // Bounded so that a member id always fits the i16-length strings of the stored records.
    let client: String = request
        .client_id
        .chars()
        .take(CLIENT_ID_IN_MEMBER_ID_MAX)
        .collect();
    let member_id = format!("{client}-{}", request.fresh_id);
    if let Some(instance) = &request.instance_id {
        if let Some(old_id) = group.static_members.get(instance).cloned() {
            return replace_static_member(group, now, token, request, &old_id, member_id, fx);
        }
    }
    if group.members.len() + group.pending_members.len() >= limits.members_per_group_max {
        return Err(code::GROUP_MAX_SIZE_REACHED);
    }
    if request.instance_id.is_none() && request.require_known_member_id {
        group
            .pending_members
            .insert(member_id.clone(), now + request.session_timeout_ms as i64);
        let outcome = JoinOutcome::error(code::MEMBER_ID_REQUIRED, &member_id);
        fx.replies.push((token, Reply::Join(outcome)));
        return Ok(());
    }
    add_member_and_rebalance(group, limits, now, token, request, member_id, fx);
    Ok(())
}

fn join_known_member(
    group: &mut Group,
    limits: &Limits,
    now: TimeMs,
    token: Token,
    request: &JoinRequest,
    fx: &mut Effects,
) -> Result<(), i16> {
    let member_id = request.member_id.clone();
    if group.pending_members.contains_key(&member_id) {
        add_member_and_rebalance(group, limits, now, token, request, member_id, fx);
        return Ok(());
    }
    group.validate_member(&member_id, request.instance_id.as_deref())?;
    let member = group.members.get(&member_id).expect("validated");
    let unchanged = member.protocols == request.protocols;
    let is_leader = group.leader.as_deref() == Some(member_id.as_str());
    match group.state {
        GroupState::Empty | GroupState::Dead => Err(code::UNKNOWN_MEMBER_ID),
        GroupState::PreparingRebalance => {
            update_member_and_rebalance(group, limits, now, token, request, fx);
            Ok(())
        }
        GroupState::CompletingRebalance if unchanged => {
            // The member lost our answer: send it again.
            let outcome = join_outcome(group, &member_id, is_leader);
            fx.replies.push((token, Reply::Join(outcome)));
            Ok(())
        }
        GroupState::Stable if unchanged && !is_leader => {
            let outcome = join_outcome(group, &member_id, false);
            fx.replies.push((token, Reply::Join(outcome)));
            Ok(())
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            update_member_and_rebalance(group, limits, now, token, request, fx);
            Ok(())
        }
    }
}

/// A static member came back with a new member id: the old id is fenced and the member keeps
/// its place (and, when nothing changed in a stable group, its assignment) without a rebalance.
fn replace_static_member(
    group: &mut Group,
    now: TimeMs,
    token: Token,
    request: &JoinRequest,
    old_id: &str,
    new_id: String,
    fx: &mut Effects,
) -> Result<(), i16> {
    let mut member = group
        .members
        .remove(old_id)
        .expect("static member is a member");
    if let Some(old) = member.awaiting_join.take() {
        let outcome = JoinOutcome::error(code::FENCED_INSTANCE_ID, old_id);
        fx.replies.push((old, Reply::Join(outcome)));
    }
    if let Some(old) = member.awaiting_sync.take() {
        fx.replies.push((
            old,
            Reply::Sync(SyncOutcome::error(code::FENCED_INSTANCE_ID)),
        ));
    }
    let unchanged = member.protocols == request.protocols;
    member.id = new_id.clone();
    member.client_id = request.client_id.clone();
    member.client_host = request.client_host.clone();
    member.session_timeout_ms = request.session_timeout_ms;
    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    member.protocols = request.protocols.clone();
    member.heartbeat_deadline_ms = now + request.session_timeout_ms as i64;
    if group.leader.as_deref() == Some(old_id) {
        group.leader = Some(new_id.clone());
    }
    if group.pending_sync.remove(old_id) {
        group.pending_sync.insert(new_id.clone());
    }
    let instance = request.instance_id.clone().expect("static");
    group.static_members.insert(instance, new_id.clone());
    group.members.insert(new_id.clone(), member);
    match group.state {
        GroupState::Stable if unchanged => {
            let is_leader = group.leader.as_deref() == Some(new_id.as_str());
            let mut outcome = join_outcome(group, &new_id, is_leader);
            // The leader already computed this generation's assignment (JoinGroup v9+).
            outcome.skip_assignment = is_leader;
            fx.records.push(group.metadata_record());
            fx.replies.push((token, Reply::Join(outcome)));
        }
        GroupState::PreparingRebalance => {
            group
                .members
                .get_mut(&new_id)
                .expect("inserted")
                .awaiting_join = Some(token);
            try_complete_join(group, now, fx);
        }
        _ => {
            group
                .members
                .get_mut(&new_id)
                .expect("inserted")
                .awaiting_join = Some(token);
            prepare_rebalance(group, now, fx);
            try_complete_join(group, now, fx);
        }
    }
    Ok(())
}

fn add_member_and_rebalance(
    group: &mut Group,
    limits: &Limits,
    now: TimeMs,
    token: Token,
    request: &JoinRequest,
    member_id: String,
    fx: &mut Effects,
) {
    group.pending_members.remove(&member_id);
    if group.members.is_empty() {
        group.protocol_type = Some(request.protocol_type.clone());
    }
    if let Some(instance) = &request.instance_id {
        group
            .static_members
            .insert(instance.clone(), member_id.clone());
    }
    if group.leader.is_none() {
        group.leader = Some(member_id.clone());
    }
    let member = new_member(request, member_id.clone(), now, token);
    group.members.insert(member_id, member);
    group.new_member_added = true;
    maybe_prepare_rebalance(group, limits, now, fx);
    try_complete_join(group, now, fx);
}

fn update_member_and_rebalance(
    group: &mut Group,
    limits: &Limits,
    now: TimeMs,
    token: Token,
    request: &JoinRequest,
    fx: &mut Effects,
) {
    let member = group
        .members
        .get_mut(&request.member_id)
        .expect("validated");
    member.protocols = request.protocols.clone();
    member.session_timeout_ms = request.session_timeout_ms;
    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    member.client_host = request.client_host.clone();
    if let Some(old) = member.awaiting_join.replace(token) {
        let outcome = JoinOutcome::error(code::REBALANCE_IN_PROGRESS, &request.member_id);
        fx.replies.push((old, Reply::Join(outcome)));
    }
    maybe_prepare_rebalance(group, limits, now, fx);
    try_complete_join(group, now, fx);
}

fn maybe_prepare_rebalance(group: &mut Group, limits: &Limits, now: TimeMs, fx: &mut Effects) {
    match group.state {
        GroupState::Empty => {
            let delay = limits.initial_rebalance_delay_ms;
            let timeout = group.rebalance_timeout_ms();
            prepare_rebalance(group, now, fx);
            if delay > 0 {
                group.rebalance_deadline_ms = Some(now + delay.min(timeout));
                group.initial_join_remaining_ms = Some((timeout - delay).max(0));
                group.initial_join_delay_ms = delay;
                group.new_member_added = false;
            }
        }
        GroupState::Stable | GroupState::CompletingRebalance => prepare_rebalance(group, now, fx),
        GroupState::PreparingRebalance | GroupState::Dead => {}
    }
}

/// Starts a join phase: waiting syncs are told to rejoin, and the phase ends when every
/// member has rejoined or the longest rebalance timeout passes.
fn prepare_rebalance(group: &mut Group, now: TimeMs, fx: &mut Effects) {
    if group.state == GroupState::CompletingRebalance {
        for member in group.members.values_mut() {
            if let Some(token) = member.awaiting_sync.take() {
                fx.replies.push((
                    token,
                    Reply::Sync(SyncOutcome::error(code::REBALANCE_IN_PROGRESS)),
                ));
            }
        }
    }
    group.pending_sync.clear();
    group.sync_deadline_ms = None;
    group.initial_join_remaining_ms = None;
    group.rebalance_deadline_ms = Some(now + group.rebalance_timeout_ms());
    group.transition(GroupState::PreparingRebalance, now);
}

fn try_complete_join(group: &mut Group, now: TimeMs, fx: &mut Effects) {
    if group.state == GroupState::PreparingRebalance
        && group.initial_join_remaining_ms.is_none()
        && group.all_members_joined()
    {
        complete_join(group, now, fx);
    }
}

/// Ends the join phase: drops dynamic members that did not rejoin, starts the next
/// generation and answers every waiting JoinGroup (the leader gets the member list).
fn complete_join(group: &mut Group, now: TimeMs, fx: &mut Effects) {
    debug_assert_eq!(group.state, GroupState::PreparingRebalance);
    let gone: Vec<String> = group
        .members
        .values()
        .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
        .map(|m| m.id.clone())
        .collect();
    for id in gone {
        remove_member(group, &id, fx);
    }
    group.initial_join_remaining_ms = None;
    group.rebalance_deadline_ms = None;
    if group.members.is_empty() {
        group.generation += 1;
        group.protocol_name = None;
        group.leader = None;
        group.transition(GroupState::Empty, now);
        fx.records.push(group.metadata_record());
        return;
    }
    let leader_joined = group
        .leader
        .as_ref()
        .and_then(|l| group.members.get(l))
        .is_some_and(|m| m.awaiting_join.is_some());
    if !leader_joined {
        match group.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => group.leader = Some(m.id.clone()),
            None => {
                // Only static members that have not rejoined are left: wait for them or for
                // their sessions to expire.
                group.rebalance_deadline_ms = Some(now + group.rebalance_timeout_ms());
                return;
            }
        }
    }
    group.generation += 1;
    group.protocol_name = group.select_protocol();
    group.transition(GroupState::CompletingRebalance, now);
    group.pending_sync = group.members.keys().cloned().collect();
    group.sync_deadline_ms = Some(now + group.rebalance_timeout_ms());
    let leader = group.leader.clone().expect("elected");
    let ids: Vec<String> = group.members.keys().cloned().collect();
    for id in ids {
        let outcome = join_outcome(group, &id, id == leader);
        let member = group.members.get_mut(&id).expect("listed");
        member.heartbeat_deadline_ms = now + member.session_timeout_ms as i64;
        if let Some(token) = member.awaiting_join.take() {
            fx.replies.push((token, Reply::Join(outcome)));
        }
    }
}

fn join_outcome(group: &Group, member_id: &str, with_members: bool) -> JoinOutcome {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    let members = if with_members {
        group
            .members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinOutcome {
        error: code::NONE,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members,
        skip_assignment: false,
    }
}

fn sync_outcome(group: &Group, member_id: &str) -> SyncOutcome {
    SyncOutcome {
        error: code::NONE,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        assignment: group
            .members
            .get(member_id)
            .map(|m| m.assignment.clone())
            .unwrap_or_default(),
    }
}

fn remove_pending_sync(group: &mut Group, member_id: &str) {
    group.pending_sync.remove(member_id);
    if group.pending_sync.is_empty() {
        group.sync_deadline_ms = None;
    }
}

/// The leader's SyncGroup: stores every assignment, persists the group and answers every
/// waiting SyncGroup.
fn complete_sync(
    group: &mut Group,
    now: TimeMs,
    assignments: &[(String, Bytes)],
    fx: &mut Effects,
) {
    for member in group.members.values_mut() {
        member.assignment = assignments
            .iter()
            .find(|(id, _)| *id == member.id)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
    }
    group.transition(GroupState::Stable, now);
    fx.records.push(group.metadata_record());
    let ids: Vec<String> = group.members.keys().cloned().collect();
    for id in ids {
        let outcome = sync_outcome(group, &id);
        let member = group.members.get_mut(&id).expect("listed");
        if let Some(token) = member.awaiting_sync.take() {
            fx.replies.push((token, Reply::Sync(outcome)));
        }
    }
}

/// Removes a member, answering its waiting requests with UNKNOWN_MEMBER_ID.
fn remove_member(group: &mut Group, member_id: &str, fx: &mut Effects) {
    let Some(member) = group.members.remove(member_id) else {
        return;
    };
    if let Some(token) = member.awaiting_join {
        let outcome = JoinOutcome::error(code::UNKNOWN_MEMBER_ID, member_id);
        fx.replies.push((token, Reply::Join(outcome)));
    }
    if let Some(token) = member.awaiting_sync {
        fx.replies.push((
            token,
            Reply::Sync(SyncOutcome::error(code::UNKNOWN_MEMBER_ID)),
        ));
    }
    if let Some(instance) = &member.instance_id {
        if group.static_members.get(instance).map(String::as_str) == Some(member_id) {
            group.static_members.remove(instance);
        }
    }
    remove_pending_sync(group, member_id);
    if group.leader.as_deref() == Some(member_id) {
        group.leader = group
            .members
            .values()
            .find(|m| m.awaiting_join.is_some())
            .or_else(|| group.members.values().next())
            .map(|m| m.id.clone());
    }
}

fn remove_member_and_rebalance(group: &mut Group, member_id: &str, now: TimeMs, fx: &mut Effects) {
    remove_member(group, member_id, fx);
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            prepare_rebalance(group, now, fx);
            try_complete_join(group, now, fx);
        }
        GroupState::PreparingRebalance => try_complete_join(group, now, fx),
        GroupState::Empty | GroupState::Dead => {}
    }
}

/// Whether [`tick_group`] has anything to do: a pending member, session, rebalance or sync
/// deadline passed.
fn tick_due(group: &Group, now: TimeMs) -> bool {
    group
        .pending_members
        .values()
        .any(|deadline| *deadline <= now)
        || group.members.values().any(|m| {
            m.awaiting_join.is_none() && m.awaiting_sync.is_none() && m.heartbeat_deadline_ms <= now
        })
        || (group.state == GroupState::PreparingRebalance
            && group.rebalance_deadline_ms.is_some_and(|d| d <= now))
        || (matches!(
            group.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) && group.sync_deadline_ms.is_some_and(|d| d <= now)
            && !group.pending_sync.is_empty())
}

fn tick_group(group: &mut Group, now: TimeMs, fx: &mut Effects) {
    let expired_pending: Vec<String> = group
        .pending_members
        .iter()
        .filter(|(_, deadline)| **deadline <= now)
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired_pending {
        group.pending_members.remove(&id);
        try_complete_join(group, now, fx);
    }
    let expired: Vec<String> = group
        .members
        .values()
        .filter(|m| {
            m.awaiting_join.is_none() && m.awaiting_sync.is_none() && m.heartbeat_deadline_ms <= now
        })
        .map(|m| m.id.clone())
        .collect();
    for id in expired {
        remove_member_and_rebalance(group, &id, now, fx);
    }
    if group.state == GroupState::PreparingRebalance
        && group.rebalance_deadline_ms.is_some_and(|d| d <= now)
    {
        match group.initial_join_remaining_ms {
            Some(remaining) if group.new_member_added && remaining > 0 => {
                // Kafka's InitialDelayedJoin: members are still arriving; wait a bit more.
                let delay = remaining.min(group.initial_join_delay_ms).max(1);
                group.rebalance_deadline_ms = Some(now + delay);
                group.initial_join_remaining_ms = Some(remaining - delay);
                group.new_member_added = false;
            }
            _ => complete_join(group, now, fx),
        }
    }
    if matches!(
        group.state,
        GroupState::CompletingRebalance | GroupState::Stable
    ) && group.sync_deadline_ms.is_some_and(|d| d <= now)
        && !group.pending_sync.is_empty()
    {
        let laggards: Vec<String> = group.pending_sync.iter().cloned().collect();
        for id in laggards {
            remove_member(group, &id, fx);
        }
        prepare_rebalance(group, now, fx);
        try_complete_join(group, now, fx);
    }
}

#[cfg(test)]
mod tests;
