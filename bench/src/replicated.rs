//! The replicated workloads of `spate bench compare` (r1-r4): three Spate nodes against three
//! Kafka nodes (KRaft, every node broker and controller) on this machine, all pinned to the
//! broker cores, one topic of 8 partitions with 3 replicas and `min.insync.replicas=2`,
//! acks=all, the same load generator for both. r1: throughput at an unlimited rate; r2:
//! latency at a fixed rate both sustain; r3: failover time after kill -9 of a partition
//! leader under a steady producer; r4: a follower stopped (SIGSTOP, or kill -9 with
//! `--follower-stop kill`) while `--follower-catch-up-gib` is written, resumed (restarted),
//! timed until it is back in every partition's ISR. Broker CPU, disk
//! writes and peak RSS are summed over the three nodes.

use crate::client;
use crate::compare::{find_child, free_ports, per_gb, sample_pid, Broker, CompareOptions, Sample};
use crate::workload::{self, AckLog, Options, Rate};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Nodes of each system.
pub const NODES: u32 = 3;
/// Topic settings of every replicated workload (both systems).
pub const REPLICATION_FACTOR: i16 = 3;
pub const MIN_INSYNC_REPLICAS: &str = "2";
/// r3's producer rate: steady and modest, far below either system's maximum.
pub const FAILOVER_RATE_MB_S: f64 = 5.0;
/// How long a node has to print its ready line (a JVM on a busy machine is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound of the waits on the cluster's state (ISR shrink, failover, ISR expansion).
const STATE_TIMEOUT: Duration = Duration::from_secs(180);

/// What a replicated workload measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Throughput,
    FixedRate,
    Failover,
    CatchUp,
}

/// Settings every node of a system gets (Kafka's cluster mode of bench/peers/kafka sets the
/// same replication settings in its server.properties).
pub fn node_settings(broker: Broker) -> Vec<String> {
    match broker {
        Broker::Spate => vec![format!("min.insync.replicas={MIN_INSYNC_REPLICAS}")],
        Broker::Kafka => vec![],
    }
}

/// Kafka's 16-byte cluster id as its tools print it: URL-safe base64 without padding.
pub fn kafka_cluster_id(bytes: [u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut held = 0;
    let mut out = String::with_capacity(22);
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        held += 8;
        while held >= 6 {
            held -= 6;
            out.push(ALPHABET[((bits >> held) & 63) as usize] as char);
        }
    }
    if held > 0 {
        out.push(ALPHABET[((bits << (6 - held)) & 63) as usize] as char);
    }
    out
}

fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    // Never the nil id (Kafka refuses it), whatever /dev/urandom did.
    bytes[0] |= 1;
    bytes
}

