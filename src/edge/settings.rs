//! Edge settings resolved from the command line.

use std::net::SocketAddr;
use std::time::Duration;

use m2m_primitive::Format;
use m2m_ws::handshake::HeadLimits;
use m2m_ws::handshake::subprotocol::OneM2mPolicy;
use m2m_ws::{DeflateConfig, ReceiverLimits};

/// When the upstream link carries `X-M2M-Origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginHeader {
    /// Once the device's AE-ID is known (from the handshake, its registration, or its `fr`); a
    /// registration on a link without it is followed by a relink with it (ACME needs this).
    Auto,
    /// Always, with the handshake's `X-M2M-Origin` or the registration's `fr`.
    Always,
    /// Never.
    Never,
}

impl std::str::FromStr for OriginHeader {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => Err(format!("{other:?}: expected auto, always or never")),
        }
    }
}

/// Everything a core needs to run sessions.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub upstream: SocketAddr,
    pub upstream_host: String,
    /// The host part alone (for CONNECT and TLS server names).
    pub upstream_host_only: String,
    /// wss://: how to verify the CSE.
    pub upstream_tls: Option<m2m_rt::ClientTls>,
    /// Reach the CSE through this HTTP proxy (CONNECT).
    pub upstream_proxy: Option<SocketAddr>,
    /// Local addresses upstream links connect from, round robin (empty: the kernel's choice).
    pub upstream_sources: Vec<std::net::IpAddr>,
    pub upstream_path: String,
    /// Subprotocols offered upstream, in order; the device's own serialization is offered first when
    /// it is in the list.
    pub upstream_protocols: Vec<String>,
    pub origin_header: OriginHeader,
    pub head: HeadLimits,
    pub frames: ReceiverLimits,
    pub deflate: Option<DeflateConfig>,
    pub policy: OneM2mPolicy,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub relink_backoff: Duration,
    pub max_in_flight: usize,
    pub max_queued: usize,
    /// `rvi` of responses the edge makes itself when the request had none.
    pub rvi: String,
    /// CONNECT targets (`host:port`) tunnelled as bytes besides the CSE target, which is always
    /// allowed and terminated by the edge.
    pub connect_allow: Vec<String>,
    /// Require `fr` to match the device's client-certificate identity.
    pub bind_identity: bool,
    /// Close device sessions that sent nothing for this long.
    pub idle_timeout: Option<Duration>,
    /// Device sessions per core; further devices get 503 (0: no limit besides file descriptors).
    pub max_devices_per_core: usize,
    /// The device listener speaks TLS (for the TLS handshake counters).
    pub device_tls: bool,
}

/// The serialization a subprotocol name stands for.
pub fn format_of(protocol: &str) -> Format {
    match m2m_ws::handshake::subprotocol::OneM2mSubprotocol::parse(protocol)
        .map(|p| p.serialization)
    {
        Some(m2m_ws::handshake::subprotocol::Serialization::Cbor) => Format::Cbor,
        Some(m2m_ws::handshake::subprotocol::Serialization::Xml) => Format::Xml,
        _ => Format::Json,
    }
}
