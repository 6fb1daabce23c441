"""Reading transition logs, including files cut short by a crash.

``read_log`` streams the messages of one or more files (or directories of them) in name order,
which is write order. A file that ends inside a record (the writer was killed) yields every
complete record before the cut and stops there; ``ReadReport`` says which files were cut and
how many bytes at their ends could not be read. ``load_steps`` gathers step records into
columns, grouped by session (each car's steps together, in log order; sessions in the order
they first appear); ``transitions`` pairs consecutive steps of one session's episode into
(state, action, next state, dt), so two cars served by one daemon never make a pair.

How a cut is found: before parsing, the record frames (1-byte opcode, 8-byte length) are
walked to the end of the last complete record, and the mcap ``StreamReader`` is given only
that prefix. It never sees a partial record, so a cut anywhere (inside the magic, a length
field, a schema, a message body) ends the file cleanly instead of surfacing as one of the
several exceptions the parser raises on short reads.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, NamedTuple

import numpy as np
from mcap.exceptions import EndOfFile
from mcap.opcode import Opcode
from mcap.records import Channel, Message
from mcap.stream_reader import StreamReader

from controller.translog.schema import ACTION_FIELDS, EVENT_TOPIC, STATE_FIELDS, STEP_TOPIC

MAGIC = b"\x89MCAP0\r\n"
_FRAME = struct.Struct("<BQ")  # opcode, record length

Paths = str | Path | Iterable[str | Path]


class LogError(ValueError):
    """A log that cannot be read at all: missing, empty, or not MCAP."""


@dataclass
class ReadReport:
    """What reading found besides the records; filled in as the iterator is consumed."""

    files: int = 0
    records: int = 0  #: complete messages read (all topics)
    truncated_files: list[str] = field(default_factory=list)  #: cut inside a record (a crash)
    unfinished_files: list[str] = field(default_factory=list)  #: no footer: still open or killed
    unreadable_bytes: int = 0  #: bytes after the last complete record, over all files
    bad_messages: int = 0  #: complete messages whose body was not JSON (skipped)
    corrupt_files: list[str] = field(default_factory=list)  #: unparseable complete records


class LogRecord(NamedTuple):
    topic: str
    log_time_ns: int  #: when the daemon queued it, Unix time [ns]
    data: dict[str, Any]


def log_files(paths: Paths) -> list[Path]:
    """The files named, and the .mcap files in named directories, in name (= write) order; a
    directory with none of its own gives those below it (a ladder's ``logs/``, one directory
    per daemon run), ordered by file name (the names carry their start time)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(p.glob("*.mcap")) or sorted(p.rglob("*.mcap"), key=lambda f: (f.name, str(f))))
        elif p.exists():
            files.append(p)
        else:
            raise LogError(f"{p}: no such file or directory")
    if not files:
        raise LogError(f"no .mcap log files in {', '.join(map(str, paths))}")
    return files


def read_log(paths: Paths, report: ReadReport | None = None) -> Iterator[LogRecord]:
    """Every complete message of the log files, file by file; never raises on a cut file.

    Raises ``LogError`` for a missing path, a file that is not MCAP, or when every file is
    empty. An empty file among others (a writer killed before its header reached the disk)
    counts as truncated. Pass a ``ReadReport`` to learn what was cut.
    """
    report = report if report is not None else ReadReport()
    files = log_files(paths)
    empty = 0
    for path in files:
        report.files += 1
        if path.stat().st_size == 0:
            empty += 1
            report.truncated_files.append(str(path))
            continue
        yield from _read_file(path, report)
    if empty == len(files):
        raise LogError(f"{files[0]}: empty file" if len(files) == 1 else "all log files are empty")


read_records = read_log  # the name this function had first


