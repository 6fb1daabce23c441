"""Wire protocol: every error code from a crafted body, replies against their schema, a fuzz that
never crashes, and the lazy-pirate client against a real ROUTER on 127.0.0.1."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller import protocol as wire
from controller.protocol import (
    PROTOCOL_VERSION,
    ActionReply,
    ErrorCode,
    ErrorReply,
    InputLimits,
    PingRequest,
    ProtocolError,
    ReloadRequest,
    StepRequest,
    decode_request,
    encode,
    error_reply,
    parse_reply,
    pong_reply,
)
from controller.protocol_client import ControllerClient, DaemonUnavailable

LIMITS = InputLimits()
STATE = {"x": 1.0, "y": -2.0, "yaw": 0.3, "v": 10.0, "steer": 0.01}
FUZZ = settings(
    derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


def step(**changes) -> bytes:
    body = {"type": "step", "seq": 7, "stamp": 1.5, "state": dict(STATE)}
    body.update(changes)
    return msgpack.packb(body)


def with_state(**changes) -> bytes:
    return step(state={**STATE, **changes})


def error_of(body: bytes, limits: InputLimits = LIMITS) -> ProtocolError:
    with pytest.raises(ProtocolError) as e:
        decode_request(body, limits)
    return e.value


# -- valid requests -------------------------------------------------------------------------------
def test_valid_step() -> None:
    req = decode_request(step(want_plan=True, version=PROTOCOL_VERSION), LIMITS)
    assert isinstance(req, StepRequest)
    assert (req.type, req.seq, req.stamp, req.want_plan) == ("step", 7, 1.5, True)
    assert req.state.as_dict() == STATE
    assert req.state.yaw_rate is None and req.state.get("yaw_rate") is None
    assert req.state.get("v") == 10.0 and req.state.get("nonsense", 3.0) == 3.0
    assert req.body["state"] == STATE  # the whole map, for fields this version does not model


def test_optional_state_fields_and_null_as_absent() -> None:
    req = decode_request(with_state(yaw_rate=0.2, slip=-0.05), LIMITS)
    assert req.state.as_dict() == {**STATE, "yaw_rate": 0.2, "slip": -0.05}
    assert decode_request(with_state(yaw_rate=None), LIMITS).state.yaw_rate is None


def test_extra_fields_are_ignored_anywhere() -> None:
    body = step(
        extra={"anything": [1, 2]}, colour="red", state={**STATE, "wheel_speeds": [1, 2, 3, 4]}
    )
    req = decode_request(body, LIMITS)
    assert req.state.as_dict() == STATE and req.body["colour"] == "red"
    odd_keys = msgpack.packb({"type": "ping", "seq": 2, 5: "int key", b"k": 1})
    assert isinstance(decode_request(odd_keys, LIMITS), PingRequest)


def test_integers_are_numbers_but_booleans_are_not() -> None:
    req = decode_request(step(stamp=2, state={**STATE, "v": 3, "x": -400}), LIMITS)
    assert req.stamp == 2.0 and req.state.v == 3.0 and isinstance(req.state.v, float)
    for body in (with_state(v=True), with_state(steer=False), step(stamp=True)):
        assert error_of(body).code is ErrorCode.WRONG_TYPE
    assert error_of(step(seq=True)).code is ErrorCode.WRONG_TYPE
    assert error_of(step(version=True)).code is ErrorCode.WRONG_TYPE


@pytest.mark.parametrize(
    "kind,model",
    [
        ("ping", PingRequest),
        ("reset", wire.ResetRequest),
        ("stats", wire.StatsRequest),
        ("reload", ReloadRequest),
    ],
)
def test_control_requests(kind: str, model: type) -> None:
    req = decode_request(
        msgpack.packb({"type": kind, "seq": 1, "version": PROTOCOL_VERSION}), LIMITS
    )
    assert isinstance(req, model) and req.type == kind and req.seq == 1
    assert decode_request(msgpack.packb({"type": kind}), LIMITS).seq is None  # seq optional here


def test_reload_path() -> None:
    assert (
        decode_request(msgpack.packb({"type": "reload", "path": "/m/b1"}), LIMITS).path == "/m/b1"
    )
    err = error_of(msgpack.packb({"type": "reload", "seq": 4, "path": 12}))
    assert (err.code, err.seq) == (ErrorCode.WRONG_TYPE, 4) and "path" in err.message


# -- every error code the decoder produces, with the seq it could extract ------------------------
DEEP = {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}


@pytest.mark.parametrize(
    "body,code,seq,mentions",
    [
        (b"\xc1", ErrorCode.MALFORMED, None, "msgpack"),
        (b"", ErrorCode.MALFORMED, None, "msgpack"),
        (msgpack.packb({"type": "step"})[:-2], ErrorCode.MALFORMED, None, "msgpack"),  # truncated
        (
            msgpack.packb({"type": "ping"}) + b"\x00",
            ErrorCode.MALFORMED,
            None,
            "msgpack",
        ),  # trailing
        (b"\x91" * 2000 + b"\xc0", ErrorCode.MALFORMED, None, "msgpack"),  # beyond msgpack's stack
        (msgpack.packb({"type": "ping", "seq": 3, "x": DEEP}), ErrorCode.MALFORMED, None, "deeper"),
        (msgpack.packb([1, 2, 3]), ErrorCode.NOT_A_MAP, None, "array"),
        (msgpack.packb("step"), ErrorCode.NOT_A_MAP, None, "string"),
        (msgpack.packb(None), ErrorCode.NOT_A_MAP, None, "null"),
        (msgpack.packb({"seq": 3}), ErrorCode.MISSING_FIELD, 3, "type"),
        (msgpack.packb({"type": 5, "seq": 3}), ErrorCode.WRONG_TYPE, 3, "type"),
        (msgpack.packb({"type": "fly", "seq": 3}), ErrorCode.UNKNOWN_TYPE, 3, "fly"),
        (
            msgpack.packb({"type": "ping", "seq": 3, "version": 99}),
            ErrorCode.UNSUPPORTED_VERSION,
            3,
            "99",
        ),
        (
            msgpack.packb({"type": "teleport", "seq": 3, "version": 2}),
            ErrorCode.UNSUPPORTED_VERSION,
            3,
            "2",
        ),
        (
            msgpack.packb({"type": "ping", "seq": 3, "version": "1"}),
            ErrorCode.WRONG_TYPE,
            3,
            "version",
        ),
        (
            msgpack.packb({"type": "step", "stamp": 1.0, "state": STATE}),
            ErrorCode.MISSING_FIELD,
            None,
            "seq",
        ),
        (
            msgpack.packb({"type": "step", "seq": "7", "stamp": 1.0, "state": STATE}),
            ErrorCode.WRONG_TYPE,
            None,
            "seq",
        ),
        (
            msgpack.packb({"type": "step", "seq": 1.0, "stamp": 1.0, "state": STATE}),
            ErrorCode.WRONG_TYPE,
            None,
            "seq",
        ),
        (
            msgpack.packb({"type": "step", "seq": 7, "state": STATE}),
            ErrorCode.MISSING_FIELD,
            7,
            "stamp",
        ),
        (step(stamp="now"), ErrorCode.WRONG_TYPE, 7, "stamp"),
        (step(stamp=b"\x00"), ErrorCode.WRONG_TYPE, 7, "stamp"),
        (step(state=None), ErrorCode.MISSING_FIELD, 7, "state"),
        (step(state=[1, 2]), ErrorCode.WRONG_TYPE, 7, "state"),
        (
            step(state={k: v for k, v in STATE.items() if k != "v"}),
            ErrorCode.MISSING_FIELD,
            7,
            "state.v",
        ),
        (with_state(steer="left"), ErrorCode.WRONG_TYPE, 7, "state.steer"),
        (with_state(yaw_rate=[0.1]), ErrorCode.WRONG_TYPE, 7, "state.yaw_rate"),
        (step(want_plan=1), ErrorCode.WRONG_TYPE, 7, "want_plan"),
        (with_state(x=math.nan), ErrorCode.NOT_FINITE, 7, "state.x"),
        (with_state(yaw=math.inf), ErrorCode.NOT_FINITE, 7, "state.yaw"),
        (with_state(slip=-math.inf), ErrorCode.NOT_FINITE, 7, "state.slip"),
        (step(stamp=-math.inf), ErrorCode.NOT_FINITE, 7, "stamp"),
        (with_state(x=1.0000001e6), ErrorCode.OUT_OF_RANGE, 7, "state.x"),
        (with_state(y=-2e6), ErrorCode.OUT_OF_RANGE, 7, "state.y"),
        (with_state(v=150.5), ErrorCode.OUT_OF_RANGE, 7, "state.v"),
        (with_state(v=-151), ErrorCode.OUT_OF_RANGE, 7, "state.v"),
        (with_state(steer=1.6), ErrorCode.OUT_OF_RANGE, 7, "state.steer"),
        (with_state(yaw=1001.0), ErrorCode.OUT_OF_RANGE, 7, "state.yaw"),
        (with_state(yaw_rate=20.5), ErrorCode.OUT_OF_RANGE, 7, "state.yaw_rate"),
        (with_state(slip=-3.2), ErrorCode.OUT_OF_RANGE, 7, "state.slip"),
        (step(stamp=2e10), ErrorCode.OUT_OF_RANGE, 7, "stamp"),
        (step(pad="x" * 70000), ErrorCode.TOO_LARGE, None, "65536"),
    ],
)
def test_each_error_code(body: bytes, code: ErrorCode, seq: int | None, mentions: str) -> None:
    err = error_of(body)
    assert err.code is code, err.message
    assert err.seq == seq
    assert mentions in err.message


def test_size_cap_is_checked_before_unpacking_and_is_configurable() -> None:
    small = InputLimits(max_message_bytes=64)
    assert error_of(b"\xc1" * 65, small).code is ErrorCode.TOO_LARGE  # garbage, but too large first
    assert error_of(b"\xc1" * 64, small).code is ErrorCode.MALFORMED
    body = step()
    assert len(body) <= 64 * 2
    assert error_of(body, InputLimits(max_message_bytes=len(body) - 1)).code is ErrorCode.TOO_LARGE
    assert decode_request(body, InputLimits(max_message_bytes=len(body))).seq == 7


def test_bounds_and_depth_are_configurable() -> None:
    tight = InputLimits(max_abs_speed_mps=5.0, max_abs_position_m=10.0, max_depth=2)
    assert error_of(with_state(v=6.0), tight).code is ErrorCode.OUT_OF_RANGE
    assert error_of(with_state(x=11.0), tight).code is ErrorCode.OUT_OF_RANGE
    assert decode_request(with_state(v=5.0, x=10.0), tight).state.v == 5.0  # bounds are inclusive
    assert error_of(step(meta={"a": [1]}), tight).code is ErrorCode.MALFORMED  # depth 3
    assert decode_request(step(meta={"a": [1]}), LIMITS).seq == 7


def test_ext_types_are_refused() -> None:
    pickled = msgpack.ExtType(1, b"\x80\x04K\x01.")  # a pickle in an ext type
    assert error_of(msgpack.packb(pickled)).code is ErrorCode.MALFORMED
    assert error_of(msgpack.packb({"type": "ping", "x": pickled})).code is ErrorCode.MALFORMED


# -- replies -------------------------------------------------------------------------------------
def roundtrip(reply) -> dict:
    return msgpack.unpackb(encode(reply), raw=False)


def test_reply_builders_match_their_models() -> None:
    action = wire.action_reply(
        17, "ok", np.float32(0.05), 0.8, 3.1, "kinematic", plan=np.ones((3, 2)).tolist(), cost=12.7
    )
    replies = [
        action,
        wire.action_reply(18, "stop", 0.0, -4.0, 0.0, "kinematic", cost=math.nan),
        error_reply(ErrorCode.NOT_FINITE, "state.yaw is not finite (nan)", 17),
        error_reply(ErrorCode.MALFORMED, "not msgpack", None),
        pong_reply(1, "bundle-3"),
        wire.ack_reply(2, "reset", episode=3),
        wire.stats_reply(3, {"steps": 10, "errors_by_code": {"stale": 1}}),
    ]
    for reply in replies:
        decoded = roundtrip(reply)
        assert decoded == reply and decoded["version"] == PROTOCOL_VERSION
        assert parse_reply(decoded).type == reply["type"]
    assert set(action) == {
        "type",
        "version",
        "seq",
        "status",
        "action",
        "solve_ms",
        "model",
        "plan",
        "cost",
    }
    assert "cost" not in replies[1] and "plan" not in replies[1]  # NaN cost and no plan: omitted
    assert replies[3]["seq"] is None
    assert parse_reply(roundtrip(replies[6])).model_extra == {
        "steps": 10,
        "errors_by_code": {"stale": 1},
    }
    with pytest.raises(ValueError):
        wire.action_reply(1, "great", 0.0, 0.0, 0.0, "kinematic")


def test_stats_cannot_overwrite_the_envelope() -> None:
    reply = wire.stats_reply(3, {"type": "action", "seq": 99, "steps": 1})
    assert (reply["type"], reply["seq"], reply["steps"]) == ("stats", 3, 1)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_makes_an_error_reply(code: ErrorCode) -> None:
    # stale, not_ready, reload_failed and internal come from the daemon, not the decoder.
    decoded = roundtrip(error_reply(code, "why", 5))
    assert decoded == {
        "type": "error",
        "version": 1,
        "seq": 5,
        "code": code.value,
        "message": "why",
    }
    assert parse_reply(decoded).code is code


def test_encode_takes_models_and_keeps_a_null_seq() -> None:
    assert roundtrip(ErrorReply(seq=None, code=ErrorCode.STALE, message="old")) == error_reply(
        ErrorCode.STALE, "old", None
    )
    model = ActionReply(
        seq=1, status="ok", action={"steer_rate": 0.1, "accel": 0.2}, solve_ms=1.0, model="k"
    )
    assert roundtrip(model) == wire.action_reply(1, "ok", 0.1, 0.2, 1.0, "k")


# -- the daemon's decoder: a fast path for plain steps, the same answers as the validator ----------
DECODE = wire.Decoder(LIMITS)


def answer(decode, body: bytes) -> tuple:
    """What a decoder makes of a body, in comparable form (the decoded map re-encoded: two
    decodes of a NaN are two objects that compare unequal)."""
    try:
        req = decode(body)
    except ProtocolError as e:
        return ("error", e.code, e.message, e.seq)
    if isinstance(req, StepRequest):
        req = wire.Step.of(req)
    if isinstance(req, wire.Step):
        types = (type(req.seq), type(req.stamp), *map(type, req.state))
        return ("step", req.seq, req.stamp, req.state_fields(), req.want_plan, msgpack.packb(req.body), types)
    return ("request", type(req), req.model_dump(), msgpack.packb(req.body))


def decoders_agree(body: bytes) -> None:
    assert answer(DECODE, body) == answer(lambda b: decode_request(b, LIMITS), body)


def fast_path(body: bytes) -> wire.Step | None:
    return DECODE._fast_step(msgpack.unpackb(body, strict_map_key=False))


def test_plain_steps_take_the_fast_path_with_the_validators_values() -> None:
    plain = [
        step(),
        step(stamp=2, seq=-3, version=PROTOCOL_VERSION, want_plan=True),
        with_state(yaw_rate=0.2, slip=None, v=3, x=-400),
    ]
    for body in plain:
        taken = fast_path(body)
        assert taken is not None and answer(DECODE, body)[0] == "step"
        decoders_agree(body)
    taken = fast_path(with_state(yaw_rate=0.2))
    assert taken.state[:6] == (1.0, -2.0, 0.01, 10.0, 0.3, 0.2)  # layout order: x y steer v yaw
    assert math.isnan(taken.state[6]) and taken.state_fields()["slip"] is None
    # Anything unusual goes the long way (and gets the validator's answer).
    for body in (step(extra=1), with_state(wheel=[1, 2]), with_state(v=True), step(stamp=math.nan),
                 with_state(v=200.0), step(version=2), with_state(yaw_rate="a")):
        assert fast_path(body) is None
        decoders_agree(body)


number = (
    st.floats()
    | st.integers(-(2**64) + 1, 2**64 - 1)
    | st.sampled_from([True, False, None, "1", 1e6, -1e6, 1e10, 150.0, math.pi / 2])
)


@settings(FUZZ, max_examples=1500)
@given(
    st.fixed_dictionaries(
        {k: number for k in wire.STATE_FIELDS},
        optional={"extra": number},
    ),
    st.fixed_dictionaries(
        {"seq": number, "stamp": number},
        optional={"version": st.sampled_from([1, 2, True, 1.0]), "want_plan": st.sampled_from([True, False, 1, None])},
    ),
)
def test_fuzz_the_fast_path_answers_as_the_validator(state: dict, fields: dict) -> None:
    try:
        body = msgpack.packb({"type": "step", **fields, "state": state})
    except (OverflowError, ValueError):
        return
    decoders_agree(body)


# -- fuzz: nothing but ProtocolError, and what passes is finite and within bounds ------------------
def check(body: bytes) -> None:
    decoders_agree(body)
    try:
        req = decode_request(body, LIMITS)
    except ProtocolError as e:
        assert isinstance(e.code, ErrorCode) and e.message
        assert e.seq is None or isinstance(e.seq, int)
        return
    if isinstance(req, StepRequest):
        assert all(math.isfinite(v) for v in req.state.as_dict().values())
        assert abs(req.state.v) <= LIMITS.max_abs_speed_mps and math.isfinite(req.stamp)


@settings(FUZZ, max_examples=1500)
@given(st.binary(max_size=120))
def test_fuzz_random_bytes(body: bytes) -> None:
    check(body)


VALID = [
    step(),
    step(want_plan=True, state={**STATE, "yaw_rate": 0.1, "slip": 0.0}),
    msgpack.packb({"type": "reload", "seq": 4, "path": "/m"}),
]


@settings(FUZZ, max_examples=2000)
@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(st.sampled_from("fid"), st.integers(0, 200), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 200),
)
def test_fuzz_mutated_valid_bodies(body: bytes, edits: list, cut: int) -> None:
    data = bytearray(body)
    for op, at, byte in edits:  # flip, insert or delete one byte
        at %= len(data) + 1
        if op == "f" and at < len(data):
            data[at] ^= byte or 1
        elif op == "i":
            data.insert(at, byte)
        elif op == "d" and at < len(data):
            del data[at]
    check(bytes(data[: len(data) - cut % 4]))


leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats()
    | st.text(max_size=6)
    | st.binary(max_size=6)
    | st.lists(st.floats(), max_size=3)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


@settings(FUZZ, max_examples=1000)
@given(
    st.dictionaries(
        st.sampled_from(["type", "seq", "stamp", "state", "version", "want_plan", "path"]),
        leaf,
        max_size=3,
    ),
    st.dictionaries(st.sampled_from(list(wire.STATE_FIELDS) + ["extra"]), leaf, max_size=3),
)
def test_fuzz_fields_replaced_by_any_value(fields: dict, state: dict) -> None:
    body = {"type": "step", "seq": 1, "stamp": 0.0, "state": {**STATE, **state}, **fields}
    try:
        packed = msgpack.packb(body)
    except (OverflowError, ValueError):  # ints msgpack cannot hold: no client can send them
        return
    check(packed)


# -- the client against a real ROUTER on loopback -------------------------------------------------
@contextmanager
def serving(drop_first: int = 0) -> Iterator[tuple[str, list[dict]]]:
    """A ROUTER on 127.0.0.1 answering with the reply builders; ignores the first requests."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    seen: list[dict] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if not router.poll(20):
                continue
            *envelope, body = router.recv_multipart()
            try:
                req = decode_request(body, LIMITS)
            except ProtocolError as e:
                router.send_multipart([*envelope, encode(error_reply(e.code, e.message, e.seq))])
                continue
            seen.append(req.body)
            if len(seen) <= drop_first:
                continue
            if isinstance(req, StepRequest):
                router.send_multipart(
                    [*envelope, encode(error_reply(ErrorCode.STALE, "old", req.seq + 1))]
                )  # not ours
                reply = wire.action_reply(
                    req.seq,
                    "ok",
                    0.1,
                    0.2,
                    1.0,
                    "test",
                    plan=[[0.1, 0.2]] if req.want_plan else None,
                )
            elif req.type == "stats":
                reply = wire.stats_reply(req.seq, {"steps": len(seen)})
            elif req.type == "ping":
                reply = pong_reply(req.seq, "test")
            else:
                reply = wire.ack_reply(req.seq, req.type)
            router.send_multipart([*envelope, encode(reply)])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{port}", seen
    finally:
        stop.set()
        thread.join(5)
        router.close(linger=0)
        context.term()


