"""The ``fit`` pipeline: logs -> kinematic fit -> residual -> held-out report -> bundle."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from controller.translog import load_steps, log_files
from tools.sysid.data import blocks, transitions_of, windows
from tools.sysid.evaluate import prediction_rmse, table
from tools.sysid.kinematic_fit import excitation_warnings, fit_kinematic
from tools.sysid.residual_fit import train_residual
from vehicle_models.bundle import ModelBundle, load_bundle, save_bundle
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.params import BicycleParams, load_params
from vehicle_models.residual import ResidualConfig

FIT_WINDOW_S = 0.5
EVAL_WINDOW_S = 1.0


class RefusedError(RuntimeError):
    """The refitted model is worse than the base on held-out data (use --force)."""


@dataclass
class FitOptions:
    ensemble_size: int = 1
    hidden: tuple[int, ...] = (64, 64)
    epochs: int = 300
    seed: int = 0
    force: bool = False
    progress: bool = True
    residual: bool = True


def data_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def run_fit(logs: list[str], out: Path, base: str | None, vehicle: str, options: FitOptions) -> dict[str, Any]:
    files = log_files(logs)
    steps = load_steps(files)
    all_blocks, period = blocks(steps)
    train_blocks = [b for b in all_blocks if not b.held_out]
    val_blocks = [b for b in all_blocks if b.held_out]
    base_bundle = load_bundle(base) if base else None
    prior: BicycleParams = base_bundle.params if base_bundle else load_params(vehicle)

    fit_len = max(2, int(round(FIT_WINDOW_S / period)))
    eval_len = max(2, int(round(EVAL_WINDOW_S / period)))
    fit_windows = windows(train_blocks, fit_len, stride=2)
    eval_windows = windows(val_blocks, eval_len, stride=2)
    kin = fit_kinematic(prior, fit_windows, period)
    x_tr, u_tr, y_tr = transitions_of(train_blocks)
    warnings = excitation_warnings(x_tr, u_tr)

    models: dict[str, Any] = {}
    if base_bundle is not None:
        models[f"base ({base_bundle.version})"] = base_bundle.build(period, dtype=torch.float64)
    else:
        models["prior (kinematic)"] = KinematicBicycle(prior, period)
    models["refit kinematic"] = KinematicBicycle(kin.params, period)
    residual_info: dict[str, Any] = {}
    bundle = ModelBundle(version="", params=kin.params)
    if options.residual:
        result = train_residual(
            KinematicBicycle(kin.params, period),
            (x_tr, u_tr, y_tr),
            transitions_of(val_blocks),
            ResidualConfig(hidden=options.hidden, ensemble_size=options.ensemble_size),
            epochs=options.epochs,
            seed=options.seed,
            progress=options.progress,
        )
        bundle.residual = result.residual
        residual_info = {"epochs": result.epochs, "best_epoch": result.best_epoch,
                         "train_loss": result.train_loss, "validation_loss": result.validation_loss}
        models["semi-parametric"] = bundle.build(period, dtype=torch.float64)
    rmse = {name: prediction_rmse(m, eval_windows, period) for name, m in models.items()}
    base_name, *refits = rmse
    # Write whichever refitted model predicts better at 1 s on the held-out blocks.
    candidate = min(refits, key=lambda n: rmse[n]["1s"]["pos"])
    if candidate == "refit kinematic":
        bundle.residual = None
    worse = rmse[candidate]["1s"]["pos"] > rmse[base_name]["1s"]["pos"]

    digest = data_digest(files)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    bundle.version = f"sysid-{stamp}-{digest[:8]}"
    bundle.data_digest = digest
    bundle.parent_version = base_bundle.version if base_bundle else None
    report = {
        "version": bundle.version,
        "logs": [str(f) for f in files],
        "steps": len(steps),
        "truncated_files": steps.report.truncated_files,
        "control_period_s": period,
        "train_blocks": len(train_blocks),
        "validation_blocks": len(val_blocks),
        "kinematic": {
            "estimates": kin.estimates, "ci95": kin.ci95, "at_bound": kin.at_bound,
            "weak_directions": kin.weak_directions, "cost_before": kin.cost_before, "cost_after": kin.cost_after,
        },
        "excitation_warnings": warnings,
        "residual": residual_info,
        "held_out_rmse": rmse,
        "chosen": candidate,
        "written": False,
    }
    bundle.fit_metrics = {"held_out_rmse": rmse[candidate], "chosen": candidate}
    out.mkdir(parents=True, exist_ok=True)
    if worse and not options.force:
        (out / f"{bundle.version}.report.json").write_text(json.dumps(report, indent=2))
        report["table"] = table(rmse)
        raise RefusedError(
            f"the refitted model ({candidate}) predicts worse than {base_name} on held-out data "
            f"(1 s position RMSE {rmse[candidate]['1s']['pos']:.3f} m vs {rmse[base_name]['1s']['pos']:.3f} m); "
            f"nothing written (--force to write anyway)\n{table(rmse)}"
        )
    save_bundle(bundle, out / bundle.version)
    report["written"] = True
    report["bundle"] = str(out / bundle.version)
    (out / bundle.version / "report.json").write_text(json.dumps(report, indent=2))
    report["table"] = table(rmse)
    return report
