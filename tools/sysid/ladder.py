"""The pace ladder (issue 10): drive, refit, hot-reload, raise the pace, until lap time stops improving.

    python -m tools.sysid ladder --track ../shared/tracks/Zandvoort.csv --car std \\
        [--planner mppi] [--pace 0.4] [--step 0.1] [--laps 0.3] [--out runs/ladder] [--json ladder.json]

Every rung is one drive of the same stretch (``--laps`` of the track from the start line, from
``--speed``) by a real daemon (``python -m controller``, a subprocess on a free loopback port,
logging its transitions) and the simulator's true car over the wire. A rung changes one thing,
so that what it gains or breaks has one cause:

- rung 0, *nominal*: the kinematic model (saved as the bundle ``nominal``) at ``--pace``; or,
  with ``--model BUNDLE``, rung 0 *start* drives that bundle (a previous ladder's best, to resume
  it or to start on another track) and the refits build on it; ``--data`` adds earlier logs
  (such as that ladder's ``logs/``) to every refit;
- a *model* rung refits (``tools.sysid fit``'s pipeline, ``run_fit``, with the current bundle as
  the base) on the logs of every accepted rung into a new bundle, hot-reloads it into the running
  daemon (the ``reload`` request; the daemon swaps it in between steps) and drives at the same pace;
- a *pace* rung raises ``cost.pace`` (the share of mu g of the reference-lap speed reference,
  ``cost.speed_reference: reference_lap``) by ``--step`` and its cap ``cost.target_speed``
  (``--top-speed``) by ``--speed-step``. The cost is part of the daemon's
  config, which is frozen for the daemon's life, so a pace rung restarts the daemon with the
  accepted bundle.

Rungs alternate model, pace, model, pace, ... after rung 0; where ``tools.sysid fit`` refuses
the refit (it predicts its held-out blocks no better than the current model), the ladder keeps
the current model and goes on with a pace rung.

Gates, each rung: the drive completed, no spin (|slip| above ``SPIN_SLIP_RAD``) and no off-track
step (centre of gravity beyond an edge). A model rung also: the new model's 1 s open-loop position
RMSE on this rung's drive (held out: no fit has seen it) is at most the previous model's on the
same windows, times (1 + ``--tolerance``). A rung that fails rolls back to the previous model and
pace (a failed model rung reloads the previous bundle into the daemon, which is left running the
accepted model). A failed model rung is followed by a pace rung on the accepted model (its drive,
logged by the daemon of the accepted rung before it, is part of the next refit's data). A failed
pace rung ends the ladder, after ``--retries N`` retries at half the step. The ladder also ends when a pace rung is not at least
``--min-gain`` (a fraction) faster than the best lap so far (that rung is rolled back too: a
pace that gains nothing is not worth its risk), at ``--max-pace`` or after ``--rungs`` rungs.

Lap times are over the driven stretch; ``ref_lap_s`` is the friction-limited reference lap's time
over the same stretch (controller/track/reference_lap.py), ``ratio`` = lap_time_s / ref_lap_s.
The reference lap is flying; a drive starts at ``--speed`` on the centre line, which costs it 2-3 s,
or with ``--flying`` on the planner's line at its speed reference: a flying lap.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from controller.config import load_config
from controller.costs import planning_line, speed_reference
from controller.protocol_client import DaemonUnavailable
from controller.runtime import single_track_bundle
from controller.track import Track, load_track
from controller.track.reference_lap import ReferenceLap
from controller.translog import LogError, load_steps
from sim.__main__ import daemon_reason, stop_process
from sim.cars import make_true_car, reference_lap_for
from sim.closed_loop import SPIN_SLIP_RAD, start_state
from sim.episode import EpisodeConfig, run_episode
from sim.remote import ControllerClient
from tools.refit_loop import held_out_blocks, held_out_rmse, start_daemon, wait_for_model
from tools.sysid.data import DataError
from tools.sysid.fit import FitOptions, RefusedError, run_fit
from vehicle_models.bundle import BundleError, ModelBundle, load_bundle, save_bundle
from vehicle_models.dynamic_nominal import NOMINALS
from vehicle_models.layout import DYNAMIC_STATE_DIM, KINEMATIC_STATE_DIM, State
from vehicle_models.params import load_params

NOMINAL = "nominal"  #: the vehicle's nominal model (``nominal_bundle``), saved so a rollback can reload it
COLUMNS = (
    ("rung", "{}"), ("kind", "{}"), ("pace", "{:.2f}"), ("top_speed", "{:.1f}"), ("model", "{}"), ("lap_time_s", "{:.1f}"),
    ("ref_lap_s", "{:.1f}"), ("ratio", "{:.2f}"), ("offtrack_steps", "{}"), ("spins", "{}"),
    ("max_abs_lateral_m", "{:.2f}"), ("solve_p99_ms", "{:.1f}"), ("heldout_error", "{:.3f}"),
    ("status", "{}"),
)


@dataclass
class LadderSettings:
    track: str
    planner: str = "mppi"
    car: str = "std"
    vehicle: str = "passenger_car"
    config: str | None = None  #: daemon config file; the ladder sets the speed reference keys
    overrides: tuple[str, ...] = ()  #: daemon ``--set`` overrides
    true_car: tuple[str, ...] = ()  #: true-car parameter overrides, e.g. ``mu=0.8``
    pace: float = 0.4  #: rung 0's share of mu g
    step: float = 0.1  #: pace added by a pace rung
    max_pace: float = 1.0
    top_speed: float | None = None  #: rung 0's cap on the speed reference [m/s]; None: the vehicle's top speed
    speed_step: float = 0.0  #: added to the cap by a pace rung [m/s]
    rungs: int = 7  #: at most this many rungs, rung 0 included
    laps: float = 0.3  #: the stretch each rung drives
    speed: float = 10.0  #: start speed [m/s]
    flying: bool = False  #: start on the planner's line at its speed reference instead (a flying lap)
    period: float = 0.05
    epochs: int = 300
    seed: int = 0
    residual: bool = True  #: refit the residual too (False: kinematic parameters and dead time only)
    nominal: str = "kinematic"  #: the refits' parametric core (``tools.sysid fit --nominal``)
    tolerance: float = 0.0  #: a refit may predict this fraction worse than the model it replaces
    min_gain: float = 0.01  #: a pace rung must cut the best lap time by this fraction
    retries: int = 0  #: a failed pace rung is retried at half the step this many times
    max_offtrack_s: float = 2.0  #: a drive ends after this long off track
    model: str | None = None  #: rung 0 drives this bundle instead of the nominal model (resume a ladder)
    data: tuple[str, ...] = ()  #: earlier logs (files or directories) every refit reads too


@dataclass
class Rung:
    """One rung's record (a row of the table)."""

    rung: int
    kind: str  #: nominal, model or pace
    pace: float
    model: str
    bundle: str
    top_speed: float = math.nan  #: the speed reference's cap (cost.target_speed) [m/s]
    lap_time_s: float | None = None
    ref_lap_s: float | None = None
    ratio: float | None = None
    offtrack_steps: int = 0
    spins: int = 0
    max_abs_lateral_m: float = math.nan
    max_abs_slip_rad: float = 0.0
    mean_speed_mps: float = math.nan
    completed: bool = False
    end_reason: str = ""
    recoveries: int = 0
    solve_p50_ms: float = math.nan
    solve_p99_ms: float = math.nan
    heldout_error: float | None = None  #: this rung's model, 1 s position RMSE on this drive [m]
    heldout_previous: float | None = None  #: the model it replaced, same windows (model rungs)
    reloads: int = 0  #: the daemon's reload count after the rung
    status: str = ""  #: accepted, or why it was rolled back / the ladder stopped
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


