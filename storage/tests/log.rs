//! Contract tests of `PartitionLog`, driven inside a glommio `LocalExecutor` on a real
//! filesystem (O_DIRECT does not work on tmpfs, so temp dirs live under the target dir).

mod common;

use common::{run, sized_batch, temp_dir};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use storage::batch::test_support::{
    encode_batch, encode_compressed_batch, encode_raw, simple_records, TestProducer, TestRecord,
    NO_PRODUCER,
};
use storage::batch::{validate_produce_records, BatchHeader};
use storage::codec::Codec;
use storage::entry::entry_bytes;
use storage::{LogConfig, PartitionLog};

/// Serialises executors: the machine is small and each executor pins DMA memory.
fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        cache_bytes_max: 1024,
        ..LogConfig::default()
    }
}

/// A batch of `n` records with base timestamp `ts`.
fn batch(n: usize, ts: i64) -> (Vec<u8>, BatchHeader) {
    with_producer(n, ts, NO_PRODUCER)
}

fn with_producer(n: usize, ts: i64, p: TestProducer) -> (Vec<u8>, BatchHeader) {
    let b = encode_batch(0, ts, p, &simple_records(n));
    let h = validate_produce_records(&b).unwrap();
    (b, h)
}

fn append(log: &PartitionLog, n: usize, ts: i64) -> (i64, i64) {
    let (b, h) = batch(n, ts);
    let o = log.append(&b, &h).unwrap();
    assert!(!o.duplicate);
    (o.base_offset, o.last_offset)
}

/// Checks that `batches` are contiguous valid batches starting at `from` and returns the
/// offset after the last.
fn check_contiguous(batches: &[Bytes], from: i64) -> i64 {
    let mut next = from;
    for b in batches {
        let h = validate_produce_records(b).expect("served batches are valid");
        assert_eq!(h.base_offset, next);
        next = h.last_offset() + 1;
    }
    next
}

async fn read_all(log: &PartitionLog) -> Vec<Bytes> {
    log.read(log.log_start_offset(), usize::MAX).await.unwrap()
}

fn active_segment(dir: &Path) -> PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn append_read_round_trip() {
    let dir = temp_dir();
    let path = dir.path().join("orders-0");
    run(|| async move {
        let log = PartitionLog::open(&path, LogConfig::default())
            .await
            .unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
        assert!(log.read(0, 1 << 20).await.unwrap().is_empty());
        assert_eq!(append(&log, 3, 1000), (0, 2));
        assert_eq!(append(&log, 2, 2000), (3, 4));
        assert_eq!(append(&log, 1, 3000), (5, 5));
        assert_eq!(log.high_watermark(), 6);
        let all = log.read(0, 1 << 20).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(check_contiguous(&all, 0), 6);
        // Middle of the second batch returns that whole batch first.
        let mid = log.read(4, 1 << 20).await.unwrap();
        assert_eq!(check_contiguous(&mid, 3), 6);
        // max_bytes smaller than a batch still returns one batch.
        assert_eq!(log.read(0, 1).await.unwrap().len(), 1);
        assert!(log.read(6, 1 << 20).await.unwrap().is_empty());
        assert!(log.read(100, 1 << 20).await.unwrap().is_empty());
        log.wait_durable(5, true).await.unwrap();
        log.close().await.unwrap();
    });
}

#[test]
fn concurrent_appends_share_group_commit() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(|| async move {
        let log = PartitionLog::open(&path, LogConfig::default())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let (_, last) = append(&log, 1 + i % 3, i as i64);
                log.wait_durable(last, true).await.unwrap();
                last
            }));
        }
        let mut lasts = Vec::new();
        for t in tasks {
            lasts.push(t.await);
        }
        assert_eq!(log.log_end_offset(), lasts.iter().max().unwrap() + 1);
        let all = read_all(&log).await;
        assert_eq!(all.len(), 64);
        assert_eq!(check_contiguous(&all, 0), log.log_end_offset());
        log.close().await.unwrap();
        assert!(
            log.append(&batch(1, 0).0, &batch(1, 0).1).is_err(),
            "closed log refuses appends"
        );
    });
}

