//! Liveness: WebSocket pings to quiet devices and on quiet upstream links. A connection that sent
//! nothing for `ping_interval` is pinged; one that then sends nothing (no pong, no data) within
//! `ping_timeout` is taken for dead: a device is aborted (and its originator becomes away, so what
//! the CSE sends is held), a link is failed (its requests in flight answered 5103) and re-opened
//! after the back-off. A pong counts as input, so the idle timeout spares a quiet device that
//! answers pings. TCP keepalive (set by the runtime on every socket) covers the kernel's side.
//!
//! One sweep per core instead of a timer per connection: every quarter interval the engine looks at
//! each device and link (a few nanoseconds each) and pings or closes what is due. No timer work per
//! connection or per ping; a dead one is found within interval + timeout + a quarter interval.

use std::time::{Duration, Instant};

use m2m_ws::CloseCode;

use crate::counters::LIMIT_PING_TIMEOUT;
use crate::device::DeviceState;
use crate::engine::{Engine, T_PING_SWEEP, timer};
use crate::link::LinkState;
use crate::{DeviceId, Io, LinkId, Peer};

/// What a connection needs now.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    Nothing,
    Ping,
    Dead,
}

/// The ping state machine of one connection, from its last input and the ping it has not answered.
fn due(
    now: Instant,
    last_input: Instant,
    ping_sent: Option<Instant>,
    interval: Duration,
    timeout: Duration,
) -> Due {
    match ping_sent {
        // Anything received since the ping answers it too.
        Some(sent) if last_input < sent => {
            if now >= sent + timeout {
                Due::Dead
            } else {
                Due::Nothing
            }
        }
        _ if now >= last_input + interval => Due::Ping,
        _ => Due::Nothing,
    }
}

/// The connections of `table` that need a ping or are dead; `state` gives an open connection's last
/// input and unanswered ping (none for one that is not open).
fn due_now<T>(
    table: &crate::slab::Slab<T>,
    now: Instant,
    interval: Duration,
    timeout: Duration,
    state: impl Fn(&T) -> Option<(Instant, Option<Instant>)>,
) -> Vec<((u32, u32), Due)> {
    table
        .iter()
        .filter_map(|(id, v)| {
            let (last_input, ping_sent) = state(v)?;
            Some((id, due(now, last_input, ping_sent, interval, timeout)))
        })
        .filter(|(_, due)| *due != Due::Nothing)
        .collect()
}

/// How often the sweep runs for a ping interval.
fn sweep_step(interval: Duration) -> Duration {
    (interval / 4).max(Duration::from_millis(50))
}

impl Engine {
    /// Make sure the sweep runs (called when a device or link opens; it stops when none is left).
    pub(crate) fn arm_ping_sweep(&mut self, io: &mut impl Io, now: Instant) {
        if let Some(interval) = self.s.ping_interval
            && !self.ping_sweep_armed
        {
            self.ping_sweep_armed = true;
            io.set_timer(now + sweep_step(interval), timer(T_PING_SWEEP, 0, 0));
        }
    }

    /// A pong from the device: input like any other (the idle timeout counts it).
    pub(crate) fn device_pong(&mut self, d: DeviceId) {
        if let Some(s) = self.session_mut(d) {
            s.ping_sent = None;
        }
    }

    pub(crate) fn link_pong(&mut self, l: LinkId) {
        if let Some(k) = self.link_mut(l) {
            k.ping_sent = None;
        }
    }

    /// The sweep: ping quiet connections, close dead ones, run again while any is left.
    pub(crate) fn ping_sweep(&mut self, io: &mut impl Io, now: Instant) {
        self.ping_sweep_armed = false;
        let Some(interval) = self.s.ping_interval else {
            return;
        };
        let timeout = self.s.ping_timeout;
        let devices = due_now(&self.devices, now, interval, timeout, |s| {
            s.is_open().then_some((s.last_input, s.ping_sent))
        });
        let links = due_now(&self.links, now, interval, timeout, |k| {
            k.is_open().then_some((k.last_input, k.ping_sent))
        });
        for ((index, generation), what) in devices {
            let d = DeviceId { index, generation };
            match what {
                Due::Ping => self.ping_device(io, now, d),
                Due::Dead => self.device_dead(io, d),
                Due::Nothing => {}
            }
        }
        for ((index, generation), what) in links {
            let l = LinkId { index, generation };
            match what {
                Due::Ping => self.ping_link(io, now, l),
                Due::Dead => {
                    self.counters.limit(LIMIT_PING_TIMEOUT);
                    self.link_dead(io, now, l);
                }
                Due::Nothing => {}
            }
        }
        if self.devices.len() + self.links.len() > 0 {
            self.arm_ping_sweep(io, now);
        }
    }

    fn ping_device(&mut self, io: &mut impl Io, now: Instant, d: DeviceId) {
        let Some(s) = self.session_mut(d) else { return };
        if let DeviceState::Open { tx, .. } = &mut s.state {
            io.send_with(Peer::Device(d), |out| tx.ping(b"m2m-edge", out));
            s.ping_sent = Some(now);
        }
    }

    fn ping_link(&mut self, io: &mut impl Io, now: Instant, l: LinkId) {
        let Some(k) = self.link_mut(l) else { return };
        if let LinkState::Open { tx, .. } = &mut k.state {
            io.send_with(Peer::Link(l), |out| tx.ping(b"m2m-edge", out));
            k.ping_sent = Some(now);
        }
    }

    fn device_dead(&mut self, io: &mut impl Io, d: DeviceId) {
        tracing::info!(device = d.index, "no pong within the ping timeout: closed");
        self.counters.limit(LIMIT_PING_TIMEOUT);
        if let Some(DeviceState::Open { tx, .. }) = self.session_mut(d).map(|s| &mut s.state) {
            io.send_with(Peer::Device(d), |out| {
                tx.close(
                    CloseCode::GOING_AWAY,
                    "no pong within the ping timeout",
                    out,
                )
            });
        }
        // Not waiting for the close to be written: a dead peer does not read it.
        io.abort(Peer::Device(d));
        self.drop_device(io, d, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_go_to_quiet_connections_and_silence_after_one_is_death() {
        let t0 = Instant::now();
        let sec = Duration::from_secs;
        let (i, t) = (sec(30), sec(10));
        assert_eq!(due(t0 + sec(5), t0, None, i, t), Due::Nothing);
        assert_eq!(due(t0 + sec(30), t0, None, i, t), Due::Ping);
        let sent = t0 + sec(30);
        assert_eq!(due(sent + sec(1), t0, Some(sent), i, t), Due::Nothing);
        assert_eq!(due(sent + sec(10), t0, Some(sent), i, t), Due::Dead);
        // Data after the ping answers it as well as a pong.
        let data = sent + sec(2);
        assert_eq!(due(sent + sec(10), data, Some(sent), i, t), Due::Nothing);
        assert_eq!(due(data + sec(30), data, Some(sent), i, t), Due::Ping);
        assert_eq!(sweep_step(sec(30)), Duration::from_millis(7500));
    }
}
