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
    python bench/planners.py --disassemble       # print the dense layer's inner loop per build

The ``cost`` column says which cost a row runs: ``track`` (the one above) or ``friction`` (the
same with the friction-circle term on, issue 10: the kernel then also computes the vehicle
features); the friction rows sit beside their ``track`` twins (MPPI kinematic K=4096, iLQR
kinematic), so the term's price is their ratio in the same run.

Every row runs once per build of the native kernel: ``native`` (``-march=native``) and
``x86-64-v3`` (any AVX2 CPU), so the portable build's cost shows on one machine. Beside them
the same run measures the fast path's residual network in GFLOP/s (useful FLOPs of the
unpadded network, K=16384 points) and torch's float32 GEMM on a large square, both on the same
threads; ``gemm_ratio`` (network / GEMM) goes into every --json record of that build.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.costs import CostConfig, CostWeights, TrackCost  # noqa: E402
from controller.native import NativeProblem  # noqa: E402
from controller.native import build as native_build  # noqa: E402
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
from vehicle_models.semi_parametric import DEFAULT_OUTPUT_FIELDS, SemiParametricModel  # noqa: E402

CONTROL_PERIOD = 0.05
TARGET_SPEED = 10.0
WARMUP_STEPS = 15
PARAMS = load_params("passenger_car")
COST = CostConfig(target_speed=TARGET_SPEED, weights=CostWeights(rate=(0.0, 0.0)))
#: The rows marked cost "friction": the friction-circle term on (issue 10), so the kernel also
#: computes the vehicle features (a_lon, a_lat) and the term in every rollout step.
FRICTION_COST = COST.model_copy(update={"weights": COST.weights.model_copy(update={"friction": 1000.0})})
COSTS = {"track": COST, "friction": FRICTION_COST}
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
    build: str = "native"
    gemm_ratio: float | None = None
    cost: str = "track"


@dataclass
class Throughput:
    build: str
    residual_gflops: float
    gemm_gflops: float

    @property
    def gemm_ratio(self) -> float:
        return self.residual_gflops / self.gemm_gflops


BUILDS = (native_build.DEFAULT_MARCH, native_build.PORTABLE_MARCH)
GEMM_SIZE = 2048
RESIDUAL_POINTS = 16384


def best_seconds(*calls: Callable[[], object], repeats: int = 15) -> list[float]:
    """Fastest of ``repeats`` timed runs of each call, the calls interleaved (a machine shared
    with other work slows both alike, so their ratio holds), after one warm-up run each."""
    best = [float("inf")] * len(calls)
    for call in calls:
        call()
    for _ in range(repeats):
        for i, call in enumerate(calls):
            started = time.perf_counter()
            call()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def measure_throughput(build: str, track, threads: int) -> Throughput:
    """The native residual network's useful GFLOP/s (unpadded widths, RESIDUAL_POINTS points)
    and torch's float32 GEMM on a GEMM_SIZE square (MKL / oneDNN: the CPU's practical peak)."""
    model = make_model("semi")
    native = NativeProblem(model, TrackCost(COST, track, PARAMS), torch.tensor(PARAMS.action_low),
                           torch.tensor(PARAMS.action_high), threads)
    sizes = [model.residual.in_dim, *model.residual.config.hidden, model.residual.out_dim]
    flops = 2.0 * RESIDUAL_POINTS * model.ensemble_size * sum(a * b for a, b in zip(sizes, sizes[1:]))
    g = torch.Generator().manual_seed(0)
    features = torch.randn(RESIDUAL_POINTS, sizes[0], generator=g)
    rates = torch.empty(RESIDUAL_POINTS, sizes[-1])
    a, b = torch.randn(GEMM_SIZE, GEMM_SIZE, generator=g), torch.randn(GEMM_SIZE, GEMM_SIZE, generator=g)
    out = torch.empty(GEMM_SIZE, GEMM_SIZE)
    network_s, gemm_s = best_seconds(
        lambda: native.residual(features, rates), lambda: torch.mm(a, b, out=out)
    )
    return Throughput(build, flops / network_s / 1e9, 2.0 * GEMM_SIZE**3 / gemm_s / 1e9)


def disassemble(march: str) -> str:
    """The dense layer's inner loop (the block of vfmadd231ps) of one build, from objdump."""
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(native_build.build(march))],
                          capture_output=True, text=True, check=True).stdout
    body = text.split("<residual_forward>:", 1)[-1].split("\n\n", 1)[0].splitlines()
    hot = [i for i, line in enumerate(body) if "vfmadd231ps" in line]
    if not hot:
        return f"{march}: no vfmadd231ps in residual_forward"
    return "\n".join([f"== -march={march}"] + body[max(0, hot[0] - 4): hot[min(len(hot) - 1, 15)] + 4])


