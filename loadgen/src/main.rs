//! The `m2m-loadgen` command line; the work is in the library (`m2m_loadgen`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use m2m_loadgen::{
    bench, cpus, cse, default_out, device, engine, metrics, pipeline, report, responder, scenario,
    threshold,
};

// mimalloc; counted with the `heap-gauge` feature (`m2m_edge_heap_bytes` in /metrics).
m2m_rt::global_allocator!();

/// oneM2M WebSocket load generator and simulated IN-CSE.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario against a target (a CSE, or the edge in front of one).
    Run(RunArgs),
    /// The simulated IN-CSE (in memory, all cores).
    Cse(CseArgs),
    /// Start the simulated CSE and the edge in front of it, run a scenario through the edge (and,
    /// with --direct, straight to the CSE too), print the table and write the reports.
    Bench(bench::BenchArgs),
    /// Add interval logs of several runs (shards) into one table, JSON summary and HTML report.
    Merge(MergeArgs),
    /// A closed-loop pipelining client light enough that the proxy it drives is the bottleneck
    /// (retrieves only; prints one JSON line of figures).
    Pipeline(pipeline::PipelineArgs),
    /// A minimal upstream: answers every JSON request primitive at once with 2000 and its rqi
    /// (lighter than any proxy in front of it; prints `listening ADDR`, runs until SIGTERM).
    Responder(responder::ResponderArgs),
    /// The m2m-edge command line, for `bench` (same options as the `m2m-edge` binary).
    #[command(hide = true, disable_help_flag = true)]
    Edge {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenario file (TOML); its keys set the defaults of the flags below.
    #[arg(long)]
    scenario: Option<PathBuf>,
    #[command(flatten)]
    s: scenario::ScenarioArgs,
    /// Folder for run.hlog, summary.json, report.html (default: loadgen-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Validate the scenario, print it as TOML and exit (nothing is contacted).
    #[arg(long)]
    check: bool,
    /// Serve the loadgen's own Prometheus metrics on this address during the run.
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

#[derive(Debug, clap::Args)]
struct CseArgs {
    #[arg(long, default_value = "127.0.0.1:8180")]
    listen: SocketAddr,
    /// Worker threads (default: number of CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// Answer every request at once with a success carrying its rqi, keeping no resources (an
    /// upstream light enough that a proxy in front of it is the bottleneck).
    #[arg(long)]
    respond_only: bool,
}

#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// Interval logs (run.hlog of each shard).
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// Folder for the merged summary.json, report.html and table.txt.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Pass/fail criteria judged on the merged histograms (as for `run`).
    #[arg(long = "threshold", value_delimiter = ',')]
    thresholds: Vec<String>,
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let thresholds = match threshold::parse_all(&args.s.thresholds) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("m2m-loadgen: threshold {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let plan = scenario::Plan::new(args.s)?;
    if args.check {
        print!("{}", plan.to_toml());
        eprintln!(
            "m2m-loadgen: scenario OK: {} devices of {} in shard {}/{}",
            plan.device_ids.len(),
            plan.args.devices,
            plan.shard.0,
            plan.shard.1
        );
        return Ok(ExitCode::SUCCESS);
    }
    let out = args.out.unwrap_or_else(|| default_out("loadgen"));
    eprintln!(
        "m2m-loadgen: {} devices (ids {}..{}) -> {} for {}; reports in {}",
        plan.device_ids.len(),
        plan.device_ids.start,
        plan.device_ids.end,
        plan.args.target,
        humantime::format_duration(plan.args.duration),
        out.display()
    );
    let live = Arc::new(device::Live::default());
    stop_on_signal(&live);
    let state = match args.metrics {
        Some(addr) => {
            let state = Arc::new(std::sync::Mutex::new(metrics::State::default()));
            let bound = metrics::serve(addr, state.clone(), live.clone())?;
            eprintln!("m2m-loadgen: metrics on http://{bound}/metrics");
            Some(state)
        }
        None => None,
    };
    let outcome = engine::run(plan, Some(&out), live, args.quiet, state)?;
    print!("{}", report::table::render(&outcome.summary));
    verdict(&outcome.measurements, outcome.summary, &thresholds, &out)
}

/// Judge the run: thresholds (printed, and added to summary.json and the report), then the exit status: 99 when a
/// threshold fails, 1 when the run could not do its job at all, else 0.
fn verdict(
    m: &report::Measurements,
    mut summary: report::Summary,
    thresholds: &[threshold::Threshold],
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    if let Some(line) = threshold::lag_warning(&summary) {
        eprintln!("m2m-loadgen: {line}");
    }
    summary.thresholds = thresholds.iter().map(|t| t.judge(&summary)).collect();
    if !summary.thresholds.is_empty() {
        print!("{}", threshold::render(&summary.thresholds));
        report::write_all(out, m, &summary)?;
    }
    if let Some(why) = threshold::run_failed(&summary) {
        eprintln!("m2m-loadgen: the run could not do its job: {why}");
        return Ok(ExitCode::FAILURE);
    }
    if summary.thresholds.iter().any(|v| !v.pass) {
        eprintln!("m2m-loadgen: a threshold failed");
        return Ok(ExitCode::from(99));
    }
    Ok(ExitCode::SUCCESS)
}

fn stop_on_signal(live: &Arc<device::Live>) {
    let live = live.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(rt) = rt {
            rt.block_on(async {
                let _ = tokio::signal::ctrl_c().await;
            });
            eprintln!("m2m-loadgen: stopping (interrupt)");
            live.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
}

fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let thresholds = match threshold::parse_all(&args.thresholds) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("m2m-loadgen: threshold {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let logs = args
        .logs
        .iter()
        .map(|p| report::hlog::read_file(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let m = report::hlog::merge(&logs)?;
    let summary = report::Summary::new(&m);
    let out = args.out.unwrap_or_else(|| default_out("loadgen-merged"));
    report::write_all(&out, &m, &summary)?;
    print!("{}", report::table::render(&summary));
    eprintln!(
        "m2m-loadgen: merged {} logs into {}",
        logs.len(),
        out.display()
    );
    verdict(&m, summary, &thresholds, &out)
}

fn cse(args: CseArgs) -> anyhow::Result<()> {
    let workers = args.workers.unwrap_or_else(cpus);
    let stats = cse::run_blocking(args.listen, workers, args.respond_only, |addr| {
        // One line on stdout, for whoever started us (bench reads it).
        println!("listening {addr}");
        eprintln!("m2m-loadgen cse: simulated IN-CSE (/id-in, cse-in) on ws://{addr}/");
    })?;
    eprintln!(
        "m2m-loadgen cse: {} connections, {} requests, {} notifications ({} undeliverable)",
        stats.connections.load(std::sync::atomic::Ordering::Relaxed),
        stats.requests.load(std::sync::atomic::Ordering::Relaxed),
        stats
            .notifications
            .load(std::sync::atomic::Ordering::Relaxed),
        stats
            .undeliverable
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    Ok(())
}

/// Parse the command line; `--scenario FILE` first sets the defaults of `run` and `bench`.
fn parse(args: Vec<std::ffi::OsString>) -> anyhow::Result<Cli> {
    let mut cmd = Cli::command();
    if let Some(path) = m2m_loadgen::scenario::option_path(&args, "--scenario") {
        let known: Vec<String> = cmd
            .find_subcommand("run")
            .context("run subcommand")?
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .filter(|id| {
                !matches!(
                    id.as_str(),
                    "scenario" | "out" | "quiet" | "check" | "metrics"
                )
            })
            .collect();
        let values = scenario::read_file(&path, &known)?;
        for sub in ["run", "bench"] {
            let values = values.clone();
            cmd = cmd.mut_subcommand(sub, move |mut c| {
                for (id, value) in values {
                    c = c.mut_arg(id, |a| a.default_value(value));
                }
                c
            });
        }
    }
    let matches = cmd.get_matches_from(args);
    Ok(Cli::from_arg_matches(&matches)?)
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `edge` hands everything after it to the edge's own command line.
    if args.get(1).is_some_and(|a| a == "edge") {
        let mut edge_args = vec![std::ffi::OsString::from("m2m-edge")];
        edge_args.extend(args.into_iter().skip(2));
        return m2m_edge::cli::main(edge_args);
    }
    let cli = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("m2m-loadgen: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run(a) => run(a),
        Command::Cse(a) => cse(a).map(|()| ExitCode::SUCCESS),
        Command::Bench(a) => bench::run(a),
        Command::Merge(a) => merge(a),
        Command::Responder(a) => responder::start(&a)
            .and_then(|(rt, addr)| {
                println!("listening {addr}");
                m2m_rt::stop_on_signals(rt.stop_handle())?;
                rt.join()
            })
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        Command::Pipeline(a) => pipeline::run(&a).map(|summary| {
            println!(
                "{}",
                serde_json::to_string(&summary).expect("plain numbers")
            );
            if summary.errors > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }),
        Command::Edge { .. } => unreachable!("handled before parsing"),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("m2m-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
