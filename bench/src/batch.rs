//! An incremental builder of Kafka record batches (magic v2), the way a producer accumulates
//! records for one partition, sealed uncompressed or compressed as Kafka's clients do; and a
//! walker of fetched batches that decompresses them.

use bytes::Bytes;
use storage::codec;

/// Bytes of a v2 batch header, before the first record.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Accumulates records for one partition and seals them into a v2 batch (CRC32C filled in,
/// no producer id, base offset 0: the broker assigns offsets).
pub struct BatchBuilder {
    buf: Vec<u8>,
    attributes: i16,
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
            attributes: 0,
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

    /// Compresses the records section with `compression` (Kafka's v2 format: only the records
    /// are compressed, the codec is in attribute bits 0-2), then fills in the header and CRC32C.
    pub fn seal_compressed(mut self, compression: Compression) -> Bytes {
        if compression != Compression::None {
            let compressed = compression.compress(&self.buf[BATCH_HEADER_BYTES..]);
            self.buf.truncate(BATCH_HEADER_BYTES);
            self.buf.extend_from_slice(&compressed);
            self.attributes = compression.codec() as i16;
        }
        self.seal()
    }

    /// Fills in the header and CRC32C (records uncompressed unless `seal_compressed` ran).
    pub fn seal(mut self) -> Bytes {
        assert!(self.records > 0, "an empty batch is never sent");
        let batch_length = (self.buf.len() - 12) as i32;
        let mut header = Vec::with_capacity(BATCH_HEADER_BYTES);
        header.extend_from_slice(&0i64.to_be_bytes()); // base offset
        header.extend_from_slice(&batch_length.to_be_bytes());
        header.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        header.push(2); // magic
        header.extend_from_slice(&0u32.to_be_bytes()); // crc, below
        header.extend_from_slice(&self.attributes.to_be_bytes()); // compression codec
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

/// The compression codecs of Kafka's record batches (attribute bits 0-2), encoded as Kafka's
/// Java client encodes them so that every client decodes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// A gzip stream (deflate, default level 6 as Kafka's `compression.gzip.level`).
    Gzip,
    /// snappy in xerial (snappy-java `SnappyOutputStream`) framing, which Kafka's Java client
    /// writes for every batch version; readers also accept raw snappy (librdkafka writes that).
    Snappy,
    /// The LZ4 frame format, independent 64 KiB blocks, no checksums beyond the header's.
    Lz4,
    /// A zstd frame, level 3 (Kafka's default `compression.zstd.level`).
    Zstd,
}

impl Compression {
    pub fn parse(name: &str) -> Result<Compression, String> {
        Ok(match name {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            other => {
                return Err(format!(
                    "compression: none|gzip|snappy|lz4|zstd, not '{other}'"
                ))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The codec number in a batch's attributes.
    pub fn codec(self) -> u8 {
        self as u8
    }

    pub fn from_codec(codec: u8) -> Result<Compression, String> {
        [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ]
        .get(codec as usize)
        .copied()
        .ok_or_else(|| format!("unknown compression codec {codec}"))
    }

    /// Compresses a batch's records section (`storage::codec`, shared with the CLI and the
    /// broker's compaction).
    pub fn compress(self, records: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        codec::compress(self.shared(), records, &mut out).expect("compressing into memory");
        out
    }

    /// Decompresses a batch's records section (bounded by `codec::MAX_DECOMPRESSED_BYTES`).
    pub fn decompress(self, compressed: &[u8]) -> Result<Vec<u8>, String> {
        codec::decompress(self.shared(), compressed, codec::MAX_DECOMPRESSED_BYTES)
            .map_err(|e| format!("{} batch does not decompress: {e}", self.name()))
    }

    fn shared(self) -> codec::Codec {
        codec::Codec::from_id(self.codec()).expect("every Compression is a codec")
    }
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
/// cut one at `max_bytes`) is ignored. Calls `on_value` with each record's value when given,
/// decompressing compressed batches for it; without `on_value` the counts come from the
/// batch headers alone.
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
            let records = &batch[BATCH_HEADER_BYTES..total_bytes];
            match Compression::from_codec((attributes & 0x7) as u8)? {
                Compression::None => walk_values(records, on_value)?,
                codec => walk_values(&codec.decompress(records)?, on_value)?,
            }
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

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn letters(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| b'A' + ((i * 7 + seed as usize * 13 + i / 5) % 26) as u8)
            .collect()
    }

    #[test]
    fn compressed_batches_pass_the_brokers_validation_and_walk_back() {
        for codec in CODECS {
            let mut builder = BatchBuilder::new(1 << 20, 1_700_000_000_000);
            // 200 KiB of records: several snappy (32 KiB) and lz4 (64 KiB) blocks.
            for i in 0..200u8 {
                builder.append(1_700_000_000_000 + i as i64, None, &letters(1024, i));
            }
            let uncompressed_bytes = builder.len_bytes();
            let batch = builder.seal_compressed(codec);
            let header = storage::batch::validate_produce_records(&batch).expect("valid batch");
            assert_eq!(header.compression(), codec.codec(), "{codec:?}");
            assert_eq!(header.record_count, 200);
            assert_eq!(header.total_bytes(), batch.len());
            if codec != Compression::None {
                assert!(
                    batch.len() < uncompressed_bytes,
                    "{codec:?} compresses letters"
                );
            }
            // Counted from the header alone, and every value back through decompression.
            assert_eq!(walk_batches(&batch, None).unwrap()[0].record_count, 200);
            let mut values = Vec::new();
            let mut collect = |v: &[u8]| values.push(v.to_vec());
            let walked = walk_batches(&batch, Some(&mut collect)).expect("walks");
            assert_eq!(walked[0].next_offset, 200);
            assert_eq!(values.len(), 200, "{codec:?}");
            assert_eq!(values[199], letters(1024, 199), "{codec:?}");
        }
    }

    #[test]
    fn codecs_round_trip_and_name_themselves() {
        let data = letters(100_000, 1);
        for codec in CODECS {
            assert_eq!(Compression::parse(codec.name()), Ok(codec));
            assert_eq!(Compression::from_codec(codec.codec()), Ok(codec));
            assert_eq!(codec.decompress(&codec.compress(&data)).unwrap(), data);
            assert_eq!(codec.decompress(&codec.compress(&[])).unwrap(), b"");
        }
        assert!(Compression::parse("brotli").is_err());
        assert!(Compression::from_codec(5).is_err());
        // Kafka's Java client frames snappy the xerial way; librdkafka's raw snappy reads too.
        let framed = Compression::Snappy.compress(&data);
        assert_eq!(&framed[..8], b"\x82SNAPPY\0");
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(Compression::Snappy.decompress(&raw).unwrap(), data);
        // Corrupt input is an error, not a panic.
        for codec in &CODECS[1..] {
            let mut broken = codec.compress(&data);
            broken.truncate(broken.len() / 2);
            assert!(codec.decompress(&broken).is_err(), "{codec:?}");
        }
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
