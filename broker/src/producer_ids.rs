//! Producer ids handed out from blocks (Kafka's `ProducerIdsBlock`): each shard takes a block
//! of [`BLOCK_SIZE`] ids from the controller at a time and answers InitProducerId from it, so
//! a thousand idempotent producers cost one metadata write, not a thousand. Ids of a block a
//! shard had not handed out when the node stopped are never used (as in Kafka).

use controller::{ApplyError, ApplyOutcome, MetadataCommand};
use std::cell::Cell;
use std::rc::Rc;

use crate::shard::Shard;

/// Ids taken from the controller at once (Kafka's block size).
pub const BLOCK_SIZE: i64 = 1000;

/// One shard's current block: ids `next..end` are this shard's to hand out.
pub struct ProducerIdBlock {
    next: Cell<i64>,
    end: Cell<i64>,
    /// One refill at a time; the others wait for it and take from the new block.
    refill: glommio::sync::Semaphore,
}

impl Default for ProducerIdBlock {
    fn default() -> Self {
        ProducerIdBlock {
            next: Cell::new(0),
            end: Cell::new(0),
            refill: glommio::sync::Semaphore::new(1),
        }
    }
}

impl ProducerIdBlock {
    /// The next id of the block, if any is left.
    fn take(&self) -> Option<i64> {
        let next = self.next.get();
        (next < self.end.get()).then(|| {
            self.next.set(next + 1);
            next
        })
    }

    fn install(&self, first: i64, count: i64) {
        self.next.set(first);
        self.end.set(first + count);
    }
}

/// A producer id never handed out before, on any shard or node.
pub async fn next_producer_id(shard: &Rc<Shard>) -> Result<i64, ApplyError> {
    let block = &shard.producer_ids;
    loop {
        if let Some(id) = block.take() {
            return Ok(id);
        }
        let _refilling = block
            .refill
            .acquire_permit(1)
            .await
            .expect("the refill semaphore is never closed");
        if let Some(id) = block.take() {
            return Ok(id);
        }
        match shard
            .propose(MetadataCommand::AllocateProducerIds { count: BLOCK_SIZE })
            .await?
        {
            ApplyOutcome::ProducerIds { first, count } => block.install(first, count),
            other => unreachable!("AllocateProducerIds answered {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_hands_out_each_id_once_then_runs_dry() {
        let block = ProducerIdBlock::default();
        assert_eq!(block.take(), None, "an empty block until the first refill");
        block.install(5000, 3);
        assert_eq!(
            (0..4).map(|_| block.take()).collect::<Vec<_>>(),
            [Some(5000), Some(5001), Some(5002), None]
        );
    }
}
