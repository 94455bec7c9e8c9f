//! Back-pressure on the write backlog: `append_with_room` holds an append back while the bytes
//! appended and not yet written would pass the tail cache's bound, lets the held-back appends
//! go in arrival order, and never strands the line when one of them is cancelled.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::{run, sized_batch, temp_dir};
use futures::FutureExt;
use storage::{LogConfig, PartitionLog};

const BOUND: usize = 64 << 10;

async fn open(name: &str, dir: &tempfile::TempDir) -> PartitionLog {
    let config = LogConfig {
        cache_bytes_max: BOUND,
        ..LogConfig::default()
    };
    PartitionLog::open(&dir.path().join(name), config)
        .await
        .unwrap()
}

/// Fills the backlog past the bound with synchronous appends (the writer cannot run between
/// them); returns the last offset.
fn overfill(log: &PartitionLog) -> i64 {
    let mut last = -1;
    while log.unwritten_bytes() <= 2 * BOUND as u64 {
        let (b, h) = sized_batch(8000, 0xaa);
        last = log.append(&b, &h).unwrap().last_offset;
    }
    last
}

#[test]
fn appends_past_the_bound_wait_for_the_writer_and_go_in_arrival_order() {
    let dir = temp_dir();
    run(|| async move {
        let log = open("backlog-order-0", &dir).await;
        let (b, h) = sized_batch(8000, 1);
        let first = log.append_with_room(&b, &h).now_or_never();
        assert!(
            first.is_some(),
            "an empty backlog takes the append without yielding"
        );
        let full_at = overfill(&log);
        let order = Rc::new(RefCell::new(Vec::new()));
        let waiters: Vec<_> = (0..3u8)
            .map(|i| {
                let (log, order) = (log.clone(), order.clone());
                glommio::spawn_local(async move {
                    let (b, h) = sized_batch(8000, 10 + i);
                    let outcome = log.append_with_room(&b, &h).await.unwrap();
                    // What was appended before it is within the bound.
                    let entry = storage::entry::entry_bytes(b.len()) as u64;
                    assert!(log.unwritten_bytes() <= BOUND as u64 + entry);
                    order.borrow_mut().push((i, outcome.base_offset));
                })
            })
            .collect();
        glommio::yield_if_needed().await;
        glommio::executor().yield_task_queue_now().await;
        // A newcomer queues behind the ones waiting, even if it could fit by then.
        let (b, h) = sized_batch(8000, 99);
        let last = log.append_with_room(&b, &h).await.unwrap();
        for w in waiters {
            w.await;
        }
        let order = order.borrow().clone();
        assert_eq!(order.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(order.windows(2).all(|w| w[0].1 < w[1].1), "{order:?}");
        assert!(order[0].1 > full_at);
        assert!(last.base_offset > order[2].1, "the newcomer went last");
        assert_eq!(log.appends_waiting_for_room(), 0);
        log.wait_durable(last.last_offset, false).await.unwrap();
        let placed = order.iter().map(|&(i, at)| (10 + i, at));
        for (fill, at) in placed.chain([(99, last.base_offset)]) {
            let batch = log.read(at, 1).await.unwrap().remove(0);
            let filled = batch.iter().filter(|&&x| x == fill).count();
            assert!(filled >= 8000, "offset {at} holds the batch of {fill}");
        }
        log.close().await.unwrap();
    });
}

#[test]
fn a_cancelled_wait_lets_the_next_append_go() {
    let dir = temp_dir();
    run(|| async move {
        let log = open("backlog-cancel-0", &dir).await;
        overfill(&log);
        let (b, h) = sized_batch(8000, 7);
        let mut cancelled = Box::pin(log.append_with_room(&b, &h));
        assert!(futures::poll!(&mut cancelled).is_pending());
        assert_eq!(log.appends_waiting_for_room(), 1);
        drop(cancelled);
        assert_eq!(log.appends_waiting_for_room(), 0);
        let outcome = log.append_with_room(&b, &h).await.unwrap();
        log.wait_durable(outcome.last_offset, false).await.unwrap();
        log.close().await.unwrap();
    });
}

#[test]
fn a_batch_larger_than_the_bound_goes_once_the_backlog_is_empty() {
    let dir = temp_dir();
    run(|| async move {
        let log = open("backlog-large-0", &dir).await;
        overfill(&log);
        let (b, h) = sized_batch(4 * BOUND, 3);
        let outcome = log.append_with_room(&b, &h).await.unwrap();
        assert!(log.unwritten_bytes() >= b.len() as u64);
        log.wait_durable(outcome.last_offset, false).await.unwrap();
        assert_eq!(log.unwritten_bytes(), 0);
        let back = log.read(outcome.base_offset, usize::MAX).await.unwrap();
        assert_eq!(back[0].len(), b.len());
        log.close().await.unwrap();
    });
}
