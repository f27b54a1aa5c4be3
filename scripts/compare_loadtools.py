#!/usr/bin/env python3
"""Side by side: m2m-loadgen, Locust, Artillery (its WebSocket engine) and Tsung (its websocket
sessions) drive the same scenario against the same target — the edge (`m2m-loadgen edge run`,
passthrough) in front of the simulated CSE (`m2m-loadgen cse`), on loopback — and we report, per tool, the requests it completed, whether it held the target rate, the requests per
CPU-second the *load tool* spent (utime + stime of its process tree, from
getrusage(RUSAGE_CHILDREN)), and the latency it reports. "Held" means the steady-state rate
(loadgen: its summary's ops_per_s over the measured window; the others: the median rate of their
reporting intervals over the second half of the run) reached 95 % of the target.
Interleaved repetitions; medians.

What each tool can express of the scenario (register, then the request/response mix):
- Locust: all of it; latency from the actual send (no coordinated-omission correction), percentiles.
- Artillery (ws engine): all of it; each send waits for the next frame and checks that its rqi is
  the request's (a mismatch is an error); it reports counts and the session length only: no
  per-message latency, no NOTIFY handling, no correction.
- Tsung: all of it, but only through the edge: it cannot send X-M2M-Origin in the handshake, which
  a CSE needs on a connection that carries more than registrations (the edge learns the originator
  from the first request) — the reason every tool runs against the edge; each request waits for one
  response frame, whose rsc is not checked (Tsung matches per TCP read, and a frame split over two
  reads fails any match); it reports mean and max per request (no percentiles), no NOTIFY handling,
  no correction.
Locust paces each user to a constant throughput, Artillery and Tsung with a think time after each
response (closed loop with think); in all three a slow target lowers the rate instead of showing up
as latency.

    python3 scripts/compare_loadtools.py [--devices 1000] [--rate 2000] [--seconds 60] [--rounds 1]
        [--tools loadgen,locust,artillery,tsung]

Needs `cargo build --release -p m2m-loadgen`; installs Locust into .peers/locust, Artillery into
.peers/artillery (npm) and Tsung (apt-get, needs root) when missing.
"""
import argparse
import csv
import json
import os
import pathlib
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "target/release/m2m-loadgen"
LOCUST_VENV = ROOT / ".peers/locust"
ARTILLERY_DIR = ROOT / ".peers/artillery"
ARTILLERY = ARTILLERY_DIR / "node_modules/.bin/artillery"
TOOLS = ROOT / "scripts/loadtools"


def ensure_locust():
    if not (LOCUST_VENV / "bin/locust").exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(LOCUST_VENV)])
        subprocess.check_call([str(LOCUST_VENV / "bin/pip"), "install", "-q", "locust==2.*", "websocket-client"])


def ensure_artillery():
    if not ARTILLERY.exists():
        ARTILLERY_DIR.mkdir(parents=True, exist_ok=True)
        # Artillery pulls Playwright for its browser engine; the ws engine needs no browser.
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        subprocess.check_call(["npm", "install", "--prefix", str(ARTILLERY_DIR), "--no-audit", "--no-fund",
                               "--ignore-scripts", "artillery@2"], env=env, stdout=subprocess.DEVNULL)


def ensure_tsung():
    if shutil.which("tsung") is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.call(["apt-get", "install", "-y", "-qq", "tsung"], env=env) != 0:
            subprocess.check_call(["apt-get", "update", "-qq"], env=env)
            subprocess.check_call(["apt-get", "install", "-y", "-qq", "tsung"], env=env)


def fill(template, values):
    text = template.read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    assert not left, f"unfilled placeholders {left} in {template.name}"
    return text


def pace(a):
    """Per-device think time (s) and loop count for the tools that pace with a think time."""
    per_device = a.rate / a.devices
    return 1.0 / per_device, max(1, int(a.seconds * per_device))