#[test]
fn segments_roll_and_reads_cross_them_after_reopen() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    let p = path.clone();
    run(|| async move {
        let log = PartitionLog::open(&p, small_config()).await.unwrap();
        for i in 0..100 {
            append(&log, 2, 1000 + i);
            if i % 10 == 0 {
                log.wait_durable(log.log_end_offset() - 1, i % 20 == 0)
                    .await
                    .unwrap();
            }
        }
        assert_eq!(log.log_end_offset(), 200);
        let all = read_all(&log).await;
        assert_eq!((all.len(), check_contiguous(&all, 0)), (100, 200));
        // Small max_bytes from an old offset (disk, not cache) within and across segments.
        let some = log.read(37, 1000).await.unwrap();
        assert!(!some.is_empty());
        assert_eq!(validate_produce_records(&some[0]).unwrap().base_offset, 36);
        log.close().await.unwrap();
    });
    let logs = std::fs::read_dir(&path)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    let indexes = std::fs::read_dir(&path)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "index")
        })
        .count();
    assert!(logs > 3, "expected several segments, got {logs}");
    assert_eq!(
        indexes, logs,
        "every segment has an index file (the active one written at close)"
    );
    let p = path.clone();
    run(|| async move {
        let log = PartitionLog::open(&p, small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 200);
        let all = read_all(&log).await;
        assert_eq!((all.len(), check_contiguous(&all, 0)), (100, 200));
        for off in [0, 1, 77, 150, 199] {
            let r = log.read(off, 1).await.unwrap();
            let h = validate_produce_records(&r[0]).unwrap();
            assert!(h.base_offset <= off && off <= h.last_offset());
        }
        assert_eq!(append(&log, 1, 5), (200, 200));
        log.close().await.unwrap();
    });
    // A damaged index file is rebuilt by scanning.
    let first_index = path.join(format!("{:020}.index", 0));
    std::fs::write(&first_index, b"garbage").unwrap();
    run(|| async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 201);
        assert_eq!(check_contiguous(&read_all(&log).await, 0), 201);
        log.close().await.unwrap();
    });
}

#[test]
fn crash_with_garbage_tail_recovers_to_last_valid_entry() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    let p = path.clone();
    run(|| async move {
        let log = PartitionLog::open(&p, LogConfig::default()).await.unwrap();
        for i in 0..10 {
            append(&log, 3, i);
        }
        log.wait_durable(29, true).await.unwrap();
        // Dropped without close: a crash as far as the files are concerned.
    });
    let seg = active_segment(&path);
    let (b, _) = batch(3, 0);
    let entry = entry_bytes(b.len()) as u64;
    let mut data = std::fs::read(&seg).unwrap();
    // Garbage right after the last entry (inside the zero-padded page) and past the page.
    let end = (entry * 10) as usize;
    data[end..end + 13].copy_from_slice(b"GARBAGE_BYTES");
    data.extend_from_slice(&[0xAB; 5000]);
    std::fs::write(&seg, &data).unwrap();
    let p = path.clone();
    run(|| async move {
        let log = PartitionLog::open(&p, LogConfig::default()).await.unwrap();
        assert_eq!(log.log_end_offset(), 30);
        assert_eq!(append(&log, 2, 0), (30, 31));
        log.wait_durable(31, true).await.unwrap();
        assert_eq!(check_contiguous(&read_all(&log).await, 0), 32);
    });
    // Torn last entry: corrupt a byte inside entry #11 (offsets 30..31) -> it is dropped.
    let mut data = std::fs::read(&seg).unwrap();
    assert_eq!(data.len() as u64 % 4096, 0, "file tail is page padded");
    assert!(
        data[(entry * 10) as usize + entry_bytes(batch(2, 0).0.len())..]
            .iter()
            .all(|x| *x == 0),
        "garbage zeroed"
    );
    data[(entry * 10) as usize + 100] ^= 0xff;
    std::fs::write(&seg, &data).unwrap();
    run(|| async move {
        let log = PartitionLog::open(&path, LogConfig::default())
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 30);
        assert_eq!(append(&log, 1, 0), (30, 30));
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, LogConfig::default())
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 31);
        assert_eq!(check_contiguous(&read_all(&log).await, 0), 31);
        log.close().await.unwrap();
    });
}

