//! The device side of a session: the WebSocket handshake with the oneM2M policy, the session gate
//! (TS-0020 clause 6.4), checks on every primitive, the queue toward the upstream link (bounded, at
//! most `max_in_flight` outstanding, in order) and correlation of responses by `rqi`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Instant;

use m2m_primitive::{Format, Operation, Primitive, PrimitiveError, RoutingView, Rsc};
use m2m_rt::{ConnId, Cx, TimerId};
use m2m_ws::handshake::{error_response, parse_request, server};
use m2m_ws::{CloseCode, Event, OpCode, Receiver, Role, Sender, SenderConfig, endpoint};

use super::link::Link;
use super::settings::format_of;
use super::{EdgeApp, TIMER_REQUEST, token};

/// The device connection's protocol state.
#[derive(Debug)]
pub enum Device {
    Handshake,
    Open {
        rx: Receiver,
        tx: Sender,
        format: Format,
    },
    /// A CONNECT tunnel to another allow-listed target: bytes are relayed as they are.
    Tunnel {
        peer: ConnId,
        open: bool,
        early: Vec<u8>,
    },
    Closing,
}

/// What the edge keeps about a request it relays.
#[derive(Debug)]
pub struct RequestMeta {
    pub rqi: String,
    pub deadline: Instant,
    pub registration: bool,
    pub deregistration: bool,
}

/// A request waiting for the upstream link (the only case where the edge copies a primitive).
#[derive(Debug)]
pub struct Queued {
    pub request: RequestMeta,
    pub bytes: Vec<u8>,
}

/// Where a received message's payload is: in place in the input just read (unmasked there), or
/// reassembled by the receiver from fragments or inflated, then copied out.
pub(super) enum Payload {
    InPlace(std::ops::Range<usize>),
    Owned(Vec<u8>),
}

/// A received data message: where its payload is, and whether it came as text (then the receiver
/// has already checked that it is UTF-8).
pub(super) struct Message {
    pub payload: Payload,
    pub text: bool,
}

impl Message {
    /// The payload's bytes, given the input it was read from.
    pub(super) fn bytes<'a>(&'a self, input: &'a [u8]) -> &'a [u8] {
        match &self.payload {
            Payload::InPlace(range) => &input[range.clone()],
            Payload::Owned(bytes) => bytes,
        }
    }
}

/// The input buffer of one `on_data` call, to tell whether a payload lies inside it.
#[derive(Clone, Copy)]
pub(super) struct InputSpan {
    start: usize,
    len: usize,
}

impl InputSpan {
    pub(super) fn of(data: &[u8]) -> Self {
        Self {
            start: data.as_ptr() as usize,
            len: data.len(),
        }
    }

    /// The payload's range in the input, or a copy when it lives elsewhere.
    pub(super) fn payload(self, part: &[u8]) -> Payload {
        let at = (part.as_ptr() as usize).wrapping_sub(self.start);
        if at <= self.len && part.len() <= self.len - at {
            Payload::InPlace(at..at + part.len())
        } else {
            Payload::Owned(part.to_vec())
        }
    }

    /// A data message event as a [`Message`], or `None` for control frames and fragments.
    pub(super) fn message(self, event: &Event<'_>) -> Option<Message> {
        match event {
            Event::Text(t) => Some(Message {
                payload: self.payload(t.as_bytes()),
                text: true,
            }),
            Event::Binary(b) => Some(Message {
                payload: self.payload(b),
                text: false,
            }),
            _ => None,
        }
    }
}

/// A request sent upstream and not yet answered.
#[derive(Debug)]
pub struct Pending {
    pub rqi: String,
    pub seq: u32,
    pub timer: TimerId,
    pub registration: bool,
    pub deregistration: bool,
    pub sent: Instant,
}

#[derive(Debug)]
pub struct Session {
    pub device: ConnId,
    pub dev: Device,
    /// The AE-ID bound to this session (handshake `X-M2M-Origin`, registration, or `fr`).
    pub origin: Option<String>,
    /// Whether the upstream link was opened with `X-M2M-Origin`.
    pub link_has_origin: bool,
    pub registered: bool,
    pub link: Link,
    pub queue: VecDeque<Queued>,
    pub pending: Vec<Pending>,
    pub seq: u32,
    pub handshake_timer: Option<TimerId>,
    pub relink_timer: Option<TimerId>,
    pub idle_timer: Option<TimerId>,
    pub last_input: Instant,
    /// Shutting down: close with 1001 once nothing is queued or in flight.
    pub draining: bool,
    /// The client certificate's identity, looked up once (`None` until then).
    pub identity: Option<Option<String>>,
}

