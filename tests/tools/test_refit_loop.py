"""The closed model-based loop, end to end, against its targets (issue 4).

A real daemon (subprocess, 127.0.0.1) starts from a deliberately wrong nominal model
(wheelbase +15 %, steer gain 0.85, no residual), drives two laps of the simulator's true car
(dynamic single-track model with actuator lag) on the 50 m circle at 10 m/s, ``tools.sysid``
refits from its logs, the daemon reloads the new bundle, and it drives two more laps.
Seeded and lockstep, so deterministic; the native MPPI with K=256, H=25 keeps it under a
minute on two cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.refit_loop import LoopSettings, run_loop

CHEAP = LoopSettings(
    track="circle",
    target_speed=10.0,
    laps=2.0,
    planner_overrides=("planner.num_samples=256", "planner.horizon=25"),
    epochs=60,
)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_refit_loop_meets_its_targets(tmp_path: Path) -> None:
    r = run_loop(tmp_path, CHEAP)
    assert r["completed"]["before"] and r["completed"]["after"], r
    assert r["offtrack_s"]["before"] == 0.0 and r["offtrack_s"]["after"] == 0.0, r
    assert r["rmse_pos_1s_m"]["after"] <= 0.5 * r["rmse_pos_1s_m"]["before"], r
    assert r["mean_abs_lateral_m"]["after"] <= 0.7 * r["mean_abs_lateral_m"]["before"], r
    # Tyre effects matter here and the refit learned them: it predicts better than the
    # kinematic model with the true car's geometry.
    assert r["rmse_pos_1s_m"]["after"] < r["rmse_reference"]["true_geometry_kinematic_1s_pos_m"], r
    assert r["model"]["after"] != "wrong-nominal", r
