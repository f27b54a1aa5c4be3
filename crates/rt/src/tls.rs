//! rustls driven on the runtime's own buffers. rustls is sans-IO: ciphertext goes in from the
//! bytes the driver received, plaintext comes out into the connection's input buffer, and
//! everything rustls wants to send is appended to the connection's output buffer, which the driver
//! sends like any other bytes. Handshake and data therefore share the connection's limits and
//! timers.
//!
//! Accepted connections (devices, possibly 100,000s of them, mostly idle) use rustls' *unbuffered*
//! API: records are decrypted where the driver received them, and only a record cut in two by the
//! network is kept, so an idle TLS session owns no buffer at all. rustls' buffered connection keeps
//! a 4 KiB receive buffer per session for good, which was most of a wss device's memory.
//! Outbound connections (a few upstream links) keep the buffered API: a client writes its HTTP
//! upgrade before the handshake is done, and the buffered connection holds that for us.

use std::io::{self, Read, Write};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

/// Outcome of feeding received ciphertext.
#[derive(Debug, PartialEq, Eq)]
pub enum TlsInput {
    /// Keep going; any plaintext was appended.
    Open,
    /// The peer sent close_notify.
    PeerClosed,
}

/// A connection's TLS session: boxed either way, so that a plain connection pays one word.
#[derive(Debug)]
pub enum Tls {
    /// Outbound (buffered API).
    Client(Box<rustls::Connection>),
    /// Accepted (unbuffered API).
    Server(Box<ServerTls>),
}

impl Tls {
    /// A server session for an accepted connection.
    pub fn server(config: std::sync::Arc<rustls::ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self::Server(Box::new(ServerTls {
            conn: UnbufferedServerConnection::new(config)?,
            partial: Vec::new(),
            early_plain: Vec::new(),
            stash: Vec::new(),
            failed: false,
        })))
    }

    /// A client session (plaintext written before the handshake is done waits in rustls).
    pub fn client(mut conn: rustls::ClientConnection) -> Self {
        // Our own output is the bound, so rustls need not cap what it holds.
        conn.set_buffer_limit(None);
        Self::Client(Box::new(rustls::Connection::Client(conn)))
    }

    /// Feed received ciphertext `data` (it may be decrypted in place); append plaintext to `plain`
    /// and anything to send (handshake messages, alerts) to `cipher_out`. An error means the
    /// connection must be closed after `cipher_out` is sent.
    pub fn receive(
        &mut self,
        data: &mut [u8],
        plain: &mut Vec<u8>,
        cipher_out: &mut Vec<u8>,
    ) -> Result<TlsInput, String> {
        match self {
            Self::Client(c) => receive(c, data, plain, cipher_out),
            Self::Server(s) => s.receive(data, plain, cipher_out),
        }
    }

    /// Encrypt `plain` and append the records to `cipher_out` (held until the handshake is done).
    pub fn send(&mut self, plain: &[u8], cipher_out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Self::Client(c) => send(c, plain, cipher_out),
            Self::Server(s) => s.send(plain, cipher_out),
        }
    }

    /// Append everything the session wants to send now.
    pub fn flush(&mut self, cipher_out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Self::Client(c) => flush(c, cipher_out),
            Self::Server(_) => Ok(()),
        }
    }

    /// Append a close_notify alert (nothing while the handshake is still going on, for a server).
    pub fn close_notify(&mut self, cipher_out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Self::Client(c) => {
                c.send_close_notify();
                flush(c, cipher_out)
            }
            Self::Server(s) => s.close_notify(cipher_out),
        }
    }

    /// Plaintext the session holds until its handshake is done (accepted sessions; rustls does
    /// not say for outbound ones): counted in the connection's pending output, so the app's own
    /// output bound covers it.
    pub fn held_plaintext(&self) -> usize {
        match self {
            Self::Client(_) => 0,
            Self::Server(s) => s.early_plain.len(),
        }
    }

    pub fn is_handshaking(&self) -> bool {
        match self {
            Self::Client(c) => c.is_handshaking(),
            Self::Server(s) => s.conn.is_handshaking(),
        }
    }

    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        match self {
            Self::Client(c) => c.peer_certificates(),
            Self::Server(s) => s.conn.peer_certificates(),
        }
    }
}

