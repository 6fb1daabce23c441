"""Reading transition logs, including files cut short by a crash.

``read_records`` streams the messages of one or more files (or directories of them) in file
order; a file that ends mid-record yields every complete record before the cut and reports
the unreadable tail in ``ReadReport``. ``load_steps`` gathers step records into arrays;
``transitions`` pairs consecutive steps of an episode into (state, action, next state, dt).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from mcap.exceptions import McapError
from mcap.records import Channel, Message
from mcap.stream_reader import StreamReader

from controller.translog.writer import EVENT_TOPIC, STEP_TOPIC

STATE_FIELDS = ("x", "y", "steer", "v", "yaw", "yaw_rate", "slip")
ACTION_FIELDS = ("steer_rate", "accel")


class LogError(ValueError):
    """A log that cannot be read at all: missing, empty, or not MCAP."""


@dataclass
class ReadReport:
    files: int = 0
    records: int = 0
    truncated_files: list[str] = field(default_factory=list)
    unreadable_bytes: int = 0


def log_files(paths: Iterable[str | Path] | str | Path) -> list[Path]:
    """The .mcap files named, or found in named directories, in name (= time) order."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.mcap")))
        elif p.exists():
            files.append(p)
        else:
            raise LogError(f"{p}: no such file or directory")
    if not files:
        raise LogError(f"no .mcap log files in {', '.join(map(str, paths))}")
    return files


def _read_file(path: Path, report: ReadReport) -> Iterator[tuple[str, int, dict[str, Any]]]:
    size = path.stat().st_size
    if size == 0:
        raise LogError(f"{path}: empty file")
    channels: dict[int, str] = {}
    with open(path, "rb") as f:
        reader = StreamReader(f, skip_magic=False, validate_crcs=False)
        try:
            for record in reader.records:
                if isinstance(record, Channel):
                    channels[record.id] = record.topic
                elif isinstance(record, Message) and record.channel_id in channels:
                    try:
                        body = json.loads(record.data)
                    except ValueError:
                        continue  # a corrupt message body: skip it, keep the rest
                    report.records += 1
                    yield channels[record.channel_id], record.log_time, body
        except McapError as e:
            if "magic" in str(e).lower() and report.records == 0 and not channels:
                raise LogError(f"{path}: not an MCAP file") from None
            _truncated(path, f, size, report)
        except (EOFError, ValueError, KeyError, IndexError, OSError):
            _truncated(path, f, size, report)
        except Exception:  # the mcap reader raises plain exceptions on some cuts
            _truncated(path, f, size, report)


def _truncated(path: Path, f: Any, size: int, report: ReadReport) -> None:
    report.truncated_files.append(str(path))
    try:
        report.unreadable_bytes += max(0, size - f.tell())
    except (OSError, ValueError):
        pass


