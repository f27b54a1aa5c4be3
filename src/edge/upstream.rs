//! The upstream CSE's addresses: every address its name resolves to, the one links use now, and
//! failover. A link whose connect fails reports the address, and the next one is used from then on
//! (round the list); the name is resolved again after such a failure and every
//! `resolve_interval`, by the edge's probe thread ([`super::readiness`]), so a CSE that moves (a
//! Kubernetes Service re-created, a DNS fail-over) is followed without a restart.
//!
//! Shared by every core: a read lock for the address at each link set-up (rare next to primitives),
//! and the resolution itself never on a core.

use std::net::SocketAddr;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Resolves the upstream name: the real resolver, or a fake in tests.
pub type Resolve = Box<dyn Fn() -> anyhow::Result<Vec<SocketAddr>> + Send + Sync>;

/// The addresses, the one in use, and whether to resolve again soon.
pub struct UpstreamAddrs {
    state: RwLock<State>,
    resolve: Resolve,
    resolve_soon: AtomicBool,
    /// Changes when the list does.
    generation: AtomicU64,
}

#[derive(Debug, Clone)]
struct State {
    addrs: Vec<SocketAddr>,
    /// Index into `addrs` of the address links use.
    current: usize,
    /// Switches of address are logged once per interval (with every address down, links switch
    /// at every failed connect).
    switch_log: m2m_relay::log_limit::LogLimit,
}

impl std::fmt::Debug for UpstreamAddrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamAddrs")
            .field("state", &*self.read())
            .finish_non_exhaustive()
    }
}

impl UpstreamAddrs {
    /// Resolve once with `resolve`: an error here is an error at start.
    #[cfg(test)]
    pub fn new(resolve: Resolve) -> anyhow::Result<Self> {
        let addrs = resolve()?;
        anyhow::ensure!(!addrs.is_empty(), "the upstream name has no address");
        Ok(Self::with(addrs, resolve))
    }

    /// Start from `addrs` (already resolved), resolving again with `resolve`.
    pub fn with(addrs: Vec<SocketAddr>, resolve: Resolve) -> Self {
        Self {
            state: RwLock::new(State {
                addrs,
                current: 0,
                switch_log: Default::default(),
            }),
            resolve,
            resolve_soon: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The address the next link connects to.
    pub fn current(&self) -> SocketAddr {
        let s = self.read();
        s.addrs[s.current]
    }

    /// Changes whenever a resolution changed the list.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every known address.
    pub fn all(&self) -> Vec<SocketAddr> {
        self.read().addrs.clone()
    }

    /// Whether a failed connect says something about the address (not about this host: no local
    /// port, no memory, a closed descriptor).
    pub fn blames_address(kind: std::io::ErrorKind) -> bool {
        use std::io::ErrorKind::*;
        matches!(
            kind,
            ConnectionRefused
                | ConnectionReset
                | ConnectionAborted
                | HostUnreachable
                | NetworkUnreachable
                | TimedOut
                | NotConnected
        )
    }

    /// A connect to `addr` failed: move on to the next address (unless another failure already
    /// did) and resolve again soon.
    pub fn failed(&self, addr: SocketAddr) {
        self.resolve_soon.store(true, Ordering::Relaxed);
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        if s.addrs[s.current] == addr && s.addrs.len() > 1 {
            s.current = (s.current + 1) % s.addrs.len();
            let next = s.addrs[s.current];
            if let Some(more) = s.switch_log.allow(std::time::Instant::now()) {
                tracing::warn!(failed = %addr, %next, more_since_last_line = more, "upstream address failed: using the next one");
            }
        }
    }

    /// Whether a failure asked for a resolution since the last one.
    pub fn resolve_requested(&self) -> bool {
        self.resolve_soon.load(Ordering::Relaxed)
    }

    /// Resolve again; a new list replaces the old one, keeping the address in use when it is still
    /// in the list. A failed or empty resolution keeps the old list (logged).
    pub fn refresh(&self) {
        self.resolve_soon.store(false, Ordering::Relaxed);
        let fresh = match (self.resolve)() {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => {
                tracing::warn!("the upstream name resolved to no address: keeping the last ones");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "resolving the upstream name failed: keeping the last addresses");
                return;
            }
        };
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        if s.addrs == fresh {
            return;
        }
        let in_use = s.addrs[s.current];
        tracing::info!(old = ?s.addrs, new = ?fresh, "the upstream name resolves to other addresses now");
        s.current = fresh.iter().position(|a| *a == in_use).unwrap_or(0);
        s.addrs = fresh;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 8180))
    }

    /// Addresses whose answer the test changes.
    fn fake(
        answer: Vec<SocketAddr>,
    ) -> (Arc<Mutex<anyhow::Result<Vec<SocketAddr>>>>, UpstreamAddrs) {
        let shared = Arc::new(Mutex::new(Ok(answer)));
        let s = shared.clone();
        let resolve: Resolve = Box::new(move || match &*s.lock().unwrap() {
            Ok(a) => Ok(a.clone()),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        });
        (shared, UpstreamAddrs::new(resolve).unwrap())
    }

    #[test]
    fn a_failed_address_hands_over_to_the_next_and_round_the_list() {
        let (_, u) = fake(vec![addr(1), addr(2), addr(3)]);
        assert_eq!(u.current(), addr(1));
        u.failed(addr(1));
        assert_eq!(u.current(), addr(2));
        assert!(u.resolve_requested());
        // A second core reporting the same old address does not skip the good one.
        u.failed(addr(1));
        assert_eq!(u.current(), addr(2));
        u.failed(addr(2));
        u.failed(addr(3));
        assert_eq!(u.current(), addr(1));
    }

    #[test]
    fn resolving_again_follows_the_name_and_keeps_the_address_in_use() {
        let (answer, u) = fake(vec![addr(1), addr(2)]);
        u.failed(addr(1));
        *answer.lock().unwrap() = Ok(vec![addr(3), addr(2)]);
        u.refresh();
        assert!(!u.resolve_requested());
        assert_eq!(u.all(), [addr(3), addr(2)]);
        assert_eq!(u.generation(), 1);
        assert_eq!(u.current(), addr(2), "still in the list: kept");
        *answer.lock().unwrap() = Ok(vec![addr(4)]);
        u.refresh();
        assert_eq!(u.current(), addr(4), "gone: the first new one");
    }

    #[test]
    fn a_failed_or_empty_resolution_keeps_the_last_addresses() {
        let (answer, u) = fake(vec![addr(1)]);
        *answer.lock().unwrap() = Err(anyhow::anyhow!("no DNS"));
        u.refresh();
        assert_eq!(u.all(), [addr(1)]);
        *answer.lock().unwrap() = Ok(vec![]);
        u.refresh();
        assert_eq!(u.all(), [addr(1)]);
    }

    #[test]
    fn a_name_without_addresses_is_an_error_at_start() {
        let resolve: Resolve = Box::new(|| Ok(vec![]));
        assert!(UpstreamAddrs::new(resolve).is_err());
    }
}
