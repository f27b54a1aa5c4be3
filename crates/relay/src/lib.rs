//! m2m-relay: the edge's behaviour as a state machine that does no I/O. Device bytes, link bytes,
//! connect results, timer expiry and `now` go in; what to send to which connection, which link to
//! open, what to close and which timer to arm come out through the [`Io`] the caller passes with
//! each event (in the style of quinn-proto's `Connection`, with the effects as calls instead of a
//! returned queue so that frames are encoded straight into the connection's output buffer).
//!
//! ```text
//!             ┌──────────────────────── Engine (one per core) ───────────────────────────┐
//! device ──►  │ device: handshake ─► frames ─► routing view ─► gate ─► queue ─┐          │
//!  bytes      │                                                          pin ▼          │ ──► Io::send_with(Link)
//!             │ link (passthrough: one per device │ multiplex: N per core) ─► pending(rqi)│
//! link   ──►  │ link: CONNECT? ─► handshake ─► frames ─► response ─► rqi ─► device    ────│ ──► Io::send_with(Device)
//!  bytes      │                                      └─► CSE request ─► route by `to`     │
//!             └──────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! What it does not do: sockets, TLS records, timers' storage, DNS (the runtime adapter in the
//! m2m-edge crate executes the [`Io`] calls). It depends on no runtime crate, so everything here is
//! tested in memory with a fake clock (`testing`, `tests`).
//!
//! Modules: [`settings`] (what the engine needs to know), [`counters`] (what it counts), [`engine`]
//! (ids, tables, events), `device` (device side), `link` (upstream side), `relay` (queue, dispatch,
//! correlation, the edge's answers), `tunnel` (CONNECT), [`message`] (payloads in place).
#![forbid(unsafe_code)]

pub mod counters;
mod device;
pub mod engine;
mod link;
pub mod message;
mod notify;
mod poa;
mod relay;
pub mod settings;
mod slab;
mod tunnel;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Instant;

pub use engine::Engine;
pub use settings::{OriginHeader, RelaySettings, UpstreamMode};

/// A device session of one engine: slot and generation (a stale id of a closed session is ignored).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DeviceId {
    pub index: u32,
    pub generation: u32,
}

/// An upstream link of one engine.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct LinkId {
    pub index: u32,
    pub generation: u32,
}

/// A connection the CSE opened to the edge's notify listener (the edge as devices' point of access).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NotifyId {
    pub index: u32,
    pub generation: u32,
}

/// A connection the engine talks to: a device, an upstream link, the target of a device's CONNECT
/// tunnel, or a CSE connection on the notify listener.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Peer {
    Device(DeviceId),
    Link(LinkId),
    Tunnel(DeviceId),
    Notify(NotifyId),
}

/// Where the answer to a request of the CSE goes: the connection (of core `core`) it came on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Back {
    pub core: usize,
    pub peer: Peer,
}

/// What one core's engine sends another (through the runtime's mailboxes): a request of the CSE
/// for a device held by that core, the device's answer on its way back, and a session's takeover of
/// an originator.
#[derive(Debug)]
pub enum Envelope {
    Deliver {
        back: Back,
        to: Box<str>,
        bytes: Vec<u8>,
        format: m2m_primitive::Format,
    },
    Answer {
        to: Peer,
        bytes: Vec<u8>,
        format: m2m_primitive::Format,
    },
    /// A session on the sending core now holds `origin`: close `device`, this core's older one.
    TakeOver { origin: Box<str>, device: DeviceId },
}

/// Who holds an originator: the core, the session, and when that session was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    pub core: usize,
    pub device: DeviceId,
    pub since: std::time::Instant,
}

