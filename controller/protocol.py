"""The wire protocol: msgpack maps over ZeroMQ, decoded defensively (see docs/protocol.md).

Decoding never raises anything but ``ProtocolError``, which carries a stable machine-readable
``code`` and, where the body got that far, the request's ``seq``. The size cap is checked
before unpacking; msgpack's own container limits bound the work of a hostile body; nothing is
ever unpickled (no ext types are accepted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgpack
from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1
REQUEST_TYPES = ("step", "ping", "reset", "stats", "reload")


class ErrorCode(str, Enum):
    MALFORMED = "malformed"  #: the body is not msgpack
    NOT_A_MAP = "not_a_map"  #: the body is msgpack but not a map
    TOO_LARGE = "too_large"  #: over the size cap (checked before unpacking)
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"  #: NaN or infinity
    OUT_OF_RANGE = "out_of_range"  #: an absurd magnitude
    STALE = "stale"  #: superseded by a newer queued step, or an old or repeated stamp
    UNSUPPORTED_VERSION = "unsupported_version"
    NOT_READY = "not_ready"
    RELOAD_FAILED = "reload_failed"
    INTERNAL = "internal"  #: the daemon failed; the request may be retried


class ProtocolError(Exception):
    def __init__(self, code: ErrorCode, message: str, seq: int | None = None):
        super().__init__(message)
        self.code, self.message, self.seq = code, message, seq


class InputLimits(BaseModel):
    """What the daemon accepts; anything beyond is an error reply, never a crash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_message_bytes: int = Field(65536, gt=0, description="size cap of one body [bytes]")
    max_abs_position_m: float = Field(1e6, gt=0)
    max_abs_speed_mps: float = Field(150.0, gt=0)
    max_abs_steer_rad: float = Field(math.pi / 2, gt=0)
    max_abs_yaw_rad: float = Field(1e3, gt=0, description="yaw may be unwrapped, within reason")
    max_abs_yaw_rate_radps: float = Field(20.0, gt=0)
    max_abs_slip_rad: float = Field(math.pi / 2, gt=0)
    max_abs_stamp_s: float = Field(1e10, gt=0)


REQUIRED_STATE = ("x", "y", "yaw", "v", "steer")
OPTIONAL_STATE = ("yaw_rate", "slip")


def _bounds(limits: InputLimits) -> dict[str, float]:
    return {
        "x": limits.max_abs_position_m,
        "y": limits.max_abs_position_m,
        "yaw": limits.max_abs_yaw_rad,
        "v": limits.max_abs_speed_mps,
        "steer": limits.max_abs_steer_rad,
        "yaw_rate": limits.max_abs_yaw_rate_radps,
        "slip": limits.max_abs_slip_rad,
    }


@dataclass(frozen=True)
class Request:
    type: str
    seq: int | None
    body: dict[str, Any]


@dataclass(frozen=True)
class StepRequest(Request):
    stamp: float = 0.0
    state: dict[str, float] | None = None  #: x, y, yaw, v, steer, and yaw_rate / slip if sent
    want_plan: bool = False


def _number(value: Any, name: str, seq: int | None) -> float:
    # bool is an int subclass in Python; on the wire it is not a number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(
            ErrorCode.WRONG_TYPE, f"{name} must be a number, got {type(value).__name__}", seq
        )
    value = float(value)
    if not math.isfinite(value):
        raise ProtocolError(ErrorCode.NOT_FINITE, f"{name} is not finite ({value})", seq)
    return value


