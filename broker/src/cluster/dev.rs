//! `spate dev-cluster`: a local multi-node cluster for trying things out. It starts N combined
//! (broker and controller) nodes of this same binary on loopback ports, each with its own data
//! dir and log file, prints their addresses once every node is ready, and stops them all
//! cleanly on SIGINT or SIGTERM.
//!
//! ```text
//! spate dev-cluster [--nodes 3] [--data-dir ./spate-dev-cluster] [--base-port 9092]
//!                   [--cores 1] [--set NAME=VALUE]...
//! ```
//! Node i (1-based) listens for Kafka clients on `base-port + i - 1` and for its voters on
//! `base-port + 100 + i - 1`; its data dir is `DIR/node-i` and its log `DIR/node-i.log`.

use spate_bench::flags::Flags;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub const USAGE: &str = "\
spate dev-cluster: N combined broker+controller nodes on loopback, for trying things out

Usage:
  spate dev-cluster [--nodes N] [--data-dir DIR] [--base-port P] [--cores C] [--set NAME=VALUE]...

  --nodes N        1, 3 or 5 nodes, every one a voter (default 3)
  --data-dir DIR   node i keeps its data in DIR/node-i and logs to DIR/node-i.log
                   (default ./spate-dev-cluster)
  --base-port P    node i serves Kafka on P+i-1 and its voter on P+100+i-1 (default 9092)
  --cores C        shards per node (default 1)
  --set NAME=VALUE a broker setting for every node (repeatable)

Ctrl-C (SIGINT) or SIGTERM stops every node cleanly.
";

/// How long every node has to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node has to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, PartialEq, Eq)]
struct DevCluster {
    nodes: u16,
    data_dir: PathBuf,
    base_port: u16,
    cores: u16,
    settings: Vec<String>,
}

impl DevCluster {
    fn parse(args: &[String]) -> Result<DevCluster, String> {
        let mut cluster = DevCluster {
            nodes: 3,
            data_dir: PathBuf::from("spate-dev-cluster"),
            base_port: 9092,
            cores: 1,
            settings: Vec::new(),
        };
        let mut args = Flags::new(args);
        while let Some(flag) = args.next_flag() {
            match flag.as_str() {
                "--nodes" => cluster.nodes = number(&flag, &args.value()?)?,
                "--data-dir" => cluster.data_dir = PathBuf::from(args.value()?),
                "--base-port" => cluster.base_port = number(&flag, &args.value()?)?,
                "--cores" => cluster.cores = number(&flag, &args.value()?)?,
                "--set" => cluster.settings.push(args.value()?),
                "--help" | "-h" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("dev-cluster: unknown option '{other}'")),
            }
        }
        if ![1, 3, 5].contains(&cluster.nodes) {
            return Err(format!(
                "dev-cluster: --nodes must be 1, 3 or 5 (every node is a voter of the \
                 controller quorum), got {}",
                cluster.nodes
            ));
        }
        if cluster.cores == 0 {
            return Err("dev-cluster: --cores must be at least 1".into());
        }
        let highest = u32::from(cluster.base_port) + 100 + u32::from(cluster.nodes);
        if cluster.base_port == 0 || highest > u32::from(u16::MAX) {
            return Err(format!(
                "dev-cluster: --base-port {} leaves no room for {} nodes",
                cluster.base_port, cluster.nodes
            ));
        }
        Ok(cluster)
    }

    fn kafka_address(&self, node: u16) -> String {
        format!("127.0.0.1:{}", self.base_port + node - 1)
    }

    fn quorum(&self) -> String {
        (1..=self.nodes)
            .map(|i| format!("{i}@127.0.0.1:{}", self.base_port + 100 + i - 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `spate start` arguments of node `node`.
    fn start_args(&self, node: u16) -> Vec<String> {
        let mut args: Vec<String> = [
            "start",
            "--node-id",
            &node.to_string(),
            "--controller-quorum",
            &self.quorum(),
            "--listen",
            &self.kafka_address(node),
            "--admin-listen",
            "none",
            "--cores",
            &self.cores.to_string(),
            "--data-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(self.node_dir(node).display().to_string());
        for setting in &self.settings {
            args.extend(["--set".to_string(), setting.clone()]);
        }
        args
    }

    fn node_dir(&self, node: u16) -> PathBuf {
        self.data_dir.join(format!("node-{node}"))
    }

    fn log_path(&self, node: u16) -> PathBuf {
        self.data_dir.join(format!("node-{node}.log"))
    }

    fn bootstrap(&self) -> String {
        (1..=self.nodes)
            .map(|i| self.kafka_address(i))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("dev-cluster: {flag} expects a number, got '{value}'"))
}

/// Runs `spate dev-cluster ARGS` until SIGINT or SIGTERM.
pub fn main(args: &[String]) -> Result<(), String> {
    let cluster = DevCluster::parse(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    }
    std::fs::create_dir_all(&cluster.data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", cluster.data_dir.display()))?;
    let binary =
        std::env::current_exe().map_err(|e| format!("cannot find the spate binary: {e}"))?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut children = Vec::new();
    for node in 1..=cluster.nodes {
        match spawn_node(&binary, &cluster, node, ready_tx.clone()) {
            Ok(child) => children.push((node, child)),
            Err(e) => {
                stop_all(&mut children);
                return Err(e);
            }
        }
    }
    if let Err(e) = wait_ready(&cluster, &mut children, &ready_rx, &stop) {
        stop_all(&mut children);
        return Err(e);
    }
    println!(
        "spate dev-cluster ready: {} nodes, bootstrap servers {}",
        cluster.nodes,
        cluster.bootstrap()
    );
    println!(
        "  try: spate --brokers {} cluster info",
        cluster.kafka_address(1)
    );
    let _ = std::io::stdout().flush();
    watch(&mut children, &stop);
    stop_all(&mut children);
    println!("spate dev-cluster stopped");
    Ok(())
}

/// Starts node `node`; a thread copies its output to its log file and reports its ready line.
fn spawn_node(
    binary: &Path,
    cluster: &DevCluster,
    node: u16,
    ready: mpsc::Sender<u16>,
) -> Result<Child, String> {
    let log_path = cluster.log_path(node);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    let mut child = Command::new(binary)
        .args(cluster.start_args(node))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone().map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("cannot start node {node}: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if line.starts_with("spate ready") {
                let _ = ready.send(node);
            }
        }
    });
    Ok(child)
}

/// Waits until every node printed its ready line; fails when one exits first.
fn wait_ready(
    cluster: &DevCluster,
    children: &mut [(u16, Child)],
    ready: &mpsc::Receiver<u16>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut waiting: Vec<u16> = (1..=cluster.nodes).collect();
    while !waiting.is_empty() {
        if let Ok(node) = ready.recv_timeout(Duration::from_millis(50)) {
            waiting.retain(|n| *n != node);
            println!(
                "node {node}: ready on {} (data {}, log {})",
                cluster.kafka_address(node),
                cluster.node_dir(node).display(),
                cluster.log_path(node).display()
            );
        }
        for (node, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "node {node} exited ({status}) before it was ready; see {}",
                    cluster.log_path(*node).display()
                ));
            }
        }
        if stop.load(Ordering::SeqCst) {
            return Err("stopped before every node was ready".into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "nodes {waiting:?} not ready after {}s; see their logs in {}",
                READY_TIMEOUT.as_secs(),
                cluster.data_dir.display()
            ));
        }
    }
    Ok(())
}

