//! Log compaction, the runtime-free part: the key -> latest offset map, which records of a
//! batch survive, and rebuilding a batch from its surviving records.
//!
//! Rules (Kafka's, `cleanup.policy=compact`): a keyed record survives if no later record in
//! the compacted range has the same key; records without a key are kept. A surviving
//! tombstone (null value) stays `delete.retention.ms` after the pass that first kept it, as in
//! Kafka since KIP-534: that pass stamps its batch with a *delete horizon* (attribute bit 6,
//! the horizon in the base timestamp field, each record's timestamp delta re-encoded against
//! it so record timestamps do not change), and the first pass after the horizon drops the
//! batch's tombstones. (A tombstone's own timestamp says when it was produced, not when a
//! consumer could first read it after compaction.) Offsets
//! never change: a rebuilt batch keeps its base offset and `lastOffsetDelta`, so a batch whose
//! records all went stays as an empty batch (record count 0) that clients skip, and every
//! entry of the log keeps its place. A compressed batch is decompressed, compacted and
//! recompressed with its own codec; one that does not decompress, control and transactional
//! batches are opaque here (they are kept whole and their keys do not enter the map).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::batch::{
    read_varint, read_varlong, varlong_bytes, write_varlong, BatchHeader, BATCH_HEADER_BYTES,
};
use crate::codec::{self, Codec};

/// Default bound of the key map's memory, per compaction pass.
pub const OFFSET_MAP_BYTES_MAX: usize = 32 << 20;
/// Accounted per map entry besides the key bytes.
const MAP_ENTRY_OVERHEAD_BYTES: usize = 48;
const BATCH_LENGTH_OFFSET: usize = 8;
const RECORD_COUNT_OFFSET: usize = 57;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const CRC_START: usize = 21;
const BASE_TIMESTAMP_OFFSET: usize = 27;
/// Attribute bit: the base timestamp field holds the batch's delete horizon (Kafka's
/// `DELETE_HORIZON_FLAG_MASK`).
pub const ATTRIBUTE_DELETE_HORIZON: i16 = 0x40;

/// The batch's delete horizon: when its tombstones may go (`None`: not stamped yet).
pub fn delete_horizon(header: &BatchHeader) -> Option<i64> {
    (header.attributes & ATTRIBUTE_DELETE_HORIZON != 0).then_some(header.base_timestamp)
}

/// One record of a batch, as compaction sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyedRecord<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    pub tombstone: bool,
    /// The record's bytes including its length prefix, to copy verbatim.
    pub raw: &'a [u8],
}

/// Whether compaction may look inside this batch (a compressed one once decompressed).
pub fn is_compactable(header: &BatchHeader) -> bool {
    !header.is_control() && !header.is_transactional()
}

/// The records section of a compactable batch, decompressed when compressed; `None` when the
/// batch is opaque or does not decompress.
pub fn records_body<'a>(batch: &'a [u8], header: &BatchHeader) -> Option<Cow<'a, [u8]>> {
    if !is_compactable(header) || batch.len() < BATCH_HEADER_BYTES {
        return None;
    }
    let body = &batch[BATCH_HEADER_BYTES..];
    match Codec::from_attributes(header.attributes).ok()? {
        Codec::None => Some(Cow::Borrowed(body)),
        codec => codec::decompress(codec, body, codec::MAX_DECOMPRESSED_BYTES)
            .ok()
            .map(Cow::Owned),
    }
}

/// Fewest bytes of one record: length, attributes, timestamp and offset deltas, key and
/// value lengths, header count (one byte each at least).
const RECORD_BYTES_MIN: usize = 7;

/// The records of a records section from [`records_body`]; `None` when they do not parse.
pub fn keyed_records<'a>(body: &'a [u8], header: &BatchHeader) -> Option<Vec<KeyedRecord<'a>>> {
    // The record count of a compressed batch is the client's word (validation counts only
    // uncompressed records): reserve no more than the body can hold.
    let capacity = (header.record_count.max(0) as usize).min(body.len() / RECORD_BYTES_MIN);
    let mut out = Vec::with_capacity(capacity);
    let mut pos = 0;
    while pos < body.len() {
        let start = pos;
        let len = read_varint(body, &mut pos)?;
        let end = pos.checked_add(usize::try_from(len).ok()?)?;
        let record = body.get(pos..end)?;
        let mut at = 1; // attributes
        let timestamp_delta = read_varlong(record, &mut at)?;
        let offset_delta = read_varint(record, &mut at)?;
        let key = read_bytes(record, &mut at)?;
        let value = read_bytes(record, &mut at)?;
        out.push(KeyedRecord {
            offset: header.base_offset + offset_delta as i64,
            timestamp: if header.is_log_append_time() {
                header.max_timestamp
            } else {
                header.base_timestamp.saturating_add(timestamp_delta)
            },
            key,
            value,
            tombstone: value.is_none(),
            raw: &body[start..end],
        });
        pos = end;
    }
    Some(out)
}

