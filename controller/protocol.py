"""The wire protocol: msgpack maps over ZeroMQ, decoded defensively (see docs/protocol.md).

Decoding never raises anything but ``ProtocolError``, which carries a stable machine-readable
``code`` and, where the body got that far, the request's ``seq``. The order of checks is part
of the contract: size cap (before unpacking), msgpack, map, nesting depth, ``seq``,
``version``, ``type``, then the fields of that type. msgpack's own container limits bound the
work a hostile body can cause, and nothing is ever unpickled (ext types are refused).

Requests are pydantic models validated in strict mode (ints are accepted for float fields,
booleans are not numbers); they are the schema and the validator of record. Magnitude bounds
come from ``InputLimits`` at run time, so they are checked after validation.

The daemon decodes with ``Decoder``: a step body made only of the fields this version knows,
each of the exact wire type and within bounds, is taken on a plain-Python fast path straight
to a ``Step``; every other body goes through ``decode_request``. The fast path only ever
accepts (anything it is unsure of goes the long way, which gives the error), and a property
test holds it to accept exactly what the validator accepts, with the same values. It exists
because on a VM code run once every 20 ms costs 10-30 times what it costs in a tight loop
(cold caches), and the less code a step touches the less it pays: decoding a step took
0.19 ms that way through the validator and takes 0.08 ms on the fast path (3.5 against 11 us
in a tight loop).

Replies are built as plain dicts by the ``*_reply`` functions (the hot path); the reply
models describe the same maps for clients and tests, and ``encode`` accepts either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from functools import lru_cache
from typing import Any, Literal, NamedTuple

import msgpack
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from controller.translog.schema import STATE_FIELDS  # the one list of field names and order
from vehicle_models.layout import State

PROTOCOL_VERSION = 1
REQUEST_TYPES = ("step", "ping", "reset", "stats", "reload", "bye")
STATUSES = ("ok", "fallback", "stop")


class ErrorCode(str, Enum):
    MALFORMED = "malformed"  #: not msgpack, or nested deeper than the limit
    NOT_A_MAP = "not_a_map"  #: msgpack, but not a map
    TOO_LARGE = "too_large"  #: over the size cap (checked before unpacking)
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"  #: NaN or infinity
    OUT_OF_RANGE = "out_of_range"  #: an absurd magnitude
    STALE = "stale"  #: superseded by a newer queued step, or an old or repeated stamp
    UNSUPPORTED_VERSION = "unsupported_version"
    NOT_READY = "not_ready"  #: the daemon is still starting
    RELOAD_FAILED = "reload_failed"  #: a reload could not be started
    BUSY = "busy"  #: every session is taken (max_sessions); retry after the car idles or says bye
    FORBIDDEN = "forbidden"  #: an admin request off the admin endpoint, or a path outside model_dir
    UNKNOWN_SESSION = "unknown_session"  #: a reset names a session the daemon does not hold
    INTERNAL = "internal"  #: the daemon failed; the request may be retried


class ProtocolError(Exception):
    """A request the daemon cannot serve; becomes an error reply, never a crash."""

    def __init__(self, code: ErrorCode, message: str, seq: int | None = None):
        super().__init__(message)
        self.code, self.message, self.seq = code, message, seq

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value}, {self.message!r}, seq={self.seq})"


class InputLimits(BaseModel):
    """What the daemon accepts; anything beyond is an error reply, never a crash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_message_bytes: int = Field(65536, gt=0, description="size cap of one body [bytes]")
    max_depth: int = Field(
        8, ge=2, le=64, description="deepest nesting of maps and arrays in a body (a step is 2)"
    )
    max_abs_position_m: float = Field(1e6, gt=0, description="|x|, |y| [m]")
    max_abs_speed_mps: float = Field(150.0, gt=0, description="|v| [m/s]")
    max_abs_steer_rad: float = Field(math.pi / 2, gt=0, description="|steer| [rad]")
    max_abs_yaw_rad: float = Field(1e3, gt=0, description="|yaw| [rad]; yaw may be unwrapped")
    max_abs_yaw_rate_radps: float = Field(20.0, gt=0, description="|yaw_rate| [rad/s]")
    max_abs_slip_rad: float = Field(
        math.pi, gt=0, description="|slip| [rad]; a sliding or spinning car reaches +-pi"
    )
    max_abs_stamp_s: float = Field(1e10, gt=0, description="|stamp| [s]")


