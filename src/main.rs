//! m2m-edge: the oneM2M WebSocket edge front-end. For now only `--version` and `--help`.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// oneM2M WebSocket edge front-end for IN-CSEs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
