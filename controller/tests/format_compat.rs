//! Metadata logs and snapshots written before the cluster records were added still decode:
//! `fixtures/format-v1.txt` holds frames and a snapshot encoded by that version.

use controller::codec::{decode_entry, decode_snapshot};
use controller::MetadataRecord;

fn fixtures() -> Vec<(String, Vec<u8>)> {
    include_str!("fixtures/format-v1.txt")
        .lines()
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
    assert!(payload.brokers.is_empty() && payload.placements.is_empty());
}
