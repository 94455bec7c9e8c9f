//! The controller quorum on a simulated network: 3 and 5 voters stepped in lockstep with a
//! seeded random source that drops, delays (and so reorders) messages, partitions the
//! voters and crashes and restarts them from their Raft logs on disk.
//!
//! Checked throughout: at most one leader per term; every voter that reaches metadata
//! version v has the same image at v (so committed entries are the same everywhere and never
//! rolled back); after healing, every voter converges to the same image, holding every
//! command whose proposal was acknowledged. Brokers are fenced and unfenced on the way, so
//! the leader elections they cause must come out the same on every voter.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use controller::codec::SnapshotPayload;
use controller::quorum::{Completion, Quorum, QuorumConfig, RaftMessage, RaftMessageType};
use controller::{ApplyOutcome, MetadataCommand, MetadataImage};

/// splitmix64: small, seeded, good enough to choose faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Fault rates per step, in per mille.
#[derive(Clone, Copy)]
struct Faults {
    drop: u64,
    crash: u64,
    crash_leader: u64,
    restart: u64,
    partition: u64,
    heal: u64,
    max_delay: u64,
}

const FAULTY: Faults = Faults {
    drop: 80,
    crash: 4,
    crash_leader: 3,
    restart: 30,
    partition: 3,
    heal: 25,
    max_delay: 4,
};

const CALM: Faults = Faults {
    drop: 0,
    crash: 0,
    crash_leader: 0,
    restart: 1000,
    partition: 0,
    heal: 1000,
    max_delay: 1,
};

struct Sim {
    rng: Rng,
    seed: u64,
    dirs: BTreeMap<u64, PathBuf>,
    configs: BTreeMap<u64, QuorumConfig>,
    nodes: BTreeMap<u64, Option<Quorum>>,
    in_flight: Vec<(u64, RaftMessage)>,
    now: u64,
    /// Side A of a network partition; messages between sides are lost.
    partition: Option<BTreeSet<u64>>,
    leader_of_term: BTreeMap<u64, u64>,
    /// Image content (node id aside, as debug text) at each version, first seen.
    history: BTreeMap<u64, String>,
    /// The image version last checked on each node.
    checked: BTreeMap<u64, u64>,
    /// Topic names whose creation was acknowledged to the proposer.
    acknowledged: BTreeSet<String>,
    proposals: BTreeMap<(u64, u64), String>,
    next_topic: u64,
    next_id: u64,
    /// Snapshots delivered to lagging voters.
    snapshots_delivered: u64,
    /// No new proposals: waiting for the voters to agree.
    converging: bool,
    /// A broker following the voters' record streams (`records_after`), whichever voter it
    /// asks: its image must match the history at every version it reaches.
    follower: MetadataImage,
    /// Updates the follower took as records, and as whole images.
    followed_records: u64,
    followed_images: u64,
    _root: tempfile::TempDir,
}

