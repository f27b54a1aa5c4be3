//! Benchmark client (dev only) for WebSocket echo servers: N connections with K messages of S bytes in
//! flight each (closed loop), on tokio + fastwebsockets, latency from each message's send time into
//! an HdrHistogram. Prints one JSON line. With `--idle`, it opens N connections, completes their
//! handshakes, prints `ready N` and holds them until stdin closes.
//! Only connects to the address it is given (the bench script passes 127.0.0.1).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use fastwebsockets::{Frame, OpCode, Role, WebSocket};
use hdrhistogram::Histogram;
use m2m_ws::handshake::HeadLimits;
use m2m_ws::handshake::client::{ClientHandshake, ClientOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    addr: std::net::SocketAddr,
    #[arg(long, default_value_t = 100)]
    conns: usize,
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    #[arg(long, default_value_t = 256)]
    size: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Open the connections and hold them idle.
    #[arg(long)]
    idle: bool,
}

async fn open(addr: std::net::SocketAddr) -> std::io::Result<WebSocket<tokio::net::TcpStream>> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (hs, request) = ClientHandshake::new(ClientOptions {
        host: addr.to_string(),
        path: "/".into(),
        protocols: vec!["oneM2M.json".into()],
        ..ClientOptions::default()
    });
    stream.write_all(&request).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match hs.read_response(&buf, HeadLimits::default()) {
            Ok(Some((_, len))) if len == buf.len() => break,
            Ok(Some(_)) => return Err(std::io::Error::other("frames before the first request")),
            Ok(None) => continue,
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
    }
    let mut ws = WebSocket::after_handshake(stream, Role::Client);
    ws.set_auto_pong(true);
    Ok(ws)
}

async fn run_conn(
    addr: std::net::SocketAddr,
    args: Arc<Args>,
    start: Instant,
    deadline: Instant,
    hist: Arc<Mutex<Histogram<u64>>>,
) -> std::io::Result<u64> {
    let mut ws = open(addr).await?;
    let mut local = Histogram::<u64>::new(3).unwrap();
    let mut payload = vec![b'x'; args.size.max(8)];
    let stamp = |p: &mut Vec<u8>| {
        let ns = start.elapsed().as_nanos() as u64;
        p[..8].copy_from_slice(&ns.to_le_bytes());
    };
    for _ in 0..args.inflight {
        stamp(&mut payload);
        ws.write_frame(Frame::binary(fastwebsockets::Payload::Borrowed(&payload)))
            .await
            .map_err(std::io::Error::other)?;
    }
    let mut done = 0u64;
    let mut outstanding = args.inflight;
    while outstanding > 0 {
        let frame = ws.read_frame().await.map_err(std::io::Error::other)?;
        if frame.opcode != OpCode::Binary {
            continue;
        }
        let sent = u64::from_le_bytes(frame.payload[..8].try_into().unwrap());
        let now = start.elapsed().as_nanos() as u64;
        local
            .record((now.saturating_sub(sent) / 1000).max(1))
            .unwrap();
        done += 1;
        outstanding -= 1;
        if Instant::now() < deadline {
            stamp(&mut payload);
            ws.write_frame(Frame::binary(fastwebsockets::Payload::Borrowed(&payload)))
                .await
                .map_err(std::io::Error::other)?;
            outstanding += 1;
        }
    }
    let _ = ws.write_frame(Frame::close(1000, b"")).await;
    hist.lock().unwrap().add(&local).unwrap();
    Ok(done)
}

fn main() {
    let args = Arc::new(Args::parse());
    assert!(
        args.addr.ip().is_loopback(),
        "echo_load only targets loopback addresses"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        if args.idle {
            let mut conns = Vec::with_capacity(args.conns);
            for _ in 0..args.conns {
                conns.push(open(args.addr).await.expect("open idle connection"));
            }
            println!("ready {}", conns.len());
            let mut line = String::new();
            let _ = tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(tokio::io::stdin()), &mut line).await;
            drop(conns);
            return;
        }
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(args.seconds);
        let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
        let tasks: Vec<_> = (0..args.conns)
            .map(|_| tokio::spawn(run_conn(args.addr, args.clone(), start, deadline, hist.clone())))
            .collect();
        let mut total = 0;
        let mut errors = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(n) => total += n,
                Err(_) => errors += 1,
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let h = hist.lock().unwrap();
        println!(
            "{{\"messages\":{total},\"seconds\":{secs:.3},\"msgs_per_s\":{:.0},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"errors\":{errors}}}",
            total as f64 / secs,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999)
        );
    });
}
