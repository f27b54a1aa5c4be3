//! The CONNECT path on the device listener (TS-0020 clause 6.6). Only allow-listed targets: a CONNECT
//! to the edge's own CSE target is answered 200 and terminated here (the device's WebSocket inside
//! the tunnel is handled like a direct one); a CONNECT to another allowed target becomes a byte tunnel
//! under the same limits and timeouts; anything else gets 403 and a log line. The edge is never an
//! open proxy.

use std::net::SocketAddr;
use std::time::Instant;

use m2m_ws::HandshakeError;
use m2m_ws::handshake::connect::{ConnectReply, connect_response};
use m2m_ws::handshake::error_response;

use crate::device::DeviceState;
use crate::engine::Engine;
use crate::{DeviceId, Io, Peer, Target};

impl Engine {
    /// Is `authority` (host:port) the CSE target the edge relays to?
    fn is_own_target(&self, authority: &str, addr: Option<SocketAddr>) -> bool {
        addr.is_some_and(|a| self.s.upstream_addrs.contains(&a))
            || authority.eq_ignore_ascii_case(&self.s.upstream_host)
            || authority.eq_ignore_ascii_case(&format!(
                "{}:{}",
                self.s.upstream_host, self.s.upstream_port
            ))
    }

    /// Refuse a CONNECT with `reply` and end the session.
    fn refuse_connect(&mut self, io: &mut impl Io, d: DeviceId, reply: ConnectReply, why: &str) {
        io.send(Peer::Device(d), &connect_response(reply, why));
        self.drop_device(io, d, true);
    }

    /// Handle a CONNECT head on a device connection; returns the bytes consumed.
    pub(crate) fn device_connect(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        d: DeviceId,
        target: Result<(String, u16, String), HandshakeError>,
        head_len: usize,
        data: &mut [u8],
    ) -> usize {
        let (host, port, authority) = match target {
            Ok(t) => t,
            Err(e) => {
                io.send(Peer::Device(d), &error_response(&e));
                self.drop_device(io, d, true);
                return data.len();
            }
        };
        let bracketed = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let literal: Option<SocketAddr> = bracketed.parse().ok();
        if self.is_own_target(&authority, literal) {
            tracing::debug!(device = d.index, target = %authority, "CONNECT to the CSE target: terminated by the edge");
            self.counters.tunnel(0);
            io.send(
                Peer::Device(d),
                &connect_response(ConnectReply::Established, ""),
            );
            return head_len + self.device_data(io, now, d, &mut data[head_len..]);
        }
        let allowed = self
            .s
            .connect_allow
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&authority));
        if !allowed {
            tracing::warn!(device = d.index, target = %authority, "CONNECT to a target not on the allow-list refused");
            self.counters.tunnel(2);
            self.refuse_connect(io, d, ConnectReply::Forbidden, "CONNECT target not allowed");
            return data.len();
        }
        let Some(addr) = literal.or_else(|| io.resolve(&authority)) else {
            self.refuse_connect(
                io,
                d,
                ConnectReply::BadGateway,
                "target name does not resolve",
            );
            return data.len();
        };
        if io.connect(Peer::Tunnel(d), Target::Tunnel(addr)).is_err() {
            self.refuse_connect(
                io,
                d,
                ConnectReply::BadGateway,
                "cannot open a socket to the target",
            );
            return data.len();
        }
        let early = data[head_len..].to_vec();
        if let Some(s) = self.session_mut(d) {
            s.state = DeviceState::Tunnel { open: false, early };
        }
        data.len()
    }

    /// The tunnel's target answered the TCP connect, or failed.
    pub fn tunnel_connected(
        &mut self,
        io: &mut impl Io,
        d: DeviceId,
        result: Result<(), std::io::ErrorKind>,
    ) {
        match result {
            Ok(()) => {
                self.counters.tunnel(1);
                io.send(
                    Peer::Device(d),
                    &connect_response(ConnectReply::Established, ""),
                );
                if let Some(s) = self.session_mut(d)
                    && let DeviceState::Tunnel { open, early } = &mut s.state
                {
                    *open = true;
                    let early = std::mem::take(early);
                    if !early.is_empty() {
                        io.send(Peer::Tunnel(d), &early);
                    }
                }
            }
            Err(kind) => {
                self.counters.tunnel(3);
                let reply = if kind == std::io::ErrorKind::TimedOut {
                    ConnectReply::GatewayTimeout
                } else {
                    ConnectReply::BadGateway
                };
                if let Some(s) = self.session_mut(d) {
                    // The target never connected: nothing to close on that side.
                    s.state = DeviceState::Handshake;
                }
                self.refuse_connect(io, d, reply, &format!("target: {kind}"));
            }
        }
    }

    /// Bytes from the device into an open (or opening) tunnel.
    pub(crate) fn tunnel_from_device(
        &mut self,
        io: &mut impl Io,
        d: DeviceId,
        data: &[u8],
    ) -> usize {
        if let Some(s) = self.session_mut(d)
            && let DeviceState::Tunnel { open, early } = &mut s.state
        {
            if *open {
                io.send(Peer::Tunnel(d), data);
            } else {
                early.extend_from_slice(data);
            }
        }
        data.len()
    }

    /// Bytes from the target back to the device.
    pub fn tunnel_data(&mut self, io: &mut impl Io, d: DeviceId, data: &[u8]) -> usize {
        io.send(Peer::Device(d), data);
        data.len()
    }

    /// The target closed its side: so does the device.
    pub fn tunnel_closed(&mut self, io: &mut impl Io, d: DeviceId) {
        if let Some(s) = self.session_mut(d) {
            s.state = DeviceState::Handshake;
        }
        self.drop_device(io, d, true);
    }
}
