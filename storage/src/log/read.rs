//! Reads: whole batches from the one holding an offset, from the tail cache (slices of the
//! write chunks) or from the segment files (checksums verified), copied once into one
//! contiguous buffer that a Fetch answer carries as is.

use bytes::BytesMut;

use super::*;

/// Whether an IO error reading a segment is a failing device (the log goes offline, as after
/// a failed fdatasync: Kafka marks a log dir offline on any IOException) rather than damaged
/// data (a checksum: that read alone is refused) or a race with retention (a file deleted).
pub(super) fn is_device_failure(kind: io::ErrorKind) -> bool {
    !matches!(
        kind,
        io::ErrorKind::InvalidData
            | io::ErrorKind::NotFound
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::OutOfMemory
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Most bytes reserved up front for a read from disk (more grows the buffer).
const READ_RESERVE_BYTES_MAX: u64 = 4 << 20;

/// Whole batches read from a log, back to back in one buffer (Kafka's `records` field of a
/// Fetch answer): cheap to clone, safe to send to another shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadBatches {
    bytes: Bytes,
    /// End of each batch in `bytes`.
    ends: Vec<usize>,
}

impl ReadBatches {
    /// Copies `batches` into one buffer (tests and small callers).
    pub fn from_batches<B: AsRef<[u8]>>(batches: impl IntoIterator<Item = B>) -> Self {
        let mut builder = Builder::default();
        for b in batches {
            builder.push(b.as_ref());
        }
        builder.finish()
    }

    /// Number of batches.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of all batches.
    pub fn total_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Sizes of the batches, in order.
    pub fn batch_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.ends.iter().zip(starts).map(|(end, start)| end - start)
    }

    /// Each batch as a slice of the one buffer (no copy).
    pub fn iter(&self) -> impl Iterator<Item = Bytes> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.ends
            .iter()
            .zip(starts)
            .map(|(&end, start)| self.bytes.slice(start..end))
    }

    /// Keeps the first `batches` batches.
    pub fn truncate(&mut self, batches: usize) {
        self.ends.truncate(batches);
        self.bytes.truncate(self.ends.last().copied().unwrap_or(0));
    }

    /// The batches back to back.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

#[derive(Default)]
struct Builder {
    buf: BytesMut,
    ends: Vec<usize>,
}

impl Builder {
    fn push(&mut self, batch: &[u8]) {
        self.buf.extend_from_slice(batch);
        self.end_batch();
    }

    fn end_batch(&mut self) {
        self.ends.push(self.buf.len());
    }

    fn total(&self) -> usize {
        self.buf.len()
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn finish(self) -> ReadBatches {
        ReadBatches {
            bytes: self.buf.freeze(),
            ends: self.ends,
        }
    }
}

impl PartitionLog {
    /// Whole batches from the one containing `offset`, up to `max_bytes` (at least one), each
    /// as its own slice of one buffer.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Vec<Bytes>, StorageError> {
        let batches = self.read_batches(offset, max_bytes).await?;
        Ok(batches.iter().collect())
    }

