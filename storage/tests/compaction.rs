//! Contract tests of log compaction on a real filesystem inside a glommio executor.

mod common;

use common::{run, temp_dir};
use std::collections::BTreeMap;

use storage::batch::test_support::{encode_compressed_batch, TestRecord, NO_PRODUCER};
use storage::batch::{validate_produce_records, BatchHeader};
use storage::codec::Codec;
use storage::compaction::{keyed_records, records_body};
use storage::{now_ms, LogConfig, PartitionLog};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        // Big enough to hold the whole log: compaction must not leave stale batches in it.
        cache_bytes_max: 1 << 20,
        compact: true,
        delete_retention_ms: 60_000,
        ..LogConfig::default()
    }
}

fn rec(key: Option<&str>, value: Option<&str>) -> TestRecord {
    TestRecord {
        key: key.map(|k| k.as_bytes().to_vec()),
        value: value.map(|v| v.as_bytes().to_vec()),
        ..TestRecord::default()
    }
}

fn append(log: &PartitionLog, ts: i64, records: &[TestRecord]) -> i64 {
    append_with(log, ts, records, Codec::None)
}

fn append_with(log: &PartitionLog, ts: i64, records: &[TestRecord], codec: Codec) -> i64 {
    let b = encode_compressed_batch(0, ts, NO_PRODUCER, records, codec);
    let h = validate_produce_records(&b).unwrap();
    log.append(&b, &h).unwrap().last_offset
}

/// (offset, key, value) of every record served from the log start.
type Contents = Vec<(i64, Option<String>, Option<String>)>;

/// (offset, key, value) of every record served from the log start.
async fn contents(log: &PartitionLog) -> Contents {
    let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
    let mut out = Vec::new();
    let mut next_base = log.log_start_offset();
    for batch in log.read(0, usize::MAX).await.unwrap() {
        let h = BatchHeader::parse(&batch).unwrap();
        // Compaction drops batches left without records: offsets may skip, never go back.
        assert!(h.base_offset >= next_base, "entries in offset order");
        assert_eq!(h.total_bytes(), batch.len());
        assert_eq!(
            crc32c::crc32c(&batch[21..]),
            h.crc,
            "served batches have valid CRCs"
        );
        next_base = h.last_offset() + 1;
        let body = records_body(&batch, &h).expect("batches decompress");
        for r in keyed_records(&body, &h).unwrap() {
            out.push((r.offset, s(r.key), s(r.value)));
        }
    }
    out
}

