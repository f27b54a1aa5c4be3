#!/usr/bin/env python3
"""Echo-server benchmark for the runtime (issue: thread-per-core runtime). Prints a table.

Servers, each on one worker pinned to CPU 0, the client pinned to CPU 1 (same client, same mix):
  m2m-edge echo --io uring | --io epoll | tokio+fastwebsockets (examples/echo_tokio_fastws.rs) |
  tokio-uring with the same m2m-ws frame code (examples/echo_tokio_uring.rs).
For each: messages/s, p50/p99 latency, server CPU microseconds per message (utime+stime of the whole
server process from /proc, before and after) and RSS; then idle connections: server RSS growth per
connection at 1k, 5k and 19k idle WebSocket connections (the hard open-file limit is 20,000 per
process here). Loopback only. Usage: scripts/bench_echo.py [--seconds 10] [--idle 1000,5000,19000]
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_port(port, proc):
    import socket
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen")


SERVERS = {
    "m2m-edge uring": lambda port: [f"{REL}/m2m-edge", "echo", "--listen", f"127.0.0.1:{port}", "--io", "uring", "--workers", "1", "--idle-timeout", "0ms"],
    "m2m-edge epoll": lambda port: [f"{REL}/m2m-edge", "echo", "--listen", f"127.0.0.1:{port}", "--io", "epoll", "--workers", "1", "--idle-timeout", "0ms"],
    "tokio+fastwebsockets": lambda port: [f"{REL}/examples/echo_tokio_fastws", f"127.0.0.1:{port}", "1"],
    "tokio-uring": lambda port: [f"{REL}/examples/echo_tokio_uring", f"127.0.0.1:{port}", "1"],
}


def start(name, port):
    cmd = ["taskset", "-c", "0"] + SERVERS[name](port)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    time.sleep(0.3)
    return proc


def load(port, conns, inflight, size, seconds):
    cmd = ["taskset", "-c", "1", f"{REL}/examples/echo_load", "--addr", f"127.0.0.1:{port}", "--conns", str(conns),
           "--inflight", str(inflight), "--size", str(size), "--seconds", str(seconds)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def idle(port, pid, count):
    cmd = [f"{REL}/examples/echo_load", "--addr", f"127.0.0.1:{port}", "--conns", str(count), "--idle", "--threads", "1"]
    before = rss_kib(pid)
    client = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = client.stdout.readline()
    ok = line.startswith("ready")
    time.sleep(1.0)
    after = rss_kib(pid)
    client.stdin.close()
    client.wait(timeout=60)
    time.sleep(1.0)
    return ok, (after - before) * 1024 / count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--idle", default="1000,5000,19000")
    ap.add_argument("--servers", default=",".join(SERVERS))
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "m2m-edge", "--examples"], cwd=ROOT, check=True)
    names = args.servers.split(",")
    mixes = [("100x16x256B", 100, 16, 256), ("100x1x256B", 100, 1, 256)]
    rows = {}
    port = 19400
    for mix, conns, inflight, size in mixes:
        for name in names:  # interleaved: every server runs each mix before the next mix
            port += 1
            proc = start(name, port)
            t0 = cpu_ticks(proc.pid)
            r = load(port, conns, inflight, size, args.seconds)
            cpu_us = (cpu_ticks(proc.pid) - t0) * 1e6 / TICK
            r["cpu_us_per_msg"] = cpu_us / max(r["messages"], 1)
            r["rss_mib"] = rss_kib(proc.pid) / 1024
            rows[(mix, name)] = r
            proc.terminate()
            proc.wait(timeout=10)
    print(f"\nEcho benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, server on CPU 0, client on CPU 1, {args.seconds:.0f} s per run\n")
    print(f"| mix | server | msgs/s | p50 µs | p99 µs | server CPU µs/msg | msgs per CPU-second | RSS MiB | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mix, *_ in mixes:
        for name in names:
            r = rows[(mix, name)]
            per_cpu_s = 1e6 / r["cpu_us_per_msg"] if r["cpu_us_per_msg"] else 0
            print(f"| {mix} | {name} | {r['msgs_per_s']:.0f} | {r['p50_us']} | {r['p99_us']} | {r['cpu_us_per_msg']:.2f} | {per_cpu_s:.0f} | {r['rss_mib']:.1f} | {r['errors']} |")
    for mix, *_ in mixes:
        base = rows[(mix, "m2m-edge epoll")]["cpu_us_per_msg"] if "m2m-edge epoll" in names else None
        for name in names:
            if base and name != "m2m-edge epoll":
                print(f"ratio {mix}: {name} msgs/CPU-s vs m2m-edge epoll = {base / rows[(mix, name)]['cpu_us_per_msg']:.2f}x")
    counts = [int(c) for c in args.idle.split(",") if c]
    if counts:
        print(f"\n| server | " + " | ".join(f"RSS bytes/conn at {c}" for c in counts) + " |")
        print("|---|" + "---|" * len(counts))
        for name in names:
            port += 1
            proc = start(name, port)
            cells = []
            for c in counts:
                ok, per = idle(port, proc.pid, c)
                cells.append(f"{per:.0f}" if ok else "failed")
            proc.terminate()
            proc.wait(timeout=10)
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
