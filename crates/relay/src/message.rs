//! Payloads handled where they were received: a message read from the input of one event is a
//! range of that input (unmasked in place), so relaying it copies nothing; a message the receiver
//! reassembled from fragments or inflated is owned.

use m2m_ws::{CloseCode, Event, Receiver, Sender};

use crate::{Io, Peer};

/// Where a received message's payload is: in place in the input just read (unmasked there), or
/// reassembled by the receiver from fragments or inflated, then copied out.
#[derive(Debug)]
pub enum Payload {
    InPlace(std::ops::Range<usize>),
    Owned(Vec<u8>),
}

/// A received data message: where its payload is, and whether it came as text (then the receiver
/// has already checked that it is UTF-8).
#[derive(Debug)]
pub struct Message {
    pub payload: Payload,
    pub text: bool,
}

impl Message {
    /// The payload's bytes, given the input it was read from.
    pub fn bytes<'a>(&'a self, input: &'a [u8]) -> &'a [u8] {
        match &self.payload {
            Payload::InPlace(range) => &input[range.clone()],
            Payload::Owned(bytes) => bytes,
        }
    }
}

/// The input buffer of one `on_data` call, to tell whether a payload lies inside it.
#[derive(Debug, Clone, Copy)]
pub struct InputSpan {
    start: usize,
    len: usize,
}

impl InputSpan {
    pub fn of(data: &[u8]) -> Self {
        Self {
            start: data.as_ptr() as usize,
            len: data.len(),
        }
    }

    /// The payload's range in the input, or a copy when it lives elsewhere.
    pub fn payload(self, part: &[u8]) -> Payload {
        let at = (part.as_ptr() as usize).wrapping_sub(self.start);
        if at <= self.len && part.len() <= self.len - at {
            Payload::InPlace(at..at + part.len())
        } else {
            Payload::Owned(part.to_vec())
        }
    }

    /// A data message event as a [`Message`], or `None` for control frames and fragments.
    pub fn message(self, event: &Event<'_>) -> Option<Message> {
        match event {
            Event::Text(t) => Some(Message {
                payload: self.payload(t.as_bytes()),
                text: true,
            }),
            Event::Binary(b) => Some(Message {
                payload: self.payload(b),
                text: false,
            }),
            _ => None,
        }
    }
}

/// What one step of reading a connection's frames gave.
#[derive(Debug)]
pub(crate) enum Step {
    /// No whole frame left: this many bytes of the input were consumed in all.
    Need(usize),
    /// A data message.
    Message(Message),
    /// A control frame was handled (a ping answered), or a fragment taken in.
    Control,
    /// The answer to our ping.
    Pong,
    /// The peer sent a close frame (`error` false), or broke the protocol (`error` true): close
    /// with `code` and `why`.
    Close {
        code: CloseCode,
        why: String,
        error: bool,
    },
}

/// Read the next frame at `*at` of `data` (unmasking in place) and move `*at` past it; a ping is
/// answered on `peer` at once. The same for devices, links and the notify listener.
pub(crate) fn next_frame(
    io: &mut impl Io,
    peer: Peer,
    rx: &mut Receiver,
    tx: &mut Sender,
    data: &mut [u8],
    at: &mut usize,
    input: InputSpan,
) -> Step {
    match rx.read(&mut data[*at..]) {
        Ok(Some((event, used))) => {
            *at += used;
            if let Some(m) = input.message(&event) {
                return Step::Message(m);
            }
            match event {
                Event::Ping(p) => {
                    io.send_with(peer, |out| tx.pong(p, out));
                    Step::Control
                }
                Event::Pong(_) => Step::Pong,
                Event::Close(f) => Step::Close {
                    code: f.code.unwrap_or(CloseCode::NORMAL),
                    why: String::new(),
                    error: false,
                },
                _ => Step::Control,
            }
        }
        Ok(None) => Step::Need(*at),
        Err(e) => Step::Close {
            code: e.close_code(),
            why: e.to_string(),
            error: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{InputSpan, Payload};

    #[test]
    fn a_payload_inside_the_input_is_a_range_and_one_elsewhere_is_copied() {
        let input = b"\x81\x05hello\x81\x02ok".to_vec();
        let span = InputSpan::of(&input);
        match span.payload(&input[2..7]) {
            Payload::InPlace(r) => assert_eq!(&input[r], b"hello"),
            Payload::Owned(_) => panic!("payload inside the input was copied"),
        }
        match span.payload(&input[9..]) {
            Payload::InPlace(r) => assert_eq!(r, 9..11),
            Payload::Owned(_) => panic!("payload at the end of the input was copied"),
        }
        let reassembled = b"hello".to_vec();
        match span.payload(&reassembled) {
            Payload::Owned(bytes) => assert_eq!(bytes, b"hello"),
            Payload::InPlace(_) => panic!("a buffer outside the input taken as in place"),
        }
        match span.payload(&input[11..]) {
            Payload::InPlace(r) => assert!(r.is_empty()),
            Payload::Owned(bytes) => assert!(bytes.is_empty()),
        }
    }
}