impl Session {
    pub fn new(device: ConnId, handshake_timer: TimerId) -> Self {
        Self {
            device,
            dev: Device::Handshake,
            origin: None,
            link_has_origin: false,
            registered: false,
            link: Link::Down,
            queue: VecDeque::new(),
            pending: Vec::new(),
            seq: 0,
            handshake_timer: Some(handshake_timer),
            relink_timer: None,
            idle_timer: None,
            last_input: Instant::now(),
            draining: false,
            identity: None,
        }
    }

    /// Remove the `i`th request in flight; an idle device keeps no capacity for them.
    pub fn take_pending(&mut self, i: usize) -> Pending {
        let p = self.pending.remove(i);
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
        p
    }

    pub fn cancel_timers(&mut self, cx: &mut Cx<'_, ()>) {
        for t in self
            .handshake_timer
            .take()
            .into_iter()
            .chain(self.relink_timer.take())
            .chain(self.idle_timer.take())
        {
            cx.cancel_timer(t);
        }
        for p in self.pending.drain(..) {
            cx.cancel_timer(p.timer);
        }
    }
}

impl EdgeApp {
    pub(super) fn session(&mut self, sid: usize) -> &mut Session {
        self.sessions[sid].as_mut().expect("live session")
    }

    pub(super) fn device_data(
        &mut self,
        cx: &mut Cx<'_, ()>,
        sid: usize,
        data: &mut [u8],
    ) -> usize {
        match self.session(sid).dev {
            Device::Handshake => self.device_handshake(cx, sid, data),
            Device::Open { .. } => self.device_frames(cx, sid, data),
            Device::Tunnel { .. } => self.tunnel_from_device(cx, sid, data),
            Device::Closing => data.len(),
        }
    }

