//! The in-memory harness: one engine, a fake clock, a fake [`Io`] that keeps every connection's
//! output as bytes on a wire, scripted devices (WebSocket clients) and a scripted CSE (a WebSocket
//! server per link). No sockets, no sleeps; time moves only when a test says so.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use m2m_primitive::{Format, Primitive};
use m2m_ws::handshake::client::{ClientHandshake, ClientOptions};
use m2m_ws::handshake::subprotocol::OneM2mPolicy;
use m2m_ws::handshake::{HeadLimits, parse_request, server};
use m2m_ws::{Event, OpCode, Receiver, ReceiverLimits, Role, Sender, SenderConfig, endpoint};

use crate::counters::CoreCounters;
use crate::settings::{RelaySettings, format_of};
use crate::{DeviceId, Engine, Envelope, Io, LinkId, Peer, Target, Timer};

/// The effects the engine asked for, kept for the test to inspect and play out.
#[derive(Debug, Default)]
pub(crate) struct FakeIo {
    /// Bytes sent to each peer and not yet read by it.
    pub wire: HashMap<Peer, Vec<u8>>,
    pub closed: Vec<Peer>,
    pub aborted: Vec<Peer>,
    pub connects: Vec<(Peer, Target)>,
    pub timers: Vec<(Instant, Timer)>,
    pub identities: HashMap<DeviceId, String>,
    /// The identity of every device not in `identities`.
    pub identity_of_all: Option<String>,
    /// `connect` fails at once.
    pub refuse_connects: bool,
    /// `start_tls` fails (no TLS configuration for the link, say).
    pub refuse_tls: bool,
    /// Peers whose output is not taken off the wire (they stopped reading).
    pub stalled: HashSet<Peer>,
    /// Messages for other cores' engines.
    pub posted: Vec<(usize, Envelope)>,
}

impl Io for FakeIo {
    fn send_with(&mut self, to: Peer, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        if self.closed.contains(&to) || self.aborted.contains(&to) {
            return false;
        }
        write(self.wire.entry(to).or_default());
        true
    }
    fn unsent(&self, to: Peer) -> usize {
        if self.stalled.contains(&to) {
            self.wire.get(&to).map_or(0, Vec::len)
        } else {
            0
        }
    }
    fn close(&mut self, to: Peer) {
        self.closed.push(to);
    }
    fn abort(&mut self, to: Peer) {
        self.wire.remove(&to);
        self.aborted.push(to);
    }
    fn connect(&mut self, peer: Peer, target: Target) -> std::io::Result<()> {
        if self.refuse_connects {
            return Err(std::io::ErrorKind::ConnectionRefused.into());
        }
        // A new connection for the same peer starts clean.
        self.closed.retain(|p| *p != peer);
        self.aborted.retain(|p| *p != peer);
        self.wire.remove(&peer);
        self.connects.push((peer, target));
        Ok(())
    }
    fn start_tls(&mut self, _link: LinkId) -> std::io::Result<()> {
        if self.refuse_tls {
            return Err(std::io::Error::other("no TLS for this link"));
        }
        Ok(())
    }
    fn set_timer(&mut self, at: Instant, timer: Timer) {
        self.timers.push((at, timer));
    }
    fn client_identity(&mut self, device: DeviceId) -> Option<String> {
        self.identities
            .get(&device)
            .cloned()
            .or_else(|| self.identity_of_all.clone())
    }
    fn resolve(&mut self, _authority: &str) -> Option<SocketAddr> {
        None
    }
    fn post(&mut self, core: usize, msg: Envelope) -> bool {
        self.posted.push((core, msg));
        true
    }
}

/// A scripted WebSocket endpoint (a device's client side, or the CSE's server side of a link).
#[derive(Debug)]
pub(crate) struct End {
    rx: Receiver,
    tx: Sender,
    pub format: Format,
    /// Bytes read off the wire and not yet a whole frame.
    input: Vec<u8>,
    pub closed: Option<u16>,
    /// Payloads of pings received and not yet answered.
    pub pings: Vec<Vec<u8>>,
}

impl End {
    fn new(role: Role, format: Format) -> Self {
        let (rx, tx) = endpoint(
            role,
            None,
            ReceiverLimits::default(),
            SenderConfig::default(),
            6,
        );
        Self {
            rx,
            tx,
            format,
            input: Vec::new(),
            closed: None,
            pings: Vec::new(),
        }
    }

    pub(crate) fn frame(&mut self, p: &Primitive) -> Vec<u8> {
        let bytes = m2m_primitive::encode(p, self.format).unwrap();
        let mut out = Vec::new();
        let opcode = if self.format == Format::Cbor {
            OpCode::Binary
        } else {
            OpCode::Text
        };
        self.tx.message(opcode, &bytes, &mut out);
        out
    }

    /// Pong frames for the pings received.
    fn pongs(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in std::mem::take(&mut self.pings) {
            self.tx.pong(&p, &mut out);
        }
        out
    }

