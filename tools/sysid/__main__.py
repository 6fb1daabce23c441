"""python -m tools.sysid fit|watch|ladder: refit the vehicle model from transition logs.

    python -m tools.sysid fit --logs runs/x/logs --out models [--base models/<bundle>] [--force]
    python -m tools.sysid fit --logs car1/logs car2/logs car3/logs --out models --cache fleet-cache

Many --logs sources (cars, days) are read as one Arrow dataset (tools/sysid/fleet.py): the fit
holds its arrays, never every record at once; --cache keeps the converted logs for the next refit.
    python -m tools.sysid watch --logs runs/ --model-dir models --every 2
    python -m tools.sysid ladder --track ../shared/tracks/Zandvoort.csv --car std   # tools/sysid/ladder.py
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
    if report["residual"]:
        r = report["residual"]
        print(f"residual: best epoch {r['best_epoch']} of {r['epochs']}, validation loss {r['validation_loss']:.4f}")
    print("held-out open-loop prediction RMSE:")
    print(report["table"])


def cmd_fit(args: argparse.Namespace) -> int:
    options = FitOptions(ensemble_size=args.ensemble, epochs=args.epochs, seed=args.seed, force=args.force,
                         progress=not args.quiet, residual=not args.no_residual,
                         cache=getattr(args, "cache", None))
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
    watch = sub.add_parser("watch", help="refit every N minutes of new driving")
    watch.add_argument("--logs", required=True)
    watch.add_argument("--model-dir", required=True)
    watch.add_argument("--every", type=float, default=5.0, help="minutes of driving between refits")
    watch.add_argument("--vehicle", default="passenger_car")
    watch.add_argument("--poll", type=float, default=10.0)
    watch.add_argument("--once", action="store_true")
    from tools.sysid import ladder  # drives a daemon; imported only here, fit and watch never need it

    ladder.add_ladder_args(sub.add_parser("ladder", help="drive, refit, hot-reload, raise the pace (issue 10)"))
    args = p.parse_args(argv)
    if args.command == "ladder":
        return ladder.cmd_ladder(args)
    return cmd_fit(args) if args.command == "fit" else cmd_watch(args)


if __name__ == "__main__":
    raise SystemExit(main())
