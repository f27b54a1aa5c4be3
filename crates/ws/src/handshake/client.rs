//! Client side of the opening handshake (RFC 6455 §4.1): build the upgrade request and check the
//! server's answer: status 101, `Upgrade`/`Connection`, the accept key, a subprotocol that was offered,
//! and extension parameters within what was offered.

use base64::Engine as _;

use super::params::split_list;
use super::{HeadLimits, header_str, http_error_text};
use crate::deflate::{DeflateConfig, DeflateParams, accept_client, client_offer};
use crate::error::HandshakeError;

/// What the client offers.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// `host[:port]` for the Host header.
    pub host: String,
    /// Request target, e.g. `/`.
    pub path: String,
    /// Subprotocols in order of preference.
    pub protocols: Vec<String>,
    /// Offer permessage-deflate with these preferences.
    pub deflate: Option<DeflateConfig>,
    /// Extra headers, e.g. `X-M2M-Origin`.
    pub extra_headers: Vec<(String, String)>,
}

/// The handshake in progress: remembers the key and the offers to check the answer.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    expected_accept: String,
    options: ClientOptions,
}

/// What the server agreed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAccepted {
    pub protocol: Option<String>,
    pub deflate: Option<DeflateParams>,
}

impl ClientHandshake {
    /// Start a handshake with a fresh random key; returns the state and the request bytes.
    pub fn new(options: ClientOptions) -> (Self, Vec<u8>) {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("OS random source");
        Self::with_key(
            options,
            &base64::engine::general_purpose::STANDARD.encode(nonce),
        )
    }