#[test]
fn compaction_keeps_the_latest_per_key_and_drops_tombstones_after_their_horizon() {
    let dir = temp_dir();
    let path = dir.path().join("c-0");
    run(|| async move {
        let log = PartitionLog::open(&path, config()).await.unwrap();
        let now = now_ms();
        let old = now - 3_600_000;
        // 40 batches, each codec in turn: keys k0..k7 rewritten over and over, values
        // v<round>.
        let mut latest: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
        for round in 0..40 {
            let records: Vec<TestRecord> = (0..4)
                .map(|i| {
                    let key = format!("k{}", (round * 4 + i) % 8);
                    rec(Some(&key), Some(&format!("v{round}-{i}")))
                })
                .collect();
            let last = append_with(&log, now, &records, Codec::ALL[round % 5]);
            for (i, r) in records.iter().enumerate() {
                let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
                let value = String::from_utf8(r.value.clone().unwrap()).unwrap();
                latest.insert(key, (last - 3 + i as i64, Some(value)));
            }
        }
        // Tombstones for k1 (produced an hour ago) and k2, a record without key. Both
        // tombstones stay delete.retention.ms after the pass that first keeps them, whatever
        // their own timestamps (Kafka's delete horizon).
        let t_old = append(&log, old, &[rec(Some("k1"), None)]);
        let t_new = append(&log, now, &[rec(Some("k2"), None)]);
        let no_key = append(&log, now, &[rec(None, Some("anon"))]);
        latest.insert("k1".into(), (t_old, None));
        latest.insert("k2".into(), (t_new, None));
        // Enough "tail" records after them that all of the above is in closed segments.
        let mut last = no_key;
        for _ in 0..40 {
            last = append(&log, now, &[rec(Some("tail"), Some("t"))]);
        }
        log.wait_durable(last, true).await.unwrap();
        let before = contents(&log).await;
        // Compaction reopens the files of idle (closed) segments.
        assert!(log.close_idle_segments(now + 120_000, 60_000).await > 0);
        assert!(log.compaction_due(now));
        let segments_before = log.segment_count();
        let out = log.compact(now, u64::MAX / 2).await.unwrap();
        assert!(out.segments_rewritten >= 2, "{out:?}");
        assert_eq!(
            log.segment_count(),
            segments_before - out.segments_rewritten + out.segments_after
        );
        assert!(out.batches_removed > 0, "emptied batches dropped: {out:?}");
        assert!(out.bytes_after < out.bytes_before, "{out:?}");
        assert!(out.records_removed >= 150, "{out:?}");
        assert!(!log.compaction_due(now), "nothing new to compact");
        let after = contents(&log).await;
        let after_offsets: Vec<i64> = after.iter().map(|r| r.0).collect();
        // Offsets never change: the survivors are a subset of the originals, in order.
        let before_offsets: std::collections::BTreeSet<i64> = before.iter().map(|r| r.0).collect();
        assert!(after_offsets.windows(2).all(|w| w[0] < w[1]));
        assert!(after_offsets.iter().all(|o| before_offsets.contains(o)));
        for (key, (offset, value)) in &latest {
            let hits: Vec<_> = after
                .iter()
                .filter(|r| r.1.as_deref() == Some(key.as_str()))
                .collect();
            assert_eq!(hits.len(), 1, "{key}: {hits:?}");
            assert_eq!((&hits[0].0, &hits[0].2), (offset, value), "{key}");
        }
        assert!(
            after.iter().any(|r| r.0 == no_key),
            "records without a key stay"
        );
        // Before the horizon (now + delete.retention.ms) no pass is due.
        assert!(!log.compaction_due(now + 59_000));
        // After it, the next pass drops both tombstones.
        assert!(log.compaction_due(now + 60_000));
        log.compact(now + 120_000, u64::MAX / 2).await.unwrap();
        let later = contents(&log).await;
        assert!(
            !later.iter().any(|r| r.0 == t_new || r.0 == t_old),
            "due tombstones dropped"
        );
        assert!(!later.iter().any(|r| r.1.as_deref() == Some("k1")));
        assert!(!log.compaction_due(now + 120_000), "no tombstone left");
        log.close().await.unwrap();
        // Reopen: the compacted segments recover with the same content.
        let log = PartitionLog::open(&path, config()).await.unwrap();
        assert_eq!(contents(&log).await, later);
        assert_eq!(log.log_end_offset(), last + 1);
        // The cleaner checkpoint remembers the pass: an unchanged log is not cleaned again.
        assert!(
            !log.compaction_due(now + 120_000),
            "checkpointed pass repeated"
        );
        log.close().await.unwrap();
        // A damaged checkpoint is ignored: the next pass cleans everything again.
        std::fs::write(path.join("cleaner-checkpoint"), b"junk").unwrap();
        let log = PartitionLog::open(&path, config()).await.unwrap();
        assert!(
            log.compaction_due(now + 120_000),
            "damaged checkpoint trusted"
        );
        log.close().await.unwrap();
        // A stale copy from an interrupted pass is removed at start.
        std::fs::write(path.join("00000000000000000000.cleaned"), b"junk").unwrap();
        let log = PartitionLog::open(&path, config()).await.unwrap();
        assert!(!path.join("00000000000000000000.cleaned").exists());
        assert_eq!(contents(&log).await, later);
        log.close().await.unwrap();
    });
}

#[test]
fn the_key_map_bound_limits_what_one_pass_cleans() {
    let dir = temp_dir();
    run(|| async move {
        let now = now_ms();
        let mut rewritten = Vec::new();
        // The same log twice: once with the default key map, once with a map too small for
        // the 16 keys of the first segment (`log.cleaner.dedupe.buffer.size`).
        for (name, key_map_bytes) in [("big", LogConfig::default().key_map_bytes), ("tiny", 300)] {
            let config = LogConfig {
                key_map_bytes,
                ..config()
            };
            let log = PartitionLog::open(&dir.path().join(name), config)
                .await
                .unwrap();
            let mut last = 0;
            for round in 0..60 {
                let records: Vec<TestRecord> = (0..4)
                    .map(|i| rec(Some(&format!("k{}", (round * 4 + i) % 16)), Some("v")))
                    .collect();
                last = append(&log, now, &records);
            }
            log.wait_durable(last, true).await.unwrap();
            let before = contents(&log).await;
            let out = log.compact(now, u64::MAX / 2).await.unwrap();
            let after = contents(&log).await;
            assert_eq!(
                after.last().map(|r| r.0),
                before.last().map(|r| r.0),
                "the newest records stay"
            );
            rewritten.push(out.segments_rewritten);
            log.close().await.unwrap();
        }
        assert!(rewritten[0] > 0, "the default map cleans: {rewritten:?}");
        assert!(
            rewritten[1] < rewritten[0],
            "a full map cleans fewer segments: {rewritten:?}"
        );
    });
}

/// A log of `rounds` batches of 4 records over `keys` keys, synced.
async fn fill(log: &PartitionLog, now: i64, rounds: usize, keys: usize) -> i64 {
    let mut last = 0;
    for round in 0..rounds {
        let records: Vec<TestRecord> = (0..4)
            .map(|i| rec(Some(&format!("k{}", (round * 4 + i) % keys)), Some("v")))
            .collect();
        last = append(log, now, &records);
    }
    log.wait_durable(last, true).await.unwrap();
    last
}

