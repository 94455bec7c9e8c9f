//! Prometheus text exposition format (version 0.0.4) of a scrape.

use crate::metrics::errors::{api_name, error_name};
use crate::metrics::scrape::{self, CommittedSnapshot, ShardSnapshot, StorageGauges};
use crate::metrics::LATENCY_BUCKETS_US;
use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};

/// Process-wide values that no shard owns.
pub struct ProcessInfo {
    pub uptime_s: f64,
    pub resident_bytes: Option<u64>,
    /// Connections open now, and those closed at once since start (per address, node-wide).
    pub connections: usize,
    pub refused_connections_per_ip: u64,
    /// Times a listener waited at `max.connections`.
    pub connection_slot_waits: u64,
}

/// The whole `/metrics` page.
pub fn render(shards: &[ShardSnapshot], process: &ProcessInfo) -> String {
    let mut out = Out(String::with_capacity(16 * 1024));
    requests(&mut out, shards);
    stages(&mut out, shards);
    topics_and_partitions(&mut out, shards);
    replication(&mut out, shards);
    group_lag(&mut out, shards);
    runtime(&mut out, shards);
    connections(&mut out, shards, process);
    sasl(&mut out);
    out.family(
        "spate_process_uptime_seconds",
        "gauge",
        "Seconds since the process started.",
    );
    out.sample("spate_process_uptime_seconds", &[], process.uptime_s);
    if let Some(rss) = process.resident_bytes {
        out.family(
            "spate_process_resident_memory_bytes",
            "gauge",
            "Resident set size of the process (from /proc/self/statm).",
        );
        out.sample("spate_process_resident_memory_bytes", &[], rss);
    }
    out.family(
        "spate_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    out.sample(
        "spate_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.0
}

/// Per listener, summed over the shards: connections accepted and TLS handshake failures.
fn listeners(out: &mut Out, shards: &[ShardSnapshot]) {
    let mut totals: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (name, accepted, failures) in shards.iter().flat_map(|s| &s.listeners) {
        let t = totals.entry(name).or_default();
        t.0 += accepted;
        t.1 += failures;
    }
    for (name, help, value) in [
        (
            "spate_listener_connections_accepted_total",
            "Connections accepted, by listener.",
            (|t: &(u64, u64)| t.0) as fn(&(u64, u64)) -> u64,
        ),
        (
            "spate_tls_handshake_failures_total",
            "TLS handshakes that failed or timed out, by listener (always 0 on a PLAINTEXT or SASL_PLAINTEXT one).",
            |t| t.1,
        ),
    ] {
        out.family(name, "counter", help);
        for (listener, t) in &totals {
            out.sample(name, &[("listener", listener)], value(t));
        }
    }
}

/// Upper bounds of the latency budget's buckets, in nanoseconds (5 µs ... 10 s): finer than the
/// request buckets, since most stages take microseconds.
const STAGE_BUCKETS_NS: [u64; 19] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// The latency budget (`latency::Stage`), merged over the shards: one histogram per stage.
fn stages(out: &mut Out, shards: &[ShardSnapshot]) {
    let name = "spate_stage_latency_seconds";
    out.family(
        name,
        "histogram",
        "The latency budget: time in each stage of Produce and Fetch requests, and of partition \
         log writes and fdatasyncs (path, stage: see ARCHITECTURE.md). Bucket counts are within 1 %.",
    );
    let merged = scrape::merge_stages(shards.iter().map(|s| &s.stages));
    for summary in merged.summaries() {
        let labels = [
            ("path", summary.stage.path()),
            ("stage", summary.stage.name()),
        ];
        let bucket = format!("{name}_bucket");
        for ns in STAGE_BUCKETS_NS {
            let le = format!("{}", ns as f64 / 1e9);
            let count = merged.count_at_or_below(summary.stage, ns);
            out.sample(&bucket, &[labels[0], labels[1], ("le", &le)], count);
        }
        out.sample(
            &bucket,
            &[labels[0], labels[1], ("le", "+Inf")],
            summary.count,
        );
        out.sample(&format!("{name}_sum"), &labels, summary.sum_ns as f64 / 1e9);
        out.sample(&format!("{name}_count"), &labels, summary.count);
    }
}

fn sasl(out: &mut Out) {
    out.family(
        "spate_sasl_authentications_total",
        "counter",
        "SASL authentications finished on the node, by mechanism and result.",
    );
    for (mechanism, result, n) in crate::sasl::metrics::counts() {
        out.sample(
            "spate_sasl_authentications_total",
            &[("mechanism", mechanism), ("result", result)],
            n,
        );
    }
    out.family(
        "spate_sasl_reauthentications_total",
        "counter",
        "Successful SASL re-authentications (KIP-368), by mechanism (also counted in spate_sasl_authentications_total).",
    );
    for (mechanism, n) in crate::sasl::metrics::reauthentications() {
        out.sample(
            "spate_sasl_reauthentications_total",
            &[("mechanism", mechanism)],
            n,
        );
    }
    out.family(
        "spate_sasl_expired_sessions_closed_total",
        "counter",
        "Connections closed because their SASL session expired without re-authentication.",
    );
    out.sample(
        "spate_sasl_expired_sessions_closed_total",
        &[],
        crate::sasl::metrics::expired_closed(),
    );
}

fn connections(out: &mut Out, shards: &[ShardSnapshot], process: &ProcessInfo) {
    out.family(
        "spate_connections",
        "gauge",
        "Client and broker connections open on the node.",
    );
    out.sample("spate_connections", &[], process.connections);
    out.family(
        "spate_connections_refused_total",
        "counter",
        "Connections closed as soon as they were accepted: their address was at max.connections.per.ip.",
    );
    out.sample(
        "spate_connections_refused_total",
        &[],
        process.refused_connections_per_ip,
    );
    out.family(
        "spate_connection_slot_waits_total",
        "counter",
        "Times a listener stopped accepting because the node was at max.connections.",
    );
    out.sample(
        "spate_connection_slot_waits_total",
        &[],
        process.connection_slot_waits,
    );
    listeners(out, shards);
    out.family(
        "spate_request_memory_held_bytes",
        "gauge",
        "Bytes of request frames held between reading and replying, by shard (bounded by queued.max.request.bytes over the shards).",
    );
    for s in shards {
        let shard = s.shard.to_string();
        out.sample(
            "spate_request_memory_held_bytes",
            &[("shard", &shard)],
            s.request_memory_held_bytes,
        );
    }
}

fn requests(out: &mut Out, shards: &[ShardSnapshot]) {
    let mut per_api: BTreeMap<i16, (u64, u64, [u64; LATENCY_BUCKETS_US.len() + 1])> =
        BTreeMap::new();
    for api in shards.iter().flat_map(|s| &s.apis) {
        let entry = per_api.entry(api.api_key).or_default();
        entry.0 += api.requests;
        entry.1 += api.latency_sum_us;
        for (total, n) in entry.2.iter_mut().zip(api.latency_buckets) {
            *total += n;
        }
    }
    out.family(
        "spate_requests_total",
        "counter",
        "Kafka requests served, by API (Kafka's API name).",
    );
    for (key, (requests, _, _)) in &per_api {
        out.sample(
            "spate_requests_total",
            &[("api", &api_name(*key))],
            requests,
        );
    }
    out.family(
        "spate_request_latency_seconds",
        "histogram",
        "Time from a decoded request to its encoded answer (Fetch includes its long-poll wait).",
    );
    for (key, (requests, sum_us, buckets)) in &per_api {
        let api = api_name(*key);
        let mut cumulative = 0;
        for (i, n) in buckets.iter().enumerate() {
            cumulative += n;
            let le = match LATENCY_BUCKETS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".to_string(),
            };
            out.sample(
                "spate_request_latency_seconds_bucket",
                &[("api", &api), ("le", &le)],
                cumulative,
            );
        }
        out.sample(
            "spate_request_latency_seconds_sum",
            &[("api", &api)],
            *sum_us as f64 / 1e6,
        );
        out.sample(
            "spate_request_latency_seconds_count",
            &[("api", &api)],
            requests,
        );
    }
    let mut errors: BTreeMap<(i16, i16), u64> = BTreeMap::new();
    for (api, code, n) in shards.iter().flat_map(|s| &s.errors) {
        *errors.entry((*api, *code)).or_default() += n;
    }
    out.family(
        "spate_request_errors_total",
        "counter",
        "Error codes in answers, by API and Kafka error name (one per partition, topic or group in error).",
    );
    for ((api, code), n) in errors {
        let labels = [("api", api_name(api)), ("error", error_name(code))];
        out.sample("spate_request_errors_total", &pairs(&labels), n);
    }
}

