//! One file per Kafka API, each declaring its version range and handler once; [`APIS`] is both
//! the dispatch table and the source of the ApiVersions answer, so the two cannot disagree.

/// Declares an [`Api`] for a handler: `api!(NAME, ApiKeyVariant, min, max, handler)`.
macro_rules! api {
    ($name:ident, $key:ident, $min:expr, $max:expr, $handler:ident) => {
        pub const $name: Api = Api {
            key: kafka_protocol::messages::ApiKey::$key,
            min_version: $min,
            max_version: $max,
            handle: |shard, request| Box::pin($handler(shard, request)),
        };
    };
}

mod acls;
mod api_versions;
mod configs;
mod create_topics;
mod delete_topics;
mod describe_producers;
mod fetch;
mod groups;
mod init_producer_id;
mod leader_epoch;
mod list_offsets;
mod metadata;
mod offsets;
mod produce;
mod reassignments;
mod sasl;
mod topics_admin;
mod transactions;
mod write_txn_markers;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::auth::Conn;
use super::connection::Close;
use super::Shard;
use crate::protocol::{self, ProtocolError, Response};

pub type Answer = Result<Option<Response>, ProtocolError>;
pub type AnswerFuture = Pin<Box<dyn Future<Output = Answer>>>;

/// A request, routed and with its header decoded; `body` is the rest of the frame.
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    /// The header's client id ("" when null).
    pub client_id: String,
    /// The peer, as Kafka reports it in group descriptions (`/127.0.0.1`).
    pub client_host: String,
    /// The connection's listener and principal.
    pub conn: Rc<Conn>,
    body: Bytes,
    /// The bounded walk's acceptance of the whole frame: the only way to `decode`.
    checked: protocol::Checked,
}

impl Request {
    pub fn decode<M: Decodable>(&self, what: &'static str) -> Result<M, ProtocolError> {
        protocol::decode_body(what, self.body.clone(), self.version, &self.checked)
    }

    pub fn answer<M: Encodable>(&self, body: &M) -> Answer {
        protocol::encode_response(self.api_key, self.version, self.correlation_id, body).map(Some)
    }
}

pub struct Api {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
    pub handle: fn(Rc<Shard>, Request) -> AnswerFuture,
}

/// Every API this broker answers, with exactly the versions it implements in full.
pub const APIS: &[Api] = &[
    produce::API,
    fetch::API,
    list_offsets::API,
    metadata::API,
    api_versions::API,
    create_topics::API,
    delete_topics::API,
    configs::DESCRIBE,
    configs::ALTER,
    configs::INCREMENTAL_ALTER,
    topics_admin::CREATE_PARTITIONS,
    topics_admin::DELETE_RECORDS,
    topics_admin::DESCRIBE_CLUSTER,
    reassignments::ELECT_LEADERS,
    reassignments::ALTER_REASSIGNMENTS,
    reassignments::LIST_REASSIGNMENTS,
    leader_epoch::API,
    init_producer_id::API,
    describe_producers::API,
    write_txn_markers::API,
    transactions::ADD_PARTITIONS,
    transactions::ADD_OFFSETS,
    transactions::END_TXN,
    transactions::TXN_OFFSET_COMMIT,
    transactions::DESCRIBE,
    transactions::LIST,
    groups::FIND_COORDINATOR,
    groups::JOIN,
    groups::SYNC,
    groups::HEARTBEAT,
    groups::LEAVE,
    offsets::OFFSET_COMMIT,
    offsets::OFFSET_FETCH,
    groups::DESCRIBE,
    groups::LIST,
    groups::DELETE,
    offsets::OFFSET_DELETE,
    sasl::HANDSHAKE,
    sasl::AUTHENTICATE,
    sasl::DESCRIBE_SCRAM,
    sasl::ALTER_SCRAM,
    acls::DESCRIBE,
    acls::CREATE,
    acls::DELETE,
    topics_admin::UNREGISTER_BROKER,
];

/// Every API key this broker answers, with its version range (for tests and fuzz seeds).
pub fn served() -> impl Iterator<Item = (i16, std::ops::RangeInclusive<i16>)> {
    APIS.iter()
        .map(|api| (api.key as i16, api.min_version..=api.max_version))
}

pub enum Dispatch {
    /// The future that answers, the memory its request takes decoded (the frame aside), and
    /// its API (for the metrics).
    Run(AnswerFuture, u64, ApiKey),
    Close(Close),
}

/// The most memory one request may take decoded, beside its frame (the bounded walk's
/// estimate): a Metadata request for 100,000 topics takes about 6 MiB.
pub const REQUEST_DECODED_BYTES_MAX: u64 = 64 << 20;

