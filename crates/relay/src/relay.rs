//! Requests from devices to the CSE and their answers: the session gate (TS-0020 clause 6.4) and
//! the other admission checks, the per-device queue, dispatch on the link with flow control
//! (`max_in_flight`, the link's unsent output), `rqi` correlation (rewritten on a shared link when
//! two devices use the same one), timeouts, and the edge's own answers.

use compact_str::CompactString;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use m2m_primitive::{Format, Operation, Primitive, PrimitiveError, RoutingView, Rsc, Value};

use crate::counters::LIMIT_QUEUE_FULL;
use crate::device::Session;
use crate::engine::{Engine, T_REQUESTS, timer};
use crate::settings::OriginHeader;
use crate::{Back, DeviceId, Envelope, Io, LinkId, Peer};

/// What the edge keeps about a request it relays.
#[derive(Debug)]
pub(crate) struct RequestMeta {
    /// Inline up to 24 bytes: the key of the request in its link's table, without an allocation.
    pub rqi: CompactString,
    /// Answer 4008 if still queued then (`timing`).
    pub queued_until: Instant,
    /// Answer 4008 if the CSE has not answered by then.
    pub deadline: Instant,
    /// `rt.rtv` 5: sent, never waited for, never answered by the edge.
    pub no_response: bool,
    pub registration: bool,
    pub deregistration: bool,
}

/// A request waiting for its link (the only case where the edge copies a primitive), in the
/// device's serialization.
#[derive(Debug)]
pub(crate) struct Queued {
    pub meta: RequestMeta,
    pub bytes: Vec<u8>,
    pub format: Format,
    pub wrapped: bool,
}

/// A request sent up a link and not yet answered, keyed by the `rqi` it carries on the link.
#[derive(Debug)]
pub(crate) struct Pending {
    pub device: DeviceId,
    /// The device's own `rqi` when the edge rewrote it on the link.
    pub device_rqi: Option<Box<str>>,
    pub registration: bool,
    pub deregistration: bool,
    pub sent: Instant,
    pub deadline: Instant,
}

/// A request of the CSE on its way to a device: where its answer goes, its bytes and view.
#[derive(Clone, Copy)]
pub(crate) struct CseRequest<'a> {
    pub back: Back,
    pub bytes: &'a [u8],
    pub view: &'a RoutingView<'a>,
    pub format: Format,
    /// Known to be UTF-8 (it came in a text frame).
    pub text: bool,
}

/// A request's bytes, serialization and whether it came in the draft's `m2m:rqp` wrapper.
#[derive(Clone, Copy)]
pub(crate) struct Body<'a> {
    pub bytes: &'a [u8],
    pub format: Format,
    pub wrapped: bool,
}

fn error(rsc: Rsc, why: impl Into<String>, rqi: &str) -> PrimitiveError {
    PrimitiveError::new(rsc, why).with_rqi(Some(rqi.to_string()))
}

impl Engine {
    /// A request from the device: admitted (or answered by the edge), then queued or sent.
    pub(crate) fn device_request(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        d: DeviceId,
        bytes: &[u8],
        view: &RoutingView<'_>,
        format: Format,
    ) {
        let Some(meta) = self.admit(io, now, d, view) else {
            return;
        };
        let pointed = self.point_poa_at_edge(d, bytes, view, format);
        let body = Body {
            bytes: pointed.as_deref().unwrap_or(bytes),
            format,
            wrapped: view.wrapped && pointed.is_none(),
        };
        self.submit(io, now, d, meta, body);
    }

    /// Multiplex with a notify listener: an AE or remoteCSE create or update that asks to be reached
    /// over the device's WebSocket, re-encoded with the edge's notify URL as its `poa` (`poa` module).
    fn point_poa_at_edge(
        &self,
        d: DeviceId,
        bytes: &[u8],
        view: &RoutingView<'_>,
        format: Format,
    ) -> Option<Vec<u8>> {
        let url = self.s.notify_url.as_deref().filter(|_| self.multiplex())?;
        let create = view.op == Some(Operation::Create) && matches!(view.ty, Some(2) | Some(16));
        if !create && view.op != Some(Operation::Update) {
            return None;
        }
        let id = match view.fr.as_deref() {
            Some(f) if create && f.len() > 1 => Some(f.to_string()),
            _ => self.session(d)?.origin.as_deref().map(str::to_string),
        };
        let mut p = m2m_primitive::decode(format, bytes).ok()?;
        if !crate::poa::point_at_edge(&mut p, url, id.as_deref(), create) {
            return None;
        }
        m2m_primitive::encode(&p, format).ok()
    }

