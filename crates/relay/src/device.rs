//! The device side of a session: the WebSocket handshake with the oneM2M policy, frames, and every
//! primitive's first checks (routing view, serialization, UTF-8). Requests then go through the gate
//! and the queue (`relay`); the device's answers to the CSE's requests go straight up.

use std::sync::atomic::Ordering;
use std::time::Instant;

use m2m_primitive::{Format, Primitive, PrimitiveError, RoutingView, Rsc};
use m2m_ws::handshake::{error_response, http_error, parse_request, server};
use m2m_ws::{CloseCode, OpCode, Receiver, Role, Sender, SenderConfig, endpoint};

use crate::counters::{
    LIMIT_DEVICE_LIMIT, LIMIT_FRAME_TIMEOUT, LIMIT_HANDSHAKE_TIMEOUT, LIMIT_IDLE_TIMEOUT,
};
use crate::counters::{LIMIT_MESSAGE_TOO_BIG, LIMIT_OUTPUT_BOUND};
use crate::engine::{Engine, T_FRAME, T_HANDSHAKE, T_IDLE, timer};
use crate::lazy::LazyDeque;
use crate::message::{InputSpan, Step, next_frame};
use crate::relay::Queued;
use crate::settings::{format_index, format_of};
use crate::{Back, DeviceId, Io, LinkId, Peer};

/// The device connection's protocol state.
#[derive(Debug)]
pub(crate) enum DeviceState {
    Handshake,
    Open {
        rx: Receiver,
        tx: Sender,
        format: Format,
    },
    /// A CONNECT tunnel to another allow-listed target: bytes are relayed as they are.
    Tunnel {
        open: bool,
        early: Vec<u8>,
    },
}

/// One device session.
#[derive(Debug)]
pub(crate) struct Session {
    pub state: DeviceState,
    pub accepted: Instant,
    /// The originator bound to this session (handshake `X-M2M-Origin`, registration, or `fr`).
    pub origin: Option<Box<str>>,
    pub registered: bool,
    /// The upstream link: its own (passthrough) or the shared one it is pinned to (multiplex).
    pub link: Option<LinkId>,
    /// Requests waiting for the link (in device order), and whether the device is on the link's
    /// waiting list.
    pub queue: LazyDeque<Queued>,
    pub waiting: bool,
    /// Requests sent up and not yet answered.
    pub in_flight: u32,
    /// Multiplex: the CSE's requests delivered to this device, with where their answers go.
    pub owed: LazyDeque<(Box<str>, Back)>,
    pub last_input: Instant,
    /// Since when a frame (or fragmented message) has been begun and not finished (whole seconds
    /// after `accepted`, plus one: four bytes instead of sixteen in every session), and whether
    /// the frame timer is armed (at most one per session, however often frames are split).
    pub partial_since: Option<std::num::NonZeroU32>,
    pub frame_timer: bool,
    /// Shutting down: close with 1001 once nothing is queued or in flight.
    pub draining: bool,
    /// The client certificate's identity, looked up once (`None` until then).
    pub identity: Option<Option<Box<str>>>,
    /// Requests held for this originator on another core are on their way: what the CSE sends
    /// meanwhile is held behind them, so the device gets everything in order.
    pub awaiting_held: bool,
    /// When the last WebSocket ping was sent and not yet answered.
    pub ping_sent: Option<Instant>,
}

/// The close reason of a session replaced by a newer one of the same originator.
const TAKEN_OVER: &str = "replaced by a newer session of this originator";

/// At most this many of the CSE's requests are remembered per device for routing its answers.
const MAX_OWED: usize = 64;

