"""The closed model-based loop, end to end, against its targets (issue 4).

A real daemon (subprocess, 127.0.0.1) starts from a deliberately wrong nominal model
(wheelbase +15 %, steer gain 0.85, no residual), drives the simulator's true car (dynamic
single-track model with actuator lag), ``tools.sysid`` refits from its logs, the daemon
reloads the new bundle, and it drives again. Seeded and lockstep, so deterministic; a cheap
planner (no torch.compile, K=256, H=25) on the circle keeps it near a minute and a half.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.refit_loop import LoopSettings, run_loop

CHEAP = LoopSettings(
    track="circle",
    target_speed=12.0,
    laps=1.5,
    planner_overrides=("planner.num_samples=256", "planner.horizon=25", "planner.compile=false"),
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
