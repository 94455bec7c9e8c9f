//! The `spate` command.

use broker::config_file::Layered;
use broker::server::{self, StartOptions};
use spate_bench::flags::Flags;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "\
spate: a Kafka-compatible event-streaming broker

Usage:
  spate start [options]     run a single-node broker (broker and controller), or a node
                            of a multi-node cluster (cluster options below)
  spate dev-cluster [...]   N nodes on loopback for trying a cluster (`spate dev-cluster --help`)
  spate bench MODE [...]    benchmarks: produce, consume, e2e, compare, profile (`spate bench --help`)
  spate plan --ingest RATE  brokers, cores, memory, disk and network for a load, from a
                            measured profile (`spate plan --help`, bench/PLANNING.md)
  spate topic|produce|consume|group|cluster ...   the Kafka client (below)
  spate cluster-admin ...   ask a controller quorum directly (register-broker, create-topic,
                            describe); see broker/src/cluster/admin.rs
  spate --version           print the version

Options of `spate start`:
  --data-dir DIR            where logs and metadata live (default ./spate-data)
  --listen HOST:PORT        client listener, advertised as given (default 127.0.0.1:9092)
  --admin-listen HOST:PORT  admin HTTP listener: /metrics, /v1/status (default
                            127.0.0.1:9644; none disables it)
  --cores N                 shards, one pinned per core (default: all cores)
  --set NAME=VALUE          override a broker setting by its Kafka name, e.g.
                            --set num.partitions=4 (repeatable)
  --unsafe-no-fsync         acknowledge acks=all without fdatasync (development only)
  --config FILE             read settings from a TOML file (see spate.toml)
  --print-config            print the effective configuration with each value's source

Precedence: flags > SPATE_* environment (SPATE_LOG_RETENTION_MS=1000 sets
log.retention.ms, SPATE_DATA_DIR sets data-dir) > --config file > defaults.

Cluster options (none: a single node that is its own controller):
  --node-id N               this node's id (1..2^31-1)
  --roles ROLES             broker, controller or broker,controller (default both)
  --controller-listen H:P   this voter's controller address (default: its quorum entry)
  --controller-quorum Q     the voters: 1@host:port,2@host:port,3@host:port (1, 3 or 5)
  --rack RACK               the broker's rack (Kafka's broker.rack); placement interleaves racks

Log level: SPATE_LOG (e.g. SPATE_LOG=debug), default info.
";

fn main() -> ExitCode {
    let started_at = Instant::now();
    let args = command_first(std::env::args().skip(1).collect());
    match args.first().map(String::as_str) {
        Some("start") => match parse_start(&args[1..]) {
            Ok(options) => {
                init_logging();
                abort_on_panic();
                storage::fix_malloc_thresholds();
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
        Some("plan") => match spate_bench::plan::main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => fail(&reason),
        },
        Some(command) if spate_cli::COMMANDS.contains(&command) => {
            match spate_cli::main(command, &args[1..]) {
                Ok(()) => ExitCode::SUCCESS,
                Err(reason) => fail(&reason),
            }
        }
        Some("dev-cluster") => match broker::cluster::dev::main(&args[1..]) {
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
            print!(
                "{USAGE}\nClient commands (any Kafka-protocol broker):\n{}",
                spate_cli::USAGE
            );
            ExitCode::SUCCESS
        }
        Some(other) => fail(&format!("unknown command '{other}' (try `spate --help`)")),
    }
}

/// Client flags given before the command (`spate --brokers H:P topic list`) move after it, so
/// they work in either place, as with Kafka's tools.
fn command_first(mut args: Vec<String>) -> Vec<String> {
    let mut leading = Vec::new();
    while let Some(first) = args.first() {
        let width = match first.as_str() {
            "--brokers" | "--command-config" => 2.min(args.len()),
            "--json" => 1,
            flag if flag.starts_with("--brokers=") || flag.starts_with("--command-config=") => 1,
            _ => break,
        };
        leading.extend(args.drain(..width));
    }
    args.extend(leading);
    args
}

fn fail(reason: &str) -> ExitCode {
    eprintln!("spate: {reason}");
    ExitCode::FAILURE
}

fn parse_start(args: &[String]) -> Result<StartOptions, String> {
    let mut flags: Vec<(String, String)> = Vec::new();
    let (mut config_file, mut print_config) = (None, false);
    let mut cluster = broker::cluster::ClusterFlags::default();
    let mut args = Flags::new(args);
    while let Some(name) = args.next_flag() {
        let flag = name.as_str();
        let mut value = || args.value();
        match flag {
            "--data-dir" | "--listen" | "--admin-listen" | "--cores" => {
                flags.push((flag[2..].to_string(), value()?))
            }
            "--set" => {
                let v = value()?;
                let (name, setting) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--set: expected NAME=VALUE, got '{v}'"))?;
                flags.push((name.trim().to_string(), setting.to_string()));
            }
            "--unsafe-no-fsync" => flags.push(("unsafe-no-fsync".into(), "true".into())),
            "--config" => config_file = Some(PathBuf::from(value()?)),
            "--print-config" => print_config = true,
            f if cluster.take(f, &mut value)? => {}
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option '{other}' (try `spate --help`)")),
        }
    }
    let layered = Layered::load(config_file.as_deref(), std::env::vars(), &flags)?;
    if print_config {
        print!("{}", layered.to_toml());
        std::process::exit(0);
    }
    let mut options = layered.start_options()?;
    options.cluster = cluster.finish()?;
    Ok(options)
}

/// The panic policy of a running broker: a panic on any thread is logged (thread, location,
/// message) and ends the process at once. Unwinding would end only the panicking shard's
/// thread while the other shards wait for it forever and the node still looks ready; a
/// supervisor (systemd, Kubernetes) restarts an aborted broker and recovery does the rest.
fn abort_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            %location,
            "panic: {}; aborting the broker",
            info.payload_as_str().unwrap_or("(no message)")
        );
        default_hook(info);
        std::process::abort();
    }));
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

#[cfg(test)]
mod tests {
    use super::command_first;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn client_flags_before_the_command_move_after_it() {
        assert_eq!(
            command_first(words("--brokers h:1 --json topic list")),
            words("topic list --brokers h:1 --json")
        );
        assert_eq!(
            command_first(words("--brokers=h:1 group list")),
            words("group list --brokers=h:1")
        );
        assert_eq!(
            command_first(words("start --cores 1")),
            words("start --cores 1")
        );
        assert_eq!(command_first(words("--brokers")), words("--brokers"));
    }
}
