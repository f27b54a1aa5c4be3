//! Out of descriptors: connections that arrive while the process has none left wait in the
//! backlog, and are accepted once descriptors are free again — without a new connection having to
//! arrive first (edge-triggered readiness would otherwise sit on them) and without the core
//! spinning on failed accepts meanwhile. Its own test binary: it lowers the process's descriptor
//! limit.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Echo, open_fds};
use m2m_rt::{IoMode, Runtime};

fn echoes(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut b = [0u8; 2];
    s.write_all(b"hi").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"hi"
}

fn exhaust(io: IoMode) {
    let config = common::one_core(io);
    let rt = Runtime::start(config, |_| Echo).unwrap();
    let addr = rt.local_addrs()[0];
    // Room for a few more descriptors than are open; each client costs two (ours and the
    // runtime's accepted one), so the runtime runs out after a handful.
    let limit = (open_fds() + 12) as libc::rlim_t;
    let old = rlimit();
    set_rlimit(limit, old.1);
    let mut clients: Vec<TcpStream> = (0..4)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    let mut waiting = Vec::new();
    // More clients than descriptors: connect() still succeeds (the kernel's backlog), accept fails.
    for _ in 0..6 {
        if let Ok(s) = TcpStream::connect(addr) {
            waiting.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    // Free descriptors: close our first clients (and the runtime its side of them).
    set_rlimit(old.0, old.1);
    clients.clear();
    // The queued clients are served now, with no new connection arriving.
    let started = Instant::now();
    for (n, s) in waiting.iter_mut().enumerate() {
        assert!(
            echoes(s),
            "{io:?}: queued client {n} not served after descriptors came back"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    rt.stop_handle().shutdown();
    rt.join().unwrap();
}

fn rlimit() -> (libc::rlim_t, libc::rlim_t) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into our struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    (r.rlim_cur, r.rlim_max)
}

fn set_rlimit(cur: libc::rlim_t, max: libc::rlim_t) {
    let r = libc::rlimit {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: setrlimit reads our struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) }, 0);
}

#[test]
fn queued_connections_are_accepted_once_descriptors_are_back() {
    // One after the other: the limit is the process's.
    exhaust(IoMode::Uring);
    exhaust(IoMode::Epoll);
}
