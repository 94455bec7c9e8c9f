//! `spate bench report`: a comparison's JSON record → a markdown report with SVG plots
//! (throughput vs p99 latency; Spate/Kafka ratios against the targets). Every figure in
//! the report is computed from the record; hand-written analysis goes in `<name>.notes.md`
//! beside it and is included verbatim.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Medians over rounds of one workload on one broker.
#[derive(Clone, Copy, Debug, Default)]
pub struct Metrics {
    pub mb_per_s: f64,
    pub records_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub cpu_s_per_gb: f64,
    pub peak_rss_mib: f64,
    pub ready_s: f64,
    /// Bytes the broker caused to be written to storage per logical payload byte.
    pub disk_write_amplification: f64,
    pub consume_mb_per_s: f64,
    /// End-to-end (produce to fetch) p99 of an e2e workload.
    pub e2e_p99_ms: f64,
    /// Kafka's ProducerPerformance (Java client) against the same broker.
    pub java_mb_per_s: f64,
    pub java_p99_ms: f64,
    pub java_cpu_s_per_gb: f64,
    /// Kafka's ConsumerPerformance over the catch-up read's records (fetch time only).
    pub java_consume_mb_per_s: f64,
    /// Kafka's EndToEndLatency (one record at a time, whole milliseconds).
    pub java_e2e_p50_ms: f64,
    pub java_e2e_p99_ms: f64,
    pub java_e2e_p999_ms: f64,
    pub partitions: f64,
    /// Broker threads' run-queue wait per second of the workload's run (CPU contention).
    pub runqueue_wait_per_s: f64,
    /// r3: kill -9 of a leader to the first acks=all answer by the new leader, and to the last
    /// of the partitions it led.
    pub failover_s: f64,
    pub failover_all_s: f64,
    /// r4: the follower resumed (or restarted) to being in every ISR, and the payload written
    /// while it was down per second of that; a restarted one's exec to its ready line.
    pub catch_up_s: f64,
    pub catch_up_restart_s: f64,
    pub catch_up_mb_per_s: f64,
    pub runs: usize,
}

/// Replicated workloads (3-node clusters, `compare`'s r1-r4) have ids starting with `r`.
fn replicated(workload: &str) -> bool {
    workload.starts_with('r')
}

/// Per (workload, broker) medians of a record.
pub struct Summary {
    pub rows: BTreeMap<(String, String), Metrics>,
}

impl Summary {
    fn get(&self, workload: &str, broker: &str) -> Option<&Metrics> {
        self.rows.get(&(workload.to_string(), broker.to_string()))
    }

    /// Spate / Kafka of one metric of one workload.
    pub fn ratio(&self, workload: &str, f: impl Fn(&Metrics) -> f64) -> Option<f64> {
        let (s, k) = (self.get(workload, "spate")?, self.get(workload, "kafka")?);
        finite(f(s) / f(k))
    }

    /// Spate / Kafka of the largest value of a metric over all single-node workloads (peak RSS).
    pub fn ratio_max(&self, f: impl Fn(&Metrics) -> f64) -> Option<f64> {
        let max = |broker: &str| {
            self.rows
                .iter()
                .filter(|((w, b), _)| b == broker && !replicated(w))
                .map(|(_, m)| f(m))
                .fold(f64::NAN, f64::max)
        };
        finite(max("spate") / max("kafka"))
    }

