//! ElectLeaders (43), as `kafka-leader-election` sends it, through the controller's
//! ElectLeaders command (the one automatic leader rebalancing proposes too).
//!
//! - Preferred (`--election-type PREFERRED`, and every v0 request): each named partition (or
//!   every partition) gets its first replica as leader when that replica is live and in sync;
//!   ELECTION_NOT_NEEDED when it already leads, PREFERRED_LEADER_NOT_AVAILABLE when it cannot.
//! - Unclean (`--election-type UNCLEAN`, election type 1): a partition without a live leader
//!   gets a live ISR member if it has one, else any live replica, which becomes the whole ISR
//!   (records only the lost ISR held are then lost, as in Kafka), under a new leader epoch;
//!   ELECTION_NOT_NEEDED when a live replica leads, ELIGIBLE_LEADERS_NOT_AVAILABLE when no
//!   replica is live.
//!
//! Other election types are answered INVALID_REQUEST.

use crate::authorizer::Authz;
use crate::handlers::code;
use crate::shard::Shard;
use controller::acl::Operation;
use controller::{ElectionResult, ElectionType, MetadataCommand, MetadataImage};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::rc::Rc;

pub async fn handle(
    shard: &Rc<Shard>,
    request: ElectLeadersRequest,
    authz: &Authz,
) -> ElectLeadersResponse {
    // Kafka: Alter on the cluster.
    if !authz.cluster(Operation::Alter) {
        return ElectLeadersResponse::default().with_error_code(code::CLUSTER_AUTHORIZATION_FAILED);
    }
    let (command, mut results) = plan(&shard.image(), &request);
    let Some(command) = command else {
        let message = ElectionType::from_kafka(request.election_type)
            .is_none()
            .then_some("unknown election type");
        return response(results, message);
    };
    if let Err(e) = shard.propose(command).await {
        tracing::warn!("leader election failed: {e}");
        for r in results.iter_mut().filter(|r| r.error_code == code::NONE) {
            r.error_code = e.kafka_error_code();
        }
    }
    response(results, None)
}

/// The outcome of the request against `image`, per partition, and the command that elects
/// the partitions that can move (None: nothing can).
fn plan(
    image: &MetadataImage,
    request: &ElectLeadersRequest,
) -> (Option<MetadataCommand>, Vec<ElectionResult>) {
    let targets: Option<Vec<(String, i32)>> = request.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
            .collect()
    });
    let Some(election) = ElectionType::from_kafka(request.election_type) else {
        let mut results = image.elections(ElectionType::Preferred, targets.as_deref());
        for r in &mut results {
            r.error_code = code::INVALID_REQUEST;
        }
        return (None, results);
    };
    let results = image.elections(election, targets.as_deref());
    let movable: Vec<(String, i32)> = results
        .iter()
        .filter(|r| r.error_code == code::NONE)
        .map(|r| (r.topic.clone(), r.partition))
        .collect();
    let command = (!movable.is_empty()).then_some(MetadataCommand::ElectLeaders {
        election,
        partitions: Some(movable),
    });
    (command, results)
}