fn topics_and_partitions(out: &mut Out, shards: &[ShardSnapshot]) {
    let mut topics: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for p in shards.iter().flat_map(|s| &s.partitions) {
        let t = topics.entry(&p.topic).or_default();
        t.0 += p.bytes_in;
        t.1 += p.bytes_out;
    }
    out.family(
        "spate_topic_bytes_in_total",
        "counter",
        "Record batch bytes appended by Produce, by topic (since this process started).",
    );
    for (topic, (bytes_in, _)) in &topics {
        out.sample("spate_topic_bytes_in_total", &[("topic", topic)], bytes_in);
    }
    out.family(
        "spate_topic_bytes_out_total",
        "counter",
        "Record batch bytes read from the log for Fetch answers, by topic (since this process started).",
    );
    for (topic, (_, bytes_out)) in &topics {
        out.sample(
            "spate_topic_bytes_out_total",
            &[("topic", topic)],
            bytes_out,
        );
    }
    out.family("spate_partitions", "gauge", "Partitions owned, by shard.");
    for s in shards {
        out.sample(
            "spate_partitions",
            &[("shard", &s.shard.to_string())],
            s.partitions.len(),
        );
    }
    out.family(
        "spate_under_replicated_partitions",
        "gauge",
        "Partitions this broker leads with fewer in-sync replicas than replicas.",
    );
    let under_replicated = shards
        .iter()
        .flat_map(|s| &s.partitions)
        .filter(|p| p.under_replicated)
        .count();
    out.sample("spate_under_replicated_partitions", &[], under_replicated);
    let mut partitions: Vec<_> = shards.iter().flat_map(|s| &s.partitions).collect();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    for (name, help, value) in [
        (
            "spate_log_size_bytes",
            "Bytes of the partition's log segments.",
            (|p| p.size_bytes as i64) as fn(&crate::metrics::scrape::PartitionSnapshot) -> i64,
        ),
        ("spate_log_start_offset", "First offset served.", |p| {
            p.log_start_offset
        }),
        (
            "spate_log_end_offset",
            "Next offset to be assigned (the high watermark).",
            |p| p.log_end_offset,
        ),
        (
            "spate_log_cache_bytes",
            "Memory the partition's tail cache holds (its write chunks count whole).",
            |p| p.cache_bytes as i64,
        ),
        (
            "spate_log_cache_bytes_max",
            "The partition's tail cache bound now: a share of log.cache.bytes.per.shard, larger while the partition is written to.",
            |p| p.cache_bytes_max as i64,
        ),
    ] {
        out.family(name, "gauge", help);
        for p in &partitions {
            let partition = p.partition.to_string();
            out.sample(
                name,
                &[("topic", &p.topic), ("partition", &partition)],
                value(p),
            );
        }
    }
}

