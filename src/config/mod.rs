//! The edge's configuration: one typed struct, [`EdgeConfig`], that the TOML file, the environment
//! and the command line fill, in that order of precedence (a flag beats `M2M_EDGE_*`, which beats
//! the file, which beats the default). Each field is declared once, with its doc (the `--help`
//! text), its flag, its default and its type; the file's key is `[section] field`, the variable
//! `M2M_EDGE_<SECTION>_<FIELD>`. Values are read the same way everywhere: durations with units
//! ([`units`]), enums by name, lists as TOML arrays or comma-separated text.
//!
//! Why not the file as clap defaults (as before): errors then named flags, not the file's key and
//! line, and the file could not say what the flags cannot. Now the file is deserialized on its own
//! (`deny_unknown_fields`: a typo is an error naming the line), and only the values that came from
//! the command line or the environment (clap's value source) are laid over it.

pub mod origin;
pub mod units;

pub use origin::{Origin, Origins};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgAction, FromArgMatches};
use serde::{Deserialize, Serialize};

use m2m_relay::settings::{OriginHeader, UpstreamMode};
use m2m_rt::IoMode;

/// The prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "M2M_EDGE_";

/// Variables with the prefix that are not configuration keys (read elsewhere).
const ENV_NOT_KEYS: &[&str] = &["M2M_EDGE_PPROF"];

/// Every option of `m2m-edge run` that the file, the environment and flags can set.
#[derive(Debug, Clone, PartialEq, Default, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    #[command(flatten)]
    pub listen: Listen,
    #[command(flatten)]
    pub upstream: Upstream,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub hold: Hold,
    #[command(flatten)]
    pub runtime: Runtime,
    #[command(flatten)]
    pub admin: Admin,
    #[command(flatten)]
    pub notify: Notify,
    #[command(flatten)]
    pub log: Log,
}

/// The defaults of a section are its flags' defaults (declared once, on the flag).
macro_rules! defaults_from_flags {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                use clap::Args;
                let cmd = <$t>::augment_args(clap::Command::new("defaults").no_binary_name(true));
                let m = cmd
                    .try_get_matches_from(std::iter::empty::<String>())
                    .expect("every flag has a default or is optional");
                <$t>::from_arg_matches(&m).expect("defaults parse")
            }
        }
    )*};
}
defaults_from_flags!(Listen, Upstream, Limits, Hold, Runtime, Admin, Notify, Log);

/// `[listen]`: the device listener.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// Device listener address (ws://, or wss:// with --tls-cert and --tls-key).
    #[arg(
        id = "listen.address",
        long = "listen",
        default_value = "127.0.0.1:9000"
    )]
    pub address: SocketAddr,
    /// PEM certificate chain: the device listener speaks wss (reloaded on SIGHUP).
    #[arg(id = "listen.tls_cert", long = "tls-cert")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(id = "listen.tls_key", long = "tls-key")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: devices must present a client certificate from it (mutual TLS).
    #[arg(id = "listen.client_ca", long = "client-ca")]
    pub client_ca: Option<PathBuf>,
    /// Require each device's fr to match its client certificate's identity (CN, else first SAN).
    #[arg(id = "listen.bind_identity", long = "bind-identity", action = ArgAction::Set,
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub bind_identity: bool,
    /// Negotiate permessage-deflate with devices that offer it (costs CPU and ~100 KiB a session).
    #[arg(id = "listen.deflate", long = "deflate", action = ArgAction::Set,
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub deflate: bool,
    /// Other CONNECT targets (host:port, comma-separated) to tunnel; the CSE target is always
    /// allowed (and terminated by the edge).
    #[arg(
        id = "listen.connect_allow",
        long = "connect-allow",
        value_delimiter = ','
    )]
    pub connect_allow: Vec<String>,
}