fn response(results: Vec<ElectionResult>, message: Option<&str>) -> ElectLeadersResponse {
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for r in results {
        let message = (r.error_code != code::NONE)
            .then(|| message.map(|m| StrBytes::from_string(m.to_string())))
            .flatten();
        by_topic.entry(r.topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(r.partition)
                .with_error_code(r.error_code)
                .with_error_message(message),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            ReplicaElectionResult::default()
                .with_topic(StrBytes::from_string(topic).into())
                .with_partition_result(partitions)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use controller::{
        BrokerRegistration, MetadataRecord, PartitionRegistration, PartitionsAssigned, Placement,
        TopicMeta, NO_LEADER,
    };
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::TopicName;

    /// Brokers 1-3, `down` fenced; topic "t": partition 0 offline (ISR [1]), 1 led by 2
    /// (prefers 1), 2 offline with ISR [3] and replicas [3] only.
    fn image(down: &[i32]) -> MetadataImage {
        let reg = |replicas: &[i32], isr: &[i32], leader: i32| PartitionRegistration {
            replicas: replicas
                .iter()
                .map(|&broker| Placement { broker, shard: 0 })
                .collect(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 5,
            partition_epoch: 9,
        };
        let mut records = vec![MetadataRecord::ClusterInit {
            cluster_id: "c".into(),
        }];
        for node_id in 1..=3 {
            records.push(MetadataRecord::BrokerRegistered(Box::new(
                BrokerRegistration {
                    node_id,
                    epoch: 1,
                    host: "127.0.0.1".into(),
                    port: 9090,
                    shards: 1,
                    rack: None,
                    fenced: down.contains(&node_id),
                    endpoints: Vec::new(),
                },
            )));
        }
        let id = [7; 16];
        records.push(MetadataRecord::TopicCreated(TopicMeta {
            id,
            name: "t".into(),
            partitions: 3,
            replication_factor: 3,
            configs: BTreeMap::new(),
        }));
        records.push(MetadataRecord::PartitionsAssigned(Box::new(
            PartitionsAssigned {
                id,
                first: 0,
                partitions: vec![
                    reg(&[1, 2, 3], &[1], NO_LEADER),
                    reg(&[1, 2, 3], &[2, 1], 2),
                    reg(&[3], &[3], NO_LEADER),
                ],
            },
        )));
        MetadataImage::empty(1)
            .apply_batch(&records)
            .expect("applies")
            .0
    }

    fn request(election_type: i8, partitions: &[i32]) -> ElectLeadersRequest {
        ElectLeadersRequest::default()
            .with_election_type(election_type)
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions.to_vec())]))
    }

    fn codes(results: &[ElectionResult]) -> Vec<(i32, i16)> {
        results
            .iter()
            .map(|r| (r.partition, r.error_code))
            .collect()
    }

    #[test]
    fn unclean_elections_take_a_live_replica_where_no_live_replica_leads() {
        let image = image(&[1, 3]);
        let (command, results) = plan(&image, &request(1, &[0, 1, 2, 7]));
        // 0: offline, 2 is live (outside the ISR); 1: led; 2: its only replica is down.
        assert_eq!(codes(&results), [(0, 0), (1, 84), (2, 83), (7, 3)]);
        assert_eq!(
            command,
            Some(MetadataCommand::ElectLeaders {
                election: ElectionType::Unclean,
                partitions: Some(vec![("t".into(), 0)]),
            })
        );
        let change = results[0].change.as_ref().expect("a change");
        assert_eq!(
            (change.leader, change.isr.clone(), change.leader_epoch),
            (2, vec![2], 6)
        );
        // Nothing to move: no command.
        let (command, results) = plan(&image, &request(1, &[1]));
        assert_eq!((command, codes(&results)), (None, vec![(1, 84)]));
    }

    #[test]
    fn preferred_elections_and_unknown_types() {
        let image = image(&[]);
        let (command, results) = plan(&image, &request(0, &[0, 1]));
        // 0: the preferred replica is live and in the ISR but no one leads; 1: 1 takes over.
        assert_eq!(codes(&results), [(0, 0), (1, 0)]);
        assert!(matches!(
            command,
            Some(MetadataCommand::ElectLeaders {
                election: ElectionType::Preferred,
                ..
            })
        ));
        let (command, results) = plan(&image, &request(2, &[0, 1]));
        assert_eq!(command, None);
        assert_eq!(codes(&results), [(0, 42), (1, 42)]);
        let answer = response(results, Some("unknown election type"));
        let partitions = &answer.replica_election_results[0].partition_result;
        assert_eq!(
            partitions[0].error_message.as_deref(),
            Some("unknown election type")
        );
    }
}
