//! What an idle accepted TLS session costs in heap bytes, counted by the runtime's allocator
//! wrapper (sizes asked for, so the figure is exact and the same on every machine): the unbuffered
//! session the runtime uses next to rustls' buffered one, which keeps a 4 KiB receive buffer for
//! good. Run with `--nocapture` to see the figures.

use std::sync::Arc;

#[path = "common/self_signed.rs"]
mod self_signed;

use m2m_rt::heap::{Counting, live_bytes};
use m2m_rt::tls::{self, Tls};
use rustls::pki_types::ServerName;

#[global_allocator]
static A: Counting<std::alloc::System> = Counting(std::alloc::System);

/// A server session of either kind, driven the way the runtime drives it.
enum Server {
    Unbuffered(Tls),
    Buffered(Box<rustls::Connection>),
}

impl Server {
    fn receive(&mut self, data: &mut [u8], out: &mut Vec<u8>) {
        let mut plain = Vec::new();
        match self {
            Self::Unbuffered(t) => t.receive(data, &mut plain, out).map(|_| ()),
            Self::Buffered(c) => tls::receive(c, data, &mut plain, out).map(|_| ()),
        }
        .unwrap();
    }

    fn is_handshaking(&self) -> bool {
        match self {
            Self::Unbuffered(t) => t.is_handshaking(),
            Self::Buffered(c) => c.is_handshaking(),
        }
    }
}

/// Heap bytes per idle server session after a full handshake and one small message each way,
/// over `n` sessions (after a warm-up that fills rustls' shared session cache).
fn per_idle_session(
    client: &Arc<rustls::ClientConfig>,
    make: &dyn Fn() -> Server,
    n: usize,
) -> i64 {
    let warm_up = 300;
    let mut servers = Vec::new();
    let mut base = 0;
    for i in 0..warm_up + n {
        if i == warm_up {
            base = live_bytes().unwrap() as i64;
        }
        let mut c = Tls::client(
            rustls::ClientConnection::new(
                client.clone(),
                ServerName::try_from("localhost").unwrap(),
            )
            .unwrap(),
        );
        let mut s = make();
        let mut to_s = Vec::new();
        c.send(b"GET / HTTP/1.1\r\n\r\n", &mut to_s).unwrap();
        for _ in 0..10 {
            if to_s.is_empty() {
                break;
            }
            let mut to_c = Vec::new();
            s.receive(&mut to_s, &mut to_c);
            to_s.clear();
            let mut ignored = Vec::new();
            c.receive(&mut to_c, &mut ignored, &mut to_s).unwrap();
        }
        assert!(!s.is_handshaking());
        if i >= warm_up {
            servers.push(s);
        }
        // The client goes away; the server session stays, idle.
    }
    let per = (live_bytes().unwrap() as i64 - base) / n as i64;
    drop(servers);
    per
}

#[test]
fn an_idle_accepted_session_keeps_no_receive_buffer() {
    let (server, client) = self_signed::configs(rustls::DEFAULT_VERSIONS);
    let s = server.clone();
    let unbuffered = per_idle_session(
        &client,
        &|| Server::Unbuffered(Tls::server(s.clone()).unwrap()),
        500,
    );
    let s = server.clone();
    let buffered = per_idle_session(
        &client,
        &|| {
            let mut c = rustls::ServerConnection::new(s.clone()).unwrap();
            c.set_buffer_limit(None);
            Server::Buffered(Box::new(rustls::Connection::Server(c)))
        },
        500,
    );
    eprintln!(
        "heap per idle accepted TLS session: unbuffered (the runtime's) {unbuffered} B, \
         buffered {buffered} B ({:.2}x)",
        unbuffered as f64 / buffered as f64
    );
    // rustls' buffered session keeps its 4 KiB receive buffer; the unbuffered one must not keep
    // any buffer (what is left is rustls' session state and keys).
    assert!(
        buffered - unbuffered >= 4096,
        "unbuffered {unbuffered} B vs buffered {buffered} B"
    );
}