/// `[upstream]`: the IN-CSE and the links to it.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// The IN-CSE's WebSocket endpoint (ws://host:port/path or wss://). A name is resolved at start,
    /// every --upstream-resolve-interval and after a failed connect; links use each of its
    /// addresses in turn when one fails.
    #[arg(
        id = "upstream.url",
        long = "upstream",
        default_value = "ws://127.0.0.1:8180/"
    )]
    pub url: String,
    /// PEM CA bundle that a wss:// upstream's certificate must chain to.
    #[arg(id = "upstream.ca", long = "upstream-ca")]
    pub ca: Option<PathBuf>,
    /// Reach the CSE through this HTTP proxy (CONNECT host:port).
    #[arg(id = "upstream.proxy", long = "upstream-proxy")]
    pub proxy: Option<SocketAddr>,
    /// Local addresses upstream links connect from, round robin (a.b.c.d-a.b.c.e): about 28,000
    /// links per address can reach one CSE address.
    #[arg(id = "upstream.source_addrs", long = "upstream-source-addrs")]
    pub source_addrs: Option<String>,
    /// Subprotocols offered to the CSE, in order (the device's serialization first when listed).
    #[arg(
        id = "upstream.protocols",
        long = "upstream-protocols",
        value_delimiter = ',',
        default_value = "oneM2M.json,oneM2M.R2.0.json,oneM2M.cbor,oneM2M.R2.0.cbor,oneM2M.xml,oneM2M.R2.0.xml"
    )]
    pub protocols: Vec<String>,
    /// When the upstream link carries X-M2M-Origin: auto, always or never.
    #[arg(
        id = "upstream.origin_header",
        long = "origin-header",
        default_value = "auto"
    )]
    #[serde(with = "units::text")]
    pub origin_header: OriginHeader,
    /// How devices reach the CSE: passthrough (one upstream link per device, bound to its AE-ID) or
    /// multiplex (--upstream-links links per core, opened with --edge-origin, shared by all devices).
    #[arg(
        id = "upstream.mode",
        long = "upstream-mode",
        default_value = "passthrough"
    )]
    #[serde(with = "units::text")]
    pub mode: UpstreamMode,
    /// Multiplex: upstream links per core (each device is pinned to one).
    #[arg(id = "upstream.links", long = "upstream-links", default_value = "1")]
    pub links: usize,
    /// Multiplex: the stem of the X-M2M-Origin the edge's links are opened with, as
    /// <stem>-<core>-<link>. Default: Cm2m-edge-<host>-<pid>, so that two edges in front of one CSE
    /// never share an originator (a CSE like ACME closes the older connection of an originator).
    #[arg(id = "upstream.edge_origin", long = "edge-origin")]
    pub edge_origin: Option<String>,
    /// Requests outstanding per upstream link (ACME loses back-to-back frames: keep 1 for it).
    #[arg(
        id = "upstream.max_in_flight",
        long = "max-in-flight",
        default_value = "1"
    )]
    pub max_in_flight: usize,
    /// Requests queued per device while the link is busy or down (beyond: 5207). Reloadable.
    #[arg(id = "upstream.max_queued", long = "max-queued", default_value = "64")]
    pub max_queued: usize,
    /// Wait this long for the CSE's response before answering 4008 (an earlier rqet wins).
    /// Reloadable.
    #[arg(id = "upstream.request_timeout", long = "request-timeout", default_value = "10s",
          value_parser = units::parse_duration)]
    #[serde(with = "units::duration")]
    pub request_timeout: Duration,
    /// Upstream link set-up must finish within this: TCP connect, the proxy's CONNECT answer, TLS
    /// and the WebSocket handshake, as one phase. Reloadable.
    #[arg(id = "upstream.connect_timeout", long = "upstream-connect-timeout", default_value = "3s",
          value_parser = units::parse_duration)]
    #[serde(with = "units::duration")]
    pub connect_timeout: Duration,
    /// WebSocket ping to a device or upstream link that sent nothing for this long (0: no pings).
    #[arg(id = "upstream.ping_interval", long = "ping-interval", default_value = "30s",
          value_parser = units::parse_duration)]
    #[serde(with = "units::duration")]
    pub ping_interval: Duration,
    /// A device or link that answers nothing within this after a ping is closed (a link re-opened).
    #[arg(id = "upstream.ping_timeout", long = "ping-timeout", default_value = "10s",
          value_parser = units::parse_duration)]
    #[serde(with = "units::duration")]
    pub ping_timeout: Duration,
    /// Wait before re-opening a lost upstream link (the device stays connected). Reloadable.
    #[arg(id = "upstream.relink_backoff", long = "relink-backoff", default_value = "500ms",
          value_parser = units::parse_duration)]
    #[serde(with = "units::duration")]
    pub relink_backoff: Duration,
    /// Resolve the upstream name again this often (and after a failed connect); 0: only at start
    /// and after failures.
    #[arg(id = "upstream.resolve_interval", long = "upstream-resolve-interval",
          default_value = "30s", value_parser = units::parse_duration)]
    #[serde(with = "units::duration")]
    pub resolve_interval: Duration,
    /// The upstream host's addresses (ip:port, comma-separated), used instead of resolving its
    /// name (as curl's --resolve): links fail over between them in this order. Empty: resolve.
    /// Not with --upstream-proxy (the proxy resolves the name).
    #[arg(
        id = "upstream.addresses",
        long = "upstream-addresses",
        value_delimiter = ','
    )]
    pub addresses: Vec<SocketAddr>,
}

