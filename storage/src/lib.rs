//! Spate storage: the per-partition segmented log.
//!
//! Runtime-free pieces (`batch`, `entry`, `producer_state`, `index`) are plain functions and
//! state machines; only `segment` / `log` touch glommio DMA files.
//!
//! | module | job |
//! | --- | --- |
//! | `batch` | Kafka v2 record batch parsing/validation, offset patching |
//! | `entry` | rkyv envelope around a stored batch |
//! | `index` | sparse offset/timestamp index of a segment and its summary file |
//! | `producer_state` | idempotent producer sequence checks |
//! | `segment` | glommio DMA file helpers: page-tail writer, windowed reader, entry scan |
//! | `log` | `PartitionLog`: append, group commit, reads, recovery |

pub mod batch;
pub mod entry;
pub mod index;
pub mod log;
pub mod producer_state;
pub mod segment;

pub use log::{
    now_ms, AppendError, AppendOutcome, LogConfig, PartitionLog, RetentionOutcome, StorageError,
};