    fn device_handshake(&mut self, cx: &mut Cx<'_, ()>, sid: usize, data: &mut [u8]) -> usize {
        let device = self.session(sid).device;
        let (req, head_len) = match parse_request(data, self.settings.head) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return 0,
            Err(e) => {
                cx.send(device, &error_response(&e));
                cx.close(device);
                self.session(sid).dev = Device::Closing;
                return data.len();
            }
        };
        if req.method == "CONNECT" {
            let target = m2m_ws::handshake::connect::parse_connect(&req)
                .map(|t| (t.host.to_string(), t.port, t.authority.to_string()));
            return self.device_connect(cx, sid, target, head_len, data);
        }
        let negotiated = server::validate_upgrade(&req).and_then(|up| {
            let origin = up.m2m_origin.map(str::to_string);
            server::negotiate(&up, &self.settings.policy, self.settings.deflate.as_ref())
                .map(|n| (n, origin))
        });
        let (n, origin) = match negotiated {
            Ok(ok) => ok,
            Err(e) => {
                self.counters.handshake(3, false);
                if self.settings.device_tls {
                    self.counters.tls[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                tracing::debug!(session = sid, error = %e, "device handshake refused");
                cx.send(device, &error_response(&e));
                cx.close(device);
                self.session(sid).dev = Device::Closing;
                return data.len();
            }
        };
        cx.send(device, &n.response);
        let (rx, tx) = endpoint(
            Role::Server,
            n.deflate,
            self.settings.frames,
            SenderConfig::default(),
            6,
        );
        let format = format_of(&n.protocol);
        self.counters.sessions_by_format[format_index(format)]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.settings.device_tls {
            self.counters.tls[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.counters.handshake(format_index(format), true);
        let s = self.session(sid);
        if let Some(t) = s.handshake_timer.take() {
            cx.cancel_timer(t);
        }
        s.dev = Device::Open { rx, tx, format };
        s.origin = origin;
        s.last_input = cx.now();
        if let Some(idle) = self.settings.idle_timeout {
            let at = cx.now() + idle;
            self.session(sid).idle_timer =
                Some(cx.set_timer(at, super::token(super::TIMER_IDLE, sid, 0)));
        }
        self.open_link(cx, sid);
        head_len + self.device_frames(cx, sid, &mut data[head_len..])
    }

    fn device_frames(&mut self, cx: &mut Cx<'_, ()>, sid: usize, data: &mut [u8]) -> usize {
        self.session(sid).last_input = cx.now();
        let mut at = 0;
        let input = InputSpan::of(data);
        loop {
            let s = self.sessions[sid].as_mut().expect("live session");
            let device = s.device;
            let Device::Open { rx, tx, .. } = &mut s.dev else {
                return data.len();
            };
            let mut reply = Vec::new();
            let mut message: Option<Message> = None;
            let mut close: Option<(CloseCode, String)> = None;
            match rx.read(&mut data[at..]) {
                Ok(Some((event, used))) => {
                    at += used;
                    message = input.message(&event);
                    match event {
                        Event::Text(_) | Event::Binary(_) => {}
                        Event::Ping(p) => tx.pong(p, &mut reply),
                        Event::Close(f) => {
                            close = Some((f.code.unwrap_or(CloseCode::NORMAL), String::new()))
                        }
                        Event::Pong(_) | Event::Fragment => {}
                    }
                }
                Ok(None) => return at,
                Err(e) => {
                    self.counters.error(0);
                    if e.close_code() == CloseCode::MESSAGE_TOO_BIG {
                        self.counters.limit(super::metrics::LIMIT_MESSAGE_TOO_BIG);
                    }
                    close = Some((e.close_code(), e.to_string()))
                }
            }
            if !reply.is_empty() {
                cx.send(device, &reply);
            }
            if let Some((code, why)) = close {
                self.close_device(cx, sid, code, &why);
                return data.len();
            }
            if let Some(m) = message {
                self.handle_device(cx, sid, m.bytes(data), m.text);
            }
        }
    }

    /// Send a close frame to the device and close it; the session ends with the connection.
    pub(super) fn close_device(
        &mut self,
        cx: &mut Cx<'_, ()>,
        sid: usize,
        code: CloseCode,
        why: &str,
    ) {
        let s = self.session(sid);
        let device = s.device;
        let mut out = Vec::new();
        if let Device::Open { tx, .. } = &mut s.dev {
            tx.close(code, why, &mut out);
        }
        s.dev = Device::Closing;
        if !out.is_empty() {
            cx.send(device, &out);
        }
        cx.close(device);
    }

    pub(super) fn handshake_timeout(&mut self, cx: &mut Cx<'_, ()>, sid: usize) {
        let s = self.session(sid);
        s.handshake_timer = None;
        if matches!(s.dev, Device::Handshake) {
            tracing::debug!(session = sid, "device handshake timeout");
            cx.abort(s.device);
            self.counters.limit(super::metrics::LIMIT_HANDSHAKE_TIMEOUT);
        }
    }

    /// Send a primitive to the device in its serialization.
    pub(super) fn send_to_device(&mut self, cx: &mut Cx<'_, ()>, sid: usize, p: &Primitive) {
        let s = self.session(sid);
        let device = s.device;
        let Device::Open { tx, format, .. } = &mut s.dev else {
            return;
        };
        let Ok(bytes) = m2m_primitive::encode(p, *format) else {
            return;
        };
        let mut out = Vec::with_capacity(bytes.len() + 10);
        if *format == Format::Cbor {
            tx.binary(&bytes, &mut out);
        } else {
            tx.text(std::str::from_utf8(&bytes).unwrap_or_default(), &mut out);
        }
        cx.send(device, &out);
    }

    /// Bytes of a primitive, already in the device's serialization; `text`: they came in a text
    /// frame, so they are known to be UTF-8.
    pub(super) fn send_raw_to_device(
        &mut self,
        cx: &mut Cx<'_, ()>,
        sid: usize,
        bytes: &[u8],
        text: bool,
    ) {
        let s = self.session(sid);
        let device = s.device;
        let Device::Open { tx, format, .. } = &mut s.dev else {
            return;
        };
        let binary = *format == Format::Cbor || (!text && std::str::from_utf8(bytes).is_err());
        cx.send_with(device, |out| {
            let opcode = if binary { OpCode::Binary } else { OpCode::Text };
            tx.message(opcode, bytes, out);
        });
    }

    /// An error response from the edge itself.
    pub(super) fn reply_error(&mut self, cx: &mut Cx<'_, ()>, sid: usize, err: PrimitiveError) {
        tracing::debug!(session = sid, rsc = err.rsc.0, dbg = %err.dbg, "edge answers");
        self.counters.answer(err.rsc.0);
        let rsp = err.to_response(&self.settings.rvi);
        self.send_to_device(cx, sid, &Primitive::Response(rsp));
    }

    fn device_format(&mut self, sid: usize) -> Format {
        match self.session(sid).dev {
            Device::Open { format, .. } => format,
            _ => Format::Json,
        }
    }

    /// One primitive from the device.
    fn handle_device(&mut self, cx: &mut Cx<'_, ()>, sid: usize, bytes: &[u8], text: bool) {
        let dev_format = self.device_format(sid);
        let view = match RoutingView::parse(dev_format, bytes) {
            Ok(v) => v,
            Err(mut e) => {
                if let Some(other) = Format::sniff(bytes).filter(|&f| f != dev_format) {
                    e = PrimitiveError::new(
                        Rsc::UNSUPPORTED_MEDIA_TYPE,
                        format!(
                            "a {} primitive on a {} session",
                            other.name(),
                            dev_format.name()
                        ),
                    )
                    .with_rqi(m2m_primitive::view::extract_rqi(other, bytes));
                }
                self.counters.error(1);
                self.reply_error(cx, sid, e);
                return;
            }
        };
        // JSON and XML go up the link as text frames: a binary frame's bytes must be UTF-8 too.
        if !text && dev_format != Format::Cbor && std::str::from_utf8(bytes).is_err() {
            self.counters.error(1);
            self.reply_error(
                cx,
                sid,
                PrimitiveError::new(
                    Rsc::BAD_REQUEST,
                    format!("a {} primitive that is not UTF-8", dev_format.name()),
                )
                .with_rqi(m2m_primitive::view::extract_rqi(dev_format, bytes)),
            );
            return;
        }
        match (view.op, view.rsc) {
            (Some(op), _) => self.counters.request(0, op as usize - 1),
            (None, Some(rsc)) => self.counters.response(0, rsc.0),
            _ => {}
        }
        let up_format = self.session(sid).link.format().unwrap_or(Format::Json);
        if view.op.is_none() {
            // The device answers a request of the CSE (NOTIFY, verification): straight up.
            let up = if dev_format == up_format && !view.wrapped {
                Cow::Borrowed(bytes)
            } else {
                match m2m_primitive::decode(dev_format, bytes)
                    .and_then(|p| m2m_primitive::encode(&p, up_format))
                {
                    Ok(b) => Cow::Owned(b),
                    Err(e) => {
                        tracing::debug!(session = sid, error = %e, "undeliverable device response");
                        return;
                    }
                }
            };
            self.link_send(cx, sid, &up);
            return;
        }
        let rqi = view.rqi.as_deref().unwrap_or_default().to_string();
        let op = view.op.expect("request");
        let registration = op == Operation::Create && matches!(view.ty, Some(2) | Some(16));
        let fr = view.fr.as_deref();
        let view_rqet = view.rqet;
        let to = view.to.as_deref().unwrap_or_default();
        // The wall clock only for requests that carry an expiry.
        let now_wall = view.rqet.map_or(0, |_| m2m_primitive::time::now_millis());
        if let Some(rqet) = view.rqet
            && rqet.resolve(now_wall) < now_wall
        {
            self.reply_error(
                cx,
                sid,
                PrimitiveError::new(Rsc::REQUEST_TIMEOUT, "request expired (rqet in the past)")
                    .with_rqi(Some(rqi)),
            );
            return;
        }
        if self.settings.bind_identity {
            let device = self.session(sid).device;
            if self.session(sid).identity.is_none() {
                let id = super::identity::certificate_identity(cx, device);
                self.session(sid).identity = Some(id);
            }
            let identity = self.session(sid).identity.clone().flatten();
            match (&identity, fr) {
                (None, _) => {
                    self.reply_error(
                        cx,
                        sid,
                        PrimitiveError::new(
                            Rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
                            "identity binding is on and the connection has no client certificate",
                        )
                        .with_rqi(Some(rqi)),
                    );
                    return;
                }
                (Some(id), Some(f))
                    if !f.is_empty() && f != id && !(registration && (f == "C" || f == "S")) =>
                {
                    tracing::warn!(session = sid, fr = f, certificate = %id, "fr does not match the client certificate");
                    self.reply_error(
                        cx,
                        sid,
                        PrimitiveError::new(
                            Rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
                            format!("fr {f} does not match the client certificate ({id})"),
                        )
                        .with_rqi(Some(rqi)),
                    );
                    return;
                }
                (Some(id), _) => {
                    let s = self.session(sid);
                    if s.origin.is_none() && !registration {
                        s.origin = Some(id.clone());
                    }
                }
            }
        }
        // Session gate (TS-0020 clause 6.4): before registration only an AE or remoteCSE create, unless
        // the device names itself (a device that registered earlier and reconnects): then the CSE's
        // answer on a link bound to that AE-ID decides.
        let s = self.session(sid);
        if !s.registered && s.origin.is_none() && !registration {
            match fr {
                Some(f) if !f.is_empty() => {
                    s.origin = Some(f.to_string());
                    self.relink_with_origin(cx, sid);
                }
                _ => {
                    self.reply_error(cx, sid, PrimitiveError::new(Rsc::ORIGINATOR_HAS_NO_PRIVILEGE, "register first: the only request accepted before registration is an AE or remoteCSE create (TS-0020 clause 6.4)").with_rqi(Some(rqi)));
                    return;
                }
            }
        }
        if registration
            && self.session(sid).origin.is_none()
            && self.settings.origin_header == super::settings::OriginHeader::Always
        {
            if let Some(f) = fr.filter(|f| f.len() > 1) {
                self.session(sid).origin = Some(f.to_string());
                self.relink_with_origin(cx, sid);
            }
        }
        let deregistration = op == Operation::Delete
            && self.session(sid).origin.as_deref().is_some_and(|o| {
                to == o || to.strip_suffix(o).is_some_and(|head| head.ends_with('/'))
            });
        let up = if dev_format == up_format && !view.wrapped {
            Cow::Borrowed(bytes)
        } else {
            match m2m_primitive::decode(dev_format, bytes)
                .and_then(|p| m2m_primitive::encode(&p, up_format))
            {
                Ok(b) => Cow::Owned(b),
                Err(e) => {
                    self.reply_error(cx, sid, e.with_rqi(Some(rqi)));
                    return;
                }
            }
        };
        let timeout = self.settings.request_timeout;
        let max_queued = self.settings.max_queued;
        let s = self.session(sid);
        if s.queue.len() >= max_queued {
            self.counters.limit(super::metrics::LIMIT_QUEUE_FULL);
            self.reply_error(
                cx,
                sid,
                PrimitiveError::new(
                    Rsc::TARGET_NOT_REACHABLE,
                    "edge queue for this device is full",
                )
                .with_rqi(Some(rqi)),
            );
            return;
        }
        // The request's own expiry caps the edge's wait (TS-0004 §7.3.2.6).
        let mut deadline = cx.now() + timeout;
        if let Some(rqet) = view_rqet {
            let left = rqet.resolve(now_wall).saturating_sub(now_wall).max(0) as u64;
            deadline = deadline.min(cx.now() + std::time::Duration::from_millis(left));
        }
        let request = RequestMeta {
            rqi,
            deadline,
            registration,
            deregistration,
        };
        let max = self.settings.max_in_flight.max(1);
        let s = self.session(sid);
        if s.queue.is_empty() && s.link.is_open() && s.pending.len() < max {
            // The usual case: nothing waits, so the queue is skipped (and stays unallocated) and the
            // primitive is framed straight from the device's input into the link's output.
            self.dispatch(cx, sid, request, &up);
        } else {
            s.queue.push_back(Queued {
                request,
                bytes: up.into_owned(),
            });
            self.pump(cx, sid);
        }
    }

    /// Send queued requests while the link is open and below `max_in_flight`.
    pub(super) fn pump(&mut self, cx: &mut Cx<'_, ()>, sid: usize) {
        let max = self.settings.max_in_flight.max(1);
        loop {
            let s = self.session(sid);
            if !s.link.is_open() || s.pending.len() >= max {
                return;
            }
            let Some(q) = s.queue.pop_front() else { return };
            if s.queue.is_empty() {
                // An idle device keeps no queue capacity (memory per idle device).
                s.queue = VecDeque::new();
            }
            if q.request.deadline <= cx.now() {
                self.reply_error(
                    cx,
                    sid,
                    PrimitiveError::new(
                        Rsc::REQUEST_TIMEOUT,
                        "no upstream link within the request timeout",
                    )
                    .with_rqi(Some(q.request.rqi)),
                );
                continue;
            }
            self.dispatch(cx, sid, q.request, &q.bytes);
        }
    }

    /// Send one request up the open link and wait for its response under a timer.
    fn dispatch(&mut self, cx: &mut Cx<'_, ()>, sid: usize, request: RequestMeta, bytes: &[u8]) {
        let s = self.session(sid);
        s.seq = s.seq.wrapping_add(1);
        let seq = s.seq;
        let timer = cx.set_timer(request.deadline, token(TIMER_REQUEST, sid, seq));
        s.pending.push(Pending {
            rqi: request.rqi,
            seq,
            timer,
            registration: request.registration,
            deregistration: request.deregistration,
            sent: cx.now(),
        });
        self.link_send(cx, sid, bytes);
    }

    /// The idle timer fired: close a device that sent nothing for `idle_timeout`, else re-arm.
    pub(super) fn idle_timeout(&mut self, cx: &mut Cx<'_, ()>, sid: usize) {
        let Some(idle) = self.settings.idle_timeout else {
            return;
        };
        let s = self.session(sid);
        s.idle_timer = None;
        let quiet = cx.now().saturating_duration_since(s.last_input);
        if quiet < idle {
            let at = s.last_input + idle;
            self.session(sid).idle_timer =
                Some(cx.set_timer(at, super::token(super::TIMER_IDLE, sid, 0)));
            return;
        }
        tracing::debug!(session = sid, "device idle timeout");
        self.counters.limit(super::metrics::LIMIT_IDLE_TIMEOUT);
        self.close_device(cx, sid, CloseCode::GOING_AWAY, "idle timeout");
    }

    /// During shutdown: close the device with 1001 once nothing is queued or in flight.
    pub(super) fn close_if_drained(&mut self, cx: &mut Cx<'_, ()>, sid: usize) {
        let s = self.session(sid);
        if s.draining
            && s.pending.is_empty()
            && s.queue.is_empty()
            && matches!(s.dev, Device::Open { .. })
        {
            self.close_device(cx, sid, CloseCode::GOING_AWAY, "edge shutting down");
        }
    }

    pub(super) fn request_timeout(&mut self, cx: &mut Cx<'_, ()>, sid: usize, seq: u32) {
        let s = self.session(sid);
        let Some(i) = s.pending.iter().position(|p| p.seq == seq) else {
            return;
        };
        let p = s.take_pending(i);
        self.reply_error(
            cx,
            sid,
            PrimitiveError::new(
                Rsc::REQUEST_TIMEOUT,
                "no response from the CSE within the request timeout",
            )
            .with_rqi(Some(p.rqi)),
        );
        self.pump(cx, sid);
        self.close_if_drained(cx, sid);
    }

    /// Answer everything queued or in flight with `rsc` (the link failed).
    pub(super) fn fail_all(&mut self, cx: &mut Cx<'_, ()>, sid: usize, rsc: Rsc, why: &str) {
        let s = self.session(sid);
        let pending: Vec<Pending> = s.pending.drain(..).collect();
        let queued: Vec<Queued> = s.queue.drain(..).collect();
        for p in pending {
            cx.cancel_timer(p.timer);
            self.reply_error(cx, sid, PrimitiveError::new(rsc, why).with_rqi(Some(p.rqi)));
        }
        for q in queued {
            self.reply_error(
                cx,
                sid,
                PrimitiveError::new(rsc, why).with_rqi(Some(q.request.rqi)),
            );
        }
    }
}

/// The index of a serialization in the per-serialization counters (json, cbor, xml).
pub(super) fn format_index(format: Format) -> usize {
    match format {
        Format::Json => 0,
        Format::Cbor => 1,
        Format::Xml => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::{InputSpan, Payload};

    #[test]
    fn a_payload_inside_the_input_is_a_range_and_one_elsewhere_is_copied() {
        let input = b"\x81\x05hello\x81\x02ok".to_vec();
        let span = InputSpan::of(&input);
        match span.payload(&input[2..7]) {
            Payload::InPlace(r) => assert_eq!(&input[r], b"hello"),
            Payload::Owned(_) => panic!("payload inside the input was copied"),
        }
        match span.payload(&input[9..]) {
            Payload::InPlace(r) => assert_eq!(r, 9..11),
            Payload::Owned(_) => panic!("payload at the end of the input was copied"),
        }
        let reassembled = b"hello".to_vec();
        match span.payload(&reassembled) {
            Payload::Owned(bytes) => assert_eq!(bytes, b"hello"),
            Payload::InPlace(_) => panic!("a buffer outside the input taken as in place"),
        }
        match span.payload(&input[11..]) {
            Payload::InPlace(r) => assert!(r.is_empty()),
            Payload::Owned(bytes) => assert!(bytes.is_empty()),
        }
    }
}
