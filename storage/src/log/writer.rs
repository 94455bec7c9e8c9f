//! The writer task of a partition log: group commit of pending entries, fdatasync, segment
//! roll, and the producer snapshot frame.

use super::*;

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
        let inner = shared.inner.borrow();
        let active = inner.segments.last().expect("a log always has a segment");
        let due =
            active.written_bytes >= inner.checkpointed_bytes + inner.config.index_checkpoint_bytes;
        let consistent = inner.pending.is_empty()
            && inner.written_offset == inner.log_end_offset
            && active.index.size_bytes == active.written_bytes;
        let Some(file) = active.file.clone() else {
            return;
        };
        if !due || !consistent || active.written_bytes == 0 {
            return;
        }
        let snapshot =
            encode_snapshot_frame(inner.log_end_offset, &inner.producers.encode_snapshot());
        (
            inner.dir.clone(),
            file,
            active.index.base_offset,
            active.written_bytes,
            active.index.encode(),
            snapshot,
        )
    };
    let result = async {
        file.dma.fdatasync().await.map_err(io::Error::from)?;
        segment::write_file_atomic(&dir, SNAPSHOT_FILE, snapshot).await?;
        segment::write_file_atomic(&dir, &segment::file_name(base, "index"), index).await
    }
    .await;
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

/// Writes `items` from the front, removing each once done (a partly written data item keeps
/// its unwritten rest). The error says whether the same work may be retried.
async fn write_pending(
    shared: &Rc<Shared>,
    items: &mut VecDeque<Pending>,
    writer: &mut Option<TailWriter>,
) -> Result<(), (StorageError, bool)> {
    let dir = shared.inner.borrow().dir.clone();
    while let Some(item) = items.front_mut() {
        match item {
            Pending::Data {
                segment_base,
                bytes,
                last_offset,
            } => {
                let (segment_base, last_offset) = (*segment_base, *last_offset);
                let w = writer.as_mut().expect("active segment has a writer");
                let start = w.end();
                if let Err(e) = w.append(bytes).await {
                    bytes.drain(..(w.end() - start) as usize);
                    let context =
                        format!("writing segment {segment_base} up to offset {last_offset}");
                    return Err((StorageError::new(&dir, context, e), true));
                }
                let mut inner = shared.inner.borrow_mut();
                let i = inner.segment_for(segment_base);
                let seg = &mut inner.segments[i];
                assert_eq!(
                    seg.index.base_offset, segment_base,
                    "pending data for an unknown segment"
                );
                seg.written_bytes = w.end();
                assert!(
                    last_offset >= inner.written_offset,
                    "written offset goes backwards"
                );
                inner.written_offset = last_offset + 1;
                inner.evict_cache();
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
        items.pop_front();
        shared.durable_event.notify(usize::MAX);
    }
    let w = writer.as_ref().expect("active segment has a writer");
    let (target, written) = {
        let inner = shared.inner.borrow();
        (inner.sync_target, inner.written_offset)
    };
    if target > shared.inner.borrow().synced_offset {
        w.file.fdatasync().await.map_err(|e| {
            let e = StorageError::new(&dir, "fdatasync of the active segment", e.into());
            (e, false)
        })?;
        let mut inner = shared.inner.borrow_mut();
        inner.synced_offset = inner.synced_offset.max(written);
        inner.last_sync_ms = now_ms();
    }
    Ok(())
}

/// Syncs the closed segment, persists its index and the producer snapshot, creates the next.
/// Every step can be repeated, so a retryable failure retries the whole roll.
pub(super) async fn roll_files(
    shared: &Rc<Shared>,
    dir: &Path,
    old: &TailWriter,
    closed_base: i64,
    new_base: i64,
    snapshot: Vec<u8>,
) -> Result<TailWriter, (StorageError, bool)> {
    let ctx = |what: &str, e: io::Error| {
        let e = StorageError::new(dir, format!("{what} (roll {closed_base} -> {new_base})"), e);
        (e, true)
    };
    old.file.fdatasync().await.map_err(|e| {
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
    Ok(TailWriter::new(file, 0, Vec::new()))
}
