//! Spate storage: the per-partition segmented log.
//!
//! Runtime-free pieces (`batch`, `entry`, `producer_state`, `index`) are plain functions and
//! state machines; only `segment` / `log` touch glommio DMA files.
//!
//! | module | job |
//! | --- | --- |
//! | `batch` | Kafka v2 record batch parsing/validation, offset patching |
//! | `codec` | Kafka's batch compression codecs (gzip, snappy, lz4, zstd), bounded decompression |
//! | `compaction` | key map, record survival rules and batch rebuilding of log compaction |
//! | `crc` | CRC32C of a concatenation from its parts' CRCs (entry checksums from batch CRCs) |
//! | `dma_copy` | the append path's payload copy into write chunks, with streaming stores |
//! | `entry` | rkyv envelope around a stored batch |
//! | `index` | sparse offset/timestamp index of a segment and its summary file |
//! | `leader_epoch` | leader-epoch cache (epoch -> start offset), its checkpoint file format |
//! | `producer_state` | idempotent producer sequence checks |
//! | `segment` | glommio DMA file helpers: page-tail writer, windowed reader, entry scan |
//! | `log` | `PartitionLog`: append into DMA write chunks, group commit, reads, recovery |

pub mod batch;
pub mod codec;
pub mod compaction;
pub mod crc;
pub mod dma_copy;
pub mod entry;
pub mod index;
pub mod leader_epoch;
pub mod log;
pub mod producer_state;
pub mod segment;

pub use log::{
    now_ms, AppendError, AppendOutcome, CompactionOutcome, LogConfig, PartitionLog, ReplicaError,
    RetentionOutcome, StorageError, DIRTY_RATIO_SCALE,
};

/// glommio preempt timer for executors that host partition logs
/// (`LocalExecutorBuilder::preempt_timer`). glommio hands queued io_uring submissions to the
/// kernel (and reaps completions) only between task-queue runs: when every task waits, or
/// when this timer fires. While appends keep a shard busy, a chunk write the writer task
/// issued waits up to this long before the disk sees it (glommio's default, 100 ms, left the
/// disk idle for whole bursts of appends). Overridable with `SPATE_PREEMPT_TIMER_US`.
pub const EXECUTOR_PREEMPT_TIMER: std::time::Duration = std::time::Duration::from_millis(1);

/// glibc adapts its mmap and trim thresholds to the largest block freed so far. A shard's
/// large blocks are write chunks (up to 1 MiB each, one per MiB appended) and read buffers (up
/// to a few MiB): with adaptive thresholds they got their own mappings or the arena was
/// trimmed, and every chunk and catch-up read faulted its pages in again (a quarter of the
/// append path's time, ~16% of a catch-up broker's). Fixed thresholds keep up to 64 MiB of
/// freed memory per arena for reuse; blocks of 32 MiB and more still get their own mapping.
/// Call once per process, before the shards start (`spate start` and the benchmarks do).
pub fn fix_malloc_thresholds() {
    #[cfg(target_env = "gnu")]
    {
        const MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD_BYTES: libc::c_int = 64 << 20;
        // SAFETY: mallopt only changes allocator parameters.
        let ok = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
        };
        if !ok {
            tracing::warn!("could not set malloc thresholds; chunks and reads may fault more");
        }
    }
}

/// `EXECUTOR_PREEMPT_TIMER`, or `SPATE_PREEMPT_TIMER_US` microseconds where that is set (to
/// compare settings in benchmarks; 100000 is glommio's default).
pub fn executor_preempt_timer() -> std::time::Duration {
    std::env::var("SPATE_PREEMPT_TIMER_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(EXECUTOR_PREEMPT_TIMER, std::time::Duration::from_micros)
}

/// How long an executor that hosts partition logs spins for new work before it parks
/// (`LocalExecutorBuilder::spin_before_park`): none, unless `SPATE_SPIN_BEFORE_PARK_US` sets
/// microseconds (to compare the wake-up cost in benchmarks; a spinning shard uses its core
/// while idle).
pub fn executor_spin_before_park() -> Option<std::time::Duration> {
    std::env::var("SPATE_SPIN_BEFORE_PARK_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|us| *us > 0)
        .map(std::time::Duration::from_micros)
}
