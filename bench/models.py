"""Solve time of the planners per vehicle model: the 5-field kinematic semi-parametric model
against the 7-field dynamic-state models, each on the native kernel where it runs
(``kinematic``, ``kinematic_dynamic_state``) and on torch (``single_track`` only on torch:
the kernel runs the kinematic bicycle, on 5 or 7 fields).

Each row builds the planner the daemon would build for a bundle of that model (a residual of
the daemon's default size, 64x64 SiLU, one member), plans from a state on ``random:0`` at
15 m/s warm-started from its previous plan, and times every ``plan`` call after a warm-up.
The ratio column is against the 5-field native row of the same planner, measured in the
same run.

    python bench/models.py                      # MPPI K=1024 H=40 and iLQR H=40, every model
                                                # and backend, and K=256 H=20, iLQR H=20 for
                                                # the single-track model
    python bench/models.py --compile            # torch rows with torch.compile (slow start)
    python bench/models.py --json out.json --steps 60 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.costs import CostConfig, TrackCost  # noqa: E402
from controller.planners.base import shift_plan  # noqa: E402
from controller.planners.ilqr import ILQRConfig  # noqa: E402
from controller.planners.mppi import MPPIConfig  # noqa: E402
from controller.planners.registry import build_planner  # noqa: E402
from controller.track import load_track, start_state  # noqa: E402
from vehicle_models.bundle import ModelBundle  # noqa: E402
from vehicle_models.params import load_params  # noqa: E402
from vehicle_models.residual import ResidualConfig, ResidualEnsemble  # noqa: E402
from vehicle_models.semi_parametric import default_fields  # noqa: E402
from vehicle_models.single_track import load_single_track_params  # noqa: E402

PARAMS = load_params("passenger_car")
SINGLE_TRACK = load_single_track_params("passenger_car")
DT = 0.05
SPEED = 15.0
WARMUP = 5
BUDGET_MS = 30.0  #: the daemon's solve budget at the 20 Hz control period (configs/daemon.yaml)
MODELS = {
    "kinematic+residual (5)": "kinematic",
    "kinematic_dynamic_state+residual (7)": "kinematic_dynamic_state",
    "single_track+residual (7)": "single_track",
}


@dataclass
class Row:
    model: str
    planner: str
    backend: str
    median_ms: float
    p99_ms: float
    ratio: float = float("nan")  #: median / the first row's median

    @property
    def fits(self) -> bool:
        return self.p99_ms <= BUDGET_MS


def bundle_of(nominal: str) -> ModelBundle:
    inputs, outputs = default_fields(5 if nominal == "kinematic" else 7)
    residual = ResidualEnsemble(len(inputs) + 2, len(outputs), ResidualConfig(), seed=1)
    return ModelBundle("bench", PARAMS, residual, nominal=nominal, single_track=SINGLE_TRACK,
                       input_fields=inputs, output_fields=outputs)


def measure(nominal: str, config, track, steps: int) -> tuple[str, np.ndarray]:
    model = bundle_of(nominal).build(DT)
    planner = build_planner(config, model, TrackCost(CostConfig(target_speed=SPEED), track, PARAMS), PARAMS)
    x = start_state(track, SPEED, state_dim=model.state_dim).float()
    plan, last = None, torch.zeros(2)
    times = []
    for n in range(steps + WARMUP):
        started = time.perf_counter()
        result = planner.plan(x, plan, last)
        if n >= WARMUP:
            times.append((time.perf_counter() - started) * 1e3)
        planner.prepare()
        last = result.actions[0].clone()
        plan = shift_plan(result.actions, DT, DT)
    return getattr(planner, "backend", "torch"), np.asarray(times)


def specs(compile_torch: bool) -> list[tuple[str, str, object]]:
    mppi = lambda backend: MPPIConfig(num_samples=1024, horizon=40, backend=backend, compile=compile_torch)  # noqa: E731
    ilqr = lambda backend: ILQRConfig(horizon=40, backend=backend, compile=compile_torch)  # noqa: E731
    out = []
    for label, make in (("mppi K=1024 H=40", mppi), ("ilqr H=40", ilqr)):
        out.append(("kinematic+residual (5)", label, make("native")))
        out.append(("kinematic+residual (5)", label, make("torch")))
        out.append(("kinematic_dynamic_state+residual (7)", label, make("native")))
        out.append(("kinematic_dynamic_state+residual (7)", label, make("torch")))
        out.append(("single_track+residual (7)", label, make("auto")))
    # Smaller problems for the single-track model (torch only): what comes near the budget.
    out.append(("single_track+residual (7)", "mppi K=256 H=20", MPPIConfig(num_samples=256, horizon=20,
                                                                         compile=compile_torch)))
    out.append(("single_track+residual (7)", "ilqr H=20", ILQRConfig(horizon=20, compile=compile_torch)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40, help="timed plan calls per row")
    p.add_argument("--threads", type=int, default=1, help="torch and kernel threads")
    p.add_argument("--compile", action="store_true", help="torch.compile the torch rows' hot path")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    track = load_track("random:0")
    rows: list[Row] = []
    for model, label, config in specs(args.compile):
        backend, times = measure(MODELS[model], config, track, args.steps)
        rows.append(Row(model, label, backend, float(np.median(times)), float(np.percentile(times, 99))))
        print(f"  measured {model} {label} {backend}", file=sys.stderr, flush=True)
    for row in rows:
        kind = row.planner.split()[0]  # the baseline: the 5-field native row of the same planner
        base = next(r for r in rows if r.planner.split()[0] == kind)
        row.ratio = row.median_ms / base.median_ms
    print(f"threads {args.threads}, torch.compile {'on' if args.compile else 'off'}, "
          f"{args.steps} calls per row; ratio: median / the 5-field native row of the same planner "
          "at K=1024 H=40 or H=40")
    head = f"{'model':<38}{'planner':<18}{'backend':<9}{'median ms':>10}{'p99 ms':>9}{'ratio':>8}  fits {BUDGET_MS:g} ms"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.model:<38}{r.planner:<18}{r.backend:<9}{r.median_ms:>10.1f}{r.p99_ms:>9.1f}{r.ratio:>8.2f}  "
              f"{'yes' if r.fits else 'no'}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"fits_budget": r.fits} for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
