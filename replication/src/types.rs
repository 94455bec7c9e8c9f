//! The values that cross the machine's boundary: the controller's partition state, the
//! configuration, the local log view, fetch positions and answers, errors and effects.

/// `leader` of a partition that has none (offline).
pub const NO_LEADER: i32 = -1;
/// Kafka's UNDEFINED_EPOCH.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's UNDEFINED_EPOCH_OFFSET, and an offset not yet known (a follower before its first
/// fetch under a new leader).
pub const UNDEFINED_OFFSET: i64 = -1;
/// Replicas of one partition at most; a controller state with more is refused.
pub const REPLICAS_MAX: usize = 64;
/// acks=all waiters of one partition at most; the broker's request queues bound them long
/// before (`queued.max.requests` per connection).
pub const ACK_WAITERS_MAX: usize = 1 << 16;

/// What the controller says about the partition (Kafka's PartitionRegistration): the
/// controller elects leaders (from the ISR only) and owns the ISR; a leader proposes ISR
/// changes with a compare-and-set on `partition_epoch` (AlterPartition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    /// Broker id of the leader, or [`NO_LEADER`].
    pub leader: i32,
    /// Bumped by the controller on every leader change.
    pub leader_epoch: i32,
    /// Bumped by the controller on every change of the partition (leader or ISR).
    pub partition_epoch: i32,
    /// The assigned replicas, in preference order.
    pub replicas: Vec<i32>,
    /// The in-sync replicas: a subset of `replicas` holding the leader.
    pub isr: Vec<i32>,
}

impl PartitionState {
    /// Whether the state is well formed: at most [`REPLICAS_MAX`] distinct replicas, an ISR
    /// of distinct replicas, a leader that is in the ISR (or none), non-negative epochs.
    pub fn is_valid(&self) -> bool {
        let distinct = |ids: &[i32]| {
            let mut sorted = ids.to_vec();
            sorted.sort_unstable();
            sorted.windows(2).all(|w| w[0] != w[1])
        };
        self.replicas.len() <= REPLICAS_MAX
            && distinct(&self.replicas)
            && distinct(&self.isr)
            && self.isr.iter().all(|id| self.replicas.contains(id))
            && (self.leader == NO_LEADER || self.isr.contains(&self.leader))
            && self.leader_epoch >= 0
            && self.partition_epoch >= 0
    }
}

/// Replication settings of one partition (Kafka's names where they exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// `min.insync.replicas`: acks=all needs at least this many ISR members.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: a follower not caught up for longer leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// false (the default): an acks=all batch is acknowledged once it is durable
    /// (fdatasync'ed) on every ISR member; true: once written by every follower, Kafka's
    /// behaviour (for benchmarks). The leader's own copy is always durable first.
    pub followers_ack_when_written: bool,
    /// An ISR proposal unanswered for this long is sent again (the controller's
    /// compare-and-set makes a duplicate harmless).
    pub isr_proposal_retry_ms: u64,
}

impl Default for ReplicaConfig {
    fn default() -> ReplicaConfig {
        ReplicaConfig {
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            followers_ack_when_written: false,
            isr_proposal_retry_ms: 1_000,
        }
    }
}

/// The local log as the machine sees it. The broker implements it over its `PartitionLog`,
/// the simulation over a model log. A trait rather than values passed in: the leader asks
/// for `end_offset_for_epoch` only on a fetch that names a last fetched epoch, and the
/// follower only on a diverging answer, so passing every value into every call would mean a
/// cache lookup on every call or a wider API; the reads are cheap and side-effect free.
pub trait LogView {
    /// The first offset still in the log.
    fn log_start_offset(&self) -> i64;
    /// One past the last offset appended (written or not), the log end offset (LEO).
    fn log_end_offset(&self) -> i64;
    /// Everything below this offset is fdatasync'ed; `<= log_end_offset()`.
    fn durable_end_offset(&self) -> i64;
    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: for the largest epoch `<= epoch` known
    /// to the log, that epoch and its end offset (the start offset of the next epoch, or the
    /// log end offset for the latest one); `(epoch, first start offset)` when `epoch` is
    /// older than every known one; `(UNDEFINED_EPOCH, UNDEFINED_OFFSET)` when `epoch` is
    /// newer than the latest or undefined.
    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64);
    /// The latest epoch in the log's epoch cache, if any.
    fn latest_epoch(&self) -> Option<i32>;
}

/// A produce request's `acks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// acks=0.
    None,
    /// acks=1: the leader's append.
    Leader,
    /// acks=all (-1): durable on every ISR member.
    All,
}

/// The errors the machine answers, each one Kafka's error of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaError {
    /// This broker does not lead (or follow) the partition.
    NotLeaderOrFollower,
    /// acks=all with fewer ISR members than `min.insync.replicas`, before the append.
    NotEnoughReplicas,
    /// acks=all appended, but the ISR fell below `min.insync.replicas` before it completed.
    NotEnoughReplicasAfterAppend,
    /// The requester's leader epoch is older than this leader's.
    FencedLeaderEpoch,
    /// The requester's leader epoch is newer than this leader's.
    UnknownLeaderEpoch,
    /// An acks=all waiter ran past its timeout.
    RequestTimedOut,
}

