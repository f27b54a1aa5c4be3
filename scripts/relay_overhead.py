#!/usr/bin/env python3
"""Relay overhead of the edge (issue: the edge), on loopback only:

1. The same scripted device session (register, container, N x (create contentInstance + retrieve la),
   deregister) timed directly against ACME and through `m2m-edge run`; prints both times and the ratio.
2. Idle devices: K device sessions opened through the edge (each with its own upstream link; the
   upstream here is `m2m-edge echo`, which accepts oneM2M subprotocols, so that the count is not bound
   by ACME), edge RSS growth per connected device.

Needs `scripts/test.sh` to have installed ACME (.peers/acme) and the Python peers (.peers/py).
Usage: .peers/py/bin/python scripts/relay_overhead.py [--requests 100] [--idle 1000,5000]
"""
import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_acme():
    d = tempfile.mkdtemp(prefix="relay-acme-")
    http, ws = free_port(), free_port()
    ini = open(os.path.join(ROOT, "tests/peers/acme.ini")).read()
    ini = ini.replace("@HTTP_PORT@", str(http)).replace("@WS_PORT@", str(ws)).replace("@DB_TYPE@", "memory")
    open(os.path.join(d, "acme.ini"), "w").write(ini)
    proc = subprocess.Popen([os.path.join(ROOT, ".peers/acme/bin/python"), "-m", "acmecse", "--headless",
                             "--base-directory", d, "--config", "acme.ini"], cwd=d,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{http}/~/id-in/cse-in",
                                         headers={"X-M2M-Origin": "CAdmin", "X-M2M-RI": "r", "X-M2M-RVI": "3"})
            if urllib.request.urlopen(req, timeout=1).status == 200:
                wait_port(ws, proc)
                return proc, ws
        except Exception:
            time.sleep(0.3)
    raise RuntimeError("ACME did not start")


async def session(url, n, tag):
    ae = f"C{tag}{os.getpid()}{int(time.time() * 1000) % 100000}"
    rqi = iter(range(10 ** 9))

    async def call(ws, prim):
        prim["rqi"] = f"q{next(rqi)}"
        await ws.send(json.dumps(prim))
        while True:
            rsp = json.loads(await ws.recv())
            if rsp.get("rqi") == prim["rqi"]:
                return rsp

    start = time.perf_counter()
    async with websockets.connect(url, subprotocols=["oneM2M.json"], compression=None) as ws:
        r = await call(ws, {"op": 1, "to": "cse-in", "fr": ae, "rvi": "3", "ty": 2,
                            "pc": {"m2m:ae": {"rn": ae, "api": "Nbench", "rr": True, "srv": ["3"]}}})
        assert r["rsc"] == 2001, r
    # ACME needs X-M2M-Origin for everything after the registration; the edge adds it itself.
    headers = {"X-M2M-Origin": ae} if "direct" in tag else None
    async with websockets.connect(url, subprotocols=["oneM2M.json"], additional_headers=headers, compression=None) as ws:
        r = await call(ws, {"op": 1, "to": f"cse-in/{ae}", "fr": ae, "rvi": "3", "ty": 3, "pc": {"m2m:cnt": {"rn": "c"}}})
        assert r["rsc"] == 2001, r
        for i in range(n):
            r = await call(ws, {"op": 1, "to": f"cse-in/{ae}/c", "fr": ae, "rvi": "3", "ty": 4, "pc": {"m2m:cin": {"con": str(i)}}})
            assert r["rsc"] == 2001, r
            r = await call(ws, {"op": 2, "to": f"cse-in/{ae}/c/la", "fr": ae, "rvi": "3"})
            assert r["rsc"] == 2000, r
        r = await call(ws, {"op": 4, "to": f"cse-in/{ae}", "fr": ae, "rvi": "3"})
        assert r["rsc"] == 2002, r
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--idle", default="1000,5000")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "m2m-edge", "--example", "echo_load"], cwd=ROOT, check=True)
    acme, acme_ws = start_acme()
    edge_port = free_port()
    edge = subprocess.Popen([f"{REL}/m2m-edge", "run", "--listen", f"127.0.0.1:{edge_port}", "--upstream",
                             f"ws://127.0.0.1:{acme_ws}/", "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(edge_port, edge)
        direct, through = [], []
        for r in range(args.rounds):  # interleaved, so that drift hits both alike
            direct.append(asyncio.run(session(f"ws://127.0.0.1:{acme_ws}/", args.requests, f"direct{r}")))
            through.append(asyncio.run(session(f"ws://127.0.0.1:{edge_port}/", args.requests, f"edge{r}")))
        d, t = sorted(direct)[len(direct) // 2], sorted(through)[len(through) // 2]
        ops = 2 * args.requests + 4
        print(f"scripted session of {ops} primitives, median of {args.rounds}: direct {d:.3f} s, through the edge {t:.3f} s, "
              f"ratio {t / d:.3f}, added per primitive {(t - d) / ops * 1e6:.0f} us")
    finally:
        edge.terminate()
        acme.terminate()
        edge.wait(10)
        acme.wait(10)
    counts = [int(c) for c in args.idle.split(",") if c]
    if counts:
        up_port, edge_port = free_port(), free_port()
        up = subprocess.Popen([f"{REL}/m2m-edge", "echo", "--listen", f"127.0.0.1:{up_port}", "--workers", "1", "--idle-timeout", "0ms"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        edge = subprocess.Popen([f"{REL}/m2m-edge", "run", "--listen", f"127.0.0.1:{edge_port}", "--upstream",
                                 f"ws://127.0.0.1:{up_port}/", "--workers", "1", "--io", "uring"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(up_port, up)
            wait_port(edge_port, edge)
            time.sleep(0.5)
            for c in counts:
                before = rss_kib(edge.pid)
                client = subprocess.Popen([f"{REL}/examples/echo_load", "--addr", f"127.0.0.1:{edge_port}", "--conns", str(c),
                                           "--idle", "--threads", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                line = client.stdout.readline()
                time.sleep(2)
                after = rss_kib(edge.pid)
                client.stdin.close()
                client.wait(60)
                time.sleep(1)
                print(f"{c} idle devices through the edge ({line.strip()}): edge RSS growth {(after - before) * 1024 / c:.0f} B per device "
                      f"(device socket + upstream link)")
        finally:
            edge.terminate()
            up.terminate()


if __name__ == "__main__":
    sys.exit(main())
