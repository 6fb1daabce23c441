"""Step the daemon's ControlCore in-process: no sockets, the same control step the daemon runs.

    python examples/control_core.py [--steps 200]

``build_runtime`` assembles what ``python -m controller`` serves from a config (track, model,
planner, delay compensation, fallbacks); ``core.step(state, stamp)`` is one request.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from controller import build_runtime, load_config
from sim import start_state
from vehicle_models import KinematicBicycle, State


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args(argv)

    config = load_config(overrides=["track=circle", "planner.num_samples=256", "planner.horizon=25",
                                    "planner.compile=false", "log.enabled=false"])
    runtime = build_runtime(config)
    core, period = runtime.core, config.control_period
    plant = KinematicBicycle(runtime.model.params, period)  # stands in for the car
    lookup = runtime.track.lookup(torch.float64)

    x = start_state(runtime.track, 5.0)
    statuses: dict[str, int] = {}
    lateral = []
    for k in range(args.steps):
        # 7 floats in CommonRoad order; NaN for what a kinematic car does not measure
        state = [*x.tolist(), math.nan, math.nan]
        outcome = core.step(state, stamp=k * period)
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        core.after_reply()  # the daemon calls this once the reply is out
        x = plant.step(x, torch.tensor(outcome.action, dtype=torch.float64))
        lateral.append(abs(lookup.locate(x[State.X], x[State.Y], x[State.YAW], 1.7)[1]))
    print(f"{args.steps} steps of {period} s on {runtime.track.name} with {core.planner.name}: "
          f"statuses {statuses}, mean |lateral| {np.mean(lateral):.3f} m, speed {float(x[State.V]):.2f} m/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
