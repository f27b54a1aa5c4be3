//! The `m2m-edge` command line: parse, log, and run a mode built on the runtime (`crates/rt`) and
//! the protocol core (`crates/ws`, `crates/primitive`). A library function rather than `main` so
//! that `m2m-loadgen bench` can run the same edge as a child process of its own binary.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::{config, echo, edge, logging, tls_files};
use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use m2m_rt::{IoMode, ListenerConfig, RtConfig, Runtime};

/// oneM2M WebSocket edge front-end for IN-CSEs.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The edge: terminate device WebSocket sessions and relay them to the IN-CSE (passthrough mode).
    Run(Box<RunArgs>),
    /// WebSocket echo server on the runtime: the runtime's acceptance test and benchmark target.
    Echo(EchoArgs),
    /// Ask a running edge's admin listener whether it is healthy (exit 0) or not (exit 1): a
    /// container health check that needs no curl in the image.
    Health(HealthArgs),
}

#[derive(Debug, clap::Args)]
struct HealthArgs {
    /// The edge's admin listener.
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin: SocketAddr,
    /// /healthz (the process answers) or /readyz (it can serve devices).
    #[arg(long, default_value = "/healthz", value_parser = ["/healthz", "/readyz"])]
    path: String,
    /// Give up after this long.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// GET `path` from the admin listener; Ok when it answers 200.
fn health(args: HealthArgs) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&args.admin, args.timeout)
        .with_context(|| format!("connecting to {}", args.admin))?;
    s.set_read_timeout(Some(args.timeout))?;
    s.set_write_timeout(Some(args.timeout))?;
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        args.path, args.admin
    )?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let status = loop {
        let n = s.read(&mut buf)?;
        anyhow::ensure!(n > 0, "{} closed without an answer", args.admin);
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut rsp = httparse::Response::new(&mut headers);
        if rsp.parse(&head)?.is_complete() || head.len() > 8192 {
            break rsp.code.context("no status in the answer")?;
        }
    };
    anyhow::ensure!(
        status == 200,
        "{}{} answered {status}",
        args.admin,
        args.path
    );
    Ok(())
}

/// Options shared by every mode that runs the runtime.
#[derive(Debug, clap::Args)]
struct RuntimeArgs {
    /// I/O driver: io_uring when available (auto), or forced.
    #[arg(long, default_value = "auto")]
    io: IoMode,
    /// Worker threads, one event loop each (default: number of CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// Pin worker i to CPU i.
    #[arg(long)]
    pin: bool,
    /// Drain time after SIGTERM/SIGINT before remaining connections are closed, in ms.
    #[arg(long, default_value_t = 5000)]
    drain_ms: u64,
    /// Share the device port with other processes that set it too (SO_REUSEPORT, one socket per
    /// core): several edge processes on one port (the admin and notify ports stay each process's
    /// own). Without it a port in use is an error at start.
    #[arg(long)]
    reuse_port: bool,
}

