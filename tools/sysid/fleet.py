"""A fleet's logs (several cars, several days) as one Arrow dataset, read without holding
every record at once.

Each source given to ``tools.sysid fit --logs`` (a log directory or an MCAP file) is one car.
MCAP files are converted once,
file by file, into Parquet in a cache directory (keyed by path, size and modification time, so
a later refit converts only new files); the Parquet files together are one
``pyarrow.dataset``. The fit reads only the columns it needs, fragment by fragment in batches,
into arrays allocated once from the dataset's row count: the peak is the fitting arrays plus
one batch, not the logs' records as Python objects (which is what ``load_steps`` builds, about
1 KB per step).

Rows of different sources are never of one session: the session a row carries is made unique
per source, so no transition pairs two cars that happened to use the same session id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from controller.translog import LogError, Steps, load_steps, log_files
from controller.translog.reader import ReadReport
from controller.translog.schema import ACTION_FIELDS, STATE_FIELDS

BATCH_ROWS = 65_536
# Every state field: a dynamic-state fit reads yaw_rate and slip (NaN where not measured).
STATE_COLUMNS = tuple(f"state_{f}" for f in STATE_FIELDS)
ACTION_COLUMNS = tuple(f"action_{f}" for f in ACTION_FIELDS)
FIT_COLUMNS = ("session", "episode", "seq", "stamp", *STATE_COLUMNS, *ACTION_COLUMNS)


def _cache_name(path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha1(key.encode()).hexdigest()[:20] + ".parquet"


def source_files(source: str | Path, cache: Path, report: ReadReport | None = None) -> list[Path]:
    """The Parquet files of one source, converting its MCAP files into ``cache`` as needed.

    What reading each file found (``ReadReport``) is kept beside its Parquet file and added
    into ``report``.
    """
    from controller.translog.export import write_table

    out = []
    cache.mkdir(parents=True, exist_ok=True)
    for log in log_files([source]):
        target = cache / _cache_name(log)
        sidecar = target.with_suffix(".report.json")
        if not sidecar.exists():
            steps = load_steps([log])  # one file at a time: bounded by the rotation size
            if len(steps):
                partial = target.with_suffix(".partial")
                write_table(steps, partial, "parquet")
                partial.replace(target)
            sidecar.write_text(json.dumps(dataclasses.asdict(steps.report)))
        if report is not None:
            _add(report, ReadReport(**json.loads(sidecar.read_text())))
        if target.exists():
            out.append(target)
    return out


def _add(total: ReadReport, one: ReadReport) -> None:
    for f in dataclasses.fields(ReadReport):
        setattr(total, f.name, getattr(total, f.name) + getattr(one, f.name))


@contextmanager
def fleet_cache(cache: str | Path | None) -> Iterator[Path]:
    """``cache`` (kept), or a temporary directory removed afterwards."""
    if cache is not None:
        yield Path(cache)
        return
    with tempfile.TemporaryDirectory(prefix="sysid-fleet-") as folder:
        yield Path(folder)


def fleet_dataset(sources: list[str | Path], cache: Path, report: ReadReport | None = None):
    """One ``pyarrow.dataset`` over every source's Parquet files, in source then file order."""
    return _dataset(sources, [source_files(source, cache, report) for source in sources])


def _dataset(sources: list[str | Path], files_per_source: list[list[Path]]):
    import pyarrow.dataset as ds

    files = [str(f) for files in files_per_source for f in files]
    if not files:
        raise LogError(f"no step records in {', '.join(map(str, sources))}")
    return ds.dataset(files, format="parquet")


def load_fleet_steps(sources: list[str | Path], cache: Path) -> Steps:
    """The fitting columns of every source's steps (``Steps`` with the other columns empty).

    Within a source each session's rows come together, in log order, as ``load_steps``
    orders them; sessions are numbered fleet-wide (``Steps.session`` holds the numbers).
    """
    report = ReadReport()
    # Listed once: a log still being written changes size between two listings, and with it
    # the name of its Parquet copy.
    files_per_source = [source_files(source, cache, report) for source in sources]
    dataset = _dataset(sources, files_per_source)
    source_of = {str(f): i for i, files in enumerate(files_per_source) for f in files}
    n = dataset.count_rows()
    episode = np.empty(n, dtype=np.int64)
    seq = np.empty(n, dtype=np.int64)
    stamp = np.empty(n)
    session = np.empty(n, dtype=np.int64)
    states = np.full((n, len(STATE_FIELDS)), np.nan)
    actions = np.empty((n, len(ACTION_FIELDS)))
    sessions: dict[tuple[int, str], int] = {}
    row = 0
    for fragment in dataset.get_fragments():
        source = source_of[fragment.path]
        for batch in fragment.to_batches(columns=list(FIT_COLUMNS), batch_size=BATCH_ROWS):
            k = batch.num_rows
            names = batch.column("session").to_pylist()
            codes = [sessions.setdefault((source, s or ""), len(sessions)) for s in names]
            session[row : row + k] = codes
            episode[row : row + k] = batch.column("episode").to_numpy(zero_copy_only=False)
            seq[row : row + k] = batch.column("seq").to_numpy(zero_copy_only=False)
            stamp[row : row + k] = batch.column("stamp").to_numpy(zero_copy_only=False)
            for i, name in enumerate(STATE_COLUMNS):
                states[row : row + k, i] = batch.column(name).to_numpy(zero_copy_only=False)
            for i, name in enumerate(ACTION_COLUMNS):
                actions[row : row + k, i] = batch.column(name).to_numpy(zero_copy_only=False)
            row += k
    # Each session's rows together (a stable sort keeps log order within a session); a
    # session numbered in order of first appearance is already sorted in the common case.
    if np.any(np.diff(session) < 0):
        order = np.argsort(session, kind="stable")
        episode, seq, stamp, session = episode[order], seq[order], stamp[order], session[order]
        states, actions = states[order], actions[order]
    empty = np.empty(0)
    return Steps(
        episode=episode, seq=seq, stamp=stamp, received=empty, replied=empty, states=states,
        actions=actions, status=np.empty(0, dtype=str), solve_ms=empty,
        deadline_missed=np.empty(0, dtype=bool), model=np.empty(0, dtype=str),
        planner=np.empty(0, dtype=str), cost_terms={}, report=report,
        session=session,
    )
