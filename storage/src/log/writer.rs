//! The writer task of a partition log: group commit of pending write chunks (one O_DIRECT
//! write each), fdatasync, segment roll, and the producer snapshot frame.

use super::*;
use glommio::io::DmaBuffer;
use latency::Stage;
use std::time::Instant;

pub(super) fn encode_snapshot_frame(covered_offset: i64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + payload.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC.to_le_bytes());
    out.extend_from_slice(&covered_offset.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// (covered offset, payload) of a snapshot frame, `None` if it is damaged.
pub(super) fn decode_snapshot_frame(buf: &[u8]) -> Option<(i64, &[u8])> {
    if buf.len() < SNAPSHOT_HEADER_BYTES {
        return None;
    }
    let magic = u32::from_le_bytes(buf[0..4].try_into().ok()?);
    let offset = i64::from_le_bytes(buf[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(buf[12..16].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf[16..20].try_into().ok()?);
    let payload = buf.get(SNAPSHOT_HEADER_BYTES..SNAPSHOT_HEADER_BYTES + len)?;
    (magic == SNAPSHOT_MAGIC && crc32c::crc32c(payload) == crc).then_some((offset, payload))
}

pub(super) async fn writer_loop(weak: Weak<Shared>) {
    loop {
        let listener = {
            let Some(shared) = weak.upgrade() else { return };
            if shared.inner.borrow().has_writer_work() {
                flush_once(&shared).await;
                continue;
            }
            let inner = shared.inner.borrow();
            if inner.closing && inner.writer.is_none() {
                return;
            }
            drop(inner);
            // A failed log waits here too: `retry_after_failure` may wake it.
            let listener = shared.writer_wake.listen();
            if shared.inner.borrow().has_writer_work() {
                continue;
            }
            listener
        };
        listener.await;
    }
}

/// Disk full, quota, or a short write: the bytes were not (all) written and the same write
/// can succeed later. An fdatasync error is never retryable (the kernel may have dropped the
/// dirty state it reported on).
fn retryable(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::WriteZero
    )
}

/// One group-commit cycle: write everything pending, fdatasync if asked, wake waiters. On a
/// failure the unwritten items go back in front of the queue and the log refuses appends
/// until `retry_after_failure` (retryable errors) or for good.
async fn flush_once(shared: &Rc<Shared>) {
    let (mut items, mut writer) = {
        let mut inner = shared.inner.borrow_mut();
        (std::mem::take(&mut inner.pending), inner.writer.take())
    };
    let result = write_pending(shared, &mut items, &mut writer).await;
    let ok = result.is_ok();
    {
        let mut inner = shared.inner.borrow_mut();
        inner.writer = writer;
        if let Err((e, can_retry)) = result {
            let can_retry = can_retry && retryable(e.source.kind());
            warn!(error = %e, retryable = can_retry, "partition log write failed; appends are refused");
            while let Some(item) = items.pop_back() {
                inner.pending.push_front(item);
            }
            inner.failed = Some((e.source.kind(), e.to_string()));
            inner.failure_retryable = can_retry;
        }
    }
    shared.durable_event.notify(usize::MAX);
    if ok {
        checkpoint_if_due(shared).await;
    }
}

/// Every `index_checkpoint_bytes` of active segment, when everything appended is written:
/// fdatasync, then the producer snapshot, then the active segment's index (in that order, so
/// an index on disk never covers more than the snapshot). Recovery then scans only the active
/// segment after the checkpoint. A failure only costs a longer recovery: it is logged.
pub(super) async fn checkpoint_if_due(shared: &Rc<Shared>) {
    let (dir, file, base, size, index, snapshot) = {
        let mut inner = shared.inner.borrow_mut();
        let active = inner.segments.last().expect("a log always has a segment");
        let due =
            active.written_bytes >= inner.checkpointed_bytes + inner.config.index_checkpoint_bytes;
        let consistent = inner.pending.is_empty()
            && inner.written_offset == inner.log_end_offset
            && active.index.size_bytes == active.written_bytes;
        let Some(file) = active.file.clone() else {
            return;
        };
        if !due || !consistent || active.written_bytes == 0 || inner.closing {
            return;
        }
        let snapshot =
            encode_snapshot_frame(inner.log_end_offset, &inner.producers.encode_snapshot());
        let work = (
            inner.dir.clone(),
            file,
            active.index.base_offset,
            active.written_bytes,
            active.index.encode(),
            snapshot,
        );
        inner.checkpointing = true;
        work
    };
    let result = async {
        file.dma.fdatasync().await.map_err(io::Error::from)?;
        segment::write_file_atomic(&dir, SNAPSHOT_FILE, snapshot).await?;
        segment::write_file_atomic(&dir, &segment::file_name(base, "index"), index).await
    }
    .await;
    shared.inner.borrow_mut().checkpointing = false;
    shared.durable_event.notify(usize::MAX);
    match result {
        Ok(()) => {
            let mut inner = shared.inner.borrow_mut();
            if inner.segments.last().map(|s| s.index.base_offset) == Some(base) {
                inner.checkpointed_bytes = size;
            }
        }
        Err(e) => warn!(dir = %dir.display(), base, error = %e, "active index checkpoint failed"),
    }
}

/// Writes `items` from the front, removing each once done: consecutive chunks are sealed
/// together (later appends start the next chunk) and written at once, several writes in
/// flight; a failed write keeps them sealed, so a retry writes the same bytes to the same
/// place. The error says whether the same work may be retried.
async fn write_pending(
    shared: &Rc<Shared>,
    items: &mut VecDeque<Pending>,
    writer: &mut Option<Rc<DmaFile>>,
) -> Result<(), (StorageError, bool)> {
    let dir = shared.inner.borrow().dir.clone();
    // Before the data: the file on disk then never misses the epoch of a written batch.
    persist_epochs(shared, &dir).await?;
    while let Some(item) = items.front() {
        let mut done = 1;
        match item {
            Pending::Data(_) => {
                let file = writer.as_ref().expect("active segment has a writer");
                let group = seal_group(items);
                let started = Instant::now();
                write_chunks(shared, &dir, file, &group).await?;
                latency::record_since(Stage::StorageWrite, started);
                done = group.len();
            }
            Pending::Roll {
                closed_base,
                new_base,
                snapshot,
            } => {
                let old = writer.as_ref().expect("active segment has a writer");
                let (closed_base, new_base) = (*closed_base, *new_base);
                let next =
                    roll_files(shared, &dir, old, closed_base, new_base, snapshot.clone()).await?;
                *writer = Some(next);
            }
        }
        items.drain(..done);
        shared.durable_event.notify(usize::MAX);
    }
    let file = writer.as_ref().expect("active segment has a writer");
    let (target, written) = {
        let inner = shared.inner.borrow();
        (inner.sync_target, inner.written_offset)
    };
    if target > shared.inner.borrow().synced_offset {
        injected_fault(shared, Fault::Sync).map_err(|e| {
            let e = StorageError::new(&dir, "fdatasync of the active segment", e);
            (e, false)
        })?;
        let started = Instant::now();
        file.fdatasync().await.map_err(|e| {
            let e = StorageError::new(&dir, "fdatasync of the active segment", e.into());
            (e, false)
        })?;
        latency::record_since(Stage::StorageFdatasync, started);
        let mut inner = shared.inner.borrow_mut();
        inner.synced_offset = inner.synced_offset.max(written);
        inner.last_sync_ms = now_ms();
    }
    Ok(())
}

/// Writes `leader-epoch-checkpoint` if the epoch cache changed since it was last written (a
/// new leader epoch, a follower's batch of a newer epoch, retention moving the log start).
/// Rare: most cycles only compare two counters.
async fn persist_epochs(shared: &Rc<Shared>, dir: &Path) -> Result<(), (StorageError, bool)> {
    let (changes, bytes) = {
        let inner = shared.inner.borrow();
        if inner.epochs_saved >= inner.epochs_changes {
            return Ok(());
        }
        (inner.epochs_changes, inner.epochs.encode())
    };
    segment::write_file_atomic(dir, leader_epoch::CHECKPOINT_FILE, bytes)
        .await
        .map_err(|e| {
            let e = StorageError::new(dir, "writing the leader-epoch checkpoint", e);
            (e, true)
        })?;
    let mut inner = shared.inner.borrow_mut();
    inner.epochs_saved = inner.epochs_saved.max(changes);
    Ok(())
}

/// Seals the leading run of chunks in `items` and returns them. Each but the last is sealed
/// without its partial last page (its successor writes that page), so their writes never
/// touch the same page; a chunk sealed with it earlier (a retry) ends the run.
fn seal_group(items: &VecDeque<Pending>) -> Vec<(Rc<Chunk>, Sealed)> {
    let mut group = Vec::new();
    let mut run = items.iter().peekable();
    while let Some(Pending::Data(chunk)) = run.next() {
        let followed = matches!(run.peek(), Some(Pending::Data(_)));
        let sealed = chunk.seal(followed);
        let with_tail = sealed.3;
        group.push((chunk.clone(), sealed));
        if with_tail {
            break;
        }
    }
    group
}

/// What `Chunk::seal` returns: buffer, data length, last offset, holds the partial page.
type Sealed = (Rc<DmaBuffer>, usize, i64, bool);

/// Writes the sealed chunks (one O_DIRECT write each from its own buffer, all in flight at
/// once), then records what is written.
async fn write_chunks(
    shared: &Rc<Shared>,
    dir: &Path,
    file: &Rc<DmaFile>,
    group: &[(Rc<Chunk>, Sealed)],
) -> Result<(), (StorageError, bool)> {
    let (last_chunk, (_, last_len, last_offset, _)) = group.last().expect("a non-empty group");
    // Sized by what was appended since the writer's last turn (all of the group's chunks),
    // so a busy partition keeps writing whole chunks instead of restarting from its last
    // chunk's remainder.
    let group_bytes = group.iter().map(|(_, (_, len, ..))| len).sum();
    shared.inner.borrow_mut().chunk_hint = chunk::next_hint(group_bytes);
    let fault = injected_fault(shared, Fault::Write);
    let writes = group
        .iter()
        .filter(|(_, (buf, ..))| !buf.is_empty())
        .map(|(chunk, (buf, ..))| {
            let (buf, at) = (buf.clone(), chunk.file_pos);
            let fault = fault
                .as_ref()
                .map_err(|e| io::Error::new(e.kind(), e.to_string()));
            async move {
                fault?;
                let padded = buf.len();
                let written = file.write_rc_at(buf, at).await.map_err(io::Error::from)?;
                if written != padded {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("short DMA write at {at}: {written} of {padded} bytes"),
                    ));
                }
                Ok(())
            }
        });
    let results = futures::future::join_all(writes).await;
    if let Some(bytes_per_sec) = slow_disk_injected() {
        let secs = group_bytes as f64 / bytes_per_sec as f64;
        glommio::timer::sleep(std::time::Duration::from_secs_f64(secs)).await;
    }
    for result in results {
        result.map_err(|e| {
            let context = format!(
                "writing segment {} up to offset {last_offset}",
                last_chunk.segment_base
            );
            (StorageError::new(dir, context, e), true)
        })?;
    }
    let mut inner = shared.inner.borrow_mut();
    let i = inner.segment_for(last_chunk.segment_base);
    let seg = &mut inner.segments[i];
    assert_eq!(
        seg.index.base_offset, last_chunk.segment_base,
        "pending data for an unknown segment"
    );
    seg.written_bytes = last_chunk.file_pos + *last_len as u64;
    assert!(
        *last_offset >= inner.written_offset,
        "written offset goes backwards"
    );
    inner.written_offset = last_offset + 1;
    inner.evict_cache();
    Ok(())
}

