"""Repeated failures reported at a bounded rate: the first with its detail, then one report
per interval with a count.

A fault that repeats on every control step (a full disk, a flooding client, a client sending
malformed bodies) must be visible without a line or a log record per step.
``RateLimiter.note(kind, detail)`` reports the first occurrence of each kind at once, then at
most one report per ``interval_s`` per kind carrying how many occurred since the last report
and in all, with the latest detail. ``flush()`` reports the pending counts (at shutdown, or from
a periodic tick so a burst that stops is still reported). Where a report goes is the caller's
``emit``: ``RateLimitedLog`` writes log lines, the daemon writes ``error`` events to the
transition log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Detail = TypeVar("Detail")


@dataclass(frozen=True)
class Report(Generic[Detail]):
    kind: str
    count: int  #: occurrences since the previous report of this kind
    total: int  #: occurrences in all
    seconds: float  #: since the previous report (inf for the first)
    detail: Detail  #: the latest occurrence's


@dataclass
class _Kind:
    total: int = 0
    since_report: int = 0
    last_report: float = float("-inf")
    detail: Any = None


class RateLimiter(Generic[Detail]):
    def __init__(self, emit: Callable[[Report[Detail]], None], interval_s: float = 5.0):
        self.emit, self.interval_s = emit, interval_s
        self._kinds: dict[str, _Kind] = {}

    def note(self, kind: str, detail: Detail, now: float | None = None) -> None:
        """One occurrence of ``kind``; reported now if it is the first or the interval has passed."""
        now = time.monotonic() if now is None else now
        k = self._kinds.setdefault(kind, _Kind())
        k.total += 1
        k.since_report += 1
        k.detail = detail
        if now - k.last_report >= self.interval_s:
            self._report(kind, k, now)

    def flush(self, now: float | None = None, force: bool = False) -> None:
        """Report each kind's pending count whose interval has passed (all of them if ``force``)."""
        now = time.monotonic() if now is None else now
        for kind, k in self._kinds.items():
            if k.since_report and (force or now - k.last_report >= self.interval_s):
                self._report(kind, k, now)

    def total(self, kind: str) -> int:
        k = self._kinds.get(kind)
        return 0 if k is None else k.total

    def _report(self, kind: str, k: _Kind, now: float) -> None:
        report = Report(kind, k.since_report, k.total, now - k.last_report, k.detail)
        k.since_report, k.last_report = 0, now
        self.emit(report)


class RateLimitedLog:
    """Log lines through a ``RateLimiter``: ``note(kind, message)``."""

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING, interval_s: float = 5.0):
        self.logger, self.level = logger, level
        self._limiter: RateLimiter[tuple[str, bool]] = RateLimiter(self._line, interval_s)

    def note(self, kind: str, message: str, now: float | None = None, exc_info: bool = False) -> None:
        self._limiter.note(kind, (message, exc_info), now)

    def flush(self, now: float | None = None, force: bool = False) -> None:
        self._limiter.flush(now, force)

    def total(self, kind: str) -> int:
        return self._limiter.total(kind)

    def _line(self, r: Report[tuple[str, bool]]) -> None:
        message, exc_info = r.detail
        if r.total == 1:
            self.logger.log(self.level, "%s: %s", r.kind, message, exc_info=exc_info)
        else:
            self.logger.log(
                self.level, "%s: %d in the last %.0f s (%d in all); last: %s",
                r.kind, r.count, min(r.seconds, 1e9), r.total, message,
            )
