"""The sidecar's probes: liveness is the process alone, readiness follows the engine.

While vLLM loads a model (minutes) or restarts, a liveness probe that followed the engine
would have the kubelet restart the sidecar and cut every stream through it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import yaml
from sidecar_support import MemorySink, serving
from sim_support import SHARED_DATA

from latency_oracle.settings import Settings
from latency_oracle.sidecar.app import create_sidecar
from latency_oracle.sim.engine.scheduler import Engine
from latency_oracle.sim.engine.server import create_sim_app
from latency_oracle.sim.processes import free_port


async def _probe(client: httpx.AsyncClient, path: str) -> int:
    return (await client.get(path)).status_code


async def _probes(client: httpx.AsyncClient) -> tuple[int, int]:
    return (await _probe(client, "/sidecar/livez"), await _probe(client, "/sidecar/readyz"))


def test_livez_answers_without_an_engine_and_readyz_waits_for_a_scrape() -> None:
    engine_port = free_port()
    settings = Settings(
        engine_url=f"http://127.0.0.1:{engine_port}",
        accelerator="H100",
        pod_name="pod-0",
        served_model="m",
        scrape_interval_s=0.02,
    )

    async def main() -> list[tuple[int, int]]:
        seen = []
        async with (
            serving(create_sidecar(settings, sink=MemorySink())) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            # The engine is not up yet (a model still loading).
            seen.append(
                (await _probe(client, "/sidecar/livez"), await _probe(client, "/sidecar/readyz"))
            )
            engine = create_sim_app(Engine.create("H100", data_dir=SHARED_DATA), "m")
            async with serving(engine, engine_port):
                deadline = asyncio.get_running_loop().time() + 10
                while await _probe(client, "/sidecar/readyz") != 200:
                    assert asyncio.get_running_loop().time() < deadline, "never ready"
                    await asyncio.sleep(0.02)
                seen.append(await _probes(client))
            # The engine went away: not ready once the last scrape is stale, still alive.
            deadline = asyncio.get_running_loop().time() + 10
            while await _probe(client, "/sidecar/readyz") != 503:
                assert asyncio.get_running_loop().time() < deadline, "still ready"
                await asyncio.sleep(0.02)
            seen.append(await _probes(client))
            assert await _probe(client, "/sidecar/healthz") != 200  # proxied: not ours
        return seen

    assert asyncio.run(main()) == [(200, 503), (200, 200), (200, 503)]


def test_the_sidecar_component_probes_liveness_and_readiness_apart() -> None:
    patch = Path(__file__).resolve().parents[1] / "deploy/components/sidecar/sidecar-container.yaml"
    spec = yaml.safe_load(patch.read_text())["spec"]["template"]["spec"]
    [sidecar] = [
        c
        for c in spec.get("initContainers", []) + spec.get("containers", [])
        if c["name"] == "latency-oracle-sidecar"
    ]
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/sidecar/livez"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/sidecar/readyz"
