//! `__consumer_offsets` records in Kafka's own formats, so that the topic reads the same as
//! a Kafka broker's (and Kafka's tools could decode it).
//!
//! Keys: OffsetCommitKey v1 (group, topic, partition) and GroupMetadataKey v2 (group).
//! Values: OffsetCommitValue v3 (offset, leader epoch, metadata, commit timestamp) and
//! GroupMetadataValue v3 (with static member ids). A null value is a tombstone. Older value
//! versions (0-3) decode too; flexible versions (4+) are refused as unknown.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Key versions written and read.
const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;
/// Most members decoded from one group record (a corrupt count cannot allocate gigabytes).
const MEMBERS_PER_RECORD_MAX: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordValue {
    Offset(OffsetValue),
    Group(GroupValue),
}

/// One record of `__consumer_offsets`; `value: None` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub key: RecordKey,
    pub value: Option<RecordValue>,
}

/// Why a stored record cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "undecodable __consumer_offsets record: {}", self.0)
    }
}

fn put_string(out: &mut BytesMut, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

fn put_nullable_string(out: &mut BytesMut, s: Option<&str>) {
    match s {
        None => out.put_i16(-1),
        Some(s) => put_string(out, s),
    }
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

impl RecordKey {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                out.put_i16(OFFSET_KEY_VERSION);
                put_string(&mut out, group);
                put_string(&mut out, topic);
                out.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                out.put_i16(GROUP_KEY_VERSION);
                put_string(&mut out, group);
            }
        }
        out.freeze()
    }

    pub fn decode(mut buf: &[u8]) -> Result<RecordKey, DecodeError> {
        let version = get_i16(&mut buf)?;
        match version {
            0 | 1 => Ok(RecordKey::Offset {
                group: get_string(&mut buf)?,
                topic: get_string(&mut buf)?,
                partition: get_i32(&mut buf)?,
            }),
            2 => Ok(RecordKey::Group {
                group: get_string(&mut buf)?,
            }),
            v => Err(DecodeError(format!("unknown key version {v}"))),
        }
    }
}

impl RecordValue {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(128);
        match self {
            RecordValue::Offset(v) => {
                out.put_i16(OFFSET_VALUE_VERSION);
                out.put_i64(v.offset);
                out.put_i32(v.leader_epoch);
                put_string(&mut out, &v.metadata);
                out.put_i64(v.commit_timestamp_ms);
            }
            RecordValue::Group(v) => {
                out.put_i16(GROUP_VALUE_VERSION);
                put_string(&mut out, &v.protocol_type);
                out.put_i32(v.generation);
                put_nullable_string(&mut out, v.protocol.as_deref());
                put_nullable_string(&mut out, v.leader.as_deref());
                out.put_i64(v.state_timestamp_ms);
                out.put_i32(v.members.len() as i32);
                for m in &v.members {
                    put_string(&mut out, &m.member_id);
                    put_nullable_string(&mut out, m.instance_id.as_deref());
                    put_string(&mut out, &m.client_id);
                    put_string(&mut out, &m.client_host);
                    out.put_i32(m.rebalance_timeout_ms);
                    out.put_i32(m.session_timeout_ms);
                    put_bytes(&mut out, &m.subscription);
                    put_bytes(&mut out, &m.assignment);
                }
            }
        }
        out.freeze()
    }

    /// Decodes the value stored under `key`.
    pub fn decode(key: &RecordKey, mut buf: &[u8]) -> Result<RecordValue, DecodeError> {
        let version = get_i16(&mut buf)?;
        match key {
            RecordKey::Offset { .. } => decode_offset(version, &mut buf).map(RecordValue::Offset),
            RecordKey::Group { .. } => decode_group(version, &mut buf).map(RecordValue::Group),
        }
    }
}

