//! What both drivers share: the per-core connection table, output queues, timers, mailbox and TLS,
//! and the [`Cx`] through which the app acts. A driver only moves bytes: it tells the core what the
//! kernel delivered (`on_accepted`, `on_received`, `on_eof`, `on_connected`) and carries out what the
//! core queued (`take_actions`, output of dirty connections).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::{App, CloseReason, ConnId};
use crate::mailbox::{Inbox, Outbox};
use crate::timer::{TimerId, TimerWheel};
use crate::tls;

/// What a timer carries: an app token or a runtime deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimerKind {
    App(u64),
    ConnectTimeout(ConnId),
    /// End of a lingering close.
    Linger(ConnId),
}

/// Connection lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnState {
    Connecting,
    Open,
    /// Close once the output is flushed.
    Closing,
}

/// One connection's runtime state. Idle and fully flushed, it owns no buffer.
#[derive(Debug)]
pub(crate) struct Conn {
    pub generation: u32,
    pub fd: OwnedFd,
    pub state: ConnState,
    /// Unconsumed input (a partial frame), or decrypted plaintext for TLS.
    pub input: Vec<u8>,
    /// Bytes waiting to be written.
    pub output: Vec<u8>,
    /// A send owned by the kernel is in flight (io_uring).
    pub sending: bool,
    pub tls: Option<tls::Tls>,
    pub connect_timer: Option<TimerId>,
    /// Driver-private flags (e.g. receive armed, writable interest).
    pub driver_flags: u32,
    pub dirty: bool,
    /// Why the connection closes once flushed (default: the app closed it).
    pub close_reason: Option<CloseReason>,
    /// Our side is shut down (FIN sent) and the peer's remaining input is being read and dropped,
    /// so that closing with unread data does not turn into a reset that can destroy our last frames.
    pub lingering: bool,
}

/// A connection closed this turn: its descriptor, for the driver to close, and what it may still
/// have in the kernel.
#[derive(Debug)]
pub(crate) struct Closed {
    pub id: ConnId,
    pub fd: OwnedFd,
    pub driver_flags: u32,
    /// A send or a connect was in flight.
    pub busy: bool,
}

/// Things the driver must do after the app ran.
#[derive(Debug)]
pub(crate) enum Action {
    /// Start connecting `conn` to this address (kept here, not in every connection).
    Connect(ConnId, SocketAddr),
    /// Close now (output flushed or dropped).
    Close(ConnId, CloseReason),
}

/// Counters a core keeps (read by the app or exported by the edge).
#[derive(Debug, Default, Clone, Copy)]
pub struct CoreStats {
    pub accepted: u64,
    pub closed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub loop_turns: u64,
    /// Nanoseconds the loop spent blocked in the kernel waiting for I/O or a timer: the rest of the
    /// wall time is the core's utilisation.
    pub wait_ns: u64,
    /// Receive-buffer ring exhaustion events (io_uring) and re-arms they caused.
    pub buffer_exhaustion: u64,
    pub short_writes: u64,
}

/// TLS settings of a listener.
#[derive(Debug, Clone)]
pub struct ListenerTls(pub Arc<rustls::ServerConfig>);

/// TLS for an outbound connection.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

/// The per-core state the app reaches through [`Cx`].
#[derive(Debug)]
pub struct CoreState<M> {
    pub(crate) core: usize,
    pub(crate) now: Instant,
    pub(crate) slots: Vec<Option<Conn>>,
    pub(crate) generations: Vec<u32>,
    pub(crate) free: Vec<u32>,
    pub(crate) live: usize,
    pub(crate) timers: TimerWheel<TimerKind>,
    pub(crate) outbox: Outbox<M>,
    pub(crate) dirty: Vec<ConnId>,
    pub(crate) actions: Vec<Action>,
    pub(crate) pool: Vec<Vec<u8>>,
    pub(crate) listener_tls: Vec<Option<ListenerTls>>,
    pub(crate) max_pending_input: usize,
    /// How long a closing connection reads and drops the peer's input before it is closed.
    pub(crate) linger: std::time::Duration,
    pub(crate) shutting_down: bool,
    /// Connections closed this turn: their descriptors, which the driver closes (the uring driver
    /// cancels every operation on one, and closes it only once every SQE naming it has gone to
    /// the kernel).
    pub(crate) closed: Vec<Closed>,
    /// Listeners whose accept failed for want of descriptors or memory, and when to try again.
    pub(crate) accept_paused: Vec<(usize, Instant)>,
    /// Accept failures since the last log line (logged once per pause, with the count).
    pub(crate) accept_failures: u64,
    pub stats: CoreStats,
}