#[derive(Debug, clap::Args)]
struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// PEM certificate chain: serve wss.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Negotiate permessage-deflate when the client offers it.
    #[arg(long)]
    deflate: bool,
    #[command(flatten)]
    limits: echo::EchoLimits,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// TOML file whose keys set the defaults of these options (see edge.example.toml).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Validate the configuration (files, certificates, upstream URL) and exit.
    #[arg(long)]
    check: bool,
    /// Device listener.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// The IN-CSE's WebSocket endpoint (ws://host:port/path).
    #[arg(long, default_value = "ws://127.0.0.1:8180/")]
    upstream: String,
    /// PEM CA bundle that a wss:// upstream's certificate must chain to.
    #[arg(long)]
    upstream_ca: Option<std::path::PathBuf>,
    /// Reach the CSE through this HTTP proxy (CONNECT host:port).
    #[arg(long)]
    upstream_proxy: Option<SocketAddr>,
    /// Local addresses upstream links connect from, round robin (a.b.c.d-a.b.c.e): about 28,000
    /// links per address can reach one CSE address
    #[arg(long)]
    upstream_source_addrs: Option<String>,
    /// Subprotocols offered to the CSE, in order (the device's serialization first when listed).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "oneM2M.json,oneM2M.R2.0.json,oneM2M.cbor,oneM2M.R2.0.cbor,oneM2M.xml,oneM2M.R2.0.xml"
    )]
    upstream_protocols: Vec<String>,
    /// When the upstream link carries X-M2M-Origin: auto, always or never.
    #[arg(long, default_value = "auto")]
    origin_header: edge::settings::OriginHeader,
    /// How devices reach the CSE: passthrough (one upstream link per device, bound to its AE-ID) or
    /// multiplex (--upstream-links links per core, opened with --edge-origin, shared by all devices).
    #[arg(long, default_value = "passthrough")]
    upstream_mode: edge::settings::UpstreamMode,
    /// Multiplex: upstream links per core (each device is pinned to one).
    #[arg(long, default_value_t = 1)]
    upstream_links: usize,
    /// Multiplex: the stem of the X-M2M-Origin the edge's links are opened with, as
    /// <stem>-<core>-<link> (CSEs differ in which originators they accept). Default:
    /// Cm2m-edge-<host>-<pid>, so that two edges in front of one CSE never share an originator (a CSE
    /// like ACME closes the older connection of an originator).
    #[arg(long)]
    edge_origin: Option<String>,
    /// Multiplex: a WebSocket listener for the CSE's requests to devices on shared links (the edge
    /// as their point of access: AE/remoteCSE poa "ws://default" is rewritten to --notify-url).
    #[arg(long)]
    notify_listen: Option<SocketAddr>,
    /// The URL the CSE reaches the notify listener at, put in devices' poa (default:
    /// ws://<notify-listen>/).
    #[arg(long, requires = "notify_listen")]
    notify_url: Option<String>,
    /// Who may connect to the notify listener: source addresses and/or CSE-IDs (X-M2M-Origin,
    /// starting with '/'), comma-separated (default: the upstream CSE's address, any CSE-ID).
    #[arg(long, value_delimiter = ',', requires = "notify_listen")]
    notify_allow: Vec<String>,
    /// PEM certificate chain: the notify listener speaks wss (then --notify-url defaults to wss://).
    #[arg(long, requires_all = ["notify_listen", "notify_tls_key"])]
    notify_tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --notify-tls-cert.
    #[arg(long, requires = "notify_tls_cert")]
    notify_tls_key: Option<std::path::PathBuf>,
    /// PEM CA bundle: the CSE must present a client certificate from it on the notify listener.
    #[arg(long, requires = "notify_tls_cert")]
    notify_client_ca: Option<std::path::PathBuf>,
    /// Unsent bytes a device connection may hold before it is closed (it stopped reading); an
    /// upstream link above it takes no new requests until it drains.
    #[arg(long, default_value_t = 4 << 20)]
    max_output_bytes: usize,
    /// Requests outstanding per upstream link (ACME loses back-to-back frames: keep 1 for it).
    #[arg(long, default_value_t = 1)]
    max_in_flight: usize,
    /// Requests queued per device while the link is busy or down.
    #[arg(long, default_value_t = 64)]
    max_queued: usize,
    /// Time to wait for the CSE's response before answering 4008, in ms.
    #[arg(long, default_value_t = 10_000)]
    request_timeout_ms: u64,
    /// Upstream link set-up must finish within this: TCP connect, the proxy's CONNECT answer, TLS
    /// and the WebSocket handshake, as one phase (units: 500ms, 3s, 1m).
    #[arg(long, default_value = "3s", value_parser = duration)]
    upstream_connect_timeout: Duration,
    /// Hold the CSE's requests (NOTIFYs…) for a registered device that is away this long, unless
    /// their own rqet says otherwise; the CSE is answered 1000 ACCEPTED (0: no holding, 5103).
    #[arg(long, default_value = "10m", value_parser = duration)]
    hold_ttl: Duration,
    /// Requests held per device (past it the oldest is dropped).
    #[arg(long, default_value_t = 100)]
    hold_max: usize,
    /// Bytes held per device (past it the oldest is dropped).
    #[arg(long, default_value_t = 256 << 10)]
    hold_max_bytes: usize,
    /// Bytes held per core for all devices (past it the oldest of any device is dropped).
    #[arg(long, default_value_t = 64 << 20)]
    hold_core_bytes: usize,
    /// WebSocket ping to a device or upstream link that sent nothing for this long (0: no pings).
    #[arg(long, default_value = "30s", value_parser = duration)]
    ping_interval: Duration,
    /// A device or link that answers nothing within this after a ping is closed (a link re-opened).
    #[arg(long, default_value = "10s", value_parser = duration)]
    ping_timeout: Duration,
    /// Wait before re-opening a lost upstream link, in ms.
    #[arg(long, default_value_t = 500)]
    relink_backoff_ms: u64,
    /// Negotiate permessage-deflate with devices that offer it.
    #[arg(long)]
    deflate: bool,
    /// Other CONNECT targets (host:port, comma-separated) to tunnel; the CSE target is always allowed.
    #[arg(long, value_delimiter = ',')]
    connect_allow: Vec<String>,
    /// PEM certificate chain: the device listener speaks wss.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// PEM CA bundle: devices must present a client certificate from it (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<std::path::PathBuf>,
    /// Require each device's fr to match its client certificate's identity (CN, else first SAN).
    #[arg(long, requires = "client_ca")]
    bind_identity: bool,
    /// Admin listener: /metrics (Prometheus), /healthz, /readyz.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Device sessions per core; further devices are answered 503 (0: only the fd limit applies).
    #[arg(long, default_value_t = 0)]
    max_devices_per_core: usize,
    #[command(flatten)]
    limits: echo::EchoLimits,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// A duration with units (`30s`, `10m`, `500ms`, `1h 30m`); a bare `0` is zero.
