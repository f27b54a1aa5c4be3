//! The upstream side of a session: one WebSocket to the CSE per device session (passthrough mode),
//! with the subprotocol the CSE accepts and `X-M2M-Origin` once the device's AE-ID is known. A
//! registration relayed on a link without the header is followed by a relink with it (ACME only lets
//! such a link carry registrations). A lost link fails what was in flight with 5103 and is re-opened
//! after a back-off while the device stays connected.

use m2m_primitive::{Format, Primitive, RoutingView, Rsc, Value};
use m2m_rt::{ConnId, Cx};
use m2m_ws::handshake::client::{ClientHandshake, ClientOptions};
use m2m_ws::{Event, OpCode, Receiver, Role, Sender, SenderConfig, endpoint};

use super::session::{Device, InputSpan};
use super::settings::{OriginHeader, format_of};
use super::{EdgeApp, Role as ConnRole, TIMER_RELINK, token};

/// The upstream link's state.
#[derive(Debug)]
pub enum Link {
    Down,
    Connecting(ConnId),
    /// Through an HTTP proxy: CONNECT sent, waiting for its answer.
    Proxying(ConnId),
    Handshaking {
        conn: ConnId,
        hs: Box<ClientHandshake>,
    },
    Open {
        conn: ConnId,
        rx: Receiver,
        tx: Sender,
        format: Format,
    },
}

impl Link {
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Self::Down => None,
            Self::Connecting(c)
            | Self::Proxying(c)
            | Self::Handshaking { conn: c, .. }
            | Self::Open { conn: c, .. } => Some(*c),
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open { .. })
    }

    pub fn format(&self) -> Option<Format> {
        match self {
            Self::Open { format, .. } => Some(*format),
            _ => None,
        }
    }
}

impl EdgeApp {
    pub(super) fn open_link(&mut self, cx: &mut Cx<'_, ()>, sid: usize) {
        if !matches!(self.session(sid).dev, Device::Open { .. })
            || self.session(sid).link.conn().is_some()
        {
            return;
        }
        // Through a proxy the TCP connection goes to the proxy and TLS starts after CONNECT.
        let (target, tls) = match self.settings.upstream_proxy {
            Some(proxy) => (proxy, None),
            None => (self.settings.upstream, self.settings.upstream_tls.clone()),
        };
        let source = (!self.settings.upstream_sources.is_empty()).then(|| {
            self.next_source = (self.next_source + 1) % self.settings.upstream_sources.len();
            self.settings.upstream_sources[self.next_source]
        });
        match cx.connect_from(target, source, tls, self.settings.connect_timeout) {
            Ok(conn) => {
                self.counters.link(super::metrics::LINK_CONNECTING);
                self.set_role(conn, ConnRole::Upstream(sid));
                self.session(sid).link = Link::Connecting(conn);
            }
            Err(e) => {
                self.counters.link(super::metrics::LINK_FAILED);
                tracing::warn!(session = sid, error = %e, "cannot open an upstream socket");
                self.fail_all(
                    cx,
                    sid,
                    Rsc::TARGET_NOT_REACHABLE,
                    "upstream CSE not reachable",
                );
                self.schedule_relink(cx, sid);
            }
        }
    }

