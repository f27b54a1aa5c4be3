#!/usr/bin/env python3
"""100,000 registered devices through several edge processes on one port, to one simulated CSE.

Every process here has a hard open-file limit of 20,000, so no one process can hold 100,000 device
sockets: not the edge, not the loadgen. This script runs --edges edge processes on one port
(`--reuse-port`: the kernel spreads the devices' connections over them), each in multiplex mode
(every device's primitives on the edge's one shared link, the CSE's NOTIFYs through the edge's own
notify listener), and the devices in loadgen processes of --shard-size devices each (their own
originator prefix and their own loopback source address, so that no process runs out of
descriptors or ephemeral ports). Devices come up in steps (--steps); after each step has settled
it records the edges' memory: user space as the sum of their RSS, kernel as machine-wide TCP buffer
pages and slab, per device; and the CSE's established sockets. Once all devices are up, each sends
one request every --interval seconds (and gets the NOTIFY of its subscription) for --minutes.
Prints a table and writes fleet.json; exits 1 on any error or a device missing.

    python3 scripts/scale_fleet.py [--devices 100000] [--steps 10000,50000] [--edges 7] [--minutes 10]
Needs `cargo build --release -p m2m-loadgen`.
"""
import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compare_proxies import (LOADGEN, cpu_seconds, cse_sockets, fd_count, free_port, rss_bytes,  # noqa: E402
                             stop_all, wait_port, warm_up)
from scale_run import kernel_memory, scrape  # noqa: E402


def fleet_metrics(admins):
    """The edges' metrics, added up."""
    total = {}
    for port in admins:
        for k, v in scrape(port).items():
            total[k] = total.get(k, 0) + v
    return total


def wait_up(admins, want, timeout):
    """Until the edges count `want` device sessions in all and registrations stop changing."""
    end, last = time.time() + timeout, None
    while time.time() < end:
        m = fleet_metrics(admins)
        if m.get("m2m_edge_device_sessions", 0) >= want and m.get("m2m_edge_registrations_total") == last:
            return m
        last = m.get("m2m_edge_registrations_total")
        time.sleep(2)
    raise SystemExit(f"only {fleet_metrics(admins).get('m2m_edge_device_sessions')} of {want} devices connected")


