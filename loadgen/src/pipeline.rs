//! `m2m-loadgen pipeline`: a closed-loop client light enough that the proxy it drives is the
//! bottleneck. `run` (the scenario engine on tokio, with schedules, device state and per-operation
//! histograms) costs more CPU per request than nginx does to relay one, so in front of a light
//! upstream every proxy looked alike: the client saturated first. This client keeps `in_flight`
//! retrieves outstanding on each of `connections` WebSocket connections, on the edge's own runtime
//! (one core, io_uring or epoll): the request frames are built and masked once per slot and resent
//! as they are; a response is found by its `rqi` (the slot number) with a byte search; everything a
//! turn of the loop answers is resent in one write per connection. Latency is recorded per request
//! (send to response) in an HdrHistogram. Connections open first; the measured window starts
//! when the last one is open.
//!
//! Not for anything but benchmarks: the masking keys repeat (RFC 6455 wants a fresh key per frame
//! against cache poisoning by intermediaries, which does not apply on loopback), and every request
//! is the same retrieve.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use m2m_rt::{App, CloseReason, ConnId, Cx, IoMode, ListenerConfig, RtConfig, Runtime};
use m2m_ws::frame::{FrameHeader, OpCode, write_frame};
use m2m_ws::handshake::HeadLimits;
use m2m_ws::handshake::client::{ClientHandshake, ClientOptions};
use serde::Serialize;

/// The `pipeline` command's options.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// WebSocket URL of the proxy (or CSE): ws://host:port/path.
    #[arg(long)]
    pub target: String,
    /// Connections, each with its own originator.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Requests outstanding on each connection.
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// Open loop: requests per second over all connections, sent at their scheduled times (each on
    /// a connection with a free slot, round robin); latency counts from the scheduled time, so a
    /// request that waited for a free slot is charged its wait. 0: closed loop.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Length of the measured window (after every connection is open).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// I/O driver of the client's one core: auto (io_uring where allowed), uring or epoll.
    #[arg(long, default_value = "auto")]
    pub io: IoMode,
}

/// What a run measured (printed as one JSON line).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PipelineSummary {
    pub connections: usize,
    pub in_flight: usize,
    /// Responses received in the measured window.
    pub operations: u64,
    /// Over the whole run (set-up included): responses with an error `rsc` (≥ 4000) or none,
    /// connections that failed or closed before the end, frames that were not responses to an
    /// outstanding request of their connection (fragmented messages included: not read here).
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_s: f64,
    /// Open loop: requests the schedule asked for in the window, and those sent (sent/scheduled
    /// below ~0.97 means the client, or what it drives, could not keep the rate).
    pub scheduled: u64,
    pub sent: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// `ws://host:port/path` → address, Host header, path (the pipeline speaks plain ws only).
fn parse_target(target: &str) -> anyhow::Result<(SocketAddr, String, String)> {
    let url =
        m2m_edge::wsurl::WsUrl::parse(target).map_err(|e| anyhow::anyhow!("--target {e:#}"))?;
    anyhow::ensure!(
        !url.secure,
        "--target {target:?}: the pipeline client speaks ws:// only"
    );
    let addr = *url
        .resolve()?
        .first()
        .ok_or_else(|| anyhow::anyhow!("{} does not resolve", url.authority))?;
    Ok((addr, url.authority, url.path))
}

/// The request frame of slot `slot` on connection `conn`, masked.
fn request_frame(conn: usize, slot: usize) -> Vec<u8> {
    let body = format!(
        r#"{{"op":2,"to":"cse-in/Cpipe{conn}","fr":"Cpipe{conn}","rqi":"{conn}-{slot}","rvi":"3"}}"#
    );
    let mut out = Vec::with_capacity(body.len() + 8);
    let key = fastrand::u32(..).to_be_bytes();
    write_frame(
        &mut out,
        true,
        false,
        OpCode::Text,
        Some(key),
        body.as_bytes(),
    );
    out
}

/// The raw value of JSON member `key` (a byte search, not a parse: the first `"key"` followed by
/// a colon), from its first byte.
pub(crate) fn member<'a>(payload: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&payload[from..], key) {
        let rest = &payload[from + i + key.len()..];
        let after = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        if rest[after] == b':' {
            let value = &rest[after + 1..];
            let skip = value.iter().position(|b| !b.is_ascii_whitespace())?;
            return Some(&value[skip..]);
        }
        from += i + key.len();
    }
    None
}

