//! On-disk framing of metadata records and snapshots (pure, no IO).
//!
//! Log frame: `len: u32 LE | crc32c(payload): u32 LE | payload`, payload = rkyv
//! [`LogEntry`] (one record), or, with [`BATCH_FLAG`] set in `len`, rkyv [`LogBatch`] (the
//! records of one command, at consecutive offsets: one checksum, so a torn batch is dropped
//! whole). Snapshot file: `magic "SPMS" | version: u16 | 0u16 | len: u32 | crc: u32 |
//! payload`, payload = rkyv [`SnapshotPayload`] (format 5; formats 1 to 4 are still read).

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::acl::AclBinding;
use crate::cluster::{BrokerRegistration, LegacyBrokerRegistration, Placement};
use crate::image::{MetadataImage, MetadataRecord, TopicId, TopicMeta};
use crate::partition::PartitionRegistration;
use crate::scram::ScramCredentialSet;

/// Largest record payload accepted; a larger length field means a torn or corrupt frame.
pub const RECORD_BYTES_MAX: usize = 1024 * 1024;
/// Largest batch payload accepted (a topic of 100 000 partitions with 3 replicas fits).
pub const BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Set in a frame's length field when the payload is a [`LogBatch`]. Versions before
/// batches read such a frame as a torn tail: a log holding batches cannot be downgraded.
pub const BATCH_FLAG: u32 = 1 << 31;
/// Largest snapshot accepted.
pub const SNAPSHOT_BYTES_MAX: usize = 1024 * 1024 * 1024;
pub const FRAME_HEADER_BYTES: usize = 8;

const SNAPSHOT_MAGIC: [u8; 4] = *b"SPMS";
const SNAPSHOT_VERSION: u16 = 5;
const SNAPSHOT_VERSION_V4: u16 = 4;
const SNAPSHOT_VERSION_V3: u16 = 3;
const SNAPSHOT_VERSION_V2: u16 = 2;
const SNAPSHOT_VERSION_V1: u16 = 1;
const SNAPSHOT_HEADER_BYTES: usize = 16;

/// A record with its log offset.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LogEntry {
    pub offset: u64,
    pub record: MetadataRecord,
}

/// The records of one command at offsets `first_offset..`, applied all or none.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LogBatch {
    pub first_offset: u64,
    pub records: Vec<MetadataRecord>,
}

impl LogBatch {
    /// The batch as entries with their offsets.
    pub fn entries(self) -> Vec<LogEntry> {
        let first = self.first_offset;
        self.records
            .into_iter()
            .enumerate()
            .map(|(i, record)| LogEntry {
                offset: first + i as u64,
                record,
            })
            .collect()
    }
}

/// Everything in a [`MetadataImage`] except the node id (snapshot format 5: brokers with
/// their endpoints).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SnapshotPayload {
    pub cluster_id: String,
    pub version: u64,
    pub next_producer_id: i64,
    pub topics: Vec<TopicMeta>,
    pub brokers: Vec<BrokerRegistration>,
    pub partitions: Vec<(TopicId, Vec<PartitionRegistration>)>,
    /// Since format 4.
    pub scram_credentials: Vec<ScramCredentialSet>,
    /// ACL bindings (since format 4).
    pub acls: Vec<AclBinding>,
}

/// Snapshot format 4 (brokers without endpoints); still read.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct SnapshotPayloadV4 {
    cluster_id: String,
    version: u64,
    next_producer_id: i64,
    topics: Vec<TopicMeta>,
    brokers: Vec<LegacyBrokerRegistration>,
    partitions: Vec<(TopicId, Vec<PartitionRegistration>)>,
    scram_credentials: Vec<ScramCredentialSet>,
    acls: Vec<AclBinding>,
}

impl From<SnapshotPayloadV4> for SnapshotPayload {
    fn from(v4: SnapshotPayloadV4) -> Self {
        SnapshotPayload {
            cluster_id: v4.cluster_id,
            version: v4.version,
            next_producer_id: v4.next_producer_id,
            topics: v4.topics,
            brokers: legacy(v4.brokers),
            partitions: v4.partitions,
            scram_credentials: v4.scram_credentials,
            acls: v4.acls,
        }
    }
}

