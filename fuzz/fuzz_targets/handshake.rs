//! Any bytes as a request head: parse, validate as upgrade or CONNECT, negotiate, and as a client
//! reading a server's answer. Nothing may panic; every rejection must render as a complete response.
#![no_main]
use libfuzzer_sys::fuzz_target;
use m2m_ws::handshake::client::{ClientHandshake, ClientOptions};
use m2m_ws::handshake::subprotocol::OneM2mPolicy;
use m2m_ws::handshake::{HeadLimits, connect, error_response, parse_request, server};
use m2m_ws::DeflateConfig;

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits { max_head_bytes: 4096, max_headers: 16 };
    match parse_request(data, limits) {
        Ok(Some((req, len))) => {
            assert!(len <= data.len() && len <= 4096);
            match server::validate_upgrade(&req) {
                Ok(up) => match server::negotiate(&up, &OneM2mPolicy::default(), Some(&DeflateConfig::default())) {
                    Ok(n) => assert!(n.response.starts_with(b"HTTP/1.1 101 ")),
                    Err(e) => assert!(error_response(&e).starts_with(b"HTTP/1.1 4")),
                },
                Err(e) => {
                    let resp = error_response(&e);
                    assert!(resp.ends_with(b"\n"));
                }
            }
            let _ = connect::parse_connect(&req);
        }
        Ok(None) => {}
        Err(e) => {
            let _ = error_response(&e);
        }
    }
    let options = ClientOptions {
        host: "h".into(),
        path: "/".into(),
        protocols: vec!["oneM2M.json".into()],
        deflate: Some(DeflateConfig::default()),
        extra_headers: vec![],
    };
    let (client, _) = ClientHandshake::with_key(options, "dGhlIHNhbXBsZSBub25jZQ==");
    let _ = client.read_response(data, limits);
    let _ = connect::parse_connect_response(data, limits);
});
