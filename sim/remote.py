"""The simulator's side of the wire: ``controller.protocol_client`` plus the episode's ``Reply``.

A step that gets no reply in time is reported as status "timeout" (the client keeps its one
connection, which ZeroMQ redials); the episode decides what that means (lockstep: resend;
real time: hold the previous action).
"""

from __future__ import annotations

import time

import numpy as np

from controller.protocol_client import ControllerClient as _ProtocolClient
from controller.protocol_client import DaemonUnavailable
from sim.episode import Reply

__all__ = ["ControllerClient", "DaemonUnavailable"]


class ControllerClient(_ProtocolClient):
    def step(self, seq: int, stamp: float, state: dict[str, float], timeout_s: float | None = None) -> Reply:  # type: ignore[override]
        started = time.perf_counter()
        try:
            reply = super().step(seq, stamp, state, timeout_s=timeout_s)
        except DaemonUnavailable:
            return Reply(None, "timeout", (time.perf_counter() - started) * 1e3)
        rtt = (time.perf_counter() - started) * 1e3
        if reply.get("type") != "action":
            return Reply(None, "error", rtt)
        a = reply["action"]
        return Reply(np.array([a["steer_rate"], a["accel"]]), reply["status"], rtt, float(reply.get("solve_ms", 0.0)))
