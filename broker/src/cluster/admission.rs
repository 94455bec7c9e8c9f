//! What a controller voter's port admits (issue 19, "between nodes"): at most
//! [`CONNECTIONS_MAX`] connections at once (one more is closed at once), frames of at most
//! `protocol::FRAME_BYTES_MAX` (a larger length closes the connection before anything is
//! allocated), and [`Claims`]: a connection speaks for one node. Raft messages must come from
//! another voter of the quorum, from an address its configured host resolves to; the first
//! node id a connection names (as Raft sender, or in a broker's heartbeat, registration,
//! shutdown, offline replica or ISR change) is the only one it may name afterwards.
//!
//! Before any frame, the controller listener's security (`security`, `transport`): on SSL and
//! SASL_SSL a TLS handshake (with `ssl.client.auth=required`, a certificate the listener's
//! truststore signed), on SASL_PLAINTEXT and SASL_SSL a PLAIN exchange with the listener's
//! JAAS users; with an authorizer on, the peer's principal (the certificate's mapped subject,
//! the SASL user, or `User:ANONYMOUS`) must be in `super.users` or have ClusterAction on the
//! cluster in the voter's ACLs, checked once when the connection is admitted (Kafka checks
//! every request; an ACL removed later takes effect on the peer's next connection). A refused
//! connection is closed and logged once per peer address and reason ([`RefusalLog`]).
//! Authentication proves who a peer is, not which node: a peer that passes may still name
//! any node id once, so node ids are as safe as the credentials that grant the port.

use super::protocol::{ControllerFrame, ControllerRequest};
use controller::MetadataCommand;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Connections a voter serves at once (brokers hold 3 each, voters 1 each way).
pub const CONNECTIONS_MAX: usize = 256;
/// Frames waiting for the driver, from every connection together; a connection whose frame
/// does not fit waits (and so does its peer, through TCP).
pub const INBOUND_FRAMES_MAX: usize = 1024;

/// The voter's count of open connections.
#[derive(Clone, Default)]
pub struct ConnectionCount(Arc<AtomicUsize>);