impl Session {
    fn new(now: Instant) -> Self {
        Self {
            state: DeviceState::Handshake,
            accepted: now,
            origin: None,
            registered: false,
            link: None,
            queue: LazyDeque::default(),
            waiting: false,
            in_flight: 0,
            owed: LazyDeque::default(),
            last_input: now,
            partial_since: None,
            frame_timer: false,
            draining: false,
            identity: None,
            awaiting_held: false,
            ping_sent: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn new_for_tests() -> Self {
        Self::new(Instant::now())
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, DeviceState::Open { .. })
    }

    pub(crate) fn format(&self) -> Option<Format> {
        match self.state {
            DeviceState::Open { format, .. } => Some(format),
            _ => None,
        }
    }

    /// Remember that the answer to the CSE's request `rqi` goes to `back`; past `MAX_OWED`, the
    /// oldest is given up and returned (the caller answers it 5103).
    /// Held requests delivered on return are remembered with a `back` of the device itself (their
    /// answers go nowhere); those go first when the table is full, so that they never push out a
    /// request the CSE is waiting on.
    pub(crate) fn owe(&mut self, rqi: &str, back: Back) -> Option<(Box<str>, Back)> {
        let held = |b: &Back| matches!(b.peer, Peer::Device(_));
        let mut evicted = None;
        if self.owed.len() >= MAX_OWED {
            let first_held = self.owed.iter().position(|(_, b)| held(b));
            match first_held {
                Some(at) => evicted = self.owed.remove(at),
                // Full of requests the CSE waits on: a held one is not remembered (its answer
                // goes nowhere anyway) rather than pushing one of them out.
                None if held(&back) => return None,
                None => evicted = self.owed.remove(0),
            }
        }
        self.owed.push_back((rqi.into(), back));
        evicted
    }
}

impl Engine {
    /// A session for a connection just accepted: its id, so that the caller can map its
    /// connection before [`Engine::device_accepted`] acts on it.
    pub fn new_device(&mut self, now: Instant) -> DeviceId {
        let (index, generation) = self.devices.insert(Session::new(now));
        DeviceId { index, generation }
    }

    /// Start the session of `new_device`. Over the per-core device limit, or while draining, the
    /// device is answered 503 and closed.
    pub fn device_accepted(&mut self, io: &mut impl Io, now: Instant, d: DeviceId) {
        let limit = self.s.max_devices_per_core;
        if self.draining || (limit > 0 && self.devices.len() > limit) {
            if !self.draining {
                tracing::warn!(limit, "device limit reached");
                self.counters.limit(LIMIT_DEVICE_LIMIT);
            }
            let body = if self.draining {
                "edge shutting down"
            } else {
                "device limit of this edge reached"
            };
            io.send(
                Peer::Device(d),
                &http_error(503, &[("Retry-After", "5")], body),
            );
            io.close(Peer::Device(d));
            self.devices.remove(d.index, d.generation);
            return;
        }
        self.counters
            .device_sessions
            .fetch_add(1, Ordering::Relaxed);
        io.set_timer(
            now + self.s.handshake_timeout,
            timer(T_HANDSHAKE, d.index, d.generation),
        );
    }

    /// Bytes from a device; returns how many were consumed.
    pub fn device_data(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        d: DeviceId,
        data: &mut [u8],
    ) -> usize {
        self.tick(now);
        let Some(s) = self.session_mut(d) else {
            return data.len();
        };
        s.last_input = now;
        match s.state {
            DeviceState::Handshake => self.device_handshake(io, now, d, data),
            DeviceState::Open { .. } => self.device_frames(io, now, d, data),
            DeviceState::Tunnel { .. } => self.tunnel_from_device(io, d, data),
        }
    }

