"""Race pace on real tracks: the daemon drives the simulator's car per (track, planner[, rung]).

    python bench/race.py [--json out.json] [--tracks Monza,Spa] [--planners mppi,ilqr]
        [--car std] [--speed 10 | --flying] [--pace 0.6] [--laps 1] [--set cost.target_speed=12 ...]
    python bench/race.py --config configs/race.yaml --planners ilqr --flying --json race.json
    python bench/race.py --ladder [--rungs 7] [--pace 0.4] [--step 0.1] --tracks Zandvoort --laps 0.3

For every track (TUM CSV in ../shared/tracks, or $VEHICLE_MPC_SHARED/tracks) and planner it
starts ``python -m controller`` at its defaults (plus ``--config``, ``--set``) on a free loopback
port, drives the true car (``--car``, default the drift model STD) from the start line in
lockstep (``--flying``: from the daemon's own line at its speed reference, a flying lap as the
reference lap is), and records, one per (track, planner, rung):

    track, planner, rung, model, lap_time_s, ref_lap_s, ratio, offtrack_steps, spins,
    max_abs_lateral_m, solve_p99_ms  (+ pace, completed, end_reason, mean_speed_mps,
    max_abs_slip_rad, recoveries, solve_p50_ms, deadline_misses; with --ladder: kind,
    heldout_error, status)

- without ``--ladder`` there is one rung, 0: the nominal model at ``--speed`` (the heuristic
  profile, ``cost.target_speed``) or, with ``--pace``, at that share of mu g of the reference lap
  (``cost.speed_reference: reference_lap``);
- with ``--ladder`` each (track, planner) runs the pace ladder (tools/sysid/ladder.py: drive,
  refit, hot-reload, raise the pace) and every rung is a record;
- ref_lap_s is the friction-limited reference lap (controller/track/reference_lap.py) over the
  driven stretch (``--laps``: 0.3 compares with the reference's first 0.3 lap), and
  ratio = lap_time_s / ref_lap_s;
- offtrack_steps counts control periods with the centre of gravity beyond a track edge;
- spins counts the times |slip| rose above 0.5 rad (sim/closed_loop.py, SPIN_SLIP_RAD);
- solve_p99_ms is the daemon's (stats), against its budget (solve_budget_fraction x period).

Targets (issue 10): before any learning, at 10 m/s, on every track, zero off-track steps and
zero spins; after the ladder, lap time <= 1.10 x the reference with zero off-track steps and
spins. Each lap of a real track is 7000-14000 control periods at 10 m/s; on a 2-core VM
shared with the daemon a lap takes 2-4 minutes (the STD car's stiff wheels are integrated in
2 ms substeps on Python floats).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.track import Track, load_track  # noqa: E402
from sim.__main__ import free_port, stop_process  # noqa: E402
from sim.cars import reference_lap_for  # noqa: E402
from sim.remote import ControllerClient, DaemonUnavailable  # noqa: E402
from tools.sysid.ladder import (  # noqa: E402
    LadderSettings, config_nominal, drive, flying_start, reference_time, rung_rows, run_ladder, table,
)
from vehicle_models.params import load_params  # noqa: E402

TRACKS = ("Monza", "Silverstone", "Spa", "Zandvoort", "Hockenheim")
PLANNERS = ("mppi", "ilqr")
COLUMNS = (
    ("track", "{}"), ("planner", "{}"), ("rung", "{}"), ("pace", "{:.2f}"), ("model", "{}"),
    ("lap_time_s", "{:.1f}"), ("ref_lap_s", "{:.1f}"), ("ratio", "{:.2f}"),
    ("offtrack_steps", "{}"), ("spins", "{}"), ("max_abs_lateral_m", "{:.2f}"),
    ("solve_p99_ms", "{:.2f}"),
)
LADDER_COLUMNS = (*COLUMNS[:4], ("top_speed", "{:.1f}"), *COLUMNS[4:], ("heldout_error", "{:.3f}"), ("status", "{}"))


def shared_tracks_dir() -> Path:
    env = os.environ.get("VEHICLE_MPC_SHARED")
    if env:
        return Path(env) / "tracks"
    for parent in ROOT.parents:
        if (parent / "shared" / "tracks").is_dir():
            return parent / "shared" / "tracks"
    raise SystemExit("no shared/tracks beside the checkout; set VEHICLE_MPC_SHARED")


@contextmanager
def daemon(
    track: str, planner: str, overrides: list[str], log: Path, config: Path | None = None
) -> Iterator[str]:
    """A daemon on a free loopback port for the duration; stopped (SIGTERM, then SIGKILL)."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "controller", "--bind", endpoint, "--track", track,
               "--planner", planner, "--no-log", *(["--config", str(config)] if config else []),
               *(f"--set={s}" for s in overrides)]
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        with ControllerClient(endpoint, timeout_s=1.0) as client:
            started = time.perf_counter()
            while True:
                try:
                    client.wait_ready(5.0)
                    break
                except DaemonUnavailable:
                    if proc.poll() is not None or time.perf_counter() - started > 300:
                        raise SystemExit(f"the daemon did not start; see {log}") from None
        yield endpoint
    finally:
        stop_process(proc)


