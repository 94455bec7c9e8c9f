//! Kafka record batch (magic v2) header parsing and validation.
//!
//! Pure functions, no IO. The broker validates a produce payload with
//! [`validate_produce_records`], the log patches the assigned base offset with
//! [`patch_base_offset`] (the field is outside the CRC, so no re-checksum), and readers walk
//! concatenated batches with [`iter_batches`].

use std::fmt;
use std::ops::Range;

/// Size of the fixed v2 batch header (baseOffset .. recordCount).
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before (and including) the batchLength field: total batch size = this + batchLength.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Smallest legal batchLength (the header after the batchLength field).
pub const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
/// Offset of the CRC field; the CRC covers everything from `CRC_START` to the end.
pub(crate) const CRC_OFFSET: usize = 17;
pub(crate) const CRC_START: usize = 21;

/// Kafka error code CORRUPT_MESSAGE.
pub const KAFKA_CORRUPT_MESSAGE: i16 = 2;
/// Kafka error code INVALID_RECORD.
pub const KAFKA_INVALID_RECORD: i16 = 87;

/// Parsed v2 batch header (big-endian on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

/// Why a batch was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the header or than batchLength announces.
    Truncated { needed: usize, available: usize },
    /// Bytes after the one batch a produce partition payload may carry.
    TrailingBytes { extra: usize },
    /// batchLength below the v2 header size.
    InvalidLength(i32),
    /// Not a magic v2 batch.
    BadMagic(i8),
    /// CRC32C of bytes [21..] does not match the header.
    CorruptCrc { expected: u32, actual: u32 },
    /// recordCount inconsistent with lastOffsetDelta or with the records found.
    InvalidRecordCount {
        record_count: i32,
        last_offset_delta: i32,
        records_found: Option<i32>,
    },
    /// A record inside an uncompressed batch does not parse or does not fill the batch exactly.
    InvalidRecord(&'static str),
    /// No batch at all.
    Empty,
    /// A control batch (transaction marker) sent by a client: only the broker writes those.
    ControlBatchFromClient,
}

impl BatchError {
    /// The Kafka error code a 4.x broker answers a produce with for this failure.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            BatchError::Truncated { .. }
            | BatchError::InvalidLength(_)
            | BatchError::CorruptCrc { .. } => KAFKA_CORRUPT_MESSAGE,
            BatchError::TrailingBytes { .. }
            | BatchError::BadMagic(_)
            | BatchError::InvalidRecordCount { .. }
            | BatchError::InvalidRecord(_)
            | BatchError::Empty
            | BatchError::ControlBatchFromClient => KAFKA_INVALID_RECORD,
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Truncated { needed, available } => {
                write!(f, "truncated record batch: need {needed} bytes, have {available}")
            }
            BatchError::TrailingBytes { extra } => write!(
                f,
                "{extra} bytes after the record batch: a produce partition must carry exactly one batch"
            ),
            BatchError::InvalidLength(len) => {
                write!(f, "record batch length {len} is below the minimum {BATCH_LENGTH_MIN}")
            }
            BatchError::BadMagic(m) => write!(f, "unsupported record batch magic {m} (need 2)"),
            BatchError::CorruptCrc { expected, actual } => write!(
                f,
                "record batch CRC mismatch: header says {expected:#010x}, computed {actual:#010x}"
            ),
            BatchError::InvalidRecordCount { record_count, last_offset_delta, records_found } => {
                write!(
                    f,
                    "invalid record count {record_count} (lastOffsetDelta {last_offset_delta}, records found {records_found:?})"
                )
            }
            BatchError::InvalidRecord(why) => write!(f, "invalid record in batch: {why}"),
            BatchError::Empty => write!(f, "no record batch"),
            BatchError::ControlBatchFromClient => {
                write!(f, "clients are not allowed to write control records")
            }
        }
    }
}