/// A response's `"rqi":"<connection>-<slot>"` and whether its `rsc` is an error (or missing).
/// The `rqi` names the connection, as real devices' are unique among devices: a multiplexing
/// proxy then has no collisions to rewrite, and a response on the wrong connection is seen.
fn read_response(payload: &[u8]) -> Option<(usize, usize, bool)> {
    let value = member(payload, br#""rqi""#)?.strip_prefix(b"\"")?;
    let len = memchr::memchr(b'"', value)?;
    let rqi = std::str::from_utf8(&value[..len]).ok()?;
    let (conn, slot) = rqi.rsplit_once('-')?;
    let (conn, slot) = (conn.parse().ok()?, slot.parse().ok()?);
    let error = member(payload, br#""rsc""#).is_none_or(|v| {
        let n = v.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&v[..n])
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .is_none_or(|rsc| rsc >= 4000)
    });
    Some((conn, slot, error))
}

enum Phase {
    Connecting,
    Handshake(ClientHandshake),
    Open,
    /// Failed, or closed by the peer: counted once.
    Gone,
}

struct Connection {
    id: ConnId,
    phase: Phase,
    frames: Vec<Vec<u8>>,
    /// When each slot's request was sent (open loop: scheduled); `None`: the slot is free.
    sent_at: Vec<Option<Instant>>,
    /// Open loop: the free slots.
    free: Vec<usize>,
}

/// What the core hands back at the end.
#[derive(Default)]
struct Outcome {
    hist: Option<Histogram<u64>>,
    operations: u64,
    errors: u64,
    seconds: f64,
    scheduled: u64,
    sent: u64,
}

struct Client {
    addr: SocketAddr,
    host: String,
    path: String,
    connections: usize,
    in_flight: usize,
    duration: Duration,
    /// Indexed by connection number.
    conns: Vec<Connection>,
    /// Connection slot of the runtime → connection number.
    by_slot: Vec<Option<usize>>,
    started: bool,
    opened: usize,
    failed: usize,
    window: Option<Instant>,
    stopping: bool,
    hist: Histogram<u64>,
    operations: u64,
    errors: u64,
    /// Open loop (`rate` > 0): scheduled so far, sent, the scheduled times not sent yet (no
    /// free slot), and the connection to try first.
    rate: f64,
    scheduled: u64,
    sent: u64,
    backlog: std::collections::VecDeque<Instant>,
    cursor: usize,
    out: Arc<Mutex<Option<Outcome>>>,
}

