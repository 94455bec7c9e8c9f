//! `PartitionLog`: one partition's segmented log on one glommio shard.
//!
//! Data path: `append` is synchronous. It checks the idempotent producer, assigns offsets,
//! copies the batch once, from the request straight into the filling write chunk (a DMA
//! buffer, see `chunk`), patches its base offset (and LogAppendTime) there, writes the entry
//! envelope around it, puts a reference to it in the tail cache and advances the log end
//! offset. A single writer task per partition seals the pending chunks and writes each with
//! one O_DIRECT write (group commit: everything appended while one write is in flight goes
//! out in the next one) and fdatasyncs when a `wait_durable(sync)` caller asked for it;
//! concurrent callers share one write and one fdatasync. Reads copy cached batches out of
//! the same chunks (see `read`).
//!
//! Files in the partition directory:
//! - `{base:020}.log`: entries, zero padded to a 4 KiB page at the end.
//! - `{base:020}.index`: sparse index summary of a closed segment, written at roll.
//! - `producer.snapshot`: producer state covering offsets < the offset in its frame,
//!   written at roll (after the closed segment is synced) and at close.
//! - `leader-epoch-checkpoint`: the leader-epoch cache (`crate::leader_epoch`), written by
//!   the writer task before the data it covers, and by `set_leader_epoch` and truncation.
//!
//! Replication (`replica`): `set_leader_epoch` stamps the leader's appends with its epoch,
//! `append_replicated` keeps a leader's offsets and epochs on a follower, `truncate_to` and
//! `truncate_fully_and_start_at` cut a follower's log back where it diverged.
//!
//! The tail cache keeps what its readers are about to read (`readers`): the written batches
//! from the slowest active tail reader's position on, within its bound, and none when no
//! reader read from memory lately; the write backlog always.
//!
//! Invariants: the tail cache is a contiguous suffix of the log and never drops an entry that
//! is not yet written, so any offset not in the cache is readable from disk; entries read
//! from disk are checksum-verified before their bytes are served.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use bytes::Bytes;
use event_listener::Event;
use glommio::io::DmaFile;
use tracing::{info, warn};

use crate::batch::{self, BatchHeader};
use crate::entry::{self, EntryError, ENTRY_HEADER_BYTES};
use crate::index::SegmentIndex;
use crate::leader_epoch::{self, LeaderEpochCache};
use crate::producer_state::{ProducerError, ProducerStateTable, SequenceCheck};
use crate::segment::{self, ScanEnd, SegmentFile};

mod backlog;
mod chunk;
mod compaction;
mod idle;
mod read;
mod readers;
mod recovery;
mod replica;
mod retention;
mod timestamp;
mod writer;

use chunk::Chunk;
pub use compaction::{CompactionOutcome, DIRTY_RATIO_SCALE};
pub use read::ReadBatches;
pub use readers::TAIL_READER_WINDOW_MS;
pub use retention::{retention_cut, RetentionOutcome, SegmentSummary};

use writer::{decode_snapshot_frame, encode_snapshot_frame, writer_loop};

const SNAPSHOT_FILE: &str = "producer.snapshot";
const SNAPSHOT_MAGIC: u32 = u32::from_le_bytes(*b"SPPS");
const SNAPSHOT_HEADER_BYTES: usize = 4 + 8 + 4 + 4;