    /// The device went away (or its TLS failed).
    pub fn device_closed(&mut self, io: &mut impl Io, now: Instant, d: DeviceId, tls_failed: bool) {
        self.tick(now);
        if tls_failed && self.session(d).is_some() {
            self.counters.tls[1].fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(device = d.index, "device gone");
        self.drop_device(io, d, false);
    }

    /// Forget a session: its own link (passthrough) or tunnel is aborted, its place in routing
    /// tables removed. `close`: also close the device connection.
    pub(crate) fn drop_device(&mut self, io: &mut impl Io, d: DeviceId, close: bool) {
        let Some(s) = self.devices.remove(d.index, d.generation) else {
            return;
        };
        self.counters
            .device_sessions
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(format) = s.format() {
            self.counters.sessions_by_format[format_index(format)].fetch_sub(1, Ordering::Relaxed);
        }
        if close {
            io.close(Peer::Device(d));
        }
        if matches!(s.state, DeviceState::Tunnel { .. }) {
            io.close(Peer::Tunnel(d));
        }
        let away = s
            .origin
            .as_ref()
            .is_some_and(|o| self.leave_origin(io, d, o));
        // The CSE's requests this device still owed an answer to: 5103, not the CSE's own timeout.
        for (rqi, back) in s.owed.iter() {
            self.answer_unreachable(io, *back, rqi, Format::Json);
        }
        if let Some(l) = s.link
            && !self.multiplex()
        {
            match s.origin {
                // Passthrough: the CSE routes to the device by its connection, so the link stays
                // open for the hold time and what the CSE sends on it is held.
                Some(o) if away && self.link(l).is_some_and(|k| k.is_open() && k.has_origin) => {
                    self.orphan_link(io, l, o)
                }
                _ => self.remove_link(io, l),
            }
        }
    }

    fn device_handshake(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        d: DeviceId,
        data: &mut [u8],
    ) -> usize {
        let (req, head_len) = match parse_request(data, self.s.head) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return 0,
            Err(e) => {
                io.send(Peer::Device(d), &error_response(&e));
                self.drop_device(io, d, true);
                return data.len();
            }
        };
        if req.method == "CONNECT" {
            let target = m2m_ws::handshake::connect::parse_connect(&req)
                .map(|t| (t.host.to_string(), t.port, t.authority.to_string()));
            return self.device_connect(io, now, d, target, head_len, data);
        }
        let negotiated = server::validate_upgrade(&req).and_then(|up| {
            let origin = up.m2m_origin.map(Box::<str>::from);
            server::negotiate(&up, &self.s.policy, self.s.deflate.as_ref()).map(|n| (n, origin))
        });
        let (n, origin) = match negotiated {
            Ok(ok) => ok,
            Err(e) => {
                self.counters.handshake(3, false);
                self.count_tls_handshake();
                tracing::debug!(device = d.index, error = %e, "device handshake refused");
                io.send(Peer::Device(d), &error_response(&e));
                self.drop_device(io, d, true);
                return data.len();
            }
        };
        if let Some(o) = &origin
            && !self.origin_matches_certificate(io, d, o)
        {
            self.counters.handshake(3, false);
            tracing::warn!(device = d.index, origin = %o, "X-M2M-Origin does not match the client certificate");
            io.send(
                Peer::Device(d),
                &http_error(
                    403,
                    &[],
                    "X-M2M-Origin does not match the client certificate",
                ),
            );
            self.drop_device(io, d, true);
            return data.len();
        }
        if let Some(o) = origin {
            self.bind_origin(io, d, o);
        }
        io.send(Peer::Device(d), &n.response);
        let (rx, tx) = endpoint(
            Role::Server,
            n.deflate,
            self.s.frames,
            SenderConfig::default(),
            6,
        );
        let format = format_of(&n.protocol);
        self.counters.sessions_by_format[format_index(format)].fetch_add(1, Ordering::Relaxed);
        self.count_tls_handshake();
        self.counters.handshake(format_index(format), true);
        let s = self.session_mut(d).expect("live session");
        s.state = DeviceState::Open { rx, tx, format };
        if let Some(idle) = self.s.idle_timeout {
            io.set_timer(now + idle, timer(T_IDLE, d.index, d.generation));
        }
        self.arm_ping_sweep(io, now);
        self.attach_link(io, now, d);
        self.deliver_held(io, d);
        head_len + self.device_frames(io, now, d, &mut data[head_len..])
    }