const T_END: u64 = 1;
const T_SETUP: u64 = 2;
/// Open loop: how often the pacer wakes the core to send what is due (the runtime's timers have
/// 8 ms slots, too coarse to pace by); a request goes out at most this much (plus the sleep's own
/// overshoot) after its scheduled time, and that lateness counts in its latency.
const PACE: Duration = Duration::from_micros(100);
/// How long connections may take to open (TCP and WebSocket handshake).
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    fn number(&self, id: ConnId) -> Option<usize> {
        let n = (*self.by_slot.get(id.slot())?)?;
        (self.conns[n].id == id).then_some(n)
    }

    fn start(&mut self, cx: &mut Cx<'_, ()>) {
        self.started = true;
        cx.set_timer(Instant::now() + SETUP_TIMEOUT, T_SETUP);
        for _ in 0..self.connections {
            let n = self.conns.len();
            let frames = (0..self.in_flight).map(|s| request_frame(n, s)).collect();
            let id = match cx.connect(self.addr, None, SETUP_TIMEOUT) {
                Ok(id) => id,
                Err(e) => {
                    tracing::warn!(error = %e, "connect failed");
                    self.failed += 1;
                    self.errors += 1;
                    continue;
                }
            };
            if self.by_slot.len() <= id.slot() {
                self.by_slot.resize(id.slot() + 1, None);
            }
            self.by_slot[id.slot()] = Some(self.conns.len());
            self.conns.push(Connection {
                id,
                phase: Phase::Connecting,
                frames,
                sent_at: vec![None; self.in_flight],
                free: (0..self.in_flight).rev().collect(),
            });
        }
        self.maybe_begin(cx);
    }

    /// Connection `n` failed or was closed by the peer (once): an error, unless the run is over.
    fn gone(&mut self, cx: &mut Cx<'_, ()>, n: usize) {
        let was_open = match self.conns[n].phase {
            Phase::Gone => return,
            Phase::Open => true,
            _ => false,
        };
        self.conns[n].phase = Phase::Gone;
        if !self.stopping {
            self.errors += 1;
        }
        if !was_open {
            self.failed += 1;
            self.maybe_begin(cx);
        }
    }

    /// Every connection is open (or failed): the measured window starts.
    fn maybe_begin(&mut self, cx: &mut Cx<'_, ()>) {
        if self.window.is_some() || self.opened + self.failed < self.connections {
            return;
        }
        let now = Instant::now();
        self.window = Some(now);
        self.hist.reset();
        self.operations = 0;
        cx.set_timer(now + self.duration, T_END);
    }

    /// Open loop: schedule what is due by now, and send what has a free slot.
    fn tick(&mut self, cx: &mut Cx<'_, ()>) {
        let (Some(window), false) = (self.window, self.stopping) else {
            return;
        };
        let now = Instant::now();
        let due = (now.duration_since(window).as_secs_f64() * self.rate) as u64;
        while self.scheduled < due {
            let at = window + Duration::from_secs_f64(self.scheduled as f64 / self.rate);
            self.backlog.push_back(at);
            self.scheduled += 1;
        }
        let open = self.conns.len();
        let mut tried = 0;
        while !self.backlog.is_empty() && tried < open {
            let n = self.cursor % open;
            self.cursor = self.cursor.wrapping_add(1);
            let c = &mut self.conns[n];
            if !matches!(c.phase, Phase::Open) {
                tried += 1;
                continue;
            }
            let Some(slot) = c.free.pop() else {
                tried += 1;
                continue;
            };
            tried = 0;
            let at = self.backlog.pop_front().expect("not empty");
            cx.send(c.id, &c.frames[slot]);
            c.sent_at[slot] = Some(at);
            self.sent += 1;
        }
    }

    fn finish(&mut self) {
        let seconds = self
            .window
            .map_or(0.0, |w| w.elapsed().as_secs_f64())
            .max(1e-9);
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        *out = Some(Outcome {
            hist: Some(self.hist.clone()),
            operations: self.operations,
            errors: self.errors,
            seconds,
            scheduled: self.scheduled,
            sent: self.sent,
        });
    }

    fn frames(&mut self, cx: &mut Cx<'_, ()>, n: usize, data: &mut [u8]) -> usize {
        let now = Instant::now();
        let mut at = 0;
        while let Ok(Some(h)) = FrameHeader::parse(&data[at..]) {
            let end = at + h.header_len + h.payload_len as usize;
            if end > data.len() {
                break;
            }
            let payload = &data[at + h.header_len..end];
            match h.opcode {
                OpCode::Text | OpCode::Binary if h.fin => match read_response(payload) {
                    Some((conn, slot, error)) if conn == n && slot < self.in_flight => {
                        let c = &mut self.conns[n];
                        match c.sent_at[slot].take() {
                            Some(sent) => {
                                if self.window.is_some() && !self.stopping {
                                    let us = now.duration_since(sent).as_micros() as u64;
                                    let _ = self.hist.record(us.max(1));
                                    self.operations += 1;
                                }
                                self.errors += error as u64;
                                if self.stopping {
                                } else if self.rate == 0.0 {
                                    cx.send(c.id, &c.frames[slot]);
                                    c.sent_at[slot] = Some(now);
                                } else if let Some(at) = self.backlog.pop_front() {
                                    // Open loop: the oldest request still waiting takes the slot.
                                    cx.send(c.id, &c.frames[slot]);
                                    c.sent_at[slot] = Some(at);
                                    self.sent += 1;
                                } else {
                                    c.free.push(slot);
                                }
                            }
                            None => self.errors += 1,
                        }
                    }
                    _ => self.errors += 1,
                },
                OpCode::Ping => {
                    let mut pong = Vec::new();
                    let key = fastrand::u32(..).to_be_bytes();
                    write_frame(&mut pong, true, false, OpCode::Pong, Some(key), payload);
                    cx.send(self.conns[n].id, &pong);
                }
                OpCode::Pong => {}
                OpCode::Text | OpCode::Binary | OpCode::Continuation => self.errors += 1,
                OpCode::Close => {
                    self.gone(cx, n);
                    cx.close(self.conns[n].id);
                    return data.len();
                }
            }
            at = end;
        }
        at
    }
}

