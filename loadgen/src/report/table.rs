//! The final table on the terminal: one row per operation and phase, latencies in milliseconds.

use std::fmt::Write;

use super::{MetricSummary, Summary};

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn row(out: &mut String, s: &MetricSummary, errors: u64) {
    let _ = writeln!(
        out,
        "{:<24} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        s.name,
        s.count,
        errors,
        format!("{:.2}", s.mean_us / 1000.0),
        ms(s.p50_us),
        ms(s.p90_us),
        ms(s.p95_us),
        ms(s.p99_us),
        ms(s.p999_us),
        ms(s.max_us)
    );
}

pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "count", "errors", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"
    );
    for m in &s.metrics {
        // Errors by rsc are counted per run, not per operation; show them on the all-ops row.
        row(&mut out, m, 0);
    }
    row(&mut out, &s.all_ops, s.errors_total);
    let _ = writeln!(
        out,
        "\n{} operations in {} s: {:.0} ops/s over the measured {:.1} s; peak {} devices connected; {} errors",
        s.operations, s.seconds, s.ops_per_s, s.window_s, s.max_connected, s.errors_total
    );
    if let Some(rate) = s.achieved_rate {
        let _ = writeln!(
            out,
            "sent {} of {} scheduled requests ({:.2} %)",
            s.sent,
            s.scheduled,
            rate * 100.0,
        );
    }
    if !s.errors.is_empty() {
        let list: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(out, "errors: {}", list.join(", "));
    }
    if !s.events.is_empty() {
        let list: Vec<String> = s.events.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(out, "events: {}", list.join(", "));
    }
    out
}
