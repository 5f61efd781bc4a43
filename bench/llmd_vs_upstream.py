"""Latency Oracle's llm-d adapter against llm-d's own latency predictor, over HTTP, in one run.

Both servers get the same ``POST /predict/bulk/strict`` bodies (64 and 1,000 candidates, in
the shape the EPP's Go client sends) from one sequential client over a keep-alive
connection per server, the two taking turns call by call so machine noise hits both alike.
Printed per size: median and p90 wall time per call for each server, the ratio, and each
server's median ``processing_time_ms`` (Latency Oracle's counts from the request's arrival
to just before the answer is written; llm-d's from its handler's start, after parsing).

With ``--train N`` it first sends both the same N training entries through llm-d's
``/add_training_data_bulk`` (the upstream's goes to its training server,
``--upstream-training``) and waits until both answer from trained models, as llm-d deploys
its predictor: predictions come from what the training server trained.

    python bench/llmd_vs_upstream.py --upstream http://127.0.0.1:8001 \
        --upstream-training http://127.0.0.1:8000 --oracle http://127.0.0.1:8080 --train 4000

Upstream measured: kubernetes-sigs/gateway-api-inference-extension, folder
``latencypredictor/`` (``prediction_server.py``, ``training_server.py``) at commit
1748e829d1161147aaf35e76699ec86fd88406d2, the parent of a70292c1 which removed it;
llm-d/llm-d-inference-scheduler (520af478) carries only the Go client. Run from a separate
virtualenv (fastapi 0.165, pydantic 2.14, xgboost 3.2, pandas 3.1, the same library versions
Latency Oracle has where they overlap): ``uvicorn training_server:app`` and ``uvicorn
prediction_server:app --workers 1 --no-access-log``, LATENCY_MODEL_TYPE=xgboost, its defaults
otherwise (quantile objective, alpha 0.9, queue-gated ensemble on, token-in-flight features
on, 10 s model sync), PYTHONWARNINGS=ignore (FastAPI 0.165 warns about ORJSONResponse on
every call) and OMP_NUM_THREADS=1 (Latency Oracle's XGBoost predicts on one thread too).
Both trained on the same 4,000 entries (``--train 4000``); the upstream's ensemble was
active. One uvicorn worker each: a sequential client gains nothing from more.

Measured 2026-12-04, 100 calls per server and size, on 2 cores shared with another heavy
job (load average 2.8 to 2.9), three consecutive runs:

- 64 candidates: Latency Oracle p50 1.75 / 1.90 / 1.78 ms, llm-d 15.10 / 16.13 / 14.73 ms:
  0.116x / 0.118x / 0.121x. Oracle processing_time_ms p50 0.77 / 0.78 / 0.78.
- 1,000 candidates: Latency Oracle p50 5.67 / 5.30 / 5.85 ms, llm-d 25.26 / 24.00 / 27.97 ms:
  0.225x / 0.221x / 0.209x (target <= 0.3x). Oracle processing_time_ms p50 4.07 / 3.93 /
  4.15 (target <= 5); llm-d's own processing_time_ms (handler start, after parsing) 19.1 /
  18.0 / 21.0.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import numpy as np

SIZES = (64, 1000)


def candidates(rng: np.random.Generator, n: int) -> list[dict[str, object]]:
    """``n`` llm-d prediction requests: one incoming prompt scored on ``n`` pods' states."""
    prompt = int(rng.integers(64, 8192))
    return [
        {
            "kv_cache_percentage": round(float(rng.uniform(0.0, 0.95)), 4),
            "input_token_length": prompt,
            "num_request_waiting": int(rng.integers(0, 12)),
            "num_request_running": int(rng.integers(0, 64)),
            "num_tokens_generated": 0,
            "prefix_cache_score": round(float(rng.uniform(0.0, 1.0)), 4),
            "prefill_tokens_in_flight": int(rng.integers(0, 20_000)),
            "decode_tokens_in_flight": int(rng.integers(0, 40_000)),
        }
        for _ in range(n)
    ]


def training_entries(rng: np.random.Generator, n: int) -> list[dict[str, object]]:
    """Entries with a plausible latency shape (queueing, prompt length, cache hits, load)."""
    entries = []
    for _ in range(n):
        row = candidates(rng, 1)[0]
        row["input_token_length"] = int(rng.integers(64, 8192))
        uncached = row["input_token_length"] * (1.0 - row["prefix_cache_score"])
        queue = row["num_request_waiting"] * 40.0 + row["prefill_tokens_in_flight"] * 0.01
        ttft = 15.0 + 0.06 * uncached + queue
        tpot = 8.0 + 0.25 * row["num_request_running"] + 12.0 * row["kv_cache_percentage"]
        noise = rng.lognormal(0.0, 0.15, 2)
        row["num_tokens_generated"] = int(rng.integers(1, 512))
        row["actual_ttft_ms"] = round(ttft * noise[0], 3)
        row["actual_tpot_ms"] = round(tpot * noise[1], 3)
        entries.append(row)
    return entries


def feed(client: httpx.Client, entries: list[dict[str, object]], batch: int = 500) -> None:
    for start in range(0, len(entries), batch):
        chunk = {"entries": entries[start : start + batch]}
        response = client.post("/add_training_data_bulk", json=chunk)
        assert response.status_code in (200, 202), response.text


