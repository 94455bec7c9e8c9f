//! Tail readers: the tail cache keeps what the readers of the tail are about to read and
//! releases the rest, instead of filling its bound on every partition written to.
//!
//! A read is a *tail read* when memory serves it: its offset is in the tail cache, or at the
//! log end (a caught-up consumer or follower waiting for the next batch). A read from disk (a
//! catch-up reader far behind) is not one. A tail reader is *active* while one of its tail
//! reads fell in the current window or the one before ([`TAIL_READER_WINDOW_MS`] each, turned
//! by the owner's maintenance tick through [`PartitionLog::age_tail_readers`]): for 5 to 10 s
//! after its last fetch. Followers' fetches on the leader are tail reads like consumers'.
//!
//! The cache keeps the written batches from the lowest position of the active tail reads (the
//! slowest active reader's) to the end, within its bound, and releases the written batches
//! before it; with no active tail reader it releases every written batch and keeps only the
//! write backlog, which it never drops. A reader costs nothing per reader: each read compares
//! its offset with the window's lowest (one `Cell`), with no clock, allocation or lock.

use std::cell::Cell;

use super::*;

/// Length of a tail reader window: a reader stays active for one to two of them after its
/// last tail read.
pub const TAIL_READER_WINDOW_MS: i64 = 5_000;

/// The lowest tail-read positions of the current and the previous window.
pub(super) struct TailReaders {
    /// Lowest tail-read offset of the current window (`i64::MAX`: none yet).
    current: Cell<i64>,
    /// Lowest tail-read offset of the previous window (`i64::MAX`: none).
    previous: i64,
    /// Wall clock when the current window started.
    window_start_ms: i64,
}

impl TailReaders {
    pub fn new(now_ms: i64) -> Self {
        TailReaders {
            current: Cell::new(i64::MAX),
            previous: i64::MAX,
            window_start_ms: now_ms,
        }
    }

    /// A tail read at `offset`.
    pub fn note(&self, offset: i64) {
        if offset < self.current.get() {
            self.current.set(offset);
        }
    }

    /// The slowest active tail reader's position: written batches ending before it are
    /// released. `i64::MAX` when no tail reader is active.
    pub fn keep_from(&self) -> i64 {
        self.current.get().min(self.previous)
    }

    /// Starts a new window once the current one is [`TAIL_READER_WINDOW_MS`] old; returns
    /// whether it did (readers seen only in the window before are forgotten).
    pub fn turn(&mut self, now_ms: i64) -> bool {
        if now_ms.saturating_sub(self.window_start_ms) < TAIL_READER_WINDOW_MS {
            return false;
        }
        self.previous = self.current.replace(i64::MAX);
        self.window_start_ms = now_ms;
        true
    }
}

impl Inner {
    /// Notes a read at `offset` if memory serves it (module docs).
    pub(super) fn note_read(&self, offset: i64) {
        if offset >= self.log_end_offset {
            self.readers.note(self.log_end_offset);
        } else if self.cache.front().is_some_and(|c| c.base_offset <= offset) {
            self.readers.note(offset);
        }
    }

    /// The written batches the cache no longer keeps: past its bound, or behind every active
    /// tail reader (all of them with none). Unwritten batches always stay.
    pub(super) fn evict_cache(&mut self) {
        let keep_from = self.readers.keep_from();
        while let Some(c) = self.cache.front() {
            let written = c.last_offset < self.written_offset;
            let unwanted =
                self.cache_bytes > self.config.cache_bytes_max || c.last_offset < keep_from;
            if !(written && unwanted) {
                break;
            }
            self.pop_cached();
        }
        self.release_written_filling();
    }

    /// The filling chunk once it is written and none of its batches is cached: its partial
    /// last page is all the next chunk needs (as after recovery), so the rest of its memory
    /// goes now rather than at the next append.
    fn release_written_filling(&mut self) {
        let Some(c) = &self.filling else { return };
        let active = self.segments.last().expect("a log always has a segment");
        let done = c.is_sealed()
            && c.segment_base == active.index.base_offset
            && c.end() == active.written_bytes
            && self.cache.back().is_none_or(|b| !Rc::ptr_eq(&b.chunk, c));
        if done {
            self.tail_seed = c.tail_page();
            self.filling = None;
        }
    }
}

