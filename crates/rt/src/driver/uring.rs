//! The io_uring driver, on the `io-uring` crate.
//!
//! - **Accept:** one multishot accept per listener.
//! - **Receive:** one multishot receive per connection, selecting buffers from a provided-buffer ring
//!   (`IORING_REGISTER_PBUF_RING`) shared by the core's connections. An idle connection therefore owns
//!   no read buffer; a buffer is lent to it by the kernel only while data is being delivered, and
//!   returned to the ring as soon as the app has consumed (or copied the unconsumed rest of) it. When
//!   the ring runs dry the kernel ends the receive with `ENOBUFS`; the connection is re-armed after the
//!   turn's buffers are returned.
//! - **Send:** each dirty connection's output moves into an op slot and becomes one `SEND` SQE; all
//!   of a turn's sends go to the kernel in the same `io_uring_enter` that waits for the next events.
//!   Short writes put the rest back in front of anything queued meanwhile and send again.
//! - **Connect, cancel:** `CONNECT` with the address owned by the op slot; closing a connection cancels
//!   its multishot receive by user data.
//! - **Sleep:** `io_uring_enter` with a timeout argument (`EXT_ARG`): one kernel timeout per turn.
//! - **Wakeup:** a multishot poll on the core's eventfd.
//!
//! ## Who owns what, when (the invariants every `unsafe` block below relies on)
//!
//! - **SQE memory.** An SQE may point into our memory (a send's bytes, a connect's address). That
//!   memory moves into the op table ([`Ops`]) when the SQE is queued and leaves it only when the op's
//!   completion has been reaped: the kernel may read it any time in between. Receives point only
//!   into the provided-buffer ring, which lives as long as the ring; accepts, polls and cancels point
//!   to nothing of ours.
//! - **Descriptors.** An SQE names a connection's descriptor by number, and the kernel resolves the
//!   number when it *submits* the SQE, not when we queue it. A connection closed in a turn therefore
//!   does not close its descriptor at once: it waits in `graveyard` until the SQ is empty after the
//!   next `io_uring_enter`, so a queued send can never reach a socket that reused the number (a new
//!   link opened in the same turn). Once submitted, the kernel holds its own reference to the file,
//!   so closing the number alone would not close a socket with a send or connect pending: the close
//!   also cancels every operation on the descriptor (`ASYNC_CANCEL_FD | ALL`), queued while the
//!   number still names it. (This holds because no SQE is linked or forced async: the kernel
//!   resolves each descriptor inside the `io_uring_enter` that consumes the entry.)
//! - **Counting.** Every queued SQE ends in exactly one completion without `IORING_CQE_F_MORE`
//!   (multishot ops end that way too, cancelled or not); `in_flight` counts SQEs queued minus such
//!   completions, so it is the number of operations that may still touch our memory.
//! - **Exit.** Before the op table, the buffer ring and the ring are freed, everything in flight is
//!   cancelled (`ASYNC_CANCEL_ANY`, or one by one on kernels before 5.19) and its completions are
//!   reaped until `in_flight` is 0. If the kernel does not finish in time, the memory is leaked on
//!   purpose (never freed under the kernel) and the core reports an error. The same runs from the
//!   driver's `Drop` when a core unwinds from a panic.
//! - **Cancels never get lost.** A cancel or re-arm that finds the SQ full and the kernel busy waits
//!   in `retry` and is queued again at the start of the next turn.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Instant;

