//! The upstream side: WebSocket links to the CSE. In passthrough mode a link belongs to one device
//! session and carries `X-M2M-Origin` once the device's id is known (a registration relayed on a
//! link without it is followed by a relink with it: ACME only lets such a link carry
//! registrations). In multiplex mode each core keeps `upstream_links` links opened with the edge's
//! own originator. Set-up (TCP, the proxy's CONNECT answer, TLS, the WebSocket handshake) is timed as
//! one phase; a lost or failed link answers what was in flight with 5103 and is re-opened after a
//! back-off while devices stay connected.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use m2m_primitive::{Format, RoutingView, Rsc};
use m2m_ws::handshake::client::{ClientHandshake, ClientOptions};
use m2m_ws::{OpCode, Receiver, Role, Sender, SenderConfig, endpoint};

use crate::counters::{LIMIT_UPSTREAM_SETUP, LINK_CONNECTING, LINK_FAILED, LINK_LOST, LINK_OPEN};
use crate::engine::{Engine, T_LINK_SETUP, T_RELINK, timer};
use crate::message::{InputSpan, Step, next_frame};
use crate::relay::Pending;
use crate::settings::{OriginHeader, format_of};
use crate::{DeviceId, Io, LinkId, Peer, Target};

/// Requests in flight on a link by their `rqi` on it.
pub(crate) type PendingTable = rustc_hash::FxHashMap<compact_str::CompactString, Pending>;

/// A link's connection state.
#[derive(Debug)]
pub(crate) enum LinkState {
    /// No connection (before the first, or waiting to re-open).
    Down,
    Connecting,
    /// Through an HTTP proxy: CONNECT sent, waiting for its answer.
    Proxying,
    Handshaking(Box<ClientHandshake>),
    Open {
        rx: Receiver,
        tx: Sender,
        format: Format,
    },
}

/// One upstream link.
#[derive(Debug)]
pub(crate) struct Link {
    pub state: LinkState,
    /// Passthrough: the device session it belongs to; multiplex: none (shared).
    pub owner: Option<DeviceId>,
    /// Opened with `X-M2M-Origin`.
    pub has_origin: bool,
    /// Requests in flight by the `rqi` they carry on this link. FxHash, not SipHash: two hashes per
    /// relayed request, on short keys; the table is bounded by `max_in_flight`, so colliding keys
    /// chosen by devices cost at most a scan of that many entries.
    pub pending: PendingTable,
    /// Devices with queued requests, served in turn as the link has room.
    pub waiting: VecDeque<DeviceId>,
    /// When the request timer is armed for.
    pub timer_at: Option<Instant>,
    /// Set-up must finish by then.
    pub setup_deadline: Option<Instant>,
    /// Re-open at this time.
    pub relink_at: Option<Instant>,
    /// Passthrough: kept open for a device that left (its originator), until then.
    pub orphan: Option<Box<(Box<str>, Instant)>>,
    /// When the last ping was sent and not yet answered.
    pub ping_sent: Option<Instant>,
    /// When the CSE last sent anything on it (pings go to quiet links only).
    pub last_input: Instant,
}

impl Link {
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, LinkState::Open { .. })
    }

    pub(crate) fn format(&self) -> Option<Format> {
        match self.state {
            LinkState::Open { format, .. } => Some(format),
            _ => None,
        }
    }

    /// The originator of the device that left, if this is a link kept for it.
    pub(crate) fn orphan_origin(&self) -> Option<&str> {
        self.orphan.as_ref().map(|o| &*o.0)
    }
}

impl Engine {
    pub(crate) fn new_link(&mut self, owner: Option<DeviceId>) -> LinkId {
        let (index, generation) = self.links.insert(Link {
            state: LinkState::Down,
            owner,
            has_origin: false,
            pending: PendingTable::default(),
            waiting: VecDeque::new(),
            timer_at: None,
            setup_deadline: None,
            relink_at: None,
            orphan: None,
            ping_sent: None,
            last_input: self.clock,
        });
        LinkId { index, generation }
    }

