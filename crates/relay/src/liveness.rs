//! Liveness: WebSocket pings to quiet devices and on quiet upstream links. A connection that sent
//! nothing for `ping_interval` is pinged; one that then sends nothing (no pong, no data) within
//! `ping_timeout` is taken for dead: a device is aborted (and its originator becomes away, so what
//! the CSE sends is held), a link is failed (its requests in flight answered 5103) and re-opened
//! after the back-off. A pong counts as input, so the idle timeout spares a quiet device that
//! answers pings. TCP keepalive (set by the runtime on every socket) covers the kernel's side.
//!
//! One timer per connection: it fires at the next ping or at the ping's deadline, whichever the
//! state says; a connection that talks keeps pushing its next ping back.

use std::time::Instant;

use m2m_ws::CloseCode;

use crate::counters::LIMIT_PING_TIMEOUT;
use crate::device::DeviceState;
use crate::engine::{Engine, T_DEVICE_PING, T_LINK_PING, timer};
use crate::link::LinkState;
use crate::{DeviceId, Io, LinkId, Peer};

/// What a connection's ping timer should do now.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    /// Nothing yet: look again at this time.
    At(Instant),
    Ping,
    Dead,
}

/// The ping state machine of one connection.
fn due(now: Instant, last_input: Instant, ping_sent: Option<Instant>, e: &Engine) -> Option<Due> {
    let interval = e.s.ping_interval?;
    Some(match ping_sent {
        // Anything received since the ping answers it too.
        Some(sent) if last_input < sent => {
            let deadline = sent + e.s.ping_timeout;
            if now >= deadline {
                Due::Dead
            } else {
                Due::At(deadline)
            }
        }
        _ if now >= last_input + interval => Due::Ping,
        _ => Due::At(last_input + interval),
    })
}

impl Engine {
    pub(crate) fn arm_device_ping(&mut self, io: &mut impl Io, now: Instant, d: DeviceId) {
        if let Some(interval) = self.s.ping_interval {
            io.set_timer(now + interval, timer(T_DEVICE_PING, d.index, d.generation));
        }
    }

    pub(crate) fn arm_link_ping(&mut self, io: &mut impl Io, now: Instant, l: LinkId) {
        let Some(interval) = self.s.ping_interval else {
            return;
        };
        if let Some(k) = self.link_mut(l)
            && !k.ping_armed
        {
            k.ping_armed = true;
            k.ping_sent = None;
            io.set_timer(now + interval, timer(T_LINK_PING, l.index, l.generation));
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

    pub(crate) fn device_ping_due(&mut self, io: &mut impl Io, now: Instant, d: DeviceId) {
        let Some(s) = self.session(d).filter(|s| s.is_open()) else {
            return;
        };
        let t = timer(T_DEVICE_PING, d.index, d.generation);
        match due(now, s.last_input, s.ping_sent, self) {
            None => {}
            Some(Due::At(at)) => io.set_timer(at, t),
            Some(Due::Ping) => {
                let s = self.session_mut(d).expect("checked");
                if let DeviceState::Open { tx, .. } = &mut s.state {
                    io.send_with(Peer::Device(d), |out| tx.ping(b"m2m-edge", out));
                }
                s.ping_sent = Some(now);
                io.set_timer(now + self.s.ping_timeout, t);
            }
            Some(Due::Dead) => {
                tracing::info!(device = d.index, "no pong within the ping timeout: closed");
                self.counters.limit(LIMIT_PING_TIMEOUT);
                if let Some(DeviceState::Open { tx, .. }) =
                    self.session_mut(d).map(|s| &mut s.state)
                {
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
    }

    pub(crate) fn link_ping_due(&mut self, io: &mut impl Io, now: Instant, l: LinkId) {
        let Some(k) = self.link_mut(l) else { return };
        if !k.is_open() {
            // The chain ends here; the link's next opening starts a new one.
            k.ping_armed = false;
            return;
        }
        let k = self.link(l).expect("checked");
        let t = timer(T_LINK_PING, l.index, l.generation);
        match due(now, k.last_input, k.ping_sent, self) {
            None => {}
            Some(Due::At(at)) => io.set_timer(at, t),
            Some(Due::Ping) => {
                let k = self.link_mut(l).expect("checked");
                if let LinkState::Open { tx, .. } = &mut k.state {
                    io.send_with(Peer::Link(l), |out| tx.ping(b"m2m-edge", out));
                }
                k.ping_sent = Some(now);
                io.set_timer(now + self.s.ping_timeout, t);
            }
            Some(Due::Dead) => {
                self.counters.limit(LIMIT_PING_TIMEOUT);
                self.link_dead(io, now, l);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pings_go_to_quiet_connections_and_silence_after_one_is_death() {
        let mut s = crate::testing::settings();
        s.ping_interval = Some(Duration::from_secs(30));
        s.ping_timeout = Duration::from_secs(10);
        let e = Engine::new(s, Default::default());
        let t0 = Instant::now();
        let sec = Duration::from_secs;
        assert_eq!(due(t0 + sec(5), t0, None, &e), Some(Due::At(t0 + sec(30))));
        assert_eq!(due(t0 + sec(30), t0, None, &e), Some(Due::Ping));
        let sent = t0 + sec(30);
        assert_eq!(
            due(sent + sec(1), t0, Some(sent), &e),
            Some(Due::At(sent + sec(10)))
        );
        assert_eq!(due(sent + sec(10), t0, Some(sent), &e), Some(Due::Dead));
        // Data after the ping answers it as well as a pong.
        let data = sent + sec(2);
        assert_eq!(
            due(sent + sec(10), data, Some(sent), &e),
            Some(Due::At(data + sec(30)))
        );
        let mut off = crate::testing::settings();
        off.ping_interval = None;
        assert_eq!(
            due(t0, t0, None, &Engine::new(off, Default::default())),
            None
        );
    }
}
