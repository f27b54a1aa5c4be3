//! The edge's metrics: every name, help text and unit is defined here, once. Each core counts into
//! its own [`CoreCounters`] (plain relaxed atomics written by that core only: no contention on the
//! hot path); a scrape of the admin listener sums the cores and encodes the result with
//! `prometheus-client`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// Metric names (without the `_total` that counters get in the exposition), in one place so that
/// dashboards can be checked against them.
pub mod names {
    pub const DEVICE_SESSIONS: &str = "m2m_edge_device_sessions";
    pub const UPSTREAM_LINKS: &str = "m2m_edge_upstream_links";
    pub const HANDSHAKES: &str = "m2m_edge_handshakes";
    pub const REQUESTS: &str = "m2m_edge_requests";
    pub const RESPONSES: &str = "m2m_edge_responses";
    pub const EDGE_ANSWERS: &str = "m2m_edge_answers";
    pub const UPSTREAM_RTT: &str = "m2m_edge_upstream_rtt";
    pub const TUNNELS: &str = "m2m_edge_connect_tunnels";
    pub const ERRORS: &str = "m2m_edge_errors";
    // Exposed as m2m_edge_io_bytes_total (the unit is appended).
    pub const BYTES: &str = "m2m_edge_io";
    pub const CORE_CONNECTIONS: &str = "m2m_edge_core_connections";
    pub const SESSIONS_BY_SERIALIZATION: &str = "m2m_edge_device_sessions_by_serialization";
    pub const REGISTRATIONS: &str = "m2m_edge_registrations";
    pub const LIMITS: &str = "m2m_edge_limits_hit";
    pub const TLS_HANDSHAKES: &str = "m2m_edge_tls_handshakes";
    pub const CORE_LOOP_TURNS: &str = "m2m_edge_core_loop_turns";
    pub const CORE_BUFFER_EXHAUSTION: &str = "m2m_edge_core_buffer_exhaustion";
    pub const CORE_WAIT: &str = "m2m_edge_core_wait";
    pub const LINK_EVENTS: &str = "m2m_edge_upstream_link_events";
    pub const HANDLING: &str = "m2m_edge_handling";
    pub const RESIDENT_MEMORY: &str = "m2m_edge_resident_memory";
    pub const HEAP: &str = "m2m_edge_heap";
    pub const HEAP_ALLOCATIONS: &str = "m2m_edge_heap_allocations";
    pub const HELD: &str = "m2m_edge_held_primitives";
    pub const HELD_BYTES: &str = "m2m_edge_held";
    pub const HELD_OUTCOMES: &str = "m2m_edge_held_outcomes";
}

pub use m2m_relay::counters::*;

