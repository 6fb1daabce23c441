"""Writing the transition log off the control path.

``TransitionLog.step(record)`` puts the caller's dict on a ``queue.SimpleQueue`` and returns: a
few microseconds, no serialisation, no I/O, no lock the writer could hold for long. A writer
thread encodes each record as JSON into an MCAP message and hands the file's buffer to the OS
no later than ``flush_s`` after the oldest unflushed record was queued (in a steady stream,
right after a record in the second half of that window, so flushes follow the daemon's
replies instead of landing on a timer in the middle of the next solve).

Crash safety: files are written unchunked, so each message is a complete MCAP record on its
own the moment its bytes reach the OS, and a reader can stream a file that has no summary or
footer. A process killed with SIGKILL therefore loses at most the records of the last
``flush_s`` (more only if the thread had fallen behind, e.g. on a stalled disk); bytes handed
to the OS survive the process. Only a power cut needs fsync, done at rotation and close.
``close()`` writes everything queued before it, finishes the file (summary, footer) and joins
the thread.

Files: ``<prefix>-<UTC start, YYYYmmddTHHMMSS.mmmZ>-<index>.mcap``, a new one when the current
file passes ``rotate_bytes`` or ``rotate_s``; name order is write order. Names are created
exclusively, so a restart within the same millisecond cannot overwrite a file.

Faults: a write that fails (a full disk, an unwritable directory) drops the current file and
the record; the next file is tried only after a back-off that doubles from ``RETRY_MIN_S`` to
``RETRY_MAX_S``, and records queued meanwhile are dropped and counted, so a full disk costs at
most one file attempt per back-off, never one per record. A file that failed before any
record reached it is removed. Every failure kind (``open``, ``write``, ``encode``) gets a
rate-limited log line with a count, and ``health()`` reports records written and dropped,
bytes, files and the last error (the daemon's ``stats``).

JSON: the stdlib encoder. It runs on the writer thread (about 10 us a record against a control
period of tens of ms), so orjson would buy nothing the control loop can see and add a
dependency.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from mcap.writer import CompressionType, Writer

from controller.ratelog import RateLimitedLog
from controller.translog.schema import (
    EVENT_SCHEMA,
    EVENT_SCHEMA_NAME,
    EVENT_TOPIC,
    STEP_SCHEMA,
    STEP_SCHEMA_NAME,
    STEP_TOPIC,
    TRACK_SCHEMA,
    TRACK_SCHEMA_NAME,
    TRACK_TOPIC,
    encoded,
)

log = logging.getLogger(__name__)

_STOP = object()  # queued by close(): everything before it gets written
_LIBRARY = "vehicle-mpc translog"
RETRY_MIN_S = 0.25  #: first wait before a new file is tried after a failure
RETRY_MAX_S = 8.0  #: the longest wait between attempts


class TransitionLog:
    """The daemon's log: ``step`` and ``event`` enqueue; a thread writes MCAP files.

    A record handed to ``step`` belongs to the log from then on: the caller must not mutate it
    (the daemon builds a fresh dict per step), because it is encoded later, on another thread.
    """

    def __init__(
        self,
        directory: str | Path,
        prefix: str = "controller",
        rotate_bytes: int = 64 << 20,
        rotate_s: float = 600.0,
        flush_s: float = 0.5,
        track: dict[str, Any] | None = None,
        scene: Any = None,
        live: Any = None,
    ) -> None:
        """``track``: ``controller.track.identity.describe(...)``, written first in every file.
        ``scene``: a ``controller.foxglove_scene.SceneEncoder``: the Foxglove 3D topics (the
        track once per file, the car and its plan per step) are written beside the records.
        ``live``: a ``controller.foxglove_live.LiveView`` that gets the same messages, from
        this log's writer thread."""
        if rotate_bytes <= 0 or rotate_s <= 0 or flush_s <= 0:
            raise ValueError("rotate_bytes, rotate_s and flush_s must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.flush_s = flush_s
        self._track = to_json(track) if track is not None else None
        self._scene, self._live = scene, live
        self.scene_errors = 0  #: steps whose Foxglove messages could not be built or sent
        self._track_scene = None
        if scene is not None and track is not None:
            from controller.foxglove_scene import track_update

            self._track_scene = track_update(track)
        self.files: list[Path] = []  #: every file started, in order
        self.records_written = 0
        self.records_dropped = 0  #: lost to a failed write or a back-off (not bad_records)
        self.bytes_written = 0  #: of records handed to finished or flushed files
        self.write_errors = 0  #: failed writes or opens (a full disk); each drops the current file
        self.bad_records = 0  #: records JSON could not encode, dropped
        self.dropped_after_close = 0
        self.last_error: str | None = None
        self.last_error_time: float | None = None  #: Unix time [s]
        self._failures = RateLimitedLog(log, logging.ERROR, interval_s=5.0)
        self._retry_at = 0.0  #: monotonic time before which no new file is tried
        self._retry_wait = RETRY_MIN_S
        self._file_records = 0  #: records in the current file
        self._file_flushed = 0  #: of which handed to the OS (a failed file without any is removed)
        self._pending_record = False  #: a record was being added when a write failed
        self._bytes_before = 0  #: bytes of the files before the current one
        self._path: Path | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._index = 0
        self._stream: BinaryIO | None = None
        self._writer: Writer | None = None
        self._channels: dict[str, int] = {}
        self._sequence = 0
        self._opened_ns = 0
        self._open()  # in the caller's thread: an unwritable directory fails at start, loudly
        self._thread = threading.Thread(target=self._run, name="transition-log", daemon=True)
        self._thread.start()

    # -- the control loop's side: enqueue only -------------------------------------------------
    def step(self, record: dict[str, Any], plan: Any = None) -> None:
        """Queue one step record (see ``schema.STEP_SCHEMA``); never blocks, never raises.
        ``plan``: the (H, 2) actions the step's action came from, for the Foxglove scene."""
        if self._closed:
            self.dropped_after_close += 1
            return
        self._queue.put((STEP_TOPIC, time.time_ns(), record) if plan is None else (STEP_TOPIC, time.time_ns(), record, plan))

    def event(self, kind: str, episode: int | None = None, session: str | None = None, **detail: Any) -> None:
        """Queue an event (``schema.EVENT_KINDS``): start, reset, reload, error, ...; ``session``
        and ``episode`` when it concerns one car."""
        if self._closed:
            self.dropped_after_close += 1
            return
        now_ns = time.time_ns()
        record: dict[str, Any] = {"kind": kind, "time": now_ns * 1e-9, "detail": detail}
        if session is not None:
            record["session"] = session
        if episode is not None:
            record["episode"] = episode
        self._queue.put((EVENT_TOPIC, now_ns, record))

    def close(self, timeout_s: float = 5.0) -> bool:
        """Write everything queued so far, finish the file, stop the thread.

        Returns False if the thread did not finish within ``timeout_s`` (a stalled disk); the
        daemon then exits anyway and the file reads like one cut by a crash.
        """
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("transition log did not finish within %.1f s", timeout_s)
            return False
        return True

    def health(self) -> dict[str, Any]:
        """The log's counters, safe to read from another thread (plain ints and strings)."""
        return {
            "records_written": self.records_written,
            "records_dropped": self.records_dropped + self.bad_records + self.dropped_after_close,
            "bytes": self.bytes_written,
            "files": len(self.files),
            "write_errors": self.write_errors,
            "last_error": self.last_error,
            "last_error_time": self.last_error_time,
            "writing": self._writer is not None,
        }

    def __enter__(self) -> TransitionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        flush_at: float | None = None  # when the oldest unflushed record must reach the OS
        while True:
            timeout = None if flush_at is None else max(0.0, flush_at - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            try:
                if item is not None:
                    self._write(item)
                    if flush_at is None:  # counted from when the record was queued
                        waited_s = (time.time_ns() - item[1]) * 1e-9
                        flush_at = time.monotonic() + self.flush_s - max(0.0, waited_s)
                now = time.monotonic()
                self._failures.flush(now)
                # Flush when due, or early (in the second half of the window) right after a
                # record with nothing else queued: the daemon queues records after its replies,
                # so a steady loop flushes in its idle time, and the timer only fires once
                # records stop coming, never in the middle of a solve.
                if flush_at is not None and (
                    now >= flush_at
                    or (item is not None and flush_at - now <= 0.5 * self.flush_s and self._queue.empty())
                ):
                    flush_at = None
                    if self._stream is not None:
                        self._stream.flush()
                        self._file_flushed = self._file_records
                        self.bytes_written = self._bytes_before + self._stream.tell()
            except Exception as e:  # a full disk must not take the controller down
                self._failed("write", e)
        try:
            self._finish()
        except Exception as e:
            self._failed("write", e)
        self._failures.flush(force=True)

    def _write(self, item: tuple[Any, ...]) -> None:
        topic, log_time, record = item[:3]
        try:
            data = to_json(record)
        except Exception as e:  # a cycle, or changed while encoded: drop this record, keep the file
            self.bad_records += 1
            self._failures.note("transition log record not encodable, dropped", f"{type(e).__name__}: {e}", exc_info=True)
            return
        self._pending_record = True  # until it is in a file: lost (and counted) if this fails
        if self._writer is not None and self._due_for_rotation(log_time):
            # Rotate before writing, not after: an idle daemon leaves no empty files behind.
            self._finish()
        if self._writer is None:  # no file (rotated, or the last one failed): start one
            if time.monotonic() < self._retry_at:
                self._pending_record = False
                self.records_dropped += 1
                return
            try:
                self._open(log_time)
            except Exception as e:
                self._failed("open", e)
                return
        assert self._writer is not None
        self._sequence += 1
        self._writer.add_message(self._channels[topic], log_time, data, log_time, self._sequence)
        self._pending_record = False
        self.records_written += 1
        if topic == STEP_TOPIC and (self._scene is not None or self._live is not None):
            self._write_scene(log_time, data, record, item[3] if len(item) > 3 else None)
        self._file_records += 1

    def _write_scene(self, log_time: int, data: bytes, record: dict[str, Any], plan: Any) -> None:
        """The Foxglove topics of a step record, into the file and to the live view. A failure
        here costs the picture of this step, never the file or the record."""
        try:
            updates = self._scene.step_updates(record, plan) if self._scene is not None else []
            if self._live is not None:
                self._live.publish([(STEP_TOPIC, data), *updates], log_time)
        except Exception as e:
            self.scene_errors += 1
            if self.scene_errors == 1:
                log.warning("Foxglove scene of a step failed (%s: %s); further failures not logged", type(e).__name__, e)
            return
        for topic, message in updates:
            if self._writer is not None and topic in self._channels:
                self._sequence += 1
                self._writer.add_message(self._channels[topic], log_time, message, log_time, self._sequence)

    def _due_for_rotation(self, log_time_ns: int) -> bool:
        # Age by the records' own queue times, not by when this thread gets to them: a writer
        # thread descheduled for a while must not merge records into one file.
        assert self._stream is not None
        too_big = self._stream.tell() >= self.rotate_bytes
        return too_big or (log_time_ns - self._opened_ns) * 1e-9 >= self.rotate_s

    def _open(self, opened_ns: int | None = None) -> None:
        while True:
            now = datetime.now(timezone.utc)
            stamp = now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"
            path = self.directory / f"{self.prefix}-{stamp}-{self._index:04d}.mcap"
            self._index += 1
            try:
                stream = open(path, "xb")
                break
            except FileExistsError:
                continue
        try:
            writer = self._start(stream)
        except BaseException:  # e.g. no space for the header: leave no empty file behind
            try:
                stream.close()  # flushes again, and fails again on a full disk
            except OSError:
                pass
            path.unlink(missing_ok=True)
            raise
        self._stream, self._writer = stream, writer
        self._sequence = 0
        self._file_records = self._file_flushed = 0
        self._bytes_before = self.bytes_written
        self._opened_ns = time.time_ns() if opened_ns is None else opened_ns
        self.files.append(path)
        self._path = path
        self._retry_wait = RETRY_MIN_S  # a file opened: the next failure backs off from the start

    def _start(self, stream: BinaryIO) -> Writer:
        """Header, schemas and channels, pushed to the OS (raises on a full disk)."""
        writer = Writer(stream, use_chunking=False, compression=CompressionType.NONE)
        writer.start(profile="", library=_LIBRARY)
        step_schema = writer.register_schema(STEP_SCHEMA_NAME, "jsonschema", encoded(STEP_SCHEMA))
        event_schema = writer.register_schema(
            EVENT_SCHEMA_NAME, "jsonschema", encoded(EVENT_SCHEMA)
        )
        self._channels = {
            STEP_TOPIC: writer.register_channel(STEP_TOPIC, "json", step_schema),
            EVENT_TOPIC: writer.register_channel(EVENT_TOPIC, "json", event_schema),
        }
        if self._track is not None:  # every file says which track it was driven on
            track_schema = writer.register_schema(TRACK_SCHEMA_NAME, "jsonschema", encoded(TRACK_SCHEMA))
            channel = writer.register_channel(TRACK_TOPIC, "json", track_schema)
            now_ns = time.time_ns()
            writer.add_message(channel, now_ns, self._track, now_ns, 0)
        if self._track_scene is not None:  # Foxglove's 3D panel: track once, car and plan per step
            from controller.foxglove_scene import TOPICS, TRACK, schema

            fg = schema()
            fg_schema = writer.register_schema(fg.name, fg.encoding, fg.data)
            for topic in TOPICS:
                self._channels[topic] = writer.register_channel(topic, "protobuf", fg_schema)
            now_ns = time.time_ns()
            writer.add_message(self._channels[TRACK], now_ns, self._track_scene, now_ns, 0)
        # The unchunked writer holds schemas and channels until its next record; push them out
        # now so a file is readable (with no messages) from the start. Writer.flush is newer
        # than mcap 1.1; without it they go out with the first message.
        if hasattr(writer, "flush"):
            writer.flush()
        stream.flush()
        return writer

    def _finish(self) -> None:
        stream, writer = self._stream, self._writer
        self._stream = self._writer = None
        if stream is None:
            return
        try:
            if writer is not None:
                writer.finish()  # summary and footer: readers can seek, Foxglove indexes
            stream.flush()
            self._file_flushed = self._file_records
            self.bytes_written = self._bytes_before + stream.tell()
            os.fsync(stream.fileno())
        finally:
            stream.close()

    def _failed(self, kind: str, error: BaseException) -> None:
        self.write_errors += 1
        self.last_error = f"{kind}: {type(error).__name__}: {error}"
        self.last_error_time = time.time()
        # The first failure of a kind with its traceback, then a line with a count now and then.
        self._failures.note(f"transition log {kind} failed", self.last_error, exc_info=True)
        # Records handed to the file's buffer since its last flush are lost with it; the
        # record being written when the failure came too.
        unflushed = max(self._file_records - self._file_flushed, 0)
        self.records_written -= unflushed
        self.records_dropped += unflushed + (1 if self._pending_record else 0)
        self._pending_record = False
        # Drop the file: the next record starts a new one after the back-off (the old one reads
        # as truncated; an empty one is removed).
        stream, self._stream, self._writer = self._stream, None, None
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass
            if self._file_flushed == 0 and self._path is not None:
                try:
                    self._path.unlink(missing_ok=True)
                    self.files.remove(self._path)
                except (OSError, ValueError):
                    pass
        self._retry_at = time.monotonic() + self._retry_wait
        self._retry_wait = min(2 * self._retry_wait, RETRY_MAX_S)


def to_json(record: dict[str, Any]) -> bytes:
    """Compact JSON; NaN and infinities become null, numpy values plain numbers or lists."""
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=False, default=_plain).encode()
    except ValueError:  # a non-finite float somewhere: the slow path, rarely taken
        plain = _finite(record)
        return json.dumps(plain, separators=(",", ":"), allow_nan=False, default=_plain).encode()


def _plain(value: Any) -> Any:
    """json's fallback for types it does not know: numpy scalars and arrays, else str."""
    if hasattr(value, "tolist"):  # numpy scalar or array (no numpy import on this path)
        return _finite(value.tolist())
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    return value
