//! Cross-core messages: one bounded queue per (sender core, receiver core) pair, so no two cores
//! contend on a queue, plus one wakeup per receiving core (an eventfd the core's driver watches).
//! A wakeup is written only when the receiver is not already marked to wake, so a burst of messages
//! costs one `write(2)`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// An eventfd plus a flag that coalesces wakeups.
#[derive(Debug)]
pub struct Wakeup {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Wakeup {
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            pending: AtomicBool::new(false),
        })
    }

    /// Wake the core (once per burst).
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
            unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Consume a wakeup; call before draining the queues so that a message sent meanwhile wakes
    /// the core again.
    pub fn reset(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; EAGAIN is fine (non-blocking).
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
        self.pending.store(false, Ordering::Release);
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The sending side of one core: a queue to every core, and their wakeups.
#[derive(Debug)]
pub struct Outbox<M> {
    senders: Vec<SyncSender<M>>,
    wakeups: Vec<Arc<Wakeup>>,
}

/// The receiving side of one core: a queue from every core.
#[derive(Debug)]
pub struct Inbox<M> {
    receivers: Vec<Receiver<M>>,
    pub wakeup: Arc<Wakeup>,
}

/// Build the mailboxes of `cores` cores with `capacity` messages per pair.
pub fn mailboxes<M>(cores: usize, capacity: usize) -> std::io::Result<Vec<(Outbox<M>, Inbox<M>)>> {
    let wakeups: Vec<Arc<Wakeup>> = (0..cores)
        .map(|_| Wakeup::new().map(Arc::new))
        .collect::<Result<_, _>>()?;
    // channel[from][to]
    let mut senders: Vec<Vec<SyncSender<M>>> = (0..cores).map(|_| Vec::new()).collect();
    let mut receivers: Vec<Vec<Receiver<M>>> = (0..cores).map(|_| Vec::new()).collect();
    for from_senders in senders.iter_mut() {
        for to_receivers in receivers.iter_mut() {
            let (tx, rx) = sync_channel(capacity);
            from_senders.push(tx);
            to_receivers.push(rx);
        }
    }
    Ok(senders
        .into_iter()
        .zip(receivers)
        .enumerate()
        .map(|(core, (s, r))| {
            (
                Outbox {
                    senders: s,
                    wakeups: wakeups.clone(),
                },
                Inbox {
                    receivers: r,
                    wakeup: wakeups[core].clone(),
                },
            )
        })
        .collect())
}

impl<M> Outbox<M> {
    /// Queue `msg` for core `to` and wake it; a full queue gives the message back.
    pub fn post(&self, to: usize, msg: M) -> Result<(), M> {
        match self.senders[to].try_send(msg) {
            Ok(()) => {
                self.wakeups[to].wake();
                Ok(())
            }
            Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => Err(m),
        }
    }

    /// Wake core `to` without a message (shutdown).
    pub fn wake(&self, to: usize) {
        self.wakeups[to].wake();
    }

    pub fn cores(&self) -> usize {
        self.senders.len()
    }
}

impl<M> Inbox<M> {
    /// Take every queued message, calling `f(from_core, msg)`.
    pub fn drain(&self, mut f: impl FnMut(usize, M)) {
        self.wakeup.reset();
        for (from, rx) in self.receivers.iter().enumerate() {
            while let Ok(m) = rx.try_recv() {
                f(from, m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_pair_and_wakes_once_per_burst() {
        let mut boxes = mailboxes::<u32>(2, 2).unwrap();
        let (out1, _in1) = boxes.pop().unwrap();
        let (_out0, in0) = boxes.pop().unwrap();
        assert_eq!(out1.post(0, 1), Ok(()));
        assert_eq!(out1.post(0, 2), Ok(()));
        assert_eq!(out1.post(0, 3), Err(3), "full queue hands the message back");
        // One eventfd count for the burst.
        let mut value: u64 = 0;
        // SAFETY: reading 8 bytes into a live u64 from a test-owned eventfd.
        let n = unsafe { libc::read(in0.wakeup.raw_fd(), (&mut value as *mut u64).cast(), 8) };
        assert_eq!((n, value), (8, 1));
        let mut got = Vec::new();
        in0.drain(|from, m| got.push((from, m)));
        assert_eq!(got, [(1, 1), (1, 2)]);
        assert_eq!(out1.post(0, 4), Ok(()));
    }

    #[test]
    fn messages_cross_threads() {
        let mut boxes = mailboxes::<u64>(2, 1024).unwrap();
        let (out1, _) = boxes.pop().unwrap();
        let (_, in0) = boxes.pop().unwrap();
        let t = std::thread::spawn(move || {
            for i in 0..1000 {
                while out1.post(0, i).is_err() {
                    std::thread::yield_now();
                }
            }
        });
        let mut sum = 0;
        let mut count = 0;
        while count < 1000 {
            in0.drain(|_, m| {
                sum += m;
                count += 1;
            });
        }
        t.join().unwrap();
        assert_eq!(sum, (0..1000).sum::<u64>());
    }
}
