//! rustls driven on the runtime's own buffers. rustls is sans-IO: ciphertext goes in with
//! `read_tls` from the bytes the driver received, plaintext comes out of `reader()` into the
//! connection's input buffer, and everything rustls wants to send is written with `write_tls` into
//! the connection's output buffer, which the driver sends like any other bytes. Handshake and data
//! therefore share the connection's limits and timers.

use std::io::{self, Read, Write};

/// Outcome of feeding received ciphertext.
#[derive(Debug, PartialEq, Eq)]
pub enum TlsInput {
    /// Keep going; any plaintext was appended.
    Open,
    /// The peer sent close_notify.
    PeerClosed,
}

/// Feed ciphertext `data`; append plaintext to `plain` and anything to send (handshake messages,
/// alerts) to `cipher_out`. An error means the connection must be closed after `cipher_out` is sent.
pub fn receive(
    tls: &mut rustls::Connection,
    mut data: &[u8],
    plain: &mut Vec<u8>,
    cipher_out: &mut Vec<u8>,
) -> Result<TlsInput, String> {
    let mut closed = false;
    loop {
        if !data.is_empty() {
            match tls.read_tls(&mut data) {
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        // rustls decrypts only while its received-plaintext buffer has room (16 KiB by default), so
        // read plaintext and process again until nothing more comes out.
        loop {
            let state = match tls.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    let _ = flush(tls, cipher_out);
                    return Err(e.to_string());
                }
            };
            if state.peer_has_closed() {
                closed = true;
            }
            let want = state.plaintext_bytes_to_read();
            if want == 0 {
                break;
            }
            let start = plain.len();
            plain.resize(start + want, 0);
            match tls.reader().read(&mut plain[start..]) {
                Ok(n) => plain.truncate(start + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    plain.truncate(start);
                    break;
                }
                Err(e) => {
                    plain.truncate(start);
                    return Err(e.to_string());
                }
            }
        }
        if data.is_empty() {
            break;
        }
    }
    flush(tls, cipher_out).map_err(|e| e.to_string())?;
    Ok(if closed {
        TlsInput::PeerClosed
    } else {
        TlsInput::Open
    })
}

/// Encrypt `plain` (buffered by rustls until the handshake completes) and append the records to
/// `cipher_out`.
pub fn send(
    tls: &mut rustls::Connection,
    mut plain: &[u8],
    cipher_out: &mut Vec<u8>,
) -> io::Result<()> {
    // rustls may accept only part of the plaintext at a time; move its records out as we go.
    while !plain.is_empty() {
        let n = tls.writer().write(plain)?;
        flush(tls, cipher_out)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        plain = &plain[n..];
    }
    flush(tls, cipher_out)
}

/// Append everything rustls wants to send.
pub fn flush(tls: &mut rustls::Connection, cipher_out: &mut Vec<u8>) -> io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(cipher_out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

    use super::*;

    fn pair() -> (rustls::Connection, rustls::Connection) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(cert.der().to_vec()))
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        s.set_buffer_limit(None);
        let c = rustls::ClientConnection::new(
            Arc::new(client),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        (rustls::Connection::Client(c), rustls::Connection::Server(s))
    }

    /// Move ciphertext both ways until neither side has anything to say, feeding in `chunk`-sized
    /// pieces; returns the plaintext each side received.
    fn pump(
        c: &mut rustls::Connection,
        s: &mut rustls::Connection,
        chunk: usize,
    ) -> (Vec<u8>, Vec<u8>) {
        let (mut c_plain, mut s_plain) = (Vec::new(), Vec::new());
        let (mut to_s, mut to_c) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            flush(c, &mut to_s).unwrap();
            if to_s.is_empty() && to_c.is_empty() {
                break;
            }
            for piece in to_s.chunks(chunk) {
                receive(s, piece, &mut s_plain, &mut to_c).unwrap();
            }
            to_s.clear();
            flush(s, &mut to_c).unwrap();
            for piece in to_c.chunks(chunk) {
                receive(c, piece, &mut c_plain, &mut to_s).unwrap();
            }
            to_c.clear();
        }
        (c_plain, s_plain)
    }

    #[test]
    fn large_messages_cross_in_any_chunking() {
        for chunk in [1 << 20, 65536, 1000, 7] {
            let (mut c, mut s) = pair();
            pump(&mut c, &mut s, chunk);
            assert!(!c.is_handshaking() && !s.is_handshaking());
            let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
            let mut wire = Vec::new();
            send(&mut c, &big, &mut wire).unwrap();
            let (mut got, mut out) = (Vec::new(), Vec::new());
            for piece in wire.chunks(chunk) {
                receive(&mut s, piece, &mut got, &mut out).unwrap();
            }
            assert!(
                got == big,
                "chunk {chunk}: client to server ({} bytes)",
                got.len()
            );
            // Whatever the server said meanwhile (session tickets) reaches the client first.
            let (mut ignored, mut back) = (Vec::new(), Vec::new());
            receive(&mut c, &out, &mut ignored, &mut back).unwrap();
            let mut wire = Vec::new();
            send(&mut s, &big, &mut wire).unwrap();
            let mut plain = Vec::new();
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                receive(&mut c, piece, &mut plain, &mut out).unwrap();
            }
            assert!(plain == big, "chunk {chunk}: server to client");
        }
    }
}
