//! Reading messages (RFC 6455 §5.4–§5.6, §8.1; RFC 7692 §6): one complete frame per call, with
//! fragment reassembly, interleaved control frames, incremental UTF-8 checks, close validation and
//! inflation, all under configured limits.
//!
//! Zero copy: the payload is unmasked in place in the caller's buffer, and an uncompressed message that
//! arrives in one frame is handed out as a slice of that buffer. Only fragmented or compressed messages
//! are assembled in the receiver's own buffer, which is released when it grew beyond
//! [`ReceiverLimits::retain_bytes`] so an idle connection keeps no large allocation.

use crate::close::{CloseFrame, parse_close_payload};
use crate::deflate::Inflater;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode, Role};
use crate::mask::apply_mask;
use crate::utf8::Utf8Validator;

/// Limits for the receiving side; each is checked before memory is committed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverLimits {
    /// Largest frame payload accepted (checked from the header, before the payload is awaited).
    /// Default 1 MiB, as ACME and Mobius.
    pub max_frame_bytes: usize,
    /// Largest message on the wire (sum of its frames). Default 1 MiB.
    pub max_message_bytes: usize,
    /// Largest message after inflation. Default 1 MiB; a compression bomb stops here with 1009.
    pub max_inflated_bytes: usize,
    /// Reassembly capacity kept between messages; a larger buffer is freed after use. Default 16 KiB.
    pub retain_bytes: usize,
}

impl Default for ReceiverLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 1 << 20,
            max_message_bytes: 1 << 20,
            max_inflated_bytes: 1 << 20,
            retain_bytes: 16 * 1024,
        }
    }
}

/// What one call to [`Receiver::read`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message, UTF-8 checked.
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping; answer with a pong carrying the same payload (§5.5.2).
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame, validated (§5.5.1). Answer with a close frame and stop reading.
    Close(CloseFrame<'a>),
    /// A non-final data frame was taken into the reassembly buffer; nothing to deliver yet.
    Fragment,
}

#[derive(Debug, Clone, Copy)]
struct InProgress {
    text: bool,
    compressed: bool,
    /// Never above the message limit, which fits 32 bits (see [`Limits`]).
    wire_len: u32,
}

/// [`ReceiverLimits`] as a receiver keeps them: 32 bits each (limits above 4 GiB are 4 GiB), so
/// that the idle devices of a busy edge each carry 16 bytes of limits rather than 32.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_frame: u32,
    max_message: u32,
    max_inflated: u32,
    retain: u32,
}

fn clamp32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<ReceiverLimits> for Limits {
    fn from(l: ReceiverLimits) -> Self {
        Self {
            max_frame: clamp32(l.max_frame_bytes),
            max_message: clamp32(l.max_message_bytes),
            max_inflated: clamp32(l.max_inflated_bytes),
            retain: clamp32(l.retain_bytes),
        }
    }
}

/// The receiving half of a WebSocket connection.
#[derive(Debug)]
pub struct Receiver {
    role: Role,
    limits: Limits,
    /// Boxed: most sessions never negotiate permessage-deflate.
    inflater: Option<Box<Inflater>>,
    message: Option<InProgress>,
    assembly: Vec<u8>,
    utf8: Utf8Validator,
    closed: bool,
}

impl Receiver {
    /// A receiver for `role`; with `inflater`, permessage-deflate was negotiated.
    pub fn new(role: Role, limits: ReceiverLimits, inflater: Option<Inflater>) -> Self {
        Self {
            role,
            limits: limits.into(),
            inflater: inflater.map(Box::new),
            message: None,
            assembly: Vec::new(),
            utf8: Utf8Validator::default(),
            closed: false,
        }
    }

    /// Whether the peer's close frame was received.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether a fragmented message has begun and not ended.
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// Bytes held by this receiver's buffers (for memory accounting).
    pub fn buffered_capacity(&self) -> usize {
        self.assembly.capacity()
    }

