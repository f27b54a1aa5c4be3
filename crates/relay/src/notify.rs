//! The notify listener: the CSE's way to devices on shared links. The CSE dials the `poa` the edge
//! gave those devices (ACME: one temporary WebSocket per NOTIFY, `X-M2M-Origin` = its CSE-ID; the
//! simulated CSE: one connection it keeps), sends requests there, and the edge routes each by its
//! `to` to the device's session, on this core or the one that holds it; the device's answer comes
//! back on the same connection. Only the configured CSE may connect: its source address (default:
//! the upstream CSE's) and, when configured, its `X-M2M-Origin`.

use std::net::IpAddr;
use std::time::Instant;

use m2m_primitive::{Format, RoutingView};
use m2m_ws::handshake::{error_response, http_error, parse_request, server};
use m2m_ws::{OpCode, Receiver, Role, Sender, SenderConfig, endpoint};

use crate::engine::{Engine, T_NOTIFY_HANDSHAKE, timer};
use crate::message::{InputSpan, Step, next_frame};
use crate::relay::{Body, transcode};
use crate::settings::format_of;
use crate::{Io, NotifyId, Peer};

/// A notify connection's protocol state.
#[derive(Debug)]
pub(crate) enum NotifyState {
    Handshake,
    Open {
        rx: Receiver,
        tx: Sender,
        format: Format,
    },
}

/// One connection of the CSE to the notify listener.
#[derive(Debug)]
pub(crate) struct NotifyConn {
    state: NotifyState,
    ip: IpAddr,
    accepted: Instant,
}

impl Engine {
    /// A connection accepted on the notify listener from `ip`: its id, to map before
    /// [`Engine::notify_accepted`].
    pub fn new_notify(&mut self, now: Instant, ip: IpAddr) -> NotifyId {
        let (index, generation) = self.notifies.insert(NotifyConn {
            state: NotifyState::Handshake,
            ip,
            accepted: now,
        });
        NotifyId { index, generation }
    }

    pub fn notify_accepted(&mut self, io: &mut impl Io, now: Instant, n: NotifyId) {
        io.set_timer(
            now + self.s.handshake_timeout,
            timer(T_NOTIFY_HANDSHAKE, n.index, n.generation),
        );
    }

    /// The CSE closed a notify connection.
    pub fn notify_closed(&mut self, n: NotifyId) {
        self.notifies.remove(n.index, n.generation);
    }

    fn drop_notify(&mut self, io: &mut impl Io, n: NotifyId) {
        if self.notifies.remove(n.index, n.generation).is_some() {
            io.close(Peer::Notify(n));
        }
    }

    pub(crate) fn notify_handshake_timeout(&mut self, io: &mut impl Io, now: Instant, n: NotifyId) {
        let Some(c) = self.notifies.get(n.index, n.generation) else {
            return;
        };
        if !matches!(c.state, NotifyState::Handshake) {
            return;
        }
        let at = c.accepted + self.s.handshake_timeout;
        if now < at {
            // A reload lengthened the timeout since the timer was armed.
            io.set_timer(at, timer(T_NOTIFY_HANDSHAKE, n.index, n.generation));
            return;
        }
        {
            io.abort(Peer::Notify(n));
            self.notifies.remove(n.index, n.generation);
        }
    }

    /// Bytes from the CSE on a notify connection; returns how many were consumed.
    pub fn notify_data(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        n: NotifyId,
        data: &mut [u8],
    ) -> usize {
        self.tick(now);
        match self.notifies.get(n.index, n.generation).map(|c| &c.state) {
            Some(NotifyState::Handshake) => self.notify_handshake(io, n, data),
            Some(NotifyState::Open { .. }) => self.notify_frames(io, n, data),
            None => data.len(),
        }
    }