def nominal_bundle(s: LadderSettings) -> ModelBundle:
    """Rung 0's model, the one a rollback returns to: the vehicle's single-track model when the
    refits' core is ``single_track`` (what ``model.nominal: single_track`` drives), else its
    kinematic bicycle."""
    if s.nominal == "single_track":
        return single_track_bundle(s.vehicle, NOMINAL)
    return ModelBundle(NOMINAL, load_params(s.vehicle))


def reference_time(lap: ReferenceLap, track: Track, laps: float) -> float:
    """The reference lap's time over the first ``laps`` laps from the start line [s]."""
    whole, part = divmod(laps, 1.0)
    n = int(round(part * len(lap.speed)))
    v = lap.speed
    segment = 2.0 * track.spacing / (v[:n] + np.roll(v, -1)[:n])
    return whole * lap.time_s + float(segment.sum())


def speed_overrides(pace: float, top_speed: float) -> tuple[str, ...]:
    """The daemon overrides of a rung's speed reference: the reference lap at ``pace``, capped."""
    return ("cost.speed_reference=reference_lap", f"cost.pace={pace:.4f}", f"cost.target_speed={top_speed:.3f}")


def flying_start(track: Track, config: str | None, overrides: Sequence[str] = ()) -> np.ndarray:
    """The start of a flying lap for a daemon run with ``config`` and ``overrides``: on its
    planner's line (``cost.line``) at the start line, at its speed reference there. The reference
    lap is flying; a drive from a standing start loses 2-3 s of it."""
    daemon_config = load_config(config, list(overrides))
    params = load_params(daemon_config.vehicle)
    line = planning_line(daemon_config.cost, track, params)
    return start_state(line, float(speed_reference(daemon_config.cost, line, params)[0])).numpy()


