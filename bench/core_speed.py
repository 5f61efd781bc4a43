"""Speed of the core: in-process predictions, learning throughput, HTTP overhead.

Run: ``python bench/core_speed.py``. Targets (issue 2): single prediction p99 < 0.2 ms,
bulk of 1,000 candidates < 5 ms, learning > 5,000 observations/s on one core, HTTP single
prediction p99 within 1.5x of a trivial FastAPI endpoint served by the same process and
called by the same client. Machines are noisy: the HTTP figure is a ratio measured in one
run, interleaving the two endpoints so both see the same noise.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from harness import paired_http, percentiles_ms, ratio_line, serving, time_calls

from latency_oracle.features.engineering import RequestColumns
from latency_oracle.features.schema import PredictionRequest
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import generate_stream

WARM_OBSERVATIONS = 6_000


def bench_learning(service: OracleService) -> float:
    stream = generate_stream(WARM_OBSERVATIONS, seed=11)
    batch = service.settings.learn_batch_size
    start = time.perf_counter()
    for i in range(0, WARM_OBSERVATIONS, batch):
        service.models.learn(stream.observations[i : i + batch])
    return WARM_OBSERVATIONS / (time.perf_counter() - start)


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
    with serving(create_app(settings, service)) as client:
        http, trivial = paired_http(
            client, "/v1/predictions", one[0].model_dump(mode="json"), 2_000
        )

    rows = [
        ("learning throughput", f"{throughput:,.0f} obs/s", "target > 5,000 obs/s"),
        ("single prediction (record)", _p(single_records), "target p99 < 0.2 ms"),
        ("single prediction (columns)", _p(single_columns), ""),
        ("bulk 1,000 candidates", _p(bulk), "target < 5 ms"),
    ]
    for name, value, target in rows:
        print(f"{name:32s} {value:34s} {target}")
    print(ratio_line("HTTP /v1/predictions vs trivial endpoint", http, trivial))


def _p(pair: tuple[float, float]) -> str:
    return f"p50 {pair[0]:.3f} ms  p99 {pair[1]:.3f} ms"


if __name__ == "__main__":
    main()
