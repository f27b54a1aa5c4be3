"""Checks an `m2m-edge echo` server with the Python `websockets` library (a strict RFC 6455 / 7692
client nobody here wrote) and with raw sockets for what a library will not send.

Usage: ws_echo_suite.py HOST:PORT [--tls CA_PEM]. Prints one line per check and exits non-zero on the
first failure.
"""
import asyncio
import base64
import os
import socket
import ssl
import struct
import sys
import time

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

HOSTPORT = sys.argv[1]
HOST, PORT = HOSTPORT.rsplit(":", 1)
PORT = int(PORT)
CA = sys.argv[sys.argv.index("--tls") + 1] if "--tls" in sys.argv else None
SCHEME = "wss" if CA else "ws"
URL = f"{SCHEME}://{HOSTPORT}/"


def ssl_ctx():
    if not CA:
        return None
    ctx = ssl.create_default_context(cafile=CA)
    ctx.check_hostname = False
    return ctx


def ok(name):
    print(f"ok   {name}", flush=True)


def check(cond, name, detail=""):
    if not cond:
        print(f"FAIL {name} {detail}", flush=True)
        sys.exit(1)
    ok(name)


async def connect(**kw):
    kw.setdefault("subprotocols", ["oneM2M.json"])
    return await websockets.connect(URL, ssl=ssl_ctx(), max_size=4 << 20, **kw)


async def library_checks():
    async with await connect() as ws:
        check(ws.subprotocol == "oneM2M.json", "subprotocol oneM2M.json", ws.subprotocol)
        prim = '{"op":2,"to":"cse-in","fr":"Cx","rqi":"1","rvi":"3"}'
        await ws.send(prim)
        check(await ws.recv() == prim, "text echo")
        await ws.send(b"")
        check(await ws.recv() == b"", "empty binary echo")
        big = os.urandom(256 * 1024)
        await ws.send(big)
        check(await ws.recv() == big, "256 KiB binary echo")
        await ws.send(["κό", "σμε", " fragments"])
        check(await ws.recv() == "κόσμε fragments", "fragmented text reassembled")
        pong = await ws.ping(b"hb")
        await asyncio.wait_for(pong, 5)
        ok("ping answered with pong")
    async with await connect(subprotocols=["oneM2M.cbor", "oneM2M.json"]) as ws:
        check(ws.subprotocol == "oneM2M.cbor", "client order honoured")
    async with await connect(subprotocols=["onem2m.R2.0.json"]) as ws:
        check(ws.subprotocol == "onem2m.R2.0.json", "R2.0 name answered in the client's spelling")
    async with await connect(subprotocols=["oneM2M-pro-v1.0"]) as ws:
        check(ws.subprotocol == "oneM2M-pro-v1.0", "draft name accepted")
    try:
        await connect(subprotocols=["mqtt"])
        check(False, "unknown subprotocol rejected")
    except InvalidStatus as e:
        body = e.response.body.decode() if e.response.body else ""
        check(e.response.status_code == 400 and "oneM2M.json" in body, "unknown subprotocol -> 400 listing what is supported", body)
    async with await connect(compression="deflate") as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        check("permessage-deflate" in ext, "permessage-deflate negotiated", ext)
        text = '{"m2m:cin":{"con":"' + "abc" * 20000 + '"}}'
        await ws.send(text)
        check(await ws.recv() == text, "compressed message echo")
        await ws.send([b"abc" * 1000, b"def" * 1000])
        check(await ws.recv() == b"abc" * 1000 + b"def" * 1000, "compressed fragmented echo")
    ws = await connect()
    await ws.close(code=4001, reason="bye")
    check(ws.close_code == 4001, "close code echoed", ws.close_code)

    async def one(i):
        async with await connect() as c:
            for j in range(3):
                msg = f"conn {i} msg {j}"
                await c.send(msg)
                assert await c.recv() == msg
    await asyncio.gather(*(one(i) for i in range(300)))
    ok("300 concurrent connections x 3 messages")


# ---------------------------------------------------------------------------------------------
# Raw sockets: what a conforming library never sends.

def raw_socket():
    s = socket.create_connection((HOST, PORT), timeout=10)
    if CA:
        s = ssl_ctx().wrap_socket(s, server_hostname="localhost")
    return s