def read_records(
    paths: Iterable[str | Path] | str | Path, report: ReadReport | None = None
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(topic, log_time_ns, record) of every complete message, file by file."""
    report = report if report is not None else ReadReport()
    for path in log_files(paths):
        report.files += 1
        yield from _read_file(path, report)


@dataclass
class Steps:
    """Step records as columns (N rows, in log order)."""

    episode: np.ndarray  #: (N,) int
    seq: np.ndarray  #: (N,) int
    stamp: np.ndarray  #: (N,) sender stamp [s]
    received: np.ndarray  #: (N,) [s]
    replied: np.ndarray  #: (N,) [s]
    states: np.ndarray  #: (N, 7), NaN where a field was not sent
    actions: np.ndarray  #: (N, 2)
    status: np.ndarray  #: (N,) str
    solve_ms: np.ndarray  #: (N,)
    deadline_missed: np.ndarray  #: (N,) bool
    model: np.ndarray  #: (N,) str
    planner: np.ndarray  #: (N,) str
    cost_terms: dict[str, np.ndarray]  #: term -> (N,), NaN where absent
    report: ReadReport

    def __len__(self) -> int:
        return len(self.seq)


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def load_steps(paths: Iterable[str | Path] | str | Path) -> Steps:
    report = ReadReport()
    rows = [r for topic, _, r in read_records(paths, report) if topic == STEP_TOPIC]
    n = len(rows)
    terms = sorted({k for r in rows for k in (r.get("cost_terms") or {})})
    col = lambda key, default=math.nan: np.array([_num(r.get(key, default)) for r in rows])  # noqa: E731
    return Steps(
        episode=np.array([int(r.get("episode", 0)) for r in rows], dtype=np.int64),
        seq=np.array([int(r.get("seq", -1)) for r in rows], dtype=np.int64),
        stamp=col("stamp"),
        received=col("received"),
        replied=col("replied"),
        states=np.array(
            [[_num((r.get("state") or {}).get(f)) for f in STATE_FIELDS] for r in rows]
        ).reshape(n, len(STATE_FIELDS)),
        actions=np.array(
            [[_num((r.get("action") or {}).get(f)) for f in ACTION_FIELDS] for r in rows]
        ).reshape(n, len(ACTION_FIELDS)),
        status=np.array([str(r.get("status", "")) for r in rows]),
        solve_ms=col("solve_ms"),
        deadline_missed=np.array([bool(r.get("deadline_missed", False)) for r in rows]),
        model=np.array([str(r.get("model", "")) for r in rows]),
        planner=np.array([str(r.get("planner", "")) for r in rows]),
        cost_terms={t: np.array([_num((r.get("cost_terms") or {}).get(t)) for r in rows]) for t in terms},
        report=report,
    )


@dataclass
class Transitions:
    """(state, action, next state) with the time between them; one row per pair."""

    states: np.ndarray  #: (M, 7)
    actions: np.ndarray  #: (M, 2) applied from ``states`` until ``next_states``
    next_states: np.ndarray  #: (M, 7)
    dt: np.ndarray  #: (M,) sender-clock time between the two [s]
    episode: np.ndarray  #: (M,)
    stamp: np.ndarray  #: (M,) sender stamp of ``states`` [s]

    def __len__(self) -> int:
        return len(self.dt)


def transitions(steps: Steps, max_dt: float = 1.0) -> Transitions:
    """Consecutive steps of the same episode with consecutive seq and 0 < dt <= max_dt.

    Record k's action is the one applied between state k and state k + 1 (the CommonRoad
    convention: an action holds until the next reply).
    """
    same = steps.episode[1:] == steps.episode[:-1]
    consecutive = steps.seq[1:] == steps.seq[:-1] + 1
    dt = steps.stamp[1:] - steps.stamp[:-1]
    keep = np.flatnonzero(same & consecutive & (dt > 0) & (dt <= max_dt))
    return Transitions(
        states=steps.states[keep],
        actions=steps.actions[keep],
        next_states=steps.states[keep + 1],
        dt=dt[keep],
        episode=steps.episode[keep],
        stamp=steps.stamp[keep],
    )


def _columns(steps: Steps) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {
        "episode": steps.episode,
        "seq": steps.seq,
        "stamp": steps.stamp,
        "received": steps.received,
        "replied": steps.replied,
    }
    out.update({f"state_{f}": steps.states[:, i] for i, f in enumerate(STATE_FIELDS)})
    out.update({f"action_{f}": steps.actions[:, i] for i, f in enumerate(ACTION_FIELDS)})
    out.update(
        status=steps.status,
        solve_ms=steps.solve_ms,
        deadline_missed=steps.deadline_missed,
        planner=steps.planner,
        model=steps.model,
    )
    out.update({f"cost_{t}": v for t, v in steps.cost_terms.items()})
    return out


def export(paths: Iterable[str | Path] | str | Path, out: str | Path, fmt: str = "parquet") -> int:
    """Write the step records as one table (Parquet or CSV); returns the row count."""
    columns = _columns(load_steps(paths))
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise LogError("Parquet export needs pyarrow: pip install 'vehicle-mpc[analysis]'") from None
        pq.write_table(pa.table({k: pa.array(v) for k, v in columns.items()}), out)
    elif fmt == "csv":
        with open(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows(zip(*(v.tolist() for v in columns.values())))
    else:
        raise LogError(f"unknown format {fmt!r}; use parquet or csv")
    return len(next(iter(columns.values())))


def events(paths: Iterable[str | Path] | str | Path) -> list[dict[str, Any]]:
    return [r for topic, _, r in read_records(paths) if topic == EVENT_TOPIC]
