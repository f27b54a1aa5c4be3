//! m2m-rt: a thread-per-core runtime for m2m-edge. Each core runs one event loop with its own
//! listener (`SO_REUSEPORT`, after a plain bind that fails on a port in use unless `reuse_port`),
//! connections, timers and buffers; nothing is shared on the hot path and
//! nothing is stolen between cores. A loop drives sans-IO state machines (the [`App`]) with one of two
//! drivers chosen at start-up: io_uring (multishot accept and receive, a provided-buffer ring so idle
//! connections own no read buffer, sends batched per turn) or epoll (mio) where io_uring is refused.
//!
//! ```text
//!  kernel ──► driver (uring | epoll) ──► Core: conn table, TLS, timers, mailbox ──► App::on_* (sans-IO)
//!                    ▲                                                            │
//!                    └──── dirty connections' output, connects, closes ◄── Cx ◄───┘
//! ```
//!
//! This crate knows no protocol (no WebSocket, no oneM2M): bytes, time, connections and messages.
//! `unsafe` lives here and only here, each block with a `// SAFETY:` comment.
//! Modules: [`app`] (the App trait), [`core`] (shared per-core state and `Cx`), `driver` (uring,
//! epoll), [`timer`] (wheel), [`mailbox`] (cross-core queues), [`tls`] (rustls on owned buffers),
//! [`net`] (sockets, limits), [`probe`] (driver selection).

pub mod app;
pub mod core;
mod driver;
pub mod heap;
pub mod mailbox;
pub mod net;
pub mod probe;
pub mod timer;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use app::{App, CloseReason, ConnId};
pub use core::{ClientTls, CoreStats, Cx, ListenerTls};
pub use timer::TimerId;

/// Which I/O driver to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// io_uring when the probe passes, else epoll.
    Auto,
    Uring,
    Epoll,
}

impl std::str::FromStr for IoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "uring" | "io_uring" => Ok(Self::Uring),
            "epoll" => Ok(Self::Epoll),
            other => Err(format!("unknown I/O driver {other:?} (auto, uring, epoll)")),
        }
    }
}

impl std::fmt::Display for IoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Uring => "uring",
            Self::Epoll => "epoll",
        })
    }
}

/// The driver that was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    Uring,
    Epoll,
}

impl DriverKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Uring => "uring",
            Self::Epoll => "epoll",
        }
    }
}

/// A listening address, optionally with TLS.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub tls: Option<ListenerTls>,
}

/// io_uring sizing.
#[derive(Debug, Clone, Copy)]
pub struct UringConfig {
    /// Submission queue entries per core. Default 4096.
    pub entries: u32,
    /// Receive buffers in the provided-buffer ring per core (a power of two). Default 1024.
    pub buffers: u16,
    /// Size of each receive buffer. Default 16 KiB.
    pub buffer_bytes: u32,
}

impl Default for UringConfig {
    fn default() -> Self {
        Self {
            entries: 4096,
            buffers: 1024,
            buffer_bytes: 16 * 1024,
        }
    }
}

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct RtConfig {
    /// Worker threads (cores). Default: the number of CPUs.
    pub workers: usize,
    /// Pin worker `i` to CPU `i`.
    pub pin: bool,
    pub io: IoMode,
    pub listeners: Vec<ListenerConfig>,
    /// Listen backlog. Default 4096.
    pub backlog: i32,
    /// Unconsumed input a connection may hold before it is closed. Default 2 MiB.
    pub max_pending_input_bytes: usize,
    /// How long connections may drain after shutdown starts. Default 5 s.
    pub drain: Duration,
    /// Lingering close: after the last output of a closing connection, send FIN and read and drop
    /// the peer's input for up to this long before closing (a close with unread input is a reset,
    /// which can destroy the close frame just sent). Zero closes at once. Default 2 s.
    pub linger: Duration,
    /// Messages queued per core pair. Default 4096.
    pub mailbox_capacity: usize,
    pub uring: UringConfig,
    /// Let the first listener join a port other processes listen on with `SO_REUSEPORT` (several
    /// edge processes on one device port). Without it (and always for the other listeners) a plain
    /// bind is tried first, so a port in use is an error. Either way each core gets its own
    /// `SO_REUSEPORT` socket; without it the port is also claimed ([`net::claim_port`]: a later
    /// runtime that opts in refuses to join) and the group picks only this runtime's sockets
    /// ([`net::keep_reuseport_group`]). Default off.
    pub reuse_port: bool,
    /// Listeners (indices into `listeners`) that keep accepting while the cores drain, until the
    /// drain ends: an admin listener, so that a probe during a drain is answered (503) instead of
    /// refused. The others stop accepting when the stop is asked. Default none.
    pub open_while_draining: Vec<usize>,
}

