//! m2m-edge: the oneM2M WebSocket edge front-end. The binary is thin glue: CLI, logging, and the
//! modes built on the runtime (`crates/rt`) and the protocol core (`crates/ws`, `crates/primitive`).

mod echo;
mod logging;
mod tls_files;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use m2m_rt::{IoMode, ListenerConfig, RtConfig, Runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// oneM2M WebSocket edge front-end for IN-CSEs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// WebSocket echo server on the runtime: the runtime's acceptance test and benchmark target.
    Echo(EchoArgs),
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

fn runtime_config(args: &RuntimeArgs, listeners: Vec<ListenerConfig>) -> RtConfig {
    let mut config = RtConfig {
        io: args.io,
        pin: args.pin,
        listeners,
        drain: Duration::from_millis(args.drain_ms),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.log_format);
    let result = match cli.command {
        Command::Echo(args) => run_echo(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("m2m-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
