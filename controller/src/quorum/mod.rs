//! The controller quorum: the metadata state machine replicated by Raft (raft-rs), sans-IO.
//!
//! A [`Quorum`] is one voter. Its owner feeds it clock ticks ([`Quorum::tick`]), messages
//! from the other voters ([`Quorum::step`]) and commands ([`Quorum::propose`], on the
//! leader), then calls [`Quorum::process`], which persists what Raft asks for
//! ([`storage::RaftStore`], fsynced before any message that depends on it leaves), applies
//! committed entries to the [`MetadataImage`] and hands back the messages to send and the
//! outcomes of this node's proposals. No clock, no sockets, no threads: the broker drives it
//! from shard 0 and the tests from a simulated network.
//!
//! A log entry is one [`Proposal`]: the records of one command, resolved by the leader
//! against its image (topic ids, placements). Every voter applies an entry atomically with
//! [`MetadataImage::apply_batch`]; an entry that no longer fits (two leaders' proposals that
//! raced) is skipped by every voter alike, so images stay identical.

pub mod storage;

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use raft::eraftpb::{EntryType, Message, Snapshot};
use raft::{RawNode, StateRole};
use rkyv::rancor;

use crate::codec::{self, SnapshotPayload};
use crate::error::ApplyError;
use crate::image::{ApplyOutcome, MetadataCommand, MetadataImage, MetadataRecord, TopicId};
use storage::RaftStore;

pub use raft::eraftpb::{Message as RaftMessage, MessageType as RaftMessageType};

/// Directory of the Raft log inside the data dir.
pub const RAFT_DIR: &str = "__cluster_metadata/raft";

/// Checks a quorum's voter ids: 1, 3 or 5 distinct positive ids.
pub fn validate_voters(voters: &[u64]) -> Result<(), String> {
    if !matches!(voters.len(), 1 | 3 | 5) {
        return Err(format!(
            "the controller quorum has {} voters; it must have 1, 3 or 5 (an even number \
             tolerates no more failures than one less, and cannot break ties)",
            voters.len()
        ));
    }
    let distinct: BTreeSet<_> = voters.iter().collect();
    if distinct.len() != voters.len() {
        return Err(format!(
            "the controller quorum names a node id twice: {voters:?}"
        ));
    }
    if voters.contains(&0) {
        return Err("controller node ids must be positive".into());
    }
    Ok(())
}

/// Settings of one voter.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    pub node_id: u64,
    pub voters: Vec<u64>,
    /// Ticks without a leader's heartbeat before a follower campaigns (randomised up to 2x).
    pub election_ticks: usize,
    /// Upper bound (exclusive) of the randomised election timeout; 0 for twice
    /// `election_ticks`. Simulations set `election_ticks + 1` for a fixed timeout.
    pub election_ticks_max: usize,
    pub heartbeat_ticks: usize,
    /// Applied entries between snapshots (and log compactions).
    pub snapshot_interval_entries: u64,
    /// fdatasync the Raft log; off only in tests.
    pub fsync: bool,
}

impl QuorumConfig {
    pub fn new(node_id: u64, voters: Vec<u64>) -> Self {
        QuorumConfig {
            node_id,
            voters,
            election_ticks: 10,
            election_ticks_max: 0,
            heartbeat_ticks: 2,
            snapshot_interval_entries: 1024,
            fsync: true,
        }
    }
}

/// Why a command was not proposed.
#[derive(Debug)]
pub enum ProposeError {
    /// This voter is not the leader (or not yet able to propose); `leader` is its best guess.
    NotLeader { leader: Option<u64> },
    /// The command is invalid against the current image.
    Invalid(ApplyError),
}

impl std::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProposeError::NotLeader { leader: Some(l) } => {
                write!(f, "not the active controller (node {l} is)")
            }
            ProposeError::NotLeader { leader: None } => {
                write!(f, "not the active controller (no leader elected)")
            }
            ProposeError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

/// The result of one of this node's proposals: the token [`Quorum::propose`] returned.
#[derive(Debug)]
pub struct Completion {
    pub token: u64,
    pub result: Result<Vec<ApplyOutcome>, CompletionError>,
}

