//! Why the transaction coordinator refused an operation. The server answers each with the Kafka
//! error its clients expect; nothing in `txn/` knows a code.

/// A refused transaction operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("the transactional id is empty")]
    EmptyId,
    #[error("the coordinator is still loading its transactions")]
    Loading,
    #[error("the producer id is not this transactional id's")]
    UnknownProducerId,
    #[error("another operation on this transaction is in progress")]
    Concurrent,
    #[error("the transaction timeout is above transaction.max.timeout.ms")]
    InvalidTimeout,
    #[error("a newer producer epoch holds this transactional id")]
    Fenced,
    #[error("the transaction is not in a state that allows this")]
    InvalidState,
    #[error("no such transactional id")]
    NotFound,
    /// The coordinator cannot take the operation now (its state could not be written, no
    /// producer id could be had, or its shard is stopping); another try may succeed.
    #[error("the coordinator is not available")]
    Unavailable,
    /// Another node leads the transactional id's `__transaction_state` partition.
    #[error("this node is not the transaction's coordinator")]
    NotCoordinator,
}

impl From<crate::shard::Unreachable> for TxnError {
    /// The coordinator's shard could not be reached (it is stopping).
    fn from(_: crate::shard::Unreachable) -> TxnError {
        TxnError::Unavailable
    }
}
