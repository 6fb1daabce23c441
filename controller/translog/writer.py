"""Writing the transition log off the control path.

``TransitionLog.step(record)`` puts a dict on a queue and returns (microseconds); a writer
thread serialises records as JSON into MCAP messages and hands them to the OS at least every
``flush_s`` seconds. Files are written unchunked, so every message is complete on disk as soon
as it is flushed: a process killed with SIGKILL loses at most the records of the last
``flush_s`` (OS buffers survive the process; only a power cut needs fsync, done on rotation and
close). Files rotate by size or age: ``<prefix>-<UTC start time>-<index>.mcap``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mcap.writer import CompressionType, Writer

from controller.translog.schema import EVENT_SCHEMA, STEP_SCHEMA, encoded

log = logging.getLogger(__name__)

STEP_TOPIC = "/controller/step"
EVENT_TOPIC = "/controller/event"
_STOP = object()


class TransitionLog:
    def __init__(
        self,
        directory: str | Path,
        prefix: str = "controller",
        rotate_bytes: int = 64 << 20,
        rotate_s: float = 600.0,
        flush_s: float = 0.5,
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.flush_s = flush_s
        self.files: list[Path] = []
        self.records_written = 0
        self.write_errors = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._index = 0
        self._stream: Any = None
        self._writer: Writer | None = None
        self._opened_at = 0.0
        self._open()  # in the caller's thread: a bad directory fails at start, loudly
        self._thread = threading.Thread(target=self._run, name="transition-log", daemon=True)
        self._thread.start()

    # -- the caller's side: enqueue only ------------------------------------------------------
    def step(self, record: dict[str, Any]) -> None:
        self._queue.put((STEP_TOPIC, time.time_ns(), record))

    def event(self, kind: str, **detail: Any) -> None:
        record = {"kind": kind, "time": time.time(), "detail": detail}
        if "episode" in detail:
            record["episode"] = detail["episode"]
        self._queue.put((EVENT_TOPIC, time.time_ns(), record))

    def close(self, timeout_s: float = 5.0) -> None:
        """Write everything queued, finish the file, stop the thread."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("transition log did not finish within %.1f s", timeout_s)

    def __enter__(self) -> "TransitionLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ------------------------------------------------------------------
    def _open(self) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = self.directory / f"{self.prefix}-{stamp}-{self._index:04d}.mcap"
        self._index += 1
        self._stream = open(path, "wb")
        self._writer = Writer(self._stream, use_chunking=False, compression=CompressionType.NONE)
        self._writer.start(profile="", library="vehicle-mpc")
        step_schema = self._writer.register_schema("vehicle_mpc.Step", "jsonschema", encoded(STEP_SCHEMA))
        event_schema = self._writer.register_schema("vehicle_mpc.Event", "jsonschema", encoded(EVENT_SCHEMA))
        self._channels = {
            STEP_TOPIC: self._writer.register_channel(STEP_TOPIC, "json", step_schema),
            EVENT_TOPIC: self._writer.register_channel(EVENT_TOPIC, "json", event_schema),
        }
        self._sequence = 0
        self._opened_at = time.monotonic()
        self._stream.flush()
        self.files.append(path)

    def _finish(self) -> None:
        if self._writer is None:
            return
        try:
            self._writer.finish()
            self._stream.flush()
            os.fsync(self._stream.fileno())
        finally:
            self._stream.close()
            self._writer = None

    def _write(self, item: tuple[str, int, dict[str, Any]]) -> None:
        topic, log_time, record = item
        try:
            data = json.dumps(record, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError):
            # NaN (never on the wire after validation, but cost terms may be) becomes null.
            data = json.dumps(_finite(record), separators=(",", ":")).encode()
        self._sequence += 1
        assert self._writer is not None
        self._writer.add_message(self._channels[topic], log_time, data, log_time, self._sequence)
        self.records_written += 1

    def _run(self) -> None:
        last_flush = time.monotonic()
        running = True
        while running:
            try:
                item = self._queue.get(timeout=self.flush_s)
            except queue.Empty:
                item = None
            try:
                if item is _STOP:
                    running = False
                elif item is not None:
                    self._write(item)
                now = time.monotonic()
                if now - last_flush >= self.flush_s or not running:
                    self._stream.flush()
                    last_flush = now
                if running and (
                    self._stream.tell() >= self.rotate_bytes or now - self._opened_at >= self.rotate_s
                ):
                    self._finish()
                    self._open()
            except Exception:  # a full disk must not take the controller down
                self.write_errors += 1
                log.exception("transition log write failed")
        self._finish()


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
