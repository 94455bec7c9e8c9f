//! The replica state machine of one partition on one broker, sans IO.
//!
//! Kafka's replication semantics: the controller elects leaders from the ISR only (no
//! unclean election) and owns the ISR; the leader tracks its followers' fetches, moves the
//! high watermark (the lowest log end offset over the ISR), proposes ISR changes
//! (AlterPartition, compare-and-set on the partition epoch) and answers acks=all once every
//! ISR member holds the batch; followers fetch with their last fetched epoch and truncate
//! where the leader says their log diverges. Spate's difference: acks=all means *durable*
//! (fdatasync'ed) on every ISR member, so followers report their durable offset with each
//! fetch (`ReplicaConfig::followers_ack_when_written` relaxes it to Kafka's "written").
//!
//! The machine has no clock, IO, threads or async: time comes in as `now_ms`, the local log
//! through [`LogView`], and what must happen comes back as [`Effect`]s. The broker wraps it
//! with the partition's log; `tests/sim.rs` steps it through leader changes and faults.

mod follower;
mod leader;
mod replica;
mod types;

pub use follower::{position, truncation_offset};
pub use replica::{Replica, Role};
pub use types::{
    Acks, Effect, FetchAnswer, FetchPosition, FetchRequest, IsrError, LogView, PartitionState,
    ReplicaConfig, ReplicaError, WaiterId, ACK_WAITERS_MAX, NO_LEADER, REPLICAS_MAX,
    UNDEFINED_EPOCH, UNDEFINED_OFFSET,
};
