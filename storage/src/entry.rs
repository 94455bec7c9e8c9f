//! The stored entry: an rkyv-archived fixed-size envelope header followed by the verbatim
//! Kafka batch bytes (base offset patched), padded with zeros to [`ENTRY_ALIGN_BYTES`].
//!
//! Layout of one entry at file position `p` (always a multiple of 8):
//! ```text
//! p + 0   ArchivedEntryHeader (40 bytes, little-endian, rkyv 0.8 aligned layout)
//! p + 40  Kafka v2 batch, `batch_len` bytes
//! ...     zero padding up to the next multiple of 8
//! ```
//! The 8-byte alignment lets a reader `rkyv::access` the header in place inside a DMA read
//! buffer (which is page aligned), so recovery and reads never deserialise. A header whose
//! magic is zero marks the logical end of a segment (the file tail is zero-filled).
//! Runtime-free: no IO here.

use rkyv::{rancor, Archive, Deserialize, Serialize};

/// Size of the archived header.
pub const ENTRY_HEADER_BYTES: usize = 40;
/// Entries start at multiples of this in a segment file.
pub const ENTRY_ALIGN_BYTES: usize = 8;
/// "SPE1" little-endian: identifies an entry header (format version 1).
pub const ENTRY_MAGIC: u32 = u32::from_le_bytes(*b"SPE1");
/// Largest batch an entry may carry (bounds what recovery trusts from a header).
pub const ENTRY_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Envelope header stored in front of every batch.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct EntryHeader {
    pub magic: u32,
    pub batch_len: u32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// CRC32C of the header fields above (little-endian) followed by the batch bytes.
    pub checksum: u32,
    pub reserved: u32,
}

/// Why bytes are not a valid entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryError {
    Truncated,
    Misaligned,
    BadMagic(u32),
    BadLength(u32),
    Checksum {
        expected: u32,
        actual: u32,
    },
    /// The batch inside disagrees with its envelope.
    Mismatch(&'static str),
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid log entry: {self:?}")
    }
}

impl std::error::Error for EntryError {}

/// Bytes an entry with a `batch_len`-byte batch occupies, padding included.
pub fn entry_bytes(batch_len: usize) -> usize {
    (ENTRY_HEADER_BYTES + batch_len).next_multiple_of(ENTRY_ALIGN_BYTES)
}

/// What the checksum covers before the batch: base offset, last offset, max timestamp (the
/// magic and the batch length complete the header fields).
type Envelope = (i64, i64, i64);

/// CRC32C of the envelope header fields (little-endian) followed by the batch bytes.
fn checksum(envelope: Envelope, batch: &[u8]) -> u32 {
    crc32c::crc32c_append(fields_crc(envelope, batch.len()), batch)
}

/// `checksum`, trusting the batch's CRC field for the bytes it covers.
fn checksum_from_batch_crc(envelope: Envelope, batch: &[u8]) -> u32 {
    use crate::batch::{CRC_OFFSET, CRC_START};
    let head = crc32c::crc32c_append(fields_crc(envelope, batch.len()), &batch[..CRC_START]);
    let batch_crc = u32::from_be_bytes(batch[CRC_OFFSET..CRC_START].try_into().expect("4 bytes"));
    crate::crc::combine(head, batch_crc, batch.len() - CRC_START)
}

/// CRC32C of the envelope fields the checksum covers before the batch.
fn fields_crc((base_offset, last_offset, max_timestamp): Envelope, batch_len: usize) -> u32 {
    let mut fields = [0u8; 32];
    fields[0..4].copy_from_slice(&ENTRY_MAGIC.to_le_bytes());
    fields[4..8].copy_from_slice(&(batch_len as u32).to_le_bytes());
    fields[8..16].copy_from_slice(&base_offset.to_le_bytes());
    fields[16..24].copy_from_slice(&last_offset.to_le_bytes());
    fields[24..32].copy_from_slice(&max_timestamp.to_le_bytes());
    crc32c::crc32c(&fields)
}

/// Appends one entry (header, batch, padding) to `out`.
pub fn encode_entry(out: &mut Vec<u8>, batch: &[u8], last_offset: i64, max_timestamp: i64) {
    let base_offset = batch_base_offset(batch);
    let sum = checksum((base_offset, last_offset, max_timestamp), batch);
    let start = out.len();
    out.resize(start + entry_bytes(batch.len()), 0);
    let entry = &mut out[start..];
    entry[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + batch.len()].copy_from_slice(batch);
    let fields = (base_offset, last_offset, max_timestamp, sum);
    write_envelope(entry, batch.len(), fields);
}

