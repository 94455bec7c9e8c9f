//! One partition replicated over 3 or 5 brokers on a simulated network, stepped with a
//! seeded random source: messages dropped and delayed (so reordered), brokers crashed
//! (losing what they had not fdatasync'ed and their replica state) and restarted from their
//! durable logs, the leader crashed, brokers paused (they stop fetching and fall out of the
//! ISR), the leader or any broker isolated by a network partition (the controller fences it
//! and elects another leader while it still believes it leads).
//!
//! The model controller elects leaders from the ISR only, keeps the last ISR member when it
//! is fenced (the partition goes offline rather than electing an unclean replica), and
//! applies AlterPartition with a compare-and-set on the partition epoch.
//!
//! Checked throughout: at most one leader per epoch; the high watermark consumers see never
//! goes back within an epoch; every acks=all-acknowledged batch is at its offset in the log
//! of the controller's leader and of every ISR member that reached it; a new leader holds
//! every batch a consumer saw below a high watermark (unless crashes destroyed every ISR
//! copy of it: the high watermark counts written, not durable, offsets, as Kafka's does);
//! acks=all is refused before the append while the ISR is below min.insync.replicas.
//! After healing: every broker holds the same log, the ISR is every replica, and every
//! acknowledged batch is there. A failing run prints its seed.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Batch, ModelLog};
use replication::{
    Acks, Effect, FetchAnswer, FetchRequest, IsrError, PartitionState, Replica, ReplicaConfig,
    ReplicaError, Role, WaiterId, NO_LEADER,
};

/// Milliseconds per step.
const STEP_MS: u64 = 10;
/// The controller fences a broker it has not heard from for this long.
const SESSION_MS: u64 = 400;
/// A follower sends its fetch again when unanswered for this long.
const FETCH_TIMEOUT_MS: u64 = 100;
/// acks=all producers give up after this long.
const ACK_TIMEOUT_MS: u64 = 3_000;
/// The controller sends every broker its state this often (lost updates are repaired).
const METADATA_REFRESH_STEPS: u64 = 25;
/// Batches per fetch answer at most.
const FETCH_BATCHES_MAX: usize = 8;
/// The controller's node id on the network.
const CONTROLLER: i32 = 0;

/// splitmix64, as in controller/tests/quorum_sim.rs.
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

    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Fault rates per step, in per mille.
#[derive(Clone, Copy)]
struct Faults {
    drop: u64,
    max_delay: u64,
    crash: u64,
    crash_leader: u64,
    restart: u64,
    pause: u64,
    unpause: u64,
    partition: u64,
    heal: u64,
    produce: u64,
}

const FAULTY: Faults = Faults {
    drop: 50,
    max_delay: 4,
    crash: 3,
    crash_leader: 2,
    restart: 40,
    pause: 4,
    unpause: 15,
    partition: 3,
    heal: 15,
    produce: 300,
};

/// No crashes (for `followers_ack_when_written`, where a crash may lose an acknowledged
/// batch by design).
const NO_CRASH: Faults = Faults {
    crash: 0,
    crash_leader: 0,
    ..FAULTY
};

const CALM: Faults = Faults {
    drop: 0,
    max_delay: 1,
    crash: 0,
    crash_leader: 0,
    restart: 1000,
    pause: 0,
    unpause: 1000,
    partition: 0,
    heal: 1000,
    produce: 0,
};

