//! Partition registrations (replicas, ISR, leader, epochs) and the leader election rules
//! (pure, no IO).
//!
//! A [`PartitionRegistration`] is the controller's record of one partition: where its
//! replicas live, which of them are in sync, which leads and under which epochs. The rules
//! here decide how a registration changes when a broker is fenced or unfenced, on a
//! preferred-leader election and on a leader's ISR change (AlterPartition); they are
//! deterministic, so every voter reaches the same registrations.
//!
//! The last-ISR rule (KRaft's): a fenced broker leaves the ISR of every partition, except
//! where it is the last member; there the ISR keeps it and the partition goes offline
//! (leader -1) until that broker comes back, so an acknowledged record is never lost by
//! electing a replica that may lack it — unless the topic sets
//! `unclean.leader.election.enable`.

use crate::cluster::Placement;

/// Leader id of a partition without a leader (offline).
pub const NO_LEADER: i32 = -1;

/// One partition as stored in the image, the log and snapshots.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PartitionRegistration {
    /// Broker and shard of each replica, on distinct brokers; the first is the preferred
    /// leader.
    pub replicas: Vec<Placement>,
    /// In-sync replicas (broker ids, each a replica); never empty.
    pub isr: Vec<i32>,
    /// The leading broker (a member of the ISR), or [`NO_LEADER`].
    pub leader: i32,
    /// Bumped whenever the leader changes.
    pub leader_epoch: i32,
    /// Bumped by every change of the registration (the AlterPartition compare-and-set).
    pub partition_epoch: i32,
}

/// The leader and ISR a partition moves to; see [`PartitionRegistration::changed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderAndIsr {
    pub leader: i32,
    pub isr: Vec<i32>,
}

/// Kafka's election types (ElectLeaders' `election_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ElectionType {
    /// The first replica leads, if it is live and in sync (0).
    Preferred,
    /// A partition without a live leader gets one, from outside the ISR if need be (1).
    Unclean,
}

impl ElectionType {
    /// The type of a request's `election_type`, if Kafka defines it.
    pub fn from_kafka(election_type: i8) -> Option<ElectionType> {
        match election_type {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }
}

/// Why an election changed nothing (Kafka's error codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionRefused {
    /// Preferred: the preferred replica leads already; unclean: a live replica leads
    /// (ELECTION_NOT_NEEDED).
    NotNeeded,
    /// The preferred replica is fenced or out of sync (PREFERRED_LEADER_NOT_AVAILABLE).
    PreferredNotAvailable,
    /// Unclean: no replica is live (ELIGIBLE_LEADERS_NOT_AVAILABLE).
    EligibleNotAvailable,
}

impl ElectionRefused {
    pub fn kafka_error_code(self) -> i16 {
        match self {
            ElectionRefused::NotNeeded => 84,             // ELECTION_NOT_NEEDED
            ElectionRefused::PreferredNotAvailable => 80, // PREFERRED_LEADER_NOT_AVAILABLE
            ElectionRefused::EligibleNotAvailable => 83,  // ELIGIBLE_LEADERS_NOT_AVAILABLE
        }
    }
}

