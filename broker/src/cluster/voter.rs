//! A controller voter's runtime: the sans-IO [`Quorum`] driven on one thread, its Raft
//! messages carried over TCP in rkyv frames (`len: u32 LE | crc32c: u32 LE | rkyv
//! ControllerFrame`). Not on the data path: plain std sockets and threads, one reader thread
//! per inbound connection feeding the driver through a channel.

use super::admission::{self, Claims, ConnectionCount, ConnectionSlot, RefusalLog, Voters};
use super::options::ClusterOptions;
use super::protocol::{
    read_frame, write_frame, ControllerFrame, ControllerRequest, ControllerResponse,
};
use super::security::{ClientSide, ControllerSecurity, ServerSide};
use super::transport::{self, ControllerStream};
use controller::acl::Acls;
use controller::codec::{self, SnapshotPayload};
use controller::quorum::{
    self, CompletionError, ProposeError, Quorum, QuorumConfig, RaftMessage, RaftMessageType,
};
use controller::{ElectionType, Liveness, MetadataCommand};
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// One Raft tick; the election timeout is 10-20 ticks, heartbeats every 2.
pub const TICK: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// Without an active controller this long, a voter says which voters it cannot reach (and again
/// every `NO_QUORUM_WARN_EVERY`).
const NO_QUORUM_WARN_AFTER: Duration = Duration::from_secs(5);
const NO_QUORUM_WARN_EVERY: Duration = Duration::from_secs(10);
/// The longest a `FetchUpdates` waits for a change (well under the request timeout).
const UPDATES_WAIT_MAX_MS: u32 = 2000;

struct Peer {
    address: String,
    /// How this voter connects to the others (the controller listener's client side).
    client: ClientSide,
    stream: Option<ControllerStream>,
    retry_at: Instant,
    /// Why the last connect or write failed; `None` once a frame went through.
    last_error: Option<String>,
}

impl Peer {
    fn send(&mut self, frame: &ControllerFrame) -> std::io::Result<()> {
        let sent = self.try_send(frame);
        match &sent {
            Ok(()) => self.last_error = None,
            // Waiting to reconnect: the error that made it wait stays.
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {}
            Err(e) => self.last_error = Some(e.to_string()),
        }
        sent
    }