fn replication(out: &mut Out, shards: &[ShardSnapshot]) {
    for (name, help, value) in [
        (
            "spate_isr_shrinks_total",
            "ISR shrinks of partitions this broker leads, counted when the controller commits them.",
            shards.iter().map(|s| s.isr_shrinks).sum::<u64>(),
        ),
        (
            "spate_isr_expands_total",
            "ISR expansions of partitions this broker leads, counted when the controller commits them.",
            shards.iter().map(|s| s.isr_expands).sum(),
        ),
    ] {
        out.family(name, "counter", help);
        out.sample(name, &[], value);
    }
    let mut topics: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for p in shards.iter().flat_map(|s| &s.partitions) {
        let t = topics.entry(&p.topic).or_default();
        t.0 += p.replication_bytes_in;
        t.1 += p.replication_bytes_out;
    }
    out.family(
        "spate_replication_bytes_in_total",
        "counter",
        "Record batch bytes this broker's followers appended from their leaders' fetch answers, by topic.",
    );
    for (topic, (bytes_in, _)) in &topics {
        out.sample(
            "spate_replication_bytes_in_total",
            &[("topic", topic)],
            bytes_in,
        );
    }
    out.family(
        "spate_replication_bytes_out_total",
        "counter",
        "Record batch bytes this broker's leaders read for their followers' fetches, by topic.",
    );
    for (topic, (_, bytes_out)) in &topics {
        out.sample(
            "spate_replication_bytes_out_total",
            &[("topic", topic)],
            bytes_out,
        );
    }
    let mut partitions: Vec<_> = shards.iter().flat_map(|s| &s.partitions).collect();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out.family(
        "spate_follower_lag_records",
        "gauge",
        "On the leader: its log end offset minus each follower's fetch offset (followers that fetched in this leader epoch).",
    );
    for p in &partitions {
        let partition = p.partition.to_string();
        for (follower, lag) in &p.follower_lag {
            let follower = follower.to_string();
            let labels = [
                ("topic", p.topic.as_str()),
                ("partition", &partition),
                ("follower", &follower),
            ];
            out.sample("spate_follower_lag_records", &labels, lag);
        }
    }
    out.family(
        "spate_replica_fetcher_max_lag_records",
        "gauge",
        "On followers: the largest leader high watermark minus log end offset over the partitions this broker follows, as of their last fetch (Kafka's ReplicaFetcherManager MaxLag).",
    );
    let max_lag = partitions.iter().filter_map(|p| p.fetcher_lag).max();
    out.sample(
        "spate_replica_fetcher_max_lag_records",
        &[],
        max_lag.unwrap_or(0),
    );
}