def drive(
    endpoint: str,
    track: Track,
    s: LadderSettings,
    log: Callable[[str], None] | None = None,
    start: np.ndarray | None = None,
) -> dict[str, Any]:
    """Drive ``s.laps`` of the true car from the start line (at ``s.speed`` on the centre line,
    or from ``start``, a pose and speed); the safety and lap measures, and the daemon's stats
    (solve times, reloads, model) after the drive."""
    car = make_true_car(s.vehicle, s.car, s.true_car)
    x0 = np.zeros(7)
    x0[:5] = start_state(track, s.speed).numpy() if start is None else start[:5]
    lookup = track.lookup(torch.float64)
    watch = {"offtrack": 0, "spins": 0, "slipping": False, "max_slip": 0.0, "tenth": 0}
    total = s.laps * track.length

    def on_step(n: int, state: np.ndarray, progress: float) -> None:
        _, _, off = lookup.locate(state[State.X], state[State.Y], state[State.YAW], 0.0)
        watch["offtrack"] += int(off)  # the centre of gravity beyond an edge
        slip = abs(float(state[State.SLIP]))
        watch["max_slip"] = max(watch["max_slip"], slip)
        if slip > SPIN_SLIP_RAD and not watch["slipping"]:
            watch["spins"] += 1
        watch["slipping"] = slip > SPIN_SLIP_RAD
        tenth = int(10 * progress / total)
        if log is not None and tenth > watch["tenth"]:
            watch["tenth"] = tenth
            log(f"    {min(10 * tenth, 100):3d}%  t={n * s.period:6.1f} s  v={state[State.V]:5.2f} m/s")

    config = EpisodeConfig(control_period=s.period, laps=s.laps, max_offtrack_s=s.max_offtrack_s,
                           vehicle_width=load_params(s.vehicle).width, reply_timeout_s=2.0)
    with ControllerClient(endpoint, timeout_s=2.0) as client:
        client.reset()
        summary = run_episode(client, car, track, x0, config, on_step=on_step)
        stats = client.stats(retries=3)
    return {
        "completed": summary.completed,
        "end_reason": summary.end_reason,
        "lap_time_s": summary.lap_time_s,
        "offtrack_steps": watch["offtrack"],
        "spins": watch["spins"],
        "max_abs_lateral_m": summary.max_abs_lateral_m,
        "max_abs_slip_rad": watch["max_slip"],
        "mean_speed_mps": summary.mean_speed_mps,
        "solve_p50_ms": float(stats.get("solve_ms_p50", math.nan)),
        "solve_p99_ms": float(stats.get("solve_ms_p99", math.nan)),
        "deadline_misses": stats.get("deadline_misses"),
        "recoveries": stats.get("recoveries", 0),
        "stops": stats.get("stops"),
        "reloads": stats.get("reloads", 0),
        "model": stats.get("model", "?"),
    }


def log_sources(path: str | Path) -> list[str]:
    """What ``tools.sysid fit`` reads from ``path``: a log file, a directory of log files, or the
    directories below it that hold some (a previous ladder's ``logs/``, one per daemon)."""
    path = Path(path)
    if path.is_file() or any(path.glob("*.mcap")):
        return [str(path)]
    return sorted({str(f.parent) for f in path.rglob("*.mcap")})


def safety_failure(r: Rung) -> str | None:
    """Why a drive fails the safety gate, or None."""
    if r.spins:
        return f"{r.spins} spin(s)"
    if r.offtrack_steps:
        return f"{r.offtrack_steps} off-track steps"
    if not r.completed:
        return f"not completed ({r.end_reason})"
    return None