impl Default for RtConfig {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin: false,
            io: IoMode::Auto,
            listeners: Vec::new(),
            backlog: 4096,
            max_pending_input_bytes: 2 << 20,
            drain: Duration::from_secs(5),
            linger: Duration::from_secs(2),
            mailbox_capacity: 4096,
            uring: UringConfig::default(),
            reuse_port: false,
            open_while_draining: Vec::new(),
        }
    }
}

/// State every core reads: the stop flag and the drain time.
#[derive(Debug)]
pub(crate) struct RunShared {
    stop: AtomicBool,
    pub(crate) drain: Duration,
    pub(crate) uring: UringConfig,
    /// io_uring operations the cores' exits cancelled and reaped (a test's view of the exit).
    pub(crate) reaped_at_exit: std::sync::atomic::AtomicUsize,
    /// [`RtConfig::open_while_draining`].
    pub(crate) open_while_draining: Vec<usize>,
}

impl RunShared {
    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Whether listener `i` stops accepting when the drain begins.
    pub(crate) fn closes_at_drain(&self, i: usize) -> bool {
        !self.open_while_draining.contains(&i)
    }
}

/// Stops a running runtime from anywhere (a signal thread, a test).
#[derive(Debug, Clone)]
pub struct StopHandle {
    shared: Arc<RunShared>,
    wakeups: Vec<Arc<mailbox::Wakeup>>,
}

impl StopHandle {
    /// io_uring operations still in flight when the cores exited, cancelled and reaped before
    /// their memory was freed (0 on epoll).
    pub fn reaped_at_exit(&self) -> usize {
        self.shared.reaped_at_exit.load(Ordering::Relaxed)
    }

    /// Stop accepting on every core and let connections drain.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        for w in &self.wakeups {
            w.wake();
        }
    }
}

/// A started runtime.
#[derive(Debug)]
pub struct Runtime {
    threads: Vec<JoinHandle<io::Result<()>>>,
    stop: StopHandle,
    driver: DriverKind,
    addrs: Vec<SocketAddr>,
    /// The claims on the ports this process does not share ([`net::claim_port`]), held while it runs.
    _claims: Vec<std::os::unix::net::UnixListener>,
}

/// Choose the driver for `mode` with the io_uring probe, logging the reason.
pub fn select_driver(mode: IoMode) -> io::Result<DriverKind> {
    let probe = match mode {
        IoMode::Epoll => Ok(()),
        _ => probe::probe_uring(),
    };
    choose_driver(mode, probe)
}

/// The decision itself, given the probe's outcome: `auto` falls back to epoll when io_uring is
/// refused; `uring` fails instead.
pub fn choose_driver(mode: IoMode, probe: Result<(), String>) -> io::Result<DriverKind> {
    match (mode, probe) {
        (IoMode::Epoll, _) => Ok(DriverKind::Epoll),
        (IoMode::Uring, Ok(())) => Ok(DriverKind::Uring),
        (IoMode::Uring, Err(why)) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring requested but unavailable: {why}"),
        )),
        (IoMode::Auto, Ok(())) => {
            tracing::info!(driver = "uring", "io_uring probe passed");
            Ok(DriverKind::Uring)
        }
        (IoMode::Auto, Err(why)) => {
            tracing::warn!(driver = "epoll", reason = %why, "io_uring unavailable, falling back to epoll");
            Ok(DriverKind::Epoll)
        }
    }
}