/// Until a signal: says when a node exits (the others keep running).
fn watch(children: &mut [(u16, Child)], stop: &AtomicBool) {
    let mut exited = vec![false; children.len()];
    while !stop.load(Ordering::SeqCst) && exited.iter().any(|e| !e) {
        for (i, (node, child)) in children.iter_mut().enumerate() {
            if exited[i] {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("spate dev-cluster: node {node} exited ({status})");
                exited[i] = true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM to every node still running, then waits (SIGKILL after `STOP_TIMEOUT`).
fn stop_all(children: &mut [(u16, Child)]) {
    for (_, child) in children.iter_mut() {
        if let Ok(None) = child.try_wait() {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for (node, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("spate dev-cluster: node {node} did not stop; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn nodes_get_consecutive_ports_and_one_quorum() {
        let cluster =
            DevCluster::parse(&args("--nodes 3 --base-port 19092 --data-dir d")).expect("valid");
        assert_eq!(
            cluster.bootstrap(),
            "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
        );
        assert_eq!(
            cluster.quorum(),
            "1@127.0.0.1:19192,2@127.0.0.1:19193,3@127.0.0.1:19194"
        );
        let start = cluster.start_args(2).join(" ");
        assert!(start.contains("--node-id 2 "), "{start}");
        assert!(start.contains("--listen 127.0.0.1:19093 "), "{start}");
        assert!(start.ends_with("--data-dir d/node-2"), "{start}");
    }

    #[test]
    fn bad_sizes_and_ports_are_refused_clearly() {
        let refused = |line: &str| DevCluster::parse(&args(line)).expect_err(line);
        assert!(refused("--nodes 2").contains("must be 1, 3 or 5"));
        assert!(refused("--nodes x").contains("expects a number"));
        assert!(refused("--base-port 65500").contains("leaves no room"));
        assert!(refused("--cores 0").contains("at least 1"));
        assert!(refused("--bogus").contains("unknown option"));
    }
}