#[derive(Clone, Debug)]
enum Msg {
    Fetch {
        from: i32,
        request: FetchRequest,
    },
    Answer {
        request: FetchRequest,
        answer: FetchAnswer,
        batches: Vec<Batch>,
    },
    Alter {
        from: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    AlterResult {
        partition_epoch: i32,
        result: Result<PartitionState, IsrError>,
    },
    Metadata(PartitionState),
}

struct Envelope {
    at: u64,
    from: i32,
    to: i32,
    msg: Msg,
}

struct Broker {
    log: ModelLog,
    /// None while crashed.
    replica: Option<Replica>,
    paused: bool,
    /// The fetch in flight and when it was sent.
    fetch: Option<(FetchRequest, u64)>,
    /// acks=all produces waiting: payload and base offset.
    waiters: BTreeMap<WaiterId, Batch>,
}

struct Controller {
    state: PartitionState,
    fenced: BTreeSet<i32>,
    last_heard: BTreeMap<i32, u64>,
}

#[derive(Default, Debug)]
struct Stats {
    acked: u64,
    refused_min_isr: u64,
    after_append: u64,
    shrinks: u64,
    expands: u64,
    elections: u64,
    truncations: u64,
}

struct Sim {
    rng: Rng,
    seed: u64,
    now: u64,
    step_no: u64,
    config: ReplicaConfig,
    brokers: BTreeMap<i32, Broker>,
    controller: Controller,
    network: Vec<Envelope>,
    /// Brokers cut off from everything else (controller included).
    isolated: BTreeSet<i32>,
    /// Brokers cut off from the controller only: they still reach each other (a leader the
    /// controller fences while its followers still fetch from it).
    cut: BTreeSet<i32>,
    next_payload: u64,
    /// acks=all-acknowledged batches by base offset.
    acked: BTreeMap<i64, Batch>,
    /// Batches consumers saw below a high watermark, by base offset.
    seen: BTreeMap<i64, Batch>,
    /// Seen payloads whose loss is excused: a crash destroyed every live ISR copy, or the
    /// copy of the replica that then became leader.
    excused: BTreeSet<u64>,
    /// Payloads each broker lost in a crash and has not fetched again.
    crash_lost: BTreeMap<i32, BTreeSet<u64>>,
    /// The highest high watermark seen per leader epoch, and which broker led it.
    hw_of_epoch: BTreeMap<i32, (i32, i64)>,
    stats: Stats,
    /// `SIM_TRACE=1`: print every event.
    trace: bool,
    /// This step's fault rates (the controller's sends use them too).
    faults: Faults,
}

impl Sim {
    fn trace(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{} {}ms] {}", self.step_no, self.now, what());
        }
    }

    fn new(seed: u64, brokers: i32, config: ReplicaConfig) -> Sim {
        let ids: Vec<i32> = (1..=brokers).collect();
        let state = PartitionState {
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: ids.clone(),
            isr: ids.clone(),
        };
        let mut sim = Sim {
            rng: Rng(seed),
            seed,
            now: 0,
            step_no: 0,
            config: config.clone(),
            brokers: BTreeMap::new(),
            controller: Controller {
                state,
                fenced: BTreeSet::new(),
                last_heard: ids.iter().map(|&id| (id, 0)).collect(),
            },
            network: Vec::new(),
            isolated: BTreeSet::new(),
            cut: BTreeSet::new(),
            next_payload: 1,
            acked: BTreeMap::new(),
            seen: BTreeMap::new(),
            excused: BTreeSet::new(),
            crash_lost: BTreeMap::new(),
            hw_of_epoch: BTreeMap::new(),
            stats: Stats::default(),
            trace: std::env::var("SIM_TRACE").is_ok(),
            faults: FAULTY,
        };
        for &id in &ids {
            let broker = Broker {
                log: ModelLog::default(),
                replica: Some(Replica::new(id, config.clone())),
                paused: false,
                fetch: None,
                waiters: BTreeMap::new(),
            };
            sim.brokers.insert(id, broker);
        }
        sim.broadcast();
        sim
    }

    fn ids(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    fn alive(&self, id: i32) -> bool {
        self.brokers[&id].replica.is_some()
    }

    fn connected(&self, a: i32, b: i32) -> bool {
        let cut = (a == CONTROLLER && self.cut.contains(&b))
            || (b == CONTROLLER && self.cut.contains(&a));
        !cut && self.isolated.contains(&a) == self.isolated.contains(&b)
    }

    fn send(&mut self, from: i32, to: i32, msg: Msg, faults: Faults) {
        // No connection to a crashed broker: a restarted one only hears what was sent after
        // it came back (a real broker catches up with the metadata log before it acts).
        let dead = to != CONTROLLER && !self.alive(to);
        if dead || self.rng.chance(faults.drop) {
            return;
        }
        let at = self.step_no + 1 + self.rng.below(faults.max_delay);
        self.network.push(Envelope { at, from, to, msg });
    }

    fn broadcast(&mut self) {
        for id in self.ids() {
            let state = self.controller.state.clone();
            self.send(CONTROLLER, id, Msg::Metadata(state), self.faults);
        }
    }

    fn step(&mut self, faults: Faults) {
        self.step_no += 1;
        self.now += STEP_MS;
        self.faults = faults;
        self.inject_faults(faults);
        self.heartbeats();
        if self.step_no.is_multiple_of(METADATA_REFRESH_STEPS) {
            self.broadcast();
        }
        self.deliver(faults);
        for id in self.ids() {
            self.run_broker(id, faults);
        }
        if self.rng.chance(faults.produce) {
            self.produce(faults);
        }
        self.consume();
        if self.step_no.is_multiple_of(50) {
            self.check_acked(false);
        }
    }

    // ---- faults ------------------------------------------------------------------------

    fn inject_faults(&mut self, faults: Faults) {
        let ids = self.ids();
        let down = ids.iter().filter(|&&id| !self.alive(id)).count();
        let minority = (ids.len() - 1) / 2;
        if down < minority && self.rng.chance(faults.crash) {
            let victim = ids[self.rng.below(ids.len() as u64) as usize];
            self.crash(victim);
        } else if down < minority && self.rng.chance(faults.crash_leader) {
            let leader = self.controller.state.leader;
            if leader != NO_LEADER && self.alive(leader) {
                self.crash(leader);
            }
        }
        for id in ids.clone() {
            let fenced = self.controller.fenced.contains(&id);
            if !self.alive(id) && fenced && self.rng.chance(faults.restart) {
                self.restart(id);
            }
            let broker = self.brokers.get_mut(&id).expect("broker");
            if broker.paused && self.rng.chance(faults.unpause) {
                broker.paused = false;
                self.trace(|| format!("unpause {id}"));
            } else if !broker.paused && self.rng.chance(faults.pause) {
                broker.paused = true;
                self.trace(|| format!("pause {id}"));
            }
        }
        self.partition(faults);
    }

    /// Cuts a broker (the leader, mostly) off from everything, or from the controller only;
    /// or heals.
    fn partition(&mut self, faults: Faults) {
        let partitioned = !self.isolated.is_empty() || !self.cut.is_empty();
        if partitioned && self.rng.chance(faults.heal) {
            self.isolated.clear();
            self.cut.clear();
            self.trace(|| "heal".to_string());
        } else if !partitioned && self.rng.chance(faults.partition) {
            let ids = self.ids();
            let leader = self.controller.state.leader;
            let victim = if leader != NO_LEADER && self.rng.chance(600) {
                leader
            } else {
                ids[self.rng.below(ids.len() as u64) as usize]
            };
            if self.rng.chance(500) {
                self.isolated.insert(victim);
                self.trace(|| format!("isolate {victim}"));
            } else {
                self.cut.insert(victim);
                self.trace(|| format!("cut {victim} from the controller"));
            }
        }
    }

    /// kill -9: the unsynced suffix and the replica state are gone, connections reset.
    fn crash(&mut self, id: i32) {
        let isr = self.controller.state.isr.clone();
        let broker = self.brokers.get_mut(&id).expect("broker");
        if broker.replica.is_none() {
            return;
        }
        broker.replica = None;
        broker.fetch = None;
        broker.waiters.clear();
        let lost = broker.log.crash();
        let (leo, durable) = (broker.log.leo(), broker.log.durable);
        self.trace(|| {
            format!(
                "crash {id}: lost {} batches, leo {leo} durable {durable}",
                lost.len()
            )
        });
        self.network.retain(|e| e.from != id && e.to != id);
        let lost_here = self.crash_lost.entry(id).or_default();
        lost_here.extend(lost.iter().map(|b| b.payload));
        // A seen batch is excused once no live ISR member other than this one holds it.
        for batch in lost {
            if self.seen.get(&batch.base) != Some(&batch) {
                continue;
            }
            let held = isr.iter().any(|&other| {
                other != id
                    && self.brokers[&other].replica.is_some()
                    && self.brokers[&other].log.batch_at(batch.base) == Some(&batch)
            });
            if !held {
                self.excused.insert(batch.payload);
            }
        }
    }

    fn restart(&mut self, id: i32) {
        let broker = self.brokers.get_mut(&id).expect("broker");
        broker.replica = Some(Replica::new(id, self.config.clone()));
        broker.paused = false;
        self.trace(|| format!("restart {id}"));
        let state = self.controller.state.clone();
        self.send(CONTROLLER, id, Msg::Metadata(state), self.faults);
    }

    // ---- controller --------------------------------------------------------------------

    fn heartbeats(&mut self) {
        for id in self.ids() {
            if self.alive(id) && self.connected(CONTROLLER, id) {
                self.controller.last_heard.insert(id, self.now);
                if self.controller.fenced.contains(&id) {
                    self.unfence(id);
                }
            } else if !self.controller.fenced.contains(&id)
                && self.now - self.controller.last_heard[&id] > SESSION_MS
            {
                self.fence(id);
            }
        }
    }

    /// Kafka's controller on a fenced broker: out of the ISR unless it is the last member;
    /// a new leader from the ISR if it led.
    fn fence(&mut self, id: i32) {
        self.trace(|| format!("fence {id}"));
        self.controller.fenced.insert(id);
        let state = &mut self.controller.state;
        let mut changed = false;
        if state.isr.contains(&id) && state.isr.len() > 1 {
            state.isr.retain(|&m| m != id);
            changed = true;
        }
        if state.leader == id {
            self.elect();
        } else if changed {
            self.controller.state.partition_epoch += 1;
            self.broadcast();
        }
    }

    fn unfence(&mut self, id: i32) {
        self.controller.fenced.remove(&id);
        let state = &self.controller.state;
        if state.leader == NO_LEADER && state.isr.contains(&id) {
            self.elect();
        }
    }

    /// A leader from the unfenced ISR members, in replica order; none: offline.
    fn elect(&mut self) {
        let fenced = &self.controller.fenced;
        let state = &mut self.controller.state;
        state.leader = state
            .replicas
            .iter()
            .copied()
            .find(|id| state.isr.contains(id) && !fenced.contains(id))
            .unwrap_or(NO_LEADER);
        state.leader_epoch += 1;
        state.partition_epoch += 1;
        self.stats.elections += 1;
        let state = self.controller.state.clone();
        self.trace(|| format!("elect: {state:?}"));
        self.broadcast();
    }

    /// AlterPartition: leader epoch and partition epoch must match, new members unfenced.
    fn alter(&mut self, from: i32, leader_epoch: i32, partition_epoch: i32, isr: Vec<i32>) {
        let state = &self.controller.state;
        let result = if leader_epoch != state.leader_epoch || from != state.leader {
            Err(IsrError::FencedLeaderEpoch)
        } else if partition_epoch != state.partition_epoch {
            Err(IsrError::InvalidUpdateVersion)
        } else if !isr.contains(&from)
            || isr
                .iter()
                .any(|id| !state.isr.contains(id) && self.controller.fenced.contains(id))
        {
            Err(IsrError::IneligibleReplica)
        } else {
            if isr.len() < state.isr.len() {
                self.stats.shrinks += 1;
            } else {
                self.stats.expands += 1;
            }
            self.controller.state.isr = isr;
            self.controller.state.partition_epoch += 1;
            Ok(self.controller.state.clone())
        };
        let ok = result.is_ok();
        self.trace(|| {
            format!("alter from {from} (le {leader_epoch} pe {partition_epoch}): {result:?}")
        });
        let answer = Msg::AlterResult {
            partition_epoch,
            result,
        };
        if self.connected(CONTROLLER, from) {
            self.send(CONTROLLER, from, answer, self.faults);
        }
        if ok {
            self.broadcast();
        }
    }

    // ---- network -----------------------------------------------------------------------

    fn deliver(&mut self, faults: Faults) {
        let now = self.step_no;
        let (due, later): (Vec<Envelope>, Vec<Envelope>) = std::mem::take(&mut self.network)
            .into_iter()
            .partition(|e| e.at <= now);
        self.network = later;
        for envelope in due {
            if !self.connected(envelope.from, envelope.to) {
                continue;
            }
            if envelope.to == CONTROLLER {
                if let Msg::Alter {
                    from,
                    leader_epoch,
                    partition_epoch,
                    isr,
                } = envelope.msg
                {
                    self.alter(from, leader_epoch, partition_epoch, isr);
                }
                continue;
            }
            if self.alive(envelope.to) {
                self.receive(envelope.to, envelope.msg, faults);
            }
        }
    }

    fn receive(&mut self, id: i32, msg: Msg, faults: Faults) {
        let now = self.now;
        let broker = self.brokers.get_mut(&id).expect("broker");
        let replica = broker.replica.as_mut().expect("alive");
        let effects = match msg {
            Msg::Metadata(state) => {
                let before = (replica.role(), replica.leader_epoch());
                let shown = format!("{state:?}");
                let effects = replica.apply_state(state, &broker.log, now);
                let (hw, leo) = (replica.high_watermark(), broker.log.leo());
                let leads = replica.role() == Role::Leader
                    && before != (Role::Leader, replica.leader_epoch());
                if !effects.is_empty() {
                    self.trace(|| format!("{id} applies {shown}: hw {hw} leo {leo} {effects:?}"));
                }
                if leads {
                    self.check_new_leader(id);
                }
                effects
            }
            Msg::AlterResult {
                partition_epoch,
                result,
            } => replica.on_isr_result(partition_epoch, result, &broker.log, now),
            Msg::Fetch { from, request } => self.serve_fetch(id, from, request, faults),
            Msg::Answer {
                request,
                answer,
                batches,
            } => {
                let effects = replica.on_fetch_answer(&request, answer, &broker.log);
                if broker.fetch.is_some_and(|(r, _)| r.id == request.id) {
                    broker.fetch = None;
                }
                self.apply_fetch_effects(id, &effects, &batches);
                effects
            }
            Msg::Alter { .. } => unreachable!("only the controller gets AlterPartition"),
        };
        self.apply_effects(id, effects, faults);
    }

    /// The leader's side of a fetch: its answer, with the batches read, goes back.
    fn serve_fetch(
        &mut self,
        id: i32,
        from: i32,
        request: FetchRequest,
        faults: Faults,
    ) -> Vec<Effect> {
        let now = self.now;
        let broker = self.brokers.get_mut(&id).expect("broker");
        let replica = broker.replica.as_mut().expect("alive");
        let (mut answer, effects) = replica.on_follower_fetch(
            from,
            request.position,
            request.leader_epoch,
            &broker.log,
            now,
        );
        let mut batches = Vec::new();
        if let FetchAnswer::Read {
            from: start,
            records_end,
            ..
        } = &mut answer
        {
            batches = broker.log.read(*start, FETCH_BATCHES_MAX);
            *records_end = batches.last().map_or(*start, |b| b.last + 1);
        }
        let reply = Msg::Answer {
            request,
            answer,
            batches,
        };
        self.send(id, from, reply, faults);
        effects
    }

    /// The follower's effects that need the answer's batches.
    fn apply_fetch_effects(&mut self, id: i32, effects: &[Effect], batches: &[Batch]) {
        let log = &mut self.brokers.get_mut(&id).expect("broker").log;
        for effect in effects {
            if let Effect::AppendFetched { from, to } = *effect {
                let lost = self.crash_lost.entry(id).or_default();
                for b in batches.iter().filter(|b| b.base >= from && b.last < to) {
                    log.append_batch(*b);
                    lost.remove(&b.payload);
                }
                assert_eq!(log.leo(), to, "seed {}: fetched batches", self.seed);
            }
        }
    }

    fn apply_effects(&mut self, id: i32, effects: Vec<Effect>, faults: Faults) {
        for effect in effects {
            if !matches!(effect, Effect::AckAll { .. } | Effect::AppendFetched { .. }) {
                self.trace(|| format!("{id}: {effect:?}"));
            }
            let broker = self.brokers.get_mut(&id).expect("broker");
            match effect {
                Effect::StartEpoch {
                    epoch,
                    start_offset,
                } => broker.log.assign_epoch(epoch, start_offset),
                Effect::AckAll { waiter, result } => self.acknowledge(id, waiter, result),
                Effect::ProposeIsr {
                    leader_epoch,
                    partition_epoch,
                    isr,
                } => {
                    let msg = Msg::Alter {
                        from: id,
                        leader_epoch,
                        partition_epoch,
                        isr,
                    };
                    self.send(id, CONTROLLER, msg, faults);
                }
                Effect::Truncate { to } => {
                    self.stats.truncations += u64::from(to < broker.log.leo());
                    broker.log.truncate(to);
                }
                Effect::TruncateFullyAndStartAt { offset } => broker.log.truncate_fully(offset),
                Effect::FollowLeader { .. } | Effect::StopFetching => broker.fetch = None,
                Effect::HighWatermark(_) | Effect::AppendFetched { .. } => {}
            }
        }
    }

    fn acknowledge(&mut self, id: i32, waiter: WaiterId, result: Result<(), ReplicaError>) {
        let seed = self.seed;
        let broker = self.brokers.get_mut(&id).expect("broker");
        let Some(batch) = broker.waiters.remove(&waiter) else {
            return;
        };
        match result {
            Ok(()) => {
                assert_eq!(
                    broker.log.batch_at(batch.base),
                    Some(&batch),
                    "seed {seed}: acknowledged batch not in the leader's log"
                );
                assert!(
                    batch.last < broker.log.durable,
                    "seed {seed}: ack before sync"
                );
                let previous = self.acked.insert(batch.base, batch);
                assert!(
                    previous.is_none(),
                    "seed {seed}: two batches acknowledged at {}: {previous:?} {batch:?}",
                    batch.base
                );
                self.stats.acked += 1;
            }
            Err(ReplicaError::NotEnoughReplicasAfterAppend) => self.stats.after_append += 1,
            Err(_) => {}
        }
    }

    // ---- brokers -----------------------------------------------------------------------

    fn run_broker(&mut self, id: i32, faults: Faults) {
        let now = self.now;
        let broker = self.brokers.get_mut(&id).expect("broker");
        let Some(replica) = broker.replica.as_mut() else {
            return;
        };
        let mut effects = replica.tick(&broker.log, now);
        if self.rng.chance(300) || faults.produce == 0 {
            broker.log.sync();
            effects.extend(replica.on_local_durable(&broker.log));
        }
        let timed_out = broker
            .fetch
            .is_none_or(|(_, sent)| now - sent >= FETCH_TIMEOUT_MS);
        let mut fetch = None;
        if !broker.paused && timed_out {
            if let Some(request) = replica.next_fetch(&broker.log) {
                broker.fetch = Some((request, now));
                fetch = Some(request);
            }
        }
        self.apply_effects(id, effects, faults);
        if let Some(request) = fetch {
            self.send(id, request.leader, Msg::Fetch { from: id, request }, faults);
        }
    }

    /// A producer picks any broker that believes it leads (a stale one too).
    fn produce(&mut self, faults: Faults) {
        let leaders: Vec<i32> = self
            .ids()
            .into_iter()
            .filter(|id| {
                let r = self.brokers[id].replica.as_ref();
                r.is_some_and(|r| r.role() == Role::Leader)
            })
            .collect();
        if leaders.is_empty() {
            return;
        }
        let id = leaders[self.rng.below(leaders.len() as u64) as usize];
        let acks = if self.rng.chance(700) {
            Acks::All
        } else {
            Acks::Leader
        };
        let records = 1 + self.rng.below(3) as i64;
        let payload = self.next_payload;
        self.next_payload += 1;
        let (now, seed, min_isr) = (self.now, self.seed, self.config.min_insync_replicas);
        let broker = self.brokers.get_mut(&id).expect("broker");
        let replica = broker.replica.as_mut().expect("alive");
        match replica.check_produce(acks) {
            Err(ReplicaError::NotEnoughReplicas) => {
                assert!(
                    replica.isr().len() < min_isr,
                    "seed {seed}: refused wrongly"
                );
                self.stats.refused_min_isr += 1;
                return;
            }
            Err(e) => panic!("seed {seed}: produce refused: {e:?}"),
            Ok(()) => assert!(acks != Acks::All || replica.isr().len() >= min_isr),
        }
        let batch = broker.log.append(records, replica.leader_epoch(), payload);
        let mut effects = replica.on_local_append(&broker.log);
        if acks == Acks::All {
            let (waiter, done) = replica
                .await_acks_all(batch.last + 1, ACK_TIMEOUT_MS, &broker.log, now)
                .expect("leader");
            broker.waiters.insert(waiter, batch);
            effects.extend(done);
        }
        self.apply_effects(id, effects, faults);
    }

    /// Consumers read from every broker that believes it leads, below its high watermark.
    fn consume(&mut self) {
        let seed = self.seed;
        for id in self.ids() {
            let broker = &self.brokers[&id];
            let Some(replica) = broker.replica.as_ref() else {
                continue;
            };
            if replica.role() != Role::Leader {
                continue;
            }
            let (epoch, hw) = (replica.leader_epoch(), replica.high_watermark());
            let entry = self.hw_of_epoch.entry(epoch).or_insert((id, hw));
            assert_eq!(entry.0, id, "seed {seed}: two leaders in epoch {epoch}");
            assert!(entry.1 <= hw, "seed {seed}: epoch {epoch} HW went back");
            let from = entry.1;
            entry.1 = hw;
            for b in broker.log.batches.iter().rev() {
                if b.last >= hw {
                    continue;
                }
                if b.last < from {
                    break;
                }
                let previous = self.seen.insert(b.base, *b);
                let excused = |p: &Batch| self.excused.contains(&p.payload);
                assert!(
                    previous.is_none_or(|p| p == *b || excused(&p)),
                    "seed {seed}: consumers saw {previous:?} then {b:?} at {}",
                    b.base
                );
            }
        }
    }

    // ---- checks ------------------------------------------------------------------------

    /// A broker just became leader: it holds every acknowledged batch and every batch seen
    /// below a high watermark, unless a crash destroyed it (the high watermark counts
    /// written offsets, as Kafka's does: a seen batch is lost when the replicas that wrote
    /// it crash before syncing it and one of them leads next).
    fn check_new_leader(&mut self, id: i32) {
        let log = &self.brokers[&id].log;
        for (base, batch) in &self.acked {
            assert_eq!(
                log.batch_at(*base),
                Some(batch),
                "seed {}: new leader {id} lacks an acknowledged batch",
                self.seed
            );
        }
        let lost = self.crash_lost.get(&id);
        let mut excused = Vec::new();
        for (base, batch) in &self.seen {
            if self.excused.contains(&batch.payload) || log.batch_at(*base) == Some(batch) {
                continue;
            }
            assert!(
                lost.is_some_and(|l| l.contains(&batch.payload)),
                "seed {}: new leader {id} lacks {batch:?}, which consumers saw",
                self.seed
            );
            excused.push(batch.payload);
        }
        self.trace(|| format!("{id} leads without seen batches lost in crashes: {excused:?}"));
        self.excused.extend(excused);
    }

    /// Every acknowledged batch is in the log of the controller's leader (once it leads) and
    /// of every live ISR member, durably unless `followers_ack_when_written`; `strict`: in
    /// every broker's log.
    fn check_acked(&self, strict: bool) {
        let state = &self.controller.state;
        let durable = !self.config.followers_ack_when_written;
        for (&id, broker) in &self.brokers {
            let Some(replica) = broker.replica.as_ref() else {
                continue;
            };
            let leads = state.leader == id
                && replica.role() == Role::Leader
                && replica.leader_epoch() == state.leader_epoch;
            let in_isr = state.isr.contains(&id);
            if !strict && !leads && !in_isr {
                continue;
            }
            for (&base, batch) in &self.acked {
                let held = broker.log.batch_at(base) == Some(batch);
                let synced = batch.last < broker.log.durable || !durable || !in_isr;
                assert!(
                    held && synced,
                    "seed {}: broker {id} lacks acknowledged {batch:?} (held {held}, durable \
                     {synced}; ISR {:?}, leader {})",
                    self.seed,
                    state.isr,
                    state.leader
                );
            }
        }
    }

    /// Heals everything, restarts the crashed, steps calmly, then checks convergence.
    fn converge(&mut self) {
        self.isolated.clear();
        self.cut.clear();
        for _ in 0..((SESSION_MS / STEP_MS) * 3 + 600) {
            self.step(CALM);
        }
        let seed = self.seed;
        let state = self.controller.state.clone();
        assert_ne!(
            state.leader, NO_LEADER,
            "seed {seed}: no leader after healing"
        );
        assert_eq!(
            state.isr.len(),
            state.replicas.len(),
            "seed {seed}: the ISR did not expand back: {state:?}"
        );
        let leader_log = &self.brokers[&state.leader].log;
        for (&id, broker) in &self.brokers {
            assert!(broker.replica.is_some(), "seed {seed}: {id} down");
            assert_eq!(
                broker.log.batches, leader_log.batches,
                "seed {seed}: broker {id} did not converge with leader {}",
                state.leader
            );
            let replica = broker.replica.as_ref().expect("alive");
            assert_eq!(replica.waiting_acks(), 0, "seed {seed}: waiters left");
        }
        let leader = self.brokers[&state.leader].replica.as_ref().expect("alive");
        assert_eq!(leader.high_watermark(), leader_log.leo(), "seed {seed}: HW");
        self.check_acked(true);
        self.check_new_leader(state.leader);
    }
}

