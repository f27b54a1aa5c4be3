//! The edge in passthrough mode: each device WebSocket session gets its own upstream WebSocket to the
//! IN-CSE, on the same core, carrying the device's AE-ID in `X-M2M-Origin` once it is known.
//!
//! ```text
//! device ─ws─► handshake (oneM2M policy) ─► frames ─► routing view ─► gate ─► queue ─► upstream link ─► CSE
//!   ◄── responses matched by rqi, NOTIFYs from the CSE, error responses from the edge (4000/4015/4103/4008/5103)
//! ```
//!
//! Modules: [`settings`] (what the CLI resolves), [`session`] (device side: gate, queue, correlation),
//! [`link`] (upstream side: connect, handshake with origin binding, relink).
//! Not yet here (see the closing note of the runtime issue): wss/mTLS on the device side, CONNECT,
//! the admin listener and metrics, the TOML config.

pub mod admin;
pub mod identity;
pub mod link;
pub mod metrics;
pub mod session;
pub mod settings;
pub mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use m2m_rt::{App, CloseReason, ConnId, Cx};

use session::Session;
pub use settings::EdgeSettings;

/// Timer token kinds (top byte of the token).
const TIMER_HANDSHAKE: u64 = 1;
const TIMER_REQUEST: u64 = 2;
const TIMER_RELINK: u64 = 3;
const TIMER_IDLE: u64 = 4;
const TIMER_HOUSEKEEPING: u64 = 5;

/// How often a core hands memory freed since the last time back to the allocator's OS side.
const HOUSEKEEPING_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

fn token(kind: u64, session: usize, seq: u32) -> u64 {
    (kind << 56) | ((session as u64 & 0xff_ffff) << 32) | u64::from(seq)
}

/// What a connection is to the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Device(usize),
    Upstream(usize),
    /// The target side of a CONNECT tunnel.
    Tunnel(usize),
    /// A connection to the admin listener.
    Admin,
}

/// One core's sessions.
#[derive(Debug)]
pub struct EdgeApp {
    settings: EdgeSettings,
    /// Every core's counters (for scrapes) and this core's own.
    all_counters: Arc<Vec<Arc<metrics::CoreCounters>>>,
    counters: Arc<metrics::CoreCounters>,
    roles: Vec<Option<(ConnId, Role)>>,
    sessions: Vec<Option<Session>>,
    free: Vec<usize>,
    /// Armed from the first device session on.
    housekeeping: bool,
    /// The upstream source address used last (round robin).
    next_source: usize,
}

impl EdgeApp {
    pub fn new(
        settings: EdgeSettings,
        all_counters: Arc<Vec<Arc<metrics::CoreCounters>>>,
        core: usize,
    ) -> Self {
        let counters = all_counters[core].clone();
        Self {
            settings,
            all_counters,
            counters,
            roles: Vec::new(),
            sessions: Vec::new(),
            free: Vec::new(),
            housekeeping: false,
            next_source: 0,
        }
    }

    fn role(&self, conn: ConnId) -> Option<Role> {
        self.roles
            .get(conn.slot())?
            .filter(|(id, _)| *id == conn)
            .map(|(_, r)| r)
    }

    fn set_role(&mut self, conn: ConnId, role: Role) {
        let slot = conn.slot();
        while self.roles.len() <= slot {
            m2m_rt::core::reserve_linear(&mut self.roles);
            self.roles.push(None);
        }
        self.roles[slot] = Some((conn, role));
    }

    fn clear_role(&mut self, conn: ConnId) {
        if let Some(r) = self.roles.get_mut(conn.slot())
            && r.is_some_and(|(id, _)| id == conn)
        {
            *r = None;
        }
    }

