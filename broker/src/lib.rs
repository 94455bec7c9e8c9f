//! The Spate broker: Kafka API handlers over thread-per-core shards.
//!
//! `server` starts a node, `shard` owns partitions and routes work between cores,
//! `partition` is what handlers talk to for one partition (its log and, next, its replicas),
//! `connection` turns request frames into handler calls, `handlers` has one module per API,
//! `metrics` and `admin` count what happens and serve it over HTTP, `config_file` layers the
//! settings of `spate start`.

pub mod admin;
pub mod authorizer;
pub mod cluster;
pub mod config;
pub mod config_file;
pub mod connection;
pub mod datadir;
pub mod group;
pub mod handlers;
pub mod inter_broker;
pub mod listen_claim;
pub mod listeners;
pub mod maintenance;
pub mod metrics;
pub mod partition;
pub mod principal_mapping;
pub mod producer_ids;
pub mod protocol;
pub mod sasl;
pub mod server;
pub mod session;
pub mod shard;
pub mod splice;
pub mod tls_config;
pub mod tls_reload;
pub mod tls_stores;
pub mod transport;
pub mod wake_lag;
