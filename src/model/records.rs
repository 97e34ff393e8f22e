//! The records inside a v2 batch (zigzag varints, as Kafka's `DefaultRecord`), and a builder that
//! encodes records into a complete batch. Used where the broker must look inside a batch:
//! compaction, timestamp lookups, a topic whose `compression.type` differs from the producer's,
//! tests and benchmarks; never on the default produce path or on the fetch path.

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchView, TimestampType, HEADER_BYTES};
use super::compression::CompressionError;
use super::{Codec, Offset, TimestampMs};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// One record, with its absolute offset and timestamp resolved from the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: Offset,
    pub timestamp: TimestampMs,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    #[error("record {index} is malformed: {detail}")]
    Malformed { index: usize, detail: &'static str },
    #[error(transparent)]
    Batch(#[from] batch::BatchError),
    #[error(transparent)]
    Compression(#[from] CompressionError),
}

/// Decodes every record of a batch, decompressing if needed (bounded by `limit_bytes`).
pub fn decode(view: &BatchView<'_>, limit_bytes: usize) -> Result<Vec<Record>, RecordsError> {
    let codec = view.codec()?;
    let data = Bytes::from(codec.decompress(view.records_bytes(), limit_bytes)?);
    let base_offset = view.base_offset();
    let base_timestamp = view.base_timestamp();
    let log_append_time = view.timestamp_type() == TimestampType::LogAppendTime;
    let last_offset_delta = view.header().last_offset_delta.get();
    let count = view.records_count().max(0) as usize;
    let mut records = Vec::with_capacity(count.min(data.len() / batch::RECORD_BYTES_MIN + 1));
    let mut reader = Reader { data, at: 0 };
    for index in 0..count {
        let malformed = |detail| RecordsError::Malformed { index, detail };
        let length = reader.varint().ok_or(malformed("length"))?;
        let end = reader
            .at
            .checked_add(usize::try_from(length).map_err(|_| malformed("negative length"))?);
        let end = end
            .filter(|end| *end <= reader.data.len())
            .ok_or(malformed("length overruns the batch"))?;
        let _attributes = reader.byte().ok_or(malformed("attributes"))?;
        let timestamp_delta = reader.varlong().ok_or(malformed("timestamp delta"))?;
        let offset_delta = reader.varint().ok_or(malformed("offset delta"))?;
        if !(0..=last_offset_delta).contains(&offset_delta) {
            return Err(malformed("offset delta outside the batch's span"));
        }
        let key = reader.nullable_bytes().ok_or(malformed("key"))?;
        let value = reader.nullable_bytes().ok_or(malformed("value"))?;
        let header_count = reader.varint().ok_or(malformed("header count"))?;
        let mut headers = Vec::new();
        for _ in 0..header_count.max(0) {
            let key = reader
                .nullable_bytes()
                .flatten()
                .ok_or(malformed("header key"))?;
            let value = reader.nullable_bytes().ok_or(malformed("header value"))?;
            headers.push(Header { key, value });
        }
        if reader.at != end {
            return Err(malformed("length disagrees with contents"));
        }
        let timestamp = if log_append_time {
            view.max_timestamp()
        } else {
            TimestampMs(base_timestamp.0.wrapping_add(timestamp_delta))
        };
        records.push(Record {
            offset: base_offset.plus(offset_delta as i64),
            timestamp,
            key,
            value,
            headers,
        });
    }
    Ok(records)
}

struct Reader {
    data: Bytes,
    at: usize,
}

impl Reader {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.data.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn varlong(&mut self) -> Option<i64> {
        let mut raw: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            raw |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        None
    }

    fn varint(&mut self) -> Option<i32> {
        i32::try_from(self.varlong()?).ok()
    }

    /// `Some(None)` for a null (-1 length), `None` when malformed.
    fn nullable_bytes(&mut self) -> Option<Option<Bytes>> {
        let len = self.varint()?;
        if len < 0 {
            return Some(None);
        }
        let end = self.at.checked_add(len as usize)?;
        if end > self.data.len() {
            return None;
        }
        let bytes = self.data.slice(self.at..end);
        self.at = end;
        Some(Some(bytes))
    }
}

pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(bytes) => {
            put_varlong(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

/// The producer fields of a batch header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl ProducerInfo {
    /// No producer id: a plain, non-idempotent producer.
    pub const NONE: ProducerInfo = ProducerInfo {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// Encodes records into one v2 batch. Records keep their absolute offsets; the batch's base offset
/// is the first record's, and the last offset delta is `last_offset_delta` if given (compaction
/// keeps the original span) or the last record's.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    pub codec: Codec,
    pub timestamp_type: TimestampType,
    pub transactional: bool,
    pub control: bool,
    pub producer: ProducerInfo,
    pub partition_leader_epoch: i32,
    /// Base offset and last offset delta to keep, when re-encoding a batch whose span must not change.
    pub span: Option<(Offset, i32)>,
    /// The max timestamp to write for LogAppendTime batches.
    pub log_append_time: Option<TimestampMs>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder {
            codec: Codec::None,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            control: false,
            producer: ProducerInfo::NONE,
            partition_leader_epoch: -1,
            span: None,
            log_append_time: None,
        }
    }
}

impl BatchBuilder {
    /// Builds the batch. `records` must be non-empty and in offset order.
    pub fn build(&self, records: &[Record]) -> Bytes {
        assert!(!records.is_empty(), "a batch holds at least one record");
        let (base_offset, last_offset_delta) = self.span.unwrap_or_else(|| {
            let first = records[0].offset;
            let last = records[records.len() - 1].offset;
            (first, (last.0 - first.0) as i32)
        });
        let base_timestamp = records.iter().map(|r| r.timestamp.0).min().unwrap_or(-1);
        let max_timestamp = match (self.timestamp_type, self.log_append_time) {
            (TimestampType::LogAppendTime, Some(time)) => time.0,
            _ => records.iter().map(|r| r.timestamp.0).max().unwrap_or(-1),
        };
        let mut body = Vec::with_capacity(records.len() * 32);
        let mut record_bytes = Vec::with_capacity(64);
        for record in records {
            assert!(
                record.offset >= base_offset,
                "records must not precede the batch span"
            );
            record_bytes.clear();
            record_bytes.push(0); // record attributes: unused
            put_varlong(&mut record_bytes, record.timestamp.0 - base_timestamp);
            put_varlong(&mut record_bytes, record.offset.0 - base_offset.0);
            put_nullable(&mut record_bytes, record.key.as_deref());
            put_nullable(&mut record_bytes, record.value.as_deref());
            put_varlong(&mut record_bytes, record.headers.len() as i64);
            for header in &record.headers {
                put_nullable(&mut record_bytes, Some(&header.key));
                put_nullable(&mut record_bytes, header.value.as_deref());
            }
            put_varlong(&mut body, record_bytes.len() as i64);
            body.extend_from_slice(&record_bytes);
        }
        let body = self.codec.compress(&body);
        let mut out = BytesMut::with_capacity(HEADER_BYTES + body.len());
        let attributes = batch::attributes(
            self.codec,
            self.timestamp_type,
            self.transactional,
            self.control,
        );
        out.extend_from_slice(&base_offset.0.to_be_bytes());
        out.extend_from_slice(
            &((HEADER_BYTES - batch::LOG_OVERHEAD_BYTES + body.len()) as i32).to_be_bytes(),
        );
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.extend_from_slice(&[batch::MAGIC_V2 as u8]);
        out.extend_from_slice(&0u32.to_be_bytes()); // CRC, filled below
        out.extend_from_slice(&attributes.to_be_bytes());
        out.extend_from_slice(&last_offset_delta.to_be_bytes());
        out.extend_from_slice(&base_timestamp.to_be_bytes());
        out.extend_from_slice(&max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.producer.base_sequence.to_be_bytes());
        out.extend_from_slice(&(records.len() as i32).to_be_bytes());
        out.extend_from_slice(&body);
        let crc = crc32c::crc32c(&out[batch::CRC_START..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }
}

/// Test and bench helper: `count` records with keys `key-<i>` and `value_bytes` of value each,
/// at offsets starting from zero, in one batch.
pub fn simple_batch(count: usize, value_bytes: usize, codec: Codec) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            offset: Offset(i as i64),
            timestamp: TimestampMs(1_700_000_000_000 + i as i64),
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![(i % 251) as u8; value_bytes])),
            headers: Vec::new(),
        })
        .collect();
    BatchBuilder {
        codec,
        ..BatchBuilder::default()
    }
    .build(&records)
}

