"""Pod-mirror refresh cost with 10,000 live pods: what a predictor pays every
``pod_sync_interval_s`` to keep routing on current pod states, and what Redis pays.

A redis-server of its own (started here) holds ``--pods`` live pod states in the bucketed
layout (``features.redis.pods``). Timed, in one run: a predictor's first read (every pod
fetched and parsed), refreshes after 0%, 10% and 100% of the pods reported again (only
those are fetched), and, as the baseline, the layout this replaced: one hash per pod and
one sorted-set index, every pod's hash read on every refresh. Each line gives the client's
wall time per refresh (median of ``--repeat``) and the redis-server CPU it used. Pod
reports themselves are timed too (the sidecars' write: one script on one bucket's master).

    python bench/pod_mirror_refresh.py [--pods 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from latency_oracle.features.pod_state import PodState
from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import RedisKeys
from latency_oracle.features.redis.observation_store import connect
from latency_oracle.features.redis.pods import PodStateReader, RedisPodStates
from latency_oracle.sim.local_redis import RedisNode, local_redis


def _state(i: int, version: int) -> PodState:
    return PodState(
        pod=f"pod-{i:05d}",
        accelerator=("H100", "A100", "L4", "MI300X")[i % 4],
        model=f"model-{i % 8}",
        running_requests=(i + version) % 32,
        waiting_requests=version % 5,
        kv_cache_usage=((i * 7 + version) % 100) / 100,
    )


def _timed(server: RedisNode, call: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall ms of ``call`` and the redis-server CPU ms per call."""
    cpu, walls = server.cpu_seconds(), []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        walls.append(time.perf_counter() - started)
    return statistics.median(walls) * 1e3, (server.cpu_seconds() - cpu) / repeat * 1e3


class Layout1:
    """The replaced layout, as the baseline: a hash per pod (fields JSON-encoded) and one
    index of every pod; a refresh reads the index and every pod's hash."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def put(self, state: PodState) -> None:
        fields = {k: json.dumps(v) for k, v in state.model_dump(mode="json").items()}
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(f"{self.prefix}:pod:{state.pod}")
        pipe.hset(f"{self.prefix}:pod:{state.pod}", mapping=fields)
        pipe.zadd(f"{self.prefix}:pods", {state.pod: time.time()})
        pipe.execute()

    def refresh(self) -> list[PodState]:
        names = [n.decode() for n in self.client.zrange(f"{self.prefix}:pods", 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(f"{self.prefix}:pod:{name}")
        return [
            PodState.model_validate_json(
                json.dumps({k.decode(): json.loads(v) for k, v in fields.items()})
            )
            for fields in pipe.execute()
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, repeat = args.pods, args.repeat
    with tempfile.TemporaryDirectory() as folder, local_redis(Path(folder)) as server:
        client = connect(server.url, 10.0)
        keys = RedisKeys(f"bench-pods-{uuid.uuid4().hex[:8]}")
        writer = RedisPodStates(client, keys, pod_ttl_s=600, max_pods=n)
        version = [0]

        def report(share: float) -> None:
            version[0] += 1
            for i in range(0, n, max(1, round(1 / share)) if share else n + 1):
                writer.put(_state(i, version[0]))

        started, cpu = time.perf_counter(), server.cpu_seconds()
        report(1.0)
        put_s, put_cpu = time.perf_counter() - started, server.cpu_seconds() - cpu
        print(
            f"{n:,} pod reports: {put_s / n * 1e6:.0f} us each from one client, redis-server "
            f"CPU {put_cpu / n * 1e6:.1f} us each (~{n / max(put_cpu, 1e-9):,.0f} reports "
            f"per CPU-second on one master)"
        )

        def first_read() -> None:
            assert len(PodStateReader(client, keys, 600, n).refresh()) == n

        reader = PodStateReader(client, keys, 600, n)
        reader.refresh()
        rows = [("first read (every pod fetched and parsed)", _timed(server, first_read, repeat))]
        for share in (0.0, 0.1, 1.0):
            timings = []
            for _ in range(repeat):
                report(share)
                timings.append(_timed(server, reader.refresh, 1))
            wall = statistics.median(t[0] for t in timings)
            cpu_ms = statistics.median(t[1] for t in timings)
            rows.append((f"refresh after {share:.0%} of pods reported", (wall, cpu_ms)))

        old = Layout1(client, keys.prefix + "-layout1")
        for i in range(n):
            old.put(_state(i, 0))
        baseline = _timed(server, old.refresh, repeat)
        rows.append(("baseline, layout 1: every pod's hash read", baseline))
        for name, (wall, cpu_ms) in rows:
            print(
                f"{name}: {wall:,.1f} ms per refresh ({wall / baseline[0]:.2f}x baseline), "
                f"redis-server CPU {cpu_ms:,.1f} ms"
            )
        interval = 0.2
        print(
            f"at pod_sync_interval_s={interval}: a predictor spends "
            f"{rows[-2][1][0] / (interval * 1e3):.0%} of a core refreshing when every pod "
            f"reports between refreshes, {rows[2][1][0] / (interval * 1e3):.0%} when 10% do "
            f"(layout 1: {baseline[0] / (interval * 1e3):.0%})"
        )


if __name__ == "__main__":
    main()
