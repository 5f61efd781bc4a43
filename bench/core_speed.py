"""Speed of the core: in-process predictions, learning throughput, HTTP overhead.

Run: ``python bench/core_speed.py``. Targets (issue 2): single prediction p99 < 0.2 ms,
bulk of 1,000 candidates < 5 ms, learning > 5,000 observations/s on one core, HTTP single
prediction p99 within 1.5x of a trivial FastAPI endpoint served by the same process and
called by the same client. Machines are noisy: the HTTP figure is a ratio measured in one
run, interleaving the two endpoints so both see the same noise.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import uvicorn

from features.engineering import RequestColumns
from features.schema import PredictionRequest
from latency_oracle.settings import Settings
from predictor.app import create_app
from predictor.service import OracleService
from sim.synthetic_stream import generate_stream

WARM_OBSERVATIONS = 6_000


def percentiles_ms(samples: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.array(samples) * 1e3, [50, 99])
    return float(p50), float(p99)


def time_calls(call: Callable[[], object], repeat: int) -> list[float]:
    for _ in range(min(50, repeat)):
        call()
    durations = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return durations


def bench_learning(service: OracleService) -> float:
    stream = generate_stream(WARM_OBSERVATIONS, seed=11)
    batch = service.settings.learn_batch_size
    start = time.perf_counter()
    for i in range(0, WARM_OBSERVATIONS, batch):
        service.models.learn(stream.observations[i : i + batch])
    return WARM_OBSERVATIONS / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_http(settings: Settings, service: OracleService, request: dict[str, object]) -> tuple:
    app = create_app(settings, service)

    @app.get("/trivial")
    async def trivial() -> dict[str, str]:
        return {"status": "ok"}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    trivial_times: list[float] = []
    predict_times: list[float] = []
    with httpx.Client(base_url=base) as client:
        for _ in range(2_000):
            for path, sink in (("/trivial", trivial_times), ("/v1/predictions", predict_times)):
                start = time.perf_counter()
                if path == "/trivial":
                    client.get(path).raise_for_status()
                else:
                    client.post(path, json=request).raise_for_status()
                sink.append(time.perf_counter() - start)
    server.should_exit = True
    thread.join()
    return percentiles_ms(trivial_times[200:]), percentiles_ms(predict_times[200:])


def main() -> None:
    settings = Settings(state_dir=Path(tempfile.mkdtemp()), snapshot_interval_s=3600)
    service = OracleService(settings)
    throughput = bench_learning(service)
    stream = generate_stream(1_000, seed=12)
    one = [
        PredictionRequest(
            **stream.observations[0].model_dump(include=set(PredictionRequest.model_fields))
        )
    ]
    columns_one = RequestColumns.from_requests(one)
    candidates = RequestColumns.from_requests(stream.observations)
    assert not service.predict(one).cold.any(), "models should be warm"

    single_records = percentiles_ms(time_calls(lambda: service.predict(one), 3_000))
    single_columns = percentiles_ms(time_calls(lambda: service.models.predict(columns_one), 3_000))
    bulk = percentiles_ms(time_calls(lambda: service.models.predict(candidates), 200))
    (trivial, http) = bench_http(settings, service, one[0].model_dump(mode="json"))

    rows = [
        ("learning throughput", f"{throughput:,.0f} obs/s", "target > 5,000 obs/s"),
        ("single prediction (record)", _p(single_records), "target p99 < 0.2 ms"),
        ("single prediction (columns)", _p(single_columns), ""),
        ("bulk 1,000 candidates", _p(bulk), "target < 5 ms"),
        ("HTTP trivial endpoint", _p(trivial), ""),
        ("HTTP /v1/predictions", _p(http), ""),
        (
            "HTTP ratio predictions/trivial",
            f"p50 {http[0] / trivial[0]:.2f}x  p99 {http[1] / trivial[1]:.2f}x",
            "target p99 <= 1.5x",
        ),
    ]
    for name, value, target in rows:
        print(f"{name:32s} {value:34s} {target}")


def _p(pair: tuple[float, float]) -> str:
    return f"p50 {pair[0]:.3f} ms  p99 {pair[1]:.3f} ms"


if __name__ == "__main__":
    main()
