//! `m2m-edge echo`: a WebSocket echo server on the runtime, meeting RFC 6455 to the letter (400 for a
//! missing Host, 426 with `Sec-WebSocket-Version: 13`, close codes for every violation) and accepting
//! the oneM2M subprotocols. It is the runtime's acceptance test and its benchmark target, so it does
//! exactly what the edge's device side does up to the primitive: handshake, frames, close, deflate,
//! limits, timeouts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use m2m_rt::{App, CloseReason, ConnId, Cx, TimerId};
use m2m_ws::handshake::subprotocol::OneM2mPolicy;
use m2m_ws::handshake::{HeadLimits, error_response, parse_request, server};
use m2m_ws::{
    CloseCode, DeflateConfig, Event, Receiver, ReceiverLimits, Role, Sender, SenderConfig, endpoint,
};

/// Limits of the echo server (all also edge limits: `[limits]` of the edge's configuration).
#[derive(Debug, Clone, clap::Args)]
pub struct EchoLimits {
    /// Largest handshake head in bytes.
    #[arg(long, default_value_t = 8192)]
    pub max_handshake_bytes: usize,
    /// Time allowed for TCP/TLS plus the WebSocket handshake.
    #[arg(long, default_value = "10s", value_parser = crate::config::units::parse_duration)]
    pub handshake_timeout: Duration,
    /// Largest frame payload in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_frame_bytes: usize,
    /// Largest message in bytes (on the wire and after inflation).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_message_bytes: usize,
    /// Close connections idle for this long (0: never).
    #[arg(long, default_value = "5m", value_parser = crate::config::units::parse_duration)]
    pub idle_timeout: Duration,
}

impl From<&crate::config::Limits> for EchoLimits {
    fn from(l: &crate::config::Limits) -> Self {
        Self {
            max_handshake_bytes: l.max_handshake_bytes,
            handshake_timeout: l.handshake_timeout,
            max_frame_bytes: l.max_frame_bytes,
            max_message_bytes: l.max_message_bytes,
            idle_timeout: l.idle_timeout,
        }
    }
}

/// Resolved settings shared by every core.
#[derive(Debug, Clone)]
pub struct EchoSettings {
    head: HeadLimits,
    frames: ReceiverLimits,
    handshake_timeout: Duration,
    idle_timeout: Option<Duration>,
    deflate: Option<DeflateConfig>,
    policy: OneM2mPolicy,
}

impl EchoSettings {
    /// The frame and message limits these settings resolve to.
    pub fn frame_limits(&self) -> ReceiverLimits {
        self.frames
    }

    pub fn new(limits: &EchoLimits, deflate: bool) -> Self {
        Self {
            head: HeadLimits {
                max_head_bytes: limits.max_handshake_bytes,
                ..HeadLimits::default()
            },
            frames: ReceiverLimits {
                max_frame_bytes: limits.max_frame_bytes,
                max_message_bytes: limits.max_message_bytes,
                max_inflated_bytes: limits.max_message_bytes,
                ..ReceiverLimits::default()
            },
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: (!limits.idle_timeout.is_zero()).then_some(limits.idle_timeout),
            deflate: deflate.then(DeflateConfig::default),
            policy: OneM2mPolicy::default(),
        }
    }
}

#[derive(Debug)]
enum Phase {
    Handshake,
    Open { rx: Box<Receiver>, tx: Box<Sender> },
    Closing,
}

#[derive(Debug)]
struct Session {
    id: ConnId,
    phase: Phase,
    timer: Option<TimerId>,
    last_input: Instant,
}

/// One core's echo sessions, indexed by connection slot.
#[derive(Debug)]
pub struct EchoApp {
    settings: EchoSettings,
    sessions: Vec<Option<Session>>,
    out: Vec<u8>,
}

impl EchoApp {
    pub fn new(settings: EchoSettings) -> Self {
        Self {
            settings,
            sessions: Vec::new(),
            out: Vec::new(),
        }
    }

    fn session(&mut self, conn: ConnId) -> Option<&mut Session> {
        self.sessions
            .get_mut(conn.slot())?
            .as_mut()
            .filter(|s| s.id == conn)
    }