impl Sim {
    fn new(seed: u64, voters: u64) -> Sim {
        let root =
            tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")).expect("tmp");
        let ids: Vec<u64> = (1..=voters).collect();
        let mut rng = Rng(seed);
        let (mut dirs, mut configs, mut nodes) =
            (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for &id in &ids {
            let dir = root.path().join(format!("node-{id}"));
            let mut config = QuorumConfig::new(id, ids.clone());
            // Distinct fixed timeouts, chosen by the seed: runs are reproducible.
            config.election_ticks = 10 + 3 * id as usize + rng.below(3) as usize;
            config.election_ticks_max = config.election_ticks + 1;
            config.snapshot_interval_entries = 16;
            config.fsync = false;
            let quorum = Quorum::open(&dir, config.clone()).expect("open voter");
            dirs.insert(id, dir);
            configs.insert(id, config);
            nodes.insert(id, Some(quorum));
        }
        Sim {
            rng: Rng(seed ^ 0x5eed),
            seed,
            dirs,
            configs,
            nodes,
            in_flight: Vec::new(),
            now: 0,
            partition: None,
            leader_of_term: BTreeMap::new(),
            history: BTreeMap::new(),
            checked: BTreeMap::new(),
            acknowledged: BTreeSet::new(),
            proposals: BTreeMap::new(),
            next_topic: 0,
            next_id: 1,
            snapshots_delivered: 0,
            converging: false,
            follower: MetadataImage::empty(0),
            followed_records: 0,
            followed_images: 0,
            _root: root,
        }
    }

    fn live(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn connected(&self, a: u64, b: u64) -> bool {
        match &self.partition {
            Some(side) => side.contains(&a) == side.contains(&b),
            None => true,
        }
    }

    fn step(&mut self, faults: Faults) {
        self.now += 1;
        self.inject_faults(faults);
        for id in self.live() {
            self.node(id).tick();
        }
        self.deliver(faults);
        self.maybe_propose();
        for id in self.live() {
            self.process(id, faults);
        }
    }

    fn node(&mut self, id: u64) -> &mut Quorum {
        self.nodes
            .get_mut(&id)
            .and_then(Option::as_mut)
            .expect("live node")
    }

    fn inject_faults(&mut self, faults: Faults) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        let down = ids.len() - self.live().len();
        let minority = (ids.len() - 1) / 2;
        if down < minority && self.rng.chance(faults.crash) {
            let victim = ids[self.rng.below(ids.len() as u64) as usize];
            self.crash(victim);
        } else if down < minority && self.rng.chance(faults.crash_leader) {
            // kill -9 of the active controller.
            let leader = ids
                .iter()
                .copied()
                .find(|id| self.nodes[id].as_ref().is_some_and(Quorum::is_leader));
            if let Some(leader) = leader {
                self.crash(leader);
            }
        }
        for &id in &ids {
            if self.nodes[&id].is_none() && self.rng.chance(faults.restart) {
                // A restarted voter draws a new election timeout from a narrow range, so
                // candidates of one term collide: the votes they get must hold across crashes.
                let mut config = self.configs[&id].clone();
                config.election_ticks = 10 + self.rng.below(3) as usize;
                config.election_ticks_max = config.election_ticks + 1;
                let reopened = Quorum::open(&self.dirs[&id], config)
                    .unwrap_or_else(|e| panic!("seed {}: restart of {id} failed: {e}", self.seed));
                self.nodes.insert(id, Some(reopened));
            }
        }
        if self.partition.is_none() && self.rng.chance(faults.partition) {
            let side: BTreeSet<u64> = ids
                .iter()
                .copied()
                .filter(|_| self.rng.chance(500))
                .collect();
            self.partition = Some(side);
        } else if self.partition.is_some() && self.rng.chance(faults.heal) {
            self.partition = None;
        }
    }

    /// Stops a voter as kill -9 would; its unanswered proposals die with it.
    fn crash(&mut self, id: u64) {
        self.nodes.insert(id, None);
        self.proposals.retain(|(node, _), _| *node != id);
    }

    fn deliver(&mut self, faults: Faults) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.in_flight = later;
        for (_, message) in due {
            let (from, to) = (message.from, message.to);
            let snapshot = message.get_msg_type() == RaftMessageType::MsgSnapshot;
            let lost = !self.connected(from, to) || self.rng.chance(faults.drop);
            let delivered = match self.nodes.get_mut(&to) {
                Some(Some(node)) if !lost => {
                    node.step(message);
                    true
                }
                _ => false,
            };
            // The transport tells the sender about each snapshot, as a TCP one would.
            if snapshot && delivered {
                self.snapshots_delivered += 1;
            }
            if snapshot {
                if let Some(Some(sender)) = self.nodes.get_mut(&from) {
                    sender.report_snapshot(to, delivered);
                }
            }
        }
    }

