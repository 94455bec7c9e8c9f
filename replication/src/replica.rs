//! The replica of one partition on one broker: its role and the controller's state.

use std::collections::BTreeMap;

use crate::types::{
    Effect, LogView, PartitionState, ReplicaConfig, ReplicaError, WaiterId, NO_LEADER,
    UNDEFINED_OFFSET,
};

/// What this replica is, as [`Replica::role`] tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// No state yet, not an assigned replica, or a partition without a leader.
    Offline,
    /// This broker leads the partition.
    Leader,
    /// This broker follows `leader`.
    Follower {
        /// The leader's broker id.
        leader: i32,
    },
}

/// What the leader knows of one follower (Kafka's ReplicaState).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Its log end offset as of its last fetch, [`UNDEFINED_OFFSET`] before the first one.
    pub fetch_offset: i64,
    /// What it may acknowledge for acks=all: its durable offset (or its fetch offset with
    /// `followers_ack_when_written`), never above its fetch offset.
    pub ack_offset: i64,
    /// The leader's log end offset at its previous fetch.
    pub last_fetch_leader_leo: i64,
    /// Time of its previous fetch.
    pub last_fetch_ms: u64,
    /// Last time it was caught up (Kafka's `lastCaughtUpTimeMs`).
    pub last_caught_up_ms: u64,
}

impl Progress {
    /// A follower's progress when this replica becomes leader at `now_ms`: unknown offsets;
    /// an ISR member counts as caught up now, so it is not shrunk at once.
    pub(crate) fn reset(in_sync: bool, now_ms: u64) -> Progress {
        Progress {
            fetch_offset: UNDEFINED_OFFSET,
            ack_offset: UNDEFINED_OFFSET,
            last_fetch_leader_leo: UNDEFINED_OFFSET,
            last_fetch_ms: 0,
            last_caught_up_ms: if in_sync { now_ms } else { 0 },
        }
    }
}

/// An ISR proposal sent to the controller and not answered yet (Kafka's pending ISR state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingIsr {
    pub isr: Vec<i32>,
    pub partition_epoch: i32,
    pub sent_ms: u64,
}

/// One acks=all produce waiting for the ISR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub offset_end: i64,
    pub deadline_ms: u64,
}

/// The leader's state.
#[derive(Clone, Debug)]
pub(crate) struct LeaderState {
    /// The log end offset when this epoch started (Kafka's leaderEpochStartOffsetOpt).
    pub epoch_start_offset: i64,
    /// Every assigned replica but this one.
    pub followers: BTreeMap<i32, Progress>,
    pub pending_isr: Option<PendingIsr>,
    pub waiters: BTreeMap<WaiterId, Waiter>,
}

/// The follower's state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FollowerState {
    pub leader: i32,
    /// The fetch whose answer is awaited (only that one is taken).
    pub fetch_in_flight: Option<u64>,
}

#[derive(Clone, Debug)]
pub(crate) enum RoleState {
    Offline,
    Leader(LeaderState),
    Follower(FollowerState),
}

/// The sans-IO replica state machine of one partition on one broker.
///
/// The owner (the broker's `Partition`, or the simulation) feeds it the controller's
/// [`PartitionState`], the local log's offsets through [`LogView`], follower fetches (on the
/// leader), fetch answers (on a follower), and the time; it carries out the returned
/// [`Effect`]s in order. It has no clock, IO, threads or async.
#[derive(Clone, Debug)]
pub struct Replica {
    pub(crate) local_id: i32,
    pub(crate) config: ReplicaConfig,
    /// The last controller state applied; None before the first.
    pub(crate) state: Option<PartitionState>,
    pub(crate) role: RoleState,
    /// Leader: consumers read below it; never decreases while leading. Follower:
    /// min(leader's high watermark, local log end offset).
    pub(crate) high_watermark: i64,
    pub(crate) next_waiter: u64,
    pub(crate) next_fetch_id: u64,
}

impl Replica {
    /// A replica that knows nothing yet: offline until [`Replica::apply_state`].
    pub fn new(local_id: i32, config: ReplicaConfig) -> Replica {
        assert!(config.min_insync_replicas >= 1, "min.insync.replicas >= 1");
        Replica {
            local_id,
            config,
            state: None,
            role: RoleState::Offline,
            high_watermark: 0,
            next_waiter: 0,
            next_fetch_id: 0,
        }
    }

    /// This broker's id.
    pub fn local_id(&self) -> i32 {
        self.local_id
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// A changed configuration (a topic's `min.insync.replicas` altered): it rules the
    /// checks and waiters from now on.
    pub fn set_config(&mut self, config: ReplicaConfig) {
        assert!(config.min_insync_replicas >= 1, "min.insync.replicas >= 1");
        self.config = config;
    }

    /// The current role.
    pub fn role(&self) -> Role {
        match &self.role {
            RoleState::Offline => Role::Offline,
            RoleState::Leader(_) => Role::Leader,
            RoleState::Follower(f) => Role::Follower { leader: f.leader },
        }
    }

    /// The last controller state applied.
    pub fn state(&self) -> Option<&PartitionState> {
        self.state.as_ref()
    }

    /// The leader epoch known, -1 before any state.
    pub fn leader_epoch(&self) -> i32 {
        self.state.as_ref().map_or(-1, |s| s.leader_epoch)
    }

    /// The committed ISR (the controller's), empty before any state.
    pub fn isr(&self) -> &[i32] {
        self.state.as_ref().map_or(&[], |s| &s.isr)
    }

    /// Leader: the committed ISR plus a pending expansion's new member (Kafka's maximal
    /// ISR); the high watermark and acks=all wait for all of it. Otherwise the ISR.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr().to_vec();
        if let RoleState::Leader(leader) = &self.role {
            for id in leader.pending_isr.iter().flat_map(|p| &p.isr) {
                if !isr.contains(id) {
                    isr.push(*id);
                }
            }
        }
        isr
    }