    /// Spate / Kafka of the median of a metric over all single-node workloads (time to ready).
    pub fn ratio_median(&self, f: impl Fn(&Metrics) -> f64) -> Option<f64> {
        let med = |broker: &str| {
            let v: Vec<f64> = self
                .rows
                .iter()
                .filter(|((w, b), _)| b == broker && !replicated(w))
                .map(|(_, m)| f(m))
                .collect();
            median(&v)
        };
        finite(med("spate")? / med("kafka")?)
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Groups a record's runs and takes medians over rounds.
pub fn summary(record: &Value) -> Summary {
    let mut groups: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for run in record["runs"].as_array().into_iter().flatten() {
        if run.get("error").is_some() {
            continue;
        }
        let key = (
            run["workload"].as_str().unwrap_or("?").to_string(),
            run["broker"].as_str().unwrap_or("?").to_string(),
        );
        groups.entry(key).or_default().push(run);
    }
    let rows = groups
        .into_iter()
        .map(|(key, runs)| {
            let m = |f: &dyn Fn(&Value) -> f64| {
                median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>()).unwrap_or(f64::NAN)
            };
            let p = |r: &Value| r["result"]["produce"].clone();
            let metrics = Metrics {
                mb_per_s: m(&|r| num(&p(r)["mb_per_s"])),
                records_per_s: m(&|r| num(&p(r)["records_per_s"])),
                p50_ms: m(&|r| num(&p(r)["latency_us"]["p50"]) / 1e3),
                p99_ms: m(&|r| num(&p(r)["latency_us"]["p99"]) / 1e3),
                p999_ms: m(&|r| num(&p(r)["latency_us"]["p99.9"]) / 1e3),
                max_ms: m(&|r| num(&p(r)["latency_us"]["max"]) / 1e3),
                cpu_s_per_gb: m(&|r| num(&r["broker_cpu_s_per_gb"])),
                peak_rss_mib: runs
                    .iter()
                    .map(|r| num(&r["broker_peak_rss_mib"]))
                    .fold(f64::NAN, f64::max),
                ready_s: m(&|r| num(&r["ready_s"])),
                disk_write_amplification: m(&|r| {
                    num(&r["broker_disk_write_bytes"]) / num(&p(r)["run_payload_bytes"])
                }),
                consume_mb_per_s: m(&|r| {
                    num(&r["catch_up_consume"]["result"]["consume"]["mb_per_s"])
                }),
                e2e_p99_ms: m(&|r| num(&r["result"]["consume"]["latency_us"]["p99"]) / 1e3),
                java_mb_per_s: m(&|r| num(&r["java_producer_performance"]["mb_per_s"])),
                java_p99_ms: m(&|r| num(&r["java_producer_performance"]["latency_ms"]["p99"])),
                java_cpu_s_per_gb: m(&|r| {
                    num(&r["java_producer_performance"]["broker_cpu_s_per_gb"])
                }),
                java_consume_mb_per_s: m(&|r| num(&r["java_consumer_performance"]["mb_per_s"])),
                java_e2e_p50_ms: m(&|r| num(&r["java_end_to_end_latency"]["latency_ms"]["p50"])),
                java_e2e_p99_ms: m(&|r| num(&r["java_end_to_end_latency"]["latency_ms"]["p99"])),
                java_e2e_p999_ms: m(&|r| num(&r["java_end_to_end_latency"]["latency_ms"]["p99.9"])),
                partitions: m(&|r| num(&r["result"]["settings"]["partitions"])),
                runqueue_wait_per_s: m(&|r| {
                    num(&r["broker_runqueue_wait_s"]) / num(&r["workload_wall_s"])
                }),
                failover_s: m(&|r| num(&r["failover"]["first_ack_s"])),
                failover_all_s: m(&|r| num(&r["failover"]["all_partitions_s"])),
                catch_up_s: m(&|r| num(&r["catch_up"]["back_to_isr_s"])),
                catch_up_restart_s: m(&|r| num(&r["catch_up"]["restart_to_ready_s"])),
                catch_up_mb_per_s: m(&|r| num(&r["catch_up"]["mb_per_s"])),
                runs: runs.len(),
            };
            (key, metrics)
        })
        .collect();
    Summary { rows }
}

/// Reads a record and writes `<name>.md`, `<name>-ratios.svg` and `<name>-latency.svg` beside it.
pub fn write(json_path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(json_path)
        .map_err(|e| format!("read {}: {e}", json_path.display()))?;
    let record: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json_path.display()))?;
    let stem = json_path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or("bad record file name")?
        .to_string();
    let dir = json_path.parent().unwrap_or(Path::new("."));
    let summary = summary(&record);
    let notes = std::fs::read_to_string(dir.join(format!("{stem}.notes.md"))).ok();
    let write = |name: String, body: String| {
        std::fs::write(dir.join(&name), body).map_err(|e| format!("write {name}: {e}"))
    };
    write(format!("{stem}-ratios.svg"), ratios_svg(&summary))?;
    write(format!("{stem}-latency.svg"), latency_svg(&summary))?;
    write(
        format!("{stem}.md"),
        markdown(&record, &summary, &stem, notes.as_deref()),
    )?;
    Ok(())
}

/// The targets: (label, Spate/Kafka ratio, target, whether lower is better).
fn targets(s: &Summary) -> Vec<(&'static str, Option<f64>, f64, bool)> {
    vec![
        (
            "produce throughput (w1, acks=1)",
            s.ratio("w1-acks1", |m| m.mb_per_s),
            2.0,
            false,
        ),
        (
            "produce throughput (w2, acks=all + fsync)",
            s.ratio("w2-acksall-fsync", |m| m.mb_per_s),
            2.0,
            false,
        ),
        (
            "produce throughput (w1, Kafka's Java client)",
            s.ratio("w1-acks1", |m| m.java_mb_per_s),
            2.0,
            false,
        ),
        (
            "produce throughput (w2, Kafka's Java client)",
            s.ratio("w2-acksall-fsync", |m| m.java_mb_per_s),
            2.0,
            false,
        ),
        (
            "broker CPU s per GB (w1)",
            s.ratio("w1-acks1", |m| m.cpu_s_per_gb),
            1.0 / 3.0,
            true,
        ),
        (
            "p99 produce latency at fixed rate (w3)",
            s.ratio("w3-fixed-rate", |m| m.p99_ms),
            0.2,
            true,
        ),
        (
            "p99.9 produce latency at fixed rate (w3)",
            s.ratio("w3-fixed-rate", |m| m.p999_ms),
            0.1,
            true,
        ),
        (
            "peak RSS (max over runs)",
            s.ratio_max(|m| m.peak_rss_mib),
            0.1,
            true,
        ),
        (
            "time from exec to ready",
            s.ratio_median(|m| m.ready_s),
            0.05,
            true,
        ),
    ]
}

