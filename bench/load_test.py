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

wrk runs in its own process (``apt-get install wrk``): a Python client on the same two
cores would measure itself more than the server.

Worker scaling alternates rounds on a 1-worker and a 2-worker predictor and says, per
round, the cores each worker, wrk and the rest of the machine used and how many of wrk's
keep-alive connections each worker holds: uvicorn's workers share one listening socket,
and the first to wake accepts a whole burst of connections, so a round where one worker
holds them all measures one worker, whatever the process count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from proc_stats import CpuWindow, connections_held, worker_pids

from sim.processes import cli_argv, free_port, running_process
from sim.synthetic_stream import generate_stream

ROOT = Path(__file__).resolve().parents[1]
PREDICTION = {
    "pod": "vllm-0",
    "accelerator": "H100",
    "input_tokens": 1_200,
    "running_requests": 8,
    "waiting_requests": 1,
    "kv_cache_usage": 0.3,
}
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
SCALING_CONNECTIONS = 16
SCALING_ROUNDS = 5
WATCH_EVERY_S = 0.05  # how often a run's watcher looks while wrk opens its connections


@dataclass(frozen=True, slots=True)
class Level:
    connections: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cores: float  # CPU seconds per second wrk itself used


@dataclass(frozen=True, slots=True)
class Predictor:
    url: str
    port: int
    pid: int


def run_wrk(
    url: str,
    body: object,
    connections: int,
    duration_s: float,
    watch: Callable[[], bool] | None = None,
    pace_ms: int | None = None,
) -> Level:
    """One wrk run posting ``body``; errors are non-2xx answers plus socket errors.

    ``watch`` is called while wrk runs until it returns True (it sees the connections);
    with ``pace_ms`` each connection waits that long before each request.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [==[{json.dumps(body)}]==]\n"
        )
        if pace_ms is not None:
            script.write(f"function delay() return {pace_ms} end\n")
    threads = max(1, min(2, connections))
    argv = ["wrk", "--latency", "-t", str(threads), "-c", str(connections)]
    argv += ["-d", f"{max(1, round(duration_s))}s", "-s", script.name, url]
    window = CpuWindow([])
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as wrk:
        while watch is not None and wrk.poll() is None and not watch():
            time.sleep(WATCH_EVERY_S)
        out = wrk.communicate()[0]
    os.unlink(script.name)
    if wrk.returncode:
        raise subprocess.CalledProcessError(wrk.returncode, argv, out)
    return Level(
        connections,
        float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        _latency_ms(out, "50%"),
        _latency_ms(out, "99%"),
        _errors(out),
        window.shares().client,
    )


def _latency_ms(out: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{percentile}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def _errors(out: str) -> int:
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in sockets.groups()) if sockets else 0
    )


def knee(levels: list[Level]) -> int:
    """Connections of the first level within KNEE_FRACTION of the peak throughput."""
    peak = max(level.requests_per_s for level in levels)
    return next(lv.connections for lv in levels if lv.requests_per_s >= KNEE_FRACTION * peak)


def _serve_env(state_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {
        "LATENCY_ORACLE_PORT": str(port),
        "LATENCY_ORACLE_STATE_DIR": str(state_dir),
        "LATENCY_ORACLE_MLFLOW_ENABLED": "false",
        "LATENCY_ORACLE_MIN_SAMPLES": "100",
        "LATENCY_ORACLE_LOG_LEVEL": "warning",
    }
    return env | {f"LATENCY_ORACLE_{k.upper()}": v for k, v in extra.items()}


@contextmanager
def predictor(workers: int = 1, **extra: str) -> Iterator[Predictor]:
    """A ``latency-oracle serve`` process; embedded ones are trained before use."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = cli_argv("serve", "--workers", str(workers))
    with (
        tempfile.TemporaryDirectory() as state,
        running_process(argv, _serve_env(Path(state), port, **extra), f"{base}/healthz") as proc,
    ):
        if "redis_url" not in extra:
            _train(base)
        yield Predictor(base, port, proc.pid)


def _train(base: str) -> None:
    observations = generate_stream(1_000, seed=5).observations
    body = [o.model_dump(mode="json") for o in observations]
    httpx.post(f"{base}/v1/observations", json=body, timeout=30).raise_for_status()
    for _ in range(600):
        if httpx.get(f"{base}/status", timeout=5).json()["is_ready"]:
            return
        httpx.get(f"{base}/healthz", timeout=5)  # a pause that asks the server, not a sleep
    raise RuntimeError("predictor did not become ready")


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


