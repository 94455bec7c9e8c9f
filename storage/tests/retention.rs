//! Contract tests of retention, DeleteRecords, segment.ms, LogAppendTime and flush.* on a
//! real filesystem inside a glommio executor.

mod common;

use common::{run, temp_dir};
use std::path::Path;

use bytes::Bytes;
use storage::batch::test_support::{encode_batch, simple_records, NO_PRODUCER};
use storage::batch::validate_produce_records;
use storage::{now_ms, LogConfig, PartitionLog};

fn small(config: LogConfig) -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        cache_bytes_max: 1024,
        ..config
    }
}

/// Appends a 5-record batch with base timestamp `ts`; returns its last offset.
fn append(log: &PartitionLog, ts: i64) -> i64 {
    let b = encode_batch(0, ts, NO_PRODUCER, &simple_records(5));
    let h = validate_produce_records(&b).unwrap();
    log.append(&b, &h).unwrap().last_offset
}

fn files(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == ext)
        })
        .count()
}

fn first_offset(batches: &[Bytes]) -> i64 {
    validate_produce_records(&batches[0]).unwrap().base_offset
}

#[test]
fn size_retention_deletes_oldest_segments_and_survives_reopen() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(|| async move {
        let config = small(LogConfig {
            retention_bytes: 3 * 4096,
            ..LogConfig::default()
        });
        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        let now = now_ms();
        let mut last = 0;
        for _ in 0..200 {
            last = append(&log, now);
        }
        log.wait_durable(last, true).await.unwrap();
        let before = log.segment_count();
        assert!(before > 6, "small segments roll: {before}");
        let out = log.enforce_retention(now).await.unwrap();
        assert!(out.segments_deleted >= before - 5, "{out:?}");
        assert_eq!(log.segment_count(), before - out.segments_deleted);
        assert_eq!(files(&path, "log"), log.segment_count());
        let start = log.log_start_offset();
        assert!(start > 0);
        assert_eq!(out.log_start_offset, start);
        // Reading from 0 starts at the new log start; everything after it is intact.
        let batches = log.read(0, usize::MAX).await.unwrap();
        assert_eq!(first_offset(&batches), start);
        assert_eq!(batches.len() as i64, (log.log_end_offset() - start) / 5);
        // Nothing more to delete.
        assert_eq!(
            log.enforce_retention(now).await.unwrap().segments_deleted,
            0
        );
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, config).await.unwrap();
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(log.log_end_offset(), last + 1);
        log.close().await.unwrap();
    });
}

#[test]
fn time_retention_rolls_an_expired_active_segment_and_empties_the_log() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(|| async move {
        let config = small(LogConfig {
            retention_ms: 60_000,
            ..LogConfig::default()
        });
        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        let now = now_ms();
        let mut last = 0;
        for _ in 0..50 {
            last = append(&log, now - 3_600_000);
        }
        log.wait_durable(last, true).await.unwrap();
        // Not expired yet at an earlier clock.
        assert_eq!(
            log.enforce_retention(now - 3_600_000).await.unwrap(),
            storage::RetentionOutcome {
                log_start_offset: 0,
                ..Default::default()
            }
        );
        let out = log.enforce_retention(now).await.unwrap();
        assert!(out.segments_deleted >= 2, "{out:?}");
        assert_eq!(log.log_start_offset(), last + 1);
        assert_eq!(log.log_end_offset(), last + 1);
        assert!(log.read(0, usize::MAX).await.unwrap().is_empty());
        // New data still goes in after the empty log.
        let next = append(&log, now);
        log.wait_durable(next, true).await.unwrap();
        assert_eq!(
            first_offset(&log.read(0, usize::MAX).await.unwrap()),
            last + 1
        );
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, config).await.unwrap();
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (last + 1, next + 1)
        );
        log.close().await.unwrap();
    });
}

