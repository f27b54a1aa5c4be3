#!/usr/bin/env python3
"""As many registered devices through one edge process as the machine's fd limit allows, for minutes.

Every process here has a hard open-file limit of 20,000, so one edge process holds about 9,500
passthrough devices (a device socket and an upstream socket each). On loopback this script starts the
simulated CSE (`m2m-loadgen cse`), one edge (`m2m-loadgen edge run`, io_uring, one worker per CPU)
and then the devices in three loadgen processes (each its own originator prefix, like shards):
1,000, then 4,000 more, then the rest up to --devices. After each step has settled it records the
edge's memory: user space from RSS (and the allocator's view is not needed: RSS is what the machine
pays), kernel from /proc/net/sockstat (TCP buffer pages) and /proc/meminfo (slab), both machine-wide
and so covering all four sockets a device has on loopback (loadgen, edge x2, CSE). Once all devices
are up, every device sends one request every --interval seconds for --minutes; then everything stops.
The edge is warmed up first (a short busy run), so that its receive buffers are in the baseline.
Prints a table and writes scale.json.

    python3 scripts/scale_run.py [--devices 9500] [--minutes 5] [--interval 60]
Needs `cargo build --release -p m2m-loadgen`.
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compare_proxies import (LOADGEN, cpu_seconds, fd_count, free_port, rss_bytes, settled_rss,  # noqa: E402
                             stop_all, wait_port, warm_up)

PAGE = os.sysconf("SC_PAGE_SIZE")


def kernel_memory():
    """Machine-wide TCP buffer memory (sockstat pages) and slab bytes."""
    tcp_pages = 0
    for line in open("/proc/net/sockstat"):
        if line.startswith("TCP:"):
            f = line.split()
            tcp_pages = int(f[f.index("mem") + 1])
    meminfo = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in open("/proc/meminfo")}
    return {"tcp_buffers": tcp_pages * PAGE, "slab": meminfo["Slab"]}


def snapshot(edge, base, devices):
    k = kernel_memory()
    rss = rss_bytes(edge.pid)
    return {
        "devices": devices,
        "edge_rss": rss,
        "edge_fds": fd_count(edge.pid),
        "user_per_device": (rss - base["edge_rss"]) / devices,
        "tcp_buffers_per_device": (k["tcp_buffers"] - base["tcp_buffers"]) / devices,
        "slab_per_device": (k["slab"] - base["slab"]) / devices,
    }


def wait_registered(admin_port, want, timeout):
    """Wait until the edge counts `want` device sessions and its registrations stop changing."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        m = scrape(admin_port)
        sessions = m.get("m2m_edge_device_sessions", 0)
        reg = m.get("m2m_edge_registrations_total", 0)
        if sessions >= want and reg == last:
            return m
        last = reg
        time.sleep(1)
    raise SystemExit(f"only {scrape(admin_port).get('m2m_edge_device_sessions')} of {want} devices connected")


