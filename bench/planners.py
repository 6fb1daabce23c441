"""Planner benchmark: solve time per control step (median, p99) and closed-loop tracking.

Each row drives a closed loop on the generated track ``random:0`` at 10 m/s for ``--steps``
control periods (0.05 s), warm-started as in the daemon, and times every ``plan`` call after a
warm-up. The plant is the planner's own model (closed-loop quality measures the planner, not
model mismatch). MPPI rows also run pytorch_mppi (PyPI ``pytorch-mppi``, the ``bench`` extra)
on the identical problem in the same process: same model, K, H, temperature, white noise of
the same scale, the same running and terminal cost. For that, our MPPI runs with white noise
and without the action-rate term, which pytorch_mppi's per-step cost cannot express.

    python bench/planners.py --quick             # the target rows, in under two minutes
    python bench/planners.py --json out.json     # every configuration
    python bench/planners.py --paced             # calls paced at the control rate (20 Hz)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.costs import CostConfig, CostWeights, TrackCost  # noqa: E402
from controller.planners.base import shift_plan  # noqa: E402
from controller.planners.combined import CombinedConfig  # noqa: E402
from controller.planners.ilqr import ILQRConfig  # noqa: E402
from controller.planners.mppi import MPPIConfig  # noqa: E402
from controller.planners.noise import NoiseConfig  # noqa: E402
from controller.planners.registry import build_planner  # noqa: E402
from controller.track import load_track  # noqa: E402
from sim.closed_loop import start_state  # noqa: E402
from vehicle_models import KinematicBicycle, State, load_params  # noqa: E402
from vehicle_models.residual import ResidualConfig, ResidualEnsemble  # noqa: E402
from vehicle_models.semi_parametric import SemiParametricModel  # noqa: E402

CONTROL_PERIOD = 0.05
TARGET_SPEED = 10.0
WARMUP_STEPS = 15
PARAMS = load_params("passenger_car")
COST = CostConfig(target_speed=TARGET_SPEED, weights=CostWeights(rate=(0.0, 0.0)))
NOISE = NoiseConfig(kind="white")


@dataclass
class Row:
    planner: str
    model: str
    samples: int | None
    horizon: int
    median_ms: float
    p99_ms: float
    mean_abs_lateral_m: float
    peer_median_ms: float | None = None
    peer_p99_ms: float | None = None
    peer_mean_abs_lateral_m: float | None = None
    speedup: float | None = None


def make_model(name: str) -> KinematicBicycle | SemiParametricModel:
    nominal = KinematicBicycle(PARAMS, CONTROL_PERIOD)
    if name == "kinematic":
        return nominal
    ensemble = {"semi": 1, "semi-ens5": 5}[name]
    residual = ResidualEnsemble(4, 5, ResidualConfig(hidden=(64, 64), ensemble_size=ensemble), seed=1)
    with torch.no_grad():
        residual.weights[-1].mul_(20)  # a residual that visibly changes predictions
    return SemiParametricModel(nominal, residual, dtype=torch.float32)


def closed_loop(
    solve: Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor],
    model,
    track,
    steps: int,
    paced: bool,
) -> tuple[np.ndarray, float]:
    """Solve times [ms] after warm-up and the mean |lateral offset| over the run."""
    lookup = track.lookup(torch.float64)
    x = start_state(track, TARGET_SPEED).to(torch.float32)
    last = torch.zeros(2)
    plan: torch.Tensor | None = None
    times, lateral = [], []
    next_tick = time.perf_counter()
    for n in range(steps):
        if paced:
            next_tick += CONTROL_PERIOD
            time.sleep(max(0.0, next_tick - time.perf_counter()))
        started = time.perf_counter()
        plan = solve(x, plan, last)
        elapsed = time.perf_counter() - started
        if n >= WARMUP_STEPS:
            times.append(elapsed * 1e3)
        if hasattr(solve, "after"):
            solve.after()
        last = plan[0].float()
        x = model.step(x.unsqueeze(0), last.unsqueeze(0))[0]
        plan = shift_plan(plan, CONTROL_PERIOD, CONTROL_PERIOD)
        p = lookup.project(*(x[i : i + 1].double() for i in (State.X, State.Y, State.YAW)))
        lateral.append(abs(float(p.lateral[0])))
    return np.asarray(times), float(np.mean(lateral))


def ours(config, model, track) -> Callable:
    cost = TrackCost(COST, track, PARAMS)
    planner = build_planner(config, model, cost, PARAMS)

    def solve(x, warm, last):
        return planner.plan(x, warm, last).actions

    # As in the daemon: the next call's noise is drawn after the reply, off the clock.
    solve.after = planner.prepare  # type: ignore[attr-defined]
    return solve


def peer(config: MPPIConfig, model, track) -> Callable:
    """pytorch_mppi on the same model and cost (running terms per step, terminal weight at H)."""
    from pytorch_mppi import MPPI as PeerMPPI

    cost = TrackCost(COST, track, PARAMS)
    w = COST.weights

    def state_terms(states: torch.Tensor) -> torch.Tensor:
        f = cost.features(states)
        excess = torch.relu(f.lateral - f.room_left) + torch.relu(-f.lateral - f.room_right)
        return (
            w.lateral * f.lateral.square()
            + w.heading * f.heading_error.square()
            + w.speed * f.speed_error.square()
            + w.boundary * excess.square()
        )

    effort_w = torch.tensor(w.effort)

    def running_cost(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return state_terms(state) + ((action / cost.action_scale).square() * effort_w).sum(-1)

    def terminal_cost(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return (COST.terminal_weight - 1.0) * state_terms(states[..., -1, :])

    sigma = torch.tensor(config.noise.sigma)
    controller = PeerMPPI(
        lambda x, u: model.step(x, u),
        running_cost,
        model.state_dim,
        noise_sigma=torch.diag(sigma.square()),
        num_samples=config.num_samples,
        horizon=config.horizon,
        lambda_=config.temperature,
        u_min=torch.tensor(PARAMS.action_low),
        u_max=torch.tensor(PARAMS.action_high),
        terminal_state_cost=terminal_cost,
        sample_null_action=True,
    )

    def solve(x, warm, last):
        controller.command(x)
        return controller.U.detach().clone()  # the plan it shifts and keeps internally

    return solve


def run_row(spec: dict, track, steps: int, paced: bool, with_peer: bool) -> Row:
    model = make_model(spec["model"])
    config = spec["config"]
    times, lat = closed_loop(ours(config, model, track), model, track, steps, paced)
    samples = getattr(config, "num_samples", None)
    if config.kind == "mppi+ilqr":
        samples = config.mppi.num_samples
    row = Row(
        planner=config.kind,
        model=spec["model"],
        samples=samples,
        horizon=config.horizon,
        median_ms=float(np.median(times)),
        p99_ms=float(np.percentile(times, 99)),
        mean_abs_lateral_m=lat,
    )
    if with_peer and config.kind == "mppi":
        peer_times, peer_lat = closed_loop(peer(config, model, track), model, track, steps, paced)
        row.peer_median_ms = float(np.median(peer_times))
        row.peer_p99_ms = float(np.percentile(peer_times, 99))
        row.peer_mean_abs_lateral_m = peer_lat
        row.speedup = row.peer_median_ms / row.median_ms
    return row


def mppi(k: int, h: int) -> MPPIConfig:
    return MPPIConfig(num_samples=k, horizon=h, noise=NOISE)


def specs(quick: bool) -> list[dict]:
    if quick:
        return [
            {"model": "semi", "config": mppi(1024, 40), "peer": True},
            {"model": "kinematic", "config": mppi(4096, 40), "peer": False},
            {"model": "kinematic", "config": ILQRConfig(horizon=40)},
            {"model": "semi", "config": ILQRConfig(horizon=40)},
        ]
    rows = []
    for model in ("kinematic", "semi", "semi-ens5"):
        for k in (256, 1024, 4096):
            for h in (20, 40):
                rows.append({"model": model, "config": mppi(k, h), "peer": True})
        for h in (20, 40):
            rows.append({"model": model, "config": ILQRConfig(horizon=h)})
        rows.append(
            {"model": model, "config": CombinedConfig(mppi=mppi(1024, 40), ilqr=ILQRConfig(horizon=40))}
        )
    return rows


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[Row]) -> None:
    head = f"{'planner':<10} {'model':<10} {'K':>5} {'H':>3} {'median ms':>10} {'p99 ms':>8} {'|lat| m':>8} {'peer med':>9} {'peer p99':>9} {'peer|lat|':>9} {'speedup':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.planner:<10} {r.model:<10} {fmt(r.samples, 'd'):>5} {r.horizon:>3} "
            f"{r.median_ms:>10.2f} {r.p99_ms:>8.2f} {r.mean_abs_lateral_m:>8.3f} "
            f"{fmt(r.peer_median_ms):>9} {fmt(r.peer_p99_ms):>9} {fmt(r.peer_mean_abs_lateral_m, '.3f'):>9} "
            f"{fmt(r.speedup, '.1f'):>8}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the target rows (< 2 min)")
    parser.add_argument("--json", type=Path, help="write the rows as a JSON list here")
    parser.add_argument("--steps", type=int, default=None, help="control steps per row")
    parser.add_argument("--paced", action="store_true", help="call at the control rate, not back to back")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--no-peer", action="store_true", help="skip pytorch_mppi")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    steps = args.steps or (120 if args.quick else 200)
    track = load_track("random:0")
    rows = []
    for spec in specs(args.quick):
        row = run_row(spec, track, steps, args.paced, spec.get("peer", False) and not args.no_peer)
        rows.append(row)
        print(f"  done: {row.planner} {row.model} K={row.samples} H={row.horizon}", file=sys.stderr, flush=True)
    print(f"\nsolve time per control step, {steps - WARMUP_STEPS} calls per row "
          f"({'paced at 20 Hz' if args.paced else 'back to back'}), {args.threads} threads, float32\n")
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
