//! The records of `__consumer_offsets`, in Kafka's own formats so that Kafka's tools can read
//! them: an offset commit (key v1, value v3) and a group's metadata (key v2, value v3); a null
//! value is a tombstone.

use bytes::{Buf, BufMut, Bytes, BytesMut};

#[derive(Clone, Debug, PartialEq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Debug, thiserror::Error)]
/// A record of an internal topic (`__consumer_offsets`, `__transaction_state`) that does not parse.
#[error("malformed internal record: {0}")]
pub struct Malformed(pub &'static str);

pub(crate) fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

pub(crate) fn put_nullable(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

pub(crate) fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

pub(crate) fn need(buf: &Bytes, n: usize) -> Result<(), Malformed> {
    if buf.remaining() < n {
        Err(Malformed("truncated"))
    } else {
        Ok(())
    }
}

pub(crate) fn get_i16(buf: &mut Bytes) -> Result<i16, Malformed> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

pub(crate) fn get_i32(buf: &mut Bytes) -> Result<i32, Malformed> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

pub(crate) fn get_i64(buf: &mut Bytes) -> Result<i64, Malformed> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

pub(crate) fn get_nullable(buf: &mut Bytes) -> Result<Option<String>, Malformed> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    need(buf, len as usize)?;
    let raw = buf.split_to(len as usize);
    String::from_utf8(raw.to_vec())
        .map(Some)
        .map_err(|_| Malformed("string is not UTF-8"))
}

pub(crate) fn get_string(buf: &mut Bytes) -> Result<String, Malformed> {
    get_nullable(buf)?.ok_or(Malformed("null string"))
}

pub(crate) fn get_bytes(buf: &mut Bytes) -> Result<Bytes, Malformed> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(buf, len as usize)?;
    Ok(buf.split_to(len as usize))
}

impl Key {
    pub fn group(&self) -> &str {
        match self {
            Key::Offset { group, .. } | Key::Group { group } => group,
        }
    }

    pub fn encode(&self) -> Bytes {
        match self {
            Key::Offset {
                group,
                topic,
                partition,
            } => Key::offset(group, topic, *partition),
            Key::Group { group } => {
                let mut buf = BytesMut::with_capacity(4 + group.len());
                buf.put_i16(GROUP_KEY_VERSION);
                put_string(&mut buf, group);
                buf.freeze()
            }
        }
    }

    /// The encoded key of a committed offset, without building a `Key` (the commit path).
    pub fn offset(group: &str, topic: &str, partition: i32) -> Bytes {
        let mut buf = BytesMut::with_capacity(10 + group.len() + topic.len());
        buf.put_i16(OFFSET_KEY_VERSION);
        put_string(&mut buf, group);
        put_string(&mut buf, topic);
        buf.put_i32(partition);
        buf.freeze()
    }

    /// `None` for key versions this broker does not keep (Kafka's newer consumer-protocol records).
    pub fn decode(mut buf: Bytes) -> Result<Option<Key>, Malformed> {
        match get_i16(&mut buf)? {
            0 | OFFSET_KEY_VERSION => Ok(Some(Key::Offset {
                group: get_string(&mut buf)?,
                topic: get_string(&mut buf)?,
                partition: get_i32(&mut buf)?,
            })),
            GROUP_KEY_VERSION => Ok(Some(Key::Group {
                group: get_string(&mut buf)?,
            })),
            _ => Ok(None),
        }
    }
}

impl CommittedOffset {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(24 + self.metadata.len());
        buf.put_i16(OFFSET_VALUE_VERSION);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch);
        put_string(&mut buf, &self.metadata);
        buf.put_i64(self.commit_timestamp);
        buf.freeze()
    }

    pub fn decode(mut buf: Bytes) -> Result<CommittedOffset, Malformed> {
        let version = get_i16(&mut buf)?;
        let offset = get_i64(&mut buf)?;
        let leader_epoch = if version >= 3 { get_i32(&mut buf)? } else { -1 };
        let metadata = get_string(&mut buf)?;
        let commit_timestamp = get_i64(&mut buf)?;
        Ok(CommittedOffset {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        })
    }
}

impl StoredGroup {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(GROUP_VALUE_VERSION);
        put_string(&mut buf, &self.protocol_type);
        buf.put_i32(self.generation);
        put_nullable(&mut buf, self.protocol.as_deref());
        put_nullable(&mut buf, self.leader.as_deref());
        buf.put_i64(self.state_timestamp);
        buf.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_string(&mut buf, &m.member_id);
            put_nullable(&mut buf, m.instance_id.as_deref());
            put_string(&mut buf, &m.client_id);
            put_string(&mut buf, &m.client_host);
            buf.put_i32(m.rebalance_timeout_ms);
            buf.put_i32(m.session_timeout_ms);
            put_bytes(&mut buf, &m.subscription);
            put_bytes(&mut buf, &m.assignment);
        }
        buf.freeze()
    }

    pub fn decode(mut buf: Bytes) -> Result<StoredGroup, Malformed> {
        let version = get_i16(&mut buf)?;
        if !(0..=3).contains(&version) {
            return Err(Malformed("unknown group value version"));
        }
        let protocol_type = get_string(&mut buf)?;
        let generation = get_i32(&mut buf)?;
        let protocol = get_nullable(&mut buf)?;
        let leader = get_nullable(&mut buf)?;
        let state_timestamp = if version >= 2 { get_i64(&mut buf)? } else { -1 };
        let count = get_i32(&mut buf)?.max(0);
        let mut members = Vec::new();
        for _ in 0..count {
            let member_id = get_string(&mut buf)?;
            let instance_id = if version >= 3 {
                get_nullable(&mut buf)?
            } else {
                None
            };
            let client_id = get_string(&mut buf)?;
            let client_host = get_string(&mut buf)?;
            let rebalance_timeout_ms = if version >= 1 { get_i32(&mut buf)? } else { -1 };
            let session_timeout_ms = get_i32(&mut buf)?;
            let subscription = get_bytes(&mut buf)?;
            let assignment = get_bytes(&mut buf)?;
            members.push(StoredMember {
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription,
                assignment,
            });
        }
        Ok(StoredGroup {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp,
            members,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let keys = [
            Key::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
            },
            Key::Group { group: "g".into() },
        ];
        for key in keys {
            assert_eq!(Key::decode(key.encode()).unwrap(), Some(key));
        }
        let offset = CommittedOffset {
            offset: 42,
            leader_epoch: 0,
            metadata: "meta".into(),
            commit_timestamp: 1_700_000_000_000,
        };
        assert_eq!(CommittedOffset::decode(offset.encode()).unwrap(), offset);
        let group = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            state_timestamp: 5,
            members: vec![StoredMember {
                member_id: "m-1".into(),
                instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(StoredGroup::decode(group.encode()).unwrap(), group);
        assert!(StoredGroup::decode(Bytes::from_static(&[0, 3, 0])).is_err());
    }
}
