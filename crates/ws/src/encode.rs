//! Writing messages: data messages (optionally compressed, optionally fragmented), control frames and
//! close frames, masked when we are the client (RFC 6455 §5.1, §5.3).
//!
//! Masking keys come from the OS random source (§5.3 asks for a strong source of entropy), drawn 64
//! keys per system call from a small per-thread pool so that a busy client does not pay one syscall
//! per frame, and an idle one (a proxy holds thousands of client senders) carries no pool of its own.

use crate::close::{CloseCode, close_payload};
use crate::deflate::Deflater;
use crate::frame::{OpCode, Role, write_frame};

/// How messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderConfig {
    /// Split data messages into frames of at most this many payload bytes; 0 sends every message as
    /// one frame. Default 0 (Mobius, for example, fragments above 16 KiB).
    pub fragment_bytes: usize,
    /// With permessage-deflate, messages shorter than this are sent uncompressed (RSV1 clear). Default
    /// 64: below that deflate only adds bytes and CPU.
    pub compress_min_bytes: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            fragment_bytes: 0,
            compress_min_bytes: 64,
        }
    }
}

/// Masking keys for a client, refilled from the OS in blocks.
#[derive(Debug)]
struct MaskSource {
    pool: [u8; 256],
    next: usize,
}

impl MaskSource {
    fn new() -> Self {
        Self {
            pool: [0; 256],
            next: 256,
        }
    }

    fn key(&mut self) -> [u8; 4] {
        if self.next == self.pool.len() {
            getrandom::fill(&mut self.pool).expect("OS random source");
            self.next = 0;
        }
        let key = self.pool[self.next..self.next + 4]
            .try_into()
            .expect("4 bytes");
        self.next += 4;
        key
    }
}

thread_local! {
    static MASKS: std::cell::RefCell<MaskSource> = std::cell::RefCell::new(MaskSource::new());
}

/// The sending half of a WebSocket connection. Small on purpose (a proxy keeps two per device):
/// compression state is boxed and only there when negotiated, masking keys come from the thread's
/// pool.
#[derive(Debug)]
pub struct Sender {
    role: Role,
    /// [`SenderConfig`] in 32 bits a field (8 bytes less per device).
    fragment_bytes: u32,
    compress_min_bytes: u32,
    /// The compressor and its output buffer, only when permessage-deflate was negotiated.
    deflater: Option<Box<(Deflater, Vec<u8>)>>,
}

impl Sender {
    /// A sender for `role`; with `deflater`, permessage-deflate was negotiated.
    pub fn new(role: Role, config: SenderConfig, deflater: Option<Deflater>) -> Self {
        Self {
            role,
            fragment_bytes: u32::try_from(config.fragment_bytes).unwrap_or(u32::MAX),
            compress_min_bytes: u32::try_from(config.compress_min_bytes).unwrap_or(u32::MAX),
            deflater: deflater.map(|d| Box::new((d, Vec::new()))),
        }
    }

    /// Which side this sender writes for.
    pub fn role(&self) -> Role {
        self.role
    }

    fn mask(&mut self) -> Option<[u8; 4]> {
        (self.role == Role::Client).then(|| MASKS.with(|m| m.borrow_mut().key()))
    }

    /// Append a text message.
    pub fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        self.message(OpCode::Text, text.as_bytes(), out);
    }

    /// Append a binary message.
    pub fn binary(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.message(OpCode::Binary, data, out);
    }

    /// Append a data message (`opcode` Text or Binary), compressed and fragmented per config.
    pub fn message(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
        debug_assert!(matches!(opcode, OpCode::Text | OpCode::Binary));
        let mut deflate = self.deflater.take();
        let (body, compressed) = match deflate.as_deref_mut() {
            Some((def, scratch)) if payload.len() >= self.compress_min_bytes as usize => {
                scratch.clear();
                def.deflate(payload, scratch);
                (scratch.as_slice(), true)
            }
            _ => (payload, false),
        };
        let step = if self.fragment_bytes == 0 {
            usize::MAX
        } else {
            self.fragment_bytes as usize
        };
        if body.len() <= step {
            let mask = self.mask();
            write_frame(out, true, compressed, opcode, mask, body);
        } else {
            let count = body.len().div_ceil(step);
            for (i, chunk) in body.chunks(step).enumerate() {
                let op = if i == 0 { opcode } else { OpCode::Continuation };
                let mask = self.mask();
                write_frame(out, i + 1 == count, compressed && i == 0, op, mask, chunk);
            }
        }
        self.deflater = deflate;
    }

    /// Append a ping; the payload is cut to 125 bytes (§5.5).
    pub fn ping(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let mask = self.mask();
        write_frame(
            out,
            true,
            false,
            OpCode::Ping,
            mask,
            &payload[..payload.len().min(125)],
        );
    }

    /// Append a pong; the payload is cut to 125 bytes (§5.5).
    pub fn pong(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let mask = self.mask();
        write_frame(
            out,
            true,
            false,
            OpCode::Pong,
            mask,
            &payload[..payload.len().min(125)],
        );
    }

    /// Append a close frame with `code` and `reason`. Codes that may not be sent (1005, 1006, 1015)
    /// produce an empty close payload instead (§7.4.1).
    pub fn close(&mut self, code: CloseCode, reason: &str, out: &mut Vec<u8>) {
        let payload = if code.is_sendable() {
            close_payload(code, reason)
        } else {
            Vec::new()
        };
        let mask = self.mask();
        write_frame(out, true, false, OpCode::Close, mask, &payload);
    }
}
