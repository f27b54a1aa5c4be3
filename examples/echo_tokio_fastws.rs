//! Benchmark baseline (dev only): a WebSocket echo on tokio, one current-thread runtime per core with
//! its own SO_REUSEPORT listener, and fastwebsockets for frames. The handshake uses m2m-ws (it is not
//! on the measured path). `cargo run --release --example echo_tokio_fastws -- 127.0.0.1:9101 [workers]`

use fastwebsockets::{Frame, OpCode, Role, WebSocket};
use m2m_ws::handshake::subprotocol::OneM2mPolicy;
use m2m_ws::handshake::{HeadLimits, parse_request, server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn serve(mut stream: tokio::net::TcpStream) -> Option<()> {
    stream.set_nodelay(true).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let response = loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some((req, _)) = parse_request(&head, HeadLimits::default()).ok()? {
            let up = server::validate_upgrade(&req).ok()?;
            break server::negotiate(&up, &OneM2mPolicy::default(), None)
                .ok()?
                .response;
        }
    };
    stream.write_all(&response).await.ok()?;
    let mut ws = WebSocket::after_handshake(stream, Role::Server);
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    loop {
        let frame = ws.read_frame().await.ok()?;
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                ws.write_frame(Frame::new(true, frame.opcode, None, frame.payload))
                    .await
                    .ok()?;
            }
            OpCode::Close => return Some(()),
            _ => {}
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args
        .next()
        .unwrap_or("127.0.0.1:9101".into())
        .parse()
        .unwrap();
    let workers: usize = args.next().map_or(1, |w| w.parse().unwrap());
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let listener = m2m_rt::net::reuseport_listener(addr, 4096).unwrap();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::task::spawn_local(serve(stream));
                    }
                });
            })
        })
        .collect();
    eprintln!("tokio+fastwebsockets echo on {addr}");
    for t in threads {
        t.join().unwrap();
    }
}
