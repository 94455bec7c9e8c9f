//! The broker's latency budget: how long each stage of a Produce or Fetch request takes, and
//! each write and fdatasync of a partition log, so a report can say where the p99 goes.
//!
//! Every thread (a shard: thread-per-core) records into its own histograms (hdr, nanoseconds,
//! two significant digits), made on the first record of a stage: recording takes no lock and
//! allocates nothing after that. Readers (the admin endpoint) ask every shard for a
//! [`Budget`] on the shard's own executor ([`snapshot`]) and merge them.
//!
//! The stages of one request, in order (see [`Stage`]): the frame read off the socket, its
//! admission (the shard's request memory), the handler (decode, the work, encode; for
//! Produce: the hop to the partition's owner shard, the append, the wait for the write (and
//! fdatasync and followers for acks=all), the hop back), the wait for the earlier replies of
//! the connection, and the reply's write to the socket. The storage stages are per
//! group-commit cycle of a partition log, not per request. The shard stage (`wake_lag`) is
//! a probe's, not a request's: how late each shard runs a task whose timer fired.

use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// A timed stage. `path()` and `name()` are its labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// From the frame's size prefix read to its last byte read.
    ProduceFrameRead,
    /// From the frame read to its bytes taken from the shard's request memory.
    ProduceAdmission,
    /// The request's handler, from its start to its reply (everything below until Return).
    ProduceHandler,
    /// Header check and decode of the request.
    ProduceDecode,
    /// From the handler's hand-off to the first append on the partition's owner shard (the
    /// cross-shard hop; zero-ish when the connection's shard owns it).
    ProduceRoute,
    /// The appends of one owner shard's batches (offsets assigned; waits for room in a full
    /// write backlog).
    ProduceAppend,
    /// From appended to acknowledged: written (acks=1), or durable on every in-sync replica
    /// (acks=all).
    ProduceAcknowledged,
    /// From the owner shard's answer to the connection's shard having every answer.
    ProduceReturn,
    /// Encoding the response.
    ProduceEncode,
    /// From the handler's reply to the connection's writer taking it (earlier replies of the
    /// same connection go first).
    ProduceReplyOrder,
    /// From the writer taking the reply to the socket write that sent it completing.
    ProduceReplyWritten,
    FetchFrameRead,
    FetchAdmission,
    FetchHandler,
    FetchDecode,
    /// One partition log read (tail cache or disk) of a Fetch (a consumer's or a follower's).
    FetchRead,
    FetchEncode,
    FetchReplyOrder,
    FetchReplyWritten,
    /// One group-commit cycle's writes of a partition log, submitted to completed.
    StorageWrite,
    /// One fdatasync of a partition's active segment.
    StorageFdatasync,
    /// How late a shard's wake-lag probe timer ran its task: how long a task that became
    /// ready waited for the shard (other tasks running, the executor parked, the timer's
    /// own precision). A request's task waits the same way at every stage it awaits.
    ShardWakeLag,
}

/// Every stage, in report order.
pub const STAGES: [Stage; 22] = [
    Stage::ProduceFrameRead,
    Stage::ProduceAdmission,
    Stage::ProduceHandler,
    Stage::ProduceDecode,
    Stage::ProduceRoute,
    Stage::ProduceAppend,
    Stage::ProduceAcknowledged,
    Stage::ProduceReturn,
    Stage::ProduceEncode,
    Stage::ProduceReplyOrder,
    Stage::ProduceReplyWritten,
    Stage::FetchFrameRead,
    Stage::FetchAdmission,
    Stage::FetchHandler,
    Stage::FetchDecode,
    Stage::FetchRead,
    Stage::FetchEncode,
    Stage::FetchReplyOrder,
    Stage::FetchReplyWritten,
    Stage::StorageWrite,
    Stage::StorageFdatasync,
    Stage::ShardWakeLag,
];