    fn maybe_propose(&mut self) {
        if self.converging || !self.rng.chance(300) {
            return;
        }
        let Some(leader) = self
            .live()
            .into_iter()
            .find(|id| self.nodes[id].as_ref().is_some_and(Quorum::can_propose))
        else {
            return;
        };
        let image = self.node(leader).image();
        let registered = image.brokers.len() as i32;
        let (command, name) = if registered < BROKERS {
            let cmd = MetadataCommand::RegisterBroker {
                node_id: registered + 1,
                host: "127.0.0.1".into(),
                port: 9092,
                shards: 2,
                rack: None,
                endpoints: Vec::new(),
            };
            (cmd, None)
        } else if self.rng.chance(100) {
            (MetadataCommand::AllocateProducerIds { count: 10 }, None)
        } else if self.rng.chance(150) {
            // Brokers 2 and 3 come and go (1 stays, so topics can always be placed): the
            // elections that follow must come out the same on every voter.
            let node_id = 2 + self.rng.below(2) as i32;
            let fenced = !image.brokers[&node_id].fenced;
            let cmd = MetadataCommand::SetBrokerFenced { node_id, fenced };
            // A pending proposal may have toggled it already: then it is refused, fine.
            let _ = self.node(leader).propose(cmd);
            return;
        } else {
            self.next_topic += 1;
            let name = format!("topic-{}-{}", self.seed, self.next_topic);
            let cmd = MetadataCommand::CreateTopic {
                name: name.clone(),
                partitions: 1 + self.rng.below(4) as i32,
                replication_factor: -1,
                default_replication_factor: 3,
                configs: BTreeMap::new(),
            };
            (cmd, Some(name))
        };
        let mut n = self.next_id;
        let ids = move || {
            n += 1;
            let mut id = [0x42; 16];
            id[8..].copy_from_slice(&n.to_be_bytes());
            id
        };
        self.next_id += 1000;
        match self.node(leader).propose_with_ids(command, ids) {
            Ok(token) => {
                if let Some(name) = name {
                    self.proposals.insert((leader, token), name);
                }
            }
            Err(e) => panic!(
                "seed {}: leader {leader} refused a proposal: {e}",
                self.seed
            ),
        }
    }

    fn process(&mut self, id: u64, faults: Faults) {
        let output = self
            .node(id)
            .process()
            .unwrap_or_else(|e| panic!("seed {}: node {id} failed: {e}", self.seed));
        for message in output.messages {
            let delay = 1 + self.rng.below(faults.max_delay);
            self.in_flight.push((self.now + delay, message));
        }
        for Completion { token, result } in output.completed {
            let name = self.proposals.remove(&(id, token));
            if let (Some(name), Ok(outcomes)) = (name, result) {
                assert!(
                    matches!(outcomes.first(), Some(ApplyOutcome::TopicCreated(t)) if t.name == name),
                    "seed {}: {outcomes:?}",
                    self.seed
                );
                self.acknowledged.insert(name);
            }
        }
        self.check(id);
    }

    fn check(&mut self, id: u64) {
        let seed = self.seed;
        let node = self.node(id);
        if node.is_leader() {
            let term = node.term();
            let previous = *self.leader_of_term.entry(term).or_insert(id);
            assert_eq!(previous, id, "seed {seed}: two leaders in term {term}");
        }
        let image = self.node(id).image();
        self.follow(id);
        if self.checked.get(&id) == Some(&image.version) {
            return;
        }
        self.checked.insert(id, image.version);
        let content = format!("{:?}", SnapshotPayload::of(&image));
        let seen = self
            .history
            .entry(image.version)
            .or_insert_with(|| content.clone());
        assert_eq!(
            *seen, content,
            "seed {seed}: node {id} has a different image at version {}",
            image.version
        );
    }

