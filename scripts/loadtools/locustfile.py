"""The loadgen's scenario for Locust, as close as Locust allows: each user is one device that opens a
oneM2M WebSocket (oneM2M.json, X-M2M-Origin), registers an AE, creates a container and a first
contentInstance, then runs the same operation mix (create_cin 50, retrieve_la 30, update 10,
discovery 10) at a constant per-user throughput. Latency is from the actual send (Locust cannot
correct for coordinated omission). Used by scripts/compare_loadtools.py; loopback targets only.
"""
import itertools
import json
import os
import time

import websocket
from locust import User, constant_throughput, events, task

RATE_PER_USER = float(os.environ.get("LG_RATE_PER_USER", "2"))
_ids = itertools.count()


class Device(User):
    wait_time = constant_throughput(RATE_PER_USER)

    def on_start(self):
        self.aei = f"Clocust{next(_ids):07d}"
        self.seq = 0
        url = self.host
        assert url.startswith("ws://127.") or url.startswith("ws://localhost"), "loopback only"
        self.ws = websocket.create_connection(
            url, subprotocols=["oneM2M.json"], header=[f"X-M2M-Origin: {self.aei}"]
        )
        self.call("register", {"op": 1, "to": "cse-in", "ty": 2,
                               "pc": {"m2m:ae": {"rn": self.aei, "api": "Nlocust", "rr": True,
                                                 "srv": ["3"], "poa": ["ws://default"]}}})
        self.ae = f"cse-in/{self.aei}"
        self.cnt = f"{self.ae}/cnt0"
        self.call("setup", {"op": 1, "to": self.ae, "ty": 3, "pc": {"m2m:cnt": {"rn": "cnt0", "mni": 10}}})
        self.call("setup", {"op": 1, "to": self.cnt, "ty": 4, "pc": {"m2m:cin": {"con": "x" * 64}}})

    def on_stop(self):
        try:
            self.call("deregister", {"op": 4, "to": self.ae})
            self.ws.close()
        except Exception:
            pass

    def call(self, name, primitive):
        self.seq += 1
        primitive.update({"fr": self.aei, "rqi": str(self.seq), "rvi": "3"})
        start = time.perf_counter()
        exc = None
        length = 0
        try:
            self.ws.send(json.dumps(primitive))
            while True:
                rsp = json.loads(self.ws.recv())
                if rsp.get("rqi") == primitive["rqi"]:
                    break
            length = len(json.dumps(rsp))
            if rsp.get("rsc", 0) >= 4000:
                exc = Exception(f"rsc {rsp.get('rsc')}")
        except Exception as e:  # noqa: BLE001 - reported to Locust as a failure
            exc = e
        events.request.fire(request_type="WS", name=name, response_time=(time.perf_counter() - start) * 1000,
                            response_length=length, exception=exc, context={})

    @task(50)
    def create_cin(self):
        self.call("create_cin", {"op": 1, "to": self.cnt, "ty": 4, "pc": {"m2m:cin": {"con": "x" * 64}}})

    @task(30)
    def retrieve_la(self):
        self.call("retrieve_la", {"op": 2, "to": f"{self.cnt}/la"})

    @task(10)
    def update(self):
        self.call("update", {"op": 3, "to": self.cnt, "pc": {"m2m:cnt": {"lbl": [f"seq-{self.seq}"]}}})

    @task(10)
    def discovery(self):
        self.call("discovery", {"op": 2, "to": self.ae, "fc": {"fu": 1, "ty": [3], "lim": 10}})
