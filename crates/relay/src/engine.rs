//! The engine of one core: its device sessions and upstream links, the events that drive them, and
//! the timers they arm. Each event method takes the [`Io`] to act through and the loop turn's `now`.
//!
//! Ids: devices and links live in generation-checked tables, so an event or timer for a session or
//! link that is gone is ignored. Once the engine closes or aborts a connection it forgets it (the
//! adapter detaches it; no event follows), so a `*_closed` event always means the peer went away.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use crate::counters::CoreCounters;
use crate::device::Session;
use crate::hold::{HoldStore, MemoryHold};
use crate::link::Link;
use crate::notify::NotifyConn;
use crate::settings::{RelaySettings, UpstreamMode};
use crate::slab::Slab;
use crate::{DeviceId, Directory, Io, LinkId, NotifyId, Timer};

/// Timer kinds (top byte of the token); the rest is the slot (24 bits) and generation (32 bits).
pub(crate) const T_HANDSHAKE: u64 = 1;
pub(crate) const T_IDLE: u64 = 2;
pub(crate) const T_REQUESTS: u64 = 3;
pub(crate) const T_LINK_SETUP: u64 = 4;
pub(crate) const T_RELINK: u64 = 5;
pub(crate) const T_NOTIFY_HANDSHAKE: u64 = 6;
pub(crate) const T_HOLD: u64 = 7;
pub(crate) const T_ORPHAN: u64 = 8;
pub(crate) const T_PING_SWEEP: u64 = 9;
pub(crate) const T_FETCH: u64 = 11;
pub(crate) const T_FRAME: u64 = 12;

pub(crate) fn timer(kind: u64, index: u32, generation: u32) -> Timer {
    Timer((kind << 56) | ((u64::from(index) & 0xff_ffff) << 32) | u64::from(generation))
}

/// One core's relay.
#[derive(Debug)]
pub struct Engine {
    pub(crate) s: RelaySettings,
    pub(crate) counters: Arc<CoreCounters>,
    pub(crate) devices: Slab<Session>,
    pub(crate) links: Slab<Link>,
    /// The CSE's connections to the notify listener on this core.
    pub(crate) notifies: Slab<NotifyConn>,
    /// Which core holds which originator (shared by the engines of one process).
    pub(crate) directory: Arc<Directory>,
    /// Multiplex: this core's links, opened with the first device; devices are pinned round robin.
    pub(crate) shared: Vec<LinkId>,
    next_pin: usize,
    pub(crate) draining: bool,
    /// Counter for rewritten `rqi`s on shared links.
    pub(crate) rewrites: u64,
    /// This engine's core (part of its shared links' originators).
    pub(crate) core: usize,
    /// The `now` of the event being handled (for the few paths that do not carry one).
    pub(crate) clock: Instant,
    /// Requests of the CSE held for devices that are away.
    pub(crate) hold: Box<dyn HoldStore>,
    /// Originators this core remembers as away, by when it may forget them (earliest first).
    pub(crate) away: BinaryHeap<Reverse<(Instant, Box<str>)>>,
    /// When the hold timer is armed for.
    pub(crate) hold_timer_at: Option<Instant>,
    /// Held primitives dropped by a bound since the last log line (logged at most once a minute).
    pub(crate) hold_drops_unlogged: u64,
    pub(crate) hold_drops_logged_at: Option<Instant>,
    /// The liveness sweep's timer is armed.
    pub(crate) ping_sweep_armed: bool,
    /// Passthrough links kept open for devices that left, by originator.
    pub(crate) orphans: rustc_hash::FxHashMap<Box<str>, LinkId>,
    /// Link set-up failures and losses in the log at most once per interval, with a count.
    pub(crate) link_log: crate::log_limit::LogLimit,
}

impl Engine {
    pub fn new(settings: RelaySettings, counters: Arc<CoreCounters>) -> Self {
        let settings_hold = settings.hold;
        Self {
            s: settings,
            counters,
            devices: Slab::default(),
            links: Slab::default(),
            notifies: Slab::default(),
            directory: Arc::new(Directory::default()),
            shared: Vec::new(),
            next_pin: 0,
            draining: false,
            rewrites: 0,
            core: 0,
            clock: Instant::now(),
            link_log: crate::log_limit::LogLimit::default(),
            hold: Box::new(MemoryHold::new(settings_hold)),
            away: BinaryHeap::new(),
            hold_timer_at: None,
            hold_drops_unlogged: 0,
            hold_drops_logged_at: None,
            orphans: Default::default(),
            ping_sweep_armed: false,
        }
    }

    /// Keep held primitives in `store` instead of memory.
    pub fn with_hold_store(mut self, store: Box<dyn HoldStore>) -> Self {
        self.hold = store;
        self
    }

    /// Note the time of an event.
    pub(crate) fn tick(&mut self, now: Instant) {
        self.clock = now;
    }

