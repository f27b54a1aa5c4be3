//! What a run measures: one HdrHistogram per metric (connection phases, registration, each operation
//! corrected and uncorrected, NOTIFY delivery), error counts by key (`rsc 4004`, `close 1009`,
//! `timeout`, …) and completed requests, kept per worker for the current one-second interval and handed
//! to the collector at each tick. Workers never share a histogram, so recording takes no lock.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Histogram values are microseconds, from 1 µs to one hour, 3 significant digits.
pub const HIGHEST_US: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid histogram bounds")
}

/// Record `d` in microseconds, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, HIGHEST_US);
    h.record(us).expect("value clamped into range");
}

/// The operations of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    CreateCin,
    RetrieveLa,
    Update,
    Discovery,
}

impl OpKind {
    pub const ALL: [OpKind; 4] = [
        OpKind::CreateCin,
        OpKind::RetrieveLa,
        OpKind::Update,
        OpKind::Discovery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::CreateCin => "create_cin",
            Self::RetrieveLa => "retrieve_la",
            Self::Update => "update",
            Self::Discovery => "discovery",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Everything that gets a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Connect,
    Tls,
    Handshake,
    Register,
    Setup,
    Op(OpKind),
    Uncorrected(OpKind),
    Notify,
    Deregister,
    /// Open loop: how late the loadgen itself sent each request (actual minus intended send time),
    /// so its own lateness is shown rather than hidden in the corrected latency.
    ScheduleLag,
    /// Open loop: how early it sent each request (intended minus actual; sends leave on a 2 ms
    /// grid, woken ahead of time so that they are not late).
    ScheduleEarly,
}

impl Metric {
    pub const COUNT: usize = 17;

    pub fn all() -> impl Iterator<Item = Metric> {
        (0..Self::COUNT).map(Self::from_index)
    }

    pub fn index(self) -> usize {
        match self {
            Self::Connect => 0,
            Self::Tls => 1,
            Self::Handshake => 2,
            Self::Register => 3,
            Self::Setup => 4,
            Self::Op(k) => 5 + k as usize,
            Self::Uncorrected(k) => 9 + k as usize,
            Self::Deregister => 13,
            Self::Notify => 14,
            Self::ScheduleLag => 15,
            Self::ScheduleEarly => 16,
        }
    }

    pub fn from_index(i: usize) -> Self {
        match i {
            0 => Self::Connect,
            1 => Self::Tls,
            2 => Self::Handshake,
            3 => Self::Register,
            4 => Self::Setup,
            5..=8 => Self::Op(OpKind::ALL[i - 5]),
            9..=12 => Self::Uncorrected(OpKind::ALL[i - 9]),
            13 => Self::Deregister,
            14 => Self::Notify,
            15 => Self::ScheduleLag,
            _ => Self::ScheduleEarly,
        }
    }

    /// The name in tables, JSON and `.hlog` tags.
    pub fn name(self) -> String {
        match self {
            Self::Connect => "connect".into(),
            Self::Tls => "tls".into(),
            Self::Handshake => "handshake".into(),
            Self::Register => "register".into(),
            Self::Setup => "setup".into(),
            Self::Op(k) => k.name().into(),
            Self::Uncorrected(k) => format!("{}.uncorrected", k.name()),
            Self::Notify => "notify".into(),
            Self::Deregister => "deregister".into(),
            Self::ScheduleLag => "schedule_lag".into(),
            Self::ScheduleEarly => "schedule_early".into(),
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::all().find(|m| m.name() == name)
    }
}

/// Latency of one request both ways: from its intended send time (corrected) and from when it was
/// actually sent (uncorrected). Used by the scheduler's tests; the engine records the same pair into
/// a [`Recorder`].
#[derive(Debug)]
pub struct LatencyPair {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
}

impl Default for LatencyPair {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyPair {
    pub fn new() -> Self {
        Self {
            corrected: new_histogram(),
            uncorrected: new_histogram(),
        }
    }

    /// Times are offsets from the same origin.
    pub fn record(&mut self, intended: Duration, sent: Duration, answered: Duration) {
        record(&mut self.corrected, answered.saturating_sub(intended));
        record(&mut self.uncorrected, answered.saturating_sub(sent));
    }

    pub fn corrected(&self) -> &Histogram<u64> {
        &self.corrected
    }

