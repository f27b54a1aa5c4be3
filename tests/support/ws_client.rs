//! A small blocking oneM2M WebSocket client for tests, on m2m-ws and m2m-primitive: handshake with
//! subprotocols and `X-M2M-Origin`, then primitives in and out (pings answered).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use m2m_primitive::{Format, Primitive};
use m2m_ws::handshake::HeadLimits;
use m2m_ws::handshake::client::{ClientHandshake, ClientOptions};
use m2m_ws::{Event, Receiver, ReceiverLimits, Role, Sender, SenderConfig, endpoint};

pub struct WsClient {
    stream: TcpStream,
    rx: Receiver,
    tx: Sender,
    buf: Vec<u8>,
    pub format: Format,
    pub protocol: String,
}

fn format_of(protocol: &str) -> Format {
    let p = protocol.to_ascii_lowercase();
    if p.ends_with("cbor") {
        Format::Cbor
    } else if p.ends_with("xml") {
        Format::Xml
    } else {
        Format::Json
    }
}

impl WsClient {
    /// Connect and complete the handshake; `Err` carries the handshake failure.
    pub fn connect(
        addr: SocketAddr,
        protocols: &[&str],
        origin: Option<&str>,
    ) -> Result<Self, m2m_ws::HandshakeError> {
        let stream = TcpStream::connect(addr).expect("TCP connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self::handshake(stream, &addr.to_string(), protocols, origin, Vec::new())
    }

    /// Send `CONNECT target` to `proxy` first; `Err(Status(code))` when the proxy refuses.
    pub fn connect_through(
        proxy: SocketAddr,
        target: &str,
        protocols: &[&str],
    ) -> Result<Self, m2m_ws::HandshakeError> {
        let stream = TcpStream::connect(proxy).expect("TCP connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let (host, port) = target.rsplit_once(':').unwrap();
        (&stream)
            .write_all(&m2m_ws::handshake::connect::connect_request(
                host,
                port.parse().unwrap(),
                &[],
            ))
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let (status, len) = loop {
            if let Some(done) =
                m2m_ws::handshake::connect::parse_connect_response(&buf, HeadLimits::default())?
            {
                break done;
            }
            let n = (&stream).read(&mut chunk).expect("CONNECT read");
            assert!(n > 0, "proxy closed during CONNECT");
            buf.extend_from_slice(&chunk[..n]);
        };
        if status != 200 {
            return Err(m2m_ws::HandshakeError::Status(status));
        }
        buf.drain(..len);
        Self::handshake(stream, target, protocols, None, buf)
    }

    fn handshake(
        stream: TcpStream,
        host: &str,
        protocols: &[&str],
        origin: Option<&str>,
        mut buf: Vec<u8>,
    ) -> Result<Self, m2m_ws::HandshakeError> {
        let (hs, request) = ClientHandshake::new(ClientOptions {
            host: host.to_string(),
            path: "/".into(),
            protocols: protocols.iter().map(|p| p.to_string()).collect(),
            deflate: None,
            extra_headers: origin
                .map(|o| vec![("X-M2M-Origin".to_string(), o.to_string())])
                .unwrap_or_default(),
        });
        (&stream).write_all(&request).unwrap();
        let mut chunk = [0u8; 4096];
        let (accepted, len) = loop {
            if let Some(done) = hs.read_response(&buf, HeadLimits::default())? {
                break done;
            }
            let n = (&stream).read(&mut chunk).expect("handshake read");
            assert!(n > 0, "server closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..len);
        let protocol = accepted.protocol.unwrap_or_default();
        let (rx, tx) = endpoint(
            Role::Client,
            accepted.deflate,
            ReceiverLimits::default(),
            SenderConfig::default(),
            6,
        );
        Ok(Self {
            stream,
            rx,
            tx,
            buf,
            format: format_of(&protocol),
            protocol,
        })
    }

    pub fn send(&mut self, p: &Primitive) {
        let bytes = m2m_primitive::encode(p, self.format).unwrap();
        self.send_raw(&bytes, self.format != Format::Cbor);
    }

    pub fn send_raw(&mut self, bytes: &[u8], text: bool) {
        let mut out = Vec::new();
        if text {
            self.tx.text(std::str::from_utf8(bytes).unwrap(), &mut out);
        } else {
            self.tx.binary(bytes, &mut out);
        }
        self.stream.write_all(&out).unwrap();
    }

    /// The next primitive (pings are answered on the way). Panics on close or timeout.
    pub fn recv(&mut self) -> Primitive {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut reply = Vec::new();
            let mut message = None;
            match self
                .rx
                .read(&mut self.buf)
                .expect("protocol error from server")
            {
                Some((event, used)) => {
                    match event {
                        Event::Text(t) => message = Some(t.as_bytes().to_vec()),
                        Event::Binary(b) => message = Some(b.to_vec()),
                        Event::Ping(p) => self.tx.pong(p, &mut reply),
                        Event::Close(c) => panic!("server closed: {c:?}"),
                        Event::Pong(_) | Event::Fragment => {}
                    }
                    self.buf.drain(..used);
                }
                None => {
                    assert!(Instant::now() < deadline, "no primitive within 15 s");
                    let mut chunk = [0u8; 16384];
                    let n = self.stream.read(&mut chunk).expect("read");
                    assert!(n > 0, "server closed the connection");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
            if !reply.is_empty() {
                self.stream.write_all(&reply).unwrap();
            }
            if let Some(bytes) = message {
                let format = m2m_primitive::Format::sniff(&bytes).unwrap_or(self.format);
                return m2m_primitive::decode(format, &bytes)
                    .unwrap_or_else(|e| panic!("undecodable primitive: {e}"));
            }
        }
    }

    /// Read for `d`, answering pings (the behaviour of a live, quiet device); returns the pings
    /// seen. Panics if the server closes.
    pub fn answer_pings_for(&mut self, d: Duration) -> usize {
        let (pings, closed) = self.read_for(d, true);
        assert!(!closed, "the server closed a device that answers pings");
        pings
    }

    /// Read for up to `d` without answering pings (a device that is gone); true when the server
    /// closed the connection meanwhile.
    pub fn closed_within(&mut self, d: Duration) -> bool {
        self.read_for(d, false).1
    }

    fn read_for(&mut self, d: Duration, answer: bool) -> (usize, bool) {
        let deadline = Instant::now() + d;
        let mut pings = 0;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let closed = loop {
            while let Ok(Some((event, used))) = self.rx.read(&mut self.buf) {
                let mut reply = Vec::new();
                let close = match event {
                    Event::Ping(p) => {
                        pings += 1;
                        if answer {
                            self.tx.pong(p, &mut reply);
                        }
                        false
                    }
                    Event::Close(_) => true,
                    _ => false,
                };
                self.buf.drain(..used);
                if !reply.is_empty() {
                    self.stream.write_all(&reply).unwrap();
                }
                if close {
                    return (pings, true);
                }
            }
            if Instant::now() >= deadline {
                break false;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break true,
            }
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        (pings, closed)
    }

    /// Send a request and wait for the response with the same `rqi` (NOTIFYs meanwhile are
    /// returned in `others`).
    pub fn request(
        &mut self,
        p: &Primitive,
        others: &mut Vec<Primitive>,
    ) -> m2m_primitive::Response {
        self.send(p);
        let rqi = p.rqi().unwrap().to_string();
        loop {
            match self.recv() {
                Primitive::Response(r) if r.rqi.as_deref() == Some(rqi.as_str()) => return r,
                other => others.push(other),
            }
        }
    }
}