impl PartitionLog {
    /// Notes a reader at `offset` that read nothing (a fetch with no bytes left for this
    /// partition): it still counts as a tail reader if memory would serve it. Reads note
    /// themselves.
    pub fn note_reader_at(&self, offset: i64) {
        self.shared.inner.borrow().note_read(offset);
    }

    /// Turns the tail readers' window when due (the owner's maintenance tick calls it with
    /// the wall clock) and releases what no active tail reader needs any more.
    pub fn age_tail_readers(&self, now_ms: i64) {
        let mut inner = self.shared.inner.borrow_mut();
        if inner.readers.turn(now_ms) {
            inner.evict_cache();
        }
    }

    /// The slowest active tail reader's position (`None`: no active tail reader, the cache
    /// keeps only the write backlog).
    pub fn tail_reader_position(&self) -> Option<i64> {
        let keep_from = self.shared.inner.borrow().readers.keep_from();
        (keep_from != i64::MAX).then_some(keep_from)
    }
}

#[cfg(test)]
mod tests {
    use super::super::read::tests::{dir_on_disk, run};
    use super::*;
    use crate::batch::test_support::{encode_batch, TestRecord, NO_PRODUCER};
    use crate::batch::validate_produce_records;

    const W: i64 = TAIL_READER_WINDOW_MS;

    /// Appends `count` batches of about 8 KB and waits until they are written.
    async fn append_written(log: &PartitionLog, count: usize) -> i64 {
        let mut last = -1;
        for i in 0..count {
            let record = TestRecord {
                value: Some(vec![i as u8; 8000]),
                ..TestRecord::default()
            };
            let b = encode_batch(0, 1_000 + i as i64, NO_PRODUCER, &[record]);
            let h = validate_produce_records(&b).expect("valid");
            last = log.append(&b, &h).expect("append").last_offset;
        }
        log.wait_durable(last, false).await.expect("written");
        last
    }

    async fn open(path: &Path) -> PartitionLog {
        let config = LogConfig {
            cache_bytes_max: 4 << 20,
            ..LogConfig::default()
        };
        PartitionLog::open(path, config).await.expect("open")
    }

    /// Whether memory serves a read at `offset`: disk reads fail (damaged data, which does not
    /// take the log offline) while it is asked.
    async fn served_from_memory(log: &PartitionLog, offset: i64) -> bool {
        log.inject_read_fault(Some(io::ErrorKind::InvalidData));
        let read = log.read(offset, 1).await;
        log.inject_read_fault(None);
        read.is_ok()
    }

    #[test]
    fn windows_keep_the_lowest_tail_read_for_one_to_two_windows() {
        let mut readers = TailReaders::new(0);
        assert_eq!(readers.keep_from(), i64::MAX, "no reader yet");
        readers.note(40);
        readers.note(30);
        readers.note(50);
        assert_eq!(readers.keep_from(), 30, "the slowest reader");
        assert!(!readers.turn(W - 1), "the window is not over");
        assert!(readers.turn(W));
        readers.note(60);
        assert_eq!(readers.keep_from(), 30, "the window before still counts");
        assert!(readers.turn(2 * W));
        assert_eq!(
            readers.keep_from(),
            60,
            "a reader that moved on frees its past"
        );
        assert!(readers.turn(3 * W));
        assert_eq!(
            readers.keep_from(),
            i64::MAX,
            "no tail read for two windows"
        );
    }

    #[test]
    fn with_no_tail_reader_written_batches_leave_the_cache() {
        let dir = dir_on_disk();
        let path = dir.path().to_path_buf();
        run(|| async move {
            let log = open(&path).await;
            let last = append_written(&log, 64).await;
            assert_eq!(log.tail_reader_position(), None);
            assert_eq!(log.cache_bytes(), 0, "nobody reads: only the backlog stays");
            // A catch-up read from disk does not make its reader a tail reader.
            assert_eq!(log.read(0, 100).await.expect("from disk").len(), 1);
            assert_eq!(log.tail_reader_position(), None);
            // The next chunk starts from the released one's last page: nothing is lost.
            assert_eq!(append_written(&log, 8).await, last + 8);
            assert_eq!(log.read(0, usize::MAX).await.expect("read").len(), 72);
            log.close().await.expect("close");
            let log = open(&path).await;
            assert_eq!(log.read(0, usize::MAX).await.expect("reread").len(), 72);
        });
    }

