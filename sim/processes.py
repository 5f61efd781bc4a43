"""Running the product's own processes on one machine: for the demo, tests and benchmarks.

One place knows how to pick a free port, how to tell that a server answers, and how to
start a process and wait for it to serve, so the demo, the test suites and the benchmarks
start engines, sidecars and predictors the same way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and never one this
    process has handed out before.

    The kernel may give the same ephemeral port to two binds in a row once the first
    socket is closed; callers that pick two ports before starting either server (an engine
    and its sidecar) would then start both on one port.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """Whether ``url`` answers 200 (any connection error or other status: not yet)."""
    try:
        return httpx.get(url, timeout=timeout_s, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def cli_argv(*args: str) -> list[str]:
    """The command line of ``latency-oracle <args>`` with this interpreter."""
    return [sys.executable, "-m", "latency_oracle.cli", *args]


@contextmanager
def running_process(
    argv: list[str], env: dict[str, str], ready_url: str, timeout_s: float = START_TIMEOUT_S
) -> Iterator[subprocess.Popen[bytes]]:
    """A server subprocess, from the moment ``ready_url`` answers 200 until the block ends."""
    process = subprocess.Popen(argv, env={**os.environ, **env})
    try:
        deadline = time.monotonic() + timeout_s
        while not answers(ready_url):
            if process.poll() is not None:
                raise RuntimeError(f"{argv} exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv} did not answer {ready_url} in {timeout_s:.0f} s")
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()