def drive_lap(endpoint: str, track: Track, args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """One episode (tools/sysid/ladder.py's drive, which counts spins and off-track steps); with
    ``--flying`` from the daemon's own line and speed reference (its config and ``overrides``)."""
    settings = LadderSettings(track=track.name, car=args.car, vehicle=args.vehicle, true_car=tuple(args.true),
                              laps=args.laps, speed=args.speed, period=args.period)
    start = flying_start(track, str(args.config) if args.config else None, overrides) if args.flying else None
    return drive(endpoint, track, settings, None if args.quiet else (lambda line: print(line, flush=True)), start)


def ladder_records(path: Path, track: Track, planner: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The pace ladder on one (track, planner): one record per rung."""
    settings = LadderSettings(
        track=str(path), planner=planner, car=args.car, vehicle=args.vehicle,
        config=str(args.config) if args.config else None, overrides=tuple(args.set), true_car=tuple(args.true),
        pace=args.pace or LadderSettings.pace, step=args.step, rungs=args.rungs, laps=args.laps,
        speed=args.speed, period=args.period, retries=args.retries, residual=not args.no_residual,
        top_speed=args.top_speed, speed_step=args.speed_step, flying=args.flying,
        nominal=config_nominal(str(args.config) if args.config else None, args.set),
    )
    work = args.out / f"ladder-{track.name}-{planner}"
    rungs = run_ladder(work, settings, (lambda line: None) if args.quiet else (lambda line: print(line, flush=True)))
    return [{"track": track.name, "planner": planner, "car": args.car, "laps": args.laps, **row}
            for row in rung_rows(rungs)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, help="write the records here")
    p.add_argument("--tracks", default=",".join(TRACKS), help="comma-separated TUM track names or paths")
    p.add_argument("--planners", default=",".join(PLANNERS))
    p.add_argument("--car", default="std", choices=("st", "std"))
    p.add_argument("--vehicle", default="passenger_car")
    p.add_argument("--true", action="append", default=[], metavar="PARAM=VALUE")
    p.add_argument("--speed", type=float, default=None,
                   help="start speed and cost.target_speed [m/s] (default 10; with --config or --pace, "
                        "the speed reference is theirs and 10 m/s the start speed)")
    p.add_argument("--pace", type=float, default=None,
                   help="speed reference: the reference lap at this share of mu g (with --ladder: rung 0's)")
    p.add_argument("--config", type=Path, help="daemon config file (e.g. configs/race.yaml)")
    p.add_argument("--flying", action="store_true",
                   help="a flying lap: start on the daemon's line at its speed reference (default: --speed on the centre line)")
    p.add_argument("--laps", type=float, default=1.0, help="stretch driven per record [laps]")
    p.add_argument("--period", type=float, default=0.05)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="daemon config override")
    p.add_argument("--ladder", action="store_true", help="run the pace ladder: one record per rung")
    p.add_argument("--rungs", type=int, default=LadderSettings.rungs, help="--ladder: at most this many rungs")
    p.add_argument("--step", type=float, default=LadderSettings.step, help="--ladder: pace added per pace rung")
    p.add_argument("--retries", type=int, default=0, help="--ladder: retries of a failed pace rung at half the step")
    p.add_argument("--top-speed", type=float, help="--ladder: rung 0's cap on the speed reference [m/s]")
    p.add_argument("--speed-step", type=float, default=0.0, help="--ladder: added to the cap per pace rung [m/s]")
    p.add_argument("--no-residual", action="store_true", help="--ladder: refit kinematic parameters only")
    p.add_argument("--out", type=Path, default=Path("runs/race"), help="daemon logs (and ladder work) go here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.pace is not None:
        target = ["cost.speed_reference=reference_lap", f"cost.pace={args.pace}",
                  f"cost.target_speed={load_params(args.vehicle).speed_max}"]
    elif args.config and args.speed is None:
        target = []
    else:
        target = [f"cost.target_speed={args.speed or 10.0}"]
    args.speed = args.speed or 10.0
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    tracks_dir = None
    records: list[dict[str, Any]] = []
    for name in args.tracks.split(","):
        path = Path(name)
        if not path.suffix and ":" not in name and name not in ("circle", "figure_eight"):
            tracks_dir = tracks_dir or shared_tracks_dir()
            path = tracks_dir / f"{name}.csv"
        track = load_track(path)
        lap = reference_lap_for(track, load_params(args.vehicle))
        reference = reference_time(lap, track, args.laps)
        for planner in args.planners.split(","):
            if not args.quiet:
                print(f"{track.name} ({track.length:.0f} m), {planner}, {args.car} car:", flush=True)
            if args.ladder:
                records += ladder_records(path, track, planner, args)
                continue
            started = time.perf_counter()
            overrides = [*target, *args.set]
            with daemon(str(path), planner, overrides, args.out / f"{track.name}-{planner}.log",
                        args.config) as endpoint:
                measured = drive_lap(endpoint, track, args, overrides)
            lap_time = measured["lap_time_s"]
            record = {
                "track": track.name, "planner": planner, "rung": 0, "pace": args.pace, "car": args.car,
                "start_speed": "flying" if args.flying else args.speed, "config": str(args.config or "defaults"), "laps": args.laps,
                "ref_lap_s": reference,
                "ratio": None if lap_time is None else lap_time / reference,
                **measured,
            }
            records.append(record)
            if not args.quiet:
                print(f"  {measured['end_reason']} in {time.perf_counter() - started:.0f} s wall: "
                      + ", ".join(f"{k} {record[k]}" for k in ("lap_time_s", "offtrack_steps", "spins",
                                                                "recoveries", "max_abs_lateral_m")),
                      flush=True)
    print(table(records, LADDER_COLUMNS if args.ladder else COLUMNS))
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
        print(f"records written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
