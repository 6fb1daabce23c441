"""tools.sweep on real Ray: a private local Ray and a two-node cluster give the serial rows.

One module, one cluster: ``LocalCluster`` starts a head node and a second node (separate
raylets, one GCS, all on 127.0.0.1) and shuts them down by handle when the module ends.
A cluster start takes tens of seconds on a 2-core machine; the trials are a few short ones.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tools.sweep.cluster import LocalCluster
from tools.sweep.results import comparable, table
from tools.sweep.runner import load_rows, run_sweep
from tools.sweep.spec import SweepSpec, expand

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

SPEC = SweepSpec(
    name="ray-test",
    set=["planner.num_samples=32", "planner.horizon=8", "planner.compile=false"],
    tracks=["circle"],
    cars=[{"name": "nominal"}, {"name": "low_mu", "params": {"mu": 0.8}, "noise": {"position_m": 0.05}}],
    seeds=2,
    max_steps=12,
)


def _rows(out: Path) -> pd.DataFrame:
    return comparable(table(load_rows(out), [t.trial_id for t in expand(SPEC)]))


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("serial")
    run_sweep(expand(SPEC), out, executor="serial")
    rows = _rows(out)
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    return rows


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(nodes=2, cpus_per_node=1) as c:
        yield c


def test_two_node_cluster_equals_serial(serial, cluster, tmp_path) -> None:
    import ray

    ran, _ = run_sweep(expand(SPEC), tmp_path, executor="ray", address=cluster.address)
    assert ran == len(serial)
    assert not ray.is_initialized()  # joined, then left; the cluster itself keeps running
    rows = table(load_rows(tmp_path))
    assert rows["worker"].nunique() >= 2  # trials spread over workers (one CPU per node)
    pd.testing.assert_frame_equal(_rows(tmp_path), serial)


def test_local_ray_equals_serial(serial, tmp_path) -> None:
    run_sweep(expand(SPEC), tmp_path, executor="ray", workers=2)
    pd.testing.assert_frame_equal(_rows(tmp_path), serial)


def test_the_cluster_is_two_nodes_on_loopback(cluster) -> None:
    import ray

    ray.init(address=cluster.address, log_to_driver=False)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        gcs = ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
    assert len(nodes) == 2
    assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"} and gcs.startswith("127.0.0.1:")
