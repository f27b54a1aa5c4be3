#!/usr/bin/env python3
"""The edge against nginx and HAProxy on the same relay, on loopback.

Starts the simulated CSE (`m2m-loadgen cse`) and, each from a config in this repository (never the
system services), nginx and HAProxy relaying WebSockets to it, and the edge with `--io uring` and
`--io epoll` (`m2m-loadgen edge run`, one worker each, like one nginx worker and one HAProxy thread).
Then, round after round and interleaved so that machine drift hits every row alike, runs the same
m2m-loadgen scenarios through each and straight to the CSE:
  - closed loop: DEVICES devices x IN_FLIGHT requests in flight;
  - open loop at fixed total rates (by default a light one and about half the edge's maximum).
For each row: requests/s, p50/p99/p99.9 (corrected), latency added over direct, and the proxy's CPU
microseconds per relayed operation (utime+stime of its processes from /proc, before and after,
divided by the operations; each operation is two primitives, request and response).
Prints the median of the rounds.

    python3 scripts/compare_proxies.py [--rounds 3] [--seconds 10] [--rates 4000,45000] [--idle 1000,5000,9000]
Needs `cargo build --release -p m2m-loadgen`; installs nginx and haproxy with apt-get if missing.
"""
import argparse
import resource
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
    """Install a Debian package when its binary is missing (package lists refreshed if needed)."""
    if shutil.which(binary) is not None:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", package]
    if subprocess.call(install, env=env) != 0:
        subprocess.check_call(["apt-get", "update", "-qq"], env=env)
        subprocess.check_call(install, env=env)


