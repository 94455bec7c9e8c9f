//! `spate bench produce|consume|e2e`: the load generator. One glommio executor per client core;
//! producers and consumers are tasks spread over them, each with its own connections.

use crate::batch::{walk_batches, BatchBuilder, Compression};
use crate::client::{self, Client, Connection, Routes};
use crate::flags::Flags;
use crate::partitioner::{DefaultPartitioner, Keyless, Partitioner};
use crate::stats::{RequestTimes, Stats};
use bytes::Bytes;
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use serde_json::{json, Value};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Produce,
    Consume,
    E2e,
}

/// Record value sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordSize {
    Fixed(usize),
    /// Uniform between the bounds, inclusive.
    Uniform(usize, usize),
}

/// Record keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    None,
    /// A fresh random 16-byte key per record.
    Random,
    /// One of N distinct keys, picked at random.
    Distinct(u64),
}

/// Target send rate over all producers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    Unlimited,
    BytesPerS(f64),
    RecordsPerS(f64),
}

/// Every option of a run.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub brokers: String,
    pub topic: String,
    pub partitions: u32,
    /// Replicas per partition of a topic the bench creates.
    pub replication_factor: i16,
    pub record_bytes: RecordSize,
    pub keys: Keys,
    pub acks: i16,
    pub batch_bytes: usize,
    pub linger_ms: u64,
    /// Codec of produced batches (values are then letters at shifting offsets of a random pool,
    /// compressible as text, instead of one random buffer).
    pub compression: Compression,
    pub producers: usize,
    pub consumers: usize,
    /// Independent readers of every partition (fetch fan-out): each "group" is `consumers`
    /// consumers sharing the partitions (assigned by the bench, no group protocol).
    pub consumer_groups: usize,
    pub rate: Rate,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Produce: stop after this many payload bytes over all producers (the run ends when they
    /// are acknowledged; `duration_s` bounds it).
    pub total_bytes: Option<u64>,
    /// Consume: read from the earliest offsets to the end offsets found at start, then stop
    /// (catch-up read; `duration_s` bounds it).
    pub to_end: bool,
    /// Produce requests in flight per producer (Java: max.in.flight.requests.per.connection).
    pub in_flight_max: usize,
    /// CPUs the client's executors are pinned to; empty: one unpinned executor.
    pub client_cores: Vec<usize>,
    /// Topic configs used when the bench creates the topic.
    pub topic_configs: Vec<(String, String)>,
    pub json_path: Option<std::path::PathBuf>,
    pub progress: bool,
    /// Where every acknowledged produce request is logged (failover measurements).
    pub ack_log: Option<Arc<AckLog>>,
    /// Set from outside to end the run early (producers stop, the run reports what it has).
    pub stop: Option<Arc<AtomicBool>>,
    /// The broker's admin endpoint: its latency budget over the window goes in the result.
    pub broker_admin: Option<String>,
}

/// Every acknowledged produce request of a run, per partition: when and from which broker
/// (how `spate bench compare` times a failover).
#[derive(Debug, Default)]
pub struct AckLog {
    entries: Mutex<Vec<(Instant, i32, String)>>,
}

impl AckLog {
    pub fn push(&self, at: Instant, partition: i32, broker: &str) {
        self.entries
            .lock()
            .expect("not poisoned")
            .push((at, partition, broker.to_string()));
    }

    /// The first acknowledgement of `partition` after `after` by a broker other than `not_by`.
    pub fn first_after(&self, after: Instant, partition: i32, not_by: &str) -> Option<Instant> {
        self.entries
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(at, p, by)| *at > after && *p == partition && by != not_by)
            .map(|(at, ..)| *at)
            .min()
    }

    /// The last acknowledgement of any partition by `broker` up to `before`.
    pub fn last_by(&self, broker: &str, before: Instant) -> Option<Instant> {
        self.entries
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(at, _, by)| *at <= before && by == broker)
            .map(|(at, ..)| *at)
            .max()
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            mode: Mode::Produce,
            brokers: "127.0.0.1:9092".into(),
            topic: "spate-bench".into(),
            partitions: 8,
            replication_factor: 1,
            record_bytes: RecordSize::Fixed(1024),
            keys: Keys::None,
            acks: 1,
            batch_bytes: 64 << 10,
            linger_ms: 5,
            compression: Compression::None,
            producers: 1,
            consumers: 1,
            consumer_groups: 1,
            rate: Rate::Unlimited,
            duration_s: 10.0,
            warmup_s: 2.0,
            total_bytes: None,
            to_end: false,
            in_flight_max: 5,
            client_cores: Vec::new(),
            topic_configs: Vec::new(),
            json_path: None,
            progress: true,
            ack_log: None,
            stop: None,
            broker_admin: None,
        }
    }
}

pub const USAGE: &str = "\
spate bench produce|consume|e2e [options]   load generator (Kafka protocol)
  --brokers H:P[,H:P]   bootstrap (default 127.0.0.1:9092)
  --command-config FILE Kafka client properties (security.protocol, ssl.*, sasl.* as `spate topic`)
  --topic NAME          (default spate-bench); created if missing
  --partitions N        (default 8)
  --replication-factor N   replicas per partition of a topic the bench creates (default 1)
  --record-bytes N|MIN-MAX   value size, fixed or uniform (default 1024)
  --keys none|random|N  keyless (sticky), random 16-byte keys, or N distinct keys
  --acks 0|1|all        (default 1)
  --batch-bytes N       (default 65536)     --linger-ms N (default 5)
  --compression none|gzip|snappy|lz4|zstd   codec of produced batches (default none)
  --producers N         (default 1)         --consumers N (default 1)
  --consumer-groups N   consume/e2e: N independent readers of every partition (fetch fan-out;
                        partitions assigned by the bench, no group protocol; default 1)
  --rate unlimited|<x>MB/s|<x>rec/s         total target rate (default unlimited)
  --duration-s S        measured time (default 10)  --warmup-s S (default 2)
  --total-bytes N       produce: stop after N payload bytes (then duration-s is a bound)
  --to-end              consume: from the earliest offsets to the end offsets at start, then stop
  --broker-admin H:P    the broker's admin endpoint: its latency budget (/v1/stages) over the
                        measured window is printed and kept in the JSON (broker_stages)
  --in-flight N         produce requests in flight per producer (default 5)
  --client-cores 1,2    pin one client executor per listed CPU
  --topic-config K=V    config of a created topic (repeatable)
  --json PATH           write the JSON result there (else printed on stdout)
  --quiet               no progress lines
