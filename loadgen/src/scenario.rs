//! A scenario: who connects where, how devices register, what they send and at which rate. Every
//! key of a scenario file is also a flag of `m2m-loadgen run` with the same name (`payload_bytes` ↔
//! `--payload-bytes`): the file sets the flags' defaults, so both share one meaning, one default and
//! one validation, and a flag on the command line wins. `loadgen/scenarios/*.toml` are examples.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use m2m_primitive::Format;

use crate::recorder::OpKind;
use crate::schedule::Schedule;

/// The flags (and scenario-file keys) of a run.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct ScenarioArgs {
    /// Where the devices connect: ws://host:port/path or wss://… (the only address contacted, apart
    /// from --proxy).
    #[arg(long, default_value = "")]
    pub target: String,
    /// Pass/fail criterion `METRIC.STAT OP VALUE` (repeatable; `thresholds = [...]` in a scenario
    /// file): `all_ops.p99<5ms`, `create_cin.p99.9<=20ms`, `errors<0.1%`, `errors==0`,
    /// `schedule_lag.p99<1ms`, `rate>=0.99` (sent/scheduled). Exit 99 when one fails.
    #[arg(long = "threshold", value_delimiter = ',')]
    pub thresholds: Vec<String>,
    /// Number of simulated devices (ADN-AEs), across all shards.
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Connection ramp: devices started per second (0: all at once).
    #[arg(long, default_value_t = 1000.0)]
    pub ramp: f64,
    /// Serialization of the primitives: json, cbor or xml.
    #[arg(long, default_value = "json", value_parser = ["json", "cbor", "xml"])]
    pub serialization: String,
    /// Subprotocols offered, in order (default: oneM2M.<serialization>).
    #[arg(long, value_delimiter = ',')]
    pub protocols: Vec<String>,
    /// The CSEBase's resource name (registration target and root of every path).
    #[arg(long, default_value = "cse-in")]
    pub cse_base: String,
    /// Originators: `fixed` (fr = <origin_prefix><device id>, registered as such) or `cse`
    /// (fr = "C", the CSE assigns the AE-ID).
    #[arg(long, default_value = "fixed", value_parser = ["fixed", "cse"])]
    pub originator: String,
    /// Prefix of fixed originators and AE resource names (must start with C or S).
    #[arg(long, default_value = "Cm2mlg")]
    pub origin_prefix: String,
    /// AE App-ID (api).
    #[arg(long, default_value = "Nm2m-loadgen")]
    pub api: String,
    /// AE requestReachability (rr); NOTIFYs need true.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub rr: bool,
    /// AE supportedReleaseVersions (srv).
    #[arg(long, value_delimiter = ',', default_value = "3")]
    pub srv: Vec<String>,
    /// AE pointOfAccess (poa); ACME delivers NOTIFYs over the WebSocket only with ws://default.
    #[arg(long, value_delimiter = ',', default_value = "ws://default")]
    pub poa: Vec<String>,
    /// Release version sent in every request (rvi).
    #[arg(long, default_value = "3")]
    pub rvi: String,
    /// Containers per device.
    #[arg(long, default_value_t = 1)]
    pub containers: usize,
    /// maxNrOfInstances (mni) of each container (0: not set).
    #[arg(long, default_value_t = 10)]
    pub mni: u64,
    /// Subscribe each device to its first container (nu = its own AE-ID), so that every
    /// contentInstance created there comes back as a NOTIFY.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub subscribe: bool,
    /// Operation mix, weights: create_cin, retrieve_la, update, discovery.
    #[arg(
        long,
        default_value = "create_cin=50,retrieve_la=30,update=10,discovery=10"
    )]
    pub mix: String,
    /// Content size of a created contentInstance, in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// open (a rate; latency from each request's intended send time) or closed (N in flight).
    #[arg(long, default_value = "open", value_parser = ["open", "closed"])]
    pub mode: String,
    /// Open loop: total requests per second over all devices (all shards).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Open loop: requests per second per device (overrides --rate).
    #[arg(long)]
    pub rate_per_device: Option<f64>,
    /// Open loop: constant, ramp:TO (from --rate to TO over the run) or steps:R@D,R@D,…
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    /// Closed loop: requests in flight per device.
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
    /// Closed loop: pause between a response and the next request.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub think: Duration,
    /// Open loop: requests a device may have outstanding before it stops sending (the wait still
    /// counts in the corrected latency).
    #[arg(long, default_value_t = 64)]
    pub max_outstanding: usize,
    /// Length of the run, from the first connection.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub duration: Duration,
    /// Stop after this many operations in all (this shard), if that comes first.
    #[arg(long)]
    pub requests: Option<u64>,
    /// A request without a response after this long counts as a timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub request_timeout: Duration,
    /// Set rqet (requestExpirationTimestamp) on operations, relative: this long after the send
    /// (units: 1500ms, 2s; 0: none).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub rqet: Duration,
    /// Reconnect after this many operations, without registering again (TS-0020 §5.2).
    #[arg(long)]
    pub reconnect_after_requests: Option<u64>,
    /// Reconnect after this long connected.
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "ser_opt_duration")]
    pub reconnect_after: Option<Duration>,
    /// Send the X-M2M-Origin handshake header (ACME needs it for anything but registration).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub origin_header: bool,
    /// Delete each AE at the end of the run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub deregister: bool,
    /// wss: PEM CA bundle the server's certificate must chain to.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// wss: PEM client certificate chain (mutual TLS).
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// wss: PEM private key of --client-cert.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Reach the target through this HTTP proxy (CONNECT).
    #[arg(long)]
    pub proxy: Option<SocketAddr>,
    /// Local source addresses to spread connections over, e.g. 127.0.0.2-127.0.0.200.
    #[arg(long)]
    pub source_addrs: Option<String>,
    /// This process's part of the device id space: i/N (0-based).
    #[arg(long, default_value = "0/1")]
    pub shard: String,
    /// Worker threads, one tokio current-thread runtime each (default: number of CPUs).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Seed of the operation mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// The target URL taken apart (not resolved yet: `--check` must work where the name does not).
