//! Idempotent producers' state per partition: for each producer id, its epoch and the sequence
//! numbers and offsets of its last five batches. An append is checked against it (in sequence,
//! a duplicate of a recent batch, or out of order / fenced); the state is rebuilt on open from a
//! snapshot file and the batch headers after it.
//!
//! Transactions: a producer's first transactional batch opens its transaction (its offset holds
//! the last stable offset back); a control batch (COMMIT or ABORT marker) closes it. Aborted
//! transactions are listed for read_committed fetches (`.txnindex`, see FORMAT.md).
//!
//! The snapshot format is in FORMAT.md.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::model::batch::BatchHeader;
use crate::model::Offset;

/// Kafka keeps the last five batches of a producer (its `max.in.flight` for idempotence).
pub const RECENT_BATCHES: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: Offset,
    pub last_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<ProducerBatch>,
    /// The newest batch's max timestamp (wall clock of the producer), for expiry.
    pub last_timestamp: i64,
    /// The first offset of the producer's open transaction.
    pub txn_first_offset: Option<Offset>,
}

/// An aborted transaction, as Kafka's `.txnindex` holds it: fetches in read_committed tell
/// clients to drop the producer's records from `first_offset` up to the marker at `last_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: Offset,
    pub last_offset: Offset,
    /// The last stable offset once this transaction ended.
    pub last_stable_offset: Offset,
}

/// Bytes of one `.txnindex` entry.
pub const ABORTED_TXN_BYTES: usize = 34;

impl AbortedTxn {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.0.to_be_bytes());
        out.extend_from_slice(&self.last_offset.0.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.0.to_be_bytes());
    }

    /// The whole entries of a `.txnindex` file (a torn tail is ignored).
    pub fn decode_all(bytes: &[u8]) -> Vec<AbortedTxn> {
        let i64_at = |c: &[u8], at: usize| i64::from_be_bytes(c[at..at + 8].try_into().unwrap());
        bytes
            .chunks_exact(ABORTED_TXN_BYTES)
            .filter(|c| i16::from_be_bytes([c[0], c[1]]) == 0)
            .map(|c| AbortedTxn {
                producer_id: i64_at(c, 2),
                first_offset: Offset(i64_at(c, 10)),
                last_offset: Offset(i64_at(c, 18)),
                last_stable_offset: Offset(i64_at(c, 26)),
            })
            .collect()
    }
}

/// Whether a control batch is a COMMIT (true) or ABORT (false) marker: its one record's key is
/// version i16, type i16 (0 abort, 1 commit). `None` for anything else.
pub fn marker_of(view: &crate::model::BatchView<'_>) -> Option<bool> {
    if !view.is_control() {
        return None;
    }
    let records = crate::model::records::decode(view, 1 << 20).ok()?;
    let key = records.first()?.key.as_ref()?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// What a batch with a producer id is, against the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sequence {
    /// Append it.
    Next,
    /// A retry of a batch already in the log at these offsets: answer with them, write nothing.
    Duplicate(ProducerBatch),
}

/// Why a batch with a producer id is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id}: epoch {epoch} is older than the current {current}")]
    StaleEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id}: sequence {got} where {expected} was expected")]
    OutOfOrder {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
}

/// The producer fields of a batch header; `None` for batches without idempotence (producer id
/// -1) and for control batches (transaction markers carry no sequence).
pub fn producer_of(header: &BatchHeader) -> Option<(i64, i16, i32, i32)> {
    let producer_id = header.producer_id.get();
    let control = header.attributes.get() & 0x20 != 0;
    let first_seq = header.base_sequence.get();
    if producer_id < 0 || control || first_seq < 0 {
        return None;
    }
    let last_seq = next_seq(first_seq, header.last_offset_delta.get());
    Some((
        producer_id,
        header.producer_epoch.get(),
        first_seq,
        last_seq,
    ))
}

/// `seq + n` as Kafka counts sequences: wrapping from i32::MAX to 0.
fn next_seq(seq: i32, n: i32) -> i32 {
    let sum = seq as i64 + n as i64;
    if sum > i32::MAX as i64 {
        (sum - i32::MAX as i64 - 1) as i32
    } else {
        sum as i32
    }
}

