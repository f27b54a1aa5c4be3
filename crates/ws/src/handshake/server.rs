//! Server side of the opening handshake (RFC 6455 §4.2): validate a client's upgrade request, select
//! the subprotocol and extensions, and build the 101.

use base64::Engine as _;

use super::params::split_list;
use super::subprotocol::SubprotocolPolicy;
use super::{HttpRequest, header_str};
use crate::deflate::{DeflateConfig, DeflateParams, negotiate_server};
use crate::error::HandshakeError;

/// The parts of a valid upgrade request a server acts on.
#[derive(Debug, Clone)]
pub struct UpgradeRequest<'a> {
    /// The request-target (TS-0020 uses `/`, ACME accepts any path).
    pub target: &'a str,
    pub host: &'a str,
    pub key: &'a str,
    /// Every offered subprotocol, from all `Sec-WebSocket-Protocol` headers, in client order.
    pub protocols: Vec<&'a str>,
    /// Every `Sec-WebSocket-Extensions` header value, in order.
    pub extensions: Vec<&'a str>,
    /// The browser `Origin` header, if any.
    pub origin: Option<&'a str>,
    /// `X-M2M-Origin`: the AE-ID a oneM2M client declares for this connection (an ACME extension that
    /// TS-0020 work items adopted).
    pub m2m_origin: Option<&'a str>,
}

fn has_token(
    req: &HttpRequest<'_>,
    header: &'static str,
    token: &str,
) -> Result<bool, HandshakeError> {
    let mut present = false;
    for raw in req.header_values(header) {
        present = true;
        if split_list(header_str(raw, header)?).any(|t| t.eq_ignore_ascii_case(token)) {
            return Ok(true);
        }
    }
    if present {
        Ok(false)
    } else {
        Err(HandshakeError::MissingHeader(header))
    }
}

