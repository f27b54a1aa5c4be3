//! Whether the edge can serve devices, for `/readyz`: the CSE is reachable when an upstream link is
//! open, or — when none is (passthrough with no device yet, every link down) — when a WebSocket to
//! it can be opened: TCP to one of its addresses (or CONNECT through the proxy in front of it), TLS
//! for wss://, and the upgrade answered 101 with the subprotocol offered, then closed with 1000. A
//! TCP connect alone would call a CSE ready that accepts connections but refuses TLS or the
//! upgrade (a half-started CSE, a port taken by something else). Each attempt has one deadline,
//! `upstream.connect_timeout`, however the peer paces its bytes. A thread checks every
//! [`PROBE_EVERY`] and also resolves the upstream name again when it is due or a link's connect
//! failed ([`super::upstream`]); the admin listener only reads the answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::metrics::CoreCounters;
use super::upstream::UpstreamAddrs;

pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The last answer, shared with every core's admin handler.
#[derive(Debug, Default)]
pub struct Readiness {
    reachable: AtomicBool,
}

impl Readiness {
    pub fn reachable(&self, counters: &[Arc<CoreCounters>]) -> bool {
        links_open(counters) || self.reachable.load(Ordering::Relaxed)
    }
}

fn links_open(counters: &[Arc<CoreCounters>]) -> bool {
    counters
        .iter()
        .any(|c| c.upstream_links.load(Ordering::Relaxed) > 0)
}

/// What the probe thread needs.
pub struct Probe {
    pub readiness: Arc<Readiness>,
    pub upstream: Arc<UpstreamAddrs>,
    /// Probe the proxy instead of the CSE.
    pub proxy: Option<std::net::SocketAddr>,
    /// Each TCP probe's timeout.
    pub timeout: Duration,
    /// Resolve the name again this often (zero: only after failures).
    pub resolve_interval: Duration,
    pub counters: Arc<Vec<Arc<CoreCounters>>>,
    /// The WebSocket the probe opens.
    pub target: Target,
}

/// The CSE's WebSocket endpoint as the links open it.
#[derive(Clone)]
pub struct Target {
    /// Name or address for CONNECT and TLS, with the port.
    pub host: String,
    pub port: u16,
    /// The Host header (`host[:port]`).
    pub authority: String,
    pub path: String,
    pub protocols: Vec<String>,
    /// TLS for a wss:// CSE.
    pub tls: Option<m2m_rt::ClientTls>,
}

impl Probe {
    /// One probe: links open, or a WebSocket to any CSE address (the one in use first), or through
    /// the proxy. The reason of the last failure when none opened.
    fn reachable(&self) -> Result<(), String> {
        if links_open(&self.counters) {
            return Ok(());
        }
        let mut why = String::new();
        let addrs: Vec<SocketAddr> = match self.proxy {
            Some(proxy) => vec![proxy],
            None => {
                let current = self.upstream.current();
                std::iter::once(current)
                    .chain(self.upstream.all().into_iter().filter(|a| *a != current))
                    .collect()
            }
        };
        for addr in addrs {
            match open_websocket(addr, self.proxy.is_some(), &self.target, self.timeout) {
                Ok(()) => return Ok(()),
                Err(e) => why = format!("{addr}: {e}"),
            }
        }
        Err(why)
    }
}

