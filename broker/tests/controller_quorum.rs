//! Three controller voters on loopback (threads of this test, real TCP, real Raft logs on
//! disk) serving brokers' requests: registration, placement of a 12-partition topic on
//! three brokers, topic creation within 5 s after the active controller stops, fencing of a
//! broker that stops heartbeating and unfencing when it comes back, identical images.

use broker::cluster::client::ControllerClient;
use broker::cluster::options::{ClusterOptions, Roles};
use broker::cluster::protocol::{ControllerRequest, ControllerResponse};
use broker::cluster::voter;
use controller::codec::{decode_snapshot, SnapshotPayload};
use controller::{MetadataCommand, PartitionRegistration};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SESSION_TIMEOUT_MS: u64 = 1000;

struct Voter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn start(quorum: &[(u64, String)], node_id: u64, dir: &std::path::Path) -> Voter {
    let options = ClusterOptions {
        node_id,
        roles: Roles {
            broker: false,
            controller: true,
        },
        controller_listen: Some(quorum[node_id as usize - 1].1.clone()),
        quorum: quorum.to_vec(),
        rack: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let dir = dir.join(format!("voter-{node_id}"));
    let settings = voter::VoterSettings {
        session_timeout_ms: SESSION_TIMEOUT_MS,
        leader_rebalance: None,
        security: Default::default(),
    };
    let thread = std::thread::spawn(move || voter::run(&options, &dir, &settings, &flag));
    Voter {
        stop,
        thread: Some(thread),
    }
}

impl Voter {
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("voter thread").expect("voter ran");
        }
    }
}