/// The most an accepted session keeps of records that do not yet make a whole message: the
/// largest handshake message rustls accepts (64 KiB), one full record and a read of slack.
pub const MAX_PARTIAL: usize = 0xffff + 16 * 1024 + 2 * 1024 + 64 * 1024;

/// A server session on rustls' unbuffered API, and the little it must keep between reads.
pub struct ServerTls {
    conn: UnbufferedServerConnection,
    /// Ciphertext of a record not yet whole (empty, and without an allocation, between records).
    partial: Vec<u8>,
    /// Plaintext the application sent before the handshake finished.
    early_plain: Vec<u8>,
    /// Plaintext decrypted while sending (only if a record was whole but unread; not expected).
    stash: Vec<u8>,
    /// The session failed (and queued its alert): rustls must not be driven again, or it would
    /// try to send a second fatal alert.
    failed: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("handshaking", &self.conn.is_handshaking())
            .field("partial", &self.partial.len())
            .finish()
    }
}

/// What [`ServerTls::drive`] should do once the session can send application data.
enum Then<'a> {
    Nothing,
    Encrypt(&'a [u8]),
    CloseNotify,
}

/// Run `f` on the unused tail of `out`, growing it until `f` stops asking for more room; keep what
/// it wrote.
fn append_with<E>(
    out: &mut Vec<u8>,
    guess: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, E>,
    too_small: impl Fn(&E) -> Option<usize>,
) -> Result<(), E> {
    let start = out.len();
    let mut room = guess;
    loop {
        out.resize(start + room, 0);
        match f(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(e) => match too_small(&e) {
                Some(need) if need > room => room = need,
                _ => {
                    out.truncate(start);
                    return Err(e);
                }
            },
        }
    }
}

