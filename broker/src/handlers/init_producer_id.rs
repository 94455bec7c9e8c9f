//! InitProducerId (22): producer ids for idempotent producers, from the shard's block of ids
//! allocated by the controller (`producer_ids`), so they are never reused, even across
//! restarts.

use crate::handlers::code;
use crate::shard::Shard;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use std::rc::Rc;

pub async fn handle(shard: &Rc<Shard>, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if request.transactional_id.is_some() {
        // Transactions need a transaction coordinator, which Spate does not have yet.
        return response.with_error_code(code::NOT_COORDINATOR);
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