    /// Forget a passthrough link whose device is gone (what it had in flight has no one to answer).
    pub(crate) fn remove_link(&mut self, io: &mut impl Io, l: LinkId) {
        self.forget_orphan(l);
        if let Some(link) = self.links.remove(l.index, l.generation) {
            if link.is_open() {
                self.counters.upstream_links.fetch_sub(1, Ordering::Relaxed);
            }
            if !matches!(link.state, LinkState::Down) {
                io.abort(Peer::Link(l));
            }
        }
    }

    /// Close an open link with 1000 and `why`, and forget it (a passthrough link kept for a device
    /// that did not come back).
    pub(crate) fn retire_link(&mut self, io: &mut impl Io, l: LinkId, why: &str) {
        if let Some(LinkState::Open { tx, .. }) = self.link_mut(l).map(|k| &mut k.state) {
            io.send_with(Peer::Link(l), |out| {
                tx.close(m2m_ws::CloseCode::NORMAL, why, out)
            });
            io.close(Peer::Link(l));
            self.counters.upstream_links.fetch_sub(1, Ordering::Relaxed);
        } else if self
            .link(l)
            .is_some_and(|k| !matches!(k.state, LinkState::Down))
        {
            io.abort(Peer::Link(l));
        }
        self.forget_orphan(l);
        self.links.remove(l.index, l.generation);
    }

    /// Connect a link that is down.
    pub(crate) fn open_link(&mut self, io: &mut impl Io, now: Instant, l: LinkId) {
        if !self
            .link(l)
            .is_some_and(|k| matches!(k.state, LinkState::Down))
        {
            return;
        }
        match io.connect(Peer::Link(l), Target::Upstream) {
            Ok(()) => {
                self.counters.link(LINK_CONNECTING);
                let deadline = now + self.s.connect_timeout;
                let link = self.link_mut(l).expect("checked");
                link.state = LinkState::Connecting;
                link.setup_deadline = Some(deadline);
                io.set_timer(deadline, timer(T_LINK_SETUP, l.index, l.generation));
            }
            Err(e) => {
                self.counters.link(LINK_FAILED);
                if let Some(more) = self.link_log.allow(now) {
                    tracing::warn!(link = l.index, error = %e, more_since_last_line = more, "cannot open an upstream socket");
                }
                self.fail_and_retry(io, now, l, "upstream CSE not reachable");
            }
        }
    }

    /// The link's TCP connection is up, or failed.
    pub fn link_connected(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        l: LinkId,
        result: Result<(), String>,
    ) {
        if let Err(why) = result {
            self.link_failed(io, now, l, &format!("connect failed: {why}"));
            return;
        }
        let proxy = self.s.upstream_proxy;
        let Some(link) = self.link_mut(l) else { return };
        if !matches!(link.state, LinkState::Connecting) {
            return;
        }
        if proxy {
            link.state = LinkState::Proxying;
            let request = m2m_ws::handshake::connect::connect_request(
                &self.s.upstream_host_only,
                self.s.upstream_port,
                &[],
            );
            io.send(Peer::Link(l), &request);
            return;
        }
        self.link_handshake(io, l);
    }

    /// Send the WebSocket upgrade on a connected (and, through a proxy, tunnelled) link.
    fn link_handshake(&mut self, io: &mut impl Io, l: LinkId) {
        let Some(link) = self.link(l) else { return };
        let owner = link.owner;
        let mut protocols = self.s.upstream_protocols.clone();
        let origin = match owner {
            // Passthrough: offer the device's own serialization first when the CSE takes it, so
            // that nothing needs transcoding.
            Some(d) => {
                let s = self.session(d);
                if let Some(format) = s.and_then(|s| s.format())
                    && let Some(i) = protocols.iter().position(|p| format_of(p) == format)
                {
                    let p = protocols.remove(i);
                    protocols.insert(0, p);
                }
                let never = self.s.origin_header == OriginHeader::Never;
                s.and_then(|s| s.origin.clone())
                    .filter(|_| !never)
                    .map(String::from)
            }
            None => Some(self.shared_origin(l)),
        };
        let (hs, request) = ClientHandshake::new(ClientOptions {
            host: self.s.upstream_host.clone(),
            path: self.s.upstream_path.clone(),
            protocols,
            deflate: None,
            extra_headers: origin
                .iter()
                .map(|o| ("X-M2M-Origin".to_string(), o.clone()))
                .collect(),
        });
        let link = self.link_mut(l).expect("checked");
        link.has_origin = origin.is_some();
        link.state = LinkState::Handshaking(Box::new(hs));
        io.send(Peer::Link(l), &request);
    }

