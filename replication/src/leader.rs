//! The leader's side: produce checks, acks=all waiters, follower fetches, the high
//! watermark and ISR proposals.

use std::collections::BTreeMap;

use crate::replica::{LeaderState, PendingIsr, Progress, Replica, RoleState, Waiter};
use crate::types::{
    Acks, Effect, FetchAnswer, FetchPosition, IsrError, LogView, PartitionState, ReplicaError,
    WaiterId, ACK_WAITERS_MAX,
};

impl Replica {
    /// Becomes leader of the state's epoch: the log stamps the epoch, followers' progress is
    /// reset (ISR members count as caught up now), the high watermark is kept.
    pub(crate) fn become_leader(&mut self, log: &impl LogView, now_ms: u64) -> Vec<Effect> {
        let state = self.state.clone().expect("a state to lead");
        let leo = log.log_end_offset();
        let followers = state
            .replicas
            .iter()
            .filter(|&&id| id != self.local_id)
            .map(|&id| (id, Progress::reset(state.isr.contains(&id), now_ms)))
            .collect();
        // A replica that led the previous epoch too keeps its waiters: its log is unchanged.
        let waiters = match std::mem::replace(&mut self.role, RoleState::Offline) {
            RoleState::Leader(old) => old.waiters,
            _ => BTreeMap::new(),
        };
        self.role = RoleState::Leader(LeaderState {
            epoch_start_offset: leo,
            followers,
            pending_isr: None,
            waiters,
        });
        let mut effects = vec![
            Effect::StopFetching,
            Effect::StartEpoch {
                epoch: state.leader_epoch,
                start_offset: leo,
            },
        ];
        let hw = self.high_watermark.max(log.log_start_offset()).min(leo);
        if hw != self.high_watermark {
            self.high_watermark = hw;
            effects.push(Effect::HighWatermark(hw));
        }
        effects.extend(self.leader_progress(log));
        effects
    }

    /// A new state of the same leader epoch (an ISR change): drop the pending proposal,
    /// track added or removed replicas, recompute.
    pub(crate) fn update_leader(&mut self, log: &impl LogView, now_ms: u64) -> Vec<Effect> {
        let state = self.state.clone().expect("a state to lead");
        let local_id = self.local_id;
        let RoleState::Leader(leader) = &mut self.role else {
            unreachable!("update_leader on a leader")
        };
        leader.pending_isr = None;
        leader.followers.retain(|id, _| state.replicas.contains(id));
        for &id in state.replicas.iter().filter(|&&id| id != local_id) {
            leader
                .followers
                .entry(id)
                .or_insert_with(|| Progress::reset(false, now_ms));
        }
        self.leader_progress(log)
    }

    /// Whether a produce with `acks` may be appended now: only on the leader, and for
    /// acks=all only with at least `min.insync.replicas` ISR members (NOT_ENOUGH_REPLICAS,
    /// before the append).
    pub fn check_produce(&self, acks: Acks) -> Result<(), ReplicaError> {
        if !matches!(self.role, RoleState::Leader(_)) {
            return Err(ReplicaError::NotLeaderOrFollower);
        }
        if acks == Acks::All && self.isr().len() < self.config.min_insync_replicas {
            return Err(ReplicaError::NotEnoughReplicas);
        }
        Ok(())
    }

    /// The leader's log end offset moved (an append): the high watermark may move.
    pub fn on_local_append(&mut self, log: &impl LogView) -> Vec<Effect> {
        self.leader_progress(log)
    }

    /// The leader's durable offset moved (an fdatasync completed): waiters may complete.
    pub fn on_local_durable(&mut self, log: &impl LogView) -> Vec<Effect> {
        self.leader_progress(log)
    }