/// Re-encodes a batch with `records` (all of them, or fewer) and `codec`, keeping its span,
/// timestamp type, transactional and control flags, producer fields and leader epoch.
pub fn rebuild(view: &BatchView<'_>, records: &[Record], codec: Codec) -> Bytes {
    let timestamp_type = view.timestamp_type();
    BatchBuilder {
        codec,
        timestamp_type,
        transactional: view.is_transactional(),
        control: view.is_control(),
        producer: ProducerInfo {
            producer_id: view.producer_id(),
            producer_epoch: view.producer_epoch(),
            base_sequence: view.base_sequence(),
        },
        partition_leader_epoch: view.header().partition_leader_epoch.get(),
        span: Some((view.base_offset(), view.header().last_offset_delta.get())),
        log_append_time: (timestamp_type == TimestampType::LogAppendTime)
            .then(|| view.max_timestamp()),
    }
    .build(records)
}

/// Re-encodes every data batch in `bytes` whose codec is not `codec` (a topic's
/// `compression.type`); control batches and batches already in `codec` are copied as they are.
/// Each batch is checked (CRC included) before it is opened. `None` if nothing needed it.
pub fn recompress(
    bytes: &[u8],
    codec: Codec,
    limit_bytes: usize,
) -> Result<Option<Bytes>, RecordsError> {
    let mut rest = bytes;
    let mut needed = false;
    while !rest.is_empty() {
        let (view, after) = BatchView::validate(rest)?;
        needed |= !view.is_control() && view.codec()? != codec;
        rest = after;
    }
    if !needed {
        return Ok(None);
    }
    let mut out = BytesMut::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        let (view, after) = BatchView::validate(rest)?;
        if view.is_control() || view.codec()? == codec {
            out.extend_from_slice(view.bytes());
        } else {
            let records = decode(&view, limit_bytes)?;
            if records.is_empty() {
                return Err(RecordsError::Malformed {
                    index: 0,
                    detail: "a batch with no records",
                });
            }
            out.extend_from_slice(&rebuild(&view, &records, codec));
        }
        rest = after;
    }
    Ok(Some(out.freeze()))
}