def test_client_requests_and_replies_matched_by_seq() -> None:
    with serving() as (endpoint, seen), ControllerClient(endpoint, timeout_s=2.0) as client:
        assert client.ping()["type"] == "pong"
        reply = client.step(5, 0.1, STATE, want_plan=True)
        assert (reply["type"], reply["seq"], reply["plan"]) == (
            "action",
            5,
            [[0.1, 0.2]],
        )  # the stale seq 6 dropped
        assert client.reset()["of"] == "reset"
        assert client.reload("/m/b1")["of"] == "reload"
        assert client.stats()["steps"] == 5
        assert seen[3]["path"] == "/m/b1" and all(
            m["version"] == PROTOCOL_VERSION for m in seen if m["type"] != "step"
        )
        assert client.reconnects == 0


def test_client_timeout_never_resends_a_step_and_keeps_its_one_connection() -> None:
    with (
        serving(drop_first=2) as (endpoint, seen),
        ControllerClient(endpoint, timeout_s=0.2) as client,
    ):
        with pytest.raises(DaemonUnavailable):
            client.step(1, 0.0, STATE)  # lost: raised, not resent
        assert [m["type"] for m in seen] == ["step"]
        assert client.ping(retries=2)["type"] == "pong"  # first try lost, the retry answered
        assert [m["type"] for m in seen] == ["step", "ping", "ping"]
        # One socket throughout: a second connection with the car's identity would race the
        # first at the daemon (docs/protocol.md, Sessions).
        assert client.reconnects == 0
        assert client.step(2, 0.05, STATE)["status"] == "ok"
