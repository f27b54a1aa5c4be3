//! Frame headers (RFC 6455 §5.2): zero-copy parsing from `&[u8]` and encoding.
//!
//! [`FrameHeader::parse`] looks only at the 2–14 header bytes and never copies the payload: the caller
//! cuts `buf[header_len..header_len + payload_len]` and unmasks it in place. It checks what the header
//! alone decides (reserved opcodes, length encodings, control-frame rules); the role- and
//! extension-dependent checks (mask presence, RSV bits) are in [`FrameHeader::check`], which the
//! message layer calls with what was negotiated.

use crate::error::ProtocolError;
use crate::mask::apply_mask;

/// The largest header: 2 bytes + 8 bytes of length + 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Frame opcodes (§5.2, §11.8). Reserved values are rejected at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    /// Decode the 4-bit opcode; reserved values are a protocol error (§5.2).
    pub fn from_bits(bits: u8) -> Result<Self, ProtocolError> {
        Ok(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// Control frames have the high bit of the opcode set (§5.5).
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Which end of the connection we are: decides masking (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives masked frames, sends unmasked ones.
    Server,
    /// Receives unmasked frames, sends masked ones.
    Client,
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub rsv1: bool,
    pub rsv2: bool,
    pub rsv3: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Bytes of header before the payload (2 to 14).
    pub header_len: usize,
}

impl FrameHeader {
    /// Parse a header from the start of `buf`. `Ok(None)` until all header bytes are present; the
    /// payload need not be present.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<Self>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let opcode = OpCode::from_bits(b0 & 0x0F)?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        let (payload_len, mut header_len) = match len7 {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                let len = u16::from_be_bytes([buf[2], buf[3]]) as u64;
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let len = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthTopBit);
                }
                if len <= u16::MAX as u64 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 10)
            }
            short => (short as u64, 2),
        };
        if opcode.is_control() {
            if payload_len > 125 {
                return Err(ProtocolError::ControlTooLong(payload_len));
            }
            if !fin {
                return Err(ProtocolError::ControlFragmented);
            }
        }
        let mask = if masked {
            if buf.len() < header_len + 4 {
                return Ok(None);
            }
            let key = [
                buf[header_len],
                buf[header_len + 1],
                buf[header_len + 2],
                buf[header_len + 3],
            ];
            header_len += 4;
            Some(key)
        } else {
            None
        };
        Ok(Some(Self {
            fin,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode,
            mask,
            payload_len,
            header_len,
        }))
    }

    /// The checks that depend on the connection: masking per `role` (§5.1: a server receives only
    /// masked frames, a client only unmasked ones) and RSV bits per the negotiated extensions (§5.2;
    /// RFC 7692 §6: RSV1 only on the first frame of a data message, and only with permessage-deflate).
    #[inline]
    pub fn check(&self, receiver: Role, deflate_negotiated: bool) -> Result<(), ProtocolError> {
        match (receiver, self.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        if self.rsv2 || self.rsv3 || (self.rsv1 && !deflate_negotiated) {
            return Err(ProtocolError::ReservedBits);
        }
        if self.rsv1 && (self.opcode == OpCode::Continuation || self.opcode.is_control()) {
            return Err(ProtocolError::Rsv1NotFirstDataFrame);
        }
        Ok(())
    }

    /// Total frame size: header plus payload.
    pub fn frame_len(&self) -> u64 {
        self.header_len as u64 + self.payload_len
    }

    /// Encode this header into `out`, returning the number of bytes written. `header_len` is ignored;
    /// the minimal length form is always used.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (self.fin as u8) << 7
            | (self.rsv1 as u8) << 6
            | (self.rsv2 as u8) << 5
            | (self.rsv3 as u8) << 4
            | self.opcode as u8;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = if self.payload_len < 126 {
            out[1] = mask_bit | self.payload_len as u8;
            2
        } else if self.payload_len <= u16::MAX as u64 {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
            4
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
            10
        };
        if let Some(key) = self.mask {
            out[n..n + 4].copy_from_slice(&key);
            n += 4;
        }
        n
    }
}

