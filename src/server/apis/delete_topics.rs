//! DeleteTopics v0-v6 (by name, or by id from v6): the topic leaves the metadata image on every
//! shard, then its owners close the logs and delete the data.

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse};
use uuid::Uuid;

use super::{str_bytes, topic_name, Answer, Api, Request};
use crate::cluster::Change;
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::controller::error_code;
use crate::server::Shard;

pub const API: Api = Api {
    key: ApiKey::DeleteTopics,
    min_version: 0,
    max_version: 6,
    handle: |shard, request| Box::pin(handle(shard, request)),
};

async fn handle(shard: Rc<Shard>, request: Request) -> Answer {
    let body: DeleteTopicsRequest = request.decode("DeleteTopicsRequest")?;
    let wanted: Vec<(Option<String>, Uuid)> = if request.version >= 6 {
        body.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        body.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut response = DeleteTopicsResponse::default();
    let authz = Authz::of(&shard, &request);
    for (name, id) in wanted {
        let mut result = DeletableTopicResult::default();
        result.topic_id = id;
        let name = match name {
            Some(name) => Some(name),
            None => shard.image().topic_by_id(id).map(|(n, _)| n.to_string()),
        };
        match name {
            None => {
                result.error_code = if id == Uuid::nil() {
                    E::InvalidRequest.code()
                } else {
                    E::UnknownTopicId.code()
                };
            }
            // DELETE on the topic (by id: refused as if unknown, as Kafka does).
            Some(name) if !authz.topic(Operation::Delete, &name) => {
                result.error_code = match id == Uuid::nil() {
                    true => E::TopicAuthorizationFailed.code(),
                    false => E::UnknownTopicId.code(),
                };
                result.name = (id == Uuid::nil()).then(|| topic_name(&name));
            }
            Some(name) => {
                result.name = Some(topic_name(&name));
                if let Some(meta) = shard.topic(&name) {
                    result.topic_id = meta.id;
                }
                if let Err(e) = shard.change(Change::DeleteTopic { name }, false).await {
                    result.error_code = error_code(&e);
                    result.error_message = Some(str_bytes(e.to_string()));
                }
            }
        }
        response.responses.push(result);
    }
    request.answer(&response)
}
