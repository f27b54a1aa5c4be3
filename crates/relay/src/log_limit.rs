//! Repeated events in the log once per interval, with how many were left out: when the CSE is down,
//! every device's link fails every back-off (thousands of lines a second in passthrough mode), and
//! the first line plus a count per interval says the same. Pure: the caller gives `now`.

use std::time::{Duration, Instant};

/// How often a repeated event is logged.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct LogLimit {
    interval: Duration,
    next: Option<Instant>,
    suppressed: u64,
}

impl Default for LogLimit {
    fn default() -> Self {
        Self::new(LOG_INTERVAL)
    }
}

impl LogLimit {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when the event at `now` should be logged (`n`: how many were left out since the
    /// last line), `None` when it is counted instead.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.next {
            Some(t) if now < t => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.next = Some(now + self.interval);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_then_once_per_interval_with_the_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = LogLimit::new(s(10));
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0 + s(1)), None);
        assert_eq!(l.allow(t0 + s(9)), None);
        assert_eq!(l.allow(t0 + s(10)), Some(2));
        assert_eq!(l.allow(t0 + s(11)), None);
        // A quiet spell: the next one is logged at once.
        assert_eq!(l.allow(t0 + s(60)), Some(1));
        assert_eq!(l.allow(t0 + s(61)), None);
    }
}
