//! Idempotent producer state per partition.
//!
//! A pure state machine (no IO) following Apache Kafka 4.x `ProducerStateManager` /
//! `ProducerAppendInfo`: for every producer id it keeps the epoch and the metadata of the
//! last [`PRODUCER_BATCHES_MAX`] batches, so a retried batch is recognised as a duplicate
//! and answered with its original offsets, and a gap in sequence numbers is refused.
//!
//! The log calls [`ProducerStateTable::check`] before appending a batch and
//! [`ProducerStateTable::record`] once the batch has its offsets. The table is persisted with
//! [`ProducerStateTable::encode_snapshot`] at segment roll / close.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::batch::BatchHeader;

/// Batches remembered per producer for duplicate detection (Kafka's `NUM_BATCHES_TO_RETAIN`).
pub const PRODUCER_BATCHES_MAX: usize = 5;
/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Upper bound on a snapshot's size; a larger input is refused before it is parsed.
pub const SNAPSHOT_BYTES_MAX: usize = 256 * 1024 * 1024;

const SNAPSHOT_MAGIC: [u8; 4] = *b"SPPS";
const SNAPSHOT_VERSION: u16 = 1;
/// magic (4) + version (2) + reserved (2) + payload length (4) + crc32c of payload (4).
const SNAPSHOT_HEADER_BYTES: usize = 16;

/// Offsets and sequence range of one appended batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// State of one producer id on this partition.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ProducerEntry {
    pub producer_id: i64,
    /// [`NO_PRODUCER_EPOCH`] when the epoch is unknown.
    pub epoch: i16,
    /// Oldest first, at most [`PRODUCER_BATCHES_MAX`].
    pub batches: VecDeque<BatchMetadata>,
    /// Max timestamp of the last batch, for producer id expiration.
    pub last_timestamp_ms: i64,
}

impl ProducerEntry {
    fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    fn find_duplicate(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<BatchMetadata> {
        if epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }
}

/// Outcome of [`ProducerStateTable::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The batch is new and in order: append it.
    Append,
    /// The batch was already appended: do not append, answer with these offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// Why a batch from an idempotent producer is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProducerError {
    /// The batch's epoch is older than the producer's current epoch (a zombie producer).
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    /// The batch's first sequence does not follow the producer's last sequence.
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        /// The sequence that was expected (0 for a new epoch).
        expected_seq: i32,
    },
    /// A batch with a producer id but a negative base sequence.
    InvalidSequence {
        producer_id: i64,
        base_sequence: i32,
    },
}

impl ProducerError {
    /// The Kafka protocol error code for this error.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            ProducerError::InvalidProducerEpoch { .. } => 47, // INVALID_PRODUCER_EPOCH
            ProducerError::OutOfOrderSequence { .. } => 45,   // OUT_OF_ORDER_SEQUENCE_NUMBER
            ProducerError::InvalidSequence { .. } => 87,      // INVALID_RECORD
        }
    }
}

impl fmt::Display for ProducerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProducerError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current_epoch,
            } => write!(
                f,
                "producer {producer_id}: epoch {epoch} is older than current epoch {current_epoch}"
            ),
            ProducerError::OutOfOrderSequence {
                producer_id,
                epoch,
                first_seq,
                expected_seq,
            } => write!(
                f,
                "producer {producer_id} epoch {epoch}: out of order sequence {first_seq}, \
                 expected {expected_seq}"
            ),
            ProducerError::InvalidSequence {
                producer_id,
                base_sequence,
            } => write!(
                f,
                "producer {producer_id}: invalid base sequence {base_sequence}"
            ),
        }
    }
}

impl std::error::Error for ProducerError {}

