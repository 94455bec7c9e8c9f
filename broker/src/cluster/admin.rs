//! `spate cluster-admin`: talks to the controller quorum directly, as a broker would
//! (operators' and tests' window into a quorum whose brokers do not serve it yet).
//!
//! ```text
//! spate cluster-admin --controller-quorum Q register-broker ID HOST:PORT SHARDS
//! spate cluster-admin --controller-quorum Q create-topic NAME PARTITIONS
//! spate cluster-admin --controller-quorum Q describe [--node N]
//! ```

use super::client::ControllerClient;
use super::protocol::{ControllerRequest, ControllerResponse};
use controller::codec::{decode_snapshot, SnapshotPayload};
use controller::MetadataCommand;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

pub fn main(args: &[String]) -> Result<(), String> {
    let (quorum, rest) = match args {
        [flag, quorum, rest @ ..] if flag == "--controller-quorum" => (quorum, rest),
        _ => return Err("usage: spate cluster-admin --controller-quorum Q COMMAND ...".into()),
    };
    let voters = quorum
        .split(',')
        .map(|v| {
            let (id, address) = v.split_once('@').ok_or(format!("bad voter '{v}'"))?;
            let id = id.parse::<u64>().map_err(|_| format!("bad voter '{v}'"))?;
            Ok((id, address.to_owned()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut client = ControllerClient::new(voters);
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
