//! `spate bench compare`: the same workloads against Spate and Apache Kafka (bench/peers/kafka)
//! on the same pinned cores, A/B alternated, with `spate bench` as the client; plus the raw
//! disk's O_DIRECT write bandwidth and loopback bandwidth measured in the same run. Writes one
//! JSON record (and its markdown report) per run.

use crate::flags::Flags;
use crate::replicated::{self, FollowerStop, Kind};
use crate::workload::{self, Keys, Mode, Options, Rate, RecordSize};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USAGE: &str = "\
spate bench compare [--quick] [--rounds N] [--workloads LIST] [--catch-up-gib G] [--out DIR]
                    [--broker-cores LIST] [--client-cores LIST]
                    [--follower-catch-up-gib G] [--follower-stop pause|kill] [--warmup-s S]
  Spate vs Apache Kafka 4.3.1 (bench/peers/kafka; jars: `bench/peers/kafka fetch`), same cores,
  A/B alternated. --quick: workloads 1-3, one round, under 5 minutes, record under target/bench;
  the full run (workloads 1-7, 2 rounds; w7 is w1 with zstd) writes perf-reports/. Last line: Spate/Kafka ratios.
  --workloads w1,w5,w6-partitions-1000: only the workloads whose id starts with one of these
  (w1 always runs first when w3 is chosen: w3's rate is half Kafka's w1 throughput).
  --catch-up-gib G: size of w5's catch-up read (default 5).
  Replicated workloads, run only when --workloads names them (r1,r2,r3,r4 or a prefix): 3 Spate
  nodes against 3 Kafka nodes (KRaft), all on the broker cores, RF 3, min.insync.replicas=2,
  acks=all: r1 throughput (and r1 with Spate's replica.fsync.before.ack=false), r2 latency at
  half the lower r1 throughput (r2 brings r1 along), r3 failover time after kill -9 of a
  partition leader at 5 MB/s, r4 a follower stopped while --follower-catch-up-gib G (default 1)
  is written, then resumed: time until it is back in every ISR (--follower-stop pause: SIGSTOP
  and SIGCONT, the default; kill: kill -9 and a restart, start-up and recovery included).
  --warmup-s S: seconds of load before each timed run (default 4, --quick 3): three JVMs
  sharing one core reach Kafka's steady state only after tens of seconds of JIT compilation.
";

/// How a comparison is run.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    pub quick: bool,
    pub rounds: usize,
    pub out_dir: Option<PathBuf>,
    pub broker_cores: String,
    pub client_cores: Vec<usize>,
    /// Workload id prefixes to run; empty: all of the mode's workloads.
    pub workloads: Vec<String>,
    pub catch_up_gib: f64,
    /// Bytes written while r4's follower is down.
    pub follower_catch_up_gib: f64,
    /// How r4's follower goes down.
    pub follower_stop: FollowerStop,
    /// Load before each timed run; None: the mode's default.
    pub warmup_s: Option<f64>,
}