    /// Whether an ISR proposal is in flight.
    pub fn isr_proposal_pending(&self) -> bool {
        matches!(&self.role, RoleState::Leader(l) if l.pending_isr.is_some())
    }

    /// The high watermark: on the leader, what consumers may read below.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Leader: the offset where this epoch started, None otherwise.
    pub fn epoch_start_offset(&self) -> Option<i64> {
        match &self.role {
            RoleState::Leader(l) => Some(l.epoch_start_offset),
            _ => None,
        }
    }

    /// Leader: each follower's fetch offset (its log end offset as of its last fetch in this
    /// epoch), by broker id; followers that have not fetched in this epoch are left out.
    /// Nothing elsewhere.
    pub fn follower_fetch_offsets(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        let followers = match &self.role {
            RoleState::Leader(l) => Some(&l.followers),
            _ => None,
        };
        followers
            .into_iter()
            .flatten()
            .filter(|(_, p)| p.fetch_offset != UNDEFINED_OFFSET)
            .map(|(id, p)| (*id, p.fetch_offset))
    }

    /// Leader: acks=all waiters not answered yet.
    pub fn waiting_acks(&self) -> usize {
        match &self.role {
            RoleState::Leader(l) => l.waiters.len(),
            _ => 0,
        }
    }

    /// Applies the controller's state: become leader, follower or offline, or take an ISR
    /// update. A state older than the one known (lower leader epoch, or the same leader
    /// epoch and a partition epoch not above the known one) or malformed is ignored.
    pub fn apply_state(
        &mut self,
        state: PartitionState,
        log: &impl LogView,
        now_ms: u64,
    ) -> Vec<Effect> {
        if !state.is_valid() || self.is_stale(&state) || self.older_than_log(&state, log) {
            return Vec::new();
        }
        let new_epoch = self.leader_epoch() != state.leader_epoch;
        let was_leader = matches!(self.role, RoleState::Leader(_));
        let is_replica = state.replicas.contains(&self.local_id);
        let leads = is_replica && state.leader == self.local_id;
        self.state = Some(state);
        if leads && (new_epoch || !was_leader) {
            return self.become_leader(log, now_ms);
        }
        if leads {
            return self.update_leader(log, now_ms);
        }
        let mut effects = self.fail_waiters(ReplicaError::NotLeaderOrFollower);
        let leader = self.state.as_ref().map_or(NO_LEADER, |s| s.leader);
        if !is_replica || leader == NO_LEADER {
            self.role = RoleState::Offline;
            effects.push(Effect::StopFetching);
            return effects;
        }
        let same_leader = matches!(&self.role, RoleState::Follower(f) if f.leader == leader);
        if new_epoch || !same_leader {
            self.become_follower(leader, &mut effects);
        }
        effects
    }

    /// Whether the log already holds a newer epoch than `state`'s, so `state` is stale though
    /// this machine may not know it (a restarted broker remembers only its log). A state
    /// that newly makes this replica leader carries an epoch above every epoch in its log:
    /// only the leader of an epoch writes batches of it or stamps it. A partition whose only
    /// replica is this one is exempt: with no follower, a restart that lost an unsynced tail
    /// cannot leave two different logs under one epoch (a single node restarts in the epoch
    /// it had; the controller bumps the epochs a restarted broker of a cluster leads).
    fn older_than_log(&self, state: &PartitionState, log: &impl LogView) -> bool {
        let Some(latest) = log.latest_epoch() else {
            return false;
        };
        if state.replicas == [self.local_id] {
            return state.leader_epoch < latest;
        }
        let new_leader = state.leader == self.local_id && state.leader_epoch != self.leader_epoch();
        state.leader_epoch < latest || (new_leader && state.leader_epoch == latest)
    }

    /// Whether `state` is older than what this replica knows.
    fn is_stale(&self, state: &PartitionState) -> bool {
        match &self.state {
            None => false,
            Some(known) => {
                state.leader_epoch < known.leader_epoch
                    || (state.leader_epoch == known.leader_epoch
                        && state.partition_epoch <= known.partition_epoch)
            }
        }
    }

    fn become_follower(&mut self, leader: i32, effects: &mut Vec<Effect>) {
        self.role = RoleState::Follower(FollowerState {
            leader,
            fetch_in_flight: None,
        });
        effects.push(Effect::FollowLeader {
            leader,
            leader_epoch: self.leader_epoch(),
        });
    }

    /// Answers every acks=all waiter with `error` (leadership lost).
    pub(crate) fn fail_waiters(&mut self, error: ReplicaError) -> Vec<Effect> {
        let RoleState::Leader(leader) = &mut self.role else {
            return Vec::new();
        };
        std::mem::take(&mut leader.waiters)
            .into_keys()
            .map(|waiter| Effect::AckAll {
                waiter,
                result: Err(error),
            })
            .collect()
    }
}
