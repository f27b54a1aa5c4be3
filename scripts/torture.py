#!/usr/bin/env python3
"""The edge under attack and under faults, with real devices served at the same time.

Each scenario starts its own simulated CSE (`m2m-loadgen cse`) and edge (`m2m-edge run`) on
loopback, runs real devices through the edge with `m2m-loadgen run` at a fixed rate (a quiet
baseline run first, then the same run while the scenario throws its load or faults), and reports:
what was thrown, what the real devices saw (errors, corrected p99 against the quiet baseline),
the edge's RSS (peak during, and after) and descriptors, and whether anything was lost.

Scenarios (both drivers unless --io says otherwise):
  slowloris    handshakes sent a byte at a time; handshakes completed and then a frame header
               trickled: the handshake and frame timeouts must cut every one of them
  floods       connect/close as fast as possible; ping floods; one-byte fragments; a deflate bomb
               per connection: each gets its close code; the edge's CPU per legit request is printed
               beside the quiet run's
  slow-reader  a device that creates contentInstances under its own subscription and never reads:
               closed once its unsent output passes --max-output-bytes, memory bounded
  cse-faults   kill the CSE and restart it, stop it (SIGSTOP/SIGCONT), under load: exact accounting,
               every request sent gets exactly one answer (a response, or the edge's 5103/4008),
               none times out at the device, none is answered twice, devices go on after the restart;
               then SIGTERM the edge under load: in-flight requests answered before 1001
  acme-faults  the same in front of ACME (scripts/test.sh installs it), at its pace
  access       CONNECT to targets off the allow-list, to the admin port, to loopback and link-local
               addresses by literal and by name: all refused (never an open proxy); the notify
               listener refuses a source address not on its allow-list
  identity     mutual TLS with --bind-identity: every way for one device to act as another (no
               certificate, handshake X-M2M-Origin, fr on registration and after, through CONNECT
               to the edge's own CSE target) is refused; the victim's session is unaffected
  soak         a moderate rate with reconnects and NOTIFYs for --soak-minutes: RSS and descriptors
               sampled, their slope printed, 0 errors

    python3 scripts/torture.py [--smoke] [--io uring,epoll] [--only slowloris,floods] [--markdown]
--smoke runs every scenario at a size CI can afford (a few minutes in all). Exit 1 when a check fails.
Needs `cargo build --release -p m2m-edge -p m2m-loadgen`. Traffic goes only to 127.0.0.0/8.
"""
import argparse
import atexit
import base64
import json
import os
import pathlib
import resource
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
EDGE = ROOT / "target/release/m2m-edge"
LOADGEN = ROOT / "target/release/m2m-loadgen"
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

FAILURES = []
# Every process started, killed at exit whatever happens (an exception must not leave them running).
PROCS = []


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.kill()
            except OSError:
                pass


atexit.register(cleanup)


def check(ok, what):
    """Record a check; a failed one makes the run exit 1."""
    if not ok:
        FAILURES.append(what)
        print(f"  FAIL: {what}", flush=True)
    return ok