/// Whether a produced batch holds a record without a key, which Kafka refuses on a compacted
/// topic; also true when its records do not decompress or parse (they cannot be checked).
pub fn has_record_without_key(batch: &[u8], header: &BatchHeader) -> bool {
    let Some(body) = records_body(batch, header) else {
        return is_compactable(header);
    };
    keyed_records(&body, header).is_none_or(|records| records.iter().any(|r| r.key.is_none()))
}

/// Appends `raw` (one record with its length prefix) to `out` with its timestamp delta
/// re-encoded from base `old_base` to base `new_base`: same timestamp, new length prefix.
fn rebase_record(raw: &[u8], old_base: i64, new_base: i64, out: &mut Vec<u8>) -> Option<()> {
    let mut pos = 0;
    read_varint(raw, &mut pos)?; // length
    let attributes = *raw.get(pos)?;
    let mut at = pos + 1;
    let delta = read_varlong(raw, &mut at)?;
    let rest = raw.get(at..)?;
    let new_delta = old_base.checked_add(delta)?.checked_sub(new_base)?;
    let len = 1 + varlong_bytes(new_delta) + rest.len();
    write_varlong(out, i64::from(i32::try_from(len).ok()?));
    out.push(attributes);
    write_varlong(out, new_delta);
    out.extend_from_slice(rest);
    Some(())
}

/// Appends the kept records to `out`, re-encoded against `stamp_horizon` when given.
fn append_records(
    kept: &[&KeyedRecord<'_>],
    base_timestamp: i64,
    stamp_horizon: Option<i64>,
    out: &mut Vec<u8>,
) -> Option<()> {
    for r in kept {
        match stamp_horizon {
            Some(horizon) => rebase_record(r.raw, base_timestamp, horizon, out)?,
            None => out.extend_from_slice(r.raw),
        }
    }
    Some(())
}

/// A varint-length-prefixed byte field; `Some(None)` for length -1 (null).
fn read_bytes<'a>(buf: &'a [u8], at: &mut usize) -> Option<Option<&'a [u8]>> {
    let len = read_varint(buf, at)?;
    if len < 0 {
        return Some(None);
    }
    let end = at.checked_add(len as usize)?;
    let bytes = buf.get(*at..end)?;
    *at = end;
    Some(Some(bytes))
}

/// Key -> offset of its latest record, bounded in memory.
#[derive(Debug)]
pub struct OffsetMap {
    latest: HashMap<Vec<u8>, i64>,
    bytes: usize,
    bytes_max: usize,
}

