"""Route decision latency over 64 candidate pods: in-process and over HTTP.

Targets: in-process p99 < 1 ms; over HTTP, p99 within 1.5x of a trivial FastAPI endpoint
served by the same uvicorn process and called by the same client, alternately, in the
same run (so machine noise hits both alike). Run: ``python bench/route_latency.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import paired_http, percentiles_ms, ratio_line, serving, time_calls

from latency_oracle.features.pod_state import PodState
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.routing.route_request import RouteRequest
from latency_oracle.routing.router import Router
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import generate_stream

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
    # Pods stay live for the whole run, however many calls it times.
    settings = Settings(
        state_dir=state_dir, min_samples=100, snapshot_interval_s=3600, pod_ttl_s=86_400
    )
    service = OracleService(settings)
    observations = generate_stream(3_000, seed=1).observations
    for start in range(0, len(observations), settings.learn_batch_size):
        service.models.learn(observations[start : start + settings.learn_batch_size])
    return service


def in_process(service: OracleService, body: dict[str, object], n: int) -> None:
    router = Router(service.models, service.settings)
    request = RouteRequest.model_validate(body)
    assert request.pods is not None
    pods = request.pods
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


def over_http(service: OracleService, body: dict[str, object], n: int) -> None:
    """Candidates inline (the issue's target), then the same pods as the store's live pods
    (a small body: the route reads them from the store, as a router without pod state does)."""
    without_pods = {key: value for key, value in body.items() if key != "pods"}
    for pod in body["pods"]:  # type: ignore[attr-defined]
        state = {key: value for key, value in pod.items() if key in PodState.model_fields}
        service.store.put_pod_state(PodState(**state))
    with serving(create_app(service.settings, service)) as client:
        route, trivial = paired_http(client, "/v1/route", body, n)
        print(ratio_line(f"HTTP /v1/route ({N_PODS} pods) vs trivial endpoint", route, trivial))
        route, trivial = paired_http(client, "/v1/route", without_pods, n)
        print(ratio_line(f"HTTP /v1/route ({N_PODS} live pods) vs trivial", route, trivial))


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
