"""The log -> refit -> reload loop, measured: prediction error and tracking before and after.

    python bench/refit_loop.py [--json out.json] [--speed 10] [--laps 2] [--track circle]
        [--samples 512 --horizon 30] [--epochs 300] [--keep DIR]

Starts the daemon with a deliberately wrong nominal model (wheelbase +15 %, steering gain
0.85), drives, refits with tools.sysid, reloads, drives again (see tools/refit_loop.py).
Targets: 1 s open-loop position RMSE on held-out laps down by at least 50 %; mean |lateral
offset| down by at least 30 %; no time off track. The reload brings the fitted input dead
time (``fit_metrics.dead_time_s``) into the daemon's delay compensation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.refit_loop import LoopSettings, run_loop  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--json", type=Path)
    p.add_argument("--speed", type=float, default=10.0)
    p.add_argument("--laps", type=float, default=2.0)
    p.add_argument("--track", default="circle")
    p.add_argument("--keep", type=Path, help="keep the run's logs and models here")
    p.add_argument("--samples", type=int, default=512, help="MPPI samples K")
    p.add_argument("--horizon", type=int, default=30, help="MPPI horizon H")
    p.add_argument("--no-compile", action="store_true", help="planner.compile=false (torch backend only)")
    p.add_argument("--epochs", type=int, default=300, help="residual training epochs")
    args = p.parse_args()
    overrides = (f"planner.num_samples={args.samples}", f"planner.horizon={args.horizon}",
                 *(("planner.compile=false",) if args.no_compile else ()))
    settings = LoopSettings(track=args.track, target_speed=args.speed, laps=args.laps,
                            planner_overrides=overrides, epochs=args.epochs)
    with tempfile.TemporaryDirectory() as d:
        work = args.keep or Path(d)
        work.mkdir(parents=True, exist_ok=True)
        result = run_loop(work, settings)
    print(f"{args.track} at {args.speed:g} m/s, {args.laps:g} laps per drive, after-drive: "
          f"{result['settings']['after_drive']}")
    print(f"{'measure':<28} {'before':>10} {'after':>10} {'change':>8}")
    for key in ("rmse_pos_1s_m", "mean_abs_lateral_m", "offtrack_s"):
        b, a = result[key]["before"], result[key]["after"]
        change = f"{(a - b) / b * 100:+.0f}%" if b else "-"
        print(f"{key:<28} {b:>10.3f} {a:>10.3f} {change:>8}")
    ref = result["rmse_reference"]["true_geometry_kinematic_1s_pos_m"]
    print(f"reference: kinematic model with the true geometry, best dead time: {ref:.3f} m at 1 s")
    fit = result["fit"]
    print(f"fitted: {fit['kinematic']}, dead time {result['dead_time_s']['after']:.3f} s "
          f"({fit['chosen']}), model {result['model']['after']}; daemon dead time "
          f"{result['daemon_dead_time_s']['before']:.3f} -> {result['daemon_dead_time_s']['after']:.3f} s")
    for w in fit["weak_directions"] + fit["excitation_warnings"]:
        print(f"  note: {w}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
