//! Contract tests of what replication needs of `PartitionLog`: leader epochs stamped and
//! remembered, a follower's appends keeping its leader's offsets and epochs, truncation
//! (within the active segment, at a segment boundary, across closed segments, below the log
//! start), each checked again after a clean reopen and after a crash.

mod common;

use common::{run, temp_dir};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use storage::batch::test_support::{encode_batch, simple_records, TestProducer, NO_PRODUCER};
use storage::batch::{patch_partition_leader_epoch, validate_produce_records, BatchHeader};
use storage::leader_epoch::{LeaderEpochCache, CHECKPOINT_FILE};
use storage::{AppendError, LogConfig, PartitionLog, ReplicaError};

/// Small segments (a few dozen batches each) and index points, so cuts cross both; no time
/// retention (the test batches' timestamps are from 1970).
fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        cache_bytes_max: 2048,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// The idempotent producer the truncation logs are built with: batch `i` carries sequences
/// 2i and 2i+1 at offsets 2i and 2i+1.
const PID: i64 = 42;

fn producer(seq: i64) -> TestProducer {
    TestProducer {
        producer_id: PID,
        producer_epoch: 0,
        base_sequence: seq as i32,
    }
}

/// A batch of `n` records as a leader sends it: base offset and leader epoch set (outside the
/// CRC).
fn leader_batch(base: i64, n: usize, epoch: i32, p: TestProducer) -> (Vec<u8>, BatchHeader) {
    let mut b = encode_batch(base, 1_000 + base, p, &simple_records(n));
    patch_partition_leader_epoch(&mut b, epoch);
    let h = validate_produce_records(&b).unwrap();
    (b, h)
}

fn headers(batches: &[Bytes]) -> Vec<BatchHeader> {
    batches
        .iter()
        .map(|b| validate_produce_records(b).expect("served batches are valid (CRC too)"))
        .collect()
}

async fn read_all(log: &PartitionLog) -> Vec<Bytes> {
    log.read(log.log_start_offset(), usize::MAX).await.unwrap()
}

/// The batches are back to back from `from` and end at `end`.
fn assert_contiguous(batches: &[Bytes], from: i64, end: i64) {
    let mut next = from;
    for h in headers(batches) {
        assert_eq!(h.base_offset, next, "batches back to back");
        next = h.last_offset() + 1;
    }
    assert_eq!(next, end, "batches end at the log end");
}

fn segment_bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log").map(|s| s.parse().unwrap())
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn append_with_seq(log: &PartitionLog, seq: i64) -> storage::AppendOutcome {
    let b = encode_batch(0, 1_000 + seq, producer(seq), &simple_records(2));
    let h = validate_produce_records(&b).unwrap();
    log.append(&b, &h).unwrap()
}

#[test]
fn leader_epochs_are_stamped_remembered_and_survive_reopen() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(|| async move {
        let log = PartitionLog::open(&path, LogConfig::default())
            .await
            .unwrap();
        assert_eq!(log.latest_leader_epoch(), None);
        append_with_seq(&log, 0);
        append_with_seq(&log, 2);
        assert!(log.set_leader_epoch(5).await.unwrap());
        assert_eq!(log.leader_epochs(), [(5, 4)]);
        // Saved lazily: by the writer, before the first batch of the epoch is written.
        assert!(
            !path.join(CHECKPOINT_FILE).exists(),
            "no fsync for an epoch without data"
        );
        append_with_seq(&log, 4);
        log.wait_durable(4, false).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(path.join(CHECKPOINT_FILE)).unwrap(),
            "0\n1\n5 4\n",
            "persisted before the epoch's first batch is written"
        );
        append_with_seq(&log, 6);
        assert!(!log.set_leader_epoch(3).await.unwrap(), "an older epoch");
        assert!(
            log.set_leader_epoch(5).await.unwrap(),
            "the same epoch again"
        );
        assert_eq!(log.leader_epochs(), [(5, 4)]);
        let epochs: Vec<i32> = headers(&read_all(&log).await)
            .iter()
            .map(|h| h.partition_leader_epoch)
            .collect();
        assert_eq!(epochs, [0, 0, 5, 5], "as sent before, stamped after");
        assert_eq!(log.end_offset_for_epoch(5), (5, 8));
        assert_eq!(log.end_offset_for_epoch(4), (4, 4));
        assert_eq!(log.end_offset_for_epoch(6), (-1, -1));
        log.close().await.unwrap();

        let log = PartitionLog::open(&path, LogConfig::default())
            .await
            .unwrap();
        assert_eq!(log.leader_epochs(), [(5, 4)]);
        let batches = read_all(&log).await;
        assert_eq!(headers(&batches)[3].partition_leader_epoch, 5);
        assert!(log.set_leader_epoch(7).await.unwrap());
        append_with_seq(&log, 8);
        assert_eq!(log.leader_epochs(), [(5, 4), (7, 8)]);
        assert_eq!(log.end_offset_for_epoch(5), (5, 8));
        assert_eq!(log.end_offset_for_epoch(6), (5, 8));
        log.close().await.unwrap();
    });
}

