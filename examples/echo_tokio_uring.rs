//! Benchmark baseline (dev only): a WebSocket echo on tokio-uring, one runtime per core, with the
//! same m2m-ws frame code as the edge, so that only the runtime differs.
//! `cargo run --release --example echo_tokio_uring -- 127.0.0.1:9102 [workers]`

use m2m_ws::handshake::subprotocol::OneM2mPolicy;
use m2m_ws::handshake::{HeadLimits, parse_request, server};
use m2m_ws::{Event, ReceiverLimits, Role, SenderConfig, endpoint};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn serve(stream: tokio_uring::net::TcpStream) -> Option<()> {
    stream.set_nodelay(true).ok()?;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    // Handshake.
    let response = loop {
        let (res, b) = stream.read(buf).await;
        buf = b;
        let n = res.ok()?;
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&buf[..n]);
        if let Some((req, len)) = parse_request(&pending, HeadLimits::default()).ok()? {
            let up = server::validate_upgrade(&req).ok()?;
            let r = server::negotiate(&up, &OneM2mPolicy::default(), None)
                .ok()?
                .response;
            pending.drain(..len);
            break r;
        }
    };
    let (res, _) = stream.write_all(response).await;
    res.ok()?;
    let (mut rx, mut tx) = endpoint(
        Role::Server,
        None,
        ReceiverLimits::default(),
        SenderConfig::default(),
        6,
    );
    let mut out = Vec::new();
    loop {
        let mut at = 0;
        out.clear();
        while let Ok(Some((event, used))) = rx.read(&mut pending[at..]) {
            at += used;
            match event {
                Event::Text(t) => tx.text(t, &mut out),
                Event::Binary(b) => tx.binary(b, &mut out),
                Event::Ping(p) => tx.pong(p, &mut out),
                Event::Close(_) => return Some(()),
                _ => {}
            }
        }
        pending.drain(..at);
        if !out.is_empty() {
            let (res, o) = stream.write_all(std::mem::take(&mut out)).await;
            out = o;
            res.ok()?;
        }
        let (res, b) = stream.read(buf).await;
        buf = b;
        let n = res.ok()?;
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args
        .next()
        .unwrap_or("127.0.0.1:9102".into())
        .parse()
        .unwrap();
    let workers: usize = args.next().map_or(1, |w| w.parse().unwrap());
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let listener = m2m_rt::net::reuseport_listener(addr, 4096).unwrap();
            listener.set_nonblocking(false).unwrap();
            std::thread::spawn(move || {
                tokio_uring::start(async move {
                    let listener = tokio_uring::net::TcpListener::from_std(listener);
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio_uring::spawn(serve(stream));
                    }
                });
            })
        })
        .collect();
    eprintln!("tokio-uring echo on {addr}");
    for t in threads {
        t.join().unwrap();
    }
}
