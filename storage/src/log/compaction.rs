//! Compaction of closed segments (`cleanup.policy=compact`; rules in `crate::compaction`).
//!
//! A pass runs on the owning shard's maintenance task, one log at a time, holding the log's
//! maintenance permit (so retention and truncation never touch a segment being rewritten). It
//! never touches the active segment, so produce is never blocked, and it writes at most
//! `io_bytes_per_sec`. As in Kafka's log cleaner:
//! 0. When: the closed segments past the last pass's end (the *dirty* part) hold at least
//!    `min.cleanable.dirty.ratio` of the closed bytes, or a kept tombstone falls due. So a
//!    pass rewrites at most about twice what was written since the last one.
//! 1. Map: scan the dirty segments (checksums verified) into key -> latest offset, bounded by
//!    `LogConfig::key_map_bytes` (`log.cleaner.dedupe.buffer.size`); the pass cleans up to
//!    the end of the segment where the map filled (a key the map does not hold is kept, so a
//!    partial map only keeps more).
//! 2. Group the cleanable segments, from the log start, into runs whose sizes sum to at most
//!    `segment.bytes` (Kafka's `groupSegmentsBySize`), and rewrite each run into one file
//!    `{first base}.cleaned`: the surviving records, offsets unchanged. A batch left without
//!    records is dropped (a gap in the offsets, which consumers skip as in any compacted
//!    Kafka log) unless it is the run's last batch, which keeps the run's end offset on disk,
//!    or the last batch of a producer whose state is still kept (so recovery from the log
//!    alone rebuilds its sequence), as Kafka keeps it. fdatasync.
//! 3. Swap: unlink the first segment's index, rename `.cleaned` over its `.log`, sync the
//!    directory, unlink the other segments of the run, sync again, write the new index, then
//!    replace the run by one segment in memory. A crash before the rename leaves the old
//!    segments (a stale `.cleaned` is removed at recovery); after it, recovery finds a segment
//!    that ends exactly where a later one starts and removes the run's leftovers between them
//!    (`recovery::drop_merged_leftovers`).
//! 4. Checkpoint: `cleaner-checkpoint` (`compacted_offset i64 | tombstone_expiry_ms i64 |
//!    crc32c u32`, replaced atomically; Kafka's `cleaner-offset-checkpoint`) records how far
//!    the pass cleaned and when a kept tombstone falls due. A crash before it is written only
//!    repeats the pass.
//!
//! Files a pass opens only to read are closed when it ends (they do not count as used), so
//! the idle-file closer still closes what no reader touches.

use super::*;
use crate::compaction::{
    delete_horizon, keep, keyed_records, rebuild_batch, records_body, KeyedRecord, OffsetMap,
};
use crate::segment::TailWriter;
use std::collections::HashSet;

/// The file that remembers the last pass across restarts.
pub(super) const CHECKPOINT_FILE: &str = "cleaner-checkpoint";

/// Bytes of rewritten entries gathered before each write.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// `min.cleanable.dirty.ratio` is kept in millionths.
pub const DIRTY_RATIO_SCALE: u64 = 1_000_000;

/// What a compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Closed segments read and rewritten.
    pub segments_rewritten: usize,
    /// The segments they became (runs merged into one).
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    /// Batches left without records and dropped.
    pub batches_removed: u64,
}

/// A closed segment as the pass sees it.
struct Closed {
    base: i64,
    next_offset: i64,
    size: u64,
    file: Rc<SegmentFile>,
    /// Opened by this pass (the segment's file was closed): closed again when it ends.
    opened_here: bool,
}

/// What rewriting one run of segments gave.
struct Rewritten {
    file: Rc<DmaFile>,
    index: SegmentIndex,
    size: u64,
    records_removed: u64,
    batches_removed: u64,
    /// Earliest time a tombstone kept now may go.
    tombstone_expiry_ms: i64,
}

