"""Latency the sidecar proxy adds, next to direct calls to the same engine, in one run.

Starts the simulated engine and a sidecar (observations to Redis under a private prefix),
then calls the engine directly and through the proxy, taking turns: a pass-through
request (``GET /v1/models``) and a measured streamed completion (one output token, so
the engine's simulated GPU time is small and the hops dominate). Target: < 1 ms p99.

    python bench/proxy_overhead.py [--calls 1000]
"""

from __future__ import annotations

import argparse
import uuid

import httpx
import redis
from harness import alternating, percentiles_ms

from latency_oracle.features.redis.key_layout import RedisKeys
from latency_oracle.sim.processes import cli_argv, free_port, running_process

TARGET_P99_MS = 1.0
COMPLETION = {"prompt": "a short prompt of a few tokens", "max_tokens": 1, "stream": True}


def _stream(client: httpx.Client, path: str) -> None:
    with client.stream("POST", path, json=COMPLETION) as response:
        assert response.status_code == 200
        for _ in response.iter_raw():
            pass


def _report(name: str, direct: list[float], proxied: list[float]) -> None:
    d50, d99 = percentiles_ms(direct)
    p50, p99 = percentiles_ms(proxied)
    added = p99 - d99
    verdict = "met" if added < TARGET_P99_MS else "MISSED"
    print(
        f"{name}: direct p50 {d50:.3f} p99 {d99:.3f} ms | proxied p50 {p50:.3f} p99 {p99:.3f} ms"
        f" | added p50 {p50 - d50:+.3f} p99 {added:+.3f} ms"
        f" (target < {TARGET_P99_MS} ms: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    engine_port, sidecar_port = free_port(), free_port()
    engine, sidecar = f"http://127.0.0.1:{engine_port}", f"http://127.0.0.1:{sidecar_port}"
    prefix = f"bench-proxy-{uuid.uuid4().hex[:8]}"
    quiet = {"LATENCY_ORACLE_LOG_LEVEL": "warning"}
    sidecar_env = {
        **quiet,
        "LATENCY_ORACLE_REDIS_URL": args.redis_url,
        "LATENCY_ORACLE_REDIS_KEY_PREFIX": prefix,
        "LATENCY_ORACLE_ACCELERATOR": "H100",
    }
    try:
        with (
            running_process(
                cli_argv("sim-engine", "--port", str(engine_port)), quiet, f"{engine}/health"
            ),
            running_process(
                cli_argv("sidecar", "--engine-url", engine, "--port", str(sidecar_port)),
                sidecar_env,
                f"{sidecar}/sidecar/readyz",
            ),
            httpx.Client(base_url=engine) as direct,
            httpx.Client(base_url=sidecar) as proxied,
        ):
            models = alternating(
                {
                    "direct": lambda: direct.get("/v1/models"),
                    "proxied": lambda: proxied.get("/v1/models"),
                },
                args.calls,
            )
            streams = alternating(
                {
                    "direct": lambda: _stream(direct, "/v1/completions"),
                    "proxied": lambda: _stream(proxied, "/v1/completions"),
                },
                args.calls,
                warmup=50,
            )
    finally:
        client = redis.Redis.from_url(args.redis_url)
        keys = [k for pattern in RedisKeys(prefix).patterns for k in client.scan_iter(pattern)]
        if keys:
            client.delete(*keys)
    print(f"proxy overhead, {args.calls} calls each, alternating (engine: simulated H100)")
    _report("pass-through GET /v1/models", models["direct"], models["proxied"])
    _report("streamed completion (measured)", streams["direct"], streams["proxied"])


if __name__ == "__main__":
    main()