    /// Whole batches from the one containing `offset`, up to `max_bytes` (at least one), back
    /// to back in one buffer: the only copy of their bytes on the way to a Fetch answer.
    pub async fn read_batches(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadBatches, StorageError> {
        self.check_readable()?;
        let mut out = Builder::default();
        let mut next = offset.max(self.log_start_offset());
        loop {
            let (file, position, limit) = {
                let inner = self.shared.inner.borrow();
                if next < inner.log_start_offset {
                    // Retention removed what this read was walking through meanwhile.
                    if !out.is_empty() {
                        return Ok(out.finish());
                    }
                    next = inner.log_start_offset;
                }
                // A tail reader (served from memory) tells the cache what to keep.
                inner.note_read(next);
                if next >= inner.log_end_offset {
                    return Ok(out.finish());
                }
                if inner.cache.front().is_some_and(|c| c.base_offset <= next) {
                    take_from_cache(&inner.cache, next, max_bytes, &mut out);
                    return Ok(out.finish());
                }
                let s = &inner.segments[inner.segment_for(next)];
                assert!(s.written_bytes > 0, "uncached data is written");
                let at = s.index.position_for_offset(next);
                ((s.index.base_offset, s.file.clone()), at, s.written_bytes)
            };
            let file = self
                .segment_file(file.0, file.1)
                .await
                .map_err(|e| self.read_failed(e))?;
            let reserve = (max_bytes.saturating_sub(out.total()) as u64)
                .min(limit - position)
                .min(READ_RESERVE_BYTES_MAX);
            out.buf.reserve(reserve as usize);
            let mut full = false;
            self.injected_read_fault()
                .map_err(|e| self.read_failed(self.error(format!("reading offset {next}"), e)))?;
            let end = segment::scan_entries(&file, position, limit, None, |e| {
                if e.last_offset < next {
                    return true;
                }
                if !out.is_empty() && out.total() + e.batch.len() > max_bytes {
                    full = true;
                    return false;
                }
                out.push(e.batch);
                full = out.total() >= max_bytes;
                !full
            })
            .await
            .map_err(|e| {
                self.read_failed(
                    self.error(format!("reading offset {next} at position {position}"), e),
                )
            })?;
            if full {
                return Ok(out.finish());
            }
            next = self.advance_after_scan(next, position, &end)?;
        }
    }

    /// Refuses reads of a log that failed for good ([`PartitionLog::is_offline`]).
    pub(super) fn check_readable(&self) -> Result<(), StorageError> {
        let inner = self.shared.inner.borrow();
        match &inner.failed {
            Some((kind, msg)) if !inner.failure_retryable => Err(inner.error(
                "log is offline after a storage failure",
                io::Error::new(*kind, msg.clone()),
            )),
            _ => Ok(()),
        }
    }

    /// A segment read failed: a failing device takes the log offline (appends and reads are
    /// refused until restart, as after a failed fdatasync); damaged data fails this read only.
    pub(super) fn read_failed(&self, e: StorageError) -> StorageError {
        if !is_device_failure(e.source.kind()) {
            return e;
        }
        let mut inner = self.shared.inner.borrow_mut();
        if inner.failed.is_none() || inner.failure_retryable {
            warn!(error = %e, "partition log read failed; the log is offline until restart");
            inner.failed = Some((e.source.kind(), e.to_string()));
            inner.failure_retryable = false;
        }
        drop(inner);
        // Appends waiting for a write that will not come get their error now.
        self.shared.durable_event.notify(usize::MAX);
        e
    }

    /// Tests: the injected disk read fault, as a segment read's error.
    pub(super) fn injected_read_fault(&self) -> io::Result<()> {
        #[cfg(test)]
        if let Some(kind) = self.shared.read_fault.get() {
            return Err(io::Error::new(kind, "injected read fault"));
        }
        Ok(())
    }

    /// Tests: every segment read fails with `kind` from now on (None: reads work again).
    #[cfg(test)]
    pub(crate) fn inject_read_fault(&self, kind: Option<io::ErrorKind>) {
        self.shared.read_fault.set(kind);
    }

    fn advance_after_scan(
        &self,
        next: i64,
        position: u64,
        end: &ScanEnd,
    ) -> Result<i64, StorageError> {
        let dir = self.shared.inner.borrow().dir.clone();
        if let Some(invalid) = &end.invalid {
            return Err(StorageError::corrupt(
                &dir,
                format!("corrupt entry at position {} reading offset {next} (from {position}): {invalid}", end.end),
            ));
        }
        if end.next_offset <= next {
            return Err(StorageError::corrupt(
                &dir,
                format!("offset {next} not found on disk"),
            ));
        }
        Ok(end.next_offset)
    }
}

/// Copies the cached batches from the one holding `next` up to `max_bytes` (at least one)
/// out of their write chunks, into a buffer sized once.
fn take_from_cache(cache: &VecDeque<CachedBatch>, next: i64, max_bytes: usize, out: &mut Builder) {
    let first = cache.partition_point(|c| c.last_offset < next);
    let mut total = 0usize;
    let mut count = 0usize;
    for c in cache.range(first..) {
        if count > 0 && total + c.len > max_bytes {
            break;
        }
        total += c.len;
        count += 1;
        if total >= max_bytes {
            break;
        }
    }
    out.buf.reserve(total);
    for c in cache.range(first..first + count) {
        c.chunk
            .copy_out(c.start, c.start + c.len, |b| out.buf.extend_from_slice(b));
        out.end_batch();
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::batch::test_support::{encode_batch, simple_records, NO_PRODUCER};
    use crate::batch::validate_produce_records;

    /// Runs `f` in a fresh glommio executor (memory locked for io_uring: lift the limit
    /// where allowed).
    pub(in crate::log) fn run<Fut: std::future::Future<Output = ()> + 'static>(
        f: impl FnOnce() -> Fut,
    ) {
        let lim = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(2 << 20)
            .make()
            .expect("executor");
        ex.run(f());
    }

    /// A log of 40 one-record batches over several segments, its tail cache too small to
    /// hold the early ones (so reading offset 0 goes to disk).
    async fn log_on_disk(dir: &Path) -> PartitionLog {
        let config = LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 512,
            cache_bytes_max: 1024,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir, config).await.expect("open");
        for i in 0..40 {
            let b = encode_batch(0, 1_000 + i, NO_PRODUCER, &simple_records(1));
            let h = validate_produce_records(&b).expect("valid");
            log.append(&b, &h).expect("append");
        }
        log.wait_durable(39, true).await.expect("durable");
        log
    }