    /// The checks a request passes before it goes up; `None` when the edge answered it.
    fn admit(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        d: DeviceId,
        view: &RoutingView<'_>,
    ) -> Option<RequestMeta> {
        let rqi = view.rqi.as_deref().unwrap_or_default();
        let op = view.op?;
        let registration = op == Operation::Create && matches!(view.ty, Some(2) | Some(16));
        let fr = view.fr.as_deref().filter(|f| !f.is_empty());
        let times = match crate::timing::request_times(view, now, self.s.request_timeout) {
            Ok(t) => t,
            Err(why) => {
                self.refuse(io, d, view, error(Rsc::REQUEST_TIMEOUT, why, rqi));
                return None;
            }
        };
        if let Err(e) = self.check_identity(io, now, d, (fr, registration), rqi) {
            self.refuse(io, d, view, e);
            return None;
        }
        // Binding an identity delivers what was held for it, which may close a device that does not
        // read (output bound).
        self.session(d)?;
        let remote_cse = registration && view.ty == Some(16);
        if let Err(e) = self.pass_gate(io, now, d, fr, (registration, remote_cse), rqi) {
            self.refuse(io, d, view, e);
            return None;
        }
        let s = self.session(d)?;
        let to = view.to.as_deref().unwrap_or_default();
        let deregistration =
            op == Operation::Delete && s.origin.as_deref().is_some_and(|o| names_registree(to, o));
        // On a shared link one device's far `rset` or `oet` must not hold a slot other devices
        // need: there the edge waits at most its request timeout.
        let answer_by = match self.multiplex() {
            true => times.answer_by.min(now + self.s.request_timeout),
            false => times.answer_by,
        };
        Some(RequestMeta {
            rqi: CompactString::from(rqi),
            queued_until: times.queued_until,
            deadline: answer_by,
            no_response: times.no_response,
            registration,
            deregistration,
        })
    }

    /// The edge's answer to a request it does not relay; none for a request with `rt.rtv` 5 (the
    /// originator expects no response).
    fn refuse(&mut self, io: &mut impl Io, d: DeviceId, view: &RoutingView<'_>, e: PrimitiveError) {
        if view.rtv == Some(5) {
            tracing::debug!(device = d.index, rsc = e.rsc.0, dbg = %e.dbg, "request without response refused");
            self.counters.answer(e.rsc.0);
            return;
        }
        self.reply_error(io, d, e);
    }

    /// The edge's answer about a queued request (4008, 5103), unless it expects no response.
    fn answer_queued(
        &mut self,
        io: &mut impl Io,
        d: DeviceId,
        meta: &RequestMeta,
        rsc: Rsc,
        why: &str,
    ) {
        if meta.no_response {
            self.counters.answer(rsc.0);
            return;
        }
        self.reply_error(io, d, error(rsc, why, &meta.rqi));
    }

    /// With `bind_identity`, `fr` must be the client certificate's identity (a registration may use
    /// `C`/`S` to ask the CSE for an id).
    fn check_identity(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        d: DeviceId,
        (fr, registration): (Option<&str>, bool),
        rqi: &str,
    ) -> Result<(), PrimitiveError> {
        if !self.s.bind_identity {
            return Ok(());
        }
        let s = self.session_mut(d).expect("live session");
        if s.identity.is_none() {
            s.identity = Some(io.client_identity(d).map(Into::into));
        }
        let Some(id) = s.identity.clone().flatten().map(String::from) else {
            return Err(error(
                Rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
                "identity binding is on and the connection has no client certificate",
                rqi,
            ));
        };
        match fr {
            Some(f) if f != id && !(registration && (f == "C" || f == "S")) => {
                tracing::warn!(device = d.index, fr = f, certificate = %id, "fr does not match the client certificate");
                Err(error(
                    Rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
                    format!("fr {f} does not match the client certificate ({id})"),
                    rqi,
                ))
            }
            _ => {
                if s.origin.is_none() && !registration {
                    self.bind_origin(io, d, id.into());
                    // Passthrough: the link must carry the identity now (ACME takes nothing but
                    // a registration on a link without X-M2M-Origin).
                    self.relink_with_origin(io, now, d);
                }
                Ok(())
            }
        }
    }

