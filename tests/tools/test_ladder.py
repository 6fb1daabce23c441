"""The pace ladder (tools/sysid/ladder.py): its gates and reference, and one short ladder end to end.

The end-to-end test runs real subprocesses: the daemon (``python -m controller`` on a free
loopback port, logging) and the STD true car over the wire, on the generated 50 m circle. Rung 0
drives the nominal model; rung 1 refits (``tools.sysid fit``'s pipeline), hot-reloads the bundle
into the running daemon and drives again. Its held-out gate is set so that no refit can pass it
(the new model must cut the error by 99 %), so rung 1 is rolled back: the daemon reloads the
nominal bundle. Lockstep and seeded; a small planner keeps it well under a minute.
"""

from __future__ import annotations

import json

import math
from pathlib import Path

import pytest
import torch

from controller.costs import CostConfig, TrackCost
from controller.track import circle
from controller.track.reference_lap import GRAVITY, reference_lap
from tools.sysid.ladder import (
    NOMINAL,
    LadderSettings,
    Rung,
    best_accepted,
    flying_start,
    model_gate,
    nominal_bundle,
    reference_time,
    rung_rows,
    run_ladder,
    safety_failure,
    speed_overrides,
    table,
)
from vehicle_models.params import load_params


@pytest.mark.parametrize("pace", [0.3, 0.6, 1.0])
def test_the_pace_knob_gives_the_reference_lap_at_that_share_of_mu_g(pace: float) -> None:
    """On a circle the reference-lap speed is its closed form sqrt(pace mu g R) everywhere."""
    params = load_params("passenger_car")
    config = CostConfig(speed_reference="reference_lap", pace=pace, target_speed=100.0)
    table = TrackCost(config, circle(), params, torch.float64).speed_table.numpy()
    assert table == pytest.approx(math.sqrt(pace * params.mu * GRAVITY * 50.0), rel=2e-3)
    capped = TrackCost(config.model_copy(update={"target_speed": 10.0}), circle(), params).speed_table
    assert float(capped.max()) == pytest.approx(10.0)  # target_speed still caps it


def _rung(**fields) -> Rung:
    base = dict(rung=1, kind="model", pace=0.5, model="m", bundle="b", completed=True, end_reason="lap",
                lap_time_s=30.0, ratio=1.5)
    return Rung(**(base | fields))


def test_reference_time_of_a_partial_lap_on_a_circle_is_its_share() -> None:
    track = circle()
    lap = reference_lap(track)
    assert reference_time(lap, track, 1.0) == pytest.approx(lap.time_s)
    assert reference_time(lap, track, 0.5) == pytest.approx(0.5 * lap.time_s, rel=0.01)
    assert reference_time(lap, track, 1.5) == pytest.approx(1.5 * lap.time_s, rel=0.01)


def test_a_flying_start_is_on_the_daemons_line_at_its_speed_reference() -> None:
    """--flying: the drive starts where the daemon's cost says the car should be, at speed."""
    from controller.config import load_config
    from controller.track import random_circuit
    from vehicle_models.layout import State

    track = random_circuit(3)
    overrides = (*speed_overrides(0.7, 40.0), "cost.line=min_curvature")
    x0 = flying_start(track, None, overrides)
    cost = TrackCost(load_config(None, list(overrides)).cost, track, load_params("passenger_car"), torch.float64)
    assert (x0[State.X], x0[State.Y]) == pytest.approx(tuple(cost.track.points[0]), abs=1e-9)
    assert x0[State.V] == pytest.approx(float(cost.speed_table[0])) and x0[State.V] > 10.0
    assert abs(x0[State.Y] - track.points[0][1]) + abs(x0[State.X] - track.points[0][0]) > 0.1  # off the centre


def test_rung_0_drives_the_nominal_model_of_the_refits_core() -> None:
    """With --nominal single_track rung 0 is the vehicle's single-track model (what the race
    preset's model.nominal drives), not the kinematic bicycle that spun at its pace."""
    single = nominal_bundle(LadderSettings(track="circle", nominal="single_track"))
    assert single.version == NOMINAL and single.nominal == "single_track" and single.state_dim == 7
    kinematic = nominal_bundle(LadderSettings(track="circle"))
    assert kinematic.version == NOMINAL and kinematic.nominal == "kinematic" and kinematic.state_dim == 5