";

/// Parses the options after `spate bench <mode>`.
pub fn parse(mode: Mode, args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        mode,
        ..Options::default()
    };
    let mut flags = Flags::new(args);
    while let Some(name) = flags.next_flag() {
        let flag = name.as_str();
        let mut value = || flags.value();
        match flag {
            "--brokers" => o.brokers = value()?,
            // Kafka client properties (TLS, SASL): every connection of this process uses them.
            "--command-config" => {
                crate::security::use_for_process(crate::security::Security::from_file(&value()?)?)?
            }
            "--topic" => o.topic = value()?,
            "--partitions" => o.partitions = number(flag, &value()?)?,
            "--replication-factor" => o.replication_factor = number(flag, &value()?)?,
            "--record-bytes" => o.record_bytes = parse_record_bytes(&value()?)?,
            "--keys" => o.keys = parse_keys(&value()?)?,
            "--acks" => {
                o.acks = match value()?.as_str() {
                    "all" | "-1" => -1,
                    "0" => 0,
                    "1" => 1,
                    other => return Err(format!("--acks: 0, 1 or all, not '{other}'")),
                }
            }
            "--batch-bytes" => o.batch_bytes = number(flag, &value()?)?,
            "--linger-ms" => o.linger_ms = number(flag, &value()?)?,
            "--compression" => o.compression = Compression::parse(&value()?)?,
            "--producers" => o.producers = number(flag, &value()?)?,
            "--consumers" => o.consumers = number(flag, &value()?)?,
            "--consumer-groups" => o.consumer_groups = number(flag, &value()?)?,
            "--rate" => o.rate = parse_rate(&value()?)?,
            "--duration-s" => o.duration_s = number(flag, &value()?)?,
            "--warmup-s" => o.warmup_s = number(flag, &value()?)?,
            "--total-bytes" => o.total_bytes = Some(number(flag, &value()?)?),
            "--to-end" => o.to_end = true,
            "--broker-admin" => o.broker_admin = Some(value()?),
            "--in-flight" => o.in_flight_max = number(flag, &value()?)?,
            "--client-cores" => {
                o.client_cores = value()?
                    .split(',')
                    .map(|c| number("--client-cores", c))
                    .collect::<Result<_, _>>()?
            }
            "--topic-config" => {
                let v = value()?;
                let (k, v) = v.split_once('=').ok_or("--topic-config wants K=V")?;
                o.topic_configs.push((k.into(), v.into()));
            }
            "--json" => o.json_path = Some(value()?.into()),
            "--quiet" => o.progress = false,
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    if o.replication_factor < 1 {
        return Err("--replication-factor must be > 0".into());
    }
    if o.partitions == 0
        || o.producers == 0
        || o.consumers == 0
        || o.consumer_groups == 0
        || o.in_flight_max == 0
    {
        return Err(
            "--partitions, --producers, --consumers, --consumer-groups and --in-flight must be > 0"
                .into(),
        );
    }
    if o.duration_s <= 0.0 {
        return Err("--duration-s must be > 0".into());
    }
    if o.mode == Mode::E2e && o.acks == 0 {
        return Err("e2e needs acks 1 or all".into());
    }
    Ok(o)
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{flag}: not a number: '{v}'"))
}

fn parse_record_bytes(v: &str) -> Result<RecordSize, String> {
    let size = match v.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (number("--record-bytes", a)?, number("--record-bytes", b)?);
            if a > b {
                return Err("--record-bytes MIN-MAX needs MIN <= MAX".into());
            }
            RecordSize::Uniform(a, b)
        }
        None => RecordSize::Fixed(number("--record-bytes", v)?),
    };
    let min = match size {
        RecordSize::Fixed(n) | RecordSize::Uniform(n, _) => n,
    };
    if min < 8 {
        return Err("--record-bytes: at least 8 (the send timestamp lives there)".into());
    }
    Ok(size)
}

fn parse_keys(v: &str) -> Result<Keys, String> {
    match v {
        "none" => Ok(Keys::None),
        "random" => Ok(Keys::Random),
        n => match number::<u64>("--keys", n)? {
            0 => Err("--keys N needs N > 0".into()),
            n => Ok(Keys::Distinct(n)),
        },
    }
}

fn parse_rate(v: &str) -> Result<Rate, String> {
    let lower = v.to_ascii_lowercase();
    if lower == "unlimited" {
        return Ok(Rate::Unlimited);
    }
    let rate = if let Some(n) = lower.strip_suffix("mb/s") {
        Rate::BytesPerS(number::<f64>("--rate", n)? * 1e6)
    } else if let Some(n) = lower.strip_suffix("rec/s") {
        Rate::RecordsPerS(number("--rate", n)?)
    } else {
        return Err(format!("--rate: unlimited, <x>MB/s or <x>rec/s, not '{v}'"));
    };
    match rate {
        Rate::BytesPerS(x) | Rate::RecordsPerS(x) if x <= 0.0 => Err("--rate must be > 0".into()),
        rate => Ok(rate),
    }
}

