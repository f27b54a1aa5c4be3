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
    while !data.is_empty() {
        match tls.read_tls(&mut data) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        let state = match tls.process_new_packets() {
            Ok(state) => state,
            Err(e) => {
                let _ = flush(tls, cipher_out);
                return Err(e.to_string());
            }
        };
        let mut want = state.plaintext_bytes_to_read();
        while want > 0 {
            let start = plain.len();
            plain.resize(start + want, 0);
            match tls.reader().read(&mut plain[start..]) {
                Ok(0) => {
                    plain.truncate(start);
                    closed = true;
                    break;
                }
                Ok(n) => {
                    plain.truncate(start + n);
                    want -= n.min(want);
                }
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
        if state.peer_has_closed() {
            closed = true;
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
    plain: &[u8],
    cipher_out: &mut Vec<u8>,
) -> io::Result<()> {
    tls.writer().write_all(plain)?;
    flush(tls, cipher_out)
}

/// Append everything rustls wants to send.
pub fn flush(tls: &mut rustls::Connection, cipher_out: &mut Vec<u8>) -> io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(cipher_out)?;
    }
    Ok(())
}
