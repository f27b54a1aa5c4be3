//! m2m-edge: the oneM2M WebSocket edge front-end. The crate is a library so that its whole command
//! line ([`cli::main`]) can run inside other binaries (`m2m-loadgen bench` starts the edge as a child
//! process of itself); `src/main.rs` is the thin `m2m-edge` binary.

pub mod cli;
pub mod config;
mod echo;
mod edge;
pub mod exposition;
pub use m2m_rt::heap;
mod logging;
#[cfg(feature = "pprof")]
mod profiling;
mod reload;
mod tls_files;
pub mod wsurl;

/// The edge's Prometheus series names (dashboards are checked against them).
pub use edge::metrics::{Series, exposition_names as metric_names, series_names};
