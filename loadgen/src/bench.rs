//! `m2m-loadgen bench`: the whole system in one command, on loopback. It starts the simulated CSE
//! and the edge in front of it as child processes of this binary (`m2m-loadgen cse`,
//! `m2m-loadgen edge run …`), so each one's CPU time can be read from /proc on its own, runs the
//! scenario through the edge — and with `--direct` the same scenario straight to the CSE, so the
//! edge's overhead is a ratio from one sitting — prints the tables and stops everything it started.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::device::Live;
use crate::engine;
use crate::report::{Summary, table};
use crate::scenario::{Plan, ScenarioArgs};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Scenario file (TOML); its keys set the defaults of the scenario flags.
    #[arg(long)]
    scenario: Option<PathBuf>,
    #[command(flatten)]
    s: ScenarioArgs,
    /// Folder for the reports (default: loadgen-bench-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also run the scenario straight against the CSE and report the edge's overhead as ratios.
    #[arg(long)]
    direct: bool,
    /// The edge's I/O driver.
    #[arg(long, default_value = "auto", value_parser = ["auto", "uring", "epoll"])]
    io: String,
    /// The edge's worker threads (default: its own default, one per CPU).
    #[arg(long)]
    edge_workers: Option<usize>,
    /// The simulated CSE's worker threads.
    #[arg(long, default_value_t = 1)]
    cse_workers: usize,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Serve the loadgen's Prometheus metrics here during the runs.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// The edge's admin listener (/metrics, /healthz, /readyz).
    #[arg(long)]
    edge_admin: Option<SocketAddr>,
    /// Run the edge in passthrough mode (one upstream link per device) instead of multiplex mode
    /// (one shared link per edge core, NOTIFYs through the edge's notify listener).
    #[arg(long)]
    passthrough: bool,
    /// Run this m2m-edge binary instead of the edge built into the loadgen (to compare two edge
    /// builds with the same loadgen); it is started as `PATH run --listen … --upstream …`.
    #[arg(long)]
    edge_bin: Option<PathBuf>,
}

/// A child process we started; killed when dropped.
struct ChildProc {
    name: &'static str,
    child: Child,
}

impl ChildProc {
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    fn stop(mut self) {
        // SIGTERM first: the edge drains, the CSE prints its counters.
        unsafe_sigterm(self.child.id());
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("m2m-loadgen bench: {} did not stop; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn unsafe_sigterm(pid: u32) {
    // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory effects.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

/// utime + stime of a process, from /proc/<pid>/stat (0 when it is gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(pid) = i32::try_from(pid) else {
        return 0.0;
    };
    procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .map_or(0.0, |s| {
            (s.utime + s.stime) as f64 / procfs::ticks_per_second().max(1) as f64
        })
}

/// This process's own CPU time.
fn self_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

fn spawn(name: &'static str, args: &[String], stdout: bool) -> anyhow::Result<ChildProc> {
    let exe = std::env::current_exe().context("finding our own binary")?;
    spawn_program(name, &exe, args, stdout)
}

fn spawn_program(
    name: &'static str,
    exe: &Path,
    args: &[String],
    stdout: bool,
) -> anyhow::Result<ChildProc> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(if stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit());
    // The children must not outlive us, even if we are killed.
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own process state.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting the {name} ({})", exe.display()))?;
    Ok(ChildProc { name, child })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the {what} did not start listening on {addr}")
}

struct Leg {
    label: &'static str,
    summary: Summary,
    measurements: crate::report::Measurements,
    dir: PathBuf,
    edge_cpu: Option<f64>,
    cse_cpu: f64,
    loadgen_cpu: f64,
}

/// The loadgen's live state and its `/metrics` state, shared by the legs.
type Shared = (
    Arc<Live>,
    Option<Arc<std::sync::Mutex<crate::metrics::State>>>,
);

