"""python -m tools.sysid fit|watch|ladder: refit the vehicle model from transition logs.

    python -m tools.sysid fit --logs runs/x/logs --out models [--base models/<bundle>] [--force]
    python -m tools.sysid fit --logs car1/logs car2/logs car3/logs --out models --cache fleet-cache

Many --logs sources (cars, days) are read as one Arrow dataset (tools/sysid/fleet.py): the fit
holds its arrays, never every record at once; --cache keeps the converted logs for the next refit.
    python -m tools.sysid watch --logs runs/ --model-dir models --every 2
    python -m tools.sysid ladder --track ../shared/tracks/Zandvoort.csv --car std   # tools/sysid/ladder.py

Several bundles on logs none was fitted on (docs/sysid.md):
    python -m tools.sysid evaluate --logs runs/other/logs --bundles models/a models/b

A dynamic-state model (the logs must hold yaw_rate and slip; docs/sysid.md):
    python -m tools.sysid fit --logs runs/x/logs --out models --nominal single_track [--stiffness 15 15]
    python -m tools.sysid fit --logs runs/x/logs --out models --nominal kinematic_dynamic_state
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from controller.translog import LogError
from tools.sysid.data import DataError, control_period
from tools.sysid.fit import FitOptions, RefusedError, run_fit
from vehicle_models.bundle import BundleError


def print_report(report: dict) -> None:
    k = report["kinematic"]
    print(f"{report['steps']} steps, period {report['control_period_s']:.3f} s, "
          f"{report['train_blocks']} training / {report['validation_blocks']} held-out blocks")
    print("kinematic parameters (95% CI):")
    for name, value in k["estimates"].items():
        if name in k.get("held_at_prior", []):
            print(f"  {name:<14} {value:9.4f}  (held at the prior)")
            continue
        print(f"  {name:<14} {value:9.4f}  +- {k['ci95'][name]:.4f}{'  AT BOUND' if name in k['at_bound'] else ''}")
    costs = ", ".join(f"{t} s: {c:.4g}" for t, c in report.get("dead_time_costs", {}).items())
    print(f"input dead time {report.get('dead_time_s', 0.0):.3f} s (fit cost per dead time: {costs})")
    for w in k["weak_directions"]:
        print(f"  poorly excited: {w}")
    for w in report["excitation_warnings"]:
        print(f"  missing manoeuvre: {w}")
    if report.get("tyres"):
        t = report["tyres"]
        e = t["excitation"]
        print(f"tyre excitation: max |a_lat| {e['max_lateral_g']:.2f} g (p99 {e['p99_lateral_g']:.2f} g), "
              f"max |slip angle| front {e['max_slip_angle_front']:.3f} rad, rear {e['max_slip_angle_rear']:.3f} rad, "
              f"{e['transitions']} moving transitions")
        print("tyre parameters (95% CI):")
        for name, value in t["estimates"].items():
            ci = "(held at the prior)" if name in t["held_at_prior"] else f"+- {t['ci95'].get(name, float('nan')):.4f}"
            print(f"  {name:<16} {value:9.4f}  {ci}")
        for note in t["notes"]:
            print(f"  {note}")
    if report["residual"]:
        r = report["residual"]
        print(f"residual: best epoch {r['best_epoch']} of {r['epochs']}, validation loss {r['validation_loss']:.4f}")
    print("held-out open-loop prediction RMSE:")
    print(report["table"])


def cmd_fit(args: argparse.Namespace) -> int:
    options = FitOptions(ensemble_size=args.ensemble, epochs=args.epochs, seed=args.seed, force=args.force,
                         progress=not args.quiet, residual=not args.no_residual,
                         cache=getattr(args, "cache", None), nominal=getattr(args, "nominal", "kinematic"),
                         stiffness=tuple(args.stiffness) if getattr(args, "stiffness", None) else None)
    try:
        report = run_fit(args.logs, args.out, args.base, args.vehicle, options)
    except RefusedError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 3
    except (DataError, LogError, BundleError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_report(report)
    print(f"wrote {report['bundle']} (chosen: {report['chosen']})")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Refit whenever ``--every`` more minutes of driving have been logged."""
    from controller.translog import load_steps, log_files
    from controller.runtime import newest_bundle

    fitted_s = 0.0
    while True:
        try:
            steps = load_steps(log_files([args.logs]))
            driven = len(steps) * control_period(steps)
        except (LogError, DataError):
            driven = 0.0
        if driven - fitted_s >= args.every * 60:
            base = newest_bundle(args.model_dir) if Path(args.model_dir).exists() else None
            ns = argparse.Namespace(logs=[args.logs], out=Path(args.model_dir), base=str(base) if base else None,
                                    vehicle=args.vehicle, ensemble=1, epochs=300, seed=0, force=False, quiet=True,
                                    no_residual=False)
            code = cmd_fit(ns)
            print(f"refit after {driven / 60:.1f} min of driving: exit {code}", flush=True)
            fitted_s = driven
        if args.once:
            return 0
        time.sleep(args.poll)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tools.sysid.compare import compare_bundles, print_comparison

    try:
        rows = compare_bundles(args.logs, args.bundles, None if args.no_kinematic else args.vehicle)
    except (DataError, LogError, BundleError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_comparison(rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.sysid")
    sub = p.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit kinematic parameters and the residual; write a bundle")
    fit.add_argument("--logs", nargs="+", required=True,
                     help="log files or directories; each one car of the fleet")
    fit.add_argument("--cache", help="keep the logs converted to Parquet here (later refits reuse them)")
    fit.add_argument("--out", type=Path, required=True, help="directory for the new bundle")
    fit.add_argument("--base", help="the bundle to improve on (its parameters are the prior)")
    fit.add_argument("--vehicle", default="passenger_car", help="prior parameters without --base")
    fit.add_argument("--ensemble", type=int, default=1, help="residual ensemble size")
    fit.add_argument("--epochs", type=int, default=300)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--no-residual", action="store_true", help="kinematic parameters only")
    fit.add_argument("--force", action="store_true", help="write even if worse than the base")
    fit.add_argument("--quiet", action="store_true")
    fit.add_argument("--nominal", choices=("kinematic", "kinematic_dynamic_state", "single_track"),
                     default="kinematic",
                     help="parametric core of the bundle: kinematic (5 fields) or a dynamic-state one "
                          "(7 fields; the logs must hold yaw_rate and slip)")
    fit.add_argument("--stiffness", type=float, nargs=2, metavar=("C_SF", "C_SR"),
                     help="single_track: cornering stiffness the tyre fit starts from [1/rad] "
                          "(default: the base bundle's, else the vehicle's dynamic: section)")
    watch = sub.add_parser("watch", help="refit every N minutes of new driving")
    watch.add_argument("--logs", required=True)
    watch.add_argument("--model-dir", required=True)
    watch.add_argument("--every", type=float, default=5.0, help="minutes of driving between refits")
    watch.add_argument("--vehicle", default="passenger_car")
    watch.add_argument("--poll", type=float, default=10.0)
    watch.add_argument("--once", action="store_true")
    evaluate = sub.add_parser("evaluate", help="prediction error of bundles on logs none was fitted on")
    evaluate.add_argument("--logs", nargs="+", required=True, help="log files or directories")
    evaluate.add_argument("--bundles", nargs="*", default=[], help="bundle directories to compare")
    evaluate.add_argument("--vehicle", default="passenger_car", help="its kinematic model is the first row")
    evaluate.add_argument("--no-kinematic", action="store_true", help="leave the vehicle's kinematic row out")
    from tools.sysid import ladder  # drives a daemon; imported only here, fit and watch never need it

    ladder.add_ladder_args(sub.add_parser("ladder", help="drive, refit, hot-reload, raise the pace (issue 10)"))
    args = p.parse_args(argv)
    commands = {"fit": cmd_fit, "watch": cmd_watch, "evaluate": cmd_evaluate, "ladder": ladder.cmd_ladder}
    return commands[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