/// What the rewrite of a run needs besides the run.
struct RewriteRules<'a> {
    map: &'a OffsetMap,
    tombstones: TombstoneClock,
    /// Base offsets of batches that stay even without records (producers' last batches).
    kept_batches: &'a HashSet<i64>,
    interval: usize,
    io_bytes_per_sec: u64,
}

impl Inner {
    /// Bytes of the closed segments a pass already cleaned, and of those after them.
    fn clean_and_dirty_bytes(&self) -> (u64, u64) {
        self.segments[..self.deletable()]
            .iter()
            .fold((0, 0), |(clean, dirty), s| {
                if s.index.next_offset <= self.compacted_offset {
                    (clean + s.written_bytes, dirty)
                } else {
                    (clean, dirty + s.written_bytes)
                }
            })
    }
}

impl PartitionLog {
    /// A compacted log whose dirty closed segments reach `min.cleanable.dirty.ratio` of its
    /// closed bytes, or with tombstones now due.
    pub fn compaction_due(&self, now_ms: i64) -> bool {
        let inner = self.shared.inner.borrow();
        if !inner.config.compact || inner.failed.is_some() || inner.closing {
            return false;
        }
        if inner.deletable() == 0 {
            return false;
        }
        if now_ms >= inner.tombstone_expiry_ms {
            return true;
        }
        let (clean, dirty) = inner.clean_and_dirty_bytes();
        let ratio = u128::from(
            inner
                .config
                .min_cleanable_dirty_ratio
                .min(DIRTY_RATIO_SCALE),
        );
        dirty > 0
            && u128::from(dirty) * u128::from(DIRTY_RATIO_SCALE)
                >= ratio * u128::from(clean + dirty)
    }

    /// One compaction pass at wall clock `now_ms`, writing at most `io_bytes_per_sec`.
    pub async fn compact(
        &self,
        now_ms: i64,
        io_bytes_per_sec: u64,
    ) -> Result<CompactionOutcome, StorageError> {
        assert!(io_bytes_per_sec > 0);
        let _one = self.shared.maintenance.acquire_permit(1).await;
        let (dir, segments, config, compacted_offset, kept_batches) = {
            let inner = self.shared.inner.borrow();
            inner.check_usable()?;
            if !inner.config.compact {
                return Ok(CompactionOutcome::default());
            }
            let segments: Vec<(i64, i64, u64, Option<Rc<SegmentFile>>)> = inner.segments
                [..inner.deletable()]
                .iter()
                .map(|s| {
                    let (base, next) = (s.index.base_offset, s.index.next_offset);
                    (base, next, s.written_bytes, s.file.clone())
                })
                .collect();
            (
                inner.dir.clone(),
                segments,
                inner.config.clone(),
                inner.compacted_offset,
                inner.producers.last_batch_offsets(),
            )
        };
        let mut closed = Vec::with_capacity(segments.len());
        for (base, next_offset, size, file) in segments {
            let opened_here = file.is_none();
            let file = match file {
                Some(file) => file,
                None => self.open_for_pass(&dir, base).await?,
            };
            closed.push(Closed {
                base,
                next_offset,
                size,
                file,
                opened_here,
            });
        }
        let result = self
            .clean(
                &dir,
                &closed,
                &config,
                compacted_offset,
                now_ms,
                io_bytes_per_sec,
                &kept_batches,
            )
            .await;
        for seg in closed.into_iter().filter(|s| s.opened_here) {
            if let Ok(file) = Rc::try_unwrap(seg.file) {
                let _ = file.close().await;
            }
        }
        result
    }

