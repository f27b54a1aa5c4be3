//! The edge on the runtime: a thin adapter that gives each core's [`m2m_relay::Engine`] its events
//! and carries out what the engine asks for through the core's [`Cx`]. Everything the edge decides
//! (handshake policy, gate, queue, correlation, links in passthrough or multiplex mode, the edge's own
//! answers, drain) lives in the engine, which does no I/O and is tested in memory.
//!
//! ```text
//! runtime ──on_accept/on_data/on_close/on_connect/on_timer──► EdgeApp ──events──► Engine
//!    ▲                                                                              │
//!    └──── Cx::send_with / close / abort / connect_from / set_timer ◄── CxIo ◄── Io calls
//! ```
//!
//! Modules: [`settings`] (what the CLI resolves), [`conns`] (connection ⇄ engine peer), [`identity`]
//! (client certificates), [`admin`] (metrics, health), [`metrics`] (exposition).

pub mod admin;
pub mod conns;
pub mod identity;
pub mod metrics;
pub mod readiness;
pub mod settings;
pub mod upstream;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use m2m_relay::{DeviceId, Directory, Engine, Envelope, Io, LinkId, Peer, Target, Timer};
use m2m_rt::{App, CloseReason, ConnId, Cx};

use conns::{ConnMap, Role};
pub use settings::EdgeSettings;

/// Timer tokens of the adapter itself (the engine's kinds are small numbers).
const TIMER_HOUSEKEEPING: u64 = 0xff << 56;

/// How often a core hands memory freed since the last time back to the allocator's OS side.
const HOUSEKEEPING_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// One core's edge.
#[derive(Debug)]
pub struct EdgeApp {
    settings: EdgeSettings,
    engine: Engine,
    /// Every core's counters (for scrapes) and this core's own.
    all_counters: Arc<Vec<Arc<metrics::CoreCounters>>>,
    counters: Arc<metrics::CoreCounters>,
    conns: ConnMap,
    /// Armed from the first device session on.
    housekeeping: bool,
    /// The upstream source address used last (round robin).
    next_source: usize,
    /// Upstream links being connected: the CSE address each goes to and when its set-up must end
    /// (failover when the address refuses or never answers).
    connecting: std::collections::HashMap<ConnId, (SocketAddr, Instant)>,
    /// The reload generation of the relay settings the engine has.
    settings_generation: u64,
    /// The generation of the upstream addresses the engine has.
    addrs_generation: u64,
}

/// The engine's [`Io`] on a core's [`Cx`].
struct CxIo<'a, 'c> {
    cx: &'a mut Cx<'c, Envelope>,
    counters: &'a metrics::CoreCounters,
    conns: &'a mut ConnMap,
    settings: &'a EdgeSettings,
    next_source: &'a mut usize,
    connecting: &'a mut std::collections::HashMap<ConnId, (SocketAddr, Instant)>,
}

impl Io for CxIo<'_, '_> {
    fn send_with(&mut self, to: Peer, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        self.conns
            .conn(to)
            .is_some_and(|conn| self.cx.send_with(conn, write))
    }

    fn unsent(&self, to: Peer) -> usize {
        self.conns
            .conn(to)
            .map_or(0, |conn| self.cx.pending_output(conn))
    }

    fn close(&mut self, to: Peer) {
        if let Some(conn) = self.conns.detach(to) {
            self.cx.close(conn);
        }
    }

    fn abort(&mut self, to: Peer) {
        if let Some(conn) = self.conns.detach(to) {
            self.cx.abort(conn);
        }
    }

