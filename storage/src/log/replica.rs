//! What replication needs of a partition log: leader epochs (stamped into a leader's batches,
//! remembered in the leader-epoch cache), a follower's checks of its leader's batches
//! (`append_replicated` itself shares `append`'s body), and truncation back to where a
//! follower's log diverged from its leader's (Kafka's `truncateTo` and
//! `truncateFullyAndStartAt`).
//!
//! Truncation holds the maintenance permit (no retention or compaction pass runs meanwhile),
//! lets the writer task finish everything pending, then blocks it and appends
//! (`Inner::truncating`) while it rewrites the files, in an order that a crash at any point
//! recovers from: later segments are unlinked first (newest first, so the log on disk stays
//! contiguous), then the segment holding the cut is truncated, its partial last page rewritten
//! and fdatasync'ed, then the producer snapshot, the index checkpoint and the leader-epoch
//! checkpoint are replaced. Only then does it return, so the cut records never come back.
//! A failure part way fails the log (as a failed fdatasync does): recovery at the next start
//! sorts the files out.

use super::*;
use crate::segment::TailWriter;

/// What `cut_in_memory` changed that the files must follow.
struct CutApplied {
    /// Base of the cut segment (the active one now).
    base: i64,
    log_end_offset: i64,
    /// The later segments, out of the list, their files still to unlink.
    removed: Vec<Segment>,
    /// The log start moved down to the new end.
    log_start_moved: bool,
    /// The compaction checkpoint moved down to the cut segment.
    compacted_moved: bool,
}

/// Where a truncation cuts the segment holding its offset.
struct Cut {
    /// Index of the segment in `Inner::segments`.
    segment: usize,
    /// Position of the first entry removed (the segment's size when none is).
    position: u64,
    /// The segment's index up to `position`.
    index: SegmentIndex,
}

impl Inner {
    /// A follower's batch continues the log: it starts at or after the log end, and its
    /// leader epoch (when defined) is not older than the latest. Returns its base offset.
    pub(super) fn check_replicated(&self, header: &BatchHeader) -> Result<i64, ReplicaError> {
        if header.base_offset < self.log_end_offset {
            return Err(ReplicaError::OffsetBelowLogEnd {
                base_offset: header.base_offset,
                log_end_offset: self.log_end_offset,
            });
        }
        let epoch = header.partition_leader_epoch;
        match self.epochs.latest_epoch() {
            Some(latest_epoch) if epoch >= 0 && epoch < latest_epoch => {
                Err(ReplicaError::EpochBelowLatest {
                    epoch,
                    latest_epoch,
                })
            }
            _ => Ok(header.base_offset),
        }
    }

    /// A follower appended a batch of leader epoch `epoch` at `base_offset`: a newer epoch
    /// starts there (persisted by the writer task before the batch is written).
    pub(super) fn note_replicated_epoch(&mut self, epoch: i32, base_offset: i64) {
        if epoch < 0 || self.epochs.latest_epoch().is_some_and(|l| epoch <= l) {
            return;
        }
        self.epochs.assign(epoch, base_offset);
        self.epochs_changed();
        // A newer leader wrote this: this replica's own stamp (if it led before) is stale.
        self.leader_epoch = None;
    }

    /// Drops the cached batches at or after `offset` (all written: truncation settled the
    /// writer first); a chunk stops counting once none of its batches is cached.
    fn drop_cached_from(&mut self, offset: i64) {
        while let Some(c) = self.cache.back() {
            if c.base_offset < offset {
                break;
            }
            assert!(
                c.last_offset < self.written_offset,
                "truncating unwritten data"
            );
            let c = self.cache.pop_back().expect("checked above");
            let chunk_done = self
                .cache
                .back()
                .is_none_or(|prev| !Rc::ptr_eq(&prev.chunk, &c.chunk));
            if chunk_done {
                self.cache_bytes -= c.chunk.capacity();
            }
        }
    }

    /// The offsets' order: everything closed is synced, synced is written, written is
    /// appended.
    fn assert_offsets(&self) {
        assert!(
            self.closed_offset <= self.synced_offset
                && self.synced_offset <= self.written_offset
                && self.written_offset <= self.log_end_offset
                && self.log_start_offset <= self.log_end_offset,
            "log offsets out of order: start {} closed {} synced {} written {} end {}",
            self.log_start_offset,
            self.closed_offset,
            self.synced_offset,
            self.written_offset,
            self.log_end_offset
        );
    }
}