/// Tunables of one partition log (the topic configs of the same names, Kafka's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when an append would grow the active segment past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first append is this old.
    pub segment_ms: i64,
    /// Distance in bytes between sparse index points.
    pub index_interval_bytes: usize,
    /// Checkpoint the active segment's index (and producer state) every this many bytes, so
    /// recovery after a crash scans only what came after.
    pub index_checkpoint_bytes: u64,
    /// Bound of the tail cache (written entries are evicted beyond it, and before the slowest
    /// active tail reader, see `readers`; unwritten never are).
    pub cache_bytes_max: usize,
    /// `retention.ms`: delete segments whose newest timestamp is older; negative keeps all.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger; negative: no limit.
    pub retention_bytes: i64,
    /// `message.timestamp.type=LogAppendTime`: stamp each batch with the broker's clock.
    pub log_append_time: bool,
    /// `flush.messages`: fdatasync once this many messages are unsynced.
    pub flush_messages: i64,
    /// `flush.ms`: fdatasync unsynced data this long after the last sync (see `flush_if_due`).
    pub flush_ms: i64,
    /// `cleanup.policy` includes `compact`: keep the latest record per key (see `compact`).
    pub compact: bool,
    /// `delete.retention.ms`: how long compaction keeps a tombstone.
    pub delete_retention_ms: i64,
    /// Memory of a compaction pass's key map (`log.cleaner.dedupe.buffer.size`).
    pub key_map_bytes: usize,
    /// `min.cleanable.dirty.ratio` in millionths (`compaction::DIRTY_RATIO_SCALE`): a pass
    /// runs once the closed segments not yet cleaned hold this share of the closed bytes.
    pub min_cleanable_dirty_ratio: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            index_checkpoint_bytes: 64 << 20,
            cache_bytes_max: 8 << 20,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            log_append_time: false,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            compact: false,
            delete_retention_ms: 24 * 3600 * 1000,
            key_map_bytes: crate::compaction::OFFSET_MAP_BYTES_MAX,
            min_cleanable_dirty_ratio: compaction::DIRTY_RATIO_SCALE / 2,
        }
    }
}

/// Milliseconds since the Unix epoch by the wall clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An IO failure with the partition directory and what was being done.
#[derive(Debug)]
pub struct StorageError {
    pub dir: PathBuf,
    pub context: String,
    pub source: io::Error,
}

impl StorageError {
    fn new(dir: &Path, context: impl Into<String>, source: io::Error) -> Self {
        StorageError {
            dir: dir.to_path_buf(),
            context: context.into(),
            source,
        }
    }

    fn corrupt(dir: &Path, context: impl Into<String>) -> Self {
        let context = context.into();
        let source = io::Error::new(io::ErrorKind::InvalidData, context.clone());
        StorageError::new(dir, context, source)
    }

    /// KAFKA_STORAGE_ERROR.
    pub fn kafka_error_code(&self) -> i16 {
        56
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "storage error in {}: {}: {}",
            self.dir.display(),
            self.context,
            self.source
        )
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Result of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// A retried batch: these are the original offsets and nothing was appended.
    pub duplicate: bool,
    pub log_start_offset: i64,
    /// The broker time stamped on the batch (LogAppendTime), else -1.
    pub log_append_time_ms: i64,
}

/// Why an append was refused.
#[derive(Debug)]
pub enum AppendError {
    Producer(ProducerError),
    Storage(StorageError),
    /// A follower's batch does not continue the log (`append_replicated`).
    Replica(ReplicaError),
}

impl AppendError {
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            AppendError::Producer(e) => e.kafka_error_code(),
            AppendError::Storage(e) => e.kafka_error_code(),
            AppendError::Replica(e) => e.kafka_error_code(),
        }
    }
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::Producer(e) => write!(f, "producer check failed: {e}"),
            AppendError::Storage(e) => e.fmt(f),
            AppendError::Replica(e) => write!(f, "replicated batch refused: {e}"),
        }
    }
}

impl std::error::Error for AppendError {}

/// Why `append_replicated` refused a batch; nothing was appended. Both mean the follower's
/// log and its leader's disagree: the follower must truncate (or refetch) first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaError {
    /// The batch starts below the log end (Kafka's UnexpectedAppendOffsetException).
    OffsetBelowLogEnd {
        base_offset: i64,
        log_end_offset: i64,
    },
    /// The batch's leader epoch is older than the newest epoch in the log.
    EpochBelowLatest { epoch: i32, latest_epoch: i32 },
}