/// Routes a frame: the future that answers it, or why the connection closes instead.
pub fn dispatch(
    shard: &Rc<Shard>,
    mut frame: Bytes,
    conn: &Rc<Conn>,
    name_client: Option<tracing::Span>,
) -> Dispatch {
    let prefix = match protocol::parse_prefix(&frame) {
        Ok(prefix) => prefix,
        Err(e) => return Dispatch::Close(Close::Protocol(e)),
    };
    let api = ApiKey::try_from(prefix.api_key)
        .ok()
        .and_then(|key| APIS.iter().find(|api| api.key == key));
    let Some(api) = api else {
        return Dispatch::Close(Close::UnknownApi {
            api_key: prefix.api_key,
        });
    };
    if !(api.min_version..=api.max_version).contains(&prefix.api_version) {
        if api.key == ApiKey::ApiVersions {
            // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges.
            return Dispatch::Run(
                Box::pin(api_versions::unsupported(prefix.correlation_id)),
                0,
                api.key,
            );
        }
        return Dispatch::Close(Close::UnsupportedVersion {
            api_key: prefix.api_key,
            version: prefix.api_version,
        });
    }
    if !conn.allows(api.key) {
        return Dispatch::Close(Close::Unauthenticated {
            api_key: prefix.api_key,
        });
    }
    // KIP-368: an expired session may only re-authenticate.
    if api.key != ApiKey::SaslHandshake && !conn.authenticating() && conn.expired() {
        shard.metrics.expired_session();
        return Dispatch::Close(Close::SessionExpired);
    }
    let limits = protocol::bounded::Limits {
        decoded_bytes_max: REQUEST_DECODED_BYTES_MAX,
    };
    let checked = match protocol::check_request(api.key, prefix, &frame, limits) {
        Ok(checked) => checked,
        Err(e) => return Dispatch::Close(Close::Protocol(e)),
    };
    let header = match protocol::decode_header(api.key, prefix.api_version, &mut frame, &checked) {
        Ok(header) => header,
        Err(e) => return Dispatch::Close(Close::Protocol(e)),
    };
    let request = Request {
        api_key: api.key,
        version: prefix.api_version,
        correlation_id: prefix.correlation_id,
        client_id: header.client_id.map(|c| c.to_string()).unwrap_or_default(),
        client_host: conn
            .peer
            .map(|p| format!("/{}", p.ip()))
            .unwrap_or_default(),
        conn: conn.clone(),
        body: frame,
        checked,
    };
    if let Some(span) = name_client {
        span.record("client", request.client_id.as_str());
    }
    let decoded_bytes = request.checked.decoded_bytes();
    Dispatch::Run((api.handle)(shard.clone(), request), decoded_bytes, api.key)
}

/// The "authorized operations" fields of Metadata, DescribeCluster and DescribeGroups: the
/// operations the resource type supports (Kafka's `AclEntry.supportedOperations`) that the
/// principal may do, as a bit field of operation codes (every one of them with the authorizer
/// off), and `NOT_ASKED` when the request did not ask.
pub mod authorized {
    use crate::security::acl::{self, Operation::*, ResourceType};
    use crate::server::authz::Authz;

    pub const NOT_ASKED: i32 = i32::MIN;

    const TOPIC: &[acl::Operation] = &[
        Read,
        Write,
        Create,
        Describe,
        Delete,
        Alter,
        DescribeConfigs,
        AlterConfigs,
    ];
    const CLUSTER: &[acl::Operation] = &[
        Create,
        ClusterAction,
        DescribeConfigs,
        AlterConfigs,
        IdempotentWrite,
        Alter,
        Describe,
    ];
    const GROUP: &[acl::Operation] = &[Read, Describe, Delete];

    fn when(asked: bool, field: impl FnOnce() -> i32) -> i32 {
        if asked {
            field()
        } else {
            NOT_ASKED
        }
    }

    pub fn topic(authz: &Authz, asked: bool, name: &str) -> i32 {
        when(asked, || authz.operations(ResourceType::Topic, name, TOPIC))
    }

    pub fn cluster(authz: &Authz, asked: bool) -> i32 {
        when(asked, || {
            authz.operations(ResourceType::Cluster, acl::CLUSTER, CLUSTER)
        })
    }

    pub fn group(authz: &Authz, asked: bool, name: &str) -> i32 {
        when(asked, || authz.operations(ResourceType::Group, name, GROUP))
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// KIP-951: the live leader of `topic`'s `partition` now, its leader epoch and its address, for
/// a client told NOT_LEADER_OR_FOLLOWER (or FENCED_LEADER_EPOCH) to move there at once.
pub fn leader_now<'a>(
    image: &'a crate::cluster::Image,
    topic: &str,
    partition: i32,
) -> Option<(i32, i32, &'a crate::cluster::BrokerMeta)> {
    let meta = image.topics.get(topic)?;
    let a = meta.assignments.get(usize::try_from(partition).ok()?)?;
    if image.fenced.contains(&a.leader) {
        return None;
    }
    let broker = image.brokers.get(&a.leader)?;
    Some((a.leader.0, a.leader_epoch.0, broker))
}

/// Adds `partition` to the entry for `topic` in a request's or response's topics: the last entry,
/// since partitions come topic by topic, or a new one.
pub fn add_to_topic<T: Default, P>(
    topics: &mut Vec<T>,
    topic: &str,
    partition: P,
    fields: impl Fn(&mut T) -> (&mut TopicName, &mut Vec<P>),
) {
    let same = topics
        .last_mut()
        .is_some_and(|t| fields(t).0 .0.as_str() == topic);
    if !same {
        let mut entry = T::default();
        *fields(&mut entry).0 = TopicName(StrBytes::from_string(topic.to_string()));
        topics.push(entry);
    }
    let last = topics.last_mut().expect("pushed above");
    fields(last).1.push(partition);
}

pub fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}
