//! Latency histograms (HdrHistogram, microseconds, 3 significant digits) and counters. Each
//! producer and consumer records into its own; the sampler merges them every period.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The largest latency a histogram keeps exactly: an hour, in microseconds.
const HIGHEST_US: u64 = 3_600_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid bounds")
}

/// The latencies of the current period (the sampler adds the periods up into the run's).
pub struct Recorder {
    period: Mutex<Histogram<u64>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            period: Mutex::new(histogram()),
        }
    }
}

impl Recorder {
    pub fn record(&self, micros: u64) {
        self.period.lock().unwrap().saturating_record(micros.max(1));
    }

    /// Adds this period's values into `into` and starts a new period.
    pub fn take_period(&self, into: &mut Histogram<u64>) {
        let mut period = self.period.lock().unwrap();
        into.add(&*period).expect("same bounds");
        period.reset();
    }

    /// Forgets everything recorded (the end of the warm-up).
    pub fn reset(&self) {
        self.period.lock().unwrap().reset();
    }
}

/// What one producer or consumer counts and records.
#[derive(Default)]
pub struct ClientStats {
    /// Messages handed to the client (producers).
    pub attempted: AtomicU64,
    /// Messages acknowledged (producers) or received (consumers).
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    /// Publish latency (send to acknowledgement) or end-to-end latency (send to receipt).
    pub latency: Recorder,
    /// Publish delay: how late each send was against its schedule.
    pub delay: Recorder,
}

impl ClientStats {
    pub fn count(&self, bytes: usize) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Forgets the latencies recorded (the end of the warm-up); the counters go on, so that
    /// the backlog stays right.
    pub fn reset_latencies(&self) {
        self.latency.reset();
        self.delay.reset();
    }
}

/// Counter totals over a set of clients.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub attempted: u64,
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
}

impl Totals {
    pub fn of<'a>(clients: impl IntoIterator<Item = &'a ClientStats>) -> Totals {
        let mut totals = Totals::default();
        for c in clients {
            totals.attempted += c.attempted.load(Ordering::Relaxed);
            totals.messages += c.messages.load(Ordering::Relaxed);
            totals.bytes += c.bytes.load(Ordering::Relaxed);
            totals.errors += c.errors.load(Ordering::Relaxed);
        }
        totals
    }

    pub fn since(self, earlier: Totals) -> Totals {
        Totals {
            attempted: self.attempted.saturating_sub(earlier.attempted),
            messages: self.messages.saturating_sub(earlier.messages),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            errors: self.errors.saturating_sub(earlier.errors),
        }
    }
}

/// The percentiles OMB reports, in the unit asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub avg: f64,
    pub p50: f64,
    pub p75: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub p99999: f64,
    pub max: f64,
    pub count: u64,
}

impl Percentiles {
    /// From a histogram of microseconds, divided by `unit_us` (1000 for milliseconds).
    pub fn of(h: &Histogram<u64>, unit_us: f64) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let q = |quantile: f64| h.value_at_quantile(quantile) as f64 / unit_us;
        Percentiles {
            avg: h.mean() / unit_us,
            p50: q(0.5),
            p75: q(0.75),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            p99999: q(0.99999),
            max: h.max() as f64 / unit_us,
            count: h.len(),
        }
    }
}

/// Percentiles at which the distribution is written out for charts (OMB's `...Quantiles`):
/// every percent to 99, then tenths, hundredths and thousandths of the last percent.
pub fn quantile_points() -> Vec<f64> {
    let mut points: Vec<f64> = (1..100).map(f64::from).collect();
    points.extend((1..10).map(|i| 99.0 + f64::from(i) / 10.0));
    points.extend((1..10).map(|i| 99.9 + f64::from(i) / 100.0));
    points.extend((1..10).map(|i| 99.99 + f64::from(i) / 1000.0));
    points.push(100.0);
    points
}

/// `percentile -> latency` in `unit_us`, keyed as OMB's JSON writes them (`"99.9"`).
pub fn quantiles(h: &Histogram<u64>, unit_us: f64) -> std::collections::BTreeMap<String, f64> {
    if h.is_empty() {
        return Default::default();
    }
    quantile_points()
        .into_iter()
        .map(|p| {
            let key = format!("{}", (p * 1000.0).round() / 1000.0);
            (key, h.value_at_percentile(p) as f64 / unit_us)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merged per-client periods give the same distribution as one histogram of everything, and
    /// the periods add up to the total.
    #[test]
    fn periods_and_clients_merge() {
        let a = Recorder::default();
        let b = Recorder::default();
        let mut all = histogram();
        let mut merged_periods = histogram();
        for period in 0..3u64 {
            for i in 1..=1000u64 {
                a.record(i * (period + 1));
                all.record(i * (period + 1)).unwrap();
            }
            for i in 1..=10u64 {
                b.record(100_000 + i);
                all.record(100_000 + i).unwrap();
            }
            let mut this = histogram();
            a.take_period(&mut this);
            b.take_period(&mut this);
            assert_eq!(this.len(), 1010);
            merged_periods.add(&this).unwrap();
        }
        // The run's total is its periods added up; nothing is left after the last take.
        let mut total = merged_periods.clone();
        a.take_period(&mut total);
        b.take_period(&mut total);
        assert_eq!(total.len(), 3030);
        assert_eq!(Percentiles::of(&total, 1.0), Percentiles::of(&all, 1.0));
        assert_eq!(
            Percentiles::of(&merged_periods, 1.0),
            Percentiles::of(&all, 1.0)
        );
        let p = Percentiles::of(&total, 1000.0);
        // 30 of 3030 values are ~100 ms: the p99 is below them, the p99.9 and max among them.
        assert!(p.p99 < 100.0 && p.p999 > 100.0, "{p:?}");
        assert!((p.max - 100.01).abs() < 0.1, "{p:?}");
        assert!(p.p50 <= p.p75 && p.p75 <= p.p95 && p.p95 <= p.p99);
        let q = quantiles(&total, 1000.0);
        assert_eq!(q.len(), quantile_points().len());
        assert_eq!(q["50"], p.p50);
        assert_eq!(q["99.9"], p.p999);
        assert_eq!(q["100"], p.max);
        a.record(5);
        a.reset();
        let mut empty = histogram();
        a.take_period(&mut empty);
        assert!(empty.is_empty());
    }
}
