//! Retention (`retention.ms`, `retention.bytes`), DeleteRecords and `flush.ms`: they move the
//! log start offset and delete whole closed segments. Run by the owning shard's maintenance
//! task, never on the append path; one at a time per log (`Shared::maintenance`).
//!
//! The decision (`retention_cut`) is a pure function over segment summaries. Deleting a
//! segment first removes it from `Inner` (readers then start at the new log start), then
//! unlinks its index and its log file. A crash in between leaves at most a segment that is
//! deleted again at the next check. A log start inside a segment (DeleteRecords) is kept in
//! `log-start-offset` (`offset i64 LE | crc32c u32 LE`), replaced atomically.

use super::*;

pub(super) const LOG_START_FILE: &str = "log-start-offset";

/// What a retention pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: i64,
}

/// What retention needs to know of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
    /// i64::MIN when empty.
    pub max_timestamp: i64,
}

/// How many leading segments to delete. Only the first `deletable` (closed) segments are
/// candidates; deletion stops at the first segment no rule removes, so the log stays
/// contiguous. Rules, as in Kafka: everything below `log_start_offset`; a newest timestamp
/// older than `retention_ms`; the log (all segments) larger than `retention_bytes`.
pub fn retention_cut(
    segments: &[SegmentSummary],
    deletable: usize,
    log_start_offset: i64,
    now_ms: i64,
    retention_ms: i64,
    retention_bytes: i64,
) -> usize {
    let mut size: u64 = segments.iter().map(|s| s.size_bytes).sum();
    let mut cut = 0;
    for s in segments.iter().take(deletable.min(segments.len())) {
        let below_start = s.next_offset <= log_start_offset;
        let expired = expired(s.max_timestamp, now_ms, retention_ms);
        let oversized = retention_bytes >= 0 && size - s.size_bytes >= retention_bytes as u64;
        if !(below_start || expired || oversized) {
            break;
        }
        size -= s.size_bytes;
        cut += 1;
    }
    cut
}

/// Past `retention.ms`. A segment whose records carry no timestamp (max -1) never expires by
/// time (Kafka falls back to the file's mtime; size retention still applies).
fn expired(max_timestamp: i64, now_ms: i64, retention_ms: i64) -> bool {
    retention_ms >= 0 && max_timestamp >= 0 && now_ms.saturating_sub(max_timestamp) > retention_ms
}

impl Inner {
    fn summaries(&self) -> Vec<SegmentSummary> {
        self.segments
            .iter()
            .map(|s| SegmentSummary {
                base_offset: s.index.base_offset,
                next_offset: s.index.next_offset,
                size_bytes: s.index.size_bytes,
                max_timestamp: s.index.max_timestamp,
            })
            .collect()
    }

    /// Closed segments: all but the active one, written, synced and indexed.
    pub(super) fn deletable(&self) -> usize {
        self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.index.next_offset <= self.closed_offset)
            .count()
    }

    /// The active segment is non-empty and entirely past `retention.ms`.
    fn active_expired(&self, now_ms: i64) -> bool {
        let retention_ms = self.config.retention_ms;
        let active = self.segments.last().expect("a log always has a segment");
        retention_ms >= 0
            && active.index.size_bytes > 0
            && self.deletable() == self.segments.len() - 1
            && expired(active.index.max_timestamp, now_ms, retention_ms)
    }
}

impl PartitionLog {
    /// Applies new topic configs; they take effect from the next append or check. The tail
    /// cache's bound stays as it is: [`Self::set_cache_bytes_max`] moves it.
    pub fn update_config(&self, config: LogConfig) {
        assert!(config.segment_bytes > 0 && config.index_interval_bytes > 0);
        let mut inner = self.shared.inner.borrow_mut();
        let config = LogConfig {
            cache_bytes_max: inner.config.cache_bytes_max,
            ..config
        };
        if inner.config != config {
            info!(dir = %inner.dir.display(), ?config, "log config changed");
            inner.config = config;
        }
    }

    /// Moves the tail cache's bound (`LogConfig::cache_bytes_max`) without touching the other
    /// settings; a lower bound evicts the oldest written batches at once.
    pub fn set_cache_bytes_max(&self, bytes: usize) {
        let mut inner = self.shared.inner.borrow_mut();
        inner.config.cache_bytes_max = bytes;
        inner.evict_cache();
        drop(inner);
        // The write backlog's bound moved too (see `backlog`).
        self.shared.durable_event.notify(usize::MAX);
    }

