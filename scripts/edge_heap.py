#!/usr/bin/env python3
"""Live heap bytes per registered idle device in the edge, exactly, next to the RSS figures.

RSS (scripts/compare_proxies.py's idle rows) is what the machine pays, but it moves with what the
allocator keeps or hands back, so small per-device figures wobble by a few hundred bytes. The edge
binary built with the `heap-gauge` feature counts the bytes its allocator has handed out and not had
back (`m2m_edge_heap_bytes` in /metrics, crates/rt/src/heap.rs); this builds it (target/heap-gauge),
adds idle registered devices in steps exactly as the compare script
does and reads that gauge at each step. Its growth per device is what the edge's own data
structures (and rustls', for wss) cost.

    python3 scripts/edge_heap.py [--idle 1000,5000,9000] [--io uring] [--multiplex] [--tls] [--settle 12]
                                 [--edge target/release/m2m-edge]
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compare_proxies import LOADGEN, ROOT, free_port, idle_growth, make_cert, wait_port  # noqa: E402

EDGE = ROOT / "target/heap-gauge/release/m2m-edge"


def live_heap(admin_port):
    """The edge's m2m_edge_heap_bytes gauge."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith("m2m_edge_heap_bytes "):
            return int(float(line.split()[1]))
    raise SystemExit("the edge's /metrics has no m2m_edge_heap_bytes (built without the heap-gauge feature?)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", default="1000,5000,9000")
    ap.add_argument("--io", default="uring")
    ap.add_argument("--multiplex", action="store_true", help="the edge in multiplex mode (one shared link)")
    ap.add_argument("--settle", type=float, default=12,
                    help="seconds after a step's devices connected before the heap is read: the edge's "
                         "handshake timers (10 s) of the last devices are gone by then")
    ap.add_argument("--tls", action="store_true", help="devices connect with wss (a fresh CA and certificate)")
    ap.add_argument("--edge", default=str(EDGE),
                    help="the m2m-edge binary to measure (e.g. an older build, for a before/after)")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-p", "m2m-edge", "--features", "heap-gauge", "--target-dir",
                    str(ROOT / "target/heap-gauge")], check=True, cwd=ROOT)
    subprocess.run(["cargo", "build", "--release", "-p", "m2m-loadgen"], check=True, cwd=ROOT)
    edge = args.edge
    counts = [int(x) for x in args.idle.split(",")]
    work = pathlib.Path(tempfile.mkdtemp(prefix="heap-"))
    if args.tls:
        make_cert(work)
    cse = subprocess.Popen([str(LOADGEN), "cse", "--listen", "127.0.0.1:0", "--workers", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        cse_port = int(cse.stdout.readline().split()[1].rsplit(":", 1)[1])
        admin = free_port()

        def start():
            port = free_port()
            tls = ["--tls-cert", str(work / "cert.pem"), "--tls-key", str(work / "key.pem")] if args.tls else []
            p = subprocess.Popen([edge, "run", "--listen", f"127.0.0.1:{port}", "--upstream",
                                  f"ws://127.0.0.1:{cse_port}/", "--io", args.io, "--workers", "1",
                                  "--admin", f"127.0.0.1:{admin}", *tls,
                                  *(["--upstream-mode", "multiplex", "--max-in-flight", "1024"] if args.multiplex else [])],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
            wait_port(port)
            return p, port

        points = idle_growth(start, counts, work, tls=args.tls, measure=lambda pid: live_heap(admin),
                             fds_per_device=1 if args.multiplex else 2, settle=args.settle)
        mode = "multiplex" if args.multiplex else "passthrough"
        scheme = "wss" if args.tls else "ws"
        print(f"# {time.strftime('%Y-%m-%d')}: {edge} ({args.io}, {mode}, {scheme}, 1 worker) live heap with idle "
              f"registered devices\n")
        print("| devices | heap in use KiB | bytes per device since the previous step | since 0 |")
        print("|---:|---:|---:|---:|")
        for i, (n, b, *_) in enumerate(points):
            step = "-" if i == 0 else f"{(b - points[i - 1][1]) / max(n - points[i - 1][0], 1):.0f}"
            total = "-" if i == 0 else f"{(b - points[0][1]) / max(n, 1):.0f}"
            print(f"| {n} | {b / 1024:.0f} | {step} | {total} |")
    finally:
        cse.terminate()
        cse.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