fn duration(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (say e.g. 30s, 10m, 500ms)"))
}

/// The upstream URL (`--upstream`), taken apart without DNS.
fn parse_upstream(url: &str) -> anyhow::Result<crate::wsurl::WsUrl> {
    crate::wsurl::WsUrl::parse(url).map_err(|e| anyhow::anyhow!("--upstream {e:#}"))
}

/// TLS toward a wss:// CSE, trusting the CAs in `ca`.
fn upstream_tls(host: &str, ca: Option<&std::path::Path>) -> anyhow::Result<m2m_rt::ClientTls> {
    use rustls::pki_types::pem::PemObject;
    let ca =
        ca.ok_or_else(|| anyhow::anyhow!("a wss:// upstream needs --upstream-ca (PEM CA bundle)"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
        .context("upstream host as a TLS server name")?;
    Ok(m2m_rt::ClientTls {
        config: std::sync::Arc::new(config),
        server_name,
    })
}

fn run_edge(args: RunArgs) -> anyhow::Result<()> {
    let sighup = tls_files::catch_sighup().context("catching SIGHUP")?;
    // Values from a config file bypass clap's `requires`; check the pairs here.
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        anyhow::bail!("tls_cert and tls_key go together");
    }
    if args.client_ca.is_some() && args.tls_cert.is_none() {
        anyhow::bail!("client_ca needs tls_cert and tls_key");
    }
    if args.bind_identity && args.client_ca.is_none() {
        anyhow::bail!("bind_identity needs client_ca");
    }
    let up = parse_upstream(&args.upstream)?;
    // `--check` validates without needing DNS: it says whether the name resolves here.
    let resolved = up.resolve();
    let upstream = match &resolved {
        Ok(addrs) => addrs[0],
        Err(_) if args.check => SocketAddr::from(([0, 0, 0, 0], up.port)),
        Err(e) => anyhow::bail!("--upstream {}: {e:#}", args.upstream),
    };
    if let Ok(addrs) = &resolved
        && addrs.len() > 1
    {
        tracing::info!(upstream = %args.upstream, addresses = ?addrs, using = %upstream, "the upstream name has several addresses");
    }
    let upstream_tls = if up.secure {
        Some(upstream_tls(&up.host, args.upstream_ca.as_deref())?)
    } else {
        None
    };
    let echo_settings = echo::EchoSettings::new(&args.limits, false);
    let relay = edge::settings::RelaySettings {
        mode: args.upstream_mode,
        upstream_links: args.upstream_links.max(1),
        edge_origin: args.edge_origin.clone().unwrap_or_else(default_edge_origin),
        upstream_host: up.authority.clone(),
        upstream_host_only: up.host.clone(),
        upstream_port: upstream.port(),
        upstream_addr: upstream,
        upstream_path: up.path.clone(),
        upstream_tls: upstream_tls.is_some(),
        upstream_proxy: args.upstream_proxy.is_some(),
        upstream_protocols: args.upstream_protocols.clone(),
        origin_header: args.origin_header,
        head: m2m_ws::handshake::HeadLimits {
            max_head_bytes: args.limits.max_handshake_bytes,
            ..Default::default()
        },
        frames: echo_settings.frame_limits(),
        deflate: args.deflate.then(m2m_ws::DeflateConfig::default),
        policy: m2m_ws::handshake::subprotocol::OneM2mPolicy::default(),
        handshake_timeout: Duration::from_millis(args.limits.handshake_timeout_ms),
        connect_timeout: args.upstream_connect_timeout,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        relink_backoff: Duration::from_millis(args.relink_backoff_ms),
        max_in_flight: args.max_in_flight,
        max_queued: args.max_queued,
        max_output_bytes: args.max_output_bytes,
        rvi: "3".into(),
        connect_allow: args.connect_allow.clone(),
        bind_identity: args.bind_identity,
        idle_timeout: (args.limits.idle_timeout_ms > 0)
            .then(|| Duration::from_millis(args.limits.idle_timeout_ms)),
        max_devices_per_core: args.max_devices_per_core,
        device_tls: args.tls_cert.is_some(),
        notify_url: args.notify_listen.map(|addr| {
            let scheme = if args.notify_tls_cert.is_some() {
                "wss"
            } else {
                "ws"
            };
            args.notify_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{addr}/"))
        }),
        notify_allow_addrs: args
            .notify_allow
            .iter()
            .filter(|a| !a.starts_with('/'))
            .map(|a| {
                a.parse().with_context(|| {
                    format!("notify_allow: {a:?} is neither an IP address nor a CSE-ID")
                })
            })
            .collect::<anyhow::Result<_>>()?,
        notify_allow_origins: args
            .notify_allow
            .iter()
            .filter(|a| a.starts_with('/'))
            .cloned()
            .collect(),
        hold: m2m_relay::HoldLimits {
            ttl: args.hold_ttl,
            max_per_device: args.hold_max,
            max_bytes_per_device: args.hold_max_bytes,
            max_bytes_per_core: args.hold_core_bytes,
        },
        ping_interval: (!args.ping_interval.is_zero()).then_some(args.ping_interval),
        ping_timeout: args.ping_timeout,
    };
    if args.upstream_mode == edge::settings::UpstreamMode::Multiplex && args.notify_listen.is_none()
    {
        tracing::warn!(
            "multiplex mode without --notify-listen: devices on shared links cannot receive requests of the CSE (NOTIFYs) unless the CSE sends them on the shared links"
        );
    }
    let admin_listener = args.admin.map(|_| 1);
    let notify_listener = args
        .notify_listen
        .map(|_| 1 + usize::from(args.admin.is_some()));
    let settings = edge::EdgeSettings {
        relay,
        upstream,
        upstream_tls,
        upstream_proxy: args.upstream_proxy,
        upstream_sources: args
            .upstream_source_addrs
            .as_deref()
            .map(crate::config::parse_source_range)
            .transpose()?
            .unwrap_or_default()
            .into_iter()
            .map(std::net::IpAddr::V4)
            .collect(),
        admin_listener,
        notify_listener,
        readiness: std::sync::Arc::new(edge::readiness::Readiness::default()),
    };
    // TLS files that SIGHUP reads again (for new connections).
    let mut reloadable = Vec::new();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let (r, tls) = tls_files::ReloadableTls::load(cert, key, args.client_ca.as_deref())?;
            reloadable.push(r);
            Some(tls)
        }
        _ => None,
    };
    if args.notify_tls_cert.is_some() != args.notify_tls_key.is_some() {
        anyhow::bail!("notify_tls_cert and notify_tls_key go together");
    }
    let notify_tls = match (&args.notify_tls_cert, &args.notify_tls_key) {
        (Some(cert), Some(key)) => {
            let (r, tls) =
                tls_files::ReloadableTls::load(cert, key, args.notify_client_ca.as_deref())?;
            reloadable.push(r);
            Some(tls)
        }
        _ => None,
    };
    if args.check {
        let resolution = match &resolved {
            Ok(addrs) => addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("does not resolve here: {e:#}"),
        };
        println!(
            "configuration OK: listen {} ({}), upstream {} ({resolution}), admin {}, io {:?}",
            args.listen,
            if settings_tls_label(&args) {
                "wss"
            } else {
                "ws"
            },
            args.upstream,
            args.admin.map_or("none".to_string(), |a| a.to_string()),
            args.runtime.io,
        );
        return Ok(());
    }
    let limit = m2m_rt::net::raise_fd_limit().context("raising RLIMIT_NOFILE")?;
    let config = runtime_config(
        &args.runtime,
        std::iter::once(ListenerConfig {
            addr: args.listen,
            tls,
        })
        .chain(args.admin.map(|addr| ListenerConfig { addr, tls: None }))
        .chain(args.notify_listen.map(|addr| ListenerConfig {
            addr,
            tls: notify_tls.clone(),
        }))
        .collect(),
    );
    let counters: std::sync::Arc<Vec<_>> = std::sync::Arc::new(
        (0..config.workers.max(1))
            .map(|_| std::sync::Arc::new(edge::metrics::CoreCounters::default()))
            .collect(),
    );
    let directory = std::sync::Arc::new(m2m_relay::Directory::default());
    edge::readiness::spawn(
        settings.readiness.clone(),
        settings.upstream_proxy.unwrap_or(settings.upstream),
        args.upstream_connect_timeout,
        counters.clone(),
    )?;
    let rt = Runtime::start(config.clone(), move |core| {
        edge::EdgeApp::new(settings.clone(), counters.clone(), directory.clone(), core)
    })
    .context("starting the runtime")?;
    tracing::info!(
        listen = %rt.local_addrs()[0],
        upstream = %args.upstream,
        driver = rt.driver().name(),
        workers = config.workers,
        max_devices = limit.saturating_sub(64) / 2,
        "edge ready"
    );
    m2m_rt::stop_on_signals(rt.stop_handle())?;
    tls_files::reload_on_sighup(sighup, reloadable)?;
    #[cfg(feature = "pprof")]
    let profiling = crate::profiling::start();
    rt.join().context("runtime")?;
    #[cfg(feature = "pprof")]
    crate::profiling::finish(profiling);
    tracing::info!("stopped");
    Ok(())
}