#[test]
fn duplicates_are_not_appended_and_survive_reopen_and_crash() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    let p0 = TestProducer {
        producer_id: 9,
        producer_epoch: 0,
        base_sequence: 0,
    };
    let p3 = TestProducer {
        base_sequence: 3,
        ..p0
    };
    let p5 = TestProducer {
        base_sequence: 5,
        ..p0
    };
    let p = path.clone();
    run(|| async move {
        let log = PartitionLog::open(&p, small_config()).await.unwrap();
        append(&log, 1, 0);
        let (b, h) = with_producer(3, 10, p0);
        let first = log.append(&b, &h).unwrap();
        assert_eq!(
            (first.base_offset, first.last_offset, first.duplicate),
            (1, 3, false)
        );
        let again = log.append(&b, &h).unwrap();
        assert_eq!(
            (again.base_offset, again.last_offset, again.duplicate),
            (1, 3, true)
        );
        assert_eq!(log.log_end_offset(), 4);
        // An out-of-order sequence is refused with Kafka's code.
        let (b5, h5) = with_producer(1, 10, p5);
        assert_eq!(log.append(&b5, &h5).unwrap_err().kafka_error_code(), 45);
        log.close().await.unwrap();
    });
    let p = path.clone();
    run(|| async move {
        let log = PartitionLog::open(&p, small_config()).await.unwrap();
        let (b, h) = with_producer(3, 10, p0);
        let again = log.append(&b, &h).unwrap();
        assert_eq!((again.base_offset, again.duplicate), (1, true));
        let (b3, h3) = with_producer(2, 10, p3);
        let next = log.append(&b3, &h3).unwrap();
        assert_eq!(
            (next.base_offset, next.last_offset, next.duplicate),
            (4, 5, false)
        );
        log.wait_durable(5, true).await.unwrap();
        // Crash: no snapshot for this batch; recovery replays it from the segment.
    });
    run(|| async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 6);
        let (b3, h3) = with_producer(2, 10, p3);
        let dup = log.append(&b3, &h3).unwrap();
        assert_eq!(
            (dup.base_offset, dup.last_offset, dup.duplicate),
            (4, 5, true)
        );
        log.close().await.unwrap();
    });
}

#[test]
fn crash_after_rolls_recovers_segments_and_producers() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    let p = path.clone();
    run(|| async move {
        let log = PartitionLog::open(&p, small_config()).await.unwrap();
        for seq in 0..60 {
            let prod = TestProducer {
                producer_id: 1,
                producer_epoch: 0,
                base_sequence: seq * 2,
            };
            let (b, h) = with_producer(2, seq as i64, prod);
            log.append(&b, &h).unwrap();
        }
        log.wait_durable(119, true).await.unwrap();
    });
    run(|| async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 120);
        assert_eq!(check_contiguous(&read_all(&log).await, 0), 120);
        // The last PRODUCER_BATCHES_MAX batches are recognised as duplicates.
        for seq in [56, 59] {
            let prod = TestProducer {
                producer_id: 1,
                producer_epoch: 0,
                base_sequence: seq * 2,
            };
            let (b, h) = with_producer(2, seq as i64, prod);
            let o = log.append(&b, &h).unwrap();
            assert!(o.duplicate, "recent batch {seq} must be recognised");
            assert_eq!(o.base_offset, seq as i64 * 2);
        }
        let prod = TestProducer {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: 120,
        };
        let (b, h) = with_producer(1, 0, prod);
        assert_eq!(log.append(&b, &h).unwrap().base_offset, 120);
        log.close().await.unwrap();
    });
}

