//! Gathering a scrape: every shard copies its counters into a plain snapshot (on its own
//! executor, through `Shard::run_on_all`), which shard 0 renders.

use crate::metrics::LATENCY_BUCKETS_US;
use crate::shard::Shard;
use std::cell::Cell;
use std::rc::Rc;

/// glommio's executor and IO statistics of one shard, summed over scrapes (glommio resets them
/// each time they are read).
#[derive(Default)]
pub struct RuntimeTotals {
    busy_ns: Cell<u64>,
    busy_with_io_poll_ns: Cell<u64>,
    tasks_executed: Cell<u64>,
    file_reads: Cell<(u64, u64)>,
    file_writes: Cell<(u64, u64)>,
}

/// A shard's runtime totals at one scrape.
#[derive(Clone, Debug, Default)]
pub struct RuntimeSnapshot {
    /// Time the executor ran tasks (not sleeping, not polling for IO).
    pub busy_ns: u64,
    /// The same plus the time spent polling io_uring.
    pub busy_with_io_poll_ns: u64,
    pub tasks_executed: u64,
    /// (operations, bytes).
    pub file_reads: (u64, u64),
    pub file_writes: (u64, u64),
    pub storage: StorageGauges,
}

/// The storage gauges of a shard at one scrape: its partitions' write backlog and its read-ahead.
#[derive(Clone, Copy, Debug, Default)]
pub struct StorageGauges {
    /// Bytes appended and not yet handed to io_uring (glommio 0.9 exposes no live count of
    /// operations in the ring).
    pub pending_write_bytes: u64,
    /// Bytes appended and not yet written (handed to io_uring or not): what back-pressure
    /// bounds (`PartitionLog::append_with_room`).
    pub unwritten_bytes: u64,
    /// Produced batches held back now until their partition's backlog has room.
    pub appends_waiting: u64,
    /// Catch-up readers holding read-ahead windows now, over the shard's segment files.
    pub read_ahead_streams: u64,
}

impl RuntimeTotals {
    /// Adds what glommio counted since the last call (must run on the shard's executor).
    pub fn update(&self, storage: StorageGauges) -> RuntimeSnapshot {
        let executor = glommio::executor().executor_stats();
        add(&self.busy_ns, executor.executor_runtime().as_nanos() as u64);
        add(
            &self.busy_with_io_poll_ns,
            executor.total_runtime().as_nanos() as u64,
        );
        add(&self.tasks_executed, executor.tasks_executed());
        let io = glommio::executor().io_stats().all_rings();
        let pair = |cell: &Cell<(u64, u64)>, (ops, bytes): (u64, u64)| {
            let (o, b) = cell.get();
            cell.set((o + ops, b + bytes));
        };
        pair(&self.file_reads, io.file_reads());
        pair(&self.file_reads, io.file_buffered_reads());
        pair(&self.file_writes, io.file_writes());
        pair(&self.file_writes, io.file_buffered_writes());
        RuntimeSnapshot {
            busy_ns: self.busy_ns.get(),
            busy_with_io_poll_ns: self.busy_with_io_poll_ns.get(),
            tasks_executed: self.tasks_executed.get(),
            file_reads: self.file_reads.get(),
            file_writes: self.file_writes.get(),
            storage,
        }
    }
}

/// One API's counters on one shard.
#[derive(Clone, Debug)]
pub struct ApiSnapshot {
    pub api_key: i16,
    pub requests: u64,
    pub latency_sum_us: u64,
    /// Not cumulative: requests per bucket, the last one +Inf.
    pub latency_buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
}

/// One partition, as its owner shard sees it.
#[derive(Clone, Debug)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub size_bytes: u64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Tail cache memory held, and its bound now (moved by the partition's activity).
    pub cache_bytes: usize,
    pub cache_bytes_max: usize,
    /// Led here, with fewer in-sync replicas than replicas.
    pub under_replicated: bool,
    pub replication_bytes_in: u64,
    pub replication_bytes_out: u64,
    /// Led here: (follower, leader log end offset minus its fetch offset), for the
    /// followers that fetched in this leader epoch.
    pub follower_lag: Vec<(i32, i64)>,
    /// Followed here: the fetcher lag (the leader's high watermark minus this log's end).
    pub fetcher_lag: Option<i64>,
}

