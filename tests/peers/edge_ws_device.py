"""A device on plain ws with Python websockets through the edge: register, read back, deregister.
Usage: edge_ws_device.py URL AE_ID; prints `ok` on success."""
import asyncio
import json
import sys

import websockets

url, ae = sys.argv[1:3]


async def main():
    async with websockets.connect(url, subprotocols=["oneM2M.R2.0.json", "oneM2M.json"]) as ws:
        assert ws.subprotocol == "oneM2M.R2.0.json", ws.subprotocol

        async def call(prim):
            await ws.send(json.dumps(prim))
            return json.loads(await asyncio.wait_for(ws.recv(), 15))

        r = await call({"op": 1, "to": "cse-in", "fr": ae, "rqi": "p1", "rvi": "3", "ty": 2,
                        "pc": {"m2m:ae": {"rn": ae, "api": "Npython", "rr": True, "srv": ["3"]}}})
        assert r["rsc"] == 2001 and r["rqi"] == "p1", r
        r = await call({"op": 2, "to": f"cse-in/{ae}", "fr": ae, "rqi": "p2", "rvi": "3"})
        assert r["rsc"] == 2000 and r["pc"]["m2m:ae"]["aei"] == ae, r
        r = await call({"op": 4, "to": f"cse-in/{ae}", "fr": ae, "rqi": "p3", "rvi": "3"})
        assert r["rsc"] == 2002, r
        ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    print("ok", ext)


asyncio.run(main())
