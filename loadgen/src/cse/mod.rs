//! `m2m-loadgen cse`: a simulated IN-CSE, in memory, on every core (a tokio multi-thread runtime),
//! so load tests and `bench` need no external CSE and the CSE is never the bottleneck. It speaks the
//! WebSocket binding through hyper and fastwebsockets — a stack independent of the edge's — and
//! behaves like ACME where a device can tell: subprotocol names of both families chosen by server
//! preference (HTTP 400 when none fits), `X-M2M-Origin` associating a connection with its AE (a new
//! association closes the older connection), NOTIFYs down the subscriber's own connection.

pub mod dial;
pub mod handler;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::{Request as HttpRequest, Response as HttpResponse, StatusCode};
use m2m_primitive::model::resource_type;
use m2m_primitive::{Format, Primitive, PrimitiveError, Value};
use tokio::sync::mpsc;

use handler::{Caller, Cse, Notification};

/// Server preference, as ACME (JSON first), then XML, which ACME lacks but devices may want.
const PROTOCOLS: [(&str, Format); 6] = [
    ("oneM2M.json", Format::Json),
    ("oneM2M.R2.0.json", Format::Json),
    ("oneM2M.cbor", Format::Cbor),
    ("oneM2M.R2.0.cbor", Format::Cbor),
    ("oneM2M.xml", Format::Xml),
    ("oneM2M.R2.0.xml", Format::Xml),
];

/// Largest message accepted (ACME's python `websockets` default).
const MAX_MESSAGE: usize = 1 << 20;

#[derive(Debug)]
enum Out {
    Frame(OpCode, Vec<u8>),
    Close(u16),
}

#[derive(Debug, Clone)]
struct Association {
    conn: u64,
    format: Format,
    tx: mpsc::UnboundedSender<Out>,
}

/// Counters the CSE prints when it stops.
#[derive(Debug, Default)]
pub struct CseStats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub notifications: AtomicU64,
    pub undeliverable: AtomicU64,
    /// Source addresses devices connected from.
    pub peers: Mutex<std::collections::HashSet<std::net::IpAddr>>,
}

#[derive(Debug)]
struct State {
    cse: Cse,
    /// Answer every request at once with a success carrying its `rqi` (no resource tree): an
    /// upstream whose CPU per request is far below any proxy's, for rows where the proxy must be
    /// the bottleneck.
    respond_only: bool,
    associations: Mutex<HashMap<String, Association>>,
    dialer: Arc<dial::Dialer>,
    next_conn: AtomicU64,
    stats: Arc<CseStats>,
}

/// A running simulated CSE.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    pub stats: Arc<CseStats>,
}

/// Bind and serve on the current tokio runtime until the task is dropped.
pub async fn serve(
    listen: SocketAddr,
    respond_only: bool,
) -> anyhow::Result<(Server, impl std::future::Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(CseStats::default());
    let state = Arc::new(State {
        cse: Cse::new(256),
        respond_only,
        associations: Mutex::new(HashMap::new()),
        dialer: Arc::default(),
        next_conn: AtomicU64::new(1),
        stats: stats.clone(),
    });
    let run = async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            state
                .stats
                .peers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(peer.ip());
            let state = state.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(tcp);
                let service = hyper::service::service_fn(move |req| upgrade(req, state.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades()
                    .await;
            });
        }
    };
    Ok((Server { addr, stats }, run))
}

/// An HTTP refusal of the upgrade, without a body (fastwebsockets' upgrade response type has none).
fn refuse(status: StatusCode) -> HttpResponse<Empty<bytes::Bytes>> {
    let mut r = HttpResponse::new(Empty::new());
    *r.status_mut() = status;
    r
}

async fn upgrade(
    mut req: HttpRequest<Incoming>,
    state: Arc<State>,
) -> Result<HttpResponse<Empty<bytes::Bytes>>, std::convert::Infallible> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        // WebSocket only.
        return Ok(refuse(StatusCode::UPGRADE_REQUIRED));
    }
    let offered: Vec<String> = req
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    let Some((name, format)) = PROTOCOLS
        .iter()
        .find(|(name, _)| offered.iter().any(|o| o == name))
    else {
        // No supported oneM2M subprotocol offered (ACME: 400).
        return Ok(refuse(StatusCode::BAD_REQUEST));
    };
    let origin = req
        .headers()
        .get("X-M2M-Origin")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.rsplit('/').next().unwrap_or(v).to_string())
        .filter(|v| !v.is_empty());
    let Ok((mut response, fut)) = fastwebsockets::upgrade::upgrade(&mut req) else {
        return Ok(refuse(StatusCode::BAD_REQUEST));
    };
    response.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        hyper::header::HeaderValue::from_static(name),
    );
    let format = *format;
    tokio::spawn(async move {
        if let Ok(ws) = fut.await {
            connection(ws, format, origin, state).await;
        }
    });
    Ok(response)
}