use io_uring::types::{BufRingEntry, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

use crate::app::{App, CloseReason, ConnId};
use crate::core::{ConnState, Core};
use crate::mailbox::Inbox;
use crate::{RunShared, driver};

const KIND_ACCEPT: u64 = 1;
const KIND_RECV: u64 = 2;
const KIND_OP: u64 = 3;
const KIND_WAKE: u64 = 4;
const KIND_IGNORE: u64 = 5;
/// The exit's cancel-everything (its failure with `EINVAL` means: cancel one by one).
const KIND_CANCEL_ANY: u64 = 6;
const BUF_GROUP: u16 = 0;
/// `driver_flags`: a multishot receive is armed.
const RECV_ARMED: u32 = 1;

fn user_data(kind: u64, payload: u64) -> u64 {
    (kind << 56) | (payload & ((1 << 56) - 1))
}

fn recv_data(id: ConnId) -> u64 {
    user_data(
        KIND_RECV,
        (u64::from(id.generation() & 0xff_ffff) << 32) | id.index() as u64,
    )
}

/// The provided-buffer ring: `count` buffers of `size` bytes the kernel picks from for receives.
#[derive(Debug)]
pub(crate) struct BufRing {
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    buffers: *mut u8,
    buffers_layout: Layout,
    count: u16,
    size: u32,
    bgid: u16,
    tail: u16,
}

impl BufRing {
    /// Allocate and register a ring; every buffer starts in it.
    pub(crate) fn new(ring: &IoUring, bgid: u16, count: u16, size: u32) -> io::Result<Self> {
        if !count.is_power_of_two() || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two",
            ));
        }
        let entries_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let buffers_layout = Layout::from_size_align(usize::from(count) * size as usize, 64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: both layouts have non-zero size (count ≥ 1, size ≥ 1).
        let (entries, buffers) = unsafe {
            (
                alloc_zeroed(entries_layout).cast::<BufRingEntry>(),
                alloc_zeroed(buffers_layout),
            )
        };
        if entries.is_null() || buffers.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        // Touch the buffers now: the ring is a fixed per-core cost, and resident from the start it
        // does not show up later as growth that looks like per-connection memory.
        // SAFETY: `buffers` points to `buffers_layout.size()` writable bytes just allocated.
        unsafe { std::ptr::write_bytes(buffers, 0, buffers_layout.size()) };
        let mut this = Self {
            entries,
            entries_layout,
            buffers,
            buffers_layout,
            count,
            size,
            bgid,
            tail: 0,
        };
        // SAFETY: `entries` is page-aligned memory for `count` entries that stays allocated until
        // `Drop`, which runs only after the ring is unregistered or the io_uring instance is gone.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, bgid, 0)?
        };
        for bid in 0..count {
            this.add(bid);
        }
        this.publish();
        Ok(this)
    }

    /// Put buffer `bid` back at the tail (visible to the kernel after [`publish`](Self::publish)).
    fn add(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot < count`, so the entry is inside the allocation; the kernel reads entries only
        // up to the published tail, and this one is beyond it until `publish`.
        let entry = unsafe { &mut *self.entries.add(slot) };
        // SAFETY: `bid < count`, so the buffer lies inside the buffer allocation.
        entry.set_addr(unsafe { self.buffers.add(usize::from(bid) * self.size as usize) } as u64);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Make the added buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field overlays the first entry's `resv`, inside the allocation, and is
        // only written by us; the kernel reads it with acquire semantics.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The bytes the kernel delivered into buffer `bid`.
    fn slice_mut(&mut self, bid: u16, len: usize) -> &mut [u8] {
        assert!(
            bid < self.count && len <= self.size as usize,
            "kernel returned an impossible buffer"
        );
        // SAFETY: the buffer is inside the allocation (checked above); the kernel has completed the
        // receive into it and will not use it again until we `add` it back, so we own it exclusively.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.buffers.add(usize::from(bid) * self.size as usize),
                len,
            )
        }
    }

    pub(crate) fn unregister(self, ring: &IoUring) {
        let _ = ring.submitter().unregister_buf_ring(self.bgid);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both pointers came from `alloc_zeroed` with these layouts; the kernel no longer
        // references them: the driver frees the ring only after every operation completed (it is
        // leaked, not dropped, otherwise) and unregisters it first.
        unsafe {
            dealloc(self.entries.cast(), self.entries_layout);
            dealloc(self.buffers, self.buffers_layout);
        }
    }
}

/// An operation whose memory the kernel uses until its completion.
#[derive(Debug)]
enum Op {
    Send {
        conn: ConnId,
        buf: Vec<u8>,
    },
    Connect {
        conn: ConnId,
        _addr: Box<(libc::sockaddr_storage, libc::socklen_t)>,
    },
}

#[derive(Debug, Default)]
struct Ops {
    slots: Vec<Option<Op>>,
    free: Vec<usize>,
}

impl Ops {
    fn insert(&mut self, op: Op) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(op);
                i
            }
            None => {
                self.slots.push(Some(op));
                self.slots.len() - 1
            }
        }
    }

    fn take(&mut self, i: usize) -> Option<Op> {
        let op = self.slots.get_mut(i)?.take()?;
        self.free.push(i);
        Some(op)
    }
}

struct Driver<'a, A: App> {
    ring: IoUring,
    bufs: Option<BufRing>,
    ops: Ops,
    listeners: Vec<Option<TcpListener>>,
    core: &'a mut Core<A>,
    rearm: Vec<ConnId>,
    dirty: Vec<ConnId>,
    /// Descriptors of closed connections, closed once the SQEs queued before are submitted.
    graveyard: Vec<OwnedFd>,
    /// SQEs queued whose final completion has not been reaped.
    in_flight: usize,
    /// Memory-less SQEs (cancels, re-arms) that could not be queued; queued again next turn.
    retry: Vec<squeue::Entry>,
    /// The kernel refused a submission this turn (its completion queue must be reaped first):
    /// further SQEs wait for the next turn instead of trying again one syscall each.
    sq_blocked: bool,
    /// Connections whose send met a blocked SQ: sent again next turn.
    blocked_sends: Vec<ConnId>,
    /// The exit's cancel-and-reap has run (successfully or not).
    exited: bool,
    /// Operations reaped by the exit (for [`crate::StopHandle::reaped_at_exit`]).
    reaped_at_exit: usize,
    /// Listeners that keep accepting while draining ([`crate::RtConfig::open_while_draining`]).
    open_while_draining: Vec<usize>,
}

impl<A: App> Driver<'_, A> {
    /// Queue an SQE, submitting first when the queue is full.
    ///
    /// # Safety
    /// Every buffer or address `sqe` points to must stay valid until its completion arrives.
    unsafe fn push(&mut self, sqe: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from the caller.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            if self.sq_blocked {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            if let Err(e) = self.ring.submit() {
                self.sq_blocked = true;
                return Err(e);
            }
        }
    }

    fn arm_accept(&mut self, i: usize) -> io::Result<()> {
        let Some(l) = self.listeners[i].as_ref() else {
            return Ok(());
        };
        let sqe = opcode::AcceptMulti::new(Fd(l.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(KIND_ACCEPT, i as u64));
        // SAFETY: multishot accept without an address buffer references no memory of ours.
        unsafe { self.push(sqe) }
    }

    fn arm_recv(&mut self, id: ConnId) {
        let Some(conn) = self.core.st.conn_mut(id) else {
            return;
        };
        if conn.driver_flags & RECV_ARMED != 0 || conn.state == ConnState::Connecting {
            return;
        }
        conn.driver_flags |= RECV_ARMED;
        let fd = conn.fd.as_raw_fd();
        let sqe = opcode::RecvMulti::new(Fd(fd), BUF_GROUP)
            .build()
            .user_data(recv_data(id));
        // SAFETY: the receive writes only into provided buffers, which the BufRing owns for the
        // lifetime of the ring.
        if let Err(e) = unsafe { self.push(sqe) } {
            if self.sq_blocked {
                // The kernel is busy, not the connection: arm it next turn.
                if let Some(conn) = self.core.st.conn_mut(id) {
                    conn.driver_flags &= !RECV_ARMED;
                }
                self.rearm.push(id);
            } else {
                self.core.close_now(id, CloseReason::Io(e.kind()));
            }
        }
    }

    fn submit_send(&mut self, id: ConnId) {
        let Some(conn) = self.core.st.conn_mut(id) else {
            return;
        };
        if conn.sending || conn.output.is_empty() || conn.state == ConnState::Connecting {
            return;
        }
        conn.sending = true;
        let buf = std::mem::take(&mut conn.output);
        let fd = conn.fd.as_raw_fd();
        let (ptr, len) = (buf.as_ptr(), buf.len() as u32);
        let slot = self.ops.insert(Op::Send { conn: id, buf });
        let sqe = opcode::Send::new(Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(KIND_OP, slot as u64));
        // SAFETY: the buffer is owned by the op slot until the completion is processed; moving the
        // Vec into the slot does not move its heap allocation.
        if let Err(e) = unsafe { self.push(sqe) } {
            let Some(Op::Send { buf, .. }) = self.ops.take(slot) else {
                return;
            };
            if self.sq_blocked {
                // The kernel is busy, not the connection: the bytes go back in front and leave
                // next turn.
                if let Some(c) = self.core.st.conn_mut(id) {
                    c.sending = false;
                    let mut buf = buf;
                    buf.extend_from_slice(&c.output);
                    c.output = buf;
                }
                self.blocked_sends.push(id);
            } else {
                self.core.st.recycle(buf);
                self.core.close_now(id, CloseReason::Io(e.kind()));
            }
        }
    }

    fn start_connect(&mut self, id: ConnId, addr: std::net::SocketAddr) {
        let Some(conn) = self.core.st.conn(id) else {
            return;
        };
        let fd = conn.fd.as_raw_fd();
        let sa = socket2::SockAddr::from(addr);
        let mut storage: libc::sockaddr_storage = {
            // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
            unsafe { std::mem::zeroed() }
        };
        // SAFETY: `sa.len()` bytes fit in a sockaddr_storage; both regions are live and disjoint.
        unsafe {
            std::ptr::copy_nonoverlapping(
                sa.as_ptr().cast::<u8>(),
                (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                sa.len() as usize,
            )
        };
        let boxed = Box::new((storage, sa.len()));
        let ptr = (&boxed.0 as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
        let len = boxed.1;
        let slot = self.ops.insert(Op::Connect {
            conn: id,
            _addr: boxed,
        });
        let sqe = opcode::Connect::new(Fd(fd), ptr, len)
            .build()
            .user_data(user_data(KIND_OP, slot as u64));
        // SAFETY: the address lives in a Box owned by the op slot until the completion.
        if let Err(e) = unsafe { self.push(sqe) } {
            self.ops.take(slot);
            self.core.on_connected(id, Err(e));
        }
    }

    fn cancel(&mut self, target: u64) {
        let sqe = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data(KIND_IGNORE, 0));
        self.push_or_retry(sqe);
    }

    /// Cancel every operation on descriptor `fd` (a closed connection's receive, send, connect).
    fn cancel_fd(&mut self, fd: i32) {
        let sqe = opcode::AsyncCancel2::new(io_uring::types::CancelBuilder::fd(Fd(fd)).all())
            .build()
            .user_data(user_data(KIND_IGNORE, 0));
        self.push_or_retry(sqe);
    }

    /// Queue an SQE that references no memory of ours, or keep it for the next turn.
    fn push_or_retry(&mut self, sqe: squeue::Entry) {
        // SAFETY: callers pass only SQEs that reference no memory (cancels, polls, accepts).
        if self.sq_blocked || unsafe { self.push(sqe.clone()) }.is_err() {
            self.retry.push(sqe);
        }
    }

    fn on_accept(&mut self, i: usize, res: i32, flags: u32) {
        if res >= 0 {
            // SAFETY: a successful accept returns a new descriptor that we now own.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            let peer = socket2::SockRef::from(&fd)
                .peer_addr()
                .ok()
                .and_then(|a| a.as_socket());
            match peer {
                Some(peer) => {
                    if let Some(id) = self.core.on_accepted(fd, peer, i) {
                        self.arm_recv(id);
                    }
                }
                None => drop(fd),
            }
        }
        let error =
            (res < 0 && res != -libc::ECANCELED).then(|| io::Error::from_raw_os_error(-res));
        let starved = error.as_ref().is_some_and(crate::core::accept_starved);
        if let Some(e) = &error
            && !starved
        {
            tracing::debug!(core = self.core.st.core, error = %e, "accept failed");
        }
        if !cqueue::more(flags) {
            if self.core.st.shutting_down && !self.open_while_draining.contains(&i) {
                // The accept's last completion: the kernel holds no reference to the listener any
                // more, so closing it now takes it out of the port at once (closed while the
                // accept was pending, it would linger, and with SO_REUSEPORT peers keep taking
                // connections only to reset them when the ring is torn down).
                self.listeners[i] = None;
            } else if let (true, Some(e)) = (starved, &error) {
                // Out of descriptors or memory: re-arming at once would spin; rest the listener.
                self.core.st.pause_accept(i, e);
            } else if res != -libc::ECANCELED && self.arm_accept(i).is_err() {
                let Some(l) = self.listeners[i].as_ref() else {
                    return;
                };
                let sqe = opcode::AcceptMulti::new(Fd(l.as_raw_fd()))
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
                    .user_data(user_data(KIND_ACCEPT, i as u64));
                self.retry.push(sqe);
            }
        }
    }

    fn on_recv(&mut self, payload: u64, res: i32, flags: u32) {
        let index = (payload & 0xffff_ffff) as usize;
        let gen24 = ((payload >> 32) & 0xff_ffff) as u32;
        let id = self
            .core
            .st
            .id_at(index)
            .filter(|id| id.generation() & 0xff_ffff == gen24);
        let more = cqueue::more(flags);
        if let (Some(id), false) = (id, more)
            && let Some(c) = self.core.st.conn_mut(id)
        {
            c.driver_flags &= !RECV_ARMED;
        }
        let bid = cqueue::buffer_select(flags);
        if res > 0 {
            let bid = bid.expect("a receive with data selected a buffer");
            if let (Some(id), Some(bufs)) = (id, self.bufs.as_mut()) {
                let data = bufs.slice_mut(bid, res as usize);
                self.core.on_received(id, data);
            }
            if let Some(bufs) = self.bufs.as_mut() {
                bufs.add(bid);
            }
            if !more && let Some(id) = id {
                self.rearm.push(id);
            }
            return;
        }
        if let (Some(bid), Some(bufs)) = (bid, self.bufs.as_mut()) {
            bufs.add(bid);
        }
        let Some(id) = id else { return };
        match res {
            0 => {
                self.core.on_eof(id, CloseReason::PeerClosed);
            }
            e if e == -libc::ENOBUFS => {
                self.core.st.stats.buffer_exhaustion += 1;
                self.rearm.push(id);
            }
            e if e == -libc::ECANCELED => {}
            e => {
                self.core
                    .on_eof(id, CloseReason::Io(io::Error::from_raw_os_error(-e).kind()));
            }
        }
    }

    fn on_op(&mut self, slot: usize, res: i32) {
        match self.ops.take(slot) {
            Some(Op::Send { conn, mut buf }) => {
                let Some(c) = self.core.st.conn_mut(conn) else {
                    self.core.st.recycle(buf);
                    return;
                };
                c.sending = false;
                if res < 0 {
                    self.core.st.recycle(buf);
                    self.core.close_now(
                        conn,
                        CloseReason::Io(io::Error::from_raw_os_error(-res).kind()),
                    );
                    return;
                }
                let n = res as usize;
                self.core.st.stats.bytes_out += n as u64;
                if n < buf.len() {
                    self.core.st.stats.short_writes += 1;
                    let c = self.core.st.conn_mut(conn).expect("checked");
                    buf.drain(..n);
                    buf.extend_from_slice(&c.output);
                    let old = std::mem::replace(&mut c.output, buf);
                    self.core.st.recycle(old);
                } else {
                    self.core.st.recycle(buf);
                }
                self.core.release_output(conn);
                self.core.st.mark_dirty(conn);
            }
            Some(Op::Connect { conn, .. })
                if self
                    .core
                    .st
                    .conn(conn)
                    .is_some_and(|c| c.state == ConnState::Connecting) =>
            {
                let result = if res == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(-res))
                };
                self.core.on_connected(conn, result);
                self.arm_recv(conn);
            }
            Some(Op::Connect { .. }) => {}
            None => {}
        }
    }

    /// After the turn's callbacks: actions, sends, closes (the shared [`driver::settle`]), then
    /// re-arms and returned buffers.
    fn settle(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        driver::settle(self, &mut dirty);
        self.dirty = dirty;
        let mut closed = std::mem::take(&mut self.core.st.closed);
        for c in closed.drain(..) {
            if c.busy {
                // A send or connect too, which the kernel would keep the socket open for (its FIN
                // would wait for a peer that never reads): every operation on the descriptor. The
                // kernel finds those by scanning what is in flight, so only here.
                self.cancel_fd(c.fd.as_raw_fd());
            } else if c.driver_flags & RECV_ARMED != 0 {
                // Just the receive: found by its user data (a hash lookup in the kernel).
                self.cancel(recv_data(c.id));
            }
            self.graveyard.push(c.fd);
        }
        self.core.st.closed = closed;
        if let Some(b) = self.bufs.as_ref() {
            b.publish();
        }
        for id in std::mem::take(&mut self.rearm) {
            self.arm_recv(id);
        }
    }
}

impl<A: App> Driver<'_, A> {
    /// Close the descriptors of closed connections once nothing queued can name them: the SQ is
    /// empty, so every SQE built from them has been submitted (the kernel holds its own reference).
    fn bury(&mut self) {
        if !self.graveyard.is_empty() && self.ring.submission().is_empty() {
            self.graveyard.clear();
        }
    }

    /// Cancel everything in flight and reap completions until nothing is (or `limit` passed):
    /// afterwards no operation can touch the op table, the buffer ring or a descriptor.
    fn quiesce(&mut self, limit: std::time::Duration) -> bool {
        self.exited = true;
        for sqe in std::mem::take(&mut self.retry) {
            self.push_or_retry(sqe);
        }
        let deadline = Instant::now() + limit;
        let any = opcode::AsyncCancel2::new(io_uring::types::CancelBuilder::any())
            .build()
            .user_data(user_data(KIND_CANCEL_ANY, 0));
        // SAFETY: a cancel references no memory.
        let _ = unsafe { self.push(any) };
        while self.in_flight > 0 || !self.retry.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.sq_blocked = false;
            for sqe in std::mem::take(&mut self.retry) {
                self.push_or_retry(sqe);
            }
            let wait = (deadline - now).min(std::time::Duration::from_millis(100));
            let ts = Timespec::new()
                .sec(wait.as_secs())
                .nsec(wait.subsec_nanos());
            let args = SubmitArgs::new().timespec(&ts);
            if let Err(e) = self.ring.submitter().submit_with_args(1, &args)
                && !matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                )
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            self.bury();
            let cqes: Vec<(u64, i32, u32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags()))
                .collect();
            for (ud, res, flags) in cqes {
                if !cqueue::more(flags) {
                    debug_assert!(self.in_flight > 0, "a completion for an SQE never counted");
                    self.in_flight = self.in_flight.saturating_sub(1);
                    self.reaped_at_exit += 1;
                }
                let payload = ud & ((1 << 56) - 1);
                match ud >> 56 {
                    KIND_OP => {
                        // The kernel is done with the op's memory.
                        self.ops.take(payload as usize);
                    }
                    KIND_ACCEPT if res >= 0 => {
                        // SAFETY: a successful accept returns a descriptor that we now own.
                        drop(unsafe { OwnedFd::from_raw_fd(res) });
                    }
                    KIND_CANCEL_ANY if res == -libc::EINVAL => self.cancel_each(),
                    _ => {}
                }
            }
        }
        self.graveyard.clear();
        true
    }

    /// Cancel what is in flight one by one (kernels without `ASYNC_CANCEL_ANY`): ops, accepts, the
    /// wake-up poll (receives of closed connections were cancelled when they closed).
    fn cancel_each(&mut self) {
        let ops: Vec<usize> = (0..self.ops.slots.len())
            .filter(|&i| self.ops.slots[i].is_some())
            .collect();
        for i in ops {
            self.cancel(user_data(KIND_OP, i as u64));
        }
        for i in 0..self.listeners.len() {
            self.cancel(user_data(KIND_ACCEPT, i as u64));
        }
        self.cancel(user_data(KIND_WAKE, 0));
    }
}

impl<A: App> driver::Turn<A> for Driver<'_, A> {
    fn core(&mut self) -> &mut Core<A> {
        self.core
    }
    fn start_connect(&mut self, id: ConnId, addr: std::net::SocketAddr) {
        Driver::start_connect(self, id, addr);
    }
    fn flush(&mut self, id: ConnId) {
        self.submit_send(id);
        self.core.close_if_flushed(id);
    }
}

pub(crate) fn run<A: App>(
    core: &mut Core<A>,
    inbox: &Inbox<A::Msg>,
    listeners: Vec<TcpListener>,
    shared: &RunShared,
) -> io::Result<()> {
    let cfg = shared.uring;
    // DEFER_TASKRUN (6.1) runs completion work only when this thread enters the ring, in one batch,
    // instead of interrupting it; it needs SINGLE_ISSUER, which holds: one ring per core thread.
    // A completion queue far larger than the submission queue: closing 10,000 connections in one
    // turn (a slowloris wave cut by its timeout) makes 20,000 completions at once, and an overflowing
    // CQ makes `io_uring_enter` refuse submissions (EBUSY) until it is reaped.
    let cq = (cfg.entries * 2).max(CQ_ENTRIES_MIN);
    let ring = match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(cq)
        .build(cfg.entries)
    {
        Ok(ring) => ring,
        Err(_) => IoUring::builder()
            .setup_coop_taskrun()
            .setup_cqsize(cq)
            .build(cfg.entries)?,
    };
    let bufs = BufRing::new(&ring, BUF_GROUP, cfg.buffers, cfg.buffer_bytes)?;
    let mut d = Driver {
        ring,
        bufs: Some(bufs),
        ops: Ops::default(),
        listeners: listeners.into_iter().map(Some).collect(),
        core,
        rearm: Vec::new(),
        dirty: Vec::new(),
        graveyard: Vec::new(),
        in_flight: 0,
        retry: Vec::new(),
        sq_blocked: false,
        blocked_sends: Vec::new(),
        exited: false,
        reaped_at_exit: 0,
        open_while_draining: shared.open_while_draining.clone(),
    };
    for i in 0..d.listeners.len() {
        d.arm_accept(i)?;
    }
    let wake = opcode::PollAdd::new(Fd(inbox.wakeup.raw_fd()), libc::POLLIN as u32)
        .multi(true)
        .build()
        .user_data(user_data(KIND_WAKE, 0));
    // SAFETY: a poll references no memory of ours.
    unsafe { d.push(wake)? };
    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
    let mut drain_deadline: Option<Instant> = None;
    let result = loop {
        for sqe in std::mem::take(&mut d.retry) {
            d.push_or_retry(sqe);
        }
        d.sq_blocked = false;
        let now = Instant::now();
        let sleep = driver::sleep_for(now, d.core.st.next_wakeup(), drain_deadline);
        let ts = Timespec::new()
            .sec(sleep.as_secs())
            .nsec(sleep.subsec_nanos());
        let args = SubmitArgs::new().timespec(&ts);
        if !d.graveyard.is_empty() {
            // Closed connections' descriptors: submit what names them now, close them, then wait
            // (else their FIN would wait for the next wake-up).
            let _ = d.ring.submit();
            d.bury();
        }
        match d.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) => {}
            Err(e) => break Err(e),
        }
        d.bury();
        d.sq_blocked = false;
        for id in std::mem::take(&mut d.blocked_sends) {
            d.core.st.mark_dirty(id);
        }
        d.core.st.now = Instant::now();
        // While draining only listeners kept open are left to re-arm (the others were closed
        // when the drain began); a closed one's arm is a no-op.
        for i in d.core.st.accepts_due() {
            if d.arm_accept(i).is_err() {
                d.core
                    .st
                    .accept_paused
                    .push((i, d.core.st.now + crate::core::ACCEPT_PAUSE));
            }
        }
        d.core.st.stats.loop_turns += 1;
        d.core.st.stats.wait_ns += d.core.st.now.saturating_duration_since(now).as_nanos() as u64;
        cqes.clear();
        cqes.extend(
            d.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &cqes {
            if !cqueue::more(flags) {
                debug_assert!(d.in_flight > 0, "a completion for an SQE never counted");
                d.in_flight = d.in_flight.saturating_sub(1);
            }
            let payload = ud & ((1 << 56) - 1);
            match ud >> 56 {
                KIND_ACCEPT => d.on_accept(payload as usize, res, flags),
                KIND_RECV => d.on_recv(payload, res, flags),
                KIND_OP => d.on_op(payload as usize, res),
                KIND_WAKE => {
                    d.core.drain_inbox(inbox);
                    if !cqueue::more(flags) {
                        d.push_or_retry(
                            opcode::PollAdd::new(Fd(inbox.wakeup.raw_fd()), libc::POLLIN as u32)
                                .multi(true)
                                .build()
                                .user_data(user_data(KIND_WAKE, 0)),
                        );
                    }
                }
                _ => {}
            }
        }
        d.core.run_timers();
        d.settle();

        if shared.stop_requested() && !d.core.st.shutting_down {
            // Cancel the accepts; each listener is closed when its accept's last completion
            // arrives (`on_accept`).
            // A resting listener has no accept to cancel: close it now.
            let paused = std::mem::take(&mut d.core.st.accept_paused);
            for (i, until) in paused {
                if shared.closes_at_drain(i) {
                    d.listeners[i] = None;
                } else {
                    d.core.st.accept_paused.push((i, until));
                }
            }
            for i in 0..d.listeners.len() {
                if d.listeners[i].is_some() && shared.closes_at_drain(i) {
                    d.cancel(user_data(KIND_ACCEPT, i as u64));
                }
            }
            d.core.begin_shutdown();
            drain_deadline = Some(d.core.st.now + shared.drain);
            d.settle();
        }
        // Listeners kept open while draining are cancelled with everything else at exit.
        let accepts_done = d
            .listeners
            .iter()
            .enumerate()
            .all(|(i, l)| l.is_none() || !shared.closes_at_drain(i));
        if let Some(deadline) = drain_deadline
            && ((d.core.st.live == 0 && accepts_done) || Instant::now() >= deadline)
        {
            d.core.close_all();
            d.settle();
            let _ = d.ring.submit();
            break Ok(());
        }
    };
    let quiet = d.quiesce(EXIT_WAIT);
    shared
        .reaped_at_exit
        .fetch_add(d.reaped_at_exit, std::sync::atomic::Ordering::Relaxed);
    let left = d.in_flight;
    // `Drop` frees (or, with operations left, leaks) the memory.
    drop(d);
    if !quiet {
        return result.and(Err(io::Error::other(format!(
            "{left} io_uring operations did not complete at exit"
        ))));
    }
    result
}

impl<A: App> Drop for Driver<'_, A> {
    /// Free the op table and the buffer ring only when the kernel is done with them: after the
    /// exit's cancel-and-reap, or one run here (a core unwinding from a panic). Operations still in
    /// flight after it: leak the memory rather than free it under the kernel.
    fn drop(&mut self) {
        if !self.exited {
            self.quiesce(EXIT_WAIT);
        }
        if self.in_flight == 0 {
            // Unregister the buffer ring before its memory is freed.
            if let Some(b) = self.bufs.take() {
                b.unregister(&self.ring);
            }
        } else {
            tracing::error!(
                operations = self.in_flight,
                "io_uring operations still in the kernel at exit: their memory is leaked, not freed"
            );
            std::mem::forget(std::mem::take(&mut self.ops));
            std::mem::forget(self.bufs.take());
        }
    }
}

/// The least completion-queue entries per core (16 bytes each).
const CQ_ENTRIES_MIN: u32 = 65536;

/// How long the exit waits for cancelled operations to complete.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
