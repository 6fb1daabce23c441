"""The daemon's transition log: MCAP files of JSON messages, crash-safe, with a reader.

See docs/log_format.md. Writing: ``TransitionLog`` (background thread; ``step`` only enqueues).
Reading: ``read_records``, ``load_steps``, ``transitions``; export: ``export``.
"""

from controller.translog.reader import (
    LogError,
    ReadReport,
    Steps,
    Transitions,
    events,
    export,
    load_steps,
    log_files,
    read_records,
    transitions,
)
from controller.translog.writer import EVENT_TOPIC, STEP_TOPIC, TransitionLog

__all__ = [
    "EVENT_TOPIC",
    "LogError",
    "ReadReport",
    "STEP_TOPIC",
    "Steps",
    "TransitionLog",
    "Transitions",
    "events",
    "export",
    "load_steps",
    "log_files",
    "read_records",
    "transitions",
]