fn opcode(format: Format) -> OpCode {
    if format == Format::Cbor {
        OpCode::Binary
    } else {
        OpCode::Text
    }
}

async fn connection(
    mut ws: fastwebsockets::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
    format: Format,
    origin: Option<String>,
    state: Arc<State>,
) {
    ws.set_max_message_size(MAX_MESSAGE);
    state.stats.connections.fetch_add(1, Ordering::Relaxed);
    let conn = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let (read, mut write) = ws.split(|s| {
        let (r, w) = tokio::io::split(s);
        (r, tokio::io::BufWriter::new(w))
    });
    let mut read = FragmentCollectorRead::new(read);
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    if let Some(o) = &origin {
        let old = state
            .associations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                o.clone(),
                Association {
                    conn,
                    format,
                    tx: tx.clone(),
                },
            );
        // ACME: one connection per originator; the newer association wins.
        if let Some(old) = old {
            let _ = old.tx.send(Out::Close(1000));
        }
    }
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some(out) = next {
                let r = match out {
                    Out::Frame(op, bytes) => {
                        write
                            .write_frame(Frame::new(true, op, None, Payload::Owned(bytes)))
                            .await
                    }
                    Out::Close(code) => {
                        let _ = write.write_frame(Frame::close(code, b"")).await;
                        let _ = write.flush().await;
                        return;
                    }
                };
                if r.is_err() {
                    return;
                }
                next = rx.try_recv().ok();
            }
            if write.flush().await.is_err() {
                return;
            }
        }
    });
    let caller = Caller {
        origin: origin.clone(),
    };
    let obligations = tx.clone();
    let mut send_fn = move |f: Frame<'_>| {
        let out = if f.opcode == OpCode::Close {
            let code = f
                .payload
                .get(..2)
                .map_or(1000, |c| u16::from_be_bytes([c[0], c[1]]));
            Out::Close(code)
        } else {
            Out::Frame(f.opcode, f.payload.to_vec())
        };
        let _ = obligations.send(out);
        std::future::ready(Ok::<(), std::io::Error>(()))
    };
    loop {
        let frame = match read.read_frame(&mut send_fn).await {
            Ok(f) => f,
            Err(fastwebsockets::WebSocketError::FrameTooLarge) => {
                let _ = tx.send(Out::Close(1009));
                break;
            }
            Err(_) => break,
        };
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                on_message(&frame.payload, format, &caller, &state, &tx)
            }
            OpCode::Close => break,
            _ => {}
        }
    }
    drop(tx);
    let _ = writer.await;
    if let Some(o) = &origin {
        let mut map = state.associations.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(o).is_some_and(|a| a.conn == conn) {
            map.remove(o);
        }
    }
}

fn on_message(
    bytes: &[u8],
    format: Format,
    caller: &Caller,
    state: &State,
    tx: &mpsc::UnboundedSender<Out>,
) {
    if state.respond_only && respond_at_once(bytes, format, state, tx) {
        return;
    }
    let primitive = match m2m_primitive::decode(format, bytes) {
        Ok(p) => p,
        Err(e) => {
            let e = match Format::sniff(bytes) {
                Some(other) if other != format => PrimitiveError::new(
                    m2m_primitive::Rsc::UNSUPPORTED_MEDIA_TYPE,
                    format!("{} on a {} connection", other.name(), format.name()),
                ),
                _ => e,
            };
            let rqi = m2m_primitive::view::extract_rqi(format, bytes);
            let rsp = e.with_rqi(rqi).to_response("3");
            send(tx, format, &Primitive::Response(rsp));
            return;
        }
    };
    match primitive {
        Primitive::Request(req) => {
            state.stats.requests.fetch_add(1, Ordering::Relaxed);
            let (rsp, notes) = state.cse.handle(caller, &req);
            send(tx, format, &Primitive::Response(rsp));
            for n in notes {
                deliver(state, n);
            }
        }
        // Answers to our NOTIFYs: nothing waits for them.
        Primitive::Response(_) => {}
    }
}

