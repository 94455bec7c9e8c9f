//! Brokers of a multi-node cluster and where partitions live (pure, no IO).
//!
//! A broker registers with its listener, shard count and optional rack; the active controller
//! fences it when its heartbeats stop ([`Liveness`]) and unfences it when it comes back.
//! New partitions are placed by [`place`]: their replicas evenly over the unfenced brokers
//! (racks interleaved, leaders balanced), then evenly over the shards of each broker.

use std::collections::BTreeMap;

use crate::partition::PartitionRegistration;

/// A registered broker as stored in the image, the log and snapshots (format 5 and the
/// `BrokerRegistered` record; older ones hold a [`LegacyBrokerRegistration`]).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    /// Bumped by every registration: a restarted broker gets a new epoch.
    pub epoch: u64,
    /// The inter-broker listener's address: where other brokers' followers fetch.
    pub host: String,
    pub port: u16,
    pub shards: u32,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is not listed by Metadata.
    pub fenced: bool,
    /// Every advertised listener (Kafka's `BrokerRegistrationRecord` endpoints); empty in
    /// registrations written before they were kept, which answer `host:port` on every
    /// listener.
    pub endpoints: Vec<BrokerEndpoint>,
}

/// One advertised listener of a broker.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BrokerEndpoint {
    /// The listener name (`PLAINTEXT`, `SSL`, `INTERNAL`, ...).
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Kafka's security protocol id: 0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT, 3 SASL_SSL.
    pub security_protocol: i16,
}

impl BrokerRegistration {
    /// Where clients that came in on listener `name` reach this broker; `None` when it has
    /// no such listener (Kafka leaves it out of their answers).
    pub fn endpoint(&self, name: &str) -> Option<(&str, u16)> {
        if self.endpoints.is_empty() {
            return Some((&self.host, self.port));
        }
        self.endpoints
            .iter()
            .find(|e| e.name == name)
            .map(|e| (e.host.as_str(), e.port))
    }
}

/// A broker registration as written before endpoints (records and snapshot formats 2 to 4).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LegacyBrokerRegistration {
    pub node_id: i32,
    pub epoch: u64,
    pub host: String,
    pub port: u16,
    pub shards: u32,
    pub rack: Option<String>,
    pub fenced: bool,
}

impl From<LegacyBrokerRegistration> for BrokerRegistration {
    fn from(old: LegacyBrokerRegistration) -> Self {
        BrokerRegistration {
            node_id: old.node_id,
            epoch: old.epoch,
            host: old.host,
            port: old.port,
            shards: old.shards,
            rack: old.rack,
            fenced: old.fenced,
            endpoints: Vec::new(),
        }
    }
}

/// Where one replica of a partition lives: a broker and the shard that holds it there.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Placement {
    pub broker: i32,
    pub shard: u32,
}

/// Replica, leader and shard counts of the brokers, from the current registrations.
#[derive(Debug, Default)]
struct Loads {
    replicas: BTreeMap<i32, usize>,
    leaders: BTreeMap<i32, usize>,
    shards: BTreeMap<(i32, u32), usize>,
}

impl Loads {
    fn of<'a>(existing: impl Iterator<Item = &'a PartitionRegistration>) -> Self {
        let mut loads = Loads::default();
        for registration in existing {
            loads.add(registration);
        }
        loads
    }

    fn add(&mut self, registration: &PartitionRegistration) {
        for p in &registration.replicas {
            *self.replicas.entry(p.broker).or_default() += 1;
            *self.shards.entry((p.broker, p.shard)).or_default() += 1;
        }
        *self
            .leaders
            .entry(registration.preferred_leader())
            .or_default() += 1;
    }

    fn replicas_on(&self, broker: i32) -> usize {
        self.replicas.get(&broker).copied().unwrap_or(0)
    }

    fn leaders_on(&self, broker: i32) -> usize {
        self.leaders.get(&broker).copied().unwrap_or(0)
    }

    /// The least-loaded shard of `broker` (lowest index on ties).
    fn shard_for(&self, broker: &BrokerRegistration) -> u32 {
        (0..broker.shards.max(1))
            .min_by_key(|s| self.shards.get(&(broker.node_id, *s)).copied().unwrap_or(0))
            .expect("at least one shard")
    }
}

/// Places `count` new partitions of `rf` replicas each, given the registrations of every
/// partition that exists: each replica on a distinct unfenced broker — the one with the
/// fewest replicas, preferring racks this partition does not use yet (ties: rack-interleaved
/// order, so consecutive partitions alternate racks) — on that broker's least-loaded shard.
/// The chosen broker that leads the fewest partitions becomes the preferred leader (first
/// replica), so leadership spreads evenly. Deterministic; `None` when fewer than `rf`
/// brokers are unfenced (or `rf` < 1).
pub fn place<'a>(
    brokers: &BTreeMap<i32, BrokerRegistration>,
    existing: impl Iterator<Item = &'a PartitionRegistration>,
    count: usize,
    rf: usize,
) -> Option<Vec<PartitionRegistration>> {
    let order = rack_interleaved(brokers);
    if rf == 0 || order.len() < rf {
        return None;
    }
    let mut loads = Loads::of(existing);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let chosen = choose_replicas(&order, &loads, rf);
        let leader = *chosen
            .iter()
            .min_by_key(|b| loads.leaders_on(b.node_id))
            .expect("rf >= 1");
        let replicas: Vec<Placement> = std::iter::once(leader)
            .chain(
                chosen
                    .iter()
                    .copied()
                    .filter(|b| b.node_id != leader.node_id),
            )
            .map(|b| Placement {
                broker: b.node_id,
                shard: loads.shard_for(b),
            })
            .collect();
        let registration = PartitionRegistration::new(replicas);
        debug_assert!(registration.is_consistent());
        loads.add(&registration);
        out.push(registration);
    }
    Some(out)
}

