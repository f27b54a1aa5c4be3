//! The `m2m-edge` binary: the command line lives in the library ([`m2m_edge::cli`]).

use std::process::ExitCode;

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    m2m_edge::cli::main(std::env::args_os())
}
