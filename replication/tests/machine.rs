//! Unit tests of the replica machine's pieces: state changes, the high watermark, acks=all,
//! ISR shrink and expansion timing, fetch checks and divergence, the follower's answers.

mod common;

use common::ModelLog;
use replication::{
    truncation_offset, Acks, Effect, FetchAnswer, FetchPosition, IsrError, PartitionState, Replica,
    ReplicaConfig, ReplicaError, Role, NO_LEADER, UNDEFINED_OFFSET,
};

const LAG_MS: u64 = 1_000;

fn config(min_isr: usize, relaxed: bool) -> ReplicaConfig {
    ReplicaConfig {
        min_insync_replicas: min_isr,
        replica_lag_time_max_ms: LAG_MS,
        followers_ack_when_written: relaxed,
        isr_proposal_retry_ms: 500,
    }
}

fn state(leader: i32, leader_epoch: i32, partition_epoch: i32, isr: &[i32]) -> PartitionState {
    PartitionState {
        leader,
        leader_epoch,
        partition_epoch,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
    }
}

/// A log of `records` one-record batches written in `epoch`.
fn log_of(epochs: &[(i32, i64)]) -> ModelLog {
    let mut log = ModelLog::default();
    let mut payload = 0;
    for &(epoch, records) in epochs {
        for _ in 0..records {
            payload += 1;
            log.append(1, epoch, payload);
        }
    }
    log
}

fn at(offset: i64, epoch: Option<i32>, durable: i64) -> FetchPosition {
    FetchPosition {
        fetch_offset: offset,
        last_fetched_epoch: epoch,
        durable_offset: durable,
    }
}

/// Broker 1 leading epoch 1 of [1, 2, 3] over a 10-record log of epoch 0, at time 0.
fn leader(min_isr: usize, relaxed: bool) -> (Replica, ModelLog) {
    let mut log = log_of(&[(0, 10)]);
    log.sync();
    let mut replica = Replica::new(1, config(min_isr, relaxed));
    let effects = replica.apply_state(state(1, 1, 1, &[1, 2, 3]), &log, 0);
    assert!(effects.contains(&Effect::StartEpoch {
        epoch: 1,
        start_offset: 10
    }));
    log.assign_epoch(1, 10);
    (replica, log)
}

fn high_watermarks(effects: &[Effect]) -> Vec<i64> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::HighWatermark(hw) => Some(*hw),
            _ => None,
        })
        .collect()
}

fn proposals(effects: &[Effect]) -> Vec<Vec<i32>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ProposeIsr { isr, .. } => Some(isr.clone()),
            _ => None,
        })
        .collect()
}

fn acks(effects: &[Effect]) -> Vec<Result<(), ReplicaError>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::AckAll { result, .. } => Some(*result),
            _ => None,
        })
        .collect()
}

#[test]
fn stale_and_malformed_states_are_ignored() {
    let (mut replica, log) = leader(1, false);
    assert!(replica
        .apply_state(state(2, 0, 5, &[2, 3]), &log, 1)
        .is_empty());
    assert!(replica
        .apply_state(state(1, 1, 1, &[1, 2]), &log, 1)
        .is_empty());
    assert!(replica
        .apply_state(state(2, 2, 2, &[3]), &log, 1)
        .is_empty());
    assert_eq!(replica.role(), Role::Leader);
    assert_eq!(replica.isr(), &[1, 2, 3]);
    // A restarted broker is told it leads an epoch its log already holds: stale.
    let mut fresh = Replica::new(1, config(1, false));
    assert!(fresh.apply_state(state(1, 1, 1, &[1]), &log, 1).is_empty());
    assert_eq!(fresh.role(), Role::Offline);
    // Unless it is the partition's only replica: no follower can hold a tail it lost.
    let sole = PartitionState {
        replicas: vec![1],
        ..state(1, 1, 1, &[1])
    };
    let mut restarted = Replica::new(1, config(1, false));
    assert!(!restarted.apply_state(sole.clone(), &log, 1).is_empty());
    assert_eq!(restarted.role(), Role::Leader);
    // An older epoch than its log's is stale all the same.
    let mut older = Replica::new(1, config(1, false));
    let old = PartitionState {
        leader_epoch: 0,
        ..sole
    };
    assert!(older.apply_state(old, &log, 1).is_empty());
}

