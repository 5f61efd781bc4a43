"""wrk runs against ``latency-oracle serve`` processes, shared by the load benchmarks.

wrk runs in its own process (``apt-get install wrk``): a Python client on the same two
cores would measure itself more than the server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from proc_stats import CpuWindow

from latency_oracle.sim.processes import cli_argv, free_port, running_process
from latency_oracle.sim.synthetic_stream import generate_stream

PREDICTION = {
    "pod": "vllm-0",
    "accelerator": "H100",
    "input_tokens": 1_200,
    "running_requests": 8,
    "waiting_requests": 1,
    "kv_cache_usage": 0.3,
}
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