# -- request models ---------------------------------------------------------------------------
class _Message(BaseModel):
    # strict: no str -> number coercion and no bool as a number; unknown fields are ignored
    # so that a newer client can add optional fields without breaking older daemons.
    model_config = ConfigDict(frozen=True, strict=True, allow_inf_nan=False, extra="ignore")



class VehicleStateMsg(_Message):
    """The measured state (SI units) of the reference point; see docs/protocol.md."""

    x: float = Field(description="position [m]")
    y: float = Field(description="position [m]")
    yaw: float = Field(description="heading [rad]")
    v: float = Field(description="speed [m/s]")
    steer: float = Field(description="front-wheel steering angle [rad]")
    yaw_rate: float | None = Field(None, description="[rad/s]; null or absent: not measured")
    slip: float | None = Field(
        None, description="side-slip angle [rad]; null or absent: not measured"
    )

    def get(self, name: str, default: float | None = None) -> float | None:
        """A field by its wire name (``None`` when not measured); state layouts read it so."""
        value = getattr(self, name, None) if name in STATE_FIELDS else None
        return default if value is None else value

    def as_dict(self) -> dict[str, float]:
        """The fields that were sent, by wire name."""
        return {k: v for k in STATE_FIELDS if (v := getattr(self, k)) is not None}


class Request(_Message):
    type: str
    seq: int | None = None
    version: int = PROTOCOL_VERSION
    # The whole decoded map, for a handler that reads a field this version does not model.
    _body: dict[Any, Any] = PrivateAttr(default_factory=dict)

    @property
    def body(self) -> dict[Any, Any]:
        return self._body


class StepRequest(Request):
    type: Literal["step"] = "step"
    seq: int
    stamp: float = Field(description="the sender's clock [s]")
    state: VehicleStateMsg
    want_plan: bool = Field(False, description="include the whole plan in the reply")


class PingRequest(Request):
    type: Literal["ping"] = "ping"


class ResetRequest(Request):
    type: Literal["reset"] = "reset"
    session: str | None = Field(
        None, description="the session to reset (admin endpoint only); none: the sender's own"
    )


class StatsRequest(Request):
    type: Literal["stats"] = "stats"


class ReloadRequest(Request):
    type: Literal["reload"] = "reload"
    path: str | None = Field(None, description="bundle directory; none: the configured source")


class ByeRequest(Request):
    """The sender's car is done: its session ends and its place is free at once."""

    type: Literal["bye"] = "bye"


REQUEST_MODELS: dict[str, type[Request]] = {
    "step": StepRequest,
    "ping": PingRequest,
    "reset": ResetRequest,
    "stats": StatsRequest,
    "reload": ReloadRequest,
    "bye": ByeRequest,
}
assert tuple(REQUEST_MODELS) == REQUEST_TYPES


# -- decoding -----------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _bounds(limits: InputLimits) -> tuple[tuple[str, float], ...]:
    return (
        ("x", limits.max_abs_position_m),
        ("y", limits.max_abs_position_m),
        ("yaw", limits.max_abs_yaw_rad),
        ("v", limits.max_abs_speed_mps),
        ("steer", limits.max_abs_steer_rad),
        ("yaw_rate", limits.max_abs_yaw_rate_radps),
        ("slip", limits.max_abs_slip_rad),
    )