/// Why a producer state snapshot could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    TooShort {
        len: usize,
    },
    TooLarge {
        len: usize,
    },
    BadMagic,
    UnsupportedVersion(u16),
    LengthMismatch {
        header: usize,
        actual: usize,
    },
    Checksum {
        stored: u32,
        computed: u32,
    },
    Archive(String),
    /// The archive is well formed but breaks an invariant of the table.
    Invalid(String),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::TooShort { len } => write!(f, "producer snapshot too short: {len} bytes"),
            SnapshotError::TooLarge { len } => write!(f, "producer snapshot too large: {len} bytes"),
            SnapshotError::BadMagic => write!(f, "producer snapshot: bad magic"),
            SnapshotError::UnsupportedVersion(v) => {
                write!(f, "producer snapshot: unsupported version {v}")
            }
            SnapshotError::LengthMismatch { header, actual } => write!(
                f,
                "producer snapshot: header says {header} payload bytes, found {actual}"
            ),
            SnapshotError::Checksum { stored, computed } => write!(
                f,
                "producer snapshot: crc32c mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            SnapshotError::Archive(e) => write!(f, "producer snapshot: invalid archive: {e}"),
            SnapshotError::Invalid(e) => write!(f, "producer snapshot: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct SnapshotPayload {
    entries: Vec<ProducerEntry>,
}

/// Sequence number following `seq`, wrapping from `i32::MAX` to 0 as Kafka does.
pub fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// Last sequence of a batch (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn last_sequence(header: &BatchHeader) -> i32 {
    increment_sequence(header.base_sequence, header.last_offset_delta)
}

fn increment_sequence(seq: i32, delta: i32) -> i32 {
    // In i64 so a hostile negative delta cannot overflow.
    let sum = i64::from(seq) + i64::from(delta);
    let wrapped = if sum > i64::from(i32::MAX) {
        sum - i64::from(i32::MAX) - 1
    } else {
        sum
    };
    wrapped as i32
}