#[derive(Debug, Clone)]
pub struct Target {
    pub secure: bool,
    /// `host[:port]` as written (Host header, CONNECT target).
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if url.is_empty() {
            bail!("no target: give --target ws://host:port/ (or target = \"…\" in the scenario)");
        }
        let u = m2m_edge::wsurl::WsUrl::parse(url).map_err(|e| anyhow::anyhow!("target {e:#}"))?;
        Ok(Self {
            secure: u.secure,
            authority: u.authority,
            host: u.host,
            port: u.port,
            path: u.path,
        })
    }

    /// The address to connect to (the first one the name resolves to).
    pub fn resolve(&self) -> anyhow::Result<SocketAddr> {
        use std::net::ToSocketAddrs;
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", self.authority))?
            .next()
            .with_context(|| format!("{} has no address", self.authority))
    }
}

/// `i/N`.
pub fn parse_shard(text: &str) -> anyhow::Result<(usize, usize)> {
    let (i, n) = text
        .split_once('/')
        .with_context(|| format!("shard {text:?}: expected i/N"))?;
    let (i, n): (usize, usize) = (i.trim().parse()?, n.trim().parse()?);
    if n == 0 || i >= n {
        bail!("shard {text:?}: need 0 <= i < N");
    }
    Ok((i, n))
}

/// The device ids of shard `i` of `n` over `devices` devices: a contiguous block, so fixed
/// originators never collide between shards.
pub fn shard_range(devices: usize, i: usize, n: usize) -> std::ops::Range<usize> {
    let per = devices / n;
    let extra = devices % n;
    let start = i * per + i.min(extra);
    start..start + per + usize::from(i < extra)
}

/// `a.b.c.d-a.b.c.e` (inclusive); shared with the edge's `--upstream-source-addrs`.
pub use m2m_edge::config::parse_source_range;

/// The operation mix: cumulative weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix(Vec<(OpKind, u32)>);

