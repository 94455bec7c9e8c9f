//! Multi-node mode (`spate start --node-id N --controller-quorum ...`).
//!
//! Done so far: the cluster flags ([`options`]) and the controller role ([`voter`]): a
//! node started with `--roles controller` runs its voter of the Raft quorum over TCP. Nodes
//! with the broker role in a multi-node cluster are refused at start until brokers register
//! with the quorum and serve from its image.

pub mod admin;
pub mod client;
pub mod options;
pub mod voter;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use options::{ClusterFlags, ClusterOptions};

/// Runs a node of a multi-node cluster until SIGINT or SIGTERM.
pub fn run(
    options: &ClusterOptions,
    data_dir: &Path,
    config: &crate::config::BrokerConfig,
) -> Result<(), String> {
    let session_timeout_ms = config
        .entries()
        .find(|(name, _, _)| *name == "broker.session.timeout.ms")
        .and_then(|(_, value, _)| value.parse().ok())
        .unwrap_or(9000);
    if options.roles.broker {
        return Err(
            "the broker role of a multi-node cluster is not available yet; start controller \
             voters with --roles controller, or run a single node without cluster flags"
                .into(),
        );
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
    let _lock = crate::datadir::lock(data_dir)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    }
    voter::run(options, data_dir, session_timeout_ms, &stop)
}