    /// The engine of core `core` (its shared links are named after it).
    pub fn on_core(mut self, core: usize) -> Self {
        self.core = core;
        self
    }

    /// Share `directory` with the other cores' engines (cross-core delivery of the CSE's requests).
    pub fn with_directory(mut self, directory: Arc<Directory>) -> Self {
        self.directory = directory;
        self
    }

    /// This engine's core.
    pub fn core(&self) -> usize {
        self.core
    }

    /// The `X-M2M-Origin` of shared link number `i` of this core: one originator per link, since a
    /// CSE like ACME closes the older connection when a new one names the same originator.
    pub(crate) fn shared_origin(&self, l: LinkId) -> String {
        let i = self.shared.iter().position(|&s| s == l).unwrap_or(0);
        format!("{}-{}-{i}", self.s.edge_origin, self.core)
    }

    pub fn settings(&self) -> &RelaySettings {
        &self.s
    }

    /// A reload: what [`RelaySettings::take_reloadable`] takes from `new` applies from the next
    /// event on (new devices' handshakes, limits and timers; sessions already open keep the timers
    /// they have).
    pub fn reconfigure(&mut self, new: &RelaySettings) {
        self.s.take_reloadable(new);
    }

    /// The CSE's name resolves to `addrs` now (for CONNECT targets and the notify listener's
    /// default allow-list).
    pub fn set_upstream_addresses(&mut self, addrs: Vec<std::net::SocketAddr>) {
        if !addrs.is_empty() {
            self.s.upstream_addrs = addrs;
        }
    }

    /// Device sessions alive (any state).
    pub fn devices(&self) -> usize {
        self.devices.len()
    }

    /// Upstream links (any state, including down and waiting to re-open).
    pub fn links(&self) -> usize {
        self.links.len()
    }

    pub(crate) fn session(&self, d: DeviceId) -> Option<&Session> {
        self.devices.get(d.index, d.generation)
    }

    pub(crate) fn session_mut(&mut self, d: DeviceId) -> Option<&mut Session> {
        self.devices.get_mut(d.index, d.generation)
    }

    pub(crate) fn link(&self, l: LinkId) -> Option<&Link> {
        self.links.get(l.index, l.generation)
    }

    pub(crate) fn link_mut(&mut self, l: LinkId) -> Option<&mut Link> {
        self.links.get_mut(l.index, l.generation)
    }

    /// The link a new multiplex device is pinned to (the core's links are opened on first use).
    pub(crate) fn pin(&mut self, io: &mut impl Io, now: Instant) -> LinkId {
        if self.shared.is_empty() {
            for _ in 0..self.s.upstream_links.max(1) {
                let l = self.new_link(None);
                self.shared.push(l);
                self.open_link(io, now, l);
            }
        }
        self.next_pin = (self.next_pin + 1) % self.shared.len();
        self.shared[self.next_pin]
    }

    /// A timer armed earlier fired.
    pub fn timer(&mut self, io: &mut impl Io, now: Instant, t: Timer) {
        self.tick(now);
        let kind = t.0 >> 56;
        let index = ((t.0 >> 32) & 0xff_ffff) as u32;
        let generation = t.0 as u32;
        let d = DeviceId { index, generation };
        let l = LinkId { index, generation };
        match kind {
            T_HANDSHAKE => self.handshake_timeout(io, now, d),
            T_IDLE => self.idle_timeout(io, now, d),
            T_FRAME => self.frame_timeout(io, now, d),
            T_REQUESTS => self.requests_timeout(io, now, l),
            T_LINK_SETUP => self.link_setup_timeout(io, now, l),
            T_RELINK => self.relink_due(io, now, l),
            T_NOTIFY_HANDSHAKE => {
                self.notify_handshake_timeout(io, now, NotifyId { index, generation })
            }
            T_HOLD => self.hold_due(io, now),
            T_ORPHAN => self.orphan_due(io, now, l),
            T_PING_SWEEP => self.ping_sweep(io, now),
            T_FETCH => self.fetch_overdue(io, d),
            _ => {}
        }
    }

    /// Shutdown: take no new work; close each device with 1001 once everything it sent is answered
    /// (the runtime closes what is left at its drain deadline).
    pub fn shutdown(&mut self, io: &mut impl Io, now: Instant) {
        self.tick(now);
        self.draining = true;
        for (index, generation) in self.devices.ids() {
            let d = DeviceId { index, generation };
            if let Some(s) = self.session_mut(d) {
                s.draining = true;
            }
            if self.session(d).is_some_and(Session::is_open) {
                self.close_if_drained(io, now, d);
            } else {
                self.drop_device(io, d, true);
            }
        }
    }

    /// Whether the engine is draining for shutdown (new devices are refused).
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Multiplex mode?
    pub(crate) fn multiplex(&self) -> bool {
        self.s.mode == UpstreamMode::Multiplex
    }
}
