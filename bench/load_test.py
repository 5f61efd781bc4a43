"""Load from a second process: wrk against the predictor at increasing concurrency.

Run: ``python bench/load_test.py`` (full: 1..64 connections, 5 s a level, plus the
trivial-endpoint comparison and 1 vs 2 uvicorn workers in Redis mode), or ``--smoke``
(three short levels, what the test suite runs). Prints, per endpoint and level,
throughput, p50/p99, errors and the CPU wrk itself used; the knee (the first level
reaching 90 % of the peak throughput: beyond it, more connections only add queueing);
and, at moderate load, the predictor's p99 against a trivial FastAPI endpoint served the
same way and hit by the same client, alternately. ``--json PATH`` writes the figures.

Moderate load is paced, not closed-loop: 4 connections each waiting a fixed delay before
every request, together offering about half the predictor's measured peak throughput, to
both servers alike. Unpaced, 4 connections already saturate either server (the knee is
at 1-2), and a saturated p99 is just connections / throughput: it compares service
times, not how the tail holds up under load.

wrk runs and predictor processes: ``bench/wrk_runs.py``; worker scaling:
``bench/worker_scaling.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from worker_scaling import SCALING_CONNECTIONS, SCALING_ROUNDS, print_scaling, worker_scaling
from wrk_runs import PREDICTION, Level, predictor, run_wrk

from latency_oracle.sim.processes import free_port, running_process

LLMD = {
    "kv_cache_percentage": 0.3,
    "input_token_length": 1_200,
    "num_request_waiting": 1,
    "num_request_running": 8,
    "num_tokens_generated": 0,
    "prefix_cache_score": 0.0,
}
ROUTE = {
    "input_tokens": 1_200,
    "pods": [
        {"pod": f"vllm-{i}", "accelerator": "H100", "running_requests": i, "kv_cache_usage": 0.1}
        for i in range(8)
    ],
}
ENDPOINTS = {
    "/v1/predictions": PREDICTION,
    "/predict/bulk/strict": {"requests": [LLMD] * 8},
    "/v1/route": ROUTE,
}
TRIVIAL_APP = """
from fastapi import FastAPI, Response
app = FastAPI()
@app.post("/bench/trivial")
async def trivial() -> Response:
    return Response(b'{"ok":true}', media_type="application/json")
"""
KNEE_FRACTION = 0.9
MODERATE_SHARE = 0.5  # moderate load: this share of the predictor's peak throughput


def knee(levels: list[Level]) -> int:
    """Connections of the first level within KNEE_FRACTION of the peak throughput."""
    peak = max(level.requests_per_s for level in levels)
    return next(lv.connections for lv in levels if lv.requests_per_s >= KNEE_FRACTION * peak)


@contextmanager
def trivial_server() -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "trivial_app.py").write_text(TRIVIAL_APP)
        argv = [sys.executable, "-m", "uvicorn", "--app-dir", directory, "trivial_app:app"]
        argv += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
        with running_process(argv, {}, f"http://127.0.0.1:{port}/docs"):
            yield f"http://127.0.0.1:{port}"


def sweep(base: str, levels: list[int], duration_s: float) -> dict[str, list[Level]]:
    return {
        path: [run_wrk(base + path, body, c, duration_s) for c in levels]
        for path, body in ENDPOINTS.items()
    }


def versus_trivial(
    base: str, connections: int, duration_s: float, rounds: int, peak_per_s: float
) -> dict:
    """p99 of predictions and of the trivial endpoint at half the predictor's peak
    throughput (paced connections), alternating rounds; medians."""
    pace_ms = max(1, round(connections * 1e3 / (MODERATE_SHARE * peak_per_s)))
    with trivial_server() as trivial:
        pairs = [
            (
                run_wrk(
                    base + "/v1/predictions", PREDICTION, connections, duration_s, pace_ms=pace_ms
                ),
                run_wrk(trivial + "/bench/trivial", {}, connections, duration_s, pace_ms=pace_ms),
            )
            for _ in range(rounds)
        ]
    predicted = sorted(p.p99_ms for p, _ in pairs)[rounds // 2]
    baseline = sorted(t.p99_ms for _, t in pairs)[rounds // 2]
    return {
        "connections": connections,
        "pace_ms": pace_ms,
        "predictor_per_s": sorted(p.requests_per_s for p, _ in pairs)[rounds // 2],
        "predictor_p99_ms": predicted,
        "trivial_p99_ms": baseline,
        "ratio": predicted / baseline,
        "errors": sum(p.errors + t.errors for p, t in pairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="short levels for the test suite")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    levels, duration = ([1, 8], 1.0) if args.smoke else ([1, 2, 4, 8, 16, 32, 64], 5.0)
    with predictor() as server:
        results = sweep(server.url, levels, duration)
        peak = max(lv.requests_per_s for lv in results["/v1/predictions"])
        rounds = 1 if args.smoke else 3
        comparison = versus_trivial(server.url, 4, duration, rounds, peak)
    figures: dict[str, object] = {
        "levels": {path: [asdict(lv) for lv in lvs] for path, lvs in results.items()},
        "knee": {path: knee(lvs) for path, lvs in results.items()},
        "versus_trivial": comparison,
    }
    for path, lvs in results.items():
        print(f"{path} (knee at {knee(lvs)} connections)")
        for lv in lvs:
            print(
                f"  c={lv.connections:>3}: {lv.requests_per_s:8.0f} req/s, p50 {lv.p50_ms:6.2f} ms,"
                f" p99 {lv.p99_ms:7.2f} ms, errors {lv.errors}, wrk {lv.client_cores:.2f} cores"
            )
    verdict = "met" if comparison["ratio"] <= 1.5 else "MISSED"
    print(
        f"p99 at moderate load (c={comparison['connections']}, each pacing"
        f" {comparison['pace_ms']} ms: {comparison['predictor_per_s']:.0f} req/s):"
        f" predictor {comparison['predictor_p99_ms']:.2f} ms"
        f" vs trivial {comparison['trivial_p99_ms']:.2f} ms ({comparison['ratio']:.2f}x;"
        f" target <= 1.5x: {verdict})"
    )
    if not args.smoke:
        scaling = worker_scaling(SCALING_CONNECTIONS, duration, SCALING_ROUNDS)
        figures["workers"] = scaling
        print_scaling(scaling)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
