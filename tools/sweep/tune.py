"""Tuning planner and cost parameters with Optuna's TPE sampler.

Each Optuna trial is a sub-sweep: the spec's tracks x cars x planners x models x seeds, with
the searched keys set (``--set`` values), run by the same executors as ``run`` (serially or on
Ray). The objective is the mean lap-time ratio over those trials (``lap_time_est_ratio``: an
unfinished trial counts at the pace it made), with the total time off track and the total spins
as constraints (``tune.max_offtrack_s``, ``tune.max_spins``): TPE samples from the feasible
region, and the best trial is the best feasible one. A failed episode scores infinity.

Outputs in ``--out``: ``trials/`` (every episode, as ``run`` writes them, so an interrupted
tuning resumes without rerunning episodes), ``tune_trials.parquet`` (one row per Optuna trial:
the parameters, objective, constraint values), and ``best.yaml``, an overlay that
``python -m controller --config best.yaml`` accepts.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tools.sweep.results import score_column, table
from tools.sweep.runner import load_rows, run_sweep
from tools.sweep.spec import SweepSpec, Trial, TuneParam, expand

Score = tuple[float, float, float]  #: objective, offtrack_s, spins


def suggest(trial: Any, key: str, param: TuneParam) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(key, param.choices)
    if param.low is None or param.high is None:
        raise ValueError(f"tune.params.{key}: give low and high, or choices")
    if param.integer:
        return trial.suggest_int(key, int(param.low), int(param.high), log=param.log)
    return trial.suggest_float(key, param.low, param.high, log=param.log)


def with_values(trials: list[Trial], values: dict[str, Any]) -> list[Trial]:
    sets = tuple(f"{k}={json.dumps(v)}" for k, v in values.items())
    return [replace(t, overrides=t.overrides + sets) for t in trials]


def score(rows: pd.DataFrame) -> Score:
    """(mean score, total off-track seconds, total spins); inf when a trial failed."""
    if rows.empty or (rows["status"] != "ok").any():
        return math.inf, math.inf, math.inf
    values = rows[score_column(rows)].astype(float)
    return float(values.mean()), float(rows["offtrack_s"].sum()), float(rows["spins"].sum())


def overlay(base: Trial, values: dict[str, Any]) -> dict[str, Any]:
    """The config mapping of ``base`` with ``values`` set, as a file ``--config`` accepts."""
    from controller.config import apply_override

    raw = base.raw_config()
    for key, value in values.items():
        apply_override(raw, key.split("."), value)
    for key in ("track", "threads", "log"):  # the deployment's, not the tuning's
        raw.pop(key, None)
    return raw


def tune(
    spec: SweepSpec, out: Path, executor: str = "ray", address: str | None = None, workers: int | None = None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Run the search; (best values, table of Optuna trials). Writes ``best.yaml``."""
    import optuna

    if spec.tune is None:
        raise ValueError("the spec has no tune: section")
    settings = spec.tune
    base_trials = expand(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    # Optuna 5 reads constraints set on the trial; older releases take a constraints_func.
    native_constraints = hasattr(optuna.trial.Trial, "set_constraint")

    def constraints(frozen: Any) -> list[float]:
        return list(frozen.user_attrs["constraints"])

    sampler = optuna.samplers.TPESampler(
        seed=settings.seed, **({} if native_constraints else {"constraints_func": constraints})
    )
    study = optuna.create_study(direction="minimize", sampler=sampler)
    records = []
    for number in range(settings.trials):
        trial = study.ask()
        values = {key: suggest(trial, key, p) for key, p in settings.params.items()}
        episodes = with_values(base_trials, values)
        run_sweep(episodes, out, executor, address, workers)
        ids = [t.trial_id for t in episodes]
        rows = table(load_rows(out), ids)
        objective, offtrack, spins = score(rows)
        limits = [offtrack - settings.max_offtrack_s, spins - settings.max_spins]
        bounded = [x if math.isfinite(x) else 1e9 for x in limits]
        if native_constraints:
            trial.set_constraint("offtrack_s", bounded[0])
            trial.set_constraint("spins", bounded[1])
        else:
            trial.set_user_attr("constraints", bounded)
        study.tell(trial, objective if math.isfinite(objective) else 1e9)
        records.append({"number": number, **values, "objective": objective, "offtrack_s": offtrack,
                        "spins": spins, "feasible": all(x <= 0 for x in limits), "episodes": len(ids)})
        print(f"tune {number + 1}/{settings.trials}: objective {objective:.4g}, off track {offtrack:.2f} s, "
              f"spins {spins:g} {values}", flush=True)
    frame = pd.DataFrame(records)
    frame.to_parquet(out / "tune_trials.parquet", index=False)
    feasible = frame[frame["feasible"]]
    pick = feasible if not feasible.empty else frame
    best_row = pick.loc[pick["objective"].astype(float).idxmin()]
    best = {key: _plain(best_row[key]) for key in settings.params}
    config = overlay(base_trials[0], best)
    header = (f"# tools.sweep tune of {spec.name!r}: objective {best_row['objective']:.6g} "
              f"({'feasible' if bool(best_row['feasible']) else 'NO feasible trial; least bad'})\n"
              f"# searched: {', '.join(settings.params)}\n")
    (out / "best.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
    return best, frame


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