def scrape(port):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        name = name.split("{", 1)[0]
        out[name] = out.get(name, 0) + float(value)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=9500)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--interval", type=float, default=60, help="seconds between a device's requests")
    ap.add_argument("--ramp", type=float, default=500, help="devices connecting per second")
    ap.add_argument("--io", default="uring")
    ap.add_argument("--out", default="target/scale")
    args = ap.parse_args()
    assert LOADGEN.exists(), "cargo build --release -p m2m-loadgen first"
    steps = [n for n in (1000, 5000) if n < args.devices] + [args.devices]
    work = pathlib.Path(tempfile.mkdtemp(prefix="scale-"))
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    procs, loadgens = [], []
    try:
        cse = subprocess.Popen([str(LOADGEN), "cse", "--listen", "127.0.0.1:0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(cse)
        cse_port = int(cse.stdout.readline().split()[1].rsplit(":", 1)[1])
        port, admin = free_port(), free_port()
        edge = subprocess.Popen([str(LOADGEN), "edge", "run", "--listen", f"127.0.0.1:{port}", "--upstream",
                                 f"ws://127.0.0.1:{cse_port}/", "--io", args.io, "--admin", f"127.0.0.1:{admin}",
                                 "--idle-timeout", f"{int(args.interval * 3000)}ms"],
                                stdout=subprocess.DEVNULL, stderr=open(work / "edge.log", "w"),
                                env=dict(os.environ, RUST_LOG="warn"))
        procs.append(edge)
        wait_port(port)
        wait_port(admin)
        warm_up(port, work)
        base = {"edge_rss": settled_rss(edge.pid, after_load=True), **kernel_memory()}
        hold = args.minutes * 60
        # The last step's devices run for `hold`; earlier steps run until the same moment.
        started, snaps, prev = time.time(), [], 0
        for i, n in enumerate(steps):
            # Time still to come: settling of later steps (generous) plus the hold.
            later = sum((steps[j] - steps[j - 1]) / args.ramp + 15 for j in range(i + 1, len(steps)))
            duration = (n - prev) / args.ramp + 15 + later + hold
            cmd = [str(LOADGEN), "run", "--quiet", "--target", f"ws://127.0.0.1:{port}/", "--devices", str(n - prev),
                   "--ramp", str(args.ramp), "--rate-per-device", f"{1 / args.interval:.6f}", "--subscribe", "false",
                   "--mni", "1", "--origin-prefix", f"Cscale{i}x", "--duration", f"{duration:.0f}s",
                   "--request-timeout", "10s", "--out", str(out_dir / f"step{i}")]
            loadgens.append(subprocess.Popen(cmd, stdout=open(work / f"loadgen{i}.log", "w"),
                                             stderr=subprocess.STDOUT))
            wait_registered(admin, n, (n - prev) / args.ramp + 60)
            settled_rss(edge.pid)
            snaps.append(snapshot(edge, base, n))
            print(f"{n} devices up after {time.time() - started:.0f} s: "
                  f"{snaps[-1]['user_per_device']:.0f} B/device user space", file=sys.stderr)
            prev = n
        hold_start = time.time()
        # The last snapshot while every device is still up, shortly before the first loadgen ends.
        time.sleep(max(hold - 20, 0))
        final = snapshot(edge, base, args.devices)
        metrics = scrape(admin)
        cpu = cpu_seconds(edge.pid)
        loadgens[-1].wait(timeout=hold + 600)
        held = time.time() - hold_start
        for lg in loadgens:
            lg.wait(timeout=600)
        summaries = [json.loads((out_dir / f"step{i}" / "summary.json").read_text()) for i in range(len(steps))]
        ops = sum(s["operations"] for s in summaries)
        errors = sum(s["errors_total"] for s in summaries)
        result = {"devices": args.devices, "held_s": held, "operations": ops, "errors": errors, "steps": snaps,
                  "final": final, "edge_cpu_s": cpu,
                  "edge_sessions_at_end": metrics.get("m2m_edge_device_sessions"),
                  "p99_us": max(s["all_ops"]["p99_us"] for s in summaries)}
        (out_dir / "scale.json").write_text(json.dumps(result, indent=2))
        print(f"# {time.strftime('%Y-%m-%d')}: {args.devices} registered devices through one edge ({args.io}), "
              f"one request per device every {args.interval:.0f} s, {held / 60:.1f} min with all devices up")
        print(f"operations {ops}, errors {errors}, worst shard p99 {result['p99_us'] / 1000:.2f} ms, "
              f"edge CPU {cpu:.1f} s in all, edge sessions near the end {result['edge_sessions_at_end']:.0f}\n")
        print("| devices | edge RSS MiB | edge fds | user B/device from empty | user B/device since previous step "
              "| TCP buffers B/device* | slab B/device* |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        prev_snap = None
        for s in snaps + [dict(final, devices=f"{args.devices} (end)")]:
            n = int(str(s["devices"]).split()[0])
            step = "-"
            if prev_snap is not None and n > prev_snap[0]:
                step = f"{(s['edge_rss'] - prev_snap[1]) / (n - prev_snap[0]):.0f}"
            print(f"| {s['devices']} | {s['edge_rss'] / 2**20:.1f} | {s['edge_fds']} | {s['user_per_device']:.0f} "
                  f"| {step} | {s['tcp_buffers_per_device']:.0f} | {s['slab_per_device']:.0f} |")
            prev_snap = (n, s["edge_rss"])
        print("\n* machine-wide, so per device it covers all four loopback sockets (loadgen, edge x2, CSE)")
        if errors:
            sys.exit(1)
    finally:
        stop_all(loadgens + procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