fn group_lag(out: &mut Out, shards: &[ShardSnapshot]) {
    let ends: BTreeMap<(&str, i32), i64> = shards
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| ((p.topic.as_str(), p.partition), p.log_end_offset))
        .collect();
    let mut committed: Vec<&CommittedSnapshot> = shards.iter().flat_map(|s| &s.committed).collect();
    committed
        .sort_by(|a, b| (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition)));
    out.family(
        "spate_consumer_group_committed_offset",
        "gauge",
        "Committed offset, by group, topic and partition.",
    );
    for c in &committed {
        let partition = c.partition.to_string();
        let labels = [
            ("group", c.group.as_str()),
            ("topic", &c.topic),
            ("partition", &partition),
        ];
        out.sample("spate_consumer_group_committed_offset", &labels, c.offset);
    }
    out.family(
        "spate_consumer_group_lag",
        "gauge",
        "High watermark minus committed offset, by group, topic and partition (partitions that exist).",
    );
    for c in &committed {
        let Some(end) = ends.get(&(c.topic.as_str(), c.partition)) else {
            continue;
        };
        let partition = c.partition.to_string();
        let labels = [
            ("group", c.group.as_str()),
            ("topic", &c.topic),
            ("partition", &partition),
        ];
        out.sample("spate_consumer_group_lag", &labels, (end - c.offset).max(0));
    }
}