/// Completes an entry whose batch (base offset patched) already sits at
/// `entry[ENTRY_HEADER_BYTES..]`: writes the header and the zero padding. `entry` is the whole
/// entry (`entry_bytes(batch_len)` bytes).
///
/// The batch's CRC field must be right (a batch from `validate_produce_records`, or whose
/// CRC was recomputed after a patch): the checksum is derived from it, reading only the
/// batch's first 21 bytes (`crc::combine`) instead of the whole batch again, which was a third
/// of the append path's CPU.
pub fn seal_entry(entry: &mut [u8], batch_len: usize, last_offset: i64, max_timestamp: i64) {
    let batch = &entry[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + batch_len];
    let base_offset = batch_base_offset(batch);
    let envelope = (base_offset, last_offset, max_timestamp);
    let sum = checksum_from_batch_crc(envelope, batch);
    debug_assert_eq!(
        sum,
        checksum(envelope, batch),
        "seal_entry needs a batch whose CRC field is right"
    );
    write_envelope(
        entry,
        batch_len,
        (base_offset, last_offset, max_timestamp, sum),
    );
}

fn batch_base_offset(batch: &[u8]) -> i64 {
    assert!(
        batch.len() >= crate::batch::BATCH_HEADER_BYTES && batch.len() <= ENTRY_BATCH_BYTES_MAX
    );
    i64::from_be_bytes(batch[0..8].try_into().expect("8 bytes"))
}

/// Header (rkyv's archived layout, written by hand: no allocation) and padding of an entry
/// whose batch is in place; `fields` are base offset, last offset, max timestamp, checksum.
fn write_envelope(entry: &mut [u8], batch_len: usize, fields: (i64, i64, i64, u32)) {
    let (base_offset, last_offset, max_timestamp, checksum) = fields;
    assert_eq!(entry.len(), entry_bytes(batch_len), "entry buffer size");
    assert!(last_offset >= base_offset, "entry offsets go backwards");
    let h = &mut entry[..ENTRY_HEADER_BYTES];
    h[0..4].copy_from_slice(&ENTRY_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&(batch_len as u32).to_le_bytes());
    h[8..16].copy_from_slice(&base_offset.to_le_bytes());
    h[16..24].copy_from_slice(&last_offset.to_le_bytes());
    h[24..32].copy_from_slice(&max_timestamp.to_le_bytes());
    h[32..36].copy_from_slice(&checksum.to_le_bytes());
    h[36..40].fill(0);
    entry[ENTRY_HEADER_BYTES + batch_len..].fill(0);
}

/// Zero-copy view of the header at the start of `buf` (which must be 8-aligned in memory).
pub fn access_header(buf: &[u8]) -> Result<&ArchivedEntryHeader, EntryError> {
    if buf.len() < ENTRY_HEADER_BYTES {
        return Err(EntryError::Truncated);
    }
    if buf.as_ptr().align_offset(ENTRY_ALIGN_BYTES) != 0 {
        return Err(EntryError::Misaligned);
    }
    let header = rkyv::access::<ArchivedEntryHeader, rancor::Error>(&buf[..ENTRY_HEADER_BYTES])
        .map_err(|_| EntryError::Truncated)?;
    let magic = header.magic.to_native();
    if magic != ENTRY_MAGIC {
        return Err(EntryError::BadMagic(magic));
    }
    let len = header.batch_len.to_native();
    if (len as usize) < crate::batch::BATCH_HEADER_BYTES || len as usize > ENTRY_BATCH_BYTES_MAX {
        return Err(EntryError::BadLength(len));
    }
    Ok(header)
}