fn decode_offset(version: i16, buf: &mut &[u8]) -> Result<OffsetValue, DecodeError> {
    if !(0..=3).contains(&version) {
        return Err(DecodeError(format!(
            "unknown offset value version {version}"
        )));
    }
    let offset = get_i64(buf)?;
    let leader_epoch = if version >= 3 { get_i32(buf)? } else { -1 };
    let metadata = get_string(buf)?;
    let commit_timestamp_ms = get_i64(buf)?;
    if version == 1 {
        let _expire_timestamp = get_i64(buf)?;
    }
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn decode_group(version: i16, buf: &mut &[u8]) -> Result<GroupValue, DecodeError> {
    if !(0..=3).contains(&version) {
        return Err(DecodeError(format!(
            "unknown group value version {version}"
        )));
    }
    let protocol_type = get_string(buf)?;
    let generation = get_i32(buf)?;
    let protocol = get_nullable_string(buf)?;
    let leader = get_nullable_string(buf)?;
    let state_timestamp_ms = if version >= 2 { get_i64(buf)? } else { -1 };
    let count = get_i32(buf)?;
    if count < 0 || count as usize > MEMBERS_PER_RECORD_MAX {
        return Err(DecodeError(format!("member count {count}")));
    }
    let mut members = Vec::with_capacity((count as usize).min(64));
    for _ in 0..count {
        let member_id = get_string(buf)?;
        let instance_id = if version >= 3 {
            get_nullable_string(buf)?
        } else {
            None
        };
        let client_id = get_string(buf)?;
        let client_host = get_string(buf)?;
        let session_first = version == 0;
        let (rebalance_timeout_ms, session_timeout_ms) = if session_first {
            let session = get_i32(buf)?;
            (session, session)
        } else {
            (get_i32(buf)?, get_i32(buf)?)
        };
        members.push(MemberValue {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: get_bytes(buf)?,
            assignment: get_bytes(buf)?,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

fn need(buf: &&[u8], n: usize) -> Result<(), DecodeError> {
    if buf.remaining() < n {
        return Err(DecodeError(format!(
            "truncated: need {n} bytes, have {}",
            buf.remaining()
        )));
    }
    Ok(())
}

fn get_i16(buf: &mut &[u8]) -> Result<i16, DecodeError> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

fn get_i32(buf: &mut &[u8]) -> Result<i32, DecodeError> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut &[u8]) -> Result<i64, DecodeError> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

fn get_nullable_string(buf: &mut &[u8]) -> Result<Option<String>, DecodeError> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    need(buf, len as usize)?;
    let s = std::str::from_utf8(&buf[..len as usize])
        .map_err(|_| DecodeError("string is not UTF-8".into()))?
        .to_string();
    buf.advance(len as usize);
    Ok(Some(s))
}

fn get_string(buf: &mut &[u8]) -> Result<String, DecodeError> {
    get_nullable_string(buf)?.ok_or_else(|| DecodeError("null string".into()))
}

fn get_bytes(buf: &mut &[u8]) -> Result<Bytes, DecodeError> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(buf, len as usize)?;
    let b = Bytes::copy_from_slice(&buf[..len as usize]);
    buf.advance(len as usize);
    Ok(b)
}

/// Encodes records as one uncompressed v2 record batch (no producer id), ready for
/// `PartitionLog::append` after validation.
pub fn encode_batch(records: &[StoredRecord], timestamp_ms: i64) -> Result<Bytes, String> {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    assert!(!records.is_empty(), "a batch holds at least one record");
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch unless offset - sequence stays constant; the
            // first record's -1 becomes the batch's base sequence (no producer).
            sequence: i as i32 - 1,
            timestamp: timestamp_ms,
            key: Some(r.key.encode()),
            value: r.value.as_ref().map(RecordValue::encode),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut out, records.iter(), &options)
        .map_err(|e| format!("encoding a __consumer_offsets batch: {e}"))?;
    Ok(out.freeze())
}

/// Decodes the records of stored batches (as `PartitionLog::read` returns them). Records
/// whose key or value cannot be read are reported, not fatal.
pub fn decode_batch(batch: &Bytes) -> Result<Vec<Result<StoredRecord, DecodeError>>, DecodeError> {
    use kafka_protocol::records::RecordBatchDecoder;
    let mut buf = batch.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf)
        .map_err(|e| DecodeError(format!("record batch: {e}")))?;
    let mut out = Vec::new();
    for record in sets.into_iter().flat_map(|s| s.records) {
        if record.control {
            continue;
        }
        let Some(key) = record.key else {
            out.push(Err(DecodeError("record without key".into())));
            continue;
        };
        let decoded = RecordKey::decode(&key).and_then(|key| {
            let value = match &record.value {
                None => None,
                Some(v) => Some(RecordValue::decode(&key, v)?),
            };
            Ok(StoredRecord { key, value })
        });
        out.push(decoded);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_record() -> StoredRecord {
        StoredRecord {
            key: RecordKey::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 3,
            },
            value: Some(RecordValue::Offset(OffsetValue {
                offset: 42,
                leader_epoch: 0,
                metadata: "meta ✓".into(),
                commit_timestamp_ms: 1_700_000_000_000,
            })),
        }
    }

    fn group_record() -> StoredRecord {
        StoredRecord {
            key: RecordKey::Group { group: "g".into() },
            value: Some(RecordValue::Group(GroupValue {
                protocol_type: "consumer".into(),
                generation: 7,
                protocol: Some("range".into()),
                leader: Some("c-1".into()),
                state_timestamp_ms: 123,
                members: vec![MemberValue {
                    member_id: "c-1".into(),
                    instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            })),
        }
    }

    #[test]
    fn kafka_byte_layouts() {
        // OffsetCommitKey v1: version, group, topic, partition.
        let key = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 2,
        };
        assert_eq!(
            &key.encode()[..],
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 2]
        );
        let key = RecordKey::Group { group: "g".into() };
        assert_eq!(&key.encode()[..], &[0, 2, 0, 1, b'g']);
        let value = RecordValue::Offset(OffsetValue {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 9,
        });
        let mut want = vec![0, 3];
        want.extend_from_slice(&5i64.to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&9i64.to_be_bytes());
        assert_eq!(&value.encode()[..], &want[..]);
    }

    #[test]
    fn values_round_trip() {
        for record in [offset_record(), group_record()] {
            let key = RecordKey::decode(&record.key.encode()).unwrap();
            assert_eq!(key, record.key);
            let value = record.value.as_ref().unwrap();
            assert_eq!(&RecordValue::decode(&key, &value.encode()).unwrap(), value);
        }
    }

    #[test]
    fn old_offset_value_v1_decodes() {
        let mut v = vec![0, 1];
        v.extend_from_slice(&10i64.to_be_bytes());
        v.extend_from_slice(&[0, 2, b'h', b'i']);
        v.extend_from_slice(&7i64.to_be_bytes());
        v.extend_from_slice(&99i64.to_be_bytes());
        let key = offset_record().key;
        let RecordValue::Offset(o) = RecordValue::decode(&key, &v).unwrap() else {
            panic!()
        };
        assert_eq!(
            (o.offset, o.leader_epoch, o.metadata.as_str()),
            (10, -1, "hi")
        );
    }

    #[test]
    fn truncated_and_unknown_are_errors() {
        let key = offset_record().key;
        assert!(RecordValue::decode(&key, &[0, 3, 0]).is_err());
        assert!(RecordValue::decode(&key, &[0, 9]).is_err());
        assert!(RecordKey::decode(&[0, 7, 0, 0]).is_err());
        assert!(RecordKey::decode(&[0]).is_err());
    }

    #[test]
    fn batch_round_trip_and_validates() {
        let tombstone = StoredRecord {
            key: RecordKey::Group {
                group: "old".into(),
            },
            value: None,
        };
        let records = vec![offset_record(), group_record(), tombstone];
        let batch = encode_batch(&records, 1_000).unwrap();
        let header = storage::batch::validate_produce_records(&batch).expect("valid batch");
        assert_eq!(header.record_count, 3);
        let decoded: Vec<StoredRecord> = decode_batch(&batch)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(decoded, records);
    }
}