pub fn parse(args: &[String]) -> Result<CompareOptions, String> {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut o = CompareOptions {
        quick: false,
        rounds: 0,
        out_dir: None,
        // Broker on the first CPU, client on the last: both brokers get the same cores.
        broker_cores: "0".into(),
        client_cores: vec![cpus.saturating_sub(1)],
        workloads: Vec::new(),
        catch_up_gib: 5.0,
        follower_catch_up_gib: 1.0,
        follower_stop: FollowerStop::Pause,
        warmup_s: None,
    };
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        let mut value = || flags.value();
        match flag.as_str() {
            "--quick" => o.quick = true,
            "--rounds" => o.rounds = value()?.parse().map_err(|_| "--rounds: a number")?,
            "--out" => o.out_dir = Some(value()?.into()),
            "--broker-cores" => o.broker_cores = value()?,
            "--workloads" => o.workloads = value()?.split(',').map(String::from).collect(),
            "--catch-up-gib" => {
                o.catch_up_gib = value()?.parse().map_err(|_| "--catch-up-gib: a number")?
            }
            "--follower-stop" => o.follower_stop = FollowerStop::parse(&value()?)?,
            "--warmup-s" => {
                let s: f64 = value()?.parse().map_err(|_| "--warmup-s: a number")?;
                if s.is_nan() || s < 0.0 {
                    return Err("--warmup-s: a number >= 0".into());
                }
                o.warmup_s = Some(s);
            }
            "--follower-catch-up-gib" => {
                o.follower_catch_up_gib = value()?
                    .parse()
                    .ok()
                    .filter(|g: &f64| *g > 0.0)
                    .ok_or("--follower-catch-up-gib: a number > 0")?
            }
            "--client-cores" => {
                o.client_cores = value()?
                    .split(',')
                    .map(|c| {
                        c.parse()
                            .map_err(|_| format!("--client-cores: bad CPU '{c}'"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    if o.rounds == 0 {
        o.rounds = if o.quick { 1 } else { 2 };
    }
    Ok(o)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broker {
    Spate,
    Kafka,
}

impl Broker {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Broker::Spate => "spate",
            Broker::Kafka => "kafka",
        }
    }
}

/// A workload of the issue, scaled to this machine.
struct Workload {
    /// Replicated workloads (r1-r4) run on 3-node clusters (`replicated`).
    replicated: Option<Kind>,
    /// Spate settings for this workload (the replicated workloads' fsync variant).
    spate_settings: Vec<&'static str>,
    /// Runs on Spate only (a Spate setting whose Kafka side is another workload's run).
    spate_only: bool,
    id: &'static str,
    what: String,
    options: Options,
    /// Kafka settings that match Spate's behaviour for this workload.
    kafka_settings: Vec<&'static str>,
    /// After producing, read the topic back from the start (catch-up consumption).
    then_consume: bool,
    /// Also drive the broker with Kafka's own ProducerPerformance (the Java client).
    java_client: bool,
    /// The catch-up read goes from offset 0 to the end (timed), with the page cache dropped
    /// first, and Kafka's ConsumerPerformance reads the same records after it.
    read_to_end: bool,
    /// Also measure Kafka's EndToEndLatency tool (Java producer + consumer, one record at a time).
    java_e2e: bool,
}

fn base_options(o: &CompareOptions) -> Options {
    let (warmup_s, duration_s) = if o.quick { (3.0, 6.0) } else { (4.0, 12.0) };
    let warmup_s = o.warmup_s.unwrap_or(warmup_s);
    Options {
        mode: Mode::Produce,
        partitions: 8,
        record_bytes: RecordSize::Fixed(1024),
        acks: 1,
        batch_bytes: 64 << 10,
        linger_ms: 5,
        warmup_s,
        duration_s,
        client_cores: o.client_cores.clone(),
        progress: false,
        ..Options::default()
    }
}

fn workloads(o: &CompareOptions) -> Vec<Workload> {
    let base = base_options(o);
    let mut list = vec![
        Workload {
            id: "w1-acks1",
            what: "1 topic x 8 partitions, 1 KiB records, acks=1, unlimited rate".into(),
            options: base.clone(),
            kafka_settings: vec![],
            then_consume: !o.quick,
            java_client: true,
            read_to_end: false,
            java_e2e: false,
            replicated: None,
            spate_settings: vec![],
            spate_only: false,
        },
        Workload {
            id: "w2-acksall-fsync",
            what: "as w1 with acks=all and fsync per batch (Spate default; Kafka log.flush.interval.messages=1)".into(),
            options: Options {
                acks: -1,
                ..base.clone()
            },
            kafka_settings: vec!["log.flush.interval.messages=1"],
            then_consume: false,
            java_client: !o.quick,
            read_to_end: false,
            java_e2e: false,
            replicated: None,
            spate_settings: vec![],
            spate_only: false,
        },
        Workload {
            id: "w3-fixed-rate",
            what: "as w1 at a fixed rate of half Kafka's w1 maximum: latency percentiles, coordinated-omission corrected".into(),
            options: base.clone(),
            kafka_settings: vec![],
            then_consume: false,
            java_client: false,
            read_to_end: false,
            java_e2e: false,
            replicated: None,
            spate_settings: vec![],
            spate_only: false,
        },
    ];
    if !o.quick {
        list.push(Workload {
            id: "w3-e2e",
            what: "w3's rate and settings with a tailing consumer: end-to-end latency (intended send to fetched), coordinated-omission corrected".into(),
            options: Options {
                mode: Mode::E2e,
                ..base.clone()
            },
            kafka_settings: vec![],
            then_consume: false,
            java_client: false,
            read_to_end: false,
            java_e2e: true,
            replicated: None,
            spate_settings: vec![],
            spate_only: false,
        });
        list.push(Workload {
            id: "w4-100-producers-keyed",
            what: "100 producers, 100 B records, 10,000 distinct keys, acks=1, unlimited rate"
                .into(),
            options: Options {
                producers: 100,
                record_bytes: RecordSize::Fixed(100),
                keys: Keys::Distinct(10_000),
                ..base.clone()
            },
            kafka_settings: vec![],
            then_consume: false,
            java_client: false,
            read_to_end: false,
            java_e2e: false,
            replicated: None,
            spate_settings: vec![],
            spate_only: false,
        });
        list.push(Workload {
            id: "w7-zstd",
            what: "as w1 with zstd-compressed batches (values: random capital letters, compressed to about 0.45)".into(),
            options: Options {
                compression: crate::batch::Compression::Zstd,
                ..base.clone()
            },
            kafka_settings: vec![],
            then_consume: false,
            java_client: false,
            read_to_end: false,
            java_e2e: false,
            replicated: None,
            spate_settings: vec![],
            spate_only: false,
        });
        list.push(Workload {
            id: "w5-catch-up",
            what: "catch-up read: produce the topic (acks=1, unlimited rate), drop the page cache, then time one consumer from offset 0 to the end".into(),
            options: Options {
                total_bytes: Some((o.catch_up_gib * (1u64 << 30) as f64) as u64),
                warmup_s: 0.0,
                // A bound: the run ends when the bytes are acknowledged.
                duration_s: 900.0,
                ..base.clone()
            },
            kafka_settings: vec![],
            then_consume: true,
            java_client: false,
            read_to_end: true,
            java_e2e: false,
            replicated: None,
            spate_settings: vec![],
            spate_only: false,
        });
        for (partitions, id) in [
            (1u32, "w6-partitions-1"),
            (10, "w6-partitions-10"),
            (100, "w6-partitions-100"),
            (1000, "w6-partitions-1000"),
        ] {
            list.push(Workload {
                id,
                what: "partition sweep: as w1 with this partition count".into(),
                options: Options {
                    partitions,
                    ..base.clone()
                },
                kafka_settings: vec![],
                then_consume: false,
                java_client: false,
                read_to_end: false,
                java_e2e: false,
                replicated: None,
                spate_settings: vec![],
                spate_only: false,
            });
        }
    }
    list.extend(replicated_workloads(o));
    // w3's rate comes from Kafka's w1 result: choosing w3 keeps w1; r2's from both r1 results.
    // The replicated workloads run only when named.
    let chosen = |w: &Workload| {
        let id = w.id;
        (o.workloads.is_empty() && w.replicated.is_none())
            || o.workloads
                .iter()
                .any(|w| id == w || id.starts_with(&format!("{w}-")))
            || (id == "w1-acks1" && o.workloads.iter().any(|w| w.starts_with("w3")))
            || (id == R1 && o.workloads.iter().any(|w| w.starts_with("r2")))
    };
    list.retain(chosen);
    list
}

/// r1, the replicated throughput workload whose results set r2's rate.
const R1: &str = "r1-rf3-throughput";

/// The replicated workloads (3 nodes per system): ids after the single-node ones.
fn replicated_workloads(o: &CompareOptions) -> Vec<Workload> {
    let base = base_options(o);
    let what_rf3 = "3 nodes (broker + controller each) per system on the broker cores, 1 topic x 8 partitions, RF 3, min.insync.replicas=2, 1 KiB records, acks=all";
    let workload = |id, what: String, kind, spate_settings: Vec<&'static str>| Workload {
        id,
        what,
        options: replicated::options(&base, kind, o.follower_catch_up_gib),
        kafka_settings: vec![],
        then_consume: false,
        java_client: false,
        read_to_end: false,
        java_e2e: false,
        spate_only: !spate_settings.is_empty(),
        replicated: Some(kind),
        spate_settings,
    };
    let nofsync = "replica.fsync.before.ack=false";
    vec![
        workload(R1, format!("{what_rf3}, unlimited rate"), Kind::Throughput, vec![]),
        workload(
            "r1-rf3-throughput-replica-nofsync",
            format!("as r1 with Spate's {nofsync} (followers acknowledge written, not synced; Kafka: see r1)"),
            Kind::Throughput,
            vec![nofsync],
        ),
        workload(
            "r2-rf3-fixed-rate",
            format!("{what_rf3}, at a fixed rate of half the lower r1 throughput of the two: latency percentiles, coordinated-omission corrected"),
            Kind::FixedRate,
            vec![],
        ),
        workload(
            "r2-rf3-fixed-rate-replica-nofsync",
            format!("as r2 with Spate's {nofsync} (Kafka: see r2)"),
            Kind::FixedRate,
            vec![nofsync],
        ),
        workload(
            "r3-failover",
            format!("{what_rf3}, {} MB/s; kill -9 of a partition leader that is not the active controller: time to the first acks=all answer by the new leader", replicated::FAILOVER_RATE_MB_S),
            Kind::Failover,
            vec![],
        ),
        workload(
            "r4-follower-catch-up",
            format!(
                "{what_rf3}, unlimited rate: a follower stopped ({}), {} GiB written to the two left, the follower {}: time until it is back in every partition's ISR",
                match o.follower_stop {
                    FollowerStop::Pause => "SIGSTOP",
                    FollowerStop::Kill => "kill -9",
                },
                o.follower_catch_up_gib,
                match o.follower_stop {
                    FollowerStop::Pause => "resumed (SIGCONT)",
                    FollowerStop::Kill => "restarted on its data dir",
                },
            ),
            Kind::CatchUp,
            vec![],
        ),
    ]
}

/// Runs the comparison; returns the JSON record.
pub fn run(o: &CompareOptions) -> Result<Value, String> {
    crate::raise_memlock();
    let root = repo_root()?;
    let work = root.join("target/bench/compare");
    std::fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
    let started = Instant::now();
    if workloads(o).is_empty() {
        return Err(format!("--workloads {:?} selects none", o.workloads));
    }
    eprintln!("compare: measuring the raw disk and loopback");
    let raw_disk = raw_disk_write_mb_s(&work, if o.quick { 256 } else { 1024 })?;
    let raw_disk_read = raw_disk_read_mb_s(&work, if o.quick { 256 } else { 1024 })?;
    let loopback = loopback_mb_s(if o.quick { 1 << 30 } else { 4 << 30 })?;
    eprintln!(
        "compare: raw disk O_DIRECT write {raw_disk:.0} MB/s, read {raw_disk_read:.0} MB/s, loopback {loopback:.0} MB/s"
    );

    let mut runs = Vec::new();
    let mut kafka_w1_mb_s = Vec::new();
    // r1 throughput per system (Spate's default settings), for r2's rate.
    let mut r1_mb_s: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..o.rounds {
        let order = if round % 2 == 0 {
            [Broker::Spate, Broker::Kafka]
        } else {
            [Broker::Kafka, Broker::Spate]
        };
        for workload in workloads(o) {
            let mut options = workload.options.clone();
            options.topic = format!("bench-{}", workload.id);
            if workload.id.starts_with("w3-") {
                let max = median(&kafka_w1_mb_s).ok_or("w3 needs Kafka's w1 result")?;
                options.rate = Rate::BytesPerS(max * 1e6 / 2.0);
            }
            if workload.replicated == Some(Kind::FixedRate) {
                let lower = median(&r1_mb_s[0])
                    .zip(median(&r1_mb_s[1]))
                    .map(|(s, k)| s.min(k))
                    .ok_or("r2 needs both systems' r1 results")?;
                options.rate = Rate::BytesPerS(lower * 1e6 / 2.0);
            }
            for broker in order {
                if workload.spate_only && broker == Broker::Kafka {
                    continue;
                }
                eprintln!(
                    "compare: round {round} {} on {} ({:.0} s elapsed)",
                    workload.id,
                    broker.name(),
                    started.elapsed().as_secs_f64()
                );
                // A failed run is recorded and reported, not fatal to the comparison.
                let outcome = match workload.replicated {
                    Some(kind) => replicated::run_one(
                        o,
                        &root,
                        &work,
                        broker,
                        workload.id,
                        &workload.what,
                        kind,
                        if broker == Broker::Spate {
                            &workload.spate_settings
                        } else {
                            &workload.kafka_settings
                        },
                        &options,
                    ),
                    None => run_one(o, &root, &work, broker, &workload, &options),
                };
                let run = match outcome {
                    Ok(run) => run,
                    Err(e) => {
                        eprintln!("compare:   {} {} FAILED: {e}", workload.id, broker.name());
                        json!({"workload": workload.id, "broker": broker.name(), "error": e})
                    }
                };
                if broker == Broker::Kafka && workload.id == "w1-acks1" {
                    if let Some(mb) = run["result"]["produce"]["mb_per_s"].as_f64() {
                        kafka_w1_mb_s.push(mb);
                    }
                }
                if workload.id == R1 {
                    if let Some(mb) = run["result"]["produce"]["mb_per_s"].as_f64() {
                        r1_mb_s[(broker == Broker::Kafka) as usize].push(mb);
                    }
                }
                let mut run = run;
                run["round"] = json!(round);
                run["loadavg_after"] = json!(loadavg());
                runs.push(run);
            }
        }
    }
    let mut record = json!({
        "benchmark": "compare",
        "quick": o.quick,
        "date": today(),
        "commit": git(&root, &["rev-parse", "--short", "HEAD"]),
        "dirty": !git(&root, &["status", "--porcelain", "--untracked-files=no"]).is_empty(),
        "machine": machine(),
        "settings": {
            "broker_cores": o.broker_cores, "client_cores": o.client_cores, "rounds": o.rounds,
            "client": "spate bench (glommio, Kafka protocol: Produce v9, Fetch v12)",
            "kafka": "Apache Kafka 4.3.1, KRaft single node, bench/peers/kafka (JVM: -Xms1g -Xmx1g G1)",
            "spate": "spate start --cores <broker cores>; acks=all waits for fdatasync (group commit), acks=1 does not",
            "compression": "none (w7: zstd)", "idempotence": false, "replication_factor": 1,
            "workloads": o.workloads, "catch_up_gib": o.catch_up_gib,
            "alternation": "per workload; even rounds Spate first, odd rounds Kafka first",
        },
        "raw_disk_odirect_write_mb_s": raw_disk,
        "raw_disk_odirect_read_mb_s": raw_disk_read,
        "loadavg_at_end": loadavg(),
        "loopback_mb_s": loopback,
        "wall_s": started.elapsed().as_secs_f64(),
        "runs": runs,
    });
    if workloads(o).iter().any(|w| w.replicated.is_some()) {
        record["settings"]["replicated"] = json!({
            "nodes": replicated::NODES,
            "cores": format!("all {} nodes of a system pinned to CPU(s) {} (the broker cores)", replicated::NODES, o.broker_cores),
            "topic": format!("8 partitions, replication factor {}, min.insync.replicas={}, acks=all", replicated::REPLICATION_FACTOR, replicated::MIN_INSYNC_REPLICAS),
            "spate": "spate start --node-id N --controller-quorum (3 voters) --cores <broker cores>, every node broker and controller; \
                      replica.fsync.before.ack=true (default): the leader and every in-sync follower fdatasync before acks=all is answered; \
                      the *-replica-nofsync rows: followers acknowledge once written (the leader still fdatasyncs)",
            "kafka": "Apache Kafka 4.3.1, 3 KRaft nodes (combined broker + controller, static controller.quorum.voters), \
                      bench/peers/kafka start --node-id N; default JVM settings per node (-Xms1g -Xmx1g G1): 3 GiB heap in all; \
                      acks=all is answered once every in-sync replica has the record in its page cache: no fsync \
                      (flush.messages / log.flush.interval.messages default)",
            "session_timeouts": "both: broker.session.timeout.ms=9000, broker.heartbeat.interval.ms=2000 (defaults)",
            "follower_catch_up_gib": o.follower_catch_up_gib,
            "follower_stop": o.follower_stop.name(),
        });
    }
    let out_dir = o.out_dir.clone().unwrap_or_else(|| {
        if o.quick {
            root.join("target/bench")
        } else {
            root.join("perf-reports")
        }
    });
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    let name = format!(
        "{}-compare{}-{}",
        record["date"].as_str().unwrap_or("today"),
        if o.quick { "-quick" } else { "" },
        record["commit"].as_str().unwrap_or("unknown")
    );
    let json_path = out_dir.join(format!("{name}.json"));
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&record).expect("json"),
    )
    .map_err(|e| format!("write {}: {e}", json_path.display()))?;
    crate::report::write(&json_path)?;
    eprintln!(
        "compare: wrote {} and its .md in {:.0} s",
        json_path.display(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", ratio_line(&crate::report::summary(&record)));
    Ok(record)
}

/// /proc/loadavg's first three fields: the 1, 5 and 15 minute load averages.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn ratio_line(summary: &crate::report::Summary) -> String {
    let f = |v: Option<f64>| v.map_or("nan".to_string(), |v| format!("{v:.3}"));
    let mut line = format!(
        "produce_throughput_ratio={} acks_all_fsync_throughput_ratio={} p99_latency_ratio={} p999_latency_ratio={} cpu_per_gb_ratio={} rss_ratio={} ready_ratio={} catch_up_read_ratio={} e2e_p99_ratio={}",
        f(summary.ratio("w1-acks1", |m| m.mb_per_s)),
        f(summary.ratio("w2-acksall-fsync", |m| m.mb_per_s)),
        f(summary.ratio("w3-fixed-rate", |m| m.p99_ms)),
        f(summary.ratio("w3-fixed-rate", |m| m.p999_ms)),
        f(summary.ratio("w1-acks1", |m| m.cpu_s_per_gb)),
        f(summary.ratio_max(|m| m.peak_rss_mib)),
        f(summary.ratio_median(|m| m.ready_s)),
        f(summary.ratio("w5-catch-up", |m| m.consume_mb_per_s)),
        f(summary.ratio("w3-e2e", |m| m.e2e_p99_ms)),
    );
    // Only when replicated workloads ran: the single-node line keeps its shape.
    if summary.rows.keys().any(|(w, _)| w.starts_with('r')) {
        line.push_str(&format!(
            " rf3_throughput_ratio={} rf3_p99_ratio={} rf3_p999_ratio={} rf3_cpu_per_gb_ratio={} failover_ratio={} follower_catch_up_ratio={}",
            f(summary.ratio(R1, |m| m.mb_per_s)),
            f(summary.ratio("r2-rf3-fixed-rate", |m| m.p99_ms)),
            f(summary.ratio("r2-rf3-fixed-rate", |m| m.p999_ms)),
            f(summary.ratio(R1, |m| m.cpu_s_per_gb)),
            f(summary.ratio("r3-failover", |m| m.failover_s)),
            f(summary.ratio("r4-follower-catch-up", |m| m.catch_up_s)),
        ));
    }
    line
}

fn run_one(
    o: &CompareOptions,
    root: &Path,
    work: &Path,
    broker: Broker,
    workload: &Workload,
    options: &Options,
) -> Result<Value, String> {
    let settings: Vec<&str> = match broker {
        Broker::Spate => vec![],
        Broker::Kafka => workload.kafka_settings.clone(),
    };
    let mut server = Server::start(root, work, broker, &o.broker_cores, &settings)?;
    let outcome = (|| -> Result<Value, String> {
        let mut options = options.clone();
        options.brokers = server.address.clone();
        let before = server.sample();
        let started = Instant::now();
        let result = workload::run(&options)?;
        let wall_s = started.elapsed().as_secs_f64();
        let after = server.sample();
        let mut run = json!({
            "workload": workload.id, "what": workload.what, "broker": broker.name(),
            "broker_settings": settings, "ready_s": server.ready_s,
            "result": result,
            "broker_cpu_s": after.cpu_s - before.cpu_s,
            "broker_runqueue_wait_s": after.runqueue_wait_s - before.runqueue_wait_s,
            "workload_wall_s": wall_s,
            "broker_disk_write_bytes": after.disk_write_bytes.saturating_sub(before.disk_write_bytes),
        });
        let run_bytes = run["result"]["produce"]["run_payload_bytes"]
            .as_f64()
            .unwrap_or(0.0);
        run["broker_cpu_s_per_gb"] = json!(per_gb(after.cpu_s - before.cpu_s, run_bytes));
        if workload.java_client {
            let before = server.sample();
            let java = producer_performance(root, o, &options, &server.address, workload.id)?;
            let after = server.sample();
            let bytes = num_f(&java["records"]) * 1024.0;
            run["java_producer_performance"] = java;
            run["java_producer_performance"]["broker_cpu_s_per_gb"] =
                json!(per_gb(after.cpu_s - before.cpu_s, bytes));
        }
        if workload.then_consume {
            let consume = Options {
                mode: Mode::Consume,
                consumers: 1,
                warmup_s: 0.0,
                to_end: workload.read_to_end,
                duration_s: if workload.read_to_end {
                    900.0
                } else {
                    options.duration_s
                },
                ..options.clone()
            };
            let page_cache_dropped = workload.read_to_end && drop_page_cache();
            let before = server.sample();
            let result = workload::run(&consume)?;
            let after = server.sample();
            let bytes = num_f(&result["consume"]["run_payload_bytes"]);
            let records = result["consume"]["records"].as_u64().unwrap_or(0);
            run["catch_up_consume"] = json!({
                "result": result,
                "page_cache_dropped": page_cache_dropped,
                "broker_cpu_s_per_gb": per_gb(after.cpu_s - before.cpu_s, bytes),
            });
            // Kafka's ConsumerPerformance reads the same records (a consumer group, from the
            // earliest offset).
            if records > 0 {
                let dropped = workload.read_to_end && drop_page_cache();
                let before = server.sample();
                let java = consumer_performance(root, o, &options.topic, &server.address, records);
                let after = server.sample();
                run["java_consumer_performance"] = match java {
                    Ok(mut java) => {
                        java["page_cache_dropped"] = json!(dropped);
                        java["broker_cpu_s_per_gb"] =
                            json!(per_gb(after.cpu_s - before.cpu_s, bytes));
                        java
                    }
                    Err(e) => json!({ "error": e }),
                };
            }
        }
        if workload.java_e2e {
            run["java_end_to_end_latency"] =
                end_to_end_latency(root, o, &options, &server.address, workload.id)
                    .unwrap_or_else(|e| json!({ "error": e }));
        }
        run["broker_peak_rss_mib"] = json!(server.sample().peak_rss_kib as f64 / 1024.0);
        Ok(run)
    })();
    server.stop();
    let run = outcome?;
    eprintln!(
        "compare:   {} {}: {:.1} MB/s, p99 {:.2} ms, CPU {:.2} s/GB, peak RSS {:.0} MiB, ready {:.3} s",
        workload.id,
        broker.name(),
        run["result"]["produce"]["mb_per_s"].as_f64().unwrap_or(0.0),
        run["result"]["produce"]["latency_us"]["p99"].as_f64().unwrap_or(0.0) / 1e3,
        run["broker_cpu_s_per_gb"].as_f64().unwrap_or(0.0),
        run["broker_peak_rss_mib"].as_f64().unwrap_or(0.0),
        run["ready_s"].as_f64().unwrap_or(0.0),
    );
    if let Some(line) = end_to_end_line(&run) {
        eprintln!("compare:   {} {}: {line}", workload.id, broker.name());
    }
    Ok(run)
}

/// The two clients' end-to-end percentiles side by side (`spate bench e2e`, Kafka's
/// EndToEndLatency), for a run that measured the second.
fn end_to_end_line(run: &Value) -> Option<String> {
    let java = run.get("java_end_to_end_latency")?;
    let ms = |p: &str| {
        run["result"]["consume"]["latency_us"][p]
            .as_f64()
            .map_or("-".into(), |us| format!("{:.2}", us / 1e3))
    };
    let java_ms = |p: &str| {
        java["latency_ms"][p]
            .as_f64()
            .map_or("-".into(), |v| format!("{v:.0}"))
    };
    let java_part = match java.get("error") {
        Some(e) => format!("EndToEndLatency failed: {e}"),
        None => format!(
            "EndToEndLatency p50/p99/p99.9 {}/{}/{} ms",
            java_ms("p50"),
            java_ms("p99"),
            java_ms("p99.9")
        ),
    };
    Some(format!(
        "e2e p50/p99/p99.9 {}/{}/{} ms (spate bench), {java_part}",
        ms("p50"),
        ms("p99"),
        ms("p99.9")
    ))
}

fn num_f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Empties the page cache (needs root; best effort), so a catch-up read comes from the disk.
fn drop_page_cache() -> bool {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "1").is_ok()
}

/// Runs a kafka-tools class through bench/peers/kafka, pinned to the client cores; its stdout.
fn kafka_tool(
    root: &Path,
    o: &CompareOptions,
    class: &str,
    args: &[String],
) -> Result<String, String> {
    let cores: Vec<String> = o.client_cores.iter().map(usize::to_string).collect();
    let output = Command::new("taskset")
        .arg("-c")
        .arg(cores.join(","))
        .arg(root.join("bench/peers/kafka"))
        .arg("tool")
        .arg(class)
        .args(args)
        .output()
        .map_err(|e| format!("{class}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "{class} failed ({}): {}",
            output.status,
            tail.join(" | ")
        ));
    }
    Ok(stdout)
}

/// Kafka's ConsumerPerformance reading `records` records of `topic` from the earliest offset.
fn consumer_performance(
    root: &Path,
    o: &CompareOptions,
    topic: &str,
    address: &str,
    records: u64,
) -> Result<Value, String> {
    let args: Vec<String> = [
        "--bootstrap-server",
        address,
        "--topic",
        topic,
        "--num-records",
        &records.to_string(),
        "--timeout",
        "30000",
        "--group",
        &format!("perf-{topic}-{}", std::process::id()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let stdout = kafka_tool(root, o, "ConsumerPerformance", &args)?;
    parse_consumer_performance(&stdout)
}

/// Parses ConsumerPerformance's result line: `start.time, end.time, data.consumed.in.MB, MB.sec,
/// data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec,
/// fetch.nMsg.sec`. Its MB are MiB; `mb_per_s` here is 10^6 B/s over the fetch time (the group
/// join excluded), `total_mb_per_s` over the whole run.
fn parse_consumer_performance(stdout: &str) -> Result<Value, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.split(", ").count() == 10 && !l.starts_with("start.time"))
        .ok_or_else(|| format!("ConsumerPerformance printed no result: {stdout}"))?;
    let fields: Vec<&str> = line.split(", ").collect();
    let n = |i: usize| -> Result<f64, String> {
        fields[i]
            .trim()
            .parse()
            .map_err(|_| format!("ConsumerPerformance field {i} not a number: {line}"))
    };
    const MIB: f64 = 1048576.0;
    Ok(json!({
        "client": "kafka-tools 4.3.1 ConsumerPerformance (Java consumer, group)",
        "summary": line.trim(),
        "records": n(4)?,
        "mib": n(2)?,
        "total_mb_per_s": n(3)? * MIB / 1e6,
        "records_per_s": n(9)?,
        "rebalance_ms": n(6)?,
        "fetch_ms": n(7)?,
        "mb_per_s": n(8)? * MIB / 1e6,
    }))
}

/// Kafka's EndToEndLatency: one record at a time, Java producer to Java consumer, on a fresh
/// one-partition topic.
fn end_to_end_latency(
    root: &Path,
    o: &CompareOptions,
    options: &Options,
    address: &str,
    id: &str,
) -> Result<Value, String> {
    let topic = format!("java-e2e-{id}");
    workload::ensure_topic(&Options {
        topic: topic.clone(),
        brokers: address.to_string(),
        partitions: 1,
        ..options.clone()
    })?;
    let records = if o.quick { 2000 } else { 10000 };
    let acks = if options.acks == -1 { "all" } else { "1" };
    let args: Vec<String> = [
        "--bootstrap-server",
        address,
        "--topic",
        &topic,
        "--num-records",
        &records.to_string(),
        "--producer-acks",
        acks,
        "--record-size",
        "1024",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let stdout = kafka_tool(root, o, "EndToEndLatency", &args)?;
    parse_end_to_end_latency(&stdout, records)
}

/// Parses EndToEndLatency's `Avg latency: 1.2345 ms` and `Percentiles: 50th = 1, 99th = 3,
/// 99.9th = 7` (whole milliseconds, truncated).
fn parse_end_to_end_latency(stdout: &str, records: u64) -> Result<Value, String> {
    let avg = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Avg latency: "))
        .and_then(|v| v.trim().trim_end_matches("ms").trim().parse::<f64>().ok())
        .ok_or_else(|| format!("EndToEndLatency printed no average: {stdout}"))?;
    let percentiles = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Percentiles: "))
        .ok_or_else(|| format!("EndToEndLatency printed no percentiles: {stdout}"))?;
    let at = |name: &str| -> Option<f64> {
        percentiles
            .split(", ")
            .find_map(|p| p.strip_prefix(name)?.strip_prefix(" = "))?
            .trim()
            .parse()
            .ok()
    };
    Ok(json!({
        "client": "kafka-tools 4.3.1 EndToEndLatency (Java producer and consumer, one record at a time)",
        "records": records,
        "record_bytes": 1024,
        "latency_ms": {"avg": avg, "p50": at("50th"), "p99": at("99th"), "p99.9": at("99.9th")},
    }))
}

/// Kafka's own producer benchmark (kafka-tools ProducerPerformance, the Java client) against the
/// broker, pinned to the client cores, on a fresh topic with the workload's partitions, record
/// size, acks, batch size and linger; idempotence off as in `spate bench`.
fn producer_performance(
    root: &Path,
    o: &CompareOptions,
    options: &Options,
    address: &str,
    id: &str,
) -> Result<Value, String> {
    let topic = format!("java-{id}");
    workload::ensure_topic(&Options {
        topic: topic.clone(),
        brokers: address.to_string(),
        ..options.clone()
    })?;
    // Sized to take 5-20 s: fewer records where every batch is fsynced.
    let records: u64 = match (o.quick, options.acks) {
        (true, _) => 400_000,
        (false, -1) => 300_000,
        (false, _) => 1_000_000,
    };
    let acks = match options.acks {
        -1 => "all".to_string(),
        n => n.to_string(),
    };
    let cores: Vec<String> = o.client_cores.iter().map(usize::to_string).collect();
    let output = Command::new("taskset")
        .arg("-c")
        .arg(cores.join(","))
        .arg(root.join("bench/peers/kafka"))
        .args([
            "tool",
            "ProducerPerformance",
            "--topic",
            &topic,
            "--num-records",
        ])
        .arg(records.to_string())
        .args([
            "--record-size",
            "1024",
            "--throughput",
            "-1",
            "--producer-props",
        ])
        .arg(format!("bootstrap.servers={address}"))
        .arg(format!("acks={acks}"))
        .arg(format!("linger.ms={}", options.linger_ms))
        .arg(format!("batch.size={}", options.batch_bytes))
        .args(["enable.idempotence=false", "compression.type=none"])
        .output()
        .map_err(|e| format!("ProducerPerformance: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.contains("records sent"))
        .ok_or_else(|| {
            format!(
                "ProducerPerformance printed no summary: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    parse_producer_performance(last, records)
}

/// Parses ProducerPerformance's summary line, e.g. `400000 records sent, 147710.5 records/sec
/// (144.25 MB/sec), 197.70 ms avg latency, 445.00 ms max latency, 187 ms 50th, 320 ms 95th,
/// 410 ms 99th, 441 ms 99.9th.` Its MB are MiB; `mb_per_s` here is 10^6 B/s of values.
fn parse_producer_performance(line: &str, records: u64) -> Result<Value, String> {
    let number_before = |marker: &str| -> Option<f64> {
        let at = line.find(marker)?;
        line[..at]
            .split([' ', '(', ','])
            .rev()
            .find(|t| !t.is_empty())?
            .parse()
            .ok()
    };
    let records_per_s = number_before(" records/sec").ok_or("no records/sec")?;
    Ok(json!({
        "client": "kafka-tools 4.3.1 ProducerPerformance (Java client)",
        "summary": line.trim(),
        "records": records,
        "records_per_s": records_per_s,
        "mb_per_s": records_per_s * 1024.0 / 1e6,
        "latency_ms": {
            "avg": number_before(" ms avg latency"), "max": number_before(" ms max latency"),
            "p50": number_before(" ms 50th"), "p95": number_before(" ms 95th"),
            "p99": number_before(" ms 99th"), "p99.9": number_before(" ms 99.9th"),
        },
    }))
}

pub(crate) fn per_gb(cpu_s: f64, bytes: f64) -> Option<f64> {
    (bytes > 0.0).then(|| cpu_s / (bytes / 1e9))
}

/// A broker process under test.
pub(crate) struct Server {
    child: Child,
    /// The process doing the work (for Kafka, the JVM under the peer script).
    pub(crate) pid: u32,
    pub(crate) address: String,
    pub(crate) ready_s: f64,
    data_dir: PathBuf,
}

#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub cpu_s: f64,
    /// Seconds the broker's threads waited on a run queue for a CPU (/proc schedstat): the
    /// share of a shared machine's noise that hits the broker.
    pub runqueue_wait_s: f64,
    pub peak_rss_kib: u64,
    pub disk_write_bytes: u64,
}

/// CPU, run-queue wait, peak RSS and disk writes of a process so far (/proc).
pub fn sample_pid(pid: u32) -> Sample {
    let mut sample = Sample::default();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |s| s.1)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        sample.cpu_s = (ticks(11) + ticks(12)) / hz;
    }
    sample.runqueue_wait_s = runqueue_wait_s(pid);
    sample.peak_rss_kib = proc_field(pid, "status", "VmHWM:").unwrap_or(0);
    sample.disk_write_bytes = proc_field(pid, "io", "write_bytes:").unwrap_or(0);
    sample
}

impl Server {
    pub(crate) fn start(
        root: &Path,
        work: &Path,
        broker: Broker,
        cores: &str,
        settings: &[&str],
    ) -> Result<Server, String> {
        let port = free_port()?;
        let address = format!("127.0.0.1:{port}");
        let data_dir = work.join(format!("{}-{port}", broker.name()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
        let mut command = Command::new("taskset");
        command.arg("-c").arg(cores);
        match broker {
            Broker::Spate => {
                let exe = std::env::current_exe().map_err(|e| format!("own binary: {e}"))?;
                let core_count = cores.split(',').count();
                command
                    .arg(exe)
                    .arg("start")
                    .arg("--cores")
                    .arg(core_count.to_string());
            }
            Broker::Kafka => {
                command.arg(root.join("bench/peers/kafka")).arg("start");
            }
        }
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg(&address);
        for s in settings {
            command.arg("--set").arg(s);
        }
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", broker.name()))?;
        let stdout = child.stdout.take().expect("piped");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && line.contains("ready") {
                    let _ = ready_tx.send(());
                    sent = true;
                }
            }
        });
        let ready = ready_rx.recv_timeout(Duration::from_secs(120));
        let ready_s = started.elapsed().as_secs_f64();
        let mut server = Server {
            pid: child.id(),
            child,
            address,
            ready_s,
            data_dir,
        };
        if ready.is_err() {
            server.stop();
            return Err(format!("{} did not become ready", broker.name()));
        }
        if broker == Broker::Kafka {
            server.pid = find_child(server.child.id(), "java")
                .ok_or("cannot find the Kafka JVM under bench/peers/kafka")?;
        }
        Ok(server)
    }

    pub(crate) fn sample(&self) -> Sample {
        sample_pid(self.pid)
    }

    pub(crate) fn stop(&mut self) {
        let group = self.child.id() as i32;
        // SAFETY: signals our own child's process group.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    // SAFETY: as above.
                    unsafe { libc::kill(-group, libc::SIGKILL) };
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        // The JVM may outlive the script by a moment; wait for it before removing its files.
        for _ in 0..200 {
            if !Path::new(&format!("/proc/{}", self.pid)).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Run-queue wait of all threads of `pid` (schedstat's second field, ns), in seconds.
fn runqueue_wait_s(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

pub(crate) fn proc_field(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The first descendant of `parent` whose command name is `comm`.
pub(crate) fn find_child(parent: u32, comm: &str) -> Option<u32> {
    for _ in 0..100 {
        let mut frontier = vec![parent];
        while let Some(p) = frontier.pop() {
            let children =
                std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                let name =
                    std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
                if name.trim() == comm {
                    return Some(child);
                }
                frontier.push(child);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

pub(crate) fn free_port() -> Result<u16, String> {
    Ok(free_ports(1)?[0])
}

/// `n` distinct free loopback ports: all held until all are chosen (ports taken one after
/// another may repeat, since the kernel can hand a just-closed ephemeral port out again).
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    held.iter()
        .map(|l| Ok(l.local_addr().map_err(|e| e.to_string())?.port()))
        .collect()
}

/// Sequential 1 MiB O_DIRECT writes of `mib` MiB, then one fdatasync (as `dd oflag=direct
/// conv=fdatasync`), on the filesystem the brokers' data dirs live on.
pub fn raw_disk_write_mb_s(dir: &Path, mib: usize) -> Result<f64, String> {
    let path = dir.join("raw-disk.bin");
    let mut file = open_direct(&path, true)?;
    let mut chunk = AlignedChunk::new();
    let slice = chunk.bytes();
    slice
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i * 31) as u8);
    let started = Instant::now();
    let mut outcome = Ok(());
    for _ in 0..mib {
        if let Err(e) = file.write_all(slice) {
            outcome = Err(format!("O_DIRECT write: {e}"));
            break;
        }
    }
    let synced = file.sync_data();
    let elapsed = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    outcome?;
    synced.map_err(|e| format!("fdatasync: {e}"))?;
    Ok((mib * AlignedChunk::BYTES) as f64 / elapsed / 1e6)
}

/// Sequential 1 MiB O_DIRECT reads of a `mib` MiB file written first (untimed) on the
/// filesystem the brokers' data dirs live on: the bound of a catch-up read from disk.
pub fn raw_disk_read_mb_s(dir: &Path, mib: usize) -> Result<f64, String> {
    let path = dir.join("raw-disk-read.bin");
    let chunk = vec![0x5au8; 1 << 20];
    {
        let mut file =
            std::fs::File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        for _ in 0..mib {
            file.write_all(&chunk)
                .map_err(|e| format!("write {}: {e}", path.display()))?;
        }
        file.sync_all().map_err(|e| format!("fsync: {e}"))?;
    }
    let mut file = open_direct(&path, false)?;
    let mut chunk = AlignedChunk::new();
    let slice = chunk.bytes();
    let started = Instant::now();
    let mut total = 0usize;
    let outcome = loop {
        match file.read(slice) {
            Ok(0) => break Ok(()),
            Ok(n) => total += n,
            Err(e) => break Err(format!("O_DIRECT read: {e}")),
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    outcome?;
    Ok(total as f64 / elapsed / 1e6)
}

/// Opens `path` with O_DIRECT, for writing (created, truncated) or for reading.
pub(crate) fn open_direct(path: &Path, write: bool) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .create(write)
        .truncate(write)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| format!("open {} O_DIRECT: {e}", path.display()))
}

/// A zeroed, page-aligned 1 MiB buffer, as O_DIRECT needs.
struct AlignedChunk {
    ptr: *mut u8,
}

impl AlignedChunk {
    const BYTES: usize = 1 << 20;

    fn layout() -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(Self::BYTES, 4096).expect("valid layout")
    }

    fn new() -> Self {
        // SAFETY: a non-zero-sized layout; freed in drop.
        let ptr = unsafe { std::alloc::alloc_zeroed(Self::layout()) };
        assert!(!ptr.is_null(), "out of memory");
        AlignedChunk { ptr }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: BYTES initialised (zeroed) bytes, exclusively ours while borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, Self::BYTES) }
    }
}

impl Drop for AlignedChunk {
    fn drop(&mut self) {
        // SAFETY: allocated in new with this layout.
        unsafe { std::alloc::dealloc(self.ptr, Self::layout()) };
    }
}

/// One TCP connection over loopback, 1 MiB writes, one reader thread.
pub fn loopback_mb_s(bytes: usize) -> Result<f64, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut stream, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            match stream.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    });
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(address).map_err(|e| e.to_string())?;
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..bytes / chunk.len() {
        stream
            .write_all(&chunk)
            .map_err(|e| format!("loopback write: {e}"))?;
    }
    drop(stream);
    let received = reader
        .join()
        .map_err(|_| "loopback reader panicked")?
        .map_err(|e| format!("loopback read: {e}"))?;
    Ok(received as f64 / started.elapsed().as_secs_f64() / 1e6)
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

pub(crate) fn repo_root() -> Result<PathBuf, String> {
    let mut dir = std::env::current_dir().map_err(|e| e.to_string())?;
    loop {
        if dir.join("bench/peers/kafka").exists() {
            return Ok(dir);
        }
        if !dir.pop() {
            return Err("run `spate bench compare` inside the Spate repository".into());
        }
    }
}

pub(crate) fn git(root: &Path, args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub(crate) fn today() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown-date".into())
}

pub(crate) fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, v)| v.trim());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mem_kib = proc_meminfo("MemTotal:");
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": model,
        "kernel": kernel.trim(),
        "memory_gib": mem_kib as f64 / 1024.0 / 1024.0,
        "loadavg_at_start": load.trim(),
    })
}