#[test]
fn follower_appends_keep_offsets_gaps_and_epochs() {
    let dir = temp_dir();
    let (leader_dir, follower_dir) = (dir.path().join("leader"), dir.path().join("follower"));
    run(|| async move {
        let leader = PartitionLog::open(&leader_dir, small_config())
            .await
            .unwrap();
        leader.set_leader_epoch(1).await.unwrap();
        for i in 0..30 {
            append_with_seq(&leader, 2 * i);
        }
        leader.set_leader_epoch(2).await.unwrap();
        for i in 30..50 {
            append_with_seq(&leader, 2 * i);
        }
        let follower = PartitionLog::open(&follower_dir, small_config())
            .await
            .unwrap();
        let sent = read_all(&leader).await;
        for b in &sent {
            let h = validate_produce_records(b).unwrap();
            let o = follower.append_replicated(b, &h).unwrap();
            assert_eq!(
                (o.base_offset, o.last_offset),
                (h.base_offset, h.last_offset())
            );
        }
        assert_eq!(follower.leader_epochs(), leader.leader_epochs());
        assert_eq!(follower.leader_epochs(), [(1, 0), (2, 60)]);
        // A gap (a compacted leader), through the back-pressured path.
        let (b, h) = leader_batch(107, 3, 2, NO_PRODUCER);
        follower
            .append_replicated_with_room(&b, &h, &|| true)
            .await
            .unwrap()
            .expect("allowed");
        assert_eq!(follower.log_end_offset(), 110);
        // A newer epoch starts at its batch's base offset.
        let (b, h) = leader_batch(115, 2, 4, NO_PRODUCER);
        follower.append_replicated(&b, &h).unwrap();
        assert_eq!(follower.leader_epochs(), [(1, 0), (2, 60), (4, 115)]);
        // Refused: below the log end, or an older epoch; nothing appended.
        let (b, h) = leader_batch(116, 1, 4, NO_PRODUCER);
        match follower.append_replicated(&b, &h) {
            Err(AppendError::Replica(ReplicaError::OffsetBelowLogEnd {
                base_offset: 116,
                log_end_offset: 117,
            })) => {}
            other => panic!("expected OffsetBelowLogEnd, got {other:?}"),
        }
        let (b, h) = leader_batch(117, 1, 2, NO_PRODUCER);
        assert!(matches!(
            follower.append_replicated(&b, &h),
            Err(AppendError::Replica(ReplicaError::EpochBelowLatest { .. }))
        ));
        assert_eq!(follower.log_end_offset(), 117);
        follower.wait_durable(116, true).await.unwrap();
        let check = |batches: &[Bytes]| {
            let got: Vec<(i64, i32)> = headers(batches)
                .iter()
                .map(|h| (h.base_offset, h.partition_leader_epoch))
                .collect();
            let mut want: Vec<(i64, i32)> = headers(&sent)
                .iter()
                .map(|h| (h.base_offset, h.partition_leader_epoch))
                .collect();
            want.extend([(107, 2), (115, 4)]);
            assert_eq!(got, want);
        };
        check(&read_all(&follower).await);
        // A read inside a gap gets the batch after it.
        let after_gap = follower.read(103, 1).await.unwrap();
        assert_eq!(headers(&after_gap)[0].base_offset, 107);
        assert!(follower.segment_count() > 1, "the follower rolled segments");
        follower.close().await.unwrap();
        leader.close().await.unwrap();

        let follower = PartitionLog::open(&follower_dir, small_config())
            .await
            .unwrap();
        assert_eq!(follower.log_end_offset(), 117);
        check(&read_all(&follower).await);
        assert_eq!(follower.leader_epochs(), [(1, 0), (2, 60), (4, 115)]);
        // Truncating into the batch after a gap: the log ends after the last batch kept.
        assert_eq!(follower.truncate_to(108).await.unwrap(), 100);
        assert_eq!(follower.leader_epochs(), [(1, 0), (2, 60)]);
        assert_contiguous(&read_all(&follower).await, 0, 100);
        let (b, h) = leader_batch(104, 2, 5, NO_PRODUCER);
        follower.append_replicated(&b, &h).unwrap();
        assert_eq!(follower.leader_epochs(), [(1, 0), (2, 60), (5, 104)]);
        follower.close().await.unwrap();
        let follower = PartitionLog::open(&follower_dir, small_config())
            .await
            .unwrap();
        assert_eq!(follower.log_end_offset(), 106);
        let last = headers(&follower.read(100, 1 << 20).await.unwrap());
        assert_eq!(last.len(), 1);
        assert_eq!(
            (last[0].base_offset, last[0].partition_leader_epoch),
            (104, 5)
        );
        follower.close().await.unwrap();
    });
}

