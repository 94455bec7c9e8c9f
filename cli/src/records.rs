//! Record batches of the CLI, through kafka-protocol's v2 record codec (keys, values, headers,
//! timestamps) with the storage crate's compression codecs (`storage::codec`).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use storage::codec::{self, Codec};

/// Parses `--compression` (Kafka's `compression.type` names).
pub fn compression(name: &str) -> Result<Compression, String> {
    match Codec::from_name(name) {
        Some(Codec::None) => Ok(Compression::None),
        Some(Codec::Gzip) => Ok(Compression::Gzip),
        Some(Codec::Snappy) => Ok(Compression::Snappy),
        Some(Codec::Lz4) => Ok(Compression::Lz4),
        Some(Codec::Zstd) => Ok(Compression::Zstd),
        None => Err(format!(
            "--compression: unknown codec '{name}' (none, gzip, snappy, lz4, zstd)"
        )),
    }
}

fn codec_of(compression: Compression) -> Codec {
    match compression {
        Compression::None => Codec::None,
        Compression::Gzip => Codec::Gzip,
        Compression::Snappy => Codec::Snappy,
        Compression::Lz4 => Codec::Lz4,
        Compression::Zstd => Codec::Zstd,
    }
}

/// The encoder's compressor hook.
fn compress(
    records: &mut BytesMut,
    out: &mut BytesMut,
    compression: Compression,
) -> anyhow::Result<()> {
    let mut writer = out.writer();
    codec::compress(codec_of(compression), records, &mut writer)?;
    Ok(())
}

/// The decoder's decompressor hook (bounded: a fetched batch is untrusted).
fn decompress(records: &mut Bytes, compression: Compression) -> anyhow::Result<Bytes> {
    if compression == Compression::None {
        return Ok(std::mem::take(records));
    }
    let out = codec::decompress(
        codec_of(compression),
        records,
        codec::MAX_DECOMPRESSED_BYTES,
    )?;
    Ok(Bytes::from(out))
}

/// A record to produce, at `offset_delta` (0, 1, ...) of its batch.
pub fn record(
    offset_delta: i64,
    timestamp_ms: i64,
    key: Option<Bytes>,
    value: Bytes,
    headers: &[(String, Bytes)],
) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: offset_delta,
        // The encoder keeps records in one batch while offset - sequence is constant, and
        // writes the first record's sequence as the base sequence: -1, no idempotence.
        sequence: offset_delta as i32 - 1,
        timestamp: timestamp_ms,
        key,
        value: Some(value),
        headers: headers
            .iter()
            .map(|(k, v)| (StrBytes::from_string(k.clone()), Some(v.clone())))
            .collect::<IndexMap<_, _>>(),
    }
}

/// Encodes records (offsets 0..n) into one v2 batch.
pub fn encode(records: &[Record], compression: Compression) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode_with_custom_compression(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
        Some(compress),
    )
    .map_err(|e| format!("encode a record batch: {e}"))?;
    Ok(buf.freeze())
}

/// What a fetched `records` field holds from `from_offset` on.
pub struct Fetched {
    /// Data records at or after `from_offset` (control records left out).
    pub records: Vec<Record>,
    /// Where the next fetch starts (after the last whole batch; `from_offset` when none).
    pub next_offset: i64,
}

/// Decodes the whole batches of a fetched `records` field (a cut batch at the end is left for
/// the next fetch, as the broker may cut one at `max_bytes`).
pub fn decode(records: &Bytes, from_offset: i64) -> Result<Fetched, String> {
    let mut fetched = Fetched {
        records: Vec::new(),
        next_offset: from_offset,
    };
    let batches = spate_bench::batch::walk_batches(records, None)?;
    let mut at = 0;
    for batch in batches {
        let mut bytes = records.slice(at..at + batch.total_bytes);
        at += batch.total_bytes;
        fetched.next_offset = fetched.next_offset.max(batch.next_offset);
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut bytes, Some(decompress))
            .map_err(|e| format!("decode the batch at offset {}: {e}", batch.base_offset))?;
        fetched.records.extend(
            set.records
                .into_iter()
                .filter(|r| !r.control && r.offset >= from_offset),
        );
    }
    Ok(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_with_keys_headers_and_compression() {
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let headers = vec![("h".to_string(), Bytes::from_static(b"1"))];
            let records: Vec<Record> = (0..5)
                .map(|i| {
                    let key = (i % 2 == 0).then(|| Bytes::from(format!("k{i}")));
                    record(
                        i,
                        1_700_000_000_000 + i,
                        key,
                        Bytes::from(format!("v{i}")),
                        &headers,
                    )
                })
                .collect();
            let batch = encode(&records, compression(codec).unwrap()).unwrap();
            let fetched = decode(&batch, 2).unwrap();
            assert_eq!(fetched.next_offset, 5);
            assert_eq!(fetched.records.len(), 3, "offsets below 2 are skipped");
            let r = &fetched.records[0];
            assert_eq!(r.offset, 2);
            assert_eq!(r.key.as_deref(), Some(&b"k2"[..]));
            assert_eq!(r.value.as_deref(), Some(&b"v2"[..]));
            assert_eq!(r.timestamp, 1_700_000_000_002);
            assert_eq!(r.headers.len(), 1);
            assert!(fetched.records[1].key.is_none());
            // A cut batch is left for later.
            assert_eq!(
                spate_bench::batch::walk_batches(&batch, None)
                    .unwrap()
                    .len(),
                1
            );
            let cut = decode(&batch.slice(..batch.len() - 1), 0).unwrap();
            assert!(cut.records.is_empty());
            assert_eq!(cut.next_offset, 0);
        }
        assert!(compression("brotli").is_err());
    }
}
