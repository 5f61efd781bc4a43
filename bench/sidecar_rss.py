"""Resident memory of ``latency-oracle sidecar`` once it answers HTTP, per interpreter.

The sidecar runs in every vLLM pod, so what it loads is paid once per pod. Each argument is
``LABEL=PYTHON`` or ``LABEL=PYTHON:PYTHONPATH`` (a source tree of the old, un-namespaced
layout runs from its folder); with none, this interpreter. Runs alternate between the
interpreters, three each, so a busy machine shifts every figure alike. The sidecar gets an
unreachable engine and predictor: start-up, not traffic, is measured.

    python bench/sidecar_rss.py before=/tmp/bare/bin/python:/tmp/before after=.venv/bin/python
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from latency_oracle.sim.processes import free_port

RUNS = 3
START_TIMEOUT_S = 60.0
UNREACHABLE = "http://127.0.0.1:9"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} has exited")


def started_sidecar_rss(python: str, pythonpath: str | None) -> float:
    """Start a sidecar, wait until it answers, read its RSS, stop it."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "LATENCY_ORACLE_LOG_LEVEL": "warning",
        "LATENCY_ORACLE_PREDICTOR_URL": UNREACHABLE,
        "LATENCY_ORACLE_ACCELERATOR": "H100",
        "LATENCY_ORACLE_POD_NAME": "rss-0",
        **({"PYTHONPATH": pythonpath} if pythonpath else {}),
    }
    argv = [python, "-m", "latency_oracle.cli", "sidecar", "--engine-url", UNREACHABLE]
    process = subprocess.Popen(
        [*argv, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/sidecar/healthz", timeout=1, trust_env=False)
                return rss_mib(process.pid)
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{python}: the sidecar did not start") from None
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait()


def main(specs: list[str]) -> None:
    interpreters = {}
    for spec in specs or [f"this={sys.executable}"]:
        label, _, where = spec.partition("=")
        python, _, pythonpath = where.partition(":")
        interpreters[label] = (os.path.abspath(python), pythonpath or None)  # runs in /
    runs: dict[str, list[float]] = {label: [] for label in interpreters}
    for _ in range(RUNS):
        for label, (python, pythonpath) in interpreters.items():
            runs[label].append(started_sidecar_rss(python, pythonpath))
    for label, values in runs.items():
        median = statistics.median(values)
        print(f"{label}: sidecar RSS at start {median:.0f} MiB (median of {RUNS})")


if __name__ == "__main__":
    main(sys.argv[1:])