    /// With `bind_identity`, the handshake's `X-M2M-Origin` must be the client certificate's
    /// identity too (else one device could open a session as another and receive its NOTIFYs).
    fn origin_matches_certificate(&mut self, io: &mut impl Io, d: DeviceId, origin: &str) -> bool {
        if !self.s.bind_identity {
            return true;
        }
        let id = io.client_identity(d);
        let matches = id.as_deref() == Some(origin);
        if let Some(s) = self.session_mut(d) {
            s.identity = Some(id.map(Into::into));
        }
        matches
    }

    fn count_tls_handshake(&self) {
        if self.s.device_tls {
            self.counters.tls[0].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Give a newly open session its upstream link: its own (passthrough) or a shared one.
    fn attach_link(&mut self, io: &mut impl Io, now: Instant, d: DeviceId) {
        let l = if self.multiplex() {
            self.pin(io, now)
        } else if let Some(l) = self.adopt_orphan(d) {
            l
        } else {
            let l = self.new_link(Some(d));
            self.session_mut(d).expect("live session").link = Some(l);
            self.open_passthrough_link(io, now, d, l);
            return;
        };
        self.session_mut(d).expect("live session").link = Some(l);
    }

    /// Bind the session to an originator and route the CSE's requests for it here. One live session
    /// per originator: a newer session that names it (handshake `X-M2M-Origin`, `fr`, the
    /// certificate under `--bind-identity`, or the CSE's answer to its registration) takes over,
    /// and the older one — on this core or another — is closed with 1000 and a reason, as ACME
    /// closes an older connection of the same originator. So a device that reconnects while its old
    /// session is half dead gets its NOTIFYs on the new one, and the two never flap.
    pub(crate) fn bind_origin(&mut self, io: &mut impl Io, d: DeviceId, origin: Box<str>) {
        let Some(since) = self.session(d).map(|s| s.accepted) else {
            return;
        };
        let me = crate::Holder {
            core: self.core,
            device: d,
            since,
        };
        let (previous, held_on) = match self.directory.claim(&origin, me) {
            crate::Claim::Taken { previous, held_on } => (previous, held_on),
            crate::Claim::Newer => {
                tracing::info!(device = d.index, origin = %origin, "a newer session holds this originator: not bound");
                return;
            }
        };
        let inherit = previous
            .filter(|h| h.core == self.core && h.device != d)
            .and_then(|h| self.session(h.device))
            .is_some_and(|s| s.awaiting_held);
        match previous {
            Some(h) if h.core == self.core && h.device != d => {
                self.taken_over(io, &origin, h.device)
            }
            Some(h) if h.core != self.core => {
                let msg = crate::Envelope::TakeOver {
                    origin: origin.clone(),
                    device: h.device,
                };
                if !io.post(h.core, msg) {
                    tracing::warn!(core = h.core, origin = %origin, "mailbox full: the older session was not told to close");
                }
            }
            _ => {}
        }
        if let Some(s) = self.session_mut(d) {
            s.origin = Some(origin.clone());
        }
        self.fetch_held(io, d, origin, held_on, inherit);
    }

    /// A newer session (of this core or another) took `origin` over: close `device`, the older
    /// one, if it still holds it. Its origin is cleared first, so that closing it does not release
    /// the new claim.
    pub(crate) fn taken_over(&mut self, io: &mut impl Io, origin: &str, device: DeviceId) {
        let Some(s) = self.session_mut(device) else {
            return;
        };
        if s.origin.as_deref() == Some(origin) {
            tracing::info!(
                device = device.index,
                origin,
                "session replaced by a newer one"
            );
            s.origin = None;
            self.close_device(io, device, CloseCode::NORMAL, TAKEN_OVER);
        }
    }

    /// Unbind a session's originator (deregistration).
    pub(crate) fn unbind_origin(&mut self, d: DeviceId, origin: &str) {
        self.directory.release(origin, self.core, d, None);
    }

    fn device_frames(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        d: DeviceId,
        data: &mut [u8],
    ) -> usize {
        let mut at = 0;
        let input = InputSpan::of(data);
        loop {
            let Some(DeviceState::Open { rx, tx, .. }) = self.session_mut(d).map(|s| &mut s.state)
            else {
                return data.len();
            };
            match next_frame(io, Peer::Device(d), rx, tx, data, &mut at, input) {
                Step::Need(used) => {
                    let partial = used < data.len() || rx.in_message();
                    self.note_partial(io, now, d, partial);
                    return used;
                }
                Step::Control => {
                    self.frame_done(d);
                    // A ping was answered: pongs count toward the output bound too (a device that
                    // pings faster than it reads would otherwise grow the edge's memory).
                    self.check_output_bound(io, d);
                }
                Step::Pong => {
                    self.frame_done(d);
                    self.device_pong(d);
                }
                Step::Message(m) => {
                    self.frame_done(d);
                    self.device_message(io, now, d, m.bytes(data), m.text);
                }
                Step::Close { code, why, error } => {
                    if error {
                        self.counters.error(0);
                        if code == CloseCode::MESSAGE_TOO_BIG {
                            self.counters.limit(LIMIT_MESSAGE_TOO_BIG);
                        }
                    }
                    self.close_device(io, d, code, &why);
                    return data.len();
                }
            }
        }
    }

    /// One primitive from the device: checked, then relayed (request) or sent up (answer).
    fn device_message(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        d: DeviceId,
        bytes: &[u8],
        text: bool,
    ) {
        let Some(format) = self.session(d).and_then(Session::format) else {
            return;
        };
        let view = match self.device_view(format, bytes, text) {
            Ok(v) => v,
            Err(e) => {
                self.counters.error(1);
                self.reply_error(io, d, e);
                return;
            }
        };
        match (view.op, view.rsc) {
            (Some(op), _) => self.counters.request(0, op as usize - 1),
            (None, Some(rsc)) => self.counters.response(0, rsc.0),
            _ => {}
        }
        if view.op.is_none() {
            self.device_answer(io, d, bytes, &view, format);
            return;
        }
        self.device_request(io, now, d, bytes, &view, format);
    }

    /// The routing view of a device primitive, or the error to answer: 4015 for a primitive in
    /// another serialization than the session's, 4000 for a malformed one or JSON/XML that is not
    /// UTF-8 (it goes up as text).
    fn device_view<'a>(
        &self,
        format: Format,
        bytes: &'a [u8],
        text: bool,
    ) -> Result<RoutingView<'a>, PrimitiveError> {
        let view = RoutingView::parse(format, bytes).map_err(|e| {
            match Format::sniff(bytes).filter(|&f| f != format) {
                Some(other) => PrimitiveError::new(
                    Rsc::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "a {} primitive on a {} session",
                        other.name(),
                        format.name()
                    ),
                )
                .with_rqi(m2m_primitive::view::extract_rqi(other, bytes)),
                None => e,
            }
        })?;
        if !text && format != Format::Cbor && std::str::from_utf8(bytes).is_err() {
            return Err(PrimitiveError::new(
                Rsc::BAD_REQUEST,
                format!("a {} primitive that is not UTF-8", format.name()),
            )
            .with_rqi(view.rqi.as_deref().map(str::to_string)));
        }
        Ok(view)
    }

