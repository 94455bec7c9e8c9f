//! `spate cluster-admin`: talks to the controller quorum directly, as a broker would
//! (operators' and tests' window into a quorum whose brokers do not serve it yet).
//!
//! ```text
//! spate cluster-admin --controller-quorum Q register-broker ID HOST:PORT SHARDS
//! spate cluster-admin --controller-quorum Q create-topic NAME PARTITIONS
//! spate cluster-admin --controller-quorum Q describe [--node N]
//! ```
//!
//! `--command-config FILE` (anywhere): Kafka client properties for a controller listener
//! that is not PLAINTEXT (`security.protocol`, the `ssl.*` truststore and keystore, the
//! `sasl.*` PLAIN credentials), read as the `spate` client reads them.

use super::client::ControllerClient;
use super::protocol::{ControllerRequest, ControllerResponse};
use super::security::ControllerSecurity;
use controller::codec::{decode_snapshot, SnapshotPayload};
use controller::MetadataCommand;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

pub fn main(args: &[String]) -> Result<(), String> {
    let (security, args) = command_config(args)?;
    let (quorum, rest) = match args.as_slice() {
        [flag, quorum, rest @ ..] if flag == "--controller-quorum" => (quorum, rest),
        _ => return Err(
            "usage: spate cluster-admin --controller-quorum Q [--command-config FILE] COMMAND ..."
                .into(),
        ),
    };
    let voters = quorum
        .split(',')
        .map(|v| {
            let (id, address) = v.split_once('@').ok_or(format!("bad voter '{v}'"))?;
            let id = id.parse::<u64>().map_err(|_| format!("bad voter '{v}'"))?;
            Ok((id, address.to_owned()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut client = ControllerClient::with_security(voters, security.client);
    let number = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("'{s}' is not a number"))
    };
    match rest {
        [cmd, id, address, shards] if cmd == "register-broker" => {
            let (host, port) = address.rsplit_once(':').ok_or("HOST:PORT expected")?;
            let command = MetadataCommand::RegisterBroker {
                node_id: number(id)? as i32,
                host: host.to_owned(),
                port: number(port)? as u16,
                shards: number(shards)? as u32,
                rack: None,
                endpoints: Vec::new(),
            };
            propose(&mut client, command)
        }
        [cmd, name, partitions] if cmd == "create-topic" => {
            let command = MetadataCommand::CreateTopic {
                name: name.clone(),
                partitions: number(partitions)? as i32,
                replication_factor: -1,
                default_replication_factor: 1,
                configs: BTreeMap::new(),
            };
            propose(&mut client, command)
        }
        [cmd] if cmd == "describe" => describe(client.request(&FETCH, deadline())?),
        [cmd, flag, node] if cmd == "describe" && flag == "--node" => {
            describe(client.request_to(number(node)? as u64, &FETCH)?)
        }
        _ => Err("commands: register-broker ID HOST:PORT SHARDS | create-topic NAME PARTITIONS | describe [--node N]".into()),
    }
}

/// `--command-config FILE` taken out of `args`: the client side it asks for (PLAINTEXT
/// without it).
fn command_config(args: &[String]) -> Result<(ControllerSecurity, Vec<String>), String> {
    let Some(at) = args.iter().position(|a| a == "--command-config") else {
        return Ok((ControllerSecurity::default(), args.to_vec()));
    };
    let path = args
        .get(at + 1)
        .ok_or("--command-config needs a file of Kafka client properties")?;
    let client = spate_bench::security::Security::from_file(path)?;
    let mut rest = args.to_vec();
    rest.drain(at..at + 2);
    Ok((ControllerSecurity::client_of(&client), rest))
}

const FETCH: ControllerRequest = ControllerRequest::FetchImage { known_version: 0 };

fn deadline() -> Instant {
    Instant::now() + DEADLINE
}

fn propose(client: &mut ControllerClient, command: MetadataCommand) -> Result<(), String> {
    match client.request(&ControllerRequest::Propose(command), deadline())? {
        ControllerResponse::Applied { version, .. } => {
            println!("applied by node {} at version {version}", client.target());
            Ok(())
        }
        ControllerResponse::Refused { code, message } => {
            Err(format!("refused ({code}): {message}"))
        }
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// Prints the image: one line per broker and per topic (each partition's replicas).
fn describe(answer: ControllerResponse) -> Result<(), String> {
    let ControllerResponse::Image(Some(bytes)) = answer else {
        return Err(format!("no image: {answer:?}"));
    };
    let image: SnapshotPayload = decode_snapshot(&bytes)?;
    println!("cluster {} version {}", image.cluster_id, image.version);
    for b in &image.brokers {
        println!(
            "broker {} {}:{} shards {} fenced {}",
            b.node_id, b.host, b.port, b.shards, b.fenced
        );
    }
    let registrations: BTreeMap<_, _> = image.partitions.iter().cloned().collect();
    for t in &image.topics {
        let brokers: Vec<String> = registrations
            .get(&t.id)
            .map(|rs| rs.iter().map(describe_partition).collect())
            .unwrap_or_default();
        println!(
            "topic {} partitions {} brokers {}",
            t.name,
            t.partitions,
            brokers.join(",")
        );
    }
    Ok(())
}

/// One partition for `describe`: its replicas joined by `/`, the preferred leader first
/// (`2/1/3`; one replica: just its broker, as scripts parse it).
fn describe_partition(r: &controller::PartitionRegistration) -> String {
    let replicas: Vec<String> = r.replica_brokers().map(|b| b.to_string()).collect();
    replicas.join("/")
}

#[cfg(test)]
mod tests {
    use super::command_config;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_command_config_is_taken_out_of_the_arguments_wherever_it_is() {
        let (security, rest) = command_config(&words("--controller-quorum Q describe")).unwrap();
        assert_eq!(rest, words("--controller-quorum Q describe"));
        assert!(security.client.tls.is_none() && security.client.sasl.is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(&path, "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.username=u\nsasl.password=p\n").unwrap();
        let line = format!(
            "--controller-quorum Q describe --command-config {}",
            path.display()
        );
        let (security, rest) = command_config(&words(&line)).unwrap();
        assert_eq!(rest, words("--controller-quorum Q describe"));
        assert_eq!(security.client.sasl.as_ref().unwrap().username, "u");
        let err = command_config(&words("describe --command-config")).unwrap_err();
        assert!(err.contains("needs a file"), "{err}");
    }
}
