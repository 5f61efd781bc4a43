"""Sidecar delivery through a fleet-wide store outage: jittered backoff, quiet logs, no loss.

The fleet test runs 200 sidecars' delivery (writer and pod-state publisher each, with the
real Redis sink) in one process against a redis-server of its own, stops that server
while they keep accepting observations, and brings it back.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from redis_support import private_server

from latency_oracle.features.pod_state import PodState
from latency_oracle.features.redis.key_layout import GLOBAL_SHARD, RedisKeys
from latency_oracle.features.redis.observation_store import RedisObservationStore, connect
from latency_oracle.features.schema import Observation
from latency_oracle.sidecar.backoff import Backoff, OutageLog
from latency_oracle.sidecar.delivery import ObservationWriter, PodStatePublisher, RetryPolicy
from latency_oracle.sidecar.own_metrics import SidecarMetrics
from latency_oracle.sidecar.sink import RedisSink

SIDECARS = 200
RETRY = RetryPolicy(base_s=0.05, cap_s=1.0, log_interval_s=60.0)
OUTAGE_S = 2.5  # long enough for every sidecar's bound to reach the cap


def test_full_jitter_draws_below_a_doubling_capped_bound() -> None:
    backoff = Backoff(0.1, 1.0, random.Random(3))
    for failures in range(12):
        bound = min(1.0, 0.1 * 2**failures)
        draws = [Backoff(0.1, 1.0, random.Random(seed)) for seed in range(300)]
        for draw in draws:
            draw.failures = failures
        pauses = [d.next_pause() for d in draws]
        assert min(pauses) >= 0 and max(pauses) <= bound
        assert max(pauses) > 0.8 * bound and min(pauses) < 0.2 * bound  # the whole window
    backoff.failures = 10_000  # a very long outage neither overflows nor passes the cap
    assert backoff.next_pause() <= 1.0
    backoff.reset()
    assert backoff.failures == 0


def test_an_outage_logs_once_then_summaries_then_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    outage = OutageLog(logging.getLogger("t"), "store write", 60.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, "t"):
        for _ in range(300 * 5):  # five minutes of retries every 0.2 s
            outage.failed("connection refused")
            now[0] += 0.2
        outage.succeeded()
        outage.succeeded()  # no outage, nothing to say
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 + 4 + 1
    assert "retrying with backoff" in messages[0]
    assert all("still failing" in m for m in messages[1:5])
    assert "recovered after 300.0s (1500 failed attempts)" in messages[-1]


class TimedRedisSink(RedisSink):
    """The Redis sink, stamping each observation write it is asked for."""

    def __init__(self, store: RedisObservationStore) -> None:
        super().__init__(store)
        self.attempts: list[tuple[float, bool]] = []  # (loop time, succeeded)

    async def write(self, observations: Sequence[Observation]) -> None:
        now = asyncio.get_running_loop().time()
        try:
            await super().write(observations)
        except Exception:
            self.attempts.append((now, False))
            raise
        self.attempts.append((now, True))


def _observation(sidecar: int, i: int) -> Observation:
    return Observation(
        pod=f"pod-{sidecar}",
        accelerator="H100",
        input_tokens=100 + i,
        output_tokens=10,
        max_tokens=10,
        ttft_ms=50.0,
        tpot_ms=10.0,
    )


def test_a_fleet_spreads_its_reconnects_over_the_backoff_window_and_loses_nothing(
    tmp_path: Path, redis_kind: str
) -> None:
    prefix = "test-lo-outage"
    with private_server(redis_kind, tmp_path) as server:

        async def main() -> tuple[list[TimedRedisSink], float, list[str]]:
            loop = asyncio.get_running_loop()
            sinks = [
                TimedRedisSink(
                    RedisObservationStore(
                        connect(server.url, 0.5),
                        RedisKeys(prefix),
                        stream_maxlen=100_000,
                        id_ttl_s=3_600,
                        pod_ttl_s=30.0,
                    )
                )
                for _ in range(SIDECARS)
            ]
            metrics = SidecarMetrics()
            writers = [ObservationWriter(s, 100, metrics, RETRY) for s in sinks]
            publishers = [PodStatePublisher(s, metrics, RETRY) for s in sinks]
            tasks = [loop.create_task(t.run()) for t in (*writers, *publishers)]
            accepted: list[str] = []

            def submit(round_: int) -> None:
                for n, (writer, publisher) in enumerate(zip(writers, publishers, strict=True)):
                    observation = _observation(n, round_)
                    writer.submit(observation)
                    accepted.append(observation.observation_id)
                    publisher.offer(PodState(pod=f"pod-{n}", accelerator="H100"))

            submit(0)
            assert all(await asyncio.gather(*(w.drain(60) for w in writers)))
            await asyncio.to_thread(server.stop)
            for round_ in range(1, 4):  # accepted while the store is down
                submit(round_)
                await asyncio.sleep(OUTAGE_S / 3)
            back = loop.time()
            await asyncio.to_thread(server.start)
            assert all(await asyncio.gather(*(w.drain(60) for w in writers)))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sink in sinks:
                await sink.aclose()
            return sinks, back, accepted

        sinks, back, accepted = asyncio.run(main())
        stream = connect(server.url, 2.0).xrange(RedisKeys(prefix).stream(GLOBAL_SHARD))

    stored = [Observation.model_validate_json(fields[b"o"]).observation_id for _, fields in stream]
    assert sorted(stored) == sorted(accepted)  # every accepted observation, exactly once
    failures = [sum(not ok for _, ok in s.attempts) for s in sinks]
    assert min(failures) >= 1  # every sidecar met the outage and retried
    # The reconnect storm: each sidecar's first successful write once Redis is back. Its
    # stamps are taken in this one busy process, where a stalled loop bunches them up (a
    # loaded machine put 28% in one slot); sidecars in step would all land in one slot.
    reconnects = sorted(min(t for t, ok in s.attempts if ok and t >= back) - back for s in sinks)
    slots = collections.Counter(int(r / 0.1) for r in reconnects)
    summary = f"slots {sorted(slots.items())}"
    assert max(slots.values()) <= 0.4 * SIDECARS, summary  # uniform: ~10% per 100 ms
    decile = SIDECARS // 10
    assert reconnects[-decile] - reconnects[decile] >= 0.3 * RETRY.cap_s, summary
