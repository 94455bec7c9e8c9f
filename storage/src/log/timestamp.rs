//! Lookups by timestamp (ListOffsets): the first record at or after a time, and the record
//! with the largest timestamp. Segments' indexes narrow the scan to a window of entries; the
//! batch found is then walked record by record (decompressed first when compressed), so the
//! answer is a record's exact offset, as Kafka's.

use super::*;
use crate::batch::{RecordIter, BATCH_HEADER_BYTES};
use crate::codec::{self, Codec};

impl PartitionLog {
    /// Earliest (offset, timestamp) with timestamp >= `ts`, or None.
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        self.check_readable()?;
        // Flush first so the whole log is on disk; ListOffsets by time is rare.
        let leo = self.log_end_offset();
        self.wait_durable(leo - 1, false).await?;
        type Candidate = ((i64, Option<Rc<SegmentFile>>), u64, u64);
        let candidates: Vec<Candidate> = {
            let inner = self.shared.inner.borrow();
            inner
                .segments
                .iter()
                .filter(|s| s.index.max_timestamp >= ts && s.written_bytes > 0)
                .map(|s| {
                    (
                        (s.index.base_offset, s.file.clone()),
                        s.index.position_for_timestamp(ts),
                        s.written_bytes,
                    )
                })
                .collect()
        };
        for (file, position, limit) in candidates {
            let file = self
                .segment_file(file.0, file.1)
                .await
                .map_err(|e| self.read_failed(e))?;
            self.injected_read_fault()
                .map_err(|e| self.read_failed(self.error("timestamp lookup", e)))?;
            let mut found = None;
            let end = segment::scan_entries(&file, position, limit, None, |e| {
                if e.max_timestamp < ts {
                    return true;
                }
                found = first_at_or_after(&e.header, e.batch, ts);
                found.is_none()
            })
            .await
            .map_err(|e| {
                self.read_failed(self.error(format!("timestamp lookup at position {position}"), e))
            })?;
            if let Some((offset, timestamp)) = found {
                return Ok(Some((offset.max(self.log_start_offset()), timestamp)));
            }
            if let Some(invalid) = end.invalid {
                let dir = self.shared.inner.borrow().dir.clone();
                return Err(StorageError::corrupt(
                    &dir,
                    format!("corrupt entry at {}: {invalid}", end.end),
                ));
            }
        }
        Ok(None)
    }

    /// Resolves when `log_end_offset() > offset`.
    pub async fn wait_for_data_after(&self, offset: i64) {
        loop {
            if self.log_end_offset() > offset {
                return;
            }
            let listener = self.shared.data_event.listen();
            if self.log_end_offset() > offset {
                return;
            }
            listener.await;
        }
    }

    /// (offset, timestamp) of the first record with the largest timestamp of the log, or None
    /// when the log holds no record (ListOffsets' MAX_TIMESTAMP).
    pub async fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let max = {
            let inner = self.shared.inner.borrow();
            inner
                .segments
                .iter()
                .filter(|s| s.written_bytes > 0)
                .map(|s| s.index.max_timestamp)
                .max()
        };
        match max {
            Some(ts) if ts != i64::MIN => self.offset_for_timestamp(ts).await,
            _ => Ok(None),
        }
    }
}

/// First record of `batch` with timestamp >= ts. A compressed batch is decompressed for the
/// walk; one that does not decompress (or a LogAppendTime batch, whose records all carry the
/// batch's time) answers its base offset.
fn first_at_or_after(header: &BatchHeader, batch: &[u8], ts: i64) -> Option<(i64, i64)> {
    if header.max_timestamp < ts {
        return None;
    }
    let whole_batch = Some((header.base_offset, header.max_timestamp));
    if header.is_log_append_time() {
        return whole_batch;
    }
    let body = &batch[BATCH_HEADER_BYTES..];
    let decompressed;
    let records = match Codec::from_attributes(header.attributes) {
        Ok(Codec::None) => body,
        Ok(codec) => match codec::decompress(codec, body, codec::MAX_DECOMPRESSED_BYTES) {
            Ok(out) => {
                decompressed = out;
                &decompressed[..]
            }
            Err(e) => {
                warn!(base_offset = header.base_offset, error = %e, "timestamp lookup");
                return whole_batch;
            }
        },
        Err(_) => return whole_batch,
    };
    RecordIter::new(records)
        .map_while(Result::ok)
        .map(|r| {
            (
                header.base_offset + r.offset_delta as i64,
                header.base_timestamp + r.timestamp_delta,
            )
        })
        .find(|(_, t)| *t >= ts)
}
