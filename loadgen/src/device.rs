//! One simulated ADN-AE over its life: connect, register (AE create), create its containers and
//! subscription, run the operation mix at the scenario's pace, reconnect when told to (without
//! registering again, TS-0020 §5.2), and deregister at the end.
//!
//! Each connection has two tasks on the worker's single thread: a reader that matches responses to
//! requests by `rqi` and records their latency, answers NOTIFYs and notices the close; and the
//! device's own task, which paces and writes. They share the pending-request table through an `Rc`;
//! the reader hands frames it must send (NOTIFY answers, pongs) to the writer over a channel.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload};
use m2m_primitive::view::Kind;
use m2m_primitive::{Format, Primitive, Response, RoutingView, Rsc};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::sleep_until;

use crate::connect::{ConnectError, Connector, WsWrite, io_kind};
use crate::ops::{self, AeProfile, Builder};
use crate::recorder::{Metric, OpKind, Recorder};
use crate::scenario::{Load, Plan};
use crate::schedule::Pacer;

/// Live numbers every worker updates, read by the progress line and `/metrics`.
#[derive(Debug, Default)]
pub struct Live {
    pub connected: AtomicUsize,
    pub registered: AtomicUsize,
    pub sent: AtomicU64,
    pub done: AtomicU64,
    pub errors: AtomicU64,
    pub stop: AtomicBool,
}

/// What all devices of one worker share.
#[derive(Debug)]
pub struct WorkerCtx {
    pub plan: Arc<Plan>,
    pub connector: Connector,
    pub rec: Rc<RefCell<Recorder>>,
    pub live: Arc<Live>,
    pub start: Instant,
    pub deadline: Instant,
}

impl WorkerCtx {
    fn error(&self, key: impl Into<String>) {
        self.live.errors.fetch_add(1, Ordering::Relaxed);
        self.rec.borrow_mut().error(key);
    }

    fn record(&self, m: Metric, d: Duration) {
        self.rec.borrow_mut().record(m, d);
    }

    fn stopping(&self) -> bool {
        Instant::now() >= self.deadline
            || self.live.stop.load(Ordering::Relaxed)
            || self
                .plan
                .args
                .requests
                .is_some_and(|n| self.live.sent.load(Ordering::Relaxed) >= n)
    }
}

/// A request waiting for its response.
#[derive(Debug)]
enum Pending {
    Op {
        kind: OpKind,
        intended: Instant,
        sent: Instant,
    },
    Waiter(oneshot::Sender<Response>),
}

/// A frame the reader wants written.
#[derive(Debug)]
struct OutFrame {
    opcode: OpCode,
    payload: Vec<u8>,
}

/// State one connection's reader and writer share.
#[derive(Debug, Default)]
struct ConnShared {
    pending: RefCell<HashMap<String, Pending>>,
    /// Signalled on every response and when the reader ends.
    wake: Notify,
    /// The reader ended (close frame, error or EOF).
    ended: Cell<bool>,
    /// Responses to operations since the connection opened.
    answered: Cell<u64>,
    /// The last answered `rqi`s: a second response to one of them is a duplicate (ACME sends
    /// some under concurrent load), not a response to nothing.
    recent: RefCell<std::collections::VecDeque<String>>,
}

/// How many answered `rqi`s a connection remembers.
const RECENT_RQIS: usize = 256;

/// How the reader ended.
#[derive(Debug)]
enum ReadEnd {
    Close(u16),
    Error(&'static str),
}

struct Conn {
    write: WsWrite,
    out: mpsc::UnboundedReceiver<OutFrame>,
    shared: Rc<ConnShared>,
    reader: tokio::task::JoinHandle<ReadEnd>,
    opened: Instant,
    ops: u64,
}

/// What one turn of the operating loop decided.
enum Step {
    Continue,
    End,
    Lost,
    Failed(String),
}

/// Why a device gave up.
#[derive(Debug)]
struct Failed(String);

impl From<ConnectError> for Failed {
    fn from(e: ConnectError) -> Self {
        Failed(e.kind.to_string())
    }
}

pub struct Device {
    ctx: Rc<WorkerCtx>,
    id: usize,
    source: Option<IpAddr>,
    builder: Builder,
    ae_path: String,
    aei: String,
    containers: Vec<String>,
    seq: u64,
    rng: fastrand::Rng,
    /// Open loop: the slots of the schedule this device passed (sent or not) and, at its end, the
    /// ones it did not reach; counted once, into the recorder, when the device ends.
    scheduled: u64,
    /// It reached its operating phase (its pacer counts its slots from there).
    operating: bool,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("id", &self.id).finish()
    }
}