impl Mix {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut out = Vec::new();
        let mut total = 0u32;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part.split_once('=').unwrap_or((part, "1"));
            let kind = OpKind::from_name(name.trim()).with_context(|| {
                format!(
                    "mix: unknown operation {name:?} (create_cin, retrieve_la, update, discovery)"
                )
            })?;
            let w: u32 = w
                .trim()
                .parse()
                .with_context(|| format!("mix weight {w:?}"))?;
            if w > 0 {
                total += w;
                out.push((kind, total));
            }
        }
        if total == 0 {
            bail!("mix {text:?}: no operation has a weight");
        }
        Ok(Self(out))
    }

    /// The operation for a uniform draw `r` in `0..1`.
    pub fn pick(&self, r: f64) -> OpKind {
        let total = self.0.last().map_or(1, |(_, c)| *c);
        let x = (r * f64::from(total)) as u32;
        self.0
            .iter()
            .find(|(_, c)| x < *c)
            .map_or(self.0[0].0, |(k, _)| *k)
    }

    pub fn contains(&self, kind: OpKind) -> bool {
        self.0.iter().any(|(k, _)| *k == kind)
    }
}

/// How requests are paced.
#[derive(Debug, Clone)]
pub enum Load {
    Open {
        schedule: Schedule,
        max_outstanding: usize,
    },
    Closed {
        in_flight: usize,
        think: Duration,
    },
}

/// A validated scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub args: ScenarioArgs,
    pub target: Target,
    pub format: Format,
    pub protocols: Vec<String>,
    pub mix: Mix,
    pub load: Load,
    pub shard: (usize, usize),
    pub device_ids: std::ops::Range<usize>,
    pub sources: Vec<Ipv4Addr>,
    pub workers: usize,
}

impl Plan {
    pub fn new(args: ScenarioArgs) -> anyhow::Result<Self> {
        let target = Target::parse(&args.target)?;
        let format = match args.serialization.as_str() {
            "cbor" => Format::Cbor,
            "xml" => Format::Xml,
            _ => Format::Json,
        };
        let protocols = if args.protocols.is_empty() {
            vec![format!("oneM2M.{}", format.name())]
        } else {
            args.protocols.clone()
        };
        if !args.origin_prefix.starts_with(['C', 'S']) {
            bail!(
                "origin_prefix {:?} must start with C or S",
                args.origin_prefix
            );
        }
        if args.devices == 0 {
            bail!("devices must be at least 1");
        }
        if args.containers == 0 {
            bail!("containers must be at least 1");
        }
        let mix = Mix::parse(&args.mix)?;
        let load = if args.mode == "closed" {
            if args.in_flight == 0 {
                bail!("in_flight must be at least 1");
            }
            Load::Closed {
                in_flight: args.in_flight,
                think: args.think,
            }
        } else {
            let rate = args
                .rate_per_device
                .map_or(args.rate, |r| r * args.devices as f64);
            Load::Open {
                schedule: Schedule::parse(&args.schedule, rate, args.duration)?,
                max_outstanding: args.max_outstanding.max(1),
            }
        };
        let shard = parse_shard(&args.shard)?;
        let sources = args
            .source_addrs
            .as_deref()
            .map(parse_source_range)
            .transpose()?
            .unwrap_or_default();
        if target.secure && args.ca.is_none() {
            bail!("a wss:// target needs --ca (PEM CA bundle)");
        }
        let workers = args
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        Ok(Self {
            device_ids: shard_range(args.devices, shard.0, shard.1),
            target,
            format,
            protocols,
            mix,
            load,
            shard,
            sources,
            workers,
            args,
        })
    }

    /// The scenario as a TOML document (reports show exactly what ran).
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.args).unwrap_or_default()
    }
}

/// Read a scenario file into (flag id, value) pairs; unknown keys are errors.
pub fn read_file(path: &Path, known: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let mut out = Vec::new();
    for (key, value) in &doc {
        if !known.iter().any(|k| k == key) {
            bail!("{}: unknown key {key:?}", path.display());
        }
        let value = match value {
            toml::Value::Float(f) => f.to_string(),
            other => flag_value(key, other)?,
        };
        out.push((key.clone(), value));
    }
    Ok(out)
}

/// The flag value a TOML value stands for (a scenario file sets the flags' defaults).
fn flag_value(key: &str, v: &toml::Value) -> anyhow::Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::String(s) => Ok(s.clone()),
                other => bail!(
                    "{key}: list items must be strings, not {}",
                    other.type_str()
                ),
            })
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(","),
        other => bail!("{key}: a {} is not a valid value", other.type_str()),
    })
}

