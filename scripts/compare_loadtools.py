#!/usr/bin/env python3
"""Side by side: m2m-loadgen and Locust drive the same scenario against the same simulated CSE
(`m2m-loadgen cse`, on loopback) and we report, per tool, the requests it completed, whether it held
the target rate, and the requests per CPU-second the *load tool* spent (utime + stime of its process
tree, from getrusage(RUSAGE_CHILDREN)). "Held" means the steady-state rate (loadgen: its summary's
ops_per_s; Locust: the median per-second rate over the second half) reached 95 % of the target.
Interleaved repetitions; medians.

    python3 scripts/compare_loadtools.py [--devices 1000] [--rate 2000] [--seconds 60] [--rounds 1]

Needs `cargo build --release -p m2m-loadgen` and Locust in .peers/locust (the script installs it).
"""
import argparse
import csv
import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "target/release/m2m-loadgen"
LOCUST_VENV = ROOT / ".peers/locust"


def ensure_locust():
    if not (LOCUST_VENV / "bin/locust").exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(LOCUST_VENV)])
        subprocess.check_call([str(LOCUST_VENV / "bin/pip"), "install", "-q", "locust==2.*", "websocket-client"])


def run_measured(cmd, env=None):
    """Run cmd to the end; (wall seconds, stdout, stderr, exit status)."""
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, env=env, text=True)
    return time.monotonic() - start, p.stdout, p.stderr, p.returncode


def cpu_of(fn):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = fn()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, result


def loadgen_round(target, a, work, workers=None):
    out = work / f"loadgen-{time.time_ns()}"
    cmd = [str(LOADGEN), "run", "--quiet", "--target", target, "--devices", str(a.devices), "--rate", str(a.rate),
           "--duration", f"{a.seconds}s", "--subscribe", "false", "--ramp", "200", "--out", str(out)]
    if workers:
        cmd += ["--workers", str(workers)]
    cpu, (wall, stdout, err, status) = cpu_of(lambda: run_measured(cmd))
    if status != 0:
        raise SystemExit(f"m2m-loadgen failed: {err}")
    s = json.loads((out / "summary.json").read_text())
    return {"requests": s["operations"], "errors": s["errors_total"], "rate": s["ops_per_s"], "cpu": cpu,
            "p50_ms": s["all_ops"]["p50_us"] / 1000, "p99_ms": s["all_ops"]["p99_us"] / 1000}


def locust_round(target, a, work):
    prefix = work / f"locust-{time.time_ns()}"
    env = dict(os.environ, LG_RATE_PER_USER=str(a.rate / a.devices))
    cmd = [str(LOCUST_VENV / "bin/locust"), "-f", str(ROOT / "scripts/loadtools/locustfile.py"), "--headless",
           "-u", str(a.devices), "-r", "200", "-t", f"{a.seconds}s", "--host", target, "--csv", str(prefix),
           "--csv-full-history", "--only-summary", "--stop-timeout", "5"]
    cpu, (wall, stdout, err, status) = cpu_of(lambda: run_measured(cmd, env=env))
    if status != 0 and not os.path.exists(f"{prefix}_stats.csv"):
        raise SystemExit(f"locust failed: {err[-2000:]}")
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))
    # The rate it held: median of the per-second aggregate throughput over the second half of the run.
    history = [r for r in csv.DictReader(open(f"{prefix}_stats_history.csv")) if r["Name"] == "Aggregated"]
    tail = [float(r["Requests/s"]) for r in history[len(history) // 2:]] or [0.0]
    ops = [r for r in rows if r["Name"] in ("create_cin", "retrieve_la", "update", "discovery")]
    requests = sum(int(r["Request Count"]) for r in ops)
    failures = sum(int(r["Failure Count"]) for r in ops)
    total = next(r for r in rows if r["Name"] == "Aggregated")
    return {"requests": requests, "errors": failures, "rate": statistics.median(tail), "cpu": cpu,
            "p50_ms": float(total["50%"]), "p99_ms": float(total["99%"])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    ensure_locust()
    assert LOADGEN.exists(), "cargo build --release -p m2m-loadgen first"
    work = pathlib.Path(tempfile.mkdtemp(prefix="loadtools-"))
    cse = subprocess.Popen([str(LOADGEN), "cse", "--listen", "127.0.0.1:0", "--workers", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        addr = cse.stdout.readline().split()[1]
        target = f"ws://{addr}/"
        # One Locust process runs on one core; the loadgen runs with its default (a worker per CPU)
        # and with one worker, like for like.
        results = {"m2m-loadgen": [], "m2m-loadgen/1": [], "locust": []}
        for _ in range(a.rounds):
            results["m2m-loadgen"].append(loadgen_round(target, a, work))
            results["m2m-loadgen/1"].append(loadgen_round(target, a, work, workers=1))
            results["locust"].append(locust_round(target, a, work))
    finally:
        cse.terminate()
        cse.wait()
    print(f"scenario: {a.devices} devices, target {a.rate:.0f} requests/s, {a.seconds} s, same op mix, "
          f"no subscriptions; simulated CSE on loopback; median of {a.rounds} interleaved round(s)")
    print(f"{'tool':<14} {'requests':>9} {'errors':>7} {'achieved/s':>10} {'held':>5} {'CPU s':>7} "
          f"{'req/CPU-s':>10} {'p50 ms':>7} {'p99 ms':>7}")
    per_cpu = {}
    for tool, rs in results.items():
        med = lambda k: statistics.median(r[k] for r in rs)
        held = med("rate") >= 0.95 * a.rate
        per_cpu[tool] = med("requests") / max(med("cpu"), 1e-9)
        print(f"{tool:<14} {med('requests'):>9.0f} {med('errors'):>7.0f} {med('rate'):>10.0f} {'yes' if held else 'NO':>5} "
              f"{med('cpu'):>7.2f} {per_cpu[tool]:>10.0f} {med('p50_ms'):>7.2f} {med('p99_ms'):>7.2f}")
    for tool in ("m2m-loadgen", "m2m-loadgen/1"):
        print(f"{tool} / locust requests per CPU-second: {per_cpu[tool] / per_cpu['locust']:.1f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