    fn connect(&mut self, peer: Peer, target: Target) -> std::io::Result<()> {
        let timeout = self.settings.relay.connect_timeout;
        let conn = match target {
            Target::Upstream => {
                // Through a proxy the TCP connection goes to the proxy and TLS starts after CONNECT.
                let (addr, tls) = match self.settings.upstream_proxy {
                    Some(proxy) => (proxy, None),
                    None => (
                        self.settings.upstream.current(),
                        self.settings.upstream_tls.clone(),
                    ),
                };
                let sources = &self.settings.upstream_sources;
                let source = (!sources.is_empty()).then(|| {
                    *self.next_source = (*self.next_source + 1) % sources.len();
                    sources[*self.next_source]
                });
                let conn = self.cx.connect_from(addr, source, tls, timeout)?;
                if self.settings.upstream_proxy.is_none() {
                    self.connecting
                        .insert(conn, (addr, self.cx.now() + timeout));
                }
                conn
            }
            Target::Tunnel(addr) => self.cx.connect(addr, None, timeout)?,
        };
        self.conns.bind(peer, conn);
        // Counted from here until its on_close or failed on_connect (an abort while connecting
        // ends in on_close).
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn start_tls(&mut self, link: LinkId) -> std::io::Result<()> {
        let (Some(conn), Some(tls)) = (
            self.conns.conn(Peer::Link(link)),
            self.settings.upstream_tls.clone(),
        ) else {
            return Ok(());
        };
        self.cx.start_tls(conn, tls)
    }

    fn set_timer(&mut self, at: Instant, timer: Timer) {
        self.cx.set_timer(at, timer.0);
    }

    fn client_identity(&mut self, device: DeviceId) -> Option<String> {
        let conn = self.conns.conn(Peer::Device(device))?;
        identity::certificate_identity(self.cx, conn)
    }

    fn resolve(&mut self, authority: &str) -> Option<SocketAddr> {
        // Allow-listed names only, once per tunnel (blocking, like the CLI's own resolution).
        authority.to_socket_addrs().ok()?.next()
    }

    fn post(&mut self, core: usize, msg: Envelope) -> bool {
        self.cx.post(core, msg).is_ok()
    }
}

impl EdgeApp {
    pub fn new(
        settings: EdgeSettings,
        all_counters: Arc<Vec<Arc<metrics::CoreCounters>>>,
        directory: Arc<Directory>,
        core: usize,
    ) -> Self {
        let counters = all_counters[core].clone();
        Self {
            engine: Engine::new(settings.relay.clone(), counters.clone())
                .on_core(core)
                .with_directory(directory),
            settings,
            all_counters,
            counters,
            conns: ConnMap::default(),
            housekeeping: false,
            next_source: 0,
            connecting: Default::default(),
            settings_generation: 0,
            addrs_generation: 0,
        }
    }

    /// Take reloaded relay settings and re-resolved upstream addresses (checked on accepts, timers
    /// and messages: every core with sessions has a timer at least every [`HOUSEKEEPING_EVERY`]).
    fn take_reload(&mut self) {
        let generation = self.settings.hot.generation();
        if generation != self.settings_generation {
            self.settings_generation = generation;
            let new = self.settings.hot.get();
            self.settings.relay.take_reloadable(&new);
            self.engine.reconfigure(&new);
        }
        let generation = self.settings.upstream.generation();
        if generation != self.addrs_generation {
            self.addrs_generation = generation;
            self.engine
                .set_upstream_addresses(self.settings.upstream.all());
        }
    }

    /// The engine and its Io for one callback.
    fn split<'a, 'c>(&'a mut self, cx: &'a mut Cx<'c, Envelope>) -> (&'a mut Engine, CxIo<'a, 'c>) {
        (
            &mut self.engine,
            CxIo {
                cx,
                counters: &self.counters,
                conns: &mut self.conns,
                settings: &self.settings,
                next_source: &mut self.next_source,
                connecting: &mut self.connecting,
            },
        )
    }

    /// Return memory freed since the last turn (a burst of registrations, a closed wave of
    /// devices) to the OS: mimalloc otherwise purges only when the thread allocates again, so a
    /// core that went quiet after a burst would keep it — measured as ~2x the live bytes per idle
    /// device in `scripts/compare_proxies.py`'s idle rows.
    fn housekeep(&mut self, cx: &mut Cx<'_, Envelope>) {
        // SAFETY: mi_collect only walks this thread's own mimalloc heap (and does nothing much when
        // mimalloc is not the global allocator).
        unsafe { libmimalloc_sys::mi_collect(true) };
        // Kept going once started: memory is also freed after the last connection closed (request
        // timers expiring, lingering closes), and one wake-up every two seconds costs nothing.
        cx.set_timer(cx.now() + HOUSEKEEPING_EVERY, TIMER_HOUSEKEEPING);
    }

    /// Copy the runtime's per-core statistics into the exported counters.
    fn copy_stats(&self, cx: &Cx<'_, Envelope>) {
        let stats = cx.stats();
        let c = &self.counters;
        c.bytes_in.store(stats.bytes_in, Ordering::Relaxed);
        c.bytes_out.store(stats.bytes_out, Ordering::Relaxed);
        c.loop_turns.store(stats.loop_turns, Ordering::Relaxed);
        c.wait_ns.store(stats.wait_ns, Ordering::Relaxed);
        c.buffer_exhaustion
            .store(stats.buffer_exhaustion, Ordering::Relaxed);
    }
}

impl App for EdgeApp {
    type Msg = Envelope;