#[test]
fn a_promoted_follower_deduplicates_a_retry() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(|| async move {
        let log = PartitionLog::open(&path, LogConfig::default())
            .await
            .unwrap();
        // As the leader wrote them: seq 0-2, the same sequences again (a follower never
        // refuses what its leader appended), then seq 3-5.
        for (base, seq) in [(0, 0), (3, 0), (6, 3)] {
            let (b, h) = leader_batch(base, 3, 1, producer(seq));
            let o = log.append_replicated(&b, &h).unwrap();
            assert!(!o.duplicate);
        }
        assert_eq!(log.log_end_offset(), 9);
        assert!(log.set_leader_epoch(2).await.unwrap(), "promoted");
        let retry = encode_batch(0, 0, producer(3), &simple_records(3));
        let h = validate_produce_records(&retry).unwrap();
        let o = log.append(&retry, &h).unwrap();
        assert!(o.duplicate, "the retry of seq 3-5 is a duplicate");
        assert_eq!((o.base_offset, o.last_offset), (6, 8));
        let gap = encode_batch(0, 0, producer(20), &simple_records(1));
        let h = validate_produce_records(&gap).unwrap();
        assert!(matches!(
            log.append(&gap, &h),
            Err(AppendError::Producer(_))
        ));
        let next = encode_batch(0, 0, producer(6), &simple_records(1));
        let h = validate_produce_records(&next).unwrap();
        let o = log.append(&next, &h).unwrap();
        assert_eq!((o.base_offset, o.duplicate), (9, false));
        let last = headers(&log.read(9, 1).await.unwrap())[0];
        assert_eq!(last.partition_leader_epoch, 2, "the new leader stamps");
        log.close().await.unwrap();
    });
}

/// Leader-epoch entries of the truncation logs: epoch 1 from 0, 2 from 100, 3 from 160.
const EPOCHS: [(i32, i64); 3] = [(1, 0), (2, 100), (3, 160)];
/// Batches of the truncation logs (two records each: offsets 0..200).
const BATCHES: i64 = 100;

/// A log of `BATCHES` idempotent batches over several segments, with `EPOCHS`.
async fn build_log(path: &Path) -> PartitionLog {
    let log = PartitionLog::open(path, small_config()).await.unwrap();
    for i in 0..BATCHES {
        if let Some(&(epoch, _)) = EPOCHS.iter().find(|(_, start)| *start == 2 * i) {
            assert!(log.set_leader_epoch(epoch).await.unwrap());
        }
        let o = append_with_seq(&log, 2 * i);
        assert_eq!(o.base_offset, 2 * i);
    }
    assert_eq!(log.leader_epochs(), EPOCHS);
    log
}

/// What a truncation must leave: the log from `start` to `end`; `moved_start`: where
/// DeleteRecords moved the log start before the truncation.
#[derive(Clone, Copy, Debug)]
struct Expect {
    start: i64,
    end: i64,
    moved_start: Option<i64>,
}

