"""Ingest capacity: observations/s that N writer processes append into one Redis and into a
three-master Redis Cluster, measured in one run, with each master's own share.

Both run here, started by this script with the persistence the manifests deploy (AOF,
fsync every second): one redis-server, then a cluster of three masters each with a
replica. The writers are the sidecars' write path (``RedisObservationStore``: idempotency
id, shard stream, the global model's sample), each process appending batches of fresh
observations for ``--seconds``, each batch from one pod, so of one of ``--shards``
(accelerator, served model) pairs, taken in turn. Per master it prints the observations
it took a second (shard entries plus the global model's sampled copies) and the CPU its
redis-server used: a master near one CPU-second a second is the bottleneck; where the
writers and servers together use every core of the machine, the machine is.

Python writers cost several times more CPU per observation than Redis does, so on a small
machine they saturate it long before Redis. The second part takes them out: the same
append script (``APPEND_SCRIPT``, 20 observations a call) driven by ``redis-benchmark``,
Redis's own C client, one per master at once (each on a shard of that master), again one
Redis then the cluster: Redis-side capacity, per master.

    python bench/redis_ingest.py [--writers 4] [--seconds 10] [--shards 24]
                                 [--global-sample-rate 0.05] [--batch 200] [--calls 40000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from latency_oracle.features.redis.key_layout import RedisKeys
from latency_oracle.features.redis.observation_store import (
    APPEND_SCRIPT,
    RedisObservationStore,
    connect,
)
from latency_oracle.sim.local_redis import LocalCluster, RedisNode, local_cluster, local_redis
from latency_oracle.sim.synthetic_stream import generate_stream

PERSISTENCE = ("--appendonly", "yes", "--appendfsync", "everysec")  # as deploy/base/redis.yaml
ACCELERATORS = ("H100", "A100", "L4", "MI300X")
OBSERVATIONS_PER_CALL = 20


@dataclass(frozen=True)
class Run:
    """One writer process's part of a measurement."""

    url: str
    prefix: str
    shards: int
    batch: int
    seconds: float
    global_sample_rate: float


def _writer(run: Run, index: int, start: Any, out: Any) -> None:
    """Append fresh observations for ``run.seconds`` once ``start`` is set; put the count."""
    store = RedisObservationStore(
        connect(run.url, 5.0),
        RedisKeys(run.prefix),
        stream_maxlen=10_000_000,
        id_ttl_s=3_600,
        pod_ttl_s=30,
        global_sample_rate=run.global_sample_rate,
    )
    template = generate_stream(run.batch, seed=index).observations
    pairs = [(a, f"model-{m}") for m in range(run.shards) for a in ACCELERATORS][: run.shards]
    for pair in pairs:  # connect, load scripts, register every shard
        store.append(_batch(template, pair, f"warm-{index}"))
    start.wait()
    sent, batches, deadline = 0, 0, time.monotonic() + run.seconds
    while time.monotonic() < deadline:
        pair = pairs[(index + batches) % len(pairs)]
        sent += store.append(_batch(template, pair, f"{index}-{batches}")).accepted
        batches += 1
    out.put(sent)


def _batch(template: list, pair: tuple[str, str], tag: str) -> list:
    """The template's observations with fresh ids, as one pod of ``pair`` sends them."""
    update = {"accelerator": pair[0], "model": pair[1]}
    return [
        o.model_copy(update={**update, "observation_id": f"{tag}-{i}"})
        for i, o in enumerate(template)
    ]


def measure(url: str, masters: list[RedisNode], cluster: LocalCluster | None, args: object) -> dict:
    """Run the writers against ``url``; total and per-master observations/s and CPU use."""
    run = Run(
        url,
        f"bench-ingest-{uuid.uuid4().hex[:8]}",
        args.shards,  # type: ignore[attr-defined]
        args.batch,  # type: ignore[attr-defined]
        args.seconds,  # type: ignore[attr-defined]
        args.global_sample_rate,  # type: ignore[attr-defined]
    )
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    writers = [
        context.Process(target=_writer, args=(run, i, start, out))
        for i in range(args.writers)  # type: ignore[attr-defined]
    ]
    for process in writers:
        process.start()
    time.sleep(0.5 + 0.5 * len(writers))  # spawned interpreters import and warm up
    cpu_before = {node.port: node.cpu_seconds() for node in masters}
    client = connect(url, 5.0)
    entries_before = _entries_per_master(client, run.prefix, cluster, masters)
    started = time.perf_counter()
    start.set()
    accepted = sum(out.get(timeout=run.seconds + 120) for _ in writers)
    elapsed = time.perf_counter() - started
    for process in writers:
        process.join(timeout=30)
    entries = _entries_per_master(client, run.prefix, cluster, masters)
    per_master = {
        node.port: {
            "entries_per_s": (entries[node.port] - entries_before[node.port]) / elapsed,
            "cpu": (node.cpu_seconds() - cpu_before[node.port]) / elapsed,
        }
        for node in masters
    }
    for pattern in RedisKeys(run.prefix).patterns:
        keys = list(client.scan_iter(pattern, count=1_000))
        for first in range(0, len(keys), 1_000):
            client.delete(*keys[first : first + 1_000])
    return {"obs_per_s": accepted / elapsed, "per_master": per_master}


