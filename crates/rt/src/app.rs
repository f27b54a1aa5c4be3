//! The interface between the runtime and what it runs: an [`App`] per core owns every connection's
//! protocol state as a sans-IO state machine. The runtime gives it bytes, time and messages; through
//! [`Cx`](crate::core::Cx) the app returns bytes to send, timers to set, connections to open or close
//! and messages for other cores.
//!
//! One app per core (not one handler per connection) so that a device session and its upstream link,
//! both on the same core, can reach each other without locks.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::core::Cx;

/// A connection on one core. Generations make a stale id (of a closed connection whose slot was
/// reused) harmless: the runtime ignores it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    pub(crate) fn new(index: u32, generation: u32) -> Self {
        Self((u64::from(generation) << 32) | u64::from(index))
    }

    pub(crate) fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// A number for logs and timer tokens.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The id whose [`raw`](Self::raw) value is `raw` (e.g. from a timer token). A stale or made-up
    /// id is harmless: the runtime ignores ids whose generation does not match.
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The connection's slot on its core: dense and reused, for per-core tables indexed by slot
    /// (compare the whole id to tell a reused slot from the old connection).
    pub fn slot(self) -> usize {
        self.index()
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}.{}", self.index(), self.generation())
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The app closed it (after its output was flushed) or aborted it.
    Local,
    /// The peer closed its side (read returned 0).
    PeerClosed,
    /// A socket error (reset, broken pipe, …).
    Io(io::ErrorKind),
    /// The TLS layer failed (bad handshake, bad certificate, decrypt error).
    Tls(String),
    /// More unconsumed input than [`RtConfig::max_pending_input_bytes`](crate::RtConfig).
    InputOverflow,
    /// The runtime stopped before the connection closed.
    Shutdown,
}

/// What runs on each core.
pub trait App {
    /// Messages other cores can send to this one.
    type Msg: Send + 'static;

    /// A connection was accepted on listener number `listener`.
    fn on_accept(
        &mut self,
        cx: &mut Cx<'_, Self::Msg>,
        conn: ConnId,
        listener: usize,
        peer: SocketAddr,
    );

    /// Bytes arrived (decrypted when the connection is TLS). `data` is the connection's unconsumed
    /// input followed by the new bytes, and may be modified in place (unmasking). Return how many
    /// bytes were consumed; the runtime keeps the rest for the next call, and only that rest.
    fn on_data(&mut self, cx: &mut Cx<'_, Self::Msg>, conn: ConnId, data: &mut [u8]) -> usize;

    /// The connection is gone; its id is now invalid. Called exactly once per connection.
    fn on_close(&mut self, cx: &mut Cx<'_, Self::Msg>, conn: ConnId, reason: CloseReason);

    /// An outbound connection from [`Cx::connect`] finished connecting, or failed (then `on_close`
    /// is not called for it).
    fn on_connect(&mut self, cx: &mut Cx<'_, Self::Msg>, conn: ConnId, result: io::Result<()>) {
        let _ = (cx, conn, result);
    }

    /// A timer set with [`Cx::set_timer`] fired.
    fn on_timer(&mut self, cx: &mut Cx<'_, Self::Msg>, token: u64) {
        let _ = (cx, token);
    }

    /// A message from core `from`.
    fn on_message(&mut self, cx: &mut Cx<'_, Self::Msg>, from: usize, msg: Self::Msg) {
        let _ = (cx, from, msg);
    }

    /// The runtime stops accepting: finish what is in flight and close connections (the runtime
    /// force-closes whatever is left when the drain deadline passes).
    fn on_shutdown(&mut self, cx: &mut Cx<'_, Self::Msg>) {
        let _ = cx;
    }
}
