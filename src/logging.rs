//! `tracing` output: text for people, JSON for log pipelines, filtered by `[log] level` (tracing
//! directives, e.g. `info,m2m_relay=debug`), which a reload can change without a restart.

use std::io::IsTerminal;
use std::sync::Arc;

use tracing_subscriber::EnvFilter;

/// Puts a new filter into effect; refuses one that does not parse (and keeps the old).
pub type LevelHandle = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Parse a filter as `[log] level` takes it.
pub fn filter(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(level).map_err(|e| format!("log.level {level:?}: {e}"))
}

/// Install the global subscriber; the handle changes its filter later.
pub fn init(format: crate::config::LogFormat, level: &str) -> Result<LevelHandle, String> {
    let filter = filter(level)?;
    // Colours only for a terminal: log files and pipes get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let handle: LevelHandle = if format == crate::config::LogFormat::Json {
        let builder = builder.json().with_filter_reloading();
        let handle = builder.reload_handle();
        builder.init();
        Arc::new(move |level| reload(&handle, level))
    } else {
        let builder = builder.with_filter_reloading();
        let handle = builder.reload_handle();
        builder.init();
        Arc::new(move |level| reload(&handle, level))
    };
    Ok(handle)
}

/// Put `level` into effect through a subscriber's reload handle.
fn reload<S>(
    handle: &tracing_subscriber::reload::Handle<EnvFilter, S>,
    level: &str,
) -> Result<(), String> {
    handle.reload(filter(level)?).map_err(|e| e.to_string())
}
