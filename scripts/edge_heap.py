#!/usr/bin/env python3
"""Live heap bytes per registered idle device in the edge, exactly, next to the RSS figures.

RSS (scripts/compare_proxies.py's idle rows) is what the machine pays, but it moves with what the
allocator keeps or hands back, so small per-device figures wobble by a few hundred bytes. This
builds the m2m-edge binary with the `system-alloc` feature (glibc malloc instead of mimalloc), adds
idle registered devices in steps exactly as the compare script does, and at each step reads the
bytes in use from glibc's `malloc_stats()`, called in the running edge by gdb. The growth of that
figure per device is what the edge's own data structures cost.

    python3 scripts/edge_heap.py [--idle 1000,5000,9000] [--io uring] [--multiplex] [--settle 12]
"""
import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compare_proxies import LOADGEN, ROOT, ensure, free_port, idle_growth, wait_port  # noqa: E402

EDGE = ROOT / "target/system-alloc/release/m2m-edge"


def live_heap(pid, log):
    """Bytes in use by malloc (all arenas, mmapped chunks included), from malloc_stats() run in `pid`."""
    size = log.stat().st_size
    subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "call (void) malloc_stats()"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    text = log.read_text(errors="replace")[size:]
    m = re.search(r"Total \(incl\. mmap\):\s*system bytes\s*=\s*(\d+)\s*in use bytes\s*=\s*(\d+)", text)
    if not m:
        raise SystemExit(f"no malloc_stats output in {log}")
    return int(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", default="1000,5000,9000")
    ap.add_argument("--io", default="uring")
    ap.add_argument("--multiplex", action="store_true", help="the edge in multiplex mode (one shared link)")
    ap.add_argument("--settle", type=float, default=12,
                    help="seconds after a step's devices connected before the heap is read: the edge's "
                         "handshake timers (10 s) of the last devices are gone by then")
    args = ap.parse_args()
    ensure("gdb", "gdb")
    subprocess.run(["cargo", "build", "--release", "--bin", "m2m-edge", "--features", "system-alloc",
                    "--target-dir", str(ROOT / "target/system-alloc")], check=True, cwd=ROOT)
    assert LOADGEN.exists(), "cargo build --release -p m2m-loadgen first"
    counts = [int(x) for x in args.idle.split(",")]
    work = pathlib.Path(tempfile.mkdtemp(prefix="heap-"))
    cse = subprocess.Popen([str(LOADGEN), "cse", "--listen", "127.0.0.1:0", "--workers", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        cse_port = int(cse.stdout.readline().split()[1].rsplit(":", 1)[1])
        log = work / "edge.log"

        def start():
            port = free_port()
            p = subprocess.Popen([str(EDGE), "run", "--listen", f"127.0.0.1:{port}", "--upstream",
                                  f"ws://127.0.0.1:{cse_port}/", "--io", args.io, "--workers", "1",
                                  *(["--upstream-mode", "multiplex", "--max-in-flight", "1024"] if args.multiplex else [])],
                                 stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=dict(os.environ, RUST_LOG="warn"))
            wait_port(port)
            return p, port

        points = idle_growth(start, counts, work, measure=lambda pid: live_heap(pid, log),
                             fds_per_device=1 if args.multiplex else 2, settle=args.settle)
        mode = "multiplex" if args.multiplex else "passthrough"
        print(f"# {time.strftime('%Y-%m-%d')}: edge ({args.io}, {mode}, 1 worker, glibc malloc) live heap with idle "
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