/// Times shared by every task of a run; nanoseconds are counted from `epoch`.
#[derive(Clone, Copy)]
struct Clock {
    epoch: Instant,
    measure_from_ns: u64,
    end_ns: u64,
}

impl Clock {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// A small, seeded xorshift generator: keys and sizes are reproducible per producer.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs a workload to the end and returns its JSON result (also written or printed when the
/// options say so).
pub fn run(options: &Options) -> Result<Value, String> {
    crate::raise_memlock();
    ensure_topic(options)?;

    let epoch = Instant::now();
    let clock = Clock {
        epoch,
        measure_from_ns: (options.warmup_s * 1e9) as u64,
        end_ns: ((options.warmup_s + options.duration_s) * 1e9) as u64,
    };
    let produced = Arc::new(Stats::new());
    let consumed = Arc::new(Stats::new());
    let finished = Arc::new(Finished::default());
    let executors = spawn_clients(options, clock, &produced, &consumed, &finished)?;
    let progress = if options.mode == Mode::Consume {
        &consumed
    } else {
        &produced
    };
    let mut last = (0u64, Instant::now());
    // The broker's budget when the window starts (`--broker-admin`), taken at the first poll
    // past the warmup.
    let mut stages_before: Option<latency::Budget> = None;
    let mut stages_error: Option<String> = None;
    let all_done = || finished.executors.load(Ordering::Acquire) >= executors.len();
    let stopped = || {
        options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Acquire))
    };
    while epoch.elapsed().as_nanos() < clock.end_ns as u128 && !all_done() {
        // Polled every 50 ms (a bounded run ends early), progress printed every second.
        std::thread::sleep(
            Duration::from_millis(50).min(Duration::from_nanos(
                clock
                    .end_ns
                    .saturating_sub(epoch.elapsed().as_nanos() as u64)
                    + 1,
            )),
        );
        if let Some(admin) = &options.broker_admin {
            let measuring = epoch.elapsed().as_nanos() >= clock.measure_from_ns as u128;
            if measuring && stages_before.is_none() && stages_error.is_none() {
                match crate::stages::fetch(admin) {
                    Ok(budget) => stages_before = Some(budget),
                    Err(e) => stages_error = Some(e),
                }
            }
        }
        if options.progress && last.1.elapsed() >= Duration::from_secs(1) {
            let bytes = progress.all_payload_bytes();
            let mb_s = (bytes - last.0) as f64 / last.1.elapsed().as_secs_f64() / 1e6;
            last = (bytes, Instant::now());
            let phase = if epoch.elapsed().as_nanos() <= clock.measure_from_ns as u128 + 500_000_000
            {
                "warmup"
            } else {
                "measure"
            };
            let (p50, p99) = progress.p50_p99_us();
            eprintln!(
                "[{:5.1}s {phase}] {mb_s:8.1} MB/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
                epoch.elapsed().as_secs_f64(),
                p50 as f64 / 1e3,
                p99 as f64 / 1e3,
                progress.errors()
            );
        }
    }
    // The measured window ends at the run's end, or when the last client finished before it.
    if !all_done() && stopped() {
        // Stopped from outside: the producers end at their next turn.
        while !all_done() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let window_end_ns = if all_done() {
        finished.last_ns.load(Ordering::Acquire).min(clock.end_ns)
    } else {
        clock.end_ns
    };
    let window_s = (window_end_ns.saturating_sub(clock.measure_from_ns)).max(1) as f64 / 1e9;
    let mut failures = Vec::new();
    for handle in executors {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("client executor failed: {e}")),
        }
    }
    if let Some(first) = produced.first_error().or(consumed.first_error()) {
        failures.push(first);
    }
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    let mut result = result_json(options, window_s, &produced, &consumed);
    if let Some(admin) = &options.broker_admin {
        let window = stages_before
            .ok_or_else(|| stages_error.unwrap_or_else(|| "the window never started".into()))
            .and_then(|before| Ok(crate::stages::fetch(admin)?.since(&before)));
        result["broker_stages"] = match window {
            Ok(window) => crate::stages::to_json(&window),
            Err(e) => json!({ "error": e }),
        };
    }
    print_summary(options, &result);
    if let Some(stages) = result.get("broker_stages") {
        crate::stages::print(stages);
    }
    match &options.json_path {
        Some(path) => std::fs::write(path, serde_json::to_string_pretty(&result).expect("json"))
            .map_err(|e| format!("write {}: {e}", path.display()))?,
        None if options.progress => {
            println!("{}", serde_json::to_string_pretty(&result).expect("json"))
        }
        None => {}
    }
    Ok(result)
}