#[test]
fn becoming_leader_keeps_the_high_watermark_and_resets_followers() {
    let mut log = log_of(&[(0, 10)]);
    let mut replica = Replica::new(1, config(1, false));
    replica.apply_state(state(2, 1, 1, &[1, 2, 3]), &log, 0);
    let request = replica.next_fetch(&log).expect("follower");
    let answer = FetchAnswer::Read {
        from: 10,
        records_end: 10,
        high_watermark: 7,
        log_start: 0,
    };
    assert_eq!(
        high_watermarks(&replica.on_fetch_answer(&request, answer, &log)),
        [7]
    );
    let effects = replica.apply_state(state(1, 2, 2, &[1, 2, 3]), &log, 5_000);
    log.assign_epoch(2, 10);
    assert_eq!(replica.role(), Role::Leader);
    assert_eq!(replica.high_watermark(), 7, "{effects:?}");
    assert_eq!(replica.epoch_start_offset(), Some(10));
    // Followers count as caught up when the leader took over: no shrink before the lag.
    assert!(proposals(&replica.tick(&log, 5_000 + LAG_MS)).is_empty());
    assert_eq!(
        proposals(&replica.tick(&log, 5_001 + LAG_MS)),
        [vec![1]],
        "both followers silent for longer than the lag"
    );
}

#[test]
fn high_watermark_is_the_lowest_isr_fetch_offset_and_never_decreases() {
    let (mut replica, mut log) = leader(1, false);
    log.append(5, 1, 100);
    replica.on_local_append(&log);
    assert_eq!(replica.high_watermark(), 0, "followers' offsets unknown");
    assert_eq!(replica.follower_fetch_offsets().count(), 0);
    let (_, e) = replica.on_follower_fetch(2, at(12, Some(1), 12), 1, &log, 10);
    assert!(high_watermarks(&e).is_empty(), "3 still unknown");
    let (answer, e) = replica.on_follower_fetch(3, at(11, Some(1), 11), 1, &log, 10);
    assert_eq!(high_watermarks(&e), [11]);
    assert!(matches!(
        answer,
        FetchAnswer::Read {
            from: 11,
            records_end: 15,
            high_watermark: 11,
            ..
        }
    ));
    let (_, e) = replica.on_follower_fetch(3, at(15, Some(1), 15), 1, &log, 20);
    assert_eq!(high_watermarks(&e), [12]);
    // What the leader reports as its followers' positions (their lag, in /metrics).
    let offsets: Vec<(i32, i64)> = replica.follower_fetch_offsets().collect();
    assert_eq!(offsets, [(2, 12), (3, 15)]);
    // 2 fetches from lower (it restarted and lost a suffix): the HW stays.
    let (_, e) = replica.on_follower_fetch(2, at(10, Some(0), 10), 1, &log, 30);
    assert!(high_watermarks(&e).is_empty());
    assert_eq!(replica.high_watermark(), 12);
}

#[test]
fn acks_all_waits_for_durable_on_every_isr_member() {
    let (mut replica, mut log) = leader(2, false);
    log.append(2, 1, 100);
    replica.on_local_append(&log);
    let (waiter, done) = replica.await_acks_all(12, 10_000, &log, 0).expect("leader");
    assert!(done.is_empty());
    replica.on_follower_fetch(2, at(12, Some(1), 12), 1, &log, 1);
    let (_, e) = replica.on_follower_fetch(3, at(12, Some(1), 10), 1, &log, 1);
    assert!(acks(&e).is_empty(), "3 has not synced, the leader neither");
    assert_eq!(
        replica.high_watermark(),
        12,
        "the HW counts written offsets"
    );
    let (_, e) = replica.on_follower_fetch(3, at(12, Some(1), 12), 1, &log, 2);
    assert!(acks(&e).is_empty(), "the leader has not synced");
    log.sync();
    let e = replica.on_local_durable(&log);
    assert_eq!(
        e,
        [Effect::AckAll {
            waiter,
            result: Ok(())
        }]
    );
    assert_eq!(replica.acks_watermark(&log), Some(12));
}

