"""A CSE delivering a NOTIFY to the edge's notify listener over wss (Python websockets + ssl).

Usage: notify_tls_cse.py URL CA CERT|- KEY|- TARGET EXPECT
Connects with X-M2M-Origin /id-in (and the client certificate unless CERT is -), sends a NOTIFY
whose `to` is TARGET and waits for the answer; EXPECT is the rsc it must get, or `refused` when the
TLS handshake must fail. Prints `ok` and exits 0 when it got what it expected.
"""
import asyncio
import json
import ssl
import sys

import websockets

url, ca, cert, key, target, expect = sys.argv[1:7]


async def main():
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    if cert != "-":
        ctx.load_cert_chain(cert, key)
    try:
        ws = await websockets.connect(url, ssl=ctx, subprotocols=["oneM2M.json"], open_timeout=10,
                                      additional_headers={"X-M2M-Origin": "/id-in"})
        await ws.send(json.dumps({"op": 5, "to": target, "fr": "/id-in", "rqi": "tls-n1", "rvi": "3",
                                  "pc": {"m2m:sgn": {"sur": "/id-in/sub", "nev": {"rep": {"m2m:cin": {"con": "tls"}}, "net": 3}}}}))
        rsp = json.loads(await asyncio.wait_for(ws.recv(), 10))
    except Exception as e:  # the edge refused the TLS client
        if expect == "refused":
            print("ok refused:", type(e).__name__)
            return 0
        print("unexpected failure:", repr(e))
        return 1
    if expect == "refused":
        print("a CSE without an accepted client certificate got through:", rsp)
        return 1
    if str(rsp.get("rsc")) != expect or rsp.get("rqi") != "tls-n1":
        print("unexpected answer:", rsp)
        return 1
    await ws.close()
    print("ok", expect)
    return 0


sys.exit(asyncio.run(main()))