/// Which session (on which core) holds each originator, shared by the engines of one process:
/// claimed when a session binds an originator, released when it unbinds, read when the CSE
/// delivers a request on a core that does not hold the device. One lock per claim, so two cores
/// binding the same originator at once always see each other.
#[derive(Debug, Default)]
pub struct Directory(std::sync::Mutex<std::collections::HashMap<Box<str>, Holder>>);

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Claimed; the previous holder (now to be closed), if any.
    Taken(Option<Holder>),
    /// A newer session holds it: the claim is refused (an older session must not evict a newer one).
    Newer,
}

impl Directory {
    /// Claim `origin` for `me` unless a newer session holds it.
    pub(crate) fn claim(&self, origin: &str, me: Holder) -> Claim {
        let Ok(mut m) = self.0.lock() else {
            return Claim::Taken(None);
        };
        match m.get(origin) {
            Some(h) if h.device == me.device && h.core == me.core => Claim::Taken(None),
            Some(h) if h.since > me.since => Claim::Newer,
            _ => Claim::Taken(m.insert(origin.into(), me)),
        }
    }

    /// Release `origin` if `device` of `core` holds it.
    pub(crate) fn release(&self, origin: &str, core: usize, device: DeviceId) {
        if let Ok(mut m) = self.0.lock()
            && m.get(origin)
                .is_some_and(|h| h.core == core && h.device == device)
        {
            m.remove(origin);
        }
    }

    pub(crate) fn holder(&self, origin: &str) -> Option<Holder> {
        self.0.lock().ok()?.get(origin).copied()
    }

    /// Originators held (for tests and leak checks).
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a new connection goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    /// The CSE (or the configured HTTP proxy in front of it): the adapter knows the address, the
    /// source address to use and the TLS settings.
    Upstream,
    /// An allow-listed CONNECT target, resolved.
    Tunnel(SocketAddr),
}

/// A timer the engine armed; handed back through [`Engine::timer`]. Timers are never cancelled:
/// each carries a generation and a stale one is ignored when it fires, which spares a cancel per
/// relayed request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Timer(pub u64);

/// The effects of an event, carried out by the caller (the runtime adapter, or the in-memory test
/// harness). Output is batched by the caller: everything sent to one connection during one loop turn
/// goes out in one write.
pub trait Io {
    /// Append bytes to `to`'s output; `write` encodes straight into the buffer they are sent from.
    /// False when the connection is gone or closing.
    fn send_with(&mut self, to: Peer, write: impl FnOnce(&mut Vec<u8>)) -> bool;

    /// Append `bytes` to `to`'s output.
    fn send(&mut self, to: Peer, bytes: &[u8]) -> bool {
        self.send_with(to, |out| out.extend_from_slice(bytes))
    }

    /// Bytes queued for `to` and not yet taken by the kernel.
    fn unsent(&self, to: Peer) -> usize;

    /// Close `to` once its output is written; the matching `*_closed` event follows.
    fn close(&mut self, to: Peer);

    /// Close `to` now, dropping its output; no event follows (the engine has forgotten it).
    fn abort(&mut self, to: Peer);

    /// Open a connection for `peer` (a link or a tunnel); `link_connected` / `tunnel_connected`
    /// reports the result. An error here means no event follows.
    fn connect(&mut self, peer: Peer, target: Target) -> std::io::Result<()>;

    /// Start TLS as a client on an open link (a wss:// CSE after the proxy's CONNECT answer).
    fn start_tls(&mut self, link: LinkId) -> std::io::Result<()>;

    /// Call [`Engine::timer`] with `timer` at or after `at`.
    fn set_timer(&mut self, at: Instant, timer: Timer);

    /// The identity of the device's TLS client certificate (CN, else first SAN), if any.
    fn client_identity(&mut self, device: DeviceId) -> Option<String>;

    /// Resolve an allow-listed CONNECT target name (`host:port`).
    fn resolve(&mut self, authority: &str) -> Option<SocketAddr>;

    /// Hand `msg` to core `core`'s engine ([`Engine::message`]); false when its queue is full.
    fn post(&mut self, core: usize, msg: Envelope) -> bool;
}