    /// Map, rewrite and swap in `closed` (steps 1-4 of the module comment).
    #[allow(clippy::too_many_arguments)]
    async fn clean(
        &self,
        dir: &Path,
        closed: &[Closed],
        config: &LogConfig,
        compacted_offset: i64,
        now_ms: i64,
        io_bytes_per_sec: u64,
        kept_batches: &HashSet<i64>,
    ) -> Result<CompactionOutcome, StorageError> {
        if closed.is_empty() {
            return Ok(CompactionOutcome::default());
        }
        let dirty_start = closed
            .iter()
            .position(|s| s.next_offset > compacted_offset)
            .unwrap_or(closed.len());
        let (map, mapped) = build_map(dir, &closed[dirty_start..], config.key_map_bytes).await?;
        let cleanable = dirty_start + mapped;
        if cleanable < closed.len() {
            warn!(dir = %dir.display(), keys = map.len(), cleanable, closed = closed.len(), "compaction key map full; cleaning the first segments only");
        }
        let rules = RewriteRules {
            map: &map,
            tombstones: TombstoneClock {
                now_ms,
                delete_retention_ms: config.delete_retention_ms,
            },
            kept_batches,
            interval: config.index_interval_bytes,
            io_bytes_per_sec,
        };
        let mut outcome = CompactionOutcome::default();
        let mut tombstone_expiry_ms = i64::MAX;
        for run in runs_by_size(&closed[..cleanable], config.segment_bytes) {
            let new = rewrite(dir, run, &rules).await?;
            outcome.segments_rewritten += run.len();
            outcome.segments_after += 1;
            outcome.bytes_before += run.iter().map(|s| s.size).sum::<u64>();
            outcome.bytes_after += new.size;
            outcome.records_removed += new.records_removed;
            outcome.batches_removed += new.batches_removed;
            tombstone_expiry_ms = tombstone_expiry_ms.min(new.tombstone_expiry_ms);
            crash_point(SwapStep::Rewritten);
            self.swap_in(dir, run, new).await?;
        }
        let cleaned_to = closed[..cleanable]
            .last()
            .map_or(compacted_offset, |s| s.next_offset);
        let (compacted_offset, tombstone_expiry_ms) = {
            let mut inner = self.shared.inner.borrow_mut();
            inner.compacted_offset = inner.compacted_offset.max(cleaned_to);
            inner.tombstone_expiry_ms = tombstone_expiry_ms;
            (inner.compacted_offset, tombstone_expiry_ms)
        };
        let checkpoint = segment::checked_i64s(&[compacted_offset, tombstone_expiry_ms]);
        segment::write_file_atomic(dir, CHECKPOINT_FILE, checkpoint)
            .await
            .map_err(|e| StorageError::new(dir, "writing the cleaner checkpoint", e))?;
        Ok(outcome)
    }

    /// The file of closed segment `base` for this pass only (not kept in the segment, so
    /// reading it does not count as a use).
    async fn open_for_pass(&self, dir: &Path, base: i64) -> Result<Rc<SegmentFile>, StorageError> {
        let path = dir.join(segment::file_name(base, "log"));
        let dma = DmaFile::open(&path).await.map_err(|e| {
            StorageError::new(
                dir,
                format!("opening {} to compact it", path.display()),
                e.into(),
            )
        })?;
        Ok(Rc::new(SegmentFile::new(Rc::new(dma), path)))
    }