    /// Waits until `offset_end` (one past the batch's last offset) is durable on every ISR
    /// member (written, with `followers_ack_when_written`); the answer comes as an
    /// [`Effect::AckAll`] for the returned id, REQUEST_TIMED_OUT after `timeout_ms`. Call
    /// after the append; the effects are waiters already done (this one, perhaps). With
    /// [`ACK_WAITERS_MAX`] waiting already: REQUEST_TIMED_OUT at once.
    pub fn await_acks_all(
        &mut self,
        offset_end: i64,
        timeout_ms: u64,
        log: &impl LogView,
        now_ms: u64,
    ) -> Result<(WaiterId, Vec<Effect>), ReplicaError> {
        let id = WaiterId(self.next_waiter);
        let RoleState::Leader(leader) = &mut self.role else {
            return Err(ReplicaError::NotLeaderOrFollower);
        };
        if leader.waiters.len() >= ACK_WAITERS_MAX {
            return Err(ReplicaError::RequestTimedOut);
        }
        assert!(
            offset_end <= log.log_end_offset(),
            "a waiter for an offset not appended"
        );
        self.next_waiter += 1;
        let deadline_ms = now_ms.saturating_add(timeout_ms);
        leader.waiters.insert(
            id,
            Waiter {
                offset_end,
                deadline_ms,
            },
        );
        Ok((id, self.complete_waiters(log)))
    }

    /// Leader: the lowest durable offset over the maximal ISR, this replica's included (the
    /// lowest written one for followers with `followers_ack_when_written`). None elsewhere.
    pub fn acks_watermark(&self, log: &impl LogView) -> Option<i64> {
        let RoleState::Leader(leader) = &self.role else {
            return None;
        };
        let own = log.durable_end_offset();
        Some(self.min_over_followers(leader, own, |p| p.ack_offset))
    }

    /// `own` lowered to `offset(p)` of every maximal ISR member but this one.
    fn min_over_followers(
        &self,
        leader: &LeaderState,
        own: i64,
        offset: impl Fn(&Progress) -> i64,
    ) -> i64 {
        self.maximal_isr()
            .iter()
            .filter(|&&id| id != self.local_id)
            .map(|id| leader.followers.get(id).map_or(-1, &offset))
            .fold(own, i64::min)
    }

