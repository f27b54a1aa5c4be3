//! `--metrics 127.0.0.1:PORT`: the loadgen's own Prometheus endpoint during a run, so a long run can
//! be watched live beside the edge. Every name is defined here, once (dashboards are checked against
//! [`exposition_names`]). The collector updates the state once a second from the same intervals that
//! go into the `.hlog`; a small HTTP thread answers `GET /metrics` with `prometheus-client`'s text
//! encoding.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use m2m_edge::Series;

use crate::device::Live;
use crate::recorder::{Interval, Metric, OpKind};

pub mod names {
    pub const DEVICES_CONNECTED: &str = "m2m_loadgen_devices_connected";
    pub const DEVICES_REGISTERED: &str = "m2m_loadgen_devices_registered";
    pub const REQUESTS_SENT: &str = "m2m_loadgen_requests_sent";
    pub const RESPONSES: &str = "m2m_loadgen_responses";
    pub const ERRORS: &str = "m2m_loadgen_errors";
    pub const NOTIFICATIONS: &str = "m2m_loadgen_notifications";
    pub const LATENCY: &str = "m2m_loadgen_request_latency";
}

/// Upper bounds of the exported latency histograms, seconds (the `.hlog` keeps full resolution).
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Debug, Clone, Default)]
struct Buckets {
    counts: [u64; 16],
    count: u64,
    sum_s: f64,
}

impl Buckets {
    fn add(&mut self, h: &hdrhistogram::Histogram<u64>) {
        for v in h.iter_recorded() {
            let s = v.value_iterated_to() as f64 / 1e6;
            let n = v.count_at_value();
            if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
                self.counts[i] += n;
            }
            self.count += n;
            self.sum_s += s * n as f64;
        }
    }
}

/// What the endpoint shows: totals since the start of the run.
#[derive(Debug, Default)]
pub struct State {
    latency: BTreeMap<&'static str, Buckets>,
    responses: BTreeMap<&'static str, u64>,
    notifications: u64,
    errors: BTreeMap<String, u64>,
}

impl State {
    /// Account for one closed second.
    pub fn add(&mut self, i: &Interval) {
        for k in OpKind::ALL {
            let h = i.hist(Metric::Op(k));
            self.latency.entry(k.name()).or_default().add(h);
            *self.responses.entry(k.name()).or_default() += h.len();
        }
        self.notifications += i.hist(Metric::Notify).len();
        for (k, v) in &i.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }
}

#[derive(Debug)]
struct Latency(Vec<(&'static str, Buckets)>);

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (op, b) in &self.0 {
            // Per-bucket counts: the encoder makes them cumulative.
            let mut buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(b.counts).collect();
            let finite: u64 = b.counts.iter().sum();
            buckets.push((f64::INFINITY, b.count.saturating_sub(finite)));
            let labels = [("op", *op)];
            encoder
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(b.sum_s, b.count, &buckets, None)?;
        }
        Ok(())
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn gauge(v: f64) -> Series {
    Series {
        kind: MetricType::Gauge,
        values: vec![(vec![], v)],
    }
}

fn counters(values: Vec<(Vec<(&'static str, String)>, f64)>) -> Series {
    Series {
        kind: MetricType::Counter,
        values,
    }
}

/// The exposition text.
pub fn render(state: &State, live: &Live) -> String {
    let mut r = Registry::default();
    r.register(
        names::DEVICES_CONNECTED,
        "Simulated devices with an open WebSocket connection",
        gauge(live.connected.load(Ordering::Relaxed) as f64),
    );
    r.register(
        names::DEVICES_REGISTERED,
        "Simulated devices registered (AE created, not yet deleted)",
        gauge(live.registered.load(Ordering::Relaxed) as f64),
    );
    r.register(
        names::REQUESTS_SENT,
        "Operations sent (all kinds)",
        counters(vec![(vec![], live.sent.load(Ordering::Relaxed) as f64)]),
    );
    r.register(
        names::RESPONSES,
        "Operation responses received, by operation",
        counters(
            OpKind::ALL
                .iter()
                .map(|k| {
                    (
                        vec![("op", k.name().to_string())],
                        state.responses.get(k.name()).copied().unwrap_or(0) as f64,
                    )
                })
                .collect(),
        ),
    );
    r.register(
        names::NOTIFICATIONS,
        "NOTIFY requests received from the target",
        counters(vec![(vec![], state.notifications as f64)]),
    );
    // Every kind always present (at 0), so dashboards and alerts see the series from the start.
    let mut errors: BTreeMap<String, u64> = ["timeout", "lost", "refused", "reset"]
        .iter()
        .map(|k| (k.to_string(), 0))
        .collect();
    errors.extend(state.errors.iter().map(|(k, v)| (k.clone(), *v)));
    r.register(
        names::ERRORS,
        "Errors by kind (rsc NNNN, close NNNN, timeout, refused, reset, …)",
        counters(
            errors
                .into_iter()
                .map(|(k, v)| (vec![("kind", k)], v as f64))
                .collect(),
        ),
    );
    r.register_with_unit(
        names::LATENCY,
        "Operation latency from the intended send time (coordinated omission corrected)",
        Unit::Seconds,
        Latency(
            OpKind::ALL
                .iter()
                .map(|k| {
                    (
                        k.name(),
                        state.latency.get(k.name()).cloned().unwrap_or_default(),
                    )
                })
                .collect(),
        ),
    );
    m2m_edge::exposition::register_process(&mut r);
    m2m_edge::exposition::register_build_info(&mut r, "m2m_loadgen", env!("CARGO_PKG_VERSION"));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).expect("encoding into a String");
    out
}

/// Every series name the endpoint exposes (with the suffixes Prometheus adds).
pub fn exposition_names() -> Vec<String> {
    m2m_edge::series_names(&render(&State::default(), &Live::default()))
}

/// Serve `GET /metrics` on `addr` (hyper, on a thread and runtime of its own, for the life of the
/// process); the content type follows the scraper's `Accept` (OpenMetrics or text 0.0.4).
pub fn serve(
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    live: Arc<Live>,
) -> anyhow::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                    return;
                };
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (state, live) = (state.clone(), live.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            std::future::ready(Ok::<_, std::convert::Infallible>(respond(
                                &req, &state, &live,
                            )))
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                            .await;
                    });
                }
            });
        })?;
    Ok(local)
}