    pub fn uncorrected(&self) -> &Histogram<u64> {
        &self.uncorrected
    }
}

/// One worker's measurements for one interval (or, summed, for a whole run).
#[derive(Debug, Clone)]
pub struct Interval {
    pub hists: Vec<Histogram<u64>>,
    pub errors: BTreeMap<String, u64>,
    /// Things that are not errors: connections opened, reconnects.
    pub events: BTreeMap<String, u64>,
    /// Operation requests sent.
    pub sent: u64,
    /// Open loop: the sends the schedule asked of the devices (counted as their slots come, and at
    /// a device's end for the slots it did not reach), so that achieved against scheduled rate can
    /// be judged.
    pub scheduled: u64,
    /// The measured window: the earliest and latest intended send time, µs since the run's start.
    pub first_send_us: Option<u64>,
    pub last_send_us: Option<u64>,
}

impl Default for Interval {
    fn default() -> Self {
        Self {
            hists: (0..Metric::COUNT).map(|_| new_histogram()).collect(),
            errors: BTreeMap::new(),
            events: BTreeMap::new(),
            sent: 0,
            scheduled: 0,
            first_send_us: None,
            last_send_us: None,
        }
    }
}

impl Interval {
    pub fn add(&mut self, other: &Interval) {
        for (a, b) in self.hists.iter_mut().zip(&other.hists) {
            a.add(b).expect("same bounds");
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.events {
            *self.events.entry(k.clone()).or_default() += v;
        }
        self.sent += other.sent;
        self.scheduled += other.scheduled;
        self.first_send_us = min_some(self.first_send_us, other.first_send_us);
        self.last_send_us = self.last_send_us.max(other.last_send_us);
    }

    /// Empty it for another interval, keeping the histograms' memory.
    pub fn reset(&mut self) {
        for h in &mut self.hists {
            h.reset();
        }
        self.errors.clear();
        self.events.clear();
        self.sent = 0;
        self.scheduled = 0;
        self.first_send_us = None;
        self.last_send_us = None;
    }

    /// The measured window in seconds: first to last intended send (0 without two sends).
    pub fn window_s(&self) -> f64 {
        match (self.first_send_us, self.last_send_us) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e6,
            _ => 0.0,
        }
    }

    pub fn hist(&self, m: Metric) -> &Histogram<u64> {
        &self.hists[m.index()]
    }

    /// Completed operations (all kinds).
    pub fn ops(&self) -> u64 {
        OpKind::ALL
            .iter()
            .map(|k| self.hist(Metric::Op(*k)).len())
            .sum()
    }

    /// All operations' corrected latencies in one histogram.
    pub fn all_ops(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for k in OpKind::ALL {
            h.add(self.hist(Metric::Op(k))).expect("same bounds");
        }
        h
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A worker's recorder: the open interval.
#[derive(Debug, Default)]
pub struct Recorder {
    current: Interval,
}

impl Recorder {
    pub fn record(&mut self, m: Metric, d: Duration) {
        record(&mut self.current.hists[m.index()], d);
    }

    pub fn error(&mut self, key: impl Into<String>) {
        *self.current.errors.entry(key.into()).or_default() += 1;
    }

    pub fn event(&mut self, key: &str) {
        *self.current.events.entry(key.to_string()).or_default() += 1;
    }

    /// A request sent that was meant to leave at `intended_us` (µs since the run's start).
    pub fn sent(&mut self, intended_us: u64) {
        let c = &mut self.current;
        c.sent += 1;
        c.first_send_us = min_some(c.first_send_us, Some(intended_us));
        c.last_send_us = c.last_send_us.max(Some(intended_us));
    }

    /// Sends the schedule asked of a device over its life.
    pub fn scheduled(&mut self, n: u64) {
        self.current.scheduled += n;
    }

    /// Close the interval and start a new one.
    pub fn take(&mut self) -> Interval {
        std::mem::take(&mut self.current)
    }

    /// Close the interval and go on in `empty` (a reset interval handed back by the collector), so
    /// that the worker does not allocate (and fault in) fresh histograms every second.
    pub fn swap(&mut self, empty: Interval) -> Interval {
        std::mem::replace(&mut self.current, empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_indices_and_names_round_trip() {
        let names: Vec<_> = Metric::all().map(Metric::name).collect();
        assert_eq!(names.len(), Metric::COUNT);
        for (i, m) in Metric::all().enumerate() {
            assert_eq!(m.index(), i, "{}", m.name());
            assert_eq!(Metric::from_name(&m.name()), Some(m));
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn intervals_add_histograms_and_errors() {
        let mut a = Recorder::default();
        a.record(Metric::Op(OpKind::Update), Duration::from_millis(2));
        a.error("rsc 4004");
        let mut b = Recorder::default();
        b.record(Metric::Op(OpKind::Update), Duration::from_millis(4));
        b.error("rsc 4004");
        b.error("timeout");
        let mut sum = a.take();
        sum.add(&b.take());
        assert_eq!(sum.hist(Metric::Op(OpKind::Update)).len(), 2);
        assert_eq!(sum.ops(), 2);
        assert_eq!(sum.errors["rsc 4004"], 2);
        assert_eq!(sum.error_total(), 3);
        assert!(a.take().hists.iter().all(|h| h.is_empty()));
        let mut used = sum;
        used.reset();
        assert_eq!(used.ops(), 0);
        assert!(used.errors.is_empty() && used.window_s() == 0.0);
    }

    #[test]
    fn the_measured_window_spans_first_to_last_intended_send_over_workers() {
        let mut a = Recorder::default();
        a.sent(2_000_000);
        a.sent(5_000_000);
        a.scheduled(3);
        let mut b = Recorder::default();
        b.sent(1_500_000);
        b.scheduled(2);
        let mut sum = Interval::default();
        assert_eq!(sum.window_s(), 0.0);
        sum.add(&a.take());
        sum.add(&b.take());
        assert_eq!((sum.sent, sum.scheduled), (3, 5));
        assert_eq!(sum.window_s(), 3.5);
    }
}