impl ReplicaError {
    /// UNKNOWN_SERVER_ERROR: a follower's own fetch went wrong, no client asked.
    pub fn kafka_error_code(&self) -> i16 {
        -1
    }
}

impl std::error::Error for ReplicaError {}

impl fmt::Display for ReplicaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaError::OffsetBelowLogEnd {
                base_offset,
                log_end_offset,
            } => write!(
                f,
                "base offset {base_offset} is below the log end offset {log_end_offset}"
            ),
            ReplicaError::EpochBelowLatest {
                epoch,
                latest_epoch,
            } => write!(
                f,
                "leader epoch {epoch} is older than the latest epoch {latest_epoch}"
            ),
        }
    }
}

/// Whose batch an append takes: a leader's (`append`: offsets assigned here, producer
/// sequence checked, leader epoch and LogAppendTime stamped) or a copy of its leader's on a
/// follower (`append_replicated`: kept as it is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    Leader,
    Replica,
}

struct Segment {
    /// Covers everything appended, including what is still pending.
    index: SegmentIndex,
    /// `None` until the writer created the file (after a roll).
    file: Option<Rc<SegmentFile>>,
    /// Logical bytes already written to the file.
    written_bytes: u64,
    /// Wall clock of the first append (for `segment.ms`); `None` while empty.
    first_append_ms: Option<i64>,
    /// Wall clock of the last read of its file (idle files are closed, see `idle`).
    last_used_ms: std::cell::Cell<i64>,
}

/// A batch of the tail cache: `len` bytes at `start` in its write chunk.
struct CachedBatch {
    base_offset: i64,
    last_offset: i64,
    chunk: Rc<Chunk>,
    start: usize,
    len: usize,
}

enum Pending {
    /// A write chunk of the active segment (sealed and written by the writer task).
    Data(Rc<Chunk>),
    /// Close `closed_base` (sync, index, producer snapshot) and start `new_base`.
    Roll {
        closed_base: i64,
        new_base: i64,
        snapshot: Vec<u8>,
    },
}

struct Inner {
    dir: PathBuf,
    config: LogConfig,
    segments: Vec<Segment>,
    /// The active segment's file; taken by the writer task while it flushes.
    writer: Option<Rc<DmaFile>>,
    /// The chunk appends go into (until the writer seals it or it is full).
    filling: Option<Rc<Chunk>>,
    /// The recovered active segment's partial last page, until its first chunk copies it.
    tail_seed: Vec<u8>,
    /// Capacity for the next chunk (see `chunk::next_hint`).
    chunk_hint: usize,
    log_end_offset: i64,
    /// First offset served; at or above the first segment's base (DeleteRecords moves it
    /// inside a segment).
    log_start_offset: i64,
    /// Segments ending at or below this are closed: written, synced, index on disk. Only
    /// those may be deleted.
    closed_offset: i64,
    /// Wall clock of the last fdatasync (for `flush.ms`).
    last_sync_ms: i64,
    /// Bytes of the active segment covered by its index checkpoint on disk.
    checkpointed_bytes: u64,
    /// Closed segments below this went through a compaction pass.
    compacted_offset: i64,
    /// When the earliest tombstone kept by compaction may go (i64::MAX: none).
    tombstone_expiry_ms: i64,
    /// Every offset below this is in a file.
    written_offset: i64,
    /// Every offset below this is fdatasync'ed.
    synced_offset: i64,
    /// A `wait_durable(sync)` caller wants offsets below this synced.
    sync_target: i64,
    pending: VecDeque<Pending>,
    cache: VecDeque<CachedBatch>,
    /// Memory of the chunks the cache references (a chunk counts whole).
    cache_bytes: usize,
    /// Where the tail cache's readers are (what it keeps, see `readers`).
    readers: readers::TailReaders,
    /// Wall clock of the last append (i64::MIN: none since the log opened).
    last_append_ms: i64,
    producers: ProducerStateTable,
    failed: Option<(io::ErrorKind, String)>,
    /// The failure was a full disk (or similar): `retry_after_failure` may clear it.
    failure_retryable: bool,
    closing: bool,
    /// The writer task is writing an index checkpoint (same files as `close`).
    checkpointing: bool,
    /// Appends waiting for room in the write backlog, first in line first (see `backlog`).
    waiting_for_room: VecDeque<u64>,
    /// The id of the next append to wait for room.
    next_turn: u64,
    /// Which leader epoch wrote which offsets (`leader-epoch-checkpoint`).
    epochs: LeaderEpochCache,
    /// Counts changes of `epochs`; the writer task persists them up to this.
    epochs_changes: u64,
    /// `epochs_changes` when the checkpoint file was last written.
    epochs_saved: u64,
    /// The epoch `append` stamps into each batch, once `set_leader_epoch` made this replica
    /// the leader (`None`: batches keep the field their producer sent).
    leader_epoch: Option<i32>,
    /// `truncate_to` or `truncate_fully_and_start_at` is rewriting the files: no appends,
    /// and the writer task waits.
    truncating: bool,
}