/// One admitted connection; the count drops when it does.
pub struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionCount {
    /// A slot when fewer than `max` connections are open.
    pub fn admit(&self, max: usize) -> Option<ConnectionSlot> {
        let admitted = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| ConnectionSlot(self.0.clone()))
    }

    pub fn open(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Distinct refusal reasons logged; past this, refusals are no longer logged.
pub const REFUSALS_LOGGED_MAX: usize = 256;

/// The reasons of refused connections already logged: a peer that retries every 200 ms with
/// a certificate the port does not trust is logged once, not every 200 ms.
#[derive(Default)]
pub struct RefusalLog(Mutex<BTreeSet<String>>);

impl RefusalLog {
    /// Whether `reason` is new (and so to be logged), at most [`REFUSALS_LOGGED_MAX`] times.
    pub fn first_time(&self, reason: &str) -> bool {
        let mut seen = self.0.lock().expect("not poisoned");
        seen.len() < REFUSALS_LOGGED_MAX && seen.insert(reason.to_owned())
    }
}

/// The voters this voter accepts Raft messages from, and the addresses each may send from
/// (empty: its host did not resolve when the voter started; any address then).
#[derive(Clone, Debug)]
pub struct Voters {
    me: u64,
    addresses: BTreeMap<u64, Vec<IpAddr>>,
}

impl Voters {
    /// From the quorum (`id@host:port` entries) as `--controller-quorum` gives it.
    pub fn resolve(me: u64, quorum: &[(u64, String)]) -> Voters {
        let addresses = quorum
            .iter()
            .map(|(id, address)| {
                let ips = address
                    .to_socket_addrs()
                    .map(|a| a.map(|a| a.ip()).collect())
                    .unwrap_or_default();
                (*id, ips)
            })
            .collect();
        Voters { me, addresses }
    }
}

/// What one connection has claimed to be.
#[derive(Debug)]
pub struct Claims {
    voters: Arc<Voters>,
    peer: Option<IpAddr>,
    node: Option<i64>,
}

impl Claims {
    pub fn new(voters: Arc<Voters>, peer: Option<IpAddr>) -> Claims {
        Claims {
            voters,
            peer,
            node: None,
        }
    }

    /// Whether `frame` may come on this connection; `Err` says why not (the connection is
    /// then closed).
    pub fn check(&mut self, frame: &ControllerFrame) -> Result<(), String> {
        match frame {
            ControllerFrame::Raft { from, .. } => {
                self.check_voter(*from)?;
                self.claim(*from as i64)
            }
            ControllerFrame::Request(request) => match node_named(request) {
                Some(node) => self.claim(i64::from(node)),
                None => Ok(()),
            },
            ControllerFrame::Response(_) => Err("a response sent to a voter".into()),
        }
    }

    fn check_voter(&self, from: u64) -> Result<(), String> {
        if from == self.voters.me {
            return Err(format!("a raft message claiming this voter's id {from}"));
        }
        let Some(ips) = self.voters.addresses.get(&from) else {
            return Err(format!("a raft message from {from}, not a voter"));
        };
        match self.peer {
            Some(peer) if !ips.is_empty() && !ips.contains(&peer) => Err(format!(
                "a raft message from voter {from} sent from {peer}, not its address"
            )),
            _ => Ok(()),
        }
    }

    fn claim(&mut self, node: i64) -> Result<(), String> {
        match self.node {
            Some(claimed) if claimed != node => Err(format!(
                "a connection of node {claimed} speaking for node {node}"
            )),
            _ => {
                self.node = Some(node);
                Ok(())
            }
        }
    }
}

/// The node a request speaks for, when it names one.
fn node_named(request: &ControllerRequest) -> Option<i32> {
    match request {
        ControllerRequest::Heartbeat { node_id } => Some(*node_id),
        ControllerRequest::Propose(command) => match command {
            MetadataCommand::RegisterBroker { node_id, .. }
            | MetadataCommand::ShutdownBroker { node_id }
            | MetadataCommand::ReplicaOffline { node_id, .. } => Some(*node_id),
            MetadataCommand::AlterPartition { leader_id, .. } => Some(*leader_id),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters() -> Arc<Voters> {
        let quorum = [
            (1, "127.0.0.1:1".to_string()),
            (2, "127.0.0.2:1".to_string()),
            (3, "unresolvable.invalid:1".to_string()),
        ];
        Arc::new(Voters::resolve(1, &quorum))
    }

    fn raft(from: u64) -> ControllerFrame {
        ControllerFrame::Raft {
            from,
            message: Vec::new(),
        }
    }

    fn heartbeat(node_id: i32) -> ControllerFrame {
        ControllerFrame::Request(ControllerRequest::Heartbeat { node_id })
    }

    #[test]
    fn raft_comes_only_from_another_voter_at_its_address() {
        let from = |ip: &str| Claims::new(voters(), Some(ip.parse().unwrap()));
        assert!(from("127.0.0.2").check(&raft(2)).is_ok());
        let err = from("127.0.0.1").check(&raft(2)).unwrap_err();
        assert!(err.contains("not its address"), "{err}");
        assert!(from("127.0.0.2")
            .check(&raft(1))
            .unwrap_err()
            .contains("this voter's id"));
        assert!(from("127.0.0.2")
            .check(&raft(9))
            .unwrap_err()
            .contains("not a voter"));
        // A voter whose host did not resolve may send from anywhere.
        assert!(from("10.1.1.1").check(&raft(3)).is_ok());
    }

    #[test]
    fn a_connection_speaks_for_one_node() {
        let mut claims = Claims::new(voters(), Some("127.0.0.9".parse().unwrap()));
        assert!(claims
            .check(&ControllerFrame::Request(ControllerRequest::DescribeQuorum))
            .is_ok());
        assert!(claims.check(&heartbeat(4)).is_ok());
        assert!(claims.check(&heartbeat(4)).is_ok());
        let shutdown = MetadataCommand::ShutdownBroker { node_id: 5 };
        let err = claims
            .check(&ControllerFrame::Request(ControllerRequest::Propose(
                shutdown,
            )))
            .unwrap_err();
        assert!(err.contains("node 4 speaking for node 5"), "{err}");
        let mut raft_then_broker = Claims::new(voters(), Some("127.0.0.2".parse().unwrap()));
        assert!(raft_then_broker.check(&raft(2)).is_ok());
        assert!(raft_then_broker.check(&heartbeat(3)).is_err());
    }

    #[test]
    fn each_refusal_reason_is_logged_once_up_to_the_bound() {
        let log = RefusalLog::default();
        assert!(log.first_time("127.0.0.1: TLS handshake failed"));
        assert!(!log.first_time("127.0.0.1: TLS handshake failed"));
        assert!(log.first_time("127.0.0.2: TLS handshake failed"));
        for i in 0..REFUSALS_LOGGED_MAX {
            log.first_time(&format!("reason {i}"));
        }
        assert!(!log.first_time("one more"));
    }

    #[test]
    fn connections_are_counted_up_to_the_bound() {
        let count = ConnectionCount::default();
        let a = count.admit(2).expect("first");
        let _b = count.admit(2).expect("second");
        assert!(count.admit(2).is_none());
        drop(a);
        assert_eq!(count.open(), 1);
        assert!(count.admit(2).is_some());
    }
}