    /// Replaces the run of segments by its rewritten copy, on disk then in memory.
    async fn swap_in(
        &self,
        dir: &Path,
        run: &[Closed],
        new: Rewritten,
    ) -> Result<(), StorageError> {
        let first = &run[0];
        let end = run.last().expect("a run has segments").next_offset;
        let ctx = |what: &str, e: io::Error| {
            StorageError::new(
                dir,
                format!("{what} (compacting segment {})", first.base),
                e,
            )
        };
        let log_path = dir.join(segment::file_name(first.base, "log"));
        let index_name = segment::file_name(first.base, "index");
        remove_if_exists(&dir.join(&index_name))
            .await
            .map_err(|e| ctx("removing the old index", e))?;
        crash_point(SwapStep::OldIndexRemoved);
        glommio::io::rename(
            dir.join(segment::file_name(first.base, "cleaned")),
            &log_path,
        )
        .await
        .map_err(|e| ctx("renaming the cleaned segment", e.into()))?;
        crash_point(SwapStep::Renamed);
        sync_dir(dir)
            .await
            .map_err(|e| ctx("syncing the directory", e))?;
        if run.len() > 1 {
            for seg in &run[1..] {
                for ext in ["log", "index"] {
                    remove_if_exists(&dir.join(segment::file_name(seg.base, ext)))
                        .await
                        .map_err(|e| ctx("removing a merged segment", e))?;
                }
                crash_point(SwapStep::OneMergedRemoved);
            }
            sync_dir(dir)
                .await
                .map_err(|e| ctx("syncing the directory", e))?;
        }
        segment::write_file_atomic(dir, &index_name, new.index.encode())
            .await
            .map_err(|e| ctx("writing the index", e))?;
        crash_point(SwapStep::IndexWritten);
        let olds = {
            let mut inner = self.shared.inner.borrow_mut();
            let i = inner.segment_for(first.base);
            assert_eq!(
                (inner.segments[i].index.base_offset, new.index.next_offset),
                (first.base, end),
                "compaction keeps a run's first and end offsets"
            );
            let merged = inner.segments.drain(i..i + run.len()).collect::<Vec<_>>();
            assert_eq!(merged.last().map(|s| s.index.next_offset), Some(end));
            let last_used_ms = merged.iter().map(|s| s.last_used_ms.get()).max();
            let was_open = merged.iter().any(|s| s.file.is_some());
            let file = Rc::new(SegmentFile::new(new.file, log_path));
            inner.segments.insert(
                i,
                Segment {
                    index: new.index,
                    // A file nobody had open stays closed (reopened on the next read).
                    file: was_open.then(|| file.clone()),
                    written_bytes: new.size,
                    first_append_ms: None,
                    last_used_ms: std::cell::Cell::new(last_used_ms.unwrap_or(now_ms())),
                },
            );
            // The tail cache must not keep serving the uncompacted batches: drop its front up
            // to the end of this run (written data; the cache stays a suffix of the log).
            while let Some(c) = inner.cache.front() {
                if c.last_offset >= end {
                    break;
                }
                assert!(c.last_offset < inner.written_offset);
                inner.pop_cached();
            }
            let mut olds: Vec<Rc<SegmentFile>> =
                merged.into_iter().filter_map(|s| s.file).collect();
            if !was_open {
                olds.push(file);
            }
            olds
        };
        for old in olds {
            if let Ok(old) = Rc::try_unwrap(old) {
                old.close()
                    .await
                    .map_err(|e| ctx("closing the old file", e))?;
            }
        }
        Ok(())
    }
}

/// Consecutive segments whose sizes sum to at most `max_bytes` (a segment larger than that
/// is a run of its own), as Kafka's `groupSegmentsBySize`.
fn runs_by_size(segments: &[Closed], max_bytes: u64) -> Vec<&[Closed]> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let mut end = start + 1;
        let mut bytes = segments[start].size;
        while end < segments.len() && bytes + segments[end].size <= max_bytes {
            bytes += segments[end].size;
            end += 1;
        }
        runs.push(&segments[start..end]);
        start = end;
    }
    runs
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = glommio::io::Directory::open(dir).await?;
    d.sync().await?;
    d.close().await?;
    Ok(())
}

/// Key -> latest offset over the dirty segments, and how many leading segments it covers
/// (the one where the map filled included: keys it misses are kept, so it is still safe).
async fn build_map(
    dir: &Path,
    dirty: &[Closed],
    key_map_bytes: usize,
) -> Result<(OffsetMap, usize), StorageError> {
    let mut map = OffsetMap::new(key_map_bytes);
    for (i, seg) in dirty.iter().enumerate() {
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
            return Ok((map, i + 1));
        }
    }
    Ok((map, dirty.len()))
}