def _read_file(path: Path, report: ReadReport) -> Iterator[LogRecord]:
    with open(path, "rb") as f:
        end, size, finished = _complete_prefix(f, path)
        if end < size:
            report.truncated_files.append(str(path))
            report.unreadable_bytes += size - end
        elif not finished:
            report.unfinished_files.append(str(path))
        if end < len(MAGIC):
            return
        f.seek(0)
        topics: dict[int, str] = {}
        try:
            reader = StreamReader(_Prefix(f, end), skip_magic=False, validate_crcs=False)
            for record in reader.records:
                if isinstance(record, Channel):
                    if record.message_encoding == "json":
                        topics[record.id] = record.topic
                elif isinstance(record, Message) and record.channel_id in topics:
                    try:
                        data = json.loads(record.data)
                    except ValueError:
                        report.bad_messages += 1
                        continue
                    report.records += 1
                    yield LogRecord(topics[record.channel_id], record.log_time, data)
        except EndOfFile:
            if finished:  # the frames were complete up to the footer, yet the parser ran out
                report.corrupt_files.append(str(path))
        except Exception:  # a complete frame the parser rejects: keep what came before
            report.corrupt_files.append(str(path))


def _complete_prefix(f: BinaryIO, path: Path) -> tuple[int, int, bool]:
    """(end of the last complete record, file size, whether the footer and end magic are there).

    Only the 9-byte frame of each record is read; bodies are skipped with seeks.
    """
    f.seek(0, 2)
    size = f.tell()
    f.seek(0)
    head = f.read(len(MAGIC))
    if head != MAGIC[: len(head)]:
        raise LogError(f"{path}: not an MCAP file")
    if len(head) < len(MAGIC):
        return 0, size, False  # cut inside the magic
    end = len(MAGIC)
    while True:
        frame = f.read(_FRAME.size)
        if len(frame) < _FRAME.size:
            return end, size, False
        opcode, length = _FRAME.unpack(frame)
        record_end = end + _FRAME.size + length
        if record_end > size:
            return end, size, False
        end = record_end
        f.seek(end)
        if opcode == Opcode.FOOTER:
            if f.read(len(MAGIC)) == MAGIC:
                return end + len(MAGIC), size, True
            return end, size, False


class _Prefix:
    """The first ``end`` bytes of a file, as the read-only stream ``StreamReader`` wants."""

    def __init__(self, f: BinaryIO, end: int) -> None:
        self._f, self._left = f, end

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data


def events(paths: Paths) -> list[dict[str, Any]]:
    """The event records (start, reset, reload, error, stop, ...), in order."""
    return [r.data for r in read_log(paths) if r.topic == EVENT_TOPIC]


@dataclass
class Steps:
    """Step records as columns: N rows grouped by session, in log order within each; NaN where
    a number was absent or null."""

    episode: np.ndarray  #: (N,) int
    seq: np.ndarray  #: (N,) int
    stamp: np.ndarray  #: (N,) sender's stamp [s]
    received: np.ndarray  #: (N,) daemon clock [s]
    replied: np.ndarray  #: (N,) daemon clock [s]
    states: np.ndarray  #: (N, 7) in ``STATE_FIELDS`` order; NaN where not measured
    actions: np.ndarray  #: (N, 2) in ``ACTION_FIELDS`` order
    status: np.ndarray  #: (N,) str: ok, fallback, stop
    solve_ms: np.ndarray  #: (N,)
    deadline_missed: np.ndarray  #: (N,) bool
    model: np.ndarray  #: (N,) str
    planner: np.ndarray  #: (N,) str
    cost_terms: dict[str, np.ndarray]  #: term -> (N,); NaN where a step lacks the term
    report: ReadReport
    cost: np.ndarray = field(default_factory=lambda: np.empty(0))  #: (N,) total cost
    session: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=str))  #: (N,) str; "" in logs before sessions

    def sessions(self) -> list[str]:
        """The session ids, in the order the rows hold them."""
        return list(dict.fromkeys(self.session.tolist()))

    def of_session(self, session: str) -> Steps:
        """The rows of one session (``LogError`` if the log has none)."""
        rows = self.session == session
        if not rows.any():
            known = ", ".join(self.sessions()) or "none"
            raise LogError(f"no steps of session {session!r} in the log (sessions: {known})")
        return self.select(rows)

    def __len__(self) -> int:
        return len(self.seq)

    def select(self, rows: np.ndarray) -> Steps:
        """The rows picked by a boolean mask or index array, every column alike."""
        picked: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                picked[f.name] = value[rows]
            elif isinstance(value, dict):
                picked[f.name] = {k: v[rows] for k, v in value.items()}
        return replace(self, **picked)