/// `[limits]`: bounds on what one device may cost. All reloadable (for new connections).
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest handshake head in bytes (431 beyond).
    #[arg(
        id = "limits.max_handshake_bytes",
        long = "max-handshake-bytes",
        default_value = "8192"
    )]
    pub max_handshake_bytes: usize,
    /// Time allowed for TCP/TLS plus the WebSocket handshake.
    #[arg(id = "limits.handshake_timeout", long = "handshake-timeout", default_value = "10s",
          value_parser = units::parse_duration)]
    #[serde(with = "units::duration")]
    pub handshake_timeout: Duration,
    /// Largest frame payload in bytes (1009 beyond).
    #[arg(
        id = "limits.max_frame_bytes",
        long = "max-frame-bytes",
        default_value = "1048576"
    )]
    pub max_frame_bytes: usize,
    /// Largest message in bytes, on the wire and after inflation (1009 beyond).
    #[arg(
        id = "limits.max_message_bytes",
        long = "max-message-bytes",
        default_value = "1048576"
    )]
    pub max_message_bytes: usize,
    /// Close device sessions that sent nothing for this long (0: never). Pongs count.
    #[arg(id = "limits.idle_timeout", long = "idle-timeout", default_value = "5m",
          value_parser = units::parse_duration)]
    #[serde(with = "units::duration")]
    pub idle_timeout: Duration,
    /// A frame (or fragmented message) a device began must be complete within this, else it is
    /// closed 1008: a byte now and then would otherwise keep a session from the idle timeout
    /// (0: no limit). It sets a minimum rate for the largest message: 1 MiB in 30 s is ~35 KB/s;
    /// raise it for devices on slow links (NB-IoT, GPRS) that send large messages.
    #[arg(id = "limits.frame_timeout", long = "frame-timeout", default_value = "30s",
          value_parser = units::parse_duration)]
    #[serde(with = "units::duration")]
    pub frame_timeout: Duration,
    /// Device sessions per core; further devices are answered 503 (0: only the fd limit applies).
    #[arg(
        id = "limits.max_devices_per_core",
        long = "max-devices-per-core",
        default_value = "0"
    )]
    pub max_devices_per_core: usize,
    /// Unsent bytes a device connection may hold before it is closed (it stopped reading); an
    /// upstream link above it takes no new requests until it drains.
    #[arg(
        id = "limits.max_output_bytes",
        long = "max-output-bytes",
        default_value = "4194304"
    )]
    pub max_output_bytes: usize,
}

/// `[hold]`: the CSE's requests for devices that are away.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hold {
    /// Hold the CSE's requests (NOTIFYs…) for a registered device that is away this long, unless
    /// their own rqet says otherwise; the CSE is answered 1000 ACCEPTED (0: no holding, 5103).
    #[arg(id = "hold.ttl", long = "hold-ttl", default_value = "10m",
          value_parser = units::parse_duration)]
    #[serde(with = "units::duration")]
    pub ttl: Duration,
    /// Requests held per device (past it the oldest is dropped).
    #[arg(id = "hold.max", long = "hold-max", default_value = "100")]
    pub max: usize,
    /// Bytes held per device (past it the oldest is dropped).
    #[arg(
        id = "hold.max_bytes",
        long = "hold-max-bytes",
        default_value = "262144"
    )]
    pub max_bytes: usize,
    /// Bytes held per core for all devices (past it the oldest of any device is dropped).
    #[arg(
        id = "hold.core_bytes",
        long = "hold-core-bytes",
        default_value = "67108864"
    )]
    pub core_bytes: usize,
}

