//! Kafka's record-batch compression codecs (attributes bits 0-2 of a v2 batch): none, gzip
//! (flate2), snappy (the xerial framing the Java client writes; one raw snappy block is read
//! too, as librdkafka writes), lz4 (the LZ4 frame format with independent blocks) and zstd (the
//! C library, level 3 when compressing, Kafka's default `compression.zstd.level`). They compress and decompress the records section, the
//! bytes after the 61-byte batch header.
//!
//! Decompression is bounded: a produced batch is untrusted, and a small payload that inflates
//! to gigabytes (a decompression bomb) fails with [`CodecError::TooLarge`] once the output
//! passes the caller's limit instead of exhausting memory.

use std::fmt;
use std::io::{Read, Write};

/// Largest decompressed records section read by default (Kafka's largest default batch is
/// 1 MiB compressed; 64 MiB leaves room for highly compressible data).
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// A compression codec, by its id in the batch attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Codec {
    /// Every codec, by id.
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    /// The codec of a batch's attributes (bits 0-2).
    pub fn from_attributes(attributes: i16) -> Result<Codec, CodecError> {
        let id = (attributes & 0x07) as u8;
        Self::from_id(id).ok_or(CodecError::Unknown(id))
    }

    /// The codec with this id (0-4).
    pub fn from_id(id: u8) -> Option<Codec> {
        Self::ALL.get(id as usize).copied()
    }

    /// The codec named as Kafka's `compression.type` names it (`none`, `gzip`, ...).
    pub fn from_name(name: &str) -> Option<Codec> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The id in the batch attributes.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// Kafka's name of the codec.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// Why a records section could not be compressed or decompressed.
#[derive(Debug)]
pub enum CodecError {
    /// Attributes bits 0-2 name no codec (5-7).
    Unknown(u8),
    /// The decompressed records pass the caller's limit (bytes).
    TooLarge(usize),
    /// The compressed bytes are corrupt or truncated, or the codec failed.
    Corrupt(Codec, String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Unknown(id) => write!(f, "unknown compression codec id {id}"),
            CodecError::TooLarge(limit) => {
                write!(f, "decompressed records exceed {limit} bytes")
            }
            CodecError::Corrupt(codec, why) => write!(f, "{}: {why}", codec.name()),
        }
    }
}

impl std::error::Error for CodecError {}

/// Compresses the records section `records` with `codec` into `out`.
pub fn compress(codec: Codec, records: &[u8], out: &mut impl Write) -> Result<(), CodecError> {
    let corrupt = |e: std::io::Error| CodecError::Corrupt(codec, e.to_string());
    match codec {
        Codec::None => out.write_all(records).map_err(corrupt),
        Codec::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            encoder.write_all(records).map_err(corrupt)?;
            encoder.finish().map(drop).map_err(corrupt)
        }
        Codec::Snappy => xerial_compress(records, out),
        Codec::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            encoder.write_all(records).map_err(corrupt)?;
            encoder
                .finish()
                .map(drop)
                .map_err(|e| CodecError::Corrupt(codec, e.to_string()))
        }
        Codec::Zstd => zstd::stream::copy_encode(records, out, 3).map_err(corrupt),
    }
}

/// Decompresses the records section `data` of a `codec` batch; fails with
/// [`CodecError::TooLarge`] once the output passes `limit` bytes.
pub fn decompress(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    match codec {
        Codec::None if data.len() > limit => Err(CodecError::TooLarge(limit)),
        Codec::None => Ok(data.to_vec()),
        Codec::Gzip => read_bounded(codec, flate2::read::GzDecoder::new(data), limit),
        Codec::Snappy => snappy_decompress(data, limit),
        Codec::Lz4 => read_bounded(codec, lz4_flex::frame::FrameDecoder::new(data), limit),
        Codec::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| CodecError::Corrupt(codec, e.to_string()))?;
            read_bounded(codec, decoder, limit)
        }
    }
}

/// Reads a decoder to its end, at most `limit` bytes.
fn read_bounded(codec: Codec, decoder: impl Read, limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CodecError::Corrupt(codec, e.to_string()))?;
    if out.len() > limit {
        return Err(CodecError::TooLarge(limit));
    }
    Ok(out)
}

/// The header of snappy-java's stream format (magic, version 1, compatible version 1).
const XERIAL_HEADER: [u8; 16] = [
    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
];
/// snappy-java's default block size.
const XERIAL_BLOCK_BYTES: usize = 32 << 10;