/// Writes the compacted copy of `run` to `{first base}.cleaned` and syncs it.
async fn rewrite(
    dir: &Path,
    run: &[Closed],
    rules: &RewriteRules<'_>,
) -> Result<Rewritten, StorageError> {
    let first = run[0].base;
    let ctx = |what: &str, e: io::Error| {
        StorageError::new(dir, format!("{what} (compacting segment {first})"), e)
    };
    let tmp = dir.join(segment::file_name(first, "cleaned"));
    remove_if_exists(&tmp)
        .await
        .map_err(|e| ctx("removing a stale copy", e))?;
    let file = Rc::new(
        segment::open_rw(&tmp)
            .await
            .map_err(|e| ctx("creating", e))?,
    );
    let mut out = RunWriter {
        writer: TailWriter::new(file.clone(), 0, Vec::new()),
        index: SegmentIndex::new(first),
        buf: Vec::with_capacity(WRITE_CHUNK_BYTES),
        run_end: run.last().expect("a run has segments").next_offset,
        records_removed: 0,
        batches_removed: 0,
        tombstone_expiry_ms: i64::MAX,
    };
    for seg in run {
        out.copy_segment(dir, seg, rules).await?;
    }
    out.flush(rules.io_bytes_per_sec)
        .await
        .map_err(|e| ctx("writing", e))?;
    if out.index.next_offset != out.run_end {
        return Err(StorageError::corrupt(
            dir,
            format!(
                "segments from {first} end at offset {} but their copy at {}",
                out.run_end, out.index.next_offset
            ),
        ));
    }
    file.fdatasync()
        .await
        .map_err(|e| ctx("fdatasync", e.into()))?;
    Ok(Rewritten {
        file,
        size: out.writer.end(),
        index: out.index,
        records_removed: out.records_removed,
        batches_removed: out.batches_removed,
        tombstone_expiry_ms: out.tombstone_expiry_ms,
    })
}

/// The copy of a run being written: its file, index and what was left out.
struct RunWriter {
    writer: TailWriter,
    index: SegmentIndex,
    buf: Vec<u8>,
    /// The run's end offset: its last batch always stays, so the copy ends there too.
    run_end: i64,
    records_removed: u64,
    batches_removed: u64,
    tombstone_expiry_ms: i64,
}

impl RunWriter {
    /// Appends the surviving entries of `seg`.
    async fn copy_segment(
        &mut self,
        dir: &Path,
        seg: &Closed,
        rules: &RewriteRules<'_>,
    ) -> Result<(), StorageError> {
        let ctx = |what: &str, e: io::Error| {
            StorageError::new(dir, format!("{what} (compacting segment {})", seg.base), e)
        };
        let (mut pos, mut next) = (0u64, seg.base);
        loop {
            let end = segment::scan_entries(&seg.file, pos, seg.size, Some(next), |e| {
                self.copy_entry(&e, rules);
                self.buf.len() < WRITE_CHUNK_BYTES
            })
            .await
            .map_err(|e| ctx("reading", e))?;
            if let Some(invalid) = end.invalid {
                return Err(StorageError::corrupt(
                    dir,
                    format!("segment {} corrupt at {}: {invalid}", seg.base, end.end),
                ));
            }
            if self.buf.len() >= WRITE_CHUNK_BYTES {
                self.flush(rules.io_bytes_per_sec)
                    .await
                    .map_err(|e| ctx("writing", e))?;
            }
            if end.end >= seg.size || end.end == pos {
                return Ok(());
            }
            (pos, next) = (end.end, end.next_offset);
        }
    }