impl PartitionLog {
    /// This replica becomes the leader in `epoch` (Kafka's `maybeAssignEpochStartOffset`):
    /// the epoch starts at the current log end offset in the leader-epoch cache, and from now
    /// on `append` stamps `epoch` into each batch's partitionLeaderEpoch. The latest epoch
    /// again only turns stamping on. An older epoch is refused with a warning: returns
    /// `false`, nothing changes. The cache reaches `leader-epoch-checkpoint` lazily: the
    /// writer task saves it before it writes the first data after the change (an entry that
    /// starts at the log end means nothing until a batch follows it, and recovery drops such
    /// an entry anyway), so a new partition or an idle one costs no fsync here.
    pub async fn set_leader_epoch(&self, epoch: i32) -> Result<bool, StorageError> {
        assert!(epoch >= 0, "leader epoch {epoch} is undefined");
        {
            let mut inner = self.shared.inner.borrow_mut();
            inner.check_usable()?;
            let latest = inner.epochs.latest_epoch();
            if latest.is_some_and(|l| epoch < l) {
                warn!(dir = %inner.dir.display(), epoch, latest, "refusing an older leader epoch");
                return Ok(false);
            }
            inner.leader_epoch = Some(epoch);
            if latest == Some(epoch) {
                return Ok(true);
            }
            let leo = inner.log_end_offset;
            inner.epochs.assign(epoch, leo);
            tracing::debug!(dir = %inner.dir.display(), epoch, start_offset = leo, "new leader epoch");
            inner.epochs_changed();
        }
        Ok(true)
    }

    /// The newest leader epoch of the log, if any.
    pub fn latest_leader_epoch(&self) -> Option<i32> {
        self.shared.inner.borrow().epochs.latest_epoch()
    }

