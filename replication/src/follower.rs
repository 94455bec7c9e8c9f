//! The follower's side: what to fetch, and what a fetch answer asks of the log.

use crate::replica::{Replica, RoleState};
use crate::types::{Effect, FetchAnswer, FetchPosition, FetchRequest, LogView, UNDEFINED_OFFSET};

impl Replica {
    /// Follower: the fetch to send to the leader now (it replaces any fetch in flight: only
    /// its answer will be taken). None unless following.
    pub fn next_fetch(&mut self, log: &impl LogView) -> Option<FetchRequest> {
        let leader_epoch = self.leader_epoch();
        let RoleState::Follower(follower) = &mut self.role else {
            return None;
        };
        let id = self.next_fetch_id;
        self.next_fetch_id += 1;
        follower.fetch_in_flight = Some(id);
        Some(FetchRequest {
            id,
            leader: follower.leader,
            leader_epoch,
            position: position(log),
        })
    }

    /// Follower: the leader's answer to `request`. An answer to another fetch, another
    /// epoch, or a log that moved since is ignored (no effects). Otherwise: append the
    /// records, truncate (diverging epoch, Kafka's rule) or restart at the leader's log
    /// start (out of range), and follow the leader's high watermark.
    pub fn on_fetch_answer(
        &mut self,
        request: &FetchRequest,
        answer: FetchAnswer,
        log: &impl LogView,
    ) -> Vec<Effect> {
        let epoch = self.leader_epoch();
        let RoleState::Follower(follower) = &mut self.role else {
            return Vec::new();
        };
        let current = follower.fetch_in_flight == Some(request.id)
            && request.leader_epoch == epoch
            && request.position.fetch_offset == log.log_end_offset();
        if !current {
            return Vec::new();
        }
        follower.fetch_in_flight = None;
        let leo = log.log_end_offset();
        match answer {
            FetchAnswer::Read {
                from,
                records_end,
                high_watermark,
                ..
            } => {
                assert_eq!(from, leo, "a read answer starts at the fetch offset");
                let mut effects = Vec::new();
                if records_end > from {
                    effects.push(Effect::AppendFetched {
                        from,
                        to: records_end,
                    });
                }
                effects.extend(self.set_follower_hw(high_watermark.min(records_end)));
                effects
            }
            FetchAnswer::Diverging {
                epoch,
                end_offset,
                log_start,
                ..
            } => {
                let to = truncation_offset(epoch, end_offset, log);
                self.truncate_to(to, log_start, log)
            }
            FetchAnswer::OffsetOutOfRange { log_start, log_end } => {
                if leo < log_start {
                    self.high_watermark = log_start;
                    vec![Effect::TruncateFullyAndStartAt { offset: log_start }]
                } else if leo > log_end {
                    self.truncate_to(Some(log_end), log_start, log)
                } else {
                    Vec::new()
                }
            }
            // Fenced: this replica's epoch is old, a newer state is on its way; unknown: the
            // leader has not heard of this epoch yet; either way, fetch again later.
            FetchAnswer::Error(_) => Vec::new(),
        }
    }

    /// `None`: start over at the leader's log start (the leader knows no epoch at or below
    /// ours).
    fn truncate_to(
        &mut self,
        to: Option<i64>,
        leader_log_start: i64,
        log: &impl LogView,
    ) -> Vec<Effect> {
        let leo = log.log_end_offset();
        let Some(to) = to else {
            self.high_watermark = leader_log_start;
            return vec![Effect::TruncateFullyAndStartAt {
                offset: leader_log_start,
            }];
        };
        // `to == leo` still truncates: the epoch cache may end with an epoch this replica
        // stamped as leader without appending anything, which the leader never saw (Kafka's
        // UnifiedLog.truncateTo always truncates the epoch cache).
        assert!(to <= leo, "truncation beyond the log end");
        let mut effects = vec![Effect::Truncate { to }];
        if self.high_watermark > to {
            effects.extend(self.set_follower_hw(to));
        }
        effects
    }

    fn set_follower_hw(&mut self, hw: i64) -> Vec<Effect> {
        if hw == self.high_watermark {
            return Vec::new();
        }
        self.high_watermark = hw;
        vec![Effect::HighWatermark(hw)]
    }
}

/// The follower's position in its log.
pub fn position(log: &impl LogView) -> FetchPosition {
    FetchPosition {
        fetch_offset: log.log_end_offset(),
        last_fetched_epoch: log.latest_epoch(),
        durable_offset: log.durable_end_offset(),
    }
}

/// Where a follower truncates when the leader answers that, for the follower's last fetched
/// epoch, its own largest epoch at or below it is `leader_epoch`, ending at
/// `leader_end_offset` (Kafka's AbstractFetcherThread.getOffsetTruncationState):
/// - the leader knows no such epoch (undefined offset): None, start over at its log start;
/// - the follower knows nothing at or below `leader_epoch`: the leader's end offset;
/// - the follower's largest epoch at or below it differs: that epoch's local end (the next
///   fetch, with an older last epoch, asks again);
/// - the same epoch: the lower of both ends.
///
/// Always capped by the local log end offset.
pub fn truncation_offset(
    leader_epoch: i32,
    leader_end_offset: i64,
    log: &impl LogView,
) -> Option<i64> {
    if leader_end_offset == UNDEFINED_OFFSET {
        return None;
    }
    let leo = log.log_end_offset();
    let (local_epoch, local_end) = log.end_offset_for_epoch(leader_epoch);
    let to = if local_end == UNDEFINED_OFFSET {
        leader_end_offset
    } else if local_epoch != leader_epoch {
        local_end
    } else {
        local_end.min(leader_end_offset)
    };
    Some(to.min(leo))
}