#[derive(Debug)]
pub enum CompletionError {
    /// Leadership was lost before the entry committed; it may or may not commit later.
    LeadershipLost,
    /// The entry committed but no longer fit the image (a racing proposal won).
    Rejected(ApplyError),
}

/// What [`Quorum::process`] hands back.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to deliver to the other voters (`to` names the voter).
    pub messages: Vec<Message>,
    pub completed: Vec<Completion>,
    /// The image changed (new records applied or a snapshot installed).
    pub image_changed: bool,
}

/// One log entry's payload.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Proposal {
    proposer: u64,
    /// Random per process start, so tokens of a restarted voter never match old entries.
    incarnation: u64,
    token: u64,
    records: Vec<MetadataRecord>,
}

/// The quorum's view for DescribeQuorum.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct QuorumStatus {
    pub node_id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Voters with the last log index known to match the leader's (leader only).
    pub voters: Vec<(u64, Option<u64>)>,
}

/// One controller voter.
pub struct Quorum {
    raw: RawNode<RaftStore>,
    node_id: u64,
    image: Arc<MetadataImage>,
    applied: u64,
    /// Index of the entry this node appended on becoming leader; proposals wait until it
    /// is applied, so they are validated against every earlier committed entry.
    term_start: Option<u64>,
    incarnation: u64,
    next_token: u64,
    pending: BTreeSet<u64>,
    /// The image after this leader's proposals that are not applied yet: new commands are
    /// validated against it, so two racing commands get the right error at once (e.g.
    /// TOPIC_ALREADY_EXISTS) instead of a rejected entry. `None`: same as `image`.
    proposed: Option<Arc<MetadataImage>>,
    completed: Vec<Completion>,
    init_proposed: bool,
    snapshot_interval: u64,
    was_leader: bool,
    /// The last applied records, oldest first, the first at offset `recent_first`: what
    /// brokers that are a little behind fetch instead of the whole image.
    recent: VecDeque<MetadataRecord>,
    recent_first: u64,
}

/// Most records [`Quorum::records_after`] can hand out; a broker further behind gets the
/// whole image.
pub const RECENT_RECORDS_MAX: usize = 4096;

impl Quorum {
    /// Opens the voter's Raft log in `dir` (created on first start with `config.voters`)
    /// and rebuilds the image from its snapshot; committed entries after it are applied
    /// again by the first [`Quorum::process`].
    pub fn open(dir: &Path, config: QuorumConfig) -> Result<Quorum, ApplyError> {
        validate_voters(&config.voters).map_err(ApplyError::InvalidRequest)?;
        if !config.voters.contains(&config.node_id) {
            return Err(ApplyError::InvalidRequest(format!(
                "node {} is not a voter of the controller quorum {:?}",
                config.node_id, config.voters
            )));
        }
        let store = RaftStore::open(dir, &config.voters, config.fsync)?;
        let node_id = i32::try_from(config.node_id)
            .map_err(|_| ApplyError::InvalidRequest("node id too large".into()))?;
        let snapshot = store.latest_snapshot();
        let applied = snapshot.get_metadata().index;
        let image = image_of(snapshot, node_id)?;
        let applied_version = image.version;
        let raft_config = raft::Config {
            id: config.node_id,
            election_tick: config.election_ticks,
            max_election_tick: config.election_ticks_max,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&raft_config, store, &logger)
            .map_err(|e| ApplyError::corrupt(format!("raft: {e}")))?;
        Ok(Quorum {
            raw,
            node_id: config.node_id,
            image: Arc::new(image),
            applied,
            term_start: None,
            incarnation: u64::from_le_bytes(
                uuid::Uuid::new_v4().as_bytes()[..8]
                    .try_into()
                    .expect("8 bytes"),
            ),
            next_token: 1,
            pending: BTreeSet::new(),
            proposed: None,
            completed: Vec::new(),
            init_proposed: false,
            snapshot_interval: config.snapshot_interval_entries.max(1),
            was_leader: false,
            recent: VecDeque::new(),
            recent_first: applied_version + 1,
        })
    }

