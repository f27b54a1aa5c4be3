//! Whether the edge can serve devices, for `/readyz`: the CSE is reachable when an upstream link is
//! open, or — when none is (passthrough with no device yet, every link down) — when a TCP connection
//! to one of its addresses (or to the proxy in front of it) can be made. A thread checks every
//! [`PROBE_EVERY`] and also resolves the upstream name again when it is due or a link's connect
//! failed ([`super::upstream`]); the admin listener only reads the answer.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::metrics::CoreCounters;
use super::upstream::UpstreamAddrs;

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

/// What the probe thread needs.
pub struct Probe {
    pub readiness: Arc<Readiness>,
    pub upstream: Arc<UpstreamAddrs>,
    /// Probe the proxy instead of the CSE.
    pub proxy: Option<std::net::SocketAddr>,
    /// Each TCP probe's timeout.
    pub timeout: Duration,
    /// Resolve the name again this often (zero: only after failures).
    pub resolve_interval: Duration,
    pub counters: Arc<Vec<Arc<CoreCounters>>>,
}

impl Probe {
    /// One probe: links open, or a TCP connection to the proxy or any CSE address (the one in use
    /// first).
    fn reachable(&self) -> bool {
        if links_open(&self.counters) {
            return true;
        }
        match self.proxy {
            Some(proxy) => TcpStream::connect_timeout(&proxy, self.timeout).is_ok(),
            None => {
                let current = self.upstream.current();
                std::iter::once(current)
                    .chain(self.upstream.all().into_iter().filter(|a| *a != current))
                    .any(|a| TcpStream::connect_timeout(&a, self.timeout).is_ok())
            }
        }
    }
}

/// Start the probe thread.
pub fn spawn(p: Probe) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("m2m-readiness".into())
        .spawn(move || {
            let mut was = None;
            let mut resolved_at = Instant::now();
            loop {
                let due = !p.resolve_interval.is_zero() && resolved_at.elapsed() >= p.resolve_interval;
                if due || p.upstream.resolve_requested() {
                    p.upstream.refresh();
                    resolved_at = Instant::now();
                }
                let now = p.reachable();
                p.readiness.reachable.store(now, Ordering::Relaxed);
                if was != Some(now) {
                    let target = p.proxy.unwrap_or_else(|| p.upstream.current());
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