    /// The device answers a request of the CSE (NOTIFY, verification): back where it came from.
    fn device_answer(
        &mut self,
        io: &mut impl Io,
        d: DeviceId,
        bytes: &[u8],
        view: &RoutingView<'_>,
        format: Format,
    ) {
        let multiplex = self.multiplex();
        let core = self.core;
        let Some(s) = self.session_mut(d) else { return };
        let rqi = view.rqi.as_deref().unwrap_or_default();
        let found = s.owed.iter().position(|(r, _)| &**r == rqi);
        let back = match found {
            Some(i) => s.owed.remove(i).expect("found").1,
            // On a shared link an answer to a request this device was not sent could answer
            // another device's request in its place.
            None if multiplex => {
                tracing::debug!(
                    device = d.index,
                    rqi,
                    "answer to no request of this device dropped"
                );
                self.counters.error(2);
                return;
            }
            None => match s.link {
                Some(l) => Back {
                    core,
                    peer: Peer::Link(l),
                },
                None => return,
            },
        };
        let body = crate::relay::Body {
            bytes,
            format,
            wrapped: view.wrapped,
        };
        self.send_answer(io, back, body);
    }

    /// Send a primitive to the device in its serialization.
    pub(crate) fn send_to_device(&mut self, io: &mut impl Io, d: DeviceId, p: &Primitive) {
        let Some(format) = self.session(d).and_then(Session::format) else {
            return;
        };
        let Ok(bytes) = m2m_primitive::encode(p, format) else {
            return;
        };
        self.send_raw_to_device(io, d, &bytes, format != Format::Cbor);
    }