enum Fault {
    Write,
    Sync,
}

/// Tests: the injected error of a segment write or of the active segment's fdatasync, as the
/// disk's own error would come back. `Ok` outside tests unless `disk_full_injected`.
fn injected_fault(shared: &Shared, which: Fault) -> io::Result<()> {
    #[cfg(test)]
    {
        let cell = match which {
            Fault::Write => &shared.write_fault,
            Fault::Sync => &shared.sync_fault,
        };
        if let Some(kind) = cell.get() {
            return Err(io::Error::new(kind, "injected fault"));
        }
    }
    if matches!(which, Fault::Write) && disk_full_injected() {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            "injected fault: SPATE_FAULT_DISK_FULL_WHILE",
        ));
    }
    let _ = shared;
    Ok(())
}

/// Fault injection for the integration tests (tests/integration/test_injected_disk.py): with
/// `SPATE_FAULT_DISK_FULL_WHILE=PATH`, every segment write fails with ENOSPC while PATH
/// exists, as on a full disk that frees up when the test removes it. Unset (every real run):
/// one load of a `OnceLock` per group write, no system call.
fn disk_full_injected() -> bool {
    static WHILE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    WHILE
        .get_or_init(|| std::env::var_os("SPATE_FAULT_DISK_FULL_WHILE").map(Into::into))
        .as_deref()
        .is_some_and(Path::exists)
}