struct Shared {
    inner: RefCell<Inner>,
    /// Log end offset advanced.
    data_event: Event,
    /// written/synced offsets advanced, or the log failed.
    durable_event: Event,
    /// Work for the writer task.
    writer_wake: Event,
    /// Serialises retention, DeleteRecords and their file deletions on this log.
    maintenance: glommio::sync::Semaphore,
    /// Tests: the error every segment read fails with (a disk read fault).
    #[cfg(test)]
    read_fault: std::cell::Cell<Option<io::ErrorKind>>,
    /// Tests: the error every segment write fails with (a full disk: StorageFull).
    #[cfg(test)]
    write_fault: std::cell::Cell<Option<io::ErrorKind>>,
    /// Tests: the error every fdatasync of the active segment fails with (EIO).
    #[cfg(test)]
    sync_fault: std::cell::Cell<Option<io::ErrorKind>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.writer_wake.notify(usize::MAX);
    }
}

/// One partition's log; cheap to clone, lives on one shard.
#[derive(Clone)]
pub struct PartitionLog {
    shared: Rc<Shared>,
}

impl Inner {
    fn error(&self, context: impl Into<String>, source: io::Error) -> StorageError {
        StorageError::new(&self.dir, context, source)
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        if let Some((kind, msg)) = &self.failed {
            return Err(self.error("log failed earlier", io::Error::new(*kind, msg.clone())));
        }
        if self.closing {
            return Err(self.error("log is closed", io::Error::other("closed")));
        }
        if self.truncating {
            let e = io::Error::new(io::ErrorKind::ResourceBusy, "truncating");
            return Err(self.error("log is being truncated", e));
        }
        Ok(())
    }

    fn has_writer_work(&self) -> bool {
        self.failed.is_none()
            && !self.truncating
            && (!self.pending.is_empty()
                || self.sync_target > self.synced_offset
                || self.epochs_saved < self.epochs_changes)
    }

    /// Notes a change of `epochs` for the writer task to persist; returns its number.
    fn epochs_changed(&mut self) -> u64 {
        self.epochs_changes += 1;
        self.epochs_changes
    }

    fn active(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    fn segment_for(&self, offset: i64) -> usize {
        let i = self
            .segments
            .partition_point(|s| s.index.base_offset <= offset);
        assert!(i > 0, "offset {offset} below the log start");
        i - 1
    }

    /// Drops the oldest cached batch; its chunk stops counting once none of its batches is
    /// cached (a chunk's batches are contiguous in the cache).
    fn pop_cached(&mut self) {
        let c = self
            .cache
            .pop_front()
            .expect("pop_cached on an empty cache");
        let chunk_done = self
            .cache
            .front()
            .is_none_or(|next| !Rc::ptr_eq(&next.chunk, &c.chunk));
        if chunk_done {
            self.cache_bytes -= c.chunk.capacity();
        }
    }

    /// `segment.bytes` or `segment.ms` says the next entry starts a new segment.
    fn should_roll(&mut self, entry_bytes: usize, now_ms: i64) -> bool {
        let (segment_bytes, segment_ms) = (self.config.segment_bytes, self.config.segment_ms);
        let active = self.active();
        let size = active.index.size_bytes;
        let too_old = active
            .first_append_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= segment_ms);
        size > 0 && (size + entry_bytes as u64 > segment_bytes || too_old)
    }