/// A random cluster id that does not start with '-' (which the storage tool's command line
/// would take for an option; Kafka's own Uuid.randomUuid draws again in that case too).
fn random_cluster_id() -> String {
    loop {
        let id = kafka_cluster_id(random_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// How r4 takes its follower down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowerStop {
    /// SIGSTOP, then SIGCONT: the catch-up alone is timed.
    Pause,
    /// kill -9, then a restart on its data dir: recovery and start-up are in the time too.
    Kill,
}

impl FollowerStop {
    pub fn parse(v: &str) -> Result<FollowerStop, String> {
        match v {
            "pause" | "sigstop" => Ok(FollowerStop::Pause),
            "kill" => Ok(FollowerStop::Kill),
            other => Err(format!("--follower-stop: pause or kill, not '{other}'")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FollowerStop::Pause => "pause",
            FollowerStop::Kill => "kill",
        }
    }
}

/// One node of a cluster under test.
struct Node {
    id: u32,
    address: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    /// The process doing the work (for Kafka, the JVM under the peer script).
    pid: u32,
}

/// Three nodes of one system on loopback, every one broker and controller, all pinned to the
/// same cores. Stopped (and its files removed) on drop.
pub struct Cluster {
    broker: Broker,
    nodes: Vec<Node>,
    dir: PathBuf,
    root: PathBuf,
    cores: String,
    settings: Vec<String>,
    voters: String,
    cluster_id: String,
    /// Exec of the first node to the last node's ready line.
    pub ready_s: f64,
}

impl Cluster {
    pub fn start(
        root: &Path,
        work: &Path,
        broker: Broker,
        cores: &str,
        settings: &[String],
    ) -> Result<Cluster, String> {
        // A Kafka node refuses a listener port equal to its controller port: all distinct.
        let ports = free_ports(2 * NODES as usize)?;
        let (voter_ports, listen_ports) = ports.split_at(NODES as usize);
        let mut nodes = Vec::new();
        let dir = work.join(format!("{}-cluster-{}", broker.name(), listen_ports[0]));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (id, port) in (1..=NODES).zip(listen_ports) {
            nodes.push(Node {
                id,
                address: format!("127.0.0.1:{port}"),
                data_dir: dir.join(format!("node-{id}")),
                log_path: dir.join(format!("node-{id}.log")),
                child: None,
                pid: 0,
            });
        }
        let voters = voter_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            broker,
            nodes,
            dir,
            root: root.to_path_buf(),
            cores: cores.to_string(),
            settings: settings.to_vec(),
            voters,
            cluster_id: random_cluster_id(),
            ready_s: 0.0,
        };
        let started = Instant::now();
        // Every node waits for a quorum of the others: start them all, then wait.
        let mut waits = Vec::new();
        for i in 0..cluster.nodes.len() {
            waits.push(cluster.spawn(i)?);
        }
        for (i, ready) in waits.into_iter().enumerate() {
            let deadline = READY_TIMEOUT.saturating_sub(started.elapsed());
            if ready.recv_timeout(deadline).is_err() {
                return Err(format!(
                    "{} node {} did not become ready: {}",
                    broker.name(),
                    i + 1,
                    cluster.log_tail(i)
                ));
            }
            cluster.find_worker(i)?;
        }
        cluster.ready_s = started.elapsed().as_secs_f64();
        cluster.wait_for_brokers()?;
        Ok(cluster)
    }

    /// Starts node `i` (again, on its data dir); the receiver hears its ready line.
    fn spawn(&mut self, i: usize) -> Result<mpsc::Receiver<()>, String> {
        let node = &self.nodes[i];
        std::fs::create_dir_all(&node.data_dir)
            .map_err(|e| format!("{}: {e}", node.data_dir.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(|e| format!("{}: {e}", node.log_path.display()))?;
        let mut command = Command::new("taskset");
        command.arg("-c").arg(&self.cores);
        match self.broker {
            Broker::Spate => {
                let exe = std::env::current_exe().map_err(|e| format!("own binary: {e}"))?;
                command
                    .arg(exe)
                    .arg("start")
                    .arg("--node-id")
                    .arg(node.id.to_string())
                    .arg("--controller-quorum")
                    .arg(&self.voters)
                    .arg("--admin-listen")
                    .arg("none")
                    .arg("--cores")
                    .arg(self.cores.split(',').count().to_string());
            }
            Broker::Kafka => {
                command
                    .arg(self.root.join("bench/peers/kafka"))
                    .arg("start")
                    .arg("--node-id")
                    .arg(node.id.to_string())
                    .arg("--voters")
                    .arg(&self.voters)
                    .arg("--cluster-id")
                    .arg(&self.cluster_id);
            }
        }
        command
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--listen")
            .arg(&node.address);
        for s in &self.settings {
            command.arg("--set").arg(s);
        }
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let stderr = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {} node {}: {e}", self.broker.name(), node.id))?;
        let stdout = child.stdout.take().expect("piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log = log;
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                if !sent && line.contains("ready") {
                    let _ = ready_tx.send(());
                    sent = true;
                }
            }
        });
        let node = &mut self.nodes[i];
        node.pid = child.id();
        node.child = Some(child);
        Ok(ready_rx)
    }

    /// For Kafka, the JVM under the peer script is the process to sample and to kill.
    fn find_worker(&mut self, i: usize) -> Result<(), String> {
        if self.broker == Broker::Kafka {
            let script = self.nodes[i].child.as_ref().map_or(0, Child::id);
            self.nodes[i].pid = find_child(script, "java")
                .ok_or("cannot find the Kafka JVM under bench/peers/kafka")?;
        }
        Ok(())
    }

    fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[i].log_path).unwrap_or_default();
        let mut tail: Vec<&str> = text.lines().rev().take(8).collect();
        tail.reverse();
        tail.join(" | ")
    }

    /// Waits until Metadata lists every node as a broker (a replication factor of 3 needs
    /// three registered brokers).
    fn wait_for_brokers(&self) -> Result<(), String> {
        let deadline = Instant::now() + STATE_TIMEOUT;
        loop {
            let listed = workload::ask(
                &self.bootstrap(),
                |c| async move { client::brokers(&c).await },
            );
            match listed {
                Ok(b) if b.len() >= self.nodes.len() => return Ok(()),
                other if Instant::now() > deadline => {
                    return Err(format!("not every node is a broker: {other:?}"))
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Every node's address, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.bootstrap_without(0)
    }

    /// The addresses of every node but `id`.
    pub fn bootstrap_without(&self, id: u32) -> String {
        self.nodes
            .iter()
            .filter(|n| n.id != id)
            .map(|n| n.address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node(&self, id: u32) -> Result<usize, String> {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .ok_or_else(|| format!("no node {id}"))
    }

    pub fn address(&self, id: u32) -> String {
        self.node(id)
            .map_or(String::new(), |i| self.nodes[i].address.clone())
    }

    /// /proc samples of every running node, by node id.
    pub fn samples(&self) -> Vec<(u32, Sample)> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| (n.id, sample_pid(n.pid)))
            .collect()
    }

    /// kill -9 of node `id`'s worker process (the JVM for Kafka), reaped.
    pub fn kill(&mut self, id: u32) -> Result<(), String> {
        let i = self.node(id)?;
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            // SAFETY: a signal to our own child (or its JVM), still running or unreaped.
            unsafe { libc::kill(node.pid as i32, libc::SIGKILL) };
            // SAFETY: as above, the rest of the node's process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
        wait_gone(node.pid);
        Ok(())
    }

    /// SIGSTOP (`stop`) or SIGCONT of node `id`'s process group: a paused node keeps its
    /// sockets and answers nothing.
    pub fn pause(&mut self, id: u32, stop: bool) -> Result<(), String> {
        let i = self.node(id)?;
        let child = self.nodes[i].child.as_ref().ok_or("node not running")?;
        let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: a signal to our own child's process group.
        if unsafe { libc::kill(-(child.id() as i32), signal) } != 0 {
            return Err(format!(
                "signal {signal} to node {id}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// Starts node `id` again on its data dir; returns the seconds from exec to its ready line.
    pub fn restart(&mut self, id: u32) -> Result<f64, String> {
        let i = self.node(id)?;
        let started = Instant::now();
        let ready = self.spawn(i)?;
        if ready.recv_timeout(READY_TIMEOUT).is_err() {
            return Err(format!(
                "{} node {id} did not become ready after its restart: {}",
                self.broker.name(),
                self.log_tail(i)
            ));
        }
        self.find_worker(i)?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// Stops every node (SIGTERM, SIGKILL after 15 s) and removes the cluster's files.
    pub fn stop(&mut self) {
        for node in &self.nodes {
            if let Some(child) = &node.child {
                let group = child.id() as i32;
                // SAFETY: signals to our own children's process groups.
                unsafe {
                    libc::kill(-group, libc::SIGCONT);
                    libc::kill(-group, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) => break,
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        _ => {
                            // SAFETY: as above.
                            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                            let _ = child.wait();
                            break;
                        }
                    }
                }
                // A JVM may outlive its script by a moment.
                if !wait_gone(node.pid) {
                    // SAFETY: our child's JVM.
                    unsafe { libc::kill(node.pid as i32, libc::SIGKILL) };
                    wait_gone(node.pid);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits up to 10 s for a process to exit; whether it did.
fn wait_gone(pid: u32) -> bool {
    for _ in 0..200 {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its parent (the JVM's script reaps it).
        if state.is_empty()
            || state
                .rsplit_once(')')
                .is_some_and(|s| s.1.starts_with(" Z"))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Creates the workload's topic (RF 3, `min.insync.replicas=2`) and waits until every
/// partition has a leader and all three replicas in its ISR.
pub(crate) fn create_topic(options: &Options) -> Result<(), String> {
    workload::ensure_topic(options)?;
    wait_state(
        &options.brokers,
        &options.topic,
        "a full ISR everywhere",
        |s| {
            s.partitions
                .iter()
                .all(|p| p.leader_id >= 0 && p.isr.len() == NODES as usize)
        },
    )
    .map(|_| ())
}

/// Polls the topic's Metadata every 100 ms until `ready` holds; returns the state then.
fn wait_state(
    brokers: &str,
    topic: &str,
    what: &str,
    ready: impl Fn(&client::TopicState) -> bool,
) -> Result<client::TopicState, String> {
    let deadline = Instant::now() + STATE_TIMEOUT;
    let mut last;
    loop {
        match workload::topic_state(brokers, topic) {
            Ok(state) if ready(&state) => return Ok(state),
            Ok(state) => last = format!("{:?}", state.partitions),
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{topic}: not within {STATE_TIMEOUT:?}: {what} (last: {last})"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Per-node and summed CPU, run-queue wait, disk writes and peak RSS between two samples.
fn node_usage(before: &[(u32, Sample)], after: &[(u32, Sample)]) -> (Value, Sample) {
    let mut total = Sample::default();
    let mut nodes = Vec::new();
    for (id, a) in after {
        let Some((_, b)) = before.iter().find(|(i, _)| i == id) else {
            continue;
        };
        let cpu_s = a.cpu_s - b.cpu_s;
        let disk = a.disk_write_bytes.saturating_sub(b.disk_write_bytes);
        total.cpu_s += cpu_s;
        total.runqueue_wait_s += a.runqueue_wait_s - b.runqueue_wait_s;
        total.disk_write_bytes += disk;
        total.peak_rss_kib += a.peak_rss_kib;
        nodes.push(json!({
            "node": id, "cpu_s": cpu_s, "disk_write_bytes": disk,
            "peak_rss_mib": a.peak_rss_kib as f64 / 1024.0,
        }));
    }
    (Value::Array(nodes), total)
}

/// One replicated workload on one system: a fresh 3-node cluster, the measurement, the
/// cluster stopped and its files removed whatever happened.
#[allow(clippy::too_many_arguments)]
pub fn run_one(
    o: &CompareOptions,
    root: &Path,
    work: &Path,
    broker: Broker,
    id: &str,
    what: &str,
    kind: Kind,
    extra_settings: &[&str],
    options: &Options,
) -> Result<Value, String> {
    let mut settings = node_settings(broker);
    settings.extend(extra_settings.iter().map(|s| s.to_string()));
    let mut cluster = Cluster::start(root, work, broker, &o.broker_cores, &settings)?;
    let mut options = options.clone();
    options.brokers = cluster.bootstrap();
    create_topic(&options)?;
    let mut run = json!({
        "workload": id, "what": what, "broker": broker.name(), "nodes": NODES,
        "broker_settings": settings, "ready_s": cluster.ready_s,
    });
    match kind {
        Kind::Throughput | Kind::FixedRate => {
            let before = cluster.samples();
            let started = Instant::now();
            let result = workload::run(&options)?;
            let wall_s = started.elapsed().as_secs_f64();
            let (nodes, total) = node_usage(&before, &cluster.samples());
            let bytes = result["produce"]["run_payload_bytes"]
                .as_f64()
                .unwrap_or(0.0);
            run["result"] = result;
            run["workload_wall_s"] = json!(wall_s);
            run["node_usage"] = nodes;
            run["broker_cpu_s"] = json!(total.cpu_s);
            run["broker_cpu_s_per_gb"] = json!(per_gb(total.cpu_s, bytes));
            run["broker_runqueue_wait_s"] = json!(total.runqueue_wait_s);
            run["broker_disk_write_bytes"] = json!(total.disk_write_bytes);
            run["broker_peak_rss_mib"] = json!(total.peak_rss_kib as f64 / 1024.0);
        }
        Kind::Failover => failover(o, &mut cluster, &options, &mut run)?,
        Kind::CatchUp => catch_up(o, &mut cluster, &options, &mut run)?,
    }
    cluster.stop();
    eprintln!(
        "compare:   {id} {}: {:.1} MB/s, p99 {:.2} ms, CPU {:.2} s/GB (3 nodes){}",
        broker.name(),
        run["result"]["produce"]["mb_per_s"].as_f64().unwrap_or(0.0),
        run["result"]["produce"]["latency_us"]["p99"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e3,
        run["broker_cpu_s_per_gb"].as_f64().unwrap_or(f64::NAN),
        match kind {
            Kind::Failover => format!(
                ", failover {:.2} s (all partitions {:.2} s)",
                run["failover"]["first_ack_s"].as_f64().unwrap_or(f64::NAN),
                run["failover"]["all_partitions_s"]
                    .as_f64()
                    .unwrap_or(f64::NAN)
            ),
            Kind::CatchUp => format!(
                ", follower ({}) back in every ISR after {:.2} s ({:.1} MB/s)",
                o.follower_stop.name(),
                run["catch_up"]["back_to_isr_s"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
                run["catch_up"]["mb_per_s"].as_f64().unwrap_or(f64::NAN),
            ),
            _ => String::new(),
        }
    );
    Ok(run)
}

/// r3: a producer at a steady modest rate; kill -9 of a partition's leader (one that is not the
/// active controller, so both systems fail over the data path alone); time from the kill to
/// the first acks=all answer by the partition's new leader, and to the last of the partitions
/// the killed node led.
fn failover(
    o: &CompareOptions,
    cluster: &mut Cluster,
    options: &Options,
    run: &mut Value,
) -> Result<(), String> {
    let acks = Arc::new(AckLog::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut producing = options.clone();
    producing.ack_log = Some(acks.clone());
    producing.stop = Some(stop.clone());
    let producer = std::thread::spawn(move || workload::run(&producing));
    // Whatever happens below, the producer is stopped and joined before the cluster goes.
    let measured = kill_a_leader(o, cluster, options, &acks);
    if measured.is_ok() {
        // A little steady state on the survivors, then the producer stops.
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, Ordering::Release);
    let result = producer
        .join()
        .map_err(|_| "the failover producer panicked".to_string())?;
    let mut failover = measured?;
    run["result"] = result?;
    let first = failover["first_ack_s"].as_f64();
    failover["new_leader"] = json!(workload::topic_state(
        &cluster.bootstrap_without(num_u32(&failover["killed_node"])),
        &options.topic
    )
    .ok()
    .and_then(|s| s
        .partitions
        .iter()
        .find(|p| Some(p.partition as u64) == failover["partition"].as_u64())
        .map(|p| p.leader_id)));
    run["failover"] = failover;
    if first.is_none() {
        return Err(format!(
            "no acknowledgement from a new leader within {STATE_TIMEOUT:?} of the kill"
        ));
    }
    Ok(())
}

fn num_u32(v: &Value) -> u32 {
    v.as_u64().unwrap_or(0) as u32
}

/// r3's measurement while the producer runs: the victim chosen, killed, and the acks watched.
fn kill_a_leader(
    o: &CompareOptions,
    cluster: &mut Cluster,
    options: &Options,
    acks: &AckLog,
) -> Result<Value, String> {
    // Steady state first: the warm-up and a few seconds measured.
    std::thread::sleep(Duration::from_secs_f64(
        options.warmup_s + if o.quick { 2.0 } else { 4.0 },
    ));
    let state = workload::topic_state(&cluster.bootstrap(), &options.topic)?;
    let controller = workload::ask(&cluster.bootstrap(), |c| async move {
        client::active_controller(&c).await
    })
    .ok();
    let victim = state
        .partitions
        .iter()
        .find(|p| p.leader_id >= 0 && Some(p.leader_id) != controller)
        .or(state.partitions.first())
        .ok_or("no partition")?;
    let (partition, killed) = (victim.partition, victim.leader_id);
    let led: Vec<i32> = state
        .partitions
        .iter()
        .filter(|p| p.leader_id == killed)
        .map(|p| p.partition)
        .collect();
    let killed_address = cluster.address(killed as u32);
    let last_ack = acks.last_by(&killed_address, Instant::now());
    let killed_at = Instant::now();
    cluster.kill(killed as u32)?;
    let deadline = killed_at + STATE_TIMEOUT;
    let firsts = loop {
        let firsts: Vec<Option<Instant>> = led
            .iter()
            .map(|p| acks.first_after(killed_at, *p, &killed_address))
            .collect();
        if firsts.iter().all(Option::is_some) || Instant::now() > deadline {
            break firsts;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let since_kill = |at: Option<Instant>| at.map(|at| (at - killed_at).as_secs_f64());
    let first = led
        .iter()
        .position(|p| *p == partition)
        .and_then(|i| firsts[i]);
    let all = if firsts.iter().all(Option::is_some) {
        firsts.iter().flatten().max().copied()
    } else {
        None
    };
    Ok(json!({
        "partition": partition,
        "killed_node": killed,
        "active_controller": controller,
        "partitions_led_by_killed_node": led,
        "first_ack_s": since_kill(first),
        "all_partitions_s": since_kill(all),
        "last_ack_by_killed_node_before_kill_s": last_ack.map(|at| (killed_at - at).as_secs_f64()),
        "rate_mb_s": FAILOVER_RATE_MB_S,
        "how": "kill -9 of the partition's leader (not the active controller) under a producer at a fixed rate; \
                time from the kill to the first acks=all answer for that partition by another broker; the load \
                generator asks for Metadata again after NOT_LEADER_OR_FOLLOWER or a lost connection and retries \
                every 50 ms",
    }))
}

/// r4: a follower taken down (SIGSTOP, or kill -9), waited out of every ISR, the bytes
/// written with acks=all to the two left, the follower resumed (or restarted): time until it
/// is back in every partition's ISR.
fn catch_up(
    o: &CompareOptions,
    cluster: &mut Cluster,
    options: &Options,
    run: &mut Value,
) -> Result<(), String> {
    // The node that leads the fewest partitions; node 3 on a tie.
    let state = workload::topic_state(&cluster.bootstrap(), &options.topic)?;
    let follower = (1..=NODES)
        .rev()
        .min_by_key(|id| {
            state
                .partitions
                .iter()
                .filter(|p| p.leader_id == *id as i32)
                .count()
        })
        .unwrap_or(NODES);
    let survivors = cluster.bootstrap_without(follower);
    let stopped_at = Instant::now();
    match o.follower_stop {
        FollowerStop::Pause => cluster.pause(follower, true)?,
        FollowerStop::Kill => cluster.kill(follower)?,
    }
    wait_state(
        &survivors,
        &options.topic,
        "the stopped follower out of every ISR",
        |s| {
            s.partitions
                .iter()
                .all(|p| p.leader_id >= 0 && !p.isr.contains(&(follower as i32)))
        },
    )?;
    let out_of_isr_s = stopped_at.elapsed().as_secs_f64();
    let mut writing = options.clone();
    writing.brokers = survivors.clone();
    let before = cluster.samples();
    let result = workload::run(&writing)?;
    let (nodes, total) = node_usage(&before, &cluster.samples());
    let bytes = result["produce"]["run_payload_bytes"]
        .as_f64()
        .unwrap_or(0.0);
    let back_at = Instant::now();
    let restart_to_ready_s = match o.follower_stop {
        FollowerStop::Pause => {
            cluster.pause(follower, false)?;
            None
        }
        FollowerStop::Kill => Some(cluster.restart(follower)?),
    };
    let follower_before: Vec<_> = cluster
        .samples()
        .into_iter()
        .filter(|(id, _)| *id == follower)
        .collect();
    let ready_at = Instant::now();
    wait_state(
        &survivors,
        &options.topic,
        "the follower back in every ISR",
        |s| {
            s.partitions
                .iter()
                .all(|p| p.isr.contains(&(follower as i32)))
        },
    )?;
    let back_to_isr_s = back_at.elapsed().as_secs_f64();
    let ready_to_isr_s = ready_at.elapsed().as_secs_f64();
    let (follower_usage, _) = node_usage(&follower_before, &cluster.samples());
    run["result"] = result;
    run["node_usage"] = nodes;
    run["broker_cpu_s"] = json!(total.cpu_s);
    run["broker_cpu_s_per_gb"] = json!(per_gb(total.cpu_s, bytes));
    run["broker_disk_write_bytes"] = json!(total.disk_write_bytes);
    run["catch_up"] = json!({
        "follower": follower,
        "stopped_with": match o.follower_stop {
            FollowerStop::Pause => "SIGSTOP, resumed with SIGCONT",
            FollowerStop::Kill => "kill -9, restarted on its data dir",
        },
        "payload_bytes_behind": bytes,
        "stop_to_out_of_isr_s": out_of_isr_s,
        "restart_to_ready_s": restart_to_ready_s,
        // From SIGCONT, or from the restart's exec (start-up and recovery included).
        "back_to_isr_s": back_to_isr_s,
        // From SIGCONT, or from the restarted node's ready line.
        "ready_to_isr_s": ready_to_isr_s,
        "mb_per_s": bytes / back_to_isr_s.max(1e-3) / 1e6,
        "follower_usage": follower_usage,
        "how": "the node leading the fewest partitions stopped; once it is out of every ISR, the bytes are \
                written with acks=all to the two left; then it is resumed (or restarted on its data dir): time \
                until it is in every partition's ISR (Metadata polled every 100 ms); MB/s is the payload written \
                while it was down over that time",
    });
    Ok(())
}

/// The options of the replicated workloads, from the single-node base options.
pub fn options(base: &Options, kind: Kind, catch_up_gib: f64) -> Options {
    let mut o = Options {
        acks: -1,
        replication_factor: REPLICATION_FACTOR,
        topic_configs: vec![("min.insync.replicas".into(), MIN_INSYNC_REPLICAS.into())],
        ..base.clone()
    };
    match kind {
        Kind::Throughput | Kind::FixedRate => {}
        Kind::Failover => {
            o.rate = Rate::BytesPerS(FAILOVER_RATE_MB_S * 1e6);
            o.warmup_s = 1.0;
            // A bound: the run stops 2 s after the failover.
            o.duration_s = 600.0;
        }
        Kind::CatchUp => {
            o.total_bytes = Some((catch_up_gib * (1u64 << 30) as f64) as u64);
            o.warmup_s = 0.0;
            o.duration_s = 900.0;
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_cluster_ids_are_url_safe_base64_without_padding() {
        // Kafka's Uuid.toString of these bytes (java.util.Base64 URL encoder, no padding).
        assert_eq!(kafka_cluster_id([0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(kafka_cluster_id([0xff; 16]), "_____________________w");
        let id = random_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(!id.starts_with('-'));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn follower_stop_modes_parse() {
        assert_eq!(FollowerStop::parse("pause"), Ok(FollowerStop::Pause));
        assert_eq!(FollowerStop::parse("kill"), Ok(FollowerStop::Kill));
        assert!(FollowerStop::parse("term").is_err());
    }

    #[test]
    fn replicated_options_are_rf3_acks_all() {
        let base = Options::default();
        let o = options(&base, Kind::Throughput, 1.0);
        assert_eq!((o.acks, o.replication_factor), (-1, 3));
        assert_eq!(
            o.topic_configs,
            [("min.insync.replicas".to_string(), "2".to_string())]
        );
        assert_eq!(
            options(&base, Kind::Failover, 1.0).rate,
            Rate::BytesPerS(5e6)
        );
        assert_eq!(
            options(&base, Kind::CatchUp, 0.5).total_bytes,
            Some(1 << 29)
        );
    }
}