def test_safety_gate_fails_on_a_spin_an_offtrack_step_or_an_unfinished_drive() -> None:
    assert safety_failure(_rung()) is None
    assert "spin" in safety_failure(_rung(spins=1))
    assert "off-track" in safety_failure(_rung(offtrack_steps=3))
    assert "offtrack" in safety_failure(_rung(completed=False, end_reason="offtrack"))


def test_model_gate_compares_held_out_errors_on_the_same_drive() -> None:
    assert model_gate(_rung(heldout_error=0.10, heldout_previous=0.20)) is None
    assert model_gate(_rung(heldout_error=0.20, heldout_previous=0.20)) is None
    assert "held-out error" in model_gate(_rung(heldout_error=0.21, heldout_previous=0.20))
    assert model_gate(_rung(heldout_error=0.21, heldout_previous=0.20), tolerance=0.1) is None
    assert "too short" in model_gate(_rung(heldout_error=None, heldout_previous=0.20))


def test_best_accepted_rung_and_table() -> None:
    rungs = [_rung(rung=0, lap_time_s=40.0, status="accepted"), _rung(rung=1, lap_time_s=35.0, status="accepted"),
             _rung(rung=2, lap_time_s=30.0, status="rolled back: 1 spin(s)")]
    assert best_accepted(rungs).rung == 1
    text = table(rung_rows(rungs))
    assert text.splitlines()[0].startswith("| rung | kind | pace | top_speed | model | lap_time_s | ref_lap_s |")
    assert "| 2 | model | 0.50 | - | m | 30.0 |" in text and "rolled back: 1 spin(s)" in text


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_short_ladder_reloads_the_refit_and_rolls_a_failed_gate_back(tmp_path: Path) -> None:
    settings = LadderSettings(
        track="circle", planner="mppi", car="std", pace=0.45, laps=1.5, rungs=3, epochs=10,
        overrides=("planner.num_samples=256", "planner.horizon=25"),
        tolerance=-0.99,  # the refit must predict 100x better: it cannot, so the gate fails
        nominal="kinematic_dynamic_state",  # the refit reads yaw_rate and slip: a 5 -> 7 -> 5 field reload
    )
    lines: list[str] = []
    rungs = run_ladder(tmp_path, settings, lines.append)

    assert [r.kind for r in rungs] == ["nominal", "model", "pace"], lines
    nominal, refit, faster = rungs
    # Rung 0: the nominal model drives the stretch safely and is accepted.
    assert nominal.accepted and nominal.model == NOMINAL, lines
    assert nominal.completed and nominal.offtrack_steps == 0 and nominal.spins == 0
    ref = reference_time(reference_lap(circle()), circle(), 1.5)
    assert nominal.ref_lap_s == pytest.approx(ref) and nominal.ratio == pytest.approx(nominal.lap_time_s / ref)
    assert 1.0 < nominal.ratio < 3.0 and not math.isnan(nominal.solve_p99_ms)
    # Rung 1: the refitted bundle was hot-reloaded into the running daemon and drove the stretch ...
    assert refit.model.startswith("sysid-") and refit.reloads == 1 and refit.completed, lines
    assert refit.heldout_error is not None and refit.heldout_previous is not None
    # ... and, failing the (impossible) gate, was rolled back: the daemon reloaded the nominal.
    assert refit.status.startswith("rolled back: held-out error"), refit.status
    daemon_output = (tmp_path / "daemon-1.out").read_text()
    assert f"-> {refit.model}" in daemon_output and f"{refit.model} -> {NOMINAL}" in daemon_output
    # A refit that only predicted worse does not end the ladder: the accepted model goes faster.
    assert faster.model == NOMINAL and faster.pace == pytest.approx(0.55), lines
    assert best_accepted(rungs) in (nominal, faster)
    # the bundle the ladder refitted exists, and the rung's table row says what happened
    manifest = json.loads(Path(refit.bundle, "manifest.json").read_text())
    assert manifest["nominal"] == "kinematic_dynamic_state"
    row = table(rung_rows(rungs)).splitlines()[3]
    assert row.startswith(f"| 1 | model | 0.45 | 50.8 | {refit.model} |") and "rolled back" in row


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_daemon_that_does_not_start_is_a_clear_error(tmp_path: Path, capsys) -> None:
    from tools.sysid.ladder import main

    # A config that is not there is refused before any daemon starts (the ladder reads its
    # model.nominal) ...
    code = main(["--track", "circle", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2 and "missing.yaml: no such config file" in err and "Traceback" not in err, err
    # ... and a daemon that fails at its start (a bundle that is not there) says why.
    code = main(["--track", "circle", "--set", f"model.bundle={tmp_path / 'no-bundle'}", "--out", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2 and "error: the daemon did not start" in err and "no-bundle" in err, err
    assert "Traceback" not in err


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from tools.sysid.ladder import main

    code = main(argv)
    return code, capsys.readouterr().err


def test_a_start_model_or_data_that_is_not_there_is_a_clear_error(tmp_path: Path, capsys) -> None:
    code, err = _cli(["--track", "circle", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "w")], capsys)
    assert code == 2 and err.startswith("error:") and "none" in err, err
    code, err = _cli(["--track", "circle", "--data", str(tmp_path / "old-logs"), "--out", str(tmp_path / "w")], capsys)
    assert code == 2 and "--data: no log files in" in err and "old-logs" in err, err
    (tmp_path / "empty" / "daemon-1").mkdir(parents=True)
    code, err = _cli(["--track", "circle", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "w")], capsys)
    assert code == 2 and "--data: no log files in" in err, err


def test_the_refits_keep_the_start_models_nominal(tmp_path: Path, capsys) -> None:
    from vehicle_models.bundle import ModelBundle, save_bundle

    seven = save_bundle(ModelBundle("seven", load_params("passenger_car"), nominal="kinematic_dynamic_state"),
                        tmp_path / "seven")
    code, err = _cli(["--track", "circle", "--model", str(seven), "--nominal", "kinematic",
                      "--out", str(tmp_path / "w")], capsys)
    assert code == 2 and "has the kinematic_dynamic_state nominal, not --nominal kinematic" in err, err
    assert not (tmp_path / "w").exists()  # refused before any daemon started


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_ladder_resumes_from_a_bundle_and_refits_on_earlier_logs_too(tmp_path: Path) -> None:
    """rung 0 drives the given bundle; the refit reads the earlier ladder's logs and this one's."""
    from vehicle_models.bundle import ModelBundle, save_bundle

    small = dict(track="circle", planner="mppi", car="std", pace=0.45, laps=1.0, epochs=10,
                 overrides=("planner.num_samples=256", "planner.horizon=25"))
    earlier = run_ladder(tmp_path / "earlier", LadderSettings(rungs=1, **small), lambda line: None)
    assert [r.kind for r in earlier] == ["nominal"] and earlier[0].accepted
    start = save_bundle(ModelBundle("start-1", load_params("passenger_car")), tmp_path / "start-1")
    lines: list[str] = []
    rungs = run_ladder(tmp_path / "resumed", LadderSettings(rungs=2, model=str(start), tolerance=-0.99,
                                                            data=(str(tmp_path / "earlier" / "logs"),), **small),
                       lines.append)
    assert [r.kind for r in rungs] == ["start", "model"], lines
    assert rungs[0].model == "start-1" and rungs[0].accepted
    assert Path(rungs[0].bundle) == tmp_path / "resumed" / "models" / "start-1"  # a copy the daemon may reload
    refit = [line for line in lines if line.strip().startswith("refit:")]
    assert len(refit) == 1 and refit[0].endswith("from 2 log files)"), lines  # the earlier drive's and rung 0's
    manifest = json.loads(Path(rungs[1].bundle, "manifest.json").read_text())
    assert manifest["parent_version"] == "start-1"
    assert rungs[1].status.startswith("rolled back: held-out error")
