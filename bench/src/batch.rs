//! An incremental builder of uncompressed Kafka record batches (magic v2), the way a producer
//! accumulates records for one partition.

use bytes::Bytes;

/// Bytes of a v2 batch header, before the first record.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Accumulates records for one partition and seals them into a v2 batch (CRC32C filled in,
/// no producer id, base offset 0: the broker assigns offsets).
pub struct BatchBuilder {
    buf: Vec<u8>,
    records: i32,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
}

impl BatchBuilder {
    /// Starts an empty batch whose records are timestamped from `base_timestamp_ms`.
    pub fn new(capacity_bytes: usize, base_timestamp_ms: i64) -> BatchBuilder {
        let mut buf = Vec::with_capacity(capacity_bytes.max(BATCH_HEADER_BYTES));
        buf.resize(BATCH_HEADER_BYTES, 0);
        BatchBuilder {
            buf,
            records: 0,
            base_timestamp_ms,
            max_timestamp_ms: base_timestamp_ms,
        }
    }

    /// Bytes the sealed batch would have now.
    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn record_count(&self) -> usize {
        self.records as usize
    }

    /// Bytes a record with this key and value adds to a batch.
    pub fn record_bytes(offset_delta: i64, key: Option<&[u8]>, value_bytes: usize) -> usize {
        let body = record_body_bytes(0, offset_delta, key, value_bytes);
        varint_bytes(body as i64) + body
    }

    /// Appends one record with no headers.
    pub fn append(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: &[u8]) {
        let timestamp_delta = timestamp_ms - self.base_timestamp_ms;
        let offset_delta = self.records as i64;
        let body = record_body_bytes(timestamp_delta, offset_delta, key, value.len());
        put_varint(&mut self.buf, body as i64);
        self.buf.push(0); // attributes
        put_varint(&mut self.buf, timestamp_delta);
        put_varint(&mut self.buf, offset_delta);
        match key {
            Some(key) => {
                put_varint(&mut self.buf, key.len() as i64);
                self.buf.extend_from_slice(key);
            }
            None => put_varint(&mut self.buf, -1),
        }
        put_varint(&mut self.buf, value.len() as i64);
        self.buf.extend_from_slice(value);
        put_varint(&mut self.buf, 0); // headers
        self.records += 1;
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
    }