def median_second_half(rates):
    """The median rate of the reporting intervals in the second half, without the last (partial)."""
    whole = rates[:-1] if len(rates) >= 3 else rates
    tail = whole[len(whole) // 2:] or [0.0]
    return statistics.median(tail)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, seconds=15):
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


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
    # Like the others: the median per-second rate over the second half (not the window average,
    # which includes the connection ramp).
    rate = median_second_half([p["ops_per_s"] for p in s["timeline"] if p["ops_per_s"] > 0])
    return {"requests": s["operations"], "errors": s["errors_total"], "rate": rate, "cpu": cpu,
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


def artillery_round(target, a, work):
    think, loops = pace(a)
    ramp_s = max(1, round(a.devices / 200))
    d = work / f"artillery-{time.time_ns()}"
    d.mkdir()
    shutil.copy(TOOLS / "artillery-processor.js", d)
    script = d / "scenario.yml"
    script.write_text(fill(TOOLS / "artillery.yml.in", {
        "TARGET": target, "RAMP_S": ramp_s, "RAMP_RATE": max(1, round(a.devices / ramp_s)),
        "DEVICES": a.devices, "THINK_MS": round(think * 1000), "LOOPS": loops}))
    report = d / "report.json"
    cmd = [str(ARTILLERY), "run", "--quiet", "--output", str(report), str(script)]
    cpu, (wall, stdout, err, status) = cpu_of(lambda: run_measured(cmd))
    if not report.exists():
        raise SystemExit(f"artillery failed: {err[-2000:]}")
    r = json.loads(report.read_text())
    counters = r["aggregate"]["counters"]
    setup = 3 * counters.get("vusers.created", 0)
    requests = counters.get("websocket.messages_received", 0) - setup
    # Each failure is counted once under errors.* (vusers.failed counts the same users again).
    errors = sum(v for k, v in counters.items() if k.startswith("errors."))
    # Its reporting periods (10 s): messages received per second, minus nothing (set-up is early).
    rates = []
    for p in r.get("intermediate", []):
        c = p.get("counters", {})
        span = (int(p.get("lastCounterAt", 0)) - int(p.get("firstCounterAt", 0))) / 1000 or 10
        rates.append(c.get("websocket.messages_received", 0) / span)
    return {"requests": requests, "errors": errors, "rate": median_second_half(rates), "cpu": cpu,
            "p50_ms": None, "p99_ms": None}


def tsung_round(port, a, work):
    think, loops = pace(a)
    ramp_s = max(1, round(a.devices / 200))
    d = work / f"tsung-{time.time_ns()}"
    d.mkdir()
    conf = d / "scenario.xml"
    # Arrivals are Poisson: the phase lasts twice the ramp, maxnumber stops it at the device count.
    conf.write_text(fill(TOOLS / "tsung.xml.in", {
        "PORT": port, "RAMP_S": 2 * ramp_s, "RAMP_RATE": max(1, round(a.devices / ramp_s)),
        "DEVICES": a.devices, "THINK": f"{think:.4f}", "LOOPS": loops, "DURATION": a.seconds + 10,
        # AE names unique across rounds (the simulated CSE keeps its AEs).
        "RUN": time.time_ns() % 10**9}))
    cmd = ["tsung", "-f", str(conf), "-l", str(d), "start"]
    cpu, (wall, stdout, err, status) = cpu_of(lambda: run_measured(cmd))
    logs = list(d.glob("*/tsung.log"))
    if not logs:
        raise SystemExit(f"tsung failed: {stdout[-1000:]} {err[-1000:]}")
    # Each dump (every 10 s) has per-interval lines `stats: NAME count mean stddev max min ...`.
    ops, errors, rates, weighted, worst = 0, 0, [], 0.0, 0.0
    dumps = []
    for line in logs[0].read_text().splitlines():
        f = line.split()
        if line.startswith("# stats: dump at "):
            dumps.append(int(f[-1]))
        elif line.startswith("stats: tr_op "):
            n = int(f[2])
            ops += n
            span = dumps[-1] - dumps[-2] if len(dumps) >= 2 else 10
            rates.append(n / max(span, 1))
            weighted += n * float(f[3])
            worst = max(worst, float(f[5]))
        elif line.startswith("stats: error_") or line.startswith("stats: nomatch "):
            errors += int(f[2])
    return {"requests": ops, "errors": errors, "rate": median_second_half(rates), "cpu": cpu,
            "p50_ms": None, "p99_ms": None, "mean_ms": weighted / max(ops, 1), "max_ms": worst}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--tools", default="loadgen,locust,artillery,tsung")
    a = ap.parse_args()
    tools = a.tools.split(",")
    if "locust" in tools:
        ensure_locust()
    if "artillery" in tools:
        ensure_artillery()
    if "tsung" in tools:
        ensure_tsung()
    assert LOADGEN.exists(), "cargo build --release -p m2m-loadgen first"
    work = pathlib.Path(tempfile.mkdtemp(prefix="loadtools-"))
    cse = subprocess.Popen([str(LOADGEN), "cse", "--listen", "127.0.0.1:0", "--workers", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        cse_addr = cse.stdout.readline().split()[1]
        port = free_port()
        edge = subprocess.Popen([str(LOADGEN), "edge", "run", "--listen", f"127.0.0.1:{port}", "--upstream",
                                 f"ws://{cse_addr}/", "--max-in-flight", "16"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(port)
        addr = f"127.0.0.1:{port}"
        target = f"ws://{addr}/"
        # One Locust process runs on one core; the loadgen runs with its default (a worker per CPU)
        # and with one worker, like for like.
        rounds = {
            "m2m-loadgen": ("loadgen", lambda: loadgen_round(target, a, work)),
            "m2m-loadgen/1": ("loadgen", lambda: loadgen_round(target, a, work, workers=1)),
            "locust": ("locust", lambda: locust_round(target, a, work)),
            "artillery": ("artillery", lambda: artillery_round(target, a, work)),
            "tsung": ("tsung", lambda: tsung_round(port, a, work)),
        }
        rounds = {name: fn for name, (tool, fn) in rounds.items() if tool in tools}
        results = {name: [] for name in rounds}
        for _ in range(a.rounds):
            for name, fn in rounds.items():
                results[name].append(fn())
    finally:
        for p in (locals().get("edge"), cse):
            if p is not None:
                p.terminate()
                p.wait()
    print(f"scenario: {a.devices} devices, target {a.rate:.0f} requests/s, {a.seconds} s, same op mix, "
          f"no subscriptions; the edge before the simulated CSE on loopback; median of {a.rounds} interleaved round(s)")
    print(f"{'tool':<14} {'requests':>9} {'errors':>7} {'achieved/s':>10} {'held':>5} {'CPU s':>7} "
          f"{'req/CPU-s':>10} {'p50 ms':>7} {'p99 ms':>7}  other latency it reports")
    per_cpu = {}
    for tool, rs in results.items():
        def med(k):
            values = [r[k] for r in rs if r.get(k) is not None]
            return statistics.median(values) if values else None
        held = med("rate") >= 0.95 * a.rate
        per_cpu[tool] = med("requests") / max(med("cpu"), 1e-9)
        show = lambda v: f"{v:>7.2f}" if v is not None else f"{'n/a':>7}"
        other = ""
        if tool == "tsung":
            other = f"mean {med('mean_ms'):.2f} ms, max {med('max_ms'):.2f} ms (no percentiles)"
        elif tool == "artillery":
            other = "none per message (session length only)"
        print(f"{tool:<14} {med('requests'):>9.0f} {med('errors'):>7.0f} {med('rate'):>10.0f} {'yes' if held else 'NO':>5} "
              f"{med('cpu'):>7.2f} {per_cpu[tool]:>10.0f} {show(med('p50_ms'))} {show(med('p99_ms'))}  {other}")
    for mine in ("m2m-loadgen", "m2m-loadgen/1"):
        for other in ("locust", "artillery", "tsung"):
            if mine in per_cpu and other in per_cpu:
                print(f"{mine} / {other} requests per CPU-second: {per_cpu[mine] / per_cpu[other]:.1f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