    /// Bytes from the CSE (or its proxy) on link `l`; returns how many were consumed.
    pub fn link_data(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        l: LinkId,
        data: &mut [u8],
    ) -> usize {
        self.tick(now);
        let Some(link) = self.link_mut(l) else {
            return data.len();
        };
        link.last_input = now;
        let link = self.link(l).expect("checked");
        match &link.state {
            LinkState::Proxying => self.proxy_answer(io, now, l, data),
            LinkState::Handshaking(hs) => match hs.read_response(data, self.s.head) {
                Ok(None) => 0,
                Ok(Some((accepted, len))) => {
                    let format = format_of(accepted.protocol.as_deref().unwrap_or("oneM2M.json"));
                    let (rx, tx) = endpoint(
                        Role::Client,
                        accepted.deflate,
                        self.s.frames,
                        SenderConfig::default(),
                        6,
                    );
                    self.link_open(io, now, l, LinkState::Open { rx, tx, format });
                    len + self.link_frames(io, now, l, &mut data[len..])
                }
                Err(e) => {
                    // Said here with the reason; link_failed's own line falls in the same interval.
                    if let Some(more) = self.link_log.allow(now) {
                        tracing::warn!(link = l.index, error = %e, more_since_last_line = more, "upstream handshake refused");
                    }
                    self.link_failed(io, now, l, "upstream CSE refused the WebSocket handshake");
                    data.len()
                }
            },
            LinkState::Open { .. } => self.link_frames(io, now, l, data),
            LinkState::Down | LinkState::Connecting => data.len(),
        }
    }

    fn proxy_answer(&mut self, io: &mut impl Io, now: Instant, l: LinkId, data: &[u8]) -> usize {
        match m2m_ws::handshake::connect::parse_connect_response(data, self.s.head) {
            Ok(None) => return 0,
            Ok(Some((200, len))) => {
                if self.s.upstream_tls
                    && let Err(e) = io.start_tls(l)
                {
                    // Never on to the upgrade in clear text (it carries X-M2M-Origin).
                    if let Some(more) = self.link_log.allow(now) {
                        tracing::warn!(link = l.index, error = %e, more_since_last_line = more, "TLS through the proxy failed");
                    }
                    self.link_failed(io, now, l, "TLS through the upstream proxy failed");
                    return data.len();
                }
                self.link_handshake(io, l);
                return len;
            }
            Ok(Some((status, _))) => {
                if let Some(more) = self.link_log.allow(now) {
                    tracing::warn!(
                        link = l.index,
                        status,
                        more_since_last_line = more,
                        "upstream proxy refused CONNECT"
                    );
                }
            }
            Err(e) => {
                if let Some(more) = self.link_log.allow(now) {
                    tracing::warn!(link = l.index, error = %e, more_since_last_line = more, "bad answer from the upstream proxy");
                }
            }
        }
        self.link_failed(io, now, l, "upstream proxy refused the tunnel");
        data.len()
    }

    fn link_open(&mut self, io: &mut impl Io, now: Instant, l: LinkId, state: LinkState) {
        let link = self.link_mut(l).expect("live link");
        link.state = state;
        link.setup_deadline = None;
        self.counters.upstream_links.fetch_add(1, Ordering::Relaxed);
        self.counters.link(LINK_OPEN);
        tracing::debug!(link = l.index, "upstream link open");
        self.arm_ping_sweep(io, now);
        self.pump(io, now, l);
    }

    fn link_frames(&mut self, io: &mut impl Io, now: Instant, l: LinkId, data: &mut [u8]) -> usize {
        let mut at = 0;
        let input = InputSpan::of(data);
        loop {
            let Some(LinkState::Open { rx, tx, format }) = self.link_mut(l).map(|k| &mut k.state)
            else {
                return data.len();
            };
            let format = *format;
            match next_frame(io, Peer::Link(l), rx, tx, data, &mut at, input) {
                Step::Need(used) => return used,
                Step::Control => {}
                Step::Pong => self.link_pong(l),
                Step::Message(m) => self.link_message(io, now, l, m.bytes(data), m.text, format),
                Step::Close { code, why, .. } => {
                    io.send_with(Peer::Link(l), |out| tx.close(code, &why, out));
                    io.close(Peer::Link(l));
                    self.link_lost(io, now, l, "closed by the CSE");
                    return data.len();
                }
            }
        }
    }

