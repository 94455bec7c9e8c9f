//! Sparse per-segment index (offset -> file position, plus the max timestamp seen before that
//! position) and the on-disk summary written for a closed segment at roll.
//!
//! Summary file `{base_offset:020}.index`, little-endian:
//! `magic "SPIX" u32 | version u32 | base_offset i64 | next_offset i64 | size_bytes u64 |
//!  max_timestamp i64 | count u32 | count x (offset i64, position u64, max_ts_before i64) | crc32c u32`
//! Runtime-free: no IO here.

/// "SPIX" little-endian.
pub const INDEX_MAGIC: u32 = u32::from_le_bytes(*b"SPIX");
const INDEX_VERSION: u32 = 1;
const INDEX_FIXED_BYTES: usize = 4 + 4 + 8 + 8 + 8 + 8 + 4;
const INDEX_ENTRY_BYTES: usize = 24;
/// Bound on entries decoded from a file (a 1 GiB segment at 4 KiB interval has 262144).
pub const INDEX_ENTRIES_MAX: usize = 16 * 1024 * 1024;

/// One sparse index point: the entry starting at `position` holds batch `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: i64,
    pub position: u64,
    /// Max timestamp of all entries before `position` in the segment (i64::MIN if none).
    pub max_timestamp_before: i64,
}

/// In-memory sparse index of one segment, plus the segment's running totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentIndex {
    pub base_offset: i64,
    /// Offset after the last entry (== base_offset when empty).
    pub next_offset: i64,
    /// Logical size: end of the last entry.
    pub size_bytes: u64,
    /// Max timestamp over all entries (i64::MIN when empty).
    pub max_timestamp: i64,
    pub entries: Vec<IndexEntry>,
    bytes_since_entry: usize,
}

impl SegmentIndex {
    pub fn new(base_offset: i64) -> Self {
        SegmentIndex {
            base_offset,
            next_offset: base_offset,
            size_bytes: 0,
            max_timestamp: i64::MIN,
            entries: Vec::new(),
            bytes_since_entry: 0,
        }
    }

