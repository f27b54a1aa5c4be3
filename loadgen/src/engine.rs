//! Running a plan: one thread per worker, each a tokio current-thread runtime holding its share of
//! the devices (device id modulo workers), and the calling thread as the collector. Every second
//! each worker hands over its closed interval; the collector adds the workers' intervals of the
//! same second, appends them to the interval log, updates the progress line and the timeline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use hdrhistogram::serialization::V2DeflateSerializer;

use crate::connect::{Connector, tls_connector};
use crate::device::{Device, Live, WorkerCtx};
use crate::progress::Progress;
use crate::recorder::{Interval, Recorder};
use crate::report::{self, Measurements, Second, Summary, hlog};
use crate::scenario::Plan;

/// A worker's message to the collector.
enum FromWorker {
    /// Worker `w`'s interval that ended at second `t` since the start.
    Second {
        w: usize,
        t: u64,
        interval: Interval,
    },
    Done,
}

/// What a finished run leaves.
#[derive(Debug)]
pub struct Outcome {
    pub measurements: Measurements,
    pub summary: Summary,
    pub hlog: Option<PathBuf>,
}

/// Run the plan to the end. With `out`, the interval log goes to `out/run.hlog` as the run goes;
/// with `metrics`, each closed second is also added to the `/metrics` state.
pub fn run(
    plan: Plan,
    out: Option<&Path>,
    live: Arc<Live>,
    quiet: bool,
    metrics: Option<Arc<std::sync::Mutex<crate::metrics::State>>>,
) -> anyhow::Result<Outcome> {
    let plan = Arc::new(plan);
    let tls = match (&plan.args.ca, plan.target.secure) {
        (Some(ca), true) => Some(tls_connector(
            ca,
            plan.args
                .client_cert
                .as_deref()
                .zip(plan.args.client_key.as_deref()),
        )?),
        _ => None,
    };
    let connector = Connector {
        addr: plan.target.resolve()?,
        target: plan.target.clone(),
        proxy: plan.args.proxy,
        tls,
        protocols: plan.protocols.clone(),
        timeout: plan.args.request_timeout,
    };
    // No transparent huge pages for this process: a fault on fresh heap memory then zeroes 4 KiB,
    // not 2 MiB, and a worker is not stalled for milliseconds mid-run (seen in profiles as
    // clear_page_erms under the worker thread, i.e. schedule lag). Best effort.
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag of this process.
    // It is inherited by children; `bench` starts its CSE and edge before this runs.
    let thp_off = unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    } == 0;
    if !thp_off && !quiet {
        eprintln!(
            "m2m-loadgen: could not turn transparent huge pages off ({}); expect stalls of the workers",
            std::io::Error::last_os_error()
        );
    }
    let started = SystemTime::now();
    let start = Instant::now();
    let deadline = start + plan.args.duration;
    let (tx, rx) = mpsc::channel::<FromWorker>();
    let mut threads = Vec::new();
    // Intervals go back to their worker once added, reset: a worker then records into memory
    // that is already there instead of allocating (and the kernel zeroing) 16 histograms a second,
    // which showed up as multi-millisecond stalls of the worker (its schedule lag) in profiles.
    let mut recycle = Vec::new();
    for w in 0..plan.workers {
        let (plan, connector, live, tx) =
            (plan.clone(), connector.clone(), live.clone(), tx.clone());
        let (back, spare) = mpsc::channel::<Interval>();
        recycle.push(back);
        threads.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{w}"))
                .spawn(move || worker(w, plan, connector, live, start, deadline, tx, spare))
                .context("starting a worker thread")?,
        );
    }
    drop(tx);

    let scenario = plan.to_toml();
    let mut measurements = Measurements {
        scenario: scenario.clone(),
        command: crate::command_line(),
        started_unix: started
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
        ..Default::default()
    };
    let hlog_path = out.map(|d| d.join("run.hlog"));
    if let Some(d) = out {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut file = match &hlog_path {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let mut ser = V2DeflateSerializer::new();
    let mut log = match file.as_mut() {
        Some(f) => Some(hlog::begin(f, &mut ser, started, &scenario)?),
        None => None,
    };
    let progress = Progress::new(plan.args.duration, plan.device_ids.len(), quiet);
    let mut pending: BTreeMap<u64, (usize, Interval)> = BTreeMap::new();
    let mut done = 0;
    // Seconds up to here are written; a straggler's report for one of them goes into the next.
    let mut written = 0u64;
    let mut finalize = |t: u64, interval: Interval, m: &mut Measurements| -> anyhow::Result<()> {
        let second = Second {
            interval,
            connected: live.connected.load(Ordering::Relaxed) as u64,
        };
        if let Some(l) = log.as_mut() {
            hlog::write_second(l, t, &second)?;
        }
        if let Some(m) = &metrics {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(&second.interval);
        }
        m.add_second(t, &second);
        progress.update(t, &second, &live);
        Ok(())
    };
    while done < plan.workers {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(FromWorker::Second { w, t, mut interval }) => {
                let t = t.max(written + 1);
                let entry = pending.entry(t).or_insert_with(|| (0, Interval::default()));
                entry.0 += 1;
                entry.1.add(&interval);
                interval.reset();
                let _ = recycle[w].send(interval);
                // A second is complete when every worker still running has reported it.
                while let Some((&t, (n, _))) = pending.first_key_value() {
                    if *n < plan.workers - done {
                        break;
                    }
                    let (_, (_, interval)) = pending.pop_first().expect("present");
                    finalize(t, interval, &mut measurements)?;
                    written = t;
                }
            }
            Ok(FromWorker::Done) => done += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    while let Some((t, (_, interval))) = pending.pop_first() {
        finalize(t, interval, &mut measurements)?;
    }
    drop(log);
    if let Some(mut f) = file {
        std::io::Write::flush(&mut f)?;
    }
    for t in threads {
        if t.join().is_err() {
            anyhow::bail!("a worker thread panicked");
        }
    }
    progress.finish();
    let summary = Summary::new(&measurements);
    if let Some(d) = out {
        report::write_all(d, &measurements, &summary)?;
    }
    Ok(Outcome {
        measurements,
        summary,
        hlog: hlog_path,
    })
}

#[allow(clippy::too_many_arguments)]
fn worker(
    w: usize,
    plan: Arc<Plan>,
    connector: Connector,
    live: Arc<Live>,
    start: Instant,
    deadline: Instant,
    tx: mpsc::Sender<FromWorker>,
    spare: mpsc::Receiver<Interval>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    let rec = Rc::new(std::cell::RefCell::new(Recorder::default()));
    let ctx = Rc::new(WorkerCtx {
        plan: plan.clone(),
        connector,
        rec: rec.clone(),
        live,
        start,
        deadline,
    });
    local.block_on(&rt, async move {
        let mut devices = Vec::new();
        for id in plan.device_ids.clone().filter(|id| id % plan.workers == w) {
            let at = if plan.args.ramp > 0.0 {
                start + Duration::from_secs_f64(id as f64 / plan.args.ramp)
            } else {
                start
            };
            let ctx = ctx.clone();
            devices.push(tokio::task::spawn_local(async move {
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                if Instant::now() < ctx.deadline {
                    Device::new(ctx, id).run().await;
                }
            }));
        }
        let ticker_rec = rec.clone();
        let ticker_tx = tx.clone();
        let ticker = tokio::task::spawn_local(async move {
            let mut t = 1u64;
            loop {
                tokio::time::sleep_until(tokio::time::Instant::from_std(
                    start + Duration::from_secs(t),
                ))
                .await;
                let interval = match spare.try_recv() {
                    Ok(empty) => ticker_rec.borrow_mut().swap(empty),
                    Err(_) => ticker_rec.borrow_mut().take(),
                };
                if ticker_tx
                    .send(FromWorker::Second { w, t, interval })
                    .is_err()
                {
                    return;
                }
                t += 1;
            }
        });
        for d in devices {
            let _ = d.await;
        }
        ticker.abort();
        let t = start.elapsed().as_secs() + 1;
        let interval = rec.borrow_mut().take();
        let _ = tx.send(FromWorker::Second { w, t, interval });
        let _ = tx.send(FromWorker::Done);
    });
}
