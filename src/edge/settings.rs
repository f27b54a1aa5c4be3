//! Edge settings resolved from the command line: the relay engine's own, plus what only the runtime
//! adapter needs (addresses, TLS configuration, source addresses).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub use m2m_relay::settings::{RelaySettings, UpstreamMode};

/// Everything a core needs to run sessions.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub relay: RelaySettings,
    /// The CSE's addresses (failover, re-resolution).
    pub upstream: Arc<super::upstream::UpstreamAddrs>,
    /// wss://: how to verify the CSE.
    pub upstream_tls: Option<m2m_rt::ClientTls>,
    /// Reach the CSE through this HTTP proxy (CONNECT).
    pub upstream_proxy: Option<SocketAddr>,
    /// Local addresses upstream links connect from, round robin (empty: the kernel's choice).
    pub upstream_sources: Vec<IpAddr>,
    /// The runtime listener number of the admin listener, if any.
    pub admin_listener: Option<usize>,
    /// The runtime listener number of the notify listener, if any.
    pub notify_listener: Option<usize>,
    /// Whether the CSE is reachable (for `/readyz`), kept by a probe thread.
    pub readiness: Arc<super::readiness::Readiness>,
    /// Relay settings as reloaded (taken at the next accept when the generation moved).
    pub hot: Arc<crate::reload::HotRelay>,
    /// `POST /reload` on the admin listener.
    pub reloader: Arc<crate::reload::Reloader>,
    /// Who may `POST /reload`.
    pub reload_access: crate::config::ReloadAccess,
}
