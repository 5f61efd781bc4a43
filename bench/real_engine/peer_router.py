"""A real peer router in front of the same engines: the vLLM project's ``vllm-router``.

``vllm-router`` (Rust, from the package index) goes into a venv of its own under the
harness home, as vLLM does: a benchmark tool, never a dependency of the product. One
router is started per policy run, with the pods' sidecars as its workers
(``--worker-urls``), so its requests are measured and learned from like everyone's.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from latency_oracle.sim.processes import free_port, running_process
from real_engine.engine import KV_BLOCK_TOKENS
from real_engine.install import home, run_logged

log = logging.getLogger(__name__)

ROUTER_PIN = "vllm-router==0.1.17"
POLICIES = ("power_of_two", "cache_aware", "kv_aware")
START_TIMEOUT_S = 60.0


def router_binary(root: Path | None = None) -> Path:
    return (root or home()) / "router-venv" / "bin" / "vllm-router"


def ensure_router(root: Path | None = None) -> Path:
    """The ``vllm-router`` executable, installed into its own venv first if needed."""
    root = root or home()
    venv = root / "router-venv"
    marker = venv / "latency-oracle-installed.json"
    if marker.exists() and json.loads(marker.read_text()).get("pin") == ROUTER_PIN:
        return router_binary(root)
    log.warning("installing %s into %s", ROUTER_PIN, venv)
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    run_logged([sys.executable, "-m", "venv", "--clear", str(venv)], logs / "install.log")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    run_logged([*pip, "install", "-q", ROUTER_PIN], logs / "install.log")
    marker.write_text(json.dumps({"pin": ROUTER_PIN}))
    return router_binary(root)


def argv(
    binary: Path, policy: str, workers: dict[str, str], model: str, port: int, metrics_port: int
) -> list[str]:
    """``workers``: each worker's URL and where its engine publishes KV-cache events
    (``kv_aware`` subscribes to them; the block size is the harness's)."""
    kv_events = [
        *(arg for url, ev in workers.items() for arg in ("--kv-event-source", f"{url}={ev}")),
        *("--kv-event-block-size", str(KV_BLOCK_TOKENS), "--kv-event-model", model),
    ]
    return [
        str(binary),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--worker-urls", *workers),
        *("--policy", policy),
        *(kv_events if policy == "kv_aware" else []),
        # Its Prometheus exporter binds a fixed port by default: two routers in a row (or
        # another session's) would collide there and the second exit at start-up.
        *("--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port)),
        *("--log-level", "warning"),
    ]


@contextmanager
def running_router(policy: str, workers: dict[str, str], model: str) -> Iterator[str]:
    """A ``vllm-router`` with ``policy`` over ``workers`` until the block ends; its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = argv(ensure_router(), policy, workers, model, port, free_port())
    with running_process(command, {}, f"{url}/health", START_TIMEOUT_S):
        yield url