    /// A temporary directory under `target/` (O_DIRECT needs a real disk, not tmpfs).
    pub(in crate::log) fn dir_on_disk() -> tempfile::TempDir {
        let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../target");
        std::fs::create_dir_all(base).expect("target dir");
        tempfile::tempdir_in(base).expect("temp dir")
    }

    #[test]
    fn a_device_read_error_takes_the_log_offline_until_restart() {
        let dir = dir_on_disk();
        let path = dir.path().to_path_buf();
        run(|| async move {
            let log = log_on_disk(&path).await;
            assert!(!log.read(0, 100).await.expect("disk read").is_empty());
            // EIO has no ErrorKind of its own: glommio hands it on as "uncategorized", which
            // `io::Error::other` stands in for.
            log.inject_read_fault(Some(io::ErrorKind::Other));
            let e = log.read(0, 100).await.expect_err("the read fails");
            assert_eq!(e.kafka_error_code(), 56);
            assert!(log.is_offline());
            // Offline: the fault cleared, reads (even from the tail cache), timestamp lookups
            // and appends are still refused, as after a failed fdatasync.
            log.inject_read_fault(None);
            assert!(log.read(39, 100).await.is_err());
            assert!(log.offset_for_timestamp(0).await.is_err());
            let b = encode_batch(0, 2_000, NO_PRODUCER, &simple_records(1));
            let h = validate_produce_records(&b).expect("valid");
            let refused = log.append(&b, &h).expect_err("append refused");
            assert_eq!(refused.kafka_error_code(), 56);
        });
        // A restart recovers it: everything appended before the fault is there.
        let path = dir.path().to_path_buf();
        run(|| async move {
            let log = PartitionLog::open(&path, LogConfig::default())
                .await
                .expect("reopen");
            assert!(!log.is_offline());
            assert_eq!(log.log_end_offset(), 40);
            assert_eq!(log.read(0, usize::MAX).await.expect("read").len(), 40);
        });
    }

    #[test]
    fn damaged_data_fails_the_read_only() {
        let dir = dir_on_disk();
        let path = dir.path().to_path_buf();
        run(|| async move {
            let log = log_on_disk(&path).await;
            log.inject_read_fault(Some(io::ErrorKind::InvalidData));
            let e = log.read(0, 100).await.expect_err("the read fails");
            assert_eq!(e.kafka_error_code(), 56);
            assert!(!log.is_offline());
            log.inject_read_fault(None);
            assert!(!log.read(0, 100).await.expect("read").is_empty());
        });
    }

    #[test]
    fn device_failures_are_told_from_damage_and_races() {
        for kind in [
            io::ErrorKind::Other,
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::ReadOnlyFilesystem,
        ] {
            assert!(is_device_failure(kind), "{kind:?}");
        }
        for kind in [
            io::ErrorKind::InvalidData,
            io::ErrorKind::NotFound,
            io::ErrorKind::UnexpectedEof,
        ] {
            assert!(!is_device_failure(kind), "{kind:?}");
        }
        let eio = io::Error::from_raw_os_error(libc::EIO);
        assert!(is_device_failure(eio.kind()));
    }
}
