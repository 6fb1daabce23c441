"""The TUM racetrack-database CSV format: read with line-level errors, and write.

    # x_m,y_m,w_tr_right_m,w_tr_left_m
    -0.320123,1.087714,5.739,5.932
    ...

One row per centre-line point; the loop closes from the last row back to the first (a last row
equal to the first is accepted and dropped). Widths run from the centre line to each edge.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

COLUMNS = ("x_m", "y_m", "w_tr_right_m", "w_tr_left_m")
HEADER = "# " + ",".join(COLUMNS)
MIN_POINTS = 4
#: Points closer than this are the same point [m].
SAME_POINT_M = 1e-9


class TrackFormatError(ValueError):
    """A track file that is not valid TUM CSV; names the file, the line (1-based) and why."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


def read(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (M, 2), right widths (M,), left widths (M,) of a TUM CSV file."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TrackFormatError(path, None, f"not a UTF-8 text file ({e.reason})") from None
    numbered = [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1)]
    numbered = [(i, line) for i, line in numbered if line]
    if not numbered:
        raise TrackFormatError(path, None, "empty file (expected the header " + repr(HEADER) + ")")
    _check_header(path, *numbered[0])

    rows: list[tuple[float, float, float, float]] = []
    lines: list[int] = []
    for number, line in numbered[1:]:
        if line.startswith("#"):
            continue
        row = _parse_row(path, number, line)
        if rows and _same_point(row, rows[-1]):
            raise TrackFormatError(
                path, number, f"repeats the point of line {lines[-1]} ({row[0]}, {row[1]})"
            )
        rows.append(row)
        lines.append(number)
    if len(rows) > 1 and _same_point(rows[-1], rows[0]):
        rows.pop()  # the closing point, back on the first
        lines.pop()
    if len(rows) < MIN_POINTS:
        raise TrackFormatError(
            path,
            lines[-1] if lines else numbered[-1][0],
            f"only {len(rows)} distinct points; a track needs at least {MIN_POINTS}",
        )
    data = np.asarray(rows, dtype=np.float64)
    return data[:, :2], data[:, 2], data[:, 3]


def write(
    path: str | Path, points: np.ndarray, width_right: np.ndarray, width_left: np.ndarray
) -> None:
    """Write points (M, 2) and widths (M,) as TUM CSV (no repeated closing row)."""
    data = np.column_stack([points, width_right, width_left])
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEADER + "\n")
        for x, y, wr, wl in data:
            f.write(f"{x:.6f},{y:.6f},{wr:.6f},{wl:.6f}\n")


def _check_header(path: str | Path, number: int, line: str) -> None:
    if not line.startswith("#"):
        raise TrackFormatError(path, number, f"missing header: expected {HEADER!r}, got {line!r}")
    names = tuple(name.strip() for name in line.lstrip("#").split(","))
    if names != COLUMNS:
        raise TrackFormatError(
            path, number, f"unknown header {line!r}: expected the columns {','.join(COLUMNS)}"
        )


def _parse_row(path: str | Path, number: int, line: str) -> tuple[float, float, float, float]:
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != len(COLUMNS):
        raise TrackFormatError(
            path, number, f"expected {len(COLUMNS)} columns ({','.join(COLUMNS)}), got {len(fields)}"
        )
    values = []
    for name, text in zip(COLUMNS, fields):
        try:
            value = float(text)
        except ValueError:
            raise TrackFormatError(path, number, f"{name} {text!r} is not a number") from None
        if not math.isfinite(value):
            raise TrackFormatError(path, number, f"{name} {text!r} is not finite")
        if name.startswith("w_") and value <= 0:
            raise TrackFormatError(path, number, f"{name} must be positive, got {text}")
        values.append(value)
    return values[0], values[1], values[2], values[3]


def _same_point(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return math.hypot(a[0] - b[0], a[1] - b[1]) <= SAME_POINT_M
