//! The HTML report: one self-contained page (inline SVG drawn with `plotters`, inline CSS, no
//! script, no network) with the latency percentile distribution of every operation (corrected and
//! uncorrected), latency and throughput over time (all operations and each), the loadgen's own
//! lateness, the error breakdown, and at the top when, with what version and command line and with
//! which scenario it ran (and in `bench` the CPU each part spent).

use std::fmt::Write;

use plotters::prelude::*;

use super::{Measurements, Summary};
use crate::recorder::{Metric, OpKind};

const W: u32 = 880;
const H: u32 = 360;
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Quantiles spread evenly on the "nines" axis, up to 99.999 %.
fn quantiles() -> impl Iterator<Item = f64> {
    (0..=50).map(|i| 1.0 - 10f64.powf(-(i as f64) / 10.0))
}

type Series = (String, Vec<(f64, f64)>, bool);

fn percentile_chart(m: &Measurements) -> Result<String, String> {
    let mut series: Vec<Series> = Vec::new();
    for k in OpKind::ALL {
        for (metric, dashed) in [(Metric::Op(k), false), (Metric::Uncorrected(k), true)] {
            let h = m.total.hist(metric);
            if h.is_empty() {
                continue;
            }
            let pts = quantiles()
                .map(|q| {
                    (
                        1.0 / (1.0 - q).max(1e-5),
                        h.value_at_quantile(q) as f64 / 1000.0,
                    )
                })
                .collect();
            series.push((metric.name(), pts, dashed));
        }
    }
    let notify = m.total.hist(Metric::Notify);
    if !notify.is_empty() {
        let pts = quantiles()
            .map(|q| {
                (
                    1.0 / (1.0 - q).max(1e-5),
                    notify.value_at_quantile(q) as f64 / 1000.0,
                )
            })
            .collect();
        series.push(("notify".into(), pts, false));
    }
    let ymax = series
        .iter()
        .flat_map(|(_, p, _)| p.iter().map(|(_, y)| *y))
        .fold(0.01, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Latency by percentile (ms; dashed = uncorrected)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((1f64..1e5).log_scale(), (0.001f64..ymax * 1.5).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("ms")
            .x_label_formatter(&|x| format!("{}%", 100.0 - 100.0 / x))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, pts, dashed)) in series.iter().enumerate() {
            let colour = COLOURS[(i / 2 + usize::from(name == "notify")) % COLOURS.len()];
            let style = colour.stroke_width(if *dashed { 1 } else { 2 });
            let drawn = if *dashed {
                chart
                    .draw_series(DashedLineSeries::new(pts.iter().copied(), 4, 4, style))
                    .map_err(|e| e.to_string())?
            } else {
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), style))
                    .map_err(|e| e.to_string())?
            };
            drawn.label(name.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn time_chart(
    title: &str,
    y_desc: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<String, String> {
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(1.0, f64::max);
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(1.0, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax * 1.1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc(y_desc)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn or_note(r: Result<String, String>) -> String {
    r.unwrap_or_else(|e| format!("<p class=\"note\">plot unavailable: {}</p>", escape(&e)))
}

pub fn render(m: &Measurements, s: &Summary) -> String {
    let tl = &s.timeline;
    let pts = |f: &dyn Fn(&super::TimelinePoint) -> f64| -> Vec<(f64, f64)> {
        tl.iter().map(|p| (p.t as f64, f(p))).collect()
    };
    let latency = time_chart(
        "Latency over time, all operations (ms, corrected)",
        "ms",
        &[
            ("p50", pts(&|p| p.p50_us as f64 / 1000.0)),
            ("p99", pts(&|p| p.p99_us as f64 / 1000.0)),
        ],
    );
    // One line per operation (p99 by default: the tail is what changes first).
    let per_op: Vec<(&str, Vec<(f64, f64)>)> = OpKind::ALL
        .iter()
        .filter(|k| tl.iter().any(|p| p.ops.iter().any(|o| o.name == k.name())))
        .map(|k| {
            let pts = tl
                .iter()
                .filter_map(|p| {
                    let o = p.ops.iter().find(|o| o.name == k.name())?;
                    Some((p.t as f64, o.p99_us as f64 / 1000.0))
                })
                .collect();
            (k.name(), pts)
        })
        .collect();
    let per_op = if per_op.is_empty() {
        String::new()
    } else {
        or_note(time_chart(
            "p99 over time by operation (ms, corrected)",
            "ms",
            &per_op,
        ))
    };
    let lag = if tl.iter().any(|p| p.lag_p99_us > 0) {
        or_note(time_chart(
            "The loadgen's own lateness over time (schedule lag p99, ms)",
            "ms",
            &[("schedule lag p99", pts(&|p| p.lag_p99_us as f64 / 1000.0))],
        ))
    } else {
        String::new()
    };
    let throughput = time_chart(
        "Throughput and devices over time",
        "per second / devices",
        &[
            ("operations/s", pts(&|p| p.ops_per_s as f64)),
            ("errors/s", pts(&|p| p.errors as f64)),
            ("devices connected", pts(&|p| p.connected as f64)),
        ],
    );
    let mut rows = String::new();
    for x in s.metrics.iter().chain(std::iter::once(&s.all_ops)) {
        let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&x.name),
            x.count,
            x.mean_us / 1000.0,
            ms(x.p50_us),
            ms(x.p90_us),
            ms(x.p95_us),
            ms(x.p99_us),
            ms(x.p999_us),
            ms(x.max_us)
        );
    }
    let mut errors = String::new();
    if s.errors.is_empty() {
        errors.push_str("<p>No errors.</p>");
    } else {
        errors.push_str("<table><tr><th>error</th><th>count</th><th>share</th></tr>");
        let total = s.errors_total.max(1) as f64;
        for (k, v) in &s.errors {
            let _ = write!(
                errors,
                "<tr><td>{}</td><td>{v}</td><td><span class=\"bar\" style=\"width:{:.0}px\"></span> {:.1} %</td></tr>",
                escape(k),
                *v as f64 / total * 200.0,
                *v as f64 / total * 100.0
            );
        }
        errors.push_str("</table>");
    }
    let mut notes = String::new();
    if let Some(rate) = s.achieved_rate {
        let _ = write!(
            notes,
            "<p>Sent {} of {} scheduled requests ({:.2} %).</p>",
            s.sent,
            s.scheduled,
            rate * 100.0
        );
    }
    if let Some(line) = crate::threshold::lag_warning(s) {
        let _ = write!(notes, "<p class=\"note\">{}</p>", escape(&line));
    }
    if !s.thresholds.is_empty() {
        notes.push_str("<table><tr><th>threshold</th><th>measured</th><th>verdict</th></tr>");
        for v in &s.thresholds {
            let _ = write!(
                notes,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&v.threshold),
                escape(v.measured.as_deref().unwrap_or("not measured")),
                if v.pass {
                    "PASS"
                } else {
                    "<b class=\"note\">FAIL</b>"
                }
            );
        }
        notes.push_str("</table>");
    }
    let cpu = if s.cpu_seconds.is_empty() {
        String::new()
    } else {
        let ops = s.operations.max(1) as f64;
        let mut t = String::from(
            "<h2>CPU</h2><table><tr><th>part</th><th>CPU seconds</th><th>µs per operation</th></tr>",
        );
        for (part, secs) in &s.cpu_seconds {
            let _ = write!(
                t,
                "<tr><td>{}</td><td>{secs:.2}</td><td>{:.1}</td></tr>",
                escape(part),
                secs * 1e6 / ops
            );
        }
        t.push_str("</table>");
        t
    };
    let started =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(s.started_unix.max(0.0));
    let events: Vec<String> = s
        .events
        .iter()
        .map(|(k, v)| format!("{}: {v}", escape(k)))
        .collect();
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>m2m-loadgen report</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 920px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.bar {{ display: inline-block; height: 10px; background: #d62728; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
.note {{ color: #a00; }}
</style></head><body>
<h1>m2m-loadgen report</h1>
<p>Run started {date} by m2m-loadgen {version}.</p>
<pre>{command}</pre>
<details><summary>Scenario</summary>
<pre>{scenario}</pre>
</details>
<p>{ops} operations in {secs} s ({rate:.0} ops/s over the measured {window:.1} s), peak {conn} devices
connected, {errs} errors.
Latencies are measured from each request's intended send time (coordinated omission corrected);
<code>.uncorrected</code> rows measure from the actual send; <code>schedule_lag</code> is how late the
loadgen itself sent.</p>
{notes}
<h2>Latency (ms)</h2>
<table><tr><th>metric</th><th>count</th><th>mean</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>
{rows}</table>
{cpu}
<h2>Latency distribution</h2>
{pct}
<h2>Over time</h2>
{latency}
{per_op}
{lag}
{throughput}
<h2>Errors</h2>
{errors}
<p>Events: {events}</p>
</body></html>
"#,
        date = humantime::format_rfc3339_seconds(started),
        version = escape(s.version),
        command = escape(&s.command),
        window = s.window_s,
        ops = s.operations,
        secs = s.seconds,
        rate = s.ops_per_s,
        conn = s.max_connected,
        errs = s.errors_total,
        pct = or_note(percentile_chart(m)),
        latency = or_note(latency),
        throughput = or_note(throughput),
        events = if events.is_empty() {
            "none".into()
        } else {
            events.join(", ")
        },
        scenario = escape(&m.scenario),
    )
}
