//! The runtime on both drivers with real sockets on 127.0.0.1: line echo with partial input kept,
//! many concurrent connections, large writes (short writes), outbound connects with timeout, timers,
//! cross-core messages, shutdown drain, and the forced probe failure falling back to epoll.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "common/self_signed.rs"]
mod self_signed;

use m2m_rt::{
    App, ClientTls, CloseReason, ConnId, Cx, IoMode, ListenerConfig, ListenerTls, RtConfig, Runtime,
};

/// Echoes complete lines; a line `connect <port>` opens an outbound connection and reports; `timer`
/// answers after 50 ms; `hop` sends a message round the other cores and answers when it returns.
struct LineEcho {
    closed: Arc<AtomicUsize>,
    client_tls: Option<ClientTls>,
    /// Outbound connections and the client connection that asked for them, with a flag for
    /// "start TLS after connecting".
    relays: Vec<(ConnId, ConnId, bool)>,
    /// Outbound connections to an HTTP proxy awaiting its answer to CONNECT: (conn, client, target).
    proxied: Vec<(ConnId, ConnId, u16)>,
    waiting_timer: Vec<ConnId>,
    pending_connect: Vec<(ConnId, ConnId)>,
    hoppers: Vec<ConnId>,
}

impl App for LineEcho {
    type Msg = (usize, u64);

    fn on_accept(
        &mut self,
        _cx: &mut Cx<'_, Self::Msg>,
        _conn: ConnId,
        _l: usize,
        _peer: SocketAddr,
    ) {
    }

