//! The two I/O drivers. Both run the same [`Core`](crate::core::Core) and differ only in how bytes
//! reach it and leave it:
//!
//! | | uring | epoll |
//! |---|---|---|
//! | accept | multishot accept per listener | readiness + `accept4` loop |
//! | receive | multishot recv into a provided-buffer ring: an idle connection owns no read buffer | readiness + `recv` into one shared per-core buffer |
//! | send | one `send` SQE per dirty connection, all submitted with one `io_uring_enter` per turn | `send` per dirty connection, writable interest on `EAGAIN` |
//! | sleep | `io_uring_enter` with a timeout argument (`EXT_ARG`) | `epoll_wait` timeout |
//! | wakeup | multishot poll on the core's eventfd | the eventfd registered in epoll |

pub(crate) mod epoll;
pub(crate) mod uring;

use std::time::{Duration, Instant};

/// How long to sleep: until the next timer, the drain deadline, or at most a second.
pub(crate) fn sleep_for(
    now: Instant,
    next_timer: Option<Instant>,
    drain_deadline: Option<Instant>,
) -> Duration {
    let mut until = now + Duration::from_secs(1);
    for d in [next_timer, drain_deadline].into_iter().flatten() {
        until = until.min(d);
    }
    until.saturating_duration_since(now)
}
