"""Helpers for tests on the simulated engine: its reference data and a real engine process."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from latency_oracle.sim.engine.gpu_profiles import shared_data_dir
from latency_oracle.sim.processes import cli_argv, free_port, running_process

SHARED_DATA = shared_data_dir()  # the package's own reference data (sim/data)


@dataclass(frozen=True, slots=True)
class SimEngineProcess:
    """A running ``latency-oracle sim-engine``; ``kill()`` is SIGKILL (a crash)."""

    process: subprocess.Popen[bytes]
    url: str

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@contextmanager
def sim_engine_process(
    accelerator: str = "H100", speed: float = 1.0, seed: int = 0, *extra: str
) -> Iterator[SimEngineProcess]:
    """Start a simulated engine on a free port, wait until it answers, stop it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = cli_argv("sim-engine", "--accelerator", accelerator, "--port", str(port))
    command += ["--speed", str(speed), "--seed", str(seed), *extra]
    quiet = {"LATENCY_ORACLE_LOG_LEVEL": "warning"}
    with running_process(command, quiet, f"{url}/health", timeout_s=30) as process:
        yield SimEngineProcess(process, url)
