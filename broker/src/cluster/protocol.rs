//! The controller protocol: frames between voters (Raft messages) and between brokers and
//! the quorum (requests and their responses), over TCP as `len: u32 LE | crc32c: u32 LE |
//! rkyv ControllerFrame`. Not on the data path.

use controller::quorum::QuorumStatus;
use controller::{ApplyOutcome, MetadataCommand, MetadataRecord};
use rkyv::rancor;
use std::io::{Read, Write};

/// Largest controller frame (a Raft snapshot of a large image fits); a larger length closes
/// the connection.
pub const FRAME_BYTES_MAX: usize = 64 << 20;

/// A frame of the controller protocol.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ControllerFrame {
    /// A Raft message between voters (raft-rs's protobuf encoding).
    Raft {
        from: u64,
        message: Vec<u8>,
    },
    /// A broker's request to the active controller; answered by a `Response` on the same
    /// connection.
    Request(ControllerRequest),
    Response(ControllerResponse),
}

#[derive(Clone, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ControllerRequest {
    /// Apply a metadata command (active controller only).
    Propose(MetadataCommand),
    /// A registered broker is alive (active controller only; unfences it if fenced).
    Heartbeat { node_id: i32 },
    /// The image, if newer than `known_version` (any voter).
    FetchImage { known_version: u64 },
    /// The records applied after `known_version` (any voter): answered by `Updates`, or by
    /// `Image` when the voter no longer keeps them all. With nothing newer, the voter waits
    /// up to `wait_ms` for a change before answering an empty `Updates`.
    FetchUpdates { known_version: u64, wait_ms: u32 },
    /// The quorum's state for DescribeQuorum (active controller only).
    DescribeQuorum,
}

#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ControllerResponse {
    /// Applied: the image version after it and what each of its records did.
    Applied {
        version: u64,
        outcomes: Vec<ApplyOutcome>,
    },
    /// Refused with a Kafka error code and a message.
    Refused {
        code: i16,
        message: String,
    },
    /// Not the active controller; ask `leader` (its node id) if known.
    NotController {
        leader: Option<u64>,
    },
    /// A metadata snapshot file (see `controller::codec`) of the image, or `None` if the
    /// caller is up to date.
    Image(Option<Vec<u8>>),
    /// The records after the caller's version, in order; empty when none came in time.
    Updates {
        records: Vec<MetadataRecord>,
    },
    Quorum(QuorumStatus),
    Ok,
}

pub fn write_frame(stream: &mut impl Write, frame: &ControllerFrame) -> std::io::Result<()> {
    let payload = rkyv::to_bytes::<rancor::Error>(frame).map_err(std::io::Error::other)?;
    let mut bytes = Vec::with_capacity(8 + payload.len());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    // A TLS stream sends what it holds on flush; a `TcpStream`'s flush does nothing.
    stream.write_all(&bytes).and_then(|()| stream.flush())
}

/// How much of a controller frame is read (and allocated) at a time.
const FRAME_READ_STEP_BYTES: usize = 1 << 20;

pub fn read_frame(stream: &mut impl Read) -> std::io::Result<ControllerFrame> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    if len > FRAME_BYTES_MAX {
        return Err(bad("controller frame too large"));
    }
    // Grown as the bytes arrive: a peer that announces a large frame and sends little holds
    // what it sent, not `len`.
    let mut payload = rkyv::util::AlignedVec::<16>::new();
    while payload.len() < len {
        let filled = payload.len();
        payload.resize(filled + (len - filled).min(FRAME_READ_STEP_BYTES), 0);
        stream.read_exact(&mut payload[filled..])?;
    }
    if crc32c::crc32c(&payload) != crc {
        return Err(bad("controller frame checksum mismatch"));
    }
    rkyv::from_bytes::<ControllerFrame, rancor::Error>(&payload)
        .map_err(|e| bad(&format!("bad controller frame: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_frame_arrives_in_steps_and_a_truncated_one_is_refused() {
        let frame = ControllerFrame::Raft {
            from: 3,
            message: vec![7; 3 * FRAME_READ_STEP_BYTES + 5],
        };
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &frame).expect("write");
        match read_frame(&mut &bytes[..]).expect("read") {
            ControllerFrame::Raft { from, message } => {
                assert_eq!((from, message.len()), (3, 3 * FRAME_READ_STEP_BYTES + 5));
                assert!(message.iter().all(|&b| b == 7));
            }
            other => panic!("read back {other:?}"),
        }
        let truncated = &bytes[..bytes.len() - 1];
        let e = read_frame(&mut &truncated[..]).expect_err("short frame");
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn frames_round_trip_and_damage_is_refused() {
        let frame = ControllerFrame::Raft {
            from: 3,
            message: vec![1, 2, 3, 4],
        };
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &frame).expect("write");
        let ControllerFrame::Raft { from, message } =
            read_frame(&mut bytes.as_slice()).expect("read")
        else {
            panic!("not a raft frame")
        };
        assert_eq!((from, message), (3, vec![1, 2, 3, 4]));
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(read_frame(&mut bytes.as_slice()).is_err());
        assert!(read_frame(&mut &bytes[..5]).is_err());
    }
}
