"""The daemon's transition log: MCAP files of JSON messages, crash-safe, with a reader.

See docs/log_format.md. Writing: ``TransitionLog`` (``step`` only enqueues; a thread writes).
Reading: ``read_log`` (tolerates files cut by a crash), ``load_steps`` (columns),
``transitions`` ((state, action, next state, dt) within episodes), ``events``.
Export: ``export`` (Parquet or CSV), also ``python -m controller.translog export``.
"""

from controller.translog.export import export, write_table
from controller.translog.reader import (
    LogError,
    LogRecord,
    ReadReport,
    Steps,
    Transitions,
    events,
    load_steps,
    log_files,
    read_log,
    read_records,
    transitions,
)
from controller.translog.schema import (
    ACTION_FIELDS,
    EVENT_TOPIC,
    STATE_FIELDS,
    STEP_TOPIC,
    TRACK_TOPIC,
)
from controller.translog.writer import TransitionLog

__all__ = [
    "ACTION_FIELDS",
    "EVENT_TOPIC",
    "LogError",
    "LogRecord",
    "ReadReport",
    "STATE_FIELDS",
    "STEP_TOPIC",
    "TRACK_TOPIC",
    "Steps",
    "TransitionLog",
    "Transitions",
    "events",
    "export",
    "load_steps",
    "log_files",
    "read_log",
    "read_records",
    "transitions",
    "write_table",
]
