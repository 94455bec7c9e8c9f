//! Brokers of a multi-node cluster and where partitions live (pure, no IO).
//!
//! A broker registers with its listener, shard count and optional rack; the active controller
//! fences it when its heartbeats stop ([`Liveness`]) and unfences it when it comes back.
//! New partitions are placed by [`place`]: evenly over the unfenced brokers (racks
//! interleaved), then evenly over the shards of each broker.

use std::collections::BTreeMap;

/// A registered broker as stored in the image, the log and snapshots.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    /// Bumped by every registration: a restarted broker gets a new epoch.
    pub epoch: u64,
    /// The Kafka listener clients connect to.
    pub host: String,
    pub port: u16,
    pub shards: u32,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is not listed by Metadata.
    pub fenced: bool,
}

/// Where one partition lives: its (only, for now) replica, which leads it while unfenced.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Placement {
    pub broker: i32,
    pub shard: u32,
}

/// Places `count` new partitions given the current placements of every topic: each goes to
/// the unfenced broker with the fewest partitions (ties: rack-interleaved order, so
/// consecutive partitions alternate racks), then to that broker's least-loaded shard.
/// Deterministic; `None` when no broker is unfenced.
pub fn place<'a>(
    brokers: &BTreeMap<i32, BrokerRegistration>,
    existing: impl Iterator<Item = &'a Placement>,
    count: usize,
) -> Option<Vec<Placement>> {
    let order = rack_interleaved(brokers);
    if order.is_empty() {
        return None;
    }
    let mut broker_load: BTreeMap<i32, usize> = order.iter().map(|b| (b.node_id, 0)).collect();
    let mut shard_load: BTreeMap<(i32, u32), usize> = BTreeMap::new();
    for p in existing {
        if let Some(load) = broker_load.get_mut(&p.broker) {
            *load += 1;
            *shard_load.entry((p.broker, p.shard)).or_default() += 1;
        }
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let broker = order
            .iter()
            .min_by_key(|b| broker_load[&b.node_id])
            .expect("order is not empty");
        let shard = (0..broker.shards.max(1))
            .min_by_key(|s| shard_load.get(&(broker.node_id, *s)).copied().unwrap_or(0))
            .expect("at least one shard");
        *broker_load.get_mut(&broker.node_id).expect("known") += 1;
        *shard_load.entry((broker.node_id, shard)).or_default() += 1;
        out.push(Placement {
            broker: broker.node_id,
            shard,
        });
    }
    Some(out)
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

    #[test]
    fn twelve_partitions_spread_over_three_brokers_and_their_shards() {
        let bs = brokers(vec![
            broker(1, 2, None, false),
            broker(2, 2, None, false),
            broker(3, 2, None, false),
        ]);
        let ps = place(&bs, [].iter(), 12).expect("placed");
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
        let existing = [Placement {
            broker: 1,
            shard: 0,
        }; 3];
        let ps = place(&bs, existing.iter(), 5).expect("placed");
        let by = count_by(&ps, |p| p.broker);
        assert_eq!(by.get(&2), None);
        assert_eq!((by[&1], by[&3]), (1, 4));
        let all_fenced = brokers(vec![broker(1, 1, None, true)]);
        assert_eq!(place(&all_fenced, [].iter(), 1), None);
    }

    #[test]
    fn consecutive_partitions_alternate_racks() {
        let bs = brokers(vec![
            broker(1, 1, Some("a"), false),
            broker(2, 1, Some("a"), false),
            broker(3, 1, Some("b"), false),
            broker(4, 1, Some("b"), false),
        ]);
        let ps = place(&bs, [].iter(), 4).expect("placed");
        let racks: Vec<_> = ps
            .iter()
            .map(|p| bs[&p.broker].rack.clone().expect("rack"))
            .collect();
        assert_eq!(racks, ["a", "b", "a", "b"]);
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