    /// Every whole primitive in `bytes` (plus what was left from before).
    pub(crate) fn read(&mut self, bytes: &[u8]) -> Vec<Primitive> {
        self.input.extend_from_slice(bytes);
        let mut got = Vec::new();
        let mut at = 0;
        while let Ok(Some((event, used))) = self.rx.read(&mut self.input[at..]) {
            let payload = match event {
                Event::Text(t) => Some(t.as_bytes().to_vec()),
                Event::Binary(b) => Some(b.to_vec()),
                Event::Close(f) => {
                    self.closed = Some(f.code.map_or(1005, |c| c.0));
                    None
                }
                Event::Ping(p) => {
                    self.pings.push(p.to_vec());
                    None
                }
                _ => None,
            };
            at += used;
            if let Some(p) = payload {
                got.push(m2m_primitive::decode(self.format, &p).expect("a valid primitive"));
            }
        }
        self.input.drain(..at);
        got
    }
}

/// A device in the harness.
#[derive(Debug)]
pub(crate) struct Dev {
    pub id: DeviceId,
    pub end: End,
}

/// The CSE's side of one link.
#[derive(Debug)]
pub(crate) struct CseLink {
    pub end: End,
    /// The `X-M2M-Origin` the link was opened with.
    pub origin: Option<String>,
}

/// Engine + fake clock + fake I/O + the CSE's ends of the links.
#[derive(Debug)]
pub(crate) struct Harness {
    pub engine: Engine,
    pub io: FakeIo,
    pub now: Instant,
    pub cse: HashMap<LinkId, CseLink>,
    pub counters: Arc<CoreCounters>,
}

pub(crate) fn settings() -> RelaySettings {
    RelaySettings::for_upstream("127.0.0.1:8180".parse().unwrap())
}

/// A JSON primitive from text.
pub(crate) fn json(text: &str) -> Primitive {
    m2m_primitive::decode(Format::Json, text.as_bytes()).unwrap()
}

/// The `rsc` of a response (panics on a request).
pub(crate) fn rsc(p: &Primitive) -> u16 {
    match p {
        Primitive::Response(r) => r.rsc.0,
        other => panic!("a response expected, got {other:?}"),
    }
}

/// The `rqi` of a primitive.
pub(crate) fn rqi(p: &Primitive) -> String {
    match p {
        Primitive::Response(r) => r.rqi.clone().unwrap_or_default(),
        Primitive::Request(r) => r.rqi.clone(),
    }
}

impl Harness {
    pub fn new(settings: RelaySettings) -> Self {
        let counters = Arc::new(CoreCounters::default());
        Self {
            engine: Engine::new(settings, counters.clone()),
            io: FakeIo::default(),
            now: Instant::now(),
            cse: HashMap::new(),
            counters,
        }
    }

    /// A device connects and completes the WebSocket handshake with `protocol`.
    pub fn device(&mut self, protocol: &str, origin: Option<&str>) -> Dev {
        let id = self.engine.new_device(self.now);
        self.engine.device_accepted(&mut self.io, self.now, id);
        let (hs, mut request) = ClientHandshake::new(ClientOptions {
            host: "edge".into(),
            path: "/".into(),
            protocols: vec![protocol.into()],
            deflate: None,
            extra_headers: origin
                .map(|o| vec![("X-M2M-Origin".to_string(), o.to_string())])
                .unwrap_or_default(),
        });
        let used = self
            .engine
            .device_data(&mut self.io, self.now, id, &mut request);
        assert_eq!(used, request.len());
        let answer = self.io.wire.remove(&Peer::Device(id)).unwrap_or_default();
        let (accepted, head) = hs
            .read_response(&answer, HeadLimits::default())
            .expect("the edge accepts the handshake")
            .expect("a whole answer");
        let format = format_of(accepted.protocol.as_deref().unwrap());
        // Frames sent right after the handshake answer (held requests) are the device's input.
        if answer.len() > head {
            self.io
                .wire
                .insert(Peer::Device(id), answer[head..].to_vec());
        }
        Dev {
            id,
            end: End::new(Role::Client, format),
        }
    }

    /// The device sends a primitive.
    pub fn send(&mut self, dev: &mut Dev, p: &Primitive) {
        let mut bytes = dev.end.frame(p);
        let used = self
            .engine
            .device_data(&mut self.io, self.now, dev.id, &mut bytes);
        assert_eq!(used, bytes.len(), "the edge consumed a whole frame");
    }

    /// What the device received since the last call.
    pub fn recv(&mut self, dev: &mut Dev) -> Vec<Primitive> {
        let bytes = self
            .io
            .wire
            .remove(&Peer::Device(dev.id))
            .unwrap_or_default();
        dev.end.read(&bytes)
    }

    /// The device reads its input and answers the pings in it; returns the primitives read.
    pub fn answer_pings(&mut self, dev: &mut Dev) -> Vec<Primitive> {
        let got = self.recv(dev);
        let mut pongs = dev.end.pongs();
        if !pongs.is_empty() {
            self.engine
                .device_data(&mut self.io, self.now, dev.id, &mut pongs);
        }
        got
    }