    /// Whether the CSE may deliver from `ip` with `origin`.
    fn notify_allowed(&self, ip: IpAddr, origin: Option<&str>) -> bool {
        // A listener on [::] sees IPv4 peers as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        let ip_ok = if self.s.notify_allow_addrs.is_empty() {
            self.s.upstream_addrs.iter().any(|a| {
                let cse = a.ip().to_canonical();
                ip == cse || (cse.is_loopback() && ip.is_loopback())
            })
        } else {
            self.s.notify_allow_addrs.contains(&ip)
        };
        let origin_ok = self.s.notify_allow_origins.is_empty()
            || origin.is_some_and(|o| self.s.notify_allow_origins.iter().any(|a| a == o));
        ip_ok && origin_ok
    }

    fn notify_handshake(&mut self, io: &mut impl Io, n: NotifyId, data: &mut [u8]) -> usize {
        let (req, head_len) = match parse_request(data, self.s.head) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return 0,
            Err(e) => {
                io.send(Peer::Notify(n), &error_response(&e));
                self.drop_notify(io, n);
                return data.len();
            }
        };
        let ip = self.notifies.get(n.index, n.generation).map(|c| c.ip);
        let negotiated = server::validate_upgrade(&req).and_then(|up| {
            let allowed = ip.is_some_and(|ip| self.notify_allowed(ip, up.m2m_origin));
            server::negotiate(&up, &self.s.policy, None)
                .map(|n| (n, allowed, up.m2m_origin.map(str::to_string)))
        });
        let (agreed, origin) = match negotiated {
            Ok((agreed, true, origin)) => (agreed, origin),
            Ok((_, false, origin)) => {
                tracing::warn!(ip = ?ip, origin = ?origin, "notify connection from an address or originator not allowed");
                io.send(Peer::Notify(n), &http_error(403, &[], "not an allowed CSE"));
                self.drop_notify(io, n);
                return data.len();
            }
            Err(e) => {
                io.send(Peer::Notify(n), &error_response(&e));
                self.drop_notify(io, n);
                return data.len();
            }
        };
        io.send(Peer::Notify(n), &agreed.response);
        let (rx, tx) = endpoint(
            Role::Server,
            agreed.deflate,
            self.s.frames,
            SenderConfig::default(),
            6,
        );
        let format = format_of(&agreed.protocol);
        tracing::debug!(notify = n.index, origin = ?origin, ?format, "CSE connected to the notify listener");
        if let Some(c) = self.notifies.get_mut(n.index, n.generation) {
            c.state = NotifyState::Open { rx, tx, format };
        }
        head_len + self.notify_frames(io, n, &mut data[head_len..])
    }

    fn notify_frames(&mut self, io: &mut impl Io, n: NotifyId, data: &mut [u8]) -> usize {
        let mut at = 0;
        let input = InputSpan::of(data);
        loop {
            let Some(NotifyState::Open { rx, tx, format }) = self
                .notifies
                .get_mut(n.index, n.generation)
                .map(|c| &mut c.state)
            else {
                return data.len();
            };
            let format = *format;
            match next_frame(io, Peer::Notify(n), rx, tx, data, &mut at, input) {
                Step::Need(used) => return used,
                Step::Control | Step::Pong => {}
                Step::Message(m) => self.notify_message(io, n, m.bytes(data), m.text, format),
                Step::Close { code, why, .. } => {
                    io.send_with(Peer::Notify(n), |out| tx.close(code, &why, out));
                    self.drop_notify(io, n);
                    return data.len();
                }
            }
        }
    }

    /// A primitive from the CSE on the notify listener: a request goes to its device.
    fn notify_message(
        &mut self,
        io: &mut impl Io,
        n: NotifyId,
        bytes: &[u8],
        text: bool,
        format: Format,
    ) {
        match RoutingView::parse(format, bytes) {
            Ok(view) if view.op.is_some() => {
                self.cse_request(io, Peer::Notify(n), bytes, &view, format, text);
            }
            Ok(_) => tracing::debug!(
                notify = n.index,
                "a response on the notify listener dropped"
            ),
            Err(e) => {
                tracing::warn!(notify = n.index, error = %e, "undecodable primitive on the notify listener")
            }
        }
    }

    /// Send a primitive (a device's answer) to the CSE on notify connection `n`.
    pub(crate) fn send_on_notify(&mut self, io: &mut impl Io, n: NotifyId, body: Body<'_>) {
        let Some(NotifyState::Open { tx, format, .. }) = self
            .notifies
            .get_mut(n.index, n.generation)
            .map(|c| &mut c.state)
        else {
            return;
        };
        let format = *format;
        match transcode(body, format) {
            Ok(bytes) => {
                let opcode = if format == Format::Cbor {
                    OpCode::Binary
                } else {
                    OpCode::Text
                };
                io.send_with(Peer::Notify(n), |out| tx.message(opcode, &bytes, out));
            }
            Err(e) => {
                tracing::debug!(notify = n.index, error = %e, "undeliverable answer to the CSE")
            }
        }
    }
}