impl std::error::Error for BatchError {}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parses the fixed header; checks only that enough bytes are present.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: buf.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: be_i32(buf, CRC_OFFSET) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        })
    }

    /// Compression codec (attributes bits 0-2); 0 = none.
    pub fn compression(&self) -> u8 {
        (self.attributes & 7) as u8
    }

    /// Timestamp type bit (attributes bit 3): true = LogAppendTime.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    /// Transactional bit (attributes bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Control batch bit (attributes bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// Sequence of the last record, wrapping past i32::MAX to 0 like Kafka.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }

    /// Total size of the batch on the wire (12 + batchLength), 0 when batchLength is negative.
    pub fn total_bytes(&self) -> usize {
        if self.batch_length < 0 {
            return 0;
        }
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    /// Offset of the last record given the header's base offset.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
}

/// Validates a Produce v3+ partition payload: exactly one well-formed v2 batch.
pub fn validate_produce_records(records: &[u8]) -> Result<BatchHeader, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    let header = check_batch_frame(records)?;
    let total = header.total_bytes();
    if records.len() > total {
        return Err(BatchError::TrailingBytes {
            extra: records.len() - total,
        });
    }
    validate_batch_body(&records[..total], &header)?;
    Ok(header)
}

/// Validates one batch a follower fetched from its leader: frame, magic and CRC. The record
/// count is not checked against `lastOffsetDelta`: a compacted leader's batches keep their
/// offset range with fewer records.
pub fn validate_replicated(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = check_batch_frame(batch)?;
    if batch.len() != header.total_bytes() {
        return Err(BatchError::TrailingBytes {
            extra: batch.len().saturating_sub(header.total_bytes()),
        });
    }
    check_magic_and_crc(batch, &header)?;
    Ok(header)
}

/// Magic v2 and the CRC32C over `attributes..end` of one complete batch.
fn check_magic_and_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    if header.magic != 2 {
        return Err(BatchError::BadMagic(header.magic));
    }
    let actual = crc32c::crc32c(&batch[CRC_START..]);
    if actual != header.crc {
        return Err(BatchError::CorruptCrc {
            expected: header.crc,
            actual,
        });
    }
    Ok(())
}

/// Parses the header and checks the length fields against the available bytes.
fn check_batch_frame(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < LOG_OVERHEAD_BYTES {
        return Err(BatchError::Truncated {
            needed: LOG_OVERHEAD_BYTES,
            available: buf.len(),
        });
    }
    let batch_length = be_i32(buf, 8);
    if batch_length < BATCH_LENGTH_MIN {
        return Err(BatchError::InvalidLength(batch_length));
    }
    let header = BatchHeader::parse(buf)?;
    let total = header.total_bytes();
    if buf.len() < total {
        return Err(BatchError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    Ok(header)
}

/// Magic, CRC, record count and (uncompressed) record framing of one complete batch.
fn validate_batch_body(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    debug_assert_eq!(batch.len(), header.total_bytes());
    check_magic_and_crc(batch, header)?;
    let count_error = |found| BatchError::InvalidRecordCount {
        record_count: header.record_count,
        last_offset_delta: header.last_offset_delta,
        records_found: found,
    };
    // An empty batch cannot be given an offset range in the log, so it is rejected too.
    if header.record_count <= 0 || header.last_offset_delta != header.record_count - 1 {
        return Err(count_error(None));
    }
    if header.compression() == 0 {
        let mut found = 0i32;
        for record in RecordIter::new(&batch[BATCH_HEADER_BYTES..]) {
            record?;
            found += 1;
            if found > header.record_count {
                return Err(count_error(Some(found)));
            }
        }
        if found != header.record_count {
            return Err(count_error(Some(found)));
        }
    }
    Ok(())
}

/// What Kafka refuses from a client's produce but not from the broker's own writes: control
/// batches. (A producer id without a sequence is refused at append, `producer_state`.)
pub fn check_client_batch(header: &BatchHeader) -> Result<(), BatchError> {
    if header.is_control() {
        return Err(BatchError::ControlBatchFromClient);
    }
    Ok(())
}

/// Writes the assigned base offset into a batch (outside the CRC: no re-checksum).
pub fn patch_base_offset(batch: &mut [u8], base_offset: i64) {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "patch_base_offset on a short batch"
    );
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Timestamp-type bit of the batch attributes (1 = LogAppendTime).
const ATTRIBUTE_LOG_APPEND_TIME: u16 = 0x08;
const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;

/// Stamps a batch with the broker's time (`message.timestamp.type=LogAppendTime`), as Kafka
/// does: sets the timestamp-type attribute and the max timestamp, then recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "set_log_append_time on a short batch"
    );
    let attributes = u16::from_be_bytes([batch[ATTRIBUTES_OFFSET], batch[ATTRIBUTES_OFFSET + 1]]);
    let attributes = attributes | ATTRIBUTE_LOG_APPEND_TIME;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
}

