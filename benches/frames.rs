//! Frame parse + unmask from memory: m2m-ws against fastwebsockets and tungstenite reading the same
//! bytes, at 16 B, 256 B, 4 KiB and 64 KiB payloads, plus the unmask kernels alone.
//!
//! Each iteration starts from the same pristine masked bytes (client → server), as a receive buffer
//! after `recv`: m2m-ws copies them into its buffer once and parses/unmasks in place; the other two
//! read them through their own buffered readers. All three deliver every binary message unmasked.

use std::hint::black_box;
use std::io::{Cursor, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

#[path = "support/profiler.rs"]
mod profiler;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use m2m_ws::frame::write_frame;
use m2m_ws::mask::{apply_mask, apply_mask_bytewise};
use m2m_ws::{Event, OpCode, Receiver, ReceiverLimits, Role};

const SIZES: [usize; 4] = [16, 256, 4 * 1024, 64 * 1024];
/// Bytes of payload per iteration, so that small frames are measured in bulk too.
const BATCH_BYTES: usize = 1 << 20;

fn masked_frames(size: usize) -> (Vec<u8>, usize) {
    let count = (BATCH_BYTES / size).max(16);
    let payload: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
    let mut wire = Vec::new();
    for i in 0..count {
        let key = [(i * 13) as u8, 0x5a, (i >> 3) as u8, 0xc3];
        write_frame(&mut wire, true, false, OpCode::Binary, Some(key), &payload);
    }
    (wire, count)
}

fn ours(wire: &[u8], buf: &mut Vec<u8>, rx: &mut Receiver) -> usize {
    buf.clear();
    buf.extend_from_slice(wire);
    let mut at = 0;
    let mut total = 0;
    while let Some((event, used)) = rx.read(&mut buf[at..]).expect("valid frames") {
        if let Event::Binary(b) = event {
            total += black_box(b).len();
        }
        at += used;
    }
    total
}

/// An in-memory duplex stream: reads the given bytes, discards writes.
struct MemStream<'a>(Cursor<&'a [u8]>);

impl Read for MemStream<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(out)
    }
}

impl Write for MemStream<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncRead for MemStream<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = Read::read(&mut self.0, buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for MemStream<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn fastws(rt: &tokio::runtime::Runtime, wire: &[u8], count: usize) -> usize {
    rt.block_on(async {
        let mut ws = fastwebsockets::WebSocket::after_handshake(
            MemStream(Cursor::new(wire)),
            fastwebsockets::Role::Server,
        );
        ws.set_auto_close(false);
        ws.set_auto_pong(false);
        let mut total = 0;
        for _ in 0..count {
            let frame = ws.read_frame().await.expect("valid frames");
            total += black_box(&frame.payload[..]).len();
        }
        total
    })
}

fn tungstenite_read(wire: &[u8], count: usize) -> usize {
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(1 << 26))
        .max_frame_size(Some(1 << 26));
    let mut ws = tungstenite::WebSocket::from_raw_socket(
        MemStream(Cursor::new(wire)),
        tungstenite::protocol::Role::Server,
        Some(config),
    );
    let mut total = 0;
    for _ in 0..count {
        match ws.read().expect("valid frames") {
            tungstenite::Message::Binary(b) => total += black_box(&b[..]).len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    total
}

fn parse_and_unmask(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("frame_parse_unmask");
    for size in SIZES {
        let (wire, count) = masked_frames(size);
        let expect = size * count;
        group.throughput(Throughput::Bytes(expect as u64));
        let limits = ReceiverLimits {
            max_frame_bytes: 1 << 20,
            max_message_bytes: 1 << 20,
            ..Default::default()
        };
        let mut rx = Receiver::new(Role::Server, limits, None);
        let mut buf = Vec::with_capacity(wire.len());
        assert_eq!(ours(&wire, &mut buf, &mut rx), expect);
        assert_eq!(fastws(&rt, &wire, count), expect);
        assert_eq!(tungstenite_read(&wire, count), expect);
        group.bench_with_input(BenchmarkId::new("m2m-ws", size), &wire, |b, w| {
            b.iter(|| ours(w, &mut buf, &mut rx))
        });
        group.bench_with_input(BenchmarkId::new("fastwebsockets", size), &wire, |b, w| {
            b.iter(|| fastws(&rt, w, count))
        });
        group.bench_with_input(BenchmarkId::new("tungstenite", size), &wire, |b, w| {
            b.iter(|| tungstenite_read(w, count))
        });
    }
    group.finish();
}

fn unmask_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in SIZES {
        let mut data: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let key = [0x37, 0xfa, 0x21, 0x3d];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("m2m-ws word-at-a-time", size), |b| {
            b.iter(|| apply_mask(black_box(&mut data), key))
        });
        group.bench_function(BenchmarkId::new("fastwebsockets::unmask", size), |b| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut data), key))
        });
        group.bench_function(BenchmarkId::new("bytewise", size), |b| {
            b.iter(|| apply_mask_bytewise(black_box(&mut data), key))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = profiler::config();
    targets = parse_and_unmask, unmask_kernels
}
criterion_main!(benches);
