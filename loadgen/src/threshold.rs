//! Pass/fail criteria for a run, so that the loadgen can gate a CI pipeline (as k6 thresholds or
//! Artillery's `ensure` do): `METRIC.STAT OP VALUE`, e.g. `all_ops.p99<5ms`, `create_cin.p99.9<=20ms`,
//! `notify.p50<2ms`, `errors<0.1%`, `errors==0`, `schedule_lag.p99<1ms`, `rate>=0.99` (open loop:
//! requests sent over requests the schedule asked for; also as a percentage). METRIC is `all_ops` or a
//! metric's name in the summary (an operation, or the loadgen's own `schedule_lag`); STAT is `p50`, `p90`, `p95`, `p99`, `p99.9`, `max` or `mean` (corrected latencies); VALUE takes
//! `us`, `ms` or `s`. `errors` compares a count, or with `%` a share of operations and errors. A threshold
//! naming an operation the run did not measure fails (nothing measured proves nothing).
//!
//! Exit status (set by the binary): 0 when every threshold holds, 99 when one fails (k6's
//! convention), 1 when the run could not do its job at all, 2 for a threshold that does not parse.

use crate::report::{MetricSummary, Summary};

/// What a threshold compares.
#[derive(Debug, Clone, PartialEq)]
enum Measure {
    Latency {
        metric: String,
        stat: Stat,
    },
    Errors {
        share: bool,
    },
    /// Open loop: requests sent over requests scheduled.
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stat {
    P50,
    P90,
    P95,
    P99,
    P999,
    Max,
    Mean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// One parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    text: String,
    measure: Measure,
    cmp: Cmp,
    /// µs for latencies; a count or a fraction (0.001 for 0.1 %) for errors.
    value: f64,
}

/// A threshold judged against a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub threshold: String,
    /// What the run measured, in the threshold's own unit (`ms`, `%`, a count); none when the
    /// metric was not measured.
    pub measured: Option<String>,
    pub pass: bool,
}

impl Threshold {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let at = t.find(['<', '>', '=']).ok_or_else(|| {
            format!("{text:?}: expected METRIC.STAT OP VALUE, e.g. all_ops.p99<5ms")
        })?;
        let (lhs, rest) = t.split_at(at);
        let (cmp, value) = [
            ("<=", Cmp::Le),
            (">=", Cmp::Ge),
            ("==", Cmp::Eq),
            ("<", Cmp::Lt),
            (">", Cmp::Gt),
        ]
        .into_iter()
        .find_map(|(op, c)| rest.strip_prefix(op).map(|v| (c, v.trim())))
        .ok_or_else(|| format!("{text:?}: the operator must be <, <=, >, >= or =="))?;
        let lhs = lhs.trim();
        let (measure, value) = if lhs == "rate" {
            match value.strip_suffix('%') {
                Some(pct) => (Measure::Rate, number(text, pct)? / 100.0),
                None => (Measure::Rate, number(text, value)?),
            }
        } else if lhs == "errors" {
            match value.strip_suffix('%') {
                Some(pct) => (Measure::Errors { share: true }, number(text, pct)? / 100.0),
                None => (Measure::Errors { share: false }, number(text, value)?),
            }
        } else {
            let (metric, stat) = lhs
                .split_once('.')
                .ok_or_else(|| format!("{text:?}: expected METRIC.STAT (e.g. all_ops.p99)"))?;
            if metric == "rate" || metric == "errors" {
                return Err(format!(
                    "{text:?}: {metric} takes no statistic (e.g. {metric}>=0.99)"
                ));
            }
            let stat = match stat {
                "p50" => Stat::P50,
                "p90" => Stat::P90,
                "p95" => Stat::P95,
                "p99" => Stat::P99,
                "p99.9" => Stat::P999,
                "max" => Stat::Max,
                "mean" => Stat::Mean,
                other => {
                    return Err(format!(
                        "{text:?}: unknown statistic {other:?} (p50, p90, p95, p99, p99.9, max, mean)"
                    ));
                }
            };
            let measure = Measure::Latency {
                metric: metric.to_string(),
                stat,
            };
            (measure, micros(text, value)?)
        };
        Ok(Self {
            text: t.to_string(),
            measure,
            cmp,
            value,
        })
    }

    /// Judge this threshold against a run's summary.
    pub fn judge(&self, s: &Summary) -> Verdict {
        let measured = match &self.measure {
            Measure::Errors { share: false } => {
                Some((s.errors_total as f64, format!("{}", s.errors_total)))
            }
            Measure::Errors { share: true } => {
                let all = (s.operations + s.errors_total).max(1) as f64;
                let share = s.errors_total as f64 / all;
                Some((share, format!("{:.3}%", share * 100.0)))
            }
            Measure::Rate => s
                .achieved_rate
                .map(|r| (r, format!("{r:.4} ({} of {} sent)", s.sent, s.scheduled))),
            Measure::Latency { metric, stat } => metric_of(s, metric).map(|m| {
                let us = stat_of(m, *stat);
                (us, format!("{:.3}ms", us / 1000.0))
            }),
        };
        let pass = measured.as_ref().is_some_and(|(v, _)| self.holds(*v));
        Verdict {
            threshold: self.text.clone(),
            measured: measured.map(|(_, shown)| shown),
            pass,
        }
    }

    fn holds(&self, v: f64) -> bool {
        match self.cmp {
            Cmp::Lt => v < self.value,
            Cmp::Le => v <= self.value,
            Cmp::Gt => v > self.value,
            Cmp::Ge => v >= self.value,
            Cmp::Eq => (v - self.value).abs() < 1e-9,
        }
    }
}

