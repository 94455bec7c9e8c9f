//! The `spate` command-line client: topics, produce, consume, consumer groups, cluster
//! info and ACLs, over the Kafka protocol against any broker (Spate or Kafka). Built on the project's
//! client library in `spate-bench` (`client::Connection`, `partitioner`, `batch`).

#[macro_use]
mod output;
mod acl;
mod args;
mod cluster;
mod consume;
mod fetch;
mod format;
mod group;
mod member;
mod produce;
mod range;
mod records;
mod session;
mod time;
mod topic;
mod user;

/// Usage lines of the client commands, for `spate --help`.
pub const USAGE: &str =
    "  spate topic create NAME [--partitions N] [--replication-factor N] [--config K=V]...
  spate topic list | describe NAME | delete NAME
  spate topic alter-config NAME [--set K=V]... [--delete K]...
  spate produce TOPIC [--file F] [--key-separator SEP] [--header K=V]... [--acks 0|1|all]
                [--compression none|gzip|snappy|lz4|zstd] [--partition N]
  spate consume TOPIC [--from-beginning | --offset N --partition P | --from-time T]
                [--group G] [--max N] [--timeout-ms MS] [--format TEMPLATE]
  spate group list | describe G | delete G
  spate group reset-offsets G --topic T (--to-earliest | --to-latest | --to-offset N |
                --to-datetime T) [--execute]
  spate cluster info
  spate user add NAME --password P [--mechanism SCRAM-SHA-256|SCRAM-SHA-512] [--iterations N]
  spate user list | remove NAME [--mechanism M]
  spate acl add --principal P --operation OP... (--topic T | --group G | --cluster |
                --transactional-id X) [--prefixed] [--deny] [--host H]
  spate acl list | remove [--principal P] [--operation OP] [--topic T | --group G | --cluster]
                [--prefixed] [--deny] [--host H]
  Client options: --brokers HOST:PORT,... (or SPATE_BROKERS; default 127.0.0.1:9092),
                --command-config FILE (Kafka client properties: security.protocol=SSL|
                SASL_PLAINTEXT|SASL_SSL, ssl.truststore.location or ssl.ca.location,
                ssl.keystore.location for mTLS, sasl.mechanism=PLAIN|SCRAM-SHA-256|
                SCRAM-SHA-512 with sasl.username/sasl.password or sasl.jaas.config),
                --json (JSON on stdout). --format: %k key, %s value, %h headers, %T timestamp,
                %p partition, %o offset, %t topic, %K/%S key/value length, \\n \\t.
";

/// The `--command-config FILE` given, if any (the last one).
fn command_config(args: &[String]) -> Result<Option<&str>, String> {
    let mut found = None;
    for (i, arg) in args.iter().enumerate() {
        if let Some(path) = arg.strip_prefix("--command-config=") {
            found = Some(path);
        } else if arg == "--command-config" {
            found = Some(
                args.get(i + 1)
                    .ok_or("--command-config needs a value")?
                    .as_str(),
            );
        }
    }
    Ok(found)
}

/// The client commands `main` serves.
pub const COMMANDS: &[&str] = &[
    "topic", "produce", "consume", "group", "cluster", "user", "acl",
];

/// Runs `spate COMMAND ARGS...`; an error is a one-line reason.
pub fn main(command: &str, args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        output::print_text(USAGE);
        return Ok(());
    }
    if let Some(path) = command_config(args)? {
        let security = spate_bench::security::Security::from_file(path)?;
        spate_bench::security::use_for_process(security)?;
    }
    match command {
        "topic" => topic::main(args),
        "produce" => produce::main(args),
        "consume" => consume::main(args),
        "group" => group::main(args),
        "cluster" => cluster::main(args),
        "user" => user::main(args),
        "acl" => acl::main(args),
        other => Err(format!("unknown command '{other}'")),
    }
}