impl ProducerEntry {
    pub fn new(epoch: i16) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            last_timestamp: i64::MIN,
            txn_first_offset: None,
        }
    }

    /// A marker of `epoch` closes the open transaction, if any: its first offset. A newer epoch
    /// (the coordinator fenced the producer) restarts the sequences.
    pub fn end_txn(&mut self, epoch: i16) -> Option<Offset> {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        self.txn_first_offset.take()
    }

    /// Checks a batch of `epoch` with sequences `first_seq..=last_seq`.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<Sequence, SequenceError> {
        if epoch < self.epoch {
            return Err(SequenceError::StaleEpoch {
                producer_id,
                epoch,
                current: self.epoch,
            });
        }
        if epoch > self.epoch {
            // A new epoch starts its sequences at 0.
            return if first_seq == 0 {
                Ok(Sequence::Next)
            } else {
                Err(SequenceError::OutOfOrder {
                    producer_id,
                    expected: 0,
                    got: first_seq,
                })
            };
        }
        if let Some(batch) = self
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(Sequence::Duplicate(*batch));
        }
        match self.batches.back() {
            // The producer's batches were all removed (retention): any sequence goes, as in Kafka.
            None => Ok(Sequence::Next),
            Some(last) if next_seq(last.last_seq, 1) == first_seq => Ok(Sequence::Next),
            Some(last) => Err(SequenceError::OutOfOrder {
                producer_id,
                expected: next_seq(last.last_seq, 1),
                got: first_seq,
            }),
        }
    }

    /// The sequence the next batch of this epoch should start at (0 if none is known).
    pub fn next_seq(&self) -> i32 {
        self.batches.back().map_or(0, |b| next_seq(b.last_seq, 1))
    }

    /// A data batch in the log: remembered, and, if transactional, opening the producer's
    /// transaction at its first offset unless one is open.
    pub fn record(
        &mut self,
        epoch: i16,
        batch: ProducerBatch,
        timestamp: i64,
        transactional: bool,
    ) {
        self.push(epoch, batch, timestamp);
        if transactional {
            self.txn_first_offset.get_or_insert(batch.first_offset);
        }
    }

    pub fn push(&mut self, epoch: i16, batch: ProducerBatch, timestamp: i64) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        if self.batches.len() == RECENT_BATCHES {
            self.batches.pop_front();
        }
        self.batches.push_back(batch);
        self.last_timestamp = self.last_timestamp.max(timestamp);
    }
}

/// Every producer of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Producers {
    entries: HashMap<i64, ProducerEntry>,
    /// (first offset, producer id) of every open transaction: the last stable offset without a
    /// pass over every producer (fetches ask for it each time).
    open: BTreeSet<(Offset, i64)>,
}

impl Producers {
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.entries.get(&producer_id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&i64, &ProducerEntry)> {
        self.entries.iter()
    }

