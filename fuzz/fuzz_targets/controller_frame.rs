//! The controller protocol: frames between voters and from brokers to the quorum
//! (`broker::cluster::protocol::read_frame`, rkyv behind a length and CRC32C), the metadata
//! log's record frames and snapshot files (`controller::codec`), and Raft messages
//! (`controller::quorum::decode_message`, protobuf).
//!
//! Input: a mode byte, then the bytes. Mode bits 0-1 pick the parser (0 wire frame, 1 log
//! frames, 2 snapshot, 3 Raft message); bit 2 fixes the frame or snapshot CRC first, so the
//! fuzzer reaches the rkyv validation behind it.
//! Asserts: no panic; what decodes re-encodes and decodes to the same value (Raft messages:
//! the same known fields and encoded size); decoded log
//! records applied in order to an image either apply or are refused, never panic.
#![no_main]

use broker::cluster::protocol::{read_frame, write_frame};
use controller::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: spate_fuzz::write_seeds_if_asked("controller_frame"),
    |data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let mut bytes = rest.to_vec();
        let fix_crc = mode & 4 != 0;
        match mode & 3 {
            0 => {
                if fix_crc {
                    spate_fuzz::fix_le_frame_crc(&mut bytes, u32::MAX);
                }
                wire_frame(&bytes);
            }
            1 => {
                if fix_crc {
                    spate_fuzz::fix_le_frame_crc(&mut bytes, !codec::BATCH_FLAG);
                }
                log_frames(&bytes);
            }
            2 => {
                if fix_crc && bytes.len() >= 16 {
                    let crc = crc32c::crc32c(&bytes[16..]);
                    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
                }
                snapshot(&bytes);
            }
            _ => raft_message(&bytes),
        }
    }
);

fn wire_frame(bytes: &[u8]) {
    let Ok(frame) = read_frame(&mut &bytes[..]) else {
        return;
    };
    let mut encoded = Vec::new();
    write_frame(&mut encoded, &frame).expect("a decoded frame encodes");
    let again = read_frame(&mut encoded.as_slice()).expect("a re-encoded frame decodes");
    assert_eq!(
        format!("{again:?}"),
        format!("{frame:?}"),
        "wire frame round trip"
    );
}

fn log_frames(mut bytes: &[u8]) {
    let mut image = controller::MetadataImage::empty(1);
    while let Some((entries, frame_len)) = codec::decode_frame(bytes) {
        assert!(frame_len >= codec::FRAME_HEADER_BYTES && frame_len <= bytes.len());
        assert!(!entries.is_empty());
        assert!(entries.windows(2).all(|w| w[1].offset == w[0].offset + 1));
        let encoded = if entries.len() == 1 && codec::decode_entry(bytes).is_some() {
            codec::encode_entry(&entries[0])
        } else {
            let records = entries.iter().map(|e| e.record.clone()).collect();
            codec::encode_records(entries[0].offset, records)
        };
        let (again, again_len) = codec::decode_frame(&encoded).expect("a re-encoded frame decodes");
        assert_eq!(again, entries, "log frame round trip");
        assert_eq!(again_len, encoded.len());
        for entry in &entries {
            // The state machine refuses what does not fit; it must never panic on it.
            if let Ok((next, _)) = image.apply(image.version + 1, &entry.record) {
                image = next;
            }
        }
        bytes = &bytes[frame_len..];
    }
}

fn snapshot(bytes: &[u8]) {
    let Ok(payload) = codec::decode_snapshot(bytes) else {
        return;
    };
    let encoded = codec::encode_snapshot(&payload);
    let again = codec::decode_snapshot(&encoded).expect("a re-encoded snapshot decodes");
    assert!(again == payload, "snapshot round trip");
}

fn raft_message(bytes: &[u8]) {
    let Some(message) = controller::quorum::decode_message(bytes) else {
        return;
    };
    let encoded = controller::quorum::encode_message(&message);
    let again = controller::quorum::decode_message(&encoded).expect("a re-encoded message decodes");
    // Compared by their known fields (the text format) and encoded size: rust-protobuf keeps
    // unknown fields in a HashMap (written in random order) and its `==` tells an empty
    // parsed unknown-field set from none. Spate never re-encodes a received message.
    assert_eq!(
        format!("{again:?}"),
        format!("{message:?}"),
        "raft message round trip"
    );
    assert_eq!(
        controller::quorum::encode_message(&again).len(),
        encoded.len()
    );
}
