"""The control step as a pure function: a session and a request in, a reply and a record out.

``control_step`` holds the staleness rules and the mapping of an outcome to its reply; ``step_record``
maps the same outcome to its log record. Neither touches a socket, a clock or a file, so each
rule is tested directly (tests/controller/test_control_step.py); the daemon only receives,
decodes, calls, sends and logs.

Staleness, per session (the sender's clock and ours advance alike unless a request sat in a
queue on the way):
- a stamp at or before the last accepted one is stale (it goes back in time, or repeats);
- a step that arrived more than ``stale_after_s`` later than the stamps imply, measured since
  the previous step, is stale; its stamp is still taken as the new reference, so the next
  step on time is served.

A retry is not stale: a step with the same ``seq`` and stamp as the session's last served
one (a client that timed out and resent it over a fresh socket, after the first copy had
arrived) gets that step's reply again, without planning, stepping the car or a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller import protocol as wire
from controller.core import ControlCore, StepOutcome
from controller.protocol import ErrorCode
from controller.sessions import Session


@dataclass(frozen=True, slots=True)
class StepResult:
    reply: dict[str, Any]  #: the reply map to send
    outcome: StepOutcome | None  #: None when nothing was planned (``reply`` is an error or a repeat)
    code: ErrorCode | None = None  #: the error code of a refusal
    repeated: bool = False  #: a retry of the last served step, answered with its reply


def stale_reason(session: Session, stamp: float, received: float, stale_after_s: float) -> str | None:
    """Why a step stamped ``stamp``, received at ``received``, is stale; None if it is not.

    Updates the session's reference stamps as the rules above say.
    """
    previous_stamp, previous_received = session.last_stamp, session.last_received
    if previous_stamp is not None and stamp <= previous_stamp:
        return f"stamp {stamp} is not after the previous step's {previous_stamp}"
    session.last_stamp, session.last_received = stamp, received
    if previous_stamp is not None and previous_received is not None:
        delayed = (received - previous_received) - (stamp - previous_stamp)
        if delayed > stale_after_s:
            return f"arrived {delayed:.3f} s later than its stamp implies"
    return None


def control_step(
    core: ControlCore,
    session: Session,
    request: wire.Step,
    received: float,
    model_version: str,
    stale_after_s: float,
    budget_s: float | None = None,
) -> StepResult:
    """Check freshness, step the session's car, and map the outcome to its reply."""
    last = session.last_reply
    if last is not None and last[0] == request.seq and last[1] == request.stamp:
        return StepResult(last[2], None, repeated=True)
    stale = stale_reason(session, request.stamp, received, stale_after_s)
    if stale is not None:
        return StepResult(wire.error_reply(ErrorCode.STALE, stale, request.seq), None, ErrorCode.STALE)
    outcome = core.step(request.state, request.stamp, session.car, budget_s)
    session.steps += 1
    plan = outcome.plan.tolist() if (request.want_plan and outcome.plan is not None) else None
    reply = wire.action_reply(
        request.seq,
        outcome.status,
        outcome.action[0],
        outcome.action[1],
        outcome.solve_ms,
        model_version,
        plan,
        outcome.cost,
    )
    session.last_reply = (request.seq, request.stamp, reply)
    return StepResult(reply, outcome)


def step_record(
    session_id: str,
    episode: int,
    request: wire.Step,
    outcome: StepOutcome,
    received: float,
    replied: float,
    planner: str,
    model_version: str,
) -> dict[str, Any]:
    """The step's log record (controller.translog.schema.STEP_SCHEMA)."""
    return {
        "session": session_id,
        "episode": episode,
        "seq": request.seq,
        "stamp": request.stamp,
        "received": received,
        "replied": replied,
        "state": request.state_fields(),
        "action": {"steer_rate": outcome.action[0], "accel": outcome.action[1]},
        "status": outcome.status,
        "solve_ms": outcome.solve_ms,
        "deadline_missed": outcome.deadline_missed,
        "cost": outcome.cost,
        "cost_terms": outcome.cost_terms,
        "planner": planner,
        "model": model_version,
    }