/// A transaction marker as the coordinator writes it: a control batch of one record whose key
/// is version 0 and type (0 ABORT, 1 COMMIT) and whose value is version 0 and the coordinator
/// epoch.
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: TimestampMs,
) -> Bytes {
    let mut value = vec![0, 0];
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        offset: Offset(0),
        timestamp,
        key: Some(Bytes::from(vec![0, 0, 0, commit as u8])),
        value: Some(Bytes::from(value)),
        headers: Vec::new(),
    };
    BatchBuilder {
        transactional: true,
        control: true,
        producer: ProducerInfo {
            producer_id,
            producer_epoch,
            base_sequence: -1,
        },
        ..BatchBuilder::default()
    }
    .build(&[record])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(offset: i64, key: Option<&str>, value: Option<&str>) -> Record {
        Record {
            offset: Offset(offset),
            timestamp: TimestampMs(1_000 + offset * 10),
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![Header {
                key: Bytes::from_static(b"h"),
                value: None,
            }],
        }
    }

    #[test]
    fn records_round_trip_through_every_codec_and_validate() {
        let records = vec![
            sample(5, Some("a"), Some("1")),
            sample(6, None, Some("2")),
            sample(9, Some("c"), None),
        ];
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let bytes = BatchBuilder {
                codec,
                ..BatchBuilder::default()
            }
            .build(&records);
            let (view, rest) = BatchView::validate(&bytes).unwrap();
            assert!(rest.is_empty());
            assert_eq!(view.codec().unwrap(), codec);
            assert_eq!(view.base_offset(), Offset(5));
            assert_eq!(view.last_offset(), Offset(9));
            assert_eq!(view.records_count(), 3);
            assert_eq!(view.max_timestamp(), TimestampMs(1_090));
            assert_eq!(decode(&view, 1 << 20).unwrap(), records, "{codec:?}");
        }
    }

    #[test]
    fn varlongs_round_trip_at_the_edges() {
        for value in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            let mut reader = Reader {
                data: Bytes::from(out),
                at: 0,
            };
            assert_eq!(reader.varlong(), Some(value));
        }
    }

    #[test]
    fn every_flipped_byte_after_the_offset_is_caught() {
        let bytes = simple_batch(3, 10, Codec::None);
        for at in 8..bytes.len() {
            let mut corrupt = bytes.to_vec();
            corrupt[at] ^= 0x40;
            // The leader epoch (12..16) is outside the CRC on purpose.
            if (12..16).contains(&at) {
                assert!(BatchView::validate(&corrupt).is_ok());
            } else {
                assert!(
                    BatchView::validate(&corrupt).is_err(),
                    "flip at byte {at} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn log_append_time_rewrites_and_keeps_the_crc_valid() {
        let mut bytes = simple_batch(2, 4, Codec::Lz4).to_vec();
        batch::set_base_offset(&mut bytes, Offset(42));
        batch::set_log_append_time(&mut bytes, TimestampMs(7));
        let (view, _) = BatchView::validate(&bytes).unwrap();
        assert_eq!(view.base_offset(), Offset(42));
        assert_eq!(view.max_timestamp(), TimestampMs(7));
        assert_eq!(view.timestamp_type(), TimestampType::LogAppendTime);
        let records = decode(&view, 1 << 20).unwrap();
        assert!(records.iter().all(|r| r.timestamp == TimestampMs(7)));
        assert_eq!(records[1].offset, Offset(43));
    }
}
