//! The epoll driver, on `mio`: for kernels or sandboxes where io_uring is not allowed.
//!
//! One 64 KiB read buffer per core serves every connection; a connection keeps bytes of its own only
//! while the app leaves a partial frame unconsumed. mio is edge-triggered, so each readiness event
//! reads until `EAGAIN`.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::app::{App, CloseReason, ConnId};
use crate::core::{ConnState, Core};
use crate::mailbox::Inbox;
use crate::{RunShared, driver};

const WAKE: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 1;
const WRITABLE: u32 = 1;
const READ_BUFFER: usize = 64 * 1024;

fn listener_token(i: usize) -> Token {
    Token(LISTENER_BASE - i)
}

fn register(poll: &Poll, fd: RawFd, index: usize, interest: Interest) -> io::Result<()> {
    poll.registry()
        .register(&mut SourceFd(&fd), Token(index), interest)
}

pub(crate) fn run<A: App>(
    core: &mut Core<A>,
    inbox: &Inbox<A::Msg>,
    listeners: Vec<TcpListener>,
    shared: &RunShared,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listeners: Vec<Option<TcpListener>> = listeners.into_iter().map(Some).collect();
    for (i, l) in listeners.iter().enumerate() {
        let fd = l.as_ref().expect("present").as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), listener_token(i), Interest::READABLE)?;
    }
    let wake_fd = inbox.wakeup.raw_fd();
    poll.registry()
        .register(&mut SourceFd(&wake_fd), WAKE, Interest::READABLE)?;
    let mut read_buf = vec![0u8; READ_BUFFER];
    let mut dirty = Vec::new();
    let mut drain_deadline: Option<Instant> = None;

    loop {
        let now = Instant::now();
        let timeout = driver::sleep_for(now, core.st.next_wakeup(), drain_deadline);
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        core.st.now = Instant::now();
        for i in core.st.accepts_due() {
            accept_all(core, &poll, &listeners, i);
        }
        core.st.stats.loop_turns += 1;
        core.st.stats.wait_ns += core.st.now.saturating_duration_since(now).as_nanos() as u64;
        for ev in events.iter() {
            match ev.token() {
                WAKE => core.drain_inbox(inbox),
                Token(t) if t > LISTENER_BASE - listeners.len() && t <= LISTENER_BASE => {
                    let i = LISTENER_BASE - t;
                    accept_all(core, &poll, &listeners, i);
                }
                Token(index) => {
                    let Some(id) = core.st.id_at(index) else {
                        continue;
                    };
                    let connecting = core
                        .st
                        .conn(id)
                        .is_some_and(|c| c.state == ConnState::Connecting);
                    if connecting {
                        if ev.is_writable() || ev.is_error() || ev.is_write_closed() {
                            finish_connect(core, &poll, id);
                        }
                        continue;
                    }
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        read_all(core, id, &mut read_buf);
                    }
                    if ev.is_writable() {
                        flush(core, &poll, id);
                    }
                }
            }
        }
        core.run_timers();
        driver::settle(&mut EpollTurn { core, poll: &poll }, &mut dirty);
        core.st.closed.clear();

        if shared.stop_requested() && !core.st.shutting_down {
            for (i, l) in listeners.iter_mut().enumerate() {
                if !shared.closes_at_drain(i) {
                    continue;
                }
                if let Some(l) = l.take() {
                    let fd = l.as_raw_fd();
                    let _ = poll.registry().deregister(&mut SourceFd(&fd));
                    tracing::debug!(core = core.st.core, listener = i, "stopped accepting");
                }
            }
            core.begin_shutdown();
            drain_deadline = Some(core.st.now + shared.drain);
            driver::settle(&mut EpollTurn { core, poll: &poll }, &mut dirty);
            core.st.closed.clear();
        }
        if let Some(deadline) = drain_deadline
            && (core.st.live == 0 || Instant::now() >= deadline)
        {
            core.close_all();
            core.st.closed.clear();
            return Ok(());
        }
    }
}