#[test]
fn delete_records_moves_the_log_start_inside_a_segment_and_persists_it() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(|| async move {
        let config = small(LogConfig::default());
        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        let now = now_ms();
        let mut last = 0;
        for _ in 0..100 {
            last = append(&log, now);
        }
        log.wait_durable(last, true).await.unwrap();
        let segments = log.segment_count();
        // Offset 12 is inside the first segment: nothing deleted, start moves.
        assert_eq!(log.delete_records_before(12).await.unwrap(), 12);
        assert_eq!(log.segment_count(), segments);
        // Reads begin with the batch holding offset 12.
        assert_eq!(first_offset(&log.read(0, usize::MAX).await.unwrap()), 10);
        // Going backwards is a no-op.
        assert_eq!(log.delete_records_before(5).await.unwrap(), 12);
        // Half the log: the closed segments below it go.
        let half = (last + 1) / 2;
        assert_eq!(log.delete_records_before(half).await.unwrap(), half);
        assert!(log.segment_count() < segments);
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        assert_eq!(log.log_start_offset(), half);
        // -1: up to the high watermark; the active segment stays but serves nothing.
        assert_eq!(log.delete_records_before(-1).await.unwrap(), last + 1);
        assert!(log.read(0, usize::MAX).await.unwrap().is_empty());
        assert_eq!(log.segment_count(), 1);
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, config).await.unwrap();
        assert_eq!(log.log_start_offset(), last + 1);
        log.close().await.unwrap();
    });
}

#[test]
fn segment_ms_rolls_and_config_updates_apply() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(|| async move {
        let log = PartitionLog::open(&path, LogConfig::default())
            .await
            .unwrap();
        append(&log, 1);
        append(&log, 2);
        assert_eq!(log.segment_count(), 1);
        log.update_config(LogConfig {
            segment_ms: 1,
            ..LogConfig::default()
        });
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        let last = append(&log, 3);
        assert_eq!(log.segment_count(), 2, "segment.ms rolled the old segment");
        log.wait_durable(last, true).await.unwrap();
        assert_eq!(files(&path, "log"), 2);
        log.close().await.unwrap();
    });
}

#[test]
fn log_append_time_stamps_batches_with_a_valid_crc() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(|| async move {
        let config = LogConfig {
            log_append_time: true,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        let before = now_ms();
        let b = encode_batch(0, 1000, NO_PRODUCER, &simple_records(3));
        let h = validate_produce_records(&b).unwrap();
        let out = log.append(&b, &h).unwrap();
        assert!(out.log_append_time_ms >= before && out.log_append_time_ms <= now_ms());
        log.wait_durable(out.last_offset, true).await.unwrap();
        log.close().await.unwrap();
        // Read back from disk: the batch is CRC-valid, flagged and stamped.
        let log = PartitionLog::open(&path, config).await.unwrap();
        let got = log.read(0, usize::MAX).await.unwrap();
        let header = validate_produce_records(&got[0]).expect("crc recomputed");
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, out.log_append_time_ms);
        assert_eq!(header.base_timestamp, 1000, "record timestamps untouched");
        assert_eq!(
            log.offset_for_timestamp(out.log_append_time_ms)
                .await
                .unwrap(),
            Some((0, out.log_append_time_ms))
        );
        log.close().await.unwrap();
    });
}

#[test]
fn flush_messages_and_flush_ms_sync_without_acks_all() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(|| async move {
        let log = PartitionLog::open(
            &path,
            LogConfig {
                flush_messages: 10,
                ..LogConfig::default()
            },
        )
        .await
        .unwrap();
        let last = append(&log, 1);
        log.wait_durable(last, false).await.unwrap();
        assert_eq!(log.synced_offset(), 0, "5 messages: below flush.messages");
        append(&log, 2);
        wait_synced(&log, 10).await;
        assert_eq!(log.synced_offset(), 10, "10 messages: synced");
        log.update_config(LogConfig {
            flush_ms: 50,
            ..LogConfig::default()
        });
        let last = append(&log, 3);
        log.wait_durable(last, false).await.unwrap();
        log.flush_if_due(now_ms());
        assert_eq!(log.synced_offset(), 10, "flush.ms not yet due");
        log.flush_if_due(now_ms() + 60);
        wait_synced(&log, 15).await;
        assert_eq!(log.synced_offset(), 15, "flush.ms due: synced");
        log.close().await.unwrap();
    });
}