/// Respond-only mode: a success for the request in `bytes` (2001 with the AE's id for a
/// registration, so that devices can go on), from the routing view alone. False when it is not a
/// request the view can read (then the full path answers it).
fn respond_at_once(
    bytes: &[u8],
    format: Format,
    state: &State,
    tx: &mpsc::UnboundedSender<Out>,
) -> bool {
    use m2m_primitive::{Operation, Response, RoutingView, Rsc};
    let Ok(view) = RoutingView::parse(format, bytes) else {
        return false;
    };
    let Some(op) = view.op else {
        return true;
    };
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let mut rsp = Response {
        rsc: match op {
            Operation::Create => Rsc::CREATED,
            Operation::Delete => Rsc::DELETED,
            _ => Rsc::OK,
        },
        rqi: view.rqi.map(|r| r.into_owned()),
        rvi: Some("3".into()),
        ..Response::default()
    };
    if op == Operation::Create && view.ty == Some(resource_type::AE) {
        let id = view.fr.as_deref().unwrap_or("Cregistered").to_string();
        let mut ae = m2m_primitive::Map::new();
        ae.insert("aei", Value::String(id.clone()));
        ae.insert("rn", Value::String(id));
        let mut pc = m2m_primitive::Map::new();
        pc.insert("m2m:ae", Value::Object(ae));
        rsp.pc = Some(Value::Object(pc));
    }
    send(tx, format, &Primitive::Response(rsp));
    true
}

fn send(tx: &mpsc::UnboundedSender<Out>, format: Format, p: &Primitive) {
    if let Ok(bytes) = m2m_primitive::encode(p, format) {
        let _ = tx.send(Out::Frame(opcode(format), bytes));
    }
}

/// Send a NOTIFY where ACME would: down the target AE's own connection when the AE has `rr=true`,
/// `ws://default` in its `poa` and a live associated connection; else, with `rr=true` and a `ws://`
/// URL in its `poa`, over a connection the CSE dials to that URL (kept for later NOTIFYs). Nothing is
/// buffered.
fn deliver(state: &State, n: Notification) {
    let poa: Option<Vec<String>> = state.cse.store.path_of_ri(&n.target).and_then(|path| {
        let shard = state.cse.store.shard_for(&path);
        let ae = shard.get(&path)?;
        if ae.ty != resource_type::AE || ae.attrs.get("rr") != Some(&Value::Bool(true)) {
            return None;
        }
        match ae.attrs.get("poa") {
            Some(Value::Array(p)) => Some(
                p.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => Some(Vec::new()),
        }
    });
    let Some(poa) = poa else {
        state.stats.undeliverable.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let own = poa
        .iter()
        .any(|p| p == "ws://default")
        .then(|| {
            state
                .associations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&n.target)
                .cloned()
        })
        .flatten();
    if let Some(a) = own {
        state.stats.notifications.fetch_add(1, Ordering::Relaxed);
        send(&a.tx, a.format, &Primitive::Request(n.request));
        return;
    }
    let url = poa.iter().find(|p| {
        *p != "ws://default" && m2m_edge::wsurl::WsUrl::parse(p).is_ok_and(|u| !u.secure)
    });
    match (
        url,
        m2m_primitive::encode(&Primitive::Request(n.request), Format::Json),
    ) {
        (Some(url), Ok(bytes)) => {
            state.stats.notifications.fetch_add(1, Ordering::Relaxed);
            state.dialer.send(url, &state.cse.store.csi, bytes);
        }
        _ => {
            state.stats.undeliverable.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Start the CSE on a thread of its own (tests, embedding); it runs until the process ends.
pub fn spawn_background(listen: SocketAddr, workers: usize) -> anyhow::Result<Server> {
    spawn_background_with(listen, workers, false)
}

/// [`spawn_background`], optionally in respond-only mode.
pub fn spawn_background_with(
    listen: SocketAddr,
    workers: usize,
    respond_only: bool,
) -> anyhow::Result<Server> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("cse".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers.max(1))
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(tx.send(Err(anyhow::Error::from(e)))),
            };
            rt.block_on(async move {
                match serve(listen, respond_only).await {
                    Ok((server, run)) => {
                        let _ = tx.send(Ok(server));
                        run.await;
                    }
                    Err(e) => drop(tx.send(Err(e))),
                }
            });
        })?;
    rx.recv().context("the CSE thread ended")?
}

/// Run the CSE on its own threads (a multi-thread tokio runtime) until SIGTERM or SIGINT.
pub fn run_blocking(
    listen: SocketAddr,
    workers: usize,
    respond_only: bool,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<Arc<CseStats>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name("cse")
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (server, run) = serve(listen, respond_only).await?;
        on_ready(server.addr);
        tokio::select! {
            _ = run => {}
            _ = shutdown_signal() => {}
        }
        Ok(server.stats)
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
