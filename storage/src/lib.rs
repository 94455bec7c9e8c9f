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
//! | `entry` | rkyv envelope around a stored batch |
//! | `index` | sparse offset/timestamp index of a segment and its summary file |
//! | `producer_state` | idempotent producer sequence checks |
//! | `segment` | glommio DMA file helpers: page-tail writer, windowed reader, entry scan |
//! | `log` | `PartitionLog`: append into DMA write chunks, group commit, reads, recovery |

pub mod batch;
pub mod codec;
pub mod compaction;
pub mod entry;
pub mod index;
pub mod log;
pub mod producer_state;
pub mod segment;

pub use log::{
    now_ms, AppendError, AppendOutcome, CompactionOutcome, LogConfig, PartitionLog,
    RetentionOutcome, StorageError,
};
