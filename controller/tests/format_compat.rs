//! Metadata logs and snapshots written by earlier versions still decode and apply:
//! `fixtures/format-v1.txt` holds frames and a snapshot encoded before the cluster records,
//! `fixtures/format-v2.txt` those of the single-replica cluster records (brokers,
//! `PartitionsPlaced`, `PartitionsAdded`, snapshot format 2 with placements), which now load
//! as partition registrations.

use controller::codec::{decode_entry, decode_frame, decode_snapshot};
use controller::{MetadataImage, MetadataRecord, PartitionRegistration, Placement, TopicMeta};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    parse(include_str!("fixtures/format-v1.txt"))
}

fn fixtures_v2() -> Vec<(String, Vec<u8>)> {
    parse(include_str!("fixtures/format-v2.txt"))
}

fn parse(text: &str) -> Vec<(String, Vec<u8>)> {
    text.lines()
        .map(|line| {
            let (kind, hex) = line.split_once(' ').expect("KIND HEX");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            (kind.to_owned(), bytes)
        })
        .collect()
}

#[test]
fn v1_log_frames_decode_to_the_same_records() {
    let frames: Vec<_> = fixtures()
        .into_iter()
        .filter(|(k, _)| k == "FRAME")
        .map(|(_, bytes)| {
            let (entry, len) = decode_entry(&bytes).expect("v1 frame decodes");
            assert_eq!(len, bytes.len());
            assert_eq!(entry.offset, 3);
            entry.record
        })
        .collect();
    assert_eq!(frames.len(), 5);
    assert!(
        matches!(&frames[0], MetadataRecord::ClusterInit { cluster_id } if cluster_id == "abc")
    );
    let MetadataRecord::TopicCreated(meta) = &frames[1] else {
        panic!("{:?}", frames[1])
    };
    assert_eq!(
        (meta.id, meta.name.as_str(), meta.partitions),
        ([7; 16], "orders", 3)
    );
    assert_eq!(meta.configs["retention.ms"], "1000");
    assert!(
        matches!(&frames[2], MetadataRecord::TopicDeleted { id, name } if *id == [7; 16] && name == "orders")
    );
    assert_eq!(
        frames[3],
        MetadataRecord::ProducerIdsAllocated { first: 5, count: 9 }
    );
    assert_eq!(frames[4], MetadataRecord::TopicConfigsAltered(meta.clone()));
}

#[test]
fn v1_snapshot_decodes_without_brokers() {
    let (_, bytes) = fixtures()
        .into_iter()
        .find(|(k, _)| k == "SNAP")
        .expect("snapshot fixture");
    let payload = decode_snapshot(&bytes).expect("v1 snapshot decodes");
    assert_eq!((payload.version, payload.next_producer_id), (4, 14));
    assert_eq!(payload.topics.len(), 1);
    assert!(payload.brokers.is_empty() && payload.partitions.is_empty());
}

fn v2_records() -> Vec<MetadataRecord> {
    fixtures_v2()
        .into_iter()
        .filter(|(k, _)| k == "FRAME")
        .map(|(_, bytes)| {
            let (entry, len) = decode_entry(&bytes).expect("v2 frame decodes");
            assert_eq!(len, bytes.len());
            // The same frames through the reader of batches and single records.
            let (entries, _) = decode_frame(&bytes).expect("v2 frame decodes as a frame");
            assert_eq!(entries, vec![entry.clone()]);
            entry.record
        })
        .collect()
}

fn placement(broker: i32, shard: u32) -> Placement {
    Placement { broker, shard }
}

#[test]
fn v2_cluster_records_decode_and_apply_as_registrations() {
    let records = v2_records();
    assert_eq!(records.len(), 4);
    let MetadataRecord::LegacyBrokerRegistered(broker) = &records[0] else {
        panic!("{:?}", records[0])
    };
    assert_eq!((broker.node_id, broker.shards), (1, 4));
    assert_eq!(broker.rack.as_deref(), Some("r1"));
    assert_eq!(
        records[1],
        MetadataRecord::BrokerFenced {
            node_id: 1,
            fenced: true
        }
    );
    assert_eq!(
        records[2],
        MetadataRecord::PartitionsPlaced {
            id: [7; 16],
            first: 0,
            placements: vec![placement(1, 3), placement(2, 0)],
        }
    );
    assert_eq!(
        records[3],
        MetadataRecord::PartitionsAdded {
            id: [8; 16],
            partitions: 5
        }
    );
    // Applied as an old cluster log would be: brokers 1 and 2, topic 7 placed on them.
    let mut broker2 = (**broker).clone();
    broker2.node_id = 2;
    let topic = |id: u8, name: &str| TopicMeta {
        id: [id; 16],
        name: name.into(),
        partitions: 0,
        replication_factor: 1,
        configs: Default::default(),
    };
    let log = [
        MetadataRecord::ClusterInit {
            cluster_id: "abc".into(),
        },
        records[0].clone(),
        MetadataRecord::LegacyBrokerRegistered(Box::new(broker2)),
        MetadataRecord::TopicCreated(topic(7, "orders")),
        records[2].clone(),
        records[1].clone(),
    ];
    let (image, _) = MetadataImage::empty(1).apply_batch(&log).expect("applies");
    // Registered before endpoints: its one address answers on every listener.
    let b1 = &image.brokers[&1];
    assert!(b1.endpoints.is_empty());
    assert_eq!(b1.endpoint("SSL"), Some((b1.host.as_str(), b1.port)));
    assert_eq!(
        image.partition(&[7; 16], 1),
        Some(&PartitionRegistration::single(placement(2, 0)))
    );
    assert_eq!(image.partition_leader(&[7; 16], 1), Some(2));
    // Broker 1 was fenced after the placement (an old log has no election records).
    assert_eq!(image.partition_leader(&[7; 16], 0), None);
    // A single node's PartitionsAdded still grows a topic without registrations.
    let single = [
        MetadataRecord::TopicCreated(TopicMeta {
            partitions: 2,
            ..topic(8, "single")
        }),
        records[3].clone(),
    ];
    let (image, _) = image.apply_batch(&single).expect("applies");
    assert_eq!(image.topic("single").expect("single").partitions, 5);
    assert_eq!(image.unregistered_partitions(), vec![([8; 16], 0, 5)]);
}

#[test]
fn v2_snapshot_loads_placements_as_registrations() {
    let (_, bytes) = fixtures_v2()
        .into_iter()
        .find(|(k, _)| k == "SNAP")
        .expect("snapshot fixture");
    let payload = decode_snapshot(&bytes).expect("v2 snapshot decodes");
    assert_eq!((payload.version, payload.next_producer_id), (9, 14));
    assert_eq!((payload.topics.len(), payload.brokers.len()), (2, 2));
    assert_eq!(
        payload.partitions,
        vec![(
            [7; 16],
            vec![
                PartitionRegistration::single(placement(1, 3)),
                PartitionRegistration::single(placement(2, 0)),
            ]
        )]
    );
    let image = MetadataImage::from_snapshot(1, payload).expect("image");
    assert_eq!(image.partition_leader(&[7; 16], 0), Some(1));
    // Broker 2 is fenced in the snapshot.
    assert_eq!(image.partition_leader(&[7; 16], 1), None);
    assert_eq!(image.unregistered_partitions(), vec![([8; 16], 0, 3)]);
}
