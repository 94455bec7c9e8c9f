//! Automatic leader rebalancing (Kafka's `auto.leader.rebalance.enable`), pure: which
//! partitions the active controller moves back to their preferred replica.
//!
//! Kafka's check (the ZooKeeper controller's `checkAndTriggerAutoLeaderRebalance`): for each
//! broker, the share of the partitions whose preferred replica (the first) it is, but which
//! another broker leads; above `leader.imbalance.per.broker.percentage`, those of them whose
//! preferred replica is live and in the ISR get a preferred election. The controller runs the
//! elections as an ordinary [`crate::MetadataCommand::ElectLeaders`], the command behind the
//! ElectLeaders API, so the rules and records are the same.

use std::collections::BTreeMap;

use crate::image::MetadataImage;

/// Partitions moved by one check at most (KRaft's `maxElectionsPerImbalance`); the next
/// check takes the rest.
pub const ELECTIONS_PER_CHECK_MAX: usize = 1000;

/// One broker's preferred partitions, as a check counts them.
#[derive(Default)]
struct Preferred {
    /// Partitions whose first replica it is.
    partitions: u64,
    /// Of those, led by another broker or by none.
    led_elsewhere: u64,
    /// Of those, the ones whose preferred replica is live and in sync now.
    movable: Vec<(String, i32)>,
}

/// The `(topic, partition)`s a rebalance check elects their preferred leader for: those of
/// every broker whose imbalance (partitions it prefers but does not lead, over partitions it
/// prefers) is above `imbalance_percentage`, whose preferred replica is live and in sync.
/// Deterministic (brokers by id, topics by name, partitions by index), at most
/// [`ELECTIONS_PER_CHECK_MAX`].
pub fn preferred_elections_due(
    image: &MetadataImage,
    imbalance_percentage: u32,
) -> Vec<(String, i32)> {
    let mut per_broker: BTreeMap<i32, Preferred> = BTreeMap::new();
    for topic in image.topics.values() {
        let Some(registrations) = image.partitions.get(&topic.id) else {
            continue;
        };
        for (index, registration) in registrations.iter().enumerate() {
            let preferred = registration.preferred_leader();
            let entry = per_broker.entry(preferred).or_default();
            entry.partitions += 1;
            if registration.leader == preferred {
                continue;
            }
            entry.led_elsewhere += 1;
            let movable = image.is_live(preferred) && registration.isr.contains(&preferred);
            if movable {
                entry.movable.push((topic.name.clone(), index as i32));
            }
        }
    }
    per_broker
        .into_values()
        .filter(|b| b.led_elsewhere * 100 > u64::from(imbalance_percentage) * b.partitions)
        .flat_map(|b| b.movable)
        .take(ELECTIONS_PER_CHECK_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{BrokerRegistration, Placement};
    use crate::image::{MetadataRecord, PartitionsAssigned, TopicMeta};
    use crate::partition::{PartitionRegistration, NO_LEADER};

    /// Brokers 1..=3 (`fenced` fenced) and topic "t" with one registration per
    /// `(replicas, isr, leader)`.
    fn image(partitions: &[(&[i32], &[i32], i32)], fenced: &[i32]) -> MetadataImage {
        let mut records = vec![MetadataRecord::ClusterInit {
            cluster_id: "c".into(),
        }];
        for node_id in 1..=3 {
            records.push(MetadataRecord::BrokerRegistered(Box::new(
                BrokerRegistration {
                    node_id,
                    epoch: 1,
                    host: "127.0.0.1".into(),
                    port: 9000,
                    shards: 1,
                    rack: None,
                    fenced: fenced.contains(&node_id),
                    endpoints: Vec::new(),
                },
            )));
        }
        let id = [7; 16];
        records.push(MetadataRecord::TopicCreated(TopicMeta {
            id,
            name: "t".into(),
            partitions: partitions.len() as i32,
            replication_factor: 3,
            configs: BTreeMap::new(),
        }));
        let registrations = partitions
            .iter()
            .map(|(replicas, isr, leader)| PartitionRegistration {
                replicas: replicas
                    .iter()
                    .map(|&broker| Placement { broker, shard: 0 })
                    .collect(),
                isr: isr.to_vec(),
                leader: *leader,
                leader_epoch: 1,
                partition_epoch: 1,
            })
            .collect();
        records.push(MetadataRecord::PartitionsAssigned(Box::new(
            PartitionsAssigned {
                id,
                first: 0,
                partitions: registrations,
            },
        )));
        MetadataImage::empty(1)
            .apply_batch(&records)
            .expect("applies")
            .0
    }

    fn names(ps: &[i32]) -> Vec<(String, i32)> {
        ps.iter().map(|p| ("t".to_owned(), *p)).collect()
    }

    #[test]
    fn balanced_leaders_need_nothing() {
        let all = [1, 2, 3];
        let img = image(
            &[
                (&[1, 2, 3], &all, 1),
                (&[2, 3, 1], &all, 2),
                (&[3, 1, 2], &all, 3),
            ],
            &[],
        );
        assert!(preferred_elections_due(&img, 0).is_empty());
    }

    #[test]
    fn a_broker_above_the_percentage_gets_its_partitions_back_where_it_can_lead() {
        let all = [1, 2, 3];
        // Broker 1 prefers four partitions and leads one: 75% imbalance. Partition 3 cannot
        // move (1 is out of its ISR). Broker 2 prefers partition 4 and leads it.
        let img = image(
            &[
                (&[1, 2, 3], &all, 1),
                (&[1, 2, 3], &all, 2),
                (&[1, 3, 2], &all, 3),
                (&[1, 2, 3], &[2, 3], 2),
                (&[2, 1, 3], &all, 2),
            ],
            &[],
        );
        assert_eq!(preferred_elections_due(&img, 10), names(&[1, 2]));
        assert_eq!(preferred_elections_due(&img, 74), names(&[1, 2]));
        // Exactly at the percentage is not above it (Kafka's `>`).
        assert!(preferred_elections_due(&img, 75).is_empty());
        assert!(preferred_elections_due(&img, 100).is_empty());
    }

    #[test]
    fn a_fenced_preferred_replica_is_left_alone_and_offline_partitions_count() {
        let img = image(
            &[(&[1, 2, 3], &[2, 3], 2), (&[2, 1, 3], &[1], NO_LEADER)],
            &[1],
        );
        // Broker 1 is fenced: its partition stays with 2. Broker 2 prefers an offline
        // partition (imbalanced), but is not in its ISR: nothing to elect.
        assert!(preferred_elections_due(&img, 0).is_empty());
        let img = image(&[(&[2, 1, 3], &[2, 1], NO_LEADER)], &[]);
        assert_eq!(preferred_elections_due(&img, 10), names(&[0]));
    }

    #[test]
    fn one_check_moves_a_bounded_number_of_partitions() {
        let all = [1, 2, 3];
        let many: Vec<(&[i32], &[i32], i32)> = (0..ELECTIONS_PER_CHECK_MAX + 5)
            .map(|_| (&all[..], &all[..], 2))
            .collect();
        let img = image(&many, &[]);
        let due = preferred_elections_due(&img, 10);
        assert_eq!(due.len(), ELECTIONS_PER_CHECK_MAX);
        assert_eq!(due[0], ("t".to_owned(), 0));
    }
}