def _seq(body: dict[Any, Any]) -> int | None:
    seq = body.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def unpack(body: bytes, limits: InputLimits) -> dict[str, Any]:
    """The body as a map, or ProtocolError (too_large, malformed, not_a_map)."""
    if len(body) > limits.max_message_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"body of {len(body)} bytes exceeds the cap of {limits.max_message_bytes}"
        )
    cap = limits.max_message_bytes
    try:
        obj = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=False,
            max_bin_len=cap,
            max_str_len=cap,
            max_array_len=cap,
            max_map_len=cap,
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises several types; all mean the same to a client
        raise ProtocolError(ErrorCode.MALFORMED, f"not a msgpack body ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.NOT_A_MAP, f"body must be a map, got {type(obj).__name__}")
    return obj


def decode_request(body: bytes, limits: InputLimits) -> Request:
    """Decode and validate one request body; ProtocolError on anything wrong."""
    obj = unpack(body, limits)
    seq = _seq(obj)
    if "seq" in obj and obj["seq"] is not None and seq is None:
        raise ProtocolError(ErrorCode.WRONG_TYPE, "seq must be an integer", None)
    version = obj.get("version", PROTOCOL_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError(ErrorCode.WRONG_TYPE, "version must be an integer", seq)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version} is not supported; this daemon speaks {PROTOCOL_VERSION}",
            seq,
        )
    kind = obj.get("type")
    if kind is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "missing field 'type'", seq)
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.WRONG_TYPE, "type must be a string", seq)
    if kind not in REQUEST_TYPES:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown type {kind[:40]!r}; known: {', '.join(REQUEST_TYPES)}", seq
        )
    if kind != "step":
        return Request(kind, seq, obj)
    return _decode_step(obj, seq, limits)


def _decode_step(obj: dict[str, Any], seq: int | None, limits: InputLimits) -> StepRequest:
    if seq is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "step needs an integer 'seq'", None)
    if "stamp" not in obj:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "missing field 'stamp'", seq)
    stamp = _number(obj["stamp"], "stamp", seq)
    if abs(stamp) > limits.max_abs_stamp_s:
        raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"stamp {stamp} is out of range", seq)
    raw = obj.get("state")
    if raw is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "missing field 'state'", seq)
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.WRONG_TYPE, "state must be a map", seq)
    bounds = _bounds(limits)
    state: dict[str, float] = {}
    for name in REQUIRED_STATE + OPTIONAL_STATE:
        value = raw.get(name)
        if value is None:
            if name in REQUIRED_STATE:
                raise ProtocolError(ErrorCode.MISSING_FIELD, f"missing field 'state.{name}'", seq)
            continue
        v = _number(value, f"state.{name}", seq)
        if abs(v) > bounds[name]:
            raise ProtocolError(
                ErrorCode.OUT_OF_RANGE, f"state.{name} = {v} is beyond +-{bounds[name]}", seq
            )
        state[name] = v
    want_plan = obj.get("want_plan", False)
    return StepRequest("step", seq, obj, stamp=stamp, state=state, want_plan=want_plan is True)


# -- replies ------------------------------------------------------------------------------------
def encode(reply: dict[str, Any]) -> bytes:
    return msgpack.packb(reply, use_bin_type=True)


def action_reply(
    seq: int,
    status: str,
    steer_rate: float,
    accel: float,
    solve_ms: float,
    model: str,
    plan: list[list[float]] | None = None,
    cost: float | None = None,
) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "type": "action",
        "version": PROTOCOL_VERSION,
        "seq": seq,
        "status": status,
        "action": {"steer_rate": float(steer_rate), "accel": float(accel)},
        "solve_ms": float(solve_ms),
        "model": model,
    }
    if plan is not None:
        reply["plan"] = plan
    if cost is not None and math.isfinite(cost):
        reply["cost"] = float(cost)
    return reply


def error_reply(code: ErrorCode, message: str, seq: int | None) -> dict[str, Any]:
    return {"type": "error", "version": PROTOCOL_VERSION, "seq": seq, "code": code.value, "message": message}


def pong_reply(seq: int | None, model: str) -> dict[str, Any]:
    return {"type": "pong", "version": PROTOCOL_VERSION, "seq": seq, "model": model}


def ack_reply(seq: int | None, of: str, **extra: Any) -> dict[str, Any]:
    return {"type": "ack", "version": PROTOCOL_VERSION, "seq": seq, "of": of, **extra}


def stats_reply(seq: int | None, stats: dict[str, Any]) -> dict[str, Any]:
    return {"type": "stats", "version": PROTOCOL_VERSION, "seq": seq, **stats}