#[test]
fn relaxed_acks_count_written_offsets_of_followers() {
    let (mut replica, mut log) = leader(2, true);
    log.append(2, 1, 100);
    log.sync();
    replica.on_local_append(&log);
    replica.await_acks_all(12, 10_000, &log, 0).expect("leader");
    replica.on_follower_fetch(2, at(12, Some(1), 0), 1, &log, 1);
    let (_, e) = replica.on_follower_fetch(3, at(12, Some(1), 0), 1, &log, 1);
    assert_eq!(acks(&e), [Ok(())]);
}

#[test]
fn min_isr_refuses_before_and_after_the_append() {
    let (mut replica, mut log) = leader(3, false);
    assert_eq!(replica.check_produce(Acks::All), Ok(()));
    log.append(1, 1, 100);
    log.sync();
    replica.on_local_append(&log);
    replica.await_acks_all(11, 10_000, &log, 0).expect("leader");
    replica.on_follower_fetch(2, at(11, Some(1), 11), 1, &log, 1);
    // 3 is gone: the controller shrinks the ISR; the waiter reaches its offset, too few.
    let e = replica.apply_state(state(1, 1, 2, &[1, 2]), &log, 2);
    assert_eq!(acks(&e), [Err(ReplicaError::NotEnoughReplicasAfterAppend)]);
    assert_eq!(
        replica.check_produce(Acks::All),
        Err(ReplicaError::NotEnoughReplicas)
    );
    assert_eq!(replica.check_produce(Acks::Leader), Ok(()));
}

#[test]
fn waiters_fail_on_leadership_loss_and_time_out() {
    let (mut replica, mut log) = leader(1, false);
    log.append(1, 1, 100);
    replica.await_acks_all(11, 100, &log, 0).expect("leader");
    assert!(acks(&replica.tick(&log, 99)).is_empty());
    assert_eq!(
        acks(&replica.tick(&log, 100)),
        [Err(ReplicaError::RequestTimedOut)]
    );
    replica.await_acks_all(11, 100, &log, 100).expect("leader");
    let e = replica.apply_state(state(2, 2, 2, &[2, 3]), &log, 150);
    assert_eq!(acks(&e), [Err(ReplicaError::NotLeaderOrFollower)]);
    assert!(e.contains(&Effect::FollowLeader {
        leader: 2,
        leader_epoch: 2
    }));
    assert_eq!(
        replica.check_produce(Acks::Leader),
        Err(ReplicaError::NotLeaderOrFollower)
    );
}

#[test]
fn fetch_checks_epochs_and_assignment() {
    let (mut replica, log) = leader(1, false);
    let fetch = |r: &mut Replica, id, epoch| {
        r.on_follower_fetch(id, at(10, Some(0), 10), epoch, &log, 1)
            .0
    };
    assert_eq!(
        fetch(&mut replica, 2, 0),
        FetchAnswer::Error(ReplicaError::FencedLeaderEpoch)
    );
    assert_eq!(
        fetch(&mut replica, 2, 2),
        FetchAnswer::Error(ReplicaError::UnknownLeaderEpoch)
    );
    assert_eq!(
        fetch(&mut replica, 9, 1),
        FetchAnswer::Error(ReplicaError::NotLeaderOrFollower)
    );
    let mut offline = Replica::new(4, config(1, false));
    assert_eq!(
        fetch(&mut offline, 2, 1),
        FetchAnswer::Error(ReplicaError::NotLeaderOrFollower)
    );
    assert!(offline.next_fetch(&log).is_none());
    let (out, _) = replica.on_follower_fetch(2, at(11, None, 11), 1, &log, 1);
    assert_eq!(
        out,
        FetchAnswer::OffsetOutOfRange {
            log_start: 0,
            log_end: 10
        }
    );
}

