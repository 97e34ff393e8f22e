//! What a request's principal may do: the ACL checks the handlers make, as Kafka's
//! `KafkaApis` makes them (which operation on which resource for each API), against the image's
//! ACLs and the broker's authorizer settings. With the authorizer off every check passes at
//! once; an ACL change takes effect with the next request, on connections already open.

use std::rc::Rc;
use std::sync::Arc;

use super::apis::Request;
use super::Shard;
use crate::security::acl::{self, Acls, Authorizer, Operation, ResourceType, Subject};

/// One request's checks: nothing with the authorizer off (no allocation on the produce and
/// fetch paths); with it on, the principal and host, and the ACLs of the image it started on.
pub struct Authz {
    checked: Option<Checked>,
}

struct Checked {
    authorizer: Rc<Authorizer>,
    acls: Arc<Acls>,
    principal: Rc<str>,
    host: String,
}

impl Authz {
    pub fn of(shard: &Shard, request: &Request) -> Authz {
        Authz::as_principal(shard, || {
            let host = request.conn.peer.map(|p| p.ip().to_string());
            (request.conn.principal(), host.unwrap_or_default())
        })
    }

    /// The checks of `who` (principal, host), asked only with the authorizer on.
    pub fn as_principal(shard: &Shard, who: impl FnOnce() -> (Rc<str>, String)) -> Authz {
        let checked = shard.authorizer.enabled.then(|| {
            let (principal, host) = who();
            Checked {
                authorizer: shard.authorizer.clone(),
                acls: shard.image().acls.clone(),
                principal,
                host,
            }
        });
        Authz { checked }
    }

    /// No checks: everything is allowed.
    pub fn open() -> Authz {
        Authz { checked: None }
    }

    /// Whether ACLs are checked at all.
    pub fn enabled(&self) -> bool {
        self.checked.is_some()
    }

    pub fn allows(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        match &self.checked {
            None => true,
            Some(c) => c
                .authorizer
                .allows(&c.acls, c.subject(), operation, resource_type, name),
        }
    }

    /// An idempotent producer's right to its producer id: IDEMPOTENT_WRITE on the cluster, or
    /// WRITE on some topic (KIP-679).
    pub fn idempotent_write(&self) -> bool {
        match &self.checked {
            None => true,
            Some(c) => {
                self.cluster(Operation::IdempotentWrite)
                    || c.authorizer.allows_any(
                        &c.acls,
                        c.subject(),
                        Operation::Write,
                        ResourceType::Topic,
                    )
            }
        }
    }

    pub fn topic(&self, operation: Operation, topic: &str) -> bool {
        self.allows(operation, ResourceType::Topic, topic)
    }

    pub fn group(&self, operation: Operation, group: &str) -> bool {
        self.allows(operation, ResourceType::Group, group)
    }

    pub fn transactional_id(&self, operation: Operation, id: &str) -> bool {
        self.allows(operation, ResourceType::TransactionalId, id)
    }

    pub fn cluster(&self, operation: Operation) -> bool {
        self.allows(operation, ResourceType::Cluster, acl::CLUSTER)
    }

    /// Creating topic `topic`: CREATE on the cluster or on the topic.
    pub fn create_topic(&self, topic: &str) -> bool {
        self.cluster(Operation::Create) || self.topic(Operation::Create, topic)
    }

    /// The "authorized operations" bit field of Metadata, DescribeCluster and DescribeGroups:
    /// each of `operations` the principal may do on the resource.
    pub fn operations(
        &self,
        resource_type: ResourceType,
        name: &str,
        operations: &[Operation],
    ) -> i32 {
        operations
            .iter()
            .filter(|op| self.allows(**op, resource_type, name))
            .fold(0, |field, op| field | (1 << op.code()))
    }
}

impl Checked {
    fn subject(&self) -> Subject<'_> {
        Subject {
            principal: &self.principal,
            host: &self.host,
        }
    }
}
