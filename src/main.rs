//! The `m2m-edge` binary: the command line lives in the library ([`m2m_edge::cli`]).

use std::process::ExitCode;

// mimalloc; counted with the `heap-gauge` feature (`m2m_edge_heap_bytes` in /metrics).
m2m_rt::global_allocator!();

fn main() -> ExitCode {
    m2m_edge::cli::main(std::env::args_os())
}