/// How long a listener rests after an accept failed for want of descriptors or memory: accepting
/// again at once would spin (uring re-arms, level-triggered readiness), and waiting for the next
/// connection would leave the ones already queued behind (edge-triggered readiness).
pub(crate) const ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether an accept error is about this process's resources (descriptors, memory): worth a pause.
pub(crate) fn accept_starved(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Make room for one more entry in a per-connection table, growing it by a fixed step instead of
/// doubling: a doubled table of 9,000 connections holds capacity for 16,384, and the allocator may
/// touch all of it. Reallocation every `STEP` pushes copies little next to what the table holds.
pub fn reserve_linear<T>(table: &mut Vec<T>) {
    const STEP: usize = 1024;
    if table.len() == table.capacity() {
        table.reserve_exact(STEP);
    }
}

/// Buffers kept for reuse per core, and the largest capacity worth keeping.
const POOL_MAX: usize = 256;
const POOL_BUF_MAX: usize = 64 * 1024;

impl<M> CoreState<M> {
    /// Listener `i` could not accept for want of `e` (descriptors, memory): rest it for
    /// [`ACCEPT_PAUSE`], logging once per pause.
    pub(crate) fn pause_accept(&mut self, i: usize, e: &io::Error) {
        self.accept_failures += 1;
        if self.accept_paused.iter().any(|(l, _)| *l == i) {
            return;
        }
        tracing::warn!(
            core = self.core,
            listener = i,
            error = %e,
            failures = self.accept_failures,
            "accept failed: resting the listener for 100 ms (connections wait in the backlog)"
        );
        self.accept_failures = 0;
        self.accept_paused.push((i, self.now + ACCEPT_PAUSE));
    }

    /// Listeners whose rest is over (taken off the list).
    pub(crate) fn accepts_due(&mut self) -> Vec<usize> {
        let now = self.now;
        let due: Vec<usize> = self
            .accept_paused
            .iter()
            .filter(|(_, at)| *at <= now)
            .map(|(i, _)| *i)
            .collect();
        self.accept_paused.retain(|(_, at)| *at > now);
        due
    }

    /// The earliest timer or accept retry.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        let retry = self.accept_paused.iter().map(|(_, at)| *at).min();
        match (self.timers.next_deadline(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn new(
        core: usize,
        outbox: Outbox<M>,
        listener_tls: Vec<Option<ListenerTls>>,
        max_pending_input: usize,
        linger: std::time::Duration,
    ) -> Self {
        let now = Instant::now();
        Self {
            core,
            now,
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            live: 0,
            timers: TimerWheel::new(now),
            outbox,
            dirty: Vec::new(),
            actions: Vec::new(),
            pool: Vec::new(),
            listener_tls,
            max_pending_input,
            linger,
            shutting_down: false,
            closed: Vec::new(),
            accept_paused: Vec::new(),
            accept_failures: 0,
            stats: CoreStats::default(),
        }
    }

    pub(crate) fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.slots
            .get(id.index())?
            .as_ref()
            .filter(|c| c.generation == id.generation())
    }

    pub(crate) fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slots
            .get_mut(id.index())?
            .as_mut()
            .filter(|c| c.generation == id.generation())
    }

    /// Find a connection by slot index alone (drivers that carry only the index).
    pub(crate) fn id_at(&self, index: usize) -> Option<ConnId> {
        let c = self.slots.get(index)?.as_ref()?;
        Some(ConnId::new(index as u32, c.generation))
    }

    pub(crate) fn insert(&mut self, fd: OwnedFd, state: ConnState) -> ConnId {
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                reserve_linear(&mut self.slots);
                reserve_linear(&mut self.generations);
                self.slots.push(None);
                self.generations.push(0);
                self.slots.len() - 1
            }
        };
        let generation = self.generations[index].wrapping_add(1);
        self.generations[index] = generation;
        self.slots[index] = Some(Conn {
            generation,
            fd,
            state,
            input: Vec::new(),
            output: Vec::new(),
            sending: false,
            tls: None,
            connect_timer: None,
            driver_flags: 0,
            dirty: false,
            close_reason: None,
            lingering: false,
        });
        self.live += 1;
        ConnId::new(index as u32, generation)
    }

    /// Free the slot; returns the connection (its fd closes when dropped).
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let slot = self.slots.get_mut(id.index())?;
        if slot
            .as_ref()
            .is_none_or(|c| c.generation != id.generation())
        {
            return None;
        }
        let conn = slot.take()?;
        self.free.push(id.index() as u32);
        self.live -= 1;
        Some(conn)
    }

    pub(crate) fn mark_dirty(&mut self, id: ConnId) {
        if let Some(c) = self.conn_mut(id)
            && !c.dirty
        {
            c.dirty = true;
            self.dirty.push(id);
        }
    }

    /// A buffer from the pool (or a new one).
    pub(crate) fn take_buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_default()
    }

    /// Return a buffer to the pool; oversized ones are freed so the pool stays small.
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > POOL_BUF_MAX || self.pool.len() >= POOL_MAX {
            return;
        }
        buf.clear();
        self.pool.push(buf);
    }

    /// The connection at `index` (live, checked by the caller) with an output buffer: an idle
    /// connection owns none, so one comes from the pool.
    fn with_output(&mut self, index: usize) -> &mut Conn {
        if self.slots[index]
            .as_ref()
            .is_some_and(|c| c.output.capacity() == 0)
        {
            let buf = self.take_buffer();
            self.slots[index].as_mut().expect("checked").output = buf;
        }
        self.slots[index].as_mut().expect("checked")
    }

    /// Let `write` append to a connection's output directly (plain connections), or to a pooled
    /// buffer that is then encrypted (TLS): the caller's encoder writes where the bytes will be sent
    /// from, with no buffer of its own to copy from.
    fn queue_output_with(&mut self, id: ConnId, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        let Some(index) = self.conn(id).map(|_| id.index()) else {
            return false;
        };
        if self.slots[index].as_ref().is_some_and(|c| c.tls.is_some()) {
            let mut plain = self.take_buffer();
            write(&mut plain);
            let ok = self.queue_output(id, &plain);
            self.recycle(plain);
            return ok;
        }
        write(&mut self.with_output(index).output);
        self.mark_dirty(id);
        true
    }

    /// Append to a connection's output (through TLS when present).
    fn queue_output(&mut self, id: ConnId, bytes: &[u8]) -> bool {
        let Some(index) = self.conn(id).map(|_| id.index()) else {
            return false;
        };
        let conn = self.with_output(index);
        match conn.tls.as_mut() {
            Some(t) => {
                if let Err(e) = t.send(bytes, &mut conn.output) {
                    conn.state = ConnState::Closing;
                    conn.close_reason = Some(CloseReason::Tls(e.to_string()));
                    self.mark_dirty(id);
                    return false;
                }
            }
            None => conn.output.extend_from_slice(bytes),
        }
        self.mark_dirty(id);
        true
    }
}

