//! Record batch validation and decompression: `storage::batch::validate_produce_records`
//! (the produce path), `validate_replicated` (the follower path), the compaction readers
//! (`records_body` decompresses gzip/snappy/lz4/zstd, `keyed_records`,
//! `has_record_without_key`, run on produce to compacted topics) and raw `codec::decompress`.
//!
//! Input: a mode byte (bit 0: fix the batch CRC, bit 1: fix the batch length, bit 2: make
//! lastOffsetDelta agree with the record count, so the fuzzer gets past those checks; bits
//! 4-6: the codec of the raw decompression check) and the batch.
//! Asserts: no panic; an accepted batch is exactly one whole batch that the follower path
//! and the batch iterator accept too, keeps validating after the broker's offset and
//! LogAppendTime patches, and its decompressed records hold at most `record_count` records;
//! decompression stays under its limit and recompressing round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage::batch::{self, BatchHeader};
use storage::codec::{self, Codec};
use storage::compaction;

/// Limit of the raw decompression check (the broker's is `codec::MAX_DECOMPRESSED_BYTES`).
const RAW_LIMIT_BYTES: usize = 1 << 20;

fuzz_target!(
    init: spate_fuzz::write_seeds_if_asked("batch"),
    |data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let mut buf = rest.to_vec();
        if mode & 2 != 0 {
            spate_fuzz::fix_batch_length(&mut buf);
        }
        if mode & 4 != 0 {
            spate_fuzz::fix_last_offset_delta(&mut buf);
        }
        if mode & 1 != 0 {
            spate_fuzz::fix_batch_crc(&mut buf);
        }
        match batch::validate_produce_records(&buf) {
            Ok(header) => check_accepted(&mut buf, &header),
            Err(e) => {
                let _ = e.kafka_error_code();
            }
        }
        if let Some(codec) = Codec::from_id((mode >> 4) & 7) {
            check_decompress(codec, rest);
        }
    }
);

fn check_accepted(buf: &mut [u8], header: &BatchHeader) {
    assert_eq!(header.total_bytes(), buf.len(), "one whole batch");
    assert!(header.record_count > 0);
    assert_eq!(
        header.last_offset(),
        header.base_offset + i64::from(header.record_count) - 1
    );
    let replicated = batch::validate_replicated(buf).expect("a valid produce batch replicates");
    assert_eq!(replicated.crc, header.crc);
    assert_eq!(batch::iter_batches(buf).count(), 1);
    let _ = batch::check_client_batch(header);
    let _ = header.last_sequence();
    if let Some(body) = compaction::records_body(buf, header) {
        if let Some(records) = compaction::keyed_records(&body, header) {
            if header.compression() == 0 {
                assert_eq!(records.len(), header.record_count as usize);
            }
        }
    }
    let _ = compaction::has_record_without_key(buf, header);
    // What the broker does to an accepted batch before writing it.
    batch::patch_base_offset(buf, 1_000);
    batch::patch_partition_leader_epoch(buf, 3);
    batch::set_log_append_time(buf, 1_700_000_000_000);
    let patched = batch::validate_produce_records(buf).expect("a patched batch still validates");
    assert_eq!(patched.base_offset, 1_000);
    assert!(patched.is_log_append_time());
    assert_eq!(patched.record_count, header.record_count);
}

fn check_decompress(codec: Codec, data: &[u8]) {
    let Ok(plain) = codec::decompress(codec, data, RAW_LIMIT_BYTES) else {
        return;
    };
    assert!(plain.len() <= RAW_LIMIT_BYTES);
    let mut packed = Vec::new();
    codec::compress(codec, &plain, &mut packed).expect("compressing into a Vec");
    let again =
        codec::decompress(codec, &packed, RAW_LIMIT_BYTES).expect("own output decompresses");
    assert!(again == plain, "{} round trip", codec.name());
}
