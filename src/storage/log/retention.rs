//! Truncation, the log start offset, retention.

use super::*;

impl Log {
    /// Removes every batch at or after `offset` (a follower's truncation after a leader change).
    /// Kafka cuts whole batches: the new log end is the base of the batch holding `offset`.
    /// Returns the new log end.
    pub async fn truncate_to(&self, offset: Offset) -> Result<Offset, StorageError> {
        let _guard = self.write_lock.lock().await;
        let (log_end, log_start, base) = {
            let state = self.state.borrow();
            (state.log_end, state.log_start, state.floor_base(offset))
        };
        if offset >= log_end {
            return Ok(log_end);
        }
        if offset <= log_start || offset < base {
            return self
                .reset_to(offset.max(Offset::ZERO))
                .await
                .map(|_| offset.max(Offset::ZERO));
        }
        let found = self
            .with_loaded(base, |segment| {
                (
                    segment.log.clone(),
                    segment.index.lookup(offset),
                    segment.size_bytes,
                )
            })
            .await?;
        let (file, from, size) = found.expect("the write lock keeps segments from being deleted");
        let cut = segment::find_batch(&file, from, size, offset).await?;
        if cut.is_some_and(|info| info.base < log_start) {
            // The batch holding `offset` starts below the log start: cutting it would leave the
            // end before the start, so empty the log and start it at `offset` (as Kafka does).
            return self.reset_to(offset).await.map(|_| offset);
        }
        let later: Vec<Offset> = self
            .state
            .borrow()
            .segments
            .range(base.plus(1)..)
            .map(|(b, _)| *b)
            .collect();
        for later_base in later.into_iter().rev() {
            self.remove_segment(later_base)?;
        }
        let (position, new_end) = cut.map_or((size, offset), |info| (info.position, info.base));
        file.truncate(position).await?;
        // The segment is the active one now; the shard may have unloaded it meanwhile (reopening
        // it reads the cut file).
        self.untrack(base);
        let mut segment = loop {
            let taken = self
                .state
                .borrow_mut()
                .segments
                .get_mut(&base)
                .and_then(Option::take);
            match taken {
                Some(segment) => break segment,
                None => self.ensure_loaded(base).await?,
            }
        };
        segment.size_bytes = position;
        segment.index.truncate_to_position(position);
        segment.time_index.truncate_to_offset(new_end);
        segment.reset_max_timestamp();
        let rescan_from = segment.index.lookup(new_end);
        let rescanned = segment.rescan_from(rescan_from, false).await;
        if position == 0 {
            segment.next_offset = base;
        } else {
            segment.next_offset = new_end;
        }
        let written = segment.write_indexes().await;
        let synced = segment.sync().await;
        self.state.borrow_mut().segments.insert(base, Some(segment));
        rescanned?;
        written?;
        synced?;
        {
            let mut state = self.state.borrow_mut();
            let end = state.active().next_offset;
            state.log_end = end;
            state.recovery_point = state.recovery_point.min(end);
            state.first_dirty = state.first_dirty.min(end);
            state.epochs.truncate(end);
        }
        self.write_epochs().await?;
        self.write_checkpoint().await?;
        // Producers' batches past the new end are gone: rebuild from a snapshot below it.
        self.rebuild_producers().await?;
        Ok(self.log_end())
    }

    /// Deletes everything and starts an empty log at `offset` (a follower behind its leader's log
    /// start). Returns the new log end.
    pub async fn restart_at(&self, offset: Offset) -> Result<Offset, StorageError> {
        let _guard = self.write_lock.lock().await;
        self.reset_to(offset.max(Offset::ZERO)).await?;
        self.rebuild_producers().await?;
        Ok(self.log_end())
    }

