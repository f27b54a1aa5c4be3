//! HdrHistogram interval logs (`.hlog`): one line per metric per second, compressed V2 encoding
//! (what the reference Java `HistogramLogProcessor` reads), tagged with the metric name; the
//! untagged line of each second is all operations together, so the Java tool's default view is the
//! overall latency. Error and event counts and the connected-device gauge ride along as comment
//! lines (`#m2m-loadgen second {json}`), which every HdrHistogram reader skips, so `merge` can
//! rebuild a whole report from logs alone.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriter, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use super::{Measurements, Second};
use crate::recorder::{Interval, Metric};

const SECOND_PREFIX: &str = "m2m-loadgen second ";
const SCENARIO_PREFIX: &str = "m2m-loadgen scenario ";

#[derive(serde::Serialize, serde::Deserialize)]
struct SecondComment {
    t: u64,
    connected: u64,
    #[serde(default)]
    errors: BTreeMap<String, u64>,
    #[serde(default)]
    events: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    sent: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    scheduled: u64,
    /// The earliest and latest intended send in this second, µs since the log's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_send_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_send_us: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Start a log: headers, the scenario as a comment.
pub fn begin<'a, 'b, W: Write, S: Serializer>(
    out: &'a mut W,
    ser: &'b mut S,
    started: SystemTime,
    scenario: &str,
) -> std::io::Result<IntervalLogWriter<'a, 'b, W, S>> {
    let mut w = IntervalLogWriterBuilder::new()
        .add_comment("m2m-loadgen interval log: values in microseconds; tags are metrics, untagged = all operations")
        .with_start_time(started)
        .with_base_time(started)
        .with_max_value_divisor(1000.0)
        .begin_log_with(out, ser)?;
    w.write_comment(&format!(
        "{SCENARIO_PREFIX}{}",
        serde_json::to_string(scenario).unwrap_or_default()
    ))?;
    Ok(w)
}

/// Append second `t` (the interval `[t-1, t)` since the base time).
pub fn write_second<W: Write, S: Serializer>(
    w: &mut IntervalLogWriter<'_, '_, W, S>,
    t: u64,
    s: &Second,
) -> anyhow::Result<()>
where
    S::SerializeError: std::fmt::Debug,
{
    let start = Duration::from_secs(t.saturating_sub(1));
    let len = Duration::from_secs(1);
    let err = |e| anyhow::anyhow!("writing interval log: {e:?}");
    w.write_histogram(&s.interval.all_ops(), start, len, None)
        .map_err(err)?;
    for m in Metric::all() {
        let h = s.interval.hist(m);
        if !h.is_empty() {
            let name = m.name();
            let tag = Tag::new(&name).expect("metric names have no spaces or commas");
            w.write_histogram(h, start, len, Some(tag)).map_err(err)?;
        }
    }
    let comment = SecondComment {
        t,
        connected: s.connected,
        errors: s.interval.errors.clone(),
        events: s.interval.events.clone(),
        sent: s.interval.sent,
        scheduled: s.interval.scheduled,
        first_send_us: s.interval.first_send_us,
        last_send_us: s.interval.last_send_us,
    };
    w.write_comment(&format!(
        "{SECOND_PREFIX}{}",
        serde_json::to_string(&comment)?
    ))?;
    Ok(())
}

/// Write a whole log at once (tests, and tools that have all seconds in hand).
pub fn write_file(
    path: &Path,
    started: SystemTime,
    scenario: &str,
    seconds: &BTreeMap<u64, Second>,
) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut ser = V2DeflateSerializer::new();
    let mut w = begin(&mut out, &mut ser, started, scenario)?;
    for (t, s) in seconds {
        write_second(&mut w, *t, s)?;
    }
    drop(w);
    out.flush()?;
    Ok(())
}

/// One log read back: its start time and its seconds.
#[derive(Debug, Default)]
pub struct Log {
    pub started_unix: f64,
    pub scenario: String,
    pub seconds: BTreeMap<u64, Second>,
}

