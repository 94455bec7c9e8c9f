//! Kafka request decoding and response encoding, and the API versions this broker serves.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

/// The APIs served and their version ranges, as a Kafka 4.x broker advertises them (capped by
/// what the wire codec knows).
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    // Produce v0-2 are advertised (older librdkafka turns off compression otherwise) but
    // rejected if sent, as Kafka 4 does.
    (ApiKey::Produce, 0, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 11),
    // Kafka 4 serves v2-4 (KIP-896); clients use it to detect truncation after a leader
    // change (KIP-320).
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DescribeCluster, 0, 2),
    // Kafka 4's admin client describes topics with it (`kafka-topics.sh --describe`).
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    // Consumer groups (classic protocol). Kafka 4.3 serves OffsetCommit and OffsetFetch up to
    // v10 (topic ids); the vendored codec's message types stop at v9.
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // SASL (issue 19): served on every listener, as Kafka does; on a SASL listener they are
    // the only requests (with ApiVersions) before authentication (`sasl::gate`).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    // ACLs (issue 19); v0 knows only literal patterns and the codec starts at v1.
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
];

/// Produce versions below this are advertised but refused.
pub const PRODUCE_VERSION_MIN_ACCEPTED: i16 = 3;

/// The advertised (min, max) versions of an API, if served.
pub fn advertised_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|&(key, min, max)| (min, max.min(key.valid_versions().max)))
}

/// The fixed start of every request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameStart {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl FrameStart {
    pub fn parse(frame: &[u8]) -> Option<FrameStart> {
        if frame.len() < 8 {
            return None;
        }
        Some(FrameStart {
            api_key: i16::from_be_bytes([frame[0], frame[1]]),
            api_version: i16::from_be_bytes([frame[2], frame[3]]),
            correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
        })
    }
}

/// A decoded request.
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Decodes a whole request frame; `None` means the request is malformed and the connection
/// must be closed. Byte fields (record batches) stay slices of `frame`.
pub fn decode_request(api_key: ApiKey, version: i16, mut frame: Bytes) -> Option<Request> {
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version)).ok()?;
    let body = RequestKind::decode(api_key, &mut frame, version).ok()?;
    Some(Request {
        api_key,
        version,
        header,
        body,
    })
}

/// Encodes a response frame, size prefix included.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
    capacity_hint: usize,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::with_capacity(capacity_hint.max(64));
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| format!("{api_key:?} v{version} response header: {e}"))?;
    body.encode(&mut buf, version)
        .map_err(|e| format!("{api_key:?} v{version} response: {e}"))?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_follow_kafka_4() {
        assert_eq!(advertised_versions(ApiKey::Produce), Some((0, 13)));
        assert_eq!(advertised_versions(ApiKey::Fetch).map(|v| v.0), Some(4));
        assert_eq!(advertised_versions(ApiKey::ApiVersions), Some((0, 4)));
        assert_eq!(advertised_versions(ApiKey::JoinGroup), Some((0, 9)));
        // Clamped to what the wire codec knows (Kafka 4.3 advertises 10).
        assert_eq!(advertised_versions(ApiKey::OffsetCommit), Some((2, 9)));
        assert_eq!(advertised_versions(ApiKey::OffsetFetch), Some((1, 9)));
        assert_eq!(
            advertised_versions(ApiKey::DescribeTopicPartitions),
            Some((0, 0))
        );
        assert_eq!(advertised_versions(ApiKey::Vote), None);
    }

    #[test]
    fn frame_start_needs_eight_bytes() {
        assert_eq!(FrameStart::parse(&[0; 7]), None);
        let start = FrameStart::parse(&[0, 18, 0, 3, 0, 0, 0, 9]).unwrap();
        assert_eq!(
            start,
            FrameStart {
                api_key: 18,
                api_version: 3,
                correlation_id: 9
            }
        );
    }

    /// Decodes `frame` as `api_key` v`version`, re-encodes it and returns the bytes.
    fn reencode(api_key: ApiKey, version: i16, frame: &[u8]) -> (Request, Bytes) {
        let request = decode_request(api_key, version, Bytes::copy_from_slice(frame)).unwrap();
        let mut buf = BytesMut::new();
        let header_version = api_key.request_header_version(version);
        request.header.encode(&mut buf, header_version).unwrap();
        request.body.encode(&mut buf, version).unwrap();
        (request, buf.freeze())
    }

    #[test]
    fn tagged_field_above_i32_max_round_trips() {
        // Found by fuzz/fuzz_targets/request.rs: a tag >= 2^31 was kept on decode (as a
        // negative key) but dropped on encode, so the re-encoded request no longer decoded.
        // Metadata v12: header, null topics, two flags, one tagged field with tag 2^31.
        let frame: &[u8] = &[
            0, 3, 0, 12, 0, 0, 0, 7, 0xff, 0xff, 0, 0, 0, 0, 1, 0x80, 0x80, 0x80, 0x80, 0x08, 0,
        ];
        assert_eq!(&reencode(ApiKey::Metadata, 12, frame).1[..], frame);
        // The input the fuzzer found.
        let found: Vec<u8> = (0..FUZZ_CRASH_TAG.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&FUZZ_CRASH_TAG[i..i + 2], 16).unwrap())
            .collect();
        let (request, bytes) = reencode(ApiKey::Metadata, 12, &found);
        let again = decode_request(ApiKey::Metadata, 12, bytes).expect("re-encoded decodes");
        assert_eq!(again.header, request.header);
        assert_eq!(again.body, request.body);
    }

    const FUZZ_CRASH_TAG: &str = "0003000c000000070003000c00020007000473656564000200000000070003000c000000072d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d0004736565640002000000005330000000330053300000003300000000ff15ffffffffffffff6a0000000000000000000e";
}