fn run_leg(
    label: &'static str,
    (live, metrics): &Shared,
    args: &BenchArgs,
    target: SocketAddr,
    out: &Path,
    cse: &ChildProc,
    edge: Option<&ChildProc>,
) -> anyhow::Result<Leg> {
    let mut s = args.s.clone();
    s.target = format!("ws://{target}/");
    let plan = Plan::new(s)?;
    let dir = out.join(label);
    eprintln!(
        "m2m-loadgen bench: {label}: {} devices -> {} for {}",
        plan.device_ids.len(),
        plan.args.target,
        humantime::format_duration(plan.args.duration)
    );
    let (cse0, edge0, me0) = (
        cse.cpu_seconds(),
        edge.map(ChildProc::cpu_seconds),
        self_cpu_seconds(),
    );
    let outcome = engine::run(plan, Some(&dir), live.clone(), args.quiet, metrics.clone())?;
    let leg = Leg {
        label,
        edge_cpu: edge.map(|e| e.cpu_seconds() - edge0.unwrap_or(0.0)),
        cse_cpu: cse.cpu_seconds() - cse0,
        loadgen_cpu: self_cpu_seconds() - me0,
        summary: outcome.summary,
        measurements: outcome.measurements,
        dir,
    };
    // The reports again, now with the CPU each part spent.
    let mut summary = leg.summary.clone();
    summary.cpu_seconds = [
        Some(("loadgen".to_string(), leg.loadgen_cpu)),
        Some(("simulated CSE".to_string(), leg.cse_cpu)),
        leg.edge_cpu.map(|e| ("edge".to_string(), e)),
    ]
    .into_iter()
    .flatten()
    .collect();
    crate::report::write_all(&leg.dir, &leg.measurements, &summary)?;
    Ok(Leg { summary, ..leg })
}

fn describe(leg: &Leg) -> String {
    let s = &leg.summary;
    let ops = s.operations.max(1) as f64;
    let mut text = format!("== {}\n{}", leg.label, table::render(s));
    text.push_str(&format!(
        "CPU seconds: loadgen {:.2}, simulated CSE {:.2}{}\n",
        leg.loadgen_cpu,
        leg.cse_cpu,
        leg.edge_cpu.map_or(String::new(), |e| format!(
            ", edge {e:.2} ({:.1} µs per operation, request and response)",
            e * 1e6 / ops
        )),
    ));
    text.push_str(&format!(
        "requests per loadgen CPU-second: {:.0}; simulated CSE: {:.0} requests per CPU-second\n",
        ops / leg.loadgen_cpu.max(1e-9),
        ops / leg.cse_cpu.max(1e-9)
    ));
    text
}

fn ratio_line(name: &str, edge: u64, direct: u64) -> String {
    format!(
        "{name:<14} {:>10.2} {:>10.2} {:>8.2}\n",
        edge as f64 / 1000.0,
        direct as f64 / 1000.0,
        edge as f64 / (direct.max(1)) as f64
    )
}

/// A scenario flag `bench` would silently ignore: refused instead.
fn not_for_bench(s: &ScenarioArgs) -> Option<&'static str> {
    if !s.target.is_empty() {
        return Some("--target");
    }
    if s.shard != "0/1" {
        return Some("--shard");
    }
    None
}

