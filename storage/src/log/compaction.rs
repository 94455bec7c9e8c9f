//! Compaction of closed segments (`cleanup.policy=compact`; rules in `crate::compaction`).
//!
//! A pass runs on the owning shard's maintenance task, one log at a time, holding the log's
//! maintenance permit (so retention never deletes a segment being rewritten). It never touches
//! the active segment, so produce is never blocked, and it writes at most `io_bytes_per_sec`.
//! 1. Map: scan the closed segments (checksums verified) into key -> latest offset, bounded by
//!    `LogConfig::key_map_bytes` (`log.cleaner.dedupe.buffer.size`); only segments scanned
//!    whole before the map filled are cleaned.
//! 2. Rewrite each cleanable segment into `{base}.cleaned` (same entries, same offsets, fewer
//!    records per batch), fdatasync it.
//! 3. Swap: unlink the old index, rename `.cleaned` over `.log`, sync the directory, write
//!    the new index, then point the in-memory segment at the new file. A crash before the
//!    rename leaves the old segment (a stale `.cleaned` is removed at recovery); after it, the
//!    new segment whose index recovery rebuilds by scanning.
//! 4. Checkpoint: `cleaner-checkpoint` (`compacted_offset i64 | tombstone_expiry_ms i64 |
//!    crc32c u32`, replaced atomically; Kafka's `cleaner-offset-checkpoint`) records how far
//!    the pass cleaned and when a kept tombstone falls due, so a restart does not clean an
//!    unchanged log again. A crash before it is written only repeats the pass.

use super::*;
use crate::compaction::{
    delete_horizon, keep, keyed_records, rebuild_batch, records_body, KeyedRecord, OffsetMap,
};
use crate::segment::TailWriter;

/// The file that remembers the last pass across restarts.
pub(super) const CHECKPOINT_FILE: &str = "cleaner-checkpoint";

/// Bytes of rewritten entries gathered before each write.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// What a compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    pub segments_rewritten: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
}

/// A closed segment as the pass sees it.
struct Closed {
    base: i64,
    next_offset: i64,
    size: u64,
    file: Rc<SegmentFile>,
}

/// What rewriting one segment gave.
struct Rewritten {
    file: Rc<DmaFile>,
    index: SegmentIndex,
    size: u64,
    records_removed: u64,
    /// Earliest time a tombstone kept now may go.
    tombstone_expiry_ms: i64,
}

impl PartitionLog {
    /// A compacted log with closed segments not compacted yet, or tombstones now due.
    pub fn compaction_due(&self, now_ms: i64) -> bool {
        let inner = self.shared.inner.borrow();
        inner.config.compact
            && inner.failed.is_none()
            && !inner.closing
            && inner.deletable() > 0
            && (inner.closed_offset > inner.compacted_offset || now_ms >= inner.tombstone_expiry_ms)
    }