#[test]
fn a_pass_waits_for_the_dirty_ratio_and_a_compacted_log_stays_small() {
    let dir = temp_dir();
    run(|| async move {
        let now = now_ms();
        let log = PartitionLog::open(&dir.path().join("ratio"), config())
            .await
            .unwrap();
        // 400 keys: the live data fills a few segments, so one new segment is not half.
        let keys = 400;
        let mut last = fill(&log, now, 200, keys).await;
        assert!(log.compaction_due(now), "a never-cleaned log is all dirty");
        log.compact(now, u64::MAX / 2).await.unwrap();
        let (mut passes, mut merged, mut rolls) = (0, 0, 0);
        let mut segments = log.segment_count();
        for round in 0..3000 {
            let records: Vec<TestRecord> = (0..4)
                .map(|i| rec(Some(&format!("k{}", (round * 4 + i) % keys)), Some("v")))
                .collect();
            last = append(&log, now, &records);
            if log.segment_count() > segments {
                rolls += 1;
                log.wait_durable(last, true).await.unwrap();
                if log.compaction_due(now) {
                    passes += 1;
                    let out = log.compact(now, u64::MAX / 2).await.unwrap();
                    merged += out.segments_rewritten - out.segments_after;
                }
            }
            segments = log.segment_count();
        }
        // Passes run once the dirty part is half the closed bytes, not on every roll; they
        // merge the small cleaned segments; and the log stays near its live data instead of
        // growing with what was written.
        eprintln!(
            "rolls {rolls} passes {passes} merged {merged} size {} segments {}",
            log.size_bytes(),
            log.segment_count()
        );
        assert!(passes >= 3, "passes: {passes}, rolls: {rolls}");
        assert!(passes * 2 <= rolls, "passes: {passes}, rolls: {rolls}");
        assert!(merged > 0, "no segments merged");
        let live = 4 * config().segment_bytes;
        assert!(
            log.size_bytes() < 3 * live,
            "log grew to {} bytes",
            log.size_bytes()
        );
        let after = contents(&log).await;
        assert_eq!(
            after.last().map(|r| r.0),
            Some(last),
            "the newest record stays"
        );
        log.close().await.unwrap();
    });
}

#[test]
fn recovery_finishes_a_merge_interrupted_before_the_merged_segments_were_unlinked() {
    let dir = temp_dir();
    let path = dir.path().join("merge");
    let saved = dir.path().join("saved");
    run(|| async move {
        let now = now_ms();
        let log = PartitionLog::open(&path, config()).await.unwrap();
        // A first pass leaves small cleaned segments that the next one merges.
        fill(&log, now, 60, 8).await;
        log.compact(now, u64::MAX / 2).await.unwrap();
        fill(&log, now, 60, 8).await;
        log.close().await.unwrap();
        // Keep a copy of every segment as it was before the pass.
        std::fs::create_dir_all(&saved).unwrap();
        let segment_files = |dir: &std::path::Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".log") || n.ends_with(".index"))
                .collect();
            names.sort();
            names
        };
        for name in segment_files(&path) {
            std::fs::copy(path.join(&name), saved.join(&name)).unwrap();
        }
        let log = PartitionLog::open(&path, config()).await.unwrap();
        let out = log.compact(now, u64::MAX / 2).await.unwrap();
        assert!(out.segments_after < out.segments_rewritten, "{out:?}");
        let compacted = contents(&log).await;
        log.close().await.unwrap();
        // The state of a crash after the rename: the merged first segment without its
        // index, and the other segments of its run still there.
        let now_there = segment_files(&path);
        let mut restored = 0;
        for name in segment_files(&saved) {
            if !path.join(&name).exists() {
                std::fs::copy(saved.join(&name), path.join(&name)).unwrap();
                restored += 1;
            }
        }
        assert!(restored > 0, "the merge removed segments");
        // (The pass unlinks the first segment's index before the rename.)
        std::fs::remove_file(path.join(&now_there[0])).unwrap();
        assert!(now_there[0].ends_with(".index"));
        let log = PartitionLog::open(&path, config()).await.unwrap();
        assert_eq!(contents(&log).await, compacted);
        assert_eq!(segment_files(&path), now_there, "leftovers removed");
        log.close().await.unwrap();
    });
}

#[test]
fn an_idempotent_producers_last_batch_stays_when_its_records_are_superseded() {
    let dir = temp_dir();
    run(|| async move {
        let now = now_ms();
        let log = PartitionLog::open(&dir.path().join("pid"), config())
            .await
            .unwrap();
        let producer = storage::batch::test_support::TestProducer {
            producer_id: 77,
            producer_epoch: 0,
            base_sequence: 0,
        };
        let b = encode_compressed_batch(
            0,
            now,
            producer,
            &[rec(Some("k0"), Some("old"))],
            Codec::None,
        );
        let h = validate_produce_records(&b).unwrap();
        let pid_batch = log.append(&b, &h).unwrap().last_offset;
        let last = fill(&log, now, 60, 8).await;
        log.compact(now, u64::MAX / 2).await.unwrap();
        let mut kept = false;
        for batch in log.read(0, usize::MAX).await.unwrap() {
            let h = BatchHeader::parse(&batch).unwrap();
            if h.base_offset == pid_batch {
                assert_eq!((h.producer_id, h.record_count), (77, 0));
                kept = true;
            }
        }
        assert!(kept, "the producer's last batch was dropped");
        assert_eq!(contents(&log).await.last().map(|r| r.0), Some(last));
        log.close().await.unwrap();
    });
}
