//! Record-batch compression codecs of the CLI: none, gzip (flate2), snappy (in the xerial
//! framing the Java client writes; raw snappy is read too), lz4 (the LZ4 frame format with
//! independent blocks, as Kafka's v2 batches use) and zstd (ruzstd, pure Rust: its fastest
//! level, about zstd's level 1, when producing).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::Compression;
use std::io::{Read, Write};

/// Parses `--compression`.
pub fn parse(name: &str) -> Result<Compression, String> {
    match name {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!(
            "--compression: unknown codec '{other}' (none, gzip, snappy, lz4, zstd)"
        )),
    }
}

/// Compresses the encoded records of a batch into `out` (the encoder's compressor hook).
pub fn compress(
    records: &mut BytesMut,
    out: &mut BytesMut,
    compression: Compression,
) -> anyhow::Result<()> {
    match compression {
        Compression::None => out.put_slice(records),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(out.writer(), flate2::Compression::default());
            encoder.write_all(records)?;
            encoder.finish()?;
        }
        Compression::Snappy => xerial_compress(records, out)?,
        Compression::Zstd => {
            let level = ruzstd::encoding::CompressionLevel::Fastest;
            out.put_slice(&ruzstd::encoding::compress_to_vec(&records[..], level));
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out.writer());
            encoder.write_all(records)?;
            encoder.finish()?;
        }
    }
    Ok(())
}

/// Decompresses the records of a fetched batch (the decoder's decompressor hook).
pub fn decompress(records: &mut Bytes, compression: Compression) -> anyhow::Result<Bytes> {
    let mut out = Vec::new();
    match compression {
        Compression::None => return Ok(std::mem::take(records)),
        Compression::Gzip => {
            flate2::read::GzDecoder::new(&records[..]).read_to_end(&mut out)?;
        }
        Compression::Snappy => out = snappy_decompress(records)?,
        Compression::Zstd => {
            ruzstd::decoding::StreamingDecoder::new(&records[..])
                .map_err(|e| anyhow::anyhow!("zstd: {e}"))?
                .read_to_end(&mut out)?;
        }
        Compression::Lz4 => {
            lz4_flex::frame::FrameDecoder::new(&records[..]).read_to_end(&mut out)?;
        }
    }
    Ok(Bytes::from(out))
}

/// The header of snappy-java's stream format (magic, version 1, compatible version 1).
const XERIAL_HEADER: [u8; 16] = [
    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
];
/// snappy-java's default block size.
const XERIAL_BLOCK_BYTES: usize = 32 << 10;

/// snappy-java's `SnappyOutputStream` layout: the header, then (int32 length, raw block)s.
fn xerial_compress(records: &[u8], out: &mut BytesMut) -> anyhow::Result<()> {
    out.put_slice(&XERIAL_HEADER);
    let mut encoder = snap::raw::Encoder::new();
    for block in records.chunks(XERIAL_BLOCK_BYTES) {
        let compressed = encoder.compress_vec(block)?;
        out.put_i32(compressed.len() as i32);
        out.put_slice(&compressed);
    }
    Ok(())
}

/// Reads snappy-java's framing or one raw snappy block (what librdkafka may write).
fn snappy_decompress(records: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut decoder = snap::raw::Decoder::new();
    if !records.starts_with(&XERIAL_HEADER[..8]) {
        return Ok(decoder.decompress_vec(records)?);
    }
    let mut out = Vec::new();
    let mut rest = records.get(16..).unwrap_or_default();
    while !rest.is_empty() {
        let (length, body) = rest
            .split_at_checked(4)
            .ok_or_else(|| anyhow::anyhow!("truncated snappy block"))?;
        let length = i32::from_be_bytes(length.try_into()?) as usize;
        let block = body
            .get(..length)
            .ok_or_else(|| anyhow::anyhow!("truncated snappy block"))?;
        out.extend_from_slice(&decoder.decompress_vec(block)?);
        rest = &body[length..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_round_trip() {
        let data: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 97).to_be_bytes())
            .collect();
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let compression = parse(codec).unwrap();
            let mut out = BytesMut::new();
            compress(&mut BytesMut::from(&data[..]), &mut out, compression).unwrap();
            if codec != "none" {
                assert!(out.len() < data.len() / 2, "{codec} compresses");
            }
            let back = decompress(&mut out.freeze(), compression).unwrap();
            assert_eq!(&back[..], &data[..], "{codec}");
        }
        // Raw snappy (no framing) is read as well.
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let back = decompress(&mut Bytes::from(raw), Compression::Snappy).unwrap();
        assert_eq!(&back[..], &data[..]);
        assert!(parse("brotli").is_err());
    }
}