/// `rf` distinct brokers of `order` for one partition: each the least loaded, preferring
/// racks not used by the brokers chosen before it.
fn choose_replicas<'a>(
    order: &[&'a BrokerRegistration],
    loads: &Loads,
    rf: usize,
) -> Vec<&'a BrokerRegistration> {
    let mut chosen: Vec<&BrokerRegistration> = Vec::with_capacity(rf);
    for _ in 0..rf {
        let next = order
            .iter()
            .enumerate()
            .filter(|(_, b)| chosen.iter().all(|c| c.node_id != b.node_id))
            .min_by_key(|(position, b)| {
                let rack_used = chosen.iter().any(|c| c.rack == b.rack);
                (rack_used, loads.replicas_on(b.node_id), *position)
            })
            .map(|(_, b)| *b)
            .expect("order holds at least rf brokers");
        chosen.push(next);
    }
    chosen
}

/// Unfenced brokers ordered so that racks alternate: the first broker of each rack (racks
/// sorted, no rack first), then the second of each, and so on; brokers by id within a rack.
fn rack_interleaved(brokers: &BTreeMap<i32, BrokerRegistration>) -> Vec<&BrokerRegistration> {
    let mut racks: BTreeMap<Option<&str>, Vec<&BrokerRegistration>> = BTreeMap::new();
    for b in brokers.values().filter(|b| !b.fenced) {
        racks.entry(b.rack.as_deref()).or_default().push(b);
    }
    let deepest = racks.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for depth in 0..deepest {
        out.extend(racks.values().filter_map(|r| r.get(depth).copied()));
    }
    out
}

/// Broker liveness as the active controller sees it: the time of each broker's last
/// heartbeat. Not replicated: a new active controller starts every broker's clock afresh.
#[derive(Debug, Default)]
pub struct Liveness {
    last_seen_ms: BTreeMap<i32, u64>,
}

impl Liveness {
    pub fn heartbeat(&mut self, node_id: i32, now_ms: u64) {
        self.last_seen_ms.insert(node_id, now_ms);
    }