pub(crate) fn proc_meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l[key.len()..].split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_disk_bandwidth_is_measured_with_aligned_direct_io() {
        // Under target/, not /tmp: O_DIRECT is refused on tmpfs.
        let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target"))
            .expect("temp dir");
        assert!(raw_disk_write_mb_s(dir.path(), 4).expect("O_DIRECT write") > 0.0);
        assert!(raw_disk_read_mb_s(dir.path(), 4).expect("O_DIRECT read") > 0.0);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "files removed"
        );
    }
    #[test]
    fn producer_performance_summary_parses() {
        let line = "400000 records sent, 147710.5 records/sec (144.25 MB/sec), 197.70 ms avg latency, 445.00 ms max latency, 187 ms 50th, 320 ms 95th, 410 ms 99th, 441 ms 99.9th.";
        let v = parse_producer_performance(line, 400_000).unwrap();
        assert_eq!(v["records_per_s"], 147710.5);
        assert_eq!(v["latency_ms"]["p99"], 410.0);
        assert_eq!(v["latency_ms"]["p99.9"], 441.0);
        assert_eq!(v["latency_ms"]["avg"], 197.70);
    }

    #[test]
    fn consumer_performance_result_parses() {
        let out = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
                   2026-11-25 11:00:00:000, 2026-11-25 11:00:05:000, 976.5625, 195.3125, 1000000, 200000.0000, 1000, 4000, 244.1406, 250000.0000\n";
        let v = parse_consumer_performance(out).unwrap();
        assert_eq!(v["records"], 1_000_000.0);
        assert_eq!(v["fetch_ms"], 4000.0);
        assert_eq!(v["records_per_s"], 250000.0);
        assert!((v["mb_per_s"].as_f64().unwrap() - 256.0).abs() < 0.01);
        assert!(parse_consumer_performance("WARNING: timeout\n").is_err());
    }

    #[test]
    fn both_clients_end_to_end_percentiles_print_side_by_side() {
        let run = json!({
            "result": {"consume": {"latency_us": {"p50": 1200.0, "p99": 4100.0, "p99.9": 9000.0}}},
            "java_end_to_end_latency": {"latency_ms": {"p50": 1.0, "p99": 5.0, "p99.9": 12.0}},
        });
        assert_eq!(
            end_to_end_line(&run).unwrap(),
            "e2e p50/p99/p99.9 1.20/4.10/9.00 ms (spate bench), EndToEndLatency p50/p99/p99.9 1/5/12 ms"
        );
        let failed = json!({"java_end_to_end_latency": {"error": "no java"}});
        assert!(end_to_end_line(&failed).unwrap().contains("failed"));
        assert_eq!(end_to_end_line(&json!({})), None);
    }

    #[test]
    fn end_to_end_latency_result_parses() {
        let out = "0\t12.5\n1000\t0.9\nAvg latency: 1.2345 ms\nPercentiles: 50th = 1, 99th = 3, 99.9th = 7\n";
        let v = parse_end_to_end_latency(out, 2000).unwrap();
        assert_eq!(v["latency_ms"]["avg"], 1.2345);
        assert_eq!(v["latency_ms"]["p50"], 1.0);
        assert_eq!(v["latency_ms"]["p99.9"], 7.0);
        assert!(parse_end_to_end_latency("0\t12.5\n", 2000).is_err());
    }

    #[test]
    fn workloads_are_chosen_by_id_or_prefix() {
        let ids = |list: &str| {
            let o = parse(&["--workloads".to_string(), list.to_string()]).unwrap();
            workloads(&o).iter().map(|w| w.id).collect::<Vec<_>>()
        };
        assert_eq!(
            ids("w6"),
            [
                "w6-partitions-1",
                "w6-partitions-10",
                "w6-partitions-100",
                "w6-partitions-1000"
            ]
        );
        assert_eq!(ids("w6-partitions-1"), ["w6-partitions-1"]);
        // w3's rate is half Kafka's w1 throughput: w1 comes along.
        assert_eq!(ids("w3-e2e"), ["w1-acks1", "w3-e2e"]);
        assert_eq!(ids("w5"), ["w5-catch-up"]);
        assert!(ids("w9").is_empty());
    }

    #[test]
    fn replicated_workloads_run_only_when_named() {
        let ids = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            workloads(&parse(&args).unwrap())
                .iter()
                .map(|w| w.id)
                .collect::<Vec<_>>()
        };
        assert!(ids(&[]).iter().all(|id| id.starts_with('w')));
        assert!(ids(&["--quick"]).iter().all(|id| id.starts_with('w')));
        assert_eq!(
            ids(&["--workloads", "r1"]),
            [R1, "r1-rf3-throughput-replica-nofsync"]
        );
        // r2's rate is half the lower r1 throughput: r1 (Spate's default settings) comes along.
        assert_eq!(
            ids(&["--quick", "--workloads", "r2"]),
            [R1, "r2-rf3-fixed-rate", "r2-rf3-fixed-rate-replica-nofsync"]
        );
        assert_eq!(
            ids(&["--workloads", "r3,r4,w1"]),
            ["w1-acks1", "r3-failover", "r4-follower-catch-up"]
        );
        let o = parse(&["--workloads".into(), "r1,r2,r3,r4".into()]).unwrap();
        let list = workloads(&o);
        assert_eq!(list.len(), 6);
        assert!(list
            .iter()
            .all(|w| w.options.acks == -1 && w.options.replication_factor == 3));
        assert_eq!(
            list.iter().filter(|w| w.spate_only).count(),
            2,
            "the nofsync variants run on Spate alone"
        );
    }

    #[test]
    fn follower_catch_up_size_parses() {
        let gib = |v: &str| {
            parse(&["--follower-catch-up-gib".to_string(), v.to_string()])
                .map(|o| o.follower_catch_up_gib)
        };
        assert_eq!(parse(&[]).unwrap().follower_catch_up_gib, 1.0);
        assert_eq!(gib("0.05"), Ok(0.05));
        assert!(gib("0").is_err());
        assert_eq!(parse(&[]).unwrap().follower_stop, FollowerStop::Pause);
        assert_eq!(
            parse(&["--follower-stop".into(), "kill".into()])
                .unwrap()
                .follower_stop,
            FollowerStop::Kill
        );
        assert!(gib("x").is_err());
        let o = parse(&[
            "--workloads".into(),
            "r4".into(),
            "--follower-catch-up-gib".into(),
            "0.5".into(),
        ])
        .unwrap();
        assert_eq!(workloads(&o)[0].options.total_bytes, Some(1 << 29));
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn warmup_is_the_mode_default_unless_given() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let default = parse(&args(&[])).unwrap();
        assert_eq!(base_options(&default).warmup_s, 4.0);
        let long = parse(&args(&["--warmup-s", "30"])).unwrap();
        assert_eq!(base_options(&long).warmup_s, 30.0);
        assert_eq!(base_options(&long).duration_s, 12.0);
        assert!(parse(&args(&["--warmup-s", "-1"])).is_err());
        assert!(parse(&args(&["--warmup-s", "soon"])).is_err());
    }

    #[test]
    fn quick_runs_the_first_three_workloads_once() {
        let o = parse(&["--quick".to_string()]).unwrap();
        assert_eq!(o.rounds, 1);
        let ids: Vec<_> = workloads(&o).iter().map(|w| w.id).collect();
        assert_eq!(ids, ["w1-acks1", "w2-acksall-fsync", "w3-fixed-rate"]);
    }
}
