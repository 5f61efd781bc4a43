"""A real local Redis Cluster for tests (``latency_oracle.sim.local_redis``): three masters,
each with a replica, on free ports, run with the persistence the manifests deploy.

Tests that kill nodes start their own; the others share one per session (conftest).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from redis_support import deployed_persistence

from latency_oracle.sim.local_redis import NODE_TIMEOUT_MS, LocalCluster, RedisNode
from latency_oracle.sim.local_redis import local_cluster as _local_cluster

__all__ = ["LocalCluster", "RedisNode", "local_cluster"]


@contextmanager
def local_cluster(
    directory: Path,
    *flags: str,
    auth: tuple[str, str] | None = None,
    node_timeout_ms: int = NODE_TIMEOUT_MS,
) -> Iterator[LocalCluster]:
    with _local_cluster(
        directory, *deployed_persistence(), *flags, auth=auth, node_timeout_ms=node_timeout_ms
    ) as cluster:
        yield cluster
