//! Sans-IO WebSocket for m2m-edge: RFC 6455 framing and handshake, RFC 7692 permessage-deflate, and
//! the HTTP CONNECT step of TS-0020, as functions from bytes to events and bytes.
//!
//! This crate never touches a socket, a clock or a runtime: the edge's runtime (io_uring or epoll)
//! and any test harness feed it bytes they own and send the bytes it returns. That keeps the protocol
//! exactly testable (every split of every message, injected faults) and lets the same code run on
//! either I/O driver.
//!
//! ```text
//!  bytes in ──► handshake::parse_request ──► server::validate_upgrade ──► server::negotiate ──► 101 out
//!                       └──────────────► connect::parse_connect ──► connect_response
//!  bytes in ──► Receiver::read ──► FrameHeader::parse ─► unmask in place ─► Event (slice of input)
//!                                  └► fragments / inflate into the receiver's buffer ─► Event
//!  message ──► Sender ──► [deflate] ──► frames (masked when client) ──► bytes out
//! ```
//!
//! Modules: [`frame`] (header parse/encode), [`mask`] (in-place XOR), [`message`] (receiver),
//! [`encode`] (sender), [`utf8`] (incremental validation), [`close`] (close codes), [`deflate`]
//! (RFC 7692), [`handshake`] (server, client, subprotocols, CONNECT), [`error`].
//!
//! What it does not do: TLS (rustls, driven by the runtime), timeouts (the caller's clock), and
//! deciding policy (which subprotocols, which CONNECT targets): those are the caller's.
#![forbid(unsafe_code)]

pub mod close;
pub mod deflate;
pub mod encode;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use deflate::{DeflateConfig, DeflateParams, Deflater, Inflater};
pub use encode::{Sender, SenderConfig};
pub use error::{HandshakeError, ProtocolError};
pub use frame::{FrameHeader, OpCode, Role};
pub use message::{Event, Receiver, ReceiverLimits};

/// Build the receiving and sending halves for one side of a connection after the handshake.
///
/// `deflate` is what was agreed; `level` the compression level for our direction.
pub fn endpoint(
    role: Role,
    deflate: Option<DeflateParams>,
    limits: ReceiverLimits,
    sender: SenderConfig,
    level: u32,
) -> (Receiver, Sender) {
    let (inflater, deflater) = match deflate {
        None => (None, None),
        Some(p) => {
            let (peer_resets, we_reset, our_bits) = match role {
                Role::Server => (
                    p.client_no_context_takeover,
                    p.server_no_context_takeover,
                    p.server_max_window_bits,
                ),
                Role::Client => (
                    p.server_no_context_takeover,
                    p.client_no_context_takeover,
                    p.client_max_window_bits,
                ),
            };
            (
                Some(Inflater::new(peer_resets)),
                Some(Deflater::new(level, our_bits, we_reset)),
            )
        }
    };
    (
        Receiver::new(role, limits, inflater),
        Sender::new(role, sender, deflater),
    )
}
