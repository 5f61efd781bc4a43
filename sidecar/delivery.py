"""Background delivery of observations and pod state, off every request's path.

A finished request only puts its observation on a bounded queue; one task writes
batches to the sink and retries a failed batch with the same ids until the store takes
it, so an outage delays samples without losing or doubling them. When the queue is full
(a long outage) new samples are dropped and counted: slowing the engine's clients down to
save training data would be the wrong trade.

Pod state is different: only the newest scrape matters, so a failed publish is simply
superseded by the next one, no sooner than the backoff allows; its backoff is capped
short (``sidecar_state_retry_cap_s``), since routers cannot see the pod until it lands.

Retries back off exponentially with full jitter and log once per outage
(``sidecar/backoff.py``): a fleet of sidecars losing the same store must not come back
to it in step, nor fill the logs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from latency_oracle.features.pod_state import PodState
from latency_oracle.features.schema import Observation
from latency_oracle.sidecar.backoff import Backoff, OutageLog
from latency_oracle.sidecar.own_metrics import SidecarMetrics
from latency_oracle.sidecar.sink import ObservationSink, SinkRejected, SinkUnavailable

log = logging.getLogger(__name__)

WRITE_BATCH = 500


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff bounds and how often a lasting outage is logged (the settings' values)."""

    base_s: float = 0.2
    cap_s: float = 30.0
    log_interval_s: float = 60.0

    def backoff(self) -> Backoff:
        return Backoff(self.base_s, self.cap_s)

    def outage_log(self, what: str) -> OutageLog:
        return OutageLog(log, what, self.log_interval_s)


class ObservationWriter:
    def __init__(
        self,
        sink: ObservationSink,
        capacity: int,
        metrics: SidecarMetrics,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.sink = sink
        self.metrics = metrics
        self._queue: asyncio.Queue[Observation] = asyncio.Queue(maxsize=capacity)
        self._backoff = retry.backoff()
        self._outage = retry.outage_log("observation write")
        metrics.queued.set_function(self._queue.qsize)

    def submit(self, observation: Observation) -> None:
        try:
            self._queue.put_nowait(observation)
        except asyncio.QueueFull:
            self.metrics.observations.labels("dropped_queue_full").inc()

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < WRITE_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._deliver(batch)
            for _ in batch:
                self._queue.task_done()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued is written; False if ``timeout_s`` ran out first."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _deliver(self, batch: list[Observation]) -> None:
        while True:
            try:
                await self.sink.write(batch)
            except SinkUnavailable as exc:
                self.metrics.sink_errors.labels("observations").inc()
                self._outage.failed(exc)
                await asyncio.sleep(self._backoff.next_pause())
                continue
            except SinkRejected as exc:
                self.metrics.observations.labels("rejected").inc(len(batch))
                log.error("store rejected %d observations: %s", len(batch), exc)
            else:
                self.metrics.observations.labels("written").inc(len(batch))
            self._backoff.reset()
            self._outage.succeeded()
            return


class PodStatePublisher:
    """Publishes the newest pod state whenever one is offered; stale ones are skipped."""

    def __init__(
        self, sink: ObservationSink, metrics: SidecarMetrics, retry: RetryPolicy = RetryPolicy()
    ) -> None:
        self.sink = sink
        self.metrics = metrics
        self._latest: PodState | None = None
        self._offered = asyncio.Event()
        self._backoff = retry.backoff()
        self._outage = retry.outage_log("pod state publish")

    def offer(self, state: PodState) -> None:
        self._latest = state
        self._offered.set()

    async def run(self) -> None:
        while True:
            await self._offered.wait()
            self._offered.clear()
            if self._latest is None:
                continue
            try:
                await self.sink.publish(self._latest)
            except (SinkUnavailable, SinkRejected) as exc:
                self.metrics.sink_errors.labels("pod_state").inc()
                self._outage.failed(exc)
                await asyncio.sleep(self._backoff.next_pause())  # newer scrapes wait
            else:
                self._backoff.reset()
                self._outage.succeeded()