fn metric_of<'a>(s: &'a Summary, name: &str) -> Option<&'a MetricSummary> {
    if name == "all_ops" {
        return Some(&s.all_ops).filter(|m| m.count > 0);
    }
    s.metrics.iter().find(|m| m.name == name && m.count > 0)
}

fn stat_of(m: &MetricSummary, stat: Stat) -> f64 {
    match stat {
        Stat::P50 => m.p50_us as f64,
        Stat::P90 => m.p90_us as f64,
        Stat::P95 => m.p95_us as f64,
        Stat::P99 => m.p99_us as f64,
        Stat::P999 => m.p999_us as f64,
        Stat::Max => m.max_us as f64,
        Stat::Mean => m.mean_us,
    }
}

fn number(text: &str, v: &str) -> Result<f64, String> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| format!("{text:?}: {v:?} is not a non-negative number"))
}

/// A latency with its unit, in µs.
fn micros(text: &str, v: &str) -> Result<f64, String> {
    let (n, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1000.0)
    } else if let Some(n) = v.strip_suffix("us").or_else(|| v.strip_suffix("µs")) {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return Err(format!("{text:?}: a latency needs its unit (us, ms, s)"));
    };
    Ok(number(text, n)? * scale)
}

/// Parse every threshold (the first error is returned).
pub fn parse_all(texts: &[String]) -> Result<Vec<Threshold>, String> {
    texts
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Threshold::parse(t))
        .collect()
}

/// Why a run could not do its job at all (exit 1 even without thresholds), if so.
pub fn run_failed(s: &Summary) -> Option<String> {
    // The gauge is sampled once a second, so a short run can end with every device gone before a
    // sample: connections opened count too.
    if s.max_connected == 0 && s.events.get("connections").copied().unwrap_or(0) == 0 {
        return Some("no device connected".into());
    }
    if s.operations == 0 && s.errors_total > 0 {
        return Some(format!("every request failed ({} errors)", s.errors_total));
    }
    None
}

/// One clear line when the loadgen's own lateness is large next to what it measured (schedule lag
/// p99 above 10 % of the corrected p99 of all operations): the results include it.
pub fn lag_warning(s: &Summary) -> Option<String> {
    let lag = s.metrics.iter().find(|m| m.name == "schedule_lag")?;
    let p99 = s.all_ops.p99_us;
    (lag.count > 0 && lag.p99_us * 10 > p99).then(|| {
        format!(
            "the load generator fell behind its schedule: lag p99 {:.3} ms against a corrected p99 of {:.3} ms; results include it",
            lag.p99_us as f64 / 1000.0,
            p99 as f64 / 1000.0
        )
    })
}

