//! The replica machine's view of a partition's log (`replication::LogView`).

use storage::PartitionLog;

/// The log as the replica machine reads it; "durable" is fdatasync'ed, or written when
/// fsync is off (`--unsafe-no-fsync`).
pub struct LogState<'a> {
    log: &'a PartitionLog,
    fsync: bool,
}

impl<'a> LogState<'a> {
    pub fn new(log: &'a PartitionLog, fsync: bool) -> LogState<'a> {
        LogState { log, fsync }
    }
}

impl replication::LogView for LogState<'_> {
    fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    fn durable_end_offset(&self) -> i64 {
        let durable = if self.fsync {
            self.log.synced_offset()
        } else {
            self.log.written_offset()
        };
        durable.min(self.log.log_end_offset())
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.log.end_offset_for_epoch(epoch)
    }

    fn latest_epoch(&self) -> Option<i32> {
        self.log.latest_leader_epoch()
    }
}
