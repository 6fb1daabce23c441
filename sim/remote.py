"""The daemon's client over the wire contract (docs/protocol.md), for the simulator and tests.

A DEALER socket (an empty delimiter frame, then the body, like REQ). A request that gets no
reply within its timeout closes the socket and opens a fresh one (the "lazy pirate" pattern
from the ZeroMQ guide), so a restarted daemon is picked up without restarting the client;
replies to abandoned requests are told apart by ``seq`` and dropped.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgpack
import numpy as np
import zmq

from sim.episode import Reply


class DaemonUnavailable(RuntimeError):
    pass


class ControllerClient:
    def __init__(
        self,
        endpoint: str,
        timeout_s: float = 1.0,
        curve: tuple[str, str] | None = None,
        context: zmq.Context | None = None,
    ):
        """``curve``: (client secret key file, server public key file) for a CURVE daemon."""
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.curve = curve
        self.context = context or zmq.Context.instance()
        self._control_seq = itertools.count(1_000_000_000)
        self.reconnects = 0
        self.socket: zmq.Socket | None = None
        self._open()

    def _open(self) -> None:
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            from controller.security import configure_curve_client

            configure_curve_client(self.socket, *self.curve)
        self.socket.connect(self.endpoint)

    def reconnect(self) -> None:
        assert self.socket is not None
        self.socket.close(linger=0)
        self.reconnects += 1
        self._open()

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def __enter__(self) -> "ControllerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw request/reply ---------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        assert self.socket is not None
        self.socket.send_multipart([b"", msgpack.packb(message, use_bin_type=True)])

    def send_raw(self, body: bytes) -> None:
        assert self.socket is not None
        self.socket.send_multipart([b"", body])

    def receive(self, seq: int | None, timeout_s: float) -> dict[str, Any] | None:
        """The reply with this ``seq`` (others are dropped), or None after the timeout."""
        assert self.socket is not None
        deadline = time.perf_counter() + timeout_s
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not self.socket.poll(max(1, int(left * 1000))):
                return None
            body = self.socket.recv_multipart()[-1]
            reply = msgpack.unpackb(body, raw=False)
            if seq is None or reply.get("seq") == seq:
                return reply

    def request(self, message: dict[str, Any], timeout_s: float | None = None, retries: int = 0) -> dict[str, Any]:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        for attempt in range(retries + 1):
            self.send(message)
            reply = self.receive(message.get("seq"), timeout_s)
            if reply is not None:
                return reply
            self.reconnect()
        raise DaemonUnavailable(f"no reply from {self.endpoint} within {timeout_s} s ({retries + 1} tries)")

    # -- the requests ------------------------------------------------------------------------------
    def ping(self, timeout_s: float | None = None, retries: int = 0) -> dict[str, Any]:
        return self.request({"type": "ping", "seq": next(self._control_seq)}, timeout_s, retries)

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """Ping until the daemon answers (it may still be starting or warming up)."""
        deadline = time.perf_counter() + timeout_s
        while True:
            try:
                return self.ping(timeout_s=min(1.0, max(0.05, deadline - time.perf_counter())))
            except DaemonUnavailable:
                if time.perf_counter() >= deadline:
                    raise

    def reset(self) -> None:
        self.request({"type": "reset", "seq": next(self._control_seq)}, retries=2)

    def stats(self) -> dict[str, Any]:
        return self.request({"type": "stats", "seq": next(self._control_seq)})

    def reload(self, path: str | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "reload", "seq": next(self._control_seq)}
        if path is not None:
            msg["path"] = path
        return self.request(msg)

    def step(self, seq: int, stamp: float, state: dict[str, float], timeout_s: float) -> Reply:
        """One control step; a timeout reconnects and reports status "timeout"."""
        started = time.perf_counter()
        self.send({"type": "step", "seq": seq, "stamp": stamp, "state": state})
        reply = self.receive(seq, timeout_s)
        rtt = (time.perf_counter() - started) * 1e3
        if reply is None:
            self.reconnect()
            return Reply(None, "timeout", rtt)
        if reply.get("type") != "action":
            return Reply(None, "error", rtt)
        a = reply["action"]
        return Reply(np.array([a["steer_rate"], a["accel"]]), reply["status"], rtt, float(reply.get("solve_ms", 0.0)))