    /// Replace the link by one that carries the session's origin.
    pub(super) fn relink_with_origin(&mut self, cx: &mut Cx<'_, ()>, sid: usize) {
        if self.settings.origin_header == OriginHeader::Never || self.session(sid).link_has_origin {
            return;
        }
        if let Some(old) = self.session(sid).link.conn() {
            if self.session(sid).link.is_open() {
                self.counters
                    .upstream_links
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.clear_role(old);
            cx.close(old);
        }
        self.session(sid).link = Link::Down;
        self.open_link(cx, sid);
    }

    fn schedule_relink(&mut self, cx: &mut Cx<'_, ()>, sid: usize) {
        let at = cx.now() + self.settings.relink_backoff;
        let s = self.session(sid);
        if s.relink_timer.is_none() && matches!(s.dev, Device::Open { .. }) {
            s.relink_timer = Some(cx.set_timer(at, token(TIMER_RELINK, sid, 0)));
        }
    }

    pub(super) fn link_connected(&mut self, cx: &mut Cx<'_, ()>, sid: usize, conn: ConnId) {
        if self.settings.upstream_proxy.is_some()
            && matches!(self.session(sid).link, Link::Connecting(_))
        {
            let (host, port) = (
                self.settings.upstream_host_only.clone(),
                self.settings.upstream.port(),
            );
            cx.send(
                conn,
                &m2m_ws::handshake::connect::connect_request(&host, port, &[]),
            );
            self.session(sid).link = Link::Proxying(conn);
            return;
        }
        self.link_handshake(cx, sid, conn);
    }

    /// Send the WebSocket upgrade on a connected (and, through a proxy, tunnelled) link.
    fn link_handshake(&mut self, cx: &mut Cx<'_, ()>, sid: usize, conn: ConnId) {
        let dev_format = match self.session(sid).dev {
            Device::Open { format, .. } => format,
            _ => Format::Json,
        };
        // Offer the device's own serialization first when the CSE takes it, so that nothing needs
        // transcoding; then the configured order.
        let mut protocols = self.settings.upstream_protocols.clone();
        if let Some(i) = protocols.iter().position(|p| format_of(p) == dev_format) {
            let p = protocols.remove(i);
            protocols.insert(0, p);
        }
        let never = self.settings.origin_header == OriginHeader::Never;
        let (host, path) = (
            self.settings.upstream_host.clone(),
            self.settings.upstream_path.clone(),
        );
        let s = self.session(sid);
        let origin = if never { None } else { s.origin.clone() };
        s.link_has_origin = origin.is_some();
        let (hs, request) = ClientHandshake::new(ClientOptions {
            host,
            path,
            protocols,
            deflate: None,
            extra_headers: origin
                .map(|o| vec![("X-M2M-Origin".to_string(), o)])
                .unwrap_or_default(),
        });
        s.link = Link::Handshaking {
            conn,
            hs: Box::new(hs),
        };
        cx.send(conn, &request);
    }

    pub(super) fn link_lost(&mut self, cx: &mut Cx<'_, ()>, sid: usize, conn: ConnId, why: &str) {
        let Some(s) = self.sessions.get_mut(sid).and_then(Option::as_mut) else {
            return;
        };
        if s.link.conn() != Some(conn) {
            return;
        }
        tracing::info!(session = sid, reason = why, "upstream link lost");
        self.counters.link(super::metrics::LINK_LOST);
        if s.link.is_open() {
            self.counters
                .upstream_links
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.counters.error(3);
        let s = self.session(sid);
        s.link = Link::Down;
        s.link_has_origin = false;
        self.fail_all(
            cx,
            sid,
            Rsc::TARGET_NOT_REACHABLE,
            "upstream CSE not reachable",
        );
        self.schedule_relink(cx, sid);
    }

    /// A link that could not be set up: close it, answer everything waiting with 5103, retry later.
    fn link_failed(&mut self, cx: &mut Cx<'_, ()>, sid: usize, conn: ConnId, why: &str) {
        self.counters.link(super::metrics::LINK_FAILED);
        self.clear_role(conn);
        cx.close(conn);
        self.session(sid).link = Link::Down;
        self.fail_all(cx, sid, Rsc::TARGET_NOT_REACHABLE, why);
        self.schedule_relink(cx, sid);
    }

    pub(super) fn link_send(&mut self, cx: &mut Cx<'_, ()>, sid: usize, bytes: &[u8]) {
        let s = self.session(sid);
        let Link::Open {
            conn, tx, format, ..
        } = &mut s.link
        else {
            return;
        };
        // Bytes for a text link are JSON or XML that passed the routing view or came from our encoder.
        let opcode = if *format == Format::Cbor {
            OpCode::Binary
        } else {
            OpCode::Text
        };
        cx.send_with(*conn, |out| tx.message(opcode, bytes, out));
    }

    pub(super) fn upstream_data(
        &mut self,
        cx: &mut Cx<'_, ()>,
        sid: usize,
        conn: ConnId,
        data: &mut [u8],
    ) -> usize {
        let mut at = 0;
        let head = self.settings.head;
        if let Link::Proxying(_) = self.session(sid).link {
            match m2m_ws::handshake::connect::parse_connect_response(data, head) {
                Ok(None) => return 0,
                Ok(Some((200, len))) => {
                    if let Some(tls) = self.settings.upstream_tls.clone()
                        && let Err(e) = cx.start_tls(conn, tls)
                    {
                        tracing::warn!(session = sid, error = %e, "TLS through the proxy failed");
                    }
                    self.link_handshake(cx, sid, conn);
                    return len;
                }
                Ok(Some((status, _))) => {
                    tracing::warn!(session = sid, status, "upstream proxy refused CONNECT");
                }
                Err(e) => {
                    tracing::warn!(session = sid, error = %e, "bad answer from the upstream proxy")
                }
            }
            self.link_failed(cx, sid, conn, "upstream proxy refused the tunnel");
            return data.len();
        }
        if let Link::Handshaking { hs, .. } = &self.session(sid).link {
            match hs.read_response(data, head) {
                Ok(None) => return 0,
                Ok(Some((accepted, len))) => {
                    let format = format_of(accepted.protocol.as_deref().unwrap_or("oneM2M.json"));
                    let (rx, tx) = endpoint(
                        Role::Client,
                        accepted.deflate,
                        self.settings.frames,
                        SenderConfig::default(),
                        6,
                    );
                    self.session(sid).link = Link::Open {
                        conn,
                        rx,
                        tx,
                        format,
                    };
                    self.counters
                        .upstream_links
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.counters.link(super::metrics::LINK_OPEN);
                    tracing::debug!(session = sid, protocol = ?accepted.protocol, "upstream link open");
                    at = len;
                    self.pump(cx, sid);
                }
                Err(e) => {
                    tracing::warn!(session = sid, error = %e, "upstream handshake refused");
                    self.link_failed(
                        cx,
                        sid,
                        conn,
                        "upstream CSE refused the WebSocket handshake",
                    );
                    return data.len();
                }
            }
        }
        let input = InputSpan::of(data);
        loop {
            let s = self.session(sid);
            let Link::Open { rx, tx, format, .. } = &mut s.link else {
                return data.len();
            };
            let format = *format;
            let mut reply = Vec::new();
            let mut message = None;
            let mut closed = false;
            match rx.read(&mut data[at..]) {
                Ok(Some((event, used))) => {
                    at += used;
                    message = input.message(&event);
                    match event {
                        Event::Text(_) | Event::Binary(_) => {}
                        Event::Ping(p) => tx.pong(p, &mut reply),
                        Event::Close(f) => {
                            tx.close(f.code.unwrap_or(m2m_ws::CloseCode::NORMAL), "", &mut reply);
                            closed = true;
                        }
                        Event::Pong(_) | Event::Fragment => {}
                    }
                }
                Ok(None) => return at,
                Err(e) => {
                    tx.close(e.close_code(), &e.to_string(), &mut reply);
                    closed = true;
                }
            }
            if !reply.is_empty() {
                cx.send(conn, &reply);
            }
            if closed {
                cx.close(conn);
                return data.len();
            }
            if let Some(m) = message {
                self.handle_upstream(cx, sid, format, m.bytes(data), m.text);
            }
        }
    }

    fn handle_upstream(
        &mut self,
        cx: &mut Cx<'_, ()>,
        sid: usize,
        up_format: Format,
        bytes: &[u8],
        text: bool,
    ) {
        let view = match RoutingView::parse(up_format, bytes) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(session = sid, error = %e, "undecodable primitive from the CSE");
                return;
            }
        };
        let dev_format = match self.session(sid).dev {
            Device::Open { format, .. } => format,
            _ => return,
        };
        // The value model is needed only to transcode; everything else (routing, rsc, rqi, the
        // registration's aei, decoded below only for that one response) comes from the view. Decoding
        // every response cost 12 % of the edge's CPU on the relay path (flamegraph, DESIGN.md).
        let needs_model = dev_format != up_format;
        let primitive = if needs_model {
            match m2m_primitive::decode(up_format, bytes) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(session = sid, error = %e, "undecodable primitive from the CSE");
                    return;
                }
            }
        } else {
            None
        };
        if let Some(op) = view.op {
            self.counters.request(1, op as usize - 1);
        }
        if view.op.is_some() {
            // A request of the CSE (NOTIFY, verification) goes down; the device's answer comes back
            // through `handle_device`.
            match primitive {
                Some(p) => self.send_to_device(cx, sid, &p),
                None => self.send_raw_to_device(cx, sid, bytes, text),
            }
            return;
        }
        let rqi = view.rqi.as_deref().unwrap_or_default().to_string();
        let s = self.session(sid);
        let Some(i) = s.pending.iter().position(|p| p.rqi == rqi) else {
            tracing::warn!(session = sid, rqi = %rqi, "response with an unknown rqi dropped");
            self.counters.error(2);
            return;
        };
        let p = s.take_pending(i);
        cx.cancel_timer(p.timer);
        let rsc = view.rsc.unwrap_or(Rsc(0));
        self.counters.response(1, rsc.0);
        self.counters
            .rtt(cx.now().saturating_duration_since(p.sent).as_secs_f64());
        let mut relink = false;
        if p.registration && rsc == Rsc::CREATED {
            let aei = primitive
                .as_ref()
                .and_then(Primitive::pc)
                .or(None)
                .and_then(Value::as_object)
                .and_then(|pc| pc.get("m2m:ae").or_else(|| pc.get("m2m:csr")))
                .and_then(Value::as_object)
                .and_then(|r| r.get("aei").or_else(|| r.get("csi")))
                .and_then(Value::as_str)
                .map(str::to_string);
            let aei = aei.or_else(|| {
                m2m_primitive::decode(up_format, bytes).ok().and_then(|p| {
                    p.pc()?
                        .as_object()?
                        .get("m2m:ae")?
                        .as_object()?
                        .get("aei")?
                        .as_str()
                        .map(str::to_string)
                })
            });
            self.counters
                .registrations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let s = self.session(sid);
            s.registered = true;
            if s.origin.is_none() {
                s.origin = aei;
            }
            relink = !s.link_has_origin && s.origin.is_some();
        }
        if p.deregistration && rsc == Rsc::DELETED {
            let s = self.session(sid);
            s.registered = false;
            s.origin = None;
        }
        match primitive {
            Some(p) if dev_format != up_format => self.send_to_device(cx, sid, &p),
            _ => self.send_raw_to_device(cx, sid, bytes, text),
        }
        if relink {
            self.relink_with_origin(cx, sid);
        }
        self.pump(cx, sid);
        self.close_if_drained(cx, sid);
    }
}
