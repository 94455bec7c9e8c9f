//! A partition this node holds: the home of replication.
//!
//! Handlers talk to a [`Partition`], never to its `PartitionLog`: the partition decides who
//! may append (its leader), what consumers may see (offsets below the high watermark), which
//! leader epoch a request must name, and when a produce is acknowledged. Today every
//! partition has one replica, so this node leads every partition it holds in the epoch the
//! controller gave it, and the high watermark is the log end; followers, the ISR and the
//! acks=all waiters of the replica state machine plug in here, not in the handlers.
//!
//! Architecture invariant: only the owning shard touches a `Partition` (it is `Rc`, not
//! `Send`); other shards reach it through `Shard::run_on`/`Shard::scatter`.

use crate::handlers::code;
use crate::metrics::PartitionCounters;
use crate::shard::PartitionKey;
use bytes::Bytes;
use std::cell::Cell;
use std::rc::Rc;
use storage::batch::BatchHeader;
use storage::log::ReadBatches;
use storage::{AppendOutcome, PartitionLog};

/// One partition this shard holds; cheap to clone.
#[derive(Clone)]
pub struct Partition {
    inner: Rc<Inner>,
}

struct Inner {
    key: PartitionKey,
    log: PartitionLog,
    counters: PartitionCounters,
    /// The controller's leader epoch of the partition, as of the image installed last.
    leader_epoch: Cell<i32>,
}

/// Why a request for a partition is refused: a Kafka error code.
pub type ErrorCode = i16;

/// What a consumer's read returned: the batches, and the offsets it was answered against.
pub struct Read {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub batches: Result<ReadBatches, ErrorCode>,
}

impl Partition {
    pub fn new(key: PartitionKey, log: PartitionLog, leader_epoch: i32) -> Partition {
        Partition {
            inner: Rc::new(Inner {
                key,
                log,
                counters: PartitionCounters::default(),
                leader_epoch: Cell::new(leader_epoch),
            }),
        }
    }

    pub fn key(&self) -> PartitionKey {
        self.inner.key
    }

    /// The log under the partition: for the shard's own upkeep (maintenance, cache shares,
    /// metrics, the group coordinator's internal topic), not for client requests.
    pub fn log(&self) -> &PartitionLog {
        &self.inner.log
    }

    /// Bytes in and out, for metrics.
    pub fn counters(&self) -> &PartitionCounters {
        &self.inner.counters
    }

    /// The leader epoch this replica serves in.
    pub fn leader_epoch(&self) -> i32 {
        self.inner.leader_epoch.get()
    }

    /// A new image moved the partition's leader epoch (never backwards).
    pub fn set_leader_epoch(&self, epoch: i32) {
        let current = self.inner.leader_epoch.get();
        assert!(
            epoch >= current,
            "leader epoch of {:?} moves back from {current} to {epoch}",
            self.inner.key
        );
        self.inner.leader_epoch.set(epoch);
    }

    /// Kafka's check of a request's `current_leader_epoch` (KIP-320): -1 skips it, an older
    /// epoch is fenced, a newer one is not known here yet.
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), ErrorCode> {
        leader_epoch_check(current_leader_epoch, self.leader_epoch())
    }

    /// OffsetForLeaderEpoch: for the largest leader epoch at or below `epoch` in the log,
    /// that epoch and its end offset (the next epoch's start, or the log end for the latest);
    /// (-1, -1) when no epoch fits (Kafka's `endOffsetFor`).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.inner.log.end_offset_for_epoch(epoch)
    }

    /// First offset served (the low watermark).
    pub fn log_start_offset(&self) -> i64 {
        self.inner.log.log_start_offset()
    }

    /// Consumers see offsets below this: the lowest log end of the in-sync replicas (one
    /// replica today: the log end).
    pub fn high_watermark(&self) -> i64 {
        self.inner.log.log_end_offset()
    }

    /// Appends a client's validated batch as leader (offsets are assigned here, in arrival
    /// order). Waits for room in the write backlog first (see `PartitionLog::append_with_room`).
    pub async fn append(
        &self,
        records: &Bytes,
        header: &BatchHeader,
    ) -> Result<AppendOutcome, ErrorCode> {
        let outcome = self
            .inner
            .log
            .append_with_room(records, header)
            .await
            .map_err(|e| e.kafka_error_code())?;
        let bytes_in = &self.inner.counters.bytes_in;
        bytes_in.set(bytes_in.get() + records.len() as u64);
        Ok(outcome)
    }

    /// Resolves when the batch ending at `last_offset` is acknowledged: written (acks=1), or
    /// written and fdatasync'ed when `sync` (acks=all with fsync on). With one replica the
    /// in-sync set is this node, so its own log decides.
    pub async fn wait_acknowledged(&self, last_offset: i64, sync: bool) -> Result<(), ErrorCode> {
        self.inner
            .log
            .wait_durable(last_offset, sync)
            .await
            .map_err(|e| {
                tracing::error!(partition = ?self.inner.key, "append failed: {e}");
                code::KAFKA_STORAGE_ERROR
            })
    }

    /// A consumer's read of up to `max_bytes` from `offset`, bounded by the high watermark;
    /// OFFSET_OUT_OF_RANGE outside `[log start, high watermark]`.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Read {
        let high_watermark = self.high_watermark();
        let log_start_offset = self.log_start_offset();
        let mut read = Read {
            high_watermark,
            log_start_offset,
            batches: Err(code::OFFSET_OUT_OF_RANGE),
        };
        if offset < log_start_offset || offset > high_watermark {
            return read;
        }
        read.batches = match self.inner.log.read_batches(offset, max_bytes).await {
            Ok(batches) => {
                let bytes_out = &self.inner.counters.bytes_out;
                bytes_out.set(bytes_out.get() + batches.total_bytes() as u64);
                Ok(batches)
            }
            Err(e) => {
                tracing::error!(partition = ?self.inner.key, "fetch read failed: {e}");
                Err(code::KAFKA_STORAGE_ERROR)
            }
        };
        read
    }

    /// Resolves once the partition has records a consumer may read at `offset` or later.
    pub async fn wait_for_data_after(&self, offset: i64) {
        self.inner.log.wait_for_data_after(offset).await
    }
}

/// Kafka's leader epoch check: `requested` -1 means "not known to the client".
fn leader_epoch_check(requested: i32, current: i32) -> Result<(), ErrorCode> {
    match requested {
        -1 => Ok(()),
        r if r < current => Err(code::FENCED_LEADER_EPOCH),
        r if r > current => Err(code::UNKNOWN_LEADER_EPOCH),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epoch_check_follows_kip_320() {
        assert_eq!(leader_epoch_check(-1, 4), Ok(()));
        assert_eq!(leader_epoch_check(4, 4), Ok(()));
        assert_eq!(leader_epoch_check(3, 4), Err(code::FENCED_LEADER_EPOCH));
        assert_eq!(leader_epoch_check(5, 4), Err(code::UNKNOWN_LEADER_EPOCH));
    }
}
