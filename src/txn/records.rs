//! The records of `__transaction_state`, in Kafka's formats (TransactionLogKey v0,
//! TransactionLogValue v0) so that Kafka's tools read them: the key is the transactional id, the
//! value the transaction's whole state; a null value is a tombstone (the id expired).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::group::records::{get_i16, get_i32, get_i64, get_string, need, put_string, Malformed};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

/// A transaction's state, as Kafka numbers and names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn code(self) -> i8 {
        TxnState::ALL.iter().position(|s| *s == self).unwrap_or(0) as i8
    }

    pub fn from_code(code: i8) -> Option<TxnState> {
        TxnState::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// A commit or abort decided, its markers not all written yet.
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// What `__transaction_state` keeps per transactional id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnRecord {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// (topic, partition), sorted.
    pub partitions: Vec<(String, i32)>,
    pub last_update_ms: i64,
    /// -1 when no transaction is open.
    pub start_ms: i64,
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

/// The transactional id of a key; `None` for a key version this broker does not know.
pub fn decode_key(mut buf: Bytes) -> Result<Option<String>, Malformed> {
    if get_i16(&mut buf)? != KEY_VERSION {
        return Ok(None);
    }
    get_string(&mut buf).map(Some)
}

impl TxnRecord {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_i16(VALUE_VERSION);
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        buf.put_i32(self.timeout_ms);
        buf.put_i8(self.state.code());
        let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
        for (topic, partition) in &self.partitions {
            match topics.last_mut() {
                Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
                _ => topics.push((topic, vec![*partition])),
            }
        }
        buf.put_i32(topics.len() as i32);
        for (topic, partitions) in topics {
            put_string(&mut buf, topic);
            buf.put_i32(partitions.len() as i32);
            for p in partitions {
                buf.put_i32(p);
            }
        }
        buf.put_i64(self.last_update_ms);
        buf.put_i64(self.start_ms);
        buf.freeze()
    }

    pub fn decode(mut buf: Bytes) -> Result<TxnRecord, Malformed> {
        let version = get_i16(&mut buf)?;
        if version != VALUE_VERSION {
            return Err(Malformed("unknown transaction value version"));
        }
        let producer_id = get_i64(&mut buf)?;
        let producer_epoch = get_i16(&mut buf)?;
        let timeout_ms = get_i32(&mut buf)?;
        need(&buf, 1)?;
        let state = TxnState::from_code(buf.get_i8()).ok_or(Malformed("unknown state"))?;
        let mut partitions = Vec::new();
        let topics = get_i32(&mut buf)?;
        for _ in 0..topics.max(0) {
            let topic = get_string(&mut buf)?;
            let count = get_i32(&mut buf)?;
            for _ in 0..count.max(0) {
                partitions.push((topic.clone(), get_i32(&mut buf)?));
            }
        }
        Ok(TxnRecord {
            producer_id,
            producer_epoch,
            timeout_ms,
            state,
            partitions,
            last_update_ms: get_i64(&mut buf)?,
            start_ms: get_i64(&mut buf)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let record = TxnRecord {
            producer_id: 4000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: vec![("a".into(), 0), ("a".into(), 2), ("b".into(), 1)],
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
        };
        assert_eq!(TxnRecord::decode(record.encode()).unwrap(), record);
        assert_eq!(
            decode_key(encode_key("txn-1")).unwrap().as_deref(),
            Some("txn-1")
        );
        for state in TxnState::ALL {
            assert_eq!(TxnState::from_code(state.code()), Some(state));
            assert_eq!(TxnState::from_name(state.name()), Some(state));
        }
    }

    #[test]
    fn kafka_layout_of_a_value() {
        let record = TxnRecord {
            producer_id: 1,
            producer_epoch: 2,
            timeout_ms: 3,
            state: TxnState::Ongoing,
            partitions: vec![("t".into(), 7)],
            last_update_ms: 4,
            start_ms: 5,
        };
        let expected: Vec<u8> = [
            &0i16.to_be_bytes()[..],
            &1i64.to_be_bytes(),
            &2i16.to_be_bytes(),
            &3i32.to_be_bytes(),
            &[1u8],
            &1i32.to_be_bytes(),
            &1i16.to_be_bytes(),
            b"t",
            &1i32.to_be_bytes(),
            &7i32.to_be_bytes(),
            &4i64.to_be_bytes(),
            &5i64.to_be_bytes(),
        ]
        .concat();
        assert_eq!(&record.encode()[..], &expected[..]);
        assert!(TxnRecord::decode(Bytes::from_static(&[0, 0, 1])).is_err());
    }
}