impl Runtime {
    /// Bind the listeners on every core and start the loops. `make_app(core)` runs on the core's own
    /// thread, so the app need not be `Send`.
    pub fn start<A, F>(config: RtConfig, make_app: F) -> io::Result<Runtime>
    where
        A: App + 'static,
        F: Fn(usize) -> A + Send + Sync + 'static,
    {
        let driver = select_driver(config.io)?;
        let workers = config.workers.max(1);
        // Bind core 0 first so that port 0 resolves to one port that the other cores share.
        let mut addrs = Vec::new();
        let mut claims = Vec::new();
        let mut per_core: Vec<Vec<std::net::TcpListener>> =
            (0..workers).map(|_| Vec::new()).collect();
        for (i, l) in config.listeners.iter().enumerate() {
            // Only the first listener (the edge's device listener) is shared with other processes:
            // an admin or notify port shared by several would answer for one of them at random.
            let reuse_port = config.reuse_port && i == 0;
            let in_use = |e: io::Error| {
                if e.kind() == io::ErrorKind::AddrInUse {
                    let hint = if reuse_port {
                        "something without SO_REUSEPORT (or of another user) listens there"
                    } else if i == 0 {
                        "another process listens there; to run several edges on one port, give each --reuse-port"
                    } else {
                        "another process listens there (only the device port can be shared: give each edge its own admin and notify ports)"
                    };
                    io::Error::new(e.kind(), format!("{} is in use: {hint}", l.addr))
                } else {
                    io::Error::new(e.kind(), format!("binding {}: {e}", l.addr))
                }
            };
            // Without `reuse_port`, a plain bind first: it fails when anything listens there (a
            // second edge would otherwise join and split the traffic). The cores then get one
            // SO_REUSEPORT socket each all the same (one socket shared by io_uring rings sends
            // every connection to the first core's multishot accept), with two guards: the port
            // is claimed (an edge that opts in refuses to join it) and the group's BPF program
            // only ever picks this process's sockets (nothing else that joins gets a connection).
            let taken_by_an_exclusive_edge = |e: io::Error| {
                let what = if i == 0 {
                    "an edge started without --reuse-port: it does not share the port"
                } else {
                    "another edge (only the device port can be shared: give each edge its own admin and notify ports)"
                };
                io::Error::new(e.kind(), format!("{} is in use by {what}", l.addr))
            };
            // The claim comes before the bind: a runtime that opts in and checks after it cannot
            // slip in between. Port 0 is claimed once the kernel has chosen the port.
            let mut claim = |addr: SocketAddr| match net::claim_port(addr) {
                Ok(c) => {
                    claims.push(c);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    Err(taken_by_an_exclusive_edge(e))
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot claim the port (no Unix sockets?): an edge started with --reuse-port could join it");
                    Ok(())
                }
            };
            let bind_at = if reuse_port {
                if l.addr.port() != 0 {
                    net::check_unclaimed(l.addr).map_err(taken_by_an_exclusive_edge)?;
                }
                l.addr
            } else {
                if l.addr.port() != 0 {
                    claim(l.addr)?;
                }
                let probe = net::exclusive_listener(l.addr, config.backlog).map_err(in_use)?;
                probe.local_addr()?
            };
            let first = net::reuseport_listener(bind_at, config.backlog).map_err(in_use)?;
            let actual = first.local_addr()?;
            addrs.push(actual);
            if !reuse_port && l.addr.port() == 0 {
                claim(actual)?;
            }
            for listeners in per_core.iter_mut().skip(1) {
                listeners.push(net::reuseport_listener(actual, config.backlog).map_err(in_use)?);
            }
            if !reuse_port {
                net::keep_reuseport_group(&first, workers)?;
            }
            per_core[0].push(first);
        }
        let boxes = mailbox::mailboxes::<A::Msg>(workers, config.mailbox_capacity)?;
        let shared = Arc::new(RunShared {
            stop: AtomicBool::new(false),
            drain: config.drain,
            uring: config.uring,
            reaped_at_exit: std::sync::atomic::AtomicUsize::new(0),
            open_while_draining: config.open_while_draining.clone(),
        });
        let wakeups = boxes
            .iter()
            .map(|(_, inbox)| inbox.wakeup.clone())
            .collect();
        let stop = StopHandle {
            shared: shared.clone(),
            wakeups,
        };
        let make_app = Arc::new(make_app);
        let tls: Vec<Option<ListenerTls>> =
            config.listeners.iter().map(|l| l.tls.clone()).collect();
        let mut threads = Vec::new();
        for (core, ((outbox, inbox), listeners)) in boxes.into_iter().zip(per_core).enumerate() {
            let shared = shared.clone();
            let make_app = make_app.clone();
            let tls = tls.clone();
            let pin = config.pin;
            let max_pending = config.max_pending_input_bytes;
            let linger = config.linger;
            let handle = std::thread::Builder::new()
                .name(format!("m2m-core-{core}"))
                .spawn(move || {
                    if pin && let Err(e) = net::pin_to_cpu(core) {
                        tracing::warn!(core, error = %e, "could not pin the worker");
                    }
                    let app = make_app(core);
                    let st = core::CoreState::new(core, outbox, tls, max_pending, linger);
                    let mut c = core::Core::new(app, st);
                    let result = match driver {
                        DriverKind::Epoll => driver::epoll::run(&mut c, &inbox, listeners, &shared),
                        DriverKind::Uring => driver::uring::run(&mut c, &inbox, listeners, &shared),
                    };
                    if let Err(e) = &result {
                        tracing::error!(core, error = %e, "core loop failed");
                    }
                    result
                })?;
            threads.push(handle);
        }
        Ok(Runtime {
            threads,
            stop,
            driver,
            addrs,
            _claims: claims,
        })
    }

    /// The bound address of each listener (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn driver(&self) -> DriverKind {
        self.driver
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Wait for every core to finish (after [`StopHandle::shutdown`]).
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("a core panicked")),
            }
        }
        result
    }
}

/// Stop `handle` on SIGTERM or SIGINT (a thread waits for the signals).
pub fn stop_on_signals(handle: StopHandle) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    std::thread::Builder::new()
        .name("m2m-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "shutdown requested");
                handle.shutdown();
            }
        })?;
    Ok(())
}
