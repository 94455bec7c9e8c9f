//! Multi-node mode (`spate start --node-id N --roles R --controller-quorum ...`).
//!
//! A node with the controller role runs its voter of the Raft quorum ([`voter`]) on plain
//! threads; a node with the broker role serves Kafka clients from the quorum's image, which
//! its [`link`] follows, and registers and heartbeats through it. Both roles can share one
//! process and data dir. [`options`] parses the flags, [`protocol`] is the wire format;
//! [`security`] reads the controller listener's settings (TLS, SASL, authorization) and
//! [`transport`] does them on each connection, both sides.

pub mod admin;
pub mod admission;
pub mod client;
pub mod dev;
pub mod link;
pub mod options;
pub mod protocol;
pub mod security;
pub mod transport;
pub mod voter;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use options::{ClusterFlags, ClusterOptions};
pub use security::ControllerSecurity;

/// Runs a controller-only node of a multi-node cluster until SIGINT or SIGTERM.
pub fn run(
    options: &ClusterOptions,
    data_dir: &Path,
    config: &crate::config::BrokerConfig,
) -> Result<(), String> {
    let security = Arc::new(ControllerSecurity::of(config, true)?);
    let settings = voter_settings(config, security);
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
    let _lock = crate::datadir::lock(data_dir)?;
    crate::datadir::check_kind(data_dir, true)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    }
    voter::run(options, data_dir, &settings, &stop)
}

/// The active controller's duties, from the broker settings.
fn voter_settings(
    config: &crate::config::BrokerConfig,
    security: Arc<ControllerSecurity>,
) -> voter::VoterSettings {
    voter::VoterSettings {
        security,
        session_timeout_ms: setting(config, "broker.session.timeout.ms").unwrap_or(9000),
        leader_rebalance: config
            .auto_leader_rebalance_enable
            .then_some(voter::LeaderRebalance {
                interval: std::time::Duration::from_secs(
                    config.leader_imbalance_check_interval_seconds,
                ),
                imbalance_percentage: config.leader_imbalance_per_broker_percentage,
            }),
    }
}

fn setting(config: &crate::config::BrokerConfig, name: &str) -> Option<u64> {
    config
        .entries()
        .find(|(n, _, _)| *n == name)
        .and_then(|(_, value, _)| value.parse().ok())
}

/// The voter of a combined node, on its own thread.
pub struct VoterThread {
    handle: std::thread::JoinHandle<Result<(), String>>,
    stop: Arc<AtomicBool>,
}

impl VoterThread {
    /// Stops the voter and waits for it; returns why it had failed, if it had.
    pub fn stop(self) -> Option<String> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle.join().ok()?.err()
    }
}

/// Starts this node's voter on its own thread (a combined node). It runs until
/// [`VoterThread::stop`], not until the node's signal: a combined node's broker hands its
/// leaderships away through the quorum (controlled shutdown) before its own voter leaves it,
/// as Kafka's combined mode stops the broker before the controller. When the voter fails it
/// logs why and sets `node_stop`.
pub fn spawn_voter(
    options: &ClusterOptions,
    data_dir: &Path,
    config: &crate::config::BrokerConfig,
    security: Arc<ControllerSecurity>,
    node_stop: Arc<AtomicBool>,
) -> Result<VoterThread, String> {
    let (options, data_dir) = (options.clone(), data_dir.to_path_buf());
    let settings = voter_settings(config, security);
    let stop = Arc::new(AtomicBool::new(false));
    let voter_stop = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("controller".into())
        .spawn(move || {
            let result = voter::run(&options, &data_dir, &settings, &voter_stop);
            if let Err(e) = &result {
                tracing::error!("controller voter stopped: {e}");
                node_stop.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            result
        })
        .map_err(|e| format!("cannot start the controller thread: {e}"))?;
    Ok(VoterThread { handle, stop })
}

/// Connects this broker to the quorum: registration (every listener of `listeners`, the
/// inter-broker one as its address), heartbeats and the metadata stream, as a client of the
/// controller listener (`security`).
pub fn start_link(
    options: &ClusterOptions,
    config: &crate::config::BrokerConfig,
    listeners: &crate::listeners::Listeners,
    shards: usize,
    security: &ControllerSecurity,
) -> Result<Arc<link::QuorumLink>, String> {
    let heartbeat_ms = setting(config, "broker.heartbeat.interval.ms").unwrap_or(2000);
    let endpoints = listeners
        .all
        .iter()
        .map(endpoint)
        .collect::<Result<Vec<_>, String>>()?;
    let inter_broker = endpoints[listeners.inter_broker].clone();
    link::QuorumLink::start(
        options.quorum.clone(),
        security.client.clone(),
        link::Registration {
            node_id: options.node_id as i32,
            host: inter_broker.host,
            port: inter_broker.port,
            endpoints,
            shards: shards as u32,
            rack: options.rack.clone(),
            heartbeat_interval: std::time::Duration::from_millis(heartbeat_ms.max(10)),
        },
    )
}

/// A listener as this broker registers it: its advertised address (an empty host, from
/// `--listen :PORT`, as `localhost`).
fn endpoint(l: &crate::listeners::ListenerInfo) -> Result<controller::BrokerEndpoint, String> {
    let port = l.advertised.port;
    Ok(controller::BrokerEndpoint {
        name: l.name.clone(),
        host: match l.advertised.host.as_str() {
            "" => "localhost".to_owned(),
            host => host.to_owned(),
        },
        port: u16::try_from(port).map_err(|_| format!("{}: bad port {port}", l.name))?,
        security_protocol: l.security_protocol.id(),
    })
}