/// The stages every request of a traced API passes on its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionStage {
    FrameRead,
    Admission,
    Handler,
    Decode,
    Encode,
    ReplyOrder,
    ReplyWritten,
}

/// A traced API (its requests' connection stages are timed): Produce and Fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traced {
    Produce,
    Fetch,
}

impl Traced {
    /// The traced API of a request's key, if it is one.
    pub fn of_api_key(api_key: i16) -> Option<Traced> {
        match api_key {
            0 => Some(Traced::Produce),
            1 => Some(Traced::Fetch),
            _ => None,
        }
    }

    /// The traced API of a request frame (its first two bytes are the API key).
    pub fn of_frame(frame: &[u8]) -> Option<Traced> {
        let key = frame.get(..2)?;
        Traced::of_api_key(i16::from_be_bytes([key[0], key[1]]))
    }

    pub fn stage(self, stage: ConnectionStage) -> Stage {
        use ConnectionStage as C;
        match (self, stage) {
            (Traced::Produce, C::FrameRead) => Stage::ProduceFrameRead,
            (Traced::Produce, C::Admission) => Stage::ProduceAdmission,
            (Traced::Produce, C::Handler) => Stage::ProduceHandler,
            (Traced::Produce, C::Decode) => Stage::ProduceDecode,
            (Traced::Produce, C::Encode) => Stage::ProduceEncode,
            (Traced::Produce, C::ReplyOrder) => Stage::ProduceReplyOrder,
            (Traced::Produce, C::ReplyWritten) => Stage::ProduceReplyWritten,
            (Traced::Fetch, C::FrameRead) => Stage::FetchFrameRead,
            (Traced::Fetch, C::Admission) => Stage::FetchAdmission,
            (Traced::Fetch, C::Handler) => Stage::FetchHandler,
            (Traced::Fetch, C::Decode) => Stage::FetchDecode,
            (Traced::Fetch, C::Encode) => Stage::FetchEncode,
            (Traced::Fetch, C::ReplyOrder) => Stage::FetchReplyOrder,
            (Traced::Fetch, C::ReplyWritten) => Stage::FetchReplyWritten,
        }
    }

    /// Records `stage` of this API as the time since `start`; returns now (the next stage's
    /// start).
    pub fn record_since(self, stage: ConnectionStage, start: Instant) -> Instant {
        record_since(self.stage(stage), start)
    }
}

impl Stage {
    /// "produce", "fetch", "storage" or "shard".
    pub fn path(self) -> &'static str {
        use Stage::*;
        match self {
            ProduceFrameRead | ProduceAdmission | ProduceHandler | ProduceDecode | ProduceRoute
            | ProduceAppend | ProduceAcknowledged | ProduceReturn | ProduceEncode
            | ProduceReplyOrder | ProduceReplyWritten => "produce",
            FetchFrameRead | FetchAdmission | FetchHandler | FetchDecode | FetchRead
            | FetchEncode | FetchReplyOrder | FetchReplyWritten => "fetch",
            StorageWrite | StorageFdatasync => "storage",
            ShardWakeLag => "shard",
        }
    }

    pub fn name(self) -> &'static str {
        use Stage::*;
        match self {
            ProduceFrameRead | FetchFrameRead => "frame_read",
            ProduceAdmission | FetchAdmission => "admission",
            ProduceHandler | FetchHandler => "handler",
            ProduceDecode | FetchDecode => "decode",
            ProduceRoute => "route",
            ProduceAppend => "append",
            ProduceAcknowledged => "acknowledged",
            ProduceReturn => "return",
            ProduceEncode | FetchEncode => "encode",
            ProduceReplyOrder | FetchReplyOrder => "reply_order",
            ProduceReplyWritten | FetchReplyWritten => "reply_written",
            FetchRead => "read",
            StorageWrite => "write",
            StorageFdatasync => "fdatasync",
            ShardWakeLag => "wake_lag",
        }
    }

    /// The stage with these labels.
    pub fn from_labels(path: &str, name: &str) -> Option<Stage> {
        STAGES
            .into_iter()
            .find(|s| s.path() == path && s.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Largest value kept (longer stages count as this): 100 s.
const HIGHEST_NS: u64 = 100_000_000_000;
/// Two significant digits: a value is kept within 1 % (about 30 KiB per stage and thread).
const SIGNIFICANT_DIGITS: u8 = 2;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, SIGNIFICANT_DIGITS).expect("valid bounds")
}