/// Runs one seed; returns its statistics.
fn run(seed: u64, brokers: i32, steps: u64, faults: Faults, config: ReplicaConfig) -> Stats {
    let mut sim = Sim::new(seed, brokers, config);
    for _ in 0..steps {
        sim.step(faults);
    }
    sim.converge();
    if std::env::var("SIM_VERBOSE").is_ok() {
        eprintln!(
            "seed {seed}: {:?} state {:?} fenced {:?}",
            sim.stats, sim.controller.state, sim.controller.fenced
        );
    }
    sim.stats
}

/// [`run`], and on any failure (the machine's own assertions too) a panic naming the seed
/// and how to replay it.
fn run_or_name_seed(
    seed: u64,
    brokers: i32,
    steps: u64,
    faults: Faults,
    cfg: &ReplicaConfig,
) -> Stats {
    let config = cfg.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(seed, brokers, steps, faults, config)
    }));
    outcome.unwrap_or_else(|_| {
        panic!(
            "seed {seed} failed; replay: SIM_SEEDS={seed} SIM_BROKERS={brokers} SIM_MIN_ISR={} \
             SIM_RELAXED={} SIM_TRACE=1 cargo test -p spate-replication --test sim replay -- \
             --ignored --nocapture",
            cfg.min_insync_replicas,
            u8::from(cfg.followers_ack_when_written)
        )
    })
}