/// Clears the LogAppendTime attribute of a client's batch on a CreateTime topic, keeping its
/// max timestamp, then recomputes the CRC: what Kafka's LogValidator does (`setMaxTimestamp`
/// with the topic's timestamp type) instead of refusing the batch.
pub fn set_create_time(batch: &mut [u8]) {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "set_create_time on a short batch"
    );
    let attributes = u16::from_be_bytes([batch[ATTRIBUTES_OFFSET], batch[ATTRIBUTES_OFFSET + 1]]);
    let attributes = attributes & !ATTRIBUTE_LOG_APPEND_TIME;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
}

/// Writes the partition leader epoch into a batch (outside the CRC: no re-checksum).
pub fn patch_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "patch_partition_leader_epoch on a short batch"
    );
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Walks concatenated batches, yielding each header and its byte range. Checks framing only
/// (lengths), not CRCs; stops after the first error.
pub fn iter_batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf,
        pos: 0,
        failed: false,
    }
}

/// Iterator returned by [`iter_batches`].
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(BatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        match check_batch_frame(&self.buf[self.pos..]) {
            Ok(header) => {
                let range = self.pos..self.pos + header.total_bytes();
                self.pos = range.end;
                Some(Ok((header, range)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// The fields of one record's prefix that the log needs (timestamp lookup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordInfo {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
}

/// Iterates the records of an uncompressed batch body (bytes after the 61-byte header, or a
/// compressed batch's records once decompressed).
pub struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> RecordIter<'a> {
    /// `body` = batch bytes after [`BATCH_HEADER_BYTES`].
    pub fn new(body: &'a [u8]) -> Self {
        RecordIter {
            buf: body,
            pos: 0,
            failed: false,
        }
    }

    fn parse_one(&mut self) -> Result<RecordInfo, BatchError> {
        let len = read_varint(self.buf, &mut self.pos)
            .ok_or(BatchError::InvalidRecord("record length varint"))?;
        if len < 0 || len as usize > self.buf.len() - self.pos {
            return Err(BatchError::InvalidRecord(
                "record length overflows the batch",
            ));
        }
        let record = &self.buf[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        let mut at = 1usize; // attributes (unused in v2)
        if record.is_empty() {
            return Err(BatchError::InvalidRecord("empty record"));
        }
        let timestamp_delta =
            read_varlong(record, &mut at).ok_or(BatchError::InvalidRecord("timestamp delta"))?;
        let offset_delta =
            read_varint(record, &mut at).ok_or(BatchError::InvalidRecord("offset delta"))?;
        Ok(RecordInfo {
            timestamp_delta,
            offset_delta,
        })
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<RecordInfo, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let item = self.parse_one();
        self.failed = item.is_err();
        Some(item)
    }
}

/// Zigzag varint (i32), at most 5 bytes.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    let raw = read_unsigned(buf, pos, 5)?;
    if raw > u32::MAX as u64 {
        return None;
    }
    let raw = raw as u32;
    Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Zigzag varlong (i64), at most 10 bytes.
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let raw = read_unsigned(buf, pos, 10)?;
    Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Appends `v` as a zigzag varlong (a varint field too when `v` fits an i32).
pub fn write_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = zigzag(v);
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Bytes `write_varlong(v)` appends.
pub fn varlong_bytes(v: i64) -> usize {
    let significant_bits = (64 - zigzag(v).leading_zeros()).max(1) as usize;
    significant_bits.div_ceil(7)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn read_unsigned(buf: &[u8], pos: &mut usize, max_len: usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..max_len {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[doc(hidden)]
/// Test-only encoder of v2 batches; public under `cfg(test)` and for integration tests via
/// the `test_support` module.
pub mod test_support {
    /// One record to encode.
    #[derive(Clone, Debug, Default)]
    pub struct TestRecord {
        pub timestamp_delta: i64,
        pub key: Option<Vec<u8>>,
        pub value: Option<Vec<u8>>,
        pub headers: Vec<(String, Option<Vec<u8>>)>,
    }

    /// Producer fields of a test batch.
    #[derive(Clone, Copy, Debug)]
    pub struct TestProducer {
        pub producer_id: i64,
        pub producer_epoch: i16,
        pub base_sequence: i32,
    }

    /// Non-idempotent producer (-1 / -1 / -1).
    pub const NO_PRODUCER: TestProducer = TestProducer {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };

    use super::write_varlong as put_varlong;

    fn put_bytes(out: &mut Vec<u8>, b: &Option<Vec<u8>>) {
        match b {
            None => put_varlong(out, -1),
            Some(b) => {
                put_varlong(out, b.len() as i64);
                out.extend_from_slice(b);
            }
        }
    }

    /// Encodes one record (length-prefixed).
    pub fn encode_record(out: &mut Vec<u8>, offset_delta: i32, r: &TestRecord) {
        let mut body = vec![0u8];
        put_varlong(&mut body, r.timestamp_delta);
        put_varlong(&mut body, offset_delta as i64);
        put_bytes(&mut body, &r.key);
        put_bytes(&mut body, &r.value);
        put_varlong(&mut body, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_varlong(&mut body, k.len() as i64);
            body.extend_from_slice(k.as_bytes());
            put_bytes(&mut body, v);
        }
        put_varlong(out, body.len() as i64);
        out.extend_from_slice(&body);
    }

    /// Builds a complete uncompressed v2 batch with a valid CRC.
    pub fn encode_batch(
        base_offset: i64,
        base_timestamp: i64,
        producer: TestProducer,
        records: &[TestRecord],
    ) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, r) in records.iter().enumerate() {
            encode_record(&mut body, i as i32, r);
        }
        let max_ts = records
            .iter()
            .map(|r| base_timestamp + r.timestamp_delta)
            .max()
            .unwrap_or(-1);
        encode_raw(
            base_offset,
            0,
            base_timestamp,
            max_ts,
            producer,
            records.len() as i32,
            &body,
        )
    }

    /// Builds a v2 batch whose records are compressed with `codec` (valid CRC).
    pub fn encode_compressed_batch(
        base_offset: i64,
        base_timestamp: i64,
        producer: TestProducer,
        records: &[TestRecord],
        codec: crate::codec::Codec,
    ) -> Vec<u8> {
        let plain = encode_batch(base_offset, base_timestamp, producer, records);
        let header = super::BatchHeader::parse(&plain).expect("a batch just encoded");
        let mut body = Vec::new();
        crate::codec::compress(codec, &plain[super::BATCH_HEADER_BYTES..], &mut body)
            .expect("compressing into a Vec");
        encode_raw(
            base_offset,
            codec.id() as i16,
            base_timestamp,
            header.max_timestamp,
            producer,
            records.len() as i32,
            &body,
        )
    }

    /// Builds a batch around an arbitrary body (e.g. a fake compressed payload).
    pub fn encode_raw(
        base_offset: i64,
        attributes: i16,
        base_timestamp: i64,
        max_timestamp: i64,
        producer: TestProducer,
        record_count: i32,
        body: &[u8],
    ) -> Vec<u8> {
        let mut b = Vec::with_capacity(super::BATCH_HEADER_BYTES + body.len());
        b.extend_from_slice(&base_offset.to_be_bytes());
        b.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes()); // crc placeholder
        b.extend_from_slice(&attributes.to_be_bytes());
        b.extend_from_slice(&(record_count - 1).to_be_bytes());
        b.extend_from_slice(&base_timestamp.to_be_bytes());
        b.extend_from_slice(&max_timestamp.to_be_bytes());
        b.extend_from_slice(&producer.producer_id.to_be_bytes());
        b.extend_from_slice(&producer.producer_epoch.to_be_bytes());
        b.extend_from_slice(&producer.base_sequence.to_be_bytes());
        b.extend_from_slice(&record_count.to_be_bytes());
        b.extend_from_slice(body);
        refresh_crc(&mut b);
        b
    }

    /// Recomputes the CRC after a test mutated bytes covered by it.
    pub fn refresh_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[super::CRC_START..]);
        b[super::CRC_OFFSET..super::CRC_START].copy_from_slice(&crc.to_be_bytes());
    }

    /// `n` records with values `value-{i}` and timestamp deltas `i`.
    pub fn simple_records(n: usize) -> Vec<TestRecord> {
        (0..n)
            .map(|i| TestRecord {
                timestamp_delta: i as i64,
                key: Some(format!("key-{i}").into_bytes()),
                value: Some(format!("value-{i}").into_bytes()),
                headers: vec![("h".to_string(), Some(b"v".to_vec()))],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    fn good() -> Vec<u8> {
        encode_batch(0, 1_000, NO_PRODUCER, &simple_records(3))
    }

    #[test]
    fn a_replicated_batch_is_checked_for_frame_magic_and_crc_only() {
        let mut b = good();
        assert_eq!(validate_replicated(&b).unwrap().last_offset_delta, 2);
        // A compacted leader's batch keeps its offset range with fewer records.
        b[57..61].copy_from_slice(&2i32.to_be_bytes());
        refresh_crc(&mut b);
        assert!(validate_produce_records(&b).is_err());
        assert!(validate_replicated(&b).is_ok());
        let mut corrupt = b.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        assert!(matches!(
            validate_replicated(&corrupt),
            Err(BatchError::CorruptCrc { .. })
        ));
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(
            validate_replicated(&longer),
            Err(BatchError::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn a_claimed_log_append_time_is_cleared_keeping_the_max_timestamp_and_a_valid_crc() {
        let mut b = good();
        set_log_append_time(&mut b, 5_000);
        assert!(validate_produce_records(&b).unwrap().is_log_append_time());
        set_create_time(&mut b);
        let h = validate_produce_records(&b).unwrap();
        assert!(!h.is_log_append_time());
        assert_eq!((h.max_timestamp, h.record_count), (5_000, 3));
    }

    #[test]
    fn happy_path_parses_all_fields() {
        let p = TestProducer {
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 10,
        };
        let b = encode_batch(5, 1_000, p, &simple_records(3));
        let h = validate_produce_records(&b).unwrap();
        assert_eq!(h.base_offset, 5);
        assert_eq!(h.total_bytes(), b.len());
        assert_eq!(h.magic, 2);
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.max_timestamp, 1_002);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 2, 10)
        );
        assert_eq!(h.last_sequence(), 12);
        assert_eq!(h.compression(), 0);
        assert!(!h.is_transactional() && !h.is_control());
    }

    #[test]
    fn last_sequence_wraps() {
        let mut h = BatchHeader::parse(&good()).unwrap();
        h.base_sequence = i32::MAX - 1;
        h.last_offset_delta = 3;
        assert_eq!(h.last_sequence(), 1);
        h.base_sequence = -1;
        assert_eq!(h.last_sequence(), -1);
    }

    #[test]
    fn client_batches_refuse_control_bits() {
        let ok = BatchHeader::parse(&good()).unwrap();
        assert_eq!(check_client_batch(&ok), Ok(()));
        let control = encode_raw(0, 0x20, 0, 0, NO_PRODUCER, 1, b"xx");
        let e = check_client_batch(&BatchHeader::parse(&control).unwrap()).unwrap_err();
        assert_eq!(e, BatchError::ControlBatchFromClient);
        assert_eq!(e.kafka_error_code(), KAFKA_INVALID_RECORD);
    }

    #[test]
    fn attribute_bits() {
        let b = encode_raw(0, 0x10 | 0x20 | 3, 0, 0, NO_PRODUCER, 1, b"xx");
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.compression(), 3);
        assert!(h.is_transactional() && h.is_control());
    }

    #[test]
    fn truncated_and_empty() {
        let b = good();
        let e = validate_produce_records(&b[..b.len() - 1]).unwrap_err();
        assert!(matches!(e, BatchError::Truncated { .. }));
        assert_eq!(e.kafka_error_code(), KAFKA_CORRUPT_MESSAGE);
        let e = validate_produce_records(&b[..10]).unwrap_err();
        assert!(matches!(e, BatchError::Truncated { .. }));
        let e = validate_produce_records(&b[..40]).unwrap_err();
        assert!(matches!(e, BatchError::Truncated { .. }));
        assert_eq!(
            validate_produce_records(&[]).unwrap_err(),
            BatchError::Empty
        );
        assert_eq!(BatchError::Empty.kafka_error_code(), KAFKA_INVALID_RECORD);
    }

    #[test]
    fn trailing_bytes_and_two_batches() {
        let mut b = good();
        b.push(0);
        let e = validate_produce_records(&b).unwrap_err();
        assert_eq!(e, BatchError::TrailingBytes { extra: 1 });
        assert_eq!(e.kafka_error_code(), KAFKA_INVALID_RECORD);
        let mut two = good();
        two.extend_from_slice(&good());
        let e = validate_produce_records(&two).unwrap_err();
        assert!(matches!(e, BatchError::TrailingBytes { .. }));
    }

    #[test]
    fn invalid_length() {
        let mut b = good();
        b[8..12].copy_from_slice(&48i32.to_be_bytes());
        let e = validate_produce_records(&b).unwrap_err();
        assert_eq!(e, BatchError::InvalidLength(48));
        assert_eq!(e.kafka_error_code(), KAFKA_CORRUPT_MESSAGE);
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(
            validate_produce_records(&b).unwrap_err(),
            BatchError::InvalidLength(-5)
        );
    }

    #[test]
    fn bad_magic() {
        let mut b = good();
        b[16] = 1;
        let e = validate_produce_records(&b).unwrap_err();
        assert_eq!(e, BatchError::BadMagic(1));
        assert_eq!(e.kafka_error_code(), KAFKA_INVALID_RECORD);
    }

    #[test]
    fn corrupt_crc() {
        let mut b = good();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        let e = validate_produce_records(&b).unwrap_err();
        assert!(matches!(e, BatchError::CorruptCrc { .. }));
        assert_eq!(e.kafka_error_code(), KAFKA_CORRUPT_MESSAGE);
    }

    #[test]
    fn varlongs_round_trip_and_know_their_length() {
        for v in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_bytes(v), "{v}");
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos), Some(v));
            assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn base_offset_and_epoch_are_outside_crc() {
        let mut b = good();
        patch_base_offset(&mut b, 1234);
        patch_partition_leader_epoch(&mut b, 9);
        let h = validate_produce_records(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (1234, 9));
    }

    #[test]
    fn record_count_mismatches() {
        // Count says 4 but lastOffsetDelta 2.
        let mut b = good();
        b[57..61].copy_from_slice(&4i32.to_be_bytes());
        refresh_crc(&mut b);
        let e = validate_produce_records(&b).unwrap_err();
        assert!(matches!(
            e,
            BatchError::InvalidRecordCount {
                records_found: None,
                ..
            }
        ));
        assert_eq!(e.kafka_error_code(), KAFKA_INVALID_RECORD);
        // Count and delta agree (4 / 3) but only 3 records present.
        b[23..27].copy_from_slice(&3i32.to_be_bytes());
        refresh_crc(&mut b);
        let e = validate_produce_records(&b).unwrap_err();
        assert!(matches!(
            e,
            BatchError::InvalidRecordCount {
                records_found: Some(3),
                ..
            }
        ));
        // Count 2 / delta 1 but 3 records present.
        let mut b = good();
        b[57..61].copy_from_slice(&2i32.to_be_bytes());
        b[23..27].copy_from_slice(&1i32.to_be_bytes());
        refresh_crc(&mut b);
        let e = validate_produce_records(&b).unwrap_err();
        assert!(matches!(
            e,
            BatchError::InvalidRecordCount {
                records_found: Some(3),
                ..
            }
        ));
        // Empty and negative counts.
        for count in [0, -3] {
            let b = encode_raw(0, 0, 0, 0, NO_PRODUCER, count, b"");
            let e = validate_produce_records(&b).unwrap_err();
            assert!(
                matches!(e, BatchError::InvalidRecordCount { .. }),
                "{count}"
            );
        }
    }

    #[test]
    fn record_framing_errors() {
        // A record whose length runs past the end of the batch.
        let mut body = Vec::new();
        encode_record(&mut body, 0, &simple_records(1)[0]);
        body[0] = 0x7e; // zigzag 63: longer than the record
        let b = encode_raw(0, 0, 0, 0, NO_PRODUCER, 1, &body);
        let e = validate_produce_records(&b).unwrap_err();
        assert!(matches!(e, BatchError::InvalidRecord(_)));
        assert_eq!(e.kafka_error_code(), KAFKA_INVALID_RECORD);
        // Garbage (unterminated varint) after a valid record.
        let mut body = Vec::new();
        encode_record(&mut body, 0, &simple_records(1)[0]);
        body.push(0xff);
        let b = encode_raw(0, 0, 0, 0, NO_PRODUCER, 1, &body);
        assert!(matches!(
            validate_produce_records(&b).unwrap_err(),
            BatchError::InvalidRecord(_)
        ));
        // Negative record length.
        let b = encode_raw(0, 0, 0, 0, NO_PRODUCER, 1, &[0x01]);
        assert!(matches!(
            validate_produce_records(&b).unwrap_err(),
            BatchError::InvalidRecord(_)
        ));
    }

    #[test]
    fn compressed_body_is_not_walked() {
        let b = encode_raw(0, 2, 0, 0, NO_PRODUCER, 5, b"opaque snappy bytes");
        let h = validate_produce_records(&b).unwrap();
        assert_eq!(h.compression(), 2);
        assert_eq!(h.record_count, 5);
    }

    #[test]
    fn record_iter_reads_deltas() {
        let b = good();
        let infos: Vec<_> = RecordIter::new(&b[BATCH_HEADER_BYTES..])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(infos.len(), 3);
        assert_eq!(
            infos[2],
            RecordInfo {
                timestamp_delta: 2,
                offset_delta: 2
            }
        );
    }

    #[test]
    fn iter_batches_walks_and_stops_on_error() {
        let mut buf = good();
        buf.extend_from_slice(&encode_batch(3, 0, NO_PRODUCER, &simple_records(2)));
        let all: Vec<_> = iter_batches(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].0.base_offset, 3);
        assert_eq!(all[1].1.end, buf.len());
        buf.extend_from_slice(&[0, 0, 0]);
        let items: Vec<_> = iter_batches(&buf).collect();
        assert_eq!(items.len(), 3);
        assert!(items[2].is_err());
    }

    #[test]
    fn varints() {
        let mut out = Vec::new();
        encode_record(
            &mut out,
            300,
            &TestRecord {
                timestamp_delta: -70_000,
                ..Default::default()
            },
        );
        let mut pos = 0;
        let len = read_varint(&out, &mut pos).unwrap();
        assert_eq!(len as usize, out.len() - pos);
        let info = RecordIter::new(&out).next().unwrap().unwrap();
        assert_eq!(
            info,
            RecordInfo {
                timestamp_delta: -70_000,
                offset_delta: 300
            }
        );
        assert_eq!(read_varint(&[0xff; 6], &mut 0), None);
    }
}
