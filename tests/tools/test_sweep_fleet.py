"""Fleet refits: many log directories read as one Arrow dataset (tools.sysid.fleet).

Oracles: for one car the dataset gives exactly ``load_steps``' fitting columns; two cars that
used the same session id and sequence numbers never pair across cars (the blocks of the
fleet are the blocks of each car); a fleet fit recovers the parameters both cars were driven
with; the cache converts a file once.
"""

from __future__ import annotations

import numpy as np
import pytest

from controller.translog import load_steps, log_files
from tests.tools.test_sysid import TRUE, write_logs
from tools.sysid.data import blocks
from tools.sysid.fit import FitOptions, run_fit
from tools.sysid.fleet import load_fleet_steps


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    for car, seed in (("car_a", 0), ("car_b", 1)):
        write_logs(root / car, seconds=60.0, seed=seed)
    return root


def test_one_car_equals_load_steps(fleet, tmp_path) -> None:
    want = load_steps(log_files([fleet / "car_a"]))
    got = load_fleet_steps([fleet / "car_a"], tmp_path / "cache")
    np.testing.assert_array_equal(got.states[:, :5], want.states[:, :5])
    np.testing.assert_array_equal(got.actions, want.actions)
    for name in ("seq", "episode", "stamp"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    converted = sorted((tmp_path / "cache").iterdir())
    mtimes = [p.stat().st_mtime_ns for p in converted]
    load_fleet_steps([fleet / "car_a"], tmp_path / "cache")  # cached: not converted again
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "cache").iterdir())] == mtimes


def test_cars_never_pair_across_the_fleet(fleet, tmp_path) -> None:
    both = load_fleet_steps([fleet / "car_a", fleet / "car_b"], tmp_path)
    assert len(np.unique(both.session)) == 2  # both logs say session "", episode 0, seq 0...
    each = [blocks(load_fleet_steps([fleet / car], tmp_path))[0] for car in ("car_a", "car_b")]
    fleet_blocks, _ = blocks(both)
    assert sum(b.steps for b in fleet_blocks) == sum(b.steps for bs in each for b in bs)
    assert len(fleet_blocks) == sum(len(bs) for bs in each)


@pytest.mark.slow
def test_fleet_fit_recovers_the_parameters(fleet, tmp_path) -> None:
    report = run_fit([str(fleet / "car_a"), str(fleet / "car_b")], tmp_path / "models", None,
                     "passenger_car", FitOptions(residual=False, progress=False, cache=str(tmp_path / "c")))
    assert report["steps"] == 2 * 1200
    for name, value in TRUE.items():
        assert report["kinematic"]["estimates"][name] == pytest.approx(value, abs=2e-3 * max(1.0, abs(value)))


def test_windows_are_capped_evenly_and_line_up_across_delays(fleet, tmp_path) -> None:
    from tools.sysid.data import windows

    chosen, _ = blocks(load_fleet_steps([fleet / "car_a", fleet / "car_b"], tmp_path))
    every = windows(chosen, 10, stride=1, delay=0, skip=3, max_windows=10**9)
    capped = [windows(chosen, 10, stride=1, delay=d, skip=3, max_windows=50) for d in (0, 3)]
    assert len(capped[0]) == 50 < len(every)
    np.testing.assert_array_equal(capped[0].start, capped[1].start)  # the same moments
    # A subset of the full set, spread from its first window to its last.
    np.testing.assert_array_equal(capped[0].start[[0, -1]], every.start[[0, -1]])
    rows = {tuple(r) for r in every.start}
    assert all(tuple(r) in rows for r in capped[0].start)