/// The verdicts as lines, one per threshold.
pub fn render(verdicts: &[Verdict]) -> String {
    verdicts
        .iter()
        .map(|v| {
            format!(
                "{} {}: measured {}\n",
                if v.pass { "PASS" } else { "FAIL" },
                v.threshold,
                v.measured
                    .as_deref()
                    .unwrap_or("nothing (not measured in this run)")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        let m = |name: &str, p99: u64| MetricSummary {
            name: name.into(),
            count: 100,
            mean_us: 700.0,
            p50_us: 500,
            p90_us: 800,
            p95_us: 900,
            p99_us: p99,
            p999_us: 3000,
            max_us: 9000,
        };
        Summary {
            tool: "m2m-loadgen",
            version: "0",
            started_unix: 0.0,
            command: String::new(),
            seconds: 10,
            operations: 1000,
            ops_per_s: 100.0,
            window_s: 10.0,
            sent: 1002,
            scheduled: 1010,
            achieved_rate: Some(1002.0 / 1010.0),
            errors_total: 2,
            metrics: vec![m("create_cin", 1500)],
            all_ops: m("all_ops", 2000),
            errors: Default::default(),
            events: Default::default(),
            max_connected: 10,
            timeline: Vec::new(),
            scenario: String::new(),
            thresholds: Vec::new(),
            cpu_seconds: Vec::new(),
        }
    }

    fn judge(t: &str) -> Verdict {
        Threshold::parse(t).unwrap().judge(&summary())
    }

    #[test]
    fn latencies_take_units_and_compare_as_written() {
        assert!(judge("all_ops.p99<5ms").pass);
        assert!(!judge("all_ops.p99<2ms").pass);
        assert!(judge("all_ops.p99<=2ms").pass);
        assert!(judge("create_cin.p99.9<=3000us").pass);
        assert!(judge("all_ops.max < 0.01s").pass);
        assert!(judge("all_ops.mean>0.5ms").pass);
        assert_eq!(
            judge("all_ops.p99<5ms").measured.as_deref(),
            Some("2.000ms")
        );
    }

    #[test]
    fn errors_as_a_count_or_a_share() {
        assert!(!judge("errors==0").pass);
        assert!(judge("errors<=2").pass);
        // 2 errors of 1,002 attempts: 0.2 %.
        assert!(!judge("errors<0.1%").pass);
        assert!(judge("errors<0.5%").pass);
    }

    #[test]
    fn achieved_rate_as_a_fraction_or_a_percentage() {
        assert!(judge("rate>=0.99").pass);
        assert!(!judge("rate>=0.995").pass);
        assert!(judge("rate>=99%").pass);
        assert_eq!(
            judge("rate>=0.99").measured.as_deref(),
            Some("0.9921 (1002 of 1010 sent)")
        );
        let mut closed = summary();
        closed.achieved_rate = None;
        let v = Threshold::parse("rate>=0.5").unwrap().judge(&closed);
        assert!(
            !v.pass && v.measured.is_none(),
            "closed loop has no schedule"
        );
    }

    #[test]
    fn an_operation_not_measured_fails() {
        let v = judge("notify.p50<2ms");
        assert!(!v.pass && v.measured.is_none());
    }

    #[test]
    fn bad_thresholds_are_refused_with_the_reason() {
        for (t, why) in [
            ("all_ops.p99", "expected METRIC.STAT OP VALUE"),
            ("all_ops.p99<5", "needs its unit"),
            ("all_ops.p42<5ms", "unknown statistic"),
            ("all_ops<5ms", "expected METRIC.STAT"),
            ("errors<x%", "not a non-negative number"),
            ("all_ops.p99=>5ms", "operator"),
            ("rate.p50>=0.99", "takes no statistic"),
            ("rate>=x", "not a non-negative number"),
        ] {
            let e = Threshold::parse(t).unwrap_err();
            assert!(e.contains(why), "{t}: {e}");
        }
    }

    #[test]
    fn a_large_schedule_lag_is_said_and_can_be_a_threshold() {
        let mut s = summary();
        assert_eq!(lag_warning(&s), None, "open loop not measured");
        let mut lag = s.metrics[0].clone();
        lag.name = "schedule_lag".into();
        lag.p99_us = 100;
        s.metrics.push(lag);
        assert_eq!(lag_warning(&s), None, "0.1 ms against 2 ms");
        s.metrics[1].p99_us = 400;
        assert!(lag_warning(&s).unwrap().contains("lag p99 0.400 ms"));
        assert!(
            !Threshold::parse("schedule_lag.p99<0.2ms")
                .unwrap()
                .judge(&s)
                .pass
        );
    }

    #[test]
    fn a_run_that_did_nothing_is_a_failure_without_thresholds() {
        let mut s = summary();
        assert_eq!(run_failed(&s), None);
        s.max_connected = 0;
        assert!(run_failed(&s).unwrap().contains("no device"));
        // Connected between two samples of the gauge: it did connect.
        s.events.insert("connections".into(), 5);
        assert_eq!(run_failed(&s), None);
        s.events.clear();
        s.max_connected = 10;
        s.operations = 0;
        assert!(run_failed(&s).unwrap().contains("every request failed"));
    }
}