    /// Appends `e` compacted to the buffer, or leaves it out when no record of it survives
    /// and it need not stay.
    fn copy_entry(&mut self, e: &segment::ScannedEntry<'_>, rules: &RewriteRules<'_>) {
        let before = self.buf.len();
        let body = records_body(e.batch, &e.header);
        match body.as_deref().and_then(|b| keyed_records(b, &e.header)) {
            Some(records) => {
                let horizon = delete_horizon(&e.header);
                let due = horizon.is_some_and(|h| h <= rules.tombstones.now_ms);
                let kept: Vec<bool> = records.iter().map(|r| keep(r, rules.map, due)).collect();
                let survivors = kept.iter().filter(|k| **k).count();
                let must_stay = e.last_offset + 1 == self.run_end
                    || rules.kept_batches.contains(&e.header.base_offset);
                if survivors == 0 && !must_stay {
                    self.records_removed += records.len() as u64;
                    self.batches_removed += 1;
                    return;
                }
                // Only the first pass that keeps a batch's tombstones stamps it.
                let keeps = keeps_tombstones(&records, &kept);
                let stamp = (keeps && horizon.is_none()).then(|| rules.tombstones.horizon());
                if keeps {
                    let expiry = horizon.or(stamp).expect("kept tombstones have a horizon");
                    self.tombstone_expiry_ms = self.tombstone_expiry_ms.min(expiry);
                }
                let dropped = records.len() - survivors;
                let rebuilt = (dropped > 0 || stamp.is_some())
                    .then(|| rebuild_batch(e.batch, &e.header, &records, &kept, stamp))
                    .flatten();
                if rebuilt.is_some() {
                    self.records_removed += dropped as u64;
                }
                let batch = rebuilt.as_deref().unwrap_or(e.batch);
                entry::encode_entry(&mut self.buf, batch, e.last_offset, e.max_timestamp);
            }
            None => entry::encode_entry(&mut self.buf, e.batch, e.last_offset, e.max_timestamp),
        }
        let entry_bytes = self.buf.len() - before;
        self.index.on_append(
            e.header.base_offset,
            e.last_offset,
            entry_bytes,
            e.max_timestamp,
            rules.interval,
        );
    }

    async fn flush(&mut self, io_bytes_per_sec: u64) -> io::Result<()> {
        self.writer.append(&self.buf).await?;
        throttle(self.buf.len(), io_bytes_per_sec).await;
        self.buf.clear();
        Ok(())
    }
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

/// The steps of a swap (step 3 of the module comment) a test can kill the process at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SwapStep {
    /// The run's `.cleaned` copy is written and synced; nothing swapped yet.
    Rewritten,
    /// The first segment's index is gone, its `.log` not yet replaced.
    OldIndexRemoved,
    /// `.cleaned` renamed over the first `.log` (the directory not yet synced).
    Renamed,
    /// One segment merged into the first is removed (others of the run may remain).
    OneMergedRemoved,
    /// The new index is written; the cleaner checkpoint is not.
    IndexWritten,
}

impl SwapStep {
    const ALL: [SwapStep; 5] = [
        SwapStep::Rewritten,
        SwapStep::OldIndexRemoved,
        SwapStep::Renamed,
        SwapStep::OneMergedRemoved,
        SwapStep::IndexWritten,
    ];

    fn name(self) -> &'static str {
        match self {
            SwapStep::Rewritten => "rewritten",
            SwapStep::OldIndexRemoved => "old_index_removed",
            SwapStep::Renamed => "renamed",
            SwapStep::OneMergedRemoved => "one_merged_removed",
            SwapStep::IndexWritten => "index_written",
        }
    }
}

/// Fault injection for the crash tests (tests/integration/test_compaction_crash.py): with
/// `SPATE_FAULT_COMPACTION_KILL_AT=STEP` (a `SwapStep` name) the process kills itself with
/// SIGKILL when a compaction swap reaches that step, as a crash there would stop it. Read
/// once; compaction only, never the produce or fetch path.
fn crash_point(step: SwapStep) {
    static KILL_AT: std::sync::OnceLock<Option<SwapStep>> = std::sync::OnceLock::new();
    let kill_at = KILL_AT.get_or_init(|| {
        let name = std::env::var("SPATE_FAULT_COMPACTION_KILL_AT").ok()?;
        let step = SwapStep::ALL.into_iter().find(|s| s.name() == name);
        assert!(
            step.is_some(),
            "SPATE_FAULT_COMPACTION_KILL_AT={name}: not a swap step"
        );
        step
    });
    if *kill_at == Some(step) {
        eprintln!(
            "injected fault: SPATE_FAULT_COMPACTION_KILL_AT={}; killing the process",
            step.name()
        );
        // SAFETY: kill(2) on this process, no memory involved.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
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
