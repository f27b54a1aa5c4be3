//! The runtime's lifetimes across submit, complete and close (the io_uring driver's module docs
//! state them), on real sockets:
//!
//! - a send queued in a turn reaches its own socket even when the connection is closed later in
//!   that turn and a new socket is opened right after (which the kernel gives the lowest free
//!   descriptor number, the closed one's if it were closed at once);
//! - a core shut down under load, with sends stuck in the kernel toward clients that never read,
//!   cancels and reaps every operation before it frees their memory (the core reports an error
//!   otherwise), and leaves no descriptor behind. (`/proc/self/fd` cannot see files the kernel
//!   still holds; what this checks is that the exit waited for them and says so.)

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{Echo, open_fds};
use m2m_rt::{App, CloseReason, ConnId, Cx, DriverKind, IoMode, ListenerConfig, RtConfig, Runtime};

const SECRET: &[u8] = b"SECRET-FOR-THE-FIRST-CONNECTION";

/// The tests run one at a time: the descriptor count is the process's.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first connection says "go": it is sent the secret, and the second connection is closed in
/// the same turn; closing the second aborts the first (a later pass of the same turn), and the
/// first's close opens a connected socket to `upstream` at once (it gets the lowest free
/// descriptor number: the first's, had that been closed already).
struct SameTurn {
    upstream: SocketAddr,
    accepted: Vec<ConnId>,
    opened: Vec<TcpStream>,
}

impl App for SameTurn {
    type Msg = ();

    fn on_accept(&mut self, _: &mut Cx<'_, ()>, conn: ConnId, _: usize, _: SocketAddr) {
        self.accepted.push(conn);
    }

    fn on_data(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, data: &mut [u8]) -> usize {
        if self.accepted.first() == Some(&conn) && data.ends_with(b"go") {
            cx.send(conn, SECRET);
            cx.close(self.accepted[1]);
        }
        data.len()
    }

    fn on_close(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, _: CloseReason) {
        if self.accepted.get(1) == Some(&conn) {
            cx.abort(self.accepted[0]);
        } else if self.accepted.first() == Some(&conn) {
            let _ = cx;
            self.opened
                .push(TcpStream::connect(self.upstream).expect("connect upstream"));
        }
    }
}

fn same_turn(io: IoMode) {
    let _alone = alone();
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let config = RtConfig {
        workers: 1,
        io,
        listeners: vec![ListenerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: None,
        }],
        linger: Duration::ZERO,
        drain: Duration::from_millis(100),
        ..RtConfig::default()
    };
    let rt = Runtime::start(config, move |_| SameTurn {
        upstream: upstream_addr,
        accepted: Vec::new(),
        opened: Vec::new(),
    })
    .unwrap();
    let addr = rt.local_addrs()[0];
    let mut first = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let _second = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    first.write_all(b"go").unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    let _ = first.read_to_end(&mut got);
    // The new connection must never see it, whatever descriptor it got.
    upstream.set_nonblocking(true).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let mut link = loop {
        match upstream.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{io:?}: the app never connected upstream: {e}"),
        }
    };
    link.set_nonblocking(false).unwrap();
    link.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut leaked = Vec::new();
    let _ = link.read_to_end(&mut leaked);
    assert!(
        !leaked.windows(SECRET.len()).any(|w| w == SECRET),
        "{io:?}: the first connection's bytes went to the new connection"
    );
    assert_eq!(
        got, SECRET,
        "{io:?}: a send handed to the kernel before the close reaches its own socket"
    );
    rt.stop_handle().shutdown();
    rt.join().unwrap();
}

#[test]
fn a_send_queued_before_a_close_in_the_same_turn_reaches_its_own_socket_on_uring() {
    same_turn(IoMode::Uring);
}

#[test]
fn a_send_queued_before_a_close_in_the_same_turn_reaches_its_own_socket_on_epoll() {
    same_turn(IoMode::Epoll);
}

fn fd_list() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            format!(
                "{}->{}",
                e.file_name().to_string_lossy(),
                std::fs::read_link(e.path()).map_or("?".into(), |p| p.display().to_string())
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_busy_uring_core_shuts_down_with_nothing_left_in_the_kernel() {
    let _alone = alone();
    let before = open_fds();
    let config = common::one_core(IoMode::Uring);
    let rt = Runtime::start(config, |_| Echo).unwrap();
    assert_eq!(
        rt.driver(),
        DriverKind::Uring,
        "io_uring is needed for this test"
    );
    let addr = rt.local_addrs()[0];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Half the clients read their echo, half never do: the core's sends to those wait in the kernel.
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
                let chunk = vec![i as u8; 16 << 10];
                let mut sink = vec![0u8; 64 << 10];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if s.write_all(&chunk).is_err() && i % 2 == 1 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if i % 2 == 0 {
                        let _ = s.read(&mut sink);
                    }
                }
                s
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    rt.stop_handle().shutdown();
    let handle = rt.stop_handle();
    let result = rt.join();
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sockets: Vec<TcpStream> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    result.expect("every operation completed before the core freed its memory");
    assert!(
        handle.reaped_at_exit() > 0,
        "the exit cancelled and reaped what was in flight"
    );
    // (The handle keeps the cores' wake-up eventfds.)
    drop(handle);
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    eprintln!("shutdown under load took {took:?}");
    drop(sockets);
    // The ring, its eventfd, the listener and every connection are closed.
    let deadline = Instant::now() + Duration::from_secs(2);
    while open_fds() > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        open_fds() <= before,
        "descriptors left: {} > {before}: {:?}",
        open_fds(),
        fd_list()
    );
}
