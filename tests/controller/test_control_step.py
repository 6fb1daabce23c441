"""The pure control step and the session table: staleness, retries, per-car state, busy.

No sockets and no clock: times are passed in, so each rule is checked directly.
"""

from __future__ import annotations

import numpy as np
import pytest

from controller.control_step import control_step, stale_reason, step_record
from controller.core import ControlCore
from controller.costs import CostConfig, TrackCost
from controller.planners.ilqr import ILQRConfig
from controller.planners.registry import build_planner
from controller.protocol import ActionReply, ErrorCode, Step, parse_reply
from controller.sessions import Refused, SessionTable
from controller.track import load_track
from sim.closed_loop import start_state
from vehicle_models import KinematicBicycle, load_params

PARAMS = load_params("passenger_car")


@pytest.fixture(scope="module")
def track():
    return load_track("circle")


def make_core(track) -> ControlCore:
    """A deterministic planner (iLQR: no sampling), so two cars' plans can be compared exactly."""
    cost = TrackCost(CostConfig(), track, PARAMS)
    planner = build_planner(ILQRConfig(horizon=15, compile=False), KinematicBicycle(PARAMS, 0.05), cost, PARAMS)
    return ControlCore(planner, PARAMS, 0.05, 10.0)


def state_of(track, v: float = 8.0, offset: float = 0.0) -> tuple[float, ...]:
    x = np.full(7, np.nan)
    x[:5] = start_state(track, v).numpy()
    x[1] += offset
    return tuple(float(v) for v in x)


def step(seq: int, stamp: float, state: tuple[float, ...], want_plan: bool = False) -> Step:
    return Step(seq, stamp, state, want_plan, {})


def table(core: ControlCore, max_sessions: int = 2, idle_s: float = 2.0) -> SessionTable:
    return SessionTable(max_sessions, idle_s, core.new_car, run="t")


def test_stamps_that_go_back_repeat_or_sat_in_a_queue_are_stale(track) -> None:
    session, _ = table(make_core(track)).open(b"car", now=100.0)
    assert stale_reason(session, 10.0, 100.0, stale_after_s=0.5) is None
    assert "not after" in stale_reason(session, 9.0, 100.05, 0.5)
    assert "not after" in stale_reason(session, 10.0, 100.05, 0.5)
    # 0.8 s passed here, the stamps say 0.05 s: it sat in a queue for 0.75 s.
    assert "later than its stamp" in stale_reason(session, 10.05, 100.8, 0.5)
    assert stale_reason(session, 10.10, 100.85, 0.5) is None  # the stale one became the reference


def test_a_refused_step_leaves_the_car_untouched_and_replies_with_its_code(track) -> None:
    core = make_core(track)
    session, _ = table(core).open(b"car", now=0.0)
    x = state_of(track)
    first = control_step(core, session, step(1, 1.0, x), 0.0, "m", 1.0)
    plan = session.car.plan.copy()
    refused = control_step(core, session, step(2, 0.5, x), 0.05, "m", 1.0)
    assert refused.outcome is None and refused.code is ErrorCode.STALE
    assert refused.reply["type"] == "error" and refused.reply["code"] == "stale" and refused.reply["seq"] == 2
    np.testing.assert_array_equal(session.car.plan, plan)
    assert first.outcome is not None and session.steps == 1


def test_a_retry_of_the_last_step_gets_its_reply_again_without_planning(track) -> None:
    core = make_core(track)
    session, _ = table(core).open(b"car", now=0.0)
    x = state_of(track)
    served = control_step(core, session, step(5, 1.0, x), 0.0, "m", 1.0)
    again = control_step(core, session, step(5, 1.0, x), 0.3, "m", 1.0)
    assert again.repeated and again.outcome is None and again.reply is served.reply
    assert session.steps == 1
    other = control_step(core, session, step(6, 1.0, x), 0.3, "m", 1.0)  # same stamp, new seq
    assert other.code is ErrorCode.STALE


