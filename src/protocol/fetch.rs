//! The Fetch response, written by hand: the fixed fields go into memory and each partition's
//! record bytes stay file slices, so that the frame is sent as header bytes, then sendfile of the
//! segment ranges, then the next header bytes. Versions 4 to 16 (12 and later are flexible;
//! 13 and later name topics by id).

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::{FileSlice, Part, Response};

pub const VERSION_MIN: i16 = 4;
pub const VERSION_MAX: i16 = 16;

#[derive(Clone, Debug, Default)]
pub struct PartitionData {
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// read_committed: the aborted transactions (producer id, first offset) in the records;
    /// `None` (a null array) for read_uncommitted.
    pub aborted: Option<Vec<(i64, i64)>>,
    pub records: Vec<FileSlice>,
    /// From v12, with NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH: the leader now (id, epoch),
    /// so that the client moves there without asking for metadata (KIP-951).
    pub current_leader: Option<(i32, i32)>,
}

impl PartitionData {
    pub fn records_len(&self) -> u64 {
        self.records.iter().map(|r| r.len).sum()
    }
}

#[derive(Clone, Debug)]
pub struct TopicData {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionData>,
}

#[derive(Clone, Debug, Default)]
pub struct FetchResponseData {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub topics: Vec<TopicData>,
    /// From v16: where the leaders named in `current_leader` are.
    pub node_endpoints: Vec<NodeEndpoint>,
}

/// A broker's address, as KIP-951 responses give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEndpoint {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

struct Writer {
    parts: Vec<Part>,
    buf: BytesMut,
    flexible: bool,
}

