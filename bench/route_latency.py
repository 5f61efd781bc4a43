"""Route decision latency over 64 candidate pods: in-process and over HTTP.

Targets: in-process p99 < 1 ms; over HTTP, p99 within 1.5x of a trivial FastAPI endpoint
served by the same uvicorn process and called by the same client, alternately, in the
same run (so machine noise hits both alike). Run: ``python bench/route_latency.py``.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI, Response

from latency_oracle.settings import Settings
from predictor.app import create_app
from predictor.routing.router import Router
from predictor.routing.schema import RouteRequest
from predictor.service import OracleService
from sim.synthetic_stream import generate_stream

N_PODS = 64


def route_body(n_pods: int, seed: int = 0) -> dict[str, object]:
    """A route request over ``n_pods`` H100 pods in varied load; their scrape is "now"."""
    rng = np.random.default_rng(seed)
    pods = [
        {
            "pod": f"vllm-{i}",
            "accelerator": "H100",
            "running_requests": int(rng.integers(0, 40)),
            "waiting_requests": int(rng.integers(0, 8)),
            "kv_cache_usage": float(rng.uniform(0, 0.9)),
            "prefill_tokens_in_flight": int(rng.integers(0, 8_000)),
            "decode_tokens_in_flight": int(rng.integers(0, 20_000)),
            "prefix_cache_score": float(rng.uniform(0, 0.5)),
            # A scrape far ahead retires every placement: each call sees the same fleet.
            "scraped_at": time.time() + 1e6,
        }
        for i in range(n_pods)
    ]
    return {
        "input_tokens": 1_200,
        "max_tokens": 256,
        "slo": {"ttft_ms": 2_000.0, "tpot_ms": 60.0},
        "pods": pods,
    }


def warm_service(state_dir: Path) -> OracleService:
    settings = Settings(state_dir=state_dir, min_samples=100, snapshot_interval_s=3600)
    service = OracleService(settings)
    observations = generate_stream(3_000, seed=1).observations
    for start in range(0, len(observations), settings.learn_batch_size):
        service.models.learn(observations[start : start + settings.learn_batch_size])
    return service


def percentiles_ms(samples: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.array(samples) * 1e3, [50, 99])
    return float(p50), float(p99)


def time_calls(call: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def in_process(service: OracleService, body: dict[str, object], n: int) -> None:
    router = Router(service.models, service.settings)
    request = RouteRequest.model_validate(body)
    assert request.pods is not None
    pods = request.pods
    time_calls(lambda: router.route(request, pods), 200)
    decide = percentiles_ms(time_calls(lambda: router.route(request, pods), n))
    validate_and_decide = percentiles_ms(
        time_calls(lambda: router.route(RouteRequest.model_validate(body), pods), n)
    )
    print(
        f"in-process decision, {N_PODS} pods: p50 {decide[0]:.3f} ms  p99 {decide[1]:.3f} ms"
        f"  (target p99 < 1 ms: {'met' if decide[1] < 1 else 'MISSED'})"
    )
    print(
        f"in-process validate+decision:   p50 {validate_and_decide[0]:.3f} ms"
        f"  p99 {validate_and_decide[1]:.3f} ms"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def over_http(service: OracleService, body: dict[str, object], n: int) -> None:
    app: FastAPI = create_app(service.settings, service)

    @app.post("/bench/trivial")
    async def trivial() -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    route_times: list[float] = []
    trivial_times: list[float] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for i in range(n + 200):
                for path, sink in (("/v1/route", route_times), ("/bench/trivial", trivial_times)):
                    start = time.perf_counter()
                    response = client.post(path, json=body)
                    elapsed = time.perf_counter() - start
                    assert response.status_code == 200, response.text
                    if i >= 200:
                        sink.append(elapsed)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    route_p50, route_p99 = percentiles_ms(route_times)
    base_p50, base_p99 = percentiles_ms(trivial_times)
    ratio = route_p99 / base_p99
    print(f"HTTP /v1/route, {N_PODS} pods:  p50 {route_p50:.3f} ms  p99 {route_p99:.3f} ms")
    print(f"HTTP trivial endpoint:       p50 {base_p50:.3f} ms  p99 {base_p99:.3f} ms")
    print(
        f"ratio route/trivial: p50 {route_p50 / base_p50:.2f}x  p99 {ratio:.2f}x"
        f"  (target p99 <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2_000, help="Timed calls per measurement.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state_dir:
        service = warm_service(Path(state_dir))
        body = route_body(N_PODS)
        in_process(service, body, args.calls)
        over_http(service, body, args.calls)


if __name__ == "__main__":
    main()