/// Validate an upgrade request per RFC 6455 §4.2.1.
pub fn validate_upgrade<'a>(req: &HttpRequest<'a>) -> Result<UpgradeRequest<'a>, HandshakeError> {
    if req.method != "GET" {
        return Err(HandshakeError::Method(req.method.to_string()));
    }
    if req.minor_version < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    let host = req
        .single_header("Host")?
        .ok_or(HandshakeError::MissingHeader("Host"))?;
    if host.is_empty() {
        return Err(HandshakeError::InvalidHeader("Host"));
    }
    if !has_token(req, "Upgrade", "websocket")? {
        return Err(HandshakeError::InvalidHeader("Upgrade"));
    }
    if !has_token(req, "Connection", "upgrade")? {
        return Err(HandshakeError::InvalidHeader("Connection"));
    }
    match req.single_header("Sec-WebSocket-Version")? {
        None => return Err(HandshakeError::MissingHeader("Sec-WebSocket-Version")),
        Some("13") => {}
        Some(_) => return Err(HandshakeError::UnsupportedVersion),
    }
    let key = req
        .single_header("Sec-WebSocket-Key")?
        .ok_or(HandshakeError::MissingHeader("Sec-WebSocket-Key"))?;
    // §4.2.1 item 5: base64 of exactly 16 bytes (24 characters with padding).
    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
    if !matches!(decoded, Ok(ref bytes) if bytes.len() == 16) {
        return Err(HandshakeError::InvalidHeader("Sec-WebSocket-Key"));
    }
    let mut protocols = Vec::new();
    for raw in req.header_values("Sec-WebSocket-Protocol") {
        protocols.extend(split_list(header_str(raw, "Sec-WebSocket-Protocol")?));
    }
    let extensions = req
        .header_values("Sec-WebSocket-Extensions")
        .map(|raw| header_str(raw, "Sec-WebSocket-Extensions"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(UpgradeRequest {
        target: req.target,
        host,
        key,
        protocols,
        extensions,
        origin: req.single_header("Origin")?,
        m2m_origin: req.single_header("X-M2M-Origin")?,
    })
}

/// What the server agreed to for one connection.
#[derive(Debug, Clone)]
pub struct Negotiated<C> {
    /// The offer the policy chose, in the client's spelling.
    pub protocol: String,
    pub choice: C,
    pub deflate: Option<DeflateParams>,
    /// The complete 101 response to send.
    pub response: Vec<u8>,
}

/// Choose the subprotocol with `policy` (rejecting the handshake when none fits, as TS-0020 requires a
/// subprotocol) and, with `deflate` set, negotiate permessage-deflate; build the 101.
pub fn negotiate<P: SubprotocolPolicy>(
    req: &UpgradeRequest<'_>,
    policy: &P,
    deflate: Option<&DeflateConfig>,
) -> Result<Negotiated<P::Choice>, HandshakeError> {
    let (index, choice) = policy
        .select(&req.protocols)
        .ok_or_else(|| HandshakeError::NoSubprotocol(policy.supported()))?;
    let protocol = req.protocols[index].to_string();
    let agreed = deflate.and_then(|cfg| negotiate_server(&req.extensions, cfg));
    let response = accept_response(
        req.key,
        Some(&protocol),
        agreed.as_ref().map(|(_, h)| h.as_str()),
    );
    Ok(Negotiated {
        protocol,
        choice,
        deflate: agreed.map(|(p, _)| p),
        response,
    })
}

/// The 101 response (§4.2.2 item 5).
pub fn accept_response(key: &str, protocol: Option<&str>, extensions: Option<&str>) -> Vec<u8> {
    let mut out = String::with_capacity(160);
    out.push_str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.push_str(&super::accept_key(key));
    out.push_str("\r\n");
    if let Some(p) = protocol {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(p);
        out.push_str("\r\n");
    }
    if let Some(e) = extensions {
        out.push_str("Sec-WebSocket-Extensions: ");
        out.push_str(e);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::subprotocol::{OneM2mPolicy, Serialization};
    use crate::handshake::{HeadLimits, parse_request};

    const GOOD: &str = "GET / HTTP/1.1\r\nHost: mncse1234.net:9000\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, oneM2M.R2.0.cbor\r\nSec-WebSocket-Protocol: oneM2M.json\r\nX-M2M-Origin: Cmeter01\r\n\r\n";

    fn validate(raw: &str) -> Result<UpgradeRequest<'_>, HandshakeError> {
        let (req, len) = parse_request(raw.as_bytes(), HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(len, raw.len());
        validate_upgrade(&req)
    }

    #[test]
    fn accepts_a_valid_request_and_collects_offers_in_order() {
        let req = validate(GOOD).unwrap();
        assert_eq!(req.protocols, ["chat", "oneM2M.R2.0.cbor", "oneM2M.json"]);
        assert_eq!(req.m2m_origin, Some("Cmeter01"));
        let n = negotiate(&req, &OneM2mPolicy::default(), None).unwrap();
        assert_eq!(n.protocol, "oneM2M.R2.0.cbor");
        assert_eq!(n.choice.serialization, Serialization::Cbor);
        let text = String::from_utf8(n.response).unwrap();
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: oneM2M.R2.0.cbor\r\n"));
    }

    #[test]
    fn every_section_4_2_1_requirement() {
        let cases: &[(&str, &str, u16)] = &[
            ("GET / HTTP/1.1", "POST / HTTP/1.1", 405),
            ("GET / HTTP/1.1", "GET / HTTP/1.0", 505),
            ("Host: mncse1234.net:9000\r\n", "", 400),
            ("Upgrade: websocket", "Upgrade: h2c", 400),
            ("Upgrade: websocket\r\n", "", 400),
            ("keep-alive, Upgrade", "keep-alive", 400),
            ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 426),
            ("Sec-WebSocket-Version: 13\r\n", "", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "not base64!!", 400),
        ];
        for (from, to, status) in cases {
            let raw = GOOD.replacen(from, to, 1);
            let err = validate(&raw).unwrap_err();
            assert_eq!(err.status(), *status, "{from} -> {to}: {err}");
        }
        // Case-insensitive header names and tokens.
        let loud = GOOD
            .replace("Upgrade: websocket", "UPGRADE: WebSocket")
            .replace("Upgrade\r\n", "UPGRADE\r\n");
        assert!(validate(&loud).is_ok());
    }

    #[test]
    fn no_acceptable_subprotocol_lists_what_is_supported() {
        let raw = GOOD
            .replace("chat, oneM2M.R2.0.cbor", "mqtt")
            .replace("oneM2M.json", "wamp");
        let req = validate(&raw).unwrap();
        let err = negotiate(&req, &OneM2mPolicy::default(), None).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("oneM2M.json"));
    }

    #[test]
    fn deflate_is_negotiated_only_when_enabled() {
        let raw = GOOD.replace(
            "X-M2M-Origin",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nX-M2M-Origin",
        );
        let req = validate(&raw).unwrap();
        let off = negotiate(&req, &OneM2mPolicy::default(), None).unwrap();
        assert!(off.deflate.is_none());
        let on = negotiate(
            &req,
            &OneM2mPolicy::default(),
            Some(&DeflateConfig::default()),
        )
        .unwrap();
        assert!(on.deflate.is_some());
        assert!(
            String::from_utf8(on.response)
                .unwrap()
                .contains("Sec-WebSocket-Extensions: permessage-deflate\r\n")
        );
    }
}
