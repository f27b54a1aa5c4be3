//! Flamegraphs from criterion benchmarks: with `M2M_BENCH_FLAMEGRAPH=1`, `cargo bench --bench NAME --
//! --profile-time 5` samples each benchmark with `pprof` and writes
//! `target/criterion/<group>/<benchmark>/profile/flamegraph.svg`. (pprof's own criterion integration targets an
//! older criterion, hence this small adapter.)

use std::fs::File;
use std::path::Path;

use criterion::Criterion;
use criterion::profiler::Profiler;

pub struct FlamegraphProfiler<'a> {
    frequency: i32,
    guard: Option<pprof::ProfilerGuard<'a>>,
}

impl Profiler for FlamegraphProfiler<'_> {
    fn start_profiling(&mut self, _benchmark_id: &str, _benchmark_dir: &Path) {
        self.guard = pprof::ProfilerGuard::new(self.frequency).ok();
    }

    fn stop_profiling(&mut self, benchmark_id: &str, benchmark_dir: &Path) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let Ok(report) = guard.report().build() else {
            return;
        };
        if std::fs::create_dir_all(benchmark_dir).is_ok() {
            if let Ok(file) = File::create(benchmark_dir.join("flamegraph.svg")) {
                if report.flamegraph(file).is_ok() {
                    eprintln!(
                        "flamegraph of {benchmark_id}: {}",
                        benchmark_dir.join("flamegraph.svg").display()
                    );
                }
            }
        }
    }
}

/// Criterion's configuration: with the flamegraph profiler when `M2M_BENCH_FLAMEGRAPH` is set.
pub fn config() -> Criterion {
    let c = Criterion::default();
    if std::env::var_os("M2M_BENCH_FLAMEGRAPH").is_some() {
        c.with_profiler(FlamegraphProfiler {
            frequency: 997,
            guard: None,
        })
    } else {
        c
    }
}
