//! Errors of the frame and message layers, each mapped to the close code the endpoint must send
//! (RFC 6455 §7.4.1), and handshake errors mapped to the HTTP status to answer with.

use crate::close::CloseCode;

/// A violation found while reading frames or messages. [`ProtocolError::close_code`] says which close
/// code to send before closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// An opcode reserved for future use (0x3–0x7, 0xB–0xF), §5.2.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// RSV1 set without a negotiated extension, or RSV2/RSV3 set at all, §5.2.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// RSV1 on a control or continuation frame, RFC 7692 §6.
    #[error("RSV1 on a control or continuation frame")]
    Rsv1NotFirstDataFrame,
    /// A client-to-server frame without a mask, §5.1.
    #[error("client frame is not masked")]
    UnmaskedClientFrame,
    /// A server-to-client frame with a mask, §5.1.
    #[error("server frame is masked")]
    MaskedServerFrame,
    /// A 16- or 64-bit length that could have been encoded shorter, §5.2 ("the minimal number of bytes").
    #[error("non-minimal payload length encoding")]
    NonMinimalLength,
    /// The most significant bit of a 64-bit length set, §5.2.
    #[error("64-bit payload length with the most significant bit set")]
    LengthTopBit,
    /// A control frame longer than 125 bytes, §5.5.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(u64),
    /// A control frame with FIN clear, §5.5.
    #[error("fragmented control frame")]
    ControlFragmented,
    /// A continuation frame with no message in progress, §5.4.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new data frame while a fragmented message is in progress, §5.4.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A frame larger than the configured maximum.
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    FrameTooBig { len: u64, limit: usize },
    /// A message larger than the configured maximum (before or after inflation).
    #[error("message of at least {len} bytes exceeds the limit of {limit}")]
    MessageTooBig { len: u64, limit: usize },
    /// Text that is not UTF-8, §8.1.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame with a one-byte payload, §5.5.1.
    #[error("close frame with a one-byte payload")]
    CloseOneByte,
    /// A close frame with a code not allowed on the wire, §7.4.
    #[error("close frame with invalid code {0}")]
    CloseCodeInvalid(u16),
    /// A close reason that is not UTF-8, §5.5.1.
    #[error("close reason is not valid UTF-8")]
    CloseReasonNotUtf8,
    /// A compressed payload that does not inflate, RFC 7692 §7.2.2.
    #[error("permessage-deflate payload does not inflate: {0}")]
    Inflate(String),
    /// A frame received after the peer's close frame, §5.5.1.
    #[error("frame after close")]
    FrameAfterClose,
}

impl ProtocolError {
    /// The close code to send for this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::CloseReasonNotUtf8 => CloseCode::INVALID_PAYLOAD,
            Self::FrameTooBig { .. } | Self::MessageTooBig { .. } => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// A handshake that cannot go on. [`HandshakeError::status`] is the HTTP status a server answers
/// with; [`crate::handshake::error_response`] turns it into a complete response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The request head is larger than the configured limit.
    #[error("request head exceeds {0} bytes")]
    HeadTooLarge(usize),
    /// More header lines than the configured limit.
    #[error("more than {0} header lines")]
    TooManyHeaders(usize),
    /// The bytes are not an HTTP/1.x message.
    #[error("malformed HTTP: {0}")]
    Malformed(&'static str),
    /// Method other than GET (or CONNECT where that is handled).
    #[error("method {0} not allowed; use GET")]
    Method(String),
    /// HTTP version other than 1.1.
    #[error("HTTP/1.1 is required")]
    HttpVersion,
    /// A required header is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header has a value the RFC does not allow.
    #[error("invalid {0} header")]
    InvalidHeader(&'static str),
    /// `Sec-WebSocket-Version` other than 13 (answer 426 with `Sec-WebSocket-Version: 13`).
    #[error("unsupported WebSocket version; this server speaks version 13")]
    UnsupportedVersion,
    /// No offered subprotocol is acceptable; the text lists what is supported.
    #[error("no acceptable subprotocol; supported: {0}")]
    NoSubprotocol(String),
    /// Client side: the server answered with a status other than 101.
    #[error("server answered HTTP {0} instead of 101")]
    Status(u16),
    /// Client side: `Sec-WebSocket-Accept` does not match the key.
    #[error("Sec-WebSocket-Accept does not match the key sent")]
    AcceptMismatch,
    /// Client side: the server chose a subprotocol that was not offered, or none when one was required.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    SubprotocolNotOffered(Option<String>),
    /// Client side: the server answered with an extension or parameter that was not offered.
    #[error("server answered with an extension that was not offered: {0}")]
    ExtensionNotOffered(String),
    /// A CONNECT target that is not `host:port`.
    #[error("CONNECT target must be host:port")]
    ConnectTarget,
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge(_) => 431,
            Self::TooManyHeaders(_) => 431,
            Self::Method(_) => 405,
            Self::HttpVersion => 505,
            Self::UnsupportedVersion => 426,
            _ => 400,
        }
    }
}