impl Device {
    pub fn new(ctx: Rc<WorkerCtx>, id: usize) -> Self {
        let plan = &ctx.plan;
        let source =
            (!plan.sources.is_empty()).then(|| IpAddr::V4(plan.sources[id % plan.sources.len()]));
        let fr = if plan.args.originator == "cse" {
            "C".to_string()
        } else {
            format!("{}{id:07}", plan.args.origin_prefix)
        };
        let builder = Builder {
            format: plan.format,
            rvi: plan.args.rvi.clone(),
            fr,
            rqet_ms: plan.args.rqet.as_millis() as u64,
        };
        let rng = fastrand::Rng::with_seed(
            plan.args.seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        Self {
            ctx,
            id,
            source,
            builder,
            ae_path: String::new(),
            aei: String::new(),
            containers: Vec::new(),
            seq: 0,
            rng,
            scheduled: 0,
            operating: false,
        }
    }

    fn rqi(&mut self) -> String {
        self.seq += 1;
        format!("{}-{}", self.id, self.seq)
    }

    /// The whole life of the device; failures are counted, never raised.
    pub async fn run(mut self) {
        let mut conn = None;
        let result = self.life(&mut conn).await;
        if let Err(Failed(kind)) = result {
            self.ctx.error(kind);
        }
        self.count_scheduled();
        if let Some(c) = conn.take() {
            self.close(c).await;
        }
    }

    /// Hand the device's scheduled slots to the recorder (open loop without `--requests`): those
    /// its pacer passed, or, when it never got to operate (refused, failed to register), every slot
    /// from its planned start (the connection ramp) to the end, so a failure lowers the achieved rate.
    fn count_scheduled(&mut self) {
        let plan = &self.ctx.plan;
        let Load::Open { schedule, .. } = &plan.load else {
            return;
        };
        if plan.args.requests.is_some() {
            return;
        }
        if !self.operating {
            let planned = if plan.args.ramp > 0.0 {
                Duration::from_secs_f64(self.id as f64 / plan.args.ramp)
            } else {
                Duration::ZERO
            };
            let end = self.ctx.deadline.saturating_duration_since(self.ctx.start);
            let pacer = Pacer::new(schedule.clone(), plan.args.devices, self.id, planned);
            self.scheduled = pacer.slots_until(end);
        }
        self.ctx.rec.borrow_mut().scheduled(self.scheduled);
    }

    async fn life(&mut self, conn: &mut Option<Conn>) -> Result<(), Failed> {
        let plan = self.ctx.plan.clone();
        let fixed = plan.args.originator != "cse";
        let header = (plan.args.origin_header && fixed).then(|| self.builder.fr.clone());
        let c = conn.insert(self.open(header.as_deref()).await?);
        self.register(c).await?;
        if plan.args.origin_header && !fixed {
            // A CSE-assigned AE-ID is known only now; ACME serves anything but registration only
            // on a connection that names its originator, so come back with it.
            let old = conn.take().expect("connected");
            self.close(old).await;
            *conn = Some(self.open(Some(&self.aei.clone())).await?);
        }
        let c = conn.as_mut().expect("connected");
        self.setup(c).await?;
        self.operate(conn).await?;
        if plan.args.deregister {
            if let Some(c) = conn.as_mut() {
                let t = Instant::now();
                let rqi = self.rqi();
                let bytes = self.builder.delete(&self.ae_path, &rqi);
                let rsp = self.call(c, rqi, bytes).await?;
                self.ctx.record(Metric::Deregister, t.elapsed());
                self.check(&rsp)?;
                self.ctx.live.registered.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    async fn open(&self, origin: Option<&str>) -> Result<Conn, Failed> {
        let ctx = &self.ctx;
        let c = ctx.connector.connect(self.source, origin).await?;
        ctx.record(Metric::Connect, c.phases.tcp);
        if let Some(t) = c.phases.tls {
            ctx.record(Metric::Tls, t);
        }
        ctx.record(Metric::Handshake, c.phases.handshake);
        ctx.live.connected.fetch_add(1, Ordering::Relaxed);
        ctx.rec.borrow_mut().event("connections");
        let shared = Rc::new(ConnShared::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let format = if c.protocol.to_ascii_lowercase().ends_with("cbor") {
            Format::Cbor
        } else if c.protocol.to_ascii_lowercase().ends_with("xml") {
            Format::Xml
        } else {
            Format::Json
        };
        let reader = tokio::task::spawn_local(read_loop(
            FragmentCollectorRead::new(c.read),
            shared.clone(),
            tx,
            self.ctx.clone(),
            self.builder.clone(),
            format,
        ));
        Ok(Conn {
            write: c.write,
            out: rx,
            shared,
            reader,
            opened: Instant::now(),
            ops: 0,
        })
    }

    /// Close frame, then wait (briefly) for the server's close; the connection ends either way.
    async fn close(&self, mut c: Conn) {
        if !c.shared.ended.get() {
            let _ = c.write.write_frame(Frame::close(1000, b"")).await;
            let _ = c.write.flush().await;
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut c.reader).await;
        }
        c.reader.abort();
        self.ctx.live.connected.fetch_sub(1, Ordering::Relaxed);
        let lost = c.shared.pending.borrow_mut().drain().count();
        for _ in 0..lost {
            self.ctx.error("lost");
        }
    }

    async fn send(&self, c: &mut Conn, bytes: Vec<u8>) -> Result<(), Failed> {
        let opcode = if self.builder.format == Format::Cbor {
            OpCode::Binary
        } else {
            OpCode::Text
        };
        c.write
            .write_frame(Frame::new(true, opcode, None, Payload::Owned(bytes)))
            .await
            .map_err(|e| Failed(ws_error_kind(&e)))?;
        // Frames the reader queued (NOTIFY answers, pongs) go out in the same flush.
        while let Ok(f) = c.out.try_recv() {
            write_out(&mut c.write, f).await?;
        }
        c.write.flush().await.map_err(|e| Failed(ws_error_kind(&e)))
    }

    /// Send a request and wait for its response (registration and set-up).
    async fn call(&self, c: &mut Conn, rqi: String, bytes: Vec<u8>) -> Result<Response, Failed> {
        let (tx, mut rx) = oneshot::channel();
        c.shared
            .pending
            .borrow_mut()
            .insert(rqi.clone(), Pending::Waiter(tx));
        self.send(c, bytes).await?;
        let deadline = tokio::time::Instant::now() + self.ctx.plan.args.request_timeout;
        loop {
            tokio::select! {
                r = &mut rx => return r.map_err(|_| Failed("lost".into())),
                f = c.out.recv() => match f {
                    Some(f) => {
                        write_out(&mut c.write, f).await?;
                        c.write.flush().await.map_err(|e| Failed(ws_error_kind(&e)))?;
                    }
                    None => {
                        c.shared.pending.borrow_mut().remove(&rqi);
                        return Err(Failed("closed_by_peer".into()));
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    c.shared.pending.borrow_mut().remove(&rqi);
                    return Err(Failed("timeout".into()));
                }
            }
        }
    }

    fn check(&self, rsp: &Response) -> Result<(), Failed> {
        if rsp.rsc.is_success() {
            Ok(())
        } else {
            Err(Failed(format!("rsc {}", rsp.rsc.0)))
        }
    }

    async fn register(&mut self, c: &mut Conn) -> Result<(), Failed> {
        let plan = self.ctx.plan.clone();
        let ae = AeProfile {
            api: plan.args.api.clone(),
            rr: plan.args.rr,
            srv: plan.args.srv.clone(),
            poa: plan.args.poa.clone(),
        };
        let fixed = plan.args.originator != "cse";
        let rn = fixed.then(|| self.builder.fr.clone());
        let rqi = self.rqi();
        let bytes = self
            .builder
            .register(&plan.args.cse_base, &rqi, rn.as_deref(), &ae);
        let t = Instant::now();
        let rsp = self.call(c, rqi, bytes).await?;
        self.check(&rsp)?;
        self.ctx.record(Metric::Register, t.elapsed());
        let (aei, rn) = ops::registered(&rsp).ok_or_else(|| Failed("bad_response".into()))?;
        self.ctx.live.registered.fetch_add(1, Ordering::Relaxed);
        // The AE speaks with its AE-ID-Stem from now on.
        self.builder.fr = aei.rsplit('/').next().unwrap_or(&aei).to_string();
        self.aei = self.builder.fr.clone();
        self.ae_path = format!("{}/{rn}", plan.args.cse_base);
        Ok(())
    }

    async fn setup(&mut self, c: &mut Conn) -> Result<(), Failed> {
        let plan = self.ctx.plan.clone();
        let t = Instant::now();
        for i in 0..plan.args.containers {
            let rqi = self.rqi();
            let rn = format!("cnt{i}");
            let bytes = self
                .builder
                .container(&self.ae_path, &rqi, &rn, plan.args.mni);
            let rsp = self.call(c, rqi, bytes).await?;
            self.check(&rsp)?;
            self.containers.push(format!("{}/{rn}", self.ae_path));
        }
        if plan.args.subscribe {
            let rqi = self.rqi();
            let bytes = self
                .builder
                .subscription(&self.containers[0], &rqi, &self.aei);
            let rsp = self.call(c, rqi, bytes).await?;
            self.check(&rsp)?;
        }
        if plan.mix.contains(OpKind::RetrieveLa) {
            // So that `la` has something to return from the first retrieve on.
            for cnt in self.containers.clone() {
                let rqi = self.rqi();
                let bytes = self.builder.op(
                    OpKind::CreateCin,
                    &self.ae_path,
                    &cnt,
                    &rqi,
                    self.ctx.start.elapsed(),
                    plan.args.payload_bytes,
                    0,
                );
                let rsp = self.call(c, rqi, bytes).await?;
                self.check(&rsp)?;
            }
        }
        self.ctx.record(Metric::Setup, t.elapsed());
        Ok(())
    }

    /// The measured phase: operations at the scenario's pace until the end of the run.
    async fn operate(&mut self, conn: &mut Option<Conn>) -> Result<(), Failed> {
        let ctx = self.ctx.clone();
        let plan = ctx.plan.clone();
        let devices = plan.args.devices;
        self.operating = true;
        let mut pacer = match &plan.load {
            Load::Open { schedule, .. } => Some(Pacer::new(
                schedule.clone(),
                devices,
                self.id,
                ctx.start.elapsed(),
            )),
            Load::Closed { .. } => None,
        };
        // Timers live across turns of the loop and are only moved when their time changes:
        // re-creating them each turn costs a timer-wheel insert and remove per wake-up.
        let deadline = tokio::time::Instant::from_std(ctx.deadline);
        let mut end = std::pin::pin!(sleep_until(deadline));
        let mut send_timer = std::pin::pin!(sleep_until(deadline));
        let mut armed: Option<Instant> = None;
        let sweep_every = (plan.args.request_timeout / 2).max(Duration::from_millis(10));
        let mut sweep = std::pin::pin!(sleep_until(tokio::time::Instant::now() + sweep_every));
        let mut last_answer = Instant::now();
        loop {
            if ctx.stopping() {
                break;
            }
            let c = match conn {
                Some(c) => c,
                None => {
                    // Lost: come back without registering again.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let origin = plan.args.origin_header.then(|| self.aei.clone());
                    match self.open(origin.as_deref()).await {
                        Ok(c) => {
                            ctx.rec.borrow_mut().event("reconnects");
                            conn.insert(c)
                        }
                        Err(Failed(kind)) => {
                            ctx.error(kind);
                            continue;
                        }
                    }
                }
            };
            if self.reconnect_due(c) {
                self.drain(c).await;
                let old = conn.take().expect("connected");
                self.close(old).await;
                continue;
            }
            let outstanding = c.shared.pending.borrow().len();
            let next: Option<Instant> = match (&plan.load, &pacer) {
                (
                    Load::Open {
                        max_outstanding, ..
                    },
                    Some(p),
                ) => (outstanding < *max_outstanding).then(|| ctx.start + p.peek()),
                (Load::Closed { in_flight, think }, _) => {
                    (outstanding < *in_flight).then(|| last_answer + *think)
                }
                _ => None,
            };
            // Open loop: wake on a 2 ms grid, two milliseconds or more before the intended time:
            // tokio's timer fires on whole milliseconds, up to two after its deadline, and devices
            // due in the same 2 ms share one wake-up of the thread. The latency is measured from
            // the earlier of the intended and the actual send time (see `on_message`), so an early
            // send is never charged less than its real round trip; how early is recorded
            // (`schedule_early`). Closed loop: at the time itself (a think time is never shortened).
            let closed_loop = matches!(plan.load, Load::Closed { .. });
            let wake_at = next.map(|t| {
                if closed_loop {
                    t
                } else {
                    send_grid(ctx.start, t.checked_sub(TIMER_LAG).unwrap_or(t))
                }
            });
            if wake_at != armed {
                if let Some(t) = wake_at {
                    send_timer.as_mut().reset(tokio::time::Instant::from_std(t));
                }
                armed = wake_at;
            }
            let answered_before = c.shared.answered.get();
            let step = tokio::select! {
                biased;
                f = c.out.recv() => match f {
                    Some(f) => match write_out(&mut c.write, f).await {
                        Ok(()) => match c.write.flush().await {
                            Ok(()) => Step::Continue,
                            Err(e) => Step::Failed(ws_error_kind(&e)),
                        },
                        Err(Failed(kind)) => Step::Failed(kind),
                    },
                    None => Step::Lost,
                },
                _ = c.shared.wake.notified() => {
                    if c.shared.answered.get() != answered_before {
                        last_answer = Instant::now();
                    }
                    if c.shared.ended.get() { Step::Lost } else { Step::Continue }
                }
                _ = &mut send_timer, if armed.is_some() => {
                    armed = None;
                    let planned = next.expect("armed only with a time");
                    if planned >= ctx.deadline {
                        // Woken early for a send the schedule places after the end.
                        break;
                    }
                    let intended = if closed_loop { planned.max(Instant::now()) } else { planned };
                    let sends = pacer.as_ref().is_none_or(Pacer::sends_at_peek);
                    if let Some(p) = pacer.as_mut() {
                        p.advance();
                        self.scheduled += u64::from(sends);
                    }
                    if sends {
                        match self.send_op(c, intended).await {
                            Ok(()) => Step::Continue,
                            Err(Failed(kind)) => Step::Failed(kind),
                        }
                    } else {
                        Step::Continue
                    }
                }
                // Only a connection with requests outstanding needs its timeouts checked.
                _ = &mut sweep, if outstanding > 0 => {
                    self.sweep(c);
                    sweep.as_mut().reset(tokio::time::Instant::now() + sweep_every);
                    Step::Continue
                }
                _ = &mut end => Step::End,
            };
            match step {
                Step::Continue => {}
                Step::End => break,
                Step::Lost => self.lost(conn).await,
                Step::Failed(kind) => {
                    ctx.error(kind);
                    self.lost(conn).await;
                }
            }
        }
        if let Some(p) = &pacer {
            // Slots due before the end that were not reached (behind schedule, or stopped early).
            self.scheduled += p.slots_until(ctx.deadline.saturating_duration_since(ctx.start));
        }
        if let Some(c) = conn.as_mut() {
            self.drain(c).await;
        }
        Ok(())
    }

    fn reconnect_due(&self, c: &Conn) -> bool {
        let a = &self.ctx.plan.args;
        a.reconnect_after_requests.is_some_and(|k| c.ops >= k)
            || a.reconnect_after.is_some_and(|t| c.opened.elapsed() >= t)
    }

    async fn send_op(&mut self, c: &mut Conn, intended: Instant) -> Result<(), Failed> {
        let plan = self.ctx.plan.clone();
        let kind = plan.mix.pick(self.rng.f64());
        let container = self.containers[self.rng.usize(..self.containers.len())].clone();
        let rqi = self.rqi();
        let now = Instant::now();
        let bytes = self.builder.op(
            kind,
            &self.ae_path,
            &container,
            &rqi,
            now.saturating_duration_since(self.ctx.start),
            plan.args.payload_bytes,
            self.seq,
        );
        c.shared.pending.borrow_mut().insert(
            rqi,
            Pending::Op {
                kind,
                intended,
                sent: now,
            },
        );
        c.ops += 1;
        {
            let mut rec = self.ctx.rec.borrow_mut();
            rec.sent(
                intended
                    .saturating_duration_since(self.ctx.start)
                    .as_micros() as u64,
            );
            if matches!(plan.load, Load::Open { .. }) {
                rec.record(Metric::ScheduleLag, now.saturating_duration_since(intended));
                rec.record(
                    Metric::ScheduleEarly,
                    intended.saturating_duration_since(now),
                );
            }
        }
        self.ctx.live.sent.fetch_add(1, Ordering::Relaxed);
        self.send(c, bytes).await
    }

    /// Count requests that outlived the timeout.
    fn sweep(&self, c: &Conn) {
        let timeout = self.ctx.plan.args.request_timeout;
        let now = Instant::now();
        let mut expired = 0;
        c.shared.pending.borrow_mut().retain(|_, p| match p {
            Pending::Op { sent, .. } if now.duration_since(*sent) > timeout => {
                expired += 1;
                false
            }
            _ => true,
        });
        for _ in 0..expired {
            self.ctx.error("timeout");
        }
        if expired > 0 {
            c.shared.wake.notify_one();
        }
    }

    /// Wait for outstanding operations (up to the request timeout) before closing.
    async fn drain(&self, c: &mut Conn) {
        let until = tokio::time::Instant::now() + self.ctx.plan.args.request_timeout;
        while !c.shared.pending.borrow().is_empty() && !c.shared.ended.get() {
            tokio::select! {
                f = c.out.recv() => match f {
                    Some(f) => {
                        if write_out(&mut c.write, f).await.is_err() || c.write.flush().await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                _ = c.shared.wake.notified() => {}
                _ = sleep_until(until) => {
                    self.sweep(c);
                    return;
                }
            }
        }
    }

    async fn lost(&self, conn: &mut Option<Conn>) {
        if let Some(c) = conn.take() {
            let end = if c.reader.is_finished() {
                c.reader.await.ok()
            } else {
                c.reader.abort();
                None
            };
            match end {
                Some(ReadEnd::Close(code)) => self.ctx.error(format!("close {code}")),
                Some(ReadEnd::Error(kind)) => self.ctx.error(kind),
                None => {}
            }
            self.ctx.live.connected.fetch_sub(1, Ordering::Relaxed);
            let lost = c.shared.pending.borrow_mut().drain().count();
            for _ in 0..lost {
                self.ctx.error("lost");
            }
        }
    }
}

/// Sends are woken on this grid (since the run's start), up to one step early.
const SEND_GRID: Duration = Duration::from_millis(2);
/// How late tokio's timer may fire after its deadline: it rounds the deadline up to the next whole
/// millisecond, and the park's timeout is rounded up again, so up to 2 ms. Waking this much before
/// the grid point keeps sends from being late (schedule lag p99 went from ~0.3–1 ms to under 1 µs
/// at 20,000 requests/s); the price is that a send may leave up to `SEND_GRID + TIMER_LAG` early
/// (recorded as `schedule_early`), which the latency does not profit from: it is measured from the
/// earlier of intended and actual send.
const TIMER_LAG: Duration = Duration::from_millis(2);

/// The grid point at or before `t`.
fn send_grid(start: Instant, t: Instant) -> Instant {
    let since = t.saturating_duration_since(start).as_nanos();
    let step = SEND_GRID.as_nanos();
    start + Duration::from_nanos(((since / step) * step) as u64)
}

async fn write_out(w: &mut WsWrite, f: OutFrame) -> Result<(), Failed> {
    w.write_frame(Frame::new(true, f.opcode, None, Payload::Owned(f.payload)))
        .await
        .map_err(|e| Failed(ws_error_kind(&e)))
}

fn ws_error_kind(e: &fastwebsockets::WebSocketError) -> String {
    match e {
        fastwebsockets::WebSocketError::IoError(io) => io_kind(io).into(),
        fastwebsockets::WebSocketError::UnexpectedEOF => "eof".into(),
        fastwebsockets::WebSocketError::ConnectionClosed => "closed_by_peer".into(),
        _ => "protocol".into(),
    }
}

async fn read_loop(
    mut read: FragmentCollectorRead<crate::connect::WsReadStream>,
    shared: Rc<ConnShared>,
    out: mpsc::UnboundedSender<OutFrame>,
    ctx: Rc<WorkerCtx>,
    builder: Builder,
    format: Format,
) -> ReadEnd {
    let obligations = out.clone();
    let mut send_fn = move |f: Frame<'_>| {
        let _ = obligations.send(OutFrame {
            opcode: f.opcode,
            payload: f.payload.to_vec(),
        });
        std::future::ready(Ok::<(), std::io::Error>(()))
    };
    let end = loop {
        let frame = match read.read_frame(&mut send_fn).await {
            Ok(f) => f,
            Err(fastwebsockets::WebSocketError::IoError(e)) => break ReadEnd::Error(io_kind(&e)),
            Err(fastwebsockets::WebSocketError::UnexpectedEOF) => break ReadEnd::Error("eof"),
            Err(_) => break ReadEnd::Error("protocol"),
        };
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                on_message(&frame.payload, &shared, &out, &ctx, &builder, format)
            }
            OpCode::Close => {
                let code = if frame.payload.len() >= 2 {
                    u16::from_be_bytes([frame.payload[0], frame.payload[1]])
                } else {
                    1005
                };
                break ReadEnd::Close(code);
            }
            _ => {}
        }
    };
    shared.ended.set(true);
    shared.wake.notify_one();
    end
}

fn on_message(
    bytes: &[u8],
    shared: &ConnShared,
    out: &mpsc::UnboundedSender<OutFrame>,
    ctx: &WorkerCtx,
    builder: &Builder,
    format: Format,
) {
    let now = Instant::now();
    // Operation responses are the bulk of the traffic: the routing view reads `rqi` and `rsc`
    // without decoding the content. Everything else is decoded in full.
    if let Ok(view) = RoutingView::parse(format, bytes) {
        if view.kind() == Kind::Response {
            let rsc = view.rsc.unwrap_or(Rsc::BAD_REQUEST);
            let pending = view
                .rqi
                .as_deref()
                .and_then(|r| shared.pending.borrow_mut().remove(r));
            match pending {
                Some(Pending::Op {
                    kind,
                    intended,
                    sent,
                }) => {
                    {
                        let mut recent = shared.recent.borrow_mut();
                        if recent.len() == RECENT_RQIS {
                            recent.pop_front();
                        }
                        recent.push_back(view.rqi.as_deref().unwrap_or_default().to_string());
                    }
                    {
                        let mut rec = ctx.rec.borrow_mut();
                        // Corrected: from the intended time, or from the actual send when the
                        // timer let it go a little early.
                        rec.record(
                            Metric::Op(kind),
                            now.saturating_duration_since(intended.min(sent)),
                        );
                        rec.record(
                            Metric::Uncorrected(kind),
                            now.saturating_duration_since(sent),
                        );
                    }
                    ctx.live.done.fetch_add(1, Ordering::Relaxed);
                    if !rsc.is_success() {
                        ctx.error(format!("rsc {}", rsc.0));
                    }
                    shared.answered.set(shared.answered.get() + 1);
                    shared.wake.notify_one();
                }
                Some(Pending::Waiter(tx)) => match m2m_primitive::decode(format, bytes) {
                    Ok(Primitive::Response(rsp)) => {
                        let _ = tx.send(rsp);
                    }
                    _ => ctx.error("bad_primitive"),
                },
                None => {
                    let rqi = view.rqi.as_deref().unwrap_or_default();
                    if std::env::var_os("M2M_LOADGEN_TRACE").is_some() {
                        eprintln!(
                            "m2m-loadgen: unmatched response: {}",
                            String::from_utf8_lossy(bytes)
                        );
                    }
                    if shared.recent.borrow().iter().any(|r| r == rqi) {
                        // The request got its answer already; the target answered twice.
                        ctx.rec
                            .borrow_mut()
                            .event(&format!("duplicate_response rsc {}", rsc.0));
                    } else {
                        ctx.error(format!("unmatched_response rsc {}", rsc.0));
                    }
                }
            }
            return;
        }
    }
    match m2m_primitive::decode(format, bytes) {
        Ok(Primitive::Request(req)) => {
            if let Some(created) = ops::notified_stamp(&req) {
                let since = now.saturating_duration_since(ctx.start);
                ctx.record(Metric::Notify, since.saturating_sub(created));
            }
            let opcode = if format == Format::Cbor {
                OpCode::Binary
            } else {
                OpCode::Text
            };
            let mut b = builder.clone();
            b.format = format;
            let _ = out.send(OutFrame {
                opcode,
                payload: b.notify_ok(&req),
            });
            shared.wake.notify_one();
        }
        Ok(Primitive::Response(_)) | Err(_) => ctx.error("bad_primitive"),
    }
}