#[test]
fn diverging_fetches_answer_the_epoch_end_and_do_not_move_the_follower() {
    // Leader: epoch 0 at 0..5, epoch 2 at 5..8, stamped epoch 3 at 8.
    let mut log = log_of(&[(0, 5), (2, 3)]);
    log.sync();
    let mut replica = Replica::new(1, config(1, false));
    replica.apply_state(state(1, 3, 3, &[1]), &log, 0);
    log.assign_epoch(3, 8);
    // The follower wrote epoch 1 (a leader that never replicated) to offset 7.
    let (answer, e) = replica.on_follower_fetch(2, at(7, Some(1), 7), 3, &log, 1);
    assert_eq!(
        answer,
        FetchAnswer::Diverging {
            epoch: 0,
            end_offset: 5,
            high_watermark: 8,
            log_start: 0
        }
    );
    assert!(e.is_empty());
    // Same epoch, longer than the leader's: diverging at the epoch's end.
    let (answer, _) = replica.on_follower_fetch(2, at(9, Some(2), 9), 3, &log, 1);
    assert!(matches!(
        answer,
        FetchAnswer::Diverging {
            epoch: 2,
            end_offset: 8,
            ..
        }
    ));
    // Consistent: read.
    let (answer, _) = replica.on_follower_fetch(2, at(6, Some(2), 6), 3, &log, 1);
    assert!(matches!(answer, FetchAnswer::Read { from: 6, .. }));
}

#[test]
fn truncation_follows_kafkas_rule() {
    // Follower: epoch 0 at 0..5, epoch 1 at 5..7, epoch 3 at 7..8.
    let follower = log_of(&[(0, 5), (1, 2), (3, 1)]);
    // The leader's epoch 0 ends at 5 (or 3): the follower has it too, the lower end.
    assert_eq!(truncation_offset(0, 5, &follower), Some(5));
    assert_eq!(truncation_offset(0, 3, &follower), Some(3));
    // The leader answers epoch 2, which the follower lacks: its largest epoch below is 1,
    // ending at 7; truncate there and ask again.
    assert_eq!(truncation_offset(2, 100, &follower), Some(7));
    // An epoch newer than every local one: the leader's end offset, capped by the LEO.
    assert_eq!(truncation_offset(5, 100, &follower), Some(8));
    // An epoch older than every local one ends where the first local epoch starts.
    let later = log_of(&[(4, 3)]);
    assert_eq!(truncation_offset(2, 1, &later), Some(0));
    // The leader knows no epoch at or below ours: start over.
    assert_eq!(truncation_offset(2, UNDEFINED_OFFSET, &later), None);
}

#[test]
fn follower_takes_only_the_current_answer() {
    let mut log = log_of(&[(0, 5), (1, 2)]);
    let mut replica = Replica::new(2, config(1, false));
    let e = replica.apply_state(state(1, 2, 2, &[1, 2]), &log, 0);
    assert_eq!(
        e,
        [Effect::FollowLeader {
            leader: 1,
            leader_epoch: 2
        }]
    );
    let old = replica.next_fetch(&log).expect("follower");
    let request = replica.next_fetch(&log).expect("follower");
    assert_eq!(request.position, at(7, Some(1), 0));
    let read = FetchAnswer::Read {
        from: 7,
        records_end: 9,
        high_watermark: 20,
        log_start: 0,
    };
    assert!(
        replica.on_fetch_answer(&old, read, &log).is_empty(),
        "superseded"
    );
    let e = replica.on_fetch_answer(&request, read, &log);
    assert_eq!(
        e,
        [
            Effect::AppendFetched { from: 7, to: 9 },
            Effect::HighWatermark(9)
        ]
    );
    assert!(
        replica.on_fetch_answer(&request, read, &log).is_empty(),
        "answered"
    );
    // Diverging: truncate (epoch 1 unknown to the leader, which ends epoch 0 at 6).
    let request = replica.next_fetch(&log).expect("follower");
    let answer = FetchAnswer::Diverging {
        epoch: 0,
        end_offset: 6,
        high_watermark: 5,
        log_start: 0,
    };
    let e = replica.on_fetch_answer(&request, answer, &log);
    assert_eq!(e, [Effect::Truncate { to: 5 }, Effect::HighWatermark(5)]);
    log.truncate(5);
    // Out of range below the leader's log start: start over there.
    let request = replica.next_fetch(&log).expect("follower");
    let answer = FetchAnswer::OffsetOutOfRange {
        log_start: 50,
        log_end: 60,
    };
    let e = replica.on_fetch_answer(&request, answer, &log);
    assert_eq!(e, [Effect::TruncateFullyAndStartAt { offset: 50 }]);
    // A new leader epoch makes answers of the old one stale.
    let request = replica.next_fetch(&log).expect("follower");
    replica.apply_state(state(3, 3, 3, &[2, 3]), &log, 1);
    assert!(replica.on_fetch_answer(&request, read, &log).is_empty());
    replica.apply_state(state(NO_LEADER, 4, 4, &[2]), &log, 2);
    assert_eq!(replica.role(), Role::Offline);
}

