"""Redis servers of our own on this machine: one server, or a real Redis Cluster of three
masters each with a replica, on free ports. For the tests and the benchmarks (the product
only ever connects to a Redis it is given).

A cluster's nodes are ``redis-server --cluster-enabled yes`` with a directory each and a
short node timeout (a killed master is replaced within seconds); it is formed by
``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes``. Stopped, killed or
paused nodes come back from their own files (``nodes.conf``, append-only files).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from latency_oracle.sim.processes import free_port

MASTERS = 3
# Failure detection. Long enough that a node starved of CPU on a busy machine is not
# failed over by mistake; a failover test asks for a short one.
NODE_TIMEOUT_MS = 5_000
START_TIMEOUT_S = 60.0


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


@dataclass
class RedisNode:
    """One redis-server: alone, or a node of a cluster (``cluster=True``)."""

    directory: Path
    flags: tuple[str, ...] = ()
    cluster: bool = False
    node_timeout_ms: int = NODE_TIMEOUT_MS
    port: int = field(default_factory=free_port)
    bus_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.address}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        cluster = (
            (
                *("--cluster-enabled", "yes", "--cluster-port", str(self.bus_port)),
                *("--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", str(self.node_timeout_ms)),
            )
            if self.cluster
            else ()
        )
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.directory), "--save", ""),
                *cluster,
                *self.flags,
            ],
            stdout=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown; what was acknowledged is in the append-only file, if any."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """Graceful shutdown (the append-only file keeps what was written)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the node keeps its connections but answers nothing (a hung host)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def cpu_seconds(self) -> float:
        """CPU time the server has used (user + system), from ``INFO cpu``."""
        info = redis.Redis(port=self.port, socket_timeout=5).info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class LocalCluster:
    """Three masters and three replicas on 127.0.0.1; ``auth`` (user, password) where the
    nodes load an ACL file (through ``flags``, e.g. ``--aclfile``)."""

    def __init__(
        self,
        directory: Path,
        *flags: str,
        auth: tuple[str, str] | None = None,
        node_timeout_ms: int = NODE_TIMEOUT_MS,
    ) -> None:
        self.auth = auth
        self.formed = False
        self.nodes = [
            RedisNode(directory / f"node-{i}", flags, True, node_timeout_ms)
            for i in range(2 * MASTERS)
        ]

    @property
    def url(self) -> str:
        """Any one node's address: clients discover the others."""
        return self.nodes[0].url

    def node_client(self, node: RedisNode) -> redis.Redis:
        user, password = self.auth or (None, None)
        return redis.Redis(port=node.port, username=user, password=password, socket_timeout=2)

    def start(self) -> None:
        """Start every node; the first time, form the cluster. A restarted cluster comes back
        from its nodes' files, as after a power cut."""
        for node in self.nodes:
            if node.process is None:
                node.start()
        for node in self.nodes:
            _wait(lambda n=node: self._pings(n), 10, f"{node.address} did not start")
        if not self.formed:
            self._create()
            self.formed = True
        _wait(self.healthy, START_TIMEOUT_S, "the cluster never got OK")

    def _create(self) -> None:
        auth = ["--user", self.auth[0], "--pass", self.auth[1]] if self.auth else []
        subprocess.run(
            [
                *("redis-cli", *auth, "--cluster", "create"),
                *(node.address for node in self.nodes),
                *("--cluster-replicas", "1", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S,
            env={k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"},
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill(self) -> None:
        """SIGKILL every node (a whole-cluster crash); ``start()`` brings it back."""
        for node in self.live():
            node.kill()

    def _pings(self, node: RedisNode) -> bool:
        try:
            return bool(self.node_client(node).ping())
        except redis.RedisError:
            return False

    def _info(self, node: RedisNode, section: str) -> dict:
        return self.node_client(node).info(section)

    def healthy(self) -> bool:
        """Every live node sees the cluster OK, with three masters each fed a replica."""
        try:
            if not self.ok():
                return False
            masters = self.masters()
            return (
                len(masters) == MASTERS
                and all(self._info(m, "replication").get("connected_slaves") == 1 for m in masters)
                and all(
                    self._info(n, "replication").get("master_link_status") == "up"
                    for n in self.live()
                    if n not in masters
                )
            )
        except redis.RedisError:
            return False

    def ok(self) -> bool:
        """Every live node says ``cluster_state:ok`` (each slot has a reachable master)."""
        try:
            return all(
                self.node_client(n).cluster("info").get("cluster_state") == "ok"
                for n in self.live()
            )
        except redis.RedisError:
            return False

    def role(self, node: RedisNode) -> str:
        return str(self._info(node, "replication")["role"])

    def masters(self) -> list[RedisNode]:
        return [n for n in self.live() if self.role(n) == "master"]

    def master_of(self, key: str) -> RedisNode:
        """The live node that masters ``key``'s hash slot now."""
        slot = self.node_client(self.live()[0]).cluster("keyslot", key)
        for node in self.masters():
            served = self.node_client(node).execute_command("CLUSTER", "SLOTS")
            mine = [r for r in served if int(r[2][1]) == node.port]
            if any(int(r[0]) <= slot <= int(r[1]) for r in mine):
                return node
        raise LookupError(f"no live master serves slot {slot}")

    def replica_of(self, master: RedisNode) -> RedisNode:
        port = int(self._info(master, "replication")["slave0"]["port"])
        return next(n for n in self.nodes if n.port == port)

    def replicated(self, master: RedisNode) -> bool:
        """The master's replica has every write the master has (replication offsets equal)."""
        info = self._info(master, "replication")
        return int(info["slave0"]["offset"]) == int(info["master_repl_offset"])

    def live(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.process is not None]


@contextmanager
def local_cluster(
    directory: Path,
    *flags: str,
    auth: tuple[str, str] | None = None,
    node_timeout_ms: int = NODE_TIMEOUT_MS,
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(directory, *flags, auth=auth, node_timeout_ms=node_timeout_ms)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def local_redis(directory: Path, *flags: str) -> Iterator[RedisNode]:
    """One redis-server (not a cluster node), answering once the block starts."""
    node = RedisNode(directory, flags)
    node.start()
    try:
        probe = redis.Redis(port=node.port, socket_timeout=1)
        _wait(lambda: _answers(probe), 10, f"{node.address} did not start")
        yield node
    finally:
        node.stop()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
