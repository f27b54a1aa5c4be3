//! When requests are *meant* to be sent. Open-loop load is defined by a rate schedule, and every
//! latency is measured from the intended send time that this module computes, not from the moment the
//! request actually left: a target that stalls delays the sends, and that delay must show up in the
//! latency (coordinated omission, as wrk2 corrects it). Pure arithmetic on `Duration`s since the run's
//! start, so it is tested with a fixed clock.

use std::time::Duration;

use anyhow::{Context, bail};

/// The total request rate over time, in requests per second.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// The same rate for the whole run.
    Constant(f64),
    /// Linear from `from` to `to` over `over`, then `to`.
    Ramp { from: f64, to: f64, over: Duration },
    /// Each step holds its rate for its duration; the last rate holds after the last step.
    Steps(Vec<(f64, Duration)>),
}

impl Schedule {
    /// `constant`, `ramp:TO` (from `rate` to TO over the run) or `steps:R@D,R@D,…` (e.g.
    /// `steps:500@10s,1000@10s`).
    pub fn parse(text: &str, rate: f64, run: Duration) -> anyhow::Result<Self> {
        let text = text.trim();
        let schedule = if text == "constant" {
            Self::Constant(rate)
        } else if let Some(to) = text.strip_prefix("ramp:") {
            let to: f64 = to
                .trim()
                .parse()
                .with_context(|| format!("ramp target {to:?}"))?;
            Self::Ramp {
                from: rate,
                to,
                over: run,
            }
        } else if let Some(steps) = text.strip_prefix("steps:") {
            let mut out = Vec::new();
            for step in steps.split(',') {
                let Some((r, d)) = step.split_once('@') else {
                    bail!("step {step:?}: expected RATE@DURATION")
                };
                let r: f64 = r
                    .trim()
                    .parse()
                    .with_context(|| format!("step rate {r:?}"))?;
                let d = humantime::parse_duration(d.trim())
                    .with_context(|| format!("step duration {d:?}"))?;
                out.push((r, d));
            }
            if out.is_empty() {
                bail!("steps: needs at least one RATE@DURATION");
            }
            Self::Steps(out)
        } else {
            bail!("schedule {text:?}: expected constant, ramp:TO or steps:R@D,…")
        };
        if schedule.rates().any(|r| !r.is_finite() || r < 0.0) {
            bail!("schedule {text:?}: rates must be finite and not negative");
        }
        Ok(schedule)
    }

    fn rates(&self) -> impl Iterator<Item = f64> + '_ {
        let v: Vec<f64> = match self {
            Self::Constant(r) => vec![*r],
            Self::Ramp { from, to, .. } => vec![*from, *to],
            Self::Steps(s) => s.iter().map(|(r, _)| *r).collect(),
        };
        v.into_iter()
    }

    /// The total rate at `t` since the start of the run.
    pub fn rate_at(&self, t: Duration) -> f64 {
        match self {
            Self::Constant(r) => *r,
            Self::Ramp { from, to, over } => {
                if over.is_zero() || t >= *over {
                    *to
                } else {
                    from + (to - from) * (t.as_secs_f64() / over.as_secs_f64())
                }
            }
            Self::Steps(steps) => {
                let mut end = Duration::ZERO;
                for (r, d) in steps {
                    end += *d;
                    if t < end {
                        return *r;
                    }
                }
                steps.last().map_or(0.0, |(r, _)| *r)
            }
        }
    }
}

/// One device's share of the schedule: the intended send times of its requests. With `devices`
/// devices each sends at `rate / devices`, and device `index` is offset by `index / devices` of an
/// interval so that the total is smooth rather than a burst per interval.
#[derive(Debug, Clone)]
pub struct Pacer {
    schedule: Schedule,
    devices: f64,
    next: Duration,
}

/// With no rate at all, look again this much later (a ramp from 0 or a step of 0).
const IDLE_RECHECK: Duration = Duration::from_millis(100);