    /// The CSE reads link `l` and answers the pings on it.
    pub fn cse_answer_pings(&mut self, l: LinkId) -> Vec<Primitive> {
        let got = self.cse_recv(l);
        let mut pongs = self.cse.get_mut(&l).expect("accepted link").end.pongs();
        if !pongs.is_empty() {
            self.engine.link_data(&mut self.io, self.now, l, &mut pongs);
        }
        got
    }

    /// Link ids the engine asked to connect, in order.
    pub fn links_asked(&self) -> Vec<LinkId> {
        self.io
            .connects
            .iter()
            .filter_map(|(p, _)| match p {
                Peer::Link(l) => Some(*l),
                _ => None,
            })
            .collect()
    }

    /// The CSE accepts every link the engine is connecting and not yet accepted.
    pub fn cse_accept_all(&mut self) -> Vec<LinkId> {
        let mut accepted = Vec::new();
        let asked: Vec<(Peer, Target)> = std::mem::take(&mut self.io.connects);
        for (peer, _) in asked {
            if let Peer::Link(l) = peer
                && !accepted.contains(&l)
                && self.cse_accept(l)
            {
                accepted.push(l);
            }
        }
        accepted
    }

    /// The CSE accepts link `l`: TCP, then the WebSocket handshake (JSON and CBOR, like ACME).
    /// False when the engine no longer connects that link (it failed or was closed meanwhile).
    pub fn cse_accept(&mut self, l: LinkId) -> bool {
        self.engine
            .link_connected(&mut self.io, self.now, l, Ok(()));
        let request = self.io.wire.remove(&Peer::Link(l)).unwrap_or_default();
        if request.is_empty() {
            return false;
        }
        let (req, _) = parse_request(&request, HeadLimits::default())
            .unwrap()
            .unwrap();
        let up = server::validate_upgrade(&req).unwrap();
        let origin = up.m2m_origin.map(str::to_string);
        let n = server::negotiate(&up, &OneM2mPolicy::default(), None).unwrap();
        let format = format_of(&n.protocol);
        let mut response = n.response.clone();
        self.engine
            .link_data(&mut self.io, self.now, l, &mut response);
        self.cse.insert(
            l,
            CseLink {
                end: End::new(Role::Server, format),
                origin,
            },
        );
        true
    }

    /// What the CSE received on link `l` since the last call.
    pub fn cse_recv(&mut self, l: LinkId) -> Vec<Primitive> {
        let bytes = self.io.wire.remove(&Peer::Link(l)).unwrap_or_default();
        self.cse
            .get_mut(&l)
            .expect("accepted link")
            .end
            .read(&bytes)
    }

    /// The CSE sends a primitive on link `l`.
    pub fn cse_send(&mut self, l: LinkId, p: &Primitive) {
        let mut bytes = self.cse.get_mut(&l).expect("accepted link").end.frame(p);
        let used = self.engine.link_data(&mut self.io, self.now, l, &mut bytes);
        assert_eq!(used, bytes.len());
    }

    /// The CSE drops link `l`.
    pub fn cse_drop(&mut self, l: LinkId) {
        self.cse.remove(&l);
        self.io.wire.remove(&Peer::Link(l));
        self.engine.link_closed(&mut self.io, self.now, l, "reset");
    }

    /// The CSE dials the notify listener from `ip` with `origin`; `None` when the edge refused it.
    pub fn notify_connect(&mut self, ip: &str, origin: &str) -> Option<(crate::NotifyId, End)> {
        let n = self.engine.new_notify(self.now, ip.parse().unwrap());
        self.engine.notify_accepted(&mut self.io, self.now, n);
        let (hs, mut request) = ClientHandshake::new(ClientOptions {
            host: "edge".into(),
            path: "/".into(),
            protocols: vec!["oneM2M.json".into()],
            deflate: None,
            extra_headers: vec![("X-M2M-Origin".to_string(), origin.to_string())],
        });
        self.engine
            .notify_data(&mut self.io, self.now, n, &mut request);
        let answer = self.io.wire.remove(&Peer::Notify(n)).unwrap_or_default();
        let (accepted, _) = hs.read_response(&answer, HeadLimits::default()).ok()??;
        let format = format_of(accepted.protocol.as_deref().unwrap());
        Some((n, End::new(Role::Client, format)))
    }

    /// The CSE sends a request on its notify connection.
    pub fn notify_send(&mut self, n: crate::NotifyId, end: &mut End, p: &Primitive) {
        let mut bytes = end.frame(p);
        self.engine
            .notify_data(&mut self.io, self.now, n, &mut bytes);
    }

    /// What the CSE received on its notify connection.
    pub fn notify_recv(&mut self, n: crate::NotifyId, end: &mut End) -> Vec<Primitive> {
        let bytes = self.io.wire.remove(&Peer::Notify(n)).unwrap_or_default();
        end.read(&bytes)
    }

    /// Move the clock and fire every timer that is due, in deadline order.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        loop {
            self.io.timers.sort_by_key(|(at, _)| *at);
            match self.io.timers.first() {
                Some(&(at, t)) if at <= until => {
                    self.io.timers.remove(0);
                    self.now = self.now.max(at);
                    self.engine.timer(&mut self.io, self.now, t);
                }
                _ => break,
            }
        }
        self.now = until;
    }
}