def handshake_bytes(extra="", host=True, version="13", protocol="oneM2M.json"):
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET / HTTP/1.1"]
    if host:
        lines.append(f"Host: {HOSTPORT}")
    lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}"]
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode(), rest


def frame(opcode, payload, fin=True, mask=True, rsv=0):
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(s, buf=b""):
    while len(buf) < 2:
        buf += s.recv(4096)
    n = buf[1] & 0x7F
    off = 2
    if n == 126:
        while len(buf) < 4:
            buf += s.recv(4096)
        n = struct.unpack("!H", buf[2:4])[0]
        off = 4
    elif n == 127:
        while len(buf) < 10:
            buf += s.recv(4096)
        n = struct.unpack("!Q", buf[2:10])[0]
        off = 10
    while len(buf) < off + n:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf[0] & 0x0F, buf[off:off + n], buf[off + n:]


def open_raw(send_slowly=False):
    s = raw_socket()
    hs = handshake_bytes()
    if send_slowly:
        for b in hs:
            s.sendall(bytes([b]))
            time.sleep(0.002)
    else:
        s.sendall(hs)
    head, rest = read_head(s)
    assert head.startswith("HTTP/1.1 101"), head
    return s, rest


def expect_close(s, rest, code, name):
    op, payload, _ = read_frame(s, rest)
    got = struct.unpack("!H", payload[:2])[0] if op == 8 and len(payload) >= 2 else None
    check(op == 8 and got == code, name, f"opcode {op} code {got}")


def raw_checks():
    for name, hs, status, header in [
        ("missing Host -> 400", handshake_bytes(host=False), "400", None),
        ("version 8 -> 426 with Sec-WebSocket-Version: 13", handshake_bytes(version="8"), "426", "sec-websocket-version: 13"),
        ("missing version -> 400", handshake_bytes(version=None), "400", None),
        ("no subprotocol -> 400", handshake_bytes(protocol=None), "400", None),
    ]:
        s = raw_socket()
        s.sendall(hs)
        head, _ = read_head(s)
        ok_status = head.startswith(f"HTTP/1.1 {status}")
        ok_header = header is None or header in head.lower()
        check(ok_status and ok_header, name, head.splitlines()[0] if head else "(no answer)")
        s.close()

    s, rest = open_raw(send_slowly=True)
    msg = b'{"op":2,"rqi":"slow"}'
    for b in frame(1, msg):
        s.sendall(bytes([b]))
        time.sleep(0.002)
    op, payload, rest = read_frame(s, rest)
    check(op == 1 and payload == msg, "byte-by-byte handshake and frame")
    s.close()

    cases = [
        ("invalid UTF-8 text -> 1007", frame(1, b"\xce\xba\xff"), 1007),
        ("reserved opcode -> 1002", frame(3, b"x"), 1002),
        ("unmasked client frame -> 1002", frame(1, b"x", mask=False), 1002),
        ("RSV1 without deflate -> 1002", frame(1, b"x", rsv=0x40), 1002),
        ("fragmented ping -> 1002", frame(9, b"x", fin=False), 1002),
        ("one-byte close payload -> 1002", frame(8, b"\x03"), 1002),
        ("continuation without start -> 1002", frame(0, b"x"), 1002),
        # Only the header: the limit is enforced from the header, before the payload is awaited
        # (and unread payload would make the server's close a reset that can eat the close frame).
        ("2 MiB frame over the 1 MiB limit -> 1009 from its header", frame(2, b"\0" * (2 << 20))[:14], 1009),
        # The whole 2 MiB: the server answers 1009 while the payload is still arriving; its lingering
        # close (FIN, then read and drop) keeps the close frame from being destroyed by a reset.
        ("2 MiB frame sent in full -> 1009 still arrives", frame(2, b"\0" * (2 << 20)), 1009),
    ]
    for name, data, code in cases:
        s, rest = open_raw()
        try:
            s.sendall(data)
        except OSError:
            pass
        expect_close(s, rest, code, name)
        s.close()


async def main():
    await library_checks()
    raw_checks()
    print("all checks passed")


asyncio.run(main())
