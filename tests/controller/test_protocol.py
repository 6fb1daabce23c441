"""Wire protocol decoding: every error code from a crafted body, and a fuzz that never crashes."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    InputLimits,
    ProtocolError,
    StepRequest,
    decode_request,
)

LIMITS = InputLimits()
STATE = {"x": 1.0, "y": -2.0, "yaw": 0.3, "v": 10.0, "steer": 0.01}


def step(**changes):
    body = {"type": "step", "seq": 7, "stamp": 1.5, "state": dict(STATE)}
    body.update(changes)
    return msgpack.packb(body)


def error_of(body: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as e:
        decode_request(body, LIMITS)
    return e.value


def test_valid_step_and_extra_fields_ignored() -> None:
    req = decode_request(step(extra={"anything": [1, 2]}, state={**STATE, "yaw_rate": 0.1, "color": "red"}), LIMITS)
    assert isinstance(req, StepRequest)
    assert req.seq == 7 and req.stamp == 1.5
    assert req.state == {**STATE, "yaw_rate": 0.1}


def test_integers_are_numbers_but_bools_are_not() -> None:
    assert decode_request(step(stamp=2, state={**STATE, "v": 3}), LIMITS).state["v"] == 3.0
    assert error_of(step(state={**STATE, "v": True})).code is ErrorCode.WRONG_TYPE


@pytest.mark.parametrize(
    "body,code,seq",
    [
        (b"\xc1", ErrorCode.MALFORMED, None),
        (b"", ErrorCode.MALFORMED, None),
        (msgpack.packb([1, 2, 3]), ErrorCode.NOT_A_MAP, None),
        (msgpack.packb({"seq": 3}), ErrorCode.MISSING_FIELD, 3),
        (msgpack.packb({"type": 5, "seq": 3}), ErrorCode.WRONG_TYPE, 3),
        (msgpack.packb({"type": "fly", "seq": 3}), ErrorCode.UNKNOWN_TYPE, 3),
        (msgpack.packb({"type": "ping", "seq": 3, "version": 99}), ErrorCode.UNSUPPORTED_VERSION, 3),
        (msgpack.packb({"type": "step", "stamp": 1.0, "state": STATE}), ErrorCode.MISSING_FIELD, None),
        (msgpack.packb({"type": "step", "seq": "7", "stamp": 1.0, "state": STATE}), ErrorCode.WRONG_TYPE, None),
        (step(stamp="now"), ErrorCode.WRONG_TYPE, 7),
        (step(state=None), ErrorCode.MISSING_FIELD, 7),
        (step(state=[1, 2]), ErrorCode.WRONG_TYPE, 7),
        (step(state={k: v for k, v in STATE.items() if k != "v"}), ErrorCode.MISSING_FIELD, 7),
        (step(state={**STATE, "x": math.nan}), ErrorCode.NOT_FINITE, 7),
        (step(state={**STATE, "yaw": math.inf}), ErrorCode.NOT_FINITE, 7),
        (step(stamp=-math.inf), ErrorCode.NOT_FINITE, 7),
        (step(state={**STATE, "v": 1e4}), ErrorCode.OUT_OF_RANGE, 7),
        (step(state={**STATE, "x": 1e9}), ErrorCode.OUT_OF_RANGE, 7),
        (step(state={**STATE, "yaw_rate": 100.0}), ErrorCode.OUT_OF_RANGE, 7),
        (step(state={**STATE, "steer": "left"}), ErrorCode.WRONG_TYPE, 7),
        (msgpack.packb({"type": "step", "seq": 1, "stamp": 0.0, "state": STATE, "pad": "x" * 70000}), ErrorCode.TOO_LARGE, None),
    ],
)
def test_each_error_code(body: bytes, code: ErrorCode, seq: int | None) -> None:
    err = error_of(body)
    assert err.code is code, err.message
    assert err.seq == seq
    assert err.message


def test_ext_types_are_refused() -> None:
    body = msgpack.packb(msgpack.ExtType(1, b"\x80\x04K\x01."))  # a pickle in an ext type
    assert error_of(body).code in (ErrorCode.MALFORMED, ErrorCode.NOT_A_MAP)


def test_control_requests() -> None:
    for kind in ("ping", "reset", "stats", "reload"):
        req = decode_request(msgpack.packb({"type": kind, "seq": 1, "version": PROTOCOL_VERSION}), LIMITS)
        assert req.type == kind and req.seq == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=True) | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=1500, derandomize=True, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_only_raise_protocol_errors(body: bytes) -> None:
    try:
        decode_request(body, LIMITS)
    except ProtocolError:
        pass


@settings(max_examples=1500, derandomize=True, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "seq", "stamp", "state", "version", "want_plan", "x"]), json_values, max_size=6),
       st.dictionaries(st.sampled_from(["x", "y", "yaw", "v", "steer", "yaw_rate", "slip"]), json_values, max_size=7))
def test_fuzz_mutated_requests_only_raise_protocol_errors(fields: dict, state: dict) -> None:
    body = {"type": "step", "seq": 1, "stamp": 0.0, "state": {**STATE, **state}}
    body.update(fields)
    try:
        req = decode_request(msgpack.packb(body), LIMITS)
    except ProtocolError:
        return
    if isinstance(req, StepRequest):
        assert all(math.isfinite(v) for v in req.state.values())
