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
async fn contents(log: &PartitionLog) -> Vec<(i64, Option<String>, Option<String>)> {
    let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
    let mut out = Vec::new();
    let mut next_base = log.log_start_offset();
    for batch in log.read(0, usize::MAX).await.unwrap() {
        let h = BatchHeader::parse(&batch).unwrap();
        assert_eq!(h.base_offset, next_base, "entries stay contiguous");
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
        let out = log.compact(now, u64::MAX / 2).await.unwrap();
        assert!(out.segments_rewritten >= 2, "{out:?}");
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
