//! A model partition log for the tests: batches with offsets, epochs and a payload id, a
//! durable prefix and Kafka's leader-epoch cache.
#![allow(dead_code)]

use std::collections::BTreeMap;

use replication::{LogView, UNDEFINED_EPOCH, UNDEFINED_OFFSET};

/// One record batch: offsets `base..=last`, the leader epoch that wrote it, a unique id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    pub base: i64,
    pub last: i64,
    pub epoch: i32,
    pub payload: u64,
}

/// The log of one replica.
#[derive(Clone, Debug, Default)]
pub struct ModelLog {
    pub start: i64,
    pub batches: Vec<Batch>,
    /// Everything below is durable (always a batch boundary).
    pub durable: i64,
    /// Leader-epoch cache: epoch -> start offset.
    pub epochs: BTreeMap<i32, i64>,
}

impl ModelLog {
    pub fn leo(&self) -> i64 {
        self.batches.last().map_or(self.start, |b| b.last + 1)
    }

    /// Leader append of `records` records written in `epoch`.
    pub fn append(&mut self, records: i64, epoch: i32, payload: u64) -> Batch {
        let base = self.leo();
        let batch = Batch {
            base,
            last: base + records - 1,
            epoch,
            payload,
        };
        self.append_batch(batch);
        batch
    }

    /// Appends a batch at the end (a follower's fetched batch), updating the epoch cache.
    pub fn append_batch(&mut self, batch: Batch) {
        assert_eq!(batch.base, self.leo(), "append at the log end");
        let latest = self.epochs.keys().next_back().copied();
        assert!(
            latest.is_none_or(|e| e <= batch.epoch),
            "batch epoch {} below the latest {latest:?}",
            batch.epoch
        );
        if latest != Some(batch.epoch) {
            self.epochs.insert(batch.epoch, batch.base);
        }
        self.batches.push(batch);
    }

    /// The leader stamps its new epoch at its log end.
    pub fn assign_epoch(&mut self, epoch: i32, start: i64) {
        assert_eq!(start, self.leo());
        let latest = self.epochs.keys().next_back().copied();
        assert!(latest.is_none_or(|e| e < epoch), "epoch {epoch} not new");
        self.epochs.insert(epoch, start);
    }

    /// Removes every batch holding an offset `>= to`.
    pub fn truncate(&mut self, to: i64) {
        if to > self.leo() {
            return;
        }
        self.batches.retain(|b| b.last < to);
        let leo = self.leo();
        self.epochs.retain(|_, start| *start < leo);
        self.durable = self.durable.min(leo);
    }

    pub fn truncate_fully(&mut self, offset: i64) {
        self.batches.clear();
        self.epochs.clear();
        self.start = offset;
        self.durable = offset;
    }

    /// fdatasync.
    pub fn sync(&mut self) {
        self.durable = self.leo();
    }

    /// kill -9: the non-durable suffix is gone; the epoch cache is rebuilt from the batches.
    /// Returns the batches lost.
    pub fn crash(&mut self) -> Vec<Batch> {
        let durable = self.durable;
        let lost: Vec<Batch> = self
            .batches
            .iter()
            .filter(|b| b.last >= durable)
            .copied()
            .collect();
        self.batches.retain(|b| b.last < durable);
        self.epochs.clear();
        let mut latest = None;
        for b in &self.batches {
            if latest != Some(b.epoch) {
                self.epochs.insert(b.epoch, b.base);
                latest = Some(b.epoch);
            }
        }
        lost
    }

    /// The batch starting at `base`, if any.
    pub fn batch_at(&self, base: i64) -> Option<&Batch> {
        self.batches
            .binary_search_by_key(&base, |b| b.base)
            .ok()
            .map(|i| &self.batches[i])
    }

    /// Up to `max` batches from `from` (a batch boundary or the log end).
    pub fn read(&self, from: i64, max: usize) -> Vec<Batch> {
        if from >= self.leo() {
            return Vec::new();
        }
        let i = self
            .batches
            .binary_search_by_key(&from, |b| b.base)
            .unwrap_or_else(|_| panic!("read from {from}: not a batch boundary"));
        self.batches[i..].iter().take(max).copied().collect()
    }
}

impl LogView for ModelLog {
    fn log_start_offset(&self) -> i64 {
        self.start
    }

    fn log_end_offset(&self) -> i64 {
        self.leo()
    }

    fn durable_end_offset(&self) -> i64 {
        self.durable
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        let Some((&latest, _)) = self.epochs.iter().next_back() else {
            return undefined;
        };
        if epoch == UNDEFINED_EPOCH {
            return undefined;
        }
        if latest == epoch {
            return (epoch, self.leo());
        }
        let Some((_, &higher_start)) = self.epochs.range(epoch + 1..).next() else {
            return undefined;
        };
        match self.epochs.range(..=epoch).next_back() {
            None => (epoch, higher_start),
            Some((&floor, _)) => (floor, higher_start),
        }
    }

    fn latest_epoch(&self) -> Option<i32> {
        self.epochs.keys().next_back().copied()
    }
}