    fn link_message(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        l: LinkId,
        bytes: &[u8],
        text: bool,
        format: Format,
    ) {
        let view = match RoutingView::parse(format, bytes) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(link = l.index, error = %e, "undecodable primitive from the CSE");
                return;
            }
        };
        if view.op.is_some() {
            self.cse_request(io, Peer::Link(l), bytes, &view, format, text);
        } else {
            self.link_response(io, now, l, bytes, &view, format, text);
        }
    }

    /// Send one primitive (already in the link's serialization) as one frame.
    pub(crate) fn send_frame(&mut self, io: &mut impl Io, l: LinkId, bytes: &[u8]) {
        let Some(LinkState::Open { tx, format, .. }) = self.link_mut(l).map(|k| &mut k.state)
        else {
            return;
        };
        // Bytes for a text link are JSON or XML that passed the routing view or came from our encoder.
        let opcode = if *format == Format::Cbor {
            OpCode::Binary
        } else {
            OpCode::Text
        };
        io.send_with(Peer::Link(l), |out| tx.message(opcode, bytes, out));
    }

    /// The CSE closed the link or the connection broke.
    pub fn link_closed(&mut self, io: &mut impl Io, now: Instant, l: LinkId, why: &str) {
        self.tick(now);
        self.link_lost(io, now, l, why);
    }

    fn link_lost(&mut self, io: &mut impl Io, now: Instant, l: LinkId, why: &str) {
        let Some(link) = self.link_mut(l) else { return };
        let was_open = link.is_open();
        if matches!(link.state, LinkState::Down) {
            return;
        }
        if !was_open {
            // Closed before it was set up (a refused or reset connect, a CSE that hangs up on the
            // handshake): a set-up failure, counted as one.
            link.setup_deadline = None;
            link.state = LinkState::Down;
            if let Some(more) = self.link_log.allow(now) {
                tracing::warn!(
                    link = l.index,
                    reason = why,
                    more_since_last_line = more,
                    "upstream link failed before it opened"
                );
            }
            self.counters.link(LINK_FAILED);
            self.fail_and_retry(io, now, l, "upstream CSE not reachable");
            return;
        }
        link.state = LinkState::Down;
        link.has_origin = false;
        if let Some(more) = self.link_log.allow(now) {
            tracing::info!(
                link = l.index,
                reason = why,
                more_since_last_line = more,
                "upstream link lost"
            );
        }
        self.counters.link(LINK_LOST);
        self.counters.error(3);
        self.counters.upstream_links.fetch_sub(1, Ordering::Relaxed);
        self.fail_and_retry(io, now, l, "upstream CSE not reachable");
    }

    /// A link that could not be set up: close it, answer everything waiting with 5103, retry later.
    fn link_failed(&mut self, io: &mut impl Io, now: Instant, l: LinkId, why: &str) {
        let Some(link) = self.link_mut(l) else { return };
        if !matches!(link.state, LinkState::Down) {
            io.abort(Peer::Link(l));
        }
        link.state = LinkState::Down;
        link.setup_deadline = None;
        if let Some(more) = self.link_log.allow(now) {
            tracing::warn!(
                link = l.index,
                reason = why,
                more_since_last_line = more,
                "upstream link failed"
            );
        }
        self.counters.link(LINK_FAILED);
        self.fail_and_retry(io, now, l, why);
    }

    /// The link is down: answer everything in flight on it or waiting for it with 5103, and
    /// re-open it after the back-off.
    fn fail_and_retry(&mut self, io: &mut impl Io, now: Instant, l: LinkId, why: &str) {
        self.fail_link_requests(io, now, l, Rsc::TARGET_NOT_REACHABLE, why, true);
        if self.link(l).is_some_and(|k| k.orphan.is_some()) {
            // Kept for a device that left: nobody needs it re-opened.
            self.forget_orphan(l);
            self.links.remove(l.index, l.generation);
            return;
        }
        self.schedule_relink(io, now, l);
    }

    /// The link stopped answering pings: fail it (requests in flight 5103) and re-open it.
    pub(crate) fn link_dead(&mut self, io: &mut impl Io, now: Instant, l: LinkId) {
        if self.link(l).is_some_and(|k| k.is_open()) {
            self.counters.upstream_links.fetch_sub(1, Ordering::Relaxed);
        }
        self.link_failed(io, now, l, "no pong from the CSE within the ping timeout");
    }

    pub(crate) fn link_setup_timeout(&mut self, io: &mut impl Io, now: Instant, l: LinkId) {
        let due = self.link(l).is_some_and(|k| {
            !k.is_open()
                && !matches!(k.state, LinkState::Down)
                && k.setup_deadline.is_some_and(|t| now >= t)
        });
        if due {
            self.counters.limit(LIMIT_UPSTREAM_SETUP);
            self.link_failed(io, now, l, "upstream link set-up timed out");
        }
    }

    fn schedule_relink(&mut self, io: &mut impl Io, now: Instant, l: LinkId) {
        let owner_open = match self.link(l).map(|k| k.owner) {
            Some(Some(d)) => self.session(d).is_some_and(|s| s.is_open()),
            Some(None) => true,
            None => false,
        };
        let at = now + self.s.relink_backoff;
        if let Some(link) = self.link_mut(l)
            && owner_open
            && link.relink_at.is_none()
        {
            link.relink_at = Some(at);
            io.set_timer(at, timer(T_RELINK, l.index, l.generation));
        }
    }

    pub(crate) fn relink_due(&mut self, io: &mut impl Io, now: Instant, l: LinkId) {
        let Some(link) = self.link_mut(l) else { return };
        if link.relink_at.is_none_or(|t| now < t) {
            return;
        }
        link.relink_at = None;
        self.open_link(io, now, l);
    }

    /// Passthrough: replace the device's link by one that carries its origin (queued requests wait
    /// for the new link; anything in flight on the old one is answered 5103).
    pub(crate) fn relink_with_origin(&mut self, io: &mut impl Io, now: Instant, d: DeviceId) {
        if self.multiplex() || self.s.origin_header == OriginHeader::Never {
            return;
        }
        let Some(l) = self.session(d).and_then(|s| s.link) else {
            return;
        };
        if self.link(l).is_none_or(|k| k.has_origin) {
            return;
        }
        if self
            .orphan_for(d)
            .is_some_and(|k| self.link(k).is_some_and(Link::is_open))
        {
            // The link kept for this device's previous session carries its origin already.
            let why = "upstream link replaced";
            self.fail_link_requests(io, now, l, Rsc::TARGET_NOT_REACHABLE, why, false);
            self.remove_link(io, l);
            let adopted = self.adopt_orphan(d);
            let Some(s) = self.session_mut(d) else { return };
            s.link = adopted;
            s.waiting = false;
            if let Some(k) = adopted
                && !self.session(d).is_some_and(|s| s.queue.is_empty())
            {
                if let Some(s) = self.session_mut(d) {
                    s.waiting = true;
                }
                if let Some(link) = self.link_mut(k) {
                    link.waiting.push_back(d);
                }
                self.pump(io, now, k);
            }
            return;
        }
        let Some(link) = self.link_mut(l) else { return };
        let was_open = link.is_open();
        if was_open {
            io.close(Peer::Link(l));
        } else if !matches!(link.state, LinkState::Down) {
            io.abort(Peer::Link(l));
        }
        link.state = LinkState::Down;
        link.relink_at = None;
        if was_open {
            self.counters.upstream_links.fetch_sub(1, Ordering::Relaxed);
        }
        self.fail_link_requests(
            io,
            now,
            l,
            Rsc::TARGET_NOT_REACHABLE,
            "upstream link replaced",
            false,
        );
        self.open_passthrough_link(io, now, d, l);
    }

    /// Open device `d`'s own link, unless the requests held for it on another core are on their
    /// way: that core closes the link it kept for the device first (ACME drops the association of
    /// an originator's new connection when its older one closes after it), and the link opens when
    /// they arrive (`held_arrived`). Requests wait in the device's queue meanwhile.
    pub(crate) fn open_passthrough_link(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        d: DeviceId,
        l: LinkId,
    ) {
        if self.session(d).is_some_and(|s| s.awaiting_held) {
            return;
        }
        self.open_link(io, now, l);
    }
}
