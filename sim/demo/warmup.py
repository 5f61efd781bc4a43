"""The demo's warm-up: every pod serves trace-shaped requests until every model serves.

The router places by load heuristic while any candidate's accelerator model is cold (fewer
than ``min_samples`` own observations). Replaying the trace alone, the first minute of the
demo brings ~60 requests for three accelerators, so a newcomer watched only heuristic
decisions. Here each pod is sent a few requests at a time straight through its sidecar
(which measures and reports them, as for any request) until the predictor serves learned
models for every accelerator, which takes seconds; the table says so while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable

import httpx

from latency_oracle.sim.demo.live_table import DemoStats
from latency_oracle.sim.traces import TraceRow

WARM_UP_IN_FLIGHT = 8  # requests in flight per pod: queues form, so load is learned too
# Short answers (TPOT needs two tokens): decode dominates a request on slow accelerators
# (an L4 takes ~50 ms a token), so the slowest pod's models serve in seconds, not a minute.
WARM_UP_MAX_OUTPUT_TOKENS = 8
POLL_S = 0.5
WARM_UP_LIMIT_S = 60.0  # at most: a model that never serves must not hold the demo back


async def stream_completion(
    client: httpx.AsyncClient, url: str, prompt: list[int], max_tokens: int | None
) -> float | None:
    """Stream one completion from ``url``; the TTFT the client measured (ms), if any token.

    Without ``max_tokens`` the engine's default applies (16 for completions, as vLLM's).
    """
    body: dict[str, object] = {"prompt": prompt, "stream": True}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    started = time.perf_counter()
    first: float | None = None
    async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
        async for _ in response.aiter_bytes():
            if first is None:
                first = time.perf_counter()
    return None if first is None else (first - started) * 1e3


def prompt_ids(index: int, tokens: int) -> list[int]:
    """A prompt of ``tokens`` token ids, its first one the trace row's ``index``: each
    request has its own prompt, so its own answer (the engine ends it by the prompt)."""
    return [2 + index, *([1] * (tokens - 1))]


async def poll_models(client: httpx.AsyncClient, predictor: str, stats: DemoStats) -> None:
    """What the predictor has learned: samples per accelerator, and which ones serve."""
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        models = (await client.get(f"{predictor}/v1/models")).json()["models"]
        ttft = [m for m in models if m["target"] == "ttft"]
        stats.learned = sum(m["samples"] for m in ttft if m["accelerator"] == "global")
        stats.samples = {m["accelerator"]: m["samples"] for m in ttft}
        serving = {(m["accelerator"], m["target"]) for m in models if m["serving"]}
        stats.serving = {a for a in stats.accelerators if {(a, "ttft"), (a, "tpot")} <= serving}


async def warm_up(
    client: httpx.AsyncClient,
    predictor: str,
    rows: list[TraceRow],
    stats: DemoStats,
    deadline: float,
    draw: Callable[[], None],
) -> None:
    """Feed every pod until its accelerator's models serve; return when all do, or at
    ``deadline`` (monotonic)."""
    shapes = itertools.cycle(rows)
    ids = itertools.count(len(rows))  # prompts of their own, apart from the replay's

    async def feed(url: str, accelerator: str) -> None:
        while accelerator not in stats.serving:  # a warm pod leaves the machine to the rest
            prompt = prompt_ids(next(ids), next(shapes).input_tokens)
            with contextlib.suppress(httpx.HTTPError):
                await stream_completion(client, url, prompt, WARM_UP_MAX_OUTPUT_TOKENS)
            stats.warm_up_sent += 1

    stats.warming = True
    feeders = [
        asyncio.create_task(feed(pod.url, pod.accelerator))
        for pod in stats.pods.values()
        for _ in range(WARM_UP_IN_FLIGHT)
    ]
    try:
        while time.monotonic() < deadline:
            await poll_models(client, predictor, stats)
            draw()
            if stats.serving == stats.accelerators:
                break
            await asyncio.sleep(min(POLL_S, max(deadline - time.monotonic(), 0.0)))
    finally:
        for feeder in feeders:
            feeder.cancel()
        await asyncio.gather(*feeders, return_exceptions=True)
        stats.warming = False
