//! `--features pprof`: with `M2M_EDGE_PPROF=out.svg` in the environment, the edge samples itself
//! with `pprof` while it runs and writes a flamegraph when it stops. For machines where perf events
//! are not allowed (`scripts/flamegraph.sh` falls back to it).

pub struct Profiling {
    guard: pprof::ProfilerGuard<'static>,
    out: std::path::PathBuf,
}

impl std::fmt::Debug for Profiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiling").field("out", &self.out).finish()
    }
}

/// Start sampling if `M2M_EDGE_PPROF` names an output file.
pub fn start() -> Option<Profiling> {
    let out = std::env::var_os("M2M_EDGE_PPROF").filter(|v| !v.is_empty())?;
    let guard = pprof::ProfilerGuard::new(997).ok()?;
    tracing::info!(out = ?out, "sampling profiler on");
    Some(Profiling {
        guard,
        out: out.into(),
    })
}

/// Write the flamegraph.
pub fn finish(p: Option<Profiling>) {
    let Some(p) = p else { return };
    match p.guard.report().build() {
        Ok(report) => match std::fs::File::create(&p.out) {
            Ok(f) => {
                if let Err(e) = report.flamegraph(f) {
                    tracing::warn!(error = %e, "writing the flamegraph");
                }
            }
            Err(e) => tracing::warn!(error = %e, "creating {}", p.out.display()),
        },
        Err(e) => tracing::warn!(error = %e, "building the profile"),
    }
}
