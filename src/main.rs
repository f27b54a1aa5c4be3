//! The `m2m-edge` binary: the command line lives in the library ([`m2m_edge::cli`]).

use std::process::ExitCode;

// Counted, so that `/metrics` can say how many heap bytes are live (`m2m_edge_heap_bytes`).
#[global_allocator]
static GLOBAL: m2m_rt::heap::Counting<mimalloc::MiMalloc> =
    m2m_rt::heap::Counting(mimalloc::MiMalloc);

fn main() -> ExitCode {
    m2m_edge::cli::main(std::env::args_os())
}
