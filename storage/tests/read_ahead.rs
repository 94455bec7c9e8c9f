//! Read-ahead per reader: consumers reading one segment file at different places each keep
//! their own windows (up to `READ_STREAMS` of them), get every batch in order, and more
//! readers than streams still read correctly (the least recently used stream goes); a
//! thread's bound on read-ahead memory caps the streams over all files.

mod common;

use common::{run, sized_batch, temp_dir};
use storage::batch::validate_produce_records;
use storage::segment::{
    live_read_ahead_streams, set_read_ahead_bytes_max, READ_STREAMS, STREAM_BYTES,
};
use storage::{LogConfig, PartitionLog};

const BATCHES: usize = 1200;

/// One consumer: where it reads next and how far it goes.
struct Reader {
    next: i64,
    end: i64,
}

/// A log of `BATCHES` batches of 12 KB in one segment file, all written; and the batches.
async fn filled_log(path: &std::path::Path) -> (PartitionLog, Vec<Vec<u8>>) {
    let config = LogConfig {
        cache_bytes_max: 64 << 10,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(path, config).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..BATCHES {
        let (mut b, h) = sized_batch(12_000, i as u8);
        let o = log.append(&b, &h).unwrap();
        storage::batch::patch_base_offset(&mut b, o.base_offset);
        expected.push(b);
    }
    log.wait_durable(BATCHES as i64 - 1, false).await.unwrap();
    (log, expected)
}

/// `readers` consumers, each over its own slice of the log, taking turns with Fetch-sized
/// reads; checks every batch and returns the most read-ahead streams seen at once.
async fn read_interleaved(log: &PartitionLog, expected: &[Vec<u8>], readers: usize) -> usize {
    let step = (BATCHES / readers) as i64;
    let mut all: Vec<Reader> = (0..readers as i64)
        .map(|r| Reader {
            next: r * step,
            end: (r + 1) * step,
        })
        .collect();
    let mut most_streams = 0;
    while all.iter().any(|r| r.next < r.end) {
        for reader in all.iter_mut().filter(|r| r.next < r.end) {
            for got in log.read(reader.next, 256 << 10).await.unwrap() {
                let h = validate_produce_records(&got).unwrap();
                assert_eq!(h.base_offset, reader.next, "in order, none twice");
                assert_eq!(got, expected[reader.next as usize]);
                reader.next = h.last_offset() + 1;
            }
        }
        most_streams = most_streams.max(log.read_ahead_streams());
    }
    most_streams
}

#[test]
fn readers_at_different_places_each_keep_their_read_ahead() {
    let dir = temp_dir();
    let path = dir.path().join("read-ahead-0");
    run(|| async move {
        let (log, expected) = filled_log(&path).await;
        for readers in [2, READ_STREAMS + 2] {
            assert_eq!(
                read_interleaved(&log, &expected, readers).await,
                readers.min(READ_STREAMS),
                "{readers} readers, one stream each up to the bound"
            );
            log.close_idle_segments(i64::MAX, 0).await;
            assert_eq!(log.read_ahead_streams(), 0, "idle readers' windows go");
        }
        log.close().await.unwrap();
    });
}

#[test]
fn the_threads_read_ahead_bound_caps_the_streams() {
    let dir = temp_dir();
    let path = dir.path().join("read-ahead-bound-0");
    run(|| async move {
        set_read_ahead_bytes_max(2 * STREAM_BYTES);
        let (log, expected) = filled_log(&path).await;
        assert_eq!(read_interleaved(&log, &expected, 3).await, 2);
        assert!(live_read_ahead_streams() <= 2);
        log.close_idle_segments(i64::MAX, 0).await;
        assert_eq!(
            live_read_ahead_streams(),
            0,
            "dropped windows leave the count"
        );
        log.close().await.unwrap();
        set_read_ahead_bytes_max(usize::MAX);
    });
}