/// `[runtime]`: threads and the I/O driver (shared with `m2m-edge echo`).
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// I/O driver: io_uring when available (auto), or forced (uring, epoll).
    #[arg(id = "runtime.io", long = "io", default_value = "auto")]
    #[serde(with = "units::text")]
    pub io: IoMode,
    /// Worker threads, one event loop each (default: number of CPUs).
    #[arg(id = "runtime.workers", long = "workers")]
    pub workers: Option<usize>,
    /// Pin worker i to CPU i.
    #[arg(id = "runtime.pin", long = "pin", action = ArgAction::Set,
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub pin: bool,
    /// Drain time after SIGTERM/SIGINT before remaining connections are closed.
    #[arg(id = "runtime.drain", long = "drain", default_value = "5s",
          value_parser = units::parse_duration)]
    #[serde(with = "units::duration")]
    pub drain: Duration,
    /// Share the device port with other processes that set it too (SO_REUSEPORT, one socket per
    /// core): several edge processes on one port (the admin and notify ports stay each process's
    /// own). Without it a port in use is an error at start.
    #[arg(id = "runtime.reuse_port", long = "reuse-port", action = ArgAction::Set,
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub reuse_port: bool,
}

/// `[admin]`: the admin listener.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Admin listener: GET /metrics (Prometheus), /healthz, /readyz; POST /reload.
    #[arg(id = "admin.address", long = "admin")]
    pub address: Option<SocketAddr>,
    /// Who may POST /reload: local (loopback peers: 127.0.0.0/8, ::1), any, or off. A proxy on the
    /// same host (a service-mesh sidecar) makes every caller look local: use off there, and SIGHUP.
    #[arg(id = "admin.reload", long = "admin-reload", default_value = "local")]
    #[serde(with = "units::text")]
    pub reload: ReloadAccess,
}

units::text_enum! {
    /// Who may ask the admin listener for a reload.
    pub enum ReloadAccess {
        Local = "local",
        Any = "any",
        Off = "off",
    }
}

/// `[notify]`: multiplex mode's listener for the CSE's requests to devices.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notify {
    /// Multiplex: a WebSocket listener for the CSE's requests to devices on shared links (the edge
    /// as their point of access: AE/remoteCSE poa "ws://default" is rewritten to --notify-url).
    #[arg(id = "notify.listen", long = "notify-listen")]
    pub listen: Option<SocketAddr>,
    /// The URL the CSE reaches the notify listener at, put in devices' poa (default:
    /// ws://<notify-listen>/).
    #[arg(id = "notify.url", long = "notify-url")]
    pub url: Option<String>,
    /// Who may connect to the notify listener: source addresses and/or CSE-IDs (X-M2M-Origin,
    /// starting with '/'), comma-separated (default: the upstream CSE's addresses, any CSE-ID).
    #[arg(id = "notify.allow", long = "notify-allow", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// PEM certificate chain: the notify listener speaks wss (then --notify-url defaults to wss://).
    #[arg(id = "notify.tls_cert", long = "notify-tls-cert")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --notify-tls-cert.
    #[arg(id = "notify.tls_key", long = "notify-tls-key")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: the CSE must present a client certificate from it on the notify listener.
    #[arg(id = "notify.client_ca", long = "notify-client-ca")]
    pub client_ca: Option<PathBuf>,
}

/// `[log]`: what is logged and how.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives
    /// (info,m2m_relay=debug). Reloadable. RUST_LOG is used when nothing sets it.
    #[arg(id = "log.level", long = "log-level", default_value = "info")]
    pub level: String,
    /// Log format: text for people, json for log pipelines.
    #[arg(id = "log.format", long = "log-format", default_value = "text")]
    #[serde(with = "units::text")]
    pub format: LogFormat,
}

units::text_enum! {
    /// How log lines are written.
    pub enum LogFormat {
        /// One line per event for people (colours only on a terminal).
        Text = "text",
        /// One JSON object per line for log pipelines.
        Json = "json",
    }
}

/// The environment variable of configuration key `section.key`.
pub fn env_name(id: &str) -> String {
    format!("{ENV_PREFIX}{}", id.replace('.', "_").to_ascii_uppercase())
}