    /// Fills in the header and CRC32C.
    pub fn seal(mut self) -> Bytes {
        assert!(self.records > 0, "an empty batch is never sent");
        let batch_length = (self.buf.len() - 12) as i32;
        let mut header = Vec::with_capacity(BATCH_HEADER_BYTES);
        header.extend_from_slice(&0i64.to_be_bytes()); // base offset
        header.extend_from_slice(&batch_length.to_be_bytes());
        header.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        header.push(2); // magic
        header.extend_from_slice(&0u32.to_be_bytes()); // crc, below
        header.extend_from_slice(&0i16.to_be_bytes()); // attributes: no compression
        header.extend_from_slice(&(self.records - 1).to_be_bytes()); // last offset delta
        header.extend_from_slice(&self.base_timestamp_ms.to_be_bytes());
        header.extend_from_slice(&self.max_timestamp_ms.to_be_bytes());
        header.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        header.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        header.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        header.extend_from_slice(&self.records.to_be_bytes());
        self.buf[..BATCH_HEADER_BYTES].copy_from_slice(&header);
        let crc = crc32c::crc32c(&self.buf[21..]);
        self.buf[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(self.buf)
    }
}

fn record_body_bytes(
    timestamp_delta: i64,
    offset_delta: i64,
    key: Option<&[u8]>,
    value_bytes: usize,
) -> usize {
    let key_bytes = match key {
        Some(key) => varint_bytes(key.len() as i64) + key.len(),
        None => 1,
    };
    1 + varint_bytes(timestamp_delta)
        + varint_bytes(offset_delta)
        + key_bytes
        + varint_bytes(value_bytes as i64)
        + value_bytes
        + 1
}

fn varint_bytes(value: i64) -> usize {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let bits = 64 - zigzag.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Appends a zigzag varint, as Kafka's record format encodes signed integers.
pub fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

fn get_varint(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        value |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// One fetched batch's header fields a consumer needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchedBatch {
    pub base_offset: i64,
    pub record_count: usize,
    pub total_bytes: usize,
    /// The offset after the batch's last record.
    pub next_offset: i64,
}

/// Called with each record value of a walked batch.
pub type OnValue<'a> = &'a mut dyn FnMut(&[u8]);

/// Walks the batches of a fetched `records` field; a partial batch at the end (the broker may
/// cut one at `max_bytes`) is ignored. Calls `on_value` with each record's value when given
/// (uncompressed batches only).
pub fn walk_batches(
    records: &[u8],
    mut on_value: Option<OnValue<'_>>,
) -> Result<Vec<FetchedBatch>, String> {
    let mut batches = Vec::new();
    let mut at = 0;
    while records.len() - at >= BATCH_HEADER_BYTES {
        let batch = &records[at..];
        let length = i32::from_be_bytes([batch[8], batch[9], batch[10], batch[11]]);
        let total_bytes = 12 + usize::try_from(length).map_err(|_| "negative batch length")?;
        if batch.len() < total_bytes {
            break;
        }
        let record_count = i32::from_be_bytes([batch[57], batch[58], batch[59], batch[60]]);
        let base_offset = i64::from_be_bytes(batch[..8].try_into().expect("8 bytes"));
        let last_offset_delta = i32::from_be_bytes([batch[23], batch[24], batch[25], batch[26]]);
        let fetched = FetchedBatch {
            base_offset,
            next_offset: base_offset + last_offset_delta as i64 + 1,
            record_count: usize::try_from(record_count).map_err(|_| "negative record count")?,
            total_bytes,
        };
        if let Some(on_value) = on_value.as_deref_mut() {
            let attributes = i16::from_be_bytes([batch[21], batch[22]]);
            if attributes & 0x7 != 0 {
                return Err("compressed batches are not decoded by the bench".into());
            }
            walk_values(&batch[BATCH_HEADER_BYTES..total_bytes], on_value)?;
        }
        batches.push(fetched);
        at += total_bytes;
    }
    Ok(batches)
}

fn walk_values(mut records: &[u8], on_value: &mut dyn FnMut(&[u8])) -> Result<(), String> {
    let bad = || "malformed record".to_string();
    while !records.is_empty() {
        let mut at = 0;
        let length = get_varint(records, &mut at).ok_or_else(bad)? as usize;
        let record = records.get(at..at + length).ok_or_else(bad)?;
        let mut r = 1; // attributes
        get_varint(record, &mut r).ok_or_else(bad)?; // timestamp delta
        get_varint(record, &mut r).ok_or_else(bad)?; // offset delta
        let key_len = get_varint(record, &mut r).ok_or_else(bad)?;
        r += key_len.max(0) as usize;
        let value_len = get_varint(record, &mut r).ok_or_else(bad)?;
        if value_len >= 0 {
            on_value(record.get(r..r + value_len as usize).ok_or_else(bad)?);
        }
        records = &records[at + length..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_batches_pass_the_brokers_validation_and_walk_back() {
        let mut builder = BatchBuilder::new(4096, 1_700_000_000_000);
        let mut expected_len = BATCH_HEADER_BYTES;
        for i in 0..5u8 {
            let key = [i; 3];
            let key = (i % 2 == 0).then_some(&key[..]);
            expected_len += BatchBuilder::record_bytes(i as i64, key, 100 + i as usize);
            builder.append(
                1_700_000_000_000 + i as i64,
                key,
                &vec![i; 100 + i as usize],
            );
        }
        assert_eq!(builder.len_bytes(), expected_len);
        let batch = builder.seal();
        let header = storage::batch::validate_produce_records(&batch).expect("valid batch");
        assert_eq!(header.record_count, 5);
        assert_eq!(header.total_bytes(), batch.len());

        let mut values = Vec::new();
        let mut collect = |v: &[u8]| values.push(v.to_vec());
        let walked = walk_batches(&batch, Some(&mut collect)).expect("walks");
        assert_eq!(walked.len(), 1);
        assert_eq!(walked[0].record_count, 5);
        assert_eq!(values[4], vec![4u8; 104]);
        // A cut batch at the end is skipped, not an error.
        assert!(walk_batches(&batch[..batch.len() - 1], None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn varint_sizes_match_the_encoder() {
        for v in [0i64, 1, -1, 63, 64, -65, 1 << 20, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_bytes(v), "{v}");
            assert_eq!(get_varint(&out, &mut 0), Some(v));
        }
    }
}