#[test]
fn isr_expands_once_caught_up_and_durable() {
    let (mut replica, mut log) = leader(1, false);
    // 3 leaves the ISR.
    replica.apply_state(state(1, 1, 2, &[1, 2]), &log, 0);
    log.append(5, 1, 100);
    log.sync();
    replica.on_local_append(&log);
    replica.on_follower_fetch(2, at(15, Some(1), 15), 1, &log, 1);
    assert_eq!(replica.high_watermark(), 15);
    let (_, e) = replica.on_follower_fetch(3, at(12, Some(1), 12), 1, &log, 2);
    assert!(proposals(&e).is_empty(), "below the HW");
    let (_, e) = replica.on_follower_fetch(3, at(15, Some(1), 12), 1, &log, 3);
    assert!(proposals(&e).is_empty(), "caught up but not durable");
    let (_, e) = replica.on_follower_fetch(3, at(15, Some(1), 15), 1, &log, 4);
    assert_eq!(proposals(&e), [vec![1, 2, 3]]);
    assert!(replica.isr_proposal_pending());
    assert_eq!(replica.maximal_isr(), [1, 2, 3]);
    // The pending member counts for the HW: it waits for 3 too.
    log.append(1, 1, 101);
    replica.on_local_append(&log);
    replica.on_follower_fetch(2, at(16, Some(1), 16), 1, &log, 5);
    assert_eq!(replica.high_watermark(), 15);
    // Unanswered: sent again after the retry interval; an error clears it.
    assert!(proposals(&replica.tick(&log, 503)).is_empty());
    assert_eq!(proposals(&replica.tick(&log, 504)), [vec![1, 2, 3]]);
    // The partition epoch moved: perhaps by this very proposal (a lost answer), so it
    // stays pending until the controller's state arrives; INELIGIBLE_REPLICA clears it.
    replica.on_isr_result(2, Err(IsrError::InvalidUpdateVersion), &log, 506);
    assert!(replica.isr_proposal_pending());
    replica.on_isr_result(2, Err(IsrError::IneligibleReplica), &log, 506);
    assert!(!replica.isr_proposal_pending());
    // The controller's state ends it too.
    replica.on_follower_fetch(3, at(16, Some(1), 16), 1, &log, 507);
    assert!(replica.isr_proposal_pending());
    let ok = Ok(state(1, 1, 3, &[1, 2, 3]));
    replica.on_isr_result(2, ok, &log, 508);
    assert!(!replica.isr_proposal_pending());
    assert_eq!(replica.isr(), &[1, 2, 3]);
}

