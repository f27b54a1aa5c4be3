"""A device on wss with a client certificate (Python websockets + ssl), through the edge.

Usage: edge_tls_device.py URL CA CERT KEY FR EXPECT [ORIGIN]
Registers an AE with `fr`; EXPECT is the rsc the registration must get, `refused` when the TLS
handshake must fail, or `403` when the WebSocket handshake must be refused (ORIGIN: the
X-M2M-Origin header to send). Prints `ok` and exits 0 when it got what it expected.
"""
import asyncio
import json
import ssl
import sys

import websockets

url, ca, cert, key, fr, expect = sys.argv[1:7]
origin = sys.argv[7] if len(sys.argv) > 7 else None


async def main():
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    ctx.load_cert_chain(cert, key)
    try:
        headers = {"X-M2M-Origin": origin} if origin else None
        ws = await websockets.connect(url, ssl=ctx, subprotocols=["oneM2M.json"], open_timeout=10,
                                      additional_headers=headers)
    except websockets.exceptions.InvalidStatus as e:
        if expect == str(e.response.status_code):
            print("ok handshake refused with", expect)
            return 0
        print("unexpected handshake answer:", repr(e))
        return 1
    except Exception as e:  # the edge refused the certificate
        if expect == "refused":
            print("ok refused:", type(e).__name__)
            return 0
        print("unexpected refusal:", repr(e))
        return 1
    if expect == "403":
        print("the edge accepted a handshake whose X-M2M-Origin is another device's")
        return 1
    if expect == "refused":
        # TLS 1.3 reports a rejected client certificate on the first read.
        try:
            await ws.send(json.dumps({"op": 2, "to": "cse-in", "fr": fr, "rqi": "x", "rvi": "3"}))
            await asyncio.wait_for(ws.recv(), 5)
        except Exception as e:
            print("ok refused:", type(e).__name__)
            return 0
        print("accepted a certificate from an unknown CA")
        return 1
    reg = {"op": 1, "to": "cse-in", "fr": fr, "rqi": "t1", "rvi": "3", "ty": 2,
           "pc": {"m2m:ae": {"rn": fr, "api": "Ntls", "rr": True, "srv": ["3"]}}}
    await ws.send(json.dumps(reg))
    rsp = json.loads(await asyncio.wait_for(ws.recv(), 15))
    if str(rsp.get("rsc")) != expect:
        print("unexpected response:", rsp)
        return 1
    if rsp.get("rsc") == 2001:
        await ws.send(json.dumps({"op": 4, "to": f"cse-in/{fr}", "fr": fr, "rqi": "t2", "rvi": "3"}))
        rsp = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if rsp.get("rsc") != 2002:
            print("deregistration failed:", rsp)
            return 1
    await ws.close()
    print("ok", expect)
    return 0


sys.exit(asyncio.run(main()))