/// A metric computed at scrape time: labelled series of one type (counter or gauge). Also used by
/// the loadgen's endpoint.
#[derive(Debug)]
pub struct Series {
    pub kind: MetricType,
    pub values: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl EncodeMetric for Series {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (labels, v) in &self.values {
            let mut e = encoder.encode_family(labels)?;
            match self.kind {
                MetricType::Counter => {
                    e.encode_counter::<NoLabelSet, u64, u64>(&(*v as u64), None)?
                }
                _ => e.encode_gauge(&(*v as i64))?,
            }
        }
        Ok(())
    }
    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

/// A counter in seconds (a float), per label set.
#[derive(Debug)]
pub(crate) struct SecondsCounter(pub(crate) Vec<(Vec<(&'static str, String)>, f64)>);

impl EncodeMetric for SecondsCounter {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (labels, v) in &self.0 {
            encoder
                .encode_family(labels)?
                .encode_counter::<NoLabelSet, f64, u64>(v, None)?;
        }
        Ok(())
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

#[derive(Debug)]
struct Histogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// From per-bucket counts (`count_in(i)` for bound `i`, not cumulative: the encoder adds them
    /// up) and the total; what lies above the last bound goes to `+Inf`.
    fn new(bounds: &[f64], count_in: impl Fn(usize) -> u64, count: u64, sum: f64) -> Self {
        let mut buckets: Vec<(f64, u64)> = bounds
            .iter()
            .enumerate()
            .map(|(i, b)| (*b, count_in(i)))
            .collect();
        let finite: u64 = buckets.iter().map(|(_, n)| n).sum();
        buckets.push((f64::INFINITY, count.saturating_sub(finite)));
        Self {
            sum,
            count,
            buckets,
        }
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn load(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

/// Resident set size of this process, from /proc/self/statm.
fn resident_bytes() -> u64 {
    procfs::process::Process::myself()
        .and_then(|p| p.statm())
        .map_or(0, |m| m.resident * procfs::page_size())
}

/// Every series name the edge's exposition has, for checking dashboards against the code.
pub fn exposition_names() -> Vec<String> {
    series_names(&render(&[Arc::new(CoreCounters::default())]))
}

/// The series names of an exposition text, from its `# TYPE` lines, with the suffixes Prometheus
/// adds: counters `_total`, histograms `_bucket`, `_sum` and `_count`.
pub fn series_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => out.push(format!("{name}_total")),
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.push(format!("{name}{suffix}"));
                }
            }
            _ => out.push(name.to_string()),
        }
    }
    out
}

/// Holding: what is held now, and what became of held primitives.
fn register_hold(registry: &mut Registry, cores: &[Arc<CoreCounters>]) {
    let sum = |f: &dyn Fn(&CoreCounters) -> f64| cores.iter().map(|c| f(c)).sum::<f64>();
    let gauge = |v: f64| Series {
        kind: MetricType::Gauge,
        values: vec![(vec![], v)],
    };
    registry.register(
        names::HELD,
        "Requests of the CSE held for devices that are away",
        gauge(sum(&|c| c.held[0].load(Ordering::Relaxed) as f64)),
    );
    registry.register_with_unit(
        names::HELD_BYTES,
        "Bytes of requests held for devices that are away",
        prometheus_client::registry::Unit::Bytes,
        gauge(sum(&|c| c.held[1].load(Ordering::Relaxed) as f64)),
    );
    let outcome = |name: &str, f: &dyn Fn(&CoreCounters) -> u64| {
        (vec![("outcome", name.to_string())], sum(&|c| f(c) as f64))
    };
    registry.register(
        names::HELD_OUTCOMES,
        "Held requests delivered when their device came back, expired before, or dropped by a hold bound",
        Series {
            kind: MetricType::Counter,
            values: vec![
                outcome("delivered", &|c| c.held_delivered.load(Ordering::Relaxed)),
                outcome("expired", &|c| c.held_expired.load(Ordering::Relaxed)),
                outcome("dropped", &|c| c.held_dropped.load(Ordering::Relaxed)),
            ],
        },
    );
}

/// Sum every core and encode the exposition text.
pub fn render(cores: &[Arc<CoreCounters>]) -> String {
    let sum = |f: &dyn Fn(&CoreCounters) -> f64| cores.iter().map(|c| f(c)).sum::<f64>();
    let mut registry = Registry::default();
    let gauge = |v: f64| Series {
        kind: MetricType::Gauge,
        values: vec![(vec![], v)],
    };
    registry.register(
        names::DEVICE_SESSIONS,
        "Device WebSocket sessions open",
        gauge(sum(&|c| c.device_sessions.load(Ordering::Relaxed) as f64)),
    );
    registry.register(
        names::UPSTREAM_LINKS,
        "Upstream WebSocket links to the CSE that are open",
        gauge(sum(&|c| c.upstream_links.load(Ordering::Relaxed) as f64)),
    );
    register_hold(&mut registry, cores);
    let mut per_core = Vec::new();
    for (i, c) in cores.iter().enumerate() {
        per_core.push((
            vec![("core", i.to_string())],
            c.connections.load(Ordering::Relaxed) as f64,
        ));
    }
    registry.register(
        names::CORE_CONNECTIONS,
        "Connections (device, upstream, tunnel, admin) per core",
        Series {
            kind: MetricType::Gauge,
            values: per_core,
        },
    );
    let mut handshakes = Vec::new();
    for (s, ser) in SERIALIZATIONS.iter().enumerate() {
        for (r, res) in HANDSHAKE_RESULTS.iter().enumerate() {
            handshakes.push((
                vec![
                    ("serialization", ser.to_string()),
                    ("result", res.to_string()),
                ],
                sum(&|c| load(&c.handshakes[s][r])),
            ));
        }
    }
    registry.register(
        names::HANDSHAKES,
        "Device WebSocket handshakes by negotiated serialization and result",
        Series {
            kind: MetricType::Counter,
            values: handshakes,
        },
    );
    let mut requests = Vec::new();
    let mut responses = Vec::new();
    for (d, dir) in DIRECTIONS.iter().enumerate() {
        for (o, op) in OPS.iter().enumerate() {
            requests.push((
                vec![("direction", dir.to_string()), ("op", op.to_string())],
                sum(&|c| load(&c.requests[d][o])),
            ));
        }
        for (k, class) in RSC_CLASSES.iter().enumerate() {
            responses.push((
                vec![
                    ("direction", dir.to_string()),
                    ("rsc_class", class.to_string()),
                ],
                sum(&|c| load(&c.responses[d][k])),
            ));
        }
    }
    registry.register(
        names::REQUESTS,
        "Request primitives relayed, by direction and operation",
        Series {
            kind: MetricType::Counter,
            values: requests,
        },
    );
    registry.register(
        names::RESPONSES,
        "Response primitives relayed, by direction and rsc class",
        Series {
            kind: MetricType::Counter,
            values: responses,
        },
    );
    let answers = ANSWERS
        .iter()
        .enumerate()
        .map(|(i, rsc)| {
            (
                vec![("rsc", rsc.to_string())],
                sum(&|c| load(&c.answers[i])),
            )
        })
        .collect();
    registry.register(
        names::EDGE_ANSWERS,
        "Error responses the edge made itself, by rsc",
        Series {
            kind: MetricType::Counter,
            values: answers,
        },
    );
    let tunnels = TUNNEL_RESULTS
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                vec![("result", r.to_string())],
                sum(&|c| load(&c.tunnels[i])),
            )
        })
        .collect();
    registry.register(
        names::TUNNELS,
        "HTTP CONNECT requests on the device listener, by result",
        Series {
            kind: MetricType::Counter,
            values: tunnels,
        },
    );
    let errors = ERROR_KINDS
        .iter()
        .enumerate()
        .map(|(i, k)| (vec![("kind", k.to_string())], sum(&|c| load(&c.errors[i]))))
        .collect();
    registry.register(
        names::ERRORS,
        "Errors by kind",
        Series {
            kind: MetricType::Counter,
            values: errors,
        },
    );
    let bytes = vec![
        (
            vec![("direction", "in".to_string())],
            sum(&|c| load(&c.bytes_in)),
        ),
        (
            vec![("direction", "out".to_string())],
            sum(&|c| load(&c.bytes_out)),
        ),
    ];
    registry.register_with_unit(
        names::BYTES,
        "Bytes received and sent on all sockets",
        Unit::Bytes,
        Series {
            kind: MetricType::Counter,
            values: bytes,
        },
    );
    registry.register_with_unit(
        names::UPSTREAM_RTT,
        "Time from relaying a request to the CSE to its response",
        Unit::Seconds,
        Histogram::new(
            &RTT_BUCKETS,
            |i| sum(&|c| load(&c.rtt_buckets[i])) as u64,
            sum(&|c| load(&c.rtt_count)) as u64,
            sum(&|c| load(&c.rtt_sum_us)) / 1e6,
        ),
    );
    registry.register_with_unit(
        names::HANDLING,
        "Time the edge spends on one read of device or CSE input: parse, check, transcode, forward (the latency the edge adds, queueing aside)",
        Unit::Seconds,
        Histogram::new(
            &HANDLING_BUCKETS,
            |i| sum(&|c| load(&c.handling_buckets[i])) as u64,
            sum(&|c| load(&c.handling_count)) as u64,
            sum(&|c| load(&c.handling_sum_ns)) / 1e9,
        ),
    );
    let by_format = ["json", "cbor", "xml"]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                vec![("serialization", f.to_string())],
                sum(&|c| c.sessions_by_format[i].load(Ordering::Relaxed) as f64),
            )
        })
        .collect();
    registry.register(
        names::SESSIONS_BY_SERIALIZATION,
        "Open device sessions past the handshake, by negotiated serialization",
        Series {
            kind: MetricType::Gauge,
            values: by_format,
        },
    );
    registry.register(
        names::REGISTRATIONS,
        "Successful AE registrations relayed",
        Series {
            kind: MetricType::Counter,
            values: vec![(vec![], sum(&|c| load(&c.registrations)))],
        },
    );
    let limits = LIMITS
        .iter()
        .enumerate()
        .map(|(i, l)| (vec![("limit", l.to_string())], sum(&|c| load(&c.limits[i]))))
        .collect();
    registry.register(
        names::LIMITS,
        "Connections or requests refused or closed by a configured limit",
        Series {
            kind: MetricType::Counter,
            values: limits,
        },
    );
    let links = LINK_EVENTS
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                vec![("event", e.to_string())],
                sum(&|c| load(&c.link_events[i])),
            )
        })
        .collect();
    registry.register(
        names::LINK_EVENTS,
        "Upstream link transitions: connecting, open, failed (set-up), lost (after open)",
        Series {
            kind: MetricType::Counter,
            values: links,
        },
    );
    let tls = ["completed", "failed"]
        .iter()
        .enumerate()
        .map(|(i, r)| (vec![("result", r.to_string())], sum(&|c| load(&c.tls[i]))))
        .collect();
    registry.register(
        names::TLS_HANDSHAKES,
        "TLS handshakes on the device listener, by result",
        Series {
            kind: MetricType::Counter,
            values: tls,
        },
    );
    let per_core = |f: &dyn Fn(&CoreCounters) -> f64| -> Vec<(Vec<(&'static str, String)>, f64)> {
        cores
            .iter()
            .enumerate()
            .map(|(i, c)| (vec![("core", i.to_string())], f(c)))
            .collect()
    };
    registry.register(
        names::CORE_LOOP_TURNS,
        "Event-loop turns per core (its rate against the primitives rate shows batching)",
        Series {
            kind: MetricType::Counter,
            values: per_core(&|c| load(&c.loop_turns)),
        },
    );
    registry.register(
        names::CORE_BUFFER_EXHAUSTION,
        "Times the io_uring receive-buffer ring ran empty, per core",
        Series {
            kind: MetricType::Counter,
            values: per_core(&|c| load(&c.buffer_exhaustion)),
        },
    );
    registry.register_with_unit(
        names::CORE_WAIT,
        "Time each core's loop spent waiting for I/O or timers; 1 - its rate is the core's utilisation",
        Unit::Seconds,
        SecondsCounter(per_core(&|c| load(&c.wait_ns) / 1e9)),
    );
    registry.register_with_unit(
        names::RESIDENT_MEMORY,
        "Resident memory of the edge process",
        Unit::Bytes,
        Series {
            kind: MetricType::Gauge,
            values: vec![(vec![], resident_bytes() as f64)],
        },
    );
    if let Some(bytes) = crate::heap::live_bytes() {
        registry.register_with_unit(
            names::HEAP,
            "Heap bytes the edge has allocated and not freed (sizes asked for, all threads)",
            Unit::Bytes,
            Series {
                kind: MetricType::Gauge,
                values: vec![(vec![], bytes as f64)],
            },
        );
    }
    if let Some(n) = crate::heap::allocations() {
        registry.register(
            names::HEAP_ALLOCATIONS,
            "Heap allocations (and reallocations) the edge has made (with the heap-gauge feature)",
            Series {
                kind: MetricType::Counter,
                values: vec![(vec![], n as f64)],
            },
        );
    }
    crate::exposition::register_process(&mut registry);
    crate::exposition::register_build_info(&mut registry, "m2m_edge", env!("CARGO_PKG_VERSION"));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("encoding into a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cores_and_encodes_every_name() {
        let cores: Vec<Arc<CoreCounters>> =
            (0..2).map(|_| Arc::new(CoreCounters::default())).collect();
        cores[0].request(0, 0);
        cores[1].request(0, 0);
        cores[1].response(1, 2001);
        cores[0].rtt(0.003);
        cores[1].rtt(0.015);
        cores[1].rtt(30.0);
        cores[0].answer(4103);
        let text = render(&cores);
        assert!(
            text.contains(r#"m2m_edge_requests_total{direction="device_to_cse",op="create"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"m2m_edge_responses_total{direction="cse_to_device",rsc_class="2xxx"} 1"#
            )
        );
        // Cumulative buckets, each sample counted once.
        for (le, n) in [("0.005", 1), ("0.02", 2), ("10.0", 2), ("+Inf", 3)] {
            let line = format!("m2m_edge_upstream_rtt_seconds_bucket{{le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(text.contains(r#"m2m_edge_answers_total{rsc="4103"} 1"#));
        for name in [
            names::DEVICE_SESSIONS,
            names::HANDSHAKES,
            names::TUNNELS,
            names::ERRORS,
            names::BYTES,
            names::CORE_CONNECTIONS,
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
}