/// Idempotent producer state of one partition, keyed by producer id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerStateTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of producers tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Base offsets of each tracked producer's last batch (compaction keeps these batches even
    /// when no record of them survives, so the log alone still rebuilds the producers).
    pub fn last_batch_offsets(&self) -> std::collections::HashSet<i64> {
        self.producers
            .values()
            .filter_map(|p| p.batches.back().map(|b| b.base_offset))
            .collect()
    }

    /// The state of one producer, if tracked.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Decides whether `header` is appended, a duplicate of a retained batch, or refused.
    /// Batches without a producer id (`producer_id < 0`) are always appended.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, ProducerError> {
        let producer_id = header.producer_id;
        if producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        if header.base_sequence < 0 {
            return Err(ProducerError::InvalidSequence {
                producer_id,
                base_sequence: header.base_sequence,
            });
        }
        let Some(entry) = self.producers.get(&producer_id) else {
            // Unknown producer (new, or its state expired): any sequence is accepted.
            return Ok(SequenceCheck::Append);
        };
        let epoch = header.producer_epoch;
        let first_seq = header.base_sequence;
        if let Some(dup) = entry.find_duplicate(epoch, first_seq, last_sequence(header)) {
            return Ok(SequenceCheck::Duplicate {
                base_offset: dup.base_offset,
                last_offset: dup.last_offset,
            });
        }
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current_epoch: entry.epoch,
            });
        }
        if epoch != entry.epoch {
            // A new epoch restarts the sequence at 0, unless the entry never had an epoch.
            if first_seq != 0 && entry.epoch != NO_PRODUCER_EPOCH {
                return Err(ProducerError::OutOfOrderSequence {
                    producer_id,
                    epoch,
                    first_seq,
                    expected_seq: 0,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        if entry.epoch == NO_PRODUCER_EPOCH {
            // Kafka accepts any sequence while the producer has no known epoch.
            return Ok(SequenceCheck::Append);
        }
        // Without a retained batch Kafka's last sequence is NO_SEQUENCE (-1): expect 0.
        let expected_seq = entry.last_seq().map_or(0, next_sequence);
        if first_seq != expected_seq {
            return Err(ProducerError::OutOfOrderSequence {
                producer_id,
                epoch,
                first_seq,
                expected_seq,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records a batch appended at `base_offset` (after [`Self::check`] returned `Append`).
    pub fn record(&mut self, header: &BatchHeader, base_offset: i64) {
        let producer_id = header.producer_id;
        if producer_id < 0 {
            return;
        }
        debug_assert!(header.last_offset_delta >= 0);
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                producer_id,
                epoch: NO_PRODUCER_EPOCH,
                batches: VecDeque::with_capacity(PRODUCER_BATCHES_MAX),
                last_timestamp_ms: i64::MIN,
            });
        if entry.epoch != header.producer_epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == PRODUCER_BATCHES_MAX {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: last_sequence(header),
            base_offset,
            last_offset: base_offset + i64::from(header.last_offset_delta),
        });
        entry.last_timestamp_ms = header.max_timestamp;
        assert!(entry.batches.len() <= PRODUCER_BATCHES_MAX);
    }

    /// Removes producers whose last batch is older than `expiration_ms`
    /// (Kafka's `producer.id.expiration.ms`); returns how many were removed.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp_ms) < expiration_ms);
        before - self.producers.len()
    }

    /// Serialises the table: a 16-byte header (magic, version, payload length, crc32c of the
    /// payload) followed by the rkyv archive.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let payload = SnapshotPayload {
            entries: self.producers.values().cloned().collect(),
        };
        let archived = match rkyv::to_bytes::<rancor::Error>(&payload) {
            Ok(bytes) => bytes,
            // Serialising plain owned data into a growable buffer cannot fail.
            Err(e) => panic!("producer state snapshot serialisation failed: {e}"),
        };
        let len = u32::try_from(archived.len()).expect("producer snapshot below 4 GiB");
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + archived.len());
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&archived).to_le_bytes());
        out.extend_from_slice(&archived);
        out
    }

    /// Parses a snapshot written by [`Self::encode_snapshot`], checking the header, the
    /// checksum, the archive (bytecheck) and the table's invariants.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() < SNAPSHOT_HEADER_BYTES {
            return Err(SnapshotError::TooShort { len: bytes.len() });
        }
        if bytes.len() > SNAPSHOT_BYTES_MAX {
            return Err(SnapshotError::TooLarge { len: bytes.len() });
        }
        let (header, payload) = bytes.split_at(SNAPSHOT_HEADER_BYTES);
        if header[0..4] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = u16::from_le_bytes([header[4], header[5]]);
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
        if len != payload.len() {
            return Err(SnapshotError::LengthMismatch {
                header: len,
                actual: payload.len(),
            });
        }
        let stored = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
        let computed = crc32c::crc32c(payload);
        if stored != computed {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        // rkyv needs the archive aligned; the caller's slice may not be.
        let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        let decoded = rkyv::from_bytes::<SnapshotPayload, rancor::Error>(&aligned)
            .map_err(|e| SnapshotError::Archive(e.to_string()))?;
        let mut producers = BTreeMap::new();
        for entry in decoded.entries {
            validate_entry(&entry)?;
            if producers.insert(entry.producer_id, entry).is_some() {
                return Err(SnapshotError::Invalid("duplicate producer id".into()));
            }
        }
        Ok(Self { producers })
    }
}

