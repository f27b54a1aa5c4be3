//! The engine's side of holding (the store is in `hold`): what the CSE sends for a device that is
//! away is kept and answered 1000 ACCEPTED; the device gets it, in order and before anything newer,
//! when a session proves its originator again (handshake `X-M2M-Origin`, its first request's `fr`,
//! or its certificate under `--bind-identity`), on whichever core that session lands.
//!
//! Why 1000 ACCEPTED and not the device's own answer later: TS-0004 gives 1000 for a request the
//! receiver has taken responsibility for without a result yet, which is what a transit that stores
//! and forwards does (CMDH buffering, TS-0004 Annex H). Holding the CSE's request open for minutes
//! is not an option: a CSE waits seconds for an answer (ACME: 10 s, then counts a 4008), and a
//! device that sleeps longer would turn every NOTIFY into a timeout at the CSE. The device's own
//! answer to a held request, when it comes, is taken and dropped (the CSE's request was answered).
//!
//! Who is away: a session that bound an originator and ended without deregistering. The core it
//! was on keeps that originator's requests (so all of them are in one place, in arrival order) for
//! `--hold-ttl` after it left, and as long as something is held for it. A device that comes back
//! on another core has them posted over (`Envelope::Fetch` / `Envelope::Held`); what the CSE sends
//! meanwhile is held behind them. In passthrough mode the CSE reaches a device only over its own
//! connection, so a device's link stays open ("orphaned") for the hold time after it left.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use m2m_primitive::{Format, RoutingView, Rsc};

use crate::engine::{Engine, T_FETCH, T_HOLD, T_ORPHAN, T_RELINK, timer};
use crate::hold::HeldPrimitive;
use crate::relay::CseRequest;
use crate::{Back, DeviceId, Envelope, Io, LinkId, Peer};

/// How long a session waits for the requests held for it on another core.
const FETCH_WAIT: Duration = Duration::from_secs(2);

/// How long after another core closed the link it kept for a returning device that device's new
/// link opens (passthrough; see `resume_after_fetch`). Requests wait in the device's queue.
pub(crate) const LINK_HANDOVER_GRACE: Duration = Duration::from_millis(250);

/// Log held primitives dropped by a bound at most this often.
const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

impl Engine {
    /// Hold the CSE's request `req` for `origin`, which is away, and answer it 1000 (4008 when its
    /// `rqet` has passed). Its `rqet` becomes absolute, so the device sees its remaining time.
    pub(crate) fn hold_request(&mut self, io: &mut impl Io, origin: &str, req: CseRequest<'_>) {
        let now = self.clock;
        let rqi = req.view.rqi.as_deref().unwrap_or_default();
        let wall = m2m_primitive::time::now_millis();
        let left_ms = match req.view.rqet {
            Some(t) => t.resolve(wall).saturating_sub(wall),
            None => self.s.hold.ttl.as_millis() as i64,
        };
        if left_ms <= 0 {
            let why = "request expired (rqet in the past)";
            self.answer_cse(io, req.back, rqi, req.format, Rsc::REQUEST_TIMEOUT, why);
            return;
        }
        let expires = now + Duration::from_millis(left_ms as u64);
        let bytes = match req.view.rqet {
            Some(m2m_primitive::time::AbsRelTime::Absolute(_)) => None,
            _ => with_absolute_rqet(req.bytes, req.format, wall + left_ms),
        }
        .unwrap_or_else(|| req.bytes.to_vec());
        let held = HeldPrimitive {
            bytes,
            format: req.format,
            expires,
        };
        let dropped = self.hold.hold(origin, held).len();
        self.note_dropped(now, dropped);
        self.directory.extend_away(origin, self.core, expires);
        self.arm_hold_timer(io, expires);
        self.update_hold_gauges();
        tracing::debug!(
            origin,
            rqi,
            "request of the CSE held for a device that is away"
        );
        let why = "held by the edge until the target reconnects or the request expires";
        self.answer_cse(io, req.back, rqi, req.format, Rsc::ACCEPTED, why);
    }