/// Open a WebSocket to `target` at `addr` (a proxy when `proxied`), then close it.
fn open_websocket(
    addr: SocketAddr,
    proxied: bool,
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    use m2m_ws::handshake::HeadLimits;
    use m2m_ws::handshake::client::{ClientHandshake, ClientOptions};
    // One deadline for the whole attempt: a peer that trickles a byte per read timeout cannot
    // hold the probe (and the re-resolution that runs on its thread) for longer.
    let deadline = Instant::now() + timeout;
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    let mut tcp = Deadline { tcp, deadline };
    if proxied {
        tcp.write_all(&m2m_ws::handshake::connect::connect_request(
            &target.host,
            target.port,
            &[],
        ))
        .map_err(|e| format!("CONNECT: {e}"))?;
        let mut head = Vec::new();
        read_head(&mut tcp, &mut head, |buf| {
            m2m_ws::handshake::connect::parse_connect_response(buf, HeadLimits::default())
                .map_err(|e| e.to_string())
        })
        .and_then(|(status, _)| match status {
            200..=299 => Ok(()),
            other => Err(format!("the proxy answered CONNECT with {other}")),
        })?;
    }
    let mut stream: Box<dyn ReadWrite> = match &target.tls {
        Some(tls) => {
            let conn = rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone())
                .map_err(|e| e.to_string())?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
        None => Box::new(tcp),
    };
    let (hs, request) = ClientHandshake::new(ClientOptions {
        host: target.authority.clone(),
        path: target.path.clone(),
        protocols: target.protocols.clone(),
        ..Default::default()
    });
    stream
        .write_all(&request)
        .map_err(|e| format!("upgrade request: {e}"))?;
    let mut head = Vec::new();
    read_head(&mut stream, &mut head, |buf| {
        hs.read_response(buf, HeadLimits::default())
            .map_err(|e| format!("the upgrade was refused: {e}"))
    })?;
    let mut close = Vec::new();
    m2m_ws::Sender::new(m2m_ws::Role::Client, Default::default(), None).close(
        m2m_ws::CloseCode::NORMAL,
        "",
        &mut close,
    );
    let _ = stream.write_all(&close);
    let _ = stream.flush();
    Ok(())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A TCP stream whose every read and write ends by one deadline.
struct Deadline {
    tcp: TcpStream,
    deadline: Instant,
}

impl Deadline {
    /// The time left, set as the socket's timeout for the next call; an error once it is over.
    fn arm(&self, write: bool) -> std::io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the probe's time is up",
            ));
        }
        if write {
            self.tcp.set_write_timeout(Some(left))
        } else {
            self.tcp.set_read_timeout(Some(left))
        }
    }
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.arm(false)?;
        self.tcp.read(buf)
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.arm(true)?;
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// Read from `stream` into `buf` until `parse` finds a whole head (at most 16 KiB).
fn read_head<T>(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Result<Option<T>, String>,
) -> Result<T, String> {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(done) = parse(buf)? {
            return Ok(done);
        }
        if buf.len() > 16 * 1024 {
            return Err("an answer head over 16 KiB".into());
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("closed before answering".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Resolve the upstream name again when `interval` has passed since `resolved_at` (zero: never by
/// time) or a failed connect asked for it; whether it did.
fn resolve_if_due(
    upstream: &UpstreamAddrs,
    interval: Duration,
    resolved_at: &mut Instant,
    now: Instant,
) -> bool {
    let due = !interval.is_zero() && now.duration_since(*resolved_at) >= interval;
    if due || upstream.resolve_requested() {
        upstream.refresh();
        *resolved_at = now;
        return true;
    }
    false
}

/// Start the probe thread.
pub fn spawn(p: Probe) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("m2m-readiness".into())
        .spawn(move || {
            let mut was = None;
            let mut resolved_at = Instant::now();
            loop {
                resolve_if_due(&p.upstream, p.resolve_interval, &mut resolved_at, Instant::now());
                let outcome = p.reachable();
                let now = outcome.is_ok();
                p.readiness.reachable.store(now, Ordering::Relaxed);
                if was != Some(now) {
                    let target = p.proxy.unwrap_or_else(|| p.upstream.current());
                    match outcome {
                        Ok(()) => tracing::info!(%target, "the upstream CSE is reachable: ready"),
                        Err(why) => tracing::warn!(%target, %why, "the upstream CSE is not reachable: /readyz answers 503"),
                    }
                    was = Some(now);
                }
                std::thread::sleep(PROBE_EVERY);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn target() -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: 0,
            authority: "127.0.0.1".into(),
            path: "/".into(),
            protocols: vec!["oneM2M.json".into()],
            tls: None,
        }
    }

    /// A peer that answers one byte at a time, each just within a read timeout, is cut off by
    /// the attempt's one deadline (per-read timeouts alone would let 16 KiB of head take hours).
    #[test]
    fn a_trickling_peer_cannot_hold_the_probe_past_its_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\n");
            while s.write_all(b"X").is_ok() {
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        let outcome = open_websocket(addr, false, &target(), Duration::from_millis(500));
        assert!(outcome.is_err(), "{outcome:?}");
        // Generous against a loaded machine; without the deadline this runs for minutes.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    /// An answer head that never ends is cut off at the handshake's head limit (8 KiB; the
    /// reader's own bound, 16 KiB, is a backstop), not read until the deadline.
    #[test]
    fn an_endless_answer_head_is_cut_off_at_its_bound() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\n");
            let line = format!("X-Filler: {}\r\n", "f".repeat(1000));
            while s.write_all(line.as_bytes()).is_ok() {}
        });
        let e = open_websocket(addr, false, &target(), Duration::from_secs(30)).unwrap_err();
        assert!(e.contains("exceeds 8192 bytes"), "{e}");
    }

    /// Something that accepts TCP but refuses the upgrade is not a CSE.
    #[test]
    fn a_refused_upgrade_is_not_reachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        });
        let e = open_websocket(addr, false, &target(), Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("refused") && e.contains("404"), "{e}");
    }

    #[test]
    fn the_name_is_resolved_again_when_due_and_after_a_failed_connect() {
        let a = |last: u8| SocketAddr::from(([10, 0, 0, last], 8180));
        let answer = Arc::new(Mutex::new(vec![a(1), a(2)]));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (answer2, calls2) = (answer.clone(), calls.clone());
        let upstream = UpstreamAddrs::with(
            vec![a(1), a(2)],
            Box::new(move || {
                calls2.fetch_add(1, Ordering::Relaxed);
                Ok(answer2.lock().unwrap().clone())
            }),
        );
        let interval = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut at = t0;
        // Not before the interval; then at it, and the new list is used.
        assert!(!resolve_if_due(
            &upstream,
            interval,
            &mut at,
            t0 + Duration::from_secs(29)
        ));
        *answer.lock().unwrap() = vec![a(3)];
        assert!(resolve_if_due(&upstream, interval, &mut at, t0 + interval));
        assert_eq!((upstream.all(), upstream.current()), (vec![a(3)], a(3)));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        // A failed connect asks at once, interval or not (and the old list stays when the name
        // now has the failed address only: nothing better to switch to).
        assert!(!resolve_if_due(
            &upstream,
            interval,
            &mut at,
            t0 + interval + Duration::from_secs(1)
        ));
        *answer.lock().unwrap() = vec![a(3), a(4)];
        upstream.failed(a(3));
        assert!(resolve_if_due(
            &upstream,
            interval,
            &mut at,
            t0 + interval + Duration::from_secs(2)
        ));
        assert_eq!(upstream.all(), vec![a(3), a(4)]);
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        // Zero: only after failures.
        let mut at = t0;
        assert!(!resolve_if_due(
            &upstream,
            Duration::ZERO,
            &mut at,
            t0 + Duration::from_secs(3600)
        ));
        upstream.failed(upstream.current());
        assert!(resolve_if_due(
            &upstream,
            Duration::ZERO,
            &mut at,
            t0 + Duration::from_secs(3601)
        ));
    }
}
