//! The live progress line: elapsed time, devices connected, requests/s, p99 and errors, once a
//! second. A bar on a terminal (`indicatif`); on a pipe or in CI, a plain line every five seconds.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::device::Live;
use crate::report::Second;

#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    devices: usize,
    quiet: bool,
}

impl Progress {
    pub fn new(duration: Duration, devices: usize, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(duration.as_secs().max(1));
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            devices,
            quiet,
        }
    }

    pub fn update(&self, t: u64, s: &Second, live: &Live) {
        let all = s.interval.all_ops();
        let p99 = if all.is_empty() {
            0.0
        } else {
            all.value_at_quantile(0.99) as f64 / 1000.0
        };
        let msg = format!(
            "devices {}/{} | {} req/s | p99 {:.2} ms | errors {}",
            live.connected.load(Ordering::Relaxed),
            self.devices,
            s.interval.ops(),
            p99,
            live.errors.load(Ordering::Relaxed)
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(t);
                bar.set_message(msg);
            }
            None if !self.quiet && t % 5 == 0 => eprintln!("[{t:>4}s] {msg}"),
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