/// Records with these timestamp deltas (out of order, the largest twice).
fn records_at(deltas: &[i64]) -> Vec<TestRecord> {
    deltas
        .iter()
        .enumerate()
        .map(|(i, &timestamp_delta)| TestRecord {
            timestamp_delta,
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(vec![b'v'; 100]),
            headers: Vec::new(),
        })
        .collect()
}

#[test]
fn timestamp_lookups_walk_compressed_batches() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(|| async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        assert_eq!(log.max_timestamp_offset().await.unwrap(), None);
        let deltas = [0, 5, 3, 9, 9, 2];
        for (i, codec) in Codec::ALL.into_iter().enumerate() {
            let base_ts = 10_000 * (i as i64 + 1);
            let b = encode_compressed_batch(0, base_ts, NO_PRODUCER, &records_at(&deltas), codec);
            let h = validate_produce_records(&b).unwrap();
            let base = log.append(&b, &h).unwrap().base_offset;
            assert_eq!(base, 6 * i as i64);
            let at = |ts| log.offset_for_timestamp(base_ts + ts);
            assert_eq!(at(0).await.unwrap(), Some((base, base_ts)), "{codec:?}");
            assert_eq!(at(4).await.unwrap(), Some((base + 1, base_ts + 5)));
            assert_eq!(at(6).await.unwrap(), Some((base + 3, base_ts + 9)));
            assert_eq!(at(9).await.unwrap(), Some((base + 3, base_ts + 9)));
            // The first record of the largest timestamp (offsets 3 and 4 share it).
            assert_eq!(
                log.max_timestamp_offset().await.unwrap(),
                Some((base + 3, base_ts + 9)),
                "{codec:?}"
            );
        }
        // An older timestamp later in the log does not move the max.
        append(&log, 2, 5);
        assert_eq!(
            log.max_timestamp_offset().await.unwrap(),
            Some((27, 50_009))
        );
        log.close().await.unwrap();
    });
}

#[test]
fn offset_for_timestamp_record_and_batch_level() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(|| async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), None);
        for i in 0..30 {
            append(&log, 3, 1000 * (i + 1)); // offsets 3i..3i+2, timestamps 1000(i+1)+{0,1,2}
        }
        let compressed = encode_raw(0, 1, 50_000, 50_007, NO_PRODUCER, 4, b"opaque");
        let h = validate_produce_records(&compressed).unwrap();
        assert_eq!(log.append(&compressed, &h).unwrap().base_offset, 90);
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((0, 1000)));
        assert_eq!(
            log.offset_for_timestamp(2001).await.unwrap(),
            Some((4, 2001))
        );
        assert_eq!(
            log.offset_for_timestamp(2003).await.unwrap(),
            Some((6, 3000))
        );
        assert_eq!(
            log.offset_for_timestamp(25_002).await.unwrap(),
            Some((74, 25_002))
        );
        assert_eq!(
            log.offset_for_timestamp(40_000).await.unwrap(),
            Some((90, 50_007))
        );
        assert_eq!(log.offset_for_timestamp(60_000).await.unwrap(), None);
        log.close().await.unwrap();
    });
}

#[test]
fn fetch_waiters_wake_on_append() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(|| async move {
        let log = PartitionLog::open(&path, LogConfig::default())
            .await
            .unwrap();
        let waiter = {
            let log = log.clone();
            glommio::spawn_local(async move {
                log.wait_for_data_after(0).await;
                log.read(0, 1 << 20).await.unwrap().len()
            })
        };
        glommio::yield_if_needed().await;
        append(&log, 2, 0);
        assert_eq!(waiter.await, 1);
        log.wait_for_data_after(1).await; // already satisfied: returns at once
        log.close().await.unwrap();
    });
}

