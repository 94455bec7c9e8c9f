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
//! through [`LogView`], and what must happen comes back as [`Effect`]s, which the owner
//! carries out in order. The broker wraps it with the partition's log; `tests/sim.rs` steps
//! it through leader changes and faults.
//!
//! # Driving it
//!
//! - Controller state (metadata image): [`Replica::apply_state`]. Leader: stamp
//!   [`Effect::StartEpoch`] in the log's epoch cache before the next append. Follower:
//!   [`Effect::FollowLeader`] (start fetching), with every acks=all waiter answered.
//! - Produce on the leader: [`Replica::check_produce`] (NOT_ENOUGH_REPLICAS before the
//!   append), append, [`Replica::on_local_append`]; for acks=all
//!   [`Replica::await_acks_all`] with the batch's end offset; after each fdatasync
//!   [`Replica::on_local_durable`]; answer the producer on [`Effect::AckAll`].
//! - A follower's fetch on the leader: [`Replica::on_follower_fetch`]; for
//!   [`FetchAnswer::Read`] read records from `from`, lower `records_end` to what is sent.
//! - The follower: [`Replica::next_fetch`] → send; on the answer, [`Replica::on_fetch_answer`]
//!   and carry out [`Effect::AppendFetched`] (append the answer's records),
//!   [`Effect::Truncate`] or [`Effect::TruncateFullyAndStartAt`]; fetch again (also when
//!   the durable offset moved, so acks=all sees it).
//! - Periodically [`Replica::tick`] (ISR shrink, waiter timeouts, proposal retries); send
//!   [`Effect::ProposeIsr`] to the controller, its answer to [`Replica::on_isr_result`].
//! - Serve consumers below [`Replica::high_watermark`] on the leader only.

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