thread_local! {
    static HISTOGRAMS: RefCell<Vec<Option<Histogram<u64>>>> = const { RefCell::new(Vec::new()) };
}

/// Records one `stage` that took `elapsed`, in this thread's histogram.
pub fn record(stage: Stage, elapsed: Duration) {
    let ns = elapsed.as_nanos().min(HIGHEST_NS as u128) as u64;
    HISTOGRAMS.with(|cell| {
        let mut histograms = cell.borrow_mut();
        if histograms.is_empty() {
            histograms.resize_with(STAGES.len(), || None);
        }
        histograms[stage.index()]
            .get_or_insert_with(new_histogram)
            .saturating_record(ns.max(1));
    });
}

/// Records `stage` as the time since `start`; returns now (the next stage's start).
pub fn record_since(stage: Stage, start: Instant) -> Instant {
    let now = Instant::now();
    record(stage, now.saturating_duration_since(start));
    now
}

/// This thread's histograms, copied (for a reader on another thread).
pub fn snapshot() -> Budget {
    HISTOGRAMS.with(|cell| Budget {
        histograms: cell.borrow().clone(),
    })
}

/// Histograms of stages (one thread's, or several merged).
#[derive(Clone, Debug, Default)]
pub struct Budget {
    histograms: Vec<Option<Histogram<u64>>>,
}

/// One stage's figures, nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageSummary {
    pub stage: Stage,
    pub count: u64,
    pub sum_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