def model_gate(rung: Rung, tolerance: float = 0.0) -> str | None:
    """Why a refitted model fails the held-out gate, or None: its error on the rung's drive must
    be at most (1 + tolerance) times the error of the model it replaces, on the same windows."""
    new, old = rung.heldout_error, rung.heldout_previous
    if new is None or old is None:
        return "no held-out error (the drive was too short)"
    if new > old * (1.0 + tolerance):
        return f"held-out error {new:.3f} m > {old:.3f} m of the previous model"
    return None


class Ladder:
    """The ladder's state: the work directory, the running daemon, the accepted rungs."""

    def __init__(self, work: Path, s: LadderSettings, log: Callable[[str], None] = print):
        self.work, self.s, self.log = work, s, log
        self.models, self.logs = work / "models", work / "logs"
        self.models.mkdir(parents=True, exist_ok=True)
        self.track = load_track(s.track)
        params = load_params(s.vehicle)
        self.reference = reference_lap_for(self.track, params)
        self.ref_time = reference_time(self.reference, self.track, s.laps)
        self.max_speed = params.speed_max
        self.daemon = None
        self.endpoint = ""
        self.daemon_logs: Path | None = None
        self.daemons = 0
        self.accepted_logs: list[Path] = []  #: log directories of accepted drives (the fit's data)
        self.rungs: list[Rung] = []

    # -- the daemon --------------------------------------------------------------------------
    def start(self, pace: float, top_speed: float, bundle: Path) -> None:
        self.stop()
        self.daemons += 1
        self.daemon_logs = self.logs / f"daemon-{self.daemons}"
        s = self.s
        overrides = (
            f"model.model_dir={self.models}", f"model.bundle={bundle}", *speed_overrides(pace, top_speed),
            *s.overrides,
        )
        extra = ["--planner", s.planner, *(["--config", str(s.config)] if s.config else [])]
        self.daemon, self.endpoint = start_daemon(self.work, s.track, self.daemon_logs, overrides,
                                                  f"{self.daemons}", extra)
        with ControllerClient(self.endpoint, timeout_s=1.0) as client:
            started = time.perf_counter()
            while True:
                try:
                    client.wait_ready(5.0)
                    return
                except DaemonUnavailable:
                    if self.daemon.poll() is not None or time.perf_counter() - started > 600:
                        output = self.work / f"daemon-{self.daemons}.out"
                        raise RuntimeError(f"the daemon did not start ({daemon_reason(output)}); see {output}")

    def stop(self) -> None:
        if self.daemon is not None:
            stop_process(self.daemon)
            self.daemon = None

    def reload(self, bundle: Path) -> None:
        """Hot-reload ``bundle`` into the running daemon and wait until it drives with it."""
        version = load_bundle(bundle).version
        with ControllerClient(self.endpoint, timeout_s=2.0) as client:
            reply = client.reload(str(bundle))
            if reply.get("type") == "error":
                raise RuntimeError(f"the daemon refused to reload {bundle}: {reply.get('code')}: {reply.get('message')}")
            wait_for_model(client, version, 600)

    # -- one rung ----------------------------------------------------------------------------
    def drive(self, rung: Rung) -> Rung:
        started = time.perf_counter()
        self.log(f"rung {rung.rung} ({rung.kind}): pace {rung.pace:.2f}, top speed {rung.top_speed:.1f} m/s, "
                 f"model {rung.model}")
        start = None
        if self.s.flying:
            start = flying_start(self.track, self.s.config, (*speed_overrides(rung.pace, rung.top_speed), *self.s.overrides))
        measured = drive(self.endpoint, self.track, self.s, self.log, start)
        for key in ("completed", "end_reason", "lap_time_s", "offtrack_steps", "spins", "max_abs_lateral_m",
                    "max_abs_slip_rad", "mean_speed_mps", "solve_p50_ms", "solve_p99_ms", "recoveries", "reloads"):
            setattr(rung, key, measured[key])
        if measured["model"] != rung.model:
            raise RuntimeError(f"the daemon drove with {measured['model']}, not {rung.model}")
        rung.ref_lap_s = self.ref_time
        rung.ratio = None if rung.lap_time_s is None else rung.lap_time_s / self.ref_time
        rung.wall_s = time.perf_counter() - started
        return rung

    def drive_steps(self):
        """This daemon's last drive (its last episode) from its transition log."""
        time.sleep(1.0)  # the daemon writes its log records once no request waits
        steps = load_steps(self.daemon_logs)
        return steps.select(steps.episode == int(steps.episode.max()))

    def held_out(self, bundles: Sequence[Path]) -> list[float | None]:
        """Each bundle's 1 s position RMSE on the last drive, on the same windows [m]."""
        try:
            dim = KINEMATIC_STATE_DIM if self.s.nominal == "kinematic" else DYNAMIC_STATE_DIM
            all_blocks, period = held_out_blocks(self.drive_steps(), state_dim=dim)
            return [held_out_rmse(load_bundle(b), all_blocks, period)["1s"]["pos"] for b in bundles]
        except (DataError, LogError) as e:
            self.log(f"  no held-out error: {e}")
            return [None for _ in bundles]

    def refit(self, base: Path) -> tuple[Path | None, str]:
        """A new bundle from the accepted drives' logs (``tools.sysid fit``), or None and why not."""
        time.sleep(1.0)  # the last drive's records reach the log
        try:
            earlier = [source for path in self.s.data for source in log_sources(path)]
            report = run_fit([*earlier, *(str(p) for p in self.accepted_logs)], self.models, str(base), self.s.vehicle,
                             FitOptions(epochs=self.s.epochs, seed=self.s.seed, progress=False,
                                        residual=self.s.residual, nominal=self.s.nominal))
        except RefusedError as e:
            return None, f"refit refused: {str(e).splitlines()[0]}"
        except (DataError, LogError) as e:
            return None, f"refit impossible: {e}"
        self.log(f"  refit: {report['version']} ({report['chosen']}, dead time {report['dead_time_s']:.2f} s; "
                 f"{report['steps']} steps from {len(report['logs'])} log files)")
        return Path(report["bundle"]), ""

    def finish(self, rung: Rung, failure: str | None) -> Rung:
        rung.status = "accepted" if failure is None else f"rolled back: {failure}"
        self.rungs.append(rung)
        lap = "-" if rung.lap_time_s is None else f"{rung.lap_time_s:.1f} s (x{rung.ratio:.2f})"
        err = "" if rung.heldout_error is None else f", held-out 1 s error {rung.heldout_error:.3f} m"
        self.log(f"  {lap}, {rung.offtrack_steps} off-track, {rung.spins} spins, max |lateral| "
                 f"{rung.max_abs_lateral_m:.2f} m{err}, {rung.wall_s:.0f} s wall: {rung.status}")
        return rung

    # -- the ladder --------------------------------------------------------------------------
    def run(self) -> list[Rung]:
        s = self.s
        nominal = save_bundle(nominal_bundle(s), self.models / NOMINAL, overwrite=True)
        pace, bundle, model = s.pace, nominal, NOMINAL
        if s.model is not None:  # copied among the ladder's models: the daemon reloads only from there
            start = load_bundle(s.model)
            bundle = save_bundle(start, self.models / Path(s.model).name, overwrite=True)
            model = start.version
        top = min(s.top_speed or self.max_speed, self.max_speed)
        try:
            self.start(pace, top, bundle)
            rung = self.drive(Rung(0, "nominal" if s.model is None else "start", pace, model, str(bundle), top))
            rung.heldout_error = self.held_out([bundle])[0]
            if self.finish(rung, safety_failure(rung)).accepted is False:
                return self.rungs
            self.accepted_logs.append(self.daemon_logs)
            best = rung.lap_time_s
            step, speed_step, retries = s.step, s.speed_step, s.retries
            kind = "model"
            while len(self.rungs) < s.rungs:
                n = len(self.rungs)
                if kind == "model":
                    candidate, why = self.refit(bundle)
                    if candidate is None:  # no better model from these logs: keep this one, go faster
                        self.log(f"  keeping {model}: {why}")
                        self.rungs[-1].notes.append(why)
                        kind = "pace"
                        continue
                    self.reload(candidate)
                    rung = self.drive(Rung(n, "model", pace, load_bundle(candidate).version, str(candidate), top))
                    rung.heldout_error, rung.heldout_previous = self.held_out([candidate, bundle])
                    failure = safety_failure(rung) or model_gate(rung, s.tolerance)
                    self.finish(rung, failure)
                    # This drive was logged by the accepted rung's daemon, into a directory the
                    # fits already read: the car's data, whichever model drove.
                    if failure:
                        # The refit is discarded and the accepted model drives on: the next rung
                        # tries a faster pace with it, and the refit after that has more data.
                        self.reload(bundle)
                        kind = "pace"
                        continue
                    bundle, model = candidate, rung.model
                    kind = "pace"
                    continue
                new_pace, new_top = min(pace + step, s.max_pace), min(top + speed_step, self.max_speed)
                if new_pace <= pace + 1e-9 and new_top <= top + 1e-9:
                    self.log(f"  ladder ends: at the maximum pace {s.max_pace:.2f} and speed {top:.1f} m/s")
                    break
                self.start(new_pace, new_top, bundle)
                rung = self.drive(Rung(n, "pace", new_pace, model, str(bundle), new_top))
                rung.heldout_error = self.held_out([bundle])[0]
                failure = safety_failure(rung)
                if failure is None and best is not None and rung.lap_time_s > best * (1.0 - s.min_gain):
                    failure = f"no lap-time gain ({rung.lap_time_s:.1f} s vs best {best:.1f} s)"
                    self.finish(rung, failure)
                    break
                self.finish(rung, failure)
                if failure is None:
                    pace, top, best = new_pace, new_top, rung.lap_time_s
                    self.accepted_logs.append(self.daemon_logs)
                    kind = "model"
                elif retries > 0:
                    retries -= 1
                    step, speed_step = 0.5 * step, 0.5 * speed_step
                    self.log(f"  retrying at half the step (pace +{step:.3f}, speed +{speed_step:.1f} m/s)")
                else:
                    break
        finally:
            self.stop()
        return self.rungs


