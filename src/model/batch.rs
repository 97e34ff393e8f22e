//! RecordBatch v2 (magic 2): a typed, zero-copy view of the 61-byte header and its validation.
//!
//! Layout (all big-endian), from Kafka's `DefaultRecordBatch`:
//!
//! | at | size | field                  | covered by CRC |
//! |----|------|------------------------|----------------|
//! |  0 | 8    | base offset            | no             |
//! |  8 | 4    | batch length (after it)| no             |
//! | 12 | 4    | partition leader epoch | no             |
//! | 16 | 1    | magic (2)              | no             |
//! | 17 | 4    | CRC32C                 | no             |
//! | 21 | 2    | attributes             | yes            |
//! | 23 | 4    | last offset delta      | yes            |
//! | 27 | 8    | base (first) timestamp | yes            |
//! | 35 | 8    | max timestamp          | yes            |
//! | 43 | 8    | producer id            | yes            |
//! | 51 | 2    | producer epoch         | yes            |
//! | 53 | 4    | base sequence          | yes            |
//! | 57 | 4    | record count           | yes            |
//! | 61 | ...  | records                | yes            |

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{Codec, Offset, TimestampMs};

/// Bytes of a batch header.
pub const HEADER_BYTES: usize = 61;
/// Bytes before the length-counted part: base offset and batch length (Kafka's LOG_OVERHEAD).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Where the CRC-covered part starts (the attributes).
pub const CRC_START: usize = 21;
/// The smallest possible encoded record: seven one-byte varints.
pub const RECORD_BYTES_MIN: usize = 7;
pub const MAGIC_V2: i8 = 2;

const ATTR_CODEC_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// The RecordBatch v2 header as it lies on the wire and on disk.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug)]
#[repr(C)]
pub struct BatchHeader {
    pub base_offset: I64,
    pub batch_length: I32,
    pub partition_leader_epoch: I32,
    pub magic: i8,
    pub crc: U32,
    pub attributes: I16,
    pub last_offset_delta: I32,
    pub base_timestamp: I64,
    pub max_timestamp: I64,
    pub producer_id: I64,
    pub producer_epoch: I16,
    pub base_sequence: I32,
    pub records_count: I32,
}

const _: () = assert!(std::mem::size_of::<BatchHeader>() == HEADER_BYTES);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Why a batch was refused. Storage maps these to its own errors; the server maps them to
/// CORRUPT_MESSAGE / INVALID_RECORD.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    #[error("batch truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("batch length {length} is invalid (smaller than the header)")]
    BadLength { length: i32 },
    #[error("unsupported magic {magic} (only record batch v2 is accepted)")]
    BadMagic { magic: i8 },
    #[error("CRC32C mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("record count {count} out of bounds for last offset delta {last_offset_delta} and {records_bytes} record bytes")]
    BadRecordCount {
        count: i32,
        last_offset_delta: i32,
        records_bytes: usize,
    },
    #[error("unknown compression codec {codec}")]
    BadCodec { codec: i16 },
}