fn config(min_isr: usize, relaxed: bool) -> ReplicaConfig {
    ReplicaConfig {
        min_insync_replicas: min_isr,
        replica_lag_time_max_ms: 200,
        followers_ack_when_written: relaxed,
        isr_proposal_retry_ms: 300,
    }
}

fn run_many(seeds: std::ops::Range<u64>, brokers: i32, faults: Faults, cfg: ReplicaConfig) {
    let refusals_expected = cfg.min_insync_replicas > 1;
    let mut total = Stats::default();
    for seed in seeds {
        let s = run_or_name_seed(seed, brokers, 2_000, faults, &cfg);
        total.acked += s.acked;
        total.refused_min_isr += s.refused_min_isr;
        total.after_append += s.after_append;
        total.shrinks += s.shrinks;
        total.expands += s.expands;
        total.elections += s.elections;
        total.truncations += s.truncations;
    }
    eprintln!("{brokers} brokers: {total:?}");
    assert!(
        total.acked > 0 && total.shrinks > 0 && total.expands > 0,
        "{total:?}"
    );
    assert!(total.elections > 0, "{total:?}");
    assert!(total.refused_min_isr > 0 || !refusals_expected, "{total:?}");
    assert!(total.truncations > 0, "{total:?}");
}

#[test]
fn three_brokers_under_faults() {
    run_many(0..100, 3, FAULTY, config(2, false));
}

