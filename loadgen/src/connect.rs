//! Opening one device connection, phase by phase, each timed on its own: TCP (from a chosen source
//! address), an HTTP CONNECT tunnel when a proxy is set, TLS (rustls, optional client certificate),
//! and the WebSocket handshake (hyper + fastwebsockets, offering the scenario's subprotocols and the
//! `X-M2M-Origin` header ACME wants). The result is split into a read and a write half.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fastwebsockets::{WebSocketRead, WebSocketWrite};
use http_body_util::Empty;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use crate::scenario::Target;

pub type WsStream = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;
pub type WsReadStream = ReadHalf<WsStream>;
pub type WsRead = WebSocketRead<WsReadStream>;
pub type WsWrite = WebSocketWrite<tokio::io::BufWriter<WriteHalf<WsStream>>>;

/// Why a connection could not be opened, by the error-kind names of the reports.
#[derive(Debug)]
pub struct ConnectError {
    pub kind: &'static str,
    pub detail: String,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl ConnectError {
    fn new(kind: &'static str, detail: impl std::fmt::Display) -> Self {
        Self {
            kind,
            detail: detail.to_string(),
        }
    }

    fn io(e: &std::io::Error) -> Self {
        Self::new(io_kind(e), e)
    }
}

/// The report's name for an I/O failure.
pub fn io_kind(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "refused",
        ConnectionReset | ConnectionAborted | BrokenPipe => "reset",
        TimedOut => "timeout",
        UnexpectedEof => "eof",
        AddrNotAvailable | AddrInUse => "no_source_port",
        _ => "io",
    }
}

/// How connections are made; shared by all devices of a worker.
#[derive(Clone)]
pub struct Connector {
    pub target: Target,
    /// The target's address, resolved once.
    pub addr: SocketAddr,
    pub proxy: Option<SocketAddr>,
    pub tls: Option<tokio_rustls::TlsConnector>,
    pub protocols: Vec<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("target", &self.target)
            .field("proxy", &self.proxy)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Phase timings of one successful connect.
#[derive(Debug, Default)]
pub struct Phases {
    pub tcp: Duration,
    pub tls: Option<Duration>,
    pub handshake: Duration,
}

pub struct Connected {
    pub read: WsRead,
    pub write: WsWrite,
    pub protocol: String,
    pub phases: Phases,
}

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connected")
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// hyper runs the handshake's connection task on the current runtime.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

impl Connector {
    /// Open, tunnel, secure and upgrade one connection; `origin` goes into `X-M2M-Origin`.
    pub async fn connect(
        &self,
        source: Option<IpAddr>,
        origin: Option<&str>,
    ) -> Result<Connected, ConnectError> {
        match tokio::time::timeout(self.timeout, self.connect_inner(source, origin)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::new("timeout", "connect timed out")),
        }
    }

    async fn connect_inner(
        &self,
        source: Option<IpAddr>,
        origin: Option<&str>,
    ) -> Result<Connected, ConnectError> {
        let mut phases = Phases::default();
        let start = Instant::now();
        let first_hop = self.proxy.unwrap_or(self.addr);
        let mut tcp = tcp_connect(first_hop, source)
            .await
            .map_err(|e| ConnectError::io(&e))?;
        tcp.set_nodelay(true).map_err(|e| ConnectError::io(&e))?;
        if self.proxy.is_some() {
            connect_tunnel(&mut tcp, &self.target.authority).await?;
        }
        phases.tcp = start.elapsed();
        let stream: Box<dyn StreamBox> = match &self.tls {
            Some(tls) => {
                let t = Instant::now();
                let name = rustls::pki_types::ServerName::try_from(self.target.host.clone())
                    .map_err(|e| ConnectError::new("tls", e))?;
                let s = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| ConnectError::new("tls", e))?;
                phases.tls = Some(t.elapsed());
                Box::new(s)
            }
            None => Box::new(tcp),
        };
        let t = Instant::now();
        let req = upgrade_request(
            &self.target.path,
            &self.target.authority,
            &self.protocols.join(", "),
            origin,
        )
        .map_err(|e| ConnectError::new("handshake", e))?;
        let (ws, rsp) = fastwebsockets::handshake::client(&SpawnExecutor, req, stream)
            .await
            .map_err(|e| ConnectError::new("handshake", e))?;
        let protocol = rsp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !self.protocols.contains(&protocol) {
            return Err(ConnectError::new(
                "handshake",
                format!("server selected subprotocol {protocol:?}, not one offered"),
            ));
        }
        phases.handshake = t.elapsed();
        let (read, write) = ws.split(|s| {
            let (r, w) = tokio::io::split(s);
            (r, tokio::io::BufWriter::new(w))
        });
        Ok(Connected {
            read,
            write,
            protocol,
            phases,
        })
    }
}

/// The WebSocket upgrade request (RFC 6455 §4.1) offering `protocols` (comma-separated), with
/// `X-M2M-Origin` when given.
pub(crate) fn upgrade_request(
    path: &str,
    authority: &str,
    protocols: &str,
    origin: Option<&str>,
) -> Result<hyper::Request<Empty<bytes::Bytes>>, hyper::http::Error> {
    let mut req = hyper::Request::builder()
        .method("GET")
        .uri(path)
        .header("Host", authority)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Protocol", protocols);
    if let Some(o) = origin {
        req = req.header("X-M2M-Origin", o);
    }
    req.body(Empty::<bytes::Bytes>::new())
}

/// A boxed stream for the handshake (plain or TLS).
trait StreamBox: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> StreamBox for T {}

async fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    match source {
        None => TcpStream::connect(addr).await,
        Some(src) => {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.bind(SocketAddr::new(src, 0))?;
            socket.connect(addr).await
        }
    }
}

/// `CONNECT authority` through the proxy; the proxy's 2xx opens the tunnel.
async fn connect_tunnel(tcp: &mut TcpStream, authority: &str) -> Result<(), ConnectError> {
    let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| ConnectError::io(&e))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        // Read byte-exact up to the end of the head: whatever follows belongs to the tunnel.
        let n = tcp
            .read(&mut chunk[..1])
            .await
            .map_err(|e| ConnectError::io(&e))?;
        if n == 0 {
            return Err(ConnectError::new(
                "proxy",
                "proxy closed before answering CONNECT",
            ));
        }
        buf.push(chunk[0]);
        if buf.len() > 8192 {
            return Err(ConnectError::new(
                "proxy",
                "CONNECT response head too large",
            ));
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut rsp = httparse::Response::new(&mut headers);
        match rsp.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let code = rsp.code.unwrap_or(0);
                return if (200..300).contains(&code) {
                    Ok(())
                } else {
                    Err(ConnectError::new(
                        "proxy",
                        format!("CONNECT answered {code}"),
                    ))
                };
            }
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Err(ConnectError::new("proxy", e)),
        }
    }
}

/// TLS settings for wss targets: the CA bundle, and a client certificate for mutual TLS.
pub fn tls_connector(
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(cert?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