def _depth_exceeds(obj: Any, max_depth: int) -> bool:
    """Whether maps/arrays nest deeper than ``max_depth`` (the body itself is depth 1)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > max_depth:
                    return True
                stack.append((child, depth + 1))
    return False


def unpack(body: bytes, limits: InputLimits) -> dict[Any, Any]:
    """The body as a map, or ProtocolError (too_large, malformed, not_a_map)."""
    obj = _unpack_map(body, limits)
    _check_depth(obj, limits)
    return obj


def _unpack_map(body: bytes, limits: InputLimits) -> dict[Any, Any]:
    """``unpack`` without the depth check."""
    if len(body) > limits.max_message_bytes:
        # Before unpacking: a hostile body costs one length check, nothing more.
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"body of {len(body)} bytes exceeds the cap of {limits.max_message_bytes}",
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
            max_ext_len=0,  # no ext types at all, so no ext_hook can ever run
        )
    except Exception as e:  # noqa: BLE001
        # msgpack raises several types (TypeError for unhashable keys, too); all mean the same
        # to a client, and nothing from the wire may escape as anything but ProtocolError.
        raise ProtocolError(
            ErrorCode.MALFORMED, f"not a msgpack body ({type(e).__name__})"
        ) from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.NOT_A_MAP, f"body must be a map, got {_kind(obj)}")
    return obj


def _check_depth(obj: dict[Any, Any], limits: InputLimits) -> None:
    if _depth_exceeds(obj, limits.max_depth):
        raise ProtocolError(
            ErrorCode.MALFORMED, f"body nests deeper than {limits.max_depth} levels"
        )


def _kind(value: Any) -> str:
    """A wire-level type name for messages (what the client sent, not Python internals)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "binary"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _seq(obj: dict[Any, Any]) -> int | None:
    seq = obj.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def decode_request(body: bytes, limits: InputLimits) -> Request:
    """Decode and validate one request body; ProtocolError on anything wrong.

    Returns one of ``StepRequest``, ``PingRequest``, ``ResetRequest``, ``StatsRequest``,
    ``ReloadRequest``, ``ByeRequest``; ``request.body`` holds the whole decoded map.
    """
    return _validate(unpack(body, limits), limits)


def _validate(obj: dict[Any, Any], limits: InputLimits) -> Request:
    seq = _seq(obj)
    if obj.get("seq") is not None and seq is None:
        raise ProtocolError(
            ErrorCode.WRONG_TYPE, f"seq must be an integer, got {_kind(obj['seq'])}"
        )
    version = obj.get("version", PROTOCOL_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError(
            ErrorCode.WRONG_TYPE, f"version must be an integer, got {_kind(version)}", seq
        )
    if version != PROTOCOL_VERSION:
        # Before the type: a newer client's new request types get this, not unknown_type.
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version} is not supported; this daemon speaks {PROTOCOL_VERSION}",
            seq,
        )
    kind = obj.get("type")
    if kind is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "missing field 'type'", seq)
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.WRONG_TYPE, f"type must be a string, got {_kind(kind)}", seq)
    model = REQUEST_MODELS.get(kind)
    if model is None:
        known = ", ".join(REQUEST_TYPES)
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown type {kind[:40]!r}; known: {known}", seq
        )
    try:
        request = model.model_validate(obj)
    except ValidationError as e:
        raise _from_validation(e, seq) from None
    if isinstance(request, StepRequest):
        _check_magnitudes(request, limits)
    request._body = obj
    return request


#: State fields in the controller's layout order (CommonRoad: x, y, steer, v, yaw, ...).
LAYOUT_FIELDS: tuple[str, ...] = tuple(f.name.lower() for f in State)
# What the fast path accepts, read off the models so that it follows the schema.
_STEP_FIELDS = frozenset(StepRequest.model_fields)
_STATE_SET = frozenset(VehicleStateMsg.model_fields)
_REQUIRED_STATE = frozenset(k for k, f in VehicleStateMsg.model_fields.items() if f.is_required())
_NAN = math.nan


class Step(NamedTuple):
    """A validated step request, as the daemon uses it (see ``Decoder``); a named tuple
    because it is built once per control period on the hot path."""

    seq: int
    stamp: float  #: the sender's clock [s]
    state: tuple[float, ...]  #: ``LAYOUT_FIELDS`` order; NaN where not measured
    want_plan: bool
    body: dict[Any, Any]  #: the whole decoded map

    def state_fields(self) -> dict[str, float | None]:
        """The state by wire name, ``None`` where not measured."""
        return {k: (None if v != v else v) for k, v in zip(LAYOUT_FIELDS, self.state)}

    @classmethod
    def of(cls, request: StepRequest) -> Step:
        get = request.state.get
        state = tuple(_NAN if (v := get(k)) is None else float(v) for k in LAYOUT_FIELDS)
        return cls(request.seq, float(request.stamp), state, request.want_plan, request.body)


