//! Reload without a restart, on SIGHUP or `POST /reload` on the admin listener: the configuration
//! is read again (file and environment, the command line's flags still winning) and, when all of
//! it is valid, put into effect for new connections — TLS certificates, keys and client CAs (read
//! again from the same files), the CONNECT allow-list, limits and timeouts, the log filter. Open
//! device sessions and links stay as they are. A configuration with any error is refused as a
//! whole with the reason, and the running one stays. Keys that shape running state (addresses,
//! mode, workers, holding…) are reported as needing a restart and not applied.
//!
//! Cores pick the new relay settings up at their next accept ([`HotRelay`]'s generation), so a
//! reload never waits for a core and a core never blocks on one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use m2m_relay::RelaySettings;

use crate::config::EdgeConfig;
use crate::logging::LevelHandle;
use crate::tls_files::ReloadableTls;

/// Keys a reload applies (`section.*`: the whole section). Every other key needs a restart.
pub const RELOADABLE: &[&str] = &[
    "listen.connect_allow",
    "listen.deflate",
    "upstream.max_queued",
    "upstream.request_timeout",
    "upstream.connect_timeout",
    "upstream.relink_backoff",
    "limits.*",
    "log.level",
];

fn reloadable(key: &str) -> bool {
    RELOADABLE.iter().any(|r| match r.strip_suffix('*') {
        Some(section) => key.starts_with(section),
        None => key == *r,
    })
}

/// The relay settings new connections get, and a generation that changes with them.
#[derive(Debug)]
pub struct HotRelay {
    generation: AtomicU64,
    settings: Mutex<RelaySettings>,
}

impl HotRelay {
    pub fn new(settings: RelaySettings) -> Self {
        Self {
            generation: AtomicU64::new(0),
            settings: Mutex::new(settings),
        }
    }

    /// Changes with every reload that changed relay settings.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self) -> RelaySettings {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn publish(&self, new: &RelaySettings) {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_reloadable(new);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Builds the relay settings a configuration stands for (the same function as at start).
pub type BuildRelay = Box<dyn Fn(&EdgeConfig) -> anyhow::Result<RelaySettings> + Send + Sync>;

/// Everything a reload reads and changes.
pub struct Reloader {
    pub file: Option<PathBuf>,
    /// The `run` subcommand's flags (they still win over the file and the environment).
    pub matches: clap::ArgMatches,
    /// The configuration the process started with (restart-only keys keep its values).
    pub started: EdgeConfig,
    pub current: Mutex<EdgeConfig>,
    pub tls: Vec<ReloadableTls>,
    pub relay: Arc<HotRelay>,
    pub build_relay: BuildRelay,
    pub log: LevelHandle,
    /// Only one reload at a time (SIGHUP and the admin endpoint may race).
    pub busy: Mutex<()>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// Read the configuration again and apply it; Ok(what changed) or Err(why it was refused).
    pub fn reload(&self) -> Result<String, String> {
        let _one = match self.busy.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err("another reload is in progress".into());
            }
        };
        let (new, origins) = crate::config::resolve_traced(self.file.as_deref(), &self.matches)
            .map_err(|e| format!("{e:#}"))?;
        let explain = |e: anyhow::Error| format!("{:#}", origins.explain(e));
        let relay = (self.build_relay)(&new).map_err(explain)?;
        crate::logging::filter(&new.log.level).map_err(|e| explain(anyhow::anyhow!(e)))?;
        let certificates = self
            .tls
            .iter()
            .map(|t| t.prepare())
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| format!("{e:#}"))?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        // Valid as a whole: apply, the one step that can still fail first.
        if new.log.level != current.log.level {
            (self.log)(&new.log.level)?;
        }
        for c in certificates {
            c.commit();
        }
        let changed: Vec<String> = current
            .differences(&new)
            .into_iter()
            .filter(|k| reloadable(k))
            .collect();
        let restart: Vec<String> = self
            .started
            .differences(&new)
            .into_iter()
            .filter(|k| !reloadable(k))
            .collect();
        self.relay.publish(&relay);
        *current = new;
        let mut report = format!(
            "reloaded: {} TLS listener(s) read again; changed: {}",
            self.tls.len(),
            if changed.is_empty() {
                "nothing else".to_string()
            } else {
                changed.join(", ")
            }
        );
        if !restart.is_empty() {
            report.push_str(&format!(
                "; not applied, need a restart: {}",
                restart.join(", ")
            ));
        }
        Ok(report)
    }

    /// Reload on each SIGHUP caught by `signals` (a thread waits for them), logging the outcome.
    pub fn on_sighup(
        self: Arc<Self>,
        mut signals: signal_hook::iterator::Signals,
    ) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("m2m-reload".into())
            .spawn(move || {
                for _ in signals.forever() {
                    self.log_outcome("SIGHUP", self.reload());
                }
            })?;
        Ok(())
    }

    /// One log line for a reload's outcome.
    pub fn log_outcome(&self, trigger: &str, outcome: Result<String, String>) {
        match outcome {
            Ok(report) => tracing::info!(trigger, "{report}"),
            Err(why) => tracing::error!(
                trigger,
                error = %why,
                "reload refused: the running configuration stays"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloadable_keys_are_the_listed_ones_and_whole_sections() {
        assert!(reloadable("limits.max_frame_bytes"));
        assert!(reloadable("listen.connect_allow"));
        assert!(reloadable("log.level"));
        assert!(!reloadable("log.format"));
        assert!(!reloadable("listen.address"));
        assert!(!reloadable("upstream.url"));
        assert!(!reloadable("hold.ttl"));
    }

    #[test]
    fn every_reloadable_key_names_a_configuration_key() {
        let keys = crate::config::keys();
        for r in RELOADABLE {
            assert!(
                keys.iter().any(|k| match r.strip_suffix('*') {
                    Some(s) => k.starts_with(s),
                    None => k == r,
                }),
                "{r}"
            );
        }
    }
}