def run_ladder(work: Path, s: LadderSettings, log: Callable[[str], None] = print) -> list[Rung]:
    """Run the ladder in ``work`` (models/, logs/, daemon output); the rungs in order."""
    work.mkdir(parents=True, exist_ok=True)
    return Ladder(work, s, log).run()


def best_accepted(rungs: Sequence[Rung]) -> Rung | None:
    """The accepted rung with the shortest lap: the model and pace the ladder ends on."""
    done = [r for r in rungs if r.accepted and r.lap_time_s is not None]
    return min(done, key=lambda r: r.lap_time_s, default=None)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]] = COLUMNS) -> str:
    """A markdown table of ``rows`` (dicts) over ``columns`` ((name, format))."""
    lines = ["| " + " | ".join(name for name, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for name, fmt in columns:
            value = r.get(name)
            cells.append("-" if value is None or (isinstance(value, float) and math.isnan(value))
                         else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rung_rows(rungs: Sequence[Rung]) -> list[dict[str, Any]]:
    return [asdict(r) | {"accepted": r.accepted} for r in rungs]


# -- command line (python -m tools.sysid ladder, python -m sim ladder) ---------------------------
def add_ladder_args(p: argparse.ArgumentParser, track_default: str | None = None) -> None:
    d = LadderSettings(track="")
    p.add_argument("--track", default=track_default, required=track_default is None,
                   help="built-in name (circle, random:SEED, ...) or TUM CSV")
    p.add_argument("--planner", default=d.planner, choices=("mppi", "ilqr", "mppi+ilqr"))
    p.add_argument("--car", default=d.car, choices=("st", "std"), help="the simulator's true car")
    p.add_argument("--vehicle", default=d.vehicle)
    p.add_argument("--config", help="daemon config file (e.g. configs/race.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="daemon config override")
    p.add_argument("--true", action="append", default=[], metavar="PARAM=VALUE",
                   help="true-car parameter override, e.g. mu=0.8")
    p.add_argument("--pace", type=float, default=d.pace, help="rung 0's share of mu g")
    p.add_argument("--step", type=float, default=d.step, help="pace added by each pace rung")
    p.add_argument("--max-pace", type=float, default=d.max_pace)
    p.add_argument("--top-speed", type=float, default=None,
                   help="rung 0's cap on the speed reference (cost.target_speed) [m/s]; default: the vehicle's top speed")
    p.add_argument("--speed-step", type=float, default=d.speed_step, help="added to the cap by each pace rung [m/s]")
    p.add_argument("--rungs", type=int, default=d.rungs, help="at most this many rungs (rung 0 included)")
    p.add_argument("--laps", type=float, default=d.laps, help="stretch each rung drives [laps]")
    p.add_argument("--speed", type=float, default=d.speed, help="start speed [m/s]")
    p.add_argument("--flying", action="store_true",
                   help="start each drive on the planner's line at its speed reference (a flying lap)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="residual training epochs per refit")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-residual", action="store_true", help="refit kinematic parameters and dead time only")
    p.add_argument("--nominal", choices=NOMINALS,
                   help="the refits' parametric core and rung 0's model (tools.sysid fit --nominal; default: "
                   f"--model's, else the config's model.nominal, else {d.nominal}); a dynamic one reads yaw_rate and slip")
    p.add_argument("--tolerance", type=float, default=d.tolerance,
                   help="a refit may predict held-out data this fraction worse than the model it replaces")
    p.add_argument("--min-gain", type=float, default=d.min_gain,
                   help="a pace rung must cut the best lap time by this fraction")
    p.add_argument("--retries", type=int, default=d.retries, help="retries of a failed pace rung at half the step")
    p.add_argument("--model", help="rung 0 drives this bundle, not the nominal model (resume a ladder from its best "
                   "bundle, or start on another track with it); refits start from it")
    p.add_argument("--data", nargs="+", default=[], metavar="LOGS",
                   help="earlier logs (files or directories, e.g. a previous ladder's logs/) every refit reads too")
    p.add_argument("--out", type=Path, help="work directory: models, logs, daemon output (default runs/ladder-<time>)")
    p.add_argument("--json", type=Path, help="write the rungs here")


def config_nominal(config: str | None, overrides: Sequence[str]) -> str:
    """The nominal model a daemon config drives without a bundle (``model.nominal``)."""
    return load_config(config, list(overrides)).model.nominal


def settings_from(args: argparse.Namespace) -> LadderSettings:
    return LadderSettings(
        track=args.track, planner=args.planner, car=args.car, vehicle=args.vehicle, config=args.config,
        overrides=tuple(args.set), true_car=tuple(args.true), pace=args.pace, step=args.step,
        max_pace=args.max_pace, top_speed=args.top_speed, speed_step=args.speed_step, rungs=args.rungs, laps=args.laps, speed=args.speed, flying=args.flying, epochs=args.epochs,
        seed=args.seed, residual=not args.no_residual, nominal=args.nominal or config_nominal(args.config, args.set),
        tolerance=args.tolerance, min_gain=args.min_gain,
        retries=args.retries, model=args.model, data=tuple(args.data),
    )


def cmd_ladder(args: argparse.Namespace) -> int:
    """Run the ladder from parsed arguments; print progress and the per-rung table."""
    try:
        if args.model:  # the refits keep the start bundle's parametric core unless told otherwise
            start = load_bundle(args.model)
            if args.nominal and args.nominal != start.nominal:
                raise ValueError(f"--model {args.model} has the {start.nominal} nominal, not --nominal {args.nominal}")
            args.nominal = start.nominal
        missing = [d for d in args.data if not log_sources(d)]
        if missing:
            raise FileNotFoundError(f"--data: no log files in {', '.join(missing)}")
        s = settings_from(args)
        load_track(s.track)
    except (FileNotFoundError, ValueError, BundleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    work = args.out or Path("runs") / time.strftime("ladder-%Y%m%dT%H%M%S", time.gmtime())
    torch.set_num_threads(1)
    print(f"pace ladder on {s.track}, {s.planner}, {s.car} car, {s.laps:g} lap per rung; work in {work}", flush=True)
    try:
        rungs = run_ladder(work, s, lambda line: print(line, flush=True))
    except (RuntimeError, TimeoutError) as e:  # a daemon that would not start or reload
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = rung_rows(rungs)
    print(table(rows))
    best = best_accepted(rungs)
    if best is not None:
        print(f"best: rung {best.rung}, pace {best.pace:.2f}, top speed {best.top_speed:.1f} m/s, model "
              f"{best.model}: {best.lap_time_s:.1f} s, x{best.ratio:.2f} the reference; race with\n"
              f"  python -m controller {'--config ' + s.config + ' ' if s.config else ''}--track {s.track} "
              f"--planner {s.planner} --model {best.bundle} --set cost.speed_reference=reference_lap "
              f"--set cost.pace={best.pace:g} --set cost.target_speed={best.top_speed:g}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"rungs written to {args.json}")
    return 0 if rungs and rungs[0].accepted else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.sysid ladder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_ladder_args(p)
    return cmd_ladder(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