    /// OffsetsForLeaderEpoch: `(epoch, end offset)` for a follower's `epoch`, Kafka's
    /// semantics (`LeaderEpochCache::end_offset_for`, against the log end offset).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let inner = self.shared.inner.borrow();
        inner.epochs.end_offset_for(epoch, inner.log_end_offset)
    }

    /// The leader-epoch cache: `(epoch, start offset)`, oldest first.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        let inner = self.shared.inner.borrow();
        let entries = inner.epochs.entries().iter();
        entries.map(|e| (e.epoch, e.start_offset)).collect()
    }

    /// Resolves once the leader-epoch checkpoint on disk holds change `changes`.
    pub(super) async fn wait_epochs_saved(&self, changes: u64) -> Result<(), StorageError> {
        loop {
            let listener = {
                let inner = self.shared.inner.borrow();
                if let Some((kind, msg)) = &inner.failed {
                    return Err(inner.error("write failed", io::Error::new(*kind, msg.clone())));
                }
                if inner.epochs_saved >= changes {
                    return Ok(());
                }
                self.shared.durable_event.listen()
            };
            self.shared.writer_wake.notify(1);
            listener.await;
        }
    }

    /// Kafka's `truncateTo`: removes the first batch whose last offset is at or after
    /// `offset` and everything after it, durably, and returns the new log end offset (that
    /// batch's base offset in a log without gaps: `offset` itself when it is a batch
    /// boundary, as a follower's truncation points are; after a gap, the end of the last
    /// batch kept). Nothing happens when `offset` is at or past the log end. Below the first
    /// segment the log is emptied and starts at `offset` (`truncate_fully_and_start_at`).
    /// The caller makes sure nothing appends meanwhile (appends are refused while it runs).
    /// See the module docs for the order of the file changes.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64, StorageError> {
        assert!(offset >= 0, "truncating to a negative offset");
        let _one = self.shared.maintenance.acquire_permit(1).await;
        let below_first = {
            let inner = self.shared.inner.borrow();
            inner.check_usable()?;
            if offset >= inner.log_end_offset {
                return Ok(inner.log_end_offset);
            }
            offset < inner.segments[0].index.base_offset
        };
        self.settle_writer().await?;
        let result = if below_first {
            self.start_empty_at(offset).await.map(|()| offset)
        } else {
            self.truncate_settled(offset).await
        };
        self.finish_truncation(result)
    }

    /// Kafka's `truncateFullyAndStartAt` (a follower whose fetch offset is below its leader's
    /// log start): deletes every segment and starts an empty log at `offset` (log start and
    /// end), with empty producer state and leader-epoch cache, durably.
    pub async fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), StorageError> {
        assert!(offset >= 0, "starting a log at a negative offset");
        let _one = self.shared.maintenance.acquire_permit(1).await;
        self.shared.inner.borrow().check_usable()?;
        self.settle_writer().await?;
        let result = self.start_empty_at(offset).await;
        self.finish_truncation(result)
    }

    /// Waits until the writer task has written and synced everything appended and persisted
    /// the epoch cache, with nothing in flight, then blocks it and appends (`truncating`).
    async fn settle_writer(&self) -> Result<(), StorageError> {
        loop {
            let leo = self.log_end_offset();
            self.wait_durable(leo - 1, true).await?;
            let listener = self.shared.durable_event.listen();
            {
                let mut inner = self.shared.inner.borrow_mut();
                inner.check_usable()?;
                // The writer task holds `writer` while it writes and flags a checkpoint.
                let idle = inner.writer.is_some()
                    && !inner.checkpointing
                    && inner.pending.is_empty()
                    && inner.synced_offset >= inner.log_end_offset
                    && inner.epochs_saved >= inner.epochs_changes;
                if idle {
                    inner.truncating = true;
                    return Ok(());
                }
            }
            self.shared.writer_wake.notify(1);
            listener.await;
        }
    }

    /// Lets appends and the writer task go again; a failed truncation fails the log for good
    /// (its files are in between: recovery sorts them out).
    fn finish_truncation<T>(&self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        {
            let mut inner = self.shared.inner.borrow_mut();
            inner.truncating = false;
            match &result {
                Ok(_) => inner.assert_offsets(),
                Err(e) => {
                    warn!(error = %e, "partition log truncation failed; the log is refused until restart");
                    inner.failed = Some((e.source.kind(), e.to_string()));
                    inner.failure_retryable = false;
                }
            }
        }
        // Readers waiting past the old end look again; the writer may have work again.
        self.shared.data_event.notify(usize::MAX);
        self.shared.durable_event.notify(usize::MAX);
        self.shared.writer_wake.notify(1);
        result
    }

    /// `truncate_to` once the writer is settled and `offset` is inside the log, at or above
    /// the first segment's base.
    async fn truncate_settled(&self, offset: i64) -> Result<i64, StorageError> {
        let cut = self.find_cut(offset).await?;
        let dir = self.shared.inner.borrow().dir.clone();
        let position = cut.position;
        let index_bytes = (position > 0).then(|| cut.index.encode());
        let CutApplied {
            base,
            log_end_offset: new_end,
            removed,
            log_start_moved,
            compacted_moved,
        } = self.cut_in_memory(cut);
        info!(dir = %dir.display(), offset, log_end_offset = new_end, segment = base, position, "truncating the log");
        // Newest first: a crash in between leaves a contiguous log.
        let unlinked = !removed.is_empty();
        for seg in removed.into_iter().rev() {
            retention::remove_segment_files(&dir, seg.index.base_offset, seg.file).await?;
        }
        if unlinked {
            sync_dir(&dir).await?;
        }
        let (dma, tail) = truncate_segment_file(&dir, base, position).await?;
        let producers = self.rebuild_producers(&dir, new_end).await?;
        let snapshot = encode_snapshot_frame(new_end, &producers.encode_snapshot());
        write_atomic(&dir, SNAPSHOT_FILE, snapshot, "the producer snapshot").await?;
        // The segment's index (a closed segment's, or the active one's checkpoint) described
        // the longer segment: the new one is a checkpoint of what is left.
        let index_name = segment::file_name(base, "index");
        match index_bytes {
            Some(bytes) => write_atomic(&dir, &index_name, bytes, "the index checkpoint").await?,
            None => remove_if_present(&dir, &index_name).await?,
        }
        self.save_epochs_while_truncating(&dir).await?;
        self.save_moved_starts(&dir, log_start_moved, compacted_moved)
            .await?;
        let mut inner = self.shared.inner.borrow_mut();
        let path = dir.join(segment::file_name(base, "log"));
        let seg = inner.active();
        assert_eq!(seg.index.base_offset, base);
        seg.file = Some(Rc::new(SegmentFile::new(dma.clone(), path)));
        inner.writer = Some(dma);
        inner.tail_seed = tail;
        inner.checkpointed_bytes = position;
        inner.producers = producers;
        Ok(new_end)
    }

    /// Rewrites `log-start-offset` and `cleaner-checkpoint` when the cut moved them down: both
    /// would be clamped at recovery, but would say too much once the log grows again.
    async fn save_moved_starts(
        &self,
        dir: &Path,
        log_start_moved: bool,
        compacted_moved: bool,
    ) -> Result<(), StorageError> {
        let (log_start, compacted, expiry) = {
            let inner = self.shared.inner.borrow();
            let i = &*inner;
            (
                i.log_start_offset,
                i.compacted_offset,
                i.tombstone_expiry_ms,
            )
        };
        if log_start_moved {
            let bytes = segment::checked_i64s(&[log_start]);
            write_atomic(dir, retention::LOG_START_FILE, bytes, "the log start").await?;
        }
        if compacted_moved {
            let bytes = segment::checked_i64s(&[compacted, expiry]);
            let file = compaction::CHECKPOINT_FILE;
            write_atomic(dir, file, bytes, "the cleaner checkpoint").await?;
        }
        Ok(())
    }

    /// Finds the first entry whose last offset is at or after `offset` in the segment holding
    /// it, and that segment's index up to there (rewound to an index point before it and
    /// replayed: at most about one index interval is read).
    async fn find_cut(&self, offset: i64) -> Result<Cut, StorageError> {
        let (segment, base, file, start, written, mut index, interval) = {
            let inner = self.shared.inner.borrow();
            let i = inner.segment_for(offset);
            let s = &inner.segments[i];
            let start = s.index.position_for_offset(offset);
            let interval = inner.config.index_interval_bytes;
            let (base, file) = (s.index.base_offset, s.file.clone());
            (
                i,
                base,
                file,
                start,
                s.written_bytes,
                s.index.clone(),
                interval,
            )
        };
        let file = self.segment_file(base, file).await?;
        let mut found = None;
        let end = segment::scan_entries(&file, start, written, None, |e| {
            if e.last_offset >= offset {
                found = Some(e.position);
                return false;
            }
            true
        })
        .await
        .map_err(|e| self.error(format!("finding offset {offset} in segment {base}"), e))?;
        self.check_scan(base, &end)?;
        // Past every batch of the segment (only after a gap): the segment stays whole.
        let position = found.unwrap_or(written);
        let from = index.rewind_before(position);
        let end = segment::scan_entries(&file, from, position, None, |e| {
            let (first, last) = (e.header.base_offset, e.last_offset);
            index.on_append(first, last, e.entry_bytes, e.max_timestamp, interval);
            true
        })
        .await
        .map_err(|e| self.error(format!("re-indexing segment {base} up to {position}"), e))?;
        self.check_scan(base, &end)?;
        assert_eq!(index.size_bytes, position, "re-indexed up to the cut");
        Ok(Cut {
            segment,
            position,
            index,
        })
    }

    fn check_scan(&self, base: i64, end: &ScanEnd) -> Result<(), StorageError> {
        match &end.invalid {
            Some(invalid) => Err(StorageError::corrupt(
                &self.shared.inner.borrow().dir,
                format!("segment {base} corrupt at {}: {invalid}", end.end),
            )),
            None => Ok(()),
        }
    }

    /// Applies a cut to `Inner` (no IO): later segments leave the list, the cut segment is the
    /// active one again, the offsets, cache, epochs and log start move back.
    fn cut_in_memory(&self, cut: Cut) -> CutApplied {
        let mut inner = self.shared.inner.borrow_mut();
        assert!(inner.truncating && inner.pending.is_empty());
        let new_end = cut.index.next_offset;
        inner.drop_cached_from(new_end);
        let removed: Vec<Segment> = inner.segments.drain(cut.segment + 1..).collect();
        let base = cut.index.base_offset;
        let seg = inner.active();
        seg.index = cut.index;
        seg.written_bytes = cut.position;
        seg.first_append_ms = (cut.position > 0).then(now_ms);
        // The old handle (read-only if the segment was closed) goes; the new one is set once
        // the file is truncated. Reads meanwhile reopen it and see only bytes below the cut.
        seg.file = None;
        inner.writer = None;
        inner.filling = None;
        inner.tail_seed = Vec::new();
        inner.checkpointed_bytes = 0;
        inner.log_end_offset = new_end;
        inner.written_offset = new_end;
        inner.synced_offset = new_end;
        inner.sync_target = inner.sync_target.min(new_end);
        // Everything below the cut segment stays closed; the cut segment is active again.
        inner.closed_offset = base;
        let compacted_moved = inner.compacted_offset > base;
        inner.compacted_offset = inner.compacted_offset.min(base);
        let log_start_moved = inner.log_start_offset > new_end;
        inner.log_start_offset = inner.log_start_offset.min(new_end);
        inner.epochs.truncate_from_end(new_end);
        inner.epochs_changed();
        // A truncating replica follows: `set_leader_epoch` stamps again when it leads.
        inner.leader_epoch = None;
        inner.assert_offsets();
        CutApplied {
            base,
            log_end_offset: new_end,
            removed,
            log_start_moved,
            compacted_moved,
        }
    }

    /// Producer state of the log up to `end`: the snapshot on disk if it covers no more than
    /// that, else none, plus a replay of the batches after it.
    async fn rebuild_producers(
        &self,
        dir: &Path,
        end: i64,
    ) -> Result<ProducerStateTable, StorageError> {
        let (snapshot, covered) = recovery::load_snapshot(dir).await?;
        let (mut producers, from) = if covered <= end {
            (snapshot, covered)
        } else {
            (ProducerStateTable::new(), i64::MIN)
        };
        let segments: Vec<_> = {
            let inner = self.shared.inner.borrow();
            let later = inner.segments.iter().filter(|s| s.index.next_offset > from);
            later
                .map(|s| {
                    let start = s.index.position_for_offset(from.max(s.index.base_offset));
                    (s.index.base_offset, s.file.clone(), start, s.written_bytes)
                })
                .collect()
        };
        for (base, file, start, written) in segments {
            let file = match file {
                Some(file) => file,
                None => self.reopen_for_replay(dir, base).await?,
            };
            let end = segment::scan_entries(&file, start, written, None, |e| {
                if e.header.base_offset >= from {
                    producers.record(&e.header, e.header.base_offset);
                }
                true
            })
            .await
            .map_err(|e| self.error(format!("replaying producers of segment {base}"), e))?;
            self.check_scan(base, &end)?;
        }
        Ok(producers)
    }

    /// A closed segment's file, opened read-only (the cut segment's handle is being replaced,
    /// so `segment_file` would keep a stale one).
    async fn reopen_for_replay(
        &self,
        dir: &Path,
        base: i64,
    ) -> Result<Rc<SegmentFile>, StorageError> {
        let path = dir.join(segment::file_name(base, "log"));
        let dma = DmaFile::open(&path)
            .await
            .map_err(|e| StorageError::new(dir, format!("opening {}", path.display()), e.into()))?;
        Ok(Rc::new(SegmentFile::new(Rc::new(dma), path)))
    }

    /// Writes the leader-epoch checkpoint now (the writer task is blocked by `truncating`).
    async fn save_epochs_while_truncating(&self, dir: &Path) -> Result<(), StorageError> {
        let (changes, bytes) = {
            let inner = self.shared.inner.borrow();
            assert!(inner.truncating, "only truncation writes the epochs itself");
            (inner.epochs_changes, inner.epochs.encode())
        };
        write_atomic(
            dir,
            leader_epoch::CHECKPOINT_FILE,
            bytes,
            "the leader-epoch checkpoint",
        )
        .await?;
        self.shared.inner.borrow_mut().epochs_saved = changes;
        Ok(())
    }

    /// Empties the log and starts it at `offset` (writer settled). Segments are unlinked
    /// oldest first (a crash in between leaves a contiguous suffix; after the last, an empty
    /// directory, which recovery opens as an empty log at 0 that the follower truncates
    /// again), then the new segment is created and the directory synced.
    async fn start_empty_at(&self, offset: i64) -> Result<(), StorageError> {
        let (dir, removed) = {
            let mut inner = self.shared.inner.borrow_mut();
            assert!(inner.truncating && inner.pending.is_empty());
            let removed: Vec<Segment> = inner.segments.drain(..).collect();
            inner.segments.push(Segment {
                index: SegmentIndex::new(offset),
                file: None,
                written_bytes: 0,
                first_append_ms: None,
                last_used_ms: std::cell::Cell::new(now_ms()),
            });
            inner.writer = None;
            inner.filling = None;
            inner.tail_seed = Vec::new();
            inner.checkpointed_bytes = 0;
            inner.log_start_offset = offset;
            inner.log_end_offset = offset;
            inner.written_offset = offset;
            inner.synced_offset = offset;
            inner.sync_target = inner.sync_target.min(offset);
            inner.closed_offset = offset;
            inner.compacted_offset = offset;
            inner.tombstone_expiry_ms = i64::MAX;
            inner.cache.clear();
            inner.cache_bytes = 0;
            inner.producers = ProducerStateTable::new();
            inner.epochs.clear();
            inner.epochs_changed();
            inner.leader_epoch = None;
            inner.assert_offsets();
            (inner.dir.clone(), removed)
        };
        info!(dir = %dir.display(), offset, segments = removed.len(), "emptying the log");
        for seg in removed {
            retention::remove_segment_files(&dir, seg.index.base_offset, seg.file).await?;
        }
        let path = dir.join(segment::file_name(offset, "log"));
        let dma = segment::open_rw(&path)
            .await
            .map_err(|e| StorageError::new(&dir, format!("creating {}", path.display()), e))?;
        let dma = Rc::new(dma);
        sync_dir(&dir).await?;
        let snapshot = encode_snapshot_frame(offset, &ProducerStateTable::new().encode_snapshot());
        write_atomic(&dir, SNAPSHOT_FILE, snapshot, "the producer snapshot").await?;
        self.save_epochs_while_truncating(&dir).await?;
        let log_start = segment::checked_i64s(&[offset]);
        write_atomic(
            &dir,
            retention::LOG_START_FILE,
            log_start,
            "the log start offset",
        )
        .await?;
        let mut inner = self.shared.inner.borrow_mut();
        inner.active().file = Some(Rc::new(SegmentFile::new(dma.clone(), path)));
        inner.writer = Some(dma);
        Ok(())
    }
}