fn runtime(out: &mut Out, shards: &[ShardSnapshot]) {
    type Pick = fn(&crate::metrics::scrape::RuntimeSnapshot) -> f64;
    let families: [(&str, &str, Pick); 7] = [
        (
            "spate_shard_busy_seconds_total",
            "Time the shard's glommio executor ran tasks (not idle, not polling IO).",
            |r| r.busy_ns as f64 / 1e9,
        ),
        (
            "spate_shard_busy_with_io_poll_seconds_total",
            "Executor run time plus the time spent polling io_uring.",
            |r| r.busy_with_io_poll_ns as f64 / 1e9,
        ),
        (
            "spate_shard_tasks_executed_total",
            "Tasks run by the shard's executor.",
            |r| r.tasks_executed as f64,
        ),
        (
            "spate_shard_file_read_ops_total",
            "File reads issued by the shard (direct and buffered).",
            |r| r.file_reads.0 as f64,
        ),
        (
            "spate_shard_file_read_bytes_total",
            "Bytes of file reads issued by the shard.",
            |r| r.file_reads.1 as f64,
        ),
        (
            "spate_shard_file_write_ops_total",
            "File writes issued by the shard (direct and buffered).",
            |r| r.file_writes.0 as f64,
        ),
        (
            "spate_shard_file_write_bytes_total",
            "Bytes of file writes issued by the shard.",
            |r| r.file_writes.1 as f64,
        ),
    ];
    for (name, help, pick) in families {
        out.family(name, "counter", help);
        for s in shards {
            out.sample(name, &[("shard", &s.shard.to_string())], pick(&s.runtime));
        }
    }
    type Gauge = (&'static str, &'static str, fn(&StorageGauges) -> u64);
    let gauges: [Gauge; 4] = [
        (
            "spate_shard_pending_write_bytes",
            "Bytes appended on the shard and not yet submitted to io_uring; glommio 0.9 exposes no live count of operations in flight in the ring.",
            |b| b.pending_write_bytes,
        ),
        (
            "spate_shard_unwritten_bytes",
            "Bytes appended on the shard and not yet written (its write backlog): each partition's stays within its tail cache bound, produce waits beyond it.",
            |b| b.unwritten_bytes,
        ),
        (
            "spate_shard_produce_waiting_for_room",
            "Produced batches on the shard held back now until their partition's write backlog has room.",
            |b| b.appends_waiting,
        ),
        (
            "spate_shard_read_ahead_streams",
            "Catch-up readers holding read-ahead windows (up to 3 MiB each) on the shard now; log.read.ahead.bytes.per.shard bounds them.",
            |b| b.read_ahead_streams,
        ),
    ];
    for (name, help, value) in gauges {
        out.family(name, "gauge", help);
        for s in shards {
            let shard = s.shard.to_string();
            out.sample(name, &[("shard", &shard)], value(&s.runtime.storage));
        }
    }
}

fn pairs<'a>(labels: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

struct Out(String);

impl Out {
    /// HELP and TYPE lines; counters keep their `_total` suffix there, as the 0.0.4 text
    /// format has it (the parsers strip it from the family name).
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::scrape::{ApiSnapshot, PartitionSnapshot, RuntimeSnapshot};