/// The app's handle on its core during a callback.
#[derive(Debug)]
pub struct Cx<'a, M> {
    pub(crate) st: &'a mut CoreState<M>,
}

impl<M> Cx<'_, M> {
    /// The time the current loop turn started.
    pub fn now(&self) -> Instant {
        self.st.now
    }

    /// This core's number (0-based).
    pub fn core(&self) -> usize {
        self.st.core
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.st.outbox.cores()
    }

    /// Connections open on this core.
    pub fn connections(&self) -> usize {
        self.st.live
    }

    pub fn stats(&self) -> CoreStats {
        self.st.stats
    }

    /// Whether the runtime is draining for shutdown.
    pub fn shutting_down(&self) -> bool {
        self.st.shutting_down
    }

    /// Queue bytes on `conn` (encrypted when it is TLS). Batched: written when the loop turn ends.
    /// Returns false when the connection is gone.
    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) -> bool {
        self.st
            .conn(conn)
            .is_some_and(|c| c.state != ConnState::Closing)
            && self.st.queue_output(conn, bytes)
    }

    /// Like [`Cx::send`], but `write` appends the bytes itself, straight into the connection's
    /// output buffer (an encoder framing a message writes once, where it is sent from).
    pub fn send_with(&mut self, conn: ConnId, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        self.st
            .conn(conn)
            .is_some_and(|c| c.state != ConnState::Closing)
            && self.st.queue_output_with(conn, write)
    }

    /// Bytes queued on `conn` and not yet written (for backpressure decisions).
    pub fn pending_output(&self, conn: ConnId) -> usize {
        self.st.conn(conn).map_or(0, |c| {
            c.output.len() + c.tls.as_ref().map_or(0, |t| t.held_plaintext())
        })
    }

    /// Close `conn` once its queued output is written; `on_close` follows.
    pub fn close(&mut self, conn: ConnId) {
        let Some(c) = self.st.conn_mut(conn) else {
            return;
        };
        if c.state == ConnState::Closing {
            return;
        }
        if let Some(t) = c.tls.as_mut() {
            let _ = t.close_notify(&mut c.output);
        }
        c.state = ConnState::Closing;
        self.st.mark_dirty(conn);
    }

    /// Close `conn` now, dropping queued output.
    pub fn abort(&mut self, conn: ConnId) {
        if let Some(c) = self.st.conn_mut(conn) {
            c.output.clear();
            c.state = ConnState::Closing;
            self.st
                .actions
                .push(Action::Close(conn, CloseReason::Local));
        }
    }

    /// Open a connection to `addr` (optionally TLS), failing with `TimedOut` after `timeout`.
    /// `on_connect` reports the result.
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        tls: Option<ClientTls>,
        timeout: Duration,
    ) -> io::Result<ConnId> {
        self.connect_from(addr, None, tls, timeout)
    }

    /// [`Cx::connect`] from the local address `source` (any free port on it). The port is chosen at
    /// connect time (`IP_BIND_ADDRESS_NO_PORT`), so one source address serves ~28,000 connections to
    /// each destination rather than ~28,000 in all.
    pub fn connect_from(
        &mut self,
        addr: SocketAddr,
        source: Option<std::net::IpAddr>,
        tls: Option<ClientTls>,
        timeout: Duration,
    ) -> io::Result<ConnId> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_nonblocking(true)?;
        crate::net::tune(socket2::SockRef::from(&socket))?;
        if let Some(ip) = source {
            crate::net::bind_address_no_port(&socket)?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
        }
        socket.set_cloexec(true)?;
        // TLS first: a failure leaves nothing registered behind.
        let tls = match tls {
            Some(t) => {
                let client = rustls::ClientConnection::new(t.config, t.server_name)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                // Plaintext sent before the handshake completes is buffered in rustls.
                Some(tls::Tls::client(client))
            }
            None => None,
        };
        let fd: OwnedFd = socket.into();
        let id = self.st.insert(fd, ConnState::Connecting);
        let timer = self
            .st
            .timers
            .insert(self.st.now + timeout, TimerKind::ConnectTimeout(id));
        let conn = self.st.conn_mut(id).expect("just inserted");
        conn.connect_timer = Some(timer);
        conn.tls = tls;
        self.st.actions.push(Action::Connect(id, addr));
        Ok(id)
    }

    /// Start TLS as a client on an open plain connection (after an HTTP CONNECT tunnel is up).
    pub fn start_tls(&mut self, conn: ConnId, tls: ClientTls) -> io::Result<()> {
        let c = self
            .st
            .conn_mut(conn)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let inner = rustls::ClientConnection::new(tls.config, tls.server_name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut client = tls::Tls::client(inner);
        client.flush(&mut c.output)?;
        c.tls = Some(client);
        self.st.mark_dirty(conn);
        Ok(())
    }

    /// The peer's certificate chain on a TLS connection (after the handshake).
    pub fn peer_certificates(
        &self,
        conn: ConnId,
    ) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
        let tls = self.st.conn(conn)?.tls.as_ref()?;
        tls.peer_certificates()
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
    }

    /// Whether `conn` is TLS and still handshaking.
    pub fn tls_handshaking(&self, conn: ConnId) -> bool {
        self.st
            .conn(conn)
            .and_then(|c| c.tls.as_ref())
            .is_some_and(|t| t.is_handshaking())
    }

    /// Arm a timer; `on_timer(token)` fires at or after `at`.
    pub fn set_timer(&mut self, at: Instant, token: u64) -> TimerId {
        self.st.timers.insert(at, TimerKind::App(token))
    }

    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.st.timers.cancel(id)
    }

    /// Send `msg` to core `to`; a full queue gives it back.
    pub fn post(&mut self, to: usize, msg: M) -> Result<(), M> {
        self.st.outbox.post(to, msg)
    }
}