    /// Bytes of a primitive already in the device's serialization; `text`: known to be UTF-8.
    pub(crate) fn send_raw_to_device(
        &mut self,
        io: &mut impl Io,
        d: DeviceId,
        bytes: &[u8],
        text: bool,
    ) {
        let Some(s) = self.session_mut(d) else { return };
        let DeviceState::Open { tx, format, .. } = &mut s.state else {
            return;
        };
        let binary = *format == Format::Cbor || (!text && std::str::from_utf8(bytes).is_err());
        let opcode = if binary { OpCode::Binary } else { OpCode::Text };
        io.send_with(Peer::Device(d), |out| tx.message(opcode, bytes, out));
        self.check_output_bound(io, d);
    }

    /// A device that stopped reading must not hold the edge's memory: past `max_output_bytes`
    /// of unsent output it is closed (its close frame would not be read either).
    fn check_output_bound(&mut self, io: &mut impl Io, d: DeviceId) {
        let unsent = io.unsent(Peer::Device(d));
        if unsent > self.s.max_output_bytes {
            tracing::warn!(
                device = d.index,
                unsent,
                limit = self.s.max_output_bytes,
                "device does not read its output: closed"
            );
            self.counters.limit(LIMIT_OUTPUT_BOUND);
            io.abort(Peer::Device(d));
            self.drop_device(io, d, false);
        }
    }

    /// An error response from the edge itself.
    pub(crate) fn reply_error(&mut self, io: &mut impl Io, d: DeviceId, err: PrimitiveError) {
        tracing::debug!(device = d.index, rsc = err.rsc.0, dbg = %err.dbg, "edge answers");
        self.counters.answer(err.rsc.0);
        let rsp = err.to_response(&self.s.rvi);
        self.send_to_device(io, d, &Primitive::Response(rsp));
    }

    /// Send a close frame to the device and close it; the session ends here.
    pub(crate) fn close_device(
        &mut self,
        io: &mut impl Io,
        d: DeviceId,
        code: CloseCode,
        why: &str,
    ) {
        if let Some(Session {
            state: DeviceState::Open { tx, .. },
            ..
        }) = self.session_mut(d)
        {
            io.send_with(Peer::Device(d), |out| tx.close(code, why, out));
        }
        self.drop_device(io, d, true);
    }

    pub(crate) fn handshake_timeout(&mut self, io: &mut impl Io, now: Instant, d: DeviceId) {
        let Some(s) = self.session(d) else { return };
        if !matches!(s.state, DeviceState::Handshake) {
            return;
        }
        let at = s.accepted + self.s.handshake_timeout;
        if now < at {
            // A reload lengthened the timeout since the timer was armed.
            io.set_timer(at, timer(T_HANDSHAKE, d.index, d.generation));
            return;
        }
        {
            tracing::debug!(device = d.index, "device handshake timeout");
            self.counters.limit(LIMIT_HANDSHAKE_TIMEOUT);
            io.abort(Peer::Device(d));
            self.drop_device(io, d, false);
        }
    }