    /// The tail cache's bound now.
    pub fn cache_bytes_max(&self) -> usize {
        self.shared.inner.borrow().config.cache_bytes_max
    }

    /// Memory the tail cache holds now (its chunks count whole).
    pub fn cache_bytes(&self) -> usize {
        self.shared.inner.borrow().cache_bytes
    }

    /// Wall clock of the last append since the log opened (`i64::MIN`: none).
    pub fn last_append_ms(&self) -> i64 {
        self.shared.inner.borrow().last_append_ms
    }

    /// `flush.ms`: asks the writer for an fdatasync when unsynced data is older than allowed.
    pub fn flush_if_due(&self, now_ms: i64) {
        let mut inner = self.shared.inner.borrow_mut();
        let due = inner.last_sync_ms.saturating_add(inner.config.flush_ms) <= now_ms;
        if due && inner.synced_offset < inner.log_end_offset && inner.failed.is_none() {
            inner.sync_target = inner.sync_target.max(inner.log_end_offset);
            drop(inner);
            self.shared.writer_wake.notify(1);
        }
    }

    /// One retention pass at wall clock `now_ms`. An expired active segment is rolled first
    /// (as Kafka does), so time retention can empty a log whose producers went quiet.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        let _one = self.shared.maintenance.acquire_permit(1).await;
        let roll_at = {
            let mut inner = self.shared.inner.borrow_mut();
            inner.check_usable()?;
            let leo = inner.log_end_offset;
            if inner.active_expired(now_ms) {
                inner.roll(leo);
                Some(leo)
            } else {
                None
            }
        };
        if let Some(offset) = roll_at {
            self.shared.writer_wake.notify(1);
            self.wait_closed(offset).await?;
        }
        self.delete_leading_segments(now_ms).await
    }

    /// DeleteRecords: moves the log start to `offset` (-1: the high watermark) and deletes the
    /// closed segments wholly below it. Returns the new log start (low watermark).
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let _one = self.shared.maintenance.acquire_permit(1).await;
        let (dir, start) = {
            let mut inner = self.shared.inner.borrow_mut();
            inner.check_usable()?;
            let offset = if offset == -1 {
                inner.log_end_offset
            } else {
                offset
            };
            assert!(
                (0..=inner.log_end_offset).contains(&offset),
                "caller checks the range"
            );
            if offset <= inner.log_start_offset {
                return Ok(inner.log_start_offset);
            }
            inner.log_start_offset = offset;
            (inner.dir.clone(), offset)
        };
        info!(dir = %dir.display(), log_start_offset = start, "records deleted before offset");
        segment::write_file_atomic(&dir, LOG_START_FILE, segment::checked_i64s(&[start]))
            .await
            .map_err(|e| StorageError::new(&dir, "writing the log start offset", e))?;
        self.delete_leading_segments(now_ms()).await?;
        Ok(start)
    }

    /// Resolves once every offset below `offset` is in a closed segment.
    async fn wait_closed(&self, offset: i64) -> Result<(), StorageError> {
        loop {
            let listener = {
                let inner = self.shared.inner.borrow();
                if let Some((kind, msg)) = &inner.failed {
                    return Err(inner.error("write failed", io::Error::new(*kind, msg.clone())));
                }
                if inner.closed_offset >= offset {
                    return Ok(());
                }
                self.shared.durable_event.listen()
            };
            self.shared.writer_wake.notify(1);
            listener.await;
        }
    }

    async fn delete_leading_segments(&self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        let (dir, removed, log_start_offset) = {
            let mut inner = self.shared.inner.borrow_mut();
            let summaries = inner.summaries();
            let cut = retention_cut(
                &summaries,
                inner.deletable(),
                inner.log_start_offset,
                now_ms,
                inner.config.retention_ms,
                inner.config.retention_bytes,
            );
            let removed: Vec<Segment> = inner.segments.drain(..cut).collect();
            let first_base = inner.segments[0].index.base_offset;
            inner.log_start_offset = inner.log_start_offset.max(first_base);
            let log_start_offset = inner.log_start_offset;
            // The writer task persists it; recovery truncates a stale file the same way.
            if inner.epochs.truncate_from_start(log_start_offset) {
                inner.epochs_changed();
            }
            (inner.dir.clone(), removed, log_start_offset)
        };
        self.shared.writer_wake.notify(1);
        let mut outcome = RetentionOutcome {
            log_start_offset,
            ..RetentionOutcome::default()
        };
        for seg in removed {
            let base = seg.index.base_offset;
            info!(dir = %dir.display(), base, next_offset = seg.index.next_offset, bytes = seg.index.size_bytes, log_start_offset, "deleting segment");
            remove_segment_files(&dir, base, seg.file).await?;
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += seg.index.size_bytes;
        }
        Ok(outcome)
    }
}