def wait_for(ready: Callable[[], bool], name: str, timeout: float) -> None:
    """Poll ``ready`` until it holds; the servers train in background threads."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"{name} did not train within {timeout:.0f} s"
        time.sleep(1.0)


def oracle_trained(client: httpx.Client) -> bool:
    exists = client.get("/status").json()["models_exist"]
    return bool(exists["ttft_model"] and exists["tpot_model"])


def upstream_settled(
    client: httpx.Client, fed_at: datetime, timeout: float, quiet: float = 12.0
) -> None:
    """Wait until llm-d's server serves models loaded after ``fed_at`` and has loaded nothing
    newer for ``quiet`` seconds (one model sync interval and a margin).

    Its training server bootstraps a model on start-up and trains on a timer, and its
    prediction server syncs every 10 s, ensemble models last: measuring before all of that
    settles would time the bootstrap model, or time it while it trains on the same CPUs.
    """
    seen, since = None, time.monotonic()
    deadline = since + timeout
    while True:
        assert time.monotonic() < deadline, f"llm-d did not settle within {timeout:.0f} s"
        loaded = client.get("/status").json().get("last_model_load")
        if loaded != seen:
            seen, since = loaded, time.monotonic()
        fresh = loaded is not None and datetime.fromisoformat(loaded) > fed_at
        if fresh and time.monotonic() - since >= quiet:
            return
        time.sleep(1.0)


def measure(
    clients: dict[str, httpx.Client], bodies: list[bytes], calls: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall seconds per server (alternating), and each server's own processing_time_ms."""
    walls: dict[str, list[float]] = {name: [] for name in clients}
    processing: dict[str, list[float]] = {name: [] for name in clients}
    headers = {"content-type": "application/json"}
    for i in range(warmup + calls):
        body = bodies[i % len(bodies)]
        order = list(clients.items()) if i % 2 == 0 else list(reversed(clients.items()))
        for name, client in order:
            start = time.perf_counter()
            response = client.post("/predict/bulk/strict", content=body, headers=headers)
            elapsed = time.perf_counter() - start
            assert response.status_code == 200, f"{name}: {response.status_code} {response.text}"
            if i < warmup:
                continue
            walls[name].append(elapsed)
            processing[name].append(float(response.json()["processing_time_ms"]))
    return walls, processing


def p50_p90_ms(samples: list[float]) -> tuple[float, float]:
    p50, p90 = np.percentile(np.array(samples) * 1e3, [50, 90])
    return float(p50), float(p90)


def report(size: int, walls: dict[str, list[float]], processing: dict[str, list[float]]) -> None:
    lo, up = p50_p90_ms(walls["oracle"]), p50_p90_ms(walls["upstream"])
    ratio = lo[0] / up[0]
    print(
        f"{size:>5} candidates, {len(walls['oracle'])} calls each: "
        f"oracle p50 {lo[0]:.2f} / p90 {lo[1]:.2f} ms, "
        f"llm-d p50 {up[0]:.2f} / p90 {up[1]:.2f} ms, "
        f"ratio p50 {ratio:.3f}x (p90 {lo[1] / up[1]:.3f}x), "
        f"processing_time_ms p50 oracle {statistics.median(processing['oracle']):.3f} "
        f"(from receipt), llm-d {statistics.median(processing['upstream']):.3f} "
        "(from its handler's start, after parsing)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="llm-d prediction server URL")
    parser.add_argument("--oracle", required=True, help="Latency Oracle URL (llm-d prefix)")
    parser.add_argument("--upstream-training", help="llm-d training server URL (for --train)")
    parser.add_argument("--train", type=int, default=0, help="training entries to send first")
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--train-timeout", type=float, default=180.0)
    args = parser.parse_args()
    rng = np.random.default_rng(23)
    timeout = httpx.Timeout(60.0)
    with (
        httpx.Client(base_url=args.upstream, timeout=timeout) as upstream,
        httpx.Client(base_url=args.oracle, timeout=timeout) as oracle,
    ):
        if args.train:
            assert args.upstream_training, "--train needs --upstream-training"
            entries = training_entries(rng, args.train)
            with httpx.Client(base_url=args.upstream_training, timeout=timeout) as trainer:
                feed(trainer, entries)
            fed_at = datetime.now(UTC)
            feed(oracle, entries)
            wait_for(lambda: oracle_trained(oracle), "oracle", args.train_timeout)
            upstream_settled(upstream, fed_at, args.train_timeout)
        up, lo = upstream.get("/status").json(), oracle.get("/status").json()
        print(
            f"llm-d: last_model_load {up.get('last_model_load')}, "
            f"ensemble_active {up.get('ensemble_active')}; "
            f"oracle: model_source {lo.get('model_source')}"
        )
        clients = {"oracle": oracle, "upstream": upstream}
        for size in SIZES:
            bodies = [
                httpx.Request("POST", "/", json={"requests": candidates(rng, size)}).read()
                for _ in range(8)
            ]
            walls, processing = measure(clients, bodies, args.calls, args.warmup)
            report(size, walls, processing)


if __name__ == "__main__":
    main()
