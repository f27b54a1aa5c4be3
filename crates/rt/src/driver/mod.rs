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

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::app::{App, ConnId};
use crate::core::{Action, Core};

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

/// What a driver provides to the end of a loop turn.
pub(crate) trait Turn<A: App> {
    fn core(&mut self) -> &mut Core<A>;
    /// Start connecting `id` to `addr`.
    fn start_connect(&mut self, id: ConnId, addr: SocketAddr);
    /// Write (or submit) `id`'s output, and close it if it is closing and flushed.
    fn flush(&mut self, id: ConnId);
}

/// The end of every loop turn, the same for both drivers: carry out the app's actions and write
/// every dirty connection's output until neither is left. Closing a connection calls the app, which
/// may queue more output (5103 answers after a lost link, a close frame): that output leaves in
/// this turn, not after the next wake-up.
pub(crate) fn settle<A: App>(t: &mut impl Turn<A>, dirty: &mut Vec<ConnId>) {
    loop {
        let actions = std::mem::take(&mut t.core().st.actions);
        for action in actions {
            match action {
                Action::Connect(id, addr) => t.start_connect(id, addr),
                Action::Close(id, reason) => {
                    t.core().close_now(id, reason);
                }
            }
        }
        t.core().take_dirty(dirty);
        for id in dirty.drain(..) {
            t.flush(id);
        }
        let st = &t.core().st;
        if st.actions.is_empty() && st.dirty.is_empty() {
            return;
        }
    }
}