    fn try_send(&mut self, frame: &ControllerFrame) -> std::io::Result<()> {
        if self.stream.is_none() {
            if Instant::now() < self.retry_at {
                return Err(std::io::ErrorKind::NotConnected.into());
            }
            self.retry_at = Instant::now() + RECONNECT_DELAY;
            let stream =
                transport::connect(&self.address, &self.client, CONNECT_TIMEOUT, WRITE_TIMEOUT)?;
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

/// What the connection threads hand the driver.
enum Inbound {
    Raft(RaftMessage),
    Request(ControllerRequest, mpsc::Sender<ControllerResponse>),
}

/// What the active controller does on its own, from the broker settings.
#[derive(Clone, Debug)]
pub struct VoterSettings {
    /// A broker silent this long is fenced (`broker.session.timeout.ms`).
    pub session_timeout_ms: u64,
    /// `auto.leader.rebalance.enable` (None: off) and its settings.
    pub leader_rebalance: Option<LeaderRebalance>,
    /// The controller listener's TLS, SASL and authorization (`security`).
    pub security: Arc<ControllerSecurity>,
}

/// Automatic preferred-leader elections (Kafka's `auto.leader.rebalance.enable`).
#[derive(Clone, Copy, Debug)]
pub struct LeaderRebalance {
    /// `leader.imbalance.check.interval.seconds`.
    pub interval: Duration,
    /// `leader.imbalance.per.broker.percentage`.
    pub imbalance_percentage: u32,
}

/// A broker's `FetchUpdates` waiting for the image to move past `known_version`.
struct Watcher {
    known_version: u64,
    until: Instant,
    reply: mpsc::Sender<ControllerResponse>,
}

/// The voter's driver: the quorum, its peers, and the active controller's duties.
struct Driver {
    quorum: Quorum,
    node_id: u64,
    peers: BTreeMap<u64, Peer>,
    /// Proposals waiting for their entry: token -> who to answer.
    waiting: BTreeMap<u64, mpsc::Sender<ControllerResponse>>,
    /// Brokers waiting for records after the version they know.
    watchers: Vec<Watcher>,
    liveness: Liveness,
    session_timeout_ms: u64,
    leader_rebalance: Option<LeaderRebalance>,
    /// When the next leader imbalance check is due; None until this voter is the active
    /// controller (the first check comes one interval after it becomes active).
    rebalance_at: Option<Instant>,
    started: Instant,
    was_leader: bool,
    known_leader: Option<u64>,
    /// Since when no active controller is known, and when that was last logged.
    leaderless_since: Instant,
    no_quorum_warned_at: Option<Instant>,
    /// The image's ACLs as the connection threads authorize with them (an authorizer on).
    acls: Option<SharedAcls>,
}

/// The ACLs of the voter's latest image, for the connection threads.
type SharedAcls = Arc<Mutex<Arc<Acls>>>;

/// Runs this node's voter until `stop` is set. While this voter is the active controller,
/// brokers that stop heartbeating for the session timeout are fenced and, with leader
/// rebalancing on, imbalanced leadership goes back to the preferred replicas. Returns a
/// one-line reason on failure.
pub fn run(
    options: &ClusterOptions,
    data_dir: &Path,
    settings: &VoterSettings,
    stop: &AtomicBool,
) -> Result<(), String> {
    let listen = options
        .controller_listen
        .as_deref()
        .expect("a voter has a controller listener");
    let voters: Vec<u64> = options.quorum.iter().map(|(id, _)| *id).collect();
    let config = QuorumConfig::new(options.node_id, voters);
    let quorum = Quorum::open(&data_dir.join(quorum::RAFT_DIR), config)
        .map_err(|e| format!("cannot open the controller quorum's log: {e}"))?;
    let listener = TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen for controllers on {listen}: {e}"))?;
    let (inbound_tx, inbound) = mpsc::sync_channel::<Inbound>(admission::INBOUND_FRAMES_MAX);
    let voters = Arc::new(admission::Voters::resolve(options.node_id, &options.quorum));
    let security = &settings.security;
    let acls = security
        .server
        .authorizer
        .is_some()
        .then(|| Arc::new(Mutex::new(quorum.image().acls.clone())));
    let port = Port {
        server: security.server.clone(),
        acls: acls.clone(),
        refusals: Arc::default(),
    };
    std::thread::Builder::new()
        .name("controller-accept".into())
        .spawn(move || accept(listener, inbound_tx, voters, port))
        .map_err(|e| format!("cannot start the controller listener: {e}"))?;
    let peers = options
        .quorum
        .iter()
        .filter(|(id, _)| *id != options.node_id)
        .map(|(id, address)| {
            let peer = Peer {
                address: address.clone(),
                client: security.client.clone(),
                stream: None,
                retry_at: Instant::now(),
                last_error: None,
            };
            (*id, peer)
        })
        .collect();
    let mut driver = Driver {
        quorum,
        node_id: options.node_id,
        peers,
        waiting: BTreeMap::new(),
        watchers: Vec::new(),
        liveness: Liveness::default(),
        session_timeout_ms: settings.session_timeout_ms,
        leader_rebalance: settings.leader_rebalance,
        rebalance_at: None,
        started: Instant::now(),
        was_leader: false,
        known_leader: None,
        leaderless_since: Instant::now(),
        no_quorum_warned_at: None,
        acls,
    };
    if !options.roles.broker {
        // A combined node says it is ready once its broker is.
        println!(
            "spate ready: controller node {} listening on {listen}, quorum {:?}",
            options.node_id, options.quorum
        );
    }
    info!(node = options.node_id, %listen, protocol = security.protocol_name(), listener = %security.listener, "controller ready");
    let mut next_tick = Instant::now() + TICK;
    while !stop.load(Ordering::Relaxed) {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match inbound.recv_timeout(wait) {
            Ok(first) => {
                driver.take(first);
                while let Ok(more) = inbound.try_recv() {
                    driver.take(more);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("the controller listener stopped".into())
            }
        }
        if Instant::now() >= next_tick {
            driver.quorum.tick();
            driver.fence_silent_brokers();
            driver.rebalance_leaders();
            driver.warn_without_quorum();
            next_tick += TICK;
        }
        driver.process()?;
    }
    info!("controller stopped");
    Ok(())
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn take(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Raft(message) => self.quorum.step(message),
            Inbound::Request(request, reply) => self.serve(request, reply),
        }
    }

    fn serve(&mut self, request: ControllerRequest, reply: mpsc::Sender<ControllerResponse>) {
        let answer = match request {
            ControllerRequest::FetchImage { known_version } => {
                let image = self.quorum.image();
                let newer = image.version > known_version && !image.cluster_id.is_empty();
                ControllerResponse::Image(
                    newer.then(|| codec::encode_snapshot(&SnapshotPayload::of(&image))),
                )
            }
            ControllerRequest::FetchUpdates {
                known_version,
                wait_ms,
            } => {
                let wait = Duration::from_millis(wait_ms.min(UPDATES_WAIT_MAX_MS).into());
                self.watchers.push(Watcher {
                    known_version,
                    until: Instant::now() + wait,
                    reply,
                });
                self.answer_watchers();
                return;
            }
            ControllerRequest::DescribeQuorum => {
                if self.quorum.is_leader() {
                    ControllerResponse::Quorum(self.quorum.status())
                } else {
                    ControllerResponse::NotController {
                        leader: self.quorum.leader(),
                    }
                }
            }
            ControllerRequest::Heartbeat { node_id } => {
                if !self.quorum.can_propose() {
                    ControllerResponse::NotController {
                        leader: self.quorum.leader(),
                    }
                } else {
                    let now = self.now_ms();
                    self.liveness.heartbeat(node_id, now);
                    let image = self.quorum.image();
                    match image.brokers.get(&node_id) {
                        None => ControllerResponse::Refused {
                            code: 42,
                            message: format!("broker {node_id} is not registered"),
                        },
                        Some(b) if b.fenced => {
                            let cmd = MetadataCommand::SetBrokerFenced {
                                node_id,
                                fenced: false,
                            };
                            match self.quorum.propose(cmd) {
                                Ok(token) => {
                                    self.waiting.insert(token, reply);
                                    return;
                                }
                                // An unfencing proposed by an earlier heartbeat is pending.
                                Err(ProposeError::Invalid(_)) => ControllerResponse::Ok,
                                Err(ProposeError::NotLeader { leader }) => {
                                    ControllerResponse::NotController { leader }
                                }
                            }
                        }
                        Some(_) => ControllerResponse::Ok,
                    }
                }
            }
            ControllerRequest::Propose(command) => {
                if let MetadataCommand::RegisterBroker { node_id, .. } = &command {
                    let now = self.now_ms();
                    self.liveness.heartbeat(*node_id, now);
                }
                return self.propose(command, reply);
            }
        };
        let _ = reply.send(answer);
    }

    fn propose(&mut self, command: MetadataCommand, reply: mpsc::Sender<ControllerResponse>) {
        match self.quorum.propose(command) {
            Ok(token) => {
                self.waiting.insert(token, reply);
            }
            Err(ProposeError::NotLeader { leader }) => {
                let _ = reply.send(ControllerResponse::NotController { leader });
            }
            Err(ProposeError::Invalid(e)) => {
                let _ = reply.send(ControllerResponse::Refused {
                    code: e.kafka_error_code(),
                    message: e.to_string(),
                });
            }
        }
    }

    /// Fences brokers silent for longer than the session timeout (active controller only).
    fn fence_silent_brokers(&mut self) {
        if !self.quorum.can_propose() {
            return;
        }
        let image = self.quorum.image();
        let now = self.now_ms();
        for node_id in self
            .liveness
            .expired(&image.brokers, now, self.session_timeout_ms)
        {
            info!(
                broker = node_id,
                "fencing broker: no heartbeat within the session timeout"
            );
            let fence = MetadataCommand::SetBrokerFenced {
                node_id,
                fenced: true,
            };
            // Applied or not, the next tick looks again.
            let _ = self.quorum.propose(fence);
        }
    }

    /// Every `leader.imbalance.check.interval.seconds` (active controller only): preferred
    /// elections for the partitions of the brokers whose leader imbalance is above
    /// `leader.imbalance.per.broker.percentage` (`controller::balance`), proposed as the
    /// ElectLeaders command the API uses.
    fn rebalance_leaders(&mut self) {
        let Some(rebalance) = self.leader_rebalance else {
            return;
        };
        if !self.quorum.can_propose() {
            return;
        }
        let now = Instant::now();
        let due = *self.rebalance_at.get_or_insert(now + rebalance.interval);
        if now < due {
            return;
        }
        self.rebalance_at = Some(now + rebalance.interval);
        let image = self.quorum.image();
        let partitions =
            controller::balance::preferred_elections_due(&image, rebalance.imbalance_percentage);
        if partitions.is_empty() {
            return;
        }
        info!(
            partitions = partitions.len(),
            "leader imbalance above leader.imbalance.per.broker.percentage: electing preferred leaders"
        );
        let elect = MetadataCommand::ElectLeaders {
            election: ElectionType::Preferred,
            partitions: Some(partitions),
        };
        // Applied or not, the next check looks again.
        if let Err(e) = self.quorum.propose(elect) {
            debug!("leader rebalance not proposed: {e}");
        }
    }

    fn process(&mut self) -> Result<(), String> {
        let output = self
            .quorum
            .process()
            .map_err(|e| format!("controller quorum failed: {e}"))?;
        for message in output.messages {
            send(&mut self.quorum, &mut self.peers, self.node_id, message);
        }
        for completion in output.completed {
            let Some(reply) = self.waiting.remove(&completion.token) else {
                continue;
            };
            let answer = match completion.result {
                Ok(outcomes) => ControllerResponse::Applied {
                    version: self.quorum.image().version,
                    outcomes,
                },
                Err(CompletionError::LeadershipLost) => ControllerResponse::NotController {
                    leader: self.quorum.leader(),
                },
                Err(CompletionError::Rejected(e)) => ControllerResponse::Refused {
                    code: e.kafka_error_code(),
                    message: e.to_string(),
                },
            };
            let _ = reply.send(answer);
        }
        self.track_leadership();
        self.answer_watchers();
        self.publish_acls();
        Ok(())
    }

    /// Hands the connection threads the image's ACLs when they changed (an authorizer on).
    fn publish_acls(&self) {
        let Some(shared) = &self.acls else {
            return;
        };
        let acls = self.quorum.image().acls.clone();
        let mut published = shared.lock().expect("not poisoned");
        if !Arc::ptr_eq(&published, &acls) {
            *published = acls;
        }
    }

    /// Answers the watchers whose wait is over: records past their version, the whole image
    /// when those are no longer kept, or nothing once their wait has run out.
    fn answer_watchers(&mut self) {
        let image = self.quorum.image();
        let now = Instant::now();
        let initialised = !image.cluster_id.is_empty();
        let mut still = Vec::with_capacity(self.watchers.len());
        for watcher in self.watchers.drain(..) {
            let answer = if initialised && image.version > watcher.known_version {
                match self.quorum.records_after(watcher.known_version) {
                    Some(records) => ControllerResponse::Updates { records },
                    None => ControllerResponse::Image(Some(codec::encode_snapshot(
                        &SnapshotPayload::of(&image),
                    ))),
                }
            } else if now >= watcher.until {
                ControllerResponse::Updates {
                    records: Vec::new(),
                }
            } else {
                still.push(watcher);
                continue;
            };
            let _ = watcher.reply.send(answer);
        }
        self.watchers = still;
    }

    fn track_leadership(&mut self) {
        let leading = self.quorum.is_leader();
        if leading && !self.was_leader {
            // A new active controller gives every broker a full session to check in.
            let now = self.now_ms();
            self.liveness.reset(self.quorum.image().brokers.keys(), now);
        }
        if leading != self.was_leader {
            self.rebalance_at = None;
        }
        self.was_leader = leading;
        let leader = self.quorum.leader();
        if leader != self.known_leader {
            self.known_leader = leader;
            match leader {
                Some(l) => info!(
                    "controller quorum: active controller is node {l} (term {})",
                    self.quorum.term()
                ),
                None => info!("controller quorum: no active controller"),
            }
            self.leaderless_since = Instant::now();
            self.no_quorum_warned_at = None;
        }
    }

    /// Says, while no controller is active, which voters this one cannot reach: the quorum
    /// needs a majority, and this voter makes no change alone.
    fn warn_without_quorum(&mut self) {
        let due = self
            .no_quorum_warned_at
            .map_or(NO_QUORUM_WARN_AFTER, |_| NO_QUORUM_WARN_EVERY);
        let since = self.no_quorum_warned_at.unwrap_or(self.leaderless_since);
        if self.known_leader.is_some() || since.elapsed() < due {
            return;
        }
        self.no_quorum_warned_at = Some(Instant::now());
        let unreachable: Vec<String> = self
            .peers
            .iter()
            .filter_map(|(id, p)| {
                let why = p.last_error.as_deref()?;
                Some(format!("node {id} at {} ({why})", p.address))
            })
            .collect();
        warn!(
            "no controller quorum for {}s: a majority of the {} voters must be up and reachable; \
             cannot reach {}; waiting, no metadata change is made meanwhile",
            self.leaderless_since.elapsed().as_secs(),
            self.peers.len() + 1,
            if unreachable.is_empty() {
                "none (no election won yet)".to_string()
            } else {
                unreachable.join(", ")
            }
        );
    }
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

/// How long a connection thread waits for the driver's answer to a request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection of the port shares: its server side, the ACLs it authorizes with,
/// and the reasons of refusals already logged.
#[derive(Clone)]
struct Port {
    server: ServerSide,
    acls: Option<SharedAcls>,
    refusals: Arc<RefusalLog>,
}

impl Port {
    /// TLS, SASL and authorization of a new connection (nothing on a PLAINTEXT port without
    /// an authorizer); a refusal is logged once per peer address and reason.
    fn admit(&self, socket: TcpStream) -> Option<ControllerStream> {
        let peer = socket.peer_addr().ok().map(|a| a.ip());
        let acls = || {
            self.acls
                .as_ref()
                .map(|shared| shared.lock().expect("not poisoned").clone())
                .unwrap_or_default()
        };
        match transport::accept(socket, &self.server, acls) {
            Ok((stream, principal)) => {
                if self.server.tls.is_some() || self.server.sasl.is_some() {
                    debug!(?peer, %principal, "controller port: connection authenticated");
                }
                Some(stream)
            }
            Err(refusal) => {
                let why = &refusal.reason;
                let shown = peer.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
                if self.refusals.first_time(&format!("{shown}: {why}")) {
                    warn!(peer = %shown, "controller port: refusing a connection: {why}");
                }
                if let Some(stream) = refusal.unauthorized {
                    tell_unauthorized(stream, why);
                }
                None
            }
        }
    }
}

/// Kafka's CLUSTER_AUTHORIZATION_FAILED.
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

/// Answers an authenticated but unauthorized peer's first request with why (a broker's link
/// then logs it), waiting at most a second for it; the connection closes after.
fn tell_unauthorized(mut stream: ControllerStream, why: &str) {
    if stream
        .socket()
        .set_read_timeout(Some(Duration::from_secs(1)))
        .is_err()
    {
        return;
    }
    if let Ok(ControllerFrame::Request(_)) = read_frame(&mut stream) {
        let refused = ControllerResponse::Refused {
            code: CLUSTER_AUTHORIZATION_FAILED,
            message: why.to_owned(),
        };
        let _ = write_frame(&mut stream, &ControllerFrame::Response(refused));
    }
}

fn accept(
    listener: TcpListener,
    inbound: mpsc::SyncSender<Inbound>,
    voters: Arc<Voters>,
    port: Port,
) {
    let count = ConnectionCount::default();
    let mut refused_logged_at: Option<Instant> = None;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let Some(slot) = count.admit(admission::CONNECTIONS_MAX) else {
            // Closed at once; logged at most every 10 s.
            if refused_logged_at.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                warn!(
                    peer = ?stream.peer_addr().ok(),
                    max = admission::CONNECTIONS_MAX,
                    "controller port: too many connections, closing a new one"
                );
                refused_logged_at = Some(Instant::now());
            }
            continue;
        };
        let inbound = inbound.clone();
        let claims = Claims::new(voters.clone(), stream.peer_addr().ok().map(|a| a.ip()));
        let port = port.clone();
        let spawned = std::thread::Builder::new()
            .name("controller-conn".into())
            .spawn(move || {
                let _ = stream.set_nodelay(true);
                if let Some(stream) = port.admit(stream) {
                    serve_connection(stream, inbound, claims, slot);
                }
            });
        if let Err(e) = spawned {
            warn!("cannot serve a controller connection: {e}");
        }
    }
}

/// Reads frames from one connection: Raft messages go to the driver; each request waits for
/// the driver's answer, which goes back on the connection.
/// Frames the connection may not send (see `admission`) close it.
fn serve_connection(
    mut stream: ControllerStream,
    inbound: mpsc::SyncSender<Inbound>,
    mut claims: Claims,
    _slot: ConnectionSlot,
) {
    loop {
        let frame = match read_frame(&mut stream) {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                warn!(peer = ?stream.socket().peer_addr().ok(), "controller port: {e}; closing");
                return;
            }
            Err(_) => return,
        };
        if let Err(why) = claims.check(&frame) {
            warn!(peer = ?stream.socket().peer_addr().ok(), "controller port: {why}; closing");
            return;
        }
        match frame {
            ControllerFrame::Raft { from, message } => match quorum::decode_message(&message) {
                Some(m) if m.from == from => {
                    if inbound.send(Inbound::Raft(m)).is_err() {
                        return;
                    }
                }
                _ => {
                    warn!(from, "dropping a malformed raft message");
                    return;
                }
            },
            ControllerFrame::Request(request) => {
                let (tx, rx) = mpsc::channel();
                if inbound.send(Inbound::Request(request, tx)).is_err() {
                    return;
                }
                let answer = rx
                    .recv_timeout(REQUEST_TIMEOUT)
                    .unwrap_or(ControllerResponse::NotController { leader: None });
                if write_frame(&mut stream, &ControllerFrame::Response(answer)).is_err() {
                    return;
                }
            }
            ControllerFrame::Response(_) => return,
        }
    }
}
