"""A client of the daemon's wire contract (docs/protocol.md): a DEALER socket and plain dicts.

A request that gets no reply within its timeout raises ``DaemonUnavailable`` and leaves the
socket as it is: a DEALER never wedges the way a REQ does after a lost reply, ZeroMQ
reconnects a dropped connection by itself (a restarted daemon is picked up; heartbeats find
a connection that died silently), and replies to abandoned requests are told apart by
``seq`` and dropped. The socket is not reopened (the "lazy pirate" of the ZeroMQ guide):
the daemon serves each car as a session keyed by the socket's identity, and two connections
with one identity race at the daemon (a request still queued on the old one arrives under a
temporary identity and would take the car's place). ``reconnect()`` reopens on request.

A step is never resent on a timeout: its state is old by then, and the caller should send a
fresh one (holding its previous action meanwhile); a caller that resends it anyway (the
simulator's lockstep mode) gets the daemon's reply to the first copy. The client picks its
identity at construction (``identity=``, random by default) and gives it to every socket it
opens, so even a reopened socket keeps the car's session (its warm start, and its place when
the daemon takes one car only). ``bye()`` ends the session; ``close()`` says it for a client
that stepped. Control requests (ping, reset, stats, reload) may be retried; their ``seq``
numbers come from a range of their own (from 2**40) so that they never collide with the
caller's step numbers.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import msgpack
import zmq

from controller.protocol import PROTOCOL_VERSION

#: Replies are small; a bound keeps a confused peer from making the client allocate much.
MAX_REPLY_BYTES = 16 << 20
CONTROL_SEQ_START = 1 << 40


class DaemonUnavailable(RuntimeError):
    """No reply within the timeout (the socket has been reopened)."""


class ControllerClient:
    def __init__(
        self,
        endpoint: str,
        timeout_s: float = 1.0,
        curve: tuple[str, str] | None = None,
        context: zmq.Context | None = None,
        identity: bytes | None = None,
    ):
        """``curve``: (client secret key file, daemon public key file) for a CURVE daemon.
        ``identity``: the car's ROUTER identity (1-255 bytes, not starting with a zero byte);
        random by default."""
        if identity is not None and not (0 < len(identity) <= 255 and identity[0] != 0):
            raise ValueError("identity must be 1-255 bytes and must not start with a zero byte")
        self.identity = identity or b"car-" + os.urandom(8).hex().encode()
        self.stepped = False  #: a step was sent: the daemon holds a session for this client
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.curve = curve
        self.context = context or zmq.Context.instance()
        self.reconnects = 0
        self._control_seq = itertools.count(CONTROL_SEQ_START)
        self.socket: zmq.Socket | None = None
        self._open()

    # -- connection ---------------------------------------------------------------------------
    def _open(self) -> None:
        socket = self.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
        socket.setsockopt(zmq.ROUTING_ID, self.identity)
        # A connection that died without a FIN (a cable, a suspended host) is found and
        # redialled within a few seconds, as a closed one is at once.
        socket.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
        if self.curve is not None:
            from controller.security import configure_curve_client

            configure_curve_client(socket, *self.curve)
        socket.connect(self.endpoint)
        self.socket = socket

    def reconnect(self) -> None:
        """Drop the socket, with anything queued on it, and connect a fresh one (same identity)."""
        self._drop_socket()
        self.reconnects += 1
        self._open()

    def close(self) -> None:
        """Say bye if this client stepped (its session's place is free at once), then close."""
        if self.socket is not None and self.stepped:
            try:
                self.send({"type": "bye", "seq": next(self._control_seq), "version": PROTOCOL_VERSION})
                self.socket.close(linger=200)  # the bye gets 0.2 s to leave; close never waits
                self.socket = None
                self.stepped = False
            except zmq.ZMQError:
                pass
        self._drop_socket()

    def _drop_socket(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def __enter__(self) -> ControllerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw request/reply --------------------------------------------------------------------
    def send_raw(self, body: bytes) -> None:
        """One body after the empty delimiter frame, exactly as a REQ socket would send it."""
        if self.socket is None:
            self._open()
        assert self.socket is not None
        self.socket.send_multipart([b"", body])

    def send(self, message: dict[str, Any]) -> None:
        if message.get("type") in ("step", "reset"):
            self.stepped = True
        self.send_raw(msgpack.packb(message, use_bin_type=True))

    def receive(self, seq: int | None, timeout_s: float) -> dict[str, Any] | None:
        """The next reply with this ``seq`` (any reply if None), or None after the timeout.

        Replies to other requests and undecodable bodies are dropped.
        """
        assert self.socket is not None
        deadline = time.perf_counter() + timeout_s
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not self.socket.poll(max(1, int(left * 1000))):
                return None
            try:
                reply = msgpack.unpackb(self.socket.recv_multipart()[-1], raw=False)
            except (ValueError, TypeError):  # the daemon never sends this; not worth a crash
                continue
            if isinstance(reply, dict) and (seq is None or reply.get("seq") == seq):
                return reply

    def request(
        self, message: dict[str, Any], timeout_s: float | None = None, retries: int = 0
    ) -> dict[str, Any]:
        """Send ``message`` and wait for its reply; resend up to ``retries`` times."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        for _ in range(retries + 1):
            self.send(message)
            reply = self.receive(message.get("seq"), timeout_s)
            if reply is not None:
                return reply
        raise DaemonUnavailable(
            f"no reply from {self.endpoint} within {timeout_s} s ({retries + 1} tries)"
        )

    def _control(
        self, kind: str, retries: int, timeout_s: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        seq = next(self._control_seq)
        message = {"type": kind, "seq": seq, "version": PROTOCOL_VERSION, **fields}
        return self.request(message, timeout_s, retries)

    # -- the requests ---------------------------------------------------------------------------
    def step(
        self,
        seq: int,
        stamp: float,
        state: dict[str, float],
        want_plan: bool = False,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """One control step: the action reply, or an error reply (``type`` tells which).

        DaemonUnavailable after ``timeout_s`` without a reply; the step is not resent.
        """
        message: dict[str, Any] = {"type": "step", "seq": seq, "stamp": stamp, "state": state}
        if want_plan:
            message["want_plan"] = True
        return self.request(message, timeout_s, retries=0)

    def ping(self, timeout_s: float | None = None, retries: int = 0) -> dict[str, Any]:
        return self._control("ping", retries, timeout_s)

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """Ping until the daemon answers (it may still be starting or warming up)."""
        deadline = time.perf_counter() + timeout_s
        while True:
            try:
                return self.ping(timeout_s=min(1.0, max(0.05, deadline - time.perf_counter())))
            except DaemonUnavailable:
                if time.perf_counter() >= deadline:
                    raise

    def reset(self, retries: int = 2, session: str | None = None) -> dict[str, Any]:
        """Start a new episode of this car's session (the daemon drops its warm start and
        stamps), opening the session; ``session``: another car's (admin endpoint only)."""
        return self._control("reset", retries, **({"session": session} if session is not None else {}))

    def bye(self) -> dict[str, Any]:
        """End this car's session: the daemon frees its place at once."""
        reply = self._control("bye", 0)
        self.stepped = False
        return reply

    def stats(self, retries: int = 0) -> dict[str, Any]:
        return self._control("stats", retries)

    def reload(self, path: str | None = None) -> dict[str, Any]:
        """Ask for a model reload (from ``path``, else the configured source); not retried."""
        return self._control("reload", 0, **({"path": path} if path is not None else {}))