# --- processes -----------------------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc=None, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def rss(pid):
    try:
        return int(pathlib.Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except OSError:
        return 0


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def cpu(pid):
    try:
        f = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / CLK
    except (OSError, IndexError):
        return 0.0


class Cse:
    """The simulated CSE on a fixed port (so that a restart comes back where the edge expects it)."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.start()

    def start(self):
        self.proc = subprocess.Popen([str(LOADGEN), "cse", "--listen", f"127.0.0.1:{self.port}", "--workers", "1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        PROCS.append(self.proc)
        wait_port(self.port, self.proc)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait()


class Acme:
    """The ACME CSE (scripts/test.sh installs it into .peers/acme) on fixed ports, like `Cse`."""
    PY = ROOT / ".peers/acme/bin/python"
    LAUNCH = ("import signal, sys, runpy; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "sys.argv[0] = 'acmecse'; runpy.run_module('acmecse', run_name='__main__', alter_sys=True)")

    def __init__(self, work):
        if not self.PY.exists():
            raise SystemExit(f"missing peer: the ACME CSE ({self.PY}); run scripts/test.sh, which installs it")
        self.http, self.port = free_port(), free_port()
        self.work = work / f"acme-{self.port}"
        self.work.mkdir()
        ini = (ROOT / "tests/peers/acme.ini").read_text().replace("@HTTP_PORT@", str(self.http)) \
            .replace("@WS_PORT@", str(self.port)).replace("@DB_TYPE@", "memory")
        (self.work / "acme.ini").write_text(ini)
        self.start()

    def start(self):
        import urllib.request
        self.proc = subprocess.Popen([str(self.PY), "-c", self.LAUNCH, "--headless", "--base-directory",
                                      str(self.work), "--config", "acme.ini"], cwd=self.work,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        PROCS.append(self.proc)
        end = time.time() + 60
        while time.time() < end:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{self.http}/~/id-in/cse-in",
                                             headers={"X-M2M-Origin": "CAdmin", "X-M2M-RI": "r", "X-M2M-RVI": "3",
                                                      "Accept": "application/json"})
                if urllib.request.urlopen(req, timeout=2).headers.get("X-M2M-RSC") == "2000":
                    wait_port(self.port, self.proc)
                    return
            except OSError:
                time.sleep(0.3)
        raise SystemExit("ACME did not come up")

    kill = Cse.kill
    stop = Cse.stop


class Edge:
    def __init__(self, io, cse_port, extra=(), work=None):
        self.port, self.admin = free_port(), free_port()
        self.log = open(work / f"edge-{self.port}.log", "w") if work else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [str(EDGE), "run", "--listen", f"127.0.0.1:{self.port}", "--upstream", f"ws://127.0.0.1:{cse_port}/",
             "--io", io, "--workers", "1", "--admin", f"127.0.0.1:{self.admin}", "--log-level", "warn",
             *([] if "--max-in-flight" in extra else ["--max-in-flight", "16"]), *extra],
            stdout=subprocess.DEVNULL, stderr=self.log)
        PROCS.append(self.proc)
        wait_port(self.port, self.proc)
        wait_port(self.admin, self.proc)

    def metric(self, name, labels=""):
        """Sum of a counter's series whose labels contain `labels`."""
        with socket.create_connection(("127.0.0.1", self.admin), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            body = b""
            while chunk := s.recv(65536):
                body += chunk
        total = 0.0
        for line in body.decode(errors="replace").splitlines():
            if line.startswith(name) and labels in line and not line.startswith("#"):
                try:
                    total += float(line.rsplit(" ", 1)[1])
                except ValueError:
                    pass
        return total

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


class Sampler:
    """The edge's RSS and descriptors, sampled every 100 ms while a scenario runs."""

    def __init__(self, pid):
        self.pid, self.samples, self.running = pid, [], True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            self.samples.append((time.time(), rss(self.pid), fds(self.pid)))
            time.sleep(0.1)

    def finish(self):
        self.running = False
        self.thread.join()
        return self.samples


def devices(edge, work, name, a, extra=(), seconds=None):
    """The real devices: a fixed-rate loadgen run through the edge; returns its summary."""
    out = work / name
    cmd = [str(LOADGEN), "run", "--quiet", "--target", f"ws://127.0.0.1:{edge.port}/", "--devices", str(a.devices),
           "--rate", str(a.rate), "--duration", f"{seconds or a.seconds}s", "--out", str(out), "--ramp", "0",
           "--workers", "1", *extra]
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    path = out / "summary.json"
    if not path.exists():
        raise SystemExit(f"loadgen wrote no summary ({r.returncode}): {r.stderr[-2000:]}")
    return json.loads(path.read_text())


def p99_ms(summary):
    return summary["all_ops"]["p99_us"] / 1000


def bad_errors(summary, allowed=()):
    """Errors other than the answers listed in `allowed` (e.g. "rsc 5103")."""
    return {k: v for k, v in summary["errors"].items() if k not in allowed}


# --- a minimal WebSocket client (stdlib only: the attack traffic must be exactly what we say) -----

def handshake_bytes(host, extra_headers=""):
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: oneM2M.json\r\n{extra_headers}\r\n").encode()


def frame(opcode, payload, fin=True, rsv1=False):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    mask = os.urandom(4)
    return head + mask + mask_bytes(payload, mask)


def mask_bytes(payload, mask):
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def ws_connect(port, extra_headers="", timeout=5, rcvbuf=None, head_out=None):
    """A WebSocket session: (socket, bytes after the answer's head); the head goes to `head_out`."""
    s = socket.socket()
    if rcvbuf:
        # Before connecting, so that the window is small from the start.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(handshake_bytes(f"127.0.0.1:{port}", extra_headers))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        status = head.split(b" ", 2)[1]
        if status != b"101":
            raise ConnectionError(f"handshake answered {status.decode()}")
    except (OSError, ConnectionError):
        s.close()
        raise
    head, rest = head.split(b"\r\n\r\n", 1)
    if head_out is not None:
        head_out.append(head.decode(errors="replace"))
    return s, rest


def read_frame(s, buf=b""):
    """One frame from `s` (after `buf`): (opcode, payload, rest)."""
    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
    need(2)
    op, n = buf[0] & 0x0F, buf[1] & 0x7F
    at = 2
    if n == 126:
        need(4)
        n, at = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        need(10)
        n, at = struct.unpack("!Q", buf[2:10])[0], 10
    need(at + n)
    return op, buf[at:at + n], buf[at + n:]


def close_code(s, buf=b"", timeout=10):
    """Read until a close frame (its code) or EOF (None)."""
    s.settimeout(timeout)
    try:
        while True:
            op, payload, buf = read_frame(s, buf)
            if op == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    except (ConnectionError, OSError):
        return None


def readable(s):
    p = select.poll()
    p.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(p.poll(0))


def closed_by_peer(s):
    """Whether the peer has closed `s` (EOF or reset) without blocking."""
    try:
        p = select.poll()  # not select(): descriptors past 1024
        p.register(s, select.POLLIN | select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        if not p.poll(0):
            return False
        while True:
            data = s.recv(65536, socket.MSG_DONTWAIT)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def primitive(op, to, fr, rqi, **rest):
    p = {"op": op, "to": to, "fr": fr, "rqi": rqi, "rvi": "3", **rest}
    return json.dumps(p).encode()


# --- scenarios -----------------------------------------------------------------------------------

def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def scenario_slowloris(io, a, work):
    handshakes, frames = a.scale(10000, 300), a.scale(5000, 150)
    limit = min(raise_fd_limit() - 200, 18000)
    handshakes, frames = min(handshakes, limit * 2 // 3), min(frames, limit // 3)
    timeout = "10s" if not a.smoke else "3s"
    cse = Cse()
    # Passthrough gives every open device a link (two descriptors): past the process's descriptor
    # limit the edge rests its listener (connections wait in the backlog) and the attack would not be
    # what it says. Multiplex mode then: one descriptor per device.
    mode = ["--upstream-mode", "multiplex"] if handshakes + 2 * frames > limit - 1000 else []
    edge = Edge(io, cse.port, ["--handshake-timeout", timeout, "--frame-timeout", timeout, *mode], work)
    base = devices(edge, work, f"slowloris-{io}-quiet", a)
    rss0, fds0 = rss(edge.proc.pid), fds(edge.proc.pid)
    sampler = Sampler(edge.proc.pid)
    # Open the attackers, then let the devices run while they trickle.
    slow_hs, slow_fr = [], []
    for _ in range(handshakes):
        try:
            s = socket.create_connection(("127.0.0.1", edge.port), timeout=5)
            s.setblocking(False)
            slow_hs.append(s)
        except OSError:
            break
    for _ in range(frames):
        try:
            s, _ = ws_connect(edge.port)
            s.setblocking(False)
            slow_fr.append(s)
        except (OSError, ConnectionError):
            break
    started = time.time()
    stop = threading.Event()
    hs_bytes = handshake_bytes(f"127.0.0.1:{edge.port}")
    fr_bytes = frame(1, primitive(2, "/id-in", "Cx", "r1"))

    def trickle():
        i = 0
        while not stop.is_set():
            for s in slow_hs:
                try:
                    s.send(hs_bytes[i % len(hs_bytes):i % len(hs_bytes) + 1])
                except OSError:
                    pass
            for s in slow_fr:
                try:
                    s.send(fr_bytes[i % 4:i % 4 + 1])
                except OSError:
                    pass
            i += 1
            stop.wait(0.5)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    during = devices(edge, work, f"slowloris-{io}-attack", a)
    cut_by = float(timeout[:-1]) + 3
    while time.time() < started + cut_by:
        time.sleep(0.2)
    cut_hs = sum(closed_by_peer(s) for s in slow_hs)
    cut_fr = sum(closed_by_peer(s) for s in slow_fr)
    # Cut by the timeouts, not by anything else (a 1007 for a garbage frame would close them too).
    by_hs = edge.metric("m2m_edge_limits_hit_total", 'limit="handshake_timeout"')
    by_fr = edge.metric("m2m_edge_limits_hit_total", 'limit="frame_timeout"')
    stop.set()
    t.join()
    for s in slow_hs + slow_fr:
        s.close()
    time.sleep(1.5)
    samples = sampler.finish()
    row = row_of("slowloris", io, f"{len(slow_hs)} handshakes a byte at a time, {len(slow_fr)} trickled frames"
                 f"{' (multiplex)' if mode else ''}",
                 base, during, samples, rss0, fds0, edge)
    row["cut"] = (f"{cut_hs}/{len(slow_hs)} + {cut_fr}/{len(slow_fr)} closed in {cut_by:.0f}s "
                  f"(handshake timeouts {by_hs:.0f}, frame timeouts {by_fr:.0f})")
    check(cut_hs == len(slow_hs) == by_hs, f"slowloris {io}: trickled handshakes: {cut_hs} closed, {by_hs} by "
          f"the handshake timeout, of {len(slow_hs)}")
    check(cut_fr == len(slow_fr) == by_fr, f"slowloris {io}: trickled frames: {cut_fr} closed, {by_fr} by the "
          f"frame timeout, of {len(slow_fr)}")
    check(during["errors_total"] == 0, f"slowloris {io}: devices saw errors {during['errors']}")
    check(row["fds_after"] <= fds0 + 5, f"slowloris {io}: descriptors {row['fds_after']} after vs {fds0} before")
    edge.stop()
    cse.stop()
    return row


def scenario_floods(io, a, work):
    cse = Cse()
    edge = Edge(io, cse.port, ["--deflate", "--max-message-bytes", "65536", "--max-frame-bytes", "65536"], work)
    base = devices(edge, work, f"floods-{io}-quiet", a)
    cpu_quiet = cpu(edge.proc.pid)
    rss0, fds0 = rss(edge.proc.pid), fds(edge.proc.pid)
    sampler = Sampler(edge.proc.pid)
    stop = threading.Event()
    counts = {"connects": 0, "pings": 0, "fragments": 0, "ping floods cut": 0}
    codes = {"fragments": [], "bomb": []}
    negotiated = []

    def connect_flood():
        while not stop.is_set():
            try:
                socket.create_connection(("127.0.0.1", edge.port), timeout=1).close()
                counts["connects"] += 1
            except OSError:
                pass

    def ping_flood():
        try:
            s, _ = ws_connect(edge.port)
        except (OSError, ConnectionError):
            return
        ping = frame(9, b"x" * 16) * 64
        s.settimeout(2)
        while not stop.is_set():
            try:
                s.sendall(ping)
                counts["pings"] += 64
                # Read the pongs there are (a flood that never reads is the slow reader's case).
                while readable(s):
                    if not s.recv(65536):
                        raise ConnectionError("closed")
            except (OSError, ConnectionError):
                counts["ping floods cut"] += 1
                break
        s.close()

    def fragment_flood():
        # One message in one-byte fragments, past the message limit: 1009.
        try:
            s, rest = ws_connect(edge.port)
        except (OSError, ConnectionError) as e:
            codes["fragments"].append(f"no session: {e}")
            return
        chunk = b"".join(frame(0, b" ", fin=False) for _ in range(256))
        s.settimeout(5)
        try:
            s.sendall(frame(1, b"{", fin=False))
            while not stop.is_set():
                s.sendall(chunk)
                counts["fragments"] += 256
        except OSError:
            pass
        codes["fragments"].append(close_code(s, rest, timeout=5))
        s.close()

    def deflate_bomb():
        # 16 MiB of zeros deflated to a few KiB, past the message limit after inflation: 1009.
        heads = []
        try:
            s, rest = ws_connect(edge.port, "Sec-WebSocket-Extensions: permessage-deflate\r\n", head_out=heads)
        except (OSError, ConnectionError) as e:
            codes["bomb"].append(f"no session: {e}")
            return
        negotiated.append("permessage-deflate" in heads[0].lower())
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        payload = c.compress(b"\0" * (16 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
        payload = payload[:-4] if payload.endswith(b"\x00\x00\xff\xff") else payload
        # Within the frame and message limits on the wire: the 1009 is for the inflated size.
        assert len(payload) < 65536, len(payload)
        try:
            s.sendall(frame(1, payload, rsv1=True))
        except OSError:
            pass
        codes["bomb"].append(close_code(s, rest, timeout=10))
        s.close()

    workers = [threading.Thread(target=connect_flood, daemon=True) for _ in range(4)]
    workers += [threading.Thread(target=ping_flood, daemon=True) for _ in range(a.scale(50, 8))]
    for w in workers:
        w.start()
    frag = [threading.Thread(target=fragment_flood, daemon=True) for _ in range(a.scale(50, 8))]
    bombs = [threading.Thread(target=deflate_bomb, daemon=True) for _ in range(a.scale(200, 16))]
    for w in frag + bombs:
        w.start()
    cpu_before = cpu(edge.proc.pid)
    during = devices(edge, work, f"floods-{io}-attack", a)
    cpu_flood = cpu(edge.proc.pid) - cpu_before
    stop.set()
    for w in workers + frag + bombs:
        w.join(timeout=15)
    time.sleep(1.5)
    samples = sampler.finish()
    row = row_of("floods", io, f"{counts['connects']} connects, {counts['pings']} pings, "
                 f"{counts['fragments']} fragments, {len(bombs)} deflate bombs", base, during, samples, rss0, fds0, edge)
    legit = max(during["operations"], 1)
    row["cpu"] = f"{cpu_flood / legit * 1e6:.0f} µs of edge CPU per device request (quiet: " \
                 f"{cpu_quiet / max(base['operations'], 1) * 1e6:.0f})"
    frag_ok = [c for c in codes["fragments"] if c == 1009]
    bomb_ok = [c for c in codes["bomb"] if c == 1009]
    row["cut"] = (f"fragments 1009: {len(frag_ok)}/{len(frag)}, bombs 1009: {len(bomb_ok)}/{len(bombs)} "
                  f"(deflate negotiated {sum(negotiated)}), ping floods cut {counts['ping floods cut']}")
    check(len(frag_ok) == len(frag), f"floods {io}: fragment floods closed {codes['fragments']}")
    check(len(bomb_ok) == len(bombs) == sum(negotiated), f"floods {io}: deflate bombs closed {codes['bomb']}")
    # A flood that pings faster than it reads its pongs is cut at the output bound (that is the
    # bound working); memory stays within the bounds of what is open.
    check(during["errors_total"] == 0, f"floods {io}: devices saw errors {during['errors']}")
    pingers = len(workers) - 4
    bound_mb = row["rss_before_mb"] + pingers * 2 * 4.2 + 64
    check(row["rss_peak_mb"] < bound_mb,
          f"floods {io}: RSS peak {row['rss_peak_mb']} MB, over {bound_mb:.0f} ({pingers} pingers x 2 x the "
          "4 MiB output bound + 64)")
    edge.stop()
    cse.stop()
    return row


def register(s, buf, name):
    """Create an AE and a container with a subscription to it (the device hears its own creates)."""
    s.settimeout(10)
    s.sendall(frame(1, primitive(1, "/id-in/cse-in", name, "reg", ty=2,
                                  pc={"m2m:ae": {"rn": name, "api": "Nslow", "rr": True, "srv": ["3"], "poa": []}})))
    op, payload, buf = read_frame(s, buf)
    ae = json.loads(payload)
    if ae.get("rsc") != 2001:
        raise SystemExit(f"registration answered {ae}")
    ri = ae["pc"]["m2m:ae"]["ri"]
    s.sendall(frame(1, primitive(1, ri, name, "cnt", ty=3, pc={"m2m:cnt": {"rn": "box"}})))
    op, payload, buf = read_frame(s, buf)
    cnt = json.loads(payload)["pc"]["m2m:cnt"]["ri"]
    s.sendall(frame(1, primitive(1, cnt, name, "sub", ty=23,
                                  pc={"m2m:sub": {"rn": "me", "nu": [name], "enc": {"net": [3]}}})))
    op, payload, buf = read_frame(s, buf)
    return cnt, buf


def scenario_slow_reader(io, a, work):
    bound = 1 << 20
    cse = Cse()
    edge = Edge(io, cse.port, ["--max-output-bytes", str(bound)], work)
    base = devices(edge, work, f"slow-reader-{io}-quiet", a)
    rss0, fds0 = rss(edge.proc.pid), fds(edge.proc.pid)
    sampler = Sampler(edge.proc.pid)
    readers = a.scale(20, 3)
    creates = a.scale(20000, 20000)
    results = []

    def never_reads(i):
        name = f"Cslow{i}-{os.getpid()}"
        sent = 0
        try:
            s, buf = ws_connect(edge.port, f"X-M2M-Origin: {name}\r\n", rcvbuf=4096)
            cnt, buf = register(s, buf, name)
            s.settimeout(10)
            body = "x" * 4000
            # Until the edge gives up on us (or the cap): when the CSE is the bottleneck the edge
            # answers 5207 (queue full), small answers, so it takes more creates to pass the bound.
            until = time.time() + 45
            for n in range(creates):
                if time.time() > until:
                    break
                s.sendall(frame(1, primitive(1, cnt, name, f"c{n}", ty=4, pc={"m2m:cin": {"con": body}})))
                sent += 1
            # Still not reading: wait for the edge to give up on us (its closing shows as a hang-up).
            p = select.poll()
            p.register(s, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
            until = time.time() + 30
            while time.time() < until and not p.poll(200):
                pass
            results.append(("closed by the edge" if p.poll(0) else "not closed", sent))
            s.close()
        except (OSError, ConnectionError) as e:
            results.append((type(e).__name__, sent))

    threads = [threading.Thread(target=never_reads, args=(i,), daemon=True) for i in range(readers)]
    for t in threads:
        t.start()
    during = devices(edge, work, f"slow-reader-{io}-attack", a)
    for t in threads:
        t.join(timeout=120)
    time.sleep(1.5)
    samples = sampler.finish()
    closed = edge.metric("m2m_edge_limits_hit_total", 'limit="output_bound"')
    queue_full = edge.metric("m2m_edge_limits_hit_total", 'limit="queue_full"')
    print(f"   slow readers: {results}; queue full {queue_full:.0f}", flush=True)
    row = row_of("slow-reader", io, f"{readers} devices sending up to {creates} 4 KB creates (45 s at most) under "
                 f"their own subscription, never reading (bound {bound >> 10} KiB)", base, during, samples, rss0,
                 fds0, edge)
    row["cut"] = f"closed at the output bound: {closed:.0f}/{readers}"
    check(closed == readers, f"slow-reader {io}: {closed} of {readers} closed at the bound ({results})")
    check(during["errors_total"] == 0, f"slow-reader {io}: devices saw errors {during['errors']}")
    check(row["rss_peak_mb"] < row["rss_before_mb"] + readers * 3 * bound / 1e6 + 64,
          f"slow-reader {io}: RSS peak {row['rss_peak_mb']} MB for {readers} readers")
    edge.stop()
    cse.stop()
    return row


def exact(summary, label, allowed_rsc=("rsc 5103", "rsc 4008", "rsc 4004")):
    """Exact accounting: every request sent answered exactly once, and only with the answers a fault
    explains: the edge's 5103 (CSE unreachable) and 4008 (no answer in time), and 4004 from a
    restarted CSE that lost its resources."""
    errs = summary["errors"]
    odd = {k: v for k, v in errs.items() if k.startswith("rsc ") and k not in allowed_rsc}
    check(not odd, f"{label}: answers no fault explains: {odd}")
    # `operations` counts every answered request, error responses (`rsc …`) included.
    answered = summary["operations"]
    unanswered = sum(errs.get(k, 0) for k in ("timeout", "lost"))
    doubled = sum(v for k, v in errs.items() if k.startswith("unmatched_response")) + \
        sum(v for k, v in summary["events"].items() if k.startswith("duplicate_response"))
    other = {k: v for k, v in errs.items() if not k.startswith("rsc ") and k not in ("timeout", "lost")
             and not k.startswith("unmatched_response")}
    check(unanswered == 0, f"{label}: {unanswered} requests unanswered ({errs})")
    check(doubled == 0, f"{label}: {doubled} answered twice")
    check(not other, f"{label}: other errors {other}")
    check(answered + unanswered == summary["sent"],
          f"{label}: sent {summary['sent']} != answered {answered} + unanswered {unanswered}")
    return answered, unanswered, doubled


def scenario_cse_faults(io, a, work, acme=False):
    if acme:
        # ACME at its pace: one request at a time per link, a rate it keeps up with.
        cse = Acme(work)
        a = argparse.Namespace(**{**vars(a), "devices": min(a.devices, 10), "rate": min(a.rate, 20)})
        edge = Edge(io, cse.port, ["--request-timeout", "5s", "--relink-backoff", "300ms", "--max-in-flight", "1"],
                    work)
    else:
        cse = Cse()
        edge = Edge(io, cse.port, ["--request-timeout", "3s", "--relink-backoff", "200ms"], work)
    name = "acme-faults" if acme else "cse-faults"
    base = devices(edge, work, f"{name}-{io}-quiet", a, ["--request-timeout", "30s", "--subscribe", "false"])
    rss0, fds0 = rss(edge.proc.pid), fds(edge.proc.pid)
    sampler = Sampler(edge.proc.pid)
    events = []

    seconds = max(a.seconds, 40 if acme else 16)
    # Longer than the edge's request timeout, so that the edge answers 4008 and the CSE's late
    # answers, once it runs again, must not reach the devices a second time.
    stopped = 7 if acme else 4.5

    def faults():
        # Killed at 15 %, back 1.5 s later; stopped at 40 %; the rest undisturbed.
        time.sleep(seconds * 0.15)
        cse.kill()
        events.append(("kill", time.time()))
        time.sleep(1.5)
        cse.start()
        events.append(("restart", time.time()))
        time.sleep(max(seconds * 0.40 - (time.time() - started), 0.5))
        cse.proc.send_signal(signal.SIGSTOP)
        events.append(("stop", time.time()))
        time.sleep(stopped)
        cse.proc.send_signal(signal.SIGCONT)
        events.append(("cont", time.time()))

    started = time.time()
    t = threading.Thread(target=faults, daemon=True)
    t.start()
    # The loadgen's timeout is longer than the edge's: the edge must answer first (4008/5103).
    during = devices(edge, work, f"{name}-{io}-attack", a,
                     ["--request-timeout", "30s", "--subscribe", "false"], seconds=seconds)
    t.join()
    answered, unanswered, doubled = exact(during, f"{name} {io}")
    check(during["errors"].get("rsc 4008", 0) > 0, f"{name} {io}: the stop produced no 4008 ({during['errors']})")
    # From 2 s after SIGCONT the same sessions are served (the restarted CSE lost its resources, so
    # many answers are 4004: answers all the same); the last points are the run's tail.
    resumed = dict(events)["cont"] - started + 2
    after = [p for p in during["timeline"][:-2] if p["t"] >= resumed]
    check(after and all(p["ops_per_s"] > 0 and p["connected"] == a.devices for p in after),
          f"{name} {io}: devices not served after the faults ({after})")
    check(during["max_connected"] == a.devices and during["events"].get("connections", 0) == a.devices,
          f"{name} {io}: devices reconnected ({during['events']})")
    # SIGTERM with requests in flight (the CSE stopped meanwhile): each is answered before 1001.
    out = work / f"{name}-{io}-sigterm"
    lg = subprocess.Popen([str(LOADGEN), "run", "--quiet", "--target", f"ws://127.0.0.1:{edge.port}/",
                           "--devices", str(a.devices), "--rate", str(a.rate), "--duration", "20s", "--out", str(out),
                           "--ramp", "0", "--workers", "1", "--request-timeout", "30s", "--subscribe", "false"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    PROCS.append(lg)
    time.sleep(6 if acme else 3)
    cse.proc.send_signal(signal.SIGSTOP)
    time.sleep(0.5)
    edge.proc.terminate()
    time.sleep(1)
    cse.proc.send_signal(signal.SIGCONT)
    code = edge.proc.wait(timeout=30)
    lg.wait(timeout=90)
    term = json.loads((out / "summary.json").read_text())
    samples = sampler.finish()
    lost = term["errors"].get("lost", 0) + term["errors"].get("timeout", 0)
    closes = {k: v for k, v in term["errors"].items() if k.startswith("close")}
    check(code == 0, f"{name} {io}: the edge exited {code} after SIGTERM")
    # A request a device sends while the edge's 1001 is on its way crosses it on the wire: the edge
    # never reads it (it sends nothing after its Close), the device counts it lost. At most a few
    # per device; anything the edge had read is answered before its 1001 (the engine closes a
    # draining session only when nothing is queued or in flight).
    timeouts = term["errors"].get("timeout", 0)
    check(timeouts == 0 and lost <= a.devices,
          f"{name} {io}: SIGTERM left {lost} requests unanswered ({term['errors']})")
    check(closes.get("close 1001", 0) == a.devices, f"{name} {io}: SIGTERM closed with {closes}")
    row = row_of(name, io, f"{'ACME' if acme else 'the simulated CSE'} killed and restarted, stopped "
                 f"{stopped:g} s, then the edge SIGTERMed with requests in flight, {a.devices} devices at "
                 f"{a.rate}/s", base, during, samples, rss0, fds0, edge)
    errs = during["errors"]
    row["cut"] = (f"sent {during['sent']}: answered {answered} (5103 {errs.get('rsc 5103', 0)}, "
                  f"4008 {errs.get('rsc 4008', 0)}, 4004 {errs.get('rsc 4004', 0)}), unanswered {unanswered}, "
                  f"doubled {doubled}; SIGTERM: {term['sent']} sent, {lost} crossed the 1001, closes {closes}, exit {code}")
    cse.stop()
    return row


def connect_reply(port, target):
    """The status the edge answers `CONNECT target`."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        s.settimeout(5)
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                return "closed"
            head += chunk
        return head.split(b" ", 2)[1].decode()


def scenario_access(io, a, work):
    cse = Cse()
    allowed_port = free_port()
    notify = free_port()
    edge = Edge(io, cse.port, ["--upstream-mode", "multiplex", "--notify-listen", f"127.0.0.1:{notify}",
                               "--notify-allow", "127.0.0.1", "--connect-allow", f"127.0.0.1:{allowed_port}"], work)
    targets = {
        f"127.0.0.1:{edge.admin}": "the admin port",
        "127.0.0.1:22": "loopback ssh",
        "localhost:22": "loopback by name",
        "[::1]:22": "IPv6 loopback",
        "169.254.169.254:80": "link-local metadata",
        "10.0.0.1:443": "a private address",
        f"127.0.0.2:{cse.port}": "the CSE's port on another address",
        f"127.0.0.1:{notify}": "the notify listener",
    }
    refused = {}
    for target, what in targets.items():
        status = connect_reply(edge.port, target)
        refused[target] = status
        check(status == "403", f"access {io}: CONNECT {target} ({what}) answered {status}")
    own = connect_reply(edge.port, f"127.0.0.1:{cse.port}")
    check(own == "200", f"access {io}: CONNECT to the CSE target answered {own}")
    # The notify listener: a source address not on its allow-list.
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", notify))
    s.sendall(handshake_bytes(f"127.0.0.1:{notify}", "X-M2M-Origin: /id-in\r\n"))
    s.settimeout(5)
    try:
        reply = s.recv(4096)
        answer = reply.split(b" ", 2)[1].decode() if reply else "closed"
    except (OSError, IndexError):
        answer = "closed"
    s.close()
    check(answer in ("403", "closed"), f"access {io}: the notify listener answered {answer} to 127.0.0.2")
    edge.stop()
    cse.stop()
    return {"scenario": "access", "io": io,
            "thrown": f"CONNECT to {len(targets)} targets off the allow-list; notify from 127.0.0.2",
            "cut": f"refused {sum(v == '403' for v in refused.values())}/{len(targets)}, CSE target {own}, "
                   f"notify from 127.0.0.2: {answer}",
            "errors": "-", "p99": "-", "rss_before_mb": 0, "rss_peak_mb": 0, "rss_after_mb": 0,
            "fds_before": 0, "fds_after": 0, "lost": "no"}


def make_certs(work):
    """A CA, the edge's certificate for 127.0.0.1, and client certificates for Cdev1 and Cdev2."""
    d = work / "pki"
    d.mkdir(exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=torture CA", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    for name, ext in [("edge", "subjectAltName=IP:127.0.0.1"), ("Cdev1", "extendedKeyUsage=clientAuth"),
                      ("Cdev2", "extendedKeyUsage=clientAuth")]:
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
            "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        (d / f"{name}.ext").write_text(ext + "\n")
        run("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "2", "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))
    return d


def tls_ws(port, pki, cert, origin=None, connect=None):
    """A wss session to the edge with client certificate `cert` (None: without one); with
    `connect`, through `CONNECT connect` first (terminated by the edge). Returns (socket, rest) or
    the reason it was refused."""
    import ssl
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        if connect:
            s.sendall(f"CONNECT {connect} HTTP/1.1\r\nHost: {connect}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    return "closed after CONNECT"
                head += chunk
            if head.split(b" ", 2)[1] != b"200":
                return f"CONNECT {head.split(b' ', 2)[1].decode()}"
        s.sendall(handshake_bytes(f"127.0.0.1:{port}", f"X-M2M-Origin: {origin}\r\n" if origin else ""))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                return "closed in the handshake"
            head += chunk
        status = head.split(b" ", 2)[1].decode()
        if status != "101":
            return f"handshake {status}"
        return s, head.split(b"\r\n\r\n", 1)[1]
    except (ssl.SSLError, OSError) as e:
        return f"TLS refused ({type(e).__name__})"


def ask(conn, p):
    """Send primitive `p` on a session from tls_ws; the rsc of the answer."""
    s, buf = conn
    s.settimeout(10)
    s.sendall(frame(1, p))
    while True:
        op, payload, buf = read_frame(s, buf)
        if op == 1:
            return json.loads(payload).get("rsc")
        if op == 8:
            return f"closed {struct.unpack('!H', payload[:2])[0] if len(payload) >= 2 else ''}"


def scenario_identity(io, a, work):
    pki = make_certs(work)
    cse = Cse()
    edge = Edge(io, cse.port, ["--tls-cert", str(pki / "edge.pem"), "--tls-key", str(pki / "edge.key"),
                               "--client-ca", str(pki / "ca.pem"), "--bind-identity"], work)
    reg = lambda fr, rqi: primitive(1, "/id-in/cse-in", fr, rqi, ty=2,  # noqa: E731
                                    pc={"m2m:ae": {"rn": fr, "api": "Nid", "rr": False, "srv": ["3"]}})
    outcome = {}
    # Cdev1 registers as itself: the control.
    own = tls_ws(edge.port, pki, "Cdev1", origin="Cdev1")
    outcome["Cdev1 registers as itself"] = ask(own, reg("Cdev1", "r1")) if isinstance(own, tuple) else own
    check(outcome["Cdev1 registers as itself"] == 2001, f"identity {io}: the control failed: {outcome}")
    attempts = {
        "no client certificate": lambda: tls_ws(edge.port, pki, None),
        "certificate Cdev2, handshake X-M2M-Origin Cdev1": lambda: tls_ws(edge.port, pki, "Cdev2", origin="Cdev1"),
        "certificate Cdev2, registration fr Cdev1": lambda: ask_or(tls_ws(edge.port, pki, "Cdev2"), reg("Cdev1", "r2")),
        "certificate Cdev2, retrieve fr Cdev1": lambda: ask_or(
            tls_ws(edge.port, pki, "Cdev2"), primitive(2, "/id-in/cse-in/Cdev1", "Cdev1", "r3")),
        "certificate Cdev2 through CONNECT to the CSE target, fr Cdev1": lambda: ask_or(
            tls_ws(edge.port, pki, "Cdev2", connect=f"127.0.0.1:{cse.port}"),
            primitive(2, "/id-in/cse-in/Cdev1", "Cdev1", "r4")),
        "certificate Cdev2, registration fr C (the CSE picks), then fr Cdev1": lambda: register_then(
            tls_ws(edge.port, pki, "Cdev2"), primitive(1, "/id-in/cse-in", "C", "r5a", ty=2,
                                                       pc={"m2m:ae": {"rn": "Canon", "api": "Nid", "rr": False,
                                                                      "srv": ["3"]}}),
            primitive(2, "/id-in/cse-in/Cdev1", "Cdev1", "r5")),
    }
    for what, attempt in attempts.items():
        result = attempt()
        outcome[what] = result if not isinstance(result, tuple) else "accepted"
        refused = not isinstance(result, tuple) and not str(result).startswith(("2000", "2001"))
        check(refused, f"identity {io}: {what}: {result}")
    # The control session still works.
    alive = ask(own, primitive(2, "/id-in/cse-in/Cdev1", "Cdev1", "r6")) if isinstance(own, tuple) else own
    check(alive == 2000, f"identity {io}: the control session after the attempts: {alive}")
    edge.stop()
    cse.stop()
    return {"scenario": "identity", "io": io,
            "thrown": f"{len(attempts)} ways for device Cdev2 (mutual TLS, --bind-identity) to act as Cdev1",
            "cut": "; ".join(f"{k}: {v}" for k, v in outcome.items()),
            "errors": "-", "p99": "-", "rss_before_mb": 0, "rss_peak_mb": 0, "rss_after_mb": 0,
            "fds_before": 0, "fds_after": 0, "lost": "no"}


def ask_or(conn, p):
    return ask(conn, p) if isinstance(conn, tuple) else conn


def register_then(conn, registration, p):
    """Register (any answer), then send `p`: the rsc of `p`'s answer."""
    if not isinstance(conn, tuple):
        return conn
    first = ask(conn, registration)
    return f"{ask(conn, p)} (registration {first})"


def slope(points):
    """Least-squares slope of (t, v) points, per minute."""
    if len(points) < 3:
        return 0.0
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts) or 1
    return sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / den * 60


def scenario_soak(io, a, work):
    minutes = a.soak_minutes
    cse = Cse()
    edge = Edge(io, cse.port, ["--hold-ttl", "1m"], work)
    rss0, fds0 = rss(edge.proc.pid), fds(edge.proc.pid)
    sampler = Sampler(edge.proc.pid)
    out = work / f"soak-{io}"
    subprocess.run([str(LOADGEN), "run", "--quiet", "--target", f"ws://127.0.0.1:{edge.port}/", "--devices",
                          str(a.devices), "--rate", str(a.rate), "--duration", f"{int(minutes * 60)}s", "--out",
                          str(out), "--ramp", "0", "--workers", "1", "--subscribe", "true",
                          "--reconnect-after-requests", "50"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    samples = sampler.finish()
    # The slope over the second half (after the working set is built).
    half = [s for s in samples if s[0] >= samples[0][0] + (samples[-1][0] - samples[0][0]) / 2]
    rss_slope = slope([(t, r / 1e6) for t, r, _ in half])
    fd_slope = slope([(t, f) for t, _, f in half])
    check(summary["errors_total"] == 0, f"soak {io}: errors {summary['errors']}")
    if minutes >= 5:
        # A slope means something over minutes, not over the smoke run's seconds.
        check(fd_slope < 1, f"soak {io}: descriptors grow {fd_slope:.1f}/min")
        check(rss_slope < 0.5, f"soak {io}: RSS grows {rss_slope:.2f} MB/min")
    row = row_of("soak", io, f"{minutes} min at {a.rate}/s, {a.devices} devices reconnecting every 50 "
                 "requests, NOTIFYs on", summary, summary, samples, rss0, fds0, edge)
    row["cut"] = f"RSS slope {rss_slope:+.2f} MB/min, fds slope {fd_slope:+.1f}/min (second half); " \
                 f"{summary['sent']} sent, {summary['events'].get('connections', 0)} connections"
    edge.stop()
    cse.stop()
    return row


def row_of(name, io, thrown, base, during, samples, rss0, fds0, edge):
    peak = max((r for _, r, _ in samples), default=rss0)
    return {
        "scenario": name, "io": io, "thrown": thrown,
        "errors": f"{during['errors_total']} ({during['sent']} sent)",
        "p99": f"{p99_ms(during):.2f} ms vs {p99_ms(base):.2f} quiet",
        "rss_before_mb": round(rss0 / 1e6, 1), "rss_peak_mb": round(peak / 1e6, 1),
        "rss_after_mb": round(rss(edge.proc.pid) / 1e6, 1),
        "fds_before": fds0, "fds_peak": max((f for _, _, f in samples), default=fds0), "fds_after": fds(edge.proc.pid),
        "lost": "no" if during["errors"].get("lost", 0) + during["errors"].get("timeout", 0) == 0 else "yes",
    }


SCENARIOS = {
    "slowloris": scenario_slowloris,
    "floods": scenario_floods,
    "slow-reader": scenario_slow_reader,
    "cse-faults": scenario_cse_faults,
    "acme-faults": lambda io, a, work: scenario_cse_faults(io, a, work, acme=True),
    "access": scenario_access,
    "identity": scenario_identity,
    "soak": scenario_soak,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CI sizes")
    ap.add_argument("--io", default="uring,epoll")
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--devices", type=int, default=None)
    ap.add_argument("--rate", type=int, default=None)
    ap.add_argument("--seconds", type=int, default=None)
    ap.add_argument("--soak-minutes", type=float, default=None)
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    a = ap.parse_args()
    a.devices = a.devices or (20 if a.smoke else 100)
    a.rate = a.rate or (200 if a.smoke else 1000)
    a.seconds = a.seconds or (6 if a.smoke else 20)
    a.soak_minutes = a.soak_minutes if a.soak_minutes is not None else (0.5 if a.smoke else 30)
    a.scale = lambda full, smoke: smoke if a.smoke else full
    for b in (EDGE, LOADGEN):
        if not b.exists():
            raise SystemExit(f"{b} is missing: cargo build --release -p m2m-edge -p m2m-loadgen")
    rows = []
    with tempfile.TemporaryDirectory(prefix="m2m-torture-") as tmp:
        work = pathlib.Path(tmp)
        for name in a.only.split(","):
            for io in a.io.split(","):
                print(f"== {name} on {io}", flush=True)
                rows.append(SCENARIOS[name](io, a, work))
                print("   " + json.dumps(rows[-1], ensure_ascii=False), flush=True)
    print_table(rows, a)
    if FAILURES:
        print(f"\n{len(FAILURES)} checks failed:", *FAILURES, sep="\n  ")
        sys.exit(1)
    print("\nevery check held")


def print_table(rows, a):
    head = ["scenario", "io", "thrown", "result", "device errors", "device p99", "RSS MB before/peak/after",
            "fds before/peak/after", "lost"]
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.uname().nodename} ({os.cpu_count()} CPUs), "
          f"python3 scripts/torture.py {' '.join(sys.argv[1:])}")
    lines = []
    for r in rows:
        lines.append([r["scenario"], r["io"], r["thrown"], r.get("cut", "") + (f"; {r['cpu']}" if "cpu" in r else ""),
                      r["errors"], r["p99"], f"{r['rss_before_mb']}/{r['rss_peak_mb']}/{r['rss_after_mb']}",
                      f"{r['fds_before']}/{r.get('fds_peak', 0)}/{r['fds_after']}", r["lost"]])
    if a.markdown:
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for l in lines:
            print("| " + " | ".join(str(x) for x in l) + " |")
    else:
        for l in lines:
            print("  ".join(str(x) for x in l))


if __name__ == "__main__":
    main()
