//! Helpers shared by the storage tests.

use bytes::Bytes;
use sluice::model::records::{self, BatchBuilder, Record};
use sluice::model::{BatchView, Codec, Offset, TimestampMs};
use sluice::storage::{Log, LogConfig, ReadRange};

/// A batch of records with these keys and values (None: null), all at `timestamp`.
pub fn keyed(entries: &[(&str, Option<&str>)], timestamp: i64, codec: Codec) -> Bytes {
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            offset: Offset(i as i64),
            timestamp: TimestampMs(timestamp),
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Vec::new(),
        })
        .collect();
    BatchBuilder {
        codec,
        ..BatchBuilder::default()
    }
    .build(&records)
}

/// Every record in the ranges, decoded.
pub async fn records_in(ranges: &[ReadRange]) -> Vec<Record> {
    let mut out = Vec::new();
    for range in ranges {
        let bytes = range.read_bytes().await.unwrap();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (view, after) = BatchView::validate(rest).unwrap();
            out.extend(records::decode(&view, 1 << 24).unwrap());
            rest = after;
        }
    }
    out
}

/// Every record readable from `from` up to the log end.
pub async fn records_from(log: &Log, from: Offset) -> Vec<Record> {
    let ranges = log
        .read(from, log.log_end(), u64::MAX / 2, true)
        .await
        .unwrap();
    records_in(&ranges).await
}

pub fn text(bytes: Option<Bytes>) -> Option<String> {
    bytes.map(|b| String::from_utf8(b.to_vec()).unwrap())
}

/// Small segments and a dense index, so that a few batches roll and index.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

/// A batch of `count` records whose values are `tag-i`, timestamps from `timestamp`.
pub fn batch(tag: &str, count: usize, timestamp: i64, codec: Codec) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            offset: Offset(i as i64),
            timestamp: TimestampMs(timestamp + i as i64),
            key: Some(Bytes::from(format!("k{}", i % 3))),
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: Vec::new(),
        })
        .collect();
    BatchBuilder {
        codec,
        ..BatchBuilder::default()
    }
    .build(&records)
}

/// Every record readable from `from`, as (offset, value).
pub async fn read_all(log: &Log, from: Offset) -> Vec<(i64, String)> {
    records_from(log, from)
        .await
        .into_iter()
        .map(|r| (r.offset.0, text(r.value).unwrap_or_default()))
        .collect()
}

/// Appends `count` batches of `records` records each, tagged `<tag><i>`, with default options.
pub async fn append_batches(log: &Log, tag: &str, count: usize, records: usize) {
    for i in 0..count {
        log.append(
            vec![batch(&format!("{tag}{i}"), records, 0, Codec::None)],
            sluice::storage::AppendOptions::default(),
        )
        .await
        .unwrap();
    }
}
