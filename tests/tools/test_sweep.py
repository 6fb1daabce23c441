"""tools.sweep without Ray: the spec, trials, resume, failures, the table, compare, tune.

Trials are a few dozen control periods of small planners on the true car, so the numbers are
real episodes; the oracles are equalities (resume reruns nothing, a rerun gives the same
rows, a sweep compared with itself differs by exactly zero) and orderings (a faster target
speed drives further in the same steps, and compare's interval says so).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from controller.config import load_config
from tools.sweep.__main__ import main
from tools.sweep.results import bootstrap_ci, compare, read_table
from tools.sweep.spec import SpecError, SweepSpec, expand, load_spec

SMALL = ["planner.num_samples=32", "planner.horizon=8", "planner.compile=false"]


def write_spec(folder: Path, **fields) -> Path:
    spec = {"name": "t", "set": SMALL, "tracks": ["circle"], "max_steps": 20} | fields
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_spec_expands_to_seeded_trials_with_stable_ids() -> None:
    spec = SweepSpec(tracks=["circle", "random:0"], cars=[{"name": "a"}, {"name": "b", "params": {"mu": 0.8}}],
                     planners=["mppi", {"kind": "ilqr", "horizon": 12}], grid={"cost.target_speed": [8, 10]},
                     sets=[[], ["planner.temperature=0.3"]], seeds=[0, 5])
    trials = expand(spec)
    assert len(trials) == 2 * 2 * 2 * 2 * 2 * 2
    assert len({t.trial_id for t in trials}) == len(trials)
    assert [t.trial_id for t in expand(spec)] == [t.trial_id for t in trials]
    ilqr = [t for t in trials if t.planner_label == "ilqr"]
    config = next(t for t in ilqr if "temperature" not in t.config_label).daemon_config()
    assert config.planner.kind == "ilqr" and config.planner.horizon == 12
    with pytest.raises(ValueError, match="planner.temperature: unknown key"):  # a failed trial at run time
        next(t for t in ilqr if "temperature" in t.config_label).daemon_config()
    mppi = next(t for t in trials if t.planner_label == "mppi" and "temperature" in t.config_label)
    assert mppi.daemon_config().planner.temperature == 0.3
    assert mppi.keys()["car_params"] in ("{}", json.dumps({"mu": 0.8}))


def test_bad_spec_is_a_clear_error(tmp_path) -> None:
    path = write_spec(tmp_path, seeds="many", carz=[])
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert "seeds" in str(e.value) and "carz" in str(e.value)
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--serial"]) == 2


@pytest.mark.slow
def test_run_resume_failures_table_and_plots(tmp_path, capsys) -> None:
    spec = write_spec(tmp_path, tracks=["circle", "no_such_track"], grid={"cost.target_speed": [6, 12]})
    out = tmp_path / "a"
    assert main(["run", str(spec), "--out", str(out), "--serial"]) == 1  # a failed trial: exit 1
    frame = read_table(out)
    assert len(frame) == 4
    failed = frame[frame["status"] == "failed"]
    assert len(failed) == 2 and failed["error"].str.contains("no_such_track").all()
    assert failed["lap_time_est_s"].isna().all()
    ok = frame[frame["status"] == "ok"].set_index("config")
    assert (ok["steps"] == 20).all() and (ok["spins"] == 0).all() and (ok["fallbacks"] == 0).all()
    # The faster reference drives further in the same 20 periods.
    assert ok.loc["cost.target_speed=12", "progress_m"] > ok.loc["cost.target_speed=6", "progress_m"]
    assert ok["solve_ms_p99"].gt(0).all() and ok["max_abs_lateral_m"].ge(ok["mean_abs_lateral_m"]).all()
    assert (out / "score_by_track_config.png").stat().st_size > 0
    assert (out / "score_over_seeds.png").stat().st_size > 0
    text = capsys.readouterr().out
    assert "4 trials, 2 failed" in text

    # Resume: nothing reruns; the table is the same.
    before = {p.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*.json")}
    assert main(["run", str(spec), "--out", str(out), "--serial"]) == 1
    assert "0 trials run, 4 already" in capsys.readouterr().out
    assert before == {p.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*.json")}

    # compare: a sweep with itself differs by zero; against another speed, pairs on track/car/seed.
    assert main(["compare", str(out), str(out)]) == 0
    diffs, stats = compare(frame, frame)
    assert len(diffs) == 2 and (stats["mean_diff"] == 0).all()
    fast = frame[frame["config"] == "cost.target_speed=12"]
    slow = frame[frame["config"] == "cost.target_speed=6"]
    diffs, stats = compare(slow, fast, on=("track", "car", "seed"))
    row = stats[(stats["metric"] == "lap_time_est_s") & (stats["scope"] == "all")].iloc[0]
    assert row["pairs"] == 1 and row["mean_diff"] < 0


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_data() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 20), rng.normal(1.0, 1.0, 2000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < 1.0 < hi_l
    assert hi_l - lo_l < 0.3 * (hi_s - lo_s)
    assert bootstrap_ci(small) == (lo_s, hi_s)  # seeded


@pytest.mark.slow
def test_tune_writes_an_overlay_the_daemon_accepts(tmp_path) -> None:
    spec = write_spec(tmp_path, tune={"trials": 3, "seed": 1, "max_offtrack_s": 100, "max_spins": 10,
                                      "params": {"cost.target_speed": {"low": 4, "high": 12},
                                                 "planner.temperature": {"choices": [0.3, 1.0]}}})
    out = tmp_path / "tune"
    assert main(["tune", str(spec), "--out", str(out), "--serial"]) == 0
    trials = pd.read_parquet(out / "tune_trials.parquet")
    assert len(trials) == 3 and trials["feasible"].all()
    best = trials.loc[trials["objective"].idxmin()]
    config = load_config(out / "best.yaml")
    assert config.cost.target_speed == pytest.approx(best["cost.target_speed"])
    assert config.planner.temperature == best["planner.temperature"]
    assert config.planner.num_samples == 32  # the spec's own settings carry over


@pytest.mark.slow
def test_daemon_mode_runs_a_trial_over_the_wire(tmp_path) -> None:
    spec = write_spec(tmp_path, mode="daemon", max_steps=15)
    out = tmp_path / "d"
    assert main(["run", str(spec), "--out", str(out), "--serial"]) == 0
    row = read_table(out).iloc[0]
    assert row["status"] == "ok" and row["steps"] == 15 and row["progress_m"] > 3
    # The daemon runs the same control step as the in-process driver: the same episode.
    inprocess = tmp_path / "i"
    assert main(["run", str(write_spec(tmp_path, max_steps=15)), "--out", str(inprocess), "--serial"]) == 0
    same = read_table(inprocess).iloc[0]
    for column in ("progress_m", "mean_abs_lateral_m", "max_abs_lateral_m", "mean_speed_mps"):
        assert row[column] == pytest.approx(same[column], rel=1e-9), column


def test_a_finished_lap_has_its_ratio_to_the_reference_lap() -> None:
    from tools.sweep.trial import run_trial

    spec = SweepSpec(set=SMALL, tracks=["circle"], laps=0.05,
                     cars=[{"name": "dry"}, {"name": "wet", "params": {"mu": 0.5}}])
    dry, wet = (run_trial(t) for t in expand(spec))
    for row in (dry, wet):
        assert row["status"] == "ok" and row["completed"], row
        assert row["lap_time_ratio"] == pytest.approx(row["lap_time_s"] / row["reference_lap_s"])
        assert row["lap_time_est_ratio"] == row["lap_time_ratio"]
        assert row["lap_time_ratio"] > 1.0  # nobody beats the friction limit from a rolling start
        assert row["lap_times_s"] == []  # a twentieth of a lap completes no lap
    assert wet["reference_lap_s"] > dry["reference_lap_s"]  # less grip, a slower reference