def test_reply_and_record_map_the_outcome(track) -> None:
    core = make_core(track)
    session, _ = table(core).open(b"car", now=0.0)
    result = control_step(core, session, step(3, 1.0, state_of(track), want_plan=True), 50.0, "v7", 1.0)
    reply = parse_reply(result.reply)
    assert isinstance(reply, ActionReply) and reply.seq == 3 and reply.model == "v7" and reply.status == "ok"
    assert (reply.action.steer_rate, reply.action.accel) == result.outcome.action
    assert len(reply.plan) == 15
    record = step_record(session.id, session.episode, step(3, 1.0, state_of(track)), result.outcome, 50.0, 50.01, "ilqr", "v7")
    assert record["session"] == "t.1" and record["episode"] == 0 and record["state"]["yaw_rate"] is None
    assert record["action"] == {"steer_rate": reply.action.steer_rate, "accel": reply.action.accel}


def test_two_cars_never_share_a_warm_start_or_a_reset(track) -> None:
    """Car A's plans are the same whether or not car B steps in between, and B's reset
    leaves A's warm start alone."""
    alone_core = make_core(track)
    alone, _ = table(alone_core).open(b"a", now=0.0)
    shared_core = make_core(track)
    sessions = table(shared_core)
    a, _ = sessions.open(b"a", now=0.0)
    b, _ = sessions.open(b"b", now=0.0)
    xa, xb = state_of(track, 8.0), state_of(track, 3.0, offset=1.5)
    for k in range(6):
        t = 0.05 * k
        want = control_step(alone_core, alone, step(k, t, xa), t, "m", 1.0).outcome
        control_step(shared_core, b, step(k, t, xb), t, "m", 1.0)
        got = control_step(shared_core, a, step(k, t, xa), t, "m", 1.0).outcome
        np.testing.assert_allclose(got.plan, want.plan, atol=1e-9)
        if k == 3:
            b.new_episode()
            assert b.car.plan is None and a.car.plan is not None and a.episode == 0 and b.episode == 1
    assert a.car.last is not b.car.last


def test_busy_until_the_holder_idles_or_says_bye(track) -> None:
    sessions = table(make_core(track), max_sessions=1, idle_s=2.0)
    first, _ = sessions.open(b"a", now=0.0)
    with pytest.raises(Refused, match="busy"):
        sessions.open(b"b", now=1.0)
    assert sessions.open(b"a", now=1.5)[0] is first  # the holder keeps its place
    second, closed = sessions.open(b"b", now=3.6)  # a silent for 2.1 s
    assert closed == [first] and second.id == "t.2" and sessions.get(b"a") is None
    sessions.close(b"b")
    third, closed = sessions.open(b"c", now=3.7)  # bye: free at once
    assert closed == [] and sessions.by_id("t.3") is third


def test_a_car_that_does_not_fit_the_budget_is_refused_but_the_first_always_is_served(track) -> None:
    sessions = table(make_core(track), max_sessions=4)
    sessions.open(b"a", now=0.0, fits=False)
    with pytest.raises(Refused, match="solve budget"):
        sessions.open(b"b", now=0.0, fits=False)
    assert len(sessions) == 1


def test_repeated_failures_are_logged_once_then_with_counts(caplog) -> None:
    import logging

    from controller.ratelog import RateLimitedLog

    limited = RateLimitedLog(logging.getLogger("test.ratelog"), interval_s=5.0)
    with caplog.at_level(logging.WARNING, logger="test.ratelog"):
        for i in range(1000):
            limited.note("error reply stale", f"seq {i}", now=0.001 * i)  # one second of a flood
        limited.note("error reply busy", "seq 0", now=1.0)
        limited.flush(now=2.0)  # not due yet
        limited.flush(now=5.5)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "error reply stale: seq 0",
        "error reply busy: seq 0",
        "error reply stale: 999 in the last 6 s (1000 in all); last: seq 999",
    ]
    assert limited.total("error reply stale") == 1000
