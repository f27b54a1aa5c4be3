#!/usr/bin/env python3
"""The edge against nginx and HAProxy on the same relay, on loopback.

Starts the simulated CSE (`m2m-loadgen cse`) and, each from a config in this repository (never the
system services), nginx and HAProxy relaying WebSockets to it, and the edge with `--io uring` and
`--io epoll` (`m2m-loadgen edge run`, one worker each, like one nginx worker and one HAProxy thread).
Then, round after round and interleaved so that machine drift hits every row alike, runs the same
m2m-loadgen scenarios through each and straight to the CSE:
  - closed loop: DEVICES devices x IN_FLIGHT requests in flight;
  - open loop: a fixed total rate.
For each row: requests/s, p50/p99/p99.9 (corrected), latency added over direct, and the proxy's CPU
microseconds per relayed operation (utime+stime of its processes from /proc, before and after,
divided by the operations; each operation is two primitives, request and response).
Prints the median of the rounds.

    python3 scripts/compare_proxies.py [--rounds 3] [--seconds 10] [--rate 4000]
Needs `cargo build --release -p m2m-loadgen`; installs nginx and haproxy with apt-get if missing.
"""
import argparse
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "target/release/m2m-loadgen"
CONF = ROOT / "scripts/proxies"
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def tree_pids(pid):
    """pid and its descendants (nginx workers)."""
    out = [pid]
    try:
        for child in pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            out += tree_pids(int(child))
    except OSError:
        pass
    return out


def cpu_seconds(pid):
    total = 0.0
    for p in tree_pids(pid):
        try:
            f = pathlib.Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / CLK
        except (OSError, IndexError):
            pass
    return total


def rss_bytes(pid):
    total = 0
    for p in tree_pids(pid):
        try:
            total += int(pathlib.Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def ensure(binary, package):
    if shutil.which(binary) is None:
        subprocess.check_call(["apt-get", "install", "-y", "-qq", package],
                              env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def start_nginx(work, cse_port):
    ensure("nginx", "nginx")
    port = free_port()
    conf = (CONF / "nginx.conf").read_text().replace("@PORT@", str(port)).replace("@CSE@", str(cse_port)) \
        .replace("@DIR@", str(work))
    (work / "nginx.conf").write_text(conf)
    p = subprocess.Popen(["nginx", "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, port


def start_haproxy(work, cse_port):
    ensure("haproxy", "haproxy")
    port = free_port()
    conf = (CONF / "haproxy.cfg").read_text().replace("@PORT@", str(port)).replace("@CSE@", str(cse_port))
    (work / "haproxy.cfg").write_text(conf)
    p = subprocess.Popen(["haproxy", "-f", str(work / "haproxy.cfg"), "-db"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, port


def start_edge(io, cse_port):
    port = free_port()
    p = subprocess.Popen([str(LOADGEN), "edge", "run", "--listen", f"127.0.0.1:{port}", "--upstream",
                          f"ws://127.0.0.1:{cse_port}/", "--io", io, "--workers", "1", "--max-in-flight", "16",
                          "--max-queued", "256"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, RUST_LOG="warn"))
    wait_port(port)
    return p, port


def run_scenario(port, args, work, kind):
    out = work / f"run-{time.time_ns()}"
    cmd = [str(LOADGEN), "run", "--quiet", "--target", f"ws://127.0.0.1:{port}/", "--duration", f"{args.seconds}s",
           "--subscribe", "false", "--out", str(out), "--ramp", "0"]
    if kind == "closed":
        cmd += ["--devices", str(args.devices), "--mode", "closed", "--in-flight", str(args.in_flight)]
    else:
        cmd += ["--devices", str(args.devices), "--rate", str(args.rate)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--in-flight", type=int, default=8)
    ap.add_argument("--rate", type=float, default=4000)
    ap.add_argument("--only", default="", help="comma-separated subset of rows")
    args = ap.parse_args()
    assert LOADGEN.exists(), "cargo build --release -p m2m-loadgen first"
    work = pathlib.Path(tempfile.mkdtemp(prefix="proxies-"))
    procs = []
    try:
        cse = subprocess.Popen([str(LOADGEN), "cse", "--listen", "127.0.0.1:0", "--workers", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(cse)
        cse_port = int(cse.stdout.readline().split()[1].rsplit(":", 1)[1])
        rows = {"direct": (None, cse_port)}
        for name, start in [("nginx", lambda: start_nginx(work, cse_port)),
                            ("haproxy", lambda: start_haproxy(work, cse_port)),
                            ("edge uring", lambda: start_edge("uring", cse_port)),
                            ("edge epoll", lambda: start_edge("epoll", cse_port))]:
            if args.only and name not in args.only.split(","):
                continue
            p, port = start()
            procs.append(p)
            rows[name] = (p, port)
        results = {(name, kind): [] for name in rows for kind in ("closed", "open")}
        for r in range(args.rounds):
            for kind in ("closed", "open"):
                for name, (p, port) in rows.items():
                    c0 = cpu_seconds(p.pid) if p else 0.0
                    s = run_scenario(port, args, work, kind)
                    cpu = (cpu_seconds(p.pid) - c0) if p else 0.0
                    ops = s["operations"]
                    results[(name, kind)].append({
                        "rps": s["ops_per_s"], "ops": ops, "errors": s["errors_total"],
                        "p50": s["all_ops"]["p50_us"], "p99": s["all_ops"]["p99_us"], "p999": s["all_ops"]["p999_us"],
                        "cpu_us_per_op": cpu * 1e6 / max(ops, 1) if p else None,
                        "rss": rss_bytes(p.pid) if p else None,
                    })
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        host = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
        cpu_model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
        print(f"# {time.strftime('%Y-%m-%d')} on {host}, {os.cpu_count()} CPUs ({cpu_model}); loopback; "
              f"median of {args.rounds} interleaved rounds; {args.seconds} s per run")
        for kind in ("closed", "open"):
            label = (f"closed loop, {args.devices} devices x {args.in_flight} in flight" if kind == "closed"
                     else f"open loop, {args.rate:.0f} requests/s over {args.devices} devices")
            print(f"\n## {label}")
            print(f"{'row':<11} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} "
                  f"{'CPU us/op':>9} {'RSS MiB':>8} {'errors':>6}")
            med = lambda name, k: statistics.median(x[k] for x in results[(name, kind)]) if results[(name, kind)][0][k] is not None else None
            base50, base99 = med("direct", "p50"), med("direct", "p99")
            for name in rows:
                cpu, rss = med(name, "cpu_us_per_op"), med(name, "rss")
                print(f"{name:<11} {med(name, 'rps'):>8.0f} {med(name, 'p50') / 1000:>7.2f} {med(name, 'p99') / 1000:>7.2f} "
                      f"{med(name, 'p999') / 1000:>8.2f} {(med(name, 'p50') - base50) / 1000:>8.2f} "
                      f"{(med(name, 'p99') - base99) / 1000:>8.2f} "
                      f"{'-' if cpu is None else f'{cpu:.1f}':>9} {'-' if rss is None else f'{rss / 2**20:.1f}':>8} "
                      f"{med(name, 'errors'):>6.0f}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