    fn on_accept(
        &mut self,
        cx: &mut Cx<'_, Envelope>,
        conn: ConnId,
        listener: usize,
        peer: SocketAddr,
    ) {
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        if Some(listener) == self.settings.admin_listener {
            self.conns.set_admin(conn, admin::is_local(peer.ip()));
            return;
        }
        self.take_reload();
        if cx.shutting_down() {
            cx.abort(conn);
            return;
        }
        if Some(listener) == self.settings.notify_listener {
            let now = cx.now();
            let n = self.engine.new_notify(now, peer.ip());
            self.conns.bind(Peer::Notify(n), conn);
            let (engine, mut io) = self.split(cx);
            engine.notify_accepted(&mut io, now, n);
            return;
        }
        if !self.housekeeping {
            self.housekeeping = true;
            cx.set_timer(cx.now() + HOUSEKEEPING_EVERY, TIMER_HOUSEKEEPING);
        }
        let now = cx.now();
        let d = self.engine.new_device(now);
        self.conns.bind(Peer::Device(d), conn);
        let (engine, mut io) = self.split(cx);
        engine.device_accepted(&mut io, now, d);
        tracing::debug!(conn = conn.raw(), %peer, device = d.index, "device connected");
    }

    fn on_data(&mut self, cx: &mut Cx<'_, Envelope>, conn: ConnId, data: &mut [u8]) -> usize {
        self.copy_stats(cx);
        let now = cx.now();
        let started = Instant::now();
        let used = match self.conns.role(conn) {
            Some(Role::Admin { local }) => return self.admin_data(cx, conn, data, local),
            None => return data.len(),
            Some(Role::Peer(peer)) => {
                let (engine, mut io) = self.split(cx);
                match peer {
                    Peer::Device(d) => engine.device_data(&mut io, now, d, data),
                    Peer::Link(l) => engine.link_data(&mut io, now, l, data),
                    Peer::Notify(n) => engine.notify_data(&mut io, now, n, data),
                    Peer::Tunnel(d) => return engine.tunnel_data(&mut io, d, data),
                }
            }
        };
        self.counters.handling(started.elapsed());
        used
    }

    fn on_close(&mut self, cx: &mut Cx<'_, Envelope>, conn: ConnId, reason: CloseReason) {
        self.counters.connections.fetch_sub(1, Ordering::Relaxed);
        if let Some((addr, deadline)) = self.connecting.remove(&conn)
            && cx.now() >= deadline
        {
            // Closed before its connect completed, by the set-up deadline: the address never
            // answered (not a device that left meanwhile).
            self.settings.upstream.failed(addr);
        }
        let Some(Role::Peer(peer)) = self.conns.take(conn) else {
            return;
        };
        let now = cx.now();
        let (engine, mut io) = self.split(cx);
        match peer {
            Peer::Device(d) => {
                engine.device_closed(&mut io, now, d, matches!(reason, CloseReason::Tls(_)));
            }
            Peer::Link(l) => engine.link_closed(&mut io, now, l, &format!("{reason:?}")),
            Peer::Tunnel(d) => engine.tunnel_closed(&mut io, d),
            Peer::Notify(n) => engine.notify_closed(n),
        }
    }

    fn on_message(&mut self, cx: &mut Cx<'_, Envelope>, _from: usize, msg: Envelope) {
        self.take_reload();
        let now = cx.now();
        let (engine, mut io) = self.split(cx);
        engine.message(&mut io, now, msg);
    }

    fn on_connect(&mut self, cx: &mut Cx<'_, Envelope>, conn: ConnId, result: std::io::Result<()>) {
        if let Some((addr, _)) = self.connecting.remove(&conn)
            && let Err(e) = &result
            && upstream::UpstreamAddrs::blames_address(e.kind())
        {
            self.settings.upstream.failed(addr);
        }
        if result.is_err() {
            // Counted at connect; no on_close follows a failed connect.
            self.counters.connections.fetch_sub(1, Ordering::Relaxed);
        }
        let role = match &result {
            Ok(()) => self.conns.role(conn),
            // No on_close follows a failed connect.
            Err(_) => self.conns.take(conn),
        };
        let Some(Role::Peer(peer)) = role else {
            return;
        };
        let now = cx.now();
        let (engine, mut io) = self.split(cx);
        match peer {
            Peer::Link(l) => {
                engine.link_connected(&mut io, now, l, result.map_err(|e| e.to_string()));
            }
            Peer::Tunnel(d) => engine.tunnel_connected(&mut io, d, result.map_err(|e| e.kind())),
            Peer::Device(_) | Peer::Notify(_) => {}
        }
    }

    fn on_timer(&mut self, cx: &mut Cx<'_, Envelope>, token: u64) {
        self.take_reload();
        if token == TIMER_HOUSEKEEPING {
            self.housekeep(cx);
            return;
        }
        let now = cx.now();
        let (engine, mut io) = self.split(cx);
        engine.timer(&mut io, now, Timer(token));
    }

    fn on_shutdown(&mut self, cx: &mut Cx<'_, Envelope>) {
        let now = cx.now();
        let (engine, mut io) = self.split(cx);
        engine.shutdown(&mut io, now);
    }
}