def _entries_per_master(
    client: object, prefix: str, cluster: LocalCluster | None, masters: list[RedisNode]
) -> dict[int, int]:
    """Stream entries held by each master (every shard's stream, the global one too)."""
    keys = RedisKeys(prefix)
    shards = [m.decode() for m in client.smembers(keys.shards)]  # type: ignore[attr-defined]
    counts = dict.fromkeys((node.port for node in masters), 0)
    for shard in shards:
        stream = keys.stream(shard)
        node = masters[0] if cluster is None else cluster.master_of(stream)
        counts[node.port] += int(client.xlen(stream))  # type: ignore[attr-defined]
    return counts


def server_capacity(masters: list[RedisNode], cluster: LocalCluster | None, calls: int) -> dict:
    """Observations/s the append script takes from redis-benchmark: total and per master.

    One redis-benchmark per master, all at once, each appending to a shard whose hash tag
    lands on that master (``calls`` calls in all): the cluster's masters get the same
    client as the single Redis, with no routing in the way.
    """
    payload = generate_stream(1, seed=0).observations[0].model_dump_json()
    per_call = [arg for _ in range(OBSERVATIONS_PER_CALL) for arg in (payload, "__rand_int__", 3)]
    commands = []
    for node in masters:
        tag = "bench" if cluster is None else _tag_on(cluster, node)
        sha = redis.Redis(port=node.port).script_load(APPEND_SCRIPT)
        script_args = ["1", f"{{{tag}}}:obs", "3600", "100000000", "0", f"{{{tag}}}:seen:"]
        commands.append(
            [
                *("redis-benchmark", "-h", "127.0.0.1", "-p", str(node.port)),
                *("-n", str(calls // len(masters)), "-c", "16", "-P", "8"),
                *("-r", "100000000", "-q", "EVALSHA", sha),
                *map(str, [*script_args, *per_call]),
            ]
        )
    cpu_before = {node.port: node.cpu_seconds() for node in masters}
    started = time.perf_counter()
    clients = [subprocess.Popen(c, stdout=subprocess.DEVNULL) for c in commands]
    finished = {}
    for node, client in zip(masters, clients, strict=True):
        client.wait(timeout=600)
        finished[node.port] = time.perf_counter() - started
    elapsed = max(finished.values())
    per_master = {}
    for node in masters:
        server = redis.Redis(port=node.port)
        entries = sum(int(server.xlen(key)) for key in server.scan_iter("*:obs"))
        cpu = (node.cpu_seconds() - cpu_before[node.port]) / elapsed
        per_master[node.port] = {"entries_per_s": entries / elapsed, "cpu": cpu}
    total = sum(m["entries_per_s"] for m in per_master.values())
    return {"obs_per_s": total, "per_master": per_master}


def _tag_on(cluster: LocalCluster, node: RedisNode) -> str:
    """A hash tag whose slot ``node`` masters."""
    for i in range(10_000):
        if cluster.master_of(f"{{bench-{i}}}") == node:
            return f"bench-{i}"
    raise LookupError(f"no tag found for {node.address}")


def _report(name: str, figures: dict) -> None:
    print(f"{name}: {figures['obs_per_s']:,.0f} observations/s accepted")
    for port, master in figures["per_master"].items():
        rate, cpu = master["entries_per_s"], master["cpu"]
        per_cpu = rate / cpu if cpu else float("nan")
        print(
            f"    master :{port}: {rate:,.0f} stream entries/s, redis-server CPU {cpu:.2f} "
            f"core(s) -> {per_cpu:,.0f} entries per CPU-second"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=max(2, 2 * (os.cpu_count() or 1)))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--shards", type=int, default=24)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--global-sample-rate", type=float, default=0.05)
    parser.add_argument("--calls", type=int, default=40_000, help="redis-benchmark calls")
    args = parser.parse_args()
    print(
        f"{args.writers} writer processes, batches of {args.batch} over {args.shards} shards, "
        f"global sample rate {args.global_sample_rate}, {args.seconds:.0f} s each; "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start"
    )
    with tempfile.TemporaryDirectory() as folder:
        with local_redis(Path(folder) / "single", *PERSISTENCE) as single:
            one = measure(single.url, [single], None, args)
            one_server = server_capacity([single], None, args.calls)
        with local_cluster(Path(folder) / "cluster", *PERSISTENCE) as cluster:
            three = measure(cluster.url, cluster.masters(), cluster, args)
            three_server = server_capacity(cluster.masters(), cluster, args.calls)
    print("Python writers (RedisObservationStore):")
    _compare(one, three)
    print(f"redis-benchmark, the append script, {OBSERVATIONS_PER_CALL} observations a call:")
    _compare(one_server, three_server)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


def _compare(one: dict, three: dict) -> None:
    _report("  one Redis", one)
    _report("  Redis Cluster, 3 masters (each with a replica)", three)
    ratio = three["obs_per_s"] / one["obs_per_s"]
    verdict = "met" if ratio >= 2.5 else "NOT met"
    print(f"  cluster / one Redis: {ratio:.2f}x (bar: >= 2.5x with 3 masters: {verdict})")
    for name, figures in (("one Redis", one), ("the cluster", three)):
        cpu = sum(m["cpu"] for m in figures["per_master"].values())
        print(f"  {name}: its masters used {cpu:.2f} of the machine's {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