/// Read a log this tool wrote (other logs work too: their tagged lines that name our metrics count,
/// the rest is ignored).
pub fn read_file(path: &Path) -> anyhow::Result<Log> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut log = Log::default();
    let mut base = None;
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        match entry.map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))? {
            LogEntry::StartTime(t) => {
                if base.is_none() {
                    log.started_unix = t.as_secs_f64();
                }
            }
            LogEntry::BaseTime(t) => {
                base = Some(t);
                log.started_unix = t.as_secs_f64();
            }
            LogEntry::Interval(i) => {
                let Some(tag) = i.tag() else { continue };
                let Some(metric) = Metric::from_name(tag.as_str()) else {
                    continue;
                };
                let t = (i.start_timestamp() + i.duration()).as_secs_f64().round() as u64;
                let encoded = i.encoded_histogram();
                let raw = base64_decode(encoded)?;
                let h: hdrhistogram::Histogram<u64> = de
                    .deserialize(&mut raw.as_slice())
                    .map_err(|e| anyhow::anyhow!("{}: histogram: {e:?}", path.display()))?;
                let second = log.seconds.entry(t).or_default();
                second.interval.hists[metric.index()]
                    .add(&h)
                    .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
            }
        }
    }
    // Comment lines: the scenario, and per second errors, events and the gauge.
    for line in String::from_utf8_lossy(&bytes).lines() {
        let Some(c) = line.strip_prefix('#') else {
            continue;
        };
        if let Some(json) = c.strip_prefix(SCENARIO_PREFIX) {
            log.scenario = serde_json::from_str(json).unwrap_or_default();
        } else if let Some(json) = c.strip_prefix(SECOND_PREFIX) {
            let sc: SecondComment = serde_json::from_str(json)
                .with_context(|| format!("{}: bad comment {line:?}", path.display()))?;
            let second = log.seconds.entry(sc.t).or_default();
            second.connected = sc.connected;
            second.interval.errors = sc.errors;
            second.interval.events = sc.events;
            second.interval.sent = sc.sent;
            second.interval.scheduled = sc.scheduled;
            second.interval.first_send_us = sc.first_send_us;
            second.interval.last_send_us = sc.last_send_us;
        }
    }
    Ok(log)
}

fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    Ok(base64::engine::general_purpose::STANDARD.decode(text.trim())?)
}

/// Add several logs (shards of one distributed run) into one set of measurements: seconds are
/// aligned by wall-clock time, histograms are added, gauges and counts summed.
pub fn merge(logs: &[Log]) -> anyhow::Result<Measurements> {
    let Some(first) = logs.iter().map(|l| l.started_unix).reduce(f64::min) else {
        bail!("nothing to merge")
    };
    let mut seconds: BTreeMap<u64, Second> = BTreeMap::new();
    let mut scenario = String::new();
    for log in logs {
        let shift = log.started_unix - first;
        let shift_us = (shift * 1e6).round() as u64;
        for (t, s) in &log.seconds {
            let at = (*t as f64 + shift).round().max(0.0) as u64;
            let mine = seconds.entry(at).or_default();
            // Send times are kept since each log's own start: move them onto the earliest's.
            let mut interval = s.interval.clone();
            interval.first_send_us = interval.first_send_us.map(|u| u + shift_us);
            interval.last_send_us = interval.last_send_us.map(|u| u + shift_us);
            mine.interval.add(&interval);
            mine.connected += s.connected;
        }
        if !scenario.contains(&log.scenario) {
            if !scenario.is_empty() {
                scenario.push_str("\n# --- a shard with another scenario ---\n");
            }
            scenario.push_str(&log.scenario);
        }
    }
    let mut m = Measurements {
        scenario,
        command: crate::command_line(),
        started_unix: first,
        ..Default::default()
    };
    for (t, s) in &seconds {
        m.add_second(*t, s);
    }
    Ok(m)
}

