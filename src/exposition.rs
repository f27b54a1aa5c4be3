//! What a Prometheus scrape gets back: the OpenMetrics text `prometheus-client` encodes, served as
//! OpenMetrics when the scraper accepts it (Prometheus asks for it first), else converted to the
//! classic text format 0.0.4 with its own content type, so the header always says what the body
//! is. Also the series every process should have: `process_*` (CPU, memory, file descriptors, start
//! time, threads, read from /proc) and a `*_build_info` gauge. Shared by the edge and the loadgen.

use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::edge::metrics::Series;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The content type and body for a scrape whose `Accept` header is `accept`.
pub fn negotiate(accept: Option<&str>, openmetrics: String) -> (&'static str, String) {
    if accepts_openmetrics(accept) {
        (OPENMETRICS, openmetrics)
    } else {
        (TEXT_004, to_text_004(&openmetrics))
    }
}

/// OpenMetrics when the client weighs it at least as high as text/plain (q-values; `*/*` counts for
/// both), or says nothing.
fn accepts_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return true };
    let (mut om, mut text) = (0.0f32, 0.0f32);
    for part in accept.split(',') {
        let mut params = part.split(';');
        let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = params
            .find_map(|p| p.trim().strip_prefix("q=")?.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" | "text/*" => text = text.max(q),
            "*/*" => {
                om = om.max(q);
                text = text.max(q);
            }
            _ => {}
        }
    }
    (om > 0.0 && om >= text) || (om == 0.0 && text == 0.0)
}

/// The same families in text format 0.0.4: no `# EOF` or `# UNIT` lines, and a counter family
/// named as its samples are (`…_total`).
pub fn to_text_004(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) && !name.ends_with("_total") {
                out.push_str(&format!("{prefix}{name}_total {tail}\n"));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// What /proc says about this process.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub open_fds: f64,
    pub max_fds: f64,
    pub start_time_seconds: f64,
    pub threads: f64,
}

impl ProcessStats {
    /// This process's figures from /proc (read with `procfs`); zero where a file cannot be read.
    pub fn read() -> Self {
        use procfs::process::{LimitValue, Process};
        let ticks = procfs::ticks_per_second().max(1) as f64;
        let me = Process::myself().ok();
        let stat = me.as_ref().and_then(|p| p.stat().ok());
        let boot = procfs::boot_time_secs().unwrap_or(0) as f64;
        let max_fds = me.as_ref().and_then(|p| p.limits().ok()).map_or(0.0, |l| {
            match l.max_open_files.soft_limit {
                LimitValue::Value(v) => v as f64,
                LimitValue::Unlimited => f64::INFINITY,
            }
        });
        let Some(stat) = stat else {
            return Self {
                max_fds,
                ..Self::default()
            };
        };
        Self {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            threads: stat.num_threads as f64,
            start_time_seconds: boot + stat.starttime as f64 / ticks,
            virtual_bytes: stat.vsize as f64,
            resident_bytes: (stat.rss * procfs::page_size()) as f64,
            open_fds: me
                .as_ref()
                .and_then(|p| p.fd_count().ok())
                .map_or(0.0, |n| n as f64),
            max_fds,
        }
    }
}

fn one(kind: MetricType, v: f64) -> Series {
    Series {
        kind,
        values: vec![(vec![], v)],
    }
}

/// Register the standard `process_*` series (the names the Prometheus client libraries use).
pub fn register_process(registry: &mut Registry) {
    let p = ProcessStats::read();
    let g = MetricType::Gauge;
    registry.register_with_unit(
        "process_cpu",
        "Total user and system CPU time spent",
        Unit::Seconds,
        crate::edge::metrics::SecondsCounter(vec![(vec![], p.cpu_seconds)]),
    );
    registry.register_with_unit(
        "process_resident_memory",
        "Resident memory size",
        Unit::Bytes,
        one(g, p.resident_bytes),
    );
    registry.register_with_unit(
        "process_virtual_memory",
        "Virtual memory size",
        Unit::Bytes,
        one(g, p.virtual_bytes),
    );
    registry.register(
        "process_open_fds",
        "Open file descriptors",
        one(g, p.open_fds),
    );
    registry.register(
        "process_max_fds",
        "Maximum number of open file descriptors",
        one(g, p.max_fds),
    );
    registry.register_with_unit(
        "process_start_time",
        "Start time of the process since the Unix epoch",
        Unit::Seconds,
        one(g, p.start_time_seconds),
    );
    registry.register("process_threads", "OS threads", one(g, p.threads));
}

/// `<prefix>_build_info{version, commit, profile} 1`.
pub fn register_build_info(registry: &mut Registry, prefix: &str, version: &str) {
    let commit = option_env!("M2M_GIT_COMMIT").unwrap_or("unknown");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    registry.register(
        format!("{prefix}_build_info"),
        "Build of the running binary (always 1)",
        Series {
            kind: MetricType::Gauge,
            values: vec![(
                vec![
                    ("version", version.to_string()),
                    ("commit", commit.to_string()),
                    ("profile", profile.to_string()),
                ],
                1.0,
            )],
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_type_follows_accept() {
        let body = "# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests_total 3\n# HELP x_mem Memory.\n# TYPE x_mem gauge\n# UNIT x_mem bytes\nx_mem 7\n# EOF\n".to_string();
        // What Prometheus sends: OpenMetrics first.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(
            negotiate(Some(prom), body.clone()),
            (OPENMETRICS, body.clone())
        );
        assert_eq!(negotiate(None, body.clone()).0, OPENMETRICS);
        assert_eq!(negotiate(Some("*/*"), body.clone()).0, OPENMETRICS);
        let (ct, text) = negotiate(Some("text/plain"), body.clone());
        assert_eq!(ct, TEXT_004);
        assert_eq!(
            text,
            "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\nx_requests_total 3\n# HELP x_mem Memory.\n# TYPE x_mem gauge\nx_mem 7\n"
        );
        assert_eq!(
            negotiate(
                Some("application/openmetrics-text;q=0, text/plain"),
                body.clone()
            )
            .0,
            TEXT_004
        );
        // Weights decide: text/plain first, anything else a little.
        assert_eq!(
            negotiate(Some("text/plain;q=1,*/*;q=0.1"), body.clone()).0,
            TEXT_004
        );
        assert_eq!(negotiate(Some("image/png"), body).0, OPENMETRICS);
    }

    #[test]
    fn process_stats_are_read_from_proc() {
        let p = ProcessStats::read();
        assert!(p.resident_bytes > 0.0 && p.virtual_bytes >= p.resident_bytes);
        assert!(p.open_fds >= 3.0 && p.max_fds >= p.open_fds);
        assert!(p.threads >= 1.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(p.start_time_seconds > now - 3600.0 && p.start_time_seconds <= now + 1.0);
    }
}
