"""Race pace on real tracks: the daemon drives the simulator's car one lap per (track, planner).

    python bench/race.py [--json out.json] [--tracks Monza,Spa] [--planners mppi,ilqr]
        [--car std] [--speed 10] [--laps 1] [--set cost.target_speed=12 ...]

For every track (TUM CSV in ../shared/tracks, or $VEHICLE_MPC_SHARED/tracks) and planner it
starts ``python -m controller`` at its defaults (plus ``--set``) on a free loopback port,
drives the true car (``--car``, default the drift model STD) from the start line at
``--speed`` in lockstep, and records, one per (track, planner, rung):

    track, planner, rung, model, lap_time_s, ref_lap_s, ratio, offtrack_steps, spins,
    max_abs_lateral_m, solve_p99_ms  (+ completed, end_reason, mean_speed_mps, max_abs_slip_rad,
    recoveries, solve_p50_ms, deadline_misses)

- rung 0 is the nominal model at a safe pace (the pace ladder of issue 10 adds rungs later);
- ref_lap_s is the friction-limited reference lap (controller/track/reference_lap.py) and
  ratio = lap_time_s / ref_lap_s;
- offtrack_steps counts control periods with the centre of gravity beyond a track edge;
- spins counts the times |slip| rose above SPIN_SLIP_RAD;
- solve_p99_ms is the daemon's (stats), against its budget (solve_budget_fraction x period).

Target (issue 10, "before any learning"): at 10 m/s, on every track, zero off-track steps and
zero spins. Each lap of a real track is 7000-14000 control periods at 10 m/s; on a 2-core VM
shared with the daemon a lap takes 2-4 minutes (the STD car's stiff wheels are integrated in
2 ms substeps on Python floats).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.track import Track, load_track  # noqa: E402
from sim.__main__ import free_port, stop_process  # noqa: E402
from sim.cars import make_true_car, reference_lap_for  # noqa: E402
from sim.closed_loop import start_state  # noqa: E402
from sim.episode import EpisodeConfig, run_episode  # noqa: E402
from sim.remote import ControllerClient, DaemonUnavailable  # noqa: E402
from vehicle_models.layout import State  # noqa: E402
from vehicle_models.params import load_params  # noqa: E402

TRACKS = ("Monza", "Silverstone", "Spa", "Zandvoort", "Hockenheim")
PLANNERS = ("mppi", "ilqr")
SPIN_SLIP_RAD = 0.5  #: |slip| above this counts as a spin (about 29 degrees)
COLUMNS = (
    ("track", "{}"), ("planner", "{}"), ("rung", "{}"), ("model", "{}"),
    ("lap_time_s", "{:.1f}"), ("ref_lap_s", "{:.1f}"), ("ratio", "{:.2f}"),
    ("offtrack_steps", "{}"), ("spins", "{}"), ("max_abs_lateral_m", "{:.2f}"),
    ("solve_p99_ms", "{:.2f}"),
)


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


def drive_lap(endpoint: str, track: Track, args: argparse.Namespace) -> dict[str, Any]:
    """One episode; the record's measured fields."""
    car = make_true_car(args.vehicle, args.car, args.true)
    x0 = np.zeros(7)
    x0[:5] = start_state(track, args.speed).numpy()
    lookup = track.lookup(torch.float64)
    offtrack, spins, slipping, max_slip = [0], [0], [False], [0.0]

    def watch(n: int, state: np.ndarray, progress: float) -> None:
        _, _, off = lookup.locate(state[State.X], state[State.Y], state[State.YAW], 0.0)
        offtrack[0] += int(off)  # the centre of gravity beyond an edge
        slip = abs(float(state[State.SLIP]))
        max_slip[0] = max(max_slip[0], slip)
        if slip > SPIN_SLIP_RAD and not slipping[0]:
            spins[0] += 1
        slipping[0] = slip > SPIN_SLIP_RAD
        if not args.quiet and n % 2000 == 0:
            print(f"    t={n * args.period:6.1f} s  {progress:7.0f} m  v={state[State.V]:5.2f} m/s",
                  flush=True)

    config = EpisodeConfig(control_period=args.period, laps=args.laps, max_offtrack_s=2.0,
                           vehicle_width=load_params(args.vehicle).width, reply_timeout_s=2.0)
    with ControllerClient(endpoint, timeout_s=2.0) as client:
        client.reset()
        summary = run_episode(client, car, track, x0, config, on_step=watch)
        stats = client.stats()
    return {
        "completed": summary.completed,
        "end_reason": summary.end_reason,
        "lap_time_s": summary.lap_time_s,
        "offtrack_steps": offtrack[0],
        "spins": spins[0],
        "max_abs_lateral_m": summary.max_abs_lateral_m,
        "mean_speed_mps": summary.mean_speed_mps,
        "max_abs_slip_rad": max_slip[0],
        "solve_p50_ms": float(stats.get("solve_ms_p50", math.nan)),
        "solve_p99_ms": float(stats.get("solve_ms_p99", math.nan)),
        "deadline_misses": stats.get("deadline_misses"),
        "recoveries": stats.get("recoveries", 0),
        "stops": stats.get("stops"),
        "model": stats.get("model", "?"),
    }