/// Batches of very different sizes land in write chunks of different sizes (one larger than
/// a chunk, many sharing one, chunks ending mid-page); every read, from the tail cache while
/// writes are in flight or from disk after eviction and reopen, returns the same bytes.
#[test]
fn write_chunks_of_any_size_read_back_the_same() {
    let dir = temp_dir();
    let path = dir.path().join("chunks-0");
    run(|| async move {
        let config = LogConfig {
            cache_bytes_max: 64 << 10,
            ..LogConfig::default()
        };
        let sizes = [10, 5000, 1, 300 << 10, 4000, 77, 8191, 100 << 10, 3, 4096];
        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        let mut expected: Vec<Vec<u8>> = Vec::new();
        for round in 0..3u8 {
            for (i, &size) in sizes.iter().enumerate() {
                let (mut b, h) = sized_batch(size, round * 16 + i as u8);
                let o = log.append(&b, &h).unwrap();
                storage::batch::patch_base_offset(&mut b, o.base_offset);
                expected.push(b);
                if i % 3 == 0 {
                    log.wait_durable(o.last_offset, i % 2 == 0).await.unwrap();
                }
                let got = log.read(o.base_offset, 1).await.unwrap();
                assert_eq!(got[0], expected[o.base_offset as usize], "tail read {o:?}");
            }
        }
        let all = read_all(&log).await;
        assert_eq!(all.len(), expected.len());
        for (i, (got, want)) in all.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "batch {i} before reopen");
        }
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, config).await.unwrap();
        let all = read_all(&log).await;
        for (i, (got, want)) in all.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "batch {i} after reopen");
        }
        assert_eq!(all.len(), expected.len());
        // Appends after a reopen continue the recovered partial page.
        let (b, h) = sized_batch(123, 9);
        let o = log.append(&b, &h).unwrap();
        log.wait_durable(o.last_offset, true).await.unwrap();
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, LogConfig::default())
            .await
            .unwrap();
        let all = read_all(&log).await;
        assert_eq!(all.len(), expected.len() + 1);
        assert_eq!(check_contiguous(&all, 0), o.last_offset + 1);
        log.close().await.unwrap();
    });
}

/// Catch-up reads walk many read windows with read-ahead in flight: a consumer that reads
/// the log from the start in Fetch-sized steps, while appends keep growing the active
/// segment (its partial last page rewritten under the windows read ahead), gets every batch
/// once, in order, byte for byte; and an idle reader's windows are dropped.
#[test]
fn sequential_catch_up_reads_get_every_batch_while_the_log_grows() {
    let dir = temp_dir();
    let path = dir.path().join("catch-up-0");
    run(|| async move {
        let config = LogConfig {
            cache_bytes_max: 64 << 10,
            segment_bytes: 6 << 20,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&path, config).await.unwrap();
        let mut expected: Vec<Vec<u8>> = Vec::new();
        let append_some = |expected: &mut Vec<Vec<u8>>, count: usize| {
            for _ in 0..count {
                let size = [700, 20_000, 3000, 65_000, 1][expected.len() % 5];
                let (mut b, h) = sized_batch(size, expected.len() as u8);
                let o = log.append(&b, &h).unwrap();
                storage::batch::patch_base_offset(&mut b, o.base_offset);
                expected.push(b);
            }
        };
        append_some(&mut expected, 400);
        let mut next = 0i64;
        let mut reads = 0;
        while (next as usize) < expected.len() || reads < 10 {
            let end = log.log_end_offset() - 1;
            log.wait_durable(end, false).await.unwrap();
            for got in log.read(next, 256 << 10).await.unwrap() {
                let h = validate_produce_records(&got).unwrap();
                assert_eq!(h.base_offset, next, "batches come in order, none twice");
                assert_eq!(got, expected[next as usize], "batch {next}");
                next = h.last_offset() + 1;
            }
            reads += 1;
            if reads < 40 {
                append_some(&mut expected, 7);
            }
        }
        assert_eq!(next as usize, expected.len());
        assert!(log.segment_count() > 1, "the reads crossed segments");
        assert!(
            log.read_ahead_held(),
            "a catch-up reader holds read windows"
        );
        log.close_idle_segments(i64::MAX, 0).await;
        assert!(
            !log.read_ahead_held(),
            "an idle reader's windows are dropped"
        );
        log.close().await.unwrap();
    });
}

