"""In-process servers for sidecar tests: the sidecar and engine apps behind real uvicorn
servers in the test's own event loop, and a sink that keeps what the sidecar delivers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from latency_oracle.features.pod_state import PodState
from latency_oracle.features.schema import Observation
from latency_oracle.sim.processes import free_port


@dataclass
class MemorySink:
    """Keeps what the sidecar delivers, for the test to read."""

    observations: list[Observation] = field(default_factory=list)
    states: list[PodState] = field(default_factory=list)

    async def write(self, observations: Sequence[Observation]) -> None:
        self.observations.extend(observations)

    async def publish(self, state: PodState) -> None:
        self.states.append(state)

    async def aclose(self) -> None:
        return None


@asynccontextmanager
async def serving(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Serve ``app`` in the running loop (on a free port by default); yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "server failed to start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
