//! Whether the edge can serve devices, for `/readyz`: the CSE is reachable when an upstream link is
//! open, or — when none is (passthrough with no device yet, every link down) — when a TCP connection
//! to it (or to the proxy in front of it) can be made. A thread checks every [`PROBE_EVERY`];
//! the admin listener only reads the answer.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::metrics::CoreCounters;

pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The last answer, shared with every core's admin handler.
#[derive(Debug, Default)]
pub struct Readiness {
    reachable: AtomicBool,
}

impl Readiness {
    pub fn reachable(&self, counters: &[Arc<CoreCounters>]) -> bool {
        links_open(counters) || self.reachable.load(Ordering::Relaxed)
    }
}

fn links_open(counters: &[Arc<CoreCounters>]) -> bool {
    counters
        .iter()
        .any(|c| c.upstream_links.load(Ordering::Relaxed) > 0)
}

/// Start the probe thread filling `r`: `target` is the CSE's address (or the proxy's), tried with
/// `timeout`.
pub fn spawn(
    r: Arc<Readiness>,
    target: SocketAddr,
    timeout: Duration,
    counters: Arc<Vec<Arc<CoreCounters>>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("m2m-readiness".into())
        .spawn(move || {
            let mut was = None;
            loop {
                let now = links_open(&counters)
                    || TcpStream::connect_timeout(&target, timeout).is_ok();
                r.reachable.store(now, Ordering::Relaxed);
                if was != Some(now) {
                    if now {
                        tracing::info!(%target, "the upstream CSE is reachable: ready");
                    } else {
                        tracing::warn!(%target, "the upstream CSE is not reachable: /readyz answers 503");
                    }
                    was = Some(now);
                }
                std::thread::sleep(PROBE_EVERY);
            }
        })?;
    Ok(())
}