fn accept_all<A: App>(
    core: &mut Core<A>,
    poll: &Poll,
    listeners: &[Option<TcpListener>],
    i: usize,
) {
    let Some(listener) = listeners[i].as_ref() else {
        return;
    };
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                if stream.set_nonblocking(true).is_err() {
                    continue;
                }
                // SAFETY: the descriptor comes from a TcpStream we own and release here.
                let fd = unsafe { OwnedFd::from_raw_fd(stream.into_raw_fd()) };
                let raw = fd.as_raw_fd();
                if let Some(id) = core.on_accepted(fd, peer, i)
                    && core.st.conn(id).is_some()
                    && let Err(e) = register(poll, raw, id.index(), Interest::READABLE)
                {
                    core.close_now(id, CloseReason::Io(e.kind()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if crate::core::accept_starved(&e) => {
                // Readiness is edge-triggered: the queued connections would wait for the next one
                // to arrive. Try again after a rest instead.
                core.st.pause_accept(i, &e);
                return;
            }
            Err(e) => {
                // A connection that died in the backlog and the like: the next one is fine.
                tracing::debug!(core = core.st.core, error = %e, "accept failed");
                continue;
            }
        }
    }
}

fn read_all<A: App>(core: &mut Core<A>, id: ConnId, buf: &mut [u8]) {
    loop {
        let Some(fd) = core.fd_of(id) else { return };
        // SAFETY: reads into our live buffer of `buf.len()` bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 {
            core.on_received(id, &mut buf[..n as usize]);
            continue;
        }
        if n == 0 {
            core.on_eof(id, CloseReason::PeerClosed);
            return;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return,
            io::ErrorKind::Interrupted => continue,
            kind => {
                core.on_eof(id, CloseReason::Io(kind));
                return;
            }
        }
    }
}

fn flush<A: App>(core: &mut Core<A>, poll: &Poll, id: ConnId) {
    loop {
        let Some(conn) = core.st.conn_mut(id) else {
            return;
        };
        if conn.output.is_empty() || conn.state == ConnState::Connecting {
            break;
        }
        let fd = conn.fd.as_raw_fd();
        // SAFETY: sends from the connection's live output buffer.
        let n = unsafe {
            libc::send(
                fd,
                conn.output.as_ptr().cast(),
                conn.output.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            let n = n as usize;
            let short = n < conn.output.len();
            conn.output.drain(..n);
            core.st.stats.bytes_out += n as u64;
            core.st.stats.short_writes += u64::from(short);
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {
                if conn.driver_flags & WRITABLE == 0 {
                    conn.driver_flags |= WRITABLE;
                    let _ = poll.registry().reregister(
                        &mut SourceFd(&fd),
                        Token(id.index()),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                }
                return;
            }
            kind => {
                core.close_now(id, CloseReason::Io(kind));
                return;
            }
        }
    }
    if let Some(conn) = core.st.conn_mut(id)
        && conn.driver_flags & WRITABLE != 0
        && conn.state != ConnState::Connecting
    {
        conn.driver_flags &= !WRITABLE;
        let fd = conn.fd.as_raw_fd();
        let _ =
            poll.registry()
                .reregister(&mut SourceFd(&fd), Token(id.index()), Interest::READABLE);
    }
    core.release_output(id);
    core.close_if_flushed(id);
}

/// The epoll side of the shared end of a loop turn.
struct EpollTurn<'a, A: App> {
    core: &'a mut Core<A>,
    poll: &'a Poll,
}

impl<A: App> driver::Turn<A> for EpollTurn<'_, A> {
    fn core(&mut self) -> &mut Core<A> {
        self.core
    }
    fn start_connect(&mut self, id: ConnId, addr: std::net::SocketAddr) {
        start_connect(self.core, self.poll, id, addr);
    }
    fn flush(&mut self, id: ConnId) {
        flush(self.core, self.poll, id);
    }
}

fn start_connect<A: App>(core: &mut Core<A>, poll: &Poll, id: ConnId, addr: std::net::SocketAddr) {
    let Some(conn) = core.st.conn(id) else { return };
    let fd = conn.fd.as_raw_fd();
    let result = socket2::SockRef::from(&conn.fd).connect(&addr.into());
    match result {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => {
            core.on_connected(id, Err(e));
            return;
        }
    }
    if let Err(e) = register(
        poll,
        fd,
        id.index(),
        Interest::READABLE | Interest::WRITABLE,
    ) {
        core.on_connected(id, Err(e));
        return;
    }
    if let Some(c) = core.st.conn_mut(id) {
        c.driver_flags |= WRITABLE;
    }
}

fn finish_connect<A: App>(core: &mut Core<A>, poll: &Poll, id: ConnId) {
    let Some(conn) = core.st.conn(id) else { return };
    let sock = socket2::SockRef::from(&conn.fd);
    let result = match sock.take_error() {
        Ok(None) => match sock.peer_addr() {
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        },
        Ok(Some(e)) | Err(e) => Err(e),
    };
    core.on_connected(id, result);
    // Back to read interest; `flush` re-adds writable interest if output is pending.
    if let Some(c) = core.st.conn_mut(id) {
        c.driver_flags &= !WRITABLE;
        let fd = c.fd.as_raw_fd();
        let _ =
            poll.registry()
                .reregister(&mut SourceFd(&fd), Token(id.index()), Interest::READABLE);
        core.st.mark_dirty(id);
    }
}