fn legacy(brokers: Vec<LegacyBrokerRegistration>) -> Vec<BrokerRegistration> {
    brokers.into_iter().map(BrokerRegistration::from).collect()
}

/// Snapshot format 3 (before SCRAM credentials and ACLs); still read.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct SnapshotPayloadV3 {
    cluster_id: String,
    version: u64,
    next_producer_id: i64,
    topics: Vec<TopicMeta>,
    brokers: Vec<LegacyBrokerRegistration>,
    partitions: Vec<(TopicId, Vec<PartitionRegistration>)>,
}

impl From<SnapshotPayloadV3> for SnapshotPayload {
    fn from(v3: SnapshotPayloadV3) -> Self {
        SnapshotPayload {
            cluster_id: v3.cluster_id,
            version: v3.version,
            next_producer_id: v3.next_producer_id,
            topics: v3.topics,
            brokers: legacy(v3.brokers),
            partitions: v3.partitions,
            scram_credentials: Vec::new(),
            acls: Vec::new(),
        }
    }
}

/// Snapshot format 2 (one replica per partition); still read.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct SnapshotPayloadV2 {
    cluster_id: String,
    version: u64,
    next_producer_id: i64,
    topics: Vec<TopicMeta>,
    brokers: Vec<LegacyBrokerRegistration>,
    placements: Vec<(TopicId, Vec<Placement>)>,
}

impl From<SnapshotPayloadV2> for SnapshotPayload {
    /// Each placement is a partition with that one replica, in sync and leading.
    fn from(v2: SnapshotPayloadV2) -> Self {
        let single = |ps: Vec<Placement>| ps.into_iter().map(PartitionRegistration::single);
        SnapshotPayload {
            cluster_id: v2.cluster_id,
            version: v2.version,
            next_producer_id: v2.next_producer_id,
            topics: v2.topics,
            brokers: legacy(v2.brokers),
            partitions: v2
                .placements
                .into_iter()
                .map(|(id, ps)| (id, single(ps).collect()))
                .collect(),
            scram_credentials: Vec::new(),
            acls: Vec::new(),
        }
    }
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
            partitions: image
                .partitions
                .iter()
                .map(|(id, p)| (*id, p.clone()))
                .collect(),
            scram_credentials: crate::scram::to_snapshot(&image.scram_credentials),
            acls: image.acls.iter().cloned().collect(),
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

/// Encodes the records of one command at offsets `first_offset..` as one frame: a lone
/// record that fits [`RECORD_BYTES_MAX`] in the single-record frame older versions read, else
/// a batch frame.
pub fn encode_records(first_offset: u64, records: Vec<MetadataRecord>) -> Vec<u8> {
    if let Ok([record]) = <[MetadataRecord; 1]>::try_from(records.clone()) {
        let entry = LogEntry {
            offset: first_offset,
            record,
        };
        let payload = rkyv::to_bytes::<rancor::Error>(&entry).expect("rkyv serialisation");
        if payload.len() <= RECORD_BYTES_MAX {
            return encode_entry(&entry);
        }
    }
    encode_batch(&LogBatch {
        first_offset,
        records,
    })
}

/// Encodes one log frame holding a whole batch (at least one record).
pub fn encode_batch(batch: &LogBatch) -> Vec<u8> {
    assert!(!batch.records.is_empty(), "an empty metadata batch");
    let payload = rkyv::to_bytes::<rancor::Error>(batch).expect("rkyv serialisation");
    assert!(payload.len() <= BATCH_BYTES_MAX, "metadata batch too large");
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32 | BATCH_FLAG).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The checksummed payload of the frame at the start of `bytes`, whether it is a batch, and
/// the frame length; `None` for an incomplete or corrupt frame.
fn unframe(bytes: &[u8]) -> Option<(&[u8], bool, usize)> {
    let header = bytes.get(..FRAME_HEADER_BYTES)?;
    let len_field = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let batch = len_field & BATCH_FLAG != 0;
    let len = (len_field & !BATCH_FLAG) as usize;
    let max = if batch {
        BATCH_BYTES_MAX
    } else {
        RECORD_BYTES_MAX
    };
    if len > max {
        return None;
    }
    let payload = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len)?;
    (crc32c::crc32c(payload) == crc).then_some((payload, batch, FRAME_HEADER_BYTES + len))
}