    #[test]
    fn a_tail_reader_keeps_what_it_has_not_read_and_frees_what_it_has() {
        let dir = dir_on_disk();
        let path = dir.path().to_path_buf();
        run(|| async move {
            let log = open(&path).await;
            let t0 = now_ms();
            // A consumer waiting at the end: what comes next stays in memory for it.
            assert!(log.read(0, 100).await.expect("empty").is_empty());
            assert_eq!(log.tail_reader_position(), Some(0));
            append_written(&log, 64).await;
            let held = log.cache_bytes();
            assert!(held >= 64 * 8000, "kept for the reader: {held}");
            assert!(served_from_memory(&log, 0).await);
            // It reads half; a window later what it read is released.
            assert!(served_from_memory(&log, 32).await);
            log.age_tail_readers(t0 + W);
            assert!(served_from_memory(&log, 32).await);
            log.age_tail_readers(t0 + 2 * W);
            assert_eq!(log.tail_reader_position(), Some(32));
            assert!(log.cache_bytes() < held, "{} of {held}", log.cache_bytes());
            assert!(
                served_from_memory(&log, 32).await,
                "its next read is in memory"
            );
            assert!(
                !served_from_memory(&log, 0).await,
                "what it read is on disk only"
            );
            // It stops reading: two windows later the cache lets everything written go.
            log.age_tail_readers(t0 + 3 * W);
            log.age_tail_readers(t0 + 4 * W);
            assert_eq!(log.tail_reader_position(), None);
            assert_eq!(log.cache_bytes(), 0);
            assert_eq!(log.read(0, usize::MAX).await.expect("disk").len(), 64);
        });
    }

    #[test]
    fn the_slowest_active_reader_sets_what_stays() {
        let dir = dir_on_disk();
        let path = dir.path().to_path_buf();
        run(|| async move {
            let log = open(&path).await;
            let t0 = now_ms();
            log.note_reader_at(0);
            append_written(&log, 64).await;
            // A follower at 10, a consumer at 50, in the same window.
            log.note_reader_at(50);
            log.note_reader_at(10);
            log.age_tail_readers(t0 + W);
            log.note_reader_at(50);
            log.note_reader_at(10);
            log.age_tail_readers(t0 + 2 * W);
            assert_eq!(log.tail_reader_position(), Some(10));
            assert!(served_from_memory(&log, 10).await);
            assert!(!served_from_memory(&log, 5).await);
        });
    }

    #[test]
    fn the_write_backlog_stays_without_readers() {
        let dir = dir_on_disk();
        let path = dir.path().to_path_buf();
        run(|| async move {
            let log = open(&path).await;
            append_written(&log, 4).await;
            log.inject_write_fault(Some(io::ErrorKind::StorageFull));
            let b = encode_batch(0, 9_000, NO_PRODUCER, &[TestRecord::default()]);
            let h = validate_produce_records(&b).expect("valid");
            let queued = log.append(&b, &h).expect("append");
            assert!(log.wait_durable(queued.last_offset, false).await.is_err());
            let t0 = now_ms();
            log.age_tail_readers(t0 + W);
            log.age_tail_readers(t0 + 2 * W);
            assert_eq!(log.tail_reader_position(), None);
            assert!(log.cache_bytes() > 0, "unwritten data stays in memory");
            assert!(served_from_memory(&log, queued.base_offset).await);
            log.inject_write_fault(None);
            assert!(log.retry_after_failure());
            log.wait_durable(queued.last_offset, false)
                .await
                .expect("written");
            // The read above was a tail read: two windows later it is forgotten.
            log.age_tail_readers(t0 + 3 * W);
            log.age_tail_readers(t0 + 4 * W);
            assert_eq!(log.cache_bytes(), 0, "written now, and nobody reads it");
        });
    }
}
