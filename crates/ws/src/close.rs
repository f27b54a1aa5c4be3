//! Close codes (RFC 6455 §7.4) and validation of received close frames (§5.5.1).
//!
//! The receiver must fail the connection with 1002 when a close payload is one byte long or carries a
//! code that may not appear on the wire, and with 1007 when the reason is not UTF-8.

use crate::error::ProtocolError;

/// A WebSocket close status code (RFC 6455 §7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: an endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept (e.g. binary on a text-only endpoint).
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present; never sent on the wire.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: abnormal closure without a close frame; never sent on the wire.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: payload data inconsistent with the message type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: policy violation.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: an unexpected condition prevented the server from fulfilling the request.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response (IANA registry).
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: TLS handshake failure; never sent on the wire.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Whether this code may appear in a close frame on the wire (§7.4.1, §7.4.2 and the IANA registry):
    /// 1000–1003, 1007–1014 and the application range 3000–4999. 1004–1006, 1015 and everything
    /// below 1000 or in 1016–2999 are reserved or forbidden.
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

/// A received close frame: the optional code and the UTF-8 reason, borrowed from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// `None` when the payload was empty (the peer sent no code: report 1005 upward).
    pub code: Option<CloseCode>,
    /// The reason text; empty when absent.
    pub reason: &'a str,
}

/// Validate a close payload per §5.5.1: empty, or a 2-byte sendable code followed by UTF-8.
pub fn parse_close_payload(payload: &[u8]) -> Result<CloseFrame<'_>, ProtocolError> {
    match payload.len() {
        0 => Ok(CloseFrame {
            code: None,
            reason: "",
        }),
        1 => Err(ProtocolError::CloseOneByte),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_sendable() {
                return Err(ProtocolError::CloseCodeInvalid(code.0));
            }
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|_| ProtocolError::CloseReasonNotUtf8)?;
            Ok(CloseFrame {
                code: Some(code),
                reason,
            })
        }
    }
}

/// Build a close payload: 2-byte code plus the reason, cut at a char boundary so that the control
/// frame stays within 125 bytes (§5.5).
pub fn close_payload(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.0.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ProtocolError;

    #[test]
    fn sendable_ranges_follow_section_7_4() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            assert!(CloseCode(ok).is_sendable(), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(bad).is_sendable(), "{bad}");
        }
    }

    #[test]
    fn one_byte_payload_is_a_protocol_error() {
        // §5.5.1: if there is a body, the first two bytes MUST be the status code.
        assert_eq!(
            parse_close_payload(&[0x03]),
            Err(ProtocolError::CloseOneByte)
        );
        assert_eq!(
            ProtocolError::CloseOneByte.close_code(),
            CloseCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn reason_must_be_utf8() {
        let err = parse_close_payload(&[0x03, 0xe8, 0xff]).unwrap_err();
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn reserved_codes_are_rejected() {
        let err = parse_close_payload(&1005u16.to_be_bytes()).unwrap_err();
        assert_eq!(err, ProtocolError::CloseCodeInvalid(1005));
    }

    #[test]
    fn close_payload_truncates_at_char_boundary() {
        let reason = "é".repeat(100);
        let payload = close_payload(CloseCode::NORMAL, &reason);
        assert!(payload.len() <= 125);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        let parsed = parse_close_payload(&payload).unwrap();
        assert_eq!(parsed.code, Some(CloseCode::NORMAL));
    }
}