def _num(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return math.nan


def load_steps(paths: Paths) -> Steps:
    """The step records of the log files as columns (events are left out)."""
    report = ReadReport()
    rows = [r.data for r in read_log(paths, report) if r.topic == STEP_TOPIC]
    # Each car's steps together: a stable sort by the order in which sessions first appear.
    first_seen: dict[str, int] = {}
    for r in rows:
        first_seen.setdefault(str(r.get("session") or ""), len(first_seen))
    if len(first_seen) > 1:
        rows.sort(key=lambda r: first_seen[str(r.get("session") or "")])
    terms = sorted({k for r in rows for k in (r.get("cost_terms") or {})})

    def column(key: str) -> np.ndarray:
        return np.array([_num(r.get(key)) for r in rows], dtype=np.float64)

    def table(key: str, names: tuple[str, ...]) -> np.ndarray:
        values = [[_num((r.get(key) or {}).get(n)) for n in names] for r in rows]
        return np.array(values, dtype=np.float64).reshape(len(rows), len(names))

    def text(key: str) -> np.ndarray:
        return np.array([str(r.get(key) or "") for r in rows], dtype=str)

    return Steps(
        episode=np.array([int(r.get("episode", 0)) for r in rows], dtype=np.int64),
        seq=np.array([int(r.get("seq", -1)) for r in rows], dtype=np.int64),
        stamp=column("stamp"),
        received=column("received"),
        replied=column("replied"),
        states=table("state", STATE_FIELDS),
        actions=table("action", ACTION_FIELDS),
        status=text("status"),
        solve_ms=column("solve_ms"),
        deadline_missed=np.array([bool(r.get("deadline_missed", False)) for r in rows], dtype=bool),
        model=text("model"),
        planner=text("planner"),
        cost_terms={
            t: np.array([_num((r.get("cost_terms") or {}).get(t)) for r in rows]) for t in terms
        },
        report=report,
        cost=column("cost"),
        session=text("session"),
    )


@dataclass
class Transitions:
    """(state, action, next state) and the time between them; one row per pair of steps."""

    states: np.ndarray  #: (M, 7) in ``STATE_FIELDS`` order
    actions: np.ndarray  #: (M, 2) applied from ``states`` until ``next_states``
    next_states: np.ndarray  #: (M, 7)
    dt: np.ndarray  #: (M,) sender-clock time between the two [s]
    episode: np.ndarray  #: (M,)
    stamp: np.ndarray  #: (M,) sender's stamp of ``states`` [s]
    session: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=str))  #: (M,)

    def __len__(self) -> int:
        return len(self.dt)


def transitions(steps: Steps, max_dt: float = 1.0) -> Transitions:
    """Pairs of consecutive steps: same session and episode, seq k and k + 1, 0 < dt <= ``max_dt``.

    Step k's action is the one applied between state k and state k + 1: an action holds until
    the next reply. A lost record (a gap in seq) or a stall longer than ``max_dt`` breaks the
    chain rather than producing a pair whose action is unknown.
    """
    session = steps.session if len(steps.session) == len(steps) else np.full(len(steps), "")
    same_episode = (steps.episode[1:] == steps.episode[:-1]) & (session[1:] == session[:-1])
    consecutive = steps.seq[1:] == steps.seq[:-1] + 1
    dt = steps.stamp[1:] - steps.stamp[:-1]
    keep = np.flatnonzero(same_episode & consecutive & (dt > 0) & (dt <= max_dt))
    return Transitions(
        states=steps.states[keep],
        actions=steps.actions[keep],
        next_states=steps.states[keep + 1],
        dt=dt[keep],
        episode=steps.episode[keep],
        stamp=steps.stamp[keep],
        session=session[keep],
    )