    /// The follower catches up from voter `id`: the records after its version when the voter
    /// keeps them, else the voter's whole image; either way it must equal the history.
    fn follow(&mut self, id: u64) {
        let node = self.nodes[&id].as_ref().expect("live");
        let image = node.image();
        if image.version <= self.follower.version || image.cluster_id.is_empty() {
            return;
        }
        self.follower = match node.records_after(self.follower.version) {
            Some(records) => {
                self.followed_records += 1;
                self.follower
                    .apply_batch(&records)
                    .expect("records follow")
                    .0
            }
            None => {
                self.followed_images += 1;
                (*image).clone()
            }
        };
        let content = format!("{:?}", SnapshotPayload::of(&self.follower));
        let seen = self
            .history
            .entry(self.follower.version)
            .or_insert_with(|| content.clone());
        assert_eq!(
            *seen, content,
            "seed {}: the follower diverged at version {}",
            self.seed, self.follower.version
        );
    }

    /// Heals the network, restarts every voter and runs until all agree.
    fn converge(&mut self) {
        self.converging = true;
        for _ in 0..2000 {
            self.step(CALM);
            let live = self.live();
            let versions: BTreeSet<u64> = live
                .iter()
                .map(|id| self.nodes[id].as_ref().expect("live").image().version)
                .collect();
            let leader = live
                .iter()
                .any(|id| self.nodes[id].as_ref().expect("live").can_propose());
            if live.len() == self.nodes.len() && versions.len() == 1 && leader {
                return;
            }
        }
        let states: Vec<String> = self
            .nodes
            .iter()
            .map(|(id, n)| match n {
                Some(q) => format!("{id}: {:?} version {}", q.status(), q.image().version),
                None => format!("{id}: down"),
            })
            .collect();
        panic!(
            "seed {}: the voters did not converge: {states:#?}",
            self.seed
        );
    }
}

/// Brokers registered in the simulated clusters.
const BROKERS: i32 = 3;

/// Every partition leads on a live broker, or has none only while no ISR member is live; a
/// fenced broker stays in an ISR only as its last member.
fn check_registrations(image: &MetadataImage, seed: u64) {
    for (id, registrations) in &image.partitions {
        for (p, r) in registrations.iter().enumerate() {
            assert!(r.is_consistent(), "seed {seed}: {id:?}-{p}: {r:?}");
            let live_isr = r.isr.iter().any(|b| image.is_live(*b));
            assert_eq!(
                r.leader != controller::NO_LEADER,
                live_isr,
                "seed {seed}: {id:?}-{p}: {r:?}"
            );
            if r.isr.len() > 1 {
                assert!(
                    r.isr.iter().all(|b| image.is_live(*b)),
                    "seed {seed}: fenced broker in a larger ISR: {r:?}"
                );
            }
        }
    }
}

/// Runs one seed; returns how many snapshots reached lagging voters.
fn run(seed: u64, voters: u64, steps: u64) -> u64 {
    let mut sim = Sim::new(seed, voters);
    for _ in 0..steps {
        sim.step(FAULTY);
    }
    sim.converge();
    let images: Vec<_> = sim
        .live()
        .into_iter()
        .map(|id| SnapshotPayload::of(&sim.node(id).image()))
        .collect();
    assert!(
        images.windows(2).all(|w| w[0] == w[1]),
        "seed {seed}: voters disagree"
    );
    let image = &images[0];
    let names: BTreeSet<&str> = image.topics.iter().map(|t| t.name.as_str()).collect();
    for name in &sim.acknowledged {
        assert!(
            names.contains(name.as_str()),
            "seed {seed}: acknowledged {name} lost"
        );
    }
    assert!(
        sim.acknowledged.len() >= 5,
        "seed {seed}: only {} creations acknowledged in {steps} steps",
        sim.acknowledged.len()
    );
    assert!(!image.cluster_id.is_empty() && image.brokers.len() == BROKERS as usize);
    let final_image = sim.node(sim.live()[0]).image();
    check_registrations(&final_image, seed);
    assert!(
        final_image
            .partitions
            .values()
            .flatten()
            .any(|r| r.leader_epoch > 0 && r.replicas.len() == 3),
        "seed {seed}: no leader was ever elected"
    );
    assert!(
        sim.leader_of_term.len() >= 2,
        "seed {seed}: faults never caused an election"
    );
    assert_eq!(
        SnapshotPayload::of(&sim.follower),
        *image,
        "seed {seed}: the follower did not end at the voters' image"
    );
    assert!(
        sim.followed_records > 0,
        "seed {seed}: no record stream followed"
    );
    sim.snapshots_delivered
}

