//! The Spate broker: Kafka API handlers over thread-per-core shards.
//!
//! `server` starts a node, `shard` owns partitions and routes work between cores,
//! `connection` turns request frames into handler calls, `handlers` has one module per API.

pub mod cluster;
pub mod config;
pub mod connection;
pub mod datadir;
pub mod group;
pub mod handlers;
pub mod maintenance;
pub mod protocol;
pub mod server;
pub mod shard;