impl App for Client {
    type Msg = ();

    fn on_accept(&mut self, cx: &mut Cx<'_, ()>, _: ConnId, _: usize, _: SocketAddr) {
        // The kick: the main thread's connection to the listener starts the run on this core.
        if !self.started {
            self.start(cx);
        }
    }

    fn on_connect(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, result: io::Result<()>) {
        let Some(n) = self.number(conn) else { return };
        if let Err(e) = result {
            tracing::warn!(error = %e, "connect failed");
            self.gone(cx, n);
            return;
        }
        let options = ClientOptions {
            host: self.host.clone(),
            path: self.path.clone(),
            protocols: vec!["oneM2M.json".into()],
            deflate: None,
            extra_headers: Vec::new(),
        };
        let (hs, request) = ClientHandshake::new(options);
        cx.send(conn, &request);
        self.conns[n].phase = Phase::Handshake(hs);
    }

    fn on_data(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, data: &mut [u8]) -> usize {
        let Some(n) = self.number(conn) else {
            // The kick connection: the pacer's wake-up (open loop).
            self.tick(cx);
            return data.len();
        };
        let head = match &self.conns[n].phase {
            Phase::Open => return self.frames(cx, n, data),
            Phase::Connecting => return 0,
            Phase::Gone => return data.len(),
            Phase::Handshake(hs) => hs.read_response(data, HeadLimits::default()),
        };
        match head {
            Ok(None) => 0,
            Ok(Some((_, len))) => {
                self.conns[n].phase = Phase::Open;
                self.opened += 1;
                let now = Instant::now();
                let c = &mut self.conns[n];
                if self.rate == 0.0 {
                    for slot in 0..self.in_flight {
                        cx.send(c.id, &c.frames[slot]);
                        c.sent_at[slot] = Some(now);
                    }
                    c.free.clear();
                }
                self.maybe_begin(cx);
                len + self.frames(cx, n, &mut data[len..])
            }
            Err(e) => {
                tracing::warn!(error = %e, "handshake refused");
                self.gone(cx, n);
                cx.abort(conn);
                data.len()
            }
        }
    }

    fn on_close(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, _: CloseReason) {
        if let Some(n) = self.number(conn) {
            self.gone(cx, n);
        }
    }

    fn on_timer(&mut self, cx: &mut Cx<'_, ()>, token: u64) {
        if token == T_SETUP && self.window.is_none() {
            let late: Vec<usize> = (0..self.conns.len())
                .filter(|&n| matches!(self.conns[n].phase, Phase::Connecting | Phase::Handshake(_)))
                .collect();
            for n in late {
                tracing::warn!(connection = n, "not open within the set-up timeout");
                self.gone(cx, n);
                cx.abort(self.conns[n].id);
            }
        }
        if token == T_END {
            self.stopping = true;
            self.finish();
            for c in &self.conns {
                cx.close(c.id);
            }
        }
    }
}