    /// The metadata image after every applied entry.
    pub fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.image)
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The leader this voter knows of.
    pub fn leader(&self) -> Option<u64> {
        let leader = self.raw.raft.leader_id;
        (leader != raft::INVALID_ID).then_some(leader)
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The records applied after image version `version`, in order: `None` when they are no
    /// longer kept (the caller needs the whole image) or `version` is ahead of this voter.
    pub fn records_after(&self, version: u64) -> Option<Vec<MetadataRecord>> {
        if version > self.image.version || version + 1 < self.recent_first {
            return None;
        }
        let skip = usize::try_from(version + 1 - self.recent_first).ok()?;
        Some(self.recent.iter().skip(skip).cloned().collect())
    }

    fn remember(&mut self, records: &[MetadataRecord]) {
        self.recent.extend(records.iter().cloned());
        let excess = self.recent.len().saturating_sub(RECENT_RECORDS_MAX);
        self.recent.drain(..excess);
        self.recent_first += excess as u64;
    }

    /// The index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// Whether [`Quorum::propose`] would be accepted now: leader, caught up with every
    /// entry of earlier terms, cluster id set.
    pub fn can_propose(&self) -> bool {
        self.is_leader()
            && self.term_start.is_some_and(|start| self.applied >= start)
            && !self.image.cluster_id.is_empty()
    }

    pub fn status(&self) -> QuorumStatus {
        let voters = self
            .raw
            .store()
            .voters()
            .into_iter()
            .map(|id| {
                let matched = if self.is_leader() {
                    self.raw.raft.prs().get(id).map(|p| p.matched)
                } else {
                    None
                };
                (id, matched)
            })
            .collect();
        QuorumStatus {
            node_id: self.node_id,
            leader: self.leader(),
            term: self.term(),
            commit_index: self.raw.raft.raft_log.committed,
            applied_index: self.applied,
            voters,
        }
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Takes a message from another voter. Messages from unknown nodes are dropped.
    pub fn step(&mut self, message: Message) {
        if !self.raw.store().voters().contains(&message.from) {
            return;
        }
        if let Err(e) = self.raw.step(message) {
            tracing::debug!(error = %e, "raft step refused a message");
        }
    }

    /// Tells Raft that `node` could not be reached (it backs off sending to it).
    pub fn report_unreachable(&mut self, node: u64) {
        self.raw.report_unreachable(node);
    }

    /// Tells Raft whether a snapshot message (`MsgSnapshot`) sent to `node` was delivered.
    /// The leader sends `node` nothing else until it hears, so the transport must report
    /// every snapshot it could not deliver.
    pub fn report_snapshot(&mut self, node: u64, delivered: bool) {
        let status = if delivered {
            raft::SnapshotStatus::Finish
        } else {
            raft::SnapshotStatus::Failure
        };
        self.raw.report_snapshot(node, status);
    }

    /// Validates `cmd` against the image and proposes its records; the outcome comes back
    /// as a [`Completion`] with the returned token once the entry is applied.
    pub fn propose(&mut self, cmd: MetadataCommand) -> Result<u64, ProposeError> {
        self.propose_with_ids(cmd, crate::store::random_topic_id)
    }

    /// [`Quorum::propose`] with a given topic id source (deterministic tests).
    pub fn propose_with_ids(
        &mut self,
        cmd: MetadataCommand,
        ids: impl FnMut() -> TopicId,
    ) -> Result<u64, ProposeError> {
        if !self.can_propose() {
            return Err(ProposeError::NotLeader {
                leader: self.leader().filter(|l| *l != self.node_id),
            });
        }
        let base = self.proposed.clone().unwrap_or_else(|| self.image());
        let records = base
            .propose_records(cmd, ids)
            .map_err(ProposeError::Invalid)?;
        let (next, _) = base.apply_batch(&records).map_err(ProposeError::Invalid)?;
        let token = self.propose_records(records)?;
        self.proposed = Some(Arc::new(next));
        Ok(token)
    }

    fn propose_records(&mut self, records: Vec<MetadataRecord>) -> Result<u64, ProposeError> {
        let token = self.next_token;
        self.next_token += 1;
        let proposal = Proposal {
            proposer: self.node_id,
            incarnation: self.incarnation,
            token,
            records,
        };
        let data = rkyv::to_bytes::<rancor::Error>(&proposal).expect("rkyv serialisation");
        self.raw
            .propose(Vec::new(), data.to_vec())
            .map_err(|_| ProposeError::NotLeader {
                leader: self.leader(),
            })?;
        self.pending.insert(token);
        Ok(token)
    }

    /// Persists, applies and collects everything Raft has ready. Call after every
    /// [`Quorum::tick`], [`Quorum::step`] and [`Quorum::propose`] (or a batch of them).
    pub fn process(&mut self) -> Result<Output, ApplyError> {
        let mut out = Output::default();
        let version = self.image.version;
        let snapshot_index = self.applied_snapshot_index();
        while self.raw.has_ready() {
            self.handle_ready(&mut out)?;
        }
        self.track_leadership();
        if self.can_propose_init() {
            self.init_proposed = true;
            let cluster_id = crate::store::new_cluster_id();
            tracing::info!(%cluster_id, "initialising new cluster metadata");
            let _ = self.propose_records(vec![MetadataRecord::ClusterInit { cluster_id }]);
            while self.raw.has_ready() {
                self.handle_ready(&mut out)?;
            }
        }
        let initialised = !self.image.cluster_id.is_empty();
        if initialised && self.applied >= snapshot_index + self.snapshot_interval {
            self.take_snapshot()?;
        }
        out.completed = std::mem::take(&mut self.completed);
        out.image_changed = self.image.version != version;
        Ok(out)
    }

    fn applied_snapshot_index(&self) -> u64 {
        self.raw.store().latest_snapshot().get_metadata().index
    }

    fn can_propose_init(&self) -> bool {
        self.is_leader()
            && !self.init_proposed
            && self.image.cluster_id.is_empty()
            && self.term_start.is_some_and(|start| self.applied >= start)
    }

    fn handle_ready(&mut self, out: &mut Output) -> Result<(), ApplyError> {
        let mut rd = self.raw.ready();
        out.messages.extend(rd.take_messages());
        if !rd.snapshot().is_empty() {
            let snapshot = rd.snapshot().clone();
            self.install_snapshot(snapshot)?;
        }
        let committed = rd.take_committed_entries();
        self.apply_entries(committed);
        self.raw.mut_store().append(rd.entries())?;
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs)?;
        }
        self.raw.mut_store().sync()?;
        out.messages.extend(rd.take_persisted_messages());
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
            self.raw.mut_store().sync()?;
        }
        out.messages.extend(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply_entries(committed);
        self.raw.advance_apply();
        Ok(())
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), ApplyError> {
        let node_id = self.image.node_id;
        let image = image_of(&snapshot, node_id)?;
        let index = snapshot.get_metadata().index;
        self.raw.mut_store().apply_snapshot(snapshot)?;
        self.recent.clear();
        self.recent_first = image.version + 1;
        self.image = Arc::new(image);
        self.applied = index;
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<raft::eraftpb::Entry>) {
        for entry in entries {
            self.applied = entry.index;
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            let proposal = match rkyv::from_bytes::<Proposal, rancor::Error>(&aligned(&entry.data))
            {
                Ok(p) => p,
                Err(e) => {
                    // Every voter skips it alike; it can only come from a newer version.
                    tracing::error!(index = entry.index, error = %e, "undecodable metadata entry skipped");
                    continue;
                }
            };
            let result = match self.image.apply_batch(&proposal.records) {
                Ok((image, outcomes)) => {
                    self.image = Arc::new(image);
                    self.remember(&proposal.records);
                    Ok(outcomes)
                }
                Err(e) => {
                    tracing::debug!(index = entry.index, error = %e, "metadata entry no longer fits; skipped");
                    Err(CompletionError::Rejected(e))
                }
            };
            let mine =
                proposal.proposer == self.node_id && proposal.incarnation == self.incarnation;
            if result.is_err() || (mine && self.pending.len() <= 1) {
                // Caught up with (or diverged from) what this leader proposed.
                self.proposed = None;
            }
            if mine && self.pending.remove(&proposal.token) {
                self.completed.push(Completion {
                    token: proposal.token,
                    result,
                });
            }
        }
    }

    fn track_leadership(&mut self) {
        let leader = self.is_leader();
        if leader && !self.was_leader {
            // The empty entry a new leader appends is its last one.
            self.term_start = Some(self.raw.raft.raft_log.last_index());
            self.init_proposed = false;
        }
        if !leader {
            self.term_start = None;
            self.proposed = None;
            for token in std::mem::take(&mut self.pending) {
                self.completed.push(Completion {
                    token,
                    result: Err(CompletionError::LeadershipLost),
                });
            }
        }
        self.was_leader = leader;
    }

    fn take_snapshot(&mut self) -> Result<(), ApplyError> {
        let bytes = codec::encode_snapshot(&SnapshotPayload::of(&self.image));
        let index = self.applied;
        self.raw.mut_store().compact_to(index, bytes)?;
        tracing::debug!(index, version = self.image.version, "raft snapshot taken");
        Ok(())
    }
}