    /// Accounts for an entry appended at the current end; adds an index point every
    /// `interval_bytes` (and always for the first entry).
    pub fn on_append(
        &mut self,
        base_offset: i64,
        last_offset: i64,
        entry_bytes: usize,
        max_timestamp: i64,
        interval_bytes: usize,
    ) {
        // A follower keeps its leader's offsets, which a compacted leader may leave gaps in.
        assert!(
            base_offset >= self.next_offset,
            "segment offsets must increase"
        );
        assert!(last_offset >= base_offset);
        if self.entries.is_empty() || self.bytes_since_entry >= interval_bytes {
            self.entries.push(IndexEntry {
                offset: base_offset,
                position: self.size_bytes,
                max_timestamp_before: self.max_timestamp,
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += entry_bytes;
        self.size_bytes += entry_bytes as u64;
        self.next_offset = last_offset + 1;
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
    }

    /// Forgets the entries at or after `position` (an entry start; the segment is being
    /// truncated there) and the index point before them, back to the state just before that
    /// point was added. Returns the position to replay entries from (with `on_append`) up to
    /// `position` to rebuild the totals and the points exactly: at most about one index
    /// interval of entries.
    pub fn rewind_before(&mut self, position: u64) -> u64 {
        assert!(position <= self.size_bytes, "rewind past the segment end");
        let kept = self.entries.partition_point(|e| e.position < position);
        let Some(last) = kept.checked_sub(1).map(|i| self.entries[i]) else {
            *self = SegmentIndex::new(self.base_offset);
            return 0;
        };
        self.entries.truncate(kept - 1);
        self.next_offset = last.offset;
        self.size_bytes = last.position;
        self.max_timestamp = last.max_timestamp_before;
        // The next `on_append` adds the point again, as it did the first time.
        self.bytes_since_entry = usize::MAX;
        last.position
    }

    /// Position to start scanning from to find the batch containing `offset`.
    pub fn position_for_offset(&self, offset: i64) -> u64 {
        let i = self.entries.partition_point(|e| e.offset <= offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }

    /// Position to start scanning from to find the first entry with a timestamp >= `ts`.
    pub fn position_for_timestamp(&self, ts: i64) -> u64 {
        let i = self
            .entries
            .partition_point(|e| e.max_timestamp_before < ts);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(INDEX_FIXED_BYTES + self.entries.len() * INDEX_ENTRY_BYTES + 4);
        out.extend_from_slice(&INDEX_MAGIC.to_le_bytes());
        out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        out.extend_from_slice(&self.base_offset.to_le_bytes());
        out.extend_from_slice(&self.next_offset.to_le_bytes());
        out.extend_from_slice(&self.size_bytes.to_le_bytes());
        out.extend_from_slice(&self.max_timestamp.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.position.to_le_bytes());
            out.extend_from_slice(&e.max_timestamp_before.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and sanity-checks a summary; `None` when it is not trustworthy.
    pub fn decode(buf: &[u8]) -> Option<SegmentIndex> {
        if buf.len() < INDEX_FIXED_BYTES + 4 {
            return None;
        }
        let u32_at = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8"));
        if u32_at(0) != INDEX_MAGIC || u32_at(4) != INDEX_VERSION {
            return None;
        }
        let count = u32_at(40) as usize;
        if count > INDEX_ENTRIES_MAX {
            return None;
        }
        let end = INDEX_FIXED_BYTES + count * INDEX_ENTRY_BYTES;
        if buf.len() < end + 4 || crc32c::crc32c(&buf[..end]) != u32_at(end) {
            return None;
        }
        let mut index = SegmentIndex {
            base_offset: u64_at(8) as i64,
            next_offset: u64_at(16) as i64,
            size_bytes: u64_at(24),
            max_timestamp: u64_at(32) as i64,
            entries: Vec::with_capacity(count),
            bytes_since_entry: 0,
        };
        for i in 0..count {
            let at = INDEX_FIXED_BYTES + i * INDEX_ENTRY_BYTES;
            index.entries.push(IndexEntry {
                offset: u64_at(at) as i64,
                position: u64_at(at + 8),
                max_timestamp_before: u64_at(at + 16) as i64,
            });
        }
        index.is_consistent().then_some(index)
    }

    /// Monotonic offsets/positions/timestamps, all inside the segment.
    fn is_consistent(&self) -> bool {
        if self.next_offset < self.base_offset {
            return false;
        }
        let mut prev: Option<&IndexEntry> = None;
        for e in &self.entries {
            if e.offset < self.base_offset
                || e.offset >= self.next_offset
                || e.position >= self.size_bytes
            {
                return false;
            }
            if let Some(p) = prev {
                if e.offset <= p.offset
                    || e.position <= p.position
                    || e.max_timestamp_before < p.max_timestamp_before
                {
                    return false;
                }
            }
            prev = Some(e);
        }
        self.entries
            .first()
            .is_none_or(|e| e.position == 0 && e.offset >= self.base_offset)
            && (self.entries.is_empty() == (self.size_bytes == 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentIndex {
        let mut idx = SegmentIndex::new(100);
        // 10 entries of 1000 bytes, 3 offsets each, timestamps 10, 20, ...
        for i in 0..10i64 {
            idx.on_append(100 + 3 * i, 102 + 3 * i, 1000, 10 * (i + 1), 2500);
        }
        idx
    }

    #[test]
    fn rewinding_and_replaying_rebuilds_the_same_index() {
        // Cut at every entry boundary: rewind, replay up to the cut, compare with an index
        // built from those entries only.
        for cut in 0..=10i64 {
            let mut idx = sample();
            let from = idx.rewind_before(cut as u64 * 1000);
            assert_eq!(from % 1000, 0);
            for i in (from / 1000) as i64..cut {
                idx.on_append(100 + 3 * i, 102 + 3 * i, 1000, 10 * (i + 1), 2500);
            }
            let mut want = SegmentIndex::new(100);
            for i in 0..cut {
                want.on_append(100 + 3 * i, 102 + 3 * i, 1000, 10 * (i + 1), 2500);
            }
            assert_eq!(idx.entries, want.entries, "cut {cut}");
            assert_eq!(
                (idx.next_offset, idx.size_bytes, idx.max_timestamp),
                (want.next_offset, want.size_bytes, want.max_timestamp),
                "cut {cut}"
            );
            // Appending on goes on the same way.
            idx.on_append(want.next_offset, want.next_offset, 1000, 7, 2500);
            want.on_append(want.next_offset, want.next_offset, 1000, 7, 2500);
            assert_eq!(idx.encode(), want.encode(), "cut {cut}");
        }
    }

    #[test]
    fn sparse_points_and_lookups() {
        let idx = sample();
        assert_eq!(idx.next_offset, 130);
        assert_eq!(idx.size_bytes, 10_000);
        assert_eq!(idx.max_timestamp, 100);
        let positions: Vec<u64> = idx.entries.iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![0, 3000, 6000, 9000]);
        assert_eq!(idx.position_for_offset(100), 0);
        assert_eq!(idx.position_for_offset(108), 0);
        assert_eq!(idx.position_for_offset(109), 3000);
        assert_eq!(idx.position_for_offset(129), 9000);
        // Entry at 3000 has max_ts_before 30: ts 31 can only be at/after 3000.
        assert_eq!(idx.position_for_timestamp(5), 0);
        assert_eq!(idx.position_for_timestamp(31), 3000);
        assert_eq!(idx.position_for_timestamp(1000), 9000);
    }

    #[test]
    fn encode_decode_and_reject_corruption() {
        let idx = sample();
        let mut bytes = idx.encode();
        let back = SegmentIndex::decode(&bytes).unwrap();
        assert_eq!(
            (back.base_offset, back.next_offset, back.size_bytes),
            (100, 130, 10_000)
        );
        assert_eq!(back.entries, idx.entries);
        bytes[50] ^= 1;
        assert!(SegmentIndex::decode(&bytes).is_none());
        assert!(SegmentIndex::decode(&bytes[..20]).is_none());
        assert!(SegmentIndex::decode(&SegmentIndex::new(5).encode()).is_some());
    }
}
