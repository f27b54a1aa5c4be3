//! Edge settings resolved from the command line: the relay engine's own, plus what only the runtime
//! adapter needs (addresses, TLS configuration, source addresses).

use std::net::{IpAddr, SocketAddr};

pub use m2m_relay::settings::{OriginHeader, RelaySettings, UpstreamMode};

/// Everything a core needs to run sessions.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub relay: RelaySettings,
    pub upstream: SocketAddr,
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
    pub readiness: std::sync::Arc<super::readiness::Readiness>,
}