    /// Read one frame from the start of `input`. `Ok(None)` when the frame is incomplete (nothing
    /// consumed). Otherwise returns the event and the number of bytes consumed; the frame's payload
    /// in `input` has been unmasked in place.
    pub fn read<'a>(
        &'a mut self,
        input: &'a mut [u8],
    ) -> Result<Option<(Event<'a>, usize)>, ProtocolError> {
        if self.closed && !input.is_empty() {
            return Err(ProtocolError::FrameAfterClose);
        }
        let Some(header) = FrameHeader::parse(input)? else {
            return Ok(None);
        };
        header.check(self.role, self.inflater.is_some())?;
        if header.payload_len > u64::from(self.limits.max_frame) {
            return Err(ProtocolError::FrameTooBig {
                len: header.payload_len,
                limit: self.limits.max_frame as usize,
            });
        }
        let total = header.header_len + header.payload_len as usize;
        if input.len() < total {
            return Ok(None);
        }
        let payload = &mut input[header.header_len..total];
        if let Some(key) = header.mask {
            apply_mask(payload, key);
        }
        let payload: &'a [u8] = payload;
        let event = match header.opcode {
            OpCode::Ping => Event::Ping(payload),
            OpCode::Pong => Event::Pong(payload),
            OpCode::Close => {
                let frame = parse_close_payload(payload)?;
                self.closed = true;
                Event::Close(frame)
            }
            OpCode::Text | OpCode::Binary => {
                if self.message.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                let text = header.opcode == OpCode::Text;
                self.check_message_len(header.payload_len)?;
                if header.fin && !header.rsv1 {
                    // The common case: one uncompressed frame, delivered in place.
                    if text {
                        let s =
                            std::str::from_utf8(payload).map_err(|_| ProtocolError::InvalidUtf8)?;
                        return Ok(Some((Event::Text(s), total)));
                    }
                    return Ok(Some((Event::Binary(payload), total)));
                }
                if self.assembly.capacity() > self.limits.retain as usize {
                    self.assembly = Vec::new();
                }
                self.assembly.clear();
                self.utf8.reset();
                self.message = Some(InProgress {
                    text,
                    compressed: header.rsv1,
                    // Checked against the message limit above.
                    wire_len: header.payload_len as u32,
                });
                self.take_fragment(payload, header.fin)?
            }
            OpCode::Continuation => {
                let Some(mut msg) = self.message else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                let wire_len = u64::from(msg.wire_len) + header.payload_len;
                self.check_message_len(wire_len)?;
                msg.wire_len = wire_len as u32;
                self.message = Some(msg);
                self.take_fragment(payload, header.fin)?
            }
        };
        Ok(Some((event, total)))
    }

    fn check_message_len(&self, len: u64) -> Result<(), ProtocolError> {
        if len > u64::from(self.limits.max_message) {
            return Err(ProtocolError::MessageTooBig {
                len,
                limit: self.limits.max_message as usize,
            });
        }
        Ok(())
    }

    /// Append a data frame's payload to the message in progress; on the final frame, deliver it.
    fn take_fragment(&mut self, payload: &[u8], fin: bool) -> Result<Event<'_>, ProtocolError> {
        let msg = self.message.expect("message in progress");
        let start = self.assembly.len();
        if msg.compressed {
            let inflater = self
                .inflater
                .as_mut()
                .expect("RSV1 accepted only with deflate");
            inflater.inflate(
                payload,
                fin,
                &mut self.assembly,
                self.limits.max_inflated as usize,
            )?;
        } else {
            self.assembly.extend_from_slice(payload);
        }
        if msg.text {
            self.utf8
                .feed(&self.assembly[start..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if !fin {
            return Ok(Event::Fragment);
        }
        self.message = None;
        if msg.text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            let text = std::str::from_utf8(&self.assembly).expect("validated incrementally");
            Ok(Event::Text(text))
        } else {
            Ok(Event::Binary(&self.assembly))
        }
    }
}
