"""The sidecar's in-flight counts against the simulated engine's own, under streamed load.

Engine and sidecar run in this test's event loop, each behind a real uvicorn server, so the
test can read both counts at the same instant: the engine driver's prompt tokens of the
requests whose first token is not out yet (what the sidecar's prefill backlog stands for)
and the sidecar's counter. Clients stream concurrently through the sidecar's port; some
hang up mid-stream, some before their first token.

What separates the two counts, and why they agree within 5% on average:
- the sidecar counts text prompts from their length (tokens per character learned from
  the engine's usage reports), the engine tokenizes them: a few percent per prompt, in
  both directions;
- a request is in the sidecar's count for the hops before the engine has it and after its
  first token left the engine: well under a millisecond against TTFTs of tens of ms;
- neither count is net of chunked-prefill progress or of prefix-cache hits: the engine's
  scheduler state (``Engine.state()``) is, and differs by exactly those (and runs one step
  ahead of the released tokens), which is why it is not the reference here. These prompts
  are unique, so no cache hits; the engine reports none in usage either.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sidecar_support import MemorySink, serving
from sim_support import SHARED_DATA

from latency_oracle.settings import Settings
from latency_oracle.sidecar.app import SidecarApp, create_sidecar
from latency_oracle.sim.engine.driver import EngineDriver
from latency_oracle.sim.engine.scheduler import Engine
from latency_oracle.sim.engine.server import create_sim_app

REQUESTS = 48
CONCURRENCY = 16
WARMUP = 40  # requests teaching the sidecar the engine's tokens per character
SAMPLE_EVERY_S = 0.004
# A GPU at half speed: longer TTFTs, the same HTTP hops (which run in this one busy loop).
ENGINE_SPEED = 0.5


def _prompt(rng: random.Random, words: int) -> str:
    """Unique text of words 1-9 characters long (the engine cuts words into 4-char tokens)."""
    return " ".join(
        "".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(1, 9)))
        for _ in range(words)
    )


def _body(rng: random.Random, i: int, words: int, max_tokens: int) -> tuple[str, dict]:
    body: dict[str, object] = {"max_tokens": max_tokens, "stream": True}
    if i % 2:
        return "/v1/chat/completions", {
            **body,
            "messages": [{"role": "user", "content": _prompt(rng, words)}],
        }
    return "/v1/completions", {**body, "prompt": _prompt(rng, words)}


async def _stream(
    client: httpx.AsyncClient, path: str, body: dict, hang_up_after: int | None = None
) -> None:
    """Stream a completion; leave after ``hang_up_after`` data events (0: after headers)."""
    async with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        if hang_up_after == 0:
            return
        events = 0
        async for line in response.aiter_lines():
            events += line.startswith("data:")
            if hang_up_after is not None and events >= hang_up_after:
                return


@dataclass
class Run:
    samples: list[tuple[int, int, int]]  # (sidecar prefill, engine awaiting, sidecar decode)
    idle: tuple[int, int, int]  # the sidecar's prefill, decode and requests once drained


async def _run_load(sidecar_url: str, sidecar: SidecarApp, driver: EngineDriver) -> Run:
    counter = sidecar.proxy.inflight
    rng = random.Random(7)
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=sidecar_url, timeout=60) as client:
        for i in range(WARMUP):
            await _stream(client, *_body(rng, i, 40, 2))
        samples: list[tuple[int, int, int]] = []
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                sample = (counter.prefill_tokens, driver.awaiting_first_token)
                samples.append((*sample, counter.decode_tokens))
                await asyncio.sleep(SAMPLE_EVERY_S)

        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            path, body = _body(rng, i, rng.randint(400, 1500), rng.randint(4, 24))
            hang_up = {5: 0, 7: 3}.get(i % 8)  # a quarter of the clients leave early
            await asyncio.sleep(i * 0.01)
            async with gate:
                await _stream(client, path, body, hang_up)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(one(i) for i in range(REQUESTS)))
        deadline = loop.time() + 10
        while len(counter) or driver.awaiting_first_token:
            assert loop.time() < deadline, "the counts never drained"
            await asyncio.sleep(0.01)
        done.set()
        await sampler
    return Run(samples, (counter.prefill_tokens, counter.decode_tokens, len(counter)))


@asynccontextmanager
async def _stack(
    sink: MemorySink, prompt_tokens_details: bool = False
) -> AsyncIterator[tuple[str, SidecarApp, EngineDriver]]:
    """The simulated engine and a sidecar in front of it, both served in this loop."""
    engine = Engine.create("H100", data_dir=SHARED_DATA)
    engine_app = create_sim_app(engine, "sim-model", ENGINE_SPEED, prompt_tokens_details)
    async with serving(engine_app) as engine_url:
        settings = Settings(
            engine_url=engine_url, accelerator="H100", pod_name="pod-0", scrape_interval_s=0.05
        )
        sidecar = create_sidecar(settings, sink=sink)
        async with serving(sidecar) as sidecar_url:
            yield sidecar_url, sidecar, engine_app.state.driver


def test_sidecar_counts_match_the_engines_prefill_backlog_under_concurrent_load() -> None:
    sink = MemorySink()

    async def main() -> Run:
        async with _stack(sink) as (sidecar_url, sidecar, driver):
            return await _run_load(sidecar_url, sidecar, driver)

    run = asyncio.run(main())
    ours = [s[0] for s in run.samples]
    engines = [s[1] for s in run.samples]
    assert min(ours) >= 0 and min(s[2] for s in run.samples) >= 0
    assert statistics.fmean(engines) > 500  # a real backlog formed
    assert abs(statistics.fmean(ours) / statistics.fmean(engines) - 1) < 0.05
    assert run.idle == (0, 0, 0)  # idle again, after hang-ups before and after first tokens
    # Observations carry the counts their request found; pod states carry them too.
    assert any(o.prefill_tokens_in_flight > 0 for o in sink.observations)
    assert any(o.decode_tokens_in_flight > 0 for o in sink.observations)
    assert any(s.prefill_tokens_in_flight > 0 for s in sink.states)


def test_unstreamed_failed_and_unmeasured_requests_leave_nothing_counted() -> None:
    async def main() -> list[tuple[int, int, int]]:
        async with (
            _stack(MemorySink()) as (sidecar_url, sidecar, _),
            httpx.AsyncClient(base_url=sidecar_url, timeout=60) as client,
        ):
            counter = sidecar.proxy.inflight
            seen = []
            long = {"prompt": "word " * 3000, "max_tokens": 2}
            unstreamed = asyncio.create_task(client.post("/v1/completions", json=long))
            while not len(counter):
                await asyncio.sleep(0.005)
            seen.append((counter.prefill_tokens, counter.decode_tokens, len(counter)))
            assert (await unstreamed).status_code == 200
            unknown_model = {"model": "other", "prompt": "x", "max_tokens": 2, "stream": True}
            assert (await client.post("/v1/completions", json=unknown_model)).status_code == 404
            assert (await client.get("/v1/models")).status_code == 200  # passes through
            seen.append((counter.prefill_tokens, counter.decode_tokens, len(counter)))
            exposed = (await client.get("/sidecar/metrics")).text
            assert "latency_oracle_sidecar_prefill_tokens_in_flight 0.0" in exposed
            assert "latency_oracle_sidecar_decode_tokens_in_flight 0.0" in exposed
            return seen

    during, after = asyncio.run(main())
    assert during[0] > 2_000 and during[2] == 1  # counted as prefill until its answer
    assert after == (0, 0, 0)


def test_cache_hits_the_engine_reports_reach_observations_and_net_the_backlog() -> None:
    """vLLM with --enable-prompt-tokens-details reports each request's cached tokens in its
    final usage: the observation records them and the counter learns the hit share."""
    sink = MemorySink()
    shared = _prompt(random.Random(3), 1_500)  # a long system prompt every request repeats

    async def main() -> float:
        async with (
            _stack(sink, prompt_tokens_details=True) as (sidecar_url, sidecar, _),
            httpx.AsyncClient(base_url=sidecar_url, timeout=60) as client,
        ):
            for i in range(12):
                body = {"prompt": f"{shared} question {i}", "max_tokens": 2, "stream": True}
                await _stream(client, "/v1/completions", body)
            return sidecar.proxy.inflight.hit_share

    hit_share = asyncio.run(main())
    hits = [o.prefix_cache_hit_tokens for o in sink.observations]
    assert hits and all(h is not None for h in hits)
    assert max(hits) > 1_000  # the shared prefix, found cached after the first request
    assert hit_share > 0.3  # the backlog is netted by most of the prompts being cached
