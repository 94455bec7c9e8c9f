//! CreatePartitions (API 37): grows topics. On a single node the new partitions are sharded
//! by hash like the others; a multi-node controller places them on brokers.

use super::code;
use crate::authorizer::Authz;
use crate::shard::Shard;
use controller::acl::Operation;
use controller::MetadataCommand;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use std::collections::HashMap;
use std::rc::Rc;

const INVALID_REPLICA_ASSIGNMENT: i16 = 39;

pub async fn create(
    shard: &Rc<Shard>,
    request: CreatePartitionsRequest,
    authz: &Authz,
) -> CreatePartitionsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for topic in &request.topics {
        *seen.entry(topic.name.to_string()).or_default() += 1;
    }
    let node_id = shard.config.node_id;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.to_string();
        let (error_code, message) = if seen[&name] > 1 {
            (
                code::INVALID_REQUEST,
                format!("topic '{name}' appears more than once"),
            )
        } else if !authz.topic(Operation::Alter, &name) {
            let reason = "Authorization failed.".to_string();
            (code::TOPIC_AUTHORIZATION_FAILED, reason)
        } else if name == crate::group::OFFSETS_TOPIC {
            // Groups are placed by a hash modulo its partition count.
            let reason = format!("the partition count of {name} cannot change");
            (code::INVALID_REQUEST, reason)
        } else if topic
            .assignments
            .iter()
            .flatten()
            .flat_map(|a| a.broker_ids.iter())
            .any(|b| b.0 != node_id)
        {
            (
                INVALID_REPLICA_ASSIGNMENT,
                format!("replica assignments may only name broker {node_id}"),
            )
        } else {
            let command = MetadataCommand::CreatePartitions {
                name: name.clone(),
                total: topic.count,
            };
            let result = if request.validate_only {
                shard.image().propose(command, || [0x42; 16]).map(|_| ())
            } else {
                shard.propose(command).await.map(|_| ())
            };
            match result {
                Ok(()) => (code::NONE, String::new()),
                Err(e) => (e.kafka_error_code(), e.to_string()),
            }
        };
        let mut result = CreatePartitionsTopicResult::default()
            .with_name(topic.name)
            .with_error_code(error_code);
        if error_code != code::NONE {
            result = result.with_error_message(Some(StrBytes::from_string(message)));
        }
        results.push(result);
    }
    CreatePartitionsResponse::default().with_results(results)
}