    /// Forgets every broker and starts the clocks of `brokers` at `now_ms` (on election).
    pub fn reset<'a>(&mut self, brokers: impl Iterator<Item = &'a i32>, now_ms: u64) {
        self.last_seen_ms = brokers.map(|b| (*b, now_ms)).collect();
    }

    /// Unfenced brokers of `image_brokers` silent for longer than `timeout_ms`.
    pub fn expired(
        &self,
        image_brokers: &BTreeMap<i32, BrokerRegistration>,
        now_ms: u64,
        timeout_ms: u64,
    ) -> Vec<i32> {
        image_brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| {
                let seen = self.last_seen_ms.get(&b.node_id).copied().unwrap_or(0);
                now_ms.saturating_sub(seen) > timeout_ms
            })
            .map(|b| b.node_id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(node_id: i32, shards: u32, rack: Option<&str>, fenced: bool) -> BrokerRegistration {
        BrokerRegistration {
            node_id,
            epoch: 1,
            host: "127.0.0.1".into(),
            port: 9000 + node_id as u16,
            shards,
            rack: rack.map(str::to_owned),
            fenced,
            endpoints: Vec::new(),
        }
    }

    fn brokers(list: Vec<BrokerRegistration>) -> BTreeMap<i32, BrokerRegistration> {
        list.into_iter().map(|b| (b.node_id, b)).collect()
    }

    fn count_by<K: Ord>(ps: &[Placement], key: impl Fn(&Placement) -> K) -> BTreeMap<K, usize> {
        let mut out = BTreeMap::new();
        for p in ps {
            *out.entry(key(p)).or_default() += 1;
        }
        out
    }

    /// The first replica of each registration (RF=1: the only one).
    fn leaders(rs: &[PartitionRegistration]) -> Vec<Placement> {
        rs.iter().map(|r| r.replicas[0]).collect()
    }

    fn all_replicas(rs: &[PartitionRegistration]) -> Vec<Placement> {
        rs.iter().flat_map(|r| r.replicas.clone()).collect()
    }

    #[test]
    fn twelve_partitions_spread_over_three_brokers_and_their_shards() {
        let bs = brokers(vec![
            broker(1, 2, None, false),
            broker(2, 2, None, false),
            broker(3, 2, None, false),
        ]);
        let ps = leaders(&place(&bs, [].iter(), 12, 1).expect("placed"));
        assert_eq!(
            count_by(&ps, |p| p.broker)
                .into_values()
                .collect::<Vec<_>>(),
            [4, 4, 4]
        );
        assert!(count_by(&ps, |p| (p.broker, p.shard))
            .values()
            .all(|n| *n == 2));
    }

    #[test]
    fn fenced_brokers_get_nothing_and_existing_load_is_balanced() {
        let bs = brokers(vec![
            broker(1, 1, None, false),
            broker(2, 1, None, true),
            broker(3, 1, None, false),
        ]);
        let existing = vec![
            PartitionRegistration::single(Placement {
                broker: 1,
                shard: 0,
            });
            3
        ];
        let ps = leaders(&place(&bs, existing.iter(), 5, 1).expect("placed"));
        let by = count_by(&ps, |p| p.broker);
        assert_eq!(by.get(&2), None);
        assert_eq!((by[&1], by[&3]), (1, 4));
        let all_fenced = brokers(vec![broker(1, 1, None, true)]);
        assert_eq!(place(&all_fenced, [].iter(), 1, 1), None);
        // Two live brokers cannot hold three replicas.
        assert_eq!(place(&bs, [].iter(), 1, 3), None);
        assert_eq!(place(&bs, [].iter(), 1, 0), None);
    }

    #[test]
    fn consecutive_partitions_alternate_racks() {
        let bs = brokers(vec![
            broker(1, 1, Some("a"), false),
            broker(2, 1, Some("a"), false),
            broker(3, 1, Some("b"), false),
            broker(4, 1, Some("b"), false),
        ]);
        let ps = leaders(&place(&bs, [].iter(), 4, 1).expect("placed"));
        let racks: Vec<_> = ps
            .iter()
            .map(|p| bs[&p.broker].rack.clone().expect("rack"))
            .collect();
        assert_eq!(racks, ["a", "b", "a", "b"]);
    }

    #[test]
    fn replicas_are_on_distinct_brokers_and_racks_and_leaders_are_balanced() {
        let bs = brokers(vec![
            broker(1, 2, Some("a"), false),
            broker(2, 2, Some("a"), false),
            broker(3, 2, Some("b"), false),
            broker(4, 2, Some("b"), false),
            broker(5, 2, Some("c"), false),
            broker(6, 2, Some("c"), true),
        ]);
        let rs = place(&bs, [].iter(), 20, 3).expect("placed");
        for r in &rs {
            assert!(r.is_consistent(), "{r:?}");
            assert_eq!((r.replicas.len(), r.isr.len()), (3, 3));
            assert_eq!(r.leader, r.replicas[0].broker);
            let racks: std::collections::BTreeSet<_> = r
                .replicas
                .iter()
                .map(|p| bs[&p.broker].rack.clone())
                .collect();
            assert_eq!(racks.len(), 3, "one replica per rack: {r:?}");
            assert!(r.replicas.iter().all(|p| p.broker != 6 && p.shard < 2));
        }
        let leads = count_by(&leaders(&rs), |p| p.broker);
        assert_eq!(leads.len(), 5, "{leads:?}");
        assert!(leads.values().all(|n| *n == 4), "{leads:?}");
        let replicas = count_by(&all_replicas(&rs), |p| p.broker);
        let (min, max) = (replicas.values().min(), replicas.values().max());
        assert!(max.unwrap() - min.unwrap() <= 10, "{replicas:?}");
        let shards = count_by(&all_replicas(&rs), |p| (p.broker, p.shard));
        for broker in 1..=5 {
            let (a, b) = (shards[&(broker, 0)], shards[&(broker, 1)]);
            assert!(a.abs_diff(b) <= 1, "broker {broker}: {a} vs {b}");
        }
        // Deterministic.
        assert_eq!(place(&bs, [].iter(), 20, 3), Some(rs));
    }

    #[test]
    fn three_replicas_on_three_brokers_rotate_the_leader() {
        let bs = brokers(vec![
            broker(1, 1, None, false),
            broker(2, 1, None, false),
            broker(3, 1, None, false),
        ]);
        let rs = place(&bs, [].iter(), 6, 3).expect("placed");
        let leaders: Vec<i32> = rs.iter().map(|r| r.leader).collect();
        assert_eq!(leaders, [1, 2, 3, 1, 2, 3]);
        // Existing leadership counts: broker 1 leads the most, so it leads none of these.
        let more = place(&bs, rs[..4].iter(), 2, 3).expect("placed");
        assert!(more.iter().all(|r| r.leader != 1), "{more:?}");
    }

    #[test]
    fn liveness_expires_silent_unfenced_brokers() {
        let bs = brokers(vec![
            broker(1, 1, None, false),
            broker(2, 1, None, false),
            broker(3, 1, None, true),
        ]);
        let mut l = Liveness::default();
        l.reset(bs.keys(), 1000);
        l.heartbeat(1, 5000);
        assert_eq!(l.expired(&bs, 5000, 9000), Vec::<i32>::new());
        assert_eq!(l.expired(&bs, 10_001, 9000), vec![2]);
        assert_eq!(l.expired(&bs, 14_001, 9000), vec![1, 2]);
    }
}
