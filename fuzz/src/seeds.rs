//! Seed inputs of each target, made with the real encoders (kafka-protocol requests, storage's
//! batch and log writers, the controller's frame and snapshot codecs).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use storage::batch::test_support::{
    encode_batch, encode_compressed_batch, simple_records, TestProducer, NO_PRODUCER,
};
use storage::codec::Codec;

/// Named seed inputs of `target`.
pub fn for_target(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "request" => requests(),
        "batch" => batches(),
        "recovery" => crate::recovery_input::seeds(),
        "controller_frame" => controller_frames(),
        "admin_http" => http_heads(),
        "sasl" => sasl(),
        other => panic!("no seeds for unknown target {other}"),
    }
}

fn topic(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

/// A request frame as the connection hands it over (no size prefix).
fn frame(api_key: ApiKey, version: i16, body: &impl Encodable) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("seed")))
        .encode(&mut buf, api_key.request_header_version(version))
        .expect("seed header encodes");
    body.encode(&mut buf, version).expect("seed body encodes");
    buf.to_vec()
}

fn requests() -> Vec<(String, Vec<u8>)> {
    let batch = Bytes::from(encode_batch(
        0,
        1_700_000_000_000,
        NO_PRODUCER,
        &simple_records(3),
    ));
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("t"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic("t"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(5)
                .with_partition_max_bytes(1 << 20)])]);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic("t"))),
    ]));
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(1000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic("t"))
            .with_num_partitions(4)
            .with_replication_factor(1)]);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_session_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"\0\x01"))]);
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic("t"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(9)])]);
    let mut out = vec![
        (
            "api_versions_v0".into(),
            frame(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default()),
        ),
        (
            "api_versions_v3".into(),
            frame(
                ApiKey::ApiVersions,
                3,
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("seed"))
                    .with_client_software_version(StrBytes::from_static_str("1")),
            ),
        ),
        ("produce_v3".into(), frame(ApiKey::Produce, 3, &produce)),
        ("produce_v9".into(), frame(ApiKey::Produce, 9, &produce)),
        ("fetch_v4".into(), frame(ApiKey::Fetch, 4, &fetch)),
        ("fetch_v12".into(), frame(ApiKey::Fetch, 12, &fetch)),
        ("metadata_v1".into(), frame(ApiKey::Metadata, 1, &metadata)),
        (
            "metadata_v12".into(),
            frame(ApiKey::Metadata, 12, &metadata),
        ),
        (
            "create_topics_v5".into(),
            frame(ApiKey::CreateTopics, 5, &create),
        ),
        ("join_group_v5".into(), frame(ApiKey::JoinGroup, 5, &join)),
        (
            "offset_commit_v8".into(),
            frame(ApiKey::OffsetCommit, 8, &commit),
        ),
    ];
    // An ApiVersions newer than served: the v0 fallback answer.
    let mut newer = frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    newer[2..4].copy_from_slice(&99i16.to_be_bytes());
    out.push(("api_versions_v99".into(), newer));
    out
}

fn batches() -> Vec<(String, Vec<u8>)> {
    // First byte: the target's mode (bit 0 fixes the CRC, bit 1 the length, bits 4-6 pick
    // the codec of the raw decompression check); the rest is the batch.
    let producer = TestProducer {
        producer_id: 42,
        producer_epoch: 0,
        base_sequence: 0,
    };
    let mut out = vec![
        (
            "plain_1".into(),
            encode_batch(0, 1000, NO_PRODUCER, &simple_records(1)),
        ),
        (
            "plain_5_idempotent".into(),
            encode_batch(0, 1000, producer, &simple_records(5)),
        ),
    ];
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let batch = encode_compressed_batch(0, 1000, NO_PRODUCER, &simple_records(4), codec);
        out.push((format!("{}_4", codec.name()), batch));
    }
    out.into_iter()
        .map(|(name, batch)| {
            let codec =
                storage::codec::Codec::from_attributes(i16::from_be_bytes([batch[21], batch[22]]))
                    .map_or(0, |c| c.id());
            let mut input = vec![codec << 4];
            input.extend_from_slice(&batch);
            (name, input)
        })
        .collect()
}