/// A validated (or, with [`BatchView::parse_header`], merely framed) batch.
#[derive(Clone, Copy, Debug)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Frames the first batch of `bytes` without checking its CRC: enough to know its size and
    /// header fields. Returns the view and the rest of the bytes.
    pub fn parse_header(bytes: &'a [u8]) -> Result<(BatchView<'a>, &'a [u8]), BatchError> {
        let total = Self::total_len(bytes)?;
        if bytes.len() < total {
            return Err(BatchError::Truncated {
                need: total,
                have: bytes.len(),
            });
        }
        let (batch, rest) = bytes.split_at(total);
        let view = BatchView { bytes: batch };
        if view.header().magic != MAGIC_V2 {
            return Err(BatchError::BadMagic {
                magic: view.header().magic,
            });
        }
        Ok((view, rest))
    }

    /// Frames and fully validates the first batch of `bytes`: magic, length, CRC32C, codec and
    /// record-count bounds.
    pub fn validate(bytes: &'a [u8]) -> Result<(BatchView<'a>, &'a [u8]), BatchError> {
        let (view, rest) = Self::parse_header(bytes)?;
        view.check_crc()?;
        view.check_counts()?;
        Ok((view, rest))
    }

    /// The whole size of the batch that starts `bytes` (base offset and length included), read
    /// from its length field; needs only the first 12 bytes.
    pub fn total_len(bytes: &[u8]) -> Result<usize, BatchError> {
        if bytes.len() < LOG_OVERHEAD_BYTES {
            return Err(BatchError::Truncated {
                need: LOG_OVERHEAD_BYTES,
                have: bytes.len(),
            });
        }
        let length = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if length < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            return Err(BatchError::BadLength { length });
        }
        Ok(LOG_OVERHEAD_BYTES + length as usize)
    }

    pub fn header(&self) -> &'a BatchHeader {
        // The constructor checked the length, so the prefix cast cannot fail.
        let (header, _) = BatchHeader::ref_from_prefix(self.bytes).expect("framed batch");
        header
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The record bytes after the header (compressed if the batch is).
    pub fn records_bytes(&self) -> &'a [u8] {
        &self.bytes[HEADER_BYTES..]
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn base_offset(&self) -> Offset {
        Offset(self.header().base_offset.get())
    }

    pub fn last_offset(&self) -> Offset {
        Offset(self.header().base_offset.get() + self.header().last_offset_delta.get() as i64)
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> Offset {
        self.last_offset().plus(1)
    }

    pub fn records_count(&self) -> i32 {
        self.header().records_count.get()
    }

    pub fn attributes(&self) -> i16 {
        self.header().attributes.get()
    }

    pub fn codec(&self) -> Result<Codec, BatchError> {
        let codec = self.attributes() & ATTR_CODEC_MASK;
        Codec::from_attribute(codec).ok_or(BatchError::BadCodec { codec })
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes() & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes() & ATTR_CONTROL != 0
    }

    pub fn base_timestamp(&self) -> TimestampMs {
        TimestampMs(self.header().base_timestamp.get())
    }

    pub fn max_timestamp(&self) -> TimestampMs {
        TimestampMs(self.header().max_timestamp.get())
    }

    pub fn producer_id(&self) -> i64 {
        self.header().producer_id.get()
    }

    pub fn producer_epoch(&self) -> i16 {
        self.header().producer_epoch.get()
    }

    pub fn base_sequence(&self) -> i32 {
        self.header().base_sequence.get()
    }

    pub fn crc(&self) -> u32 {
        self.header().crc.get()
    }

    pub fn computed_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[CRC_START..])
    }

    pub fn check_crc(&self) -> Result<(), BatchError> {
        let expected = self.crc();
        let actual = self.computed_crc();
        if expected != actual {
            return Err(BatchError::CrcMismatch { expected, actual });
        }
        Ok(())
    }

    /// What Kafka asks of a batch a client produces, beyond [`Self::validate`]: at least one
    /// record, and exactly one per offset of its span (only compaction leaves gaps).
    pub fn check_produced(&self) -> Result<(), BatchError> {
        let header = self.header();
        let count = header.records_count.get();
        let last_offset_delta = header.last_offset_delta.get();
        if count <= 0 || count as i64 != last_offset_delta as i64 + 1 {
            return Err(BatchError::BadRecordCount {
                count,
                last_offset_delta,
                records_bytes: self.records_bytes().len(),
            });
        }
        Ok(())
    }

    fn check_counts(&self) -> Result<(), BatchError> {
        let header = self.header();
        let count = header.records_count.get();
        let last_offset_delta = header.last_offset_delta.get();
        let records_bytes = self.records_bytes().len();
        let codec = self.codec()?;
        let too_many_for_bytes = codec == Codec::None
            && (count as usize).saturating_mul(RECORD_BYTES_MIN) > records_bytes;
        // A compacted batch may have fewer records than its offset span, never more.
        if count < 0
            || last_offset_delta < 0
            || count as i64 > last_offset_delta as i64 + 1
            || too_many_for_bytes
        {
            return Err(BatchError::BadRecordCount {
                count,
                last_offset_delta,
                records_bytes,
            });
        }
        Ok(())
    }
}

/// Rewrites the base offset of the batch at the start of `bytes`. The CRC does not cover it.
pub fn set_base_offset(bytes: &mut [u8], offset: Offset) {
    header_mut(bytes).base_offset.set(offset.get());
}

/// Rewrites the partition leader epoch. The CRC does not cover it.
pub fn set_partition_leader_epoch(bytes: &mut [u8], epoch: i32) {
    header_mut(bytes).partition_leader_epoch.set(epoch);
}

/// Stamps the batch with LogAppendTime: sets the timestamp-type attribute and the max timestamp,
/// then recomputes the CRC (both are covered by it).
pub fn set_log_append_time(bytes: &mut [u8], now: TimestampMs) {
    let header = header_mut(bytes);
    let attributes = header.attributes.get() | ATTR_TIMESTAMP_TYPE;
    header.attributes.set(attributes);
    header.max_timestamp.set(now.0);
    set_crc(bytes);
}

/// Sets the CRC of the framed batch `bytes` (no more, no less) to what its contents give.
pub fn set_crc(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[CRC_START..]);
    header_mut(bytes).crc.set(crc);
}

fn header_mut(bytes: &mut [u8]) -> &mut BatchHeader {
    let (header, _) = BatchHeader::mut_from_prefix(bytes).expect("batch shorter than its header");
    header
}

/// Attribute bits for a new batch.
pub fn attributes(
    codec: Codec,
    timestamp_type: TimestampType,
    transactional: bool,
    control: bool,
) -> i16 {
    let mut attributes = codec.attribute();
    if timestamp_type == TimestampType::LogAppendTime {
        attributes |= ATTR_TIMESTAMP_TYPE;
    }
    if transactional {
        attributes |= ATTR_TRANSACTIONAL;
    }
    if control {
        attributes |= ATTR_CONTROL;
    }
    attributes
}