@dataclass(frozen=True, slots=True)
class ScalingRound:
    """One wrk run on one predictor: throughput and where the CPU and connections went."""

    workers: int
    requests_per_s: float
    worker_cores: list[float]
    worker_connections: list[int]
    client_cores: float
    rest_cores: float  # everything else on the machine: Redis, other people's work


class _ConnectionWatch:
    """Records how a run's connections are spread over the workers once all are accepted."""

    def __init__(self, pids: list[int], port: int, expected: int) -> None:
        self.pids, self.port, self.expected = pids, port, expected
        self.held: dict[int, int] = {}

    def __call__(self) -> bool:
        self.held = connections_held(self.pids, self.port)
        return sum(self.held.values()) >= self.expected


def scaling_round(server: Predictor, connections: int, duration_s: float) -> ScalingRound:
    pids = worker_pids(server.pid)
    watch = _ConnectionWatch(pids, server.port, connections)
    window = CpuWindow(pids)
    level = run_wrk(f"{server.url}/v1/predictions", PREDICTION, connections, duration_s, watch)
    shares = window.shares()
    return ScalingRound(
        len(pids),
        level.requests_per_s,
        [shares.server[pid] for pid in pids],
        [watch.held.get(pid, 0) for pid in pids],
        shares.client,
        shares.rest,
    )


def worker_scaling(connections: int, duration_s: float, rounds: int) -> dict:
    """1 vs 2 workers in Redis mode (several workers need shared models), alternating rounds.

    Speed-ups are medians of each round's 2-worker over 1-worker figure: requests/s over
    all rounds and over those where every worker held connections, and requests/s per core
    the workers used (near 1: the workers scale with the CPU they get).
    """
    url = os.environ.get("LATENCY_ORACLE_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    shared = {"redis_url": url, "redis_key_prefix": f"bench-load-{os.getpid()}"}
    with predictor(1, **shared) as one, predictor(2, **shared) as two:
        for server in (one, two):  # warm every worker
            run_wrk(f"{server.url}/v1/predictions", PREDICTION, connections, 1)
        pairs = [
            (
                scaling_round(one, connections, duration_s),
                scaling_round(two, connections, duration_s),
            )
            for _ in range(rounds)
        ]
    speedups = [two.requests_per_s / one.requests_per_s for one, two in pairs]
    spread = [s for s, (_, two) in zip(speedups, pairs, strict=True) if min(two.worker_connections)]
    return {
        "connections": connections,
        "duration_s": duration_s,
        "rounds": [[asdict(one), asdict(two)] for one, two in pairs],
        "speedup": statistics.median(speedups),
        "speedup_when_spread": statistics.median(spread) if spread else None,
        "rounds_spread": len(spread),
        "per_core_ratio": statistics.median(_per_core(two) / _per_core(one) for one, two in pairs),
    }


def _per_core(sample: ScalingRound) -> float:
    return sample.requests_per_s / max(sum(sample.worker_cores), 1e-9)


def _round_line(sample: ScalingRound) -> str:
    cores = "+".join(f"{c:.2f}" for c in sample.worker_cores)
    held = "+".join(str(n) for n in sample.worker_connections)
    return (
        f"{sample.workers} worker{'s' if sample.workers > 1 else ' '} {sample.requests_per_s:6.0f}"
        f" req/s, {_per_core(sample):5.0f} per server core (server {cores} cores, connections"
        f" {held}; wrk {sample.client_cores:.2f}, rest of machine {sample.rest_cores:.2f})"
    )


def print_scaling(scaling: dict) -> None:
    rounds = scaling["rounds"]
    print(
        f"workers (Redis mode, c={scaling['connections']}, {len(rounds)} alternating rounds of"
        f" {scaling['duration_s']:.0f} s; cores = CPU seconds per second):"
    )
    for i, (one, two) in enumerate(rounds, 1):
        ratio = two["requests_per_s"] / one["requests_per_s"]
        print(f"  round {i}: {_round_line(ScalingRound(**one))}")
        print(f"           {_round_line(ScalingRound(**two))}: {ratio:.2f}x")
    spread = scaling["speedup_when_spread"]
    print(
        f"  2 vs 1 workers: {scaling['speedup']:.2f}x (median of {len(rounds)} rounds), "
        + (
            f"{spread:.2f}x over the {scaling['rounds_spread']} where both workers held connections"
            if spread is not None
            else "no round spread its connections over both workers"
        )
        + f"; per server core {scaling['per_core_ratio']:.2f}x"
    )


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