fn aligned(bytes: &[u8]) -> rkyv::util::AlignedVec<16> {
    let mut out = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    out.extend_from_slice(bytes);
    out
}

/// The image a Raft snapshot holds (the empty image for none).
fn image_of(snapshot: &Snapshot, node_id: i32) -> Result<MetadataImage, ApplyError> {
    if snapshot.data.is_empty() {
        return Ok(MetadataImage::empty(node_id));
    }
    let payload = codec::decode_snapshot(&snapshot.data)
        .map_err(|e| ApplyError::corrupt(format!("raft snapshot: {e}")))?;
    MetadataImage::from_snapshot(node_id, payload)
}

/// Encodes a Raft message for the wire (protobuf, as raft-rs defines it).
pub fn encode_message(message: &Message) -> Vec<u8> {
    use protobuf::Message as _;
    message.write_to_bytes().expect("protobuf encoding")
}

/// Decodes a Raft message from the wire.
pub fn decode_message(bytes: &[u8]) -> Option<Message> {
    use protobuf::Message as _;
    Message::parse_from_bytes(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn create(name: &str) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            partitions: 2,
            replication_factor: -1,
            default_replication_factor: 1,
            configs: BTreeMap::new(),
        }
    }

    /// A single voter, elected and initialised.
    fn leader(dir: &Path) -> Quorum {
        let mut config = QuorumConfig::new(1, vec![1]);
        config.fsync = false;
        let mut q = Quorum::open(dir, config).expect("open");
        for _ in 0..100 {
            q.tick();
            q.process().expect("process");
            if q.can_propose() {
                return q;
            }
        }
        panic!("a single voter never led");
    }

    #[test]
    fn racing_commands_are_validated_against_the_pending_ones() {
        let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target"))
            .expect("tempdir");
        let mut q = leader(dir.path());
        let register = MetadataCommand::RegisterBroker {
            node_id: 1,
            host: "h".into(),
            port: 1,
            shards: 1,
            rack: None,
            endpoints: Vec::new(),
        };
        // Proposed back to back, before any is committed.
        let a = q.propose(register).expect("register");
        let b = q.propose(create("t")).expect("create");
        let again = q.propose(create("t")).expect_err("duplicate");
        assert!(matches!(&again, ProposeError::Invalid(e) if e.kafka_error_code() == 36));
        let out = q.process().expect("process");
        let tokens: Vec<u64> = out.completed.iter().map(|c| c.token).collect();
        assert_eq!(tokens, [a, b]);
        assert!(out.completed.iter().all(|c| c.result.is_ok()));
        assert!(q.image().topic("t").is_some());
        let again = q.propose(create("t")).expect_err("still a duplicate");
        assert!(matches!(&again, ProposeError::Invalid(e) if e.kafka_error_code() == 36));
    }
}