    /// Moves the high watermark and completes the waiters the leader's state allows.
    pub(crate) fn leader_progress(&mut self, log: &impl LogView) -> Vec<Effect> {
        let RoleState::Leader(leader) = &self.role else {
            return Vec::new();
        };
        let leo = log.log_end_offset();
        let candidate = self.min_over_followers(leader, leo, |p| p.fetch_offset);
        let mut effects = Vec::new();
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            effects.push(Effect::HighWatermark(candidate));
        }
        assert!(
            self.high_watermark <= leo,
            "high watermark above the log end"
        );
        effects.extend(self.complete_waiters(log));
        effects
    }

    /// Answers the waiters whose offset every maximal ISR member acknowledges: OK with
    /// enough ISR members, NOT_ENOUGH_REPLICAS_AFTER_APPEND otherwise (Kafka's
    /// checkEnoughReplicasReachOffset).
    fn complete_waiters(&mut self, log: &impl LogView) -> Vec<Effect> {
        let Some(watermark) = self.acks_watermark(log) else {
            return Vec::new();
        };
        let enough = self.maximal_isr().len() >= self.config.min_insync_replicas;
        let RoleState::Leader(leader) = &mut self.role else {
            return Vec::new();
        };
        let done: Vec<WaiterId> = leader
            .waiters
            .iter()
            .filter(|(_, w)| w.offset_end <= watermark)
            .map(|(id, _)| *id)
            .collect();
        let result = if enough {
            Ok(())
        } else {
            Err(ReplicaError::NotEnoughReplicasAfterAppend)
        };
        done.into_iter()
            .map(|waiter| {
                leader.waiters.remove(&waiter);
                Effect::AckAll { waiter, result }
            })
            .collect()
    }

    /// A follower's fetch: Kafka's leader checks in order (leadership, leader epoch,
    /// assignment, diverging epoch, offset range); only a fetch that reads updates the
    /// follower's progress, which may move the high watermark, complete waiters and propose
    /// adding the follower to the ISR.
    pub fn on_follower_fetch(
        &mut self,
        follower_id: i32,
        position: FetchPosition,
        follower_leader_epoch: i32,
        log: &impl LogView,
        now_ms: u64,
    ) -> (FetchAnswer, Vec<Effect>) {
        if let Err(error) = self.check_fetch(follower_id, follower_leader_epoch) {
            return (FetchAnswer::Error(error), Vec::new());
        }
        let (log_start, leo) = (log.log_start_offset(), log.log_end_offset());
        if let Some(diverging) = self.diverging(position, log) {
            return (diverging, Vec::new());
        }
        if position.fetch_offset < log_start || position.fetch_offset > leo {
            let answer = FetchAnswer::OffsetOutOfRange {
                log_start,
                log_end: leo,
            };
            return (answer, Vec::new());
        }
        self.update_progress(follower_id, position, leo, now_ms);
        let mut effects = self.leader_progress(log);
        effects.extend(self.maybe_expand_isr(follower_id, now_ms));
        let answer = FetchAnswer::Read {
            from: position.fetch_offset,
            records_end: leo,
            high_watermark: self.high_watermark,
            log_start,
        };
        (answer, effects)
    }

    fn check_fetch(&self, follower_id: i32, follower_epoch: i32) -> Result<(), ReplicaError> {
        let RoleState::Leader(leader) = &self.role else {
            return Err(ReplicaError::NotLeaderOrFollower);
        };
        let epoch = self.leader_epoch();
        if follower_epoch < epoch {
            return Err(ReplicaError::FencedLeaderEpoch);
        }
        if follower_epoch > epoch {
            return Err(ReplicaError::UnknownLeaderEpoch);
        }
        if !leader.followers.contains_key(&follower_id) {
            return Err(ReplicaError::NotLeaderOrFollower);
        }
        Ok(())
    }

    /// Kafka's validateFetchOffsetAndMaybeGetDivergingEpoch: the follower diverges when the
    /// leader does not know its last fetched epoch or that epoch ends before its fetch offset.
    fn diverging(&self, position: FetchPosition, log: &impl LogView) -> Option<FetchAnswer> {
        let fetched_epoch = position.last_fetched_epoch?;
        let (epoch, end_offset) = log.end_offset_for_epoch(fetched_epoch);
        if epoch < fetched_epoch || end_offset < position.fetch_offset {
            return Some(FetchAnswer::Diverging {
                epoch,
                end_offset,
                high_watermark: self.high_watermark,
                log_start: log.log_start_offset(),
            });
        }
        None
    }

    /// Kafka's updateFetchStateOrThrow: caught up now if the fetch reaches the leader's log
    /// end, or as of the previous fetch if it reaches the log end of that time.
    fn update_progress(&mut self, id: i32, position: FetchPosition, leo: i64, now_ms: u64) {
        let relaxed = self.config.followers_ack_when_written;
        let RoleState::Leader(leader) = &mut self.role else {
            unreachable!("progress on a leader")
        };
        let p = leader.followers.get_mut(&id).expect("an assigned follower");
        let offset = position.fetch_offset;
        if offset >= leo {
            p.last_caught_up_ms = p.last_caught_up_ms.max(now_ms);
        } else if offset >= p.last_fetch_leader_leo {
            p.last_caught_up_ms = p.last_caught_up_ms.max(p.last_fetch_ms);
        }
        p.last_fetch_leader_leo = leo;
        p.last_fetch_ms = now_ms;
        p.fetch_offset = offset;
        p.ack_offset = if relaxed {
            offset
        } else {
            position.durable_offset.min(offset)
        };
    }

    /// Kafka's maybeExpandIsr: a follower outside the ISR joins once its fetch offset
    /// reached the high watermark and this epoch's start offset. Spate also wants both
    /// durable on it (acknowledged, with the relaxed flag): every acks=all record this
    /// leader acknowledged is below the high watermark, and every one the previous leader
    /// may still acknowledge after this one took over (a stale leader counts this replica's
    /// earlier fetches) is below the epoch's start; so a new member holds them all durably.
    fn maybe_expand_isr(&mut self, id: i32, now_ms: u64) -> Option<Effect> {
        let isr = self.isr().to_vec();
        let RoleState::Leader(leader) = &self.role else {
            return None;
        };
        let p = leader.followers.get(&id)?;
        let floor = self.high_watermark.max(leader.epoch_start_offset);
        let eligible = !isr.contains(&id)
            && leader.pending_isr.is_none()
            && p.fetch_offset >= floor
            && p.ack_offset >= floor;
        if !eligible {
            return None;
        }
        let mut proposed = isr;
        proposed.push(id);
        Some(self.propose_isr(proposed, now_ms))
    }

    fn propose_isr(&mut self, isr: Vec<i32>, now_ms: u64) -> Effect {
        let (leader_epoch, partition_epoch) = {
            let state = self.state.as_ref().expect("a leader has a state");
            (state.leader_epoch, state.partition_epoch)
        };
        let RoleState::Leader(leader) = &mut self.role else {
            unreachable!("proposals come from the leader")
        };
        leader.pending_isr = Some(PendingIsr {
            isr: isr.clone(),
            partition_epoch,
            sent_ms: now_ms,
        });
        Effect::ProposeIsr {
            leader_epoch,
            partition_epoch,
            isr,
        }
    }

    /// The passage of time: acks=all waiters past their deadline (REQUEST_TIMED_OUT), an
    /// unanswered ISR proposal sent again, or (Kafka's maybeShrinkIsr) a proposal without
    /// the followers not caught up for `replica.lag.time.max.ms`.
    pub fn tick(&mut self, log: &impl LogView, now_ms: u64) -> Vec<Effect> {
        let mut effects = self.expire_waiters(now_ms);
        let retry_ms = self.config.isr_proposal_retry_ms;
        let RoleState::Leader(leader) = &mut self.role else {
            return effects;
        };
        if let Some(pending) = &mut leader.pending_isr {
            if now_ms.saturating_sub(pending.sent_ms) >= retry_ms {
                pending.sent_ms = now_ms;
                let state = self.state.as_ref().expect("a leader has a state");
                effects.push(Effect::ProposeIsr {
                    leader_epoch: state.leader_epoch,
                    partition_epoch: pending.partition_epoch,
                    isr: pending.isr.clone(),
                });
            }
            return effects;
        }
        let out = self.out_of_sync(log.log_end_offset(), now_ms);
        if !out.is_empty() {
            let isr: Vec<i32> = self
                .isr()
                .iter()
                .copied()
                .filter(|id| !out.contains(id))
                .collect();
            effects.push(self.propose_isr(isr, now_ms));
        }
        effects
    }

    /// ISR members (this one aside) behind the log end and not caught up for longer than
    /// `replica.lag.time.max.ms` (Kafka's getOutOfSyncReplicas).
    pub fn out_of_sync(&self, leo: i64, now_ms: u64) -> Vec<i32> {
        let RoleState::Leader(leader) = &self.role else {
            return Vec::new();
        };
        let lag_max = self.config.replica_lag_time_max_ms;
        self.isr()
            .iter()
            .copied()
            .filter(|&id| id != self.local_id)
            .filter(|id| {
                leader.followers.get(id).is_none_or(|p| {
                    p.fetch_offset != leo && now_ms.saturating_sub(p.last_caught_up_ms) > lag_max
                })
            })
            .collect()
    }

    fn expire_waiters(&mut self, now_ms: u64) -> Vec<Effect> {
        let RoleState::Leader(leader) = &mut self.role else {
            return Vec::new();
        };
        let expired: Vec<WaiterId> = leader
            .waiters
            .iter()
            .filter(|(_, w)| w.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        expired
            .into_iter()
            .map(|waiter| {
                leader.waiters.remove(&waiter);
                Effect::AckAll {
                    waiter,
                    result: Err(ReplicaError::RequestTimedOut),
                }
            })
            .collect()
    }

    /// The controller's answer to the proposal based on `partition_epoch`: the new state
    /// (applied as [`Replica::apply_state`]), or an error. Only INELIGIBLE_REPLICA proves
    /// the proposal was not applied and clears it; after any other error the outcome is
    /// unknown (a lost answer to an earlier send of the same proposal may have been a
    /// success: the retry then finds the partition epoch moved), so the proposal stays
    /// pending, and with it the maximal ISR for the high watermark and acks=all, until the
    /// controller's newer state arrives through [`Replica::apply_state`].
    pub fn on_isr_result(
        &mut self,
        partition_epoch: i32,
        result: Result<PartitionState, IsrError>,
        log: &impl LogView,
        now_ms: u64,
    ) -> Vec<Effect> {
        match result {
            Ok(state) => self.apply_state(state, log, now_ms),
            Err(IsrError::IneligibleReplica) => {
                if let RoleState::Leader(leader) = &mut self.role {
                    if leader
                        .pending_isr
                        .as_ref()
                        .is_some_and(|p| p.partition_epoch == partition_epoch)
                    {
                        leader.pending_isr = None;
                    }
                }
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }
}