#[test]
fn five_brokers_under_faults() {
    run_many(1000..1040, 5, FAULTY, config(3, false));
}

#[test]
fn three_brokers_min_isr_one() {
    run_many(2000..2030, 3, FAULTY, config(1, false));
}

#[test]
fn followers_ack_when_written_without_crashes() {
    run_many(3000..3030, 3, NO_CRASH, config(2, true));
}

/// Replays seeds outside the regular runs:
/// `SIM_SEEDS=17 cargo test -p spate-replication --test sim replay -- --ignored --nocapture`
/// (or a range, `SIM_SEEDS=0..5000`); `SIM_BROKERS` (3), `SIM_MIN_ISR` (a majority),
/// `SIM_RELAXED=1` (followers_ack_when_written, no crashes), `SIM_STEPS` (2000),
/// `SIM_VERBOSE=1` (per-seed statistics).
#[test]
#[ignore]
fn replay() {
    let env = |name: &str, default: u64| {
        std::env::var(name).map_or(default, |v| v.parse().expect("a number"))
    };
    let seeds = std::env::var("SIM_SEEDS").unwrap_or_else(|_| "0".to_string());
    let (first, last) = match seeds.split_once("..") {
        Some((a, b)) => (a.parse().expect("seed"), b.parse().expect("seed")),
        None => {
            let seed: u64 = seeds.parse().expect("seed");
            (seed, seed + 1)
        }
    };
    let brokers = env("SIM_BROKERS", 3) as i32;
    let min_isr = env("SIM_MIN_ISR", brokers as u64 / 2 + 1) as usize;
    let relaxed = env("SIM_RELAXED", 0) == 1;
    let faults = if relaxed { NO_CRASH } else { FAULTY };
    for seed in first..last {
        run(
            seed,
            brokers,
            env("SIM_STEPS", 2_000),
            faults,
            config(min_isr, relaxed),
        );
    }
}