class Decoder:
    """``decode_request`` for one set of limits, with step requests returned as a ``Step``.

    A plainly well-formed step body takes the fast path (``_fast_step``); everything else,
    and so every error, goes through the validator. Raises only ``ProtocolError``.
    """

    def __init__(self, limits: InputLimits):
        self.limits = limits
        bound = dict(_bounds(limits))
        self._state_bounds = tuple((k, k in _REQUIRED_STATE, bound[k]) for k in LAYOUT_FIELDS)
        self._stamp_bound = limits.max_abs_stamp_s

    def __call__(self, body: bytes) -> Step | Request:
        obj = _unpack_map(body, self.limits)
        step = self._fast_step(obj)
        if step is not None:
            return step
        _check_depth(obj, self.limits)
        request = _validate(obj, self.limits)
        return Step.of(request) if isinstance(request, StepRequest) else request

    def _fast_step(self, obj: dict[Any, Any]) -> Step | None:
        """The ``Step`` of a plainly well-formed step body, or None: let the validator decide.

        Only the fields this version knows, with values of the exact wire types (a ``type()
        is`` test keeps booleans out of the numbers), inside the bounds; a chained comparison
        is false for NaN, so NaN and infinity go the long way too. Such a body nests two
        levels deep, so it needs no depth walk.
        """
        if obj.get("type") != "step" or not _STEP_FIELDS.issuperset(obj):
            return None
        seq, stamp, state = obj.get("seq"), obj.get("stamp"), obj.get("state")
        want_plan = obj.get("want_plan", False)
        version = obj.get("version", PROTOCOL_VERSION)
        if type(seq) is not int or type(state) is not dict or type(want_plan) is not bool:
            return None
        if type(version) is not int or version != PROTOCOL_VERSION:
            return None
        kind, bound = type(stamp), self._stamp_bound
        if (kind is not float and kind is not int) or not -bound <= stamp <= bound:
            return None
        if not _STATE_SET.issuperset(state):
            return None
        values = []
        for name, required, bound in self._state_bounds:
            v = state.get(name)
            if v is None:
                if required:
                    return None
                values.append(_NAN)
                continue
            kind = type(v)
            if (kind is not float and kind is not int) or not -bound <= v <= bound:
                return None
            values.append(float(v))
        return Step(seq, float(stamp), tuple(values), want_plan, obj)


_CODES = {"missing": ErrorCode.MISSING_FIELD, "finite_number": ErrorCode.NOT_FINITE}
_EXPECTED = {
    "float_type": "a number",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_type": "a boolean",
    "string_type": "a string",
    "model_type": "a map",
    "dict_type": "a map",
}


