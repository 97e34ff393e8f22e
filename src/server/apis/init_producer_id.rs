//! InitProducerId v0-v5 for idempotent producers: every call gets a fresh producer id at epoch 0
//! (as Kafka does without a transactional id, including the KIP-360 re-initialisation that
//! names the old id and epoch). Transactional ids wait for the transaction coordinator.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{Answer, Api, Request};
use crate::protocol::ResponseError as E;
use crate::server::Shard;

pub const API: Api = Api {
    key: ApiKey::InitProducerId,
    min_version: 0,
    max_version: 5,
    handle: |shard, request| Box::pin(init_producer_id(shard, request)),
};

async fn init_producer_id(shard: Rc<Shard>, request: Request) -> Answer {
    let body: InitProducerIdRequest = request.decode("InitProducerIdRequest")?;
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    match body.transactional_id.as_deref().map(|id| id.is_empty()) {
        None => {}
        // As Kafka: an empty transactional id is a malformed request.
        Some(true) => {
            response.error_code = E::InvalidRequest.code();
            return request.answer(&response);
        }
        Some(false) => {
            response.error_code = E::CoordinatorNotAvailable.code();
            return request.answer(&response);
        }
    }
    match shard.new_producer_id().await {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(code) => response.error_code = code,
    }
    request.answer(&response)
}
