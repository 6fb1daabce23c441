"""Log lines for repeated failures: the first with its detail, then one per interval with a count.

A fault that repeats on every control step (a full disk, a flooding client) must be visible
without writing a line per step: ``RateLimitedLog.note(kind, message)`` logs the first
occurrence of each kind at once, then at most one line per ``interval_s`` per kind carrying
how many occurred since the last line and in all. ``flush()`` writes the pending counts (at
shutdown, or from a periodic tick so a burst that stops is still reported).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass


@dataclass
class _Kind:
    total: int = 0
    since_line: int = 0
    last_line: float = float("-inf")
    last_message: str = ""


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, level: int = logging.WARNING, interval_s: float = 5.0):
        self.logger, self.level, self.interval_s = logger, level, interval_s
        self._kinds: dict[str, _Kind] = {}

    def note(self, kind: str, message: str, now: float | None = None, exc_info: bool = False) -> None:
        """One occurrence of ``kind``; logged now if it is the first or the interval has passed."""
        now = time.monotonic() if now is None else now
        k = self._kinds.setdefault(kind, _Kind())
        k.total += 1
        k.since_line += 1
        k.last_message = message
        if now - k.last_line >= self.interval_s:
            self._line(kind, k, now, exc_info and k.total == 1)

    def flush(self, now: float | None = None, force: bool = False) -> None:
        """Write each kind's pending count whose interval has passed (all of them if ``force``)."""
        now = time.monotonic() if now is None else now
        for kind, k in self._kinds.items():
            if k.since_line and (force or now - k.last_line >= self.interval_s):
                self._line(kind, k, now, False)

    def total(self, kind: str) -> int:
        k = self._kinds.get(kind)
        return 0 if k is None else k.total

    def _line(self, kind: str, k: _Kind, now: float, exc_info: bool) -> None:
        if k.total == 1:
            self.logger.log(self.level, "%s: %s", kind, k.last_message, exc_info=exc_info)
        else:
            self.logger.log(
                self.level, "%s: %d in the last %.0f s (%d in all); last: %s",
                kind, k.since_line, min(now - k.last_line, 1e9), k.total, k.last_message,
            )
        k.since_line, k.last_line = 0, now