/// Run the client; returns what it measured.
pub fn run(args: &PipelineArgs) -> anyhow::Result<PipelineSummary> {
    anyhow::ensure!(
        args.connections > 0 && args.in_flight > 0,
        "--connections and --in-flight must be at least 1"
    );
    let (addr, host, path) = parse_target(&args.target)?;
    let out = Arc::new(Mutex::new(None));
    let config = RtConfig {
        workers: 1,
        io: args.io,
        listeners: vec![ListenerConfig {
            addr: "127.0.0.1:0".parse().expect("literal"),
            tls: None,
        }],
        drain: Duration::from_millis(200),
        ..RtConfig::default()
    };
    let shared = out.clone();
    anyhow::ensure!(
        args.rate >= 0.0 && args.rate.is_finite(),
        "--rate must be 0 (closed loop) or a positive number of requests per second"
    );
    let (connections, in_flight, duration) = (args.connections, args.in_flight, args.duration);
    let rate = args.rate;
    let rt = Runtime::start(config, move |_| Client {
        addr,
        host: host.clone(),
        path: path.clone(),
        connections,
        in_flight,
        duration,
        conns: Vec::with_capacity(connections),
        by_slot: Vec::new(),
        started: false,
        opened: 0,
        failed: 0,
        window: None,
        stopping: false,
        hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        operations: 0,
        errors: 0,
        rate,
        scheduled: 0,
        sent: 0,
        backlog: Default::default(),
        cursor: 0,
        out: shared.clone(),
    })?;
    let kick = TcpStream::connect(rt.local_addrs()[0])?;
    kick.set_nodelay(true)?;
    // Open loop: a byte on the kick connection wakes the core to send what is due, every PACE
    // (whatever the rate: how late a request may go out does not depend on the rate).
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pacer = (args.rate > 0.0).then(|| {
        let (done, mut kick) = (done.clone(), kick.try_clone());
        std::thread::spawn(move || {
            use std::io::Write;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(PACE);
                if let Ok(k) = kick.as_mut()
                    && k.write_all(&[1]).is_err()
                {
                    return;
                }
            }
        })
    });
    // Connecting, the window, and a margin for a slow start.
    let deadline = Instant::now() + args.duration + Duration::from_secs(30);
    let outcome = loop {
        if let Some(o) = out.lock().unwrap_or_else(|e| e.into_inner()).take() {
            break o;
        }
        if Instant::now() > deadline {
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            rt.stop_handle().shutdown();
            let _ = rt.join();
            anyhow::bail!("the run did not finish: connections never opened?");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(p) = pacer {
        let _ = p.join();
    }
    drop(kick);
    rt.stop_handle().shutdown();
    rt.join()?;
    let hist = outcome
        .hist
        .unwrap_or_else(|| Histogram::new(3).expect("valid"));
    let q = |p: f64| hist.value_at_quantile(p) as f64;
    Ok(PipelineSummary {
        connections: args.connections,
        in_flight: args.in_flight,
        operations: outcome.operations,
        errors: outcome.errors,
        seconds: outcome.seconds,
        ops_per_s: outcome.operations as f64 / outcome.seconds,
        scheduled: outcome.scheduled,
        sent: outcome.sent,
        p50_us: q(0.5),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: hist.max() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_as_urls() {
        let (addr, host, path) = parse_target("WS://127.0.0.1:9001/cse?x=1").unwrap();
        assert_eq!(addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            (host.as_str(), path.as_str()),
            ("127.0.0.1:9001", "/cse?x=1")
        );
        let (addr, host, path) = parse_target("ws://[::1]:9002").unwrap();
        assert_eq!(addr, "[::1]:9002".parse().unwrap());
        assert_eq!((host.as_str(), path.as_str()), ("[::1]:9002", "/"));
        for bad in [
            "wss://127.0.0.1:1/",
            "http://127.0.0.1:1/",
            "ws://u:p@127.0.0.1:1/",
            "127.0.0.1:1",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_are_found_by_their_connection_and_slot_and_judged_by_rsc() {
        assert_eq!(
            read_response(br#"{"rsc":2000,"rqi":"5-7","rvi":"3"}"#),
            Some((5, 7, false))
        );
        assert_eq!(
            read_response(br#"{"rqi" : "0-12", "rsc": 4004}"#),
            Some((0, 12, true)),
            "spaces around the colon"
        );
        assert_eq!(
            read_response(br#"{"rqi":"1-3"}"#),
            Some((1, 3, true)),
            "no rsc"
        );
        assert_eq!(
            read_response(br#"{"pc":"\"rqi\"","rqi":"2-1","rsc":2000}"#),
            Some((2, 1, false)),
            "the member, not the text"
        );
        assert_eq!(read_response(br#"{"rqi":"3"}"#), None, "not ours");
        assert_eq!(read_response(br#"{"rsc":2000}"#), None, "no rqi");
    }

    #[test]
    fn request_frames_are_masked_retrieves_that_unmask_to_json() {
        let f = request_frame(4, 2);
        let h = FrameHeader::parse(&f).unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Text);
        let mut body = f[h.header_len..].to_vec();
        m2m_ws::mask::apply_mask(&mut body, h.mask.expect("client frames are masked"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["rqi"], "4-2");
        assert_eq!(v["fr"], "Cpipe4");
    }

    #[test]
    fn targets_must_be_ws_urls() {
        let (addr, host, path) = parse_target("ws://127.0.0.1:9/x").unwrap();
        assert_eq!(
            (addr.port(), host.as_str(), path.as_str()),
            (9, "127.0.0.1:9", "/x")
        );
        assert!(parse_target("wss://127.0.0.1:9/").is_err());
    }
}