#[test]
fn shrink_follows_last_caught_up_time() {
    let (mut replica, mut log) = leader(1, false);
    log.append(1, 1, 100);
    replica.on_local_append(&log);
    // 2 fetches at the leader's end each time: caught up. 3 fetches at 10 while the leader
    // is at 11: behind, caught up only as of... never since the leader took over (time 0).
    for t in [100, 600, 1_100] {
        replica.on_follower_fetch(2, at(11, Some(1), 11), 1, &log, t);
        replica.on_follower_fetch(3, at(10, Some(0), 10), 1, &log, t);
    }
    assert!(proposals(&replica.tick(&log, LAG_MS)).is_empty());
    assert_eq!(proposals(&replica.tick(&log, LAG_MS + 1)), [vec![1, 2]]);
    // Kafka's rule: a fetch reaching the leader's end of the previous fetch counts as
    // caught up at that previous fetch's time.
    let (mut replica, mut log) = leader(1, false);
    log.append(1, 1, 100);
    replica.on_follower_fetch(2, at(10, Some(0), 10), 1, &log, 900);
    replica.on_follower_fetch(3, at(10, Some(0), 10), 1, &log, 900);
    log.append(1, 1, 101);
    replica.on_follower_fetch(2, at(11, Some(1), 11), 1, &log, 1_800);
    assert_eq!(proposals(&replica.tick(&log, 1_850)), [vec![1, 2]]);
}

#[test]
fn a_new_member_holds_the_epoch_start_durably() {
    // Broker 1 followed with a high watermark of 10, then leads epoch 1 at offset 15: the
    // old leader may still acknowledge anything below 15 on broker 1's earlier fetches.
    let mut log = log_of(&[(0, 15)]);
    log.sync();
    let mut replica = Replica::new(1, config(1, false));
    replica.apply_state(state(2, 0, 0, &[1, 2]), &log, 0);
    let request = replica.next_fetch(&log).expect("follower");
    let answer = FetchAnswer::Read {
        from: 15,
        records_end: 15,
        high_watermark: 10,
        log_start: 0,
    };
    replica.on_fetch_answer(&request, answer, &log);
    replica.apply_state(state(1, 1, 1, &[1, 2]), &log, 1);
    log.assign_epoch(1, 15);
    assert_eq!(replica.high_watermark(), 10);
    let (_, e) = replica.on_follower_fetch(3, at(12, Some(0), 12), 1, &log, 2);
    assert!(proposals(&e).is_empty(), "below the epoch start");
    let (_, e) = replica.on_follower_fetch(3, at(15, Some(0), 12), 1, &log, 3);
    assert!(
        proposals(&e).is_empty(),
        "the epoch start is not durable on it"
    );
    let (_, e) = replica.on_follower_fetch(3, at(15, Some(0), 15), 1, &log, 4);
    assert_eq!(proposals(&e), [vec![1, 2, 3]]);
}

#[test]
fn reelection_and_isr_only_updates() {
    let (mut replica, mut log) = leader(1, false);
    log.append(1, 1, 100);
    replica.await_acks_all(11, 10_000, &log, 0).expect("leader");
    // Re-elected with a new epoch: a new stamp, the waiter kept (the log is unchanged).
    let e = replica.apply_state(state(1, 2, 2, &[1, 2, 3]), &log, 10);
    assert!(e.contains(&Effect::StartEpoch {
        epoch: 2,
        start_offset: 11
    }));
    assert_eq!(replica.waiting_acks(), 1);
    // A follower told of an ISR change (same leader epoch) keeps fetching as it was.
    let log = log_of(&[(0, 3)]);
    let mut follower = Replica::new(2, config(1, false));
    follower.apply_state(state(1, 1, 1, &[1, 2, 3]), &log, 0);
    let request = follower.next_fetch(&log).expect("follower");
    assert!(follower
        .apply_state(state(1, 1, 2, &[1, 2]), &log, 1)
        .is_empty());
    let read = FetchAnswer::Read {
        from: 3,
        records_end: 4,
        high_watermark: 3,
        log_start: 0,
    };
    assert_eq!(
        follower.on_fetch_answer(&request, read, &log),
        [
            Effect::AppendFetched { from: 3, to: 4 },
            Effect::HighWatermark(3)
        ]
    );
    // Offline (no longer assigned): every role-specific call says so.
    let gone = PartitionState {
        replicas: vec![1, 3],
        ..state(1, 1, 3, &[1, 3])
    };
    assert_eq!(follower.apply_state(gone, &log, 2), [Effect::StopFetching]);
    assert_eq!(follower.role(), Role::Offline);
    assert_eq!(
        follower.check_produce(Acks::None),
        Err(ReplicaError::NotLeaderOrFollower)
    );
    assert!(follower.next_fetch(&log).is_none());
}