/// An empty second (for callers that build logs by hand).
pub fn second() -> Second {
    Second {
        interval: Interval::default(),
        connected: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{OpKind, record};
    use crate::report::Summary;

    fn log(
        dir: &Path,
        name: &str,
        started: u64,
        samples: &[(u64, u64)],
        errors: u64,
    ) -> std::path::PathBuf {
        let mut seconds = BTreeMap::new();
        for (t, ms) in samples {
            let s: &mut Second = seconds.entry(*t).or_insert_with(second);
            record(
                &mut s.interval.hists[Metric::Op(OpKind::CreateCin).index()],
                Duration::from_millis(*ms),
            );
            s.connected = 1;
        }
        if errors > 0 {
            seconds
                .entry(1)
                .or_insert_with(second)
                .interval
                .errors
                .insert("rsc 4004".into(), errors);
        }
        let path = dir.join(name);
        write_file(
            &path,
            SystemTime::UNIX_EPOCH + Duration::from_secs(started),
            "devices = 2\n",
            &seconds,
        )
        .unwrap();
        path
    }

    /// Two shards: one saw 99 fast requests, the other one slow one. Averaging the shards' p99
    /// would say ~500 ms; the added histograms say what one run would have: p99 fast, max slow.
    #[test]
    fn merge_adds_histograms_instead_of_averaging_percentiles() {
        let dir = std::env::temp_dir().join(format!("m2m-hlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = log(
            &dir,
            "a.hlog",
            1000,
            &(0..99).map(|_| (2, 1)).collect::<Vec<_>>(),
            2,
        );
        // b started a second later: its second 1 is a's second 2.
        let b = log(&dir, "b.hlog", 1001, &[(1, 1000)], 1);
        let logs = [read_file(&a).unwrap(), read_file(&b).unwrap()];
        assert_eq!(logs[0].scenario, "devices = 2\n");
        let m = merge(&logs).unwrap();
        let s = Summary::new(&m);
        let op = s.op(OpKind::CreateCin).unwrap();
        assert_eq!(op.count, 100);
        assert!(op.p99_us < 1_100, "p99 {}", op.p99_us);
        assert!(op.max_us >= 999_000, "max {}", op.max_us);
        assert_eq!(s.errors["rsc 4004"], 3);
        let at2 = s.timeline.iter().find(|p| p.t == 2).unwrap();
        assert_eq!((at2.ops_per_s, at2.connected), (100, 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Each shard keeps its send times since its own start; merged, the window spans the earliest
    /// first send to the latest last send on one clock, and the counts add.
    #[test]
    fn merge_puts_the_shards_send_windows_on_one_clock() {
        let dir = std::env::temp_dir().join(format!("m2m-hlog-win-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shard = |name: &str, started: u64, first: u64, last: u64| {
            let mut seconds = BTreeMap::new();
            let mut s = second();
            s.interval.sent = 10;
            s.interval.scheduled = 12;
            s.interval.first_send_us = Some(first);
            s.interval.last_send_us = Some(last);
            seconds.insert(1, s);
            let path = dir.join(name);
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(started);
            write_file(&path, at, "", &seconds).unwrap();
            read_file(&path).unwrap()
        };
        let a = shard("a.hlog", 100, 500_000, 2_500_000);
        let b = shard("b.hlog", 101, 200_000, 3_000_000);
        assert_eq!(a.seconds[&1].interval.last_send_us, Some(2_500_000));
        let s = Summary::new(&merge(&[a, b]).unwrap());
        assert_eq!((s.sent, s.scheduled), (20, 24));
        // a: 0.5 s .. 2.5 s; b (a second later): 1.2 s .. 4.0 s.
        assert_eq!(s.window_s, 3.5);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_log_round_trips() {
        let dir = std::env::temp_dir().join(format!("m2m-hlog-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = log(&dir, "x.hlog", 5, &[(1, 3), (1, 4), (3, 9)], 0);
        let l = read_file(&p).unwrap();
        assert_eq!(l.started_unix, 5.0);
        assert_eq!(l.seconds.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(
            l.seconds[&1]
                .interval
                .hist(Metric::Op(OpKind::CreateCin))
                .len(),
            2
        );
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("Tag=create_cin,"), "{text}");
        assert!(text.contains("#[BaseTime: 5.000"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
