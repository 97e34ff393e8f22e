//! Logs that do not flood: the same line from the same place at most once a second per shard,
//! with the number of occasions since the last one.

use std::time::{Duration, Instant};

/// A log line at most once a second, counting the occasions in between.
#[derive(Default)]
pub struct Throttled {
    last: Option<Instant>,
    count: u64,
}

impl Throttled {
    /// Counts an occasion; calls `log` with the count when a second has passed since the last.
    pub fn note(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(1))
        {
            log(self.count);
            self.last = Some(now);
            self.count = 0;
        }
    }
}

/// `throttled!(|count| tracing::warn!(count, ...))`: the log call at most once a second per
/// thread (shard) from this call site, `count` being the occasions since its last line.
#[macro_export]
macro_rules! throttled {
    ($log:expr) => {{
        thread_local! {
            static THROTTLE: std::cell::RefCell<$crate::io::Throttled> =
                std::cell::RefCell::new(Default::default());
        }
        THROTTLE.with(|t| t.borrow_mut().note($log));
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count_between() {
        let mut throttled = Throttled::default();
        let mut lines = Vec::new();
        for _ in 0..1000 {
            throttled.note(|count| lines.push(count));
        }
        assert_eq!(lines, vec![1]);
        throttled.last = Some(Instant::now() - Duration::from_secs(2));
        throttled.note(|count| lines.push(count));
        assert_eq!(lines, vec![1, 1000]);
    }
}