    /// Return memory freed since the last turn (a burst of registrations, a closed wave of
    /// devices) to the OS: mimalloc otherwise purges only when the thread allocates again, so a
    /// core that went quiet after a burst would keep it — measured as ~2x the live bytes per idle
    /// device in `scripts/compare_proxies.py`'s idle rows.
    fn housekeep(&mut self, cx: &mut Cx<'_, ()>) {
        // SAFETY: mi_collect only walks this thread's own mimalloc heap (and does nothing much when
        // mimalloc is not the global allocator, as with the `system-alloc` feature).
        unsafe { libmimalloc_sys::mi_collect(true) };
        // Kept going once started: memory is also freed after the last connection closed (request
        // timers expiring, lingering closes), and one wake-up every two seconds costs nothing.
        cx.set_timer(
            cx.now() + HOUSEKEEPING_EVERY,
            token(TIMER_HOUSEKEEPING, 0, 0),
        );
    }

    fn free_session(&mut self, sid: usize) {
        self.sessions[sid] = None;
        self.free.push(sid);
    }
}

impl App for EdgeApp {
    type Msg = ();

    fn on_accept(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, listener: usize, peer: SocketAddr) {
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        if listener == 1 {
            self.set_role(conn, Role::Admin);
            return;
        }
        if cx.shutting_down() {
            cx.abort(conn);
            return;
        }
        let live = self.sessions.len() - self.free.len();
        if self.settings.max_devices_per_core > 0 && live >= self.settings.max_devices_per_core {
            tracing::warn!(
                core = cx.core(),
                limit = self.settings.max_devices_per_core,
                "device limit reached"
            );
            cx.send(
                conn,
                &m2m_ws::handshake::http_error(
                    503,
                    &[("Retry-After", "5")],
                    "device limit of this edge reached",
                ),
            );
            cx.close(conn);
            self.counters.limit(metrics::LIMIT_DEVICE_LIMIT);
            // Counted as a connection until it closes; no session.
            self.set_role(conn, Role::Admin);
            return;
        }
        self.counters
            .device_sessions
            .fetch_add(1, Ordering::Relaxed);
        if !self.housekeeping {
            self.housekeeping = true;
            cx.set_timer(
                cx.now() + HOUSEKEEPING_EVERY,
                token(TIMER_HOUSEKEEPING, 0, 0),
            );
        }
        let sid = match self.free.pop() {
            Some(i) => i,
            None => {
                m2m_rt::core::reserve_linear(&mut self.sessions);
                self.sessions.push(None);
                self.sessions.len() - 1
            }
        };
        let timer = cx.set_timer(
            cx.now() + self.settings.handshake_timeout,
            token(TIMER_HANDSHAKE, sid, 0),
        );
        self.sessions[sid] = Some(Session::new(conn, timer));
        self.set_role(conn, Role::Device(sid));
        tracing::debug!(conn = conn.raw(), %peer, session = sid, "device connected");
    }

    fn on_data(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, data: &mut [u8]) -> usize {
        let stats = cx.stats();
        self.counters
            .bytes_in
            .store(stats.bytes_in, Ordering::Relaxed);
        self.counters
            .bytes_out
            .store(stats.bytes_out, Ordering::Relaxed);
        self.counters
            .loop_turns
            .store(stats.loop_turns, Ordering::Relaxed);
        self.counters
            .wait_ns
            .store(stats.wait_ns, Ordering::Relaxed);
        self.counters
            .buffer_exhaustion
            .store(stats.buffer_exhaustion, Ordering::Relaxed);
        match self.role(conn) {
            Some(Role::Admin) => self.admin_data(cx, conn, data),
            Some(Role::Device(sid)) => {
                let started = std::time::Instant::now();
                let used = self.device_data(cx, sid, data);
                self.counters.handling(started.elapsed());
                used
            }
            Some(Role::Upstream(sid)) => {
                let started = std::time::Instant::now();
                let used = self.upstream_data(cx, sid, conn, data);
                self.counters.handling(started.elapsed());
                used
            }
            Some(Role::Tunnel(sid)) => self.tunnel_to_device(cx, sid, data),
            None => data.len(),
        }
    }