/// One core: the app and the shared state.
#[derive(Debug)]
pub struct Core<A: App> {
    pub app: A,
    pub st: CoreState<A::Msg>,
    fired: Vec<TimerKind>,
}

impl<A: App> Core<A> {
    pub(crate) fn new(app: A, st: CoreState<A::Msg>) -> Self {
        Self {
            app,
            st,
            fired: Vec::new(),
        }
    }

    fn cx(&mut self) -> (&mut A, Cx<'_, A::Msg>) {
        (&mut self.app, Cx { st: &mut self.st })
    }

    /// A new inbound connection.
    pub(crate) fn on_accepted(
        &mut self,
        fd: OwnedFd,
        peer: SocketAddr,
        listener: usize,
    ) -> Option<ConnId> {
        let _ = crate::net::tune(socket2::SockRef::from(&fd));
        let tls_config = self.st.listener_tls.get(listener).cloned().flatten();
        let id = self.st.insert(fd, ConnState::Open);
        self.st.stats.accepted += 1;
        if let Some(ListenerTls(config)) = tls_config {
            match tls::Tls::server(config) {
                Ok(s) => self.st.conn_mut(id).expect("inserted").tls = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "TLS session setup failed");
                    self.st.remove(id);
                    return None;
                }
            }
        }
        let (app, mut cx) = self.cx();
        app.on_accept(&mut cx, id, listener, peer);
        Some(id)
    }

    /// Bytes from the kernel for `id` (`data` may be modified: it is the driver's buffer).
    pub(crate) fn on_received(&mut self, id: ConnId, data: &mut [u8]) {
        self.st.stats.bytes_in += data.len() as u64;
        let Some(conn) = self.st.conn_mut(id) else {
            return;
        };
        if conn.state == ConnState::Closing && conn.tls.as_ref().is_none_or(|t| !t.is_handshaking())
        {
            // Closing: the app does not want more input. Nor does TLS once its handshake is done:
            // our close_notify (or fatal alert) is queued, and rustls must not be driven into a
            // second alert by what the peer sends meanwhile. A handshake still going on is
            // driven on, so that what the app queued before it is encrypted and sent.
            return;
        }
        let mut input = std::mem::take(&mut conn.input);
        let mut peer_closed = false;
        if let Some(t) = conn.tls.as_mut() {
            let mut out = std::mem::take(&mut conn.output);
            let result = t.receive(data, &mut input, &mut out);
            conn.output = out;
            let has_output = !conn.output.is_empty();
            match result {
                Ok(tls::TlsInput::Open) => {}
                Ok(tls::TlsInput::PeerClosed) => peer_closed = true,
                Err(e) => {
                    // Send the alert rustls queued, then close.
                    conn.input = input;
                    conn.state = ConnState::Closing;
                    // The first failure is the reason; later input only repeats "failed".
                    conn.close_reason.get_or_insert(CloseReason::Tls(e));
                    self.st.mark_dirty(id);
                    return;
                }
            }
            if has_output {
                self.st.mark_dirty(id);
            }
            self.deliver(id, input);
        } else if input.is_empty() {
            // Fast path: hand the driver's buffer straight to the app; keep only what it left.
            let (app, mut cx) = self.cx();
            let used = app.on_data(&mut cx, id, data).min(data.len());
            if used < data.len() {
                let rest = &data[used..];
                if rest.len() > self.st.max_pending_input {
                    self.close_now(id, CloseReason::InputOverflow);
                    return;
                }
                let buf = self.st.take_buffer();
                if let Some(conn) = self.st.conn_mut(id) {
                    let mut buf = buf;
                    buf.extend_from_slice(rest);
                    conn.input = buf;
                }
            }
        } else {
            input.extend_from_slice(data);
            self.deliver(id, input);
        }
        if peer_closed {
            self.on_eof(id, CloseReason::PeerClosed);
        }
    }

    /// Give `input` (owned) to the app and keep what it did not consume.
    fn deliver(&mut self, id: ConnId, mut input: Vec<u8>) {
        let used = if input.is_empty() {
            0
        } else {
            let (app, mut cx) = self.cx();
            app.on_data(&mut cx, id, &mut input).min(input.len())
        };
        input.drain(..used);
        if input.len() > self.st.max_pending_input {
            self.close_now(id, CloseReason::InputOverflow);
            return;
        }
        if input.is_empty() {
            self.st.recycle(input);
            return;
        }
        match self.st.conn_mut(id) {
            Some(conn) => conn.input = input,
            None => self.st.recycle(input),
        }
    }

    /// The peer closed or the socket failed.
    pub(crate) fn on_eof(&mut self, id: ConnId, reason: CloseReason) {
        self.close_now(id, reason);
    }

    /// Remove the connection and tell the app (once). Its descriptor goes to the driver
    /// (`st.closed`), not closed here: an SQE built from it this turn may not be submitted yet.
    pub(crate) fn close_now(&mut self, id: ConnId, reason: CloseReason) {
        let Some(mut conn) = self.st.remove(id) else {
            return;
        };
        self.st.stats.closed += 1;
        let reason = if conn.lingering {
            conn.close_reason.take().unwrap_or(CloseReason::Local)
        } else {
            reason
        };
        if let Some(t) = conn.connect_timer.take() {
            self.st.timers.cancel(t);
        }
        let connecting = conn.state == ConnState::Connecting;
        let input = std::mem::take(&mut conn.input);
        self.st.recycle(input);
        let output = std::mem::take(&mut conn.output);
        self.st.recycle(output);
        self.st.closed.push(Closed {
            id,
            busy: conn.sending || connecting,
            driver_flags: conn.driver_flags,
            fd: conn.fd,
        });
        let (app, mut cx) = self.cx();
        if connecting {
            let kind = match &reason {
                CloseReason::Io(k) => *k,
                _ => io::ErrorKind::ConnectionAborted,
            };
            app.on_connect(&mut cx, id, Err(io::Error::from(kind)));
        } else {
            app.on_close(&mut cx, id, reason);
        }
    }

    /// An outbound connect finished.
    pub(crate) fn on_connected(&mut self, id: ConnId, result: io::Result<()>) {
        let Some(conn) = self.st.conn_mut(id) else {
            return;
        };
        if let Some(t) = conn.connect_timer.take() {
            self.st.timers.cancel(t);
        }
        match result {
            Ok(()) => {
                let conn = self.st.conn_mut(id).expect("checked");
                conn.state = ConnState::Open;
                if let Some(t) = conn.tls.as_mut() {
                    let _ = t.flush(&mut conn.output);
                }
                self.st.mark_dirty(id);
                let (app, mut cx) = self.cx();
                app.on_connect(&mut cx, id, Ok(()));
            }
            Err(e) => {
                self.close_now(id, CloseReason::Io(e.kind()));
            }
        }
    }

    /// Run due timers.
    pub(crate) fn run_timers(&mut self) {
        let mut fired = std::mem::take(&mut self.fired);
        self.st.timers.expire(self.st.now, &mut fired);
        for kind in fired.drain(..) {
            match kind {
                TimerKind::App(token) => {
                    let (app, mut cx) = self.cx();
                    app.on_timer(&mut cx, token);
                }
                TimerKind::Linger(id) => {
                    if self.st.conn(id).is_some_and(|c| c.lingering) {
                        self.st.actions.push(Action::Close(id, CloseReason::Local));
                    }
                }
                TimerKind::ConnectTimeout(id) => {
                    if let Some(c) = self.st.conn_mut(id) {
                        c.connect_timer = None;
                        self.st
                            .actions
                            .push(Action::Close(id, CloseReason::Io(io::ErrorKind::TimedOut)));
                    }
                }
            }
        }
        self.fired = fired;
    }

    /// Deliver cross-core messages.
    pub(crate) fn drain_inbox(&mut self, inbox: &Inbox<A::Msg>) {
        let (app, mut cx) = self.cx();
        inbox.drain(|from, msg| app.on_message(&mut cx, from, msg));
    }

    /// Start draining.
    pub(crate) fn begin_shutdown(&mut self) {
        if self.st.shutting_down {
            return;
        }
        self.st.shutting_down = true;
        let (app, mut cx) = self.cx();
        app.on_shutdown(&mut cx);
    }

    /// Connections with output to write or a close to perform, in the order they became dirty.
    pub(crate) fn take_dirty(&mut self, into: &mut Vec<ConnId>) {
        into.clear();
        std::mem::swap(into, &mut self.st.dirty);
        for id in into.iter() {
            if let Some(c) = self.st.conn_mut(*id) {
                c.dirty = false;
            }
        }
    }

    /// After a write: close a `Closing` connection whose output is flushed.
    pub(crate) fn close_if_flushed(&mut self, id: ConnId) {
        let done = self
            .st
            .conn(id)
            .is_some_and(|c| c.state == ConnState::Closing && c.output.is_empty() && !c.sending);
        if done && !self.st.linger.is_zero() {
            // Lingering close: send FIN, keep reading (and dropping) until the peer's FIN or the
            // linger time, then close. The close finishes in `on_eof` or the linger timer.
            let at = self.st.now + self.st.linger;
            let Some(c) = self.st.conn_mut(id) else {
                return;
            };
            if c.lingering {
                return;
            }
            c.lingering = true;
            let _ = socket2::SockRef::from(&c.fd).shutdown(std::net::Shutdown::Write);
            self.st.timers.insert(at, TimerKind::Linger(id));
            return;
        }
        if done {
            let reason = self
                .st
                .conn_mut(id)
                .and_then(|c| c.close_reason.take())
                .unwrap_or(CloseReason::Local);
            self.close_now(id, reason);
        }
    }

    /// Drop a connection's emptied output buffer back into the pool, so an idle connection owns none.
    pub(crate) fn release_output(&mut self, id: ConnId) {
        let buf = match self.st.conn_mut(id) {
            Some(c) if c.output.is_empty() && c.output.capacity() > 0 => {
                std::mem::take(&mut c.output)
            }
            _ => return,
        };
        self.st.recycle(buf);
    }

    pub(crate) fn fd_of(&self, id: ConnId) -> Option<RawFd> {
        self.st.conn(id).map(|c| c.fd.as_raw_fd())
    }

    /// Close every remaining connection (drain deadline passed).
    pub(crate) fn close_all(&mut self) {
        let ids: Vec<ConnId> = (0..self.st.slots.len())
            .filter_map(|i| self.st.id_at(i))
            .collect();
        for id in ids {
            self.close_now(id, CloseReason::Shutdown);
        }
    }
}
