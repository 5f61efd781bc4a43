"""Helpers for tests of and on the simulated engine: the data guard and a real engine process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from polling import wait_until
from redis_support import free_port

from sim.gpu_profiles import shared_data_dir

SHARED_DATA = shared_data_dir()
needs_shared_data = pytest.mark.skipif(
    not (SHARED_DATA / "gpu-profiles").is_dir(),
    reason=f"reference GPU measurements not found at {SHARED_DATA} "
    "(set LATENCY_ORACLE_SHARED_DATA_DIR)",
)


@dataclass(frozen=True, slots=True)
class SimEngineProcess:
    """A running ``latency-oracle sim-engine``; ``kill()`` is SIGKILL (a crash)."""

    process: subprocess.Popen[bytes]
    url: str

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def sim_engine_process(
    accelerator: str = "H100", speed: float = 1.0, seed: int = 0, *extra: str
) -> Iterator[SimEngineProcess]:
    """Start a simulated engine on a free port, wait until it answers, stop it after."""
    port = free_port()
    command = [sys.executable, "-m", "latency_oracle.cli", "sim-engine"]
    command += ["--accelerator", accelerator, "--port", str(port), "--speed", str(speed)]
    command += ["--seed", str(seed), *extra]
    process = subprocess.Popen(command, env={**os.environ, "LATENCY_ORACLE_LOG_LEVEL": "warning"})
    engine = SimEngineProcess(process, f"http://127.0.0.1:{port}")
    try:
        if not wait_until(lambda: process.poll() is not None or _healthy(engine.url), 30):
            raise RuntimeError("simulated engine did not start within 30 s")
        if process.poll() is not None:
            raise RuntimeError(f"simulated engine exited with {process.returncode}")
        yield engine
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                engine.kill()