def make_model(name: str) -> KinematicBicycle | SemiParametricModel:
    nominal = KinematicBicycle(PARAMS, CONTROL_PERIOD)
    if name == "kinematic":
        return nominal
    ensemble = {"semi": 1, "semi-ens5": 5}[name]
    residual = ResidualEnsemble(4, len(DEFAULT_OUTPUT_FIELDS), ResidualConfig(hidden=(64, 64), ensemble_size=ensemble), seed=1)
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


def ours(config, model, track, cost_config: CostConfig = COST) -> Callable:
    cost = TrackCost(cost_config, track, PARAMS)
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
        f = cost.features(states, states.new_zeros(*states.shape[:-1], 2))  # no action terms here
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


def run_row(spec: dict, track, steps: int, paced: bool, with_peer: bool, build: str) -> Row:
    model = make_model(spec["model"])
    config = spec["config"]
    cost_name = spec.get("cost", "track")
    times, lat = closed_loop(ours(config, model, track, COSTS[cost_name]), model, track, steps, paced)
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
        build=build,
        cost=cost_name,
    )
    if with_peer and config.kind == "mppi" and cost_name == "track":
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
            {"model": "kinematic", "config": mppi(4096, 40), "cost": "friction"},
            {"model": "kinematic", "config": ILQRConfig(horizon=40), "cost": "friction"},
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
    rows.append({"model": "kinematic", "config": mppi(4096, 40), "cost": "friction"})
    rows.append({"model": "kinematic", "config": ILQRConfig(horizon=40), "cost": "friction"})
    return rows


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[Row]) -> None:
    head = f"{'build':<10} {'planner':<10} {'model':<10} {'cost':<8} {'K':>5} {'H':>3} {'median ms':>10} {'p99 ms':>8} {'|lat| m':>8} {'peer med':>9} {'peer p99':>9} {'peer|lat|':>9} {'speedup':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.build:<10} {r.planner:<10} {r.model:<10} {r.cost:<8} {fmt(r.samples, 'd'):>5} {r.horizon:>3} "
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
    parser.add_argument("--builds", nargs="+", default=list(BUILDS), help="-march targets of the kernel")
    parser.add_argument("--disassemble", action="store_true", help="print the dense inner loop per build")
    args = parser.parse_args(argv)
    if args.disassemble:
        for march in args.builds:
            print(disassemble(march))
        return 0
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    steps = args.steps or (120 if args.quick else 200)
    track = load_track("random:0")
    rows, throughput = [], {}
    for build in args.builds:
        os.environ["VEHICLE_MPC_MARCH"] = build  # the kernel build every planner below loads
        throughput[build] = measure_throughput(build, track, args.threads)
        peers: dict[int, Row] = {}
        for i, spec in enumerate(specs(args.quick)):
            with_peer = spec.get("peer", False) and not args.no_peer and i not in peers
            row = run_row(spec, track, steps, args.paced, with_peer, build)
            if row.peer_median_ms is not None:
                peers[i] = row
            elif i in peers:  # pytorch_mppi does not depend on the build: measured once
                p = peers[i]
                row.peer_median_ms, row.peer_p99_ms = p.peer_median_ms, p.peer_p99_ms
                row.peer_mean_abs_lateral_m = p.peer_mean_abs_lateral_m
                row.speedup = row.peer_median_ms / row.median_ms
            row.gemm_ratio = throughput[build].gemm_ratio
            rows.append(row)
            print(f"  done: {build} {row.planner} {row.model} K={row.samples} H={row.horizon}",
                  file=sys.stderr, flush=True)
    print(f"\nsolve time per control step, {steps - WARMUP_STEPS} calls per row "
          f"({'paced at 20 Hz' if args.paced else 'back to back'}), {args.threads} threads, float32\n")
    print_table(rows)
    print(f"\nresidual network (native kernel, {RESIDUAL_POINTS} points) against torch float32 GEMM "
          f"({GEMM_SIZE}^2), {args.threads} threads, fastest of 15 interleaved runs\n")
    print(f"{'build':<10} {'residual GFLOP/s':>17} {'GEMM GFLOP/s':>13} {'gemm_ratio':>11}")
    for t in throughput.values():
        print(f"{t.build:<10} {t.residual_gflops:>17.1f} {t.gemm_gflops:>13.1f} {t.gemm_ratio:>11.2f}")
    if len(throughput) > 1:
        rows_by_build: dict[tuple, dict[str, float]] = {}
        for r in rows:
            rows_by_build.setdefault((r.planner, r.model, r.samples, r.horizon), {})[r.build] = r.median_ms
        print(f"\nmedian solve time of each build over the {args.builds[0]} build's")
        for key, by_build in rows_by_build.items():
            ratios = "  ".join(f"{b}: {by_build[b] / by_build[args.builds[0]]:.2f}x" for b in by_build)
            print(f"  {key[0]:<10} {key[1]:<10} K={fmt(key[2], 'd'):>5} H={key[3]:<3} {ratios}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