fn validate_entry(entry: &ProducerEntry) -> Result<(), SnapshotError> {
    let id = entry.producer_id;
    if id < 0 {
        return Err(SnapshotError::Invalid(format!("negative producer id {id}")));
    }
    if entry.batches.len() > PRODUCER_BATCHES_MAX {
        return Err(SnapshotError::Invalid(format!(
            "producer {id}: {} batches retained, at most {PRODUCER_BATCHES_MAX}",
            entry.batches.len()
        )));
    }
    for b in &entry.batches {
        if b.first_seq < 0 || b.last_seq < 0 || b.base_offset < 0 || b.last_offset < b.base_offset {
            return Err(SnapshotError::Invalid(format!(
                "producer {id}: invalid batch {b:?}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: i64 = 1000;

    /// A batch of `count` records from `PID`.
    fn batch(epoch: i16, base_sequence: i32, count: i32) -> BatchHeader {
        batch_of(PID, epoch, base_sequence, count)
    }

    fn batch_of(producer_id: i64, epoch: i16, base_sequence: i32, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count: count,
        }
    }

    /// Runs check + record like the log does, allocating offsets from `next_offset`.
    fn append(
        table: &mut ProducerStateTable,
        next_offset: &mut i64,
        h: &BatchHeader,
    ) -> Result<SequenceCheck, ProducerError> {
        let outcome = table.check(h)?;
        if outcome == SequenceCheck::Append {
            table.record(h, *next_offset);
            *next_offset += i64::from(h.last_offset_delta) + 1;
        }
        Ok(outcome)
    }

    fn ooo(epoch: i16, first_seq: i32, expected_seq: i32) -> ProducerError {
        ProducerError::OutOfOrderSequence {
            producer_id: PID,
            epoch,
            first_seq,
            expected_seq,
        }
    }

    #[test]
    fn sequence_arithmetic_wraps() {
        for (seq, delta, expected) in [
            (0, 0, 0),
            (0, 4, 4),
            (i32::MAX, 0, i32::MAX),
            (i32::MAX, 1, 0),
            (i32::MAX - 1, 3, 1),
            (i32::MAX - 2, 2, i32::MAX),
            (i32::MAX, i32::MAX, i32::MAX - 1),
            (5, -1, 4),
        ] {
            assert_eq!(increment_sequence(seq, delta), expected, "{seq} + {delta}");
        }
        assert_eq!(next_sequence(i32::MAX), 0);
        assert_eq!(next_sequence(41), 42);
    }

    /// Each case: batches (epoch, base_seq, count) appended in order to a fresh table, then
    /// the expected outcome of the last one.
    #[test]
    fn check_cases() {
        type Case = (
            &'static str,
            &'static [(i16, i32, i32)],
            Result<SequenceCheck, ProducerError>,
        );
        let dup = |base_offset, last_offset| {
            Ok(SequenceCheck::Duplicate {
                base_offset,
                last_offset,
            })
        };
        let cases: Vec<Case> = vec![
            ("first batch at 0", &[(0, 0, 3)], Ok(SequenceCheck::Append)),
            (
                "unknown producer, any seq",
                &[(0, 17, 3)],
                Ok(SequenceCheck::Append),
            ),
            (
                "in order",
                &[(0, 0, 3), (0, 3, 2)],
                Ok(SequenceCheck::Append),
            ),
            ("gap", &[(0, 0, 3), (0, 4, 1)], Err(ooo(0, 4, 3))),
            (
                "behind",
                &[(0, 0, 3), (0, 3, 2), (0, 1, 1)],
                Err(ooo(0, 1, 5)),
            ),
            ("retry of last", &[(0, 0, 3), (0, 0, 3)], dup(0, 2)),
            (
                "retry of older",
                &[(0, 0, 3), (0, 3, 2), (0, 0, 3)],
                dup(0, 2),
            ),
            (
                "same first seq, other last seq is not a duplicate",
                &[(0, 0, 3), (0, 0, 2)],
                Err(ooo(0, 0, 3)),
            ),
            (
                "older epoch",
                &[(1, 0, 1), (0, 1, 1)],
                Err(ProducerError::InvalidProducerEpoch {
                    producer_id: PID,
                    epoch: 0,
                    current_epoch: 1,
                }),
            ),
            (
                "older epoch retry of an old batch is fenced",
                &[(0, 0, 1), (1, 0, 1), (0, 0, 1)],
                Err(ProducerError::InvalidProducerEpoch {
                    producer_id: PID,
                    epoch: 0,
                    current_epoch: 1,
                }),
            ),
            (
                "new epoch at 0",
                &[(0, 0, 5), (1, 0, 1)],
                Ok(SequenceCheck::Append),
            ),
            (
                "new epoch not at 0",
                &[(0, 0, 5), (1, 5, 1)],
                Err(ooo(1, 5, 0)),
            ),
            (
                "new epoch forgets old batches",
                &[(0, 0, 5), (1, 0, 2), (1, 2, 1), (1, 0, 5)],
                Err(ooo(1, 0, 3)),
            ),
            (
                "wrap past i32::MAX",
                &[(0, i32::MAX - 2, 3), (0, 0, 1)],
                Ok(SequenceCheck::Append),
            ),
            (
                "batch spanning the wrap",
                &[(0, i32::MAX - 1, 4), (0, 2, 1)],
                Ok(SequenceCheck::Append),
            ),
            (
                "after wrap, 1 is out of order",
                &[(0, i32::MAX - 2, 3), (0, 1, 1)],
                Err(ooo(0, 1, 0)),
            ),
            (
                "duplicate of a batch spanning the wrap",
                &[(0, i32::MAX - 1, 4), (0, 2, 1), (0, i32::MAX - 1, 4)],
                dup(0, 3),
            ),
            (
                "invalid base sequence",
                &[(0, -1, 1)],
                Err(ProducerError::InvalidSequence {
                    producer_id: PID,
                    base_sequence: -1,
                }),
            ),
        ];
        for (name, batches, expected) in cases {
            let mut table = ProducerStateTable::new();
            let mut next_offset = 0;
            let (last, prefix) = batches.split_last().expect("case has batches");
            for &(epoch, seq, count) in prefix {
                let h = batch(epoch, seq, count);
                assert_eq!(
                    append(&mut table, &mut next_offset, &h),
                    Ok(SequenceCheck::Append),
                    "{name}: setup batch {:?}",
                    (epoch, seq, count)
                );
            }
            let got = table.check(&batch(last.0, last.1, last.2));
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn five_batch_window() {
        let mut table = ProducerStateTable::new();
        let mut next_offset = 100;
        // Seven batches of 2 records: seqs 0-1, 2-3, ..., 12-13 at offsets 100.., 102.., ...
        for i in 0..7 {
            let h = batch(3, i * 2, 2);
            assert_eq!(
                append(&mut table, &mut next_offset, &h),
                Ok(SequenceCheck::Append)
            );
        }
        let entry = table.get(PID).expect("tracked");
        assert_eq!(entry.batches.len(), PRODUCER_BATCHES_MAX);
        assert_eq!(entry.batches.front().map(|b| b.first_seq), Some(4));
        // The two oldest batches fell out of the window: their retry is out of order.
        for i in 0..2 {
            assert_eq!(table.check(&batch(3, i * 2, 2)), Err(ooo(3, i * 2, 14)));
        }
        // The last five are duplicates with their original offsets.
        for i in 2..7 {
            let base_offset = 100 + i64::from(i) * 2;
            assert_eq!(
                table.check(&batch(3, i * 2, 2)),
                Ok(SequenceCheck::Duplicate {
                    base_offset,
                    last_offset: base_offset + 1
                })
            );
        }
    }

    #[test]
    fn producers_are_independent_and_non_idempotent_batches_pass() {
        let mut table = ProducerStateTable::new();
        let mut next = 0;
        let a = batch_of(1, 0, 0, 1);
        let b = batch_of(2, 5, 0, 1);
        append(&mut table, &mut next, &a).expect("a");
        append(&mut table, &mut next, &b).expect("b");
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.check(&batch_of(1, 0, 1, 1)),
            Ok(SequenceCheck::Append)
        );
        assert_eq!(
            table.check(&batch_of(2, 5, 0, 1)),
            Ok(SequenceCheck::Duplicate {
                base_offset: 1,
                last_offset: 1
            })
        );
        let plain = batch_of(-1, -1, -1, 10);
        assert_eq!(table.check(&plain), Ok(SequenceCheck::Append));
        table.record(&plain, 50);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn error_codes_and_display() {
        let epoch = ProducerError::InvalidProducerEpoch {
            producer_id: 1,
            epoch: 0,
            current_epoch: 2,
        };
        assert_eq!(epoch.kafka_error_code(), 47);
        assert_eq!(ooo(0, 4, 3).kafka_error_code(), 45);
        assert!(ooo(0, 4, 3).to_string().contains("expected 3"));
    }

    #[test]
    fn expire_removes_idle_producers() {
        let mut table = ProducerStateTable::new();
        let mut old = batch_of(1, 0, 0, 1);
        old.max_timestamp = 1_000;
        let mut fresh = batch_of(2, 0, 0, 1);
        fresh.max_timestamp = 9_000;
        table.record(&old, 0);
        table.record(&fresh, 1);
        assert_eq!(table.expire(10_000, 5_000), 1);
        assert!(table.get(1).is_none() && table.get(2).is_some());
    }

    fn sample_table() -> ProducerStateTable {
        let mut table = ProducerStateTable::new();
        let mut next = 0;
        for pid in 0..4 {
            for seq in 0..(pid as i32 + 6) {
                let h = batch_of(pid, pid as i16, seq, 1);
                append(&mut table, &mut next, &h).expect("append");
            }
        }
        table
    }

    #[test]
    fn snapshot_round_trip() {
        for table in [ProducerStateTable::new(), sample_table()] {
            let bytes = table.encode_snapshot();
            assert_eq!(
                ProducerStateTable::decode_snapshot(&bytes),
                Ok(table.clone())
            );
            // An unaligned copy decodes too.
            let mut shifted = vec![0u8];
            shifted.extend_from_slice(&bytes);
            assert_eq!(
                ProducerStateTable::decode_snapshot(&shifted[1..]),
                Ok(table)
            );
        }
    }

    #[test]
    fn snapshot_rejects_corruption() {
        let bytes = sample_table().encode_snapshot();
        let decode = ProducerStateTable::decode_snapshot;
        assert!(matches!(
            decode(&bytes[..10]),
            Err(SnapshotError::TooShort { .. })
        ));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(SnapshotError::LengthMismatch { .. })
        ));
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert_eq!(decode(&bad), Err(SnapshotError::BadMagic));
        let mut bad = bytes.clone();
        bad[4] = 9;
        assert_eq!(decode(&bad), Err(SnapshotError::UnsupportedVersion(9)));
        // Every single-byte flip in the payload is caught by the checksum.
        for i in SNAPSHOT_HEADER_BYTES..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(decode(&bad), Err(SnapshotError::Checksum { .. })),
                "flip at {i}"
            );
        }
        // Garbage with a valid checksum is caught by bytecheck.
        let garbage = vec![0xffu8; 64];
        let mut forged = bytes[..SNAPSHOT_HEADER_BYTES].to_vec();
        forged[8..12].copy_from_slice(&64u32.to_le_bytes());
        forged[12..16].copy_from_slice(&crc32c::crc32c(&garbage).to_le_bytes());
        forged.extend_from_slice(&garbage);
        assert!(matches!(decode(&forged), Err(SnapshotError::Archive(_))));
    }

    #[test]
    fn restored_table_keeps_checking() {
        let table = sample_table();
        let restored =
            ProducerStateTable::decode_snapshot(&table.encode_snapshot()).expect("decode");
        // Producer 3, epoch 3, wrote seqs 0..=8 one per batch; 8 is the last.
        assert_eq!(
            restored.check(&batch_of(3, 3, 8, 1)),
            table.check(&batch_of(3, 3, 8, 1))
        );
        assert!(matches!(
            restored.check(&batch_of(3, 3, 8, 1)),
            Ok(SequenceCheck::Duplicate { .. })
        ));
        assert_eq!(
            restored.check(&batch_of(3, 3, 9, 1)),
            Ok(SequenceCheck::Append)
        );
    }
}
