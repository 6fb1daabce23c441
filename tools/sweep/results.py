"""Sweep results: the Parquet table, the printed summary, the plots, and paired comparison.

``DIR/results.parquet`` has one row per trial: the spec keys (track, car, car_params,
planner, model, config, seed, trial_id), ``status`` and ``error``, then ``trial.METRICS``,
``wall_s`` and ``worker``. ``reference_lap_s`` is the friction-limited flying lap
(``sim.cars.reference_lap_for``, the true car's mu) times the laps; ``lap_time_ratio`` is the
lap time over it (None when the trial did not finish). ``lap_time_est_s`` is the lap time, or
for an unfinished trial its time scaled to the full distance at the pace it made, and
``lap_time_est_ratio`` that over the reference: every trial that ran has a finite score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tools.sweep.trial import MACHINE_COLUMNS, METRICS

KEYS = ("trial_id", "track", "car", "car_params", "planner", "model", "config", "seed")
PAIR_KEYS = ("track", "car", "car_params", "planner", "model", "config", "seed")
COLUMNS = (*KEYS, "status", "error", *METRICS, "wall_s", "worker")


def table(rows: list[dict[str, Any]], trial_ids: list[str] | None = None) -> pd.DataFrame:
    """Rows as a table in ``COLUMNS`` order (only ``trial_ids``, in that order, when given)."""
    frame = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    if trial_ids is not None:
        order = {t: i for i, t in enumerate(trial_ids)}
        frame = frame[frame["trial_id"].isin(order)]
        frame = frame.assign(_order=frame["trial_id"].map(order)).sort_values("_order").drop(columns="_order")
    return frame.reset_index(drop=True)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    frame.to_parquet(path, index=False)


def read_table(path: Path) -> pd.DataFrame:
    """A results table, from the Parquet file or a sweep directory holding one."""
    path = Path(path)
    return pd.read_parquet(path / "results.parquet" if path.is_dir() else path)


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns that a trial's inputs determine (timings and the worker left out)."""
    keep = [c for c in frame.columns if c not in MACHINE_COLUMNS]
    return frame[keep].sort_values("trial_id").reset_index(drop=True)


def score_column(frame: pd.DataFrame) -> str:
    """``lap_time_est_ratio`` where the sweep has reference laps, else ``lap_time_est_s``."""
    return "lap_time_est_ratio" if frame["lap_time_est_ratio"].notna().any() else "lap_time_est_s"


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per track x car x planner x config: trials, finished, scores, safety, solve time."""
    ok = frame[frame["status"] == "ok"]
    groups = ["track", "car", "planner", "config"]
    if ok.empty:
        return pd.DataFrame(columns=[*groups, "trials", "failed"])
    out = ok.groupby(groups, sort=False).agg(
        trials=("trial_id", "size"),
        finished=("completed", "sum"),
        lap_s=("lap_time_s", "mean"),
        lap_est_s=("lap_time_est_s", "mean"),
        ratio=("lap_time_ratio", "mean"),
        est_ratio=("lap_time_est_ratio", "mean"),
        offtrack_s=("offtrack_s", "sum"),
        spins=("spins", "sum"),
        mean_lat_m=("mean_abs_lateral_m", "mean"),
        max_lat_m=("max_abs_lateral_m", "max"),
        solve_p99_ms=("solve_ms_p99", "max"),
        fallbacks=("fallbacks", "sum"),
    )
    failed = frame[frame["status"] != "ok"].groupby(groups, sort=False).size().rename("failed")
    return out.join(failed, how="outer").fillna({"failed": 0}).reset_index()


def summary_text(frame: pd.DataFrame) -> str:
    s = summary(frame)
    failed = int((frame["status"] != "ok").sum())
    head = f"{len(frame)} trials, {failed} failed"
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        return head + "\n" + s.to_string(index=False)


def plot(frame: pd.DataFrame, out: Path) -> list[Path]:
    """``score_by_track_config.png`` (mean score, track x config) and
    ``score_over_seeds.png`` (the distribution over seeds of each track and config)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = frame[frame["status"] == "ok"].copy()
    if ok.empty:
        return []
    column = score_column(frame)
    ok["label"] = ok["car"] + " / " + ok["planner"] + " / " + ok["config"]
    ok[column] = ok[column].astype(float).replace([np.inf, -np.inf], np.nan)
    grid = ok.pivot_table(index="track", columns="label", values=column, aggfunc="mean")
    paths = []

    fig, ax = plt.subplots(figsize=(max(5, 1.6 * grid.shape[1] + 2), max(3, 0.6 * grid.shape[0] + 2)))
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(grid.shape[0]), [Path(t).stem for t in grid.index], fontsize=8)
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="white", fontsize=8)
    fig.colorbar(image, ax=ax, label=column)
    ax.set_title(f"mean {column} by track x config (lower is better)")
    fig.tight_layout()
    paths.append(out / "score_by_track_config.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    groups = [(f"{Path(t).stem}\n{lab}", g[column].dropna().to_numpy()) for (t, lab), g in ok.groupby(["track", "label"])]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(groups) + 2), 4))
    ax.boxplot([g for _, g in groups], showmeans=True)
    for i, (_, values) in enumerate(groups, start=1):
        ax.plot(np.full(len(values), i), values, "k.", alpha=0.5)
    ax.set_xticks(range(1, len(groups) + 1), [name for name, _ in groups], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(column)
    ax.set_title(f"{column} over seeds")
    fig.tight_layout()
    paths.append(out / "score_over_seeds.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def bootstrap_ci(diffs: np.ndarray, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (seeded: same answer each run)."""
    if len(diffs) == 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    alpha = (1.0 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def compare(
    a: pd.DataFrame,
    b: pd.DataFrame,
    on: tuple[str, ...] = PAIR_KEYS,
    metrics: tuple[str, ...] = ("lap_time_est_ratio", "lap_time_est_s", "lap_time_ratio", "offtrack_s", "spins",
                                "mean_abs_lateral_m", "max_abs_lateral_m", "fallbacks", "solve_ms_p99"),
    level: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pairs the trials of ``a`` and ``b`` with equal ``on`` keys (both finished with status
    ok) and, per metric, the mean of B - A with a bootstrap interval: overall, and per track.

    Returns (the paired differences, one row per trial pair; the per-metric table).
    """
    on = tuple(on)
    ok_a, ok_b = a[a["status"] == "ok"], b[b["status"] == "ok"]
    pairs = ok_a.merge(ok_b, on=list(on), suffixes=("_a", "_b"))
    diffs = pairs[list(on)].copy()
    rows = []
    for metric in metrics:
        va = pairs[f"{metric}_a"].astype(float).replace([np.inf, -np.inf], np.nan)
        vb = pairs[f"{metric}_b"].astype(float).replace([np.inf, -np.inf], np.nan)
        diffs[metric] = vb - va
        for scope, mask in [("all", np.ones(len(pairs), dtype=bool))] + [
            (track, (pairs["track"] == track).to_numpy()) for track in pairs["track"].unique()
        ]:
            d = diffs.loc[mask, metric].dropna().to_numpy()
            if len(d) == 0:
                continue
            lo, hi = bootstrap_ci(d, level)
            rows.append({
                "metric": metric, "scope": scope, "pairs": len(d),
                "mean_a": float(va[mask].mean()), "mean_b": float(vb[mask].mean()),
                "mean_diff": float(d.mean()), "ci_low": lo, "ci_high": hi,
                "significant": bool(lo > 0 or hi < 0),
            })
    return diffs, pd.DataFrame(rows)
