//! The leader-epoch cache of one partition (Kafka's `LeaderEpochFileCache`): which leader
//! epoch wrote which offsets, as an ordered list of `(epoch, start_offset)`, each epoch's
//! range ending where the next one starts (the last one at the log end). Replication asks it
//! where an epoch ended (OffsetsForLeaderEpoch, `end_offset_for`) to find where a follower's
//! log diverged from the leader's.
//!
//! Persisted as `leader-epoch-checkpoint`, Kafka's text format: a version line (`0`), a count
//! line, then one `epoch start_offset` line per entry, oldest first. Runtime-free: no IO here
//! (the log writes the file atomically).

use std::fmt::Write as _;

/// Kafka's UNDEFINED_EPOCH: no epoch.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's UNDEFINED_EPOCH_OFFSET: no offset.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;
/// File name in the partition directory.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Version line of the checkpoint file.
const CHECKPOINT_VERSION: u32 = 0;
/// Bound on entries decoded from a file (one per leader change; a damaged count is refused
/// rather than allocated).
pub const LEADER_EPOCH_ENTRIES_MAX: usize = 1 << 20;

/// One leader epoch and the first offset it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The cache: entries strictly increasing in epoch and in start offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The newest entry.
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The newest epoch.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.latest().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset` (Kafka's `assign`). Nothing changes when
    /// the latest entry already is this epoch from an offset at or below it. Otherwise any
    /// entry that would break the order (an epoch at or above `epoch`, or a start at or above
    /// `start_offset`) is dropped first, as Kafka does; callers that must not rewrite history
    /// check `latest_epoch` first. Returns whether the cache changed. Negative values are a
    /// caller bug.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        assert!(
            epoch >= 0 && start_offset >= 0,
            "invalid leader epoch entry ({epoch}, {start_offset})"
        );
        let needed = self
            .latest()
            .is_none_or(|l| l.epoch != epoch || start_offset < l.start_offset);
        if !needed {
            return false;
        }
        while self
            .latest()
            .is_some_and(|l| l.epoch >= epoch || l.start_offset >= start_offset)
        {
            self.entries.pop();
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.assert_ordered();
        true
    }

    /// `(epoch, end offset)` for a follower's `requested_epoch` (Kafka's `endOffsetFor`): the
    /// largest known epoch at or below the requested one, and where it ended: the start of the
    /// first epoch above the requested one, or `log_end_offset` for the latest epoch. An
    /// undefined or unknown newer epoch gets `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`; one
    /// below every known epoch gets itself and the first known start (the data before it is
    /// gone: the follower replicates from there).
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested_epoch == UNDEFINED_EPOCH {
            return undefined;
        }
        if self.latest_epoch() == Some(requested_epoch) {
            return (requested_epoch, log_end_offset);
        }
        // First entry with an epoch above the requested one.
        let higher = self.entries.partition_point(|e| e.epoch <= requested_epoch);
        let Some(next) = self.entries.get(higher) else {
            return undefined;
        };
        match higher.checked_sub(1).map(|i| self.entries[i]) {
            Some(floor) => (floor.epoch, next.start_offset),
            None => (requested_epoch, next.start_offset),
        }
    }

    /// Drops the entries starting at or after `end_offset` (the log was truncated there); a
    /// negative offset changes nothing (Kafka). Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        if end_offset < 0 {
            return false;
        }
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The log now starts at `start_offset` (retention, DeleteRecords): drops the entries
    /// wholly below it and moves the start of the one covering it up to it (Kafka's
    /// `truncateFromStart`, which keeps an entry starting exactly there). Returns whether the
    /// cache changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covered = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        let Some(last) = covered.checked_sub(1) else {
            return false;
        };
        let changed = last > 0 || self.entries[last].start_offset != start_offset;
        self.entries.drain(..last);
        self.entries[0].start_offset = start_offset;
        self.assert_ordered();
        changed
    }

    /// Forgets every entry (the log was emptied).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The checkpoint file's bytes (module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(16 + self.entries.len() * 24);
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{CHECKPOINT_VERSION}");
        let _ = writeln!(out, "{}", self.entries.len());
        for e in &self.entries {
            let _ = writeln!(out, "{} {}", e.epoch, e.start_offset);
        }
        out.into_bytes()
    }

    /// Parses a checkpoint file; `None` when it is damaged (wrong version or count, bad
    /// numbers, entries out of order).
    pub fn decode(bytes: &[u8]) -> Option<LeaderEpochCache> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()?.trim().parse::<u32>().ok()? != CHECKPOINT_VERSION {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        if count > LEADER_EPOCH_ENTRIES_MAX {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let mut fields = lines.next()?.split_whitespace();
            let epoch: i32 = fields.next()?.parse().ok()?;
            let start_offset: i64 = fields.next()?.parse().ok()?;
            if fields.next().is_some() || epoch < 0 || start_offset < 0 {
                return None;
            }
            entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return None;
        }
        let cache = LeaderEpochCache { entries };
        cache.is_ordered().then_some(cache)
    }

    fn is_ordered(&self) -> bool {
        self.entries
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset)
    }

    fn assert_ordered(&self) {
        debug_assert!(self.is_ordered(), "leader epochs out of order: {self:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::new();
        for &(epoch, start) in entries {
            assert!(c.assign(epoch, start));
        }
        c
    }

    fn pairs(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        // Kafka's LeaderEpochFileCacheTest cases: epochs 2@6, 3@8, 5@10 (6, 8, 10 are
        // starts), log end 15.
        let c = cache(&[(2, 6), (3, 8), (5, 10)]);
        let leo = 15;
        let cases = [
            // Undefined epoch: undefined.
            (UNDEFINED_EPOCH, (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)),
            // Below the first epoch: itself and the first start.
            (0, (0, 6)),
            (1, (1, 6)),
            // A known epoch: ends where the next one starts.
            (2, (2, 8)),
            (3, (3, 10)),
            // Unknown epoch between known ones: the floor epoch and the next start.
            (4, (3, 10)),
            // The latest epoch: the log end.
            (5, (5, leo)),
            // Newer than any known: undefined.
            (6, (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)),
        ];
        for (requested, want) in cases {
            assert_eq!(c.end_offset_for(requested, leo), want, "epoch {requested}");
        }
        let empty = LeaderEpochCache::new();
        assert_eq!(
            empty.end_offset_for(0, leo),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );
        assert_eq!(
            empty.end_offset_for(UNDEFINED_EPOCH, leo),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );
    }

    #[test]
    fn assign_keeps_epochs_and_offsets_increasing() {
        let mut c = cache(&[(1, 0), (2, 5)]);
        assert!(!c.assign(2, 5), "same epoch and start: no change");
        assert!(!c.assign(2, 7), "same epoch from a later offset: no change");
        assert!(
            c.assign(2, 3),
            "same epoch from an earlier offset moves its start"
        );
        assert_eq!(pairs(&c), [(1, 0), (2, 3)]);
        assert!(c.assign(4, 9));
        assert_eq!(c.latest_epoch(), Some(4));
        // An older epoch drops the entries it conflicts with (Kafka).
        assert!(c.assign(3, 9));
        assert_eq!(pairs(&c), [(1, 0), (2, 3), (3, 9)]);
        // A newer epoch at an offset below the latest start drops the latest.
        assert!(c.assign(5, 4));
        assert_eq!(pairs(&c), [(1, 0), (2, 3), (5, 4)]);
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(1, 0), (2, 5), (3, 10)]);
        assert!(!c.truncate_from_end(11));
        assert!(!c.truncate_from_end(-1), "undefined: nothing");
        assert!(c.truncate_from_end(10), "an entry starting at the cut goes");
        assert_eq!(pairs(&c), [(1, 0), (2, 5)]);
        assert!(c.truncate_from_end(3));
        assert_eq!(pairs(&c), [(1, 0)]);
        assert!(c.truncate_from_end(0));
        assert!(c.is_empty());

        let mut c = cache(&[(1, 0), (2, 5), (3, 10)]);
        assert!(!c.truncate_from_start(0));
        assert!(
            c.truncate_from_start(7),
            "the entry covering 7 starts there"
        );
        assert_eq!(pairs(&c), [(2, 7), (3, 10)]);
        assert!(
            c.truncate_from_start(10),
            "an entry starting exactly there stays"
        );
        assert_eq!(pairs(&c), [(3, 10)]);
        assert!(c.truncate_from_start(20));
        assert_eq!(pairs(&c), [(3, 20)]);
        let mut empty = LeaderEpochCache::new();
        assert!(!empty.truncate_from_start(5) && !empty.truncate_from_end(5));
    }

    #[test]
    fn checkpoint_round_trips_and_refuses_damage() {
        let c = cache(&[(1, 0), (4, 17), (9, 1 << 40)]);
        let bytes = c.encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            "0\n3\n1 0\n4 17\n9 1099511627776\n"
        );
        assert_eq!(LeaderEpochCache::decode(&bytes), Some(c));
        assert_eq!(
            LeaderEpochCache::decode(b"0\n0\n"),
            Some(LeaderEpochCache::new())
        );
        let damaged: [&[u8]; 8] = [
            b"",
            b"1\n0\n",
            b"0\n2\n1 0\n",
            b"0\n1\n1 x\n",
            b"0\n2\n3 0\n2 5\n",
            b"0\n2\n1 5\n2 5\n",
            b"0\n1\n1 0 7\n",
            b"0\n1\n1 0\n2 5\n",
        ];
        for d in damaged {
            assert_eq!(
                LeaderEpochCache::decode(d),
                None,
                "{:?}",
                String::from_utf8_lossy(d)
            );
        }
    }
}