async fn wait_synced(log: &PartitionLog, offset: i64) {
    for _ in 0..200 {
        if log.synced_offset() >= offset {
            return;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[test]
fn crash_recovery_starts_at_the_active_index_checkpoint() {
    use storage::batch::test_support::TestProducer;
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    let config = LogConfig {
        index_interval_bytes: 512,
        index_checkpoint_bytes: 4096,
        ..LogConfig::default()
    };
    let batch = |seq| {
        let producer = TestProducer {
            producer_id: 4,
            producer_epoch: 0,
            base_sequence: seq,
        };
        let b = encode_batch(0, now_ms(), producer, &simple_records(5));
        let h = validate_produce_records(&b).unwrap();
        (b, h)
    };
    let p = path.clone();
    let c = config.clone();
    run(|| async move {
        let log = PartitionLog::open(&p, c).await.unwrap();
        for i in 0..100 {
            let (b, h) = batch(i * 5);
            let out = log.append(&b, &h).unwrap();
            // acks=1 style: written, no fsync asked; checkpoints happen on their own.
            log.wait_durable(out.last_offset, false).await.unwrap();
        }
        assert!(
            path_has(&p, "00000000000000000000.index"),
            "checkpoint written"
        );
        // Crash: no close.
    });
    // Garbage after the last entry, as a torn write would leave.
    let seg = path.join("00000000000000000000.log");
    let mut data = std::fs::read(&seg).unwrap();
    data.extend_from_slice(&[0xab; 5000]);
    std::fs::write(&seg, &data).unwrap();
    run(|| async move {
        let log = PartitionLog::open(&path, config).await.unwrap();
        let skipped = log.active_checkpoint_bytes();
        assert!(
            skipped >= 4096,
            "recovery started at the checkpoint ({skipped} bytes in)"
        );
        assert_eq!(log.log_end_offset(), 500);
        let all = log.read(0, usize::MAX).await.unwrap();
        assert_eq!(all.len(), 100);
        // Producer state is intact: the last batch is a duplicate, the next one is new.
        let (b, h) = batch(99 * 5);
        assert!(log.append(&b, &h).unwrap().duplicate);
        let (b, h) = batch(100 * 5);
        let out = log.append(&b, &h).unwrap();
        assert_eq!((out.base_offset, out.duplicate), (500, false));
        // Timestamp lookups and positioned reads work across the checkpoint.
        assert_eq!(first_offset(&log.read(333, 1).await.unwrap()), 330);
        log.close().await.unwrap();
    });
}

fn path_has(dir: &Path, name: &str) -> bool {
    dir.join(name).exists()
}

#[test]
fn idle_segment_files_are_closed_and_reopened_on_demand() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(|| async move {
        let log = PartitionLog::open(&path, small(LogConfig::default()))
            .await
            .unwrap();
        let now = now_ms();
        let mut last = 0;
        for i in 0..100 {
            last = append(&log, now + i);
        }
        log.wait_durable(last, true).await.unwrap();
        let segments = log.segment_count();
        assert!(segments > 4);
        assert_eq!(log.open_segment_files(), segments);
        // Not idle yet: nothing closed.
        assert_eq!(log.close_idle_segments(now_ms(), 60_000).await, 0);
        let closed = log.close_idle_segments(now_ms() + 120_000, 60_000).await;
        assert_eq!(
            closed,
            segments - 1,
            "every closed segment, never the active one"
        );
        assert_eq!(log.open_segment_files(), 1);
        // Reads, timestamp lookups and appends still work; reading reopens one file.
        let got = log.read(0, 1).await.unwrap();
        assert_eq!(first_offset(&got), 0);
        assert_eq!(log.open_segment_files(), 2);
        assert_eq!(
            log.offset_for_timestamp(now + 50).await.unwrap(),
            Some((234, now + 50)) // batch 46, record 4 (timestamp deltas 0..4)
        );
        let all = log.read(0, usize::MAX).await.unwrap();
        assert_eq!(all.len(), 100);
        let more = append(&log, now);
        log.wait_durable(more, true).await.unwrap();
        // Retention deletes segments whose files are closed.
        log.close_idle_segments(now_ms() + 120_000, 60_000).await;
        log.update_config(small(LogConfig {
            retention_bytes: 4096,
            ..LogConfig::default()
        }));
        let out = log.enforce_retention(now_ms()).await.unwrap();
        assert!(out.segments_deleted > 0);
        assert_eq!(
            first_offset(&log.read(0, 1).await.unwrap()),
            log.log_start_offset()
        );
        log.close().await.unwrap();
    });
}
