//! ElectLeaders (43): preferred-leader elections (`kafka-leader-election --election-type
//! PREFERRED`): each named partition (or every partition) gets its first replica as leader when
//! that replica is live and in sync; ELECTION_NOT_NEEDED when it already leads,
//! PREFERRED_LEADER_NOT_AVAILABLE when it cannot. Unclean elections through this API are not
//! served (a topic's `unclean.leader.election.enable` is the way).

use crate::handlers::code;
use crate::shard::Shard;
use controller::{ElectionResult, MetadataCommand};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Kafka's election types.
const PREFERRED: i8 = 0;

pub async fn handle(shard: &Rc<Shard>, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let targets: Option<Vec<(String, i32)>> = request.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
            .collect()
    });
    let mut results = shard.image().preferred_elections(targets.as_deref());
    if request.election_type != PREFERRED {
        for r in &mut results {
            r.error_code = code::INVALID_REQUEST;
        }
        return response(results, Some("only preferred elections are served"));
    }
    let movable: Vec<(String, i32)> = results
        .iter()
        .filter(|r| r.error_code == code::NONE)
        .map(|r| (r.topic.clone(), r.partition))
        .collect();
    if !movable.is_empty() {
        let command = MetadataCommand::ElectLeaders {
            partitions: Some(movable),
        };
        if let Err(e) = shard.propose(command).await {
            tracing::warn!("preferred leader election failed: {e}");
            for r in results.iter_mut().filter(|r| r.error_code == code::NONE) {
                r.error_code = e.kafka_error_code();
            }
        }
    }
    response(results, None)
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
