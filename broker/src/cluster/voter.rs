//! A controller voter's runtime: the sans-IO [`Quorum`] driven on one thread, its Raft
//! messages carried over TCP in rkyv frames (`len: u32 LE | crc32c: u32 LE | rkyv
//! ControllerFrame`). Not on the data path: plain std sockets and threads, one reader thread
//! per inbound connection feeding the driver through a channel.

use super::options::ClusterOptions;
use controller::quorum::{self, Quorum, QuorumConfig, RaftMessage, RaftMessageType};
use rkyv::rancor;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// One Raft tick; the election timeout is 10-20 ticks, heartbeats every 2.
pub const TICK: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
const FRAME_BYTES_MAX: usize = 64 << 20;

/// A frame of the controller protocol.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ControllerFrame {
    /// A Raft message between voters (raft-rs's protobuf encoding).
    Raft { from: u64, message: Vec<u8> },
}

pub fn write_frame(stream: &mut impl Write, frame: &ControllerFrame) -> std::io::Result<()> {
    let payload = rkyv::to_bytes::<rancor::Error>(frame).map_err(std::io::Error::other)?;
    let mut bytes = Vec::with_capacity(8 + payload.len());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    stream.write_all(&bytes)
}

pub fn read_frame(stream: &mut impl Read) -> std::io::Result<ControllerFrame> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    if len > FRAME_BYTES_MAX {
        return Err(bad("controller frame too large"));
    }
    let mut payload = rkyv::util::AlignedVec::<16>::with_capacity(len);
    payload.resize(len, 0);
    stream.read_exact(&mut payload)?;
    if crc32c::crc32c(&payload) != crc {
        return Err(bad("controller frame checksum mismatch"));
    }
    rkyv::from_bytes::<ControllerFrame, rancor::Error>(&payload)
        .map_err(|e| bad(&format!("bad controller frame: {e}")))
}

struct Peer {
    address: String,
    stream: Option<TcpStream>,
    retry_at: Instant,
}

impl Peer {
    fn send(&mut self, frame: &ControllerFrame) -> std::io::Result<()> {
        if self.stream.is_none() {
            if Instant::now() < self.retry_at {
                return Err(std::io::ErrorKind::NotConnected.into());
            }
            self.retry_at = Instant::now() + RECONNECT_DELAY;
            let stream = TcpStream::connect_timeout(&resolve(&self.address)?, CONNECT_TIMEOUT)?;
            stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        let sent = write_frame(stream, frame);
        if sent.is_err() {
            self.stream = None;
        }
        sent
    }
}

fn resolve(address: &str) -> std::io::Result<SocketAddr> {
    address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{address} resolves to no address")))
}

/// Runs this node's voter until `stop` is set. Returns a one-line reason on failure.
pub fn run(options: &ClusterOptions, data_dir: &Path, stop: &AtomicBool) -> Result<(), String> {
    let listen = options
        .controller_listen
        .as_deref()
        .expect("a voter has a controller listener");
    let voters: Vec<u64> = options.quorum.iter().map(|(id, _)| *id).collect();
    let config = QuorumConfig::new(options.node_id, voters);
    let mut quorum = Quorum::open(&data_dir.join(quorum::RAFT_DIR), config)
        .map_err(|e| format!("cannot open the controller quorum's log: {e}"))?;
    let listener = TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen for controllers on {listen}: {e}"))?;
    let (inbound_tx, inbound) = mpsc::channel::<RaftMessage>();
    std::thread::Builder::new()
        .name("controller-accept".into())
        .spawn(move || accept(listener, inbound_tx))
        .map_err(|e| format!("cannot start the controller listener: {e}"))?;
    let mut peers: BTreeMap<u64, Peer> = options
        .quorum
        .iter()
        .filter(|(id, _)| *id != options.node_id)
        .map(|(id, address)| {
            let peer = Peer {
                address: address.clone(),
                stream: None,
                retry_at: Instant::now(),
            };
            (*id, peer)
        })
        .collect();
    println!(
        "spate ready: controller node {} listening on {listen}, quorum {:?}",
        options.node_id, options.quorum
    );
    info!(node = options.node_id, %listen, "controller ready");
    let mut next_tick = Instant::now() + TICK;
    let mut known_leader = None;
    while !stop.load(Ordering::Relaxed) {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match inbound.recv_timeout(wait) {
            Ok(message) => {
                quorum.step(message);
                while let Ok(message) = inbound.try_recv() {
                    quorum.step(message);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("the controller listener stopped".into())
            }
        }
        if Instant::now() >= next_tick {
            quorum.tick();
            next_tick += TICK;
        }
        let output = quorum
            .process()
            .map_err(|e| format!("controller quorum failed: {e}"))?;
        for message in output.messages {
            send(&mut quorum, &mut peers, options.node_id, message);
        }
        let leader = quorum.leader();
        if leader != known_leader {
            known_leader = leader;
            match leader {
                Some(l) => info!(
                    "controller quorum: active controller is node {l} (term {})",
                    quorum.term()
                ),
                None => info!("controller quorum: no active controller"),
            }
        }
    }
    info!("controller stopped");
    Ok(())
}

fn send(quorum: &mut Quorum, peers: &mut BTreeMap<u64, Peer>, from: u64, message: RaftMessage) {
    let to = message.to;
    let snapshot = message.get_msg_type() == RaftMessageType::MsgSnapshot;
    let Some(peer) = peers.get_mut(&to) else {
        return;
    };
    let frame = ControllerFrame::Raft {
        from,
        message: quorum::encode_message(&message),
    };
    let sent = peer.send(&frame);
    if sent.is_err() {
        quorum.report_unreachable(to);
    }
    if snapshot {
        quorum.report_snapshot(to, sent.is_ok());
    }
}

fn accept(listener: TcpListener, inbound: mpsc::Sender<RaftMessage>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let inbound = inbound.clone();
        let spawned = std::thread::Builder::new()
            .name("controller-peer".into())
            .spawn(move || {
                while let Ok(frame) = read_frame(&mut stream) {
                    let ControllerFrame::Raft { from, message } = frame;
                    match quorum::decode_message(&message) {
                        Some(m) if m.from == from => {
                            if inbound.send(m).is_err() {
                                return;
                            }
                        }
                        _ => {
                            warn!(from, "dropping a malformed raft message");
                            return;
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            warn!("cannot serve a controller connection: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_refused() {
        let frame = ControllerFrame::Raft {
            from: 3,
            message: vec![1, 2, 3, 4],
        };
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &frame).expect("write");
        let ControllerFrame::Raft { from, message } =
            read_frame(&mut bytes.as_slice()).expect("read");
        assert_eq!((from, message), (3, vec![1, 2, 3, 4]));
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(read_frame(&mut bytes.as_slice()).is_err());
        assert!(read_frame(&mut &bytes[..5]).is_err());
    }
}
