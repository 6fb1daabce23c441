"""``python -m tools.sysid evaluate``: open-loop prediction error of several bundles on logs
none of them was fitted on (another track, another day), on the same windows.

    python -m tools.sysid evaluate --logs runs/other-track/logs --bundles models/a models/b [--kinematic]

Every window of the logs counts (nothing is held out: the logs are the held-out data). Each
bundle predicts with its own fitted dead time (``fit_metrics.dead_time_s``); windows start at
the same moments for all. With 7-field logs the yaw rate is scored too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from controller.translog import load_steps, log_files
from tools.sysid.data import DataError, blocks, windows
from tools.sysid.evaluate import prediction_rmse, table
from tools.sysid.fit import EVAL_WINDOW_S, MAX_DEAD_TIME_S, dead_time_of
from vehicle_models.bundle import load_bundle
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.layout import DYNAMIC_STATE_DIM, KINEMATIC_STATE_DIM
from vehicle_models.params import load_params


def compare_bundles(
    logs: list[str], bundles: list[str], vehicle: str | None = "passenger_car"
) -> dict[str, dict[str, dict[str, float]]]:
    """{name: prediction_rmse} for each bundle (and the vehicle's kinematic model unless None)."""
    steps = load_steps(log_files(logs))
    measured = steps.states[:, KINEMATIC_STATE_DIM:DYNAMIC_STATE_DIM]
    dim = DYNAMIC_STATE_DIM if len(measured) and np.isfinite(measured).all() else KINEMATIC_STATE_DIM
    # Every block counts here; the split ``blocks`` makes is ignored (it needs two, so 10 s).
    chosen, period = blocks(steps, block_s=5.0, holdout_every=2, state_dim=dim)
    length = max(2, int(round(EVAL_WINDOW_S / period)))
    skip = int(round(MAX_DEAD_TIME_S / period))
    models: dict[str, tuple[object, int]] = {}
    if vehicle is not None:
        models[f"kinematic ({vehicle})"] = (KinematicBicycle(load_params(vehicle), period), 0)
    for path in bundles:
        b = load_bundle(path)
        label = f"{b.nominal}{' + residual' if b.residual is not None else ''}"
        if label in models:
            label = f"{label} ({Path(path).name})"
        models[label] = (b.build(period, dtype=torch.float64), int(round(dead_time_of(b) / period)))
    if not models:
        raise DataError("nothing to compare: give --bundles or a vehicle")
    return {
        name: prediction_rmse(model, windows(chosen, length, stride=2, delay=d, skip=skip), period)
        for name, (model, d) in models.items()
    }


def print_comparison(rows: dict[str, dict[str, dict[str, float]]]) -> None:
    print(table(rows))
