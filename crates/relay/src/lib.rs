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
pub mod hold;
mod holding;
mod lazy;
mod link;
mod liveness;
pub mod log_limit;
pub mod message;
mod notify;
mod poa;
mod relay;
pub mod settings;
mod slab;
mod timing;
mod tunnel;

#[cfg(test)]
mod alloc_tests;
#[cfg(test)]
mod holding_tests;
// The invariant checks and their in-memory world also serve the fuzzer (feature `fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(not(test), allow(dead_code, unused_imports))]
mod invariants_tests;
#[cfg(test)]
mod session_tests;
#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(not(test), allow(dead_code, unused_imports))]
mod testing;
#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(not(test), allow(dead_code, unused_imports))]
mod tests;

#[cfg(feature = "fuzzing")]
pub use invariants_tests::fuzz_events;

use std::net::SocketAddr;
use std::time::Instant;

pub use engine::Engine;
pub use hold::{HeldPrimitive, HoldLimits, HoldStore, MemoryHold};
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
    /// Session `device` of core `core` now holds `origin`, which was away with its requests held
    /// on the receiving core: send them (an `Envelope::Held`).
    Fetch {
        origin: Box<str>,
        core: usize,
        device: DeviceId,
    },
    /// The requests held for `origin` while it was away, oldest first, for session `device`.
    /// `link_retired`: the sending core closed the link it kept for the device just now (see
    /// `Engine::resume_after_fetch`).
    Held {
        origin: Box<str>,
        device: DeviceId,
        items: Vec<hold::HeldPrimitive>,
        link_retired: bool,
    },
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
/// binding the same originator at once always see each other. A device that left (not
/// deregistered) is remembered as *away* on the core that holds its primitives until the hold
/// time has passed, so that the CSE's requests for it are held there, in one place and in order.
#[derive(Debug, Default)]
pub struct Directory(std::sync::Mutex<std::collections::HashMap<Box<str>, Entry>>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Live(Holder),
    /// The device left; core `core` holds what comes for it until `until` (or later, while it
    /// still holds something).
    Away {
        core: usize,
        until: Instant,
    },
}

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Claimed; the previous holder (now to be closed), if any, and the core holding primitives
    /// kept while the device was away, if any.
    Taken {
        previous: Option<Holder>,
        held_on: Option<usize>,
    },
    /// A newer session holds it: the claim is refused (an older session must not evict a newer one).
    Newer,
}

impl Directory {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Box<str>, Entry>> {
        // A poisoned lock only means another core panicked mid-update of a plain map.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claim `origin` for `me` unless a newer session holds it.
    pub(crate) fn claim(&self, origin: &str, me: Holder) -> Claim {
        let mut m = self.map();
        let held_on = match m.get(origin) {
            Some(Entry::Live(h)) if h.device == me.device && h.core == me.core => {
                return Claim::Taken {
                    previous: None,
                    held_on: None,
                };
            }
            Some(Entry::Live(h)) if h.since > me.since => return Claim::Newer,
            Some(Entry::Away { core, .. }) => Some(*core),
            _ => None,
        };
        let previous = match m.insert(origin.into(), Entry::Live(me)) {
            Some(Entry::Live(h)) => Some(h),
            _ => None,
        };
        Claim::Taken { previous, held_on }
    }

    /// Release `origin` if `device` of `core` holds it; with `away_until`, remember it as away
    /// (its requests held on `core`) until then.
    pub(crate) fn release(
        &self,
        origin: &str,
        core: usize,
        device: DeviceId,
        away_until: Option<Instant>,
    ) -> bool {
        let mut m = self.map();
        let mine =
            matches!(m.get(origin), Some(Entry::Live(h)) if h.core == core && h.device == device);
        if mine {
            match away_until {
                Some(until) => m.insert(origin.into(), Entry::Away { core, until }),
                None => m.remove(origin),
            };
        }
        mine
    }

    /// The live session holding `origin`.
    pub(crate) fn holder(&self, origin: &str) -> Option<Holder> {
        match self.map().get(origin) {
            Some(Entry::Live(h)) => Some(*h),
            _ => None,
        }
    }

    /// The core holding requests for `origin` while it is away.
    pub(crate) fn away(&self, origin: &str) -> Option<usize> {
        match self.map().get(origin) {
            Some(Entry::Away { core, .. }) => Some(*core),
            _ => None,
        }
    }

    /// Keep `origin` away on `core` at least until `until` (something held for it expires then).
    pub(crate) fn extend_away(&self, origin: &str, core: usize, until: Instant) {
        if let Some(Entry::Away { core: c, until: u }) = self.map().get_mut(origin)
            && *c == core
            && *u < until
        {
            *u = until;
        }
    }

    /// Forget `origin` as away on `core` if its time is up; else when it is up.
    pub(crate) fn forget_away(&self, origin: &str, core: usize, now: Instant) -> Option<Instant> {
        let mut m = self.map();
        match m.get(origin) {
            Some(Entry::Away { core: c, until }) if *c == core => {
                if *until <= now {
                    m.remove(origin);
                    None
                } else {
                    Some(*until)
                }
            }
            _ => None,
        }
    }

    /// Originators held by a live session (for tests and leak checks).
    pub fn len(&self) -> usize {
        self.map()
            .values()
            .filter(|e| matches!(e, Entry::Live(_)))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Originators remembered as away.
    pub fn away_len(&self) -> usize {
        self.map()
            .values()
            .filter(|e| matches!(e, Entry::Away { .. }))
            .count()
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
