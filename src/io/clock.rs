//! Time as the coordinators see it: behind a trait, so that a test runs them on a clock it moves
//! (session timeouts, rebalance delays, transaction timeouts, offset retention) instead of
//! sleeping.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::model::TimestampMs;

pub trait Clock {
    /// Monotonic time, for timeouts.
    fn now(&self) -> Instant;
    /// Wall-clock time, for what is stored and answered (Kafka's timestamps).
    fn wall(&self) -> TimestampMs;
}

/// The machine's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> TimestampMs {
        TimestampMs::now()
    }
}

/// A clock that moves only when told to, both readings together.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    wall_start: TimestampMs,
    elapsed: Cell<Duration>,
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock {
            start: Instant::now(),
            wall_start: TimestampMs::now(),
            elapsed: Cell::new(Duration::ZERO),
        }
    }

    pub fn advance(&self, by: Duration) {
        self.elapsed.set(self.elapsed.get() + by);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed.get()
    }

    fn wall(&self) -> TimestampMs {
        TimestampMs(self.wall_start.0 + self.elapsed.get().as_millis() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_both_readings_only_when_told() {
        let clock = ManualClock::new();
        let (now, wall) = (clock.now(), clock.wall());
        assert_eq!((clock.now(), clock.wall()), (now, wall));
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now() - now, Duration::from_millis(1500));
        assert_eq!(clock.wall().0 - wall.0, 1500);
    }
}