/// The tail cache's bound moves at runtime (the broker shares a shard's bound by activity):
/// a lower bound evicts the written batches at once and later written appends stay within it; a
/// higher one lets the cache grow again; reads are the same from cache or disk; the last
/// append's time is kept.
#[test]
fn the_cache_bound_moves_without_losing_a_batch() {
    let dir = temp_dir();
    let path = dir.path().join("cache-bound-0");
    run(|| async move {
        let config = LogConfig {
            cache_bytes_max: 1 << 20,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&path, config).await.unwrap();
        assert_eq!(log.last_append_ms(), i64::MIN);
        // A tail reader at the start: the cache keeps what it has not read, up to its bound.
        log.note_reader_at(0);
        let before = storage::now_ms();
        let mut last = 0;
        for i in 0..64 {
            let (b, h) = sized_batch(8000, i as u8);
            last = log.append(&b, &h).unwrap().last_offset;
        }
        assert!(log.last_append_ms() >= before);
        log.wait_durable(last, false).await.unwrap();
        let cached = log.cache_bytes();
        assert!(
            cached > 256 << 10,
            "the cache holds what was appended: {cached}"
        );
        let expected = read_all(&log).await;

        log.set_cache_bytes_max(16 << 10);
        assert_eq!(log.cache_bytes_max(), 16 << 10);
        assert!(
            log.cache_bytes() <= 16 << 10,
            "{} cached",
            log.cache_bytes()
        );
        assert_eq!(
            read_all(&log).await,
            expected,
            "evicted batches come from disk"
        );
        for i in 0..16 {
            let (b, h) = sized_batch(8000, i as u8);
            last = log.append(&b, &h).unwrap().last_offset;
        }
        log.wait_durable(last, false).await.unwrap();
        assert!(
            log.cache_bytes() <= 16 << 10,
            "appends stay within the bound"
        );

        log.set_cache_bytes_max(1 << 20);
        for i in 0..32 {
            let (b, h) = sized_batch(8000, i as u8);
            last = log.append(&b, &h).unwrap().last_offset;
        }
        log.wait_durable(last, false).await.unwrap();
        assert!(log.cache_bytes() > 128 << 10, "the cache grows again");
        let all = read_all(&log).await;
        assert_eq!(&all[..expected.len()], &expected[..]);
        assert_eq!(check_contiguous(&all, 0), last + 1);
        log.close().await.unwrap();
    });
}

#[test]
fn a_burst_sizes_the_next_write_chunk_for_a_burst_like_it() {
    let dir = temp_dir();
    let path = dir.path().join("chunk-hint-0");
    run(|| async move {
        let log = PartitionLog::open(&path, LogConfig::default())
            .await
            .unwrap();
        // About 1 MiB between two turns of the writer: chunks of growing size, the last one
        // holding only the remainder.
        let mut last = 0;
        for i in 0..132 {
            let (b, h) = sized_batch(8000, i as u8);
            last = log.append(&b, &h).unwrap().last_offset;
        }
        log.wait_durable(last, false).await.unwrap();
        let cached = log.cache_bytes();
        let (b, h) = sized_batch(8000, 0);
        last = log.append(&b, &h).unwrap().last_offset;
        let grown = log.cache_bytes() - cached;
        assert!(
            grown >= 512 << 10,
            "the next chunk is sized by the whole burst, not its last chunk: {grown} bytes"
        );
        log.wait_durable(last, false).await.unwrap();
        assert_eq!(check_contiguous(&read_all(&log).await, 0), last + 1);
        log.close().await.unwrap();
    });
}