fn encode_too_small(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

fn encrypt_too_small(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

/// Room for `n` plaintext bytes once encrypted: a record header, tag and content type per 16 KiB.
fn sealed_len(n: usize) -> usize {
    n + (n / 16_384 + 1) * 64
}

impl ServerTls {
    fn receive(
        &mut self,
        data: &mut [u8],
        plain: &mut Vec<u8>,
        cipher_out: &mut Vec<u8>,
    ) -> Result<TlsInput, String> {
        if self.failed {
            return Err("the TLS session has failed".into());
        }
        plain.append(&mut self.stash);
        let result = if self.partial.is_empty() {
            // The usual case: whole records in the driver's buffer, decrypted there.
            let r = self.drive(data, plain, cipher_out, Then::Nothing);
            if let Ok((used, _)) = r {
                self.partial.extend_from_slice(&data[used..]);
            }
            r
        } else {
            let mut incoming = std::mem::take(&mut self.partial);
            incoming.extend_from_slice(data);
            let r = self.drive(&mut incoming, plain, cipher_out, Then::Nothing);
            if let Ok((used, _)) = r {
                incoming.drain(..used);
                self.partial = incoming;
            }
            r
        };
        let (_, closed) = result?;
        if self.partial.len() > MAX_PARTIAL {
            // rustls keeps every fragment of a handshake message until it is whole, and checks
            // only the size the message announces: fragments of one byte in records padded to
            // the full size would hold ~1 GB. Its buffered API stops at 64 KiB; so do we.
            self.failed = true;
            self.partial = Vec::new();
            return Err(format!(
                "more than {MAX_PARTIAL} bytes of TLS records without a whole message"
            ));
        }
        if self.partial.is_empty() && self.partial.capacity() > 0 {
            self.partial = Vec::new();
        } else if self.partial.capacity() > 4 * self.partial.len().max(4096) {
            // A cut record kept out of a large read: do not keep the whole read's capacity.
            self.partial.shrink_to_fit();
        }
        if !self.early_plain.is_empty() && !self.conn.is_handshaking() {
            let early = std::mem::take(&mut self.early_plain);
            self.send(&early, cipher_out).map_err(|e| e.to_string())?;
        }
        Ok(if closed {
            TlsInput::PeerClosed
        } else {
            TlsInput::Open
        })
    }

    fn send(&mut self, plain: &[u8], cipher_out: &mut Vec<u8>) -> io::Result<()> {
        if plain.is_empty() {
            return Ok(());
        }
        if self.conn.is_handshaking() {
            self.early_plain.extend_from_slice(plain);
            return Ok(());
        }
        self.drive_kept(cipher_out, Then::Encrypt(plain))
    }

    fn close_notify(&mut self, cipher_out: &mut Vec<u8>) -> io::Result<()> {
        if self.conn.is_handshaking() || self.failed {
            return Ok(());
        }
        self.drive_kept(cipher_out, Then::CloseNotify)
    }

    /// [`Self::drive`] over the kept partial record (never a new one: rustls may remember where
    /// in the incoming bytes a handshake message began).
    fn drive_kept(&mut self, cipher_out: &mut Vec<u8>, then: Then<'_>) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("the TLS session has failed"));
        }
        let mut incoming = std::mem::take(&mut self.partial);
        let mut stash = std::mem::take(&mut self.stash);
        let r = self.drive(&mut incoming, &mut stash, cipher_out, then);
        self.stash = stash;
        if let Ok((used, _)) = r {
            incoming.drain(..used);
        }
        self.partial = incoming;
        r.map(|_| ()).map_err(io::Error::other)
    }

    /// Process `incoming` until rustls needs more bytes: plaintext to `plain`, handshake records
    /// and alerts to `out`, and `then` done once application data may be sent. Returns how many
    /// bytes of `incoming` were consumed and whether the peer sent close_notify.
    fn drive(
        &mut self,
        incoming: &mut [u8],
        plain: &mut Vec<u8>,
        out: &mut Vec<u8>,
        then: Then<'_>,
    ) -> Result<(usize, bool), String> {
        let r = self.drive_once(incoming, plain, out, then);
        self.failed |= r.is_err();
        r
    }

    fn drive_once(
        &mut self,
        incoming: &mut [u8],
        plain: &mut Vec<u8>,
        out: &mut Vec<u8>,
        mut then: Then<'_>,
    ) -> Result<(usize, bool), String> {
        let mut used = 0;
        let mut closed = false;
        // Each turn consumes input, emits output or changes state; the bound only stops a bug.
        for _ in 0..100_000 {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut incoming[used..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    // rustls queues an alert to tell the peer why; send it if it can be had.
                    let from = (used + discard).min(incoming.len());
                    self.flush_alert(&mut incoming[from..], out);
                    return Err(e.to_string());
                }
            };
            let mut extra_discard = 0;
            let mut done = false;
            match state {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        let record = record.map_err(|e| e.to_string())?;
                        extra_discard += record.discard;
                        plain.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::ReadEarlyData(mut r) => {
                    while let Some(record) = r.next_record() {
                        let record = record.map_err(|e| e.to_string())?;
                        extra_discard += record.discard;
                        plain.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    append_with(out, 4096, |buf| e.encode(buf), encode_too_small)
                        .map_err(|e| e.to_string())?;
                }
                // Our output is sent in order, so handing it there is as good as sent.
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::PeerClosed => closed = true,
                ConnectionState::Closed => {
                    closed = true;
                    done = true;
                }
                ConnectionState::BlockedHandshake => done = true,
                ConnectionState::WriteTraffic(mut w) => {
                    match std::mem::replace(&mut then, Then::Nothing) {
                        Then::Nothing => {}
                        Then::Encrypt(data) => append_with(
                            out,
                            sealed_len(data.len()),
                            |buf| w.encrypt(data, buf),
                            encrypt_too_small,
                        )
                        .map_err(|e| e.to_string())?,
                        Then::CloseNotify => {
                            append_with(out, 64, |buf| w.queue_close_notify(buf), encrypt_too_small)
                                .map_err(|e| e.to_string())?
                        }
                    }
                    done = true;
                }
                _ => done = true,
            }
            used += discard + extra_discard;
            if done {
                if let Then::Encrypt(_) | Then::CloseNotify = then {
                    return Err("the TLS session cannot send now".into());
                }
                return Ok((used, closed));
            }
        }
        Err("TLS session made no progress".into())
    }

    /// After an error: encode the alert rustls queued, if it offers one. One call only, over the
    /// rest of the same input (rustls resumes where a pending handshake message began: an empty
    /// buffer there would be out of bounds), and only what it offers first: a second call could
    /// deframe the bad record again and queue a second fatal alert.
    fn flush_alert(&mut self, rest: &mut [u8], out: &mut Vec<u8>) {
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(rest);
        if let Ok(ConnectionState::EncodeTlsData(mut e)) = state {
            let _ = append_with(out, 64, |buf| e.encode(buf), encode_too_small);
        }
    }
}

/// Feed ciphertext `data` to a buffered session; append plaintext to `plain` and anything to send
/// (handshake messages, alerts) to `cipher_out`. An error means the connection must be closed
/// after `cipher_out` is sent.
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

/// Encrypt `plain` on a buffered session (held by rustls until the handshake completes) and
/// append the records to `cipher_out`.
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
    use rustls::pki_types::ServerName;

    use super::*;

    /// Shared with the integration tests (an inline module's `#[path]` cannot reach them).
    mod self_signed {
        include!("../tests/common/self_signed.rs");
    }

    /// A buffered client and an unbuffered server session, as the runtime makes them, speaking
    /// `version`.
    fn pair(version: &'static rustls::SupportedProtocolVersion) -> (Tls, Tls) {
        let (server, client) = self_signed::configs(&[version]);
        let c = rustls::ClientConnection::new(client, ServerName::try_from("localhost").unwrap())
            .unwrap();
        (Tls::client(c), Tls::server(server).unwrap())
    }

    const VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];

    /// Feed `wire` to `to` in `chunk`-sized pieces; the plaintext it gave and what it answered.
    fn feed(to: &mut Tls, wire: &[u8], chunk: usize) -> (Vec<u8>, Vec<u8>, bool) {
        let (mut plain, mut out, mut closed) = (Vec::new(), Vec::new(), false);
        for piece in wire.chunks(chunk) {
            let mut piece = piece.to_vec();
            if to.receive(&mut piece, &mut plain, &mut out).unwrap() == TlsInput::PeerClosed {
                closed = true;
            }
        }
        (plain, out, closed)
    }

    /// Move ciphertext both ways until neither side has anything to say, feeding in `chunk`-sized
    /// pieces; returns the plaintext each side received.
    fn pump(c: &mut Tls, s: &mut Tls, chunk: usize) -> (Vec<u8>, Vec<u8>) {
        pump_from(c, s, chunk, Vec::new())
    }

    /// [`pump`], starting with `to_s` on its way to the server.
    fn pump_from(c: &mut Tls, s: &mut Tls, chunk: usize, mut to_s: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        let (mut c_plain, mut s_plain) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            c.flush(&mut to_s).unwrap();
            if to_s.is_empty() {
                break;
            }
            let (p, to_c, _) = feed(s, &to_s, chunk);
            s_plain.extend(p);
            to_s.clear();
            let (p, back, _) = feed(c, &to_c, chunk);
            c_plain.extend(p);
            to_s = back;
        }
        (c_plain, s_plain)
    }

    #[test]
    fn large_messages_cross_in_any_chunking_both_versions() {
        for version in VERSIONS {
            for chunk in [1 << 20, 65536, 1000, 7] {
                let (mut c, mut s) = pair(version);
                // The client writes before the handshake is done (as its HTTP upgrade does).
                let mut early = Vec::new();
                c.send(b"GET / HTTP/1.1\r\n\r\n", &mut early).unwrap();
                let (_, got) = pump_from(&mut c, &mut s, chunk, early);
                assert!(
                    !c.is_handshaking() && !s.is_handshaking(),
                    "{version:?} chunk {chunk}: {} {}",
                    c.is_handshaking(),
                    s.is_handshaking()
                );
                assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n", "{version:?} chunk {chunk}");
                let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
                let mut wire = Vec::new();
                c.send(&big, &mut wire).unwrap();
                let (got, out, _) = feed(&mut s, &wire, chunk);
                assert!(got == big, "{version:?} chunk {chunk}: client to server");
                // Whatever the server said meanwhile reaches the client first.
                feed(&mut c, &out, chunk);
                let mut wire = Vec::new();
                s.send(&big, &mut wire).unwrap();
                let (plain, _, _) = feed(&mut c, &wire, chunk);
                assert!(plain == big, "{version:?} chunk {chunk}: server to client");
                // Nothing is kept between whole records.
                let Tls::Server(inner) = &s else {
                    unreachable!()
                };
                assert_eq!(inner.partial.capacity(), 0);
            }
        }
    }

    #[test]
    fn a_record_cut_anywhere_is_kept_until_whole_and_then_freed() {
        let (mut c, mut s) = pair(&rustls::version::TLS13);
        pump(&mut c, &mut s, 1 << 20);
        let mut wire = Vec::new();
        c.send(b"hello", &mut wire).unwrap();
        for cut in 1..wire.len() {
            let (mut plain, mut out) = (Vec::new(), Vec::new());
            let mut a = wire[..cut].to_vec();
            s.receive(&mut a, &mut plain, &mut out).unwrap();
            assert!(plain.is_empty());
            let Tls::Server(inner) = &s else {
                unreachable!()
            };
            assert_eq!(inner.partial.len(), cut);
            let mut b = wire[cut..].to_vec();
            s.receive(&mut b, &mut plain, &mut out).unwrap();
            assert_eq!(plain, b"hello");
            let Tls::Server(inner) = &s else {
                unreachable!()
            };
            assert_eq!(inner.partial.capacity(), 0);
            // The next record for the next cut.
            wire.clear();
            c.send(b"hello", &mut wire).unwrap();
        }
    }

    #[test]
    fn the_server_sends_what_it_was_given_during_the_handshake_once_it_is_done() {
        let (mut c, mut s) = pair(&rustls::version::TLS13);
        let mut out = Vec::new();
        s.send(b"early", &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(s.held_plaintext(), 5, "counted as pending output");
        let (got, _) = pump(&mut c, &mut s, 1 << 20);
        // The handshake's last flight carried it to the client... or it is in what the server said
        // after the client's Finished.
        assert_eq!(got, b"early");
        assert_eq!(s.held_plaintext(), 0);
    }

    #[test]
    fn close_notify_goes_both_ways() {
        for version in VERSIONS {
            let (mut c, mut s) = pair(version);
            pump(&mut c, &mut s, 1 << 20);
            let mut wire = Vec::new();
            c.close_notify(&mut wire).unwrap();
            let (_, _, closed) = feed(&mut s, &wire, 1 << 20);
            assert!(
                closed,
                "{version:?}: the server saw the client's close_notify"
            );
            let mut wire = Vec::new();
            s.close_notify(&mut wire).unwrap();
            assert!(!wire.is_empty());
            let (_, _, closed) = feed(&mut c, &wire, 1 << 20);
            assert!(
                closed,
                "{version:?}: the client saw the server's close_notify"
            );
        }
    }

    /// What an accepted session keeps of a cut record is bounded by rustls: a record header that
    /// announces more than a TLS record may carry is refused at once, before its body is awaited
    /// (a peer cannot make the edge hold an endless partial record).
    #[test]
    fn a_record_announcing_more_than_a_record_may_carry_is_refused_at_once() {
        for version in VERSIONS {
            let (mut c, mut s) = pair(version);
            pump(&mut c, &mut s, 1 << 20);
            let mut header = vec![0x17, 0x03, 0x03, 0xff, 0xff];
            let (mut plain, mut out) = (Vec::new(), Vec::new());
            assert!(
                s.receive(&mut header, &mut plain, &mut out).is_err(),
                "{version:?}"
            );
        }
        // During the handshake too.
        let (_, mut s) = pair(&rustls::version::TLS13);
        let mut header = vec![0x16, 0x03, 0x01, 0xff, 0xff];
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        assert!(s.receive(&mut header, &mut plain, &mut out).is_err());
    }

    /// Found by review: a handshake message begun and then interleaved with another record is
    /// an error whose alert must be read over the rest of the same input (rustls resumes where
    /// the message began); an empty buffer there panicked the core.
    #[test]
    fn an_error_after_part_of_a_handshake_message_does_not_panic() {
        // A ChangeCipherSpec record, then a record of an unknown type, after the partial message.
        for next in [
            [0x14, 0x03, 0x03, 0x00, 0x01, 0x01],
            [0x42, 0x03, 0x03, 0x00, 0x01, 0x01],
        ] {
            let (_, mut s) = pair(&rustls::version::TLS13);
            let (mut plain, mut out) = (Vec::new(), Vec::new());
            let mut hello_head = vec![0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x01, 0x00];
            s.receive(&mut hello_head, &mut plain, &mut out).unwrap();
            assert!(s.receive(&mut next.to_vec(), &mut plain, &mut out).is_err());
        }
    }

    /// Found by review: a handshake message sent one byte per record is kept whole by rustls
    /// until it ends; past [`MAX_PARTIAL`] the session fails instead of growing further.
    #[test]
    fn a_handshake_message_trickled_a_byte_per_record_is_cut_off() {
        let (_, mut s) = pair(&rustls::version::TLS13);
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        // A ClientHello announcing 65,534 bytes, then one byte per record.
        let mut head = vec![0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0xff, 0xfe];
        s.receive(&mut head, &mut plain, &mut out).unwrap();
        let record = [0x16, 0x03, 0x01, 0x00, 0x01, 0x03];
        let mut failed_after = None;
        for sent in 1..=40_000usize {
            let mut chunk: Vec<u8> = record.repeat(100);
            if s.receive(&mut chunk, &mut plain, &mut out).is_err() {
                failed_after = Some(sent * chunk.len());
                break;
            }
        }
        let failed_after = failed_after.expect("cut off");
        assert!(failed_after <= MAX_PARTIAL + 1000, "{failed_after}");
        let Tls::Server(inner) = &s else {
            unreachable!()
        };
        assert_eq!(
            inner.partial.capacity(),
            0,
            "nothing kept after the failure"
        );
    }

    #[test]
    fn garbage_is_an_error_with_an_alert_for_the_peer() {
        let (mut c, mut s) = pair(&rustls::version::TLS13);
        pump(&mut c, &mut s, 1 << 20);
        let mut wire = Vec::new();
        c.send(b"hello", &mut wire).unwrap();
        let last = wire.len() - 1;
        wire[last] ^= 0x55; // a broken tag
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        assert!(s.receive(&mut wire, &mut plain, &mut out).is_err());
        assert!(plain.is_empty());
        assert!(!out.is_empty(), "the alert");
        // More bytes after the failure (the peer's reply to the alert) are refused, not processed:
        // rustls would try to send a second fatal alert.
        let mut more = wire.clone();
        assert!(s.receive(&mut more, &mut plain, &mut out).is_err());
        assert!(s.send(b"x", &mut out).is_err());
        let before = out.len();
        s.close_notify(&mut out).unwrap();
        assert_eq!(out.len(), before);
        let mut junk = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        let (_, mut s2) = pair(&rustls::version::TLS13);
        let mut out = Vec::new();
        assert!(s2.receive(&mut junk, &mut plain, &mut out).is_err());
    }
}