/// Fault injection for the integration tests (tests/integration/test_injected_disk.py): with
/// `SPATE_FAULT_DISK_BYTES_PER_SEC=N`, each group write takes at least as long as writing its
/// bytes at N bytes/s, as a slow disk would (the back-pressure test without a blkio cgroup).
fn slow_disk_injected() -> Option<u64> {
    static RATE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| {
        let rate = std::env::var("SPATE_FAULT_DISK_BYTES_PER_SEC").ok()?;
        let rate = rate.parse().ok().filter(|r| *r > 0);
        assert!(
            rate.is_some(),
            "SPATE_FAULT_DISK_BYTES_PER_SEC: a positive integer"
        );
        rate
    })
}

/// Syncs the closed segment, persists its index and the producer snapshot, creates the next.
/// Every step can be repeated, so a retryable failure retries the whole roll.
pub(super) async fn roll_files(
    shared: &Rc<Shared>,
    dir: &Path,
    old: &Rc<DmaFile>,
    closed_base: i64,
    new_base: i64,
    snapshot: Vec<u8>,
) -> Result<Rc<DmaFile>, (StorageError, bool)> {
    let ctx = |what: &str, e: io::Error| {
        let e = StorageError::new(dir, format!("{what} (roll {closed_base} -> {new_base})"), e);
        (e, true)
    };
    old.fdatasync().await.map_err(|e| {
        let (e, _) = ctx("fdatasync of closed segment", e.into());
        (e, false)
    })?;
    let index = {
        let mut inner = shared.inner.borrow_mut();
        assert_eq!(
            inner.written_offset, new_base,
            "roll before the closed segment is written"
        );
        inner.synced_offset = inner.synced_offset.max(new_base);
        let i = inner.segment_for(closed_base);
        assert_eq!(inner.segments[i].index.next_offset, new_base);
        inner.segments[i].index.encode()
    };
    segment::write_file_atomic(dir, &segment::file_name(closed_base, "index"), index)
        .await
        .map_err(|e| ctx("writing index", e))?;
    segment::write_file_atomic(dir, SNAPSHOT_FILE, snapshot)
        .await
        .map_err(|e| ctx("writing producer snapshot", e))?;
    let path = dir.join(segment::file_name(new_base, "log"));
    let file = Rc::new(
        segment::open_rw(&path)
            .await
            .map_err(|e| ctx("creating segment", e))?,
    );
    let mut inner = shared.inner.borrow_mut();
    let i = inner.segment_for(new_base);
    let seg = &mut inner.segments[i];
    assert_eq!(seg.index.base_offset, new_base);
    seg.file = Some(Rc::new(SegmentFile::new(file.clone(), path)));
    assert!(new_base > inner.closed_offset, "segments close in order");
    inner.closed_offset = new_base;
    inner.checkpointed_bytes = 0;
    Ok(file)
}

