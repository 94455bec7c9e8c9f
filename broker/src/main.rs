//! The `spate` command.

use broker::config::BrokerConfig;
use broker::server::{self, StartOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "\
spate: a Kafka-compatible event-streaming broker

Usage:
  spate start [options]     run a single-node broker (broker and controller)
  spate bench MODE [...]    benchmarks: produce, consume, e2e (`spate bench --help`)
  spate cluster-admin ...   ask a controller quorum directly (register-broker, create-topic,
                            describe); see broker/src/cluster/admin.rs
  spate --version           print the version

Options of `spate start`:
  --data-dir DIR            where logs and metadata live (default ./spate-data)
  --listen HOST:PORT        client listener, advertised as given (default 127.0.0.1:9092)
  --cores N                 shards, one pinned per core (default: all cores)
  --set NAME=VALUE          override a broker setting by its Kafka name, e.g.
                            --set num.partitions=4 (repeatable)
  --unsafe-no-fsync         acknowledge acks=all without fdatasync (development only)

Cluster options (none: a single node that is its own controller):
  --node-id N               this node's id (1..2^31-1)
  --roles ROLES             broker, controller or broker,controller (default both)
  --controller-listen H:P   this voter's controller address (default: its quorum entry)
  --controller-quorum Q     the voters: 1@host:port,2@host:port,3@host:port (1, 3 or 5)

Log level: SPATE_LOG (e.g. SPATE_LOG=debug), default info.
";

fn main() -> ExitCode {
    let started_at = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("start") => match parse_start(&args[1..]) {
            Ok(options) => {
                init_logging();
                match server::run(options, started_at) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(reason) => fail(&reason),
                }
            }
            Err(reason) => fail(&reason),
        },
        Some("bench") => match spate_bench::main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => fail(&reason),
        },
        Some("cluster-admin") => match broker::cluster::admin::main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => fail(&reason),
        },
        Some("--version") | Some("-V") => {
            println!("spate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help") | Some("-h") | Some("help") | None => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => fail(&format!("unknown command '{other}' (try `spate --help`)")),
    }
}

fn fail(reason: &str) -> ExitCode {
    eprintln!("spate: {reason}");
    ExitCode::FAILURE
}

fn parse_start(args: &[String]) -> Result<StartOptions, String> {
    let mut data_dir = PathBuf::from("./spate-data");
    let mut listen = "127.0.0.1:9092".to_string();
    let mut cores = None;
    let mut overrides = Vec::new();
    let mut fsync = true;
    let mut cluster = broker::cluster::ClusterFlags::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--data-dir" => data_dir = PathBuf::from(value()?),
            "--listen" => listen = value()?,
            "--cores" => {
                let v = value()?;
                cores = Some(
                    v.parse::<usize>()
                        .map_err(|_| format!("--cores expects a number, got '{v}'"))?,
                );
            }
            "--set" => overrides.push(value()?),
            "--unsafe-no-fsync" => fsync = false,
            f if cluster.take(f, &mut value)? => {}
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option '{other}' (try `spate --help`)")),
        }
    }
    let mut config = BrokerConfig::with_overrides(overrides.iter().map(String::as_str))
        .map_err(|e| format!("--set: {e}"))?;
    config.fsync = fsync;
    Ok(StartOptions {
        data_dir,
        listen,
        cores,
        config,
        cluster: cluster.finish()?,
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
