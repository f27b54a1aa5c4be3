//! What the engine needs to know, resolved by the edge's CLI. Addresses, TLS configuration and
//! source addresses stay with the runtime adapter: the engine only says "open a link".

use std::time::Duration;

use m2m_primitive::Format;
use m2m_ws::handshake::HeadLimits;
use m2m_ws::handshake::subprotocol::OneM2mPolicy;
use m2m_ws::{DeflateConfig, ReceiverLimits};

/// When a passthrough link carries `X-M2M-Origin`.
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

impl std::fmt::Display for OriginHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Always => "always",
            Self::Never => "never",
        })
    }
}

/// How device sessions reach the CSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamMode {
    /// One upstream link per device session, bound to the device's AE-ID (CSEs that bind one
    /// originator per connection).
    Passthrough,
    /// A few links per core, opened with the edge's own originator, carrying every device's
    /// primitives (the CSE holds `workers × upstream_links` sockets, not one per device).
    Multiplex,
}

impl std::str::FromStr for UpstreamMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "passthrough" => Ok(Self::Passthrough),
            "multiplex" => Ok(Self::Multiplex),
            other => Err(format!("{other:?}: expected passthrough or multiplex")),
        }
    }
}

impl std::fmt::Display for UpstreamMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Passthrough => "passthrough",
            Self::Multiplex => "multiplex",
        })
    }
}

/// Everything a core's engine needs.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub mode: UpstreamMode,
    /// Multiplex: links per core.
    pub upstream_links: usize,
    /// Multiplex: the `X-M2M-Origin` the edge's links are opened with.
    pub edge_origin: String,
    /// `host[:port]` of the CSE as written (Host header, CONNECT authority check).
    pub upstream_host: String,
    /// The host part alone (CONNECT request).
    pub upstream_host_only: String,
    pub upstream_port: u16,
    /// The CSE's resolved addresses (a CONNECT naming one literally is terminated by the edge; by
    /// default the notify listener admits them). The adapter keeps them current
    /// ([`crate::Engine::set_upstream_addresses`]).
    pub upstream_addrs: Vec<std::net::SocketAddr>,
    pub upstream_path: String,
    /// wss:// toward the CSE (through a proxy, TLS starts after the CONNECT answer).
    pub upstream_tls: bool,
    /// An HTTP proxy sits in front of the CSE: send CONNECT first.
    pub upstream_proxy: bool,
    /// Subprotocols offered upstream, in order; in passthrough the device's own serialization is
    /// offered first when it is in the list.
    pub upstream_protocols: Vec<String>,
    pub origin_header: OriginHeader,
    pub head: HeadLimits,
    pub frames: ReceiverLimits,
    pub deflate: Option<DeflateConfig>,
    pub policy: OneM2mPolicy,
    pub handshake_timeout: Duration,
    /// Upstream set-up (TCP, CONNECT answer, TLS, WebSocket handshake) must finish within this.
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub relink_backoff: Duration,
    /// Requests outstanding per upstream link.
    pub max_in_flight: usize,
    /// Requests queued per device while its link is busy or down.
    pub max_queued: usize,
    /// Unsent bytes a device connection may hold before it is closed (it stopped reading); a link
    /// above it takes no new requests until it drains.
    pub max_output_bytes: usize,
    /// `rvi` of responses the edge makes itself when the request had none.
    pub rvi: String,
    /// CONNECT targets (`host:port`) tunnelled as bytes besides the CSE target.
    pub connect_allow: Vec<String>,
    /// Require `fr` to match the device's client-certificate identity.
    pub bind_identity: bool,
    /// Close device sessions that sent nothing for this long.
    pub idle_timeout: Option<Duration>,
    /// A frame (or fragmented message) a device began must be complete within this (slowloris
    /// below the handshake: a byte now and then keeps the idle timer from firing).
    pub frame_timeout: Option<Duration>,
    /// Device sessions per core; further devices get 503 (0: no limit).
    pub max_devices_per_core: usize,
    /// The device listener speaks TLS (TLS handshake counters).
    pub device_tls: bool,
    /// Multiplex: the URL of the edge's notify listener as the CSE reaches it, put in devices'
    /// `poa` (none: no notify listener, no `poa` rewrite).
    pub notify_url: Option<String>,
    /// Source addresses allowed on the notify listener (empty: the CSE's address only).
    pub notify_allow_addrs: Vec<std::net::IpAddr>,
    /// `X-M2M-Origin` values (CSE-IDs) allowed on the notify listener (empty: any).
    pub notify_allow_origins: Vec<String>,
    /// Holding the CSE's requests for devices that are away (`hold` module).
    pub hold: crate::hold::HoldLimits,
    /// WebSocket pings to devices and on upstream links this often (none: no pings).
    pub ping_interval: Option<Duration>,
    /// A connection that has not answered a ping within this is closed (a link is re-opened).
    pub ping_timeout: Duration,
}

impl RelaySettings {
    /// Take over from `new` what a reload may change (limits, timeouts for new connections, the
    /// CONNECT allow-list, deflate); what shapes running state (mode, links, upstream, holding,
    /// pings) stays as it started.
    pub fn take_reloadable(&mut self, new: &RelaySettings) {
        self.head = new.head;
        self.frames = new.frames;
        self.deflate = new.deflate;
        self.handshake_timeout = new.handshake_timeout;
        self.connect_timeout = new.connect_timeout;
        self.request_timeout = new.request_timeout;
        self.relink_backoff = new.relink_backoff;
        self.max_queued = new.max_queued;
        self.max_output_bytes = new.max_output_bytes;
        self.connect_allow = new.connect_allow.clone();
        self.idle_timeout = new.idle_timeout;
        self.frame_timeout = new.frame_timeout;
        self.max_devices_per_core = new.max_devices_per_core;
    }

    /// Defaults for a CSE at `addr` (tests and examples; the CLI sets every field).
    pub fn for_upstream(addr: std::net::SocketAddr) -> Self {
        Self {
            mode: UpstreamMode::Passthrough,
            upstream_links: 1,
            edge_origin: "Cm2m-edge".into(),
            upstream_host: addr.to_string(),
            upstream_host_only: addr.ip().to_string(),
            upstream_port: addr.port(),
            upstream_addrs: vec![addr],
            upstream_path: "/".into(),
            upstream_tls: false,
            upstream_proxy: false,
            upstream_protocols: vec!["oneM2M.json".into(), "oneM2M.cbor".into()],
            origin_header: OriginHeader::Auto,
            head: HeadLimits::default(),
            frames: ReceiverLimits::default(),
            deflate: None,
            policy: OneM2mPolicy::default(),
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            relink_backoff: Duration::from_millis(500),
            max_in_flight: 1,
            max_queued: 64,
            max_output_bytes: 4 << 20,
            rvi: "3".into(),
            connect_allow: Vec::new(),
            bind_identity: false,
            idle_timeout: None,
            frame_timeout: Some(Duration::from_secs(30)),
            max_devices_per_core: 0,
            device_tls: false,
            notify_url: None,
            notify_allow_addrs: Vec::new(),
            notify_allow_origins: Vec::new(),
            hold: crate::hold::HoldLimits::default(),
            ping_interval: None,
            ping_timeout: Duration::from_secs(10),
        }
    }
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

/// The index of a serialization in the per-serialization counters (json, cbor, xml).
pub fn format_index(format: Format) -> usize {
    match format {
        Format::Json => 0,
        Format::Cbor => 1,
        Format::Xml => 2,
    }
}
