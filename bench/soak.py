"""Soak: a million observations through the Redis path, resident memory watched.

Run: ``python bench/soak.py`` (1,000,000 observations over 20 accelerator types and 500
pods; minutes) or ``--observations 20000`` for a short one. A predictor (Redis mode) takes
the observations over HTTP and a trainer subprocess learns them from the streams; the
resident set (VmRSS from /proc) of both is sampled as the run goes. Every window and
buffer is bounded, so after warm-up (the first fifth) memory must stay flat: the figures
are RSS at the end of warm-up, at the end, and the growth between.
``--json PATH`` writes them; the test suite runs a reduced size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from latency_oracle.features.redis.key_layout import RedisKeys
from latency_oracle.features.redis.observation_store import RedisObservationStore, connect
from latency_oracle.sim.processes import free_port

ACCELERATORS = 20
# Windows that fill within a short run's warm-up (the test suite's reduced soak).
SMALL_WINDOWS = {
    "eval_window": "200",
    "calibration_window": "200",
    "xgb_window": "128",
    "xgb_boost_every": "64",
    "challenger_window": "100",
    "challenger_max_samples": "500",
    # Per-pod windows too: 500 pods see ~40 outcomes each in a 20,000-observation run, so
    # the default 32-outcome windows would still be filling at its end.
    "pod_calibration_window": "8",
    "pod_calibration_min_samples": "4",
    "calibration_history": "4",
}
PODS = 500
BATCH = 1_000
WARMUP_FRACTION = 0.2


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def observation_batch(
    rng: np.random.Generator, start: int, run: str, accelerators: int
) -> list[dict[str, object]]:
    """BATCH plausible observations spread over the accelerator types and pods."""
    n = BATCH
    accelerator = rng.integers(0, accelerators, n)
    pod = rng.integers(0, PODS, n)
    input_tokens = np.clip(rng.lognormal(6.5, 1.0, n), 1, 32_000).astype(int)
    output_tokens = rng.integers(2, 1_000, n)
    running = rng.integers(0, 64, n)
    speed = 1.0 + accelerator / accelerators
    ttft = (20 + 0.05 * input_tokens + 2 * running) * speed * rng.lognormal(0, 0.2, n)
    tpot = (8 + 0.3 * running) * speed * rng.lognormal(0, 0.15, n)
    return [
        {
            "observation_id": f"{run}-{start + i}",
            "accelerator": f"soak-gpu-{accelerator[i]}",
            "pod": f"pod-{pod[i]}",
            "model": "soak-model",
            "input_tokens": int(input_tokens[i]),
            "output_tokens": int(output_tokens[i]),
            "running_requests": int(running[i]),
            "kv_cache_usage": float(running[i] / 64),
            "ttft_ms": float(ttft[i]),
            "tpot_ms": float(tpot[i]),
        }
        for i in range(n)
    ]


@contextmanager
def process(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(argv, env={**os.environ, **env})
    try:
        yield child
    finally:
        child.terminate()
        child.wait(timeout=60)


def _backlog(store: RedisObservationStore) -> int:
    """Entries the trainers have not learned and acknowledged yet, in every stream (the
    global one too: its trainer must be idle when memory is sampled)."""
    return sum(store.backlogs().values())


def _wait(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(what)


def soak(
    observations: int, redis_url: str, accelerators: int, settings: dict[str, str]
) -> dict[str, object]:
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        "LATENCY_ORACLE_REDIS_URL": redis_url,
        "LATENCY_ORACLE_REDIS_KEY_PREFIX": prefix,
        "LATENCY_ORACLE_PORT": str(port),
        "LATENCY_ORACLE_MLFLOW_ENABLED": "false",
        "LATENCY_ORACLE_LOG_LEVEL": "warning",
        "LATENCY_ORACLE_STREAM_MAXLEN": "200000",  # above the backlog the run allows
        "LATENCY_ORACLE_TRAINER_METRICS_PORT": str(free_port()),
    } | {f"LATENCY_ORACLE_{name.upper()}": value for name, value in settings.items()}
    cli = [sys.executable, "-m", "latency_oracle.cli"]
    rng = np.random.default_rng(1)
    samples: list[tuple[int, float, float]] = []
    warmup = int(observations * WARMUP_FRACTION)
    started = time.perf_counter()
    client_redis = connect(redis_url, 5.0)
    store = RedisObservationStore(
        client_redis, RedisKeys(prefix), stream_maxlen=1, id_ttl_s=1, pod_ttl_s=1
    )
    try:
        with (
            process([*cli, "serve"], env) as predictor,
            process([*cli, "train"], env | {"LATENCY_ORACLE_TRAINER_NAME": "soak"}) as trainer,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
        ):
            _wait(lambda: client.get("/healthz").status_code == 200, 60, "predictor start")
            sent = 0
            while sent < observations:
                reply = client.post(
                    "/v1/observations", json=observation_batch(rng, sent, prefix, accelerators)
                )
                if reply.status_code == 503:  # backpressure: let the trainer catch up
                    _wait(lambda: _backlog(store) < BATCH * 50, 600, "backlog")
                    continue
                reply.raise_for_status()
                sent += BATCH
                if sent % (10 * BATCH) == 0 or sent == warmup:  # sampled with the trainer idle
                    _wait(lambda: _backlog(store) < BATCH, 600, "trainer catching up")
                    samples.append((sent, rss_mb(predictor.pid), rss_mb(trainer.pid)))
                    print(f"{sent:,} sent, RSS (MiB) predictor/trainer {samples[-1][1:]}")
            _wait(lambda: _backlog(store) == 0, 1_200, "trainer drained")
            samples.append((sent, rss_mb(predictor.pid), rss_mb(trainer.pid)))
    finally:
        for pattern in RedisKeys(prefix).patterns:
            keys = list(client_redis.scan_iter(pattern, count=1_000))
            for start in range(0, len(keys), 1_000):
                client_redis.delete(*keys[start : start + 1_000])
    at_warmup = next(s for s in samples if s[0] >= warmup)
    end = samples[-1]
    return {
        "observations": observations,
        "accelerators": accelerators,
        "pods": PODS,
        "seconds": time.perf_counter() - started,
        "predictor_rss_mb": {"after_warmup": at_warmup[1], "end": end[1]},
        "trainer_rss_mb": {"after_warmup": at_warmup[2], "end": end[2]},
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--accelerators", type=int, default=ACCELERATORS)
    parser.add_argument(
        "--small-windows", action="store_true", help="model windows that fill in a short run"
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    figures = soak(
        args.observations - args.observations % BATCH,
        args.redis_url,
        args.accelerators,
        SMALL_WINDOWS if args.small_windows else {},
    )
    for role in ("predictor", "trainer"):
        rss = figures[f"{role}_rss_mb"]
        print(
            f"{role}: RSS {rss['after_warmup']:.0f} MiB after warm-up, {rss['end']:.0f} MiB "
            f"after {figures['observations']:,} observations "
            f"({rss['end'] - rss['after_warmup']:+.0f} MiB)"
        )
    print(f"{figures['observations']:,} observations in {figures['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