impl PartitionLog {
    /// Tests: every segment write fails with `kind` from now on (None: writes work again).
    #[cfg(test)]
    pub(crate) fn inject_write_fault(&self, kind: Option<io::ErrorKind>) {
        self.shared.write_fault.set(kind);
    }

    /// Tests: every fdatasync of the active segment fails with `kind` (None: works again).
    #[cfg(test)]
    pub(crate) fn inject_sync_fault(&self, kind: Option<io::ErrorKind>) {
        self.shared.sync_fault.set(kind);
    }
}

#[cfg(test)]
mod tests {
    use super::super::read::tests::{dir_on_disk, run};
    use super::*;
    use crate::batch::test_support::{encode_batch, simple_records, NO_PRODUCER};
    use crate::batch::validate_produce_records;

    fn append_one(log: &PartitionLog, ts: i64) -> Result<AppendOutcome, AppendError> {
        let b = encode_batch(0, ts, NO_PRODUCER, &simple_records(1));
        let h = validate_produce_records(&b).expect("valid");
        log.append(&b, &h)
    }

    async fn open_with(path: &Path, count: i64) -> PartitionLog {
        let log = PartitionLog::open(path, LogConfig::default())
            .await
            .expect("open");
        for i in 0..count {
            append_one(&log, 1_000 + i).expect("append");
        }
        log.wait_durable(count - 1, true).await.expect("durable");
        log
    }

