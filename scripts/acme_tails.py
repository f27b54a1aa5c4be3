#!/usr/bin/env python3
"""Round-trip tails to the real ACME CSE, directly and through the edge in both upstream modes.

Usage:
    python3 scripts/acme_tails.py [--devices 200] [--requests 4000] [--runs 2] [--io uring,epoll]

ACME (installed into .peers/acme by scripts/test.sh) is started on free loopback ports from the
tests' template (tests/peers/acme.ini, in-memory database). Each run is one loadgen invocation:
DEVICES devices connect and register at once, then each keeps one request in flight (closed loop,
no think time) until REQUESTS requests have been answered in all, with a 10 s request timeout. Rows:
direct to ACME, the edge in passthrough mode and in multiplex mode (one link per edge core, a notify
listener), on each driver; runs interleaved row by row. Prints p50/p99/max of all operations, errors
and timeouts per run, and the edge's p99 and max as ratios to direct (median over runs). Everything
runs on 127.0.0.1 and stops by itself.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compare_proxies import LOADGEN, ROOT, free_port, wait_port  # noqa: E402

ACME_PY = ROOT / ".peers/acme/bin/python"
LAUNCH = ("import signal, sys, runpy; signal.signal(signal.SIGINT, signal.default_int_handler); "
          "sys.argv[0] = 'acmecse'; runpy.run_module('acmecse', run_name='__main__', alter_sys=True)")


def start_acme(work):
    http, ws = free_port(), free_port()
    ini = (ROOT / "tests/peers/acme.ini").read_text().replace("@HTTP_PORT@", str(http)) \
        .replace("@WS_PORT@", str(ws)).replace("@DB_TYPE@", "memory")
    (work / "acme.ini").write_text(ini)
    p = subprocess.Popen([str(ACME_PY), "-c", LAUNCH, "--headless", "--base-directory", str(work),
                          "--config", "acme.ini"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 60
    while time.time() < end:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{http}/~/id-in/cse-in",
                                         headers={"X-M2M-Origin": "CAdmin", "X-M2M-RI": "r", "X-M2M-RVI": "3",
                                                  "Accept": "application/json"})
            if urllib.request.urlopen(req, timeout=2).headers.get("X-M2M-RSC") == "2000":
                wait_port(ws)
                return p, ws
        except OSError:
            time.sleep(0.3)
    p.kill()
    raise SystemExit("ACME did not come up")


def start_edge(io, acme_ws, multiplex):
    port = free_port()
    args = [str(LOADGEN), "edge", "run", "--listen", f"127.0.0.1:{port}", "--upstream",
            f"ws://127.0.0.1:{acme_ws}/", "--io", io, "--workers", "2", "--request-timeout", "10000ms"]
    if multiplex:
        args += ["--upstream-mode", "multiplex", "--notify-listen", f"127.0.0.1:{free_port()}"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, RUST_LOG="warn"))
    wait_port(port)
    return p, port


def run(port, args, work):
    out = work / f"run-{time.time_ns()}"
    cmd = [str(LOADGEN), "run", "--quiet", "--target", f"ws://127.0.0.1:{port}/", "--devices", str(args.devices),
           "--ramp", "0", "--mode", "closed", "--in-flight", "1", "--requests", str(args.requests),
           "--subscribe", "false", "--request-timeout", "10s", "--duration", "600s",
           "--origin-prefix", f"Ctail{time.time_ns()}x", "--out", str(out)]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s = json.loads((out / "summary.json").read_text())
    a = s["all_ops"]
    timeouts = sum(v for k, v in s.get("errors", {}).items() if "timeout" in k or "4008" in k)
    return {"p50": a["p50_us"] / 1000, "p99": a["p99_us"] / 1000, "max": a["max_us"] / 1000,
            "ops": s["operations"], "errors": s["errors_total"], "timeouts": timeouts}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--io", default="uring,epoll")
    args = ap.parse_args()
    assert LOADGEN.exists(), "cargo build --release -p m2m-loadgen first"
    assert ACME_PY.exists(), "ACME is missing: run scripts/test.sh, which installs it into .peers/acme"
    work = pathlib.Path(tempfile.mkdtemp(prefix="acme-tails-"))
    acme, acme_ws = start_acme(work)
    rows = {"direct": None}
    for io in args.io.split(","):
        rows[f"edge {io} passthrough"] = (io, False)
        rows[f"edge {io} multiplex"] = (io, True)
    results = {name: [] for name in rows}
    try:
        for r in range(args.runs):
            for name, spec in rows.items():
                edge = None
                try:
                    if spec is None:
                        port = acme_ws
                    else:
                        edge, port = start_edge(spec[0], acme_ws, spec[1])
                    results[name].append(run(port, args, work))
                finally:
                    if edge:
                        edge.terminate()
                        edge.wait(timeout=15)
            print(f"run {r + 1}/{args.runs} done", file=sys.stderr)
    finally:
        acme.send_signal(2)
        try:
            acme.wait(timeout=15)
        except subprocess.TimeoutExpired:
            acme.kill()
    print(f"# ACME 2026.5.3, {args.devices} devices x 1 in flight, {args.requests} requests per run, "
          f"{args.runs} run(s) per row, interleaved; edge: 2 workers\n")
    print("| row | run | ops | p50 ms | p99 ms | max ms | errors | timeouts |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        for i, x in enumerate(runs):
            print(f"| {name} | {i + 1} | {x['ops']} | {x['p50']:.1f} | {x['p99']:.1f} | {x['max']:.1f} "
                  f"| {x['errors']} | {x['timeouts']} |")
    d99 = statistics.median(x["p99"] for x in results["direct"])
    dmax = statistics.median(x["max"] for x in results["direct"])
    print("\n| row | p99 vs direct | max vs direct |")
    print("|---|---:|---:|")
    for name, runs in results.items():
        if name == "direct":
            continue
        p99 = statistics.median(x["p99"] for x in runs)
        mx = statistics.median(x["max"] for x in runs)
        print(f"| {name} | {p99 / d99:.2f}x | {mx / dmax:.2f}x |")


if __name__ == "__main__":
    main()