/// The value of option `flag` (e.g. `--scenario`) in raw arguments, if any (it must be known
/// before clap parses).
pub fn option_path(args: &[std::ffi::OsString], flag: &str) -> Option<std::path::PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == flag {
            return it.next().map(std::path::PathBuf::from);
        }
        if let Some(v) = a.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
            return Some(v.into());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        s: ScenarioArgs,
    }

    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        let mut v = vec!["t"];
        if !args.contains(&"--target") {
            v.extend(["--target", "ws://127.0.0.1:9/"]);
        }
        v.extend_from_slice(args);
        Plan::new(Cli::try_parse_from(v)?.s)
    }

    #[test]
    fn defaults_make_an_open_loop_json_plan() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.protocols, vec!["oneM2M.json"]);
        assert_eq!(p.device_ids, 0..1000);
        assert!(
            matches!(p.load, Load::Open { schedule: Schedule::Constant(r), .. } if r == 1000.0)
        );
        assert_eq!(p.target.resolve().unwrap(), "127.0.0.1:9".parse().unwrap());
        assert_eq!(p.target.path, "/");
    }

    #[test]
    fn flags_shape_the_plan() {
        let p = plan(&[
            "--serialization",
            "cbor",
            "--mode",
            "closed",
            "--in-flight",
            "4",
            "--think",
            "5ms",
            "--shard",
            "1/3",
            "--devices",
            "10",
            "--source-addrs",
            "127.0.0.2-127.0.0.4",
            "--rr",
            "false",
        ])
        .unwrap();
        assert_eq!(p.protocols, vec!["oneM2M.cbor"]);
        assert!(
            matches!(p.load, Load::Closed { in_flight: 4, think } if think == Duration::from_millis(5))
        );
        assert_eq!(p.device_ids, 4..7);
        assert_eq!(p.sources.len(), 3);
        assert!(!p.args.rr);
        let p = plan(&["--rate-per-device", "2", "--devices", "50"]).unwrap();
        assert!(matches!(p.load, Load::Open { schedule: Schedule::Constant(r), .. } if r == 100.0));
    }

    #[test]
    fn bad_scenarios_are_refused_with_a_reason() {
        for (args, needle) in [
            (&["--mix", "create_cin=0"][..], "no operation"),
            (&["--mix", "explode=1"], "unknown operation"),
            (&["--shard", "3/3"], "0 <= i < N"),
            (&["--origin-prefix", "Xdev"], "C or S"),
            (&["--schedule", "sometimes"], "expected constant"),
            (&["--target", "http://x/"], "ws://"),
            (&["--target", "wss://127.0.0.1:9/"], "--ca"),
            (&["--source-addrs", "127.0.0.9-127.0.0.1"], "empty"),
        ] {
            let e = plan(args).unwrap_err().to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn shards_cover_the_device_space_exactly_once() {
        for (devices, n) in [(10, 3), (7, 7), (1000, 4), (3, 5)] {
            let mut all: Vec<usize> = (0..n).flat_map(|i| shard_range(devices, i, n)).collect();
            all.sort();
            assert_eq!(all, (0..devices).collect::<Vec<_>>(), "{devices}/{n}");
        }
    }

    #[test]
    fn mix_picks_by_weight() {
        let m = Mix::parse("create_cin=3, update=1").unwrap();
        assert_eq!(m.pick(0.0), OpKind::CreateCin);
        assert_eq!(m.pick(0.74), OpKind::CreateCin);
        assert_eq!(m.pick(0.76), OpKind::Update);
        assert!(!m.contains(OpKind::Discovery));
    }

    #[test]
    fn scenario_file_keys_must_be_flags() {
        let dir = std::env::temp_dir().join(format!("m2m-scn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s.toml");
        std::fs::write(&f, "devices = 5\nrate = 2.5\nprotocols = [\"oneM2M.json\", \"oneM2M.cbor\"]\nsubscribe = false\n").unwrap();
        let known: Vec<String> = ["devices", "rate", "protocols", "subscribe"]
            .map(String::from)
            .to_vec();
        let pairs = read_file(&f, &known).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("devices".into(), "5".into()),
                ("protocols".into(), "oneM2M.json,oneM2M.cbor".into()),
                ("rate".into(), "2.5".into()),
                ("subscribe".into(), "false".into()),
            ]
        );
        std::fs::write(&f, "devcies = 5\n").unwrap();
        assert!(
            read_file(&f, &known)
                .unwrap_err()
                .to_string()
                .contains("unknown key")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