    #[test]
    fn a_full_disk_refuses_appends_keeps_reads_and_writes_everything_once_retried() {
        let dir = dir_on_disk();
        let path = dir.path().to_path_buf();
        run(|| async move {
            let log = open_with(&path, 10).await;
            log.inject_write_fault(Some(io::ErrorKind::StorageFull));
            // Accepted into memory; the write fails and the waiter hears of it.
            let queued = append_one(&log, 2_000).expect("append before the write fails");
            let e = log
                .wait_durable(queued.last_offset, true)
                .await
                .expect_err("no space");
            assert_eq!(e.kafka_error_code(), 56);
            assert!(!log.is_offline(), "a full disk is retryable, not offline");
            let refused = append_one(&log, 2_001).expect_err("appends refused while full");
            assert_eq!(refused.kafka_error_code(), 56);
            assert_eq!(
                log.read(0, usize::MAX).await.expect("reads served").len(),
                11
            );
            assert_eq!(log.written_offset(), 10);
            // Space frees: the retry writes the held entry where it was going.
            log.inject_write_fault(None);
            assert!(log.retry_after_failure());
            log.wait_durable(queued.last_offset, true)
                .await
                .expect("written on retry");
            assert_eq!(log.written_offset(), 11);
            let next = append_one(&log, 2_002).expect("appends accepted again");
            assert_eq!(next.base_offset, 11);
            log.wait_durable(next.last_offset, true)
                .await
                .expect("durable");
        });
        let path = dir.path().to_path_buf();
        run(|| async move {
            let log = PartitionLog::open(&path, LogConfig::default())
                .await
                .expect("reopen");
            assert_eq!(log.log_end_offset(), 12);
            assert_eq!(log.read(0, usize::MAX).await.expect("read").len(), 12);
        });
    }

    #[test]
    fn a_write_error_other_than_a_full_disk_is_not_retried() {
        let dir = dir_on_disk();
        let path = dir.path().to_path_buf();
        run(|| async move {
            let log = open_with(&path, 3).await;
            log.inject_write_fault(Some(io::ErrorKind::Other));
            let queued = append_one(&log, 2_000).expect("append");
            assert!(log.wait_durable(queued.last_offset, true).await.is_err());
            assert!(log.is_offline());
            log.inject_write_fault(None);
            assert!(!log.retry_after_failure());
        });
    }

    #[test]
    fn a_failed_fdatasync_takes_the_log_offline_until_restart() {
        let dir = dir_on_disk();
        let path = dir.path().to_path_buf();
        run(|| async move {
            let log = open_with(&path, 5).await;
            log.inject_sync_fault(Some(io::ErrorKind::Other));
            let queued = append_one(&log, 2_000).expect("append");
            let e = log
                .wait_durable(queued.last_offset, true)
                .await
                .expect_err("EIO");
            assert_eq!(e.kafka_error_code(), 56);
            assert!(log.is_offline());
            log.inject_sync_fault(None);
            assert!(
                !log.retry_after_failure(),
                "the kernel may have dropped the dirty pages"
            );
            assert_eq!(
                append_one(&log, 2_001)
                    .expect_err("refused")
                    .kafka_error_code(),
                56
            );
            assert!(log.read(0, usize::MAX).await.is_err());
        });
        let path = dir.path().to_path_buf();
        run(|| async move {
            let log = PartitionLog::open(&path, LogConfig::default())
                .await
                .expect("reopen");
            assert!(!log.is_offline());
            assert!(log.log_end_offset() >= 5);
        });
    }
}