    /// Count (and now and then log) held primitives dropped by a bound.
    fn note_dropped(&mut self, now: Instant, dropped: usize) {
        if dropped == 0 {
            return;
        }
        self.counters
            .held_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
        self.hold_drops_unlogged += dropped as u64;
        if self
            .hold_drops_logged_at
            .is_none_or(|t| now >= t + DROP_LOG_EVERY)
        {
            tracing::warn!(
                dropped = self.hold_drops_unlogged,
                "held primitives dropped by the hold bounds (oldest first)"
            );
            self.hold_drops_unlogged = 0;
            self.hold_drops_logged_at = Some(now);
        }
    }

    /// A session just bound `origin`: if its requests were held on another core, ask for them
    /// (what comes meanwhile is held here behind them); then deliver what is held here.
    /// `inherit`: the session this one took over was still waiting for its held requests; this
    /// one waits for them instead (they are passed on to it when they come).
    pub(crate) fn fetch_held(
        &mut self,
        io: &mut impl Io,
        d: DeviceId,
        origin: Box<str>,
        held_on: Option<usize>,
        inherit: bool,
    ) {
        let fetch = held_on.filter(|&c| c != self.core);
        if fetch.is_some() || inherit {
            let posted = fetch.is_none_or(|core| {
                let msg = Envelope::Fetch {
                    origin,
                    core: self.core,
                    device: d,
                };
                io.post(core, msg)
            });
            if posted && let Some(s) = self.session_mut(d) {
                s.awaiting_held = true;
                // The other core answers at once; if it cannot (its mailbox full, shutting down),
                // the session must not wait forever.
                let at = self.clock + FETCH_WAIT;
                io.set_timer(at, timer(T_FETCH, d.index, d.generation));
            }
        }
        self.deliver_held(io, d);
    }

    /// The held requests fetched from another core did not come: go on without them.
    pub(crate) fn fetch_overdue(&mut self, io: &mut impl Io, d: DeviceId) {
        if !self.session(d).is_some_and(|s| s.awaiting_held) {
            return;
        }
        tracing::warn!(
            device = d.index,
            "held requests from another core did not arrive"
        );
        self.resume_after_fetch(io, d, Vec::new(), false);
    }

    /// Session `d` no longer waits: what came from the other core, then what was held here behind
    /// it, then (passthrough) its own link, which waited for the other core's kept link to close.
    /// When that core closed the kept link just now (`link_retired`), the new link opens
    /// [`LINK_HANDOVER_GRACE`] later: ACME drops an originator's association when the handler of
    /// its old connection ends, on a thread of its own and some time after the close, so a new
    /// connection associated before that is forgotten (seen in CI as NOTIFYs that never came).
    fn resume_after_fetch(
        &mut self,
        io: &mut impl Io,
        d: DeviceId,
        items: Vec<HeldPrimitive>,
        link_retired: bool,
    ) {
        if let Some(s) = self.session_mut(d) {
            s.awaiting_held = false;
        }
        self.send_held(io, d, items);
        self.deliver_held(io, d);
        let waiting_link = self.session(d).and_then(|s| s.link).filter(|&l| {
            self.link(l).is_some_and(|k| {
                matches!(k.state, crate::link::LinkState::Down) && k.relink_at.is_none()
            })
        });
        if let Some(l) = waiting_link.filter(|_| !self.multiplex()) {
            let now = self.clock;
            if link_retired {
                let at = now + LINK_HANDOVER_GRACE;
                if let Some(link) = self.link_mut(l) {
                    link.relink_at = Some(at);
                }
                io.set_timer(at, timer(T_RELINK, l.index, l.generation));
            } else {
                self.open_link(io, now, l);
            }
        }
    }

    /// Deliver what is held here for an open session's originator, oldest first.
    pub(crate) fn deliver_held(&mut self, io: &mut impl Io, d: DeviceId) {
        let Some(s) = self.session(d) else { return };
        if !s.is_open() || s.awaiting_held {
            return;
        }
        let Some(origin) = s.origin.clone() else {
            return;
        };
        if !self.hold.holds(&origin) {
            return;
        }
        let items = self.hold.take(&origin);
        self.update_hold_gauges();
        self.send_held(io, d, items);
    }