    #[test]
    fn renders_histograms_topics_and_lag() {
        let mut buckets = [0; LATENCY_BUCKETS_US.len() + 1];
        buckets[0] = 2;
        buckets[LATENCY_BUCKETS_US.len()] = 1;
        let shard = ShardSnapshot {
            shard: 0,
            apis: vec![ApiSnapshot {
                api_key: 0,
                requests: 3,
                latency_sum_us: 1_500_000,
                latency_buckets: buckets,
            }],
            errors: vec![(0, 3, 2)],
            partitions: vec![PartitionSnapshot {
                topic: "t".into(),
                partition: 0,
                size_bytes: 100,
                log_start_offset: 0,
                log_end_offset: 10,
                bytes_in: 80,
                bytes_out: 40,
                cache_bytes: 8192,
                cache_bytes_max: 65536,
                under_replicated: true,
                replication_bytes_in: 0,
                replication_bytes_out: 160,
                follower_lag: vec![(2, 0), (3, 7)],
                fetcher_lag: None,
            }],
            committed: vec![CommittedSnapshot {
                group: "g\"1".into(),
                topic: "t".into(),
                partition: 0,
                offset: 4,
            }],
            runtime: RuntimeSnapshot::default(),
            isr_shrinks: 2,
            isr_expands: 1,
            request_memory_held_bytes: 0,
            listeners: vec![("SSL".into(), 5, 2)],
            stages: {
                let mut stages = latency::Budget::default();
                // 3 appends of 20 µs and 1 of 2 ms; on two shards below: twice that.
                let appends = [(20_000, 3), (2_000_000, 1)];
                stages.add_buckets(latency::Stage::ProduceAppend, &appends);
                stages
            },
        };
        let mut follower = shard.clone();
        follower.partitions[0].topic = "u".into();
        follower.partitions[0].follower_lag = Vec::new();
        follower.partitions[0].fetcher_lag = Some(5);
        follower.partitions[0].replication_bytes_in = 90;
        follower.partitions[0].under_replicated = false;
        (follower.apis, follower.errors, follower.committed) = (vec![], vec![], vec![]);
        (follower.isr_shrinks, follower.isr_expands) = (0, 0);
        let page = render(
            &[shard.clone(), shard, follower],
            &ProcessInfo {
                uptime_s: 1.5,
                resident_bytes: Some(7),
                connections: 3,
                refused_connections_per_ip: 4,
                connection_slot_waits: 0,
            },
        );
        for line in [
            "# TYPE spate_requests_total counter",
            "spate_requests_total{api=\"Produce\"} 6",
            "spate_listener_connections_accepted_total{listener=\"SSL\"} 15",
            "spate_tls_handshake_failures_total{listener=\"SSL\"} 6",
            "spate_request_latency_seconds_bucket{api=\"Produce\",le=\"0.0001\"} 4",
            "spate_request_latency_seconds_bucket{api=\"Produce\",le=\"10\"} 4",
            "spate_request_latency_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 6",
            "spate_request_latency_seconds_sum{api=\"Produce\"} 3",
            "spate_request_errors_total{api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} 4",
            "spate_topic_bytes_in_total{topic=\"t\"} 160",
            "spate_consumer_group_lag{group=\"g\\\"1\",topic=\"t\",partition=\"0\"} 6",
            "spate_log_cache_bytes_max{topic=\"t\",partition=\"0\"} 65536",
            "spate_process_resident_memory_bytes 7",
            "spate_connections 3",
            "spate_connections_refused_total 4",
            "spate_request_memory_held_bytes{shard=\"0\"} 0",
            "spate_under_replicated_partitions 2",
            "# TYPE spate_isr_shrinks_total counter",
            "spate_isr_shrinks_total 4",
            "spate_isr_expands_total 2",
            "spate_replication_bytes_out_total{topic=\"t\"} 320",
            "spate_replication_bytes_in_total{topic=\"u\"} 90",
            "spate_follower_lag_records{topic=\"t\",partition=\"0\",follower=\"3\"} 7",
            "spate_replica_fetcher_max_lag_records 5",
            "# TYPE spate_stage_latency_seconds histogram",
            "spate_stage_latency_seconds_bucket{path=\"produce\",stage=\"append\",le=\"0.00001\"} 0",
            "spate_stage_latency_seconds_bucket{path=\"produce\",stage=\"append\",le=\"0.000025\"} 9",
            "spate_stage_latency_seconds_bucket{path=\"produce\",stage=\"append\",le=\"0.001\"} 9",
            "spate_stage_latency_seconds_bucket{path=\"produce\",stage=\"append\",le=\"0.0025\"} 12",
            "spate_stage_latency_seconds_bucket{path=\"produce\",stage=\"append\",le=\"+Inf\"} 12",
            "spate_stage_latency_seconds_count{path=\"produce\",stage=\"append\"} 12",
        ] {
            assert!(page.lines().any(|l| l == line), "missing {line}\n{page}");
        }
    }
}
