//! Read-ahead per reader: consumers reading one segment file at different places each keep
//! their own windows (up to `READ_STREAMS` of them), get every batch in order, and more
//! readers than streams still read correctly (the least recently used stream goes).

mod common;

use common::{run, sized_batch, temp_dir};
use storage::batch::validate_produce_records;
use storage::segment::READ_STREAMS;
use storage::{LogConfig, PartitionLog};

const BATCHES: usize = 1200;

/// One consumer: where it reads next and how far it goes.
struct Reader {
    next: i64,
    end: i64,
}

#[test]
fn readers_at_different_places_each_keep_their_read_ahead() {
    let dir = temp_dir();
    let path = dir.path().join("read-ahead-0");
    run(|| async move {
        let config = LogConfig {
            cache_bytes_max: 64 << 10,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&path, config).await.unwrap();
        let mut expected = Vec::new();
        for i in 0..BATCHES {
            let (mut b, h) = sized_batch(12_000, i as u8);
            let o = log.append(&b, &h).unwrap();
            storage::batch::patch_base_offset(&mut b, o.base_offset);
            expected.push(b);
        }
        log.wait_durable(BATCHES as i64 - 1, false).await.unwrap();
        for readers in [2, READ_STREAMS + 2] {
            let step = (BATCHES / readers) as i64;
            let mut all: Vec<Reader> = (0..readers as i64)
                .map(|r| Reader {
                    next: r * step,
                    end: (r + 1) * step,
                })
                .collect();
            let mut most_streams = 0;
            while all.iter().any(|r| r.next < r.end) {
                // Interleaved Fetch-sized reads, one per reader in turn.
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
            assert_eq!(
                most_streams,
                readers.min(READ_STREAMS),
                "{readers} readers, one stream each up to the bound"
            );
            log.close_idle_segments(i64::MAX, 0).await;
            assert_eq!(log.read_ahead_streams(), 0, "idle readers' windows go");
        }
        log.close().await.unwrap();
    });
}