    fn on_close(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, reason: CloseReason) {
        let role = self.role(conn);
        self.clear_role(conn);
        self.counters.connections.fetch_sub(1, Ordering::Relaxed);
        match role {
            Some(Role::Admin) => {}
            Some(Role::Device(sid)) => {
                self.counters
                    .device_sessions
                    .fetch_sub(1, Ordering::Relaxed);
                if let Some(session::Device::Open { format, .. }) =
                    self.sessions[sid].as_ref().map(|s| &s.dev)
                {
                    self.counters.sessions_by_format[session::format_index(*format)]
                        .fetch_sub(1, Ordering::Relaxed);
                }
                if matches!(reason, CloseReason::Tls(_)) {
                    self.counters.tls[1].fetch_add(1, Ordering::Relaxed);
                }
                if self.sessions[sid]
                    .as_ref()
                    .is_some_and(|s| s.link.is_open())
                {
                    self.counters.upstream_links.fetch_sub(1, Ordering::Relaxed);
                }
                tracing::debug!(conn = conn.raw(), session = sid, ?reason, "device gone");
                if let Some(link) = self.sessions[sid].as_mut().and_then(|s| s.link.conn()) {
                    self.clear_role(link);
                    cx.abort(link);
                }
                if let Some(session::Device::Tunnel { peer, .. }) =
                    self.sessions[sid].as_ref().map(|s| &s.dev)
                {
                    let peer = *peer;
                    self.clear_role(peer);
                    cx.close(peer);
                }
                if let Some(s) = self.sessions[sid].as_mut() {
                    s.cancel_timers(cx);
                }
                self.free_session(sid);
            }
            Some(Role::Upstream(sid)) => self.link_lost(cx, sid, conn, &format!("{reason:?}")),
            Some(Role::Tunnel(sid)) => {
                if let Some(s) = self.sessions[sid].as_ref() {
                    let device = s.device;
                    cx.close(device);
                }
            }
            None => {}
        }
    }

    fn on_connect(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, result: std::io::Result<()>) {
        if result.is_ok() && matches!(self.role(conn), Some(Role::Tunnel(_) | Role::Upstream(_))) {
            self.counters.connections.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(Role::Tunnel(sid)) = self.role(conn) {
            self.tunnel_connected(cx, sid, conn, result);
            return;
        }
        if let Some(Role::Upstream(sid)) = self.role(conn) {
            match result {
                Ok(()) => self.link_connected(cx, sid, conn),
                Err(e) => {
                    self.clear_role(conn);
                    self.link_lost(cx, sid, conn, &format!("connect failed: {e}"));
                }
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Cx<'_, ()>, token: u64) {
        let kind = token >> 56;
        let sid = ((token >> 32) & 0xff_ffff) as usize;
        let seq = token as u32;
        if kind == TIMER_HOUSEKEEPING {
            self.housekeep(cx);
            return;
        }
        if self.sessions.get(sid).and_then(Option::as_ref).is_none() {
            return;
        }
        match kind {
            TIMER_HANDSHAKE => self.handshake_timeout(cx, sid),
            TIMER_REQUEST => self.request_timeout(cx, sid, seq),
            TIMER_IDLE => self.idle_timeout(cx, sid),
            TIMER_RELINK => {
                if let Some(s) = self.sessions[sid].as_mut() {
                    s.relink_timer = None;
                }
                self.open_link(cx, sid);
            }
            _ => {}
        }
    }

    fn on_shutdown(&mut self, cx: &mut Cx<'_, ()>) {
        // Stop taking new work; each device is closed with 1001 once its in-flight and queued
        // requests are answered (the runtime closes what is left at the drain deadline).
        for sid in 0..self.sessions.len() {
            if let Some(s) = self.sessions[sid].as_mut() {
                s.draining = true;
                if matches!(s.dev, session::Device::Open { .. }) {
                    self.close_if_drained(cx, sid);
                } else {
                    let device = s.device;
                    cx.close(device);
                }
            }
        }
    }
}