/// Give every configuration flag of `cmd` (ids `section.key`) its environment variable.
pub fn with_env(cmd: clap::Command) -> clap::Command {
    let ids: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| id.contains('.'))
        .collect();
    ids.into_iter().fold(cmd, |cmd, id| {
        let env = env_name(&id);
        let value = id
            .split_once('.')
            .map_or(id.as_str(), |(_, k)| k)
            .to_ascii_uppercase();
        cmd.mut_arg(id, |a| a.env(env).value_name(value))
    })
}

/// When clap refused a value that came from the environment (its message names the flag), the
/// variable it came from, so that the operator looks in the right place.
pub fn blame_environment(
    e: &clap::Error,
    cmd: &clap::Command,
    args: &[std::ffi::OsString],
) -> Option<String> {
    let clap::error::ContextValue::String(arg) = e.get(clap::error::ContextKind::InvalidArg)?
    else {
        return None;
    };
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let on_command_line = args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == format!("--{long}") || a.starts_with(&format!("--{long}="))
    });
    let id = cmd
        .get_subcommands()
        .flat_map(|s| s.get_arguments())
        .find(|a| a.get_long() == Some(long))?
        .get_id()
        .to_string();
    let env = env_name(&id);
    (!on_command_line && std::env::var_os(&env).is_some())
        .then(|| format!("the value came from the environment variable {env}"))
}

/// [`with_env`] for each subcommand of `cmd` (`run`, `echo`).
pub fn with_env_all(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    names
        .into_iter()
        .fold(cmd, |cmd, name| cmd.mut_subcommand(name, with_env))
}

/// Every configuration key as `section.key`, in declaration order.
pub fn keys() -> Vec<String> {
    use clap::Args;
    EdgeConfig::augment_args(clap::Command::new("keys"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| id.contains('.'))
        .collect()
}

/// Refuse `M2M_EDGE_*` variables that name no key (a typo would otherwise be ignored silently).
fn check_environment() -> anyhow::Result<()> {
    let known: Vec<String> = keys().iter().map(|k| env_name(k)).collect();
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with(ENV_PREFIX)
            && !known.iter().any(|k| *k == name)
            && !ENV_NOT_KEYS.contains(&name.as_ref())
        {
            let nearest = known
                .iter()
                .max_by(|a, b| {
                    strsim::jaro_winkler(a, &name).total_cmp(&strsim::jaro_winkler(b, &name))
                })
                .cloned()
                .unwrap_or_default();
            bail!(
                "environment variable {name} names no configuration key (did you mean {nearest}? \
                 every key: m2m-edge run --help)"
            );
        }
    }
    Ok(())
}

/// Read and check a configuration file: a typo, a wrong type or a bad value is an error naming
/// the file, the line and the key.
pub fn read_file(path: &Path) -> anyhow::Result<toml::Table> {
    read_file_traced(path).map(|(table, _)| table)
}

/// [`read_file`], and the line of each key it sets.
fn read_file_traced(path: &Path) -> anyhow::Result<(toml::Table, Origins)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if let Err(e) = toml::from_str::<EdgeConfig>(&text) {
        let mut msg = format!("{}: {e}", path.display());
        if let Some(old) = ms_key(e.message()) {
            msg.push_str(&format!(
                "\nhint: durations take units now: write {} = \"…ms\" (or s, m)",
                old.trim_end_matches("_ms")
            ));
        }
        bail!(msg.trim_end().to_string());
    }
    Ok((text.parse()?, Origins::from_file(path, &text)))
}

/// The old `*_ms` key an "unknown field" message is about, if any.
fn ms_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    let key = &rest[..rest.find('`')?];
    key.ends_with("_ms").then_some(key)
}

/// The configuration `run` runs with: defaults, then the file at `file`, then the environment,
/// then the flags in `matches` (the `run` subcommand's, from [`with_env`]'s command).
pub fn resolve(file: Option<&Path>, matches: &clap::ArgMatches) -> anyhow::Result<EdgeConfig> {
    resolve_traced(file, matches).map(|(config, _)| config)
}