def _from_validation(error: ValidationError, seq: int | None) -> ProtocolError:
    """The first problem pydantic found, as a stable code and a message naming the field."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    code = _CODES.get(first["type"], ErrorCode.WRONG_TYPE)
    if first["input"] is None:  # null means absent, for required fields as for optional ones
        code = ErrorCode.MISSING_FIELD
    if code is ErrorCode.MISSING_FIELD:
        message = f"missing field '{where}'"
    elif code is ErrorCode.NOT_FINITE:
        message = f"{where} is not finite ({first['input']})"
    elif first["type"] in _EXPECTED:
        message = f"{where} must be {_EXPECTED[first['type']]}, got {_kind(first['input'])}"
    else:
        message = f"{where}: {first['msg']}"
    return ProtocolError(code, message, seq)


def _check_magnitudes(request: StepRequest, limits: InputLimits) -> None:
    if abs(request.stamp) > limits.max_abs_stamp_s:
        raise ProtocolError(
            ErrorCode.OUT_OF_RANGE,
            f"stamp {request.stamp} is beyond +-{limits.max_abs_stamp_s}",
            request.seq,
        )
    state = request.state
    for name, bound in _bounds(limits):
        value = getattr(state, name)
        if value is not None and abs(value) > bound:
            raise ProtocolError(
                ErrorCode.OUT_OF_RANGE, f"state.{name} = {value} is beyond +-{bound}", request.seq
            )


# -- reply models (the schema; builders below make the same maps as dicts) ---------------------
class _Reply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    version: int = PROTOCOL_VERSION


class ActionMsg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    steer_rate: float = Field(description="steering-angle rate [rad/s]")
    accel: float = Field(description="longitudinal acceleration [m/s^2]")


class ActionReply(_Reply):
    type: Literal["action"] = "action"
    seq: int
    status: Literal["ok", "fallback", "stop"]
    action: ActionMsg
    solve_ms: float = Field(description="time spent planning [ms]")
    model: str = Field(description="version of the model the plan used")
    plan: list[tuple[float, float]] | None = Field(None, description="[steer_rate, accel] per step")
    cost: float | None = None


class ErrorReply(_Reply):
    type: Literal["error"] = "error"
    seq: int | None
    code: ErrorCode
    message: str


class PongReply(_Reply):
    type: Literal["pong"] = "pong"
    seq: int | None
    model: str


class AckReply(_Reply):
    model_config = ConfigDict(frozen=True, extra="allow")  # e.g. episode after a reset

    type: Literal["ack"] = "ack"
    seq: int | None
    of: str


class StatsReply(_Reply):
    model_config = ConfigDict(frozen=True, extra="allow")  # the counters

    type: Literal["stats"] = "stats"
    seq: int | None


Reply = ActionReply | ErrorReply | PongReply | AckReply | StatsReply
REPLY_MODELS: dict[str, type[BaseModel]] = {
    "action": ActionReply,
    "error": ErrorReply,
    "pong": PongReply,
    "ack": AckReply,
    "stats": StatsReply,
}


def parse_reply(reply: Mapping[str, Any]) -> Reply:
    """A decoded reply map as its model (client side; raises pydantic's ValidationError)."""
    model = REPLY_MODELS.get(str(reply.get("type")))
    if model is None:
        raise ValueError(f"unknown reply type {reply.get('type')!r}")
    return model.model_validate(reply)  # type: ignore[return-value]


# -- encoding and reply builders ----------------------------------------------------------------
def _builtin(value: Any) -> Any:
    # numpy scalars and arrays reach the builders from the planner; msgpack knows neither.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode(reply: BaseModel | Mapping[str, Any]) -> bytes:
    """One reply body. A model drops its unset optional fields; ``seq`` is always sent."""
    if isinstance(reply, BaseModel):
        data = reply.model_dump(mode="json")
        reply = {k: v for k, v in data.items() if v is not None or k == "seq"}
    return msgpack.packb(reply, use_bin_type=True, default=_builtin)


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
    """The reply to a step; ``plan`` only when the request set ``want_plan``."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
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
        reply["plan"] = [[float(a), float(b)] for a, b in plan]
    if cost is not None and math.isfinite(cost):
        reply["cost"] = float(cost)
    return reply


def error_reply(code: ErrorCode, message: str, seq: int | None) -> dict[str, Any]:
    return {
        "type": "error",
        "version": PROTOCOL_VERSION,
        "seq": seq,
        "code": ErrorCode(code).value,
        "message": message,
    }


def pong_reply(seq: int | None, model: str) -> dict[str, Any]:
    return {"type": "pong", "version": PROTOCOL_VERSION, "seq": seq, "model": model}


def ack_reply(seq: int | None, of: str, **extra: Any) -> dict[str, Any]:
    return {"type": "ack", "version": PROTOCOL_VERSION, "seq": seq, "of": of, **extra}


def stats_reply(seq: int | None, stats: Mapping[str, Any]) -> dict[str, Any]:
    # The counters cannot overwrite the envelope fields.
    return {**stats, "type": "stats", "version": PROTOCOL_VERSION, "seq": seq}