/// `Cm2m-edge-<host>-<pid>`: unique per edge process on a network (pods share pid 1, not host names).
fn default_edge_origin() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("Cm2m-edge-{host}-{}", std::process::id())
}

fn settings_tls_label(args: &RunArgs) -> bool {
    args.tls_cert.is_some()
}

fn runtime_config(args: &RuntimeArgs, listeners: Vec<ListenerConfig>) -> RtConfig {
    let mut config = RtConfig {
        io: args.io,
        pin: args.pin,
        listeners,
        drain: Duration::from_millis(args.drain_ms),
        reuse_port: args.reuse_port,
        ..RtConfig::default()
    };
    if let Some(w) = args.workers {
        config.workers = w;
    }
    config
}

fn run_echo(args: EchoArgs) -> anyhow::Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_files::server_config(cert, key, None)?),
        _ => None,
    };
    let limit = m2m_rt::net::raise_fd_limit().context("raising RLIMIT_NOFILE")?;
    let config = runtime_config(
        &args.runtime,
        vec![ListenerConfig {
            addr: args.listen,
            tls,
        }],
    );
    let settings = echo::EchoSettings::new(&args.limits, args.deflate);
    let rt = Runtime::start(config.clone(), move |_| {
        echo::EchoApp::new(settings.clone())
    })
    .context("starting the runtime")?;
    tracing::info!(
        listen = %rt.local_addrs()[0],
        driver = rt.driver().name(),
        workers = config.workers,
        fd_limit = limit,
        max_connections = limit.saturating_sub(64),
        "echo server ready"
    );
    m2m_rt::stop_on_signals(rt.stop_handle())?;
    rt.join().context("runtime")?;
    tracing::info!("stopped");
    Ok(())
}

fn parse_cli(args: Vec<std::ffi::OsString>) -> anyhow::Result<Cli> {
    let mut cmd = Cli::command();
    if let Some(path) = config::config_path(&args) {
        cmd = config::apply(cmd, &path)?;
    }
    let matches = cmd.get_matches_from(args);
    Ok(Cli::from_arg_matches(&matches)?)
}

/// Run the `m2m-edge` command line; `args` starts with the program name.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = match parse_cli(args.into_iter().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("m2m-edge: {e:#}");
            return ExitCode::from(2);
        }
    };
    logging::init(&cli.log_format);
    let result = match cli.command {
        Command::Echo(args) => run_echo(args),
        Command::Run(args) => run_edge(*args),
        Command::Health(args) => health(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("m2m-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
