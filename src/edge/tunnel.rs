//! The CONNECT path on the device listener (TS-0020 clause 6.6). Only allow-listed targets: a CONNECT
//! to the edge's own CSE target is answered 200 and terminated here (the device's WebSocket inside
//! the tunnel is handled like a direct one); a CONNECT to another allowed target becomes a byte tunnel
//! under the same limits and timeouts; anything else gets 403 and a log line. The edge is never an
//! open proxy.

use std::net::{SocketAddr, ToSocketAddrs};

use m2m_rt::{ConnId, Cx};
use m2m_ws::handshake::connect::{ConnectReply, connect_response};
use m2m_ws::handshake::error_response;

use super::session::Device;
use super::{EdgeApp, Role};

impl EdgeApp {
    /// Is `authority` (host:port) the CSE target the edge relays to?
    fn is_own_target(&self, authority: &str, addr: Option<SocketAddr>) -> bool {
        addr == Some(self.settings.upstream)
            || authority.eq_ignore_ascii_case(&self.settings.upstream_host)
            || authority.eq_ignore_ascii_case(&format!(
                "{}:{}",
                self.settings.upstream_host,
                self.settings.upstream.port()
            ))
    }

    /// Handle a CONNECT head on a device connection; returns the bytes consumed.
    pub(super) fn device_connect(
        &mut self,
        cx: &mut Cx<'_, ()>,
        sid: usize,
        target: Result<(String, u16, String), m2m_ws::HandshakeError>,
        head_len: usize,
        data: &mut [u8],
    ) -> usize {
        let device = self.session(sid).device;
        let (host, port, authority) = match target {
            Ok(t) => t,
            Err(e) => {
                cx.send(device, &error_response(&e));
                cx.close(device);
                self.session(sid).dev = Device::Closing;
                return data.len();
            }
        };
        let literal: Option<SocketAddr> = format!(
            "{}:{port}",
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            }
        )
        .parse()
        .ok();
        if self.is_own_target(&authority, literal) {
            tracing::debug!(session = sid, target = %authority, "CONNECT to the CSE target: terminated by the edge");
            self.counters.tunnel(0);
            cx.send(device, &connect_response(ConnectReply::Established, ""));
            return head_len + self.device_data(cx, sid, &mut data[head_len..]);
        }
        let allowed = self
            .settings
            .connect_allow
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&authority));
        if !allowed {
            tracing::warn!(session = sid, target = %authority, "CONNECT to a target not on the allow-list refused");
            cx.send(
                device,
                &connect_response(ConnectReply::Forbidden, "CONNECT target not allowed"),
            );
            self.counters.tunnel(2);
            let _ = ();
            cx.close(device);
            self.session(sid).dev = Device::Closing;
            return data.len();
        }
        // Allow-listed names are resolved here (blocking, once per tunnel); literals need no lookup.
        let addr = literal.or_else(|| authority.to_socket_addrs().ok().and_then(|mut a| a.next()));
        let Some(addr) = addr else {
            cx.send(
                device,
                &connect_response(ConnectReply::BadGateway, "target name does not resolve"),
            );
            cx.close(device);
            self.session(sid).dev = Device::Closing;
            return data.len();
        };
        match cx.connect(addr, None, self.settings.connect_timeout) {
            Ok(conn) => {
                self.set_role(conn, Role::Tunnel(sid));
                let early = data[head_len..].to_vec();
                self.session(sid).dev = Device::Tunnel {
                    peer: conn,
                    open: false,
                    early,
                };
            }
            Err(_) => {
                cx.send(
                    device,
                    &connect_response(
                        ConnectReply::BadGateway,
                        "cannot open a socket to the target",
                    ),
                );
                cx.close(device);
                self.session(sid).dev = Device::Closing;
            }
        }
        data.len()
    }

    /// The tunnel's target answered the TCP connect.
    pub(super) fn tunnel_connected(
        &mut self,
        cx: &mut Cx<'_, ()>,
        sid: usize,
        conn: ConnId,
        result: std::io::Result<()>,
    ) {
        let device = self.session(sid).device;
        match result {
            Ok(()) => {
                self.counters.tunnel(1);
                cx.send(device, &connect_response(ConnectReply::Established, ""));
                if let Device::Tunnel { open, early, .. } = &mut self.session(sid).dev {
                    *open = true;
                    let early = std::mem::take(early);
                    if !early.is_empty() {
                        cx.send(conn, &early);
                    }
                }
            }
            Err(e) => {
                self.counters.tunnel(3);
                let reply = if e.kind() == std::io::ErrorKind::TimedOut {
                    ConnectReply::GatewayTimeout
                } else {
                    ConnectReply::BadGateway
                };
                cx.send(device, &connect_response(reply, &format!("target: {e}")));
                cx.close(device);
                self.clear_role(conn);
                self.session(sid).dev = Device::Closing;
            }
        }
    }

    /// Bytes from the device into an open (or opening) tunnel.
    pub(super) fn tunnel_from_device(
        &mut self,
        cx: &mut Cx<'_, ()>,
        sid: usize,
        data: &[u8],
    ) -> usize {
        if let Device::Tunnel { peer, open, early } = &mut self.session(sid).dev {
            if *open {
                let peer = *peer;
                cx.send(peer, data);
            } else {
                early.extend_from_slice(data);
            }
        }
        data.len()
    }

    /// Bytes from the target back to the device.
    pub(super) fn tunnel_to_device(
        &mut self,
        cx: &mut Cx<'_, ()>,
        sid: usize,
        data: &[u8],
    ) -> usize {
        let device = self.session(sid).device;
        cx.send(device, data);
        data.len()
    }
}
