//! Per-shard log maintenance: turns topic configs into [`LogConfig`]s and runs the background
//! task that enforces retention (`log.retention.check.interval.ms`) and `flush.ms`, expires
//! idle idempotent-producer state (`producer.id.expiration.ms`), shares the
//! shard's tail-cache bound among the partitions being written and ages each tail cache's
//! readers (every tick), and
//! compaction (`cleanup.policy=compact`, within `log.cleaner.io.max.bytes.per.second`), and
//! retries partitions whose writes failed on a full disk, on the partitions this shard owns. Runs on the owning shard (glommio `spawn_local`), never on the
//! produce or fetch path, and works through partitions one at a time.

use crate::config::BrokerConfig;
use crate::shard::Shard;
use controller::TopicMeta;
use std::rc::Rc;
use std::time::Duration;
use storage::LogConfig;
use tracing::{info, warn};

/// Longest sleep between `flush.ms` checks, so the flush clock is honoured to within this.
const FLUSH_CHECK_INTERVAL_MS_MAX: u64 = 1000;
/// Shortest tick, whatever the settings say.
const TICK_MS_MIN: u64 = 10;
/// Active segment bytes between index checkpoints (bounds what recovery scans after a crash).
const INDEX_CHECKPOINT_BYTES: u64 = 16 << 20;
/// A closed segment's file is closed after this long without reads (bounds open fds).
const SEGMENT_IDLE_CLOSE_MS: i64 = 60_000;
/// Kafka's `delete.retention.ms` default (one day).
const DELETE_RETENTION_MS_DEFAULT: i64 = 86_400_000;

/// Whether `topic`'s `cleanup.policy` (default `delete`) names `policy`.
fn cleanup_policy_has(topic: &TopicMeta, policy: &str) -> bool {
    let configured = topic
        .configs
        .get("cleanup.policy")
        .map_or("delete", |v| v.trim());
    configured.split(',').any(|p| p.trim() == policy)
}

/// Whether `topic` is compacted (`cleanup.policy` `compact` or `compact,delete`).
pub fn is_compacted(topic: &TopicMeta) -> bool {
    cleanup_policy_has(topic, "compact")
}

