"""Drives a simulated engine in real time: step, sleep the step's duration, hand out tokens.

Simulated time maps to the event loop's clock as ``sim = (wall - start) * speed``, so a
request's arrival is the simulated instant it came in, and a step's tokens are released
when the wall clock reaches the step's simulated end. Sleeping to an absolute target, not
for a duration, keeps Python overhead from accumulating into drift. ``speed`` > 1 runs
faster than a real GPU (tests).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from latency_oracle.sim.engine.records import FinishedRequest, SimRequest, StepResult
from latency_oracle.sim.engine.scheduler import Engine


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One event of one request: a token, then finally its summary."""

    finished: FinishedRequest | None = None


TOKEN = TokenEvent()


class EngineDriver:
    """Owns the engine inside one event loop; all calls come from that loop."""

    def __init__(self, engine: Engine, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.engine = engine
        self.speed = speed
        self._queues: dict[str, asyncio.Queue[TokenEvent]] = {}
        self._awaiting: dict[str, int] = {}  # prompt tokens of requests before their first token
        self._ids = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._origin = 0.0
        self.finished_listeners: list[Callable[[FinishedRequest], None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._origin = loop.time() - self.engine.now / self.speed
        self._task = loop.create_task(self._run(), name="sim-engine-driver")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def awaiting_first_token(self) -> int:
        """Prompt tokens of the requests whose first token is not out yet, as their clients
        see it (the engine's own state runs a step ahead of what it has released)."""
        return sum(self._awaiting.values())

    def sim_now(self) -> float:
        return (asyncio.get_running_loop().time() - self._origin) * self.speed

    def submit(
        self,
        prompt_tokens: int,
        answer_tokens: int,
        max_tokens: int | None,
        hashes: tuple[Hashable, ...],
    ) -> tuple[str, asyncio.Queue[TokenEvent]]:
        """Queue a request arriving now, whose answer ends after ``answer_tokens`` (EOS) or
        at its ``max_tokens``; raises ValueError when it can never fit."""
        request_id = f"sim-{next(self._ids)}"
        request = SimRequest(
            request_id, self.sim_now(), prompt_tokens, answer_tokens, hashes, max_tokens
        )
        self.engine.submit(request)
        queue: asyncio.Queue[TokenEvent] = asyncio.Queue()
        self._queues[request_id] = queue
        self._awaiting[request_id] = prompt_tokens
        self._wake.set()
        return request_id, queue

    def abort(self, request_id: str) -> None:
        self._awaiting.pop(request_id, None)
        if self._queues.pop(request_id, None) is not None:
            self.engine.abort(request_id)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.engine.has_work:
                self._wake.clear()
                await self._wake.wait()
                continue
            result = self.engine.step()
            if result is None:
                continue
            delay = self._origin + result.end / self.speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._dispatch(result)

    def _dispatch(self, result: StepResult) -> None:
        queues = self._queues
        for request_id in result.first_tokens:
            self._awaiting.pop(request_id, None)
        for request_id in result.emitted:
            queue = queues.get(request_id)
            if queue is not None:
                queue.put_nowait(TOKEN)
        for finished in result.finished:
            queue = queues.pop(finished.request_id, None)
            if queue is not None:
                queue.put_nowait(TokenEvent(finished))
            for listener in self.finished_listeners:
                listener(finished)