impl PartitionRegistration {
    /// A partition with one replica that leads it (epochs 0): what the records of single-
    /// replica placements (`PartitionsPlaced`) and the migration of single-node topics mean.
    pub fn single(placement: Placement) -> Self {
        PartitionRegistration {
            replicas: vec![placement],
            isr: vec![placement.broker],
            leader: placement.broker,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    /// A new partition on `replicas` (the first leads), all of them in sync.
    pub fn new(replicas: Vec<Placement>) -> Self {
        assert!(!replicas.is_empty(), "a partition has at least one replica");
        PartitionRegistration {
            isr: replicas.iter().map(|p| p.broker).collect(),
            leader: replicas[0].broker,
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    /// The replica on `broker`, if it has one.
    pub fn replica_on(&self, broker: i32) -> Option<Placement> {
        self.replicas.iter().find(|p| p.broker == broker).copied()
    }

    pub fn is_replica(&self, broker: i32) -> bool {
        self.replica_on(broker).is_some()
    }

    /// Broker ids of the replicas, preferred leader first.
    pub fn replica_brokers(&self) -> impl Iterator<Item = i32> + '_ {
        self.replicas.iter().map(|p| p.broker)
    }

    /// The preferred leader: the first replica.
    pub fn preferred_leader(&self) -> i32 {
        self.replicas[0].broker
    }

    /// Whether the registration is internally consistent: replicas on distinct brokers, a
    /// non-empty ISR of distinct replicas, a leader in the ISR (or none), epochs >= 0.
    pub fn is_consistent(&self) -> bool {
        !self.replicas.is_empty()
            && distinct(self.replica_brokers())
            && !self.isr.is_empty()
            && distinct(self.isr.iter().copied())
            && self.isr.iter().all(|b| self.is_replica(*b))
            && (self.leader == NO_LEADER || self.isr.contains(&self.leader))
            && self.leader_epoch >= 0
            && self.partition_epoch >= 0
    }

    /// The registration after moving to `to`: the leader epoch grows when the leader
    /// changes, the partition epoch always.
    pub fn changed(&self, to: LeaderAndIsr) -> PartitionRegistration {
        let leader_epoch = if to.leader == self.leader {
            self.leader_epoch
        } else {
            self.leader_epoch + 1
        };
        let next = PartitionRegistration {
            replicas: self.replicas.clone(),
            isr: to.isr,
            leader: to.leader,
            leader_epoch,
            partition_epoch: self.partition_epoch + 1,
        };
        debug_assert!(next.is_consistent(), "{next:?}");
        next
    }

    /// The first live replica in replica order among `candidates`.
    fn first_live_in(&self, candidates: &[i32], live: &impl Fn(i32) -> bool) -> Option<i32> {
        self.replica_brokers()
            .find(|b| candidates.contains(b) && live(*b))
    }

    /// An unclean choice: the first live replica, which becomes the whole ISR.
    fn unclean(&self, live: &impl Fn(i32) -> bool) -> Option<LeaderAndIsr> {
        let leader = self.replica_brokers().find(|b| live(*b))?;
        Some(LeaderAndIsr {
            leader,
            isr: vec![leader],
        })
    }

    /// What changes when `broker` is fenced (`live` already says it is not): it leaves the
    /// ISR unless it is the last member, and a partition it led gets the first live ISR
    /// member as leader, or none (with `unclean`, then any live replica with ISR = [it]).
    /// `None`: nothing changes.
    pub fn on_fenced(
        &self,
        broker: i32,
        live: impl Fn(i32) -> bool,
        unclean: bool,
    ) -> Option<LeaderAndIsr> {
        if !self.isr.contains(&broker) && self.leader != broker {
            return None;
        }
        let rest: Vec<i32> = self.isr.iter().copied().filter(|b| *b != broker).collect();
        let isr = if rest.is_empty() {
            // The last replica standing keeps its place: it may hold acknowledged records
            // no other replica has.
            self.isr.clone()
        } else {
            rest
        };
        let leader = if self.leader == broker || self.leader == NO_LEADER {
            self.first_live_in(&isr, &live).unwrap_or(NO_LEADER)
        } else {
            self.leader
        };
        if leader == NO_LEADER && unclean {
            if let Some(change) = self.unclean(&live) {
                return Some(change);
            }
        }
        let to = LeaderAndIsr { leader, isr };
        (to.leader != self.leader || to.isr != self.isr).then_some(to)
    }

    /// What changes when `broker` is unfenced (`live` already says it is): an offline
    /// partition whose ISR holds it gets it as leader (with `unclean`, also one whose ISR
    /// does not: ISR = [it]). `None`: nothing changes.
    pub fn on_unfenced(
        &self,
        broker: i32,
        live: impl Fn(i32) -> bool,
        unclean: bool,
    ) -> Option<LeaderAndIsr> {
        if self.leader != NO_LEADER || !self.is_replica(broker) {
            return None;
        }
        if let Some(leader) = self.first_live_in(&self.isr, &live) {
            return Some(LeaderAndIsr {
                leader,
                isr: self.isr.clone(),
            });
        }
        if unclean {
            return self.unclean(&live);
        }
        None
    }

    /// An election of `election` type; see [`PartitionRegistration::elect_preferred`] and
    /// [`PartitionRegistration::elect_unclean`].
    pub fn elect(
        &self,
        election: ElectionType,
        live: impl Fn(i32) -> bool,
    ) -> Result<LeaderAndIsr, ElectionRefused> {
        match election {
            ElectionType::Preferred => self.elect_preferred(live),
            ElectionType::Unclean => self.elect_unclean(live),
        }
    }

    /// A preferred-leader election: the first replica leads if it is live and in sync.
    pub fn elect_preferred(
        &self,
        live: impl Fn(i32) -> bool,
    ) -> Result<LeaderAndIsr, ElectionRefused> {
        let preferred = self.preferred_leader();
        if self.leader == preferred {
            return Err(ElectionRefused::NotNeeded);
        }
        if !live(preferred) || !self.isr.contains(&preferred) {
            return Err(ElectionRefused::PreferredNotAvailable);
        }
        Ok(LeaderAndIsr {
            leader: preferred,
            isr: self.isr.clone(),
        })
    }

    /// An unclean election (Kafka's ElectLeaders with election type UNCLEAN, KRaft's
    /// PartitionChangeBuilder): nothing to do while a live replica leads; else the first live
    /// ISR member in replica order (a clean choice, when there is one), else the first live
    /// replica, which becomes the whole ISR and may lack acknowledged records.
    pub fn elect_unclean(
        &self,
        live: impl Fn(i32) -> bool,
    ) -> Result<LeaderAndIsr, ElectionRefused> {
        if self.leader != NO_LEADER && live(self.leader) {
            return Err(ElectionRefused::NotNeeded);
        }
        if let Some(leader) = self.first_live_in(&self.isr, &live) {
            return Ok(LeaderAndIsr {
                leader,
                isr: self.isr.clone(),
            });
        }
        self.unclean(&live)
            .ok_or(ElectionRefused::EligibleNotAvailable)
    }
}

/// Whether `ids` holds no id twice.
fn distinct(ids: impl Iterator<Item = i32>) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    ids.into_iter().all(|id| seen.insert(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionRegistration {
        PartitionRegistration {
            replicas: replicas
                .iter()
                .map(|b| Placement {
                    broker: *b,
                    shard: 0,
                })
                .collect(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 7,
        }
    }

    fn live_except(down: &'static [i32]) -> impl Fn(i32) -> bool {
        move |b| !down.contains(&b)
    }

    #[test]
    fn fencing_the_leader_elects_the_next_isr_member_in_replica_order() {
        let r = reg(&[1, 2, 3], &[3, 2, 1], 1);
        let to = r.on_fenced(1, live_except(&[1]), false).expect("change");
        assert_eq!(
            to,
            LeaderAndIsr {
                leader: 2,
                isr: vec![3, 2]
            }
        );
        let next = r.changed(to);
        assert_eq!((next.leader_epoch, next.partition_epoch), (4, 8));
    }

    #[test]
    fn fencing_a_follower_only_shrinks_the_isr() {
        let r = reg(&[1, 2, 3], &[1, 2, 3], 1);
        let to = r.on_fenced(3, live_except(&[3]), false).expect("change");
        assert_eq!((to.leader, to.isr.clone()), (1, vec![1, 2]));
        let next = r.changed(to);
        assert_eq!((next.leader_epoch, next.partition_epoch), (3, 8));
        // Not in the ISR and not leading: nothing to do.
        let r = reg(&[1, 2, 3], &[1, 2], 1);
        assert_eq!(r.on_fenced(3, live_except(&[3]), false), None);
    }

    #[test]
    fn the_last_isr_member_stays_and_the_partition_goes_offline() {
        let r = reg(&[1, 2, 3], &[1], 1);
        let to = r.on_fenced(1, live_except(&[1]), false).expect("change");
        assert_eq!((to.leader, to.isr.clone()), (NO_LEADER, vec![1]));
        let offline = r.changed(to);
        assert_eq!(offline.leader_epoch, 4);
        // Another replica coming back cannot lead: it may lack acknowledged records.
        assert_eq!(offline.on_unfenced(2, live_except(&[1, 3]), false), None);
        // The last ISR member coming back leads again.
        let to = offline
            .on_unfenced(1, live_except(&[3]), false)
            .expect("back");
        assert_eq!((to.leader, to.isr), (1, vec![1]));
    }

    #[test]
    fn unclean_election_picks_any_live_replica() {
        let r = reg(&[1, 2, 3], &[1], 1);
        let to = r.on_fenced(1, live_except(&[1, 2]), true).expect("change");
        assert_eq!((to.leader, to.isr), (3, vec![3]));
        // Offline with every replica down, then a non-ISR replica returns.
        let offline = reg(&[1, 2, 3], &[1], NO_LEADER);
        let to = offline
            .on_unfenced(2, live_except(&[1, 3]), true)
            .expect("unclean");
        assert_eq!((to.leader, to.isr), (2, vec![2]));
    }

    #[test]
    fn preferred_election_cases() {
        let live = live_except(&[]);
        assert_eq!(
            reg(&[1, 2], &[1, 2], 1).elect_preferred(&live),
            Err(ElectionRefused::NotNeeded)
        );
        assert_eq!(
            reg(&[1, 2], &[2], 2).elect_preferred(&live),
            Err(ElectionRefused::PreferredNotAvailable)
        );
        assert_eq!(
            reg(&[1, 2], &[1, 2], 2).elect_preferred(live_except(&[1])),
            Err(ElectionRefused::PreferredNotAvailable)
        );
        let to = reg(&[1, 2], &[2, 1], 2)
            .elect_preferred(&live)
            .expect("moves");
        assert_eq!((to.leader, to.isr), (1, vec![2, 1]));
    }

    #[test]
    fn unclean_election_through_elect_leaders() {
        let unclean = |r: &PartitionRegistration, down: &'static [i32]| {
            r.elect(ElectionType::Unclean, live_except(down))
        };
        // A live leader: nothing to do, in or out of sync.
        let led = reg(&[1, 2, 3], &[1], 1);
        assert_eq!(unclean(&led, &[]), Err(ElectionRefused::NotNeeded));
        // Offline, its last ISR member down: the first live replica, alone in the ISR.
        let offline = reg(&[1, 2, 3], &[1], NO_LEADER);
        let to = unclean(&offline, &[1]).expect("unclean");
        assert_eq!((to.leader, to.isr.clone()), (2, vec![2]));
        let next = offline.changed(to);
        assert_eq!((next.leader_epoch, next.partition_epoch), (4, 8));
        assert_eq!(
            unclean(&offline, &[1, 2]).map(|t| (t.leader, t.isr)),
            Ok((3, vec![3]))
        );
        // A live ISR member is taken first: no record is lost when none needs to be.
        let clean = reg(&[1, 2, 3], &[3, 1], NO_LEADER);
        assert_eq!(
            unclean(&clean, &[1]).map(|t| (t.leader, t.isr)),
            Ok((3, vec![3, 1]))
        );
        // A recorded leader that is fenced counts as no leader.
        assert_eq!(
            unclean(&reg(&[1, 2], &[1], 1), &[1]).map(|t| t.leader),
            Ok(2)
        );
        // Nobody live.
        assert_eq!(
            unclean(&offline, &[1, 2, 3]),
            Err(ElectionRefused::EligibleNotAvailable)
        );
        assert_eq!(ElectionRefused::EligibleNotAvailable.kafka_error_code(), 83);
        assert_eq!(ElectionType::from_kafka(1), Some(ElectionType::Unclean));
        assert_eq!(ElectionType::from_kafka(2), None);
    }

    #[test]
    fn consistency() {
        assert!(reg(&[1, 2], &[1], 1).is_consistent());
        assert!(reg(&[1, 2], &[1], NO_LEADER).is_consistent());
        assert!(!reg(&[1, 1], &[1], 1).is_consistent());
        assert!(!reg(&[1, 2], &[], NO_LEADER).is_consistent());
        assert!(!reg(&[1, 2], &[3], 3).is_consistent());
        assert!(!reg(&[1, 2], &[1], 2).is_consistent());
    }
}