    /// One compaction pass at wall clock `now_ms`, writing at most `io_bytes_per_sec`.
    pub async fn compact(
        &self,
        now_ms: i64,
        io_bytes_per_sec: u64,
    ) -> Result<CompactionOutcome, StorageError> {
        assert!(io_bytes_per_sec > 0);
        let _one = self.shared.maintenance.acquire_permit(1).await;
        let (dir, closed, delete_retention_ms, interval, key_map_bytes) = {
            let inner = self.shared.inner.borrow();
            inner.check_usable()?;
            if !inner.config.compact {
                return Ok(CompactionOutcome::default());
            }
            let closed: Vec<(i64, i64, u64, Option<Rc<SegmentFile>>)> = inner.segments
                [..inner.deletable()]
                .iter()
                .map(|s| {
                    (
                        s.index.base_offset,
                        s.index.next_offset,
                        s.written_bytes,
                        s.file.clone(),
                    )
                })
                .collect();
            let interval = inner.config.index_interval_bytes;
            (
                inner.dir.clone(),
                closed,
                inner.config.delete_retention_ms,
                interval,
                inner.config.key_map_bytes,
            )
        };
        let mut reopened = Vec::with_capacity(closed.len());
        for (base, next_offset, size, file) in closed {
            let file = self.segment_file(base, file).await?;
            reopened.push(Closed {
                base,
                next_offset,
                size,
                file,
            });
        }
        let closed = reopened;
        let Some(last) = closed.last() else {
            return Ok(CompactionOutcome::default());
        };
        let compacted_to = last.next_offset;
        let (map, cleanable) = build_map(&dir, &closed, key_map_bytes).await?;
        if cleanable < closed.len() {
            warn!(dir = %dir.display(), keys = map.len(), cleanable, closed = closed.len(), "compaction key map full; cleaning the first segments only");
        }
        let mut outcome = CompactionOutcome::default();
        let mut tombstone_expiry_ms = i64::MAX;
        let tombstones = TombstoneClock {
            now_ms,
            delete_retention_ms,
        };
        for seg in &closed[..cleanable] {
            let new = rewrite(&dir, seg, &map, tombstones, interval, io_bytes_per_sec).await?;
            outcome.segments_rewritten += 1;
            outcome.bytes_before += seg.size;
            outcome.bytes_after += new.size;
            outcome.records_removed += new.records_removed;
            tombstone_expiry_ms = tombstone_expiry_ms.min(new.tombstone_expiry_ms);
            self.swap_in(&dir, seg, new).await?;
        }
        let (compacted_offset, tombstone_expiry_ms) = {
            let mut inner = self.shared.inner.borrow_mut();
            inner.compacted_offset = inner.compacted_offset.max(compacted_to);
            inner.tombstone_expiry_ms = tombstone_expiry_ms;
            (inner.compacted_offset, tombstone_expiry_ms)
        };
        let checkpoint = segment::checked_i64s(&[compacted_offset, tombstone_expiry_ms]);
        segment::write_file_atomic(&dir, CHECKPOINT_FILE, checkpoint)
            .await
            .map_err(|e| StorageError::new(&dir, "writing the cleaner checkpoint", e))?;
        Ok(outcome)
    }

    /// Replaces segment `seg` by its rewritten copy, on disk then in memory.
    async fn swap_in(&self, dir: &Path, seg: &Closed, new: Rewritten) -> Result<(), StorageError> {
        let ctx = |what: &str, e: io::Error| {
            StorageError::new(dir, format!("{what} (compacting segment {})", seg.base), e)
        };
        let log_path = dir.join(segment::file_name(seg.base, "log"));
        let index_name = segment::file_name(seg.base, "index");
        remove_if_exists(&dir.join(&index_name))
            .await
            .map_err(|e| ctx("removing the old index", e))?;
        glommio::io::rename(dir.join(segment::file_name(seg.base, "cleaned")), &log_path)
            .await
            .map_err(|e| ctx("renaming the cleaned segment", e.into()))?;
        let d = glommio::io::Directory::open(dir)
            .await
            .map_err(|e| ctx("opening the directory", e.into()))?;
        d.sync()
            .await
            .map_err(|e| ctx("syncing the directory", e.into()))?;
        d.close()
            .await
            .map_err(|e| ctx("closing the directory", e.into()))?;
        segment::write_file_atomic(dir, &index_name, new.index.encode())
            .await
            .map_err(|e| ctx("writing the index", e))?;
        let old = {
            let mut inner = self.shared.inner.borrow_mut();
            let i = inner.segment_for(seg.base);
            let s = &mut inner.segments[i];
            assert_eq!(
                (s.index.base_offset, s.index.next_offset),
                (seg.base, new.index.next_offset),
                "compaction keeps a segment's offsets"
            );
            s.index = new.index;
            s.written_bytes = new.size;
            let old = s
                .file
                .replace(Rc::new(SegmentFile::new(new.file, log_path)));
            // The tail cache must not keep serving the uncompacted batches: drop its front up
            // to the end of this segment (written data; the cache stays a suffix of the log).
            while let Some(c) = inner.cache.front() {
                if c.last_offset >= seg.next_offset {
                    break;
                }
                assert!(c.last_offset < inner.written_offset);
                inner.pop_cached();
            }
            old
        };
        if let Some(Ok(old)) = old.map(Rc::try_unwrap) {
            old.close()
                .await
                .map_err(|e| ctx("closing the old file", e))?;
        }
        Ok(())
    }
}