/// Creates the run's topic if missing and waits until every partition has a leader.
pub fn ensure_topic(options: &Options) -> Result<(), String> {
    crate::raise_memlock();
    let setup = options.clone();
    on_executor(None, move || async move {
        let client = Client::connect(&setup.brokers).await?;
        // A cluster still registering its brokers answers retriable errors: try again.
        let mut tries = 0;
        loop {
            match client
                .create_topic_replicated(
                    &setup.topic,
                    setup.partitions,
                    setup.replication_factor,
                    &setup.topic_configs,
                )
                .await
            {
                Err(e) if e.starts_with(client::RETRIABLE) && tries < 200 => tries += 1,
                result => break result?,
            }
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        // Kafka elects the new partitions' leaders asynchronously: wait until all have one.
        let mut tries = 0;
        loop {
            match client.topic_layout(&setup.topic).await {
                Ok(_) => return Ok(()),
                Err(e) if tries >= 200 => return Err(e),
                Err(_) => tries += 1,
            }
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// How long a deleted topic may take to leave every broker's metadata.
const TOPIC_GONE_TIMEOUT: Duration = Duration::from_secs(60);

/// Deletes a topic and waits until every one of `brokers` (comma-separated) reports it gone
/// (its files are then being removed: Spate at once, Kafka after `log.segment.delete.delay.ms`).
pub fn delete_topic(brokers: &str, topic: &str) -> Result<(), String> {
    let deadline = Instant::now() + TOPIC_GONE_TIMEOUT;
    loop {
        let name = topic.to_string();
        let deleted = ask(brokers, move |c| {
            let name = name.clone();
            async move { client::delete_topic(&c, &name).await }
        });
        match deleted {
            Err(e) if e.starts_with(client::RETRIABLE) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            result => break result?,
        }
    }
    for address in brokers.split(',').filter(|a| !a.is_empty()) {
        loop {
            let name = topic.to_string();
            let gone = ask(address, move |c| {
                let name = name.clone();
                async move { client::topic_gone(&c, &name).await }
            });
            match gone {
                Ok(true) => break,
                _ if Instant::now() > deadline => {
                    return Err(format!(
                        "topic {topic}: still known to {address} {TOPIC_GONE_TIMEOUT:?} after DeleteTopics ({gone:?})"
                    ))
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
    Ok(())
}

/// Leaders, replicas and ISR of a topic's partitions as the first of `brokers` (comma-separated)
/// that answers says.
pub fn topic_state(brokers: &str, topic: &str) -> Result<client::TopicState, String> {
    let topic = topic.to_string();
    ask(brokers, move |c| {
        let topic = topic.clone();
        async move { client::topic_state(&c, &topic).await }
    })
}

/// Asks `query` of the first of `brokers` (comma-separated) that answers it, on a fresh
/// executor (for callers outside one, like `compare` between runs).
pub fn ask<T, F, Fut>(brokers: &str, query: F) -> Result<T, String>
where
    T: Send + 'static,
    F: Fn(Connection) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>> + 'static,
{
    crate::raise_memlock();
    let brokers = brokers.to_string();
    on_executor(None, move || async move {
        let mut last = String::from("no broker address");
        for address in brokers.split(',').filter(|a| !a.is_empty()) {
            match Connection::connect(address).await {
                Ok(connection) => match query(connection).await {
                    Ok(answer) => return Ok(answer),
                    Err(e) => last = e,
                },
                Err(e) => last = e,
            }
        }
        Err(last)
    })
}

/// Runs one future on a fresh glommio executor and waits for it.
fn on_executor<G, F, T>(core: Option<usize>, make: G) -> Result<T, String>
where
    G: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = Result<T, String>> + 'static,
    T: Send + 'static,
{
    let placement = core.map_or(Placement::Unbound, Placement::Fixed);
    LocalExecutorBuilder::new(placement)
        .name("bench-client")
        .io_memory(512 << 10)
        .spawn(make)
        .map_err(|e| format!("cannot start a client executor: {e}"))?
        .join()
        .map_err(|e| format!("client executor: {e}"))?
}

type Handle = glommio::ExecutorJoinHandle<Result<(), String>>;

/// Client executors that finished, and when the last of them did (ns from the clock's epoch).
#[derive(Default)]
struct Finished {
    executors: AtomicUsize,
    last_ns: AtomicU64,
}

fn spawn_clients(
    options: &Options,
    clock: Clock,
    produced: &Arc<Stats>,
    consumed: &Arc<Stats>,
    finished: &Arc<Finished>,
) -> Result<Vec<Handle>, String> {
    let cores: Vec<Option<usize>> = if options.client_cores.is_empty() {
        vec![None]
    } else {
        options.client_cores.iter().map(|&c| Some(c)).collect()
    };
    let producers = if options.mode == Mode::Consume {
        0
    } else {
        options.producers
    };
    let consumers = if options.mode == Mode::Produce {
        0
    } else {
        options.consumers * options.consumer_groups
    };
    let mut handles = Vec::new();
    for (slot, core) in cores.iter().enumerate() {
        let mine_p: Vec<usize> = (slot..producers).step_by(cores.len()).collect();
        let mine_c: Vec<usize> = (slot..consumers).step_by(cores.len()).collect();
        let (options, produced, consumed) = (options.clone(), produced.clone(), consumed.clone());
        let finished = finished.clone();
        let placement = core.map_or(Placement::Unbound, Placement::Fixed);
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("bench-client-{slot}"))
            .io_memory(512 << 10)
            .spawn(move || async move {
                let options = Rc::new(options);
                let mut tasks = Vec::new();
                for index in mine_c {
                    let (o, s) = (options.clone(), consumed.clone());
                    tasks.push(glommio::spawn_local(consume(o, index, clock, s)));
                }
                for index in mine_p {
                    let (o, s) = (options.clone(), produced.clone());
                    tasks.push(glommio::spawn_local(produce(o, index, clock, s)));
                }
                let results = futures::future::join_all(tasks).await;
                finished.last_ns.fetch_max(clock.now_ns(), Ordering::AcqRel);
                finished.executors.fetch_add(1, Ordering::Release);
                results
                    .into_iter()
                    .collect::<Result<Vec<()>, String>>()
                    .map(|_| ())
            })
            .map_err(|e| format!("cannot start a client executor: {e}"))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Record values of one producer. Uncompressed: one random buffer (contents do not matter to
/// the broker). Compressed: windows at random offsets of a pool of random capital letters (as
/// Kafka's ProducerPerformance fills values), so records differ and compress like text rather
/// than as copies of one value.
struct Values {
    pool: Vec<u8>,
    shifting: bool,
    /// Where the last value was handed out and the 8 pool bytes its stamp covers.
    stamped: (usize, [u8; 8]),
}

impl Values {
    const POOL_EXTRA_BYTES: usize = 64 << 10;

    fn new(rng: &mut Rng, max_value: usize, compression: Compression) -> Values {
        let shifting = compression != Compression::None;
        let pool: Vec<u8> = if shifting {
            (0..max_value + Self::POOL_EXTRA_BYTES)
                .map(|_| b'A' + (rng.next() % 26) as u8)
                .collect()
        } else {
            (0..max_value).map(|_| rng.next() as u8).collect()
        };
        let stamped = (
            0,
            pool[..8].try_into().expect("values have 8 bytes or more"),
        );
        Values {
            pool,
            shifting,
            stamped,
        }
    }

    /// The next value of `size` bytes (the caller stamps its first 8 bytes; the pool bytes under
    /// the stamp are put back at the next call).
    fn next(&mut self, rng: &mut Rng, size: usize) -> &mut [u8] {
        let at = if self.shifting {
            (rng.next() % Self::POOL_EXTRA_BYTES as u64) as usize
        } else {
            0
        };
        let (last, saved) = self.stamped;
        self.pool[last..last + 8].copy_from_slice(&saved);
        self.stamped = (at, self.pool[at..at + 8].try_into().expect("8 bytes"));
        &mut self.pool[at..at + size]
    }
}

/// Retries of a produce request that failed with a retriable error, 50 ms apart.
const PRODUCE_RETRIES_MAX: usize = 600;

/// A partition's open batch: the builder and each record's intended send time.
struct OpenBatch {
    builder: BatchBuilder,
    opened_ns: u64,
    intended_ns: Vec<u64>,
    payload_bytes: u64,
}

/// One producer: generates records at its share of the rate, batches them per partition, and
/// keeps up to `in_flight_max` produce requests in flight.
async fn produce(
    options: Rc<Options>,
    index: usize,
    clock: Clock,
    stats: Arc<Stats>,
) -> Result<(), String> {
    let routes = Routes::connect(&options.brokers, &options.topic).await?;
    for partition in 0..routes.partition_count() {
        if let Some(leader) = routes.leader(partition) {
            routes.connection(&leader).await?;
        }
    }
    let partition_count = routes.partition_count() as u32;
    let mut partitioner = DefaultPartitioner::new(Keyless::Sticky {
        batch_bytes: options.batch_bytes,
    });
    // Producers start their sticky partition at different places, as Java's random pick does.
    for _ in 0..index % partition_count as usize {
        partitioner.partition(None, options.batch_bytes, partition_count);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1).wrapping_mul(0x2545_f491));
    let max_value = match options.record_bytes {
        RecordSize::Fixed(n) | RecordSize::Uniform(_, n) => n,
    };
    let mut values = Values::new(&mut rng, max_value, options.compression);
    let interval_ns = interval_ns(&options);
    let mut next_intended_ns = 0u64;
    let in_flight = Rc::new(Semaphore::new(options.in_flight_max as u64));
    let mut open: Vec<Option<OpenBatch>> = (0..partition_count).map(|_| None).collect();
    let linger_ns = options.linger_ms * 1_000_000;
    let mut key_buf = [0u8; 24];
    // Payload bytes this producer still sends under --total-bytes.
    let mut budget = options
        .total_bytes
        .map(|total| total.div_ceil(options.producers as u64));
    let stopped = || {
        options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Acquire))
    };
    loop {
        let now = clock.now_ns();
        if now >= clock.end_ns || stopped() {
            break;
        }
        // Records due now (fixed rate), or one more (unlimited: back-pressure is the semaphore).
        let due = match interval_ns {
            Some(interval) => {
                let mut due = 0;
                while next_intended_ns <= now && due < 10_000 {
                    due += 1;
                    next_intended_ns += interval;
                }
                due
            }
            None => 1,
        };
        let mut full: Vec<(usize, OpenBatch)> = Vec::new();
        for k in 0..due {
            if budget == Some(0) {
                break;
            }
            let intended = match interval_ns {
                Some(interval) => next_intended_ns - (due - k) * interval,
                None => now,
            };
            let size = match options.record_bytes {
                RecordSize::Fixed(n) => n,
                RecordSize::Uniform(a, b) => a + (rng.next() % (b - a + 1) as u64) as usize,
            };
            let key: Option<&[u8]> = match options.keys {
                Keys::None => None,
                Keys::Random => {
                    key_buf[..8].copy_from_slice(&rng.next().to_le_bytes());
                    key_buf[8..16].copy_from_slice(&rng.next().to_le_bytes());
                    Some(&key_buf[..16])
                }
                Keys::Distinct(n) => {
                    let len = {
                        use std::io::Write;
                        let mut cursor = std::io::Cursor::new(&mut key_buf[..]);
                        let _ = write!(cursor, "key-{}", rng.next() % n);
                        cursor.position() as usize
                    };
                    Some(&key_buf[..len])
                }
            };
            let key_len = key.map_or(0, <[u8]>::len);
            let partition = partitioner.partition(key, size + key_len, partition_count) as usize;
            let value = values.next(&mut rng, size);
            value[..8].copy_from_slice(&intended.to_le_bytes());
            // A batch closes when the next record would overflow it (as in the Java client).
            let record_bytes = BatchBuilder::record_bytes(0, key, size) + 8;
            if open[partition].as_ref().is_some_and(|b| {
                b.builder.record_count() > 0
                    && b.builder.len_bytes() + record_bytes > options.batch_bytes
            }) {
                full.extend(open[partition].take().map(|b| (partition, b)));
            }
            let batch = open[partition].get_or_insert_with(|| OpenBatch {
                builder: BatchBuilder::new(options.batch_bytes + 1024, unix_ms()),
                opened_ns: now,
                intended_ns: Vec::new(),
                payload_bytes: 0,
            });
            batch.builder.append(unix_ms(), key, value);
            batch.intended_ns.push(intended);
            batch.payload_bytes += (size + key_len) as u64;
            if let Some(left) = budget.as_mut() {
                *left = left.saturating_sub((size + key_len) as u64);
            }
            if batch.builder.len_bytes() >= options.batch_bytes {
                full.extend(open[partition].take().map(|b| (partition, b)));
            }
        }
        let mut ready = full;
        let exhausted = budget == Some(0);
        if ready.is_empty() || interval_ns.is_some() || exhausted {
            for (p, slot) in open.iter_mut().enumerate() {
                if slot
                    .as_ref()
                    .is_some_and(|b| exhausted || now.saturating_sub(b.opened_ns) >= linger_ns)
                {
                    ready.extend(slot.take().map(|b| (p, b)));
                }
            }
        }
        let sending = !ready.is_empty();
        if sending {
            send_ready(ready, &routes, &in_flight, &options, clock, &stats).await?;
        }
        if exhausted {
            break;
        }
        if !sending && (interval_ns.is_some() || open.iter().all(Option::is_none)) {
            // Sleep until the next record is due or the oldest batch's linger ends.
            let linger_end = open
                .iter()
                .flatten()
                .map(|b| b.opened_ns + linger_ns)
                .min()
                .unwrap_or(u64::MAX);
            let wake = next_intended_ns.min(linger_end).min(clock.end_ns);
            let now = clock.now_ns();
            if wake > now {
                glommio::timer::sleep(Duration::from_nanos(wake - now)).await;
            }
        }
    }
    // Wait for every request in flight.
    in_flight
        .acquire(options.in_flight_max as u64)
        .await
        .map_err(|e| format!("in-flight semaphore: {e}"))?;
    Ok(())
}

fn interval_ns(options: &Options) -> Option<u64> {
    let average_bytes = match options.record_bytes {
        RecordSize::Fixed(n) => n as f64,
        RecordSize::Uniform(a, b) => (a + b) as f64 / 2.0,
    };
    let per_producer = options.producers as f64;
    match options.rate {
        Rate::Unlimited => None,
        Rate::BytesPerS(b) => Some((1e9 * average_bytes * per_producer / b).max(1.0) as u64),
        Rate::RecordsPerS(r) => Some((1e9 * per_producer / r).max(1.0) as u64),
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seals the ready partitions' batches and sends one produce request per leader.
async fn send_ready(
    ready: Vec<(usize, OpenBatch)>,
    routes: &Rc<Routes>,
    in_flight: &Rc<Semaphore>,
    options: &Options,
    clock: Clock,
    stats: &Arc<Stats>,
) -> Result<(), String> {
    // Per leader: its address, its batches, intended send times, payload and batch bytes.
    type Request = (Option<String>, Vec<(i32, Bytes)>, Vec<u64>, u64, u64);
    let mut by_leader: Vec<Request> = Vec::new();
    for (p, batch) in ready {
        let leader = routes.leader(p);
        // As the Java client's sender: a request carries at most one batch of a partition, so
        // a producer that fell behind sends several requests (in order, on one connection)
        // instead of one request holding many batches of each partition.
        let slot = match by_leader.iter().position(|(l, batches, ..)| {
            *l == leader && batches.iter().all(|(q, _)| *q != p as i32)
        }) {
            Some(slot) => slot,
            None => {
                by_leader.push((leader, Vec::new(), Vec::new(), 0, 0));
                by_leader.len() - 1
            }
        };
        let entry = &mut by_leader[slot];
        let sealed = batch.builder.seal_compressed(options.compression);
        entry.4 += sealed.len() as u64;
        entry.1.push((p as i32, sealed));
        entry.2.extend(batch.intended_ns);
        entry.3 += batch.payload_bytes;
    }
    for (_, batches, intended, payload_bytes, batch_bytes) in by_leader {
        let ready_ns = clock.now_ns();
        let permit = in_flight
            .acquire_static_permit(1)
            .await
            .map_err(|e| format!("in-flight semaphore: {e}"))?;
        let sent_ns = clock.now_ns();
        let (routes, stats, acks) = (routes.clone(), stats.clone(), options.acks);
        let ack_log = options.ack_log.clone();
        glommio::spawn_local(async move {
            let result = client::produce_routed(
                &routes,
                acks,
                batches,
                PRODUCE_RETRIES_MAX,
                Duration::from_millis(50),
            )
            .await;
            let done = clock.now_ns();
            if let (Some(log), Ok(acknowledged)) = (&ack_log, &result) {
                let at = Instant::now();
                for (partition, broker) in acknowledged {
                    log.push(at, *partition, broker);
                }
            }
            match result.map(|_| ()) {
                Ok(()) if done >= clock.measure_from_ns && done <= clock.end_ns => {
                    stats.record_request(RequestTimes {
                        oldest_intended_ns: intended.iter().copied().min().unwrap_or(ready_ns),
                        ready_ns,
                        sent_ns,
                        answered_ns: done,
                    });
                    stats.record(
                        intended.len() as u64,
                        &intended,
                        done,
                        payload_bytes,
                        batch_bytes,
                    );
                }
                Ok(()) => stats.count_outside(payload_bytes),
                Err(e) => stats.error(e),
            }
            drop(permit);
        })
        .detach();
    }
    Ok(())
}

/// One consumer: fetches its share of the partitions (assigned, no group) from the earliest
/// offset (consume) or the end at start (e2e), until the end of the run. Consumer `index`
/// belongs to group `index / consumers`; every group reads every partition.
async fn consume(
    options: Rc<Options>,
    index: usize,
    clock: Clock,
    stats: Arc<Stats>,
) -> Result<(), String> {
    let client = Client::connect(&options.brokers).await?;
    let layout = client.topic_layout(&options.topic).await?;
    let mine: Vec<i32> = (index % options.consumers..layout.leaders.len())
        .step_by(options.consumers)
        .map(|p| p as i32)
        .collect();
    if mine.is_empty() {
        return Ok(());
    }
    // Every partition of one consumer on its leader; the bench targets single-leader setups
    // (one node) and fetches each leader's partitions in one request.
    let mut by_leader: Vec<(Connection, Vec<i32>)> = Vec::new();
    for &p in &mine {
        let connection = client.broker(&layout.leaders[p as usize]).await?;
        match by_leader
            .iter_mut()
            .find(|(c, _)| c.address() == connection.address())
        {
            Some((_, ps)) => ps.push(p),
            None => by_leader.push((connection, vec![p])),
        }
    }
    let start_at = if options.mode == Mode::E2e { -1 } else { -2 };
    let mut tasks = Vec::new();
    for (connection, partitions) in by_leader {
        let offsets =
            list_offsets_retrying(&connection, &options.topic, &partitions, start_at).await?;
        let ends = if options.to_end {
            Some(list_offsets_retrying(&connection, &options.topic, &partitions, -1).await?)
        } else {
            None
        };
        let (options, stats) = (options.clone(), stats.clone());
        tasks.push(glommio::spawn_local(async move {
            fetch_loop(&connection, &options, offsets, ends, clock, &stats).await
        }));
    }
    for result in futures::future::join_all(tasks).await {
        result?;
    }
    Ok(())
}

/// ListOffsets, retried while Kafka still elects the leaders of a new topic.
async fn list_offsets_retrying(
    connection: &Connection,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<Vec<(i32, i64)>, String> {
    let mut tries = 0;
    loop {
        match client::list_offsets(connection, topic, partitions, timestamp).await {
            Err(e) if e.starts_with(client::RETRIABLE) && tries < PRODUCE_RETRIES_MAX => {
                tries += 1;
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            result => return result,
        }
    }
}

async fn fetch_loop(
    connection: &Connection,
    options: &Options,
    mut offsets: Vec<(i32, i64)>,
    ends: Option<Vec<(i32, i64)>>,
    clock: Clock,
    stats: &Stats,
) -> Result<(), String> {
    let e2e = options.mode == Mode::E2e;
    let mut latencies: Vec<u64> = Vec::new();
    // Under --to-end: stop once every partition reached its end offset found at start.
    let at_end = |offsets: &[(i32, i64)]| {
        ends.as_ref().is_some_and(|ends| {
            offsets.iter().all(|(partition, offset)| {
                ends.iter()
                    .find(|(p, _)| p == partition)
                    .is_none_or(|(_, end)| offset >= end)
            })
        })
    };
    while clock.now_ns() < clock.end_ns && !at_end(&offsets) {
        let fetched = match client::fetch(connection, &options.topic, &offsets, 200, 1 << 20).await
        {
            Err(e) if e.starts_with(client::RETRIABLE) => {
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
            other => other?,
        };
        let done = clock.now_ns();
        let (mut payload, mut wire, mut records) = (0u64, 0u64, 0u64);
        latencies.clear();
        for part in fetched {
            let mut on_value = |v: &[u8]| {
                payload += v.len() as u64;
                if e2e && v.len() >= 8 {
                    latencies.push(u64::from_le_bytes(v[..8].try_into().expect("8 bytes")));
                }
            };
            let batches = walk_batches(&part.records, Some(&mut on_value))?;
            if let (Some(last), Some(slot)) = (
                batches.last(),
                offsets.iter_mut().find(|(p, _)| *p == part.partition),
            ) {
                slot.1 = last.next_offset;
            }
            wire += batches.iter().map(|b| b.total_bytes as u64).sum::<u64>();
            records += batches.iter().map(|b| b.record_count as u64).sum::<u64>();
        }
        if done >= clock.measure_from_ns && done <= clock.end_ns {
            if e2e {
                latencies.retain(|&sent| sent >= clock.measure_from_ns);
            }
            stats.record(records, &latencies, done, payload, wire);
        } else {
            stats.count_outside(payload);
        }
    }
    Ok(())
}

fn result_json(options: &Options, window_s: f64, produced: &Stats, consumed: &Stats) -> Value {
    let acks = match options.acks {
        -1 => "all".to_string(),
        n => n.to_string(),
    };
    let latency_from = match (options.mode, options.rate) {
        (Mode::E2e, _) => "intended send time to consumption (coordinated-omission corrected)",
        (_, Rate::Unlimited) => "record creation to acknowledgement (unlimited rate)",
        _ => "intended send time to acknowledgement (coordinated-omission corrected)",
    };
    let mut result = json!({
        "mode": format!("{:?}", options.mode).to_lowercase(),
        "settings": {
            "brokers": options.brokers, "topic": options.topic, "partitions": options.partitions,
            "record_bytes": format!("{:?}", options.record_bytes), "keys": format!("{:?}", options.keys),
            "acks": acks, "batch_bytes": options.batch_bytes, "linger_ms": options.linger_ms,
            "producers": options.producers, "consumers": options.consumers,
            "rate": format!("{:?}", options.rate), "duration_s": options.duration_s,
            "warmup_s": options.warmup_s, "in_flight_max": options.in_flight_max,
            "total_bytes": options.total_bytes, "to_end": options.to_end,
            "client_cores": options.client_cores, "compression": options.compression.name(),
            "client": "spate bench (glommio)",
        },
        "latency_from": latency_from,
        "window_s": window_s,
    });
    if options.consumer_groups != 1 {
        result["settings"]["consumer_groups"] = json!(options.consumer_groups);
    }
    // Said only when replicated, so single-node results keep their shape.
    if options.replication_factor != 1 {
        result["settings"]["replication_factor"] = json!(options.replication_factor);
        result["settings"]["topic_configs"] = json!(options
            .topic_configs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>());
    }
    if options.mode != Mode::Consume {
        result["produce"] = produced.json(window_s);
    }
    if options.mode != Mode::Produce {
        result["consume"] = consumed.json(window_s);
    }
    result
}

fn print_summary(options: &Options, result: &Value) {
    for side in ["produce", "consume"] {
        let Some(s) = result.get(side) else { continue };
        let l = &s["latency_us"];
        let label = if side == "consume" && options.mode == Mode::E2e {
            "consume (end-to-end latency)"
        } else {
            side
        };
        eprintln!(
            "{label}: {:.1} MB/s, {:.0} records/s over {:.1} s; latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} p99.99 {:.2} max {:.2} ({} samples)",
            s["mb_per_s"].as_f64().unwrap_or(0.0),
            s["records_per_s"].as_f64().unwrap_or(0.0),
            result["window_s"].as_f64().unwrap_or(options.duration_s),
            ms(&l["p50"]), ms(&l["p90"]), ms(&l["p99"]), ms(&l["p99.9"]), ms(&l["p99.99"]), ms(&l["max"]),
            l["count"]
        );
        if let Some(r) = s.get("request_us") {
            let p = |stage: &str, q: &str| ms(&r[stage][q]);
            eprintln!(
                "  {side} requests, ms p50/p99/p99.9: in the batch {:.2}/{:.2}/{:.2}, waiting for an in-flight slot {:.2}/{:.2}/{:.2}, round trip {:.2}/{:.2}/{:.2}",
                p("batch_wait", "p50"), p("batch_wait", "p99"), p("batch_wait", "p99.9"),
                p("in_flight_wait", "p50"), p("in_flight_wait", "p99"), p("in_flight_wait", "p99.9"),
                p("round_trip", "p50"), p("round_trip", "p99"), p("round_trip", "p99.9"),
            );
        }
    }
}

fn ms(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0) / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_parse() {
        let o = parse(
            Mode::Produce,
            &args("--acks all --rate 50MB/s --keys 100 --record-bytes 100-200 --partitions=3"),
        )
        .unwrap();
        assert_eq!(o.acks, -1);
        assert_eq!(o.rate, Rate::BytesPerS(50e6));
        assert_eq!(o.keys, Keys::Distinct(100));
        assert_eq!(o.record_bytes, RecordSize::Uniform(100, 200));
        assert_eq!(o.partitions, 3);
        assert_eq!(o.replication_factor, 1);
        assert_eq!(
            parse(Mode::Produce, &args("--replication-factor 3"))
                .unwrap()
                .replication_factor,
            3
        );
        assert!(parse(Mode::Produce, &args("--replication-factor 0")).is_err());
        assert_eq!(
            parse(Mode::Produce, &args("--rate 1000rec/s"))
                .unwrap()
                .rate,
            Rate::RecordsPerS(1000.0)
        );
        assert!(parse(Mode::Produce, &args("--acks 2")).is_err());
        assert!(parse(Mode::Produce, &args("--record-bytes 4")).is_err());
        assert!(parse(Mode::E2e, &args("--acks 0")).is_err());
        assert!(parse(Mode::Produce, &args("--bogus")).is_err());
    }

    #[test]
    fn compression_and_bounded_run_options_parse() {
        let o = parse(
            Mode::Produce,
            &args("--compression zstd --total-bytes 5000 --duration-s 30"),
        )
        .unwrap();
        assert_eq!(o.compression, Compression::Zstd);
        assert_eq!(o.total_bytes, Some(5000));
        assert!(parse(Mode::Consume, &args("--to-end")).unwrap().to_end);
        assert!(parse(Mode::Produce, &args("--compression brotli")).is_err());
        assert_eq!(
            parse(Mode::Produce, &[]).unwrap().compression,
            Compression::None
        );
    }

    #[test]
    fn compressible_values_are_letters_under_their_stamps() {
        let mut rng = Rng(7);
        let mut values = Values::new(&mut rng, 100, Compression::Lz4);
        let mut starts = std::collections::HashSet::new();
        for i in 0..10_000u64 {
            let value = values.next(&mut rng, 100);
            assert!(value.iter().all(u8::is_ascii_uppercase), "value {i}");
            starts.insert(value[8..16].to_vec());
            value[..8].copy_from_slice(&i.to_le_bytes());
        }
        // Values start at shifting offsets: records differ.
        assert!(starts.len() > 1000);
        let mut plain = Values::new(&mut rng, 100, Compression::None);
        assert_eq!(plain.next(&mut rng, 50).len(), 50);
    }

    #[test]
    fn the_ack_log_finds_the_first_answer_of_a_new_leader() {
        let log = AckLog::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        log.push(at(10), 0, "old:1");
        log.push(at(20), 1, "other:2");
        log.push(at(500), 0, "new:3");
        log.push(at(400), 0, "new:3");
        assert_eq!(log.first_after(at(15), 0, "old:1"), Some(at(400)));
        assert_eq!(log.first_after(at(15), 2, "old:1"), None);
        assert_eq!(log.last_by("old:1", at(15)), Some(at(10)));
        assert_eq!(log.last_by("old:1", at(5)), None);
    }

    #[test]
    fn fixed_rates_become_per_producer_intervals() {
        let mut o = parse(
            Mode::Produce,
            &args("--rate 1MB/s --record-bytes 1000 --producers 2"),
        )
        .unwrap();
        assert_eq!(interval_ns(&o), Some(2_000_000));
        o.rate = Rate::Unlimited;
        assert_eq!(interval_ns(&o), None);
    }
}
