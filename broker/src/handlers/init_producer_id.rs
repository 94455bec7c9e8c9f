//! InitProducerId (22): producer ids for idempotent producers, from the shard's block of ids
//! allocated by the controller (`producer_ids`), so they are never reused, even across
//! restarts.

use crate::authorizer::Authz;
use crate::handlers::code;
use crate::shard::Shard;
use controller::acl::{Operation, ResourceType};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use std::rc::Rc;

pub async fn handle(
    shard: &Rc<Shard>,
    request: InitProducerIdRequest,
    authz: &Authz,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if let Some(id) = &request.transactional_id {
        if !authz.allows(Operation::Write, ResourceType::TransactionalId, id.as_str()) {
            return response.with_error_code(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        }
        // Transactions need a transaction coordinator, which Spate does not have yet.
        return response.with_error_code(code::NOT_COORDINATOR);
    }
    // Kafka: IdempotentWrite on the cluster, or Write on some topic.
    let idempotent = authz.cluster(Operation::IdempotentWrite)
        || authz.allows_any(Operation::Write, ResourceType::Topic);
    if !idempotent {
        return response.with_error_code(code::CLUSTER_AUTHORIZATION_FAILED);
    }
    // An idempotent producer that knows its id asks for an epoch bump (KIP-360).
    if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX - 1
    {
        return response
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    match crate::producer_ids::next_producer_id(shard).await {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => response.with_error_code(e.kafka_error_code()),
    }
}
