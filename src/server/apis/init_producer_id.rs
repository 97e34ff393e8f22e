//! InitProducerId v0-v5. Without a transactional id every call gets a fresh producer id at epoch 0
//! (as Kafka does, including the KIP-360 re-initialisation that names the old id and epoch); with
//! one, the transaction coordinator of that id answers (crate::txn), bumping its epoch.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::transactions::fenced_for;
use super::{Answer, Api, Request};
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
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
    // WRITE on the transactional id; an idempotent producer, IDEMPOTENT_WRITE (or WRITE on a
    // topic).
    let authz = Authz::of(&shard, &request);
    let refused = match &body.transactional_id {
        Some(id) if !id.is_empty() => (!authz.transactional_id(Operation::Write, id))
            .then_some(E::TransactionalIdAuthorizationFailed),
        _ => (!authz.idempotent_write()).then_some(E::ClusterAuthorizationFailed),
    };
    if let Some(error) = refused {
        response.error_code = error.code();
        return request.answer(&response);
    }
    match body.transactional_id.as_deref().map(|id| id.is_empty()) {
        None => {}
        // As Kafka: an empty transactional id is a malformed request.
        Some(true) => {
            response.error_code = E::InvalidRequest.code();
            return request.answer(&response);
        }
        Some(false) => {
            let id = body.transactional_id.as_ref().map(|t| t.0.to_string());
            let id = id.unwrap_or_default();
            let expected = (request.version >= 3 && body.producer_id.0 >= 0)
                .then_some((body.producer_id.0, body.producer_epoch));
            let answer = match shard.ensure_txn_topic().await {
                Err(code) => Err(code),
                Ok(()) => {
                    let timeout_ms = body.transaction_timeout_ms;
                    let id_sent = id.clone();
                    let initiated = shard.on_txn(&id, move |shard| async move {
                        let txns = &shard.txns;
                        txns.init_producer_id(&id_sent, timeout_ms, expected).await
                    });
                    let initiated = initiated.await.and_then(|result| result);
                    initiated.map_err(crate::server::transactions::error_code)
                }
            };
            match answer {
                Ok((producer_id, epoch)) => {
                    response.producer_id = ProducerId(producer_id);
                    response.producer_epoch = epoch;
                }
                Err(code) => response.error_code = fenced_for(request.version, 4, code),
            }
            return request.answer(&response);
        }
    }
    match shard.new_producer_id().await {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        // As Kafka answers when no producer id block can be had.
        Err(_) => response.error_code = E::CoordinatorNotAvailable.code(),
    }
    request.answer(&response)
}
