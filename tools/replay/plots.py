"""The report's figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
import numpy as np  # noqa: E402

from controller.track import Track  # noqa: E402
from controller.translog import Steps  # noqa: E402
from tools.replay.analysis import RunAnalysis  # noqa: E402
from vehicle_models.layout import State  # noqa: E402


def _edges(track: Track) -> tuple[np.ndarray, np.ndarray]:
    normal = np.column_stack([-np.sin(track.heading), np.cos(track.heading)])
    left = track.points + track.width_left[:, None] * normal
    right = track.points - track.width_right[:, None] * normal
    return left, right


def path_map(
    runs: Sequence[tuple[Steps, RunAnalysis]], tracks: Sequence[Track], out: Path, color_by: str = "speed"
) -> Path:
    fig = path_map_figure(runs, tracks, color_by)
    path = out / f"path_{color_by}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def path_map_figure(
    runs: Sequence[tuple[Steps, RunAnalysis]], tracks: Sequence[Track], color_by: str = "speed"
) -> Figure:
    """The driven paths over the track edges, one panel per run, on one colour scale."""
    fig, axes = plt.subplots(1, len(runs), figsize=(7 * len(runs), 6), squeeze=False, layout="constrained")
    values = [steps.states[:, State.V] if color_by == "speed" else np.abs(run.lateral) for steps, run in runs]
    vmin = min(float(np.nanmin(v)) for v in values)
    vmax = max(float(np.nanmax(v)) for v in values)
    for ax, (steps, run), track, value in zip(axes[0], runs, tracks, values):
        for edge in _edges(track):
            closed = np.vstack([edge, edge[:1]])
            ax.plot(closed[:, 0], closed[:, 1], color="0.5", lw=0.8)
        sc = ax.scatter(steps.states[:, State.X], steps.states[:, State.Y], c=value, s=2, cmap="viridis",
                        vmin=vmin, vmax=vmax)
        ax.set_aspect("equal")
        ax.set_title(f"{run.name}: driven path on {track.name}")
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
    fig.colorbar(sc, ax=list(axes[0]), label="speed [m/s]" if color_by == "speed" else "|lateral offset| [m]")
    return fig


def two_panel_figure(runs, x_of, top_of, bottom_of, labels: tuple[str, str, str]) -> Figure:
    """Two stacked panels sharing x, one line per run; the legend above them, off the data."""
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, layout="constrained")
    for steps, run in runs:
        x = x_of(steps, run)
        a.plot(x, top_of(steps, run), lw=0.8, label=run.name)
        b.plot(x, bottom_of(steps, run), lw=0.8)
    a.set_ylabel(labels[0])
    b.set_ylabel(labels[1])
    b.set_xlabel(labels[2])
    fig.legend(loc="outside upper center", ncols=min(len(runs), 4))
    return fig


def _two_panels(runs, x_of, top_of, bottom_of, labels: tuple[str, str, str], path: Path) -> Path:
    fig = two_panel_figure(runs, x_of, top_of, bottom_of, labels)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def along_track(runs: Sequence[tuple[Steps, RunAnalysis]], out: Path) -> Path:
    return _two_panels(
        runs,
        lambda steps, run: run.distance,
        lambda steps, run: run.lateral,
        lambda steps, run: steps.states[:, State.V],
        ("lateral offset [m]", "speed [m/s]", "distance driven [m]"),
        out / "lateral_speed_vs_distance.png",
    )


def actions(runs: Sequence[tuple[Steps, RunAnalysis]], out: Path) -> Path:
    return _two_panels(
        runs,
        lambda steps, run: steps.stamp - steps.stamp[0],
        lambda steps, run: steps.actions[:, 0],
        lambda steps, run: steps.actions[:, 1],
        ("steer rate [rad/s]", "accel [m/s^2]", "time [s]"),
        out / "actions.png",
    )


def latency(runs: Sequence[tuple[Steps, RunAnalysis]], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 4), layout="constrained")
    for steps, run in runs:
        ax.hist((steps.replied - steps.received) * 1e3, bins=60, alpha=0.6, label=f"{run.name} (receipt to reply)")
        ax.hist(steps.solve_ms, bins=60, alpha=0.4, label=f"{run.name} (solve)")
    ax.set_xlabel("ms")
    ax.set_ylabel("steps")
    fig.legend(loc="outside right upper")
    path = out / "latency_histogram.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def prediction_error(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 4), layout="constrained")
    for name, horizon, rmse in curves:
        ax.plot(horizon, rmse, marker=".", label=name)
    ax.set_xlabel("prediction horizon [s]")
    ax.set_ylabel("position RMSE [m]")
    ax.set_title("open-loop k-step prediction error on the log")
    fig.legend(loc="outside right upper")
    path = out / "prediction_error.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