    /// Session gate (TS-0020 clause 6.4): before registration only an AE or remoteCSE create, unless
    /// the device names itself (a device that registered earlier and reconnects): then the CSE's
    /// answer decides. On a shared link a session bound to an AE may not speak for another one.
    /// A remoteCSE create names its CSE-ID in `fr`: a passthrough link carries it before the create
    /// goes up (ACME takes only AE creates on a connection without `X-M2M-Origin`).
    fn pass_gate(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        d: DeviceId,
        fr: Option<&str>,
        (registration, remote_cse): (bool, bool),
        rqi: &str,
    ) -> Result<(), PrimitiveError> {
        let Some(s) = self.session(d) else {
            return Ok(());
        };
        let registered = s.registered;
        // The usual case first, without copying the origin: a bound session, its own fr (or any
        // fr in passthrough, where the CSE judges it).
        if let Some(o) = s.origin.as_deref()
            && (registration || !self.multiplex() || fr == Some(o))
        {
            return Ok(());
        }
        let origin = s.origin.clone();
        match (&origin, fr) {
            (None, Some(f)) if !registered && !registration => {
                self.bind_origin(io, d, f.into());
                self.relink_with_origin(io, now, d);
            }
            (None, None) if !registered && !registration => {
                return Err(error(
                    Rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
                    "register first: the only request accepted before registration is an AE or remoteCSE create (TS-0020 clause 6.4)",
                    rqi,
                ));
            }
            (None, Some(f))
                if registration
                    && f.len() > 1
                    && !self.multiplex()
                    && (self.s.origin_header == OriginHeader::Always || remote_cse) =>
            {
                self.bind_origin(io, d, f.into());
                self.relink_with_origin(io, now, d);
            }
            (Some(o), None) if self.multiplex() && !registration => {
                // On a shared link the CSE would take it as the edge's own request.
                return Err(error(
                    Rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
                    format!("a request without fr on a shared link (this session is {o})"),
                    rqi,
                ));
            }
            (Some(o), Some(f)) if self.multiplex() && !registration && **o != *f => {
                return Err(error(
                    Rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
                    format!("this session speaks for {o}, not {f}"),
                    rqi,
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Queue the request or, when nothing waits and the link has room, send it at once (then the
    /// primitive is framed straight from the device's input into the link's output).
    fn submit(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        d: DeviceId,
        meta: RequestMeta,
        body: Body<'_>,
    ) {
        let max_queued = self.s.max_queued;
        let Some(l) = self.session(d).and_then(|s| s.link) else {
            // Never silently: a session without a link (a bug, or gone mid-event) answers 5103.
            let why = "no upstream link for this session";
            self.answer_queued(io, d, &meta, Rsc::TARGET_NOT_REACHABLE, why);
            return;
        };
        let s = self.session(d).expect("live session");
        if s.queue.len() >= max_queued {
            // A receiver error that says "not now" (5207 NOT_ACCEPTABLE), not that the target is
            // unreachable (5103): the CSE may well be there, the edge will not take more.
            self.counters.limit(LIMIT_QUEUE_FULL);
            let why = "edge queue for this device is full";
            self.answer_queued(io, d, &meta, Rsc::NOT_ACCEPTABLE, why);
            return;
        }
        let idle = s.queue.is_empty() && self.link(l).is_some_and(|k| k.waiting.is_empty());
        if idle && self.has_room(io, l) {
            self.dispatch(io, now, d, l, meta, body);
            return;
        }
        let s = self.session_mut(d).expect("live session");
        s.queue.push_back(Queued {
            meta,
            bytes: body.bytes.to_vec(),
            format: body.format,
            wrapped: body.wrapped,
        });
        let deadline = s.queue.back().map(|q| q.meta.queued_until);
        if !s.waiting {
            s.waiting = true;
            if let Some(link) = self.link_mut(l) {
                link.waiting.push_back(d);
            }
        }
        // Queued requests expire by the link's request timer too, not only when they leave the queue.
        if let (Some(at), Some(link)) = (deadline, self.link_mut(l))
            && link.timer_at.is_none_or(|t| at < t)
        {
            link.timer_at = Some(at);
            io.set_timer(at, timer(T_REQUESTS, l.index, l.generation));
        }
        self.pump(io, now, l);
    }

    /// Whether link `l` takes another request now.
    fn has_room(&self, io: &impl Io, l: LinkId) -> bool {
        self.link(l).is_some_and(|k| {
            k.is_open()
                && k.pending.len() < self.s.max_in_flight.max(1)
                && io.unsent(Peer::Link(l)) <= self.s.max_output_bytes
        })
    }

    /// Send queued requests while the link has room, one per waiting device in turn.
    pub(crate) fn pump(&mut self, io: &mut impl Io, now: Instant, l: LinkId) {
        while self.has_room(io, l) {
            let Some(d) = self.link_mut(l).and_then(|k| k.waiting.pop_front()) else {
                return;
            };
            let Some(s) = self.session_mut(d) else {
                continue;
            };
            s.waiting = false;
            let Some(q) = s.queue.pop_front() else {
                continue;
            };
            // (An emptied queue gives its allocation back by itself.)
            if !s.queue.is_empty() {
                s.waiting = true;
                if let Some(k) = self.link_mut(l) {
                    k.waiting.push_back(d);
                }
            }
            if q.meta.queued_until <= now {
                let why = "no upstream link within the request timeout";
                self.answer_queued(io, d, &q.meta, Rsc::REQUEST_TIMEOUT, why);
                continue;
            }
            let body = Body {
                bytes: &q.bytes,
                format: q.format,
                wrapped: q.wrapped,
            };
            self.dispatch(io, now, d, l, q.meta, body);
        }
    }

    /// Send one request up the open link `l` and keep it for its response.
    fn dispatch(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        d: DeviceId,
        l: LinkId,
        meta: RequestMeta,
        body: Body<'_>,
    ) {
        let Some(link_format) = self.link(l).and_then(|k| k.format()) else {
            return;
        };
        let up = match transcode(body, link_format) {
            Ok(up) => up,
            Err(e) => {
                self.reply_error(io, d, e.with_rqi(Some(meta.rqi.into())));
                return;
            }
        };
        if meta.no_response {
            // Nothing will come back: no slot, no timer, no entry to correlate.
            self.send_frame(io, l, &up);
            return;
        }
        let collides = self
            .link(l)
            .is_some_and(|k| k.pending.contains_key(meta.rqi.as_str()));
        let (key, device_rqi, up) = if collides {
            match self.rewrite_rqi(l, up, link_format) {
                Some((key, up)) => (key, Some(Box::from(meta.rqi.as_str())), up),
                None => {
                    let e = error(Rsc::BAD_REQUEST, "a request without rqi", &meta.rqi);
                    self.reply_error(io, d, e);
                    return;
                }
            }
        } else {
            (meta.rqi, None, up)
        };
        let pending = Pending {
            device: d,
            device_rqi,
            registration: meta.registration,
            deregistration: meta.deregistration,
            sent: now,
            deadline: meta.deadline,
        };
        if let Some(s) = self.session_mut(d) {
            s.in_flight += 1;
        }
        let link = self.link_mut(l).expect("open link");
        link.pending.insert(key, pending);
        if link.timer_at.is_none_or(|at| meta.deadline < at) {
            link.timer_at = Some(meta.deadline);
            io.set_timer(meta.deadline, timer(T_REQUESTS, l.index, l.generation));
        }
        self.send_frame(io, l, &up);
    }

    /// A fresh `rqi` for a request whose own one is in flight on the link from another device.
    fn rewrite_rqi(
        &mut self,
        l: LinkId,
        up: Cow<'_, [u8]>,
        format: Format,
    ) -> Option<(CompactString, Cow<'static, [u8]>)> {
        let span = RoutingView::parse(format, &up).ok()?.rqi_span?;
        let old = RoutingView::parse(format, &up).ok()?.rqi?.into_owned();
        let new = loop {
            self.rewrites += 1;
            let candidate = format!("{old}~edge{}", self.rewrites);
            // A device may itself use an rqi of this shape: the key must be free on the link.
            if !self
                .link(l)
                .is_some_and(|k| k.pending.contains_key(candidate.as_str()))
            {
                break candidate;
            }
        };
        let mut bytes = up.into_owned();
        m2m_primitive::view::replace_string(&mut bytes, format, span, &new);
        Some((new.into(), Cow::Owned(bytes)))
    }

    /// A response from the CSE: to the device whose request it answers.
    pub(crate) fn link_response(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        l: LinkId,
        bytes: &[u8],
        view: &RoutingView<'_>,
        link_format: Format,
        text: bool,
    ) {
        let rqi = view.rqi.as_deref().unwrap_or_default();
        let Some(p) = self.take_pending(l, rqi) else {
            tracing::warn!(link = l.index, rqi, "response with an unknown rqi dropped");
            self.counters.error(2);
            return;
        };
        let rsc = view.rsc.unwrap_or(Rsc(0));
        self.counters.response(1, rsc.0);
        self.counters
            .rtt(now.saturating_duration_since(p.sent).as_secs_f64());
        let d = p.device;
        let Some(dev_format) = self.session(d).and_then(Session::format) else {
            self.pump(io, now, l);
            return;
        };
        if let Some(s) = self.session_mut(d) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        let relink = self.note_registration(io, d, &p, rsc, bytes, link_format);
        let edge_url =
            self.s.notify_url.as_deref().filter(|u| {
                memchr::memmem::find(bytes, u.trim_end_matches('/').as_bytes()).is_some()
            });
        let same = dev_format == link_format && edge_url.is_none();
        if same && p.device_rqi.is_none() {
            self.send_raw_to_device(io, d, bytes, text);
        } else if let (true, Some(own), Some(span)) = (same, &p.device_rqi, view.rqi_span.clone()) {
            // The rqi was rewritten on the way up (another device had the same one in flight on
            // this link): the device's own goes back in place, one splice instead of a decode
            // and re-encode of the whole response.
            let mut restored = bytes.to_vec();
            m2m_primitive::view::replace_string(&mut restored, link_format, span, own);
            self.send_raw_to_device(io, d, &restored, text);
        } else {
            match m2m_primitive::decode(link_format, bytes) {
                Ok(Primitive::Response(r)) => {
                    let mut rsp = Primitive::Response(r);
                    if let Some(url) = edge_url {
                        crate::poa::show_device_view(&mut rsp, url);
                    }
                    if let (Some(own), Primitive::Response(r)) = (p.device_rqi, &mut rsp) {
                        r.rqi = Some(own.into());
                    }
                    self.send_to_device(io, d, &rsp);
                }
                Ok(other) => self.send_to_device(io, d, &other),
                Err(e) => {
                    tracing::warn!(link = l.index, error = %e, "undecodable response from the CSE")
                }
            }
        }
        if relink {
            self.relink_with_origin(io, now, d);
        }
        self.pump(io, now, l);
        self.close_if_drained(io, now, d);
    }

    /// Take the request in flight under `rqi`. The table keeps its capacity while the link is
    /// busy (freeing it whenever it empties cost an allocation per request in closed loop, 2 % of the
    /// edge's CPU in a profile); an idle link gives it back when its request timer next fires.
    fn take_pending(&mut self, l: LinkId, rqi: &str) -> Option<Pending> {
        self.link_mut(l)?.pending.remove(rqi)
    }

    /// A registration answered 2001 binds the session to the new AE-ID or CSE-ID; a deregistration
    /// answered 2002 unbinds it. Returns whether a passthrough link must be re-opened with the id.
    fn note_registration(
        &mut self,
        io: &mut impl Io,
        d: DeviceId,
        p: &Pending,
        rsc: Rsc,
        bytes: &[u8],
        format: Format,
    ) -> bool {
        if p.registration && rsc == Rsc::CREATED {
            self.counters.registrations.fetch_add(1, Ordering::Relaxed);
            let id = registered_id(bytes, format);
            let s = self.session_mut(d).expect("live session");
            s.registered = true;
            if s.origin.is_none()
                && let Some(id) = id
            {
                self.bind_origin(io, d, id.into());
            }
            return self.session(d).is_some_and(|s| s.origin.is_some());
        }
        if p.deregistration && rsc == Rsc::DELETED {
            let s = self.session_mut(d).expect("live session");
            s.registered = false;
            if let Some(o) = s.origin.take() {
                self.unbind_origin(d, &o);
            }
        }
        false
    }

    /// Request timer of link `l`: answer 4008 for every request past its deadline, re-arm for the
    /// next one.
    pub(crate) fn requests_timeout(&mut self, io: &mut impl Io, now: Instant, l: LinkId) {
        let Some(link) = self.link_mut(l) else { return };
        link.timer_at = None;
        let expired: Vec<CompactString> = link
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        if let Some(next) = link
            .pending
            .values()
            .map(|p| p.deadline)
            .filter(|&t| t > now)
            .min()
        {
            link.timer_at = Some(next);
            io.set_timer(next, timer(T_REQUESTS, l.index, l.generation));
        }
        self.expire_queued(io, now, l);
        for key in expired {
            let Some(p) = self.take_pending(l, &key) else {
                continue;
            };
            let rqi = p.device_rqi.as_deref().unwrap_or(&*key).to_string();
            self.answer_pending(
                io,
                p.device,
                &rqi,
                Rsc::REQUEST_TIMEOUT,
                "no response from the CSE within the request timeout",
            );
            self.close_if_drained(io, now, p.device);
        }
        self.pump(io, now, l);
        if let Some(link) = self.link_mut(l) {
            // Idle since its last request: no capacity kept (memory per idle device).
            if link.pending.is_empty() {
                link.pending = crate::link::PendingTable::default();
            }
            if link.waiting.is_empty() {
                link.waiting = VecDeque::new();
            }
        }
    }

    /// Answer 4008 for queued requests of the link's waiting devices that are past their deadline,
    /// and keep the timer armed for the next queued deadline.
    fn expire_queued(&mut self, io: &mut impl Io, now: Instant, l: LinkId) {
        let waiting: Vec<DeviceId> = self
            .link(l)
            .map(|k| k.waiting.iter().copied().collect())
            .unwrap_or_default();
        let mut next: Option<Instant> = None;
        for d in waiting {
            let Some(s) = self.session_mut(d) else {
                continue;
            };
            let expired = s.queue.split_off_where(|q| q.meta.queued_until <= now);
            if let Some(first) = s.queue.iter().map(|q| q.meta.queued_until).min() {
                next = Some(next.map_or(first, |n| n.min(first)));
            }
            for q in expired {
                let why = "no upstream link within the request timeout";
                self.answer_queued(io, d, &q.meta, Rsc::REQUEST_TIMEOUT, why);
            }
        }
        if let (Some(at), Some(link)) = (next, self.link_mut(l))
            && link.timer_at.is_none_or(|t| at < t)
        {
            link.timer_at = Some(at);
            io.set_timer(at, timer(T_REQUESTS, l.index, l.generation));
        }
    }

    fn answer_pending(&mut self, io: &mut impl Io, d: DeviceId, rqi: &str, rsc: Rsc, why: &str) {
        if let Some(s) = self.session_mut(d) {
            s.in_flight = s.in_flight.saturating_sub(1);
            self.reply_error(io, d, error(rsc, why, rqi));
        }
    }

    /// The link failed: answer everything in flight on it with `rsc` (never re-sent: requests are
    /// not idempotent) and, with `queued`, everything waiting for it too.
    pub(crate) fn fail_link_requests(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        l: LinkId,
        rsc: Rsc,
        why: &str,
        queued: bool,
    ) {
        let Some(link) = self.link_mut(l) else { return };
        let pending: Vec<(CompactString, Pending)> = link.pending.drain().collect();
        link.pending = crate::link::PendingTable::default();
        link.timer_at = None;
        let waiting: Vec<DeviceId> = if queued {
            link.waiting.drain(..).collect()
        } else {
            Vec::new()
        };
        for (key, p) in pending {
            let rqi = p.device_rqi.as_deref().unwrap_or(&*key).to_string();
            self.answer_pending(io, p.device, &rqi, rsc, why);
        }
        for d in waiting {
            let Some(s) = self.session_mut(d) else {
                continue;
            };
            s.waiting = false;
            let queue = s.queue.take();
            for q in queue {
                self.answer_queued(io, d, &q.meta, rsc, why);
            }
        }
        for (index, generation) in self.devices.ids() {
            self.close_if_drained(io, now, DeviceId { index, generation });
        }
    }

    /// A request of the CSE (NOTIFY, verification) that arrived on `came_on` (a link, or a
    /// connection to the notify listener): to the device it targets (a passthrough link's own
    /// device, or by `to`), held if that device is away, or answered 5103 (TS-0004: target not
    /// reachable).
    pub(crate) fn cse_request(
        &mut self,
        io: &mut impl Io,
        came_on: Peer,
        bytes: &[u8],
        view: &RoutingView<'_>,
        format: Format,
        text: bool,
    ) {
        if let Some(op) = view.op {
            self.counters.request(1, op as usize - 1);
        }
        let back = Back {
            core: self.core,
            peer: came_on,
        };
        let (owner, orphan_of) = match came_on {
            Peer::Link(l) => self.link(l).map_or((None, None), |k| {
                (k.owner, k.orphan_origin().map(Box::<str>::from))
            }),
            _ => (None, None),
        };
        if let Some(d) = owner.filter(|&d| self.session(d).is_some_and(Session::is_open)) {
            // Owed like any other: if the device leaves before it answers, the CSE is answered
            // 5103 on this link (which now outlives the device, for holding).
            let rqi = view.rqi.as_deref().unwrap_or_default();
            self.deliver_to_device(io, d, back, true, bytes, format, text, rqi);
            return;
        }
        // A passthrough link kept for a device that left carries requests for that device only.
        let to = orphan_of
            .as_deref()
            .unwrap_or_else(|| view.to.as_deref().unwrap_or_default());
        let req = CseRequest {
            back,
            bytes,
            view,
            format,
            text,
        };
        self.route_cse_request(io, to, req, true);
    }

    /// Place a request of the CSE for `to`: its live session here; held behind what is on its
    /// way from another core; posted to the core with its session or holding for it (once:
    /// `may_post`); held here while it is away; else answered 5103.
    pub(crate) fn route_cse_request(
        &mut self,
        io: &mut impl Io,
        to: &str,
        req: CseRequest<'_>,
        may_post: bool,
    ) {
        let rqi = req.view.rqi.as_deref().unwrap_or_default();
        let keys = target_keys(to);
        let live = keys.iter().find_map(|k| self.directory.holder(k));
        let away = || {
            keys.iter()
                .find_map(|k| self.directory.away(k).map(|c| (*k, c)))
        };
        let (core, hold_as) = match (live, away()) {
            (Some(h), _) if h.core == self.core => {
                let d = h.device;
                match self.session(d) {
                    Some(s) if s.is_open() && !s.awaiting_held => {
                        self.deliver_to_device(
                            io, d, req.back, true, req.bytes, req.format, req.text, rqi,
                        );
                        return;
                    }
                    Some(s) if s.awaiting_held => (self.core, s.origin.clone()),
                    _ => (self.core, None),
                }
            }
            (Some(h), _) => (h.core, None),
            (None, Some((key, core))) => (core, Some(key.into())),
            (None, None) => (self.core, None),
        };
        if core == self.core {
            match hold_as {
                Some(origin) => self.hold_request(io, &origin, req),
                None => self.answer_unreachable(io, req.back, rqi, req.format),
            }
            return;
        }
        if may_post {
            let env = Envelope::Deliver {
                back: req.back,
                to: to.into(),
                bytes: req.bytes.to_vec(),
                format: req.format,
            };
            if io.post(core, env) {
                return;
            }
        }
        self.answer_unreachable(io, req.back, rqi, req.format);
    }

    /// Give a request of the CSE to device `d` in its serialization; `owe`: remember where the
    /// answer goes (a shared link or the notify listener; a passthrough link is the device's own).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn deliver_to_device(
        &mut self,
        io: &mut impl Io,
        d: DeviceId,
        back: Back,
        owe: bool,
        bytes: &[u8],
        format: Format,
        text: bool,
        rqi: &str,
    ) {
        let Some(s) = self.session_mut(d) else { return };
        let evicted = if owe { s.owe(rqi, back) } else { None };
        let Some(dev_format) = s.format() else { return };
        if let Some((old, old_back)) = evicted {
            // The device answers too slowly: the oldest request it owes is answered for it.
            self.answer_unreachable(io, old_back, &old, Format::Json);
        }
        if dev_format == format {
            self.send_raw_to_device(io, d, bytes, text);
            return;
        }
        match m2m_primitive::decode(format, bytes) {
            Ok(p) => self.send_to_device(io, d, &p),
            Err(e) => {
                tracing::warn!(device = d.index, error = %e, "undecodable request from the CSE")
            }
        }
    }

    /// Answer the CSE's request `rqi` with 5103: its target has no session at this edge.
    pub(crate) fn answer_unreachable(
        &mut self,
        io: &mut impl Io,
        back: Back,
        rqi: &str,
        format: Format,
    ) {
        let why = "the target is not connected to the edge";
        self.answer_cse(io, back, rqi, format, Rsc::TARGET_NOT_REACHABLE, why);
    }

    /// The edge's own answer `rsc` to the CSE's request `rqi` (with `why` as `m2m:dbg`).
    pub(crate) fn answer_cse(
        &mut self,
        io: &mut impl Io,
        back: Back,
        rqi: &str,
        format: Format,
        rsc: Rsc,
        why: &str,
    ) {
        self.counters.answer(rsc.0);
        let rsp = Primitive::Response(error(rsc, why, rqi).to_response(&self.s.rvi));
        if let Ok(bytes) = m2m_primitive::encode(&rsp, format) {
            let body = Body {
                bytes: &bytes,
                format,
                wrapped: false,
            };
            self.send_answer(io, back, body);
        }
    }

    /// An answer to a request of the CSE, to the connection the request came on.
    pub(crate) fn send_answer(&mut self, io: &mut impl Io, back: Back, body: Body<'_>) {
        if back.core != self.core {
            match transcode(body, body.format) {
                Ok(bytes) => {
                    let env = Envelope::Answer {
                        to: back.peer,
                        bytes: bytes.into_owned(),
                        format: body.format,
                    };
                    if !io.post(back.core, env) {
                        tracing::warn!(
                            core = back.core,
                            "mailbox full: an answer to the CSE dropped"
                        );
                    }
                }
                Err(e) => tracing::debug!(error = %e, "undeliverable answer to the CSE"),
            }
            return;
        }
        match back.peer {
            Peer::Link(l) => self.send_on_link(io, l, body),
            Peer::Notify(n) => self.send_on_notify(io, n, body),
            Peer::Device(_) | Peer::Tunnel(_) => {}
        }
    }

    /// A message from another core's engine.
    pub fn message(&mut self, io: &mut impl Io, now: Instant, env: Envelope) {
        self.tick(now);
        match env {
            Envelope::Deliver {
                back,
                to,
                bytes,
                format,
            } => {
                let Ok(view) = RoutingView::parse(format, &bytes) else {
                    return;
                };
                let req = CseRequest {
                    back,
                    bytes: &bytes,
                    view: &view,
                    format,
                    text: false,
                };
                self.route_cse_request(io, &to, req, false);
            }
            Envelope::TakeOver { origin, device } => self.taken_over(io, &origin, device),
            Envelope::Answer { to, bytes, format } => {
                let back = Back {
                    core: self.core,
                    peer: to,
                };
                let body = Body {
                    bytes: &bytes,
                    format,
                    wrapped: false,
                };
                self.send_answer(io, back, body);
            }
            Envelope::Fetch {
                origin,
                core,
                device,
            } => self.send_held_to(io, origin, core, device),
            Envelope::Held {
                origin,
                device,
                items,
                link_retired,
            } => self.held_arrived(io, origin, device, items, link_retired),
        }
    }

    /// Send a primitive from a device up link `l` in the link's serialization.
    pub(crate) fn send_on_link(&mut self, io: &mut impl Io, l: LinkId, body: Body<'_>) {
        let Some(link_format) = self.link(l).and_then(|k| k.format()) else {
            return;
        };
        match transcode(body, link_format) {
            Ok(up) => self.send_frame(io, l, &up),
            Err(e) => tracing::debug!(link = l.index, error = %e, "undeliverable device answer"),
        }
    }
}

/// Whether `to` names the registree `origin` itself — a direct child of the CSEBase, as an AE or
/// remoteCSE always is, by its id or under the CSEBase: `Cx` or `cse-in/Cx` (CSE-relative),
/// `/id-in/Cx` or `/id-in/cse-in/Cx` (SP-relative), `//sp/id-in/Cx` or `//sp/id-in/cse-in/Cx`
/// (absolute). A deeper resource that happens to end in the same name (`cse-in/Cother/Cx`) is not
/// its deregistration.
pub(crate) fn names_registree(to: &str, origin: &str) -> bool {
    let origin = origin.trim_start_matches('/');
    let (depth, path) = match (to.strip_prefix("//"), to.strip_prefix('/')) {
        (Some(rest), _) => (4, rest),
        (None, Some(rest)) => (3, rest),
        (None, None) => (2, to),
    };
    let segments = path.split('/').count();
    path.rsplit('/').next() == Some(origin) && (segments == depth || segments == depth - 1)
}

/// The originator a request's `to` may name: the whole of it, or its last path segment.
fn target_keys(to: &str) -> [&str; 2] {
    let to = to.trim_end_matches('/');
    [to, to.rsplit('/').next().unwrap_or(to)]
}

/// `body` in `to`'s serialization (borrowed when nothing changes; unwrapped when it came wrapped).
pub(crate) fn transcode(body: Body<'_>, to: Format) -> Result<Cow<'_, [u8]>, PrimitiveError> {
    if body.format == to && !body.wrapped {
        return Ok(Cow::Borrowed(body.bytes));
    }
    m2m_primitive::decode(body.format, body.bytes)
        .and_then(|p| m2m_primitive::encode(&p, to))
        .map(Cow::Owned)
}

/// The `aei` (AE) or `csi` (remoteCSE) in a registration's 2001 response.
fn registered_id(bytes: &[u8], format: Format) -> Option<String> {
    let p = m2m_primitive::decode(format, bytes).ok()?;
    let pc = p.pc()?.as_object()?;
    let (resource, key) = match pc.get("m2m:ae") {
        Some(ae) => (ae, "aei"),
        None => (pc.get("m2m:csr")?, "csi"),
    };
    resource
        .as_object()?
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
}
