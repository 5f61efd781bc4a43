"""Background delivery of observations and pod state, off every request's path.

A finished request only puts its observation on a bounded queue; one task writes
batches to the sink and retries a failed batch with the same ids until the store takes
it, so an outage delays samples without losing or doubling them. When the queue is full
(a long outage) new samples are dropped and counted: slowing the engine's clients down to
save training data would be the wrong trade.

Pod state is different: only the newest scrape matters, so a failed publish is simply
superseded by the next one.
"""

from __future__ import annotations

import asyncio
import logging

from latency_oracle.features.pod_state import PodState
from latency_oracle.features.schema import Observation
from latency_oracle.sidecar.metrics import SidecarMetrics
from latency_oracle.sidecar.sink import ObservationSink, SinkRejected, SinkUnavailable

log = logging.getLogger(__name__)

WRITE_BATCH = 500
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


class ObservationWriter:
    def __init__(self, sink: ObservationSink, capacity: int, metrics: SidecarMetrics) -> None:
        self.sink = sink
        self.metrics = metrics
        self._queue: asyncio.Queue[Observation] = asyncio.Queue(maxsize=capacity)
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
        pause = RETRY_FIRST_S
        while True:
            try:
                await self.sink.write(batch)
            except SinkUnavailable as exc:
                self.metrics.sink_errors.labels("observations").inc()
                log.warning("observation write failed, retrying in %.1fs: %s", pause, exc)
                await asyncio.sleep(pause)
                pause = min(2 * pause, RETRY_MAX_S)
                continue
            except SinkRejected as exc:
                self.metrics.observations.labels("rejected").inc(len(batch))
                log.error("store rejected %d observations: %s", len(batch), exc)
                return
            self.metrics.observations.labels("written").inc(len(batch))
            return


class PodStatePublisher:
    """Publishes the newest pod state whenever one is offered; stale ones are skipped."""

    def __init__(self, sink: ObservationSink, metrics: SidecarMetrics) -> None:
        self.sink = sink
        self.metrics = metrics
        self._latest: PodState | None = None
        self._offered = asyncio.Event()

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
                log.warning("pod state publish failed: %s", exc)
