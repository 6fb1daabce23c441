"""python -m tools.replay report|compare|export: analyse transition logs.

    python -m tools.replay report runs/x/logs --out report/
    python -m tools.replay compare runs/before/logs runs/after/logs --label before --label after --out cmp/
    python -m tools.replay export runs/x/logs --format parquet --out steps.parquet

The track is the one each log records (its first record); ``--track`` is checked against it
and refused when it differs (``--force-track`` analyses on it anyway, with a warning). Logs
written before the daemon recorded its track need ``--track``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from controller.track import TrackFormatError
from controller.translog import LogError, events, export, load_steps, write_table
from tools.replay import plots
from tools.replay.analysis import analyse, prediction_error_curve
from tools.replay.tracks import TrackMismatch, resolve_track
from tools.sysid.data import DataError, control_period
from vehicle_models.bundle import BundleError, load_bundle
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.params import load_params

ROWS = ("track", "steps", "episodes", "duration_s", "laps", "laps_driven", "lap_times_s", "mean_abs_lateral_m", "p95_abs_lateral_m",
        "max_abs_lateral_m", "mean_speed_mps", "max_speed_mps", "solve_ms_p50", "solve_ms_p99", "latency_ms_p50",
        "latency_ms_p99", "latency_ms_max", "deadline_misses", "fallbacks", "stops", "errors", "models", "planners")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v) or "-"
    return str(v)


def table(summaries: dict[str, dict]) -> str:
    names = list(summaries)
    lines = [f"{'':<22}" + "".join(f"{n[-28:]:>30}" for n in names)]
    for row in ROWS:
        lines.append(f"{row:<22}" + "".join(f"{_fmt(summaries[n].get(row)):>30}" for n in names))
    return "\n".join(lines)


def _model(args: argparse.Namespace, period: float):
    if args.model:
        return args.model, load_bundle(args.model).build(period, dtype=torch.float64)
    return f"kinematic ({args.vehicle})", KinematicBicycle(load_params(args.vehicle), period)


def one_session(steps, session: str | None):
    """The steps of ``session``; of the only session when none is named (one car's run)."""
    if session is not None:
        return steps.of_session(session)
    sessions = steps.sessions()
    if len(sessions) > 1:
        raise LogError(f"the log holds {len(sessions)} cars' sessions ({', '.join(sessions)}); pick one with --session")
    return steps


def run_name(logs: list[str], taken: dict) -> str:
    first = Path(logs[0])
    name = first.parent.name if first.name == "logs" else first.stem
    name = name if len(logs) == 1 else f"{name}+"
    return f"{name}#{len(taken)}" if name in taken else name


def cmd_report(args: argparse.Namespace, logs_sets: list[list[str]]) -> int:
    labels = list(args.label or [])
    if labels and len(labels) != len(logs_sets):
        raise ValueError(f"--label given {len(labels)} times for {len(logs_sets)} run(s)")
    args.out.mkdir(parents=True, exist_ok=True)
    runs, tracks, summaries, curves = [], [], {}, []
    for i, logs in enumerate(logs_sets):
        track, warning = resolve_track(logs, args.track, args.force_track)
        if warning:
            print(warning, file=sys.stderr)
        steps = one_session(load_steps(logs), args.session)
        name = labels[i] if labels else run_name(logs, summaries)
        errors = sum(1 for e in events(logs) if e.get("kind") == "error")
        run = analyse(name, steps, track, errors)
        run.summary["track"] = track.name
        runs.append((steps, run))
        tracks.append(track)
        summaries[name] = run.summary
        period = control_period(steps)
        label, model = _model(args, period)
        h, rmse = prediction_error_curve(model, steps)
        curves.append((f"{label} on {name}", h, rmse))
        run.summary["prediction_rmse_pos_m"] = {f"{t:.2f}s": float(r) for t, r in zip(h[::5], rmse[::5])}
    figures = [
        plots.path_map(runs, tracks, args.out, "speed"),
        plots.path_map(runs, tracks, args.out, "lateral"),
        plots.along_track(runs, args.out),
        plots.actions(runs, args.out),
        plots.latency(runs, args.out),
        plots.prediction_error(curves, args.out),
    ]
    (args.out / "summary.json").write_text(json.dumps(summaries, indent=2))
    print(table(summaries))
    print(f"\nfigures: {', '.join(p.name for p in figures)} in {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.replay")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in (("report", "summary table and figures of one run"), ("compare", "two runs side by side")):
        c = sub.add_parser(name, help=help_text)
        if name == "report":
            c.add_argument("logs", nargs="+", help="log files or directories of one run")
        else:
            c.add_argument("run_a")
            c.add_argument("run_b")
        c.add_argument("--track", help="the track driven (built-in name or CSV); default: the one the log records")
        c.add_argument("--force-track", action="store_true",
                       help="analyse on --track even where the log records another track")
        c.add_argument("--label", action="append", metavar="NAME",
                       help="name of the run in tables and figures (once per run; default: its folder)")
        c.add_argument("--out", type=Path, required=True)
        c.add_argument("--model", help="model bundle for the prediction-error figure")
        c.add_argument("--vehicle", default="passenger_car", help="kinematic model without --model")
        c.add_argument("--session", help="the car's session id (stats or `python -m controller.translog info`); needed when a log holds several")
    e = sub.add_parser("export", help="step records as Parquet or CSV")
    e.add_argument("logs", nargs="+")
    e.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    e.add_argument("--out", required=True)
    e.add_argument("--session", help="only this session's steps")
    args = p.parse_args(argv)
    try:
        if args.command == "export":
            if args.session is None:
                print(f"wrote {export(args.logs, args.out, args.format)} rows to {args.out}")
            else:
                rows = write_table(load_steps(args.logs).of_session(args.session), args.out, args.format)
                print(f"wrote {rows} rows to {args.out}")
            return 0
        sets = [args.logs] if args.command == "report" else [[args.run_a], [args.run_b]]
        return cmd_report(args, sets)
    except (LogError, DataError, TrackFormatError, TrackMismatch, BundleError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