/// Run the bench; the exit status follows `--threshold`, judged on the edge leg (0 / 99, 1 when
/// the run could not do its job, 2 for a threshold that does not parse).
pub fn run(args: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    let _ = &args.scenario; // applied by the command-line parser
    let thresholds = match crate::threshold::parse_all(&args.s.thresholds) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("m2m-loadgen bench: threshold {e}");
            return Ok(std::process::ExitCode::from(2));
        }
    };
    if let Some(flag) = not_for_bench(&args.s) {
        eprintln!(
            "m2m-loadgen bench: {flag} does not apply: bench starts its own CSE and edge and runs one \
             shard (use `m2m-loadgen run` for another target or a distributed run)"
        );
        return Ok(std::process::ExitCode::from(2));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::default_out("loadgen-bench"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // The simulated CSE tells us its port on stdout.
    let mut cse = spawn(
        "simulated CSE",
        &[
            "cse".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--workers".into(),
            args.cse_workers.to_string(),
        ],
        true,
    )?;
    let stdout = cse.child.stdout.take().context("CSE stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let cse_addr: SocketAddr = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("the simulated CSE said {line:?}"))?;
    let edge_port = free_port()?;
    let edge_addr: SocketAddr = ([127, 0, 0, 1], edge_port).into();
    let mut edge_args: Vec<String> = [
        "edge",
        "run",
        "--listen",
        &edge_addr.to_string(),
        "--upstream",
        &format!("ws://{cse_addr}/"),
        "--io",
        &args.io,
        "--max-queued",
        "256",
        "--drain",
        "1000ms",
    ]
    .map(String::from)
    .to_vec();
    if args.passthrough {
        edge_args.extend(["--max-in-flight".into(), "16".into()]);
    } else {
        // All devices of a core share one link: its in-flight bound is the whole core's.
        let notify: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        edge_args.extend(
            [
                "--upstream-mode",
                "multiplex",
                "--max-in-flight",
                "4096",
                "--notify-listen",
                &notify.to_string(),
            ]
            .map(String::from),
        );
    }
    if let Some(w) = args.edge_workers {
        edge_args.extend(["--workers".into(), w.to_string()]);
    }
    if let Some(a) = args.edge_admin {
        edge_args.extend(["--admin".into(), a.to_string()]);
    }
    let live = Arc::new(Live::default());
    let metrics = match args.metrics {
        Some(addr) => {
            let state = Arc::new(std::sync::Mutex::new(crate::metrics::State::default()));
            let bound = crate::metrics::serve(addr, state.clone(), live.clone())?;
            eprintln!("m2m-loadgen bench: loadgen metrics on http://{bound}/metrics");
            Some(state)
        }
        None => None,
    };
    let shared: Shared = (live, metrics);
    let edge = match &args.edge_bin {
        // Our own `edge` subcommand takes the edge's command line after the word `edge`.
        Some(bin) => spawn_program("edge", bin, &edge_args[1..], false)?,
        None => spawn("edge", &edge_args, false)?,
    };
    wait_listening(edge_addr, "edge")?;
    let result = (|| -> anyhow::Result<Vec<Leg>> {
        let mut legs = vec![run_leg(
            "edge",
            &shared,
            &args,
            edge_addr,
            &out,
            &cse,
            Some(&edge),
        )?];
        if args.direct {
            legs.push(run_leg(
                "direct", &shared, &args, cse_addr, &out, &cse, None,
            )?);
        }
        Ok(legs)
    })();
    edge.stop();
    cse.stop();
    let legs = result?;
    let mut text = String::new();
    for leg in &legs {
        text.push_str(&describe(leg));
        text.push('\n');
    }
    if let [e, d] = &legs[..] {
        text.push_str("== edge vs direct (ms; ratio = edge / direct)\n");
        text.push_str(&format!(
            "{:<14} {:>10} {:>10} {:>8}\n",
            "all ops", "edge", "direct", "ratio"
        ));
        let (ea, da) = (&e.summary.all_ops, &d.summary.all_ops);
        text.push_str(&ratio_line("p50", ea.p50_us, da.p50_us));
        text.push_str(&ratio_line("p90", ea.p90_us, da.p90_us));
        text.push_str(&ratio_line("p99", ea.p99_us, da.p99_us));
        text.push_str(&ratio_line("p99.9", ea.p999_us, da.p999_us));
        text.push_str(&format!(
            "throughput      {:>10.0} {:>10.0} {:>8.2}  ops/s\n",
            e.summary.ops_per_s,
            d.summary.ops_per_s,
            e.summary.ops_per_s / d.summary.ops_per_s.max(1e-9)
        ));
    }
    print!("{text}");
    std::fs::write(out.join("bench.txt"), &text)?;
    eprintln!("m2m-loadgen bench: reports in {}", out.display());
    let errors: u64 = legs.iter().map(|l| l.summary.errors_total).sum();
    if errors > 0 {
        eprintln!("m2m-loadgen bench: {errors} errors (see the tables)");
    }
    for leg in &legs {
        if let Some(line) = crate::threshold::lag_warning(&leg.summary) {
            eprintln!("m2m-loadgen bench ({}): {line}", leg.label);
        }
    }
    let edge_leg = &legs[0].summary;
    let verdicts: Vec<_> = thresholds.iter().map(|t| t.judge(edge_leg)).collect();
    if !verdicts.is_empty() {
        let text = crate::threshold::render(&verdicts);
        print!("{text}");
        std::fs::write(out.join("thresholds.txt"), &text)?;
        let mut judged = edge_leg.clone();
        judged.thresholds = verdicts.clone();
        crate::report::write_all(&legs[0].dir, &legs[0].measurements, &judged)?;
    }
    if let Some(why) = crate::threshold::run_failed(edge_leg) {
        eprintln!("m2m-loadgen bench: the run could not do its job: {why}");
        return Ok(std::process::ExitCode::FAILURE);
    }
    if verdicts.iter().any(|v| !v.pass) {
        eprintln!("m2m-loadgen bench: a threshold failed");
        return Ok(std::process::ExitCode::from(99));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod cpu_tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_for_a_live_process_and_zero_for_a_gone_one() {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        let mut spin = 0u64;
        while std::time::Instant::now() < until {
            spin = spin.wrapping_add(1);
        }
        assert!(spin > 0 && self_cpu_seconds() > 0.0);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(cpu_seconds(pid), 0.0);
    }
}