/// `EPOCHS` as retention, then truncation, leave them (the cache's own rules, unit-tested in
/// `leader_epoch`).
fn expected_epochs(e: Expect) -> Vec<(i32, i64)> {
    let mut cache = LeaderEpochCache::new();
    for (epoch, start) in EPOCHS {
        cache.assign(epoch, start);
    }
    if let Some(start) = e.moved_start {
        cache.truncate_from_start(start);
    }
    cache.truncate_from_end(e.end);
    cache
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

/// A truncation of the whole-log build to `end`, nothing else moved.
fn cut_at(end: i64) -> Expect {
    Expect {
        start: 0,
        end,
        moved_start: None,
    }
}

/// The log holds exactly the batches of `e`, its epochs, and producer state that accepts the
/// cut sequence `e.end` again.
async fn check_truncated(log: &PartitionLog, e: Expect) {
    assert_eq!(log.log_end_offset(), e.end);
    assert_eq!(log.log_start_offset(), e.start);
    let batches = read_all(log).await;
    let first = batches
        .first()
        .map(|b| validate_produce_records(b).unwrap().base_offset);
    assert_contiguous(&batches, first.unwrap_or(e.end), e.end);
    assert!(first.is_none_or(|f| f <= e.start && e.start - f < 2));
    assert_eq!(log.leader_epochs(), expected_epochs(e));
}

/// Appends after a truncation continue at the new end with the cut sequence, which is not a
/// duplicate; a retry of the last kept batch is one.
fn append_after(log: &PartitionLog, e: Expect) {
    if e.end >= e.start + 2 && e.end % 2 == 0 {
        let o = append_with_seq(log, e.end - 2);
        assert!(o.duplicate, "the last kept batch is remembered");
        assert_eq!(o.base_offset, e.end - 2);
    }
    let o = append_with_seq(log, e.end);
    assert!(!o.duplicate, "a cut sequence is accepted again");
    assert_eq!((o.base_offset, o.last_offset), (e.end, e.end + 1));
}

/// Appends after the truncation continued at its end; the log reads back whole.
async fn check_appended(log: &PartitionLog, want: Expect) {
    let end = want.end + 2;
    log.wait_durable(end - 1, true).await.unwrap();
    assert_eq!(log.log_end_offset(), end);
    let batches = read_all(log).await;
    let first = headers(&batches)[0].base_offset;
    assert!(first <= log.log_start_offset());
    assert_contiguous(&batches, first, end);
}

/// One truncation scenario: build, optionally move the log start, truncate to `offset`,
/// check; without `crash`, append on (from the partial page the cut left), check and close;
/// with it, drop the log (a crash right after `truncate_to` returned) and check and append
/// after recovery. Then reopen and check again.
fn truncation_case(offset: i64, want: Expect, crash: bool) {
    let dir = temp_dir();
    let path: PathBuf = dir.path().to_path_buf();
    let p = path.clone();
    run(|| async move {
        let log = build_log(&p).await;
        if let Some(start) = want.moved_start {
            log.delete_records_before(start).await.unwrap();
        }
        let before = log.log_end_offset();
        let end = log.truncate_to(offset).await.unwrap();
        assert_eq!(end, want.end, "truncate_to({offset}) returns the new end");
        if end == before {
            // A no-op settles nothing: what a crash may lose is not the point here.
            log.wait_durable(end - 1, true).await.unwrap();
        }
        check_truncated(&log, want).await;
        if !crash {
            append_after(&log, want);
            check_appended(&log, want).await;
            log.close().await.unwrap();
        }
    });
    let p = path.clone();
    run(|| async move {
        let log = PartitionLog::open(&p, small_config()).await.unwrap();
        if crash {
            check_truncated(&log, want).await;
            append_after(&log, want);
        }
        check_appended(&log, want).await;
        log.close().await.unwrap();
        let log = PartitionLog::open(&p, small_config()).await.unwrap();
        check_appended(&log, want).await;
        // The appended batch is remembered by the producer state too.
        assert!(append_with_seq(&log, want.end).duplicate);
        log.close().await.unwrap();
    });
}

#[test]
fn truncation_inside_the_active_segment() {
    for crash in [false, true] {
        // At a batch boundary, then inside a batch (the whole batch goes).
        truncation_case(196, cut_at(196), crash);
        truncation_case(197, cut_at(196), crash);
        // A no-op at or past the log end.
        truncation_case(200, cut_at(200), crash);
    }
}

#[test]
fn truncation_at_segment_boundaries_and_across_closed_segments() {
    // Where the segments start (the same for every build).
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    let p = path.clone();
    run(|| async move {
        build_log(&p).await.close().await.unwrap();
    });
    let bases = segment_bases(&path);
    assert!(bases.len() >= 4, "several segments: {bases:?}");
    for crash in [false, true] {
        let last = *bases.last().unwrap();
        truncation_case(last, cut_at(last), crash);
        // Deep into a closed segment, inside a batch, crossing epochs 2 and 3.
        let deep = bases[1] + 7;
        truncation_case(deep, cut_at(deep - 1), crash);
        // The first segment's first batch: an empty log at 0.
        truncation_case(1, cut_at(0), crash);
    }
}

#[test]
fn truncation_below_the_log_start() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    let p = path.clone();
    run(|| async move {
        build_log(&p).await.close().await.unwrap();
    });
    let bases = segment_bases(&path);
    for crash in [false, true] {
        // Retention removed the first two segments; the log starts inside the third.
        let moved_start = Some(bases[2] + 4);
        let want = Expect {
            start: bases[2] + 2,
            end: bases[2] + 2,
            moved_start,
        };
        truncation_case(bases[2] + 2, want, crash);
        // Below the first segment left: an empty log starting there.
        let want = Expect {
            start: 10,
            end: 10,
            moved_start,
        };
        truncation_case(10, want, crash);
    }
}

