"""Timing helpers shared by the benchmarks: percentiles, an in-thread server, paired HTTP.

Machines here are noisy, so HTTP figures are always a ratio against a baseline endpoint
served by the same process and called by the same client, alternately, in the same run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI, Response

from latency_oracle.sim.processes import free_port


def percentiles_ms(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of durations in seconds, as milliseconds."""
    p50, p99 = np.percentile(np.array(samples) * 1e3, [50, 99])
    return float(p50), float(p99)


def time_calls(call: Callable[[], object], repeat: int, warmup: int = 50) -> list[float]:
    """Durations of ``repeat`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    durations = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return durations


@contextmanager
def serving(app: FastAPI) -> Iterator[httpx.Client]:
    """Run ``app`` (plus a trivial ``POST /bench/trivial``) in a uvicorn thread."""

    @app.post("/bench/trivial")
    async def trivial() -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def alternating(
    calls: dict[str, Callable[[], object]], repeat: int, warmup: int = 200
) -> dict[str, list[float]]:
    """Durations of each named call, the calls taking turns so noise hits all alike."""
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(repeat + warmup):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            elapsed = time.perf_counter() - start
            if i >= warmup:
                timings[name].append(elapsed)
    return timings


def paired_http(
    client: httpx.Client, path: str, body: object, calls: int, warmup: int = 200
) -> tuple[tuple[float, float], tuple[float, float]]:
    """((p50, p99) of ``path``, (p50, p99) of the trivial endpoint), called alternately."""

    def post(target: str) -> Callable[[], object]:
        def call() -> object:
            response = client.post(target, json=body)
            assert response.status_code == 200, response.text
            return response

        return call

    timings = alternating({path: post(path), "trivial": post("/bench/trivial")}, calls, warmup)
    return percentiles_ms(timings[path]), percentiles_ms(timings["trivial"])


def ratio_line(name: str, measured: tuple[float, float], baseline: tuple[float, float]) -> str:
    ratio = measured[1] / baseline[1]
    verdict = "met" if ratio <= 1.5 else "MISSED"
    return (
        f"{name}: p50 {measured[0]:.3f} vs {baseline[0]:.3f} ms ({measured[0] / baseline[0]:.2f}x)"
        f", p99 {measured[1]:.3f} vs {baseline[1]:.3f} ms ({ratio:.2f}x; target <= 1.5x: {verdict})"
    )
