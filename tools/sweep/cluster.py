"""A real multi-node Ray cluster on this machine, for tests and benchmarks, on loopback only.

``LocalCluster`` starts a head node (GCS and raylet) and one more raylet per extra node through
``ray.cluster_utils.Cluster``: separate processes, each node with its own CPUs and workers,
joined through the head's GCS as ``ray start --address`` joins them; leaving the context shuts
down exactly the nodes it started, by handle.

Loopback: Ray replaces 127.0.0.1 by the machine's routable address wherever it resolves a node
or GCS address (``services.resolve_ip_for_localhost``), even with ``--node-ip-address
127.0.0.1`` and ``_node_ip_address``, unless it believes it runs single-machine
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, named for the platforms where that is the default).
With that setting ``ray start --address`` refuses to add a node, so the nodes are started
through ``cluster_utils`` instead, and every listener, node address and driver connection
stays on 127.0.0.1 (checked with ``ss -ltn`` and ``ray.nodes()``). A private local Ray
(``private_ray_env``) uses the same setting.

Ray (2.5x and later) authenticates its RPCs with a token. The cluster gets a fresh one, in
``RAY_AUTH_TOKEN`` of this process and so of the nodes it starts, so nothing is read from or
written to ``~/.ray``.
"""

from __future__ import annotations

import os
import secrets
import sys

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  #: see the module docstring


def private_ray_env() -> None:
    """Token auth with a fresh token for a Ray this process starts, unless the caller set one;
    no usage statistics."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.update(LOOPBACK_ENV)
    if "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    _reread_ray_settings()


def _reread_ray_settings() -> None:
    """Ray reads its settings (the auth mode among them) from the environment once, at import;
    a process that imported it earlier re-reads them, as Ray itself does when it turns
    token auth on."""
    if "ray" in sys.modules:
        from ray._private import ray_constants
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()  # the token it read last time
        ray_constants.ENABLE_RAY_CLUSTER = ray_constants.env_bool(
            ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, not ray_constants.IS_WINDOWS_OR_OSX
        )


class LocalCluster:
    """``with LocalCluster(nodes=2, cpus_per_node=1) as cluster: ... cluster.address``."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 80):
        self.nodes, self.cpus_per_node = nodes, cpus_per_node
        self.object_store_mb = object_store_mb
        self.address = ""
        self._cluster = None
        self._saved_env: dict[str, str | None] = {}

    def _node_args(self) -> dict:
        return {
            "num_cpus": self.cpus_per_node,
            "node_ip_address": "127.0.0.1",
            "object_store_memory": self.object_store_mb * 2**20,
        }

    def __enter__(self) -> LocalCluster:
        settings = LOOPBACK_ENV | {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        for key, value in settings.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        _reread_ray_settings()
        try:
            from ray.cluster_utils import Cluster

            self._cluster = Cluster(
                initialize_head=True,
                head_node_args=self._node_args() | {"include_dashboard": False},
                shutdown_at_exit=True,
            )
            for _ in range(1, self.nodes):
                self._cluster.add_node(**self._node_args())
            self._cluster.wait_for_nodes()
            self.address = self._cluster.address
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        _reread_ray_settings()

    def __exit__(self, *exc: object) -> None:
        self.close()
