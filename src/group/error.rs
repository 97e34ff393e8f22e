//! Why the group coordinator refused an operation. The server answers each with the Kafka error
//! its clients expect; nothing in `group/` knows a code.

/// A refused group operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group id is empty")]
    InvalidGroupId,
    #[error("the coordinator is still loading its groups")]
    Loading,
    #[error("the group has no such member")]
    UnknownMember,
    #[error("the member's generation is not the group's")]
    IllegalGeneration,
    #[error("the group is rebalancing: join again")]
    RebalanceInProgress,
    #[error("another member holds this static instance id")]
    FencedInstance,
    #[error("the session timeout is outside the broker's bounds")]
    InvalidSessionTimeout,
    #[error("no protocol in common with the group's members")]
    InconsistentProtocol,
    #[error("the group has group.max.size members")]
    GroupFull,
    #[error("a new member must join again with the member id it was given")]
    MemberIdRequired,
    #[error("the group does not exist")]
    GroupNotFound,
    #[error("the group still has members")]
    NonEmptyGroup,
    #[error("the group consumes the topic")]
    SubscribedToTopic,
    #[error("the producer's epoch is older than the group's")]
    InvalidProducerEpoch,
    /// The coordinator cannot take the operation now (its records could not be written to
    /// `__consumer_offsets`, or its shard is stopping); another try may succeed.
    #[error("the coordinator is not available")]
    Unavailable,
    /// This shard no longer leads the group's `__consumer_offsets` partition.
    #[error("this coordinator no longer holds the group")]
    NotCoordinator,
    /// The records are larger than the partition takes.
    #[error("the group's records are too large to write")]
    TooLarge,
}

impl From<crate::shard::Unreachable> for GroupError {
    /// The coordinator's shard could not be reached (it is stopping).
    fn from(_: crate::shard::Unreachable) -> GroupError {
        GroupError::Unavailable
    }
}