/// A committed offset held by a group coordinator.
#[derive(Clone, Debug)]
pub struct CommittedSnapshot {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Everything one shard reports.
#[derive(Clone, Debug)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub apis: Vec<ApiSnapshot>,
    /// (api key, error code, count).
    pub errors: Vec<(i16, i16, u64)>,
    pub partitions: Vec<PartitionSnapshot>,
    pub committed: Vec<CommittedSnapshot>,
    pub runtime: RuntimeSnapshot,
    /// Committed ISR shrinks and expansions of the partitions this shard leads.
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    /// Request frame bytes this shard's connections hold now.
    pub request_memory_held_bytes: usize,
    /// (listener name, connections accepted, TLS handshake failures).
    pub listeners: Vec<(String, u64, u64)>,
    /// The latency budget's histograms of this shard's thread.
    pub stages: latency::Budget,
}

/// Every shard's snapshot, in shard order.
pub async fn collect(shard: &Rc<Shard>) -> Vec<ShardSnapshot> {
    shard.run_on_all(|s| async move { snapshot(&s) }).await
}

fn snapshot(shard: &Shard) -> ShardSnapshot {
    let image = shard.image();
    let owned = shard.partitions();
    let mut gauges = owned
        .iter()
        .map(|p| p.log())
        .fold(StorageGauges::default(), |sum, log| StorageGauges {
            pending_write_bytes: sum.pending_write_bytes + log.pending_write_bytes() as u64,
            unwritten_bytes: sum.unwritten_bytes + log.unwritten_bytes(),
            appends_waiting: sum.appends_waiting + log.appends_waiting_for_room() as u64,
            ..sum
        });
    // Counted per shard thread, over all its files.
    gauges.read_ahead_streams = storage::segment::live_read_ahead_streams() as u64;
    let partitions = owned
        .into_iter()
        .filter_map(|p| {
            let ((topic_id, partition), log, counters) = (p.key(), p.log(), p.counters());
            Some(PartitionSnapshot {
                topic: image.topic_by_id(&topic_id)?.name.clone(),
                partition,
                size_bytes: log.size_bytes(),
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
                bytes_in: counters.bytes_in.get(),
                bytes_out: counters.bytes_out.get(),
                cache_bytes: log.cache_bytes(),
                cache_bytes_max: log.cache_bytes_max(),
                under_replicated: p.is_under_replicated(),
                replication_bytes_in: counters.replication_bytes_in.get(),
                replication_bytes_out: counters.replication_bytes_out.get(),
                follower_lag: p.follower_lags(),
                fetcher_lag: p.fetcher_lag(),
            })
        })
        .collect();
    let committed = shard.groups.with(|coordinator| {
        coordinator
            .groups()
            .flat_map(|g| {
                g.offsets
                    .iter()
                    .map(|((topic, partition), o)| CommittedSnapshot {
                        group: g.id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        offset: o.offset,
                    })
            })
            .collect()
    });
    ShardSnapshot {
        shard: shard.id,
        apis: shard
            .metrics
            .apis()
            .map(|(api_key, c)| ApiSnapshot {
                api_key,
                requests: c.requests.get(),
                latency_sum_us: c.latency_sum_us.get(),
                latency_buckets: std::array::from_fn(|i| c.latency_buckets[i].get()),
            })
            .collect(),
        errors: shard.metrics.errors().collect(),
        partitions,
        committed,
        runtime: shard.metrics.runtime.update(gauges),
        isr_shrinks: shard.metrics.isr_shrinks.get(),
        isr_expands: shard.metrics.isr_expands.get(),
        request_memory_held_bytes: shard.request_memory.held(),
        listeners: shard
            .metrics
            .listeners
            .borrow()
            .iter()
            .map(|(name, c)| {
                let (accepted, failures) = (c.accepted.get(), c.tls_handshake_failures.get());
                (name.to_string(), accepted, failures)
            })
            .collect(),
        stages: latency::snapshot(),
    }
}

/// Every shard's latency budget, merged.
pub async fn stages(shard: &Rc<Shard>) -> latency::Budget {
    let budgets = shard
        .run_on_all(|_| async move { latency::snapshot() })
        .await;
    merge_stages(budgets.iter())
}

pub fn merge_stages<'a>(budgets: impl Iterator<Item = &'a latency::Budget>) -> latency::Budget {
    let mut merged = latency::Budget::default();
    budgets.for_each(|b| merged.merge(b));
    merged
}

fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}