pub(super) async fn remove_segment_files(
    dir: &Path,
    base: i64,
    file: Option<Rc<SegmentFile>>,
) -> Result<(), StorageError> {
    if let Some(file) = file {
        // A read still in flight holds a reference; its drop closes the file then.
        if let Ok(file) = Rc::try_unwrap(file) {
            file.close()
                .await
                .map_err(|e| StorageError::new(dir, format!("closing segment {base}"), e))?;
        }
    }
    for ext in ["index", "log"] {
        let path = dir.join(segment::file_name(base, ext));
        match glommio::io::remove(&path).await {
            Ok(()) => {}
            Err(e) => {
                let e: io::Error = e.into();
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(StorageError::new(
                        dir,
                        format!("removing {}", path.display()),
                        e,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The persisted log start offset, if any (a damaged file is ignored with a warning).
pub(super) async fn load_log_start(dir: &Path) -> Result<Option<i64>, StorageError> {
    let bytes = segment::read_small_file(&dir.join(LOG_START_FILE))
        .await
        .map_err(|e| StorageError::new(dir, "reading the log start offset", e))?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    if let Some([offset]) = segment::parse_checked_i64s::<1>(&bytes) {
        return Ok(Some(offset));
    }
    warn!(dir = %dir.display(), "damaged log start offset file; starting at the first segment");
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, next: i64, size: u64, ts: i64) -> SegmentSummary {
        SegmentSummary {
            base_offset: base,
            next_offset: next,
            size_bytes: size,
            max_timestamp: ts,
        }
    }

    #[test]
    fn retention_cut_cases() {
        // Three segments of 100 bytes, newest timestamps 1000, 2000, 3000; the last is active.
        let segs = [
            seg(0, 10, 100, 1000),
            seg(10, 20, 100, 2000),
            seg(20, 25, 100, 3000),
        ];
        // (deletable, log start, now, retention.ms, retention.bytes) -> cut
        let cases = [
            ((2, 0, 3000, -1, -1), 0),
            ((2, 0, 3000, 1500, -1), 1),
            ((2, 0, 3000, 500, -1), 2),
            ((1, 0, 3000, 500, -1), 1),
            // Kafka deletes a segment only if the log stays at or above retention.bytes.
            ((2, 0, 3000, -1, 250), 0),
            ((2, 0, 3000, -1, 200), 1),
            ((2, 0, 3000, -1, 100), 2),
            ((2, 0, 3000, -1, 0), 2),
            ((2, 10, 3000, -1, -1), 1),
            ((2, 15, 3000, -1, -1), 1),
            ((2, 20, 3000, -1, -1), 2),
            // Only the first segment is past retention at now = 2500.
            ((2, 0, 2500, 1000, -1), 1),
        ];
        let untimed = [seg(0, 10, 100, -1), seg(10, 20, 100, 3000)];
        assert_eq!(
            retention_cut(&untimed, 1, 0, 1_000_000, 10, -1),
            0,
            "no timestamps: kept"
        );
        assert_eq!(
            retention_cut(&untimed, 1, 0, 1_000_000, 10, 100),
            1,
            "size still applies"
        );
        for ((deletable, start, now, ms, bytes), want) in cases {
            assert_eq!(
                retention_cut(&segs, deletable, start, now, ms, bytes),
                want,
                "deletable {deletable} start {start} now {now} ms {ms} bytes {bytes}"
            );
        }
    }
}