/// Append one complete frame to `out`; with `mask`, the appended payload is masked in place.
pub fn write_frame(
    out: &mut Vec<u8>,
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let header = FrameHeader {
        fin,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode,
        mask,
        payload_len: payload.len() as u64,
        header_len: 0,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    out.reserve(n + payload.len());
    out.extend_from_slice(&head[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_section_5_7_examples() {
        // A single-frame unmasked text message "Hello".
        let h = FrameHeader::parse(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f])
            .unwrap()
            .unwrap();
        assert!(h.fin);
        assert_eq!(
            (h.opcode, h.payload_len, h.header_len, h.mask),
            (OpCode::Text, 5, 2, None)
        );
        // A single-frame masked text message "Hello".
        let h = FrameHeader::parse(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f])
            .unwrap()
            .unwrap();
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.header_len, 6);
        // A fragmented unmasked text message: "Hel" then "lo".
        let h = FrameHeader::parse(&[0x01, 0x03]).unwrap().unwrap();
        assert!(!h.fin);
        let h = FrameHeader::parse(&[0x80, 0x02]).unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Continuation);
        // 256 bytes binary message in a single unmasked frame.
        let h = FrameHeader::parse(&[0x82, 0x7E, 0x01, 0x00])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, h.header_len), (256, 4));
        // 64KiB binary message in a single unmasked frame.
        let h = FrameHeader::parse(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, h.header_len), (65536, 10));
        // Unmasked ping with "Hello".
        let h = FrameHeader::parse(&[0x89, 0x05]).unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Ping);
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for n in 0..full.len() {
            assert_eq!(FrameHeader::parse(&full[..n]), Ok(None), "{n} bytes");
        }
        assert!(FrameHeader::parse(&full).unwrap().is_some());
    }

    #[test]
    fn length_encodings_must_be_minimal_and_63_bit() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7E, 0x00, 0x7D]),
            Err(ProtocolError::NonMinimalLength)
        );
        let mut long = [0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF];
        assert_eq!(
            FrameHeader::parse(&long),
            Err(ProtocolError::NonMinimalLength)
        );
        long[2] = 0x80;
        assert_eq!(FrameHeader::parse(&long), Err(ProtocolError::LengthTopBit));
    }

    #[test]
    fn reserved_opcodes_and_control_rules() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0]),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
        assert_eq!(
            FrameHeader::parse(&[0x89, 126, 0, 126]),
            Err(ProtocolError::ControlTooLong(126))
        );
        assert_eq!(
            FrameHeader::parse(&[0x09, 0]),
            Err(ProtocolError::ControlFragmented)
        );
    }

    #[test]
    fn role_and_rsv_checks() {
        let masked = FrameHeader::parse(&[0x81, 0x80, 1, 2, 3, 4])
            .unwrap()
            .unwrap();
        let unmasked = FrameHeader::parse(&[0x81, 0x00]).unwrap().unwrap();
        assert!(masked.check(Role::Server, false).is_ok());
        assert_eq!(
            unmasked.check(Role::Server, false),
            Err(ProtocolError::UnmaskedClientFrame)
        );
        assert_eq!(
            masked.check(Role::Client, false),
            Err(ProtocolError::MaskedServerFrame)
        );
        let rsv1 = FrameHeader::parse(&[0xC1, 0x00]).unwrap().unwrap();
        assert_eq!(
            rsv1.check(Role::Client, false),
            Err(ProtocolError::ReservedBits)
        );
        assert!(rsv1.check(Role::Client, true).is_ok());
        let rsv1_cont = FrameHeader::parse(&[0xC0, 0x00]).unwrap().unwrap();
        assert_eq!(
            rsv1_cont.check(Role::Client, true),
            Err(ProtocolError::Rsv1NotFirstDataFrame)
        );
        let rsv2 = FrameHeader::parse(&[0xA1, 0x00]).unwrap().unwrap();
        assert_eq!(
            rsv2.check(Role::Client, true),
            Err(ProtocolError::ReservedBits)
        );
    }

    #[test]
    fn encode_parse_round_trip() {
        for len in [0usize, 125, 126, 65535, 65536] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let payload = vec![0x5A; len];
                let mut out = Vec::new();
                write_frame(&mut out, true, false, OpCode::Binary, mask, &payload);
                let h = FrameHeader::parse(&out).unwrap().unwrap();
                assert_eq!(h.payload_len, len as u64);
                assert_eq!(h.frame_len(), out.len() as u64);
                let mut body = out[h.header_len..].to_vec();
                if let Some(key) = h.mask {
                    apply_mask(&mut body, key);
                }
                assert_eq!(body, payload);
            }
        }
    }
}
