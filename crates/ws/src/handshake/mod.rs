//! The opening handshake (RFC 6455 §4) and the HTTP CONNECT exchange that may precede it
//! (TS-0020 clause 6.6), both as byte-in, byte-out functions.
//!
//! A device listener sees either a `GET` upgrade or a `CONNECT`; [`parse_request`] reads either head
//! with `httparse` under [`HeadLimits`], then [`server::validate_upgrade`] or [`connect::parse_connect`]
//! interprets it. Every rejection becomes a complete HTTP response through [`error_response`].

pub mod client;
pub mod connect;
pub mod params;
pub mod server;
pub mod subprotocol;

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::error::HandshakeError;

/// RFC 6455 §1.3: the GUID appended to the key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Limits on a request or response head, checked before anything is allocated for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest head (request line + headers + blank line) in bytes. Default 8 KiB: a browser's upgrade
    /// with cookies fits; anything larger is 431.
    pub max_head_bytes: usize,
    /// Most header lines. Default 32.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 8 * 1024,
            max_headers: 32,
        }
    }
}

/// A parsed HTTP/1.x request head, borrowing from the input.
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<(&'a str, &'a [u8])>,
}

impl<'a> HttpRequest<'a> {
    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The single value of header `name` as text; `Ok(None)` when absent, an error when repeated or not
    /// visible ASCII.
    pub fn single_header(&self, name: &'static str) -> Result<Option<&'a str>, HandshakeError> {
        let mut values = self.header_values(name);
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(HandshakeError::InvalidHeader(name));
        }
        header_str(first, name).map(Some)
    }
}

/// A header value as trimmed text; only visible ASCII and spaces are allowed.
pub(crate) fn header_str<'a>(
    value: &'a [u8],
    name: &'static str,
) -> Result<&'a str, HandshakeError> {
    if !value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err(HandshakeError::InvalidHeader(name));
    }
    Ok(std::str::from_utf8(value).expect("ASCII").trim())
}

/// Parse a request head from the start of `buf`. `Ok(None)` until the blank line arrives; the
/// `usize` is the head's length (bytes after it belong to the next protocol).
pub fn parse_request(
    buf: &[u8],
    limits: HeadLimits,
) -> Result<Option<(HttpRequest<'_>, usize)>, HandshakeError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(buf) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::TooManyHeaders(limits.max_headers));
        }
        Err(e) => return Err(HandshakeError::Malformed(http_error_text(e))),
    };
    let len = match status {
        httparse::Status::Partial if buf.len() > limits.max_head_bytes => {
            return Err(HandshakeError::HeadTooLarge(limits.max_head_bytes));
        }
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) if len > limits.max_head_bytes => {
            return Err(HandshakeError::HeadTooLarge(limits.max_head_bytes));
        }
        httparse::Status::Complete(len) => len,
    };
    let parsed = HttpRequest {
        method: req.method.unwrap_or(""),
        target: req.path.unwrap_or(""),
        minor_version: req.version.unwrap_or(0),
        headers: req.headers.iter().map(|h| (h.name, h.value)).collect(),
    };
    Ok(Some((parsed, len)))
}

pub(crate) fn http_error_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2 item 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The reason phrase for the statuses this crate produces.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "Connection Established",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A complete HTTP error response with a short plain-text body, closing the connection.
pub fn http_error(status: u16, extra_headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason_phrase(status),
        body.len() + 1
    );
    for (name, value) in extra_headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.push('\n');
    out.into_bytes()
}

/// The response a server sends for a failed handshake: 426 carries `Sec-WebSocket-Version: 13`
/// (§4.4), 405 carries `Allow: GET`.
pub fn error_response(err: &HandshakeError) -> Vec<u8> {
    let status = err.status();
    let extra: &[(&str, &str)] = match status {
        426 => &[("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")],
        405 => &[("Allow", "GET")],
        _ => &[],
    };
    http_error(status, extra, &err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_section_1_3_accept_vector() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn head_limits_are_enforced_before_completion() {
        let limits = HeadLimits {
            max_head_bytes: 64,
            max_headers: 2,
        };
        let long = format!("GET / HTTP/1.1\r\nX-Pad: {}", "a".repeat(100));
        assert_eq!(
            parse_request(long.as_bytes(), limits).unwrap_err(),
            HandshakeError::HeadTooLarge(64)
        );
        let many = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(
            parse_request(many.as_bytes(), limits).unwrap_err(),
            HandshakeError::TooManyHeaders(2)
        );
        assert!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n", limits)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn error_responses_are_complete() {
        let resp = String::from_utf8(error_response(&HandshakeError::UnsupportedVersion)).unwrap();
        assert!(resp.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"));
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), len);
        assert!(body.contains("version 13"));
    }
}