    /// Send held primitives to session `d` (expired ones are dropped and counted). The device's
    /// answers go nowhere: the CSE was answered when they were held.
    fn send_held(&mut self, io: &mut impl Io, d: DeviceId, items: Vec<HeldPrimitive>) {
        let (mut delivered, mut expired) = (0, 0);
        for p in items {
            if p.expires <= self.clock {
                expired += 1;
                continue;
            }
            let Ok(view) = RoutingView::parse(p.format, &p.bytes) else {
                continue;
            };
            let nowhere = Back {
                core: self.core,
                peer: Peer::Device(d),
            };
            let rqi = view.rqi.as_deref().unwrap_or_default();
            self.deliver_to_device(io, d, nowhere, true, &p.bytes, p.format, false, rqi);
            delivered += 1;
        }
        self.counters
            .held_delivered
            .fetch_add(delivered, Ordering::Relaxed);
        self.counters
            .held_expired
            .fetch_add(expired, Ordering::Relaxed);
        if delivered > 0 {
            tracing::debug!(device = d.index, delivered, "held requests delivered");
        }
    }

    /// Another core's session now holds `origin`: send it what is held here.
    pub(crate) fn send_held_to(
        &mut self,
        io: &mut impl Io,
        origin: Box<str>,
        core: usize,
        device: DeviceId,
    ) {
        // The device is back on another core: the link kept for it here goes first (see
        // `open_passthrough_link`).
        let kept = self.orphans.get(&origin).copied();
        if let Some(l) = kept {
            self.retire_link(io, l, "the device is back on another connection");
        }
        let items = self.hold.take(&origin);
        self.update_hold_gauges();
        let n = items.len();
        let msg = Envelope::Held {
            origin,
            device,
            items,
            link_retired: kept.is_some(),
        };
        if !io.post(core, msg) {
            tracing::warn!(core, n, "mailbox full: held requests lost");
            self.counters
                .held_dropped
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// What another core held for `origin` arrived: to the session that holds the originator now
    /// (the one that asked, or one that took it over meanwhile), then what was held here behind it;
    /// if none holds it, held again here, where it is away now.
    pub(crate) fn held_arrived(
        &mut self,
        io: &mut impl Io,
        origin: Box<str>,
        d: DeviceId,
        items: Vec<HeldPrimitive>,
        link_retired: bool,
    ) {
        // The session the directory names now (a takeover may be on its way to the one that asked).
        let holds = |e: &Self, d: DeviceId| {
            e.session(d)
                .is_some_and(|s| s.is_open() && s.origin.as_deref() == Some(&*origin))
                && e.directory
                    .holder(&origin)
                    .is_some_and(|h| h.core == e.core && h.device == d)
        };
        let here = self
            .directory
            .holder(&origin)
            .filter(|h| h.core == self.core)
            .map(|h| h.device);
        let target = [Some(d), here]
            .into_iter()
            .flatten()
            .find(|&t| holds(self, t));
        if let Some(t) = target {
            self.resume_after_fetch(io, t, items, link_retired);
            return;
        }
        if let Some(h) = self
            .directory
            .holder(&origin)
            .filter(|h| h.core != self.core)
        {
            let n = items.len();
            let msg = Envelope::Held {
                origin,
                device: h.device,
                items,
                link_retired,
            };
            if !io.post(h.core, msg) {
                self.note_dropped(self.clock, n);
            }
            return;
        }
        // Keep arrival order: what came from the other core is older than what is held here.
        let mine = self.hold.take(&origin);
        let mut dropped = 0;
        for p in items.into_iter().chain(mine) {
            self.directory.extend_away(&origin, self.core, p.expires);
            self.arm_hold_timer(io, p.expires);
            dropped += self.hold.hold(&origin, p).len();
        }
        self.note_dropped(self.clock, dropped);
        self.update_hold_gauges();
    }

    /// A session with `origin` ends: remember the device as away (its requests are held here for
    /// the hold time), or forget it when holding is off or the edge is shutting down. Returns
    /// whether it is away.
    pub(crate) fn leave_origin(&mut self, io: &mut impl Io, d: DeviceId, origin: &str) -> bool {
        if !self.s.hold.enabled() || self.draining {
            self.unbind_origin(d, origin);
            return false;
        }
        let until = self.clock + self.s.hold.ttl;
        if !self.directory.release(origin, self.core, d, Some(until)) {
            return false;
        }
        self.away.push(Reverse((until, origin.into())));
        self.arm_hold_timer(io, until);
        true
    }

    fn arm_hold_timer(&mut self, io: &mut impl Io, at: Instant) {
        if self.hold_timer_at.is_none_or(|t| at < t) {
            self.hold_timer_at = Some(at);
            io.set_timer(at, timer(T_HOLD, 0, 0));
        }
    }

    /// The hold timer: drop what expired, forget devices away for longer than the hold time,
    /// re-arm for the next.
    pub(crate) fn hold_due(&mut self, io: &mut impl Io, now: Instant) {
        // A timer armed for a later time before an earlier one replaced it: the chain it belonged
        // to is over (else every earlier arm would leave one more chain behind).
        if self.hold_timer_at.is_some_and(|t| now < t) {
            return;
        }
        self.hold_timer_at = None;
        let expired = self.hold.expire(now).len();
        if expired > 0 {
            tracing::debug!(expired, "held requests expired");
            self.counters
                .held_expired
                .fetch_add(expired as u64, Ordering::Relaxed);
        }
        while let Some(Reverse((at, _))) = self.away.peek()
            && *at <= now
        {
            let Some(Reverse((_, origin))) = self.away.pop() else {
                break;
            };
            if let Some(later) = self.directory.forget_away(&origin, self.core, now) {
                self.away.push(Reverse((later, origin)));
            }
        }
        self.update_hold_gauges();
        let next = [
            self.hold.next_expiry(),
            self.away.peek().map(|Reverse((at, _))| *at),
        ];
        if let Some(at) = next.into_iter().flatten().min() {
            self.arm_hold_timer(io, at);
        }
    }

    fn update_hold_gauges(&self) {
        let (n, bytes) = self.hold.size();
        self.counters.held[0].store(n as i64, Ordering::Relaxed);
        self.counters.held[1].store(bytes as i64, Ordering::Relaxed);
    }

    /// Passthrough: keep device `origin`'s link open for the hold time after the device left.
    pub(crate) fn orphan_link(&mut self, io: &mut impl Io, l: LinkId, origin: Box<str>) {
        let until = self.clock + self.s.hold.ttl;
        let Some(link) = self.link_mut(l) else { return };
        link.owner = None;
        link.orphan = Some(Box::new((origin.clone(), until)));
        io.set_timer(until, timer(T_ORPHAN, l.index, l.generation));
        if let Some(old) = self.orphans.insert(origin, l)
            && old != l
        {
            self.retire_link(io, old, "replaced by a newer link of this originator");
        }
    }

    /// The link kept on this core for session `d`'s originator, if any.
    pub(crate) fn orphan_for(&self, d: DeviceId) -> Option<LinkId> {
        let origin = self.session(d)?.origin.as_deref()?;
        self.orphans.get(origin).copied()
    }

    /// Passthrough: a device back on the core that kept its link takes that link over (a new link
    /// would make a CSE like ACME close the kept one and, racing, forget the new one).
    pub(crate) fn adopt_orphan(&mut self, d: DeviceId) -> Option<LinkId> {
        let l = self.orphan_for(d)?;
        let origin = self.session(d)?.origin.clone()?;
        self.orphans.remove(&origin);
        let link = self.link_mut(l)?;
        link.orphan = None;
        link.owner = Some(d);
        tracing::debug!(
            device = d.index,
            link = l.index,
            "kept link taken over by the returning device"
        );
        Some(l)
    }

    /// Link `l` goes: no longer kept for anyone.
    pub(crate) fn forget_orphan(&mut self, l: LinkId) {
        let origin = self
            .link(l)
            .and_then(|k| k.orphan_origin())
            .map(Box::<str>::from);
        if let Some(o) = origin
            && self.orphans.get(&o) == Some(&l)
        {
            self.orphans.remove(&o);
        }
    }

    pub(crate) fn orphan_due(&mut self, io: &mut impl Io, now: Instant, l: LinkId) {
        let due = self
            .link(l)
            .and_then(|k| k.orphan.as_ref())
            .is_some_and(|o| now >= o.1);
        if due {
            self.retire_link(io, l, "the device did not come back within the hold time");
        }
    }
}

/// The primitive with `rqet` set to the absolute time `at` (the device sees what is left of it).
fn with_absolute_rqet(bytes: &[u8], format: Format, at: i64) -> Option<Vec<u8>> {
    let mut p = m2m_primitive::decode(format, bytes).ok()?;
    let m2m_primitive::Primitive::Request(r) = &mut p else {
        return None;
    };
    let stamp = m2m_primitive::time::format_timestamp(at, true);
    r.rqet = Some(m2m_primitive::Value::String(stamp));
    m2m_primitive::encode(&p, format).ok()
}
