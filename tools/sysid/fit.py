"""The ``fit`` pipeline: logs -> kinematic fit -> residual -> held-out report -> bundle."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from controller.translog import log_files
from tools.sysid.data import blocks, transitions_of, windows
from tools.sysid.fleet import fleet_cache, load_fleet_steps
from tools.sysid.evaluate import prediction_rmse, table
from tools.sysid.kinematic_fit import excitation_warnings, fit_kinematic
from tools.sysid.residual_fit import train_residual
from vehicle_models.bundle import ModelBundle, load_bundle, save_bundle
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.params import BicycleParams, load_params
from vehicle_models.residual import ResidualConfig

FIT_WINDOW_S = 0.5
EVAL_WINDOW_S = 1.0
MAX_DEAD_TIME_S = 0.15  #: input dead times tried: 0, 1, ... periods up to this


def dead_time_of(bundle: ModelBundle | None) -> float:
    """The input dead time [s] a bundle's model was fitted with (0 for older bundles)."""
    return float(bundle.fit_metrics.get("dead_time_s", 0.0)) if bundle is not None else 0.0


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
    cache: str | None = None  #: converted logs kept for later refits (tools.sysid.fleet); None: temporary


def data_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def run_fit(logs: list[str], out: Path, base: str | None, vehicle: str, options: FitOptions) -> dict[str, Any]:
    files = log_files(logs)
    with fleet_cache(options.cache) as cache:  # a fleet's logs, one Arrow dataset
        steps = load_fleet_steps(logs, cache)
    all_blocks, period = blocks(steps)
    train_blocks = [b for b in all_blocks if not b.held_out]
    val_blocks = [b for b in all_blocks if b.held_out]
    base_bundle = load_bundle(base) if base else None
    prior: BicycleParams = base_bundle.params if base_bundle else load_params(vehicle)

    fit_len = max(2, int(round(FIT_WINDOW_S / period)))
    eval_len = max(2, int(round(EVAL_WINDOW_S / period)))
    max_delay = int(round(MAX_DEAD_TIME_S / period))
    # Every delay is scored on windows starting at the same moments (skip = max_delay).
    delay_costs: dict[str, float] = {}
    for d in range(max_delay + 1):
        trial = fit_kinematic(prior, windows(train_blocks, fit_len, stride=6, delay=d, skip=max_delay), period)
        delay_costs[f"{d * period:.3f}"] = trial.cost_after
    delay = int(min(range(max_delay + 1), key=lambda d: delay_costs[f"{d * period:.3f}"]))
    dead_time = delay * period
    fit_windows = windows(train_blocks, fit_len, stride=2, delay=delay, skip=max_delay)
    kin = fit_kinematic(prior, fit_windows, period)
    x_tr, u_tr, y_tr = transitions_of(train_blocks, delay)
    warnings = excitation_warnings(x_tr, u_tr)
    if delay == max_delay:
        warnings.append(f"the best input dead time is the longest tried ({dead_time:.2f} s): the delay may be longer")

    def eval_windows(d: int):
        return windows(val_blocks, eval_len, stride=2, delay=d, skip=max_delay)

    base_delay = int(round(dead_time_of(base_bundle) / period))
    models: dict[str, Any] = {}
    if base_bundle is not None:
        models[f"base ({base_bundle.version})"] = (base_bundle.build(period, dtype=torch.float64), base_delay)
    else:
        models["prior (kinematic)"] = (KinematicBicycle(prior, period), 0)
    models["refit kinematic"] = (KinematicBicycle(kin.params, period), delay)
    residual_info: dict[str, Any] = {}
    bundle = ModelBundle(version="", params=kin.params)
    if options.residual:
        result = train_residual(
            KinematicBicycle(kin.params, period),
            (x_tr, u_tr, y_tr),
            transitions_of(val_blocks, delay),
            ResidualConfig(hidden=options.hidden, ensemble_size=options.ensemble_size),
            epochs=options.epochs,
            seed=options.seed,
            progress=options.progress,
        )
        bundle.residual = result.residual
        residual_info = {"epochs": result.epochs, "best_epoch": result.best_epoch,
                         "train_loss": result.train_loss, "validation_loss": result.validation_loss}
        models["semi-parametric"] = (bundle.build(period, dtype=torch.float64), delay)
    rmse = {name: prediction_rmse(m, eval_windows(d), period) for name, (m, d) in models.items()}
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
            "held_at_prior": kin.held,
        },
        "dead_time_s": dead_time,
        "dead_time_costs": delay_costs,
        "excitation_warnings": warnings,
        "residual": residual_info,
        "held_out_rmse": rmse,
        "chosen": candidate,
        "written": False,
    }
    bundle.fit_metrics = {"held_out_rmse": rmse[candidate], "chosen": candidate, "dead_time_s": dead_time}
    if dead_time > 0:
        bundle.notes = (f"fitted with an input dead time of {dead_time:.3f} s: the action acting now was sent "
                        f"{delay} period(s) earlier; run the daemon with dead_time={dead_time:.3f}")
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