/// Truncates segment `base` to `position` (an entry boundary): the file ends at the page
/// holding it, the rest of that page is zeroed, and the file is fdatasync'ed. Returns a new
/// read-write handle (a closed segment's was read-only) and the partial last page, the prefix
/// of the next write chunk.
async fn truncate_segment_file(
    dir: &Path,
    base: i64,
    position: u64,
) -> Result<(Rc<DmaFile>, Vec<u8>), StorageError> {
    let path = dir.join(segment::file_name(base, "log"));
    let ctx =
        |what: &str, e: io::Error| StorageError::new(dir, format!("{what} {}", path.display()), e);
    let dma = Rc::new(
        segment::open_rw(&path)
            .await
            .map_err(|e| ctx("opening", e))?,
    );
    let file = SegmentFile::new(dma.clone(), path.clone());
    let tail = segment::read_tail_page(&file, position)
        .await
        .map_err(|e| ctx("reading the cut page of", e))?;
    dma.truncate(segment::align_up(position))
        .await
        .map_err(|e| ctx("truncating", e.into()))?;
    // Zero what followed the cut in its page: recovery and later appends must not see it.
    TailWriter::new(dma.clone(), position, tail.clone())
        .rewrite_tail()
        .await
        .map_err(|e| ctx("rewriting the cut page of", e))?;
    dma.fdatasync()
        .await
        .map_err(|e| ctx("fdatasync of", e.into()))?;
    Ok((dma, tail))
}

async fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: Vec<u8>,
    what: &str,
) -> Result<(), StorageError> {
    segment::write_file_atomic(dir, name, bytes)
        .await
        .map_err(|e| StorageError::new(dir, format!("writing {what}"), e))
}

async fn remove_if_present(dir: &Path, name: &str) -> Result<(), StorageError> {
    match glommio::io::remove(dir.join(name)).await {
        Ok(()) => sync_dir(dir).await,
        Err(e) => {
            let e: io::Error = e.into();
            if e.kind() == io::ErrorKind::NotFound {
                return Ok(());
            }
            Err(StorageError::new(dir, format!("removing {name}"), e))
        }
    }
}

/// fsync of the partition directory: unlinks and creations are durable.
async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let result = async {
        let d = glommio::io::Directory::open(dir).await?;
        d.sync().await?;
        d.close().await
    }
    .await;
    result.map_err(|e| StorageError::new(dir, "syncing the partition directory", e.into()))
}