    /// Deletes everything and starts an empty log at `offset`. Caller holds the write lock.
    async fn reset_to(&self, offset: Offset) -> Result<(), StorageError> {
        let all: Vec<Offset> = self.state.borrow().segments.keys().copied().collect();
        for base in all {
            self.remove_segment(base)?;
        }
        let interval = self.config.borrow().index_interval_bytes;
        let segment = Segment::create(&self.dir, offset, interval, &self.faults).await?;
        io::sync_dir(&self.dir).await?;
        {
            let mut state = self.state.borrow_mut();
            state.segments.insert(offset, Some(Box::new(segment)));
            state.log_start = offset;
            state.log_end = offset;
            state.recovery_point = offset;
            state.first_dirty = offset;
            state.epochs.clear();
        }
        self.write_epochs().await?;
        self.write_checkpoint().await
    }

    /// Moves the log start offset forward (DeleteRecords); whole segments below it are deleted.
    /// The caller bounds `offset` by the high watermark.
    pub async fn advance_log_start(&self, offset: Offset) -> Result<Offset, StorageError> {
        let _guard = self.write_lock.lock().await;
        {
            let mut state = self.state.borrow_mut();
            if offset > state.log_end || offset < Offset::ZERO {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start: state.log_start,
                    log_end: state.log_end,
                });
            }
            if offset <= state.log_start {
                return Ok(state.log_start);
            }
            state.log_start = offset;
        }
        self.write_checkpoint().await?;
        self.delete_closed_segments(|_, _, next_base, _| next_base <= offset)
            .await?;
        {
            let mut state = self.state.borrow_mut();
            let first_base = state.floor_base(offset);
            state.aborted = state.aborted.split_off(&first_base);
        }
        Ok(offset)
    }

    /// Deletes closed segments by `retention.ms` (their newest timestamp) and `retention.bytes`,
    /// oldest first; never the active segment. The log start offset moves to the first kept one.
    pub async fn enforce_retention(
        &self,
        now: TimestampMs,
    ) -> Result<RetentionReport, StorageError> {
        let _guard = self.write_lock.lock().await;
        let config = self.config.borrow().clone();
        if !config.cleanup_policy.delete || (config.retention_ms < 0 && config.retention_bytes < 0)
        {
            return Ok(RetentionReport::default());
        }
        let mut size_left = self.size_bytes()? as i64;
        self.delete_closed_segments(|max_timestamp, size, _, _| {
            let too_old = config.retention_ms >= 0
                && max_timestamp.0 >= 0
                && now.0 - max_timestamp.0 > config.retention_ms;
            let too_big =
                config.retention_bytes >= 0 && size_left - size as i64 >= config.retention_bytes;
            if too_old || too_big {
                size_left -= size as i64;
                return true;
            }
            false
        })
        .await
    }

    /// Deletes closed segments from the oldest while `doomed(max_timestamp, size, next_base,
    /// base)` holds. The log start moves past them in one checkpoint before any file goes (a
    /// crash in between leaves files below the log start, which the next open deletes). Caller
    /// holds the write lock.
    pub(super) async fn delete_closed_segments(
        &self,
        mut doomed: impl FnMut(TimestampMs, u64, Offset, Offset) -> bool,
    ) -> Result<RetentionReport, StorageError> {
        let bases = self.segment_bases();
        let mut condemned = Vec::new();
        for pair in bases.windows(2) {
            let (base, next_base) = (pair[0], pair[1]);
            let found = self
                .with_loaded(base, |segment| (segment.max_timestamp, segment.size_bytes))
                .await?;
            let (max_timestamp, size) =
                found.expect("the write lock keeps segments from being deleted");
            if !doomed(max_timestamp, size, next_base, base) {
                break;
            }
            condemned.push((base, next_base, size));
        }
        let mut report = RetentionReport::default();
        let Some(&(_, new_start, _)) = condemned.last() else {
            return Ok(report);
        };
        {
            let mut state = self.state.borrow_mut();
            state.log_start = state.log_start.max(new_start);
            // The deleted segments' aborted transactions go with their `.txnindex` files.
            state.aborted = state.aborted.split_off(&new_start);
        }
        self.write_checkpoint().await?;
        for (base, _, size) in condemned {
            self.remove_segment(base)?;
            report.deleted_segments += 1;
            report.deleted_bytes += size;
        }
        Ok(report)
    }
}