    fn roll(&mut self, new_base: i64) {
        let closed_base = self.active().index.base_offset;
        // The recovered partial page belongs to the closed segment.
        self.tail_seed = Vec::new();
        let snapshot = encode_snapshot_frame(new_base, &self.producers.encode_snapshot());
        self.pending.push_back(Pending::Roll {
            closed_base,
            new_base,
            snapshot,
        });
        self.segments.push(Segment {
            index: SegmentIndex::new(new_base),
            file: None,
            written_bytes: 0,
            first_append_ms: None,
            last_used_ms: std::cell::Cell::new(now_ms()),
        });
        info!(dir = %self.dir.display(), closed_base, new_base, "rolling segment");
    }

    /// The chunk the next entry (`entry_bytes`) goes into: the filling one if it has room,
    /// else a new one (queued for the writer) that starts with the partial last page.
    fn filling_chunk(&mut self, entry_bytes: usize) -> Rc<Chunk> {
        let active = self.segments.last().expect("a log always has a segment");
        let (base, end) = (active.index.base_offset, active.index.size_bytes);
        let cap = (self.config.cache_bytes_max / 4).max(segment::PAGE_BYTES as usize);
        let chunk = match &self.filling {
            Some(c) if c.segment_base == base && c.has_room(entry_bytes) => return c.clone(),
            Some(c) if c.segment_base == base => {
                assert_eq!(c.end(), end, "chunks cover the segment in order");
                if c.has_room(0) {
                    // Full before the writer came: a busy partition, so larger writes.
                    self.chunk_hint = chunk::next_hint(c.capacity());
                }
                let hint = self.chunk_hint.min(cap);
                Chunk::new(base, end, &c.tail_page(), entry_bytes, hint)
            }
            _ => {
                let seed = std::mem::take(&mut self.tail_seed);
                Chunk::new(base, end, &seed, entry_bytes, self.chunk_hint.min(cap))
            }
        };
        let chunk = Rc::new(chunk);
        self.cache_bytes += chunk.capacity();
        self.pending.push_back(Pending::Data(chunk.clone()));
        self.filling = Some(chunk.clone());
        chunk
    }
}

impl PartitionLog {
    /// Opens (creating if missing) and recovers the log in `dir`.
    pub async fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, StorageError> {
        assert!(config.segment_bytes > 0 && config.index_interval_bytes > 0);
        // glommio's directory operations fail on relative paths (EBADF): work with absolute ones.
        let dir = &std::path::absolute(dir)
            .map_err(|e| StorageError::new(dir, "resolving the partition directory", e))?;
        let inner = recovery::recover(dir, config).await?;
        let shared = Rc::new(Shared {
            inner: RefCell::new(inner),
            data_event: Event::new(),
            durable_event: Event::new(),
            writer_wake: Event::new(),
            maintenance: glommio::sync::Semaphore::new(1),
            #[cfg(test)]
            read_fault: std::cell::Cell::new(None),
            #[cfg(test)]
            write_fault: std::cell::Cell::new(None),
            #[cfg(test)]
            sync_fault: std::cell::Cell::new(None),
        });
        glommio::spawn_local(writer_loop(Rc::downgrade(&shared))).detach();
        Ok(PartitionLog { shared })
    }

    /// First offset served (Kafka's log start offset / low watermark).
    pub fn log_start_offset(&self) -> i64 {
        self.shared.inner.borrow().log_start_offset
    }

