//! Spate benchmarks. For now: criterion benchmarks of the storage crate's hot pieces, and a
//! builder of Kafka record batches to feed them. The load generator and the side-by-side runs
//! against Apache Kafka come with the benchmark issue.

/// Encodes an uncompressed Kafka record batch (magic v2) of `records` records, each with a
/// `key_bytes`-byte key and a `value_bytes`-byte value, base offset 0, CRC32C filled in.
pub fn record_batch(records: usize, key_bytes: usize, value_bytes: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..records {
        let mut record = Vec::new();
        record.push(0); // attributes
        put_varint(&mut record, i as i64); // timestamp delta
        put_varint(&mut record, i as i64); // offset delta
        put_varint(&mut record, key_bytes as i64);
        record.extend(std::iter::repeat_n(b'k', key_bytes));
        put_varint(&mut record, value_bytes as i64);
        record.extend(std::iter::repeat_n(b'v', value_bytes));
        put_varint(&mut record, 0); // headers
        put_varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let mut batch = Vec::with_capacity(61 + body.len());
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes()); // batch length
    batch.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    batch.extend_from_slice(&0i16.to_be_bytes()); // attributes
    batch.extend_from_slice(&(records as i32 - 1).to_be_bytes()); // last offset delta
    batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // base timestamp
    batch.extend_from_slice(&(1_700_000_000_000i64 + records as i64 - 1).to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&(records as i32).to_be_bytes());
    batch.extend_from_slice(&body);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

#[cfg(test)]
mod tests {
    #[test]
    fn built_batches_pass_the_brokers_validation() {
        let batch = super::record_batch(10, 8, 100);
        let header = storage::batch::validate_produce_records(&batch).expect("valid batch");
        assert_eq!(header.record_count, 10);
        assert_eq!(header.last_offset_delta, 9);
        assert_eq!(header.total_bytes(), batch.len());
    }
}