#[test]
fn three_voters_under_faults() {
    let snapshots: u64 = (1..=12).map(|seed| run(seed, 3, 1500)).sum();
    assert!(snapshots > 0, "no voter ever caught up from a snapshot");
}

#[test]
fn five_voters_under_faults() {
    let snapshots: u64 = (100..=105).map(|seed| run(seed, 5, 1500)).sum();
    assert!(snapshots > 0, "no voter ever caught up from a snapshot");
}

/// Frequent kill -9 and quick restarts of any voter, many lost messages.
const STORM: Faults = Faults {
    drop: 150,
    crash: 40,
    crash_leader: 15,
    restart: 300,
    partition: 5,
    heal: 50,
    max_delay: 6,
};

#[test]
fn elections_under_crash_storms() {
    for seed in 200..=215 {
        let mut sim = Sim::new(seed, 3);
        for _ in 0..1500 {
            sim.step(STORM);
        }
        sim.converge();
        assert!(
            sim.leader_of_term.len() >= 5,
            "seed {seed}: too few elections"
        );
        let image = sim.node(sim.live()[0]).image();
        for name in &sim.acknowledged {
            assert!(image.topic(name).is_some(), "seed {seed}: {name} lost");
        }
    }
}

#[test]
fn one_voter_is_its_own_quorum_and_survives_restarts() {
    let mut sim = Sim::new(7, 1);
    for round in 0..3 {
        for _ in 0..300 {
            sim.step(CALM);
        }
        assert!(
            sim.acknowledged.len() > 10 * round,
            "progress in round {round}"
        );
        sim.crash(1);
        sim.step(CALM);
    }
    sim.converge();
    let image = sim.node(1).image();
    for name in &sim.acknowledged {
        assert!(image.topic(name).is_some(), "{name} lost over restarts");
    }
}

#[test]
fn bad_quorum_configurations_are_refused_clearly() {
    let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")).expect("tmp");
    let open =
        |node: u64, voters: Vec<u64>| Quorum::open(dir.path(), QuorumConfig::new(node, voters));
    let message = |r: Result<Quorum, controller::ApplyError>| r.err().expect("refused").to_string();
    assert!(message(open(1, vec![1, 2])).contains("must have 1, 3 or 5"));
    assert!(message(open(1, vec![])).contains("must have 1, 3 or 5"));
    assert!(message(open(1, vec![1, 2, 3, 4])).contains("must have 1, 3 or 5"));
    assert!(message(open(1, vec![1, 2, 2])).contains("node id twice"));
    assert!(message(open(4, vec![1, 2, 3])).contains("not a voter"));
    drop(open(1, vec![1, 2, 3]).expect("valid"));
    assert!(message(open(1, vec![1, 5, 6])).contains("created by voters [1, 2, 3]"));
}

#[test]
fn a_minority_cannot_commit() {
    let mut sim = Sim::new(3, 3);
    for _ in 0..400 {
        sim.step(CALM);
    }
    let before = sim.acknowledged.len();
    assert!(before > 0);
    // Cut voter 1 off alone, with the others down: it must never commit anything again.
    sim.partition = Some(BTreeSet::from([1]));
    let mut isolated_versions = BTreeSet::new();
    let faults = Faults {
        heal: 0,
        restart: 0,
        ..CALM
    };
    sim.crash(2);
    sim.crash(3);
    let version = sim.node(1).image().version;
    for _ in 0..500 {
        sim.step(faults);
        isolated_versions.insert(sim.node(1).image().version);
    }
    assert!(
        !sim.node(1).can_propose(),
        "a lone voter of three still leads"
    );
    assert_eq!(isolated_versions, BTreeSet::from([version]));
    assert_eq!(sim.acknowledged.len(), before);
}