    /// Next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.shared.inner.borrow().log_end_offset
    }

    /// Every offset below this is written to its file (not necessarily fdatasync'ed).
    pub fn written_offset(&self) -> i64 {
        self.shared.inner.borrow().written_offset
    }

    /// Every offset below this is fdatasync'ed.
    pub fn synced_offset(&self) -> i64 {
        self.shared.inner.borrow().synced_offset
    }

    /// Whether appends are refused after a write failure.
    /// Drops the idempotent producers whose last batch is `expiration_ms` older than
    /// `now_ms` (Kafka's `producer.id.expiration.ms`); returns how many. The next snapshot
    /// (segment roll or close) no longer holds them.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.shared
            .inner
            .borrow_mut()
            .producers
            .expire(now_ms, expiration_ms)
    }

    /// Idempotent producers whose state this partition keeps.
    pub fn producer_count(&self) -> usize {
        self.shared.inner.borrow().producers.len()
    }

    pub fn is_failed(&self) -> bool {
        self.shared.inner.borrow().failed.is_some()
    }

    /// Closed (`close` was called: its topic was deleted or the shard is stopping).
    pub fn is_closed(&self) -> bool {
        self.shared.inner.borrow().closing
    }

    /// Failed for good (a failed fdatasync or truncation, an IO error reading a segment):
    /// appends and reads are refused until the process restarts and recovery runs, as
    /// Kafka's offline log dir. A full disk is a retryable failure and keeps serving reads.
    pub fn is_offline(&self) -> bool {
        let inner = self.shared.inner.borrow();
        inner.failed.is_some() && !inner.failure_retryable
    }

    /// After a retryable failure (disk full): accepts appends again and retries the unwritten
    /// entries. Returns whether it did; a failure that is not retryable stays.
    pub fn retry_after_failure(&self) -> bool {
        let mut inner = self.shared.inner.borrow_mut();
        if inner.failed.is_none() || !inner.failure_retryable || inner.closing {
            return false;
        }
        info!(dir = %inner.dir.display(), "retrying writes after a storage failure");
        inner.failed = None;
        inner.failure_retryable = false;
        drop(inner);
        self.shared.writer_wake.notify(1);
        true
    }

    /// Bytes of the active segment covered by its index checkpoint (right after `open`: what
    /// recovery did not have to scan).
    pub fn active_checkpoint_bytes(&self) -> u64 {
        self.shared.inner.borrow().checkpointed_bytes
    }

    /// Number of segments (closed and active).
    pub fn segment_count(&self) -> usize {
        self.shared.inner.borrow().segments.len()
    }

    /// Bytes of all segments, including entries not yet written (the log's size on disk once
    /// they are).
    pub fn size_bytes(&self) -> u64 {
        let inner = self.shared.inner.borrow();
        inner.segments.iter().map(|s| s.index.size_bytes).sum()
    }

    /// Single replica for now: equals the log end offset.
    pub fn high_watermark(&self) -> i64 {
        self.log_end_offset()
    }

    /// Appends one validated batch (see module docs); duplicates return original offsets.
    /// After `set_leader_epoch`, the batch is stamped with that leader epoch.
    pub fn append(&self, batch: &[u8], header: &BatchHeader) -> Result<AppendOutcome, AppendError> {
        self.append_from(Origin::Leader, batch, header)
    }

    /// A follower's append of a batch its leader wrote (Kafka's `appendAsFollower`): the batch
    /// keeps its base offset and leader epoch (nothing is patched or stamped), which must not
    /// go below the log end offset (a compacted leader may leave a gap) nor below the latest
    /// leader epoch; a newer epoch starts at its base offset in the epoch cache. The producer
    /// state records the batch without checking its sequence, so a producer that retries
    /// with this replica once it leads is deduplicated. Everything else (segments, cache,
    /// group commit, `wait_durable`) is as for `append`.
    pub fn append_replicated(
        &self,
        batch: &[u8],
        header: &BatchHeader,
    ) -> Result<AppendOutcome, AppendError> {
        self.append_from(Origin::Replica, batch, header)
    }

    /// The body of `append` and `append_replicated`: synchronous, one copy of the batch into
    /// the filling chunk, patched there. `origin` is a constant at both call sites.
    #[inline(always)]
    fn append_from(
        &self,
        origin: Origin,
        batch: &[u8],
        header: &BatchHeader,
    ) -> Result<AppendOutcome, AppendError> {
        assert_eq!(
            batch.len(),
            header.total_bytes(),
            "append needs exactly one whole batch"
        );
        assert!(
            header.last_offset_delta >= 0,
            "append needs a validated batch"
        );
        let mut inner = self.shared.inner.borrow_mut();
        inner.check_usable().map_err(AppendError::Storage)?;
        let log_start_offset = inner.log_start_offset;
        let base_offset = match origin {
            Origin::Leader => match inner
                .producers
                .check(header)
                .map_err(AppendError::Producer)?
            {
                SequenceCheck::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    return Ok(AppendOutcome {
                        base_offset,
                        last_offset,
                        duplicate: true,
                        log_start_offset,
                        log_append_time_ms: -1,
                    });
                }
                SequenceCheck::Append => inner.log_end_offset,
            },
            Origin::Replica => inner
                .check_replicated(header)
                .map_err(AppendError::Replica)?,
        };
        let last_offset = base_offset + header.last_offset_delta as i64;
        let now = now_ms();
        let (stamp, epoch) = match origin {
            Origin::Leader => (
                inner.config.log_append_time.then_some(now),
                inner.leader_epoch,
            ),
            Origin::Replica => (None, None),
        };
        // A client's batch claiming LogAppendTime on a CreateTime topic becomes CreateTime,
        // as Kafka rewrites it (clients never set it; only this rare batch pays the CRC).
        let unclaim_log_append_time =
            matches!(origin, Origin::Leader) && stamp.is_none() && header.is_log_append_time();
        let max_timestamp = stamp.unwrap_or(header.max_timestamp);
        let len = batch.len();
        let entry_bytes = entry::entry_bytes(len);
        if inner.should_roll(entry_bytes, now) {
            // At the log end, not the batch's base: a follower's batch may start after a gap,
            // and segments stay back to back.
            let leo = inner.log_end_offset;
            inner.roll(leo);
        }
        let chunk = inner.filling_chunk(entry_bytes);
        let at = chunk.append(entry_bytes, last_offset, |entry| {
            let body = &mut entry[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + len];
            // The one copy of the payload on the append path; patched where it lands (a
            // replicated batch's base offset is already this one).
            crate::dma_copy::copy_for_dma(body, batch);
            batch::patch_base_offset(body, base_offset);
            if let Some(epoch) = epoch {
                // Outside the CRC, like the base offset: no re-checksum.
                batch::patch_partition_leader_epoch(body, epoch);
            }
            if let Some(now) = stamp {
                batch::set_log_append_time(body, now);
            } else if unclaim_log_append_time {
                batch::set_create_time(body);
            }
            entry::seal_entry(entry, len, last_offset, max_timestamp);
        });
        let interval = inner.config.index_interval_bytes;
        inner.last_append_ms = now;
        let active = inner.active();
        active.first_append_ms.get_or_insert(now);
        active.index.on_append(
            base_offset,
            last_offset,
            entry_bytes,
            max_timestamp,
            interval,
        );
        inner.cache.push_back(CachedBatch {
            base_offset,
            last_offset,
            chunk,
            start: at + ENTRY_HEADER_BYTES,
            len,
        });
        inner.evict_cache();
        inner.log_end_offset = last_offset + 1;
        if inner.log_end_offset - inner.synced_offset >= inner.config.flush_messages {
            inner.sync_target = inner.sync_target.max(inner.log_end_offset);
        }
        inner.producers.record(header, base_offset);
        if origin == Origin::Replica {
            inner.note_replicated_epoch(header.partition_leader_epoch, base_offset);
        }
        drop(inner);
        self.shared.data_event.notify(usize::MAX);
        self.shared.writer_wake.notify(1);
        Ok(AppendOutcome {
            base_offset,
            last_offset,
            duplicate: false,
            log_start_offset,
            log_append_time_ms: stamp.unwrap_or(-1),
        })
    }

    /// Resolves once `offset` is written (and fdatasync'ed with `sync`); group committed.
    pub async fn wait_durable(&self, offset: i64, sync: bool) -> Result<(), StorageError> {
        loop {
            let listener = {
                let mut inner = self.shared.inner.borrow_mut();
                if let Some((kind, msg)) = &inner.failed {
                    return Err(inner.error("write failed", io::Error::new(*kind, msg.clone())));
                }
                let target = offset.min(inner.log_end_offset - 1);
                if target < 0
                    || (inner.written_offset > target && (!sync || inner.synced_offset > target))
                {
                    return Ok(());
                }
                if sync {
                    inner.sync_target = inner.sync_target.max(target + 1);
                }
                self.shared.durable_event.listen()
            };
            self.shared.writer_wake.notify(1);
            listener.await;
        }
    }

    fn error(&self, context: impl Into<String>, source: io::Error) -> StorageError {
        self.shared.inner.borrow().error(context, source)
    }

    /// Resolves once no index checkpoint is being written (it writes the files `close` does).
    async fn checkpoint_done(&self) {
        loop {
            if !self.shared.inner.borrow().checkpointing {
                return;
            }
            let listener = self.shared.durable_event.listen();
            if !self.shared.inner.borrow().checkpointing {
                return;
            }
            listener.await;
        }
    }

    /// Flushes, fdatasyncs, writes the producer snapshot and closes the files.
    pub async fn close(&self) -> Result<(), StorageError> {
        let leo = {
            let mut inner = self.shared.inner.borrow_mut();
            inner.check_usable()?;
            inner.closing = true;
            inner.log_end_offset
        };
        self.wait_durable(leo - 1, true).await?;
        self.checkpoint_done().await;
        // The writer task writes the leader-epoch checkpoint (retention may have changed it).
        let epochs_changes = self.shared.inner.borrow().epochs_changes;
        self.wait_epochs_saved(epochs_changes).await?;
        let (dir, snapshot, checkpoint, writer, files) = {
            let mut inner = self.shared.inner.borrow_mut();
            assert!(
                inner.pending.is_empty() && inner.synced_offset == leo.max(inner.synced_offset)
            );
            let snapshot = encode_snapshot_frame(leo, &inner.producers.encode_snapshot());
            let active = inner.segments.last().expect("a log always has a segment");
            let checkpoint = (active.written_bytes > 0)
                .then(|| (active.index.base_offset, active.index.encode()));
            let files: Vec<_> = inner
                .segments
                .iter_mut()
                .filter_map(|s| s.file.take())
                .collect();
            (
                inner.dir.clone(),
                snapshot,
                checkpoint,
                inner.writer.take(),
                files,
            )
        };
        segment::write_file_atomic(&dir, SNAPSHOT_FILE, snapshot)
            .await
            .map_err(|e| StorageError::new(&dir, "writing producer snapshot at close", e))?;
        // The active segment's index too, so the next start does not scan it.
        if let Some((base, index)) = checkpoint {
            segment::write_file_atomic(&dir, &segment::file_name(base, "index"), index)
                .await
                .map_err(|e| StorageError::new(&dir, "writing the active index at close", e))?;
        }
        drop(writer);
        for file in files {
            // A read still in flight holds a reference; its drop closes the file then.
            if let Ok(file) = Rc::try_unwrap(file) {
                file.close()
                    .await
                    .map_err(|e| StorageError::new(&dir, "closing segment", e))?;
            }
        }
        self.shared.writer_wake.notify(usize::MAX);
        info!(dir = %dir.display(), log_end_offset = leo, "partition log closed");
        Ok(())
    }
}
