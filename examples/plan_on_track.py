"""Build a planner on a model and a track, and ask it for a plan (as in a notebook).

    python examples/plan_on_track.py [--track figure_eight] [--planner mppi|ilqr]
"""

from __future__ import annotations

import argparse

import torch

from controller import CostConfig, ILQRConfig, MPPIConfig, TrackCost, build_planner, load_track
from sim import start_state
from vehicle_models import KinematicBicycle, State, load_params


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--track", default="figure_eight")
    p.add_argument("--planner", choices=("mppi", "ilqr"), default="mppi")
    args = p.parse_args(argv)

    params = load_params("passenger_car")  # configs/vehicles/passenger_car.yaml
    track = load_track(args.track)
    config = MPPIConfig(num_samples=512, horizon=30) if args.planner == "mppi" else ILQRConfig(horizon=30)
    model = KinematicBicycle(params, config.dt)  # any Dynamics: a bundle's .build(dt) too
    cost = TrackCost(CostConfig(target_speed=8.0), track, params, torch.float32)
    planner = build_planner(config, model, cost, params, torch.float32)

    state = start_state(track, speed=5.0)  # on the centre line at s = 0, heading along it
    result = planner.plan(state)  # cold start; pass the shifted plan as warm_start after
    planner.prepare()  # the work that needs no state (MPPI: the next call's noise)
    result = planner.plan(state, warm_start=result.actions, last_action=result.actions[0])

    steer_rate, accel = result.actions[0].tolist()
    end = result.states[-1]
    print(f"{planner.name} on {track.name}: first action steer_rate {steer_rate:+.3f} rad/s, accel {accel:+.3f} m/s^2")
    print(f"plan of {len(result.actions)} steps of {planner.dt} s; predicted end x {end[State.X]:.1f} m, "
          f"y {end[State.Y]:.1f} m, v {end[State.V]:.2f} m/s")
    print(f"cost {result.cost:.3f} ({', '.join(f'{k} {v:.3f}' for k, v in result.cost_terms.items())}); "
          f"solve {result.solve_time_s * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
