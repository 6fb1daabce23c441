"""Topics and JSON schemas of the log's two channels.

The schemas are embedded in every file (schema encoding ``jsonschema``, message encoding
``json``), so Foxglove and the ``mcap`` CLI show field names and units without this package.
Field names are those of ``vehicle_models.layout``, spelled out here rather than imported:
importing that package loads torch, which reading a log must not need (a test keeps the two
in step).
"""

from __future__ import annotations

import json
from typing import Any

STEP_TOPIC = "/controller/step"
EVENT_TOPIC = "/controller/event"
TRACK_TOPIC = "/controller/track"  #: once at the start of each file (controller.track.identity)
STEP_SCHEMA_NAME = "vehicle_mpc.Step"
EVENT_SCHEMA_NAME = "vehicle_mpc.Event"
TRACK_SCHEMA_NAME = "vehicle_mpc.Track"

#: State and action fields in layout order: the columns of ``Steps.states`` / ``Steps.actions``.
STATE_FIELDS: tuple[str, ...] = ("x", "y", "steer", "v", "yaw", "yaw_rate", "slip")
ACTION_FIELDS: tuple[str, ...] = ("steer_rate", "accel")

#: Event kinds the daemon writes, and what each carries besides kind, time and episode.
EVENT_KINDS: dict[str, str] = {
    "start": "model (version), endpoint, max_sessions",
    "session_open": "identity (the car's ROUTER identity, hex); session and episode set",
    "session_close": "reason (bye or idle), steps",
    "reset": "(nothing else: session is the car's, episode its new episode)",
    "reload": "model (new version), previous",
    "reload_failed": "error, kept (the version still in use)",
    "error": "code, message, seq (of the latest request, may be null), count (errors of this code "
    "since the previous error event), total (in all); at most one per code every 5 s",
    "stop": "stats (the daemon's counters)",
}

_NUMBER = {"type": "number"}
_OPTIONAL_NUMBER = {"type": ["number", "null"]}
_STATE_UNITS = {
    "x": "[m]",
    "y": "[m]",
    "steer": "[rad]",
    "v": "[m/s]",
    "yaw": "[rad]",
    "yaw_rate": "[rad/s]; null when not measured",
    "slip": "[rad]; null when not measured",
}
_OPTIONAL_STATE = ("yaw_rate", "slip")  # dynamic-model fields a sender may not measure
_ACTION_UNITS = {"steer_rate": "[rad/s]", "accel": "[m/s^2]"}

STEP_SCHEMA: dict[str, Any] = {
    "title": STEP_SCHEMA_NAME,
    "description": "One control step: the state received and the action replied.",
    "type": "object",
    "properties": {
        "session": {
            "type": "string",
            "description": "the car's session, <daemon run>.<n>; transitions never cross sessions",
        },
        "episode": {"type": "integer", "description": "the session's episode; a reset starts a new one"},
        "seq": {"type": "integer", "description": "the request's sequence number"},
        "stamp": {**_NUMBER, "description": "sender's stamp of the state [s]"},
        "received": {**_NUMBER, "description": "daemon clock at receipt, Unix time [s]"},
        "replied": {**_NUMBER, "description": "daemon clock at reply, Unix time [s]"},
        "state": {
            "type": "object",
            "properties": {
                f: {**(_OPTIONAL_NUMBER if f in _OPTIONAL_STATE else _NUMBER), "description": u}
                for f, u in _STATE_UNITS.items()
            },
            "required": ["x", "y", "steer", "v", "yaw"],
        },
        "action": {
            "type": "object",
            "description": "the action replied; it holds until the next step's action",
            "properties": {f: {**_NUMBER, "description": u} for f, u in _ACTION_UNITS.items()},
            "required": list(_ACTION_UNITS),
        },
        "status": {"type": "string", "enum": ["ok", "fallback", "stop"]},
        "solve_ms": {**_NUMBER, "description": "time in the planner [ms]"},
        "deadline_missed": {"type": "boolean", "description": "the step overran its solve budget"},
        "cost": {**_OPTIONAL_NUMBER, "description": "total cost of the plan; null without a plan"},
        "cost_terms": {
            "type": "object",
            "description": "each cost term's share of cost, by term name",
            "additionalProperties": _OPTIONAL_NUMBER,
        },
        "planner": {"type": "string", "description": "planner name, e.g. mppi or ilqr"},
        "model": {"type": "string", "description": "model version in use"},
    },
    "required": ["session", "episode", "seq", "stamp", "received", "replied", "state", "action", "status"],
}

EVENT_SCHEMA: dict[str, Any] = {
    "title": EVENT_SCHEMA_NAME,
    "description": "Something that happened outside the step flow. detail by kind: "
    + "; ".join(f"{k}: {v}" for k, v in EVENT_KINDS.items()),
    "type": "object",
    "properties": {
        "kind": {"type": "string", "description": "one of " + ", ".join(EVENT_KINDS)},
        "time": {**_NUMBER, "description": "daemon clock, Unix time [s]"},
        "session": {"type": "string", "description": "the car's session, when the event concerns one"},
        "episode": {"type": "integer", "description": "that session's episode after the event"},
        "detail": {"type": "object", "description": "kind-specific fields (see description)"},
    },
    "required": ["kind", "time", "detail"],
}


TRACK_SCHEMA: dict[str, Any] = {
    "title": TRACK_SCHEMA_NAME,
    "description": "The track the daemon drives on; written once at the start of every file.",
    "type": "object",
    "properties": {
        "version": {"type": "integer"},
        "name": {"type": "string"},
        "source": {"type": "string", "description": "built-in name or the CSV path given"},
        "sha256": {"type": "string", "description": "digest of the geometry in millimetres"},
        "length_m": {**_NUMBER, "description": "lap length [m]"},
        "columns": {"type": "array", "items": {"type": "string"}},
        "geometry": {
            "type": "array",
            "description": "resampled centre line: x, y, right width, left width [m]",
            "items": {"type": "array", "items": _NUMBER},
        },
    },
    "required": ["name", "source", "sha256", "geometry"],
}


def encoded(schema: dict[str, Any]) -> bytes:
    """A schema as the bytes stored in an MCAP Schema record."""
    return json.dumps(schema, separators=(",", ":")).encode()
