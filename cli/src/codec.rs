//! Record-batch compression codecs of the CLI: none, gzip (flate2) and lz4 (the LZ4 frame
//! format with independent blocks, as Kafka's v2 batches use). snappy and zstd are refused
//! with a clear message when producing and when a fetched batch uses them.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::Compression;
use std::io::{Read, Write};

/// Parses `--compression`.
pub fn parse(name: &str) -> Result<Compression, String> {
    match name {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "lz4" => Ok(Compression::Lz4),
        "snappy" | "zstd" => Err(format!(
            "--compression {name}: not supported by the spate CLI yet (use none, gzip or lz4)"
        )),
        other => Err(format!(
            "--compression: unknown codec '{other}' (none, gzip, lz4)"
        )),
    }
}

fn unsupported(compression: Compression) -> anyhow::Error {
    anyhow::anyhow!("{compression:?} batches are not supported by the spate CLI (gzip and lz4 are)")
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
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out.writer());
            encoder.write_all(records)?;
            encoder.finish()?;
        }
        other => return Err(unsupported(other)),
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
        Compression::Lz4 => {
            lz4_flex::frame::FrameDecoder::new(&records[..]).read_to_end(&mut out)?;
        }
        other => return Err(unsupported(other)),
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_round_trip() {
        let data: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 97).to_be_bytes())
            .collect();
        for codec in ["none", "gzip", "lz4"] {
            let compression = parse(codec).unwrap();
            let mut out = BytesMut::new();
            compress(&mut BytesMut::from(&data[..]), &mut out, compression).unwrap();
            if codec != "none" {
                assert!(out.len() < data.len() / 2, "{codec} compresses");
            }
            let back = decompress(&mut out.freeze(), compression).unwrap();
            assert_eq!(&back[..], &data[..], "{codec}");
        }
        assert!(parse("zstd").unwrap_err().contains("not supported"));
        assert!(parse("brotli").is_err());
    }
}
