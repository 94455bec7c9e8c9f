//! Reads: whole batches from the one holding an offset, from the tail cache (slices of the
//! write chunks) or from the segment files (checksums verified), copied once into one
//! contiguous buffer that a Fetch answer carries as is.

use bytes::BytesMut;

use super::*;

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
            let file = self.segment_file(file.0, file.1).await?;
            let reserve = (max_bytes.saturating_sub(out.total()) as u64)
                .min(limit - position)
                .min(READ_RESERVE_BYTES_MAX);
            out.buf.reserve(reserve as usize);
            let mut full = false;
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
            .map_err(|e| self.error(format!("reading offset {next} at position {position}"), e))?;
            if full {
                return Ok(out.finish());
            }
            next = self.advance_after_scan(next, position, &end)?;
        }
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