def settle(edges, seconds=3):
    """Give allocators and timers a moment after a step (RSS keeps moving while registrations finish)."""
    time.sleep(seconds)
    return sum(rss_bytes(e.pid) for e in edges)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--steps", default="10000,50000", help="device counts to measure at before --devices")
    ap.add_argument("--edges", type=int, default=7, help="edge processes on the one port (--reuse-port)")
    ap.add_argument("--shard-size", type=int, default=10_000, help="devices per loadgen process")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--interval", type=float, default=60, help="seconds between a device's requests")
    ap.add_argument("--ramp", type=float, default=1000, help="devices connecting per second, over all shards")
    ap.add_argument("--io", default="uring")
    ap.add_argument("--out", default="target/fleet")
    args = ap.parse_args()
    assert LOADGEN.exists(), "cargo build --release -p m2m-loadgen first"
    steps = sorted({int(x) for x in args.steps.split(",") if x and 0 < int(x) < args.devices}) + [args.devices]
    work = pathlib.Path(tempfile.mkdtemp(prefix="fleet-"))
    out_dir = pathlib.Path(args.out)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    procs, edges, loadgens = [], [], []
    try:
        cse = subprocess.Popen([str(LOADGEN), "cse", "--listen", "127.0.0.1:0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(cse)
        cse_addr = cse.stdout.readline().split()[1]
        port, admins = free_port(), []
        for e in range(args.edges):
            admin, notify = free_port(), free_port()
            edge = subprocess.Popen(
                [str(LOADGEN), "edge", "run", "--listen", f"127.0.0.1:{port}", "--reuse-port",
                 "--upstream", f"ws://{cse_addr}/", "--io", args.io, "--workers", "1",
                 "--upstream-mode", "multiplex", "--max-in-flight", "1024",
                 "--notify-listen", f"127.0.0.1:{notify}", "--admin", f"127.0.0.1:{admin}",
                 "--idle-timeout", f"{int(args.interval * 3)}s"],
                stdout=subprocess.DEVNULL, stderr=open(work / f"edge{e}.log", "w"),
                env=dict(os.environ, RUST_LOG="warn"))
            procs.append(edge)
            edges.append(edge)
            admins.append(admin)
            wait_port(admin)
        wait_port(port)
        # A busy run from enough connections that every edge gets some: buffers an edge fills once
        # (io_uring receive buffers, tables) are then in the baseline, not counted per device.
        for _ in range(2):
            warm_up(port, work)
        base = {"edge_rss": settle(edges, 5), **kernel_memory()}
        hold = args.minutes * 60
        started, snaps, shard, up = time.time(), [], 0, 0
        for i, n in enumerate(steps):
            # Every shard runs past the end of the hold (this step's and the later steps' ramps with
            # wait_up's allowance each, the hold, a margin); the script stops them all with SIGINT
            # (a loadgen ends as at its deadline and writes its reports) once the hold is measured.
            remaining = sum((steps[j] - (steps[j - 1] if j else 0)) / args.ramp + 150 for j in range(i, len(steps)))
            remaining += 300
            new_shards = []
            while up < n:
                size = min(args.shard_size, n - up)
                new_shards.append((shard, size))
                up += size
                shard += 1
            for s, size in new_shards:
                ramp = args.ramp / len(new_shards)
                cmd = [str(LOADGEN), "run", "--quiet", "--target", f"ws://127.0.0.1:{port}/", "--devices", str(size),
                       "--ramp", f"{ramp:.1f}", "--rate-per-device", f"{1 / args.interval:.6f}",
                       "--subscribe", "true", "--mni", "1", "--origin-prefix", f"Cf{s}x",
                       "--source-addrs", f"127.0.{1 + s // 200}.{10 + s % 200}-127.0.{1 + s // 200}.{10 + s % 200}",
                       "--duration", f"{remaining + hold:.0f}s", "--request-timeout", "10s",
                       "--out", str(out_dir / f"shard{s}")]
                loadgens.append(subprocess.Popen(cmd, stdout=open(work / f"loadgen{s}.log", "w"),
                                                 stderr=subprocess.STDOUT))
            m = wait_up(admins, n, (n - (steps[i - 1] if i else 0)) / args.ramp + 120)
            rss = settle(edges)
            k = kernel_memory()
            snaps.append({
                "devices": n, "edges_rss": rss, "edges_fds": sum(fd_count(e.pid) for e in edges),
                "user_per_device": (rss - base["edge_rss"]) / n,
                "tcp_buffers_per_device": (k["tcp_buffers"] - base["tcp_buffers"]) / n,
                "slab_per_device": (k["slab"] - base["slab"]) / n,
                "cse_sockets": cse_sockets(cse_addr),
                "per_edge_sessions": [scrape(a).get("m2m_edge_device_sessions", 0) for a in admins],
                "after_s": time.time() - started,
            })
            print(f"{n} devices up after {snaps[-1]['after_s']:.0f} s ({m.get('m2m_edge_device_sessions'):.0f} "
                  f"sessions): {snaps[-1]['user_per_device']:.0f} B/device user space, "
                  f"CSE sockets {snaps[-1]['cse_sockets']}", file=sys.stderr)
        hold_start = time.time()
        cpu0 = sum(cpu_seconds(e.pid) for e in edges)
        m0 = fleet_metrics(admins)
        time.sleep(hold)
        final_m = fleet_metrics(admins)
        measured = time.time() - hold_start
        cpu = sum(cpu_seconds(e.pid) for e in edges) - cpu0
        sessions_end = final_m.get("m2m_edge_device_sessions", 0)
        for lg in loadgens:
            lg.send_signal(signal.SIGINT)
        for lg in loadgens:
            lg.wait(timeout=300)
        missing = [s for s in range(shard) if not (out_dir / f"shard{s}" / "summary.json").exists()]
        if missing:
            for s in missing:
                print(f"--- loadgen shard {s}:\n" + (work / f"loadgen{s}.log").read_text()[-2000:], file=sys.stderr)
            sys.exit(f"loadgen shards without a summary: {missing}")
        summaries = [json.loads((out_dir / f"shard{s}" / "summary.json").read_text()) for s in range(shard)]
        ops = sum(s["operations"] for s in summaries)
        errors = sum(s["errors_total"] for s in summaries)
        notifies = sum(m["count"] for s in summaries for m in s["metrics"] if m["name"] == "notify")
        # Requests both ways (devices' to the CSE, the CSE's NOTIFYs to devices).
        relayed = final_m.get("m2m_edge_requests_total", 0) - m0.get("m2m_edge_requests_total", 0) or None
        result = {"devices": args.devices, "edges": args.edges, "measured_s": measured,
                  "operations": ops, "notifies": notifies, "errors": errors, "steps": snaps,
                  "edges_cpu_s_in_hold": cpu, "requests_relayed_in_hold": relayed,
                  "sessions_near_end": sessions_end,
                  "p99_us": max(s["all_ops"]["p99_us"] for s in summaries)}
        (out_dir / "fleet.json").write_text(json.dumps(result, indent=2))
        print(f"# {time.strftime('%Y-%m-%d')}: {args.devices} registered devices through {args.edges} edges "
              f"({args.io}, multiplex, --reuse-port on one port) to one simulated CSE; one request per device "
              f"every {args.interval:.0f} s with NOTIFYs on, {hold / 60:.1f} min with all devices up")
        per_req = f"({cpu * 1e6 / relayed:.1f} µs per request relayed either way)" if relayed else ""
        print(f"operations {ops} (NOTIFYs received {notifies}), errors {errors}, worst shard p99 "
              f"{result['p99_us'] / 1000:.2f} ms, sessions near the end {sessions_end:.0f}; edge CPU in the hold "
              f"{cpu:.1f} s {per_req}\n")
        print("| devices | edges' RSS MiB | edges' fds | CSE sockets | user B/device from empty "
              "| user B/device since previous step | TCP buffers B/device* | slab B/device* "
              "| devices per edge (min-max) |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        prev = (0, base["edge_rss"])
        for s in snaps:
            per = s["per_edge_sessions"]
            step = (s["edges_rss"] - prev[1]) / max(s["devices"] - prev[0], 1)
            print(f"| {s['devices']} | {s['edges_rss'] / 2**20:.1f} | {s['edges_fds']} | {s['cse_sockets']} "
                  f"| {s['user_per_device']:.0f} | {step:.0f} | {s['tcp_buffers_per_device']:.0f} "
                  f"| {s['slab_per_device']:.0f} | {min(per):.0f}-{max(per):.0f} |")
            prev = (s["devices"], s["edges_rss"])
        print("\n* machine-wide, so per device it covers the device's socket in the loadgen and in the edge")
        if errors or sessions_end < args.devices:
            sys.exit(f"errors {errors}, sessions near the end {sessions_end:.0f} of {args.devices}")
    finally:
        stop_all(loadgens + procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
