//! Reads: read ranges of whole batches, offsets for timestamps.

use super::*;

fn range_of(
    file: &Rc<io::File>,
    start: u64,
    end: u64,
    first_offset: Offset,
    next_offset: Offset,
) -> ReadRange {
    ReadRange {
        file: file.clone(),
        position: start,
        bytes: end - start,
        first_offset,
        next_offset,
    }
}

impl Log {
    /// Read ranges of whole batches from `offset`, stopping before any batch that reaches `upper`
    /// (the high watermark or last stable offset) and within `max_bytes`; with `min_one_batch`,
    /// a first batch larger than `max_bytes` is returned whole (KIP-74). A read that starts inside
    /// a batch returns that batch.
    pub async fn read(
        &self,
        offset: Offset,
        upper: Offset,
        max_bytes: u64,
        min_one_batch: bool,
    ) -> Result<Vec<ReadRange>, StorageError> {
        let (mut base, upper) = {
            let state = self.state.borrow();
            if offset < state.log_start || offset > state.log_end {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start: state.log_start,
                    log_end: state.log_end,
                });
            }
            (state.floor_base(offset), upper.min(state.log_end))
        };
        let mut ranges = Vec::new();
        let mut offset = offset;
        let mut budget = max_bytes;
        while offset < upper {
            match self.ensure_loaded(base).await {
                // No descriptor for another segment now: what was read so far is the answer.
                Err(StorageError::Busy { .. }) if !ranges.is_empty() => break,
                loaded => loaded?,
            }
            let (file, start_hint, size, segment_next, next_base, recent) = {
                let state = self.state.borrow();
                let Some(slot) = state.segments.get(&base) else {
                    break; // deleted meanwhile (retention, truncation)
                };
                let Some(segment) = slot else {
                    continue; // unloaded by another task's load meanwhile: load it again
                };
                (
                    segment.log.clone(),
                    segment.index.lookup(offset),
                    segment.size_bytes,
                    segment.next_offset,
                    state.next_base(base),
                    segment.recent_find(offset),
                )
            };
            let first = match recent {
                Some(found) => found,
                None => segment::find_batch(&file, start_hint, size, offset).await?,
            };
            let Some(first) = first else {
                // Nothing at or after `offset` here (compaction can leave a gap): next segment.
                match next_base {
                    Some(next) => {
                        base = next;
                        offset = offset.max(segment_next);
                        continue;
                    }
                    None => break,
                }
            };
            if first.next_offset() > upper {
                break;
            }
            if first.bytes as u64 > budget {
                if min_one_batch && ranges.is_empty() {
                    ranges.push(range_of(
                        &file,
                        first.position,
                        first.end(),
                        first.base,
                        first.next_offset(),
                    ));
                }
                break;
            }
            let byte_limit = first.position + budget;
            let (end, next_offset) = if upper >= segment_next && size <= byte_limit {
                (size, segment_next)
            } else if let Some(end) = self.recent_end(base, &first, byte_limit, upper) {
                end
            } else {
                let hint = {
                    let state = self.state.borrow();
                    match state.segments.get(&base) {
                        Some(Some(segment)) => segment
                            .index
                            .floor_position(byte_limit, upper)
                            .map(|(_, position)| position),
                        _ => None,
                    }
                };
                let from = hint.unwrap_or(first.position).max(first.position);
                let mut end = (first.end(), first.next_offset());
                segment::scan(&file, from, size, false, |info| {
                    if info.end() > byte_limit || info.next_offset() > upper {
                        return false;
                    }
                    end = (info.end(), info.next_offset());
                    true
                })
                .await?;
                end
            };
            ranges.push(range_of(
                &file,
                first.position,
                end,
                first.base,
                next_offset,
            ));
            budget -= end - first.position;
            match next_base {
                Some(next) if end == size && budget > 0 => {
                    base = next;
                    offset = segment_next;
                }
                _ => break,
            }
        }
        Ok(ranges)
    }

    fn recent_end(
        &self,
        base: Offset,
        first: &BatchInfo,
        byte_limit: u64,
        upper: Offset,
    ) -> Option<(u64, Offset)> {
        let state = self.state.borrow();
        let segment = state.segments.get(&base)?.as_deref()?;
        segment.recent_end(first, byte_limit, upper)
    }

    /// The first record at or after `timestamp` (Kafka's offsets-for-times): its offset and
    /// timestamp, or `None` when every record is older.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: TimestampMs,
    ) -> Result<Option<(Offset, TimestampMs)>, StorageError> {
        let (bases, log_start) = {
            let state = self.state.borrow();
            (
                state.segments.keys().copied().collect::<Vec<_>>(),
                state.log_start,
            )
        };
        for base in bases {
            let found = self
                .with_loaded(base, |segment| {
                    (segment.max_timestamp >= timestamp).then(|| {
                        let start = segment.time_index.lookup(timestamp).max(log_start);
                        (
                            segment.log.clone(),
                            segment.index.lookup(start),
                            segment.size_bytes,
                        )
                    })
                })
                .await?
                .flatten();
            let Some((file, from, size)) = found else {
                continue;
            };
            // The first batch whose max timestamp reaches `timestamp` holds such a record
            // (unless it lies below the log start): decode batches one at a time from there.
            let mut from = from;
            loop {
                let mut candidate = None;
                segment::scan(&file, from, size, false, |info| {
                    if info.max_timestamp >= timestamp && info.last >= log_start {
                        candidate = Some(*info);
                        return false;
                    }
                    true
                })
                .await?;
                let Some(info) = candidate else {
                    break;
                };
                let bytes = file
                    .read_exact_at(info.position, info.bytes as usize)
                    .await?;
                let (view, _) = BatchView::parse_header(&bytes)
                    .map_err(|source| StorageError::CorruptBatch { index: 0, source })?;
                let limit = self.config.borrow().max_message_bytes.max(1 << 20) * 64;
                let decoded =
                    records::decode(&view, limit).map_err(|e| StorageError::CorruptFile {
                        path: file.path().to_path_buf(),
                        detail: e.to_string(),
                    })?;
                if let Some(record) = decoded
                    .iter()
                    .find(|r| r.timestamp >= timestamp && r.offset >= log_start)
                {
                    return Ok(Some((record.offset, record.timestamp)));
                }
                from = info.end();
            }
        }
        Ok(None)
    }

    /// The first record with the log's largest timestamp (ListOffsets' max timestamp, KIP-734):
    /// its offset and timestamp, or `None` for an empty log.
    pub async fn offset_of_max_timestamp(
        &self,
    ) -> Result<Option<(Offset, TimestampMs)>, StorageError> {
        let bases: Vec<Offset> = self.state.borrow().segments.keys().copied().collect();
        let mut max = TimestampMs::NONE;
        for base in bases {
            let segment_max = self.with_loaded(base, |s| s.max_timestamp).await?;
            if let Some(t) = segment_max {
                max = max.max(t);
            }
        }
        if max == TimestampMs::NONE {
            return Ok(None);
        }
        self.offset_for_timestamp(max).await
    }
}