/// snappy-java's `SnappyOutputStream` layout: the header, then (int32 length, raw block)s.
fn xerial_compress(records: &[u8], out: &mut impl Write) -> Result<(), CodecError> {
    let failed = |e: String| CodecError::Corrupt(Codec::Snappy, e);
    out.write_all(&XERIAL_HEADER)
        .map_err(|e| failed(e.to_string()))?;
    let mut encoder = snap::raw::Encoder::new();
    for block in records.chunks(XERIAL_BLOCK_BYTES) {
        let compressed = encoder
            .compress_vec(block)
            .map_err(|e| failed(e.to_string()))?;
        out.write_all(&(compressed.len() as i32).to_be_bytes())
            .and_then(|()| out.write_all(&compressed))
            .map_err(|e| failed(e.to_string()))?;
    }
    Ok(())
}

/// Reads snappy-java's framing or one raw snappy block, at most `limit` bytes.
fn snappy_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let corrupt = |e: snap::Error| CodecError::Corrupt(Codec::Snappy, e.to_string());
    let truncated = || CodecError::Corrupt(Codec::Snappy, "truncated xerial block".into());
    let mut out = Vec::new();
    let mut append = |block: &[u8]| {
        // A raw block states its decompressed length first: checked before allocating.
        let length = snap::raw::decompress_len(block).map_err(corrupt)?;
        if out.len() + length > limit {
            return Err(CodecError::TooLarge(limit));
        }
        let start = out.len();
        out.resize(start + length, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map(drop)
            .map_err(corrupt)
    };
    if !data.starts_with(&XERIAL_HEADER[..8]) {
        append(data)?;
        return Ok(out);
    }
    let mut rest = data.get(XERIAL_HEADER.len()..).ok_or_else(truncated)?;
    while !rest.is_empty() {
        let (length, body) = rest.split_at_checked(4).ok_or_else(truncated)?;
        let length = u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize;
        let block = body.get(..length).ok_or_else(truncated)?;
        append(block)?;
        rest = &body[length..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 97).to_be_bytes())
            .collect()
    }

    #[test]
    fn codecs_round_trip() {
        let data = sample();
        for codec in Codec::ALL {
            let mut out = Vec::new();
            compress(codec, &data, &mut out).unwrap();
            if codec != Codec::None {
                assert!(out.len() < data.len() / 2, "{codec:?} compresses");
            }
            let back = decompress(codec, &out, MAX_DECOMPRESSED_BYTES).unwrap();
            assert_eq!(back, data, "{codec:?}");
        }
    }

    #[test]
    fn raw_snappy_is_read() {
        let data = sample();
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(Codec::Snappy, &raw, data.len()).unwrap(), data);
    }

    #[test]
    fn output_past_the_limit_fails() {
        // 4 MiB of zeros compress to a few KiB: read with a 1 MiB limit.
        let bomb = vec![0u8; 4 << 20];
        for codec in Codec::ALL {
            let mut out = Vec::new();
            compress(codec, &bomb, &mut out).unwrap();
            let err = decompress(codec, &out, 1 << 20).unwrap_err();
            assert!(
                matches!(err, CodecError::TooLarge(l) if l == 1 << 20),
                "{codec:?}: {err}"
            );
            // Exactly at the limit is fine.
            assert_eq!(
                decompress(codec, &out, bomb.len()).unwrap().len(),
                bomb.len()
            );
        }
        let raw = snap::raw::Encoder::new().compress_vec(&bomb).unwrap();
        assert!(matches!(
            decompress(Codec::Snappy, &raw, 1 << 20),
            Err(CodecError::TooLarge(_))
        ));
    }

    #[test]
    fn corrupt_input_and_unknown_ids_fail() {
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let err = decompress(codec, b"not compressed at all", 1 << 20).unwrap_err();
            assert!(
                matches!(err, CodecError::Corrupt(c, _) if c == codec),
                "{err}"
            );
        }
        let mut truncated = Vec::new();
        compress(Codec::Snappy, &sample(), &mut truncated).unwrap();
        truncated.truncate(truncated.len() - 3);
        assert!(decompress(Codec::Snappy, &truncated, 1 << 20).is_err());
        assert!(matches!(
            Codec::from_attributes(0x15),
            Err(CodecError::Unknown(5))
        ));
        assert_eq!(Codec::from_attributes(0x13).unwrap(), Codec::Lz4);
        assert_eq!(Codec::from_name("zstd"), Some(Codec::Zstd));
        assert_eq!(Codec::from_name("brotli"), None);
    }
}