/// Topic config `name` as a number, else `default` (unset or not a number).
pub fn topic_long(topic: &TopicMeta, name: &str, default: i64) -> i64 {
    topic
        .configs
        .get(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Whether `topic` stamps batches with the broker clock (`message.timestamp.type`).
pub fn is_log_append_time(topic: &TopicMeta) -> bool {
    topic
        .configs
        .get("message.timestamp.type")
        .map(|v| v.trim())
        == Some("LogAppendTime")
}

/// The log settings of `topic`: its own configs by Kafka name, else the broker defaults.
pub fn log_config(broker: &BrokerConfig, topic: &TopicMeta) -> LogConfig {
    let long = |name: &str, default: i64| topic_long(topic, name, default);
    // Without "delete" in the policy, retention deletes nothing.
    let (deletes, compacts) = (cleanup_policy_has(topic, "delete"), is_compacted(topic));
    LogConfig {
        segment_bytes: long("segment.bytes", broker.log_segment_bytes as i64).max(1) as u64,
        segment_ms: long("segment.ms", broker.log_roll_ms),
        index_interval_bytes: broker.log_index_interval_bytes,
        index_checkpoint_bytes: INDEX_CHECKPOINT_BYTES,
        cache_bytes_max: broker.log_cache_bytes_per_partition,
        retention_ms: if deletes {
            long("retention.ms", broker.log_retention_ms)
        } else {
            -1
        },
        retention_bytes: if deletes {
            long("retention.bytes", broker.log_retention_bytes)
        } else {
            -1
        },
        log_append_time: is_log_append_time(topic),
        flush_messages: long("flush.messages", i64::MAX).max(1),
        flush_ms: long("flush.ms", i64::MAX),
        compact: compacts,
        delete_retention_ms: long("delete.retention.ms", DELETE_RETENTION_MS_DEFAULT),
        key_map_bytes: broker.log_cleaner_dedupe_buffer_size,
        min_cleanable_dirty_ratio: topic
            .configs
            .get("min.cleanable.dirty.ratio")
            .and_then(|v| crate::config::dirty_ratio(v))
            .unwrap_or(broker.log_cleaner_min_cleanable_ratio),
    }
}

/// Starts the maintenance task of `shard`; it ends when the shard closes.
pub fn spawn(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move { run(shard).await }).detach();
}

async fn run(shard: Rc<Shard>) {
    let check_ms = shard.config.log_retention_check_interval_ms.max(1);
    let expiry_check_ms = shard.config.producer_id_expiration_check_interval_ms.max(1);
    let tick_ms = check_ms
        .min(expiry_check_ms)
        .clamp(TICK_MS_MIN, FLUSH_CHECK_INTERVAL_MS_MAX);
    let (mut since_check_ms, mut since_expiry_ms) = (0u64, 0u64);
    loop {
        glommio::timer::sleep(Duration::from_millis(tick_ms)).await;
        if shard.is_closed() {
            return;
        }
        let now = storage::now_ms();
        for log in shard.partition_logs() {
            // A partition that hit a full disk tries again once per tick.
            log.retry_after_failure();
            log.flush_if_due(now);
            // The tail cache lets go of what no reader read from memory lately.
            log.age_tail_readers(now);
        }
        shard.share_cache(now);
        since_expiry_ms += tick_ms;
        if since_expiry_ms >= expiry_check_ms {
            since_expiry_ms = 0;
            expire_producers(&shard, now);
        }
        since_check_ms += tick_ms;
        if since_check_ms < check_ms {
            continue;
        }
        since_check_ms = 0;
        for partition in shard.partitions() {
            if shard.is_closed() {
                return;
            }
            let (key, log) = (partition.key(), partition.log());
            // Deleted (its topic went) since the list was taken: nothing to maintain.
            if log.is_closed() {
                continue;
            }
            match log.enforce_retention(storage::now_ms()).await {
                Ok(out) if out.segments_deleted > 0 => info!(
                    shard = shard.id,
                    partition = key.1,
                    segments = out.segments_deleted,
                    bytes = out.bytes_deleted,
                    log_start_offset = out.log_start_offset,
                    "retention deleted segments"
                ),
                Ok(_) => {}
                Err(_) if log.is_closed() => continue,
                Err(e) => warn!(shard = shard.id, "retention check failed: {e}"),
            }
            log.close_idle_segments(storage::now_ms(), SEGMENT_IDLE_CLOSE_MS)
                .await;
            if !log.compaction_due(storage::now_ms()) {
                continue;
            }
            // How long the pass took is logged: with the IO budget it is at least
            // bytes_after / log.cleaner.io.max.bytes.per.second (tests/integration check it).
            let started = std::time::Instant::now();
            match log
                .compact(
                    storage::now_ms(),
                    shard.config.log_cleaner_io_max_bytes_per_second,
                )
                .await
            {
                Ok(out) => info!(
                    shard = shard.id,
                    partition = key.1,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    segments = out.segments_rewritten,
                    bytes_before = out.bytes_before,
                    bytes_after = out.bytes_after,
                    segments_after = out.segments_after,
                    records_removed = out.records_removed,
                    batches_removed = out.batches_removed,
                    "compacted"
                ),
                Err(_) if log.is_closed() => {}
                Err(e) => warn!(shard = shard.id, "compaction failed: {e}"),
            }
        }
    }
}

/// Drops idempotent producer state idle for `producer.id.expiration.ms` on every partition
/// of the shard (in memory; the next producer snapshot leaves it out), so the state grows
/// with the producers in use, not with every producer id ever seen.
fn expire_producers(shard: &Shard, now_ms: i64) {
    let expiration_ms = shard.config.producer_id_expiration_ms;
    let expired: usize = shard
        .partition_logs()
        .iter()
        .map(|log| log.expire_producers(now_ms, expiration_ms))
        .sum();
    if expired > 0 {
        info!(
            shard = shard.id,
            producers = expired,
            "expired idle producer state"
        );
    }
}