impl Pacer {
    /// A pacer whose first send is at or after `not_before` (the device joins once it is registered;
    /// it keeps the phase it would have had from the start).
    pub fn new(schedule: Schedule, devices: usize, index: usize, not_before: Duration) -> Self {
        let devices = devices.max(1) as f64;
        let phase = index as f64 / devices;
        let mut pacer = Self {
            schedule,
            devices,
            next: Duration::ZERO,
        };
        let first = pacer.interval_at(Duration::ZERO).mul_f64(phase);
        pacer.next = first;
        while pacer.next < not_before {
            pacer.advance();
        }
        pacer
    }

    fn interval_at(&self, t: Duration) -> Duration {
        let rate = self.schedule.rate_at(t) / self.devices;
        if rate <= 0.0 {
            IDLE_RECHECK
        } else {
            Duration::from_secs_f64(1.0 / rate)
        }
    }

    /// The intended time of the next request (since the run's start), whether or not it is due.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Whether the schedule asks for a request at `peek()` (false during a zero-rate stretch).
    pub fn sends_at_peek(&self) -> bool {
        self.schedule.rate_at(self.next) > 0.0
    }

    /// Move to the following intended time.
    pub fn advance(&mut self) {
        self.next += self.interval_at(self.next);
    }

    /// How many requests the schedule asks of this device from `peek()` until `end` (exclusive).
    pub fn slots_until(&self, end: Duration) -> u64 {
        let mut p = self.clone();
        let mut n = 0;
        while p.next < end {
            n += u64::from(p.sends_at_peek());
            p.advance();
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::LatencyPair;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn slots_count_what_the_schedule_asks_of_a_device() {
        // 10 devices at 100/s: 10/s each; device 5 starts half an interval in.
        let p = Pacer::new(Schedule::Constant(100.0), 10, 5, Duration::ZERO);
        assert_eq!(p.peek(), ms(50));
        assert_eq!(p.slots_until(Duration::from_secs(1)), 10);
        assert_eq!(p.slots_until(ms(50)), 0);
        // A zero-rate stretch asks for nothing.
        let steps = Schedule::Steps(vec![
            (0.0, Duration::from_secs(1)),
            (10.0, Duration::from_secs(1)),
        ]);
        let p = Pacer::new(steps, 1, 0, Duration::ZERO);
        assert_eq!(p.slots_until(Duration::from_secs(2)), 10);
    }

    #[test]
    fn parses_the_three_forms() {
        let run = Duration::from_secs(30);
        assert_eq!(
            Schedule::parse("constant", 100.0, run).unwrap(),
            Schedule::Constant(100.0)
        );
        assert_eq!(
            Schedule::parse("ramp:500", 100.0, run).unwrap(),
            Schedule::Ramp {
                from: 100.0,
                to: 500.0,
                over: run
            }
        );
        assert_eq!(
            Schedule::parse("steps:10@1s, 20@500ms", 0.0, run).unwrap(),
            Schedule::Steps(vec![(10.0, ms(1000)), (20.0, ms(500))])
        );
        for bad in [
            "fast",
            "ramp:x",
            "steps:",
            "steps:10",
            "steps:10@forever",
            "ramp:-1",
        ] {
            assert!(Schedule::parse(bad, 1.0, run).is_err(), "{bad}");
        }
    }

    #[test]
    fn constant_rate_sends_at_the_intended_times_spread_over_devices() {
        // 100 req/s over 4 devices: each device every 40 ms, device 1 offset by 10 ms.
        let mut p = Pacer::new(Schedule::Constant(100.0), 4, 1, Duration::ZERO);
        let times: Vec<_> = (0..4)
            .map(|_| {
                let t = p.peek();
                p.advance();
                t
            })
            .collect();
        assert_eq!(times, vec![ms(10), ms(50), ms(90), ms(130)]);
        // All four devices together: one send every 10 ms.
        let mut all: Vec<_> = (0..4)
            .flat_map(|i| {
                let mut p = Pacer::new(Schedule::Constant(100.0), 4, i, Duration::ZERO);
                (0..25).map(move |_| {
                    let t = p.peek();
                    p.advance();
                    t
                })
            })
            .collect();
        all.sort();
        assert_eq!(all.len(), 100);
        for (n, t) in all.iter().enumerate() {
            assert!(
                t.abs_diff(ms(n as u64 * 10)) < Duration::from_micros(1),
                "{n}: {t:?}"
            );
        }
    }

    #[test]
    fn a_device_that_joins_late_keeps_its_phase() {
        let p = Pacer::new(Schedule::Constant(10.0), 1, 0, ms(250));
        assert_eq!(p.peek(), ms(300));
    }

    #[test]
    fn ramp_and_steps_change_the_interval() {
        let s = Schedule::Ramp {
            from: 0.0,
            to: 100.0,
            over: Duration::from_secs(10),
        };
        assert_eq!(s.rate_at(Duration::from_secs(5)), 50.0);
        assert_eq!(s.rate_at(Duration::from_secs(20)), 100.0);
        let steps = Schedule::Steps(vec![
            (10.0, Duration::from_secs(1)),
            (0.0, Duration::from_secs(1)),
            (50.0, Duration::from_secs(1)),
        ]);
        let mut p = Pacer::new(steps, 1, 0, Duration::ZERO);
        let mut sent = Vec::new();
        while p.peek() < Duration::from_secs(3) {
            if p.sends_at_peek() {
                sent.push(p.peek());
            }
            p.advance();
        }
        let first = sent.iter().filter(|t| **t < Duration::from_secs(1)).count();
        let second = sent
            .iter()
            .filter(|t| (Duration::from_secs(1)..Duration::from_secs(2)).contains(*t))
            .count();
        let third = sent
            .iter()
            .filter(|t| **t >= Duration::from_secs(2))
            .count();
        assert_eq!((first, second), (10, 0));
        assert!((49..=51).contains(&third), "{third}");
    }

    /// A target that answers in 1 ms but stalls for one second at t = 5 s, driven by a client that
    /// can only send after the previous answer (one connection, one in flight): the uncorrected
    /// histogram sees one slow request, the corrected one sees every request that was due during
    /// the stall wait, as a user of the target would have.
    #[test]
    fn a_stalled_target_shows_in_the_corrected_histogram() {
        let mut p = Pacer::new(Schedule::Constant(100.0), 1, 0, Duration::ZERO);
        let mut lat = LatencyPair::new();
        let mut free_at = Duration::ZERO; // when the connection can send again
        let stall = (Duration::from_secs(5), Duration::from_secs(6));
        while p.peek() < Duration::from_secs(10) {
            let intended = p.peek();
            let sent = intended.max(free_at);
            let answered = if (stall.0..stall.1).contains(&sent) {
                stall.1 + ms(1)
            } else {
                sent + ms(1)
            };
            lat.record(intended, sent, answered);
            free_at = answered;
            p.advance();
        }
        let (corrected, uncorrected) = (lat.corrected(), lat.uncorrected());
        assert_eq!(corrected.len(), 1000);
        assert_eq!(uncorrected.len(), 1000);
        // Uncorrected: 999 answers at 1 ms, one at ~1 s; its p99 hides the stall.
        assert!(
            uncorrected.value_at_quantile(0.99) <= 1_100,
            "{}",
            uncorrected.value_at_quantile(0.99)
        );
        assert!(uncorrected.max() >= 990_000);
        // Corrected: the ~100 requests due during the stall waited up to 1 s: p95 is hundreds of ms.
        assert!(
            corrected.value_at_quantile(0.95) >= 400_000,
            "{}",
            corrected.value_at_quantile(0.95)
        );
        assert!(corrected.value_at_quantile(0.5) <= 1_100);
    }
}
