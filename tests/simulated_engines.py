"""Many simulated engines in one process, speaking the registration protocol for real.

``python simulated_engines.py PXMAGIC_ENGINE_JSON COUNT`` binds, for each of
COUNT engines, a kernel's five sockets (shell, control, stdin, iopub,
heartbeat) on loopback TCP, registers each with the hub through its own
signed registration_request (all at once), and then answers like a kernel
to what the hub asks of engines: ``kernel_info_request`` (a signed reply and
busy/idle status on iopub), heartbeat pings (echoed), ``shutdown_request``,
and, as ipykernel 7 does, an ``iopub_welcome`` to each new iopub subscriber.
It prints one JSON line once every engine has its answer,
``{"ids": [...], "refused": [...], "seconds": s}``, and runs until stdin closes.

One thread and one poller serve every engine, so a thousand engines need
four light processes, not a thousand kernels.  As in ipykernel, heartbeats
are echoed by libzmq on a thread of their own (one ROUTER socket bound to
every engine's heartbeat port), so pings cost the simulator no Python.
"""
from __future__ import annotations

import json
import os
import resource
import select
import sys
import threading
import time

import zmq
from jupyter_client.session import Session

from pxmagic.protocol import registration_content

SOCKET_TYPES = {"shell": zmq.ROUTER, "control": zmq.ROUTER, "stdin": zmq.ROUTER, "iopub": zmq.XPUB}


class SimulatedEngine:
    def __init__(self, context: zmq.Context, index: int, heartbeat: zmq.Socket):
        self.index = index
        self.sockets = {channel: context.socket(kind) for channel, kind in SOCKET_TYPES.items()}
        self.info = {"transport": "tcp", "ip": "127.0.0.1",
                     "hb_port": heartbeat.bind_to_random_port("tcp://127.0.0.1")}
        for channel, socket in self.sockets.items():
            socket.linger = 0
            self.info[f"{channel}_port"] = socket.bind_to_random_port("tcp://127.0.0.1")
        self.registration = context.socket(zmq.DEALER)
        self.registration.linger = 0
        self.engine_id: int | None = None


def main(engine_file: str, count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    context = zmq.Context()
    context.set(zmq.MAX_SOCKETS, 8 * count + 64)
    info = json.loads(open(engine_file).read())
    session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"],
                      username="simulated-engine")
    heartbeat = context.socket(zmq.ROUTER)
    engines = [SimulatedEngine(context, i, heartbeat) for i in range(count)]
    threading.Thread(target=zmq.proxy, args=(heartbeat, heartbeat), daemon=True).start()
    poller = zmq.Poller()
    handlers = {}
    for engine in engines:
        for channel in ("shell", "control", "iopub"):
            poller.register(engine.sockets[channel], zmq.POLLIN)
            handlers[engine.sockets[channel]] = (engine, channel)
        poller.register(engine.registration, zmq.POLLIN)
        handlers[engine.registration] = (engine, "registration")
    start = time.monotonic()
    for engine in engines:
        content = registration_content(engine.info, None, None, "simulated", os.getpid(), "")
        engine.registration.connect(info["registration"])
        session.send(engine.registration, "registration_request", content)
    answered, ids, refused = 0, [], []
    while True:
        if answered == count:
            print(json.dumps({"ids": ids, "refused": refused, "seconds": time.monotonic() - start}), flush=True)
            answered = -1
        if answered == -1 and select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.read(1):
            return
        for socket, _ in poller.poll(100):
            engine, channel = handlers[socket]
            frames = socket.recv_multipart()
            if channel == "iopub":  # an XPUB's (un)subscriptions: b"\x01<topic>" subscribes
                if frames[0][:1] == b"\x01":
                    session.send(socket, "iopub_welcome", {"subscription": frames[0][1:].decode()})
                continue
            idents, parts = session.feed_identities(frames)
            msg = session.deserialize(parts)
            if channel == "registration":
                poller.unregister(socket)
                socket.close()
                answered += 1
                if msg["content"].get("status") == "ok":
                    engine.engine_id = msg["content"]["engine_id"]
                    ids.append(engine.engine_id)
                else:
                    refused.append(msg["content"].get("evalue"))
            elif msg["msg_type"] == "kernel_info_request":
                iopub = engine.sockets["iopub"]
                session.send(iopub, "status", {"execution_state": "busy"}, parent=msg)
                session.send(socket, "kernel_info_reply", {"status": "ok", "implementation": "simulated"},
                             parent=msg, ident=idents)
                session.send(iopub, "status", {"execution_state": "idle"}, parent=msg)
            elif msg["msg_type"] == "shutdown_request":
                session.send(socket, "shutdown_reply", {"status": "ok", "restart": False},
                             parent=msg, ident=idents)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
