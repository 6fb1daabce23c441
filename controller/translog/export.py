"""Step records as one flat table (Parquet or CSV) for pandas, DuckDB, spreadsheets.

Columns: session, episode, seq, stamp, received, replied, state_<field>, action_<field>, status,
solve_ms, deadline_missed, cost, cost_<term>, planner, model. Parquet needs pyarrow (the
``analysis`` extra); CSV uses only the standard library, with empty cells for absent numbers.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Literal

import numpy as np

from controller.translog.reader import LogError, Paths, Steps, load_steps
from controller.translog.schema import ACTION_FIELDS, STATE_FIELDS

FORMATS = ("parquet", "csv")


def columns(steps: Steps) -> dict[str, np.ndarray]:
    """The flat table of ``steps``, column name -> (N,) array, in export order."""
    out: dict[str, np.ndarray] = {
        "session": steps.session,
        "episode": steps.episode,
        "seq": steps.seq,
        "stamp": steps.stamp,
        "received": steps.received,
        "replied": steps.replied,
    }
    out.update({f"state_{f}": steps.states[:, i] for i, f in enumerate(STATE_FIELDS)})
    out.update({f"action_{f}": steps.actions[:, i] for i, f in enumerate(ACTION_FIELDS)})
    out.update(status=steps.status, solve_ms=steps.solve_ms, deadline_missed=steps.deadline_missed)
    if len(steps.cost) == len(steps):
        out["cost"] = steps.cost
    out.update({f"cost_{t}": v for t, v in steps.cost_terms.items()})
    out.update(planner=steps.planner, model=steps.model)
    return out


def export(
    log_paths: Paths, out_path: str | Path, format: Literal["parquet", "csv"] = "parquet"
) -> int:
    """Write the step records of the logs to ``out_path``; returns the number of rows."""
    _check(out_path, format)  # before reading: a typo should not cost a pass over the logs
    return write_table(load_steps(log_paths), out_path, format)


def write_table(
    steps: Steps, out_path: str | Path, format: Literal["parquet", "csv"] = "parquet"
) -> int:
    """Write already loaded steps (for example ``steps.select(...)``); returns the row count."""
    _check(out_path, format)
    table = columns(steps)
    if format == "parquet":
        _write_parquet(table, Path(out_path))
    else:
        _write_csv(table, Path(out_path))
    return len(steps)


def _check(out_path: str | Path, format: str) -> None:
    if format not in FORMATS:
        raise LogError(f"unknown format {format!r}; use parquet or csv")
    if not Path(out_path).parent.is_dir():
        raise LogError(f"{Path(out_path).parent}: no such directory for the output")


def _write_parquet(table: dict[str, np.ndarray], out_path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise LogError(
            "Parquet export needs pyarrow: pip install 'vehicle-mpc[analysis]'"
        ) from None
    # from_pandas: NaN (absent) becomes null, which every Parquet reader understands.
    pq.write_table(pa.table({k: pa.array(v, from_pandas=True) for k, v in table.items()}), out_path)


def _write_csv(table: dict[str, np.ndarray], out_path: Path) -> None:
    def cell(value: object) -> object:
        return "" if isinstance(value, float) and math.isnan(value) else value

    with open(out_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(table)
        for row in zip(*(v.tolist() for v in table.values()), strict=True):
            writer.writerow([cell(v) for v in row])
