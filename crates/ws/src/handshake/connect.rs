//! HTTP CONNECT (RFC 9110 §9.3.6), the proxy step TS-0020 clause 6.6 puts before the WebSocket
//! handshake: parse a `CONNECT host:port HTTP/1.1` request and build the proxy's answer, or build a
//! client's request and read the proxy's answer.
//!
//! Deciding which targets are allowed is the caller's job (the edge allow-lists; it is never an open
//! proxy); this module only speaks the protocol.

use super::{HeadLimits, HttpRequest, http_error, http_error_text, reason_phrase};
use crate::error::HandshakeError;

/// A CONNECT request's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTarget<'a> {
    /// Host name or IP literal, without IPv6 brackets.
    pub host: &'a str,
    pub port: u16,
    /// The target exactly as sent (`host:port`).
    pub authority: &'a str,
}

/// Interpret a parsed request as CONNECT.
pub fn parse_connect<'a>(req: &HttpRequest<'a>) -> Result<ConnectTarget<'a>, HandshakeError> {
    if req.method != "CONNECT" {
        return Err(HandshakeError::Method(req.method.to_string()));
    }
    if req.minor_version < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    parse_authority(req.target)
}

/// Split `host:port` or `[v6]:port`; the port is mandatory for CONNECT.
pub fn parse_authority(authority: &str) -> Result<ConnectTarget<'_>, HandshakeError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or(HandshakeError::ConnectTarget)?;
        (host, port)
    } else {
        authority
            .rsplit_once(':')
            .ok_or(HandshakeError::ConnectTarget)?
    };
    if host.is_empty()
        || host.contains(['/', '@', ' '])
        || (host.contains(':') && !authority.starts_with('['))
    {
        return Err(HandshakeError::ConnectTarget);
    }
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HandshakeError::ConnectTarget);
    }
    let port: u16 = port.parse().map_err(|_| HandshakeError::ConnectTarget)?;
    if port == 0 {
        return Err(HandshakeError::ConnectTarget);
    }
    Ok(ConnectTarget {
        host,
        port,
        authority,
    })
}

/// The proxy's answers to a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectReply {
    /// 200: the tunnel is open; the bytes that follow belong to the tunnel.
    Established,
    /// 403: the target is not allowed.
    Forbidden,
    /// 502: the target refused or reset the connection.
    BadGateway,
    /// 504: the target did not answer in time.
    GatewayTimeout,
}

impl ConnectReply {
    pub fn status(self) -> u16 {
        match self {
            Self::Established => 200,
            Self::Forbidden => 403,
            Self::BadGateway => 502,
            Self::GatewayTimeout => 504,
        }
    }
}

/// A complete response. The 200 has no body and no Content-Length (RFC 9110 §9.3.6); the errors have a
/// short body saying why and close the connection.
pub fn connect_response(reply: ConnectReply, detail: &str) -> Vec<u8> {
    match reply {
        ConnectReply::Established => {
            format!("HTTP/1.1 200 {}\r\n\r\n", reason_phrase(200)).into_bytes()
        }
        other => http_error(other.status(), &[], detail),
    }
}

/// A client's CONNECT request for `host:port`, with optional extra headers such as
/// `Proxy-Authorization`.
pub fn connect_request(host: &str, port: u16, extra_headers: &[(&str, &str)]) -> Vec<u8> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut out = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in extra_headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Read a proxy's answer to CONNECT. `Ok(None)` until the head is complete; returns the status and
/// the head length. With a 2xx the bytes after the head are the tunnel's; other statuses are the
/// caller's to report (their body, if any, is not consumed).
pub fn parse_connect_response(
    buf: &[u8],
    limits: HeadLimits,
) -> Result<Option<(u16, usize)>, HandshakeError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= limits.max_head_bytes => {
            Ok(Some((resp.code.unwrap_or(0), len)))
        }
        Ok(httparse::Status::Partial) if buf.len() <= limits.max_head_bytes => Ok(None),
        Ok(_) => Err(HandshakeError::HeadTooLarge(limits.max_head_bytes)),
        Err(httparse::Error::TooManyHeaders) => {
            Err(HandshakeError::TooManyHeaders(limits.max_headers))
        }
        Err(e) => Err(HandshakeError::Malformed(http_error_text(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::parse_request;

    #[test]
    fn parses_targets() {
        let req = connect_request("127.0.0.1", 8180, &[("Proxy-Authorization", "Basic eDp5")]);
        let (head, len) = parse_request(&req, HeadLimits::default()).unwrap().unwrap();
        assert_eq!(len, req.len());
        let t = parse_connect(&head).unwrap();
        assert_eq!(
            (t.host, t.port, t.authority),
            ("127.0.0.1", 8180, "127.0.0.1:8180")
        );
        let v6 = parse_authority("[::1]:443").unwrap();
        assert_eq!((v6.host, v6.port), ("::1", 443));
        for bad in [
            "example.net",
            "example.net:",
            "example.net:99999",
            "::1:80",
            "a/b:80",
            ":80",
            "h:0",
            "h:8x",
        ] {
            assert_eq!(
                parse_authority(bad),
                Err(HandshakeError::ConnectTarget),
                "{bad}"
            );
        }
        let (get, _) = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", HeadLimits::default())
            .unwrap()
            .unwrap();
        assert!(matches!(
            parse_connect(&get),
            Err(HandshakeError::Method(_))
        ));
    }

    #[test]
    fn replies_and_client_reading() {
        let ok = connect_response(ConnectReply::Established, "");
        assert_eq!(ok, b"HTTP/1.1 200 Connection Established\r\n\r\n");
        let mut wire = ok.clone();
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse_connect_response(&wire, HeadLimits::default()).unwrap(),
            Some((200, ok.len()))
        );
        assert_eq!(
            parse_connect_response(&ok[..10], HeadLimits::default()).unwrap(),
            None
        );
        for (reply, status) in [
            (ConnectReply::Forbidden, 403),
            (ConnectReply::BadGateway, 502),
            (ConnectReply::GatewayTimeout, 504),
        ] {
            let resp = connect_response(reply, "target not allowed");
            let text = String::from_utf8(resp.clone()).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {status} ")));
            assert!(text.ends_with("target not allowed\n"));
            assert_eq!(
                parse_connect_response(&resp, HeadLimits::default())
                    .unwrap()
                    .unwrap()
                    .0,
                status
            );
        }
    }
}