def start_cse(host, respond_only=False):
    """The simulated CSE on `host` (a free port); returns the process and its address. RESPOND_ONLY:
    it answers every request at once (no resources), so that the proxy in front is the bottleneck."""
    cse = subprocess.Popen([str(LOADGEN), "cse", "--listen", f"{host}:0", "--workers", "1",
                            *(["--respond-only"] if respond_only else [])],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return cse, cse.stdout.readline().split()[1]


def start_responder(host):
    """`m2m-loadgen responder`: answers every request at once, on the edge's runtime, at well under
    the CPU per request of any proxy in front of it (the saturation rows' upstream)."""
    p = subprocess.Popen([str(LOADGEN), "responder", "--listen", f"{host}:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return p, p.stdout.readline().split()[1]


def start_nginx(work, cse):
    ensure("nginx", "nginx")
    port = free_port()
    conf = (CONF / "nginx.conf").read_text().replace("@PORT@", str(port)).replace("@CSE@", cse) \
        .replace("@DIR@", str(work))
    (work / "nginx.conf").write_text(conf)
    p = subprocess.Popen(["nginx", "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, port


def start_haproxy(work, cse):
    ensure("haproxy", "haproxy")
    port = free_port()
    conf = (CONF / "haproxy.cfg").read_text().replace("@PORT@", str(port)).replace("@CSE@", cse)
    (work / "haproxy.cfg").write_text(conf)
    p = subprocess.Popen(["haproxy", "-f", str(work / "haproxy.cfg"), "-db"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, port


def start_edge(io, cse, tls_dir=None, binary=LOADGEN, extra=()):
    port = free_port()
    tls = ["--tls-cert", str(tls_dir / "cert.pem"), "--tls-key", str(tls_dir / "key.pem")] if tls_dir else []
    p = subprocess.Popen([str(binary), "edge", "run", "--listen", f"127.0.0.1:{port}", "--upstream",
                          f"ws://{cse}/", "--io", io, "--workers", "1",
                          "--max-queued", "256", *tls, *(extra or ("--max-in-flight", "16"))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, RUST_LOG="warn"))
    wait_port(port)
    return p, port


def fd_count(pid):
    total = 0
    for p in tree_pids(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return total


def warm_up(port, work, tls=False):
    """A short busy run, so that buffers a proxy allocates once (io_uring receive buffers, nginx and
    HAProxy pools) are in the baseline and not counted per device."""
    scheme = "wss" if tls else "ws"
    cmd = [str(LOADGEN), "run", "--quiet", "--target", f"{scheme}://127.0.0.1:{port}/", "--devices", "50",
           "--mode", "closed", "--in-flight", "4", "--subscribe", "false", "--duration", "3s", "--ramp", "0",
           "--origin-prefix", f"Cwarm{time.time_ns()}x", "--out", str(work / f"warm-{time.time_ns()}")]
    if tls:
        cmd += ["--ca", str(work / "ca.pem")]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def settled_rss(pid, timeout=20, after_load=False):
    """RSS once it stopped changing for three one-second samples (closing connections linger, and
    allocators hand freed memory back a little later). After a busy run, first wait out the edge's
    10 s request timers: their wheel slots are freed when they come round."""
    if after_load:
        time.sleep(11)
    end = time.time() + timeout
    last, same = rss_bytes(pid), 0
    while time.time() < end and same < 3:
        time.sleep(1)
        now = rss_bytes(pid)
        same = same + 1 if now == last else 0
        last = now
    return last


def cse_sockets(cse_addr):
    """Established TCP connections to the CSE at CSE_ADDR (host:port), from /proc/net/tcp: what the
    proxy costs the CSE in sockets."""
    host, port = cse_addr.rsplit(":", 1)
    want = f"{''.join(reversed([f'{int(x):02X}' for x in host.split('.')]))}:{int(port):04X}"
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[2] == want and fields[3] == "01":
                n += 1
    return n


def idle_growth(start, counts, work, tls=False, measure=None, fds_per_device=2, cse_addr=None, settle=2):
    """Proxy RSS with registered idle devices, in steps within one fresh proxy process: warm it up,
    take its settled RSS, then add devices (each connects and registers: AE and one container
    create, nothing else, then stays idle) until COUNTS[0], COUNTS[1], ... are connected, taking the
    settled RSS (or what MEASURE(pid) returns) at each step. Returns [(devices connected, bytes,
    sockets at the CSE)], baseline first. The growth per device
    between steps is what another device costs; from the baseline it also carries pools that a
    proxy fills once. SETTLE: seconds to wait after the last device connected (registrations
    follow; the edge's handshake timers live 10 s)."""
    p, port = start()
    loadgens = []
    try:
        warm_up(port, work, tls)
        fds0 = fd_count(p.pid)
        if measure is None:
            settled_rss(p.pid, after_load=True)
            measure = settled_rss
        else:
            time.sleep(11)
        at_cse = (lambda: cse_sockets(cse_addr)) if cse_addr else (lambda: None)
        points = [(0, measure(p.pid), at_cse())]
        ramp, prev = 2000, 0
        scheme = "wss" if tls else "ws"
        for n in counts:
            cmd = [str(LOADGEN), "run", "--quiet", "--target", f"{scheme}://127.0.0.1:{port}/", "--devices",
                   str(n - prev), "--ramp", str(ramp), "--containers", "1", "--mni", "1", "--subscribe", "false",
                   "--rate", "0.001", "--deregister", "false", "--origin-prefix", f"Cidle{time.time_ns()}x",
                   "--duration", "600s", "--out", str(work / f"idle-{time.time_ns()}")]
            if tls:
                cmd += ["--ca", str(work / "ca.pem")]
            log = work / f"idle-loadgen-{len(loadgens)}.log"
            loadgens.append(subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT))
            end = time.time() + (n - prev) / ramp + 25
            while time.time() < end and fd_count(p.pid) < fds0 + fds_per_device * n:
                time.sleep(0.2)
            time.sleep(settle)
            connected = (fd_count(p.pid) - fds0) // fds_per_device
            points.append((connected, measure(p.pid), at_cse()))
            if connected < n:
                print(f"only {connected} of {n} devices connected; the loadgen said:\n" + log.read_text()[-2000:],
                      file=sys.stderr)
                break
            prev = n
        return points
    finally:
        for lg in loadgens:
            lg.terminate()
        for lg in loadgens:
            lg.wait(timeout=30)
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def run_pipeline(port, args, kind):
    """The pipelining client (`m2m-loadgen pipeline`): closed loop for `kind` = pipe:CONNSxINFLIGHT,
    open loop for open:RATE (and open:half) over --devices connections with 64 slots each."""
    if kind.startswith("pipe:"):
        conns, in_flight = kind.split(":")[1].split("x")
        rate = "0"
    else:
        conns, in_flight = str(args.devices), "64"
        rate = str(args.half_rate if kind == "open:half" else kind.split(":")[1])
    cmd = [str(LOADGEN), "pipeline", "--target", f"ws://127.0.0.1:{port}/", "--connections", conns,
           "--in-flight", in_flight, "--duration", f"{args.seconds}s", "--io", args.client_io, "--rate", rate]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not done.stdout.strip():
        sys.exit(f"the pipelining client failed (exit {done.returncode}): {' '.join(cmd)}")
    p = json.loads(done.stdout.strip().splitlines()[-1])
    achieved = p["sent"] / p["scheduled"] if p["scheduled"] else None
    return {"ops_per_s": p["ops_per_s"], "operations": p["operations"], "errors_total": p["errors"],
            "achieved_rate": achieved,
            "all_ops": {"p50_us": p["p50_us"], "p99_us": p["p99_us"], "p999_us": p["p999_us"]},
            "client_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "seconds": p["seconds"]}


def run_scenario(port, args, work, kind):
    if kind.startswith("pipe:") or (args.saturation and kind.startswith("open:")):
        return run_pipeline(port, args, kind)
    if kind == "open:half":
        kind = f"open:{args.half_rate}"
    out = work / f"run-{time.time_ns()}"
    cmd = [str(LOADGEN), "run", "--quiet", "--target", f"ws://127.0.0.1:{port}/", "--duration", f"{args.seconds}s",
           "--subscribe", "false", "--out", str(out), "--ramp", "0"]
    if kind == "closed":
        cmd += ["--devices", str(args.devices), "--mode", "closed", "--in-flight", str(args.in_flight)]
    else:
        cmd += ["--devices", str(args.devices), "--rate", kind.split(":")[1]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads((out / "summary.json").read_text())
    summary["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--in-flight", type=int, default=8)
    ap.add_argument("--rates", default="4000,45000",
                    help="open-loop total rates; the second default is about half the edge's closed-loop maximum "
                         "here, where the goal on added p99 is set")
    ap.add_argument("--only", default="", help="comma-separated subset of rows")
    ap.add_argument("--respond-only", action="store_true",
                    help="the simulated CSE answers every request at once, keeping no resources: with a light "
                         "client too, the proxy is the bottleneck (each row prints whether it was)")
    ap.add_argument("--idle", default="1000,5000,9000",
                    help="registered idle device counts for the memory rows ('' to skip); one proxy process holds "
                         "at most ~9,500 (two sockets per device, hard fd limit 20,000)")
    ap.add_argument("--idle-rounds", type=int, default=1)
    ap.add_argument("--skip-load", action="store_true", help="only the idle-memory rows")
    ap.add_argument("--json", help="also write every run's figures here")
    ap.add_argument("--saturation", action="store_true",
                    help="rows where the proxy is the bottleneck: the upstream is `m2m-loadgen responder` (answers "
                         "at once, on the edge's runtime), the client `m2m-loadgen pipeline`: closed loop in the "
                         "--pipe shapes, open loop at --rates over --devices connections (the word 'half' is half "
                         "the best edge row's first-round rate in the first --pipe shape)")
    ap.add_argument("--pipe", default="100x8,1000x1",
                    help="closed-loop shapes for the pipelining client with --saturation: CONNECTIONSxIN_FLIGHT")
    ap.add_argument("--client-io", default="uring", help="I/O driver of the pipelining client")
    ap.add_argument("--baseline", help="another build's m2m-loadgen binary: adds 'edge uring (baseline)' and "
                                       "'edge uring multiplex (baseline)' rows, "
                                       "for before/after figures of a change in one run")
    args = ap.parse_args()
    if args.saturation:
        args.respond_only = True
        if args.rates == ap.get_default("rates"):
            args.rates = "5000,half"
    args.half_rate = None
    assert LOADGEN.exists(), "cargo build --release -p m2m-loadgen first"
    work = pathlib.Path(tempfile.mkdtemp(prefix="proxies-"))
    procs = []
    try:
        cse, cse_addr = start_responder("127.0.0.1") if args.saturation else start_cse("127.0.0.1", args.respond_only)
        procs.append(cse)
        cse_port = int(cse_addr.rsplit(":", 1)[1])
        starters = {"nginx": lambda c: start_nginx(work, c),
                    "haproxy": lambda c: start_haproxy(work, c),
                    "edge uring": lambda c: start_edge("uring", c),
                    "edge epoll": lambda c: start_edge("epoll", c),
                    # All devices on one shared link (the CSE holds one socket for the edge).
                    "edge uring multiplex": lambda c: start_edge(
                        "uring", c, extra=("--upstream-mode", "multiplex", "--max-in-flight", "1024")),
                    "edge epoll multiplex": lambda c: start_edge(
                        "epoll", c, extra=("--upstream-mode", "multiplex", "--max-in-flight", "1024"))}
        if args.baseline:
            starters["edge uring (baseline)"] = lambda c: start_edge("uring", c, binary=args.baseline)
            starters["edge uring multiplex (baseline)"] = lambda c: start_edge(
                "uring", c, binary=args.baseline, extra=("--upstream-mode", "multiplex", "--max-in-flight", "1024"))
        chosen = [n for n in starters if not args.only or n in args.only.split(",")]
        results = {}
        rows = {"direct": (None, cse_port)}
        if not args.skip_load:
            for name in chosen:
                p, port = starters[name](cse_addr)
                procs.append(p)
                rows[name] = (p, port)
            closed = [f"pipe:{shape}" for shape in args.pipe.split(",") if shape] if args.saturation else ["closed"]
            kinds = closed + [f"open:{r}" for r in args.rates.split(",") if r]
            results = {(name, kind): [] for name in rows for kind in kinds}
            for r in range(args.rounds):
                for kind in kinds:
                    if kind == "open:half" and args.half_rate is None:
                        edge_rates = [statistics.median(x["rps"] for x in results[(n, kinds[0])])
                                      for n in rows if n.startswith("edge") and results[(n, kinds[0])]]
                        args.half_rate = int(max(edge_rates or [10000]) / 2)
                        print(f"open:half is {args.half_rate} requests/s", file=sys.stderr)
                    for name, (p, port) in rows.items():
                        c0 = cpu_seconds(p.pid) if p else 0.0
                        u0 = cpu_seconds(cse.pid)
                        s = run_scenario(port, args, work, kind)
                        cpu = (cpu_seconds(p.pid) - c0) if p else 0.0
                        upstream_cpu = cpu_seconds(cse.pid) - u0
                        ops = s["operations"]
                        results[(name, kind)].append({
                            "rps": s["ops_per_s"], "ops": ops, "errors": s["errors_total"],
                            "p50": s["all_ops"]["p50_us"], "p99": s["all_ops"]["p99_us"],
                            "p999": s["all_ops"]["p999_us"],
                            "cpu_us_per_op": cpu * 1e6 / max(ops, 1) if p else None,
                            "rss": rss_bytes(p.pid) if p else None,
                            "proxy_cpu_s": cpu, "client_cpu_s": s["client_cpu_s"], "upstream_cpu_s": upstream_cpu,
                            "seconds": s.get("seconds", args.seconds),
                            # Open loop: the rate the loadgen reached against the one asked for (a
                            # client that cannot keep up measures itself, not the proxy).
                            "short": kind.startswith("open:") and (s.get("achieved_rate") or 0) < 0.97,
                        })
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
            for p, _ in rows.values():
                if p:
                    p.terminate()
                    p.wait(timeout=10)
        idle_counts = [int(x) for x in args.idle.split(",") if x]
        idle = {}
        if idle_counts:
            make_cert(work)
            idle_rows = {n: (starters[n], False) for n in chosen}
            if "edge uring" in chosen:
                idle_rows["edge uring wss"] = (lambda c: start_edge("uring", c, work), True)
            rows_done = 0
            for _ in range(args.idle_rounds):
                for name, (start, tls) in idle_rows.items():
                    # A fresh simulated CSE on its own loopback address per row: every proxy link is a
                    # connection to the CSE, and the links a previous row closed sit in TIME_WAIT for a
                    # minute holding their local ports (about 28,000 per destination address).
                    rows_done += 1
                    row_cse, row_addr = start_cse(f"127.0.0.{10 + rows_done % 240}")
                    try:
                        per_device = 1 if "multiplex" in name else 2
                        idle.setdefault(name, []).append(
                            idle_growth(lambda: start(row_addr), idle_counts, work, tls,
                                        fds_per_device=per_device, cse_addr=row_addr))
                    finally:
                        row_cse.terminate()
                        row_cse.wait(timeout=10)
            print("idle rows done", file=sys.stderr)
        print_report(args, rows, results, idle, idle_counts)
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps({
                "load": {f"{name} | {kind}": runs for (name, kind), runs in results.items()},
                "idle": {"counts": idle_counts, "rows": idle}}, indent=1))
        failed = [f"{name} {kind}" for (name, kind), runs in results.items() if any(x["errors"] for x in runs)]
        failed += [f"{name} idle" for name, rounds in idle.items() if any(pts[-1][0] < idle_counts[-1] for pts in rounds)]
        if failed:
            sys.exit("errors or devices missing in: " + ", ".join(failed))
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


def stop_all(procs):
    """SIGTERM every process, then wait for each (SIGKILL after 10 s)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def make_cert(work):
    """A CA (ca.pem) and a server certificate for 127.0.0.1 it signed (cert.pem, key.pem), for the
    edge's wss idle row."""
    def ssl(*a):
        subprocess.run(["openssl", *a], check=True, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=compare CA", "-keyout", "ca-key.pem", "-out", "ca.pem")
    ssl("req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "server.csr")
    (work / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
        "-days", "2", "-extfile", "ext.cnf", "-out", "cert.pem")


def print_report(args, rows, results, idle, idle_counts):
    host = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
                     "?")
    load = f"median of {args.rounds} interleaved rounds; {args.seconds} s per run" if results else "idle rows only"
    print(f"# {time.strftime('%Y-%m-%d')} on {host}, {os.cpu_count()} CPUs ({cpu_model}); loopback; {load}")
    for kind in dict.fromkeys(k for _, k in results):
        if kind == "closed":
            label = f"closed loop, {args.devices} devices x {args.in_flight} in flight"
        elif kind.startswith("pipe:"):
            conns, in_flight = kind.split(":")[1].split("x")
            label = f"closed loop, pipelining client, {conns} connections x {in_flight} in flight"
        else:
            rate = args.half_rate if kind == "open:half" else kind.split(":")[1]
            label = f"open loop, {rate} requests/s over {args.devices} devices"
        print(f"\n## {label}\n")
        print("| row | req/s | p50 ms | p99 ms | p99.9 ms | +p50 ms | +p99 ms | +p99 vs nginx | CPU us/op "
              "| CPU vs nginx | CPU vs HAProxy | RSS MiB | errors | CPU s proxy/client/CSE |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")

        def med(name, k):
            xs = [x[k] for x in results[(name, kind)]]
            return statistics.median(xs) if xs[0] is not None else None

        base50, base99 = med("direct", "p50"), med("direct", "p99")
        ref = {r: med(r, "cpu_us_per_op") for r in ("nginx", "haproxy") if r in rows}

        def ratio(cpu, r):
            return "-" if cpu is None or r not in ref else f"{cpu / ref[r]:.2f}x"

        nginx_added = med("nginx", "p99") - base99 if "nginx" in rows else None

        def added_ratio(name):
            if nginx_added is None or name == "direct" or nginx_added <= 0:
                return "-"
            return f"{(med(name, 'p99') - base99) / nginx_added:.2f}x"

        def bound(name):
            """Each part's CPU seconds, and whether the proxy was the one that limited the rate."""
            proxy, client, cse = (med(name, k) for k in ("proxy_cpu_s", "client_cpu_s", "upstream_cpu_s"))
            parts = f"{proxy:.1f}/{client:.1f}/{cse:.1f}"
            if kind.startswith("open:"):
                # Open loop paces the load: no part is meant to saturate, but the client must reach
                # the rate asked for, or the row measures the client.
                short = any(x.get("short") for x in results[(name, kind)])
                return parts + (" client below the asked rate" if short else "")
            if name == "direct":
                return parts
            # Closed loop: the rate is set by whichever part runs out of CPU first; the proxy is the
            # bottleneck only if it used at least as much CPU as the client and the upstream.
            busy = proxy / max(med(name, "seconds"), 1e-9)
            return parts + f" (proxy busy {busy:.0%})" + ("" if proxy >= max(client, cse) else " not proxy-bound")

        for name in rows:
            cpu, rss = med(name, "cpu_us_per_op"), med(name, "rss")
            print(f"| {name} | {med(name, 'rps'):.0f} | {med(name, 'p50') / 1000:.2f} | {med(name, 'p99') / 1000:.2f} "
                  f"| {med(name, 'p999') / 1000:.2f} | {(med(name, 'p50') - base50) / 1000:.2f} "
                  f"| {(med(name, 'p99') - base99) / 1000:.2f} | {added_ratio(name)} | {'-' if cpu is None else f'{cpu:.2f}'} "
                  f"| {ratio(cpu, 'nginx')} | {ratio(cpu, 'haproxy')} "
                  f"| {'-' if rss is None else f'{rss / 2**20:.1f}'} | {med(name, 'errors'):.0f} "
                  f"| {bound(name)} |")
    if idle:
        first = idle_counts[0]
        print(f"\n## idle registered devices: proxy RSS growth per device (bytes), median of {args.idle_rounds} "
              f"round(s)\n")
        print(f"Each row is one proxy process, warmed up, then devices added in steps. 'from {first}' is "
              f"what another device costs; 'from 0' also carries pools a proxy fills once.\n")
        heads = [f"0 to {first}"] + [f"{first} to {n}" for n in idle_counts[1:]]
        print("| row | " + " | ".join(heads) + " | RSS MiB at the end | sockets at the CSE per step |")
        print("|---|" + "---:|" * (len(heads) + 2))
        for name, rounds in idle.items():
            cells = []
            for k in range(1, len(idle_counts) + 1):
                per = []
                for pts in rounds:
                    if len(pts) <= k:
                        continue
                    a = pts[0] if k == 1 else pts[1]
                    b = pts[k]
                    per.append((b[1] - a[1]) / max(b[0] - a[0], 1))
                cells.append(f"{statistics.median(per):,.0f}" if per else "n/a")
            end_rss = statistics.median(pts[-1][1] for pts in rounds) / 2**20
            held = min(pts[-1][0] for pts in rounds)
            note = "" if held >= idle_counts[-1] else f" (only {held} connected)"
            sockets = " / ".join(str(pt[2]) if len(pt) > 2 and pt[2] is not None else "?" for pt in rounds[0])
            print(f"| {name} | " + " | ".join(cells) + f" | {end_rss:.1f}{note} | {sockets} |")


if __name__ == "__main__":
    main()
