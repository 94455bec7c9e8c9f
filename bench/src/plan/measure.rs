//! `spate bench profile`: measures this machine for `spate plan`. Machine facts, the raw disk
//! (O_DIRECT write bandwidth, fsync latency of 4 KiB direct writes) and loopback, then curves
//! of short `spate bench` runs (the workload runner, on a broker started as `bench compare`
//! starts one): broker CPU per GB (/proc/PID/stat over the run), peak throughput and p99
//! against record size, partitions, acks, compression, replication factor (a local 3-node
//! cluster as `compare`'s r1), consumer groups (fetch fan-out), and p99 at fixed fractions of
//! the peak rate.

use crate::compare::{self, Broker, Server};
use crate::flags::Flags;
use crate::replicated::{self, Cluster};
use crate::workload::{self, Mode, Options, Rate, RecordSize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const USAGE: &str = "\
spate bench profile [--broker spate|kafka] [--short] --out FILE [--broker-cores LIST]
                    [--client-cores LIST] [--work-dir DIR] [--no-replication]
  measures this machine for `spate plan` (JSON profile): cores, memory, disk, kernel,
  versions, O_DIRECT write bandwidth and fsync latency in the work dir, loopback bandwidth,
  and curves of short bench runs: broker CPU per GB, peak MB/s and p99 against record size,
  partitions, acks, compression, RF (3-node local cluster), consumer groups, and p99 at
  fixed fractions of the peak. --short: the CI size (about a minute). Progress on stderr.
  Work dir (data dirs): target/bench/profile of the repository (default).
";

/// How a profile is measured.
#[derive(Clone, Debug)]
pub struct ProfileOptions {
    pub broker: Broker,
    pub short: bool,
    pub out: PathBuf,
    pub broker_cores: String,
    pub client_cores: Vec<usize>,
    pub work_dir: Option<PathBuf>,
    pub replication: bool,
}

pub fn parse(args: &[String]) -> Result<ProfileOptions, String> {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut o = ProfileOptions {
        broker: Broker::Spate,
        short: false,
        out: PathBuf::new(),
        broker_cores: "0".into(),
        client_cores: vec![cpus.saturating_sub(1)],
        work_dir: None,
        replication: true,
    };
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        let mut value = || flags.value();
        match flag.as_str() {
            "--broker" => {
                o.broker = match value()?.as_str() {
                    "spate" => Broker::Spate,
                    "kafka" => Broker::Kafka,
                    b => return Err(format!("--broker: spate or kafka, not '{b}'")),
                }
            }
            "--short" => o.short = true,
            "--out" => o.out = value()?.into(),
            "--broker-cores" => o.broker_cores = value()?,
            "--client-cores" => {
                o.client_cores = value()?
                    .split(',')
                    .map(|c| {
                        c.parse()
                            .map_err(|_| format!("--client-cores: bad CPU '{c}'"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--work-dir" => o.work_dir = Some(value()?.into()),
            "--no-replication" => o.replication = false,
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    if o.out.as_os_str().is_empty() {
        return Err(format!("--out FILE is needed\n{USAGE}"));
    }
    Ok(o)
}

/// A broker (one node or a 3-node cluster) whose CPU, RSS and disk writes a run is charged.
pub(crate) enum Target {
    Single(Server),
    Cluster(Cluster),
}

impl Target {
    pub(crate) fn bootstrap(&self) -> String {
        match self {
            Target::Single(s) => s.address.clone(),
            Target::Cluster(c) => c.bootstrap(),
        }
    }

    /// (CPU s, RSS KiB, disk write bytes): one node's current RSS, a cluster's peak RSS summed
    /// over its nodes.
    fn usage(&self) -> (f64, f64, f64) {
        match self {
            Target::Single(s) => {
                let sample = s.sample();
                let rss = compare::proc_field(s.pid, "status", "VmRSS:").unwrap_or(0) as f64;
                (sample.cpu_s, rss, sample.disk_write_bytes as f64)
            }
            Target::Cluster(c) => c.samples().iter().fold((0.0, 0.0, 0.0), |acc, (_, s)| {
                (
                    acc.0 + s.cpu_s,
                    acc.1 + s.peak_rss_kib as f64,
                    acc.2 + s.disk_write_bytes as f64,
                )
            }),
        }
    }

    pub(crate) fn stop(self) {
        match self {
            Target::Single(mut s) => s.stop(),
            Target::Cluster(mut c) => c.stop(),
        }
    }
}

/// Where the brokers run and their data dirs live.
pub(crate) struct Bench {
    pub(crate) root: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) broker: Broker,
    pub(crate) broker_cores: String,
    pub(crate) client_cores: Vec<usize>,
    pub(crate) short: bool,
    topics: usize,
    /// Run topics deleted and gone from every node's metadata.
    pub(crate) topics_deleted: usize,
}

impl Bench {
    pub(crate) fn new(o: &ProfileOptions) -> Result<Bench, String> {
        let root = compare::repo_root().or_else(|e| {
            if o.broker == Broker::Spate {
                std::env::current_dir().map_err(|e| e.to_string())
            } else {
                Err(e)
            }
        })?;
        let work = o
            .work_dir
            .clone()
            .unwrap_or_else(|| root.join("target/bench/profile"));
        std::fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
        Ok(Bench {
            root,
            work,
            broker: o.broker,
            broker_cores: o.broker_cores.clone(),
            client_cores: o.client_cores.clone(),
            short: o.short,
            topics: 0,
            topics_deleted: 0,
        })
    }

    pub(crate) fn single(&self) -> Result<Target, String> {
        let settings = deletion_settings(self.broker);
        Server::start(
            &self.root,
            &self.work,
            self.broker,
            &self.broker_cores,
            &settings.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .map(Target::Single)
    }

    /// A local 3-node cluster (`replicated.rs`'s, as `bench compare` r1 starts it) on the
    /// broker cores.
    pub(crate) fn cluster(&self) -> Result<Target, String> {
        let mut settings = replicated::node_settings(self.broker);
        settings.extend(deletion_settings(self.broker));
        Cluster::start(
            &self.root,
            &self.work,
            self.broker,
            &self.broker_cores,
            &settings,
        )
        .map(Target::Cluster)
    }

    /// The base run: 1 KiB records, 8 partitions, acks 1, no compression, unlimited rate.
    pub(crate) fn base(&self) -> Options {
        let (warmup_s, duration_s) = if self.short { (0.5, 1.5) } else { (2.0, 6.0) };
        Options {
            mode: Mode::Produce,
            partitions: 8,
            record_bytes: RecordSize::Fixed(1024),
            acks: 1,
            warmup_s,
            duration_s,
            client_cores: self.client_cores.clone(),
            progress: false,
            ..Options::default()
        }
    }

    /// The base run at RF 3, acks=all, `min.insync.replicas=2` (as `bench compare` r1), for a
    /// `cluster()`.
    pub(crate) fn replicated(&self, base: &Options) -> Options {
        Options {
            acks: -1,
            replication_factor: replicated::REPLICATION_FACTOR,
            topic_configs: vec![(
                "min.insync.replicas".into(),
                replicated::MIN_INSYNC_REPLICAS.into(),
            )],
            // three fresh nodes (three JVMs for Kafka) on the broker cores: the short mode's
            // 0.5 s warm-up ended before Kafka's first acks=all answer under load
            warmup_s: base.warmup_s.max(2.0),
            ..base.clone()
        }
    }

    /// One run on `target`: the run's JSON result with the broker's usage over it added. The
    /// run's topic is deleted after it (and the broker has said it is gone), so the runs of a
    /// profile do not fill the disk; the usage is read before the deletion.
    pub(crate) fn run(&mut self, target: &Target, options: &Options) -> Result<Value, String> {
        self.topics += 1;
        let mut options = options.clone();
        options.brokers = target.bootstrap();
        options.topic = format!("profile-{}", self.topics);
        let outcome = Self::measure(target, &options);
        let deleted = workload::delete_topic(&options.brokers, &options.topic);
        let run = outcome?;
        deleted.map_err(|e| format!("after the run: {e}"))?;
        self.topics_deleted += 1;
        Ok(run)
    }

    /// The run itself, charged the broker's usage over it.
    fn measure(target: &Target, options: &Options) -> Result<Value, String> {
        if matches!(target, Target::Cluster(_)) {
            replicated::create_topic(options)?;
        }
        let before = target.usage();
        let started = Instant::now();
        let result = workload::run(options)?;
        let wall_s = started.elapsed().as_secs_f64();
        let after = target.usage();
        let produce = &result["produce"];
        if produce["records"].as_u64().unwrap_or(0) == 0 {
            // A run with nothing acknowledged in its window measured no rate: as a curve point
            // its CPU per GB would be the broker's CPU over almost no bytes.
            return Err(format!(
                "{}: no record acknowledged within the {} s window ({} produce errors)",
                options.topic,
                options.duration_s,
                produce["errors"].as_u64().unwrap_or(0)
            ));
        }
        let bytes = produce["run_payload_bytes"].as_f64().unwrap_or(0.0);
        let cpu_s = after.0 - before.0;
        Ok(json!({
            "mb_per_s": produce["mb_per_s"],
            "records_per_s": produce["records_per_s"],
            "cpu_s_per_gb": compare::per_gb(cpu_s, bytes),
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "cpu_cores": cpu_s / wall_s.max(1e-9),
            "p99_ms": produce["latency_us"]["p99"].as_f64().unwrap_or(0.0) / 1e3,
            "rss_mib": after.1 / 1024.0,
            "ratio": produce["batch_bytes"].as_f64().unwrap_or(0.0)
                / produce["payload_bytes"].as_f64().unwrap_or(1.0).max(1.0),
            "disk_write_bytes": after.2 - before.2,
            "payload_bytes": bytes,
        }))
    }
}

/// Settings of every broker a profile starts: Kafka keeps a deleted topic's files for
/// `log.segment.delete.delay.ms` (60 s by default), longer than a run; Spate removes them at
/// once.
fn deletion_settings(broker: Broker) -> Vec<String> {
    match broker {
        Broker::Spate => vec![],
        Broker::Kafka => vec!["log.segment.delete.delay.ms=0".into()],
    }
}

/// Progress and one curve point's record.
fn point(step: &mut (usize, usize), curve: &str, x: Value, mut run: Value) -> Value {
    step.0 += 1;
    let shown = x.as_str().map_or_else(|| x.to_string(), String::from);
    eprintln!(
        "profile [{}/{}] {curve} {shown}: {:.1} MB/s, broker CPU {:.2} s/GB, p99 {:.2} ms",
        step.0,
        step.1,
        run["mb_per_s"].as_f64().unwrap_or(0.0),
        run["cpu_s_per_gb"].as_f64().unwrap_or(f64::NAN),
        run["p99_ms"].as_f64().unwrap_or(0.0)
    );
    run["x"] = x;
    run
}

/// O_DIRECT 4 KiB writes each followed by fdatasync: (p50, p99) ms.
pub fn fsync_latency_ms(dir: &Path, count: usize) -> Result<(f64, f64), String> {
    use std::io::Write;
    let path = dir.join("fsync-latency.bin");
    let mut file = compare::open_direct(&path, true)?;
    let layout = std::alloc::Layout::from_size_align(4096, 4096).expect("layout");
    // SAFETY: non-zero size; freed below.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!ptr.is_null(), "out of memory");
    // SAFETY: 4096 zeroed bytes owned here.
    let block = unsafe { std::slice::from_raw_parts(ptr, 4096) };
    let mut times = Vec::with_capacity(count);
    let mut outcome = Ok(());
    for _ in 0..count {
        let started = Instant::now();
        if let Err(e) = file.write_all(block).and_then(|_| file.sync_data()) {
            outcome = Err(format!("O_DIRECT write + fdatasync: {e}"));
            break;
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(ptr, layout) };
    let _ = std::fs::remove_file(&path);
    outcome?;
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

fn disk_free_gib(dir: &Path) -> f64 {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return 0.0;
    };
    // SAFETY: a zeroed statvfs filled by the call; c is a valid C string.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return 0.0;
    }
    s.f_bavail as f64 * s.f_frsize as f64 / (1u64 << 30) as f64
}

/// Measures and writes the profile.
pub fn run(o: &ProfileOptions) -> Result<Value, String> {
    crate::raise_memlock();
    let started = Instant::now();
    let mut bench = Bench::new(o)?;
    let short = o.short;
    let mut machine = compare::machine();
    machine["disk_free_gib"] = json!(disk_free_gib(&bench.work));
    eprintln!("profile: disk (O_DIRECT write, fsync latency) and loopback");
    let disk_mb_s = compare::raw_disk_write_mb_s(&bench.work, if short { 64 } else { 512 })?;
    let (fsync_p50, fsync_p99) = fsync_latency_ms(&bench.work, if short { 40 } else { 300 })?;
    let loopback = compare::loopback_mb_s(if short { 256 << 20 } else { 2 << 30 })?;
    eprintln!(
        "profile: disk {disk_mb_s:.0} MB/s, fsync p50 {fsync_p50:.2} ms p99 {fsync_p99:.2} ms, loopback {loopback:.0} MB/s"
    );
    let sizes: &[usize] = if short {
        &[100, 1024, 16384]
    } else {
        &[100, 300, 1024, 4096, 16384]
    };
    let partitions: &[u32] = if short {
        &[1, 8, 64]
    } else {
        &[1, 8, 64, 256, 1024]
    };
    let codecs: &[&str] = if short {
        &["zstd"]
    } else {
        &["gzip", "snappy", "lz4", "zstd"]
    };
    let groups: &[usize] = if short { &[0, 1, 2] } else { &[0, 1, 2, 4] };
    let fractions: &[f64] = if short {
        &[0.5, 0.8]
    } else {
        &[0.25, 0.5, 0.7, 0.8, 0.9]
    };
    let mut step = (
        0,
        sizes.len()
            + partitions.len()
            + 1
            + codecs.len()
            + groups.len()
            + fractions.len()
            + usize::from(o.replication),
    );
    let mut curves = json!({});
    let base = bench.base();

    // Record sizes, acks and compression on one broker; the 1 KiB run is the base.
    let target = bench.single()?;
    let outcome = (|| -> Result<(), String> {
        let mut list = Vec::new();
        for &size in sizes {
            let opts = Options {
                record_bytes: RecordSize::Fixed(size),
                ..base.clone()
            };
            let run = bench.run(&target, &opts)?;
            list.push(point(&mut step, "record_bytes", json!(size), run));
        }
        let base_run = list
            .iter()
            .find(|p| p["x"] == 1024)
            .cloned()
            .ok_or("no 1 KiB run")?;
        curves["record_bytes"] = json!(list);
        let all = bench.run(
            &target,
            &Options {
                acks: -1,
                ..base.clone()
            },
        )?;
        let mut one = base_run.clone();
        one["x"] = json!("1");
        curves["acks"] = json!([one, point(&mut step, "acks", json!("all"), all)]);
        let mut none = base_run.clone();
        none["x"] = json!("none");
        none["ratio"] = json!(1.0);
        let mut list = vec![none];
        for codec in codecs {
            let opts = Options {
                compression: crate::batch::Compression::parse(codec)?,
                ..base.clone()
            };
            let run = bench.run(&target, &opts)?;
            list.push(point(&mut step, "compression", json!(codec), run));
        }
        curves["compression"] = json!(list);
        curves["base_run"] = base_run;
        Ok(())
    })();
    target.stop();
    outcome?;
    let base_run = curves["base_run"].clone();
    let peak_mb_s = base_run["mb_per_s"].as_f64().unwrap_or(0.0).max(1.0);

    // Partitions, each count on a fresh broker: its RSS, read at the end of the run, is that
    // of a broker holding those partitions only (a broker that had held and deleted others
    // may keep their memory in its allocator).
    let mut list = Vec::new();
    for &n in partitions {
        let target = bench.single()?;
        let opts = Options {
            partitions: n,
            ..base.clone()
        };
        let run = bench.run(&target, &opts);
        target.stop();
        let mut p = point(&mut step, "partitions", json!(n), run?);
        p["rss_partitions"] = json!(n);
        list.push(p);
    }
    curves["partitions"] = json!(list);

    // Fan-out and latency at fixed rates, on a fresh broker.
    let target = bench.single()?;
    let outcome = (|| -> Result<(), String> {
        let mut list = Vec::new();
        for &g in groups {
            let opts = Options {
                mode: if g == 0 { Mode::Produce } else { Mode::E2e },
                consumer_groups: g.max(1),
                rate: Rate::BytesPerS(peak_mb_s * 1e6 * 0.4),
                ..base.clone()
            };
            let run = bench.run(&target, &opts)?;
            list.push(point(&mut step, "consumer_groups", json!(g), run));
        }
        curves["consumer_groups"] = json!(list);
        let mut list = Vec::new();
        for &f in fractions {
            let opts = Options {
                rate: Rate::BytesPerS(peak_mb_s * 1e6 * f),
                ..base.clone()
            };
            let run = bench.run(&target, &opts)?;
            list.push(point(&mut step, "latency", json!(f), run));
        }
        let mut at_peak = base_run.clone();
        at_peak["x"] = json!(1.0);
        list.push(at_peak);
        curves["latency"] = json!(list);
        Ok(())
    })();
    target.stop();
    outcome?;

    // Replication: RF 1 acks=all (above) against RF 3 acks=all on a local 3-node cluster.
    let mut rf1 = curves["acks"][1].clone();
    rf1["x"] = json!(1);
    curves["replication_factor"] = json!([rf1]);
    let mut notes = vec![];
    if o.replication {
        let rf3 = bench.cluster().and_then(|target| {
            let opts = bench.replicated(&base);
            let run = bench.run(&target, &opts);
            target.stop();
            run
        });
        match rf3 {
            Ok(run) => {
                let p = point(&mut step, "replication_factor", json!(3), run);
                curves["replication_factor"]
                    .as_array_mut()
                    .expect("list")
                    .push(p);
            }
            Err(e) => {
                eprintln!("profile: the RF 3 cluster run failed ({e}): RF=1 only");
                notes.push(format!("RF 3 cluster run failed: {e}; RF=1 only"));
            }
        }
    } else {
        notes.push("--no-replication: RF=1 only".to_string());
    }

    let amplification = base_run["disk_write_bytes"].as_f64().unwrap_or(0.0)
        / base_run["payload_bytes"].as_f64().unwrap_or(1.0).max(1.0);
    let root = bench.root.clone();
    let profile = json!({
        "schema": super::profile::SCHEMA,
        "broker": o.broker.name(),
        "short": short,
        "measured": {
            "date": compare::today(),
            "commit": compare::git(&root, &["rev-parse", "--short", "HEAD"]),
            "command": format!("spate bench profile --broker {}{} --out {}", o.broker.name(),
                if short { " --short" } else { "" }, o.out.display()),
            "seconds": started.elapsed().as_secs_f64(),
            "versions": {
                "spate": env!("CARGO_PKG_VERSION"),
                "kafka": if o.broker == Broker::Kafka { json!("4.3.1 (bench/peers/kafka)") } else { Value::Null },
            },
            "loadavg_at_end": compare::loadavg(),
            "notes": notes,
            "runs": bench.topics,
            "topics_deleted": bench.topics_deleted,
        },
        "machine": machine,
        "broker_cores": o.broker_cores.split(',').count(),
        "broker_cores_list": o.broker_cores,
        "client_cores": o.client_cores,
        "disk": {
            "direct_write_mb_s": disk_mb_s, "fsync_p50_ms": fsync_p50, "fsync_p99_ms": fsync_p99,
            // Spate's io_uring writes may not be charged to the process's write_bytes: only a
            // plausible figure (>= 0.9 of the payload) is kept.
            "write_amplification": if amplification >= 0.9 { json!(amplification.max(1.0)) } else { Value::Null },
        },
        "network": { "loopback_mb_s": loopback },
        "base": { "record_bytes": 1024, "partitions": 8, "acks": "1", "compression": "none" },
        "curves": curves,
    });
    let text = serde_json::to_string_pretty(&profile).expect("json");
    super::profile::Profile::parse(&text)?;
    std::fs::write(&o.out, text + "\n").map_err(|e| format!("write {}: {e}", o.out.display()))?;
    eprintln!(
        "profile: wrote {} ({:.0} s)",
        o.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(profile)
}
