//! On-disk framing of metadata records and snapshots (pure, no IO).
//!
//! Log frame: `len: u32 LE | crc32c(payload): u32 LE | payload`, payload = rkyv
//! [`LogEntry`]. Snapshot file: `magic "SPMS" | version: u16 | 0u16 | len: u32 | crc: u32 |
//! payload`, payload = rkyv [`SnapshotPayload`].

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::cluster::{BrokerRegistration, Placement};
use crate::image::{MetadataImage, MetadataRecord, TopicId, TopicMeta};

/// Largest record payload accepted; a larger length field means a torn or corrupt frame.
pub const RECORD_BYTES_MAX: usize = 1024 * 1024;
/// Largest snapshot accepted.
pub const SNAPSHOT_BYTES_MAX: usize = 1024 * 1024 * 1024;
pub const FRAME_HEADER_BYTES: usize = 8;

const SNAPSHOT_MAGIC: [u8; 4] = *b"SPMS";
const SNAPSHOT_VERSION: u16 = 2;
const SNAPSHOT_VERSION_V1: u16 = 1;
const SNAPSHOT_HEADER_BYTES: usize = 16;

/// A record with its log offset.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LogEntry {
    pub offset: u64,
    pub record: MetadataRecord,
}

/// Everything in a [`MetadataImage`] except the node id (snapshot format 2).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SnapshotPayload {
    pub cluster_id: String,
    pub version: u64,
    pub next_producer_id: i64,
    pub topics: Vec<TopicMeta>,
    pub brokers: Vec<BrokerRegistration>,
    pub placements: Vec<(TopicId, Vec<Placement>)>,
}

/// Snapshot format 1 (before brokers and placements); still read.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct SnapshotPayloadV1 {
    cluster_id: String,
    version: u64,
    next_producer_id: i64,
    topics: Vec<TopicMeta>,
}

impl SnapshotPayload {
    pub fn of(image: &MetadataImage) -> Self {
        SnapshotPayload {
            cluster_id: image.cluster_id.clone(),
            version: image.version,
            next_producer_id: image.next_producer_id,
            topics: image.topics.values().cloned().collect(),
            brokers: image.brokers.values().cloned().collect(),
            placements: image
                .placements
                .iter()
                .map(|(id, p)| (*id, p.clone()))
                .collect(),
        }
    }
}

/// Copies `payload` into an aligned buffer: rkyv needs the archive aligned and file
/// contents are read into unaligned buffers.
fn aligned(payload: &[u8]) -> AlignedVec {
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    aligned
}

/// Encodes one log frame.
pub fn encode_entry(entry: &LogEntry) -> Vec<u8> {
    // Serialising owned data into a growable buffer cannot fail.
    let payload = rkyv::to_bytes::<rancor::Error>(entry).expect("rkyv serialisation");
    assert!(
        payload.len() <= RECORD_BYTES_MAX,
        "metadata record too large"
    );
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decodes the frame at the start of `bytes`: `Some((entry, frame_len))`, or `None` when the
/// bytes do not hold a complete, valid frame (a torn or corrupt tail).
pub fn decode_entry(bytes: &[u8]) -> Option<(LogEntry, usize)> {
    let header = bytes.get(..FRAME_HEADER_BYTES)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len > RECORD_BYTES_MAX {
        return None;
    }
    let payload = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let entry = rkyv::from_bytes::<LogEntry, rancor::Error>(&aligned(payload)).ok()?;
    Some((entry, FRAME_HEADER_BYTES + len))
}

/// Encodes a snapshot file.
pub fn encode_snapshot(payload: &SnapshotPayload) -> Vec<u8> {
    let bytes = rkyv::to_bytes::<rancor::Error>(payload).expect("rkyv serialisation");
    assert!(
        bytes.len() <= SNAPSHOT_BYTES_MAX,
        "metadata snapshot too large"
    );
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + bytes.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// Decodes a snapshot file, or says why it is unusable.
pub fn decode_snapshot(bytes: &[u8]) -> Result<SnapshotPayload, String> {
    if bytes.len() < SNAPSHOT_HEADER_BYTES || bytes.len() > SNAPSHOT_BYTES_MAX {
        return Err(format!("bad snapshot size {}", bytes.len()));
    }
    let (header, payload) = bytes.split_at(SNAPSHOT_HEADER_BYTES);
    if header[0..4] != SNAPSHOT_MAGIC {
        return Err("bad snapshot magic".into());
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    let known = version == SNAPSHOT_VERSION || version == SNAPSHOT_VERSION_V1;
    if !known || header[6..8] != [0, 0] {
        return Err(format!("unsupported snapshot version {version}"));
    }
    let len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if len != payload.len() {
        return Err(format!("snapshot length {len}, found {}", payload.len()));
    }
    let crc = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    if crc32c::crc32c(payload) != crc {
        return Err("snapshot crc32c mismatch".into());
    }
    let invalid = |e: rancor::Error| format!("invalid snapshot archive: {e}");
    if version == SNAPSHOT_VERSION_V1 {
        let v1 = rkyv::from_bytes::<SnapshotPayloadV1, rancor::Error>(&aligned(payload))
            .map_err(invalid)?;
        return Ok(SnapshotPayload {
            cluster_id: v1.cluster_id,
            version: v1.version,
            next_producer_id: v1.next_producer_id,
            topics: v1.topics,
            brokers: Vec::new(),
            placements: Vec::new(),
        });
    }
    rkyv::from_bytes::<SnapshotPayload, rancor::Error>(&aligned(payload)).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_torn_prefixes() {
        let entry = LogEntry {
            offset: 42,
            record: MetadataRecord::ProducerIdsAllocated { first: 0, count: 9 },
        };
        let frame = encode_entry(&entry);
        assert_eq!(decode_entry(&frame), Some((entry, frame.len())));
        for cut in 0..frame.len() {
            assert_eq!(decode_entry(&frame[..cut]), None, "cut at {cut}");
        }
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x01;
            assert_eq!(decode_entry(&bad), None, "flip at {i}");
        }
    }

    #[test]
    fn snapshot_round_trip_and_corruption() {
        let payload = SnapshotPayload {
            cluster_id: "abc".into(),
            version: 7,
            next_producer_id: 1000,
            topics: vec![TopicMeta {
                id: [3; 16],
                name: "t".into(),
                partitions: 4,
                replication_factor: 1,
                configs: [("retention.ms".to_owned(), "1".to_owned())].into(),
            }],
            brokers: vec![BrokerRegistration {
                node_id: 2,
                epoch: 5,
                host: "h".into(),
                port: 9092,
                shards: 2,
                rack: Some("r".into()),
                fenced: true,
            }],
            placements: vec![(
                [3; 16],
                vec![
                    Placement {
                        broker: 2,
                        shard: 1
                    };
                    4
                ],
            )],
        };
        let bytes = encode_snapshot(&payload);
        assert_eq!(decode_snapshot(&bytes), Ok(payload));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode_snapshot(&bad).is_err(), "flip at {i}");
        }
        assert!(decode_snapshot(&bytes[..bytes.len() - 1]).is_err());
    }
}
