"""llm-d adapter speed: ``POST /predict/bulk/strict`` with 1,000 candidates, as the EPP calls it.

Prints, for warm models:

- receipt to response: the app called in-process as an ASGI server would call it, from
  the call's arrival (body included) to the last byte of the answer handed back;
- the answer's own ``processing_time_ms`` (arrival to just before the answer is written);
- HTTP wall time over uvicorn with one sequential client, next to a trivial endpoint;
- each against the in-process bulk prediction of the same rows (the model alone), measured
  in the same run, as a ratio.

    python bench/llmd_adapter_speed.py [--rows 1000] [--repeat 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from harness import percentiles_ms, serving, time_calls

from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.llmd.bodies import request_columns
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import generate_stream

PATH = "/predict/bulk/strict"


def candidate_rows(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """What the EPP sends for n candidate pods: their metrics, one prompt, generated 1."""
    rng = np.random.default_rng(seed)
    return [
        {
            "kv_cache_percentage": float(rng.uniform(0, 0.9)),
            "input_token_length": 812,
            "num_request_waiting": int(rng.integers(0, 8)),
            "num_request_running": int(rng.integers(0, 40)),
            "num_tokens_generated": 1,
            "prefix_cache_score": float(rng.uniform(0, 1)),
            "prefill_tokens_in_flight": int(rng.integers(0, 20_000)),
            "decode_tokens_in_flight": 0,
        }
        for _ in range(n)
    ]


async def asgi_call(app: Any, body: bytes) -> tuple[float, float, bytes]:
    """One call through the ASGI interface: seconds from arrival to the last byte sent,
    in wall time and in this thread's CPU time."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 1),
    }
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    start, cpu = time.perf_counter(), time.thread_time()
    await app(scope, receive, send)
    return time.perf_counter() - start, time.thread_time() - cpu, b"".join(chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    settings = Settings(
        state_dir=Path(tempfile.mkdtemp()), mlflow_enabled=False, llmd_accelerator="H100"
    )
    service = OracleService(settings)
    service.models.learn(generate_stream(2_000, seed=1).observations)
    app = create_app(settings, service)
    rows = candidate_rows(args.rows)
    body = json.dumps({"requests": rows}).encode()
    columns = request_columns(rows, "H100")
    gc.collect()  # as the app's lifespan does: long-lived objects out of full collections
    gc.freeze()
    loop = asyncio.new_event_loop()
    # Alternately, so both see the same machine load: the model alone, then a whole call.
    # CPU time beside wall time: on a machine shared with other work, a call of several
    # milliseconds is preempted more often than one of a fraction of one.
    wall: dict[str, list[float]] = {"model": [], "call": []}
    cpu: dict[str, list[float]] = {"model": [], "call": []}
    handler_ms: list[float] = []
    for i in range(args.repeat + 20):
        start, cpu_start = time.perf_counter(), time.thread_time()
        service.predict_columns(columns)
        model_wall, model_cpu = time.perf_counter() - start, time.thread_time() - cpu_start
        call_wall, call_cpu, answer = loop.run_until_complete(asgi_call(app, body))
        if i >= 20:
            wall["model"].append(model_wall)
            wall["call"].append(call_wall)
            cpu["model"].append(model_cpu)
            cpu["call"].append(call_cpu)
            handler_ms.append(json.loads(answer)["processing_time_ms"])
    handler = float(np.median(handler_ms))

    with serving(app) as client:
        http_wall = percentiles_ms(
            time_calls(lambda: client.post(PATH, content=body), args.repeat // 4, warmup=10)
        )
        trivial = percentiles_ms(time_calls(lambda: client.post("/bench/trivial"), args.repeat))

    print(f"/predict/bulk/strict, {args.rows} candidates, warm models (p50 / p99 ms)")
    for clock, samples in (("wall", wall), ("CPU", cpu)):
        baseline, receipt = percentiles_ms(samples["model"]), percentiles_ms(samples["call"])
        print(
            f"  {clock:4s} in-process bulk prediction (baseline)  "
            f"{baseline[0]:7.3f} / {baseline[1]:7.3f}"
        )
        print(
            f"  {clock:4s} receipt to response (ASGI)             "
            f"{receipt[0]:7.3f} / {receipt[1]:7.3f}   {receipt[0] / baseline[0]:5.1f}x baseline"
        )
    print(f"  processing_time_ms (median)            {handler:7.3f}")
    print(
        f"  HTTP wall, uvicorn + httpx             {http_wall[0]:7.3f} / {http_wall[1]:7.3f}"
        f"   trivial endpoint {trivial[0]:.3f} ms"
    )


if __name__ == "__main__":
    main()