def table(records: list[dict[str, Any]]) -> str:
    header = "| " + " | ".join(name for name, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * len(COLUMNS)]
    for r in records:
        cells = []
        for name, fmt in COLUMNS:
            value = r.get(name)
            cells.append("-" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, help="write the records here")
    p.add_argument("--tracks", default=",".join(TRACKS), help="comma-separated TUM track names or paths")
    p.add_argument("--planners", default=",".join(PLANNERS))
    p.add_argument("--car", default="std", choices=("st", "std"))
    p.add_argument("--vehicle", default="passenger_car")
    p.add_argument("--true", action="append", default=[], metavar="PARAM=VALUE")
    p.add_argument("--speed", type=float, default=None,
                   help="start speed and cost.target_speed [m/s] (default 10; with --config, the "
                        "config's target speed and a 10 m/s start)")
    p.add_argument("--config", type=Path, help="daemon config file (e.g. configs/race.yaml)")
    p.add_argument("--laps", type=float, default=1.0)
    p.add_argument("--period", type=float, default=0.05)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="daemon config override")
    p.add_argument("--out", type=Path, default=Path("runs/race"), help="daemon logs go here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    target = [] if (args.config and args.speed is None) else [f"cost.target_speed={args.speed or 10.0}"]
    args.speed = args.speed or 10.0
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    tracks_dir = None
    records: list[dict[str, Any]] = []
    for name in args.tracks.split(","):
        path = Path(name)
        if not path.suffix:
            tracks_dir = tracks_dir or shared_tracks_dir()
            path = tracks_dir / f"{name}.csv"
        track = load_track(path)
        reference = reference_lap_for(track, load_params(args.vehicle)).time_s
        for planner in args.planners.split(","):
            overrides = [*target, *args.set]
            if not args.quiet:
                print(f"{track.name} ({track.length:.0f} m), {planner}, {args.car} car:", flush=True)
            started = time.perf_counter()
            with daemon(str(path), planner, overrides, args.out / f"{track.name}-{planner}.log",
                        args.config) as endpoint:
                measured = drive_lap(endpoint, track, args)
            lap = measured["lap_time_s"]
            record = {
                "track": track.name, "planner": planner, "rung": 0, "car": args.car,
                "start_speed": args.speed, "config": str(args.config or "defaults"),
                "ref_lap_s": reference,
                # --laps 0.25 (a quick look) compares with a quarter of the reference
                "ratio": None if lap is None else lap / (args.laps * reference),
                **measured,
            }
            records.append(record)
            if not args.quiet:
                print(f"  {measured['end_reason']} in {time.perf_counter() - started:.0f} s wall: "
                      + ", ".join(f"{k} {record[k]}" for k in ("lap_time_s", "offtrack_steps", "spins",
                                                                "recoveries", "max_abs_lateral_m")),
                      flush=True)
    print(table(records))
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
        print(f"records written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
