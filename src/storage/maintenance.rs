//! The background work of a log: `flush.ms`, retention, compaction and the recovery-point
//! checkpoint, run periodically on a task queue with fewer shares than produce and fetch, so a
//! long compaction yields the core to the hot path.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{CleanReport, Log, RetentionReport, StorageError};
use crate::io;
use crate::model::TimestampMs;

/// Shares of the background queue against the hot path's (glommio shares are relative weights).
pub const BACKGROUND_SHARES: usize = 50;
/// Shares of the produce/fetch queue.
pub const HOT_PATH_SHARES: usize = 1000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub retention: RetentionReport,
    pub cleaning: CleanReport,
}

/// One pass of background work on `log` as of `now`.
pub async fn maintain(log: &Log, now: TimestampMs) -> Result<MaintenanceReport, StorageError> {
    log.flush_if_due().await?;
    let retention = log.enforce_retention(now).await?;
    let cleaning = log.clean(now).await?;
    let expiration_ms = log.config().producer_id_expiration_ms;
    let expired = log.expire_producers(now, expiration_ms);
    if expired > 0 {
        tracing::info!(log = %log.dir().display(), expired, "idle idempotent producers forgotten");
    }
    log.checkpoint().await?;
    Ok(MaintenanceReport {
        retention,
        cleaning,
    })
}

/// How often background work runs on a log: everything every `retention_check` (Kafka's
/// `log.retention.check.interval.ms`), and for a compacted log a compaction pass every
/// `cleaner_backoff` in between (Kafka's cleaner looks again after `log.cleaner.backoff.ms`).
#[derive(Clone, Copy, Debug)]
pub struct Periods {
    pub retention_check: Duration,
    pub cleaner_backoff: Duration,
}

/// Runs [`maintain`] on `log` every `periods.retention_check`, and [`Log::clean`] every
/// `periods.cleaner_backoff` while the log is compacted, on `queue`, until the log is closed.
/// Errors are logged once per pass and the next pass retries.
pub fn spawn_maintenance(log: Rc<Log>, queue: io::TaskQueue, periods: Periods) -> io::Task<()> {
    queue.spawn(async move {
        let mut next_full = Instant::now() + periods.retention_check;
        loop {
            let until_full = next_full.saturating_duration_since(Instant::now());
            let compacted = log.config().cleanup_policy.compact;
            let wait = if compacted {
                until_full.min(periods.cleaner_backoff)
            } else {
                until_full
            };
            io::sleep(wait).await;
            if log.is_closed() {
                break;
            }
            let result = if Instant::now() >= next_full {
                next_full = Instant::now() + periods.retention_check;
                maintain(&log, log.now()).await
            } else if log.config().cleanup_policy.compact {
                log.clean(log.now())
                    .await
                    .map(|cleaning| MaintenanceReport {
                        cleaning,
                        ..MaintenanceReport::default()
                    })
            } else {
                continue;
            };
            match result {
                Ok(report) if report != MaintenanceReport::default() => {
                    tracing::info!(log = %log.dir().display(), ?report, "background maintenance")
                }
                Ok(_) => {}
                Err(StorageError::Closed) => break,
                Err(e) => crate::throttled!(|count| {
                    tracing::warn!(log = %log.dir().display(), error = %e, count, "background maintenance failed; retrying next period")
                }),
            }
        }
    })
}
