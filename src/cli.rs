//! The `m2m-edge` command line: parse, log, and run a mode built on the runtime (`crates/rt`) and
//! the protocol core (`crates/ws`, `crates/primitive`). A library function rather than `main` so
//! that `m2m-loadgen bench` can run the same edge as a child process of its own binary.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, EdgeConfig};
use crate::{echo, edge, logging, reload, tls_files};
use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use m2m_rt::{ListenerConfig, RtConfig, Runtime};
use std::sync::Arc;

/// oneM2M WebSocket edge front-end for IN-CSEs.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The edge: terminate device WebSocket sessions and relay them to the IN-CSE.
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
    runtime: config::Runtime,
    #[command(flatten)]
    log: config::Log,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// TOML configuration file (every key: edge.example.toml). The environment (M2M_EDGE_*) and
    /// flags override its keys, in that order.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Validate the configuration (files, certificates, upstream URL), print it as TOML and exit.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    edge: EdgeConfig,
}

/// The upstream URL (`--upstream`), taken apart without DNS.
fn parse_upstream(url: &str) -> anyhow::Result<crate::wsurl::WsUrl> {
    crate::wsurl::WsUrl::parse(url).map_err(|e| anyhow::anyhow!("upstream.url: {e:#}"))
}

/// TLS toward a wss:// CSE, trusting the CAs in `ca`.
fn upstream_tls(host: &str, ca: Option<&std::path::Path>) -> anyhow::Result<m2m_rt::ClientTls> {
    use rustls::pki_types::pem::PemObject;
    let ca = ca.ok_or_else(|| {
        anyhow::anyhow!("a wss:// upstream needs upstream.ca (--upstream-ca, a PEM CA bundle)")
    })?;
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

/// How the upstream host's addresses are found: `upstream.addresses` when given, else its name
/// resolved (at start, every `upstream.resolve_interval`, after a failed connect).
fn resolver(c: &EdgeConfig, up: &crate::wsurl::WsUrl) -> edge::upstream::Resolve {
    let fixed = c.upstream.addresses.clone();
    let up = up.clone();
    if fixed.is_empty() {
        Box::new(move || up.resolve())
    } else {
        Box::new(move || Ok(fixed.clone()))
    }
}

/// Pairs of keys that go together (a file or the environment bypass clap's `requires`).
fn check_pairs(c: &EdgeConfig) -> anyhow::Result<()> {
    if c.listen.tls_cert.is_some() != c.listen.tls_key.is_some() {
        anyhow::bail!("listen.tls_cert and listen.tls_key go together");
    }
    if c.listen.client_ca.is_some() && c.listen.tls_cert.is_none() {
        anyhow::bail!("listen.client_ca needs listen.tls_cert and listen.tls_key");
    }
    if c.listen.bind_identity && c.listen.client_ca.is_none() {
        anyhow::bail!("listen.bind_identity needs listen.client_ca");
    }
    if c.notify.tls_cert.is_some() != c.notify.tls_key.is_some() {
        anyhow::bail!("notify.tls_cert and notify.tls_key go together");
    }
    if c.notify.client_ca.is_some() && c.notify.tls_cert.is_none() {
        anyhow::bail!("notify.client_ca needs notify.tls_cert and notify.tls_key");
    }
    let notify_only =
        c.notify.url.is_some() || !c.notify.allow.is_empty() || c.notify.tls_cert.is_some();
    if notify_only && c.notify.listen.is_none() {
        anyhow::bail!("notify.url, notify.allow and notify.tls_cert need notify.listen");
    }
    if !c.upstream.addresses.is_empty() && c.upstream.proxy.is_some() {
        anyhow::bail!(
            "upstream.addresses and upstream.proxy exclude each other: through a proxy, the proxy resolves the CSE's name"
        );
    }
    if c.upstream.links == 0 {
        anyhow::bail!("upstream.links must be at least 1");
    }
    if c.upstream.max_in_flight == 0 {
        anyhow::bail!("upstream.max_in_flight must be at least 1");
    }
    Ok(())
}

/// The relay engine's settings for configuration `c`, the CSE at `up` with addresses `addrs`
/// (at start, and again at each reload to validate and apply what may change).
fn relay_settings(
    c: &EdgeConfig,
    up: &crate::wsurl::WsUrl,
    addrs: &[SocketAddr],
) -> anyhow::Result<edge::settings::RelaySettings> {
    check_pairs(c)?;
    let first = addrs[0];
    let limits = echo::EchoLimits::from(&c.limits);
    let echo_settings = echo::EchoSettings::new(&limits, false);
    let notify_allow_addrs: Vec<std::net::IpAddr> = c
        .notify
        .allow
        .iter()
        .filter(|a| !a.starts_with('/'))
        .map(|a| {
            a.parse().with_context(|| {
                format!("notify.allow: {a:?} is neither an IP address nor a CSE-ID")
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(edge::settings::RelaySettings {
        mode: c.upstream.mode,
        upstream_links: c.upstream.links.max(1),
        edge_origin: c
            .upstream
            .edge_origin
            .clone()
            .unwrap_or_else(default_edge_origin),
        upstream_host: up.authority.clone(),
        upstream_host_only: up.host.clone(),
        upstream_port: first.port(),
        upstream_addrs: addrs.to_vec(),
        upstream_path: up.path.clone(),
        upstream_tls: up.secure,
        upstream_proxy: c.upstream.proxy.is_some(),
        upstream_protocols: c.upstream.protocols.clone(),
        origin_header: c.upstream.origin_header,
        head: m2m_ws::handshake::HeadLimits {
            max_head_bytes: c.limits.max_handshake_bytes,
            ..Default::default()
        },
        frames: echo_settings.frame_limits(),
        deflate: c.listen.deflate.then(m2m_ws::DeflateConfig::default),
        policy: m2m_ws::handshake::subprotocol::OneM2mPolicy::default(),
        handshake_timeout: c.limits.handshake_timeout,
        connect_timeout: c.upstream.connect_timeout,
        request_timeout: c.upstream.request_timeout,
        relink_backoff: c.upstream.relink_backoff,
        max_in_flight: c.upstream.max_in_flight,
        max_queued: c.upstream.max_queued,
        max_output_bytes: c.limits.max_output_bytes,
        rvi: "3".into(),
        connect_allow: c.listen.connect_allow.clone(),
        bind_identity: c.listen.bind_identity,
        idle_timeout: (!c.limits.idle_timeout.is_zero()).then_some(c.limits.idle_timeout),
        frame_timeout: (!c.limits.frame_timeout.is_zero()).then_some(c.limits.frame_timeout),
        max_devices_per_core: c.limits.max_devices_per_core,
        device_tls: c.listen.tls_cert.is_some(),
        notify_url: c.notify.listen.map(|addr| {
            let scheme = if c.notify.tls_cert.is_some() {
                "wss"
            } else {
                "ws"
            };
            c.notify
                .url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{addr}/"))
        }),
        notify_allow_addrs,
        notify_allow_origins: c
            .notify
            .allow
            .iter()
            .filter(|a| a.starts_with('/'))
            .cloned()
            .collect(),
        hold: m2m_relay::HoldLimits {
            ttl: c.hold.ttl,
            max_per_device: c.hold.max,
            max_bytes_per_device: c.hold.max_bytes,
            max_bytes_per_core: c.hold.core_bytes,
        },
        ping_interval: (!c.upstream.ping_interval.is_zero()).then_some(c.upstream.ping_interval),
        ping_timeout: c.upstream.ping_timeout,
    })
}

/// How `run` was started: what a reload reads again.
struct Startup {
    file: Option<std::path::PathBuf>,
    matches: clap::ArgMatches,
    check: bool,
    log: logging::LevelHandle,
}

fn run_edge(c: EdgeConfig, start: Startup) -> anyhow::Result<()> {
    let sighup = tls_files::catch_sighup().context("catching SIGHUP")?;
    check_pairs(&c)?;
    let up = parse_upstream(&c.upstream.url)?;
    // `--check` validates without needing DNS: it says whether the name resolves here.
    let resolved = resolver(&c, &up)();
    let addrs = match &resolved {
        Ok(addrs) => addrs.clone(),
        Err(_) if start.check => vec![SocketAddr::from(([0, 0, 0, 0], up.port))],
        Err(e) => anyhow::bail!("upstream.url {}: {e:#}", c.upstream.url),
    };
    if addrs.len() > 1 {
        tracing::info!(upstream = %c.upstream.url, addresses = ?addrs, "the upstream name has several addresses: links fail over between them");
    }
    let upstream_tls = if up.secure {
        Some(upstream_tls(&up.host, c.upstream.ca.as_deref())?)
    } else {
        None
    };
    // /readyz opens a WebSocket the way links do.
    let probe_target = edge::readiness::Target {
        host: up.host.clone(),
        port: up.port,
        authority: up.authority.clone(),
        path: up.path.clone(),
        protocols: c.upstream.protocols.clone(),
        tls: upstream_tls.clone(),
    };
    let relay = relay_settings(&c, &up, &addrs)?;
    if c.upstream.mode == edge::settings::UpstreamMode::Multiplex && c.notify.listen.is_none() {
        tracing::warn!(
            "multiplex mode without --notify-listen: devices on shared links cannot receive requests of the CSE (NOTIFYs) unless the CSE sends them on the shared links"
        );
    }
    // TLS files that a reload reads again (for new connections).
    let mut reloadable = Vec::new();
    let tls = match (&c.listen.tls_cert, &c.listen.tls_key) {
        (Some(cert), Some(key)) => {
            let (r, tls) =
                tls_files::ReloadableTls::load(cert, key, c.listen.client_ca.as_deref())?;
            reloadable.push(r);
            Some(tls)
        }
        _ => None,
    };
    let notify_tls = match (&c.notify.tls_cert, &c.notify.tls_key) {
        (Some(cert), Some(key)) => {
            let (r, tls) =
                tls_files::ReloadableTls::load(cert, key, c.notify.client_ca.as_deref())?;
            reloadable.push(r);
            Some(tls)
        }
        _ => None,
    };
    let upstream_sources = c
        .upstream
        .source_addrs
        .as_deref()
        .map(config::parse_source_range)
        .transpose()
        .context("upstream.source_addrs")?
        .unwrap_or_default()
        .into_iter()
        .map(std::net::IpAddr::V4)
        .collect();
    if start.check {
        let resolution = match &resolved {
            Ok(addrs) => addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("does not resolve here: {e:#}"),
        };
        println!(
            "# configuration OK: listen {} ({}), upstream {} ({resolution}), admin {}, io {}\n{}",
            c.listen.address,
            if c.listen.tls_cert.is_some() {
                "wss"
            } else {
                "ws"
            },
            c.upstream.url,
            c.admin
                .address
                .map_or("none".to_string(), |a| a.to_string()),
            c.runtime.io,
            c.to_toml(),
        );
        return Ok(());
    }
    let limit = m2m_rt::net::raise_fd_limit().context("raising RLIMIT_NOFILE")?;
    let mut config = runtime_config(
        &c.runtime,
        std::iter::once(ListenerConfig {
            addr: c.listen.address,
            tls,
        })
        .chain(
            c.admin
                .address
                .map(|addr| ListenerConfig { addr, tls: None }),
        )
        .chain(c.notify.listen.map(|addr| ListenerConfig {
            addr,
            tls: notify_tls.clone(),
        }))
        .collect(),
    );
    // Listener 1, the admin one: probes during a drain are answered (503 "draining"), not refused.
    config.open_while_draining = c.admin.address.map(|_| 1).into_iter().collect();
    let counters: Arc<Vec<_>> = Arc::new(
        (0..config.workers.max(1))
            .map(|_| Arc::new(edge::metrics::CoreCounters::default()))
            .collect(),
    );
    let upstream = {
        let resolve = resolver(&c, &up);
        Arc::new(edge::upstream::UpstreamAddrs::with(addrs.clone(), resolve))
    };
    let hot = Arc::new(reload::HotRelay::new(relay.clone()));
    let reloader = {
        let (up, addrs) = (up.clone(), addrs.clone());
        Arc::new(reload::Reloader {
            file: start.file,
            matches: start.matches,
            started: c.clone(),
            current: std::sync::Mutex::new(c.clone()),
            tls: reloadable,
            relay: hot.clone(),
            build_relay: Box::new(move |c| relay_settings(c, &up, &addrs)),
            log: start.log,
            busy: std::sync::Mutex::new(()),
        })
    };
    let settings = edge::EdgeSettings {
        relay,
        upstream: upstream.clone(),
        upstream_tls,
        upstream_proxy: c.upstream.proxy,
        upstream_sources,
        admin_listener: c.admin.address.map(|_| 1),
        notify_listener: c
            .notify
            .listen
            .map(|_| 1 + usize::from(c.admin.address.is_some())),
        readiness: Arc::new(edge::readiness::Readiness::default()),
        hot,
        reloader: reloader.clone(),
        reload_access: c.admin.reload,
    };
    let directory = Arc::new(m2m_relay::Directory::default());
    edge::readiness::spawn(edge::readiness::Probe {
        readiness: settings.readiness.clone(),
        upstream,
        proxy: c.upstream.proxy,
        timeout: c.upstream.connect_timeout,
        resolve_interval: c.upstream.resolve_interval,
        counters: counters.clone(),
        target: probe_target,
    })?;
    let rt = Runtime::start(config.clone(), move |core| {
        edge::EdgeApp::new(settings.clone(), counters.clone(), directory.clone(), core)
    })
    .context("starting the runtime")?;
    tracing::info!(
        listen = %rt.local_addrs()[0],
        upstream = %c.upstream.url,
        driver = rt.driver().name(),
        workers = config.workers,
        // A descriptor per device in multiplex, two in passthrough (its own link).
        max_devices = limit.saturating_sub(64)
            / if c.upstream.mode == edge::settings::UpstreamMode::Multiplex {
                1
            } else {
                2
            },
        "edge ready"
    );
    m2m_rt::stop_on_signals(rt.stop_handle())?;
    reloader.on_sighup(sighup)?;
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

fn runtime_config(args: &config::Runtime, listeners: Vec<ListenerConfig>) -> RtConfig {
    let mut config = RtConfig {
        io: args.io,
        pin: args.pin,
        listeners,
        drain: args.drain,
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

/// Run the `m2m-edge` command line; `args` starts with the program name.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let cmd = config::with_env_all(Cli::command());
    let matches = match cmd.clone().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => {
            let blame = config::blame_environment(&e, &cmd, &args);
            let _ = e.print();
            if let Some(blame) = blame {
                eprintln!("note: {blame}");
            }
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let fail = |e: anyhow::Error, code: u8| {
        eprintln!("m2m-edge: {e:#}");
        ExitCode::from(code)
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Echo(args) => {
            let echo = matches.subcommand_matches("echo").expect("echo");
            let level = match echo.value_source("log.level") {
                Some(clap::parser::ValueSource::DefaultValue) => match config::rust_log() {
                    Ok(level) => level.unwrap_or_else(|| args.log.level.clone()),
                    Err(e) => return fail(e, 2),
                },
                _ => args.log.level.clone(),
            };
            match logging::init(args.log.format, &level) {
                Ok(_) => run_echo(args),
                Err(e) => return fail(anyhow::anyhow!(e), 2),
            }
        }
        Command::Health(args) => health(args),
        Command::Run(args) => {
            let run = matches.subcommand_matches("run").expect("run").clone();
            let (c, origins) = match config::resolve_traced(args.config.as_deref(), &run) {
                Ok(c) => c,
                Err(e) => return fail(e, 2),
            };
            let log = match logging::init(c.log.format, &c.log.level) {
                Ok(log) => log,
                Err(e) => return fail(origins.explain(anyhow::anyhow!(e)), 2),
            };
            // Errors that name keys say where those keys were set.
            run_edge(
                c,
                Startup {
                    file: args.config.clone(),
                    matches: run,
                    check: args.check,
                    log,
                },
            )
            .map_err(|e| origins.explain(e))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reloader over the default configuration, as `run` builds it (no file, no TLS).
    fn reloader(log: logging::LevelHandle) -> reload::Reloader {
        let c = EdgeConfig::default();
        let up = parse_upstream(&c.upstream.url).unwrap();
        let addrs = vec![SocketAddr::from(([127, 0, 0, 1], up.port))];
        let relay = relay_settings(&c, &up, &addrs).unwrap();
        let matches = Cli::command()
            .try_get_matches_from(["m2m-edge", "run"])
            .unwrap()
            .subcommand_matches("run")
            .unwrap()
            .clone();
        reload::Reloader {
            file: None,
            matches,
            started: c.clone(),
            current: std::sync::Mutex::new(c),
            tls: Vec::new(),
            relay: Arc::new(reload::HotRelay::new(relay)),
            build_relay: Box::new(move |c| relay_settings(c, &up, &addrs)),
            log,
            busy: std::sync::Mutex::new(()),
        }
    }

    #[test]
    fn a_reload_while_another_runs_is_refused_and_one_after_it_runs() {
        let r = reloader(Arc::new(|_| Ok(())));
        let generation = r.relay.generation();
        {
            let _running = r.busy.lock().unwrap();
            let refused = r.reload().unwrap_err();
            assert!(refused.contains("in progress"), "{refused}");
            assert_eq!(r.relay.generation(), generation, "nothing applied");
        }
        let report = r.reload().unwrap();
        assert!(report.starts_with("reloaded: "), "{report}");
        assert_eq!(r.relay.generation(), generation + 1);
    }

    #[test]
    fn a_log_level_the_subscriber_refuses_refuses_the_whole_reload() {
        // The level is applied first, before anything commits.
        let mut r = reloader(Arc::new(|_| Err("refused by the subscriber".into())));
        let file = std::env::temp_dir().join(format!("m2m-cli-reload-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            "[log]\nlevel = \"debug\"\n[limits]\nmax_frame_bytes = 64\n",
        )
        .unwrap();
        r.file = Some(file.clone());
        let generation = r.relay.generation();
        let outcome = r.reload();
        let _ = std::fs::remove_file(&file);
        assert!(outcome.unwrap_err().contains("refused by the subscriber"));
        assert_eq!(
            r.relay.generation(),
            generation,
            "no relay settings published"
        );
        let current = r.current.lock().unwrap();
        assert_eq!(
            (current.log.level.as_str(), current.limits.max_frame_bytes),
            ("info", EdgeConfig::default().limits.max_frame_bytes)
        );
    }
}