fn controller_frames() -> Vec<(String, Vec<u8>)> {
    use broker::cluster::protocol::{write_frame, ControllerFrame, ControllerRequest};
    use controller::codec;
    use controller::{MetadataCommand, MetadataRecord};
    let topic = controller::TopicMeta {
        id: [7; 16],
        name: "t".into(),
        partitions: 2,
        replication_factor: 1,
        configs: Default::default(),
    };
    let records = vec![
        MetadataRecord::ClusterInit {
            cluster_id: "seed-cluster".into(),
        },
        MetadataRecord::TopicCreated(topic),
        MetadataRecord::ProducerIdsAllocated {
            first: 0,
            count: 1000,
        },
    ];
    let wire = |frame: &ControllerFrame| {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, frame).expect("seed frame encodes");
        bytes
    };
    let mut raft = controller::quorum::RaftMessage::default();
    raft.set_msg_type(controller::quorum::RaftMessageType::MsgHeartbeat);
    raft.to = 2;
    raft.from = 1;
    raft.term = 3;
    let raft_bytes = controller::quorum::encode_message(&raft);
    let snapshot = codec::encode_snapshot(&codec::SnapshotPayload::of(
        &controller::MetadataImage::empty(1),
    ));
    // First byte: the mode (see the target).
    let tagged = |mode: u8, bytes: Vec<u8>| {
        let mut input = vec![mode];
        input.extend_from_slice(&bytes);
        input
    };
    vec![
        (
            "wire_raft".into(),
            tagged(
                0,
                wire(&ControllerFrame::Raft {
                    from: 1,
                    message: raft_bytes.clone(),
                }),
            ),
        ),
        (
            "wire_propose".into(),
            tagged(
                0,
                wire(&ControllerFrame::Request(ControllerRequest::Propose(
                    MetadataCommand::DeleteTopic { name: "t".into() },
                ))),
            ),
        ),
        (
            "wire_heartbeat".into(),
            tagged(
                0,
                wire(&ControllerFrame::Request(ControllerRequest::Heartbeat {
                    node_id: 1,
                })),
            ),
        ),
        (
            "log_batch".into(),
            tagged(1, codec::encode_records(1, records.clone())),
        ),
        (
            "log_entries".into(),
            tagged(
                1,
                records
                    .iter()
                    .enumerate()
                    .flat_map(|(i, record)| {
                        codec::encode_entry(&codec::LogEntry {
                            offset: i as u64 + 1,
                            record: record.clone(),
                        })
                    })
                    .collect(),
            ),
        ),
        ("snapshot".into(), tagged(2, snapshot)),
        ("raft_message".into(), tagged(3, raft_bytes)),
        // Parses with an empty (but allocated) unknown-field set: a round-trip false alarm
        // the fuzzer found, kept so the target's check stays right.
        (
            "raft_empty_unknown_fields".into(),
            tagged(3, vec![0x4a, 0x03, 0xf8, 0x4a, 0x4a, 0x4a, 0x4a]),
        ),
    ]
}

fn http_heads() -> Vec<(String, Vec<u8>)> {
    [
        (
            "metrics",
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
        ),
        ("status", "GET /v1/status?pretty HTTP/1.0\r\n\r\n"),
        (
            "post",
            "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        ),
        ("unknown", "GET /nope HTTP/1.1\r\nX: y\r\n\r\n"),
    ]
    .into_iter()
    .map(|(name, head)| (name.to_string(), head.as_bytes().to_vec()))
    .collect()
}

/// Mode byte (see fuzz_targets/sasl.rs) then the input.
fn sasl() -> Vec<(String, Vec<u8>)> {
    let body = |version: i16, request: &dyn Fn(&mut BytesMut, i16)| {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[version as u8]);
        request(&mut buf, version);
        buf.to_vec()
    };
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512"));
    let authenticate = SaslAuthenticateRequest::default()
        .with_auth_bytes(Bytes::from_static(b"\0alice\0alice-secret"));
    let mut seeds = vec![];
    for version in 0..=1 {
        seeds.push((
            format!("handshake-v{version}"),
            0,
            body(version, &|b, v| handshake.encode(b, v).expect("encodes")),
        ));
    }
    for version in 0..=2 {
        seeds.push((
            format!("authenticate-v{version}"),
            1,
            body(version, &|b, v| authenticate.encode(b, v).expect("encodes")),
        ));
    }
    for (name, mode, text) in [
        ("plain", 2, &b"\0alice\0alice-secret"[..]),
        ("plain-authzid", 2, b"alice\0alice\0wrong"),
        ("scram-client", 3, b"n,,n=alice,r=rOprNGfwEbeRWgbNEkqO\0c=biws,r=rOprNGfwEbeRWgbNEkqOservernonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        ("scram-escaped", 3, b"y,a=a=2Cb,n=a=2Cb,r=abc"),
        ("server-first", 4, b"r=fuzzXYZ,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=16"),
        ("jaas-plain", 5, b"org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"admin-secret\" user_alice=\"alice-secret\";"),
        ("jaas-scram", 5, b"org.apache.kafka.common.security.scram.ScramLoginModule required username=bob password=\"b\\\"ob\";\n a.B optional;"),
    ] {
        seeds.push((name.to_string(), mode, text.to_vec()));
    }
    seeds
        .into_iter()
        .map(|(name, mode, bytes)| {
            let mut input = vec![mode];
            input.extend(bytes);
            (name, input)
        })
        .collect()
}
