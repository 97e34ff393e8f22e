//! Incremental fetch sessions (KIP-227), kept per shard: a session lives on the shard whose
//! connection created it (its id says which), holds the partitions a consumer fetches with their
//! fetch offsets and limits, and remembers what the last answer told the client, so that an
//! incremental answer carries only the partitions that have news.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use crate::protocol::ResponseError as E;

/// Sessions one shard keeps; the least recently used goes when a new one needs room (Kafka's
/// `max.incremental.fetch.session.cache.slots` is 1000 per broker).
pub const FETCH_SESSIONS_PER_SHARD_MAX: usize = 1000;

/// The epoch that closes a session (or asks for none).
pub const FINAL_EPOCH: i32 = -1;
pub const INITIAL_EPOCH: i32 = 0;

/// One partition of a fetch: from the request, or remembered by a session.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Empty when the request named an unknown topic id. Shared by a topic's partitions.
    pub name: Arc<str>,
    pub id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    pub max_bytes: u64,
}

impl Entry {
    fn same_partition(&self, other: &Entry) -> bool {
        self.partition == other.partition && self.name == other.name && self.id == other.id
    }
}

/// What the last answer of a session told the client about a partition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sent {
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next request must carry.
    next_epoch: i32,
    entries: Vec<(Entry, Option<Sent>)>,
    last_used: Instant,
}

/// How to serve one fetch request.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// No session: answer every requested partition, session id 0.
    Sessionless(Vec<Entry>),
    /// A new session (full fetch): answer every partition, with this session id.
    New { id: i32, entries: Vec<Entry> },
    /// An incremental fetch of session `id`: answer only the partitions with news.
    Incremental {
        id: i32,
        entries: Vec<(Entry, Option<Sent>)>,
    },
}

#[derive(Debug)]
pub struct Sessions {
    /// This shard, and how many there are: session ids encode the shard.
    shard: usize,
    shards: usize,
    sessions: HashMap<i32, Session>,
}

impl Sessions {
    pub fn new(shard: usize, shards: usize) -> Sessions {
        assert!(shard < shards, "shard {shard} of {shards}");
        Sessions {
            shard,
            shards,
            sessions: HashMap::new(),
        }
    }

    /// Applies a request's session fields; the plan, or the top-level error code.
    pub fn resolve(
        &mut self,
        session_id: i32,
        epoch: i32,
        requested: Vec<Entry>,
        forgotten: &[Entry],
        now: Instant,
    ) -> Result<Plan, i16> {
        match (session_id, epoch) {
            (0, FINAL_EPOCH) => Ok(Plan::Sessionless(requested)),
            (id, FINAL_EPOCH) => {
                self.sessions.remove(&id);
                Ok(Plan::Sessionless(requested))
            }
            (id, INITIAL_EPOCH) => {
                if id != 0 {
                    self.sessions.remove(&id);
                }
                Ok(match self.create(&requested, now) {
                    Some(id) => Plan::New {
                        id,
                        entries: requested,
                    },
                    None => Plan::Sessionless(requested),
                })
            }
            (0, _) => Err(E::InvalidFetchSessionEpoch.code()),
            (id, epoch) => {
                let session = self
                    .sessions
                    .get_mut(&id)
                    .ok_or(E::FetchSessionIdNotFound.code())?;
                if epoch != session.next_epoch {
                    return Err(E::InvalidFetchSessionEpoch.code());
                }
                session.last_used = now;
                for entry in requested {
                    match session
                        .entries
                        .iter_mut()
                        .find(|(e, _)| e.same_partition(&entry))
                    {
                        Some((existing, _)) => *existing = entry,
                        None => session.entries.push((entry, None)),
                    }
                }
                session
                    .entries
                    .retain(|(e, _)| !forgotten.iter().any(|f| f.same_partition(e)));
                Ok(Plan::Incremental {
                    id,
                    entries: session.entries.clone(),
                })
            }
        }
    }