#[test]
fn truncate_fully_and_start_at_empties_the_log() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    let p = path.clone();
    run(|| async move {
        let log = build_log(&p).await;
        log.truncate_fully_and_start_at(500).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
        assert!(log.leader_epochs().is_empty());
        assert!(read_all(&log).await.is_empty());
        assert_eq!(segment_bases(&p), [500]);
        // Producer state is gone: any sequence of the producer is new.
        let o = append_with_seq(&log, 0);
        assert_eq!((o.base_offset, o.duplicate), (500, false));
        // A follower's batches from the leader's log start.
        let (b, h) = leader_batch(502, 2, 6, NO_PRODUCER);
        log.append_replicated(&b, &h).unwrap();
        assert_eq!(log.leader_epochs(), [(6, 502)]);
        log.wait_durable(503, true).await.unwrap();
        // Crash.
    });
    run(|| async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 504));
        assert_contiguous(&read_all(&log).await, 500, 504);
        assert_eq!(log.leader_epochs(), [(6, 502)]);
        assert!(append_with_seq(&log, 0).duplicate);
        log.close().await.unwrap();
    });
}

#[test]
fn recovery_adds_epochs_the_checkpoint_misses_and_drops_those_past_the_end() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    let p = path.clone();
    run(|| async move {
        let log = PartitionLog::open(&p, LogConfig::default()).await.unwrap();
        log.set_leader_epoch(1).await.unwrap();
        for i in 0..3 {
            append_with_seq(&log, 2 * i);
        }
        log.set_leader_epoch(4).await.unwrap();
        for i in 3..5 {
            append_with_seq(&log, 2 * i);
        }
        log.wait_durable(9, true).await.unwrap();
        // Crash: the active segment is scanned at the next start.
    });
    let file = path.join(CHECKPOINT_FILE);
    // An older checkpoint, an empty one, a damaged one, one with an epoch past the log end.
    let stale = [
        "0\n1\n1 0\n",
        "0\n0\n",
        "garbage",
        "0\n3\n1 0\n4 6\n9 1000\n",
    ];
    for stale in stale {
        // No index checkpoint: recovery scans the whole active segment (as after a crash).
        let _ = std::fs::remove_file(path.join("00000000000000000000.index"));
        std::fs::write(&file, stale).unwrap();
        let p = path.clone();
        run(|| async move {
            let log = PartitionLog::open(&p, LogConfig::default()).await.unwrap();
            assert_eq!(log.leader_epochs(), [(1, 0), (4, 6)], "from {stale:?}");
            log.close().await.unwrap();
            assert_eq!(
                std::fs::read_to_string(p.join(CHECKPOINT_FILE)).unwrap(),
                "0\n2\n1 0\n4 6\n",
                "rewritten"
            );
        });
    }
}

#[test]
fn without_a_checkpoint_file_producer_sent_epochs_are_not_leader_epochs() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    let p = path.clone();
    run(|| async move {
        let log = PartitionLog::open(&p, LogConfig::default()).await.unwrap();
        // A producer's batch claiming epoch 9; no replica ever led.
        let (b, h) = leader_batch(0, 2, 9, NO_PRODUCER);
        log.append(&b, &h).unwrap();
        log.wait_durable(1, true).await.unwrap();
        // Crash.
    });
    run(|| async move {
        let log = PartitionLog::open(&path, LogConfig::default())
            .await
            .unwrap();
        assert!(log.leader_epochs().is_empty());
        assert!(
            log.set_leader_epoch(1).await.unwrap(),
            "epoch 1 is not refused"
        );
        assert_eq!(log.leader_epochs(), [(1, 2)]);
        log.close().await.unwrap();
    });
}

#[test]
fn retention_moves_the_first_epoch_up_to_the_log_start() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(|| async move {
        let log = build_log(&path).await;
        assert_eq!(log.delete_records_before(41).await.unwrap(), 41);
        assert_eq!(log.leader_epochs(), [(1, 41), (2, 100), (3, 160)]);
        assert_eq!(log.end_offset_for_epoch(0), (0, 41));
        assert_eq!(log.delete_records_before(120).await.unwrap(), 120);
        assert_eq!(log.leader_epochs(), [(2, 120), (3, 160)]);
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        assert_eq!(log.leader_epochs(), [(2, 120), (3, 160)]);
        log.close().await.unwrap();
    });
}
