//! The controller as the server reaches it: metadata changes and producer ids go to the
//! controller shard, whose `cluster::Controller` makes them; each new image is handed to every
//! shard before the change is answered. The mapping of a refused change to the Kafka error a
//! client understands is here too.

use std::rc::Rc;
use std::sync::Arc;

use super::Shard;
use crate::cluster::{Change, ChangeError, Controller, Image, TopicMeta};
use crate::model::{NodeId, ShardId};
use crate::protocol::ResponseError as E;

/// The shard that makes the metadata changes and hands out producer ids (until the metadata
/// quorum takes these over).
pub const CONTROLLER_SHARD: ShardId = ShardId(0);

/// A request refused, with the Kafka error to answer and a message for the client.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub code: i16,
    pub message: String,
}

impl Refusal {
    pub fn new(code: E, message: impl Into<String>) -> Refusal {
        Refusal {
            code: code.code(),
            message: message.into(),
        }
    }
}

impl From<ChangeError> for Refusal {
    fn from(error: ChangeError) -> Refusal {
        Refusal {
            code: error_code(&error),
            message: error.to_string(),
        }
    }
}

/// The Kafka error code for a refused change.
pub fn error_code(error: &ChangeError) -> i16 {
    match error {
        ChangeError::InvalidTopicName(_) => E::InvalidTopicException,
        ChangeError::TopicExists(_) => E::TopicAlreadyExists,
        ChangeError::TopicIdInUse(_) => E::UnknownServerError,
        ChangeError::UnknownTopic(_) => E::UnknownTopicOrPartition,
        ChangeError::UnknownBroker(_) => E::BrokerNotAvailable,
        ChangeError::UnknownPartition(..) => E::UnknownTopicOrPartition,
        ChangeError::InvalidReplicas(_) => E::InvalidReplicaAssignment,
        ChangeError::NoReassignment(..) => E::NoReassignmentInProgress,
        ChangeError::InvalidPartitions(_) => E::InvalidPartitions,
        ChangeError::InvalidReplicationFactor { .. } => E::InvalidReplicationFactor,
        ChangeError::StaleEpoch => E::FencedLeaderEpoch,
        // INELIGIBLE_REPLICA (KIP-903), newer than the protocol crate.
        ChangeError::IneligibleReplica(_) => E::Unknown(107),
        ChangeError::InvalidConfig(_) => E::InvalidConfig,
        ChangeError::PolicyViolation(_) => E::PolicyViolation,
        ChangeError::NotStored(_) => E::KafkaStorageError,
        ChangeError::NoController(_) => E::NotController,
        ChangeError::NoCredential(..) => E::ResourceNotFound,
        ChangeError::UnacceptableCredential(_) => E::UnacceptableCredential,
        ChangeError::InvalidAcl(_) => E::InvalidRequest,
    }
    .code()
}

impl Shard {
    /// A metadata change, made by the controller shard; returns once every shard holds the new
    /// image. The topic's metadata after the change, if it still exists.
    pub async fn change(
        &self,
        change: Change,
        validate_only: bool,
    ) -> Result<Option<TopicMeta>, ChangeError> {
        self.mesh
            .route(CONTROLLER_SHARD, move |shard| async move {
                shard.change_local(change, validate_only).await
            })
            .await
            .unwrap_or_else(|e| Err(ChangeError::NoController(e.to_string())))
    }

    /// The metadata quorum's voters and learners as this node's raft has them (None where
    /// the node has no controller).
    pub async fn quorum_membership(&self) -> Option<(Vec<NodeId>, Vec<NodeId>)> {
        self.mesh
            .route(CONTROLLER_SHARD, |shard| async move {
                let controller = shard.controller().ok()?;
                Some(controller.quorum().membership())
            })
            .await
            .ok()
            .flatten()
    }

    /// A new producer id from the controller shard.
    pub async fn new_producer_id(&self) -> Result<i64, ChangeError> {
        self.mesh
            .route(CONTROLLER_SHARD, |shard| async move {
                let id = shard
                    .controller()?
                    .new_producer_id(|image| shard.publish(image))
                    .await;
                id.inspect_err(
                    |e| tracing::error!(error = %e, "cannot allocate a block of producer ids"),
                )
            })
            .await
            .unwrap_or_else(|e| Err(ChangeError::NoController(e.to_string())))
    }

    /// Creates `topic` with the broker's defaults if auto-creation is on and it does not exist.
    /// `auto.create.topics.enable`, as it is now.
    pub fn auto_create_enabled(&self) -> bool {
        self.broker().bool("auto.create.topics.enable")
    }

    pub async fn auto_create(&self, topic: &str) -> Option<TopicMeta> {
        if let Some(meta) = self.topic(topic) {
            return Some(meta);
        }
        if !self.broker().bool("auto.create.topics.enable") {
            return None;
        }
        let broker = self.broker();
        let change = Change::CreateTopic {
            name: topic.to_string(),
            id: uuid::Uuid::new_v4(),
            partitions: broker.i32("num.partitions"),
            replication_factor: broker.i32("default.replication.factor").clamp(1, 1 << 15) as u16,
            configs: Default::default(),
            assignments: None,
        };
        match self.change(change, false).await {
            Ok(meta) => meta,
            Err(ChangeError::TopicExists(_)) => self.topic(topic),
            Err(e) => {
                tracing::debug!(topic, error = %e, "auto-creation refused");
                None
            }
        }
    }

    fn controller(&self) -> Result<&Controller, ChangeError> {
        self.controller.as_ref().ok_or_else(|| {
            ChangeError::NoController(format!("shard {} is not the controller", self.id))
        })
    }

    /// Makes `change` on the controller shard (refusing partitions the node cannot hold).
    async fn change_local(
        &self,
        change: Change,
        validate_only: bool,
    ) -> Result<Option<TopicMeta>, ChangeError> {
        let grows = matches!(
            change,
            Change::CreateTopic { .. }
                | Change::CreatePartitions { .. }
                | Change::ReassignPartition { .. }
        );
        let admit = |current: &Image, next: &Image| {
            if grows {
                self.check_partition_room(current, next)
            } else {
                Ok(())
            }
        };
        self.controller()?
            .change(&change, validate_only, admit, |image| self.publish(image))
            .await
    }

    /// Hands a new image to every shard, all at once (each opens the partitions it gains: a
    /// wide topic's are opened by every shard side by side), and returns once all have it.
    pub(super) async fn publish(&self, image: Arc<Image>) {
        let others = self.mesh.peers().map(|peer| {
            let image = image.clone();
            async move {
                let held = self
                    .mesh
                    .remote(
                        peer,
                        move |shard| async move { shard.apply_image(image).await },
                    )
                    .await;
                if let Err(e) = held {
                    tracing::warn!(%peer, error = %e, "a shard did not take the new metadata image");
                }
            }
        });
        futures::future::join(
            futures::future::join_all(others),
            self.apply_image(image.clone()),
        )
        .await;
    }

    async fn apply_image(&self, image: Arc<Image>) {
        if image.revision <= self.image.borrow().revision {
            return;
        }
        *self.broker.borrow_mut() = Rc::new(image.broker_values(&self.static_broker));
        *self.image.borrow_mut() = image;
        if let Err((count, first)) = self.reconcile_partitions().await {
            tracing::error!(
                shard = %self.id, count, first = %first,
                "cannot open new partitions' logs; they answer KAFKA_STORAGE_ERROR until they open"
            );
        }
    }
}