    /// Sets a producer's state (keeping the open transactions in step).
    pub fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        if let Some(first) = entry.txn_first_offset {
            self.open.insert((first, producer_id));
        }
        let old_first = self
            .entries
            .insert(producer_id, entry)
            .and_then(|old| old.txn_first_offset);
        if let Some(old_first) = old_first {
            if self.entries[&producer_id].txn_first_offset != Some(old_first) {
                self.open.remove(&(old_first, producer_id));
            }
        }
    }

    /// Applies a batch already in the log (rebuild, or a replica's append): no checks. `marker`
    /// is the control batch's marker (see [`marker_of`]). Returns the transaction a marker
    /// closed: (producer id, first offset, committed).
    pub fn apply(
        &mut self,
        header: &BatchHeader,
        marker: Option<bool>,
    ) -> Option<(i64, Offset, bool)> {
        let producer_id = header.producer_id.get();
        if producer_id < 0 {
            return None;
        }
        let epoch = header.producer_epoch.get();
        let base = Offset(header.base_offset.get());
        let mut entry = self
            .entries
            .get(&producer_id)
            .cloned()
            .unwrap_or_else(|| ProducerEntry::new(epoch));
        let ended = if header.attributes.get() & 0x20 != 0 {
            let commit = marker?;
            entry
                .end_txn(epoch)
                .map(|first| (producer_id, first, commit))
        } else {
            let (_, epoch, first_seq, last_seq) = producer_of(header)?;
            let batch = ProducerBatch {
                first_seq,
                last_seq,
                first_offset: base,
                last_offset: Offset(base.0 + header.last_offset_delta.get() as i64),
            };
            let transactional = header.attributes.get() & 0x10 != 0;
            entry.record(epoch, batch, header.max_timestamp.get(), transactional);
            None
        };
        self.insert(producer_id, entry);
        ended
    }

    /// The first offset of the oldest open transaction, if any (the last stable offset is the
    /// smaller of it and the high watermark).
    pub fn first_open_txn(&self) -> Option<Offset> {
        self.open.first().map(|(first, _)| *first)
    }

    /// Forgets producers whose newest batch is older than `expiration_ms` before `now_ms`
    /// (`producer.id.expiration.ms`); returns how many.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.entries.len();
        let open = &mut self.open;
        self.entries.retain(|id, e| {
            let keep = e.last_timestamp.saturating_add(expiration_ms) >= now_ms;
            if let (false, Some(first)) = (keep, e.txn_first_offset) {
                open.remove(&(first, *id));
            }
            keep
        });
        before - self.entries.len()
    }

    pub fn encode(&self, offset: Offset) -> Vec<u8> {
        let mut body = Vec::with_capacity(12 + self.entries.len() * 64);
        body.extend_from_slice(&offset.0.to_be_bytes());
        body.extend_from_slice(&(self.entries.len() as i32).to_be_bytes());
        let mut ids: Vec<&i64> = self.entries.keys().collect();
        ids.sort();
        for id in ids {
            let e = &self.entries[id];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.last_timestamp.to_be_bytes());
            body.extend_from_slice(&e.txn_first_offset.map_or(-1, |o| o.0).to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.0.to_be_bytes());
                body.extend_from_slice(&b.last_offset.0.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(6 + body.len());
        out.extend_from_slice(&2i16.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// The state and its offset, or why the bytes are not a snapshot.
    pub fn decode(bytes: &[u8]) -> Result<(Offset, Producers), String> {
        struct Reader<'a>(&'a [u8]);
        impl Reader<'_> {
            fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
                if self.0.len() < N {
                    return Err("truncated".into());
                }
                let (head, rest) = self.0.split_at(N);
                self.0 = rest;
                Ok(head.try_into().expect("N bytes"))
            }
        }
        let mut r = Reader(bytes);
        let version = i16::from_be_bytes(r.take()?);
        if !(1..=2).contains(&version) {
            return Err(format!("unknown version {version}"));
        }
        let crc = u32::from_be_bytes(r.take()?);
        if crc32c::crc32c(r.0) != crc {
            return Err("checksum mismatch".into());
        }
        let offset = Offset(i64::from_be_bytes(r.take()?));
        let count = i32::from_be_bytes(r.take()?);
        let mut producers = Producers::default();
        for _ in 0..count.max(0) {
            let id = i64::from_be_bytes(r.take()?);
            let epoch = i16::from_be_bytes(r.take()?);
            let last_timestamp = i64::from_be_bytes(r.take()?);
            let txn_first_offset = if version >= 2 {
                Some(i64::from_be_bytes(r.take()?))
                    .filter(|o| *o >= 0)
                    .map(Offset)
            } else {
                None
            };
            let n = r.take::<1>()?[0] as usize;
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(ProducerBatch {
                    first_seq: i32::from_be_bytes(r.take()?),
                    last_seq: i32::from_be_bytes(r.take()?),
                    first_offset: Offset(i64::from_be_bytes(r.take()?)),
                    last_offset: Offset(i64::from_be_bytes(r.take()?)),
                });
            }
            producers.insert(
                id,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp,
                    txn_first_offset,
                },
            );
        }
        Ok((offset, producers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(epoch: i16, seqs: &[(i32, i32)]) -> ProducerEntry {
        let mut e = ProducerEntry::new(epoch);
        e.last_timestamp = 0;
        for (i, (first, last)) in seqs.iter().enumerate() {
            let offset = Offset(i as i64 * 10);
            e.push(
                epoch,
                ProducerBatch {
                    first_seq: *first,
                    last_seq: *last,
                    first_offset: offset,
                    last_offset: Offset(offset.0 + (last - first) as i64),
                },
                i as i64,
            );
        }
        e
    }

    #[test]
    fn sequences_are_checked_as_kafka_does() {
        let e = entry(3, &[(0, 9), (10, 19)]);
        assert_eq!(e.check(7, 3, 20, 29), Ok(Sequence::Next));
        assert!(
            matches!(e.check(7, 3, 0, 9), Ok(Sequence::Duplicate(b)) if b.first_offset == Offset(0))
        );
        assert!(matches!(
            e.check(7, 3, 25, 29),
            Err(SequenceError::OutOfOrder {
                expected: 20,
                got: 25,
                ..
            })
        ));
        assert!(matches!(
            e.check(7, 2, 20, 29),
            Err(SequenceError::StaleEpoch { current: 3, .. })
        ));
        assert_eq!(e.check(7, 4, 0, 4), Ok(Sequence::Next));
        assert!(matches!(
            e.check(7, 4, 5, 9),
            Err(SequenceError::OutOfOrder { expected: 0, .. })
        ));
        // Sequences wrap from i32::MAX to 0.
        let high = entry(0, &[(i32::MAX - 4, i32::MAX)]);
        assert_eq!(high.check(1, 0, 0, 9), Ok(Sequence::Next));
        assert_eq!(next_seq(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let seqs: Vec<(i32, i32)> = (0..7).map(|i| (i * 10, i * 10 + 9)).collect();
        let e = entry(0, &seqs);
        assert_eq!(e.batches.len(), RECENT_BATCHES);
        assert!(matches!(
            e.check(1, 0, 0, 9),
            Err(SequenceError::OutOfOrder { .. })
        ));
        assert!(matches!(e.check(1, 0, 20, 29), Ok(Sequence::Duplicate(_))));
    }

    #[test]
    fn snapshots_round_trip_and_reject_damage() {
        let mut p = Producers::default();
        p.insert(5, entry(1, &[(0, 4), (5, 9)]));
        let mut open = entry(0, &[]);
        open.txn_first_offset = Some(Offset(17));
        p.insert(-0x1234_5678, open);
        let bytes = p.encode(Offset(42));
        assert_eq!(Producers::decode(&bytes), Ok((Offset(42), p.clone())));
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(Producers::decode(&bad).is_err());
        assert!(Producers::decode(&bytes[..bytes.len() - 3]).is_err());
        assert_eq!(p.expire(1_000, 10), 2);
    }
}