impl Budget {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Budget) {
        if self.histograms.len() < STAGES.len() {
            self.histograms.resize_with(STAGES.len(), || None);
        }
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            if let Some(theirs) = theirs {
                mine.get_or_insert_with(new_histogram)
                    .add(theirs)
                    .expect("same bounds");
            }
        }
    }

    fn histogram(&self, stage: Stage) -> Option<&Histogram<u64>> {
        self.histograms
            .get(stage.index())?
            .as_ref()
            .filter(|h| !h.is_empty())
    }

    /// The figures of every stage recorded at least once, in report order.
    pub fn summaries(&self) -> Vec<StageSummary> {
        STAGES
            .iter()
            .filter_map(|&stage| {
                let h = self.histogram(stage)?;
                Some(StageSummary {
                    stage,
                    count: h.len(),
                    sum_ns: (h.mean() * h.len() as f64) as u64,
                    p50_ns: h.value_at_quantile(0.5),
                    p99_ns: h.value_at_quantile(0.99),
                    p999_ns: h.value_at_quantile(0.999),
                    max_ns: h.max(),
                })
            })
            .collect()
    }

    /// `stage`'s records as (value in ns, count) per non-empty histogram bucket (the value is
    /// the largest the bucket holds): what the admin endpoint serves and [`Budget::add_buckets`]
    /// reads back.
    pub fn buckets(&self, stage: Stage) -> Vec<(u64, u64)> {
        self.histogram(stage).map_or_else(Vec::new, |h| {
            h.iter_recorded()
                .map(|v| {
                    (
                        h.highest_equivalent(v.value_iterated_to()),
                        v.count_at_value(),
                    )
                })
                .collect()
        })
    }

    /// Adds records of `stage` given as [`Budget::buckets`] gives them.
    pub fn add_buckets(&mut self, stage: Stage, buckets: &[(u64, u64)]) {
        if self.histograms.len() < STAGES.len() {
            self.histograms.resize_with(STAGES.len(), || None);
        }
        let h = self.histograms[stage.index()].get_or_insert_with(new_histogram);
        for &(ns, count) in buckets {
            h.saturating_record_n(ns.clamp(1, HIGHEST_NS), count);
        }
    }

    /// What was recorded after `earlier` (a snapshot of the same histograms taken before):
    /// a benchmark's measured window. A stage that went backwards (a restart) is kept whole.
    pub fn since(&self, earlier: &Budget) -> Budget {
        let mut window = self.clone();
        for (now, before) in window.histograms.iter_mut().zip(&earlier.histograms) {
            if let (Some(now), Some(before)) = (now.as_mut(), before) {
                let whole = now.clone();
                if now.subtract(before).is_err() {
                    *now = whole;
                }
            }
        }
        window
    }

    /// How many of `stage`'s records took at most `ns` (a Prometheus bucket's count).
    pub fn count_at_or_below(&self, stage: Stage, ns: u64) -> u64 {
        self.histogram(stage)
            .map_or(0, |h| h.count_between(0, ns.min(HIGHEST_NS)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_indexed_in_report_order() {
        for (i, stage) in STAGES.iter().enumerate() {
            assert_eq!(stage.index(), i, "{stage:?}");
        }
    }

    #[test]
    fn a_thread_records_and_readers_merge_and_summarise() {
        std::thread::spawn(|| {
            for us in 1..=1000u64 {
                record(Stage::ProduceAppend, Duration::from_micros(us));
            }
            record(Stage::StorageFdatasync, Duration::from_secs(1000));
            let mut merged = Budget::default();
            merged.merge(&snapshot());
            merged.merge(&snapshot());
            let s = merged.summaries();
            assert_eq!(s.len(), 2);
            assert_eq!((s[0].stage, s[0].count), (Stage::ProduceAppend, 2000));
            let within = |got: u64, want: u64| got.abs_diff(want) * 100 <= want;
            assert!(within(s[0].p50_ns, 500_000), "{:?}", s[0]);
            assert!(within(s[0].p99_ns, 990_000), "{:?}", s[0]);
            assert!(within(s[0].max_ns, 1_000_000), "{:?}", s[0]);
            // Longer than the bound counts as the bound.
            assert!(within(s[1].max_ns, HIGHEST_NS), "{:?}", s[1]);
            assert_eq!(merged.count_at_or_below(Stage::ProduceAppend, 100_000), 200);
            assert_eq!(merged.count_at_or_below(Stage::FetchRead, 100_000), 0);

            // Served as buckets, read back whole; a later snapshot minus an earlier one is
            // what was recorded in between.
            let before = snapshot();
            let mut copy = Budget::default();
            copy.add_buckets(Stage::ProduceAppend, &before.buckets(Stage::ProduceAppend));
            assert_eq!(copy.summaries()[0], before.summaries()[0]);
            record(Stage::ProduceAppend, Duration::from_millis(50));
            let window = snapshot().since(&before);
            let s = window.summaries();
            assert_eq!(s.len(), 1, "{s:?}");
            assert_eq!(s[0].count, 1);
            assert!(within(s[0].p50_ns, 50_000_000), "{:?}", s[0]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn connection_stages_map_to_their_api() {
        assert_eq!(Traced::of_frame(&[0, 1, 0, 9]), Some(Traced::Fetch));
        assert_eq!(Traced::of_frame(&[0, 0]), Some(Traced::Produce));
        assert_eq!(Traced::of_frame(&[0, 3]), None);
        assert_eq!(Traced::of_frame(&[0]), None);
        let s = Traced::Fetch.stage(ConnectionStage::ReplyWritten);
        assert_eq!((s.path(), s.name()), ("fetch", "reply_written"));
        for stage in STAGES {
            assert_eq!(Stage::from_labels(stage.path(), stage.name()), Some(stage));
        }
        assert_eq!(Stage::from_labels("fetch", "append"), None);
    }
}