/// Key -> latest offset over `closed`, and how many leading segments it covers whole.
async fn build_map(
    dir: &Path,
    closed: &[Closed],
    key_map_bytes: usize,
) -> Result<(OffsetMap, usize), StorageError> {
    let mut map = OffsetMap::new(key_map_bytes);
    for (i, seg) in closed.iter().enumerate() {
        let mut full = false;
        let end = segment::scan_entries(&seg.file, 0, seg.size, Some(seg.base), |e| {
            let body = records_body(e.batch, &e.header);
            let records = body.as_deref().and_then(|b| keyed_records(b, &e.header));
            for r in records.unwrap_or_default() {
                if let Some(key) = r.key {
                    if !map.insert(key, r.offset) {
                        full = true;
                        return false;
                    }
                }
            }
            true
        })
        .await
        .map_err(|e| StorageError::new(dir, format!("mapping keys of segment {}", seg.base), e))?;
        if let Some(invalid) = end.invalid {
            return Err(StorageError::corrupt(
                dir,
                format!("segment {} corrupt at {}: {invalid}", seg.base, end.end),
            ));
        }
        if full {
            return Ok((map, i));
        }
    }
    Ok((map, closed.len()))
}

/// Writes the compacted copy of `seg` to `{base}.cleaned` and syncs it.
async fn rewrite(
    dir: &Path,
    seg: &Closed,
    map: &OffsetMap,
    tombstones: TombstoneClock,
    interval: usize,
    io_bytes_per_sec: u64,
) -> Result<Rewritten, StorageError> {
    let ctx = |what: &str, e: io::Error| {
        StorageError::new(dir, format!("{what} (compacting segment {})", seg.base), e)
    };
    let tmp = dir.join(segment::file_name(seg.base, "cleaned"));
    remove_if_exists(&tmp)
        .await
        .map_err(|e| ctx("removing a stale copy", e))?;
    let file = Rc::new(
        segment::open_rw(&tmp)
            .await
            .map_err(|e| ctx("creating", e))?,
    );
    let mut writer = TailWriter::new(file.clone(), 0, Vec::new());
    let mut index = SegmentIndex::new(seg.base);
    let (mut pos, mut next) = (0u64, seg.base);
    let mut buf = Vec::with_capacity(WRITE_CHUNK_BYTES);
    let (mut records_removed, mut tombstone_expiry_ms) = (0u64, i64::MAX);
    loop {
        buf.clear();
        let end = segment::scan_entries(&seg.file, pos, seg.size, Some(next), |e| {
            let before = buf.len();
            let body = records_body(e.batch, &e.header);
            match body.as_deref().and_then(|b| keyed_records(b, &e.header)) {
                Some(records) => {
                    let horizon = delete_horizon(&e.header);
                    let due = horizon.is_some_and(|h| h <= tombstones.now_ms);
                    let kept: Vec<bool> = records.iter().map(|r| keep(r, map, due)).collect();
                    // Only the first pass that keeps a batch's tombstones stamps it.
                    let keeps = keeps_tombstones(&records, &kept);
                    let stamp = (keeps && horizon.is_none()).then(|| tombstones.horizon());
                    if keeps {
                        let expiry = horizon.or(stamp).expect("kept tombstones have a horizon");
                        tombstone_expiry_ms = tombstone_expiry_ms.min(expiry);
                    }
                    let dropped = kept.iter().filter(|k| !**k).count();
                    let rebuilt = (dropped > 0 || stamp.is_some())
                        .then(|| rebuild_batch(e.batch, &e.header, &records, &kept, stamp))
                        .flatten();
                    if rebuilt.is_some() {
                        records_removed += dropped as u64;
                    }
                    let batch = rebuilt.as_deref().unwrap_or(e.batch);
                    entry::encode_entry(&mut buf, batch, e.last_offset, e.max_timestamp);
                }
                None => entry::encode_entry(&mut buf, e.batch, e.last_offset, e.max_timestamp),
            }
            let entry_bytes = buf.len() - before;
            index.on_append(
                e.header.base_offset,
                e.last_offset,
                entry_bytes,
                e.max_timestamp,
                interval,
            );
            buf.len() < WRITE_CHUNK_BYTES
        })
        .await
        .map_err(|e| ctx("reading", e))?;
        if let Some(invalid) = end.invalid {
            return Err(StorageError::corrupt(
                dir,
                format!("segment {} corrupt at {}: {invalid}", seg.base, end.end),
            ));
        }
        writer.append(&buf).await.map_err(|e| ctx("writing", e))?;
        throttle(buf.len(), io_bytes_per_sec).await;
        if end.end >= seg.size || end.end == pos {
            break;
        }
        (pos, next) = (end.end, end.next_offset);
    }
    if index.next_offset != seg.next_offset {
        return Err(StorageError::corrupt(
            dir,
            format!(
                "segment {} ends at offset {} but its copy at {}",
                seg.base, seg.next_offset, index.next_offset
            ),
        ));
    }
    file.fdatasync()
        .await
        .map_err(|e| ctx("fdatasync", e.into()))?;
    Ok(Rewritten {
        file,
        index,
        size: writer.end(),
        records_removed,
        tombstone_expiry_ms,
    })
}