    /// Start a handshake with a given key (tests and reproducible traces).
    pub fn with_key(options: ClientOptions, key: &str) -> (Self, Vec<u8>) {
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            if options.path.is_empty() {
                "/"
            } else {
                &options.path
            },
            options.host
        );
        if !options.protocols.is_empty() {
            req.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                options.protocols.join(", ")
            ));
        }
        if let Some(cfg) = &options.deflate {
            req.push_str(&format!(
                "Sec-WebSocket-Extensions: {}\r\n",
                client_offer(cfg)
            ));
        }
        for (name, value) in &options.extra_headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        (
            Self {
                expected_accept: super::accept_key(key),
                options,
            },
            req.into_bytes(),
        )
    }

    /// Read the server's answer. `Ok(None)` until the head is complete; the `usize` is the head length
    /// (bytes after it are already WebSocket frames).
    pub fn read_response(
        &self,
        buf: &[u8],
        limits: HeadLimits,
    ) -> Result<Option<(ClientAccepted, usize)>, HandshakeError> {
        let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) if len <= limits.max_head_bytes => len,
            Ok(httparse::Status::Partial) if buf.len() <= limits.max_head_bytes => return Ok(None),
            Ok(_) => return Err(HandshakeError::HeadTooLarge(limits.max_head_bytes)),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HandshakeError::TooManyHeaders(limits.max_headers));
            }
            Err(e) => return Err(HandshakeError::Malformed(http_error_text(e))),
        };
        let status = resp.code.unwrap_or(0);
        if status != 101 {
            return Err(HandshakeError::Status(status));
        }
        let mut upgrade = false;
        let mut connection = false;
        let mut accept = None;
        let mut protocol = None;
        let mut extensions = Vec::new();
        for h in resp.headers.iter() {
            let name = h.name;
            let value = header_str(h.value, "response header")?;
            if name.eq_ignore_ascii_case("Upgrade") {
                upgrade |= split_list(value).any(|t| t.eq_ignore_ascii_case("websocket"));
            } else if name.eq_ignore_ascii_case("Connection") {
                connection |= split_list(value).any(|t| t.eq_ignore_ascii_case("upgrade"));
            } else if name.eq_ignore_ascii_case("Sec-WebSocket-Accept") {
                accept = Some(value);
            } else if name.eq_ignore_ascii_case("Sec-WebSocket-Protocol") {
                if protocol.is_some() {
                    return Err(HandshakeError::InvalidHeader("Sec-WebSocket-Protocol"));
                }
                protocol = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("Sec-WebSocket-Extensions") {
                extensions.push(value);
            }
        }
        if !upgrade {
            return Err(HandshakeError::InvalidHeader("Upgrade"));
        }
        if !connection {
            return Err(HandshakeError::InvalidHeader("Connection"));
        }
        if accept != Some(self.expected_accept.as_str()) {
            return Err(HandshakeError::AcceptMismatch);
        }
        if let Some(p) = &protocol {
            // §4.1: the server must choose one of the offered values, exactly as offered.
            if !self.options.protocols.iter().any(|o| o == p) {
                return Err(HandshakeError::SubprotocolNotOffered(Some(p.clone())));
            }
        }
        let deflate = match (extensions.as_slice(), &self.options.deflate) {
            ([], _) => None,
            ([one], Some(cfg)) => {
                Some(accept_client(one, cfg).map_err(HandshakeError::ExtensionNotOffered)?)
            }
            (many, _) => return Err(HandshakeError::ExtensionNotOffered(many.join(", "))),
        };
        Ok(Some((ClientAccepted { protocol, deflate }, len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::parse_request;
    use crate::handshake::server::{accept_response, negotiate, validate_upgrade};
    use crate::handshake::subprotocol::OneM2mPolicy;

    fn options() -> ClientOptions {
        ClientOptions {
            host: "127.0.0.1:9000".into(),
            path: "/".into(),
            protocols: vec!["oneM2M.json".into(), "oneM2M.R2.0.json".into()],
            deflate: Some(DeflateConfig::default()),
            extra_headers: vec![("X-M2M-Origin".into(), "Cmeter01".into())],
        }
    }

    #[test]
    fn client_and_server_agree() {
        let (client, request) = ClientHandshake::new(options());
        let (req, _) = parse_request(&request, HeadLimits::default())
            .unwrap()
            .unwrap();
        let up = validate_upgrade(&req).unwrap();
        assert_eq!(up.m2m_origin, Some("Cmeter01"));
        let n = negotiate(
            &up,
            &OneM2mPolicy::default(),
            Some(&DeflateConfig::default()),
        )
        .unwrap();
        let mut wire = n.response.clone();
        wire.extend_from_slice(&[0x81, 0x00]);
        for cut in 0..n.response.len() {
            assert!(
                client
                    .read_response(&wire[..cut], HeadLimits::default())
                    .unwrap()
                    .is_none()
            );
        }
        let (accepted, len) = client
            .read_response(&wire, HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(len, n.response.len());
        assert_eq!(accepted.protocol.as_deref(), Some("oneM2M.json"));
        assert_eq!(accepted.deflate, n.deflate);
    }

    #[test]
    fn rejects_bad_answers() {
        let (client, _) = ClientHandshake::with_key(options(), "dGhlIHNhbXBsZSBub25jZQ==");
        let ok = accept_response("dGhlIHNhbXBsZSBub25jZQ==", Some("oneM2M.json"), None);
        assert!(
            client
                .read_response(&ok, HeadLimits::default())
                .unwrap()
                .is_some()
        );
        let wrong_key = accept_response("AAAAAAAAAAAAAAAAAAAAAA==", Some("oneM2M.json"), None);
        assert_eq!(
            client
                .read_response(&wrong_key, HeadLimits::default())
                .unwrap_err(),
            HandshakeError::AcceptMismatch
        );
        let not_offered = accept_response("dGhlIHNhbXBsZSBub25jZQ==", Some("oneM2M.cbor"), None);
        assert!(matches!(
            client.read_response(&not_offered, HeadLimits::default()),
            Err(HandshakeError::SubprotocolNotOffered(_))
        ));
        let bad_ext = accept_response(
            "dGhlIHNhbXBsZSBub25jZQ==",
            None,
            Some("permessage-deflate; x=1"),
        );
        assert!(matches!(
            client.read_response(&bad_ext, HeadLimits::default()),
            Err(HandshakeError::ExtensionNotOffered(_))
        ));
        let refused = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            client
                .read_response(refused, HeadLimits::default())
                .unwrap_err(),
            HandshakeError::Status(400)
        );
    }
}