impl ReplicaError {
    /// Kafka's error code.
    pub fn code(self) -> i16 {
        match self {
            ReplicaError::NotLeaderOrFollower => 6,
            ReplicaError::RequestTimedOut => 7,
            ReplicaError::NotEnoughReplicas => 19,
            ReplicaError::NotEnoughReplicasAfterAppend => 20,
            ReplicaError::FencedLeaderEpoch => 74,
            ReplicaError::UnknownLeaderEpoch => 75,
        }
    }
}

/// Why the controller refused an ISR proposal (AlterPartition errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsrError {
    /// The proposal's leader epoch is not the controller's (FENCED_LEADER_EPOCH).
    FencedLeaderEpoch,
    /// The partition epoch moved since the proposal's base (INVALID_UPDATE_VERSION).
    InvalidUpdateVersion,
    /// A proposed member may not join, e.g. it is fenced (INELIGIBLE_REPLICA).
    IneligibleReplica,
    /// Anything else (the request was lost, the controller moved, ...).
    Other,
}

/// Identifies one acks=all waiter of a [`crate::Replica`]; unique for the machine's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaiterId(pub u64);

/// Where a follower stands, sent with each fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchPosition {
    /// The follower's log end offset: it wants records from here.
    pub fetch_offset: i64,
    /// The epoch of the follower's last batch (its latest epoch), None for an empty log.
    pub last_fetched_epoch: Option<i32>,
    /// Everything below this offset is fdatasync'ed on the follower.
    pub durable_offset: i64,
}

/// A fetch a follower sends to its leader ([`crate::Replica::next_fetch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// Identifies the fetch: only the answer to the latest one is taken.
    pub id: u64,
    /// The broker to send it to.
    pub leader: i32,
    /// The follower's leader epoch (Kafka's `current_leader_epoch`).
    pub leader_epoch: i32,
    /// The follower's position.
    pub position: FetchPosition,
}

/// The leader's answer to a follower's fetch, and the follower's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchAnswer {
    /// Records from `from` (the fetch offset) to `records_end`: the leader answers its log
    /// end offset; the broker lowers it to the end of what it actually sends.
    Read {
        /// First offset of the records: the fetch offset.
        from: i64,
        /// One past the last offset sent.
        records_end: i64,
        /// The leader's high watermark after this fetch.
        high_watermark: i64,
        /// The leader's log start offset.
        log_start: i64,
    },
    /// The follower's log diverges from the leader's: for the largest epoch `<=` its last
    /// fetched epoch, the leader's epoch and end offset. No records; the follower's state on
    /// the leader did not move.
    Diverging {
        /// The leader's largest epoch `<=` the follower's last fetched epoch.
        epoch: i32,
        /// That epoch's end offset on the leader.
        end_offset: i64,
        /// The leader's high watermark.
        high_watermark: i64,
        /// The leader's log start offset.
        log_start: i64,
    },
    /// The fetch offset is outside the leader's log.
    OffsetOutOfRange {
        /// The leader's log start offset.
        log_start: i64,
        /// The leader's log end offset.
        log_end: i64,
    },
    /// Not served.
    Error(ReplicaError),
}

/// What the owner must do after a call, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// This replica leads from now: stamp `epoch` in the log's leader-epoch cache at
    /// `start_offset` (its log end offset) before appending anything.
    StartEpoch {
        /// The new leader epoch.
        epoch: i32,
        /// Where it starts.
        start_offset: i64,
    },
    /// The high watermark moved: consumers may read below it.
    HighWatermark(i64),
    /// An acks=all waiter is done.
    AckAll {
        /// Which one.
        waiter: WaiterId,
        /// Its answer.
        result: Result<(), ReplicaError>,
    },
    /// Send AlterPartition to the controller: `isr` as the new ISR, compare-and-set on
    /// `partition_epoch`; answer with [`crate::Replica::on_isr_result`].
    ProposeIsr {
        /// The proposer's leader epoch.
        leader_epoch: i32,
        /// The partition epoch the proposal is based on.
        partition_epoch: i32,
        /// The proposed ISR.
        isr: Vec<i32>,
    },
    /// Follower: append the records of the fetch answer just given, `[from, to)`.
    AppendFetched {
        /// First offset (the local log end offset).
        from: i64,
        /// One past the last.
        to: i64,
    },
    /// Follower: remove every batch with an offset `>= to` (the batch holding `to` too) and
    /// every leader-epoch cache entry starting at or above the new log end, even when no
    /// batch goes (`to` equal to the log end: an epoch stamped as leader, never written).
    Truncate {
        /// The new log end offset (or the base of the batch holding it).
        to: i64,
    },
    /// Follower: empty the log and start it at `offset` (the leader's log start).
    TruncateFullyAndStartAt {
        /// The new log start and end offset.
        offset: i64,
    },
    /// Fetch from `leader` under `leader_epoch` from now ([`crate::Replica::next_fetch`]).
    FollowLeader {
        /// The leader's broker id.
        leader: i32,
        /// Its epoch.
        leader_epoch: i32,
    },
    /// Stop fetching: this replica leads, has no leader, or is no longer a replica.
    StopFetching,
}
