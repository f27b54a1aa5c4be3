//! m2m-loadgen: simulated oneM2M devices (ADN-AEs) over WebSocket with honest latency histograms,
//! a simulated IN-CSE, and `bench`, which runs the CSE, the edge in front of it and a scenario in
//! one command.
//!
//! ```text
//! scenario (TOML + flags) ─► scenario::Plan ─► engine: one current-thread tokio runtime per worker
//!    └─ device: connect (connect.rs) ─► register ─► set-up ─► ops paced by schedule::Pacer
//!          reader task: responses by rqi ─► recorder (HdrHistograms, corrected + uncorrected)
//!    collector, every second ─► report::hlog (.hlog) + timeline ─► table, summary.json, report.html
//! cse: hyper + fastwebsockets server ─► cse::handler (ACME-like semantics) ─► cse::store (sharded)
//! ```

pub mod bench;
pub mod connect;
pub mod cse;
pub mod device;
pub mod engine;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod responder;
pub mod scenario;
pub mod schedule;
pub mod threshold;

use std::path::PathBuf;

/// `<prefix>-YYYYmmdd-HHMMSS` in the current directory.
pub fn default_out(prefix: &str) -> PathBuf {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp: String = now.chars().filter(|c| c.is_ascii_digit()).collect();
    PathBuf::from(format!("{prefix}-{}-{}", &stamp[..8], &stamp[8..14]))
}

pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// This process's command line as one shell-readable line (for reports: what ran).
pub fn command_line() -> String {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