impl Writer {
    fn unsigned_varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.put_u8((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.put_u8(value as u8);
    }

    fn array_len(&mut self, len: usize) {
        if self.flexible {
            self.unsigned_varint(len as u64 + 1);
        } else {
            self.buf.put_i32(len as i32);
        }
    }

    fn null_array(&mut self) {
        if self.flexible {
            self.unsigned_varint(0);
        } else {
            self.buf.put_i32(-1);
        }
    }

    fn string(&mut self, text: &str) {
        if self.flexible {
            self.unsigned_varint(text.len() as u64 + 1);
        } else {
            self.buf.put_i16(text.len() as i16);
        }
        self.buf.put_slice(text.as_bytes());
    }

    fn no_tagged_fields(&mut self) {
        if self.flexible {
            self.unsigned_varint(0);
        }
    }

    fn records(&mut self, slices: &[FileSlice]) {
        let len: u64 = slices.iter().map(|s| s.len).sum();
        if self.flexible {
            self.unsigned_varint(len + 1);
        } else {
            self.buf.put_i32(len as i32);
        }
        if len == 0 {
            return;
        }
        let head = std::mem::take(&mut self.buf).freeze();
        self.parts.push(Part::Bytes(head));
        self.parts
            .extend(slices.iter().filter(|s| s.len > 0).cloned().map(Part::File));
    }

    fn finish(mut self) -> Vec<Part> {
        if !self.buf.is_empty() {
            let tail = std::mem::take(&mut self.buf).freeze();
            self.parts.push(Part::Bytes(tail));
        }
        self.parts
    }
}

/// The whole response frame (length prefix, header, body) for `version`.
pub fn encode(version: i16, correlation_id: i32, data: &FetchResponseData) -> Response {
    assert!(
        (VERSION_MIN..=VERSION_MAX).contains(&version),
        "fetch v{version} is not served"
    );
    let flexible = version >= 12;
    let mut w = Writer {
        parts: Vec::new(),
        buf: BytesMut::with_capacity(128),
        flexible,
    };
    w.buf.put_i32(0); // frame length, patched below
    w.buf.put_i32(correlation_id);
    w.no_tagged_fields(); // response header v1 for flexible versions
    w.buf.put_i32(data.throttle_time_ms);
    if version >= 7 {
        w.buf.put_i16(data.error_code);
        w.buf.put_i32(data.session_id);
    }
    w.array_len(data.topics.len());
    for topic in &data.topics {
        if version >= 13 {
            w.buf.put_slice(topic.id.as_bytes());
        } else {
            w.string(&topic.name);
        }
        w.array_len(topic.partitions.len());
        for p in &topic.partitions {
            w.buf.put_i32(p.partition);
            w.buf.put_i16(p.error_code);
            w.buf.put_i64(p.high_watermark);
            w.buf.put_i64(p.last_stable_offset);
            if version >= 5 {
                w.buf.put_i64(p.log_start_offset);
            }
            match &p.aborted {
                None => w.null_array(),
                Some(aborted) => {
                    w.array_len(aborted.len());
                    for (producer_id, first_offset) in aborted {
                        w.buf.put_i64(*producer_id);
                        w.buf.put_i64(*first_offset);
                        w.no_tagged_fields();
                    }
                }
            }
            if version >= 11 {
                w.buf.put_i32(-1); // preferred read replica
            }
            w.records(&p.records);
            match p.current_leader {
                Some((leader_id, leader_epoch)) if flexible => {
                    // One tagged field: current_leader (tag 1), a LeaderIdAndEpoch of 9 bytes.
                    w.unsigned_varint(1);
                    w.unsigned_varint(1);
                    w.unsigned_varint(9);
                    w.buf.put_i32(leader_id);
                    w.buf.put_i32(leader_epoch);
                    w.no_tagged_fields();
                }
                _ => w.no_tagged_fields(),
            }
        }
        w.no_tagged_fields();
    }
    if version >= 16 && !data.node_endpoints.is_empty() {
        // One tagged field: node_endpoints (tag 0), written aside to learn its size.
        let mut field = Writer {
            parts: Vec::new(),
            buf: BytesMut::new(),
            flexible: true,
        };
        field.array_len(data.node_endpoints.len());
        for node in &data.node_endpoints {
            field.buf.put_i32(node.node_id);
            field.string(&node.host);
            field.buf.put_i32(node.port);
            match &node.rack {
                Some(rack) => field.string(rack),
                None => field.unsigned_varint(0),
            }
            field.no_tagged_fields();
        }
        w.unsigned_varint(1);
        w.unsigned_varint(0);
        w.unsigned_varint(field.buf.len() as u64);
        w.buf.put_slice(&field.buf);
    } else {
        w.no_tagged_fields();
    }
    let mut parts = w.finish();
    let total: u64 = parts.iter().map(Part::len).sum();
    let frame_len =
        i32::try_from(total - 4).expect("fetch responses are bounded by fetch.max.bytes");
    if let Some(Part::Bytes(first)) = parts.first_mut() {
        let mut patched = BytesMut::from(&first[..]);
        patched[..4].copy_from_slice(&frame_len.to_be_bytes());
        *first = Bytes::from(patched);
    }
    Response { parts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::rc::Rc;

    /// Writes the parts out (reading the file slices) and decodes the result with the
    /// kafka-protocol crate: the hand-written encoder must agree with the schema.
    #[test]
    fn matches_the_schema_in_every_version() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123456789abcdefghij").unwrap();
        let fd = file.as_raw_fd();
        let keep: Rc<dyn std::any::Any> = Rc::new(file);
        let slice = |position, len| FileSlice {
            fd,
            position,
            len,
            keep: keep.clone(),
        };
        let data = FetchResponseData {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 7,
            topics: vec![TopicData {
                name: "events".into(),
                id: Uuid::from_u128(0x1234),
                partitions: vec![
                    PartitionData {
                        partition: 0,
                        high_watermark: 10,
                        last_stable_offset: 10,
                        log_start_offset: 2,
                        records: vec![slice(0, 4), slice(10, 6)],
                        ..Default::default()
                    },
                    PartitionData {
                        partition: 3,
                        error_code: 1,
                        high_watermark: 5,
                        last_stable_offset: 3,
                        log_start_offset: 0,
                        aborted: Some(vec![(42, 1), (43, 2)]),
                        records: vec![],
                        current_leader: Some((2, 7)),
                    },
                ],
            }],
            node_endpoints: vec![NodeEndpoint {
                node_id: 2,
                host: "b2".into(),
                port: 9092,
                rack: Some("r1".into()),
            }],
        };
        for version in VERSION_MIN..=VERSION_MAX {
            let response = encode(version, 99, &data);
            let mut bytes = Vec::new();
            for part in &response.parts {
                match part {
                    Part::Bytes(b) => bytes.extend_from_slice(b),
                    Part::File(f) => {
                        let all = b"0123456789abcdefghij";
                        bytes.extend_from_slice(
                            &all[f.position as usize..(f.position + f.len) as usize],
                        );
                    }
                }
            }
            let frame_len = i32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            assert_eq!(frame_len, bytes.len() - 4, "v{version}");
            let mut body = Bytes::from(bytes).slice(4..);
            let header_version = if version >= 12 { 1 } else { 0 };
            let header = ResponseHeader::decode(&mut body, header_version).unwrap();
            assert_eq!(header.correlation_id, 99);
            let decoded = FetchResponse::decode(&mut body, version).unwrap();
            assert!(body.is_empty(), "v{version}: trailing bytes");
            let topic = &decoded.responses[0];
            if version >= 13 {
                assert_eq!(topic.topic_id, Uuid::from_u128(0x1234));
            } else {
                assert_eq!(topic.topic.as_str(), "events");
            }
            let p0 = &topic.partitions[0];
            assert_eq!(p0.high_watermark, 10);
            assert_eq!(
                p0.records.as_deref(),
                Some(&b"0123abcdef"[..]),
                "v{version}"
            );
            if version >= 5 {
                assert_eq!(p0.log_start_offset, 2);
            }
            if version >= 7 {
                assert_eq!(decoded.session_id, 7);
            }
            assert!(
                p0.aborted_transactions.is_none(),
                "v{version}: read_uncommitted"
            );
            let p3 = &topic.partitions[1];
            assert_eq!((p3.partition_index, p3.error_code), (3, 1));
            assert_eq!(p3.last_stable_offset, 3);
            let aborted: Vec<(i64, i64)> = p3
                .aborted_transactions
                .as_ref()
                .expect("read_committed lists aborted transactions")
                .iter()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect();
            assert_eq!(aborted, vec![(42, 1), (43, 2)], "v{version}");
            assert_eq!(p3.records.as_deref().map(<[u8]>::len), Some(0));
            if version >= 12 {
                let leader = &p3.current_leader;
                assert_eq!(
                    (leader.leader_id.0, leader.leader_epoch),
                    (2, 7),
                    "v{version}"
                );
                assert_eq!(p0.current_leader.leader_id.0, -1, "v{version}: none");
            }
            if version >= 16 {
                let node = &decoded.node_endpoints[0];
                assert_eq!(
                    (node.node_id.0, node.host.as_str(), node.port),
                    (2, "b2", 9092)
                );
                assert_eq!(node.rack.as_deref(), Some("r1"));
            }
        }
    }
}
