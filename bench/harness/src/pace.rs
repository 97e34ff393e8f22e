//! Rate limiting by schedule: message n of a producer is due at `start + n / rate`. A producer
//! that falls behind sends at once, and the time it is late is its publish delay, so a slow
//! broker shows up in latency instead of silently lowering the offered rate (coordinated
//! omission).

use std::time::{Duration, Instant};

/// Sleeping shorter than this costs more than it saves: a send that is due this soon goes now.
const SLEEP_MIN: Duration = Duration::from_micros(50);

pub struct Pacer {
    start: Instant,
    /// Nanoseconds between two messages; 0: no limit.
    period_ns: f64,
    sent: u64,
}

impl Pacer {
    /// A schedule of `rate` messages a second from now; a rate of 0 or less has no limit.
    pub fn new(rate: f64) -> Pacer {
        Pacer {
            start: Instant::now(),
            period_ns: if rate > 0.0 { 1e9 / rate } else { 0.0 },
            sent: 0,
        }
    }

    /// When the next message is due; advances the schedule.
    pub fn next_due(&mut self) -> Instant {
        let due = self.start + Duration::from_nanos((self.sent as f64 * self.period_ns) as u64);
        self.sent += 1;
        due
    }

    /// Waits until the next message is due and returns when that was (it may be in the past).
    pub fn wait(&mut self) -> Instant {
        let due = self.next_due();
        let now = Instant::now();
        if due > now + SLEEP_MIN {
            std::thread::sleep(due - now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schedule holds the rate within 5% over half a second, whether the sender is early
    /// (it sleeps) or late (it catches up without sleeping, and the lateness shows).
    #[test]
    fn rate_is_held_and_lateness_is_measured() {
        for rate in [2_000.0, 20_000.0] {
            let mut pacer = Pacer::new(rate);
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < Duration::from_millis(500) {
                pacer.wait();
                sent += 1;
            }
            let achieved = sent as f64 / start.elapsed().as_secs_f64();
            assert!(
                (achieved / rate - 1.0).abs() < 0.05,
                "rate {rate}: achieved {achieved:.0}"
            );
        }
        // A sender stalled for 100 ms at 1000/s owes 100 messages: they are all due already.
        let mut pacer = Pacer::new(1_000.0);
        std::thread::sleep(Duration::from_millis(100));
        let late: Vec<Duration> = (0..100)
            .map(|_| Instant::now().saturating_duration_since(pacer.wait()))
            .collect();
        assert!(late[0] >= Duration::from_millis(99), "{:?}", late[0]);
        assert!(late[50] >= Duration::from_millis(45), "{:?}", late[50]);
        // No limit: every message is due at the start.
        let mut pacer = Pacer::new(0.0);
        let first = pacer.wait();
        assert!((0..1000).all(|_| pacer.wait() == first));
    }
}