/// [`resolve`], and where each key's value came from (for errors that name keys: see
/// [`Origins::explain`]).
pub fn resolve_traced(
    file: Option<&Path>,
    matches: &clap::ArgMatches,
) -> anyhow::Result<(EdgeConfig, Origins)> {
    check_environment()?;
    let mut origins = Origins::default();
    for key in keys() {
        origins.set(&key, Origin::Default);
    }
    let mut table = match file {
        Some(path) => {
            let (table, from_file) = read_file_traced(path)?;
            for key in from_file.keys() {
                origins.set(key, from_file.of(key).clone());
            }
            table
        }
        None => toml::Table::new(),
    };
    let given = EdgeConfig::from_arg_matches(matches)?;
    let given = toml::Table::try_from(&given).context("flags as a table")?;
    let mut level_set = table.get("log").and_then(|l| l.get("level")).is_some();
    for id in matches.ids() {
        let id = id.as_str();
        let Some((section, key)) = id.split_once('.') else {
            continue;
        };
        if !matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        level_set |= id == "log.level";
        origins.set(
            id,
            match matches.value_source(id) {
                Some(ValueSource::EnvVariable) => Origin::Env(env_name(id)),
                _ => Origin::Flag(flag_of(id)),
            },
        );
        let section_table = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .context("a section that is not a table")?;
        match given.get(section).and_then(|s| s.get(key)) {
            Some(v) => section_table.insert(key.to_string(), v.clone()),
            None => section_table.remove(key),
        };
    }
    let mut config: EdgeConfig = toml::Value::Table(table)
        .try_into()
        .context("combining the file, the environment and the flags")?;
    if !level_set && let Some(level) = rust_log()? {
        config.log.level = level;
        origins.set("log.level", Origin::Env("RUST_LOG".into()));
    }
    Ok((config, origins))
}

/// The command-line flag of key `id` (`--tls-cert` for `listen.tls_cert`).
fn flag_of(id: &str) -> String {
    use clap::Args;
    EdgeConfig::augment_args(clap::Command::new("flags"))
        .get_arguments()
        .find(|a| a.get_id() == id)
        .and_then(|a| a.get_long())
        .map_or_else(|| id.to_string(), |long| format!("--{long}"))
}

/// `RUST_LOG`, the filter used when no key, variable or flag sets `log.level` (checked here so that
/// its error names it).
pub fn rust_log() -> anyhow::Result<Option<String>> {
    let Ok(level) = std::env::var("RUST_LOG") else {
        return Ok(None);
    };
    crate::logging::filter(&level).map_err(|e| anyhow::anyhow!("RUST_LOG: {e}"))?;
    Ok(Some(level))
}

impl EdgeConfig {
    /// This configuration as a TOML document (every key; unset optional keys are left out).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// `section.key` of each value that differs between `self` and `other`.
    pub fn differences(&self, other: &EdgeConfig) -> Vec<String> {
        let (a, b) = (flatten(self), flatten(other));
        keys()
            .into_iter()
            .filter(|k| a.get(k) != b.get(k))
            .collect()
    }
}

/// `section.key` → value (absent when unset).
fn flatten(config: &EdgeConfig) -> std::collections::HashMap<String, toml::Value> {
    let table = toml::Table::try_from(config).unwrap_or_default();
    let mut out = std::collections::HashMap::new();
    for (section, body) in table {
        if let toml::Value::Table(body) = body {
            for (key, value) in body {
                out.insert(format!("{section}.{key}"), value);
            }
        }
    }
    out
}

/// `a.b.c.d-a.b.c.e` (inclusive), or one address: local addresses to connect from, so that many
/// connections to one destination are not limited to one address's ephemeral ports.
pub fn parse_source_range(text: &str) -> anyhow::Result<Vec<std::net::Ipv4Addr>> {
    use std::net::Ipv4Addr;
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let a: Ipv4Addr = a
        .trim()
        .parse()
        .with_context(|| format!("source address {a:?}"))?;
    let b: Ipv4Addr = b
        .trim()
        .parse()
        .with_context(|| format!("source address {b:?}"))?;
    let (lo, hi) = (u32::from(a), u32::from(b));
    if hi < lo || hi - lo > 1 << 20 {
        bail!("source range {text:?}: empty or too large");
    }
    Ok((lo..=hi).map(Ipv4Addr::from).collect())
}

#[cfg(test)]
mod tests;
