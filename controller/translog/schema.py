"""JSON schemas of the log's two channels (embedded in every file; Foxglove shows them)."""

from __future__ import annotations

import json

_NUMBER = {"type": "number"}
_NULLABLE_NUMBER = {"type": ["number", "null"]}

STEP_SCHEMA = {
    "title": "vehicle_mpc.Step",
    "description": "One control step: the state received and the action replied.",
    "type": "object",
    "properties": {
        "episode": {"type": "integer", "description": "episode counter (reset starts a new one)"},
        "seq": {"type": "integer", "description": "the request's seq"},
        "stamp": {**_NUMBER, "description": "sender's stamp [s]"},
        "received": {**_NUMBER, "description": "daemon clock at receipt, Unix time [s]"},
        "replied": {**_NUMBER, "description": "daemon clock at reply, Unix time [s]"},
        "state": {
            "type": "object",
            "properties": {
                "x": _NUMBER, "y": _NUMBER, "steer": _NUMBER, "v": _NUMBER, "yaw": _NUMBER,
                "yaw_rate": _NULLABLE_NUMBER, "slip": _NULLABLE_NUMBER,
            },
        },
        "action": {
            "type": "object",
            "properties": {"steer_rate": _NUMBER, "accel": _NUMBER},
        },
        "status": {"type": "string", "enum": ["ok", "fallback", "stop"]},
        "solve_ms": _NUMBER,
        "deadline_missed": {"type": "boolean"},
        "cost": _NULLABLE_NUMBER,
        "cost_terms": {"type": "object", "additionalProperties": _NUMBER},
        "planner": {"type": "string"},
        "model": {"type": "string", "description": "model version"},
    },
    "required": ["episode", "seq", "stamp", "received", "replied", "state", "action", "status"],
}

EVENT_SCHEMA = {
    "title": "vehicle_mpc.Event",
    "description": "Something that happened outside the step flow.",
    "type": "object",
    "properties": {
        "kind": {"type": "string", "description": "start, reset, reload, reload_failed, error, stop"},
        "time": {**_NUMBER, "description": "Unix time [s]"},
        "episode": {"type": "integer"},
        "detail": {"type": "object"},
    },
    "required": ["kind", "time"],
}


def encoded(schema: dict) -> bytes:
    return json.dumps(schema, separators=(",", ":")).encode()
