"""Log lines as JSON objects, one per line (``python -m controller --log-json``), for journald,
Loki, Elasticsearch and the like: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
and ``exception`` (the formatted traceback) where there is one."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def use_json_lines(level: int) -> None:
    """Route every log record to stderr as one JSON object per line."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