fn within(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

fn propose(client: &mut ControllerClient, command: MetadataCommand, deadline: Instant) -> u64 {
    match client.request(&ControllerRequest::Propose(command.clone()), deadline) {
        Ok(ControllerResponse::Applied { version, .. }) => version,
        other => panic!("{command:?}: {other:?}"),
    }
}

/// The image voter `node` holds once it reaches `version`.
fn image_of(client: &mut ControllerClient, node: u64, version: u64) -> SnapshotPayload {
    let deadline = within(5);
    loop {
        let request = ControllerRequest::FetchImage { known_version: 0 };
        if let Ok(ControllerResponse::Image(Some(bytes))) = client.request_to(node, &request) {
            let image = decode_snapshot(&bytes).expect("snapshot");
            if image.version >= version {
                return image;
            }
        }
        assert!(
            Instant::now() < deadline,
            "voter {node} never reached {version}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn heartbeat(client: &mut ControllerClient, node_id: i32) -> ControllerResponse {
    client
        .request(&ControllerRequest::Heartbeat { node_id }, within(5))
        .expect("heartbeat answered")
}

fn create(name: &str, partitions: i32) -> MetadataCommand {
    create_rf(name, partitions, 1)
}

/// A topic with the default replication factor `default_rf`.
fn create_rf(name: &str, partitions: i32, default_rf: i16) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: name.into(),
        partitions,
        replication_factor: -1,
        default_replication_factor: default_rf,
        configs: BTreeMap::new(),
    }
}

/// The partition registrations of topic `name`.
fn registrations(image: &SnapshotPayload, name: &str) -> Vec<PartitionRegistration> {
    let id = image
        .topics
        .iter()
        .find(|t| t.name == name)
        .expect("topic")
        .id;
    image
        .partitions
        .iter()
        .find(|(t, _)| *t == id)
        .expect("registered")
        .1
        .clone()
}

fn fenced(image: &SnapshotPayload, node: i32) -> bool {
    image
        .brokers
        .iter()
        .find(|b| b.node_id == node)
        .expect("broker")
        .fenced
}

#[test]
fn three_voters_serve_brokers_and_survive_the_loss_of_the_active_controller() {
    let dir =
        tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")).expect("tempdir");
    let quorum: Vec<(u64, String)> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let mut voters: Vec<Voter> = (1..=3).map(|id| start(&quorum, id, dir.path())).collect();
    let mut client = ControllerClient::new(quorum.clone());

    for node_id in 1..=3 {
        let register = MetadataCommand::RegisterBroker {
            node_id,
            host: "127.0.0.1".into(),
            port: 9000 + node_id as u16,
            shards: 2,
            rack: None,
            endpoints: Vec::new(),
        };
        propose(&mut client, register, within(10));
    }
    let version = propose(&mut client, create("twelve", 12), within(5));
    let leader = client.target();
    let image = image_of(&mut client, leader, version);
    let topic = image
        .topics
        .iter()
        .find(|t| t.name == "twelve")
        .expect("topic");
    let (_, registered) = image
        .partitions
        .iter()
        .find(|(id, _)| *id == topic.id)
        .expect("placed");
    let placements: Vec<_> = registered.iter().map(|r| r.replicas[0]).collect();
    for broker in 1..=3 {
        let on_broker: Vec<_> = placements.iter().filter(|p| p.broker == broker).collect();
        assert_eq!(on_broker.len(), 4, "broker {broker}: {placements:?}");
        assert_eq!(on_broker.iter().filter(|p| p.shard == 0).count(), 2);
    }

    // Three replicas each, the leaders spread over the brokers.
    let version = propose(&mut client, create_rf("replicated", 6, 3), within(5));
    let replicated = registrations(&image_of(&mut client, leader, version), "replicated");
    for broker in 1..=3 {
        let led = replicated.iter().filter(|r| r.leader == broker).count();
        assert_eq!(led, 2, "broker {broker}: {replicated:?}");
    }

    // The active controller goes away; topic creation works again within 5 s.
    voters[leader as usize - 1].stop();
    let version = propose(&mut client, create("after-failover", 3), within(5));
    let new_leader = client.target();
    assert_ne!(new_leader, leader);

    // Brokers 1 and 2 keep heartbeating; broker 3 falls silent and is fenced.
    let deadline = within(10);
    loop {
        for node in [1, 2] {
            assert!(matches!(
                heartbeat(&mut client, node),
                ControllerResponse::Ok
            ));
        }
        let image = image_of(&mut client, new_leader, version);
        if fenced(&image, 3) {
            assert!(!fenced(&image, 1) && !fenced(&image, 2));
            // In the same batch: broker 3 leads nothing and left every ISR.
            for r in registrations(&image, "replicated") {
                assert!(r.leader != 3 && !r.isr.contains(&3), "{r:?}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "broker 3 never fenced");
        std::thread::sleep(Duration::from_millis(200));
    }
    // New partitions avoid the fenced broker; its heartbeat unfences it.
    let version = propose(&mut client, create("while-fenced", 4), within(5));
    let image = image_of(&mut client, new_leader, version);
    let id = image
        .topics
        .iter()
        .find(|t| t.name == "while-fenced")
        .expect("t")
        .id;
    let (_, placed) = image
        .partitions
        .iter()
        .find(|(t, _)| *t == id)
        .expect("placed");
    assert!(placed.iter().all(|r| !r.is_replica(3)), "{placed:?}");
    assert!(matches!(
        heartbeat(&mut client, 3),
        ControllerResponse::Applied { .. }
    ));

    // Both survivors hold the same image, with everything acknowledged.
    let final_version = image_of(&mut client, new_leader, 0).version;
    let survivors: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    let images: Vec<SnapshotPayload> = survivors
        .iter()
        .map(|n| image_of(&mut client, *n, final_version))
        .collect();
    assert_eq!(images[0], images[1]);
    let names: Vec<&str> = images[0].topics.iter().map(|t| t.name.as_str()).collect();
    for name in ["twelve", "after-failover", "while-fenced"] {
        assert!(names.contains(&name), "{name} lost: {names:?}");
    }
    assert!(images[0].brokers.iter().all(|b| !b.fenced));
    for voter in &mut voters {
        voter.stop();
    }
}
