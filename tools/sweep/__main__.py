"""python -m tools.sweep: evaluation sweeps and tuning, serially or on Ray (docs/sweep.md).

    python -m tools.sweep run SPEC.yaml --out DIR [--address auto|ray://HOST:10001] [--serial]
    python -m tools.sweep compare DIR_A DIR_B [--on track,car,seed]
    python -m tools.sweep tune SPEC.yaml --out DIR [--address ...] [--serial]

``run`` writes DIR/trials/<id>.json per trial (a second run skips those), then
DIR/results.parquet, the summary (printed and DIR/summary.txt) and PNG plots. Without
--address it starts a private Ray on this machine; --serial runs in this process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.sweep.spec import SpecError, expand, load_spec


def _executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="results directory")
    p.add_argument("--address", help="join a Ray cluster: auto, HOST:PORT or ray://HOST:10001")
    p.add_argument("--serial", action="store_true", help="run in this process, no Ray")
    p.add_argument("--workers", type=int, help="local Ray's CPUs (default: all cores)")


def cmd_run(args: argparse.Namespace) -> int:
    from tools.sweep.results import plot, summary_text, table, write_table
    from tools.sweep.runner import load_rows, run_sweep

    spec = load_spec(args.spec)
    trials = expand(spec)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "spec.yaml").write_text(Path(args.spec).read_text())
    ran, skipped = run_sweep(trials, args.out, "serial" if args.serial else "ray", args.address,
                             args.workers, args.retry_failed)
    print(f"{ran} trials run, {skipped} already in {args.out}")
    frame = table(load_rows(args.out), [t.trial_id for t in trials])
    write_table(frame, args.out / "results.parquet")
    text = summary_text(frame)
    (args.out / "summary.txt").write_text(text + "\n")
    print(text)
    for path in plot(frame, args.out):
        print(f"plot: {path}")
    print(f"results: {args.out / 'results.parquet'}")
    return 0 if (frame["status"] == "ok").all() else 1


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from tools.sweep.results import PAIR_KEYS, compare, read_table

    a, b = read_table(args.a), read_table(args.b)
    on = tuple(args.on.split(",")) if args.on else PAIR_KEYS
    diffs, stats = compare(a, b, on=on, level=args.level)
    if diffs.empty:
        print("no trial pairs: the two sweeps share no trial keys (try --on track,car,seed)", file=sys.stderr)
        return 2
    print(f"{len(diffs)} paired trials; B - A, {int(args.level * 100)}% bootstrap interval of the mean")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(stats.to_string(index=False))
    if args.csv:
        diffs.to_csv(args.csv, index=False)
        print(f"per-pair differences: {args.csv}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from tools.sweep.tune import tune

    spec = load_spec(args.spec)
    args.out.mkdir(parents=True, exist_ok=True)
    best, frame = tune(spec, args.out, "serial" if args.serial else "ray", args.address, args.workers)
    print(frame.to_string(index=False))
    print(f"best: {best}")
    print(f"overlay: {args.out / 'best.yaml'}  (python -m controller --config {args.out / 'best.yaml'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every trial of a spec")
    run.add_argument("spec", type=Path)
    _executor_args(run)
    run.add_argument("--retry-failed", action="store_true", help="rerun trials recorded as failed")
    cmp = sub.add_parser("compare", help="paired differences between two sweeps")
    cmp.add_argument("a", type=Path, help="sweep directory (or results.parquet) A")
    cmp.add_argument("b", type=Path, help="sweep directory (or results.parquet) B")
    cmp.add_argument("--on", help="pair on these keys (default: track,car,car_params,planner,model,config,seed)")
    cmp.add_argument("--level", type=float, default=0.95)
    cmp.add_argument("--csv", type=Path, help="write the per-pair differences here")
    tn = sub.add_parser("tune", help="search planner and cost parameters (the spec's tune: section)")
    tn.add_argument("spec", type=Path)
    _executor_args(tn)
    args = parser.parse_args(argv)
    try:
        return {"run": cmd_run, "compare": cmd_compare, "tune": cmd_tune}[args.command](args)
    except (SpecError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