    fn on_data(&mut self, cx: &mut Cx<'_, Self::Msg>, conn: ConnId, data: &mut [u8]) -> usize {
        if let Some(i) = self.proxied.iter().position(|(o, _, _)| *o == conn) {
            // The proxy's answer to CONNECT: a head, then the tunnel (TLS from here on).
            let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                return 0;
            };
            let (_, client, _) = self.proxied.remove(i);
            let head = String::from_utf8_lossy(&data[..end]).to_string();
            if head.starts_with("HTTP/1.1 200") {
                cx.start_tls(conn, self.client_tls.clone().unwrap())
                    .unwrap();
                cx.send(conn, b"over tls\n");
                self.relays.push((conn, client, false));
            } else {
                let status = head.split_whitespace().nth(1).unwrap_or("?").to_string();
                cx.send(client, format!("proxy refused {status}\n").as_bytes());
                cx.close(conn);
            }
            return end + 4;
        }
        let mut used = 0;
        while let Some(nl) = data[used..].iter().position(|&b| b == b'\n') {
            let line = data[used..used + nl + 1].to_vec();
            used += nl + 1;
            let text = String::from_utf8_lossy(&line);
            if let Some(port) = text.trim().strip_prefix("connect ") {
                let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
                let out = cx.connect(addr, None, Duration::from_millis(500)).unwrap();
                self.pending_connect.push((out, conn));
            } else if let Some(port) = text.trim().strip_prefix("tlsconnect ") {
                let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
                let out = cx
                    .connect(addr, self.client_tls.clone(), Duration::from_secs(2))
                    .unwrap();
                self.relays.push((out, conn, false));
            } else if let Some(rest) = text.trim().strip_prefix("proxytls ") {
                let (proxy, target) = rest.split_once(' ').unwrap();
                let addr: SocketAddr = format!("127.0.0.1:{proxy}").parse().unwrap();
                let out = cx.connect(addr, None, Duration::from_secs(2)).unwrap();
                self.proxied.push((out, conn, target.parse().unwrap()));
            } else if let Some(port) = text.trim().strip_prefix("starttls ") {
                let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
                let out = cx.connect(addr, None, Duration::from_secs(2)).unwrap();
                self.relays.push((out, conn, true));
            } else if text.trim() == "stats" {
                let s = cx.stats();
                cx.send(
                    conn,
                    format!(
                        "exhaustion {} short {}\n",
                        s.buffer_exhaustion, s.short_writes
                    )
                    .as_bytes(),
                );
            } else if let Some(&(_, client, _)) = self.relays.iter().find(|(o, _, _)| *o == conn) {
                // An answer on an outbound connection goes back to the client that asked.
                cx.send(client, format!("relayed {}", text).as_bytes());
                cx.close(conn);
            } else if text.trim() == "timer" {
                self.waiting_timer.push(conn);
                cx.set_timer(cx.now() + Duration::from_millis(50), conn.raw());
            } else if text.trim() == "hop" {
                self.hoppers.push(conn);
                let next = (cx.core() + 1) % cx.cores();
                cx.post(next, (cx.core(), conn.raw())).unwrap();
            } else if text.trim() == "bye" {
                cx.send(conn, b"bye\n");
                cx.close(conn);
            } else {
                cx.send(conn, &line);
            }
        }
        used
    }

    fn on_close(&mut self, _cx: &mut Cx<'_, Self::Msg>, _conn: ConnId, _reason: CloseReason) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }

    fn on_connect(
        &mut self,
        cx: &mut Cx<'_, Self::Msg>,
        conn: ConnId,
        result: std::io::Result<()>,
    ) {
        if let Some(&(_, client, target)) = self.proxied.iter().find(|(o, _, _)| *o == conn) {
            match result {
                Ok(()) => {
                    let req = format!(
                        "CONNECT 127.0.0.1:{target} HTTP/1.1\r\nHost: 127.0.0.1:{target}\r\n\r\n"
                    );
                    cx.send(conn, req.as_bytes());
                }
                Err(e) => {
                    cx.send(client, format!("relay failed {:?}\n", e.kind()).as_bytes());
                }
            }
            return;
        }
        if let Some(&(_, client, start_tls)) = self.relays.iter().find(|(o, _, _)| *o == conn) {
            match result {
                Ok(()) => {
                    if start_tls {
                        cx.start_tls(conn, self.client_tls.clone().unwrap())
                            .unwrap();
                    }
                    cx.send(conn, b"over tls\n");
                }
                Err(e) => {
                    cx.send(client, format!("relay failed {:?}\n", e.kind()).as_bytes());
                }
            }
            return;
        }
        if let Some(i) = self.pending_connect.iter().position(|(o, _)| *o == conn) {
            let (_, client) = self.pending_connect.remove(i);
            let msg = match &result {
                Ok(()) => "connected\n".to_string(),
                Err(e) => format!("failed {:?}\n", e.kind()),
            };
            cx.send(client, msg.as_bytes());
            if result.is_ok() {
                cx.close(conn);
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Cx<'_, Self::Msg>, token: u64) {
        if let Some(i) = self.waiting_timer.iter().position(|c| c.raw() == token) {
            let conn = self.waiting_timer.remove(i);
            cx.send(conn, b"tick\n");
        }
    }

    fn on_message(&mut self, cx: &mut Cx<'_, Self::Msg>, from: usize, (origin, raw): Self::Msg) {
        if origin == cx.core() {
            // Back home: find the connection by its raw id.
            let _ = from;
            if let Some(i) = self.hoppers.iter().position(|c| c.raw() == raw) {
                let conn = self.hoppers.remove(i);
                cx.send(conn, format!("hopped via {from}\n").as_bytes());
            }
        } else {
            let next = (cx.core() + 1) % cx.cores();
            cx.post(next, (origin, raw)).unwrap();
        }
    }
}

/// A self-signed certificate: the server side and a client side that trusts it.
fn tls_pair() -> (ListenerTls, ClientTls) {
    let (server, client) = self_signed::configs(rustls::DEFAULT_VERSIONS);
    (
        ListenerTls(server),
        ClientTls {
            config: client,
            server_name: rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        },
    )
}

fn start_with(
    io: IoMode,
    workers: usize,
    closed: Arc<AtomicUsize>,
    uring: m2m_rt::UringConfig,
) -> Runtime {
    let (server_tls, client_tls) = tls_pair();
    let config = RtConfig {
        workers,
        io,
        listeners: vec![
            ListenerConfig {
                addr: "127.0.0.1:0".parse().unwrap(),
                tls: None,
            },
            ListenerConfig {
                addr: "127.0.0.1:0".parse().unwrap(),
                tls: Some(server_tls),
            },
        ],
        drain: Duration::from_secs(2),
        uring,
        ..RtConfig::default()
    };
    Runtime::start(config, move |_| LineEcho {
        closed: closed.clone(),
        client_tls: Some(client_tls.clone()),
        relays: Vec::new(),
        proxied: Vec::new(),
        waiting_timer: Vec::new(),
        pending_connect: Vec::new(),
        hoppers: Vec::new(),
    })
    .unwrap()
}

fn start(io: IoMode, workers: usize, closed: Arc<AtomicUsize>) -> Runtime {
    start_with(io, workers, closed, m2m_rt::UringConfig::default())
}

fn drivers() -> Vec<IoMode> {
    match std::env::var("M2M_TEST_DRIVER").as_deref() {
        Ok("epoll") => vec![IoMode::Epoll],
        Ok("uring") => vec![IoMode::Uring],
        _ => vec![IoMode::Epoll, IoMode::Uring],
    }
}

fn line(reader: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    reader.read_line(&mut s).unwrap();
    s
}

#[test]
fn echoes_lines_split_anywhere() {
    for io in drivers() {
        let closed = Arc::new(AtomicUsize::new(0));
        let rt = start(io, 2, closed.clone());
        let addr = rt.local_addrs()[0];
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        // Byte by byte: the runtime keeps the partial line between reads.
        for b in b"hello world\n" {
            w.write_all(&[*b]).unwrap();
            w.flush().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(line(&mut r), "hello world\n", "{io:?}");
        w.write_all(b"a\nb\nc").unwrap();
        assert_eq!(line(&mut r), "a\n");
        assert_eq!(line(&mut r), "b\n");
        w.write_all(b"\ntimer\n").unwrap();
        assert_eq!(line(&mut r), "c\n");
        assert_eq!(line(&mut r), "tick\n");
        w.write_all(b"hop\n").unwrap();
        assert!(
            line(&mut r).starts_with("hopped via "),
            "{io:?}: message went round the cores"
        );
        w.write_all(b"bye\n").unwrap();
        assert_eq!(line(&mut r), "bye\n");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "closed after flush");
        rt.stop_handle().shutdown();
        rt.join().unwrap();
        assert_eq!(closed.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn many_connections_and_large_writes() {
    for io in drivers() {
        let closed = Arc::new(AtomicUsize::new(0));
        let rt = start(io, 2, closed.clone());
        let addr = rt.local_addrs()[0];
        let threads: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    let conns: Vec<TcpStream> =
                        (0..50).map(|_| TcpStream::connect(addr).unwrap()).collect();
                    for (i, c) in conns.iter().enumerate() {
                        let mut c = c;
                        c.write_all(format!("t{t} c{i}\n").as_bytes()).unwrap();
                    }
                    for (i, c) in conns.into_iter().enumerate() {
                        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut r = BufReader::new(c);
                        assert_eq!(line(&mut r), format!("t{t} c{i}\n"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 8 MB through one connection: the kernel takes it in pieces (short writes).
        let big: Vec<u8> = (0..8_000_000)
            .map(|i| {
                if i % 100 == 99 {
                    b'\n'
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect();
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || w.write_all(&big).map(|_| big));
        let mut got = vec![0u8; 8_000_000];
        let mut filled = 0;
        while filled < got.len() {
            match (&s).read(&mut got[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => panic!("{io:?}: after {filled} bytes: {e}"),
            }
        }
        let big = writer.join().unwrap().unwrap();
        assert!(got == big, "{io:?}: echo of 8 MB differs");
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(5);
        while closed.load(Ordering::SeqCst) < 401 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            closed.load(Ordering::SeqCst),
            401,
            "{io:?}: every close reported once"
        );
        rt.stop_handle().shutdown();
        rt.join().unwrap();
    }
}

#[test]
fn outbound_connects_succeed_fail_and_time_out() {
    for io in drivers() {
        let closed = Arc::new(AtomicUsize::new(0));
        let rt = start(io, 1, closed.clone());
        let addr = rt.local_addrs()[0];
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        w.write_all(format!("connect {}\n", addr.port()).as_bytes())
            .unwrap();
        assert_eq!(line(&mut r), "connected\n", "{io:?}");
        // A port nobody listens on: refused.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        w.write_all(format!("connect {free}\n").as_bytes()).unwrap();
        assert_eq!(line(&mut r), "failed ConnectionRefused\n", "{io:?}");
        // A full backlog: the SYN is not answered, so the connect times out.
        let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        l.listen(0).unwrap();
        let port = l.local_addr().unwrap().as_socket().unwrap().port();
        let fillers: Vec<_> = (0..4)
            .filter_map(|_| {
                TcpStream::connect_timeout(
                    &format!("127.0.0.1:{port}").parse().unwrap(),
                    Duration::from_millis(200),
                )
                .ok()
            })
            .collect();
        w.write_all(format!("connect {port}\n").as_bytes()).unwrap();
        let answer = line(&mut r);
        assert!(
            answer == "failed TimedOut\n" || answer == "connected\n",
            "{io:?}: {answer}"
        );
        drop(fillers);
        rt.stop_handle().shutdown();
        rt.join().unwrap();
    }
}

#[test]
fn outbound_tls_and_start_tls_through_the_runtime() {
    for io in drivers() {
        let closed = Arc::new(AtomicUsize::new(0));
        let rt = start(io, 2, closed);
        let (plain, tls) = (rt.local_addrs()[0], rt.local_addrs()[1]);
        let s = TcpStream::connect(plain).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        // The runtime dials its own TLS listener as a TLS client; the TLS side echoes the line.
        w.write_all(format!("tlsconnect {}\n", tls.port()).as_bytes())
            .unwrap();
        assert_eq!(
            line(&mut r),
            "relayed over tls\n",
            "{io:?}: wss-style outbound connection"
        );
        // Plain connect, then TLS started on the open connection (as after an HTTP CONNECT).
        w.write_all(format!("starttls {}\n", tls.port()).as_bytes())
            .unwrap();
        assert_eq!(
            line(&mut r),
            "relayed over tls\n",
            "{io:?}: start_tls after connect"
        );
        rt.stop_handle().shutdown();
        rt.join().unwrap();
    }
}

/// A minimal HTTP CONNECT proxy (test peer): tunnels to `allowed` only, 403 otherwise.
fn connect_proxy(allowed: u16) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut client) = stream else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let target = text.split_whitespace().nth(1).unwrap_or("").to_string();
                let port: u16 = target
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                if !text.starts_with("CONNECT ") || port != allowed {
                    let _ =
                        client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
                    return;
                }
                let upstream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .unwrap();
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let up = std::thread::spawn(move || std::io::copy(&mut c2, &mut u2));
                let mut u1 = upstream;
                let _ = std::io::copy(&mut u1, &mut client);
                let _ = up.join();
            });
        }
    });
    port
}

#[test]
fn outbound_tls_through_an_http_connect_proxy() {
    for io in drivers() {
        let closed = Arc::new(AtomicUsize::new(0));
        let rt = start(io, 1, closed);
        let (plain, tls) = (rt.local_addrs()[0], rt.local_addrs()[1]);
        let proxy = connect_proxy(tls.port());
        let s = TcpStream::connect(plain).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        w.write_all(format!("proxytls {proxy} {}\n", tls.port()).as_bytes())
            .unwrap();
        assert_eq!(
            line(&mut r),
            "relayed over tls\n",
            "{io:?}: TLS inside the CONNECT tunnel"
        );
        w.write_all(format!("proxytls {proxy} {}\n", plain.port()).as_bytes())
            .unwrap();
        assert_eq!(line(&mut r), "proxy refused 403\n", "{io:?}");
        rt.stop_handle().shutdown();
        rt.join().unwrap();
    }
}

#[test]
fn receive_buffer_ring_exhaustion_loses_nothing() {
    // Two 64-byte buffers for the whole core: the kernel runs out at once (ENOBUFS) and the driver
    // must re-arm receives as buffers come back, without losing or reordering a byte.
    let closed = Arc::new(AtomicUsize::new(0));
    let tiny = m2m_rt::UringConfig {
        entries: 256,
        buffers: 2,
        buffer_bytes: 64,
    };
    let rt = start_with(IoMode::Uring, 1, closed, tiny);
    let addr = rt.local_addrs()[0];
    let threads: Vec<_> = (0..10)
        .map(|t| {
            std::thread::spawn(move || {
                let s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut w = s.try_clone().unwrap();
                let payload: String = (0..500)
                    .map(|i| format!("conn {t} line {i} {}\n", "x".repeat(i % 90)))
                    .collect();
                let expect = payload.clone();
                let writer = std::thread::spawn(move || w.write_all(payload.as_bytes()));
                let mut got = vec![0u8; expect.len()];
                (&s).read_exact(&mut got).unwrap();
                writer.join().unwrap().unwrap();
                assert!(got == expect.as_bytes(), "conn {t}: echo differs");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (&s).write_all(b"stats\n").unwrap();
    let stats = line(&mut BufReader::new(s));
    let exhaustion: u64 = stats.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(exhaustion > 0, "the ring never ran dry: {stats}");
    rt.stop_handle().shutdown();
    rt.join().unwrap();
}

#[test]
fn auto_falls_back_to_epoll_when_the_probe_fails() {
    // The decision given a failed probe; the environment switch that forces the failure in a real
    // process is tested on the binary (tests/echo.rs), where it cannot race with other tests.
    let refused = || Err("forced".to_string());
    assert_eq!(
        m2m_rt::choose_driver(IoMode::Auto, refused()).unwrap(),
        m2m_rt::DriverKind::Epoll
    );
    assert!(m2m_rt::choose_driver(IoMode::Uring, refused()).is_err());
    assert_eq!(
        m2m_rt::choose_driver(IoMode::Epoll, refused()).unwrap(),
        m2m_rt::DriverKind::Epoll
    );
    assert_eq!(
        m2m_rt::choose_driver(IoMode::Auto, Ok(())).unwrap(),
        m2m_rt::DriverKind::Uring
    );
}

fn start_on(io: IoMode, addr: std::net::SocketAddr, reuse_port: bool) -> std::io::Result<Runtime> {
    let config = RtConfig {
        workers: 2,
        io,
        listeners: vec![ListenerConfig { addr, tls: None }],
        drain: Duration::from_millis(200),
        reuse_port,
        ..RtConfig::default()
    };
    Runtime::start(config, move |_| LineEcho {
        closed: Arc::new(AtomicUsize::new(0)),
        client_tls: None,
        relays: Vec::new(),
        proxied: Vec::new(),
        waiting_timer: Vec::new(),
        pending_connect: Vec::new(),
        hoppers: Vec::new(),
    })
}

fn echo_once(addr: std::net::SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"ping\n").unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(line(&mut r), "ping\n");
}

/// Without `reuse_port` a port in use is an error that says what to do, and a second runtime cannot
/// join a first one's port; with it on both, the second joins (several edges on one port).
#[test]
fn a_port_in_use_is_an_error_unless_both_opt_in_to_reuse_port() {
    for io in drivers() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = start_on(io, taken.local_addr().unwrap(), false).expect_err("port in use");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("--reuse-port"), "{e}");
        drop(taken);

        let first = start_on(io, "127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = first.local_addrs()[0];
        for _ in 0..8 {
            echo_once(addr);
        }
        let e = start_on(io, addr, false).expect_err("a port in use");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{io:?}");
        first.stop_handle().shutdown();
        first.join().unwrap();

        let a = start_on(io, "127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = a.local_addrs()[0];
        let b = start_on(io, addr, true).expect("both opted in");
        assert!(start_on(io, addr, false).is_err());
        a.stop_handle().shutdown();
        a.join().unwrap();
        echo_once(addr); // b serves alone now
        b.stop_handle().shutdown();
        b.join().unwrap();
    }
}

/// Counts the connections each core accepts.
struct CountAccepts {
    core: usize,
    accepted: Arc<[AtomicUsize; 2]>,
}

impl App for CountAccepts {
    type Msg = ();
    fn on_accept(&mut self, _: &mut Cx<'_, ()>, _: ConnId, _: usize, _: std::net::SocketAddr) {
        self.accepted[self.core].fetch_add(1, Ordering::SeqCst);
    }
    fn on_data(&mut self, _: &mut Cx<'_, ()>, _: ConnId, data: &mut [u8]) -> usize {
        data.len()
    }
    fn on_close(&mut self, _: &mut Cx<'_, ()>, _: ConnId, _: CloseReason) {}
}

/// A port the runtime keeps to itself (no `reuse_port`) still spreads its connections over every
/// core: the group's BPF program picks one of the runtime's sockets at random.
#[test]
fn connections_spread_over_the_cores_of_a_port_kept_to_itself() {
    for io in drivers() {
        let accepted: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let counts = accepted.clone();
        let rt = Runtime::start(
            RtConfig {
                workers: 2,
                io,
                listeners: vec![ListenerConfig {
                    addr: "127.0.0.1:0".parse().unwrap(),
                    tls: None,
                }],
                drain: Duration::from_millis(100),
                ..RtConfig::default()
            },
            move |core| CountAccepts {
                core,
                accepted: counts.clone(),
            },
        )
        .unwrap();
        let addr = rt.local_addrs()[0];
        let conns: Vec<TcpStream> = (0..200)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let total = || accepted[0].load(Ordering::SeqCst) + accepted[1].load(Ordering::SeqCst);
        while total() < conns.len() {
            assert!(
                std::time::Instant::now() < until,
                "{io:?}: {} accepted",
                total()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let per_core = [
            accepted[0].load(Ordering::SeqCst),
            accepted[1].load(Ordering::SeqCst),
        ];
        // Random halves of 200: below 50 on a core happens with probability ~1e-13.
        assert!(per_core.iter().all(|&n| n >= 50), "{io:?}: {per_core:?}");
        drop(conns);
        rt.stop_handle().shutdown();
        rt.join().unwrap();
    }
}
