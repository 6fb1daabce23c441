"""The report's figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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


def path_map(runs: Sequence[tuple[Steps, RunAnalysis]], track: Track, out: Path, color_by: str = "speed") -> Path:
    fig, axes = plt.subplots(1, len(runs), figsize=(7 * len(runs), 6), squeeze=False)
    left, right = _edges(track)
    for ax, (steps, run) in zip(axes[0], runs):
        for edge in (left, right):
            closed = np.vstack([edge, edge[:1]])
            ax.plot(closed[:, 0], closed[:, 1], color="0.5", lw=0.8)
        values = steps.states[:, State.V] if color_by == "speed" else np.abs(run.lateral)
        sc = ax.scatter(steps.states[:, State.X], steps.states[:, State.Y], c=values, s=2, cmap="viridis")
        fig.colorbar(sc, ax=ax, label="speed [m/s]" if color_by == "speed" else "|lateral offset| [m]")
        ax.set_aspect("equal")
        ax.set_title(f"{run.name}: driven path")
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
    path = out / f"path_{color_by}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _two_panels(runs, x_of, top_of, bottom_of, labels: tuple[str, str, str], path: Path) -> Path:
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for steps, run in runs:
        x = x_of(steps, run)
        a.plot(x, top_of(steps, run), lw=0.8, label=run.name)
        b.plot(x, bottom_of(steps, run), lw=0.8, label=run.name)
    a.set_ylabel(labels[0])
    b.set_ylabel(labels[1])
    b.set_xlabel(labels[2])
    a.legend()
    fig.tight_layout()
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
    fig, ax = plt.subplots(figsize=(8, 4))
    for steps, run in runs:
        ax.hist((steps.replied - steps.received) * 1e3, bins=60, alpha=0.6, label=f"{run.name} (receipt to reply)")
        ax.hist(steps.solve_ms, bins=60, alpha=0.4, label=f"{run.name} (solve)")
    ax.set_xlabel("ms")
    ax.set_ylabel("steps")
    ax.legend()
    path = out / "latency_histogram.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def prediction_error(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, horizon, rmse in curves:
        ax.plot(horizon, rmse, marker=".", label=name)
    ax.set_xlabel("prediction horizon [s]")
    ax.set_ylabel("position RMSE [m]")
    ax.set_title("open-loop k-step prediction error on the log")
    ax.legend()
    path = out / "prediction_error.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