/// Verifies the checksum and that the batch agrees with its envelope. Call before serving.
pub fn verify(header: &ArchivedEntryHeader, batch: &[u8]) -> Result<(), EntryError> {
    let len = header.batch_len.to_native();
    if batch.len() != len as usize {
        return Err(EntryError::Truncated);
    }
    let (base, last, max_ts) = (
        header.base_offset.to_native(),
        header.last_offset.to_native(),
        header.max_timestamp.to_native(),
    );
    let actual = checksum((base, last, max_ts), batch);
    let expected = header.checksum.to_native();
    if actual != expected {
        return Err(EntryError::Checksum { expected, actual });
    }
    let parsed = crate::batch::BatchHeader::parse(batch)
        .map_err(|_| EntryError::Mismatch("batch header"))?;
    if parsed.base_offset != base
        || parsed.last_offset() != last
        || parsed.total_bytes() != batch.len()
    {
        return Err(EntryError::Mismatch("batch offsets or length"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::test_support::*;

    fn aligned(bytes: &[u8]) -> rkyv::util::AlignedVec {
        let mut v = rkyv::util::AlignedVec::new();
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn round_trip_and_padding() {
        let batch = encode_batch(42, 100, NO_PRODUCER, &simple_records(3));
        let mut out = Vec::new();
        encode_entry(&mut out, &batch, 44, 102);
        assert_eq!(out.len(), entry_bytes(batch.len()));
        assert_eq!(out.len() % ENTRY_ALIGN_BYTES, 0);
        let buf = aligned(&out);
        let h = access_header(&buf).unwrap();
        assert_eq!(h.base_offset.to_native(), 42);
        assert_eq!(h.last_offset.to_native(), 44);
        assert_eq!(h.max_timestamp.to_native(), 102);
        let body = &buf[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + batch.len()];
        verify(h, body).unwrap();
        assert!(buf[ENTRY_HEADER_BYTES + batch.len()..]
            .iter()
            .all(|b| *b == 0));
    }

    #[test]
    fn hand_written_header_is_rkyvs_layout() {
        let batch = encode_batch(42, 100, NO_PRODUCER, &simple_records(3));
        let mut out = Vec::new();
        encode_entry(&mut out, &batch, 44, 102);
        let header = EntryHeader {
            magic: ENTRY_MAGIC,
            batch_len: batch.len() as u32,
            base_offset: 42,
            last_offset: 44,
            max_timestamp: 102,
            checksum: checksum((42, 44, 102), &batch),
            reserved: 0,
        };
        let archived = rkyv::to_bytes::<rancor::Error>(&header).unwrap();
        assert_eq!(&out[..ENTRY_HEADER_BYTES], &archived[..]);
    }

    #[test]
    fn sealed_in_place_equals_encoded() {
        // Every way append prepares a batch: as produced, base offset patched (outside the
        // batch CRC), LogAppendTime set (CRC recomputed); the sealed checksum is derived from
        // the batch CRC, the encoded one reads the whole batch.
        let patches: [fn(&mut Vec<u8>); 3] = [
            |_| {},
            |b| crate::batch::patch_base_offset(b, 7),
            |b| {
                crate::batch::patch_base_offset(b, 7);
                crate::batch::set_log_append_time(b, 1_700_000_000_000);
            },
        ];
        for (records, patch) in [1, 3, 40]
            .into_iter()
            .flat_map(|n| patches.iter().map(move |p| (n, p)))
        {
            let mut batch = encode_batch(0, 100, NO_PRODUCER, &simple_records(records));
            patch(&mut batch);
            crate::batch::patch_base_offset(&mut batch, 7);
            let last = 7 + records as i64 - 1;
            let mut encoded = Vec::new();
            encode_entry(&mut encoded, &batch, last, 150);
            let mut sealed = vec![0xffu8; entry_bytes(batch.len())];
            sealed[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + batch.len()].copy_from_slice(&batch);
            seal_entry(&mut sealed, batch.len(), last, 150);
            assert_eq!(sealed, encoded, "{records} records");
        }
    }

    #[test]
    fn detects_corruption() {
        let batch = encode_batch(0, 100, NO_PRODUCER, &simple_records(2));
        let mut out = Vec::new();
        encode_entry(&mut out, &batch, 1, 101);
        let mut buf = aligned(&out);
        buf[ENTRY_HEADER_BYTES + 70] ^= 1;
        let h = access_header(&buf).unwrap();
        let body = &buf[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + batch.len()];
        assert!(matches!(verify(h, body), Err(EntryError::Checksum { .. })));
        let zeros = aligned(&[0u8; 64]);
        assert_eq!(access_header(&zeros).unwrap_err(), EntryError::BadMagic(0));
        assert_eq!(
            access_header(&zeros[..10]).unwrap_err(),
            EntryError::Truncated
        );
        assert_eq!(
            access_header(&buf[1..]).unwrap_err(),
            EntryError::Misaligned
        );
    }
}