/// Decodes a single-record frame at the start of `bytes`: `Some((entry, frame_len))`, or
/// `None` when the bytes do not hold a complete, valid single-record frame.
pub fn decode_entry(bytes: &[u8]) -> Option<(LogEntry, usize)> {
    let (payload, false, frame_len) = unframe(bytes)? else {
        return None;
    };
    let entry = rkyv::from_bytes::<LogEntry, rancor::Error>(&aligned(payload)).ok()?;
    Some((entry, frame_len))
}

/// Decodes the frame at the start of `bytes`, single record or batch: its entries (at
/// consecutive offsets) and the frame length; `None` for a torn or corrupt tail.
pub fn decode_frame(bytes: &[u8]) -> Option<(Vec<LogEntry>, usize)> {
    let (payload, batch, frame_len) = unframe(bytes)?;
    let payload = aligned(payload);
    let entries = if batch {
        let batch = rkyv::from_bytes::<LogBatch, rancor::Error>(&payload).ok()?;
        if batch.records.is_empty() {
            return None;
        }
        batch.entries()
    } else {
        vec![rkyv::from_bytes::<LogEntry, rancor::Error>(&payload).ok()?]
    };
    Some((entries, frame_len))
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
    let known = matches!(
        version,
        SNAPSHOT_VERSION
            | SNAPSHOT_VERSION_V4
            | SNAPSHOT_VERSION_V3
            | SNAPSHOT_VERSION_V2
            | SNAPSHOT_VERSION_V1
    );
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
            partitions: Vec::new(),
            scram_credentials: Vec::new(),
            acls: Vec::new(),
        });
    }
    if version == SNAPSHOT_VERSION_V2 {
        let v2 = rkyv::from_bytes::<SnapshotPayloadV2, rancor::Error>(&aligned(payload))
            .map_err(invalid)?;
        return Ok(v2.into());
    }
    if version == SNAPSHOT_VERSION_V3 {
        let v3 = rkyv::from_bytes::<SnapshotPayloadV3, rancor::Error>(&aligned(payload))
            .map_err(invalid)?;
        return Ok(v3.into());
    }
    if version == SNAPSHOT_VERSION_V4 {
        let v4 = rkyv::from_bytes::<SnapshotPayloadV4, rancor::Error>(&aligned(payload))
            .map_err(invalid)?;
        return Ok(v4.into());
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
    fn batch_frames_round_trip_and_tear_whole() {
        let records = vec![
            MetadataRecord::ProducerIdsAllocated { first: 0, count: 9 },
            MetadataRecord::BrokerFenced {
                node_id: 1,
                fenced: true,
            },
        ];
        let frame = encode_batch(&LogBatch {
            first_offset: 7,
            records: records.clone(),
        });
        let (entries, len) = decode_frame(&frame).expect("decodes");
        assert_eq!(len, frame.len());
        let offsets: Vec<u64> = entries.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, [7, 8]);
        assert_eq!(
            entries.into_iter().map(|e| e.record).collect::<Vec<_>>(),
            records
        );
        // Not a single-record frame; and any cut or flipped bit loses the whole batch.
        assert_eq!(decode_entry(&frame), None);
        for cut in 0..frame.len() {
            assert_eq!(decode_frame(&frame[..cut]), None, "cut at {cut}");
        }
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x01;
            assert_eq!(decode_frame(&bad), None, "flip at {i}");
        }
        // Single-record frames decode through the same path.
        let single = encode_entry(&LogEntry {
            offset: 3,
            record: records[0].clone(),
        });
        let (entries, _) = decode_frame(&single).expect("single");
        assert_eq!((entries.len(), entries[0].offset), (1, 3));
    }

    #[test]
    fn a_record_too_large_for_a_single_frame_goes_in_a_batch_frame() {
        let small = MetadataRecord::ProducerIdsAllocated { first: 0, count: 1 };
        let frame = encode_records(5, vec![small.clone()]);
        assert_eq!(decode_entry(&frame).map(|(e, _)| e.record), Some(small));
        let registration = PartitionRegistration::single(Placement {
            broker: 1,
            shard: 0,
        });
        let big = MetadataRecord::PartitionsAssigned(Box::new(crate::PartitionsAssigned {
            id: [3; 16],
            first: 0,
            partitions: vec![registration; 100_000],
        }));
        let frame = encode_records(5, vec![big.clone()]);
        assert!(frame.len() > RECORD_BYTES_MAX);
        assert_eq!(decode_entry(&frame), None);
        let (entries, _) = decode_frame(&frame).expect("batch frame");
        assert_eq!((entries[0].offset, &entries[0].record), (5, &big));
    }

    #[test]
    fn a_format_3_snapshot_still_decodes_without_scram_credentials() {
        let v3 = SnapshotPayloadV3 {
            cluster_id: "abc".into(),
            version: 9,
            next_producer_id: 5,
            topics: Vec::new(),
            brokers: Vec::new(),
            partitions: Vec::new(),
        };
        let bytes = rkyv::to_bytes::<rancor::Error>(&v3).unwrap();
        let mut file = Vec::new();
        file.extend_from_slice(&SNAPSHOT_MAGIC);
        file.extend_from_slice(&SNAPSHOT_VERSION_V3.to_le_bytes());
        file.extend_from_slice(&[0, 0]);
        file.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
        file.extend_from_slice(&bytes);
        let payload = decode_snapshot(&file).expect("format 3 decodes");
        assert_eq!((payload.version, payload.scram_credentials.len()), (9, 0));
    }

    #[test]
    fn a_format_4_snapshot_still_decodes_with_brokers_on_every_listener() {
        let v4 = SnapshotPayloadV4 {
            cluster_id: "abc".into(),
            version: 9,
            next_producer_id: 5,
            topics: Vec::new(),
            brokers: vec![LegacyBrokerRegistration {
                node_id: 1,
                epoch: 2,
                host: "h".into(),
                port: 9092,
                shards: 1,
                rack: None,
                fenced: false,
            }],
            partitions: Vec::new(),
            scram_credentials: Vec::new(),
            acls: Vec::new(),
        };
        let bytes = rkyv::to_bytes::<rancor::Error>(&v4).unwrap();
        let mut file = Vec::new();
        file.extend_from_slice(&SNAPSHOT_MAGIC);
        file.extend_from_slice(&SNAPSHOT_VERSION_V4.to_le_bytes());
        file.extend_from_slice(&[0, 0]);
        file.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
        file.extend_from_slice(&bytes);
        let payload = decode_snapshot(&file).expect("format 4 decodes");
        let broker = &payload.brokers[0];
        assert!(broker.endpoints.is_empty());
        assert_eq!(broker.endpoint("SSL"), Some(("h", 9092)));
    }

    #[test]
    fn archived_record_size_is_stable() {
        // Records written by earlier versions decode only while this holds.
        assert_eq!(
            std::mem::size_of::<crate::image::ArchivedMetadataRecord>(),
            48
        );
        assert_eq!(std::mem::size_of::<ArchivedLogEntry>(), 56);
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
                endpoints: vec![crate::cluster::BrokerEndpoint {
                    name: "SSL".into(),
                    host: "h".into(),
                    port: 9093,
                    security_protocol: 1,
                }],
            }],
            partitions: vec![(
                [3; 16],
                vec![
                    PartitionRegistration {
                        replicas: vec![
                            Placement {
                                broker: 2,
                                shard: 1
                            },
                            Placement {
                                broker: 4,
                                shard: 0
                            },
                        ],
                        isr: vec![2],
                        leader: -1,
                        leader_epoch: 3,
                        partition_epoch: 9,
                    };
                    4
                ],
            )],
            scram_credentials: vec![ScramCredentialSet {
                user: "alice".into(),
                mechanism: crate::scram::ScramMechanism::Sha256,
                credential: crate::scram::ScramCredential {
                    salt: vec![1, 2],
                    stored_key: vec![3; 32],
                    server_key: vec![4; 32],
                    iterations: 4096,
                },
            }],
            acls: vec![AclBinding {
                resource_type: crate::acl::ResourceType::Topic,
                resource_name: "t".into(),
                pattern_type: crate::acl::PatternType::Prefixed,
                principal: "User:alice".into(),
                host: "*".into(),
                operation: crate::acl::Operation::Read,
                permission: crate::acl::Permission::Allow,
            }],
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
