//! What a run (or a merge of runs) produced, in the forms people read: a table on the terminal
//! ([`table`]), a JSON summary, HdrHistogram interval logs ([`hlog`]) and a self-contained HTML page
//! with SVG plots ([`html`]). Everything is computed from histograms that were *added*, never from
//! averaged percentiles, so a merge of shards reports the same numbers one big run would have.

pub mod hlog;
pub mod html;
pub mod table;

use std::collections::BTreeMap;

use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::recorder::{Interval, Metric, OpKind};

/// One second of a run, over all workers (and shards, after a merge).
#[derive(Debug, Clone, Default)]
pub struct Second {
    pub interval: Interval,
    /// Devices connected at the end of the second.
    pub connected: u64,
}

/// Everything measured, summed as the seconds come in: the run's total histograms and one timeline
/// point per second. Per-second histograms go to the interval log, not into memory, so an hour-long
/// run costs the same memory as a minute.
#[derive(Debug, Clone, Default)]
pub struct Measurements {
    /// The scenario as TOML (after a merge: every shard's, when they differ).
    pub scenario: String,
    /// Unix time of the run's start, seconds.
    pub started_unix: f64,
    /// The command line that produced these measurements.
    pub command: String,
    pub total: Interval,
    pub timeline: Vec<TimelinePoint>,
}

impl Measurements {
    /// Account for second `t` (seconds since the start, end of the interval).
    pub fn add_second(&mut self, t: u64, s: &Second) {
        self.total.add(&s.interval);
        let all = s.interval.all_ops();
        self.timeline.push(TimelinePoint {
            t,
            ops_per_s: s.interval.ops(),
            errors: s.interval.error_total(),
            connected: s.connected,
            p50_us: if all.is_empty() {
                0
            } else {
                all.value_at_quantile(0.5)
            },
            p99_us: if all.is_empty() {
                0
            } else {
                all.value_at_quantile(0.99)
            },
            lag_p99_us: {
                let lag = s.interval.hist(Metric::ScheduleLag);
                if lag.is_empty() {
                    0
                } else {
                    lag.value_at_quantile(0.99)
                }
            },
            ops: OpKind::ALL
                .iter()
                .filter_map(|k| {
                    let h = s.interval.hist(Metric::Op(*k));
                    (!h.is_empty()).then(|| OpPoint {
                        name: k.name(),
                        p50_us: h.value_at_quantile(0.5),
                        p95_us: h.value_at_quantile(0.95),
                        p99_us: h.value_at_quantile(0.99),
                    })
                })
                .collect(),
        });
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MetricSummary {
    pub name: String,
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl MetricSummary {
    pub fn of(name: &str, h: &Histogram<u64>) -> Self {
        Self {
            name: name.to_string(),
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TimelinePoint {
    /// Seconds since the start (end of the interval).
    pub t: u64,
    pub ops_per_s: u64,
    pub errors: u64,
    pub connected: u64,
    /// Corrected p50 and p99 of all operations in this second, µs (0 when none).
    pub p50_us: u64,
    pub p99_us: u64,
    /// The loadgen's own lateness in this second: schedule lag p99, µs (0 when none).
    pub lag_p99_us: u64,
    /// Per operation: corrected latencies in this second.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<OpPoint>,
}

/// One operation's latency in one second of the timeline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpPoint {
    pub name: &'static str,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
}

/// The JSON summary (`summary.json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub tool: &'static str,
    pub version: &'static str,
    pub started_unix: f64,
    /// The command line that ran.
    pub command: String,
    pub seconds: u64,
    pub operations: u64,
    /// Completed operations per second over the measured window (first to last intended send;
    /// without two sends, the seconds with traffic), not over connecting and tearing down.
    pub ops_per_s: f64,
    /// The measured window, seconds.
    pub window_s: f64,
    /// Operation requests sent.
    pub sent: u64,
    /// Open loop: the sends the schedule asked for (0 in closed loop or with `--requests`).
    pub scheduled: u64,
    /// Open loop: sent / scheduled (the `rate` threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub achieved_rate: Option<f64>,
    pub errors_total: u64,
    /// Per operation and phase; `*.uncorrected` are latencies from the actual send time.
    pub metrics: Vec<MetricSummary>,
    /// All operations together (corrected).
    pub all_ops: MetricSummary,
    pub errors: BTreeMap<String, u64>,
    pub events: BTreeMap<String, u64>,
    pub max_connected: u64,
    pub timeline: Vec<TimelinePoint>,
    pub scenario: String,
    /// The run's thresholds with what was measured and whether each held (`--threshold`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<crate::threshold::Verdict>,
    /// `bench`: CPU seconds of each part (loadgen, simulated CSE, edge) during the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpu_seconds: Vec<(String, f64)>,
}

impl Summary {
    pub fn new(m: &Measurements) -> Self {
        let total = &m.total;
        let metrics = Metric::all()
            .filter(|x| !total.hist(*x).is_empty())
            .map(|x| MetricSummary::of(&x.name(), total.hist(x)))
            .collect();
        let operations = total.ops();
        // Without a window (logs from an older version, a single send): throughput over the seconds
        // with traffic, leaving out the first and the last when there are enough.
        let busy: Vec<u64> = m
            .timeline
            .iter()
            .map(|p| p.ops_per_s)
            .filter(|n| *n > 0)
            .collect();
        let steady = if busy.len() >= 3 {
            &busy[1..busy.len() - 1]
        } else {
            &busy[..]
        };
        let steady_rate = if steady.is_empty() {
            0.0
        } else {
            steady.iter().sum::<u64>() as f64 / steady.len() as f64
        };
        let window_s = total.window_s();
        Self {
            tool: "m2m-loadgen",
            version: env!("CARGO_PKG_VERSION"),
            started_unix: m.started_unix,
            command: m.command.clone(),
            seconds: m.timeline.last().map_or(0, |p| p.t),
            operations,
            ops_per_s: if window_s > 0.0 {
                operations as f64 / window_s
            } else {
                steady_rate
            },
            window_s,
            sent: total.sent,
            scheduled: total.scheduled,
            achieved_rate: (total.scheduled > 0)
                .then(|| total.sent as f64 / total.scheduled as f64),
            errors_total: total.error_total(),
            metrics,
            all_ops: MetricSummary::of("all_ops", &total.all_ops()),
            errors: total.errors.clone(),
            events: total.events.clone(),
            max_connected: m.timeline.iter().map(|p| p.connected).max().unwrap_or(0),
            timeline: m.timeline.clone(),
            scenario: m.scenario.clone(),
            thresholds: Vec::new(),
            cpu_seconds: Vec::new(),
        }
    }

    pub fn op(&self, kind: OpKind) -> Option<&MetricSummary> {
        self.metrics.iter().find(|s| s.name == kind.name())
    }
}

/// Write `summary.json`, `report.html` and the table (as `table.txt`) into `dir`.
pub fn write_all(dir: &Path, m: &Measurements, summary: &Summary) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(summary)?,
    )?;
    std::fs::write(dir.join("table.txt"), table::render(summary))?;
    std::fs::write(dir.join("report.html"), html::render(m, summary))?;
    std::fs::write(dir.join("scenario.toml"), &m.scenario)?;
    Ok(())
}