impl OffsetMap {
    pub fn new(bytes_max: usize) -> Self {
        OffsetMap {
            latest: HashMap::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// Records `offset` as the latest for `key`; false (and nothing changed) when full.
    pub fn insert(&mut self, key: &[u8], offset: i64) -> bool {
        if let Some(latest) = self.latest.get_mut(key) {
            *latest = (*latest).max(offset);
            return true;
        }
        let cost = key.len() + MAP_ENTRY_OVERHEAD_BYTES;
        if self.bytes + cost > self.bytes_max {
            return false;
        }
        self.bytes += cost;
        self.latest.insert(key.to_vec(), offset);
        true
    }

    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

/// Whether `record` survives, given the map of the compacted range; `tombstones_due`: its
/// batch's delete horizon has passed.
pub fn keep(record: &KeyedRecord<'_>, map: &OffsetMap, tombstones_due: bool) -> bool {
    let Some(key) = record.key else {
        return true;
    };
    if map.latest(key).is_some_and(|latest| latest > record.offset) {
        return false;
    }
    !(record.tombstone && tombstones_due)
}

/// `batch` with only the records where `keep` is true, compressed again with the batch's
/// codec: header fields (base offset, lastOffsetDelta, timestamps, producer, attributes)
/// unchanged except length, record count and CRC (and no codec when nothing is kept).
/// `stamp_horizon`: also give the batch this delete horizon (attribute bit and base
/// timestamp; the kept records' timestamp deltas are re-encoded against it). `None` when a
/// record does not parse or recompressing fails.
pub fn rebuild_batch(
    batch: &[u8],
    header: &BatchHeader,
    records: &[KeyedRecord<'_>],
    keep: &[bool],
    stamp_horizon: Option<i64>,
) -> Option<Vec<u8>> {
    assert_eq!(records.len(), keep.len());
    let kept: Vec<&KeyedRecord<'_>> = records
        .iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect();
    // A re-encoded timestamp delta takes at most 10 bytes, its record length prefix 5.
    let slack = if stamp_horizon.is_some() { 15 } else { 0 };
    let body_bytes: usize = kept.iter().map(|r| r.raw.len() + slack).sum();
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + body_bytes);
    out.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
    let codec = Codec::from_attributes(header.attributes).ok()?;
    let mut attributes = header.attributes;
    if let Some(horizon) = stamp_horizon {
        attributes |= ATTRIBUTE_DELETE_HORIZON;
        out[BASE_TIMESTAMP_OFFSET..BASE_TIMESTAMP_OFFSET + 8]
            .copy_from_slice(&horizon.to_be_bytes());
    }
    if kept.is_empty() {
        // An empty batch is written uncompressed, as Kafka's cleaner does (clients such as
        // librdkafka do not expect a compressed batch that decompresses to nothing).
        attributes &= !0x07;
    } else if codec == Codec::None {
        append_records(&kept, header.base_timestamp, stamp_horizon, &mut out)?;
    } else {
        let mut body = Vec::with_capacity(body_bytes);
        append_records(&kept, header.base_timestamp, stamp_horizon, &mut body)?;
        codec::compress(codec, &body, &mut out).ok()?;
    }
    out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    let batch_length = (out.len() - 12) as i32;
    out[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4]
        .copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::test_support::{
        encode_batch, encode_compressed_batch, refresh_crc, TestRecord, NO_PRODUCER,
    };
    use crate::batch::BatchHeader;

    fn rec(key: Option<&str>, value: Option<&str>) -> TestRecord {
        TestRecord {
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            ..TestRecord::default()
        }
    }

    /// The header of a batch whose length and CRC are right.
    fn checked(b: &[u8]) -> BatchHeader {
        let h = BatchHeader::parse(b).unwrap();
        assert_eq!(h.total_bytes(), b.len());
        assert_eq!(crc32c::crc32c(&b[CRC_START..]), h.crc);
        h
    }

    /// The fuzzer's batch from `FUZZ_OOM_INPUT` (its mode byte dropped), with the length,
    /// lastOffsetDelta and CRC set as that mode byte asks.
    fn fuzz_oom_batch() -> Vec<u8> {
        let input: Vec<u8> = (0..FUZZ_OOM_INPUT.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&FUZZ_OOM_INPUT[i..i + 2], 16).unwrap())
            .collect();
        let mut b = input[1..].to_vec();
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let count = i32::from_be_bytes(b[57..61].try_into().unwrap());
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        refresh_crc(&mut b);
        b
    }

    const FUZZ_OOM_INPUT: &str = "1700000000000000000000007d0000000002113e27950003000000030000e1eba8a8a8a8a8a8a8a8a8a830a8a8a8a8a8a828f8990013c800004210283a7b5c000000";

    #[test]
    fn a_hostile_record_count_reserves_nothing() {
        // Found by fuzz/fuzz_targets/batch.rs: a compressed batch's record count is only the
        // client's word, and keyed_records reserved that many records up front (19 GB here,
        // ~150 GB for 2^31-1): a produce to a compacted topic aborted the broker.
        let b = fuzz_oom_batch();
        let h = crate::batch::validate_produce_records(&b).expect("the fuzzer's batch is valid");
        assert!(h.record_count > 1 << 28 && h.compression() != 0);
        let body = records_body(&b, &h).expect("it decompresses");
        assert!(keyed_records(&body, &h).is_some_and(|r| r.is_empty()));
        // No record at all, so none without a key (the count is not checked here).
        assert!(!has_record_without_key(&b, &h));
        // The same lie in a well-formed gzip batch of one record.
        let one = [rec(Some("a"), Some("1"))];
        let mut b = encode_compressed_batch(0, 1000, NO_PRODUCER, &one, crate::codec::Codec::Gzip);
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        refresh_crc(&mut b);
        let h = crate::batch::validate_produce_records(&b).expect("valid but for the count");
        let body = records_body(&b, &h).expect("it decompresses");
        assert_eq!(keyed_records(&body, &h).map(|r| r.len()), Some(1));
        assert!(!has_record_without_key(&b, &h));
    }

    #[test]
    fn finds_records_without_a_key_in_plain_and_compressed_batches() {
        let keyed = [rec(Some("a"), Some("1")), rec(Some("b"), None)];
        let mixed = [rec(Some("a"), Some("1")), rec(None, Some("2"))];
        for codec in [
            None,
            Some(crate::codec::Codec::Gzip),
            Some(crate::codec::Codec::Zstd),
        ] {
            let encode = |records: &[TestRecord]| match codec {
                None => encode_batch(0, 1000, NO_PRODUCER, records),
                Some(c) => encode_compressed_batch(0, 1000, NO_PRODUCER, records, c),
            };
            let b = encode(&keyed);
            assert!(!has_record_without_key(&b, &checked(&b)), "{codec:?}");
            let b = encode(&mixed);
            assert!(has_record_without_key(&b, &checked(&b)), "{codec:?}");
        }
        // Compressed bytes that do not decompress cannot be checked: refused too.
        let mut b =
            encode_compressed_batch(0, 1000, NO_PRODUCER, &keyed, crate::codec::Codec::Gzip);
        let at = BATCH_HEADER_BYTES + 2;
        b[at..].fill(0xff);
        assert!(has_record_without_key(&b, &BatchHeader::parse(&b).unwrap()));
    }

    #[test]
    fn compacts_a_batch_keeping_offsets() {
        let mut b = encode_batch(
            0,
            1000,
            NO_PRODUCER,
            &[
                rec(Some("a"), Some("1")),
                rec(Some("b"), Some("1")),
                rec(Some("a"), Some("2")),
                rec(None, Some("x")),
                rec(Some("b"), None),
            ],
        );
        crate::batch::patch_base_offset(&mut b, 100);
        let h = BatchHeader::parse(&b).unwrap();
        let body = records_body(&b, &h).unwrap();
        let records = keyed_records(&body, &h).unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(records[4].offset, 104);
        assert!(records[4].tombstone && !records[0].tombstone);
        assert_eq!(records[3].key, None);
        let mut map = OffsetMap::new(1 << 20);
        for r in &records {
            assert!(map.insert(r.key.unwrap_or(b""), r.offset) || r.key.is_none());
        }
        // Tombstones stay until their batch's horizon has passed.
        let keep_young: Vec<bool> = records.iter().map(|r| keep(r, &map, false)).collect();
        assert_eq!(keep_young, vec![false, false, true, true, true]);
        let keep_old: Vec<bool> = records.iter().map(|r| keep(r, &map, true)).collect();
        assert_eq!(keep_old, vec![false, false, true, true, false]);
        let rebuilt = rebuild_batch(&b, &h, &records, &keep_old, None).unwrap();
        let rh = checked(&rebuilt);
        assert_eq!(
            (rh.base_offset, rh.last_offset_delta, rh.record_count),
            (100, 4, 2)
        );
        let body = records_body(&rebuilt, &rh).unwrap();
        let again = keyed_records(&body, &rh).unwrap();
        let offsets: Vec<i64> = again.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![102, 103]);
        // Nothing kept: an empty batch with the same offsets.
        let empty = rebuild_batch(&b, &h, &records, &[false; 5], None).unwrap();
        let eh = checked(&empty);
        assert_eq!((eh.record_count, eh.last_offset_delta), (0, 4));
    }

    #[test]
    fn a_stamped_horizon_keeps_record_timestamps_and_the_codec() {
        let records = [
            TestRecord {
                timestamp_delta: 0,
                ..rec(Some("a"), Some("1"))
            },
            TestRecord {
                timestamp_delta: 5,
                ..rec(Some("b"), None)
            },
            TestRecord {
                timestamp_delta: 900_000,
                ..rec(Some("c"), None)
            },
        ];
        for codec in [Codec::None, Codec::Gzip, Codec::Zstd] {
            let b = encode_compressed_batch(10, 1_000, NO_PRODUCER, &records, codec);
            let h = checked(&b);
            assert_eq!(delete_horizon(&h), None);
            let body = records_body(&b, &h).unwrap();
            let keyed = keyed_records(&body, &h).unwrap();
            let horizon = 1_700_000_000_000;
            let stamped = rebuild_batch(&b, &h, &keyed, &[true; 3], Some(horizon)).unwrap();
            let sh = checked(&stamped);
            assert_eq!(delete_horizon(&sh), Some(horizon), "{codec:?}");
            assert_eq!(Codec::from_attributes(sh.attributes).unwrap(), codec);
            assert_eq!(
                (
                    sh.base_offset,
                    sh.last_offset_delta,
                    sh.record_count,
                    sh.max_timestamp
                ),
                (h.base_offset, h.last_offset_delta, 3, h.max_timestamp)
            );
            let body = records_body(&stamped, &sh).unwrap();
            let again = keyed_records(&body, &sh).unwrap();
            let got: Vec<_> = again
                .iter()
                .map(|r| (r.offset, r.timestamp, r.key, r.value))
                .collect();
            let want: Vec<_> = keyed
                .iter()
                .map(|r| (r.offset, r.timestamp, r.key, r.value))
                .collect();
            assert_eq!(got, want, "{codec:?}: same records, same timestamps");
            assert_eq!(want[2].1, 901_000);
            // Kept, not due yet; due once the horizon passed.
            let map = OffsetMap::new(1 << 20);
            assert!(again.iter().all(|r| keep(r, &map, false)));
            assert_eq!(
                again
                    .iter()
                    .map(|r| keep(r, &map, true))
                    .collect::<Vec<_>>(),
                vec![true, false, false]
            );
        }
    }

    #[test]
    fn offset_map_is_bounded_and_keeps_the_latest() {
        let mut map = OffsetMap::new(2 * (MAP_ENTRY_OVERHEAD_BYTES + 1));
        assert!(map.insert(b"a", 5));
        assert!(map.insert(b"a", 3));
        assert_eq!(map.latest(b"a"), Some(5));
        assert!(map.insert(b"b", 1));
        assert!(!map.insert(b"c", 9), "full");
        assert!(map.insert(b"b", 7), "known keys still update");
        assert_eq!(
            (map.len(), map.latest(b"b"), map.latest(b"c")),
            (2, Some(7), None)
        );
    }

    #[test]
    fn compressed_batches_compact_and_keep_their_codec() {
        let records = [
            rec(Some("a"), Some("1")),
            rec(Some("b"), Some("1")),
            rec(Some("a"), Some("2")),
        ];
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let b = encode_compressed_batch(50, 1000, NO_PRODUCER, &records, codec);
            let h = checked(&b);
            let body = records_body(&b, &h).unwrap();
            let keyed = keyed_records(&body, &h).unwrap();
            let mut map = OffsetMap::new(1 << 20);
            for r in &keyed {
                map.insert(r.key.unwrap(), r.offset);
            }
            let kept: Vec<bool> = keyed.iter().map(|r| keep(r, &map, false)).collect();
            assert_eq!(kept, vec![false, true, true]);
            let rebuilt = rebuild_batch(&b, &h, &keyed, &kept, None).unwrap();
            let rh = checked(&rebuilt);
            assert_eq!(Codec::from_attributes(rh.attributes).unwrap(), codec);
            assert_eq!(
                (rh.base_offset, rh.last_offset_delta, rh.record_count),
                (50, 2, 2)
            );
            let body = records_body(&rebuilt, &rh).unwrap();
            let again = keyed_records(&body, &rh).unwrap();
            let got: Vec<(i64, Option<&[u8]>)> =
                again.iter().map(|r| (r.offset, r.value)).collect();
            assert_eq!(
                got,
                vec![(51, Some(&b"1"[..])), (52, Some(&b"2"[..]))],
                "{codec:?}"
            );
            // Nothing kept: an empty, uncompressed batch with the same offsets.
            let empty = rebuild_batch(&b, &h, &keyed, &[false; 3], None).unwrap();
            let eh = checked(&empty);
            assert_eq!(empty.len(), BATCH_HEADER_BYTES);
            assert_eq!(
                (eh.compression(), eh.record_count, eh.last_offset_delta),
                (0, 0, 2)
            );
        }
    }

    #[test]
    fn opaque_batches_are_not_parsed() {
        // Claims gzip but holds plain records: does not decompress.
        let mut b = encode_batch(0, 0, NO_PRODUCER, &[rec(Some("a"), Some("1"))]);
        b[22] |= 1;
        let h = BatchHeader::parse(&b).unwrap();
        assert!(records_body(&b, &h).is_none());
        // Control and transactional batches.
        for bit in [0x20, 0x10] {
            let mut b = encode_batch(0, 0, NO_PRODUCER, &[rec(Some("a"), Some("1"))]);
            b[22] |= bit;
            let h = BatchHeader::parse(&b).unwrap();
            assert!(!is_compactable(&h));
            assert!(records_body(&b, &h).is_none());
        }
    }
}