    fn handshake(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, data: &mut [u8]) -> usize {
        let (req, head_len) = match parse_request(data, self.settings.head) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return 0,
            Err(e) => return self.reject(cx, conn, &e, data.len()),
        };
        let negotiated = server::validate_upgrade(&req).and_then(|up| {
            server::negotiate(&up, &self.settings.policy, self.settings.deflate.as_ref())
        });
        let n = match negotiated {
            Ok(n) => n,
            Err(e) => return self.reject(cx, conn, &e, data.len()),
        };
        cx.send(conn, &n.response);
        let (rx, tx) = endpoint(
            Role::Server,
            n.deflate,
            self.settings.frames,
            SenderConfig::default(),
            6,
        );
        let idle = self.settings.idle_timeout;
        let now = cx.now();
        let session = self.session(conn).expect("live session");
        if let Some(t) = session.timer.take() {
            cx.cancel_timer(t);
        }
        session.phase = Phase::Open {
            rx: Box::new(rx),
            tx: Box::new(tx),
        };
        session.last_input = now;
        if let Some(idle) = idle {
            session.timer = Some(cx.set_timer(now + idle, conn.raw()));
        }
        head_len + self.frames(cx, conn, &mut data[head_len..])
    }

    fn reject(
        &mut self,
        cx: &mut Cx<'_, ()>,
        conn: ConnId,
        e: &m2m_ws::HandshakeError,
        len: usize,
    ) -> usize {
        tracing::debug!(conn = conn.raw(), error = %e, "handshake rejected");
        cx.send(conn, &error_response(e));
        cx.close(conn);
        if let Some(s) = self.session(conn) {
            s.phase = Phase::Closing;
        }
        len
    }

    fn frames(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, data: &mut [u8]) -> usize {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let now = cx.now();
        let Some(session) = self
            .sessions
            .get_mut(conn.slot())
            .and_then(Option::as_mut)
            .filter(|s| s.id == conn)
        else {
            return data.len();
        };
        session.last_input = now;
        let Phase::Open { rx, tx } = &mut session.phase else {
            return data.len();
        };
        let mut at = 0;
        let mut close = false;
        loop {
            match rx.read(&mut data[at..]) {
                Ok(Some((event, used))) => {
                    at += used;
                    match event {
                        Event::Text(t) => tx.text(t, &mut out),
                        Event::Binary(b) => tx.binary(b, &mut out),
                        Event::Ping(p) => tx.pong(p, &mut out),
                        Event::Pong(_) | Event::Fragment => {}
                        Event::Close(frame) => {
                            // §5.5.1: answer with a close frame echoing the code.
                            let code = frame.code.unwrap_or(CloseCode::NORMAL);
                            tx.close(code, "", &mut out);
                            close = true;
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(conn = conn.raw(), error = %e, "protocol error");
                    tx.close(e.close_code(), &e.to_string(), &mut out);
                    close = true;
                    at = data.len();
                    break;
                }
            }
        }
        if close {
            session.phase = Phase::Closing;
        }
        if !out.is_empty() {
            cx.send(conn, &out);
        }
        if close {
            cx.close(conn);
        }
        if out.capacity() <= 64 * 1024 {
            self.out = out;
        }
        at
    }
}

impl App for EchoApp {
    type Msg = ();

    fn on_accept(
        &mut self,
        cx: &mut Cx<'_, ()>,
        conn: ConnId,
        _listener: usize,
        _peer: SocketAddr,
    ) {
        if cx.shutting_down() {
            cx.abort(conn);
            return;
        }
        let slot = conn.slot();
        if self.sessions.len() <= slot {
            self.sessions.resize_with(slot + 1, || None);
        }
        let timer = cx.set_timer(cx.now() + self.settings.handshake_timeout, conn.raw());
        self.sessions[slot] = Some(Session {
            id: conn,
            phase: Phase::Handshake,
            timer: Some(timer),
            last_input: cx.now(),
        });
    }

    fn on_data(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, data: &mut [u8]) -> usize {
        match self
            .session(conn)
            .map(|s| matches!(s.phase, Phase::Handshake))
        {
            Some(true) => self.handshake(cx, conn, data),
            Some(false) => self.frames(cx, conn, data),
            None => data.len(),
        }
    }

    fn on_close(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, _reason: CloseReason) {
        if let Some(slot) = self.sessions.get_mut(conn.slot())
            && slot.as_ref().is_some_and(|s| s.id == conn)
        {
            if let Some(t) = slot.take().and_then(|s| s.timer) {
                cx.cancel_timer(t);
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Cx<'_, ()>, token: u64) {
        let now = cx.now();
        let idle = self.settings.idle_timeout;
        let Some(session) = self.session(ConnId::from_raw(token)) else {
            return;
        };
        let conn = session.id;
        session.timer = None;
        match &mut session.phase {
            Phase::Handshake => {
                tracing::debug!(conn = conn.raw(), "handshake timeout");
                cx.abort(conn);
            }
            Phase::Open { tx, .. } => {
                let Some(idle) = idle else { return };
                let quiet = now.saturating_duration_since(session.last_input);
                if quiet < idle {
                    session.timer = Some(cx.set_timer(session.last_input + idle, token));
                    return;
                }
                let mut out = Vec::new();
                tx.close(CloseCode::GOING_AWAY, "idle timeout", &mut out);
                session.phase = Phase::Closing;
                cx.send(conn, &out);
                cx.close(conn);
            }
            Phase::Closing => {}
        }
    }

    fn on_shutdown(&mut self, cx: &mut Cx<'_, ()>) {
        for session in self.sessions.iter_mut().flatten() {
            let mut out = Vec::new();
            if let Phase::Open { tx, .. } = &mut session.phase {
                tx.close(CloseCode::GOING_AWAY, "server shutting down", &mut out);
                cx.send(session.id, &out);
            }
            session.phase = Phase::Closing;
            cx.close(session.id);
        }
    }
}