    fn create(&mut self, entries: &[Entry], now: Instant) -> Option<i32> {
        if self.sessions.len() >= FETCH_SESSIONS_PER_SHARD_MAX {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id)?;
            self.sessions.remove(&oldest);
        }
        let id = loop {
            // Positive, and `id % shards == shard`, so an id names its shard.
            let random = (Uuid::new_v4().as_u128() as u32 & 0x3fff_ffff) as usize;
            let id = (random / self.shards * self.shards + self.shard) as i32;
            if id != 0 && !self.sessions.contains_key(&id) {
                break id;
            }
        };
        self.sessions.insert(
            id,
            Session {
                // `answered` moves it to 1 once the full answer is out.
                next_epoch: INITIAL_EPOCH,
                entries: entries.iter().map(|e| (e.clone(), None)).collect(),
                last_used: now,
            },
        );
        Some(id)
    }

    /// Records what an answer told the client, and moves the session to its next epoch.
    pub fn answered(&mut self, id: i32, sent: &[(Entry, Sent)]) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        session.next_epoch = session.next_epoch.checked_add(1).unwrap_or(1);
        for (entry, what) in sent {
            if let Some((_, slot)) = session
                .entries
                .iter_mut()
                .find(|(e, _)| e.same_partition(entry))
            {
                *slot = Some(*what);
            }
        }
    }
}

#[cfg(test)]
impl Sessions {
    fn len(&self) -> usize {
        self.sessions.len()
    }

    fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(partition: i32, offset: i64) -> Entry {
        Entry {
            name: "t".into(),
            id: Uuid::nil(),
            partition,
            fetch_offset: offset,
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn a_session_is_created_updated_and_closed() {
        let mut sessions = Sessions::new(1, 4);
        let now = Instant::now();
        let requested = vec![entry(0, 0), entry(1, 0)];
        let plan = sessions.resolve(0, INITIAL_EPOCH, requested, &[], now);
        let Ok(Plan::New { id, .. }) = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(id % 4, 1, "the id names the shard");
        sessions.answered(id, &[]);
        // Epoch 1: partition 0 moves to offset 5, partition 1 is forgotten, 2 is added.
        let changes = vec![entry(0, 5), entry(2, 0)];
        let plan = sessions.resolve(id, 1, changes, &[entry(1, 0)], now);
        let expected = vec![(entry(0, 5), None), (entry(2, 0), None)];
        assert_eq!(
            plan,
            Ok(Plan::Incremental {
                id,
                entries: expected
            })
        );
        let sent = Sent {
            high_watermark: 5,
            log_start_offset: 0,
        };
        sessions.answered(id, &[(entry(0, 5), sent)]);
        let plan = sessions.resolve(id, 2, vec![], &[], now);
        let expected = vec![(entry(0, 5), Some(sent)), (entry(2, 0), None)];
        assert_eq!(
            plan,
            Ok(Plan::Incremental {
                id,
                entries: expected
            })
        );
        sessions.answered(id, &[]);
        // A stale epoch is refused; an unknown id too.
        let stale = sessions.resolve(id, 2, vec![], &[], now);
        assert_eq!(stale, Err(E::InvalidFetchSessionEpoch.code()));
        let unknown = sessions.resolve(id + 4, 3, vec![], &[], now);
        assert_eq!(unknown, Err(E::FetchSessionIdNotFound.code()));
        // The final epoch closes it.
        let last = sessions.resolve(id, FINAL_EPOCH, vec![], &[], now);
        assert!(matches!(last, Ok(Plan::Sessionless(_))));
        assert!(sessions.is_empty());
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut sessions = Sessions::new(1, 4);
        let start = Instant::now();
        for i in 0..(FETCH_SESSIONS_PER_SHARD_MAX + 10) {
            let now = start + std::time::Duration::from_millis(i as u64);
            sessions
                .resolve(0, INITIAL_EPOCH, vec![entry(0, 0)], &[], now)
                .unwrap();
        }
        assert_eq!(sessions.len(), FETCH_SESSIONS_PER_SHARD_MAX);
    }
}
