//! Whether the edge can serve devices, for `/readyz`: the CSE is reachable when an upstream link is
//! open, or — when none is (passthrough with no device yet, every link down) — when a WebSocket to
//! it can be opened: TCP to one of its addresses (or CONNECT through the proxy in front of it), TLS
//! for wss://, and the upgrade answered 101 with the subprotocol offered, then closed with 1000. A
//! TCP connect alone would call a CSE ready that accepts connections but refuses TLS or the
//! upgrade (a half-started CSE, a port taken by something else). A thread checks every
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
    let mut tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
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

/// Start the probe thread.
pub fn spawn(p: Probe) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("m2m-readiness".into())
        .spawn(move || {
            let mut was = None;
            let mut resolved_at = Instant::now();
            loop {
                let due = !p.resolve_interval.is_zero() && resolved_at.elapsed() >= p.resolve_interval;
                if due || p.upstream.resolve_requested() {
                    p.upstream.refresh();
                    resolved_at = Instant::now();
                }
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