/// When a pass runs and how long its tombstones stay (`delete.retention.ms`).
#[derive(Clone, Copy)]
struct TombstoneClock {
    now_ms: i64,
    delete_retention_ms: i64,
}

impl TombstoneClock {
    /// The delete horizon this pass stamps on a batch whose tombstones it keeps for the first
    /// time (Kafka's KIP-534).
    fn horizon(&self) -> i64 {
        self.now_ms.saturating_add(self.delete_retention_ms)
    }
}

/// Whether a keyed tombstone is among the kept records.
fn keeps_tombstones(records: &[KeyedRecord<'_>], kept: &[bool]) -> bool {
    records
        .iter()
        .zip(kept)
        .any(|(r, k)| *k && r.tombstone && r.key.is_some())
}

/// The last pass's `(compacted_offset, tombstone_expiry_ms)`, if recorded (a damaged file is
/// ignored with a warning: the next pass cleans everything again).
pub(super) async fn load_checkpoint(dir: &Path) -> Result<Option<(i64, i64)>, StorageError> {
    let bytes = segment::read_small_file(&dir.join(CHECKPOINT_FILE))
        .await
        .map_err(|e| StorageError::new(dir, "reading the cleaner checkpoint", e))?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    match segment::parse_checked_i64s::<2>(&bytes) {
        Some([offset, expiry_ms]) => Ok(Some((offset, expiry_ms))),
        None => {
            warn!(dir = %dir.display(), "damaged cleaner checkpoint; the next pass cleans every closed segment");
            Ok(None)
        }
    }
}

/// Sleeps as long as writing `bytes` takes at `bytes_per_sec`.
async fn throttle(bytes: usize, bytes_per_sec: u64) {
    let secs = bytes as f64 / bytes_per_sec as f64;
    if secs > 0.0 {
        glommio::timer::sleep(std::time::Duration::from_secs_f64(secs)).await;
    }
}

async fn remove_if_exists(path: &Path) -> io::Result<()> {
    match glommio::io::remove(path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let e: io::Error = e.into();
            if e.kind() == io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}