fn respond(
    req: &hyper::Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    live: &Live,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    use hyper::{Method, StatusCode, header};
    let mut r = hyper::Response::new(http_body_util::Full::default());
    if req.uri().path() != "/metrics" {
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    if req.method() != Method::GET {
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return r;
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let body = render(&state.lock().unwrap_or_else(|e| e.into_inner()), live);
    let (content_type, body) = m2m_edge::exposition::negotiate(accept, body);
    *r.body_mut() = http_body_util::Full::new(bytes::Bytes::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_totals_from_the_intervals() {
        let mut state = State::default();
        let mut i = Interval::default();
        crate::recorder::record(
            &mut i.hists[Metric::Op(OpKind::Update).index()],
            Duration::from_millis(3),
        );
        i.errors.insert("rsc 4004".into(), 2);
        state.add(&i);
        state.add(&i);
        let live = Live::default();
        live.connected.store(7, Ordering::Relaxed);
        let text = render(&state, &live);
        assert!(text.contains("m2m_loadgen_devices_connected 7"), "{text}");
        assert!(
            text.contains(r#"m2m_loadgen_responses_total{op="update"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"m2m_loadgen_errors_total{kind="rsc 4004"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"m2m_loadgen_request_latency_seconds_bucket{le="0.005",op="update"} 2"#
            ),
            "{text}"
        );
        let names = exposition_names();
        assert!(
            names.contains(&"m2m_loadgen_request_latency_seconds_bucket".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&"m2m_loadgen_errors_total".to_string()));
    }

    #[test]
    fn the_endpoint_negotiates_its_format_and_has_process_and_build_series() {
        use std::io::{Read, Write};
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Mutex::new(State::default())),
            Arc::new(Live::default()),
        )
        .unwrap();
        let get = |path: &str, accept: &str| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out.to_ascii_lowercase()
        };
        let om = get(
            "/metrics",
            "application/openmetrics-text;version=1.0.0,*/*;q=0.1",
        );
        assert!(
            om.contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{om}"
        );
        assert!(om.contains("# eof"));
        for series in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "m2m_loadgen_build_info{",
        ] {
            assert!(om.contains(series), "{series} missing");
        }
        let text = get("/metrics", "text/plain");
        assert!(
            text.contains("content-type: text/plain; version=0.0.4"),
            "{text}"
        );
        assert!(!text.contains("# eof"));
        assert!(text.contains("# type m2m_loadgen_responses_total counter"));
        assert!(get("/other", "*/*").starts_with("http/1.1 404"));
    }
}