    /// A frame finished: unless a fragmented message goes on, nothing is begun and unfinished (a
    /// read that ends inside the next frame starts its own clock in `note_partial`).
    fn frame_done(&mut self, d: DeviceId) {
        if let Some(s) = self.session_mut(d)
            && s.partial_since.is_some()
            && !matches!(&s.state, DeviceState::Open { rx, .. } if rx.in_message())
        {
            s.partial_since = None;
        }
    }

    /// Whether the device is in the middle of a frame or message now; the frame timer runs from
    /// the moment one begins.
    fn note_partial(&mut self, io: &mut impl Io, now: Instant, d: DeviceId, partial: bool) {
        let limit = self.s.frame_timeout;
        let Some(s) = self.session_mut(d) else { return };
        match (partial, s.partial_since, limit) {
            (false, _, _) => s.partial_since = None,
            (true, None, Some(limit)) => {
                // Rounded up: the timer may fire up to a second late, never early.
                let secs = (now.saturating_duration_since(s.accepted)
                    + std::time::Duration::from_nanos(999_999_999))
                .as_secs();
                s.partial_since =
                    std::num::NonZeroU32::new(u32::try_from(secs).unwrap_or(u32::MAX - 1) + 1);
                if !s.frame_timer {
                    s.frame_timer = true;
                    io.set_timer(now + limit, timer(T_FRAME, d.index, d.generation));
                }
            }
            _ => {}
        }
    }

    /// Close a device whose frame or message has been unfinished for `frame_timeout` (1008); one
    /// that finished it and began another meanwhile gets the timer again for the new one.
    pub(crate) fn frame_timeout(&mut self, io: &mut impl Io, now: Instant, d: DeviceId) {
        let limit = self.s.frame_timeout;
        let Some(s) = self.session_mut(d) else { return };
        s.frame_timer = false;
        let (Some(limit), Some(since)) = (limit, s.partial_since) else {
            return;
        };
        let since = s.accepted + std::time::Duration::from_secs(u64::from(since.get() - 1));
        if now < since + limit {
            s.frame_timer = true;
            io.set_timer(since + limit, timer(T_FRAME, d.index, d.generation));
            return;
        }
        tracing::debug!(device = d.index, "device frame timeout");
        self.counters.limit(LIMIT_FRAME_TIMEOUT);
        self.close_device(
            io,
            d,
            CloseCode::POLICY_VIOLATION,
            "frame not finished in time",
        );
    }

    /// Close a device that sent nothing for `idle_timeout`, else re-arm for its last input.
    pub(crate) fn idle_timeout(&mut self, io: &mut impl Io, now: Instant, d: DeviceId) {
        let (Some(idle), Some(s)) = (self.s.idle_timeout, self.session(d)) else {
            return;
        };
        let at = s.last_input + idle;
        if now < at {
            io.set_timer(at, timer(T_IDLE, d.index, d.generation));
            return;
        }
        tracing::debug!(device = d.index, "device idle timeout");
        self.counters.limit(LIMIT_IDLE_TIMEOUT);
        self.close_device(io, d, CloseCode::GOING_AWAY, "idle timeout");
    }

    /// During shutdown: close the device with 1001 once nothing is queued or in flight.
    pub(crate) fn close_if_drained(&mut self, io: &mut impl Io, _now: Instant, d: DeviceId) {
        let done = self
            .session(d)
            .is_some_and(|s| s.draining && s.in_flight == 0 && s.queue.is_empty() && s.is_open());
        if done {
            self.close_device(io, d, CloseCode::GOING_AWAY, "edge shutting down");
        }
    }
}