fn f(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".into()
    }
}

fn markdown(record: &Value, s: &Summary, stem: &str, notes: Option<&str>) -> String {
    let mut md = String::new();
    let settings = &record["settings"];
    let machine = &record["machine"];
    let _ = writeln!(
        md,
        "# Spate vs Apache Kafka: {} (commit {}{})\n",
        record["date"].as_str().unwrap_or("?"),
        record["commit"].as_str().unwrap_or("?"),
        if record["dirty"].as_bool() == Some(true) {
            ", uncommitted changes"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "Generated by `spate bench report` from [{stem}.json]({stem}.json) (`spate bench compare{}`). \
         Every figure below is a median over {} A/B-alternated round(s) of that record.\n",
        if record["quick"].as_bool() == Some(true) { " --quick" } else { "" },
        settings["rounds"]
    );
    let _ = writeln!(
        md,
        "- Machine: {} CPUs ({}), {:.1} GiB, kernel {}; load average at start: {}.",
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        num(&machine["memory_gib"]),
        machine["kernel"].as_str().unwrap_or("?"),
        machine["loadavg_at_start"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        md,
        "- Cores: broker pinned to CPU {} (both brokers), client to CPU(s) {}.",
        settings["broker_cores"].as_str().unwrap_or("?"),
        settings["client_cores"]
    );
    let _ = writeln!(
        md,
        "- Client: {}; compression {}, idempotence off, replication factor 1{}.",
        settings["client"].as_str().unwrap_or("?"),
        settings["compression"].as_str().unwrap_or("?"),
        if settings.get("replicated").is_some() {
            " (replicated workloads r*: 3, see their section)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "- Spate: {}.",
        settings["spate"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        md,
        "- Kafka: {}.",
        settings["kafka"].as_str().unwrap_or("?")
    );
    let raw = num(&record["raw_disk_odirect_write_mb_s"]);
    let raw_read = num(&record["raw_disk_odirect_read_mb_s"]);
    let lo = num(&record["loopback_mb_s"]);
    let _ = writeln!(md, "- Same run: raw disk O_DIRECT sequential 1 MiB writes + fdatasync **{} MB/s**, O_DIRECT sequential 1 MiB reads **{} MB/s**; loopback TCP, one connection, **{} MB/s**.",
        f(raw, 0), f(raw_read, 0), f(lo, 0));
    md.push_str(&load_line(record));
    if let Some(w1) = s.get("w1-acks1", "spate") {
        let _ = writeln!(
            md,
            "- Spate w1 throughput is {} of the raw disk and {} of loopback.",
            f(w1.mb_per_s / raw, 2),
            f(w1.mb_per_s / lo, 2)
        );
    }
    if let Some(w2) = s.get("w2-acksall-fsync", "spate") {
        let _ = writeln!(
            md,
            "- Spate w2 (acks=all, fsync) throughput is {} of the raw disk.",
            f(w2.mb_per_s / raw, 2)
        );
    }
    md.push_str("\nMB/s are payload (key + value) megabytes (10^6 B) acknowledged per second in the measured window (after warm-up). \
        Latency: produce call to acknowledgement; at the fixed rate (w3) from each record's intended send time, \
        so coordinated omission is corrected. CPU s/GB: broker user+system CPU seconds (/proc/PID/stat) over the whole run \
        per GB of payload sent in it. Disk bytes/payload byte: the broker's /proc/PID/io write_bytes over the payload. \
        Run-queue wait s/s: seconds the broker's threads spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat) per second of the workload: \
        CPU contention from other processes on the broker's core.\n\n");

    md.push_str("## Ratios (Spate / Kafka) against the issue's targets\n\n");
    let _ = writeln!(md, "![ratios]({stem}-ratios.svg)\n");
    md.push_str("| metric | Spate / Kafka | target | met |\n| --- | --- | --- | --- |\n");
    for (label, ratio, target, lower) in targets(s) {
        let met = ratio.map(|r| if lower { r <= target } else { r >= target });
        let _ = writeln!(
            md,
            "| {label} | {} | {} {} | {} |",
            ratio.map_or("–".into(), |r| f(r, 3)),
            if lower { "≤" } else { "≥" },
            f(target, 3),
            match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            }
        );
    }
    if let Some(w2) = s.get("w2-acksall-fsync", "spate") {
        let met = w2.mb_per_s / raw >= 0.8;
        let _ = writeln!(
            md,
            "| Spate fraction of raw disk (w2) | {} | ≥ 0.8 | {} |",
            f(w2.mb_per_s / raw, 2),
            if met { "yes" } else { "**no**" }
        );
    }

    md.push_str("\n## Results\n\n");
    let _ = writeln!(md, "![throughput vs latency]({stem}-latency.svg)\n");
    md.push_str("| workload | broker | runs | MB/s | records/s | p50 ms | p99 ms | p99.9 ms | max ms | CPU s/GB | peak RSS MiB | ready s | disk bytes/payload byte | catch-up consume MB/s | e2e p99 ms | run-queue wait s/s |\n");
    md.push_str(
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for ((w, b), m) in &s.rows {
        let _ = writeln!(
            md,
            "| {w} | {b} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.runs,
            f(m.mb_per_s, 1),
            f(m.records_per_s, 0),
            f(m.p50_ms, 2),
            f(m.p99_ms, 2),
            f(m.p999_ms, 2),
            f(m.max_ms, 1),
            f(m.cpu_s_per_gb, 2),
            f(m.peak_rss_mib, 0),
            f(m.ready_s, 3),
            f(m.disk_write_amplification, 2),
            f(m.consume_mb_per_s, 1),
            f(m.e2e_p99_ms, 2),
            f(m.runqueue_wait_per_s, 2)
        );
    }
    if s.rows.values().any(|m| m.java_mb_per_s.is_finite()) {
        md.push_str("\nSecond client, Kafka's own `ProducerPerformance` (kafka-tools 4.3.1, Java client, same cores, same batch/linger/acks, idempotence off; latency as it reports it: send() to callback, no fixed rate):\n\n");
        md.push_str("| workload | broker | MB/s | p99 ms | broker CPU s/GB |\n| --- | --- | --- | --- | --- |\n");
        for ((w, b), m) in s.rows.iter().filter(|(_, m)| m.java_mb_per_s.is_finite()) {
            let _ = writeln!(
                md,
                "| {w} | {b} | {} | {} | {} |",
                f(m.java_mb_per_s, 1),
                f(m.java_p99_ms, 1),
                f(m.java_cpu_s_per_gb, 2)
            );
        }
    }
    md.push_str(&catch_up_section(s, raw_read));
    md.push_str(&replicated_section(record, s));
    md.push_str(&partition_sweep_section(s));
    md.push_str(&kafka_tools_section(s));
    md.push_str("\nWorkloads:\n\n");
    let mut seen = Vec::new();
    let runs: Vec<&Value> = record["runs"].as_array().into_iter().flatten().collect();
    for run in &runs {
        let id = run["workload"].as_str().unwrap_or("?");
        if seen.contains(&id) {
            continue;
        }
        let kafka_settings = runs
            .iter()
            .find(|r| r["workload"] == run["workload"] && r["broker"] == "kafka")
            .and_then(|r| r["broker_settings"].as_array())
            .filter(|a| !a.is_empty())
            .map_or("defaults".to_string(), |a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            });
        seen.push(id);
        let st = &run["result"]["settings"];
        let length = match st["total_bytes"].as_f64() {
            Some(total) => format!(
                "{} GiB produced, no warm-up (bounded run)",
                f(total / f64::from(1u32 << 30), 2)
            ),
            None => format!(
                "warm-up {} s + {} s measured",
                st["warmup_s"], st["duration_s"]
            ),
        };
        let _ = writeln!(md, "- **{id}**: {}. Record bytes {}, keys {}, compression {}, partitions {}, acks {}, batch {} B, linger {} ms, producers {}, in flight {}, rate {}, {length}. Kafka settings: {}.",
            run["what"].as_str().unwrap_or(""), st["record_bytes"].as_str().unwrap_or("?"), st["keys"].as_str().unwrap_or("?"),
            st["compression"].as_str().unwrap_or("none"),
            st["partitions"], st["acks"].as_str().unwrap_or("?"), st["batch_bytes"], st["linger_ms"], st["producers"],
            st["in_flight_max"], st["rate"].as_str().unwrap_or("?"),
            kafka_settings);
    }
    let failed: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let e = r.get("error")?.as_str()?;
            Some(format!(
                "- {} on {} (round {}): {e}",
                r["workload"].as_str().unwrap_or("?"),
                r["broker"].as_str().unwrap_or("?"),
                r["round"]
            ))
        })
        .collect();
    if !failed.is_empty() {
        md.push_str("\nFailed runs (left out of the medians above):\n\n");
        md.push_str(&failed.join("\n"));
        md.push('\n');
    }
    if let Some(notes) = notes {
        md.push_str("\n## Analysis\n\n");
        md.push_str(notes);
        if !notes.ends_with('\n') {
            md.push('\n');
        }
    }
    md
}

/// The load average over the run: the machine is shared, so say how busy it was.
fn load_line(record: &Value) -> String {
    let ones: Vec<f64> = record["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            r["loadavg_after"]
                .as_str()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    if ones.is_empty() {
        return String::new();
    }
    let (lo, hi) = ones
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    format!(
        "- Load average (1 min) after each run: {} to {} (median {}); at the end: {}. \
         The machine is shared with other processes (builds), so these numbers are noisy.\n",
        f(lo, 2),
        f(hi, 2),
        f(median(&ones).unwrap_or(f64::NAN), 2),
        record["loadavg_at_end"].as_str().unwrap_or("?")
    )
}

/// w5: one consumer from offset 0 to the end after the page cache was dropped, vs the raw disk.
fn catch_up_section(s: &Summary, raw_read: f64) -> String {
    let rows: Vec<_> = s
        .rows
        .iter()
        .filter(|((w, _), _)| w.starts_with("w5-"))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut md = String::from("\n## Catch-up read (w5)\n\nOne consumer reads the whole topic from offset 0 to the end offsets at its start, after the page cache was dropped; then Kafka's ConsumerPerformance (Java consumer, a group) reads the same records, cache dropped again. MB/s of payload; raw disk: O_DIRECT 1 MiB reads of the same run.\n\n");
    md.push_str("| workload | broker | produce MB/s | catch-up read MB/s (spate bench) | fraction of raw disk read | ConsumerPerformance MB/s |\n| --- | --- | --- | --- | --- | --- |\n");
    for ((w, b), m) in rows {
        let _ = writeln!(
            md,
            "| {w} | {b} | {} | {} | {} | {} |",
            f(m.mb_per_s, 1),
            f(m.consume_mb_per_s, 1),
            f(m.consume_mb_per_s / raw_read, 2),
            f(m.java_consume_mb_per_s, 1)
        );
    }
    if let Some(r) = s.ratio("w5-catch-up", |m| m.consume_mb_per_s) {
        let _ = writeln!(md, "\nSpate / Kafka catch-up read: {}.", f(r, 3));
    }
    md
}

/// r1-r4: 3 Spate nodes against 3 Kafka nodes, RF 3, acks=all.
fn replicated_section(record: &Value, s: &Summary) -> String {
    let rows: Vec<_> = s.rows.iter().filter(|((w, _), _)| replicated(w)).collect();
    if rows.is_empty() {
        return String::new();
    }
    let r = &record["settings"]["replicated"];
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let mut md = String::from("\n## Replicated: 3 nodes per system, RF 3, acks=all (r1-r4)\n\n");
    let _ = writeln!(md, "- Nodes: {}.", text(&r["cores"]));
    let _ = writeln!(md, "- Topic: {}.", text(&r["topic"]));
    let _ = writeln!(md, "- Spate: {}.", text(&r["spate"]));
    let _ = writeln!(md, "- Kafka: {}.", text(&r["kafka"]));
    let _ = writeln!(md, "- Failure detection: {}.", text(&r["session_timeouts"]));
    md.push_str("- **fsync differs**: Spate's default rows fdatasync on the leader and every in-sync follower before acks=all is answered; Kafka's acks=all never waits for an fsync. The `-replica-nofsync` rows (Spate only) drop the followers' fdatasync, Kafka's guarantee on the followers, but the Spate leader still syncs. Compare the rows knowing this; they are side by side, not alike.\n");
    md.push_str(
        "- CPU s/GB, disk writes and peak RSS are summed over the three nodes of a system.\n\n",
    );
    md.push_str("| workload | broker | fsync before ack | MB/s | p50 ms | p99 ms | p99.9 ms | CPU s/GB (3 nodes) | disk bytes/payload byte | peak RSS MiB (3 nodes) | ready s (3 nodes) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for ((w, b), m) in rows
        .iter()
        .filter(|((w, _), _)| w.starts_with("r1") || w.starts_with("r2"))
    {
        let fsync = match (b.as_str(), w.ends_with("-replica-nofsync")) {
            ("kafka", _) => "none (page cache)",
            (_, true) => "leader only",
            _ => "leader + followers",
        };
        let _ = writeln!(
            md,
            "| {w} | {b} | {fsync} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f(m.mb_per_s, 1),
            f(m.p50_ms, 2),
            f(m.p99_ms, 2),
            f(m.p999_ms, 2),
            f(m.cpu_s_per_gb, 2),
            f(m.disk_write_amplification, 2),
            f(m.peak_rss_mib, 0),
            f(m.ready_s, 2)
        );
    }
    let failover: Vec<_> = rows
        .iter()
        .filter(|((w, _), _)| w.starts_with("r3"))
        .collect();
    if !failover.is_empty() {
        md.push_str("\nFailover (r3): a producer at a fixed rate, kill -9 of a partition's leader (chosen not to be the active controller); seconds from the kill to the first acks=all answer for that partition by its new leader, and to the last of the partitions the killed node led. The load generator asks for Metadata again after NOT_LEADER_OR_FOLLOWER or a lost connection and retries every 50 ms, so the resolution is about 50-100 ms; the broker session timeout (9 s on both) dominates.\n\n");
        md.push_str("| workload | broker | first ack by the new leader s | all its partitions s |\n| --- | --- | --- | --- |\n");
        for ((w, b), m) in failover {
            let _ = writeln!(
                md,
                "| {w} | {b} | {} | {} |",
                f(m.failover_s, 2),
                f(m.failover_all_s, 2)
            );
        }
    }
    let catch_up: Vec<_> = rows
        .iter()
        .filter(|((w, _), _)| w.starts_with("r4"))
        .collect();
    if !catch_up.is_empty() {
        let killed = r["follower_stop"] == "kill";
        let _ = writeln!(md, "\nFollower catch-up (r4): a follower {}; once it is out of every ISR, {} GiB written with acks=all to the two left; the follower {}; seconds until it is in every partition's ISR (Metadata polled every 100 ms); MB/s: the payload written while it was down over that time.\n",
            if killed { "killed with kill -9" } else { "stopped with SIGSTOP (its session expires: fenced, out of every ISR)" },
            r["follower_catch_up_gib"].as_f64().map_or("?".into(), |g| f(g, 2)),
            if killed { "restarted on its data dir (start-up and recovery in the time; its exec to its ready line in its own column)" } else { "resumed with SIGCONT" });
        md.push_str("| workload | broker | back to in every ISR s | catch-up MB/s | restart to ready s |\n| --- | --- | --- | --- | --- |\n");
        for ((w, b), m) in catch_up {
            let _ = writeln!(
                md,
                "| {w} | {b} | {} | {} | {} |",
                f(m.catch_up_s, 2),
                f(m.catch_up_mb_per_s, 1),
                f(m.catch_up_restart_s, 2)
            );
        }
    }
    md.push_str("\nSpate / Kafka:\n\n| metric | ratio |\n| --- | --- |\n");
    let ratios = [
        (
            "throughput (r1)",
            s.ratio("r1-rf3-throughput", |m| m.mb_per_s),
        ),
        (
            "throughput, Spate without follower fsync (r1)",
            s.get("r1-rf3-throughput-replica-nofsync", "spate")
                .zip(s.get("r1-rf3-throughput", "kafka"))
                .and_then(|(a, b)| finite(a.mb_per_s / b.mb_per_s)),
        ),
        (
            "broker CPU s/GB, 3 nodes (r1)",
            s.ratio("r1-rf3-throughput", |m| m.cpu_s_per_gb),
        ),
        (
            "p99 at a fixed rate (r2)",
            s.ratio("r2-rf3-fixed-rate", |m| m.p99_ms),
        ),
        (
            "p99.9 at a fixed rate (r2)",
            s.ratio("r2-rf3-fixed-rate", |m| m.p999_ms),
        ),
        (
            "failover time (r3)",
            s.ratio("r3-failover", |m| m.failover_s),
        ),
        (
            "follower catch-up time (r4)",
            s.ratio("r4-follower-catch-up", |m| m.catch_up_s),
        ),
    ];
    for (label, ratio) in ratios {
        let _ = writeln!(
            md,
            "| {label} | {} |",
            ratio.map_or("–".into(), |r| f(r, 3))
        );
    }
    md
}

/// w6 (and w1, 8 partitions): throughput and p99 against the partition count.
fn partition_sweep_section(s: &Summary) -> String {
    let mut counts: Vec<(f64, &str)> = s
        .rows
        .iter()
        .filter(|((w, b), _)| b == "spate" && w.starts_with("w6-partitions-"))
        .map(|((w, _), m)| (m.partitions, w.as_str()))
        .collect();
    if counts.is_empty() {
        return String::new();
    }
    if let Some(w1) = s.get("w1-acks1", "spate") {
        counts.push((w1.partitions, "w1-acks1"));
    }
    counts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut md = String::from("\n## Partition sweep (w6)\n\nAs w1 (1 KiB records, acks=1, unlimited rate, one producer) with the partition count varied; w1 is the 8-partition point.\n\n");
    md.push_str("| partitions | workload | Spate MB/s | Kafka MB/s | Spate / Kafka | Spate p99 ms | Kafka p99 ms |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    for (partitions, w) in counts {
        let (sp, k) = (s.get(w, "spate"), s.get(w, "kafka"));
        let g =
            |m: Option<&Metrics>, v: fn(&Metrics) -> f64, d| m.map_or("–".into(), |m| f(v(m), d));
        let _ = writeln!(
            md,
            "| {} | {w} | {} | {} | {} | {} | {} |",
            f(partitions, 0),
            g(sp, |m| m.mb_per_s, 1),
            g(k, |m| m.mb_per_s, 1),
            s.ratio(w, |m| m.mb_per_s).map_or("–".into(), |r| f(r, 2)),
            g(sp, |m| m.p99_ms, 2),
            g(k, |m| m.p99_ms, 2)
        );
    }
    md
}

/// Kafka's ConsumerPerformance and EndToEndLatency against both brokers.
fn kafka_tools_section(s: &Summary) -> String {
    let rows: Vec<_> = s
        .rows
        .iter()
        .filter(|(_, m)| m.java_consume_mb_per_s.is_finite() || m.java_e2e_p99_ms.is_finite())
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut md = String::from("\nKafka's own consumer-side tools (kafka-tools 4.3.1) against both brokers: ConsumerPerformance over the records the `spate bench` catch-up read consumed (MB/s over its fetch time, group join excluded), and EndToEndLatency (Java producer and consumer, one 1 KiB record at a time, acks as the workload, whole milliseconds):\n\n");
    md.push_str("| workload | broker | ConsumerPerformance MB/s | `spate bench` consume MB/s | EndToEndLatency p50 / p99 / p99.9 ms | `spate bench` e2e p99 ms |\n| --- | --- | --- | --- | --- | --- |\n");
    for ((w, b), m) in rows {
        let _ = writeln!(
            md,
            "| {w} | {b} | {} | {} | {} / {} / {} | {} |",
            f(m.java_consume_mb_per_s, 1),
            f(m.consume_mb_per_s, 1),
            f(m.java_e2e_p50_ms, 0),
            f(m.java_e2e_p99_ms, 0),
            f(m.java_e2e_p999_ms, 0),
            f(m.e2e_p99_ms, 2)
        );
    }
    md
}

const SPATE_COLOR: &str = "#d9480f";
const KAFKA_COLOR: &str = "#1c7ed6";

fn ratios_svg(s: &Summary) -> String {
    let rows = targets(s);
    let (width, row_h, left) = (760.0, 34.0, 300.0);
    let height = 50.0 + row_h * rows.len() as f64;
    // Log scale from 1/100 to 10: ratios and targets on one axis.
    let x = |v: f64| left + (v.clamp(0.01, 10.0).log10() + 2.0) / 3.0 * (width - left - 20.0);
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
    let _ = writeln!(svg, "<text x=\"10\" y=\"18\" font-weight=\"bold\">Spate / Kafka (log scale; | = target, dashed = parity)</text>");
    for tick in [0.01, 0.1, 1.0, 10.0] {
        let _ = writeln!(svg, "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"28\" y2=\"{1:.1}\" stroke=\"#ccc\" {2}/><text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{tick}</text>",
            x(tick), height - 16.0, if tick == 1.0 { "stroke-dasharray=\"4 3\"" } else { "" }, height - 4.0);
    }
    for (i, (label, ratio, target, lower)) in rows.iter().enumerate() {
        let y = 34.0 + i as f64 * row_h;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            left - 8.0,
            y + 15.0
        );
        if let Some(r) = ratio {
            let met = if *lower { *r <= *target } else { *r >= *target };
            let (x0, x1) = (x(1.0).min(x(*r)), x(1.0).max(x(*r)));
            let _ = writeln!(svg, "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"20\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{r:.3}</text>",
                (x1 - x0).max(1.0), if met { "#2f9e44" } else { SPATE_COLOR }, x1 + 4.0, y + 15.0);
        }
        let _ = writeln!(svg, "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"black\" stroke-width=\"2\"/>", x(*target), y - 2.0, y + 22.0);
    }
    svg.push_str("</svg>\n");
    svg
}

fn latency_svg(s: &Summary) -> String {
    let (width, height, left, bottom) = (760.0, 420.0, 70.0, 50.0);
    let points: Vec<(&str, &str, f64, f64)> = s
        .rows
        .iter()
        .filter(|(_, m)| m.mb_per_s.is_finite() && m.p99_ms.is_finite() && m.p99_ms > 0.0)
        .map(|((w, b), m)| (w.as_str(), b.as_str(), m.mb_per_s, m.p99_ms))
        .collect();
    let x_max = points.iter().map(|p| p.2).fold(1.0, f64::max) * 1.1;
    let (y_lo, y_hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.3), hi.max(p.3))
    });
    let (y_lo, y_hi) = (
        (y_lo.max(0.001) / 2.0).log10().floor(),
        (y_hi * 2.0).log10().ceil().max(0.0),
    );
    let y_hi = if y_hi <= y_lo { y_lo + 1.0 } else { y_hi };
    let x = |v: f64| left + v / x_max * (width - left - 20.0);
    let y =
        |v: f64| (height - bottom) - (v.log10() - y_lo) / (y_hi - y_lo) * (height - bottom - 30.0);
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
    let _ = writeln!(svg, "<text x=\"10\" y=\"18\" font-weight=\"bold\">Throughput (MB/s) vs p99 produce latency (ms, log) per workload; <tspan fill=\"{SPATE_COLOR}\">● Spate</tspan> <tspan fill=\"{KAFKA_COLOR}\">■ Kafka</tspan></text>");
    let _ = writeln!(svg, "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/><line x1=\"{left}\" y1=\"30\" x2=\"{left}\" y2=\"{0}\" stroke=\"black\"/>", height - bottom, width - 20.0);
    for e in (y_lo as i32)..=(y_hi as i32) {
        let v = 10f64.powi(e);
        let (gx, gy, tx) = (width - 20.0, y(v), left - 6.0);
        let _ = writeln!(svg, "<line x1=\"{left}\" x2=\"{gx:.1}\" y1=\"{gy:.1}\" y2=\"{gy:.1}\" stroke=\"#eee\"/><text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>", gy + 4.0);
    }
    for i in 0..=5 {
        let v = x_max / 5.0 * i as f64;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v:.0}</text>",
            x(v),
            height - bottom + 16.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">MB/s</text>",
        (width + left) / 2.0,
        height - 8.0
    );
    for (w, b, mb, p99) in points {
        let (cx, cy) = (x(mb), y(p99));
        if b == "spate" {
            let _ = writeln!(
                svg,
                "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"5\" fill=\"{SPATE_COLOR}\"/>"
            );
        } else {
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{KAFKA_COLOR}\"/>",
                cx - 5.0,
                cy - 5.0
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{w}</text>",
            cx + 7.0,
            cy - 6.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(workload: &str, broker: &str, mb: f64, p99_us: u64, cpu: f64, rss: f64) -> Value {
        json!({"workload": workload, "broker": broker, "what": "w", "ready_s": 0.5,
               "broker_cpu_s_per_gb": cpu, "broker_peak_rss_mib": rss, "broker_disk_write_bytes": 100,
               "result": {"settings": {}, "produce": {"mb_per_s": mb, "records_per_s": 1.0, "run_payload_bytes": 100,
               "latency_us": {"p50": 1000, "p99": p99_us, "p99.9": p99_us * 2, "max": p99_us * 3}}}})
    }

    #[test]
    fn medians_ratios_and_a_report_come_from_the_record() {
        let record = json!({"date": "2026-01-01", "commit": "abc", "quick": true,
            "settings": {"rounds": 2}, "machine": {}, "raw_disk_odirect_write_mb_s": 1000.0, "loopback_mb_s": 4000.0,
            "runs": [run("w1-acks1", "spate", 300.0, 2000, 1.0, 50.0), run("w1-acks1", "spate", 100.0, 4000, 3.0, 60.0),
                     run("w1-acks1", "kafka", 100.0, 8000, 4.0, 600.0), run("w3-fixed-rate", "spate", 50.0, 1000, 1.0, 40.0),
                     run("w3-fixed-rate", "kafka", 50.0, 10000, 4.0, 500.0)]});
        let s = summary(&record);
        assert_eq!(s.get("w1-acks1", "spate").unwrap().runs, 2);
        assert_eq!(s.ratio("w1-acks1", |m| m.mb_per_s), Some(2.0));
        assert_eq!(s.ratio("w3-fixed-rate", |m| m.p99_ms), Some(0.1));
        assert_eq!(s.ratio_max(|m| m.peak_rss_mib), Some(0.1));
        assert_eq!(s.ratio("w2-acksall-fsync", |m| m.mb_per_s), None);
        let md = markdown(&record, &s, "x", Some("bottleneck: the client"));
        assert!(md.contains("| w1-acks1 | spate | 2 | 200.0 |"), "{md}");
        assert!(md.contains("| – | – |\n"), "{md}");
        assert!(md.contains("bottleneck: the client"));
        assert!(ratios_svg(&s).starts_with("<svg"));
        assert!(latency_svg(&s).contains("<circle"));
        assert!(
            !md.contains("Replicated"),
            "no replicated section without r runs"
        );
    }

    #[test]
    fn replicated_runs_get_their_section_and_stay_out_of_single_node_targets() {
        let mut failover = run("r3-failover", "spate", 5.0, 9000, 1.0, 900.0);
        failover["failover"] = json!({"first_ack_s": 9.5, "all_partitions_s": 9.8});
        let mut kafka_failover = run("r3-failover", "kafka", 5.0, 9000, 1.0, 9000.0);
        kafka_failover["failover"] = json!({"first_ack_s": 19.0, "all_partitions_s": 19.5});
        let mut catch_up = run("r4-follower-catch-up", "spate", 50.0, 9000, 1.0, 900.0);
        catch_up["catch_up"] = json!({"back_to_isr_s": 2.0, "mb_per_s": 500.0});
        let record = json!({"date": "2026-01-01", "commit": "abc", "quick": true,
            "settings": {"rounds": 1, "replicated": {"cores": "all on 0", "follower_catch_up_gib": 1.0}},
            "machine": {}, "raw_disk_odirect_write_mb_s": 1000.0, "loopback_mb_s": 4000.0,
            "runs": [run("w1-acks1", "spate", 300.0, 2000, 1.0, 50.0), run("w1-acks1", "kafka", 100.0, 8000, 4.0, 500.0),
                     run("r1-rf3-throughput", "spate", 60.0, 9000, 2.0, 5000.0),
                     run("r1-rf3-throughput", "kafka", 40.0, 9000, 4.0, 3000.0),
                     run("r1-rf3-throughput-replica-nofsync", "spate", 80.0, 9000, 2.0, 5000.0),
                     failover, kafka_failover, catch_up]});
        let s = summary(&record);
        // Peak RSS of the 3-node runs (summed over nodes) is not the single-node target's.
        assert_eq!(s.ratio_max(|m| m.peak_rss_mib), Some(0.1));
        assert_eq!(s.ratio("r3-failover", |m| m.failover_s), Some(0.5));
        let md = markdown(&record, &s, "x", None);
        assert!(md.contains("## Replicated: 3 nodes per system"), "{md}");
        assert!(
            md.contains("| r1-rf3-throughput | kafka | none (page cache) | 40.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| r1-rf3-throughput-replica-nofsync | spate | leader only | 80.0 |"),
            "{md}"
        );
        assert!(md.contains("| throughput (r1) | 1.500 |"), "{md}");
        assert!(
            md.contains("| throughput, Spate without follower fsync (r1) | 2.000 |"),
            "{md}"
        );
        assert!(
            md.contains("| r3-failover | kafka | 19.00 | 19.50 |"),
            "{md}"
        );
        assert!(
            md.contains("| r4-follower-catch-up | spate | 2.00 | 500.0 | – |"),
            "{md}"
        );
        assert!(md.contains("stopped with SIGSTOP"), "{md}");
    }
}
