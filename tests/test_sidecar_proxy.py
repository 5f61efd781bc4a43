"""End to end: simulated engine + sidecar proxy + real Redis, driven by a streaming client.

The client measures TTFT and TPOT itself and compares them with the observations the
sidecar wrote, and every proxied response byte for byte with a direct call to the engine.
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis_support import delete_prefix, unique_prefix, wait_until

from latency_oracle.features.redis.key_layout import GLOBAL_SHARD, RedisKeys
from latency_oracle.features.redis.observation_store import connect
from latency_oracle.features.schema import Observation
from latency_oracle.sidecar.metrics_parser import parse_engine_metrics
from latency_oracle.sim.processes import cli_argv, free_port, running_process

pytestmark = pytest.mark.slow

REQUESTS = 200
# Streamed completions before the measured ones: the first requests through fresh
# processes pay one-off costs (connection set-up, code paths warming) on both sides.
WARMUP = 8
CONCURRENCY = 16
MAX_TOKENS = 6
# Requests arrive spaced out (as a real client's would, not in one burst) a little faster
# than the engine prefills them, behind a backlog: TTFTs of 100+ ms, far above the proxy
# hops' few ms on a busy 2-core machine.
PROMPT_TOKENS = 1500
SPACING_S = 0.01
START_DELAY_S = 0.1
POD = "sim-pod-0"


@dataclass
class Stack:
    engine_url: str
    sidecar_url: str
    engine: subprocess.Popen[bytes]
    prefix: str
    redis_url: str

    def records(self) -> list[Observation]:
        """Every record written: first-token and finish records."""
        client = connect(self.redis_url, 2.0)
        entries = client.xrange(RedisKeys(self.prefix).stream(GLOBAL_SHARD))
        return [Observation.model_validate_json(fields[b"o"]) for _, fields in entries]

    def observations(self) -> list[Observation]:
        """The finish records written (first-token records are not whole requests)."""
        return [record for record in self.records() if record.finished]

    def sidecar_counter(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.sidecar_url}/sidecar/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == f"latency_oracle_sidecar_{name}_total" and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return sample.value
        return 0.0


@contextmanager
def _stack(redis_url: str) -> Iterator[Stack]:
    engine_port, sidecar_port = free_port(), free_port()
    engine_url = f"http://127.0.0.1:{engine_port}"
    sidecar_url = f"http://127.0.0.1:{sidecar_port}"
    prefix = unique_prefix()
    quiet = {"LATENCY_ORACLE_LOG_LEVEL": "warning"}
    sidecar_env = {
        **quiet,
        "LATENCY_ORACLE_REDIS_URL": redis_url,
        "LATENCY_ORACLE_REDIS_KEY_PREFIX": prefix,
        "LATENCY_ORACLE_ACCELERATOR": "NVIDIA H100 80GB HBM3",
        "LATENCY_ORACLE_POD_NAME": POD,
        "LATENCY_ORACLE_SCRAPE_INTERVAL_S": "0.05",
    }
    engine_argv = cli_argv("sim-engine", "--accelerator", "H100", "--port", str(engine_port))
    sidecar_argv = cli_argv("sidecar", "--engine-url", engine_url, "--port", str(sidecar_port))
    try:
        with (
            running_process(engine_argv, quiet, f"{engine_url}/health") as engine,
            running_process(sidecar_argv, sidecar_env, f"{sidecar_url}/sidecar/readyz"),
        ):
            yield Stack(engine_url, sidecar_url, engine, prefix, redis_url)
    finally:
        delete_prefix(connect(redis_url, 2.0), prefix)


@dataclass
class ClientView:
    """What the client received and measured, independently of the sidecar's parsing."""

    body: bytes
    ttft_ms: float
    tpot_ms: float
    tokens: int


def _request(i: int) -> tuple[str, dict[str, object]]:
    """Request i: completions or chat, with or without usage; a unique prompt length."""
    words = [f"q{i:03d}", *(f"w{j % 97}" for j in range(PROMPT_TOKENS + 3 * i))]
    body: dict[str, object] = {"max_tokens": MAX_TOKENS, "stream": True}
    if i % 4 >= 2:
        body["stream_options"] = {"include_usage": True}
    if i % 2 == 0:
        return "/v1/completions", {**body, "prompt": " ".join(words)}
    return "/v1/chat/completions", {
        **body,
        "messages": [{"role": "user", "content": " ".join(words)}],
    }


def _warmup_request(i: int) -> tuple[str, dict[str, object]]:
    """Like request i, but short prompts: their token counts never collide with theirs."""
    path, body = _request(i)
    words = " ".join(f"u{i}" for _ in range(50 + i))
    if "prompt" in body:
        return path, {**body, "prompt": words}
    return path, {**body, "messages": [{"role": "user", "content": words}]}


def _has_text(event: bytes) -> bool:
    if not event.startswith(b"data: {"):
        return False
    choices = json.loads(event[6:]).get("choices") or [{}]
    return bool(choices[0].get("text") or (choices[0].get("delta") or {}).get("content"))


async def _call(client: httpx.AsyncClient, url: str, body: dict[str, object]) -> ClientView:
    started = time.perf_counter()
    stamps: list[float] = []
    received, pending = [], b""
    async with client.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            now = time.perf_counter()
            received.append(chunk)
            pending += chunk
            while b"\n\n" in pending:
                event, pending = pending.split(b"\n\n", 1)
                if _has_text(event):
                    stamps.append(now)
    tokens = len(stamps)
    return ClientView(
        b"".join(received),
        (stamps[0] - started) * 1e3,
        (stamps[-1] - stamps[0]) * 1e3 / (tokens - 1),
        tokens,
    )


async def _call_all(base_url: str, concurrency: int) -> list[ClientView]:
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        # Unmeasured warm-up: opening the connections is a one-off cost, not a request's.
        warm = await asyncio.gather(*(client.get("/v1/models") for _ in range(concurrency)))
        assert all(r.status_code == 200 for r in warm)
        for path, body in map(_warmup_request, range(WARMUP)):
            await _call(client, path, body)
        backlog = {"prompt": "x " * 4000, "max_tokens": 1}  # unstreamed: never observed
        backlogs = [asyncio.create_task(client.post("/v1/completions", json=backlog))]

        async def one(i: int) -> ClientView:
            path, body = _request(i)
            # All tasks are parked before the first starts: creating 200 tasks must not
            # delay request 0 between its start stamp and its send (a client artefact).
            await asyncio.sleep(START_DELAY_S + i * SPACING_S)
            async with gate:
                return await _call(client, path, body)

        views = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
        assert [r.status_code for r in await asyncio.gather(*backlogs)] == [200]
        return views


def _input_tokens(i: int) -> int:
    """The engine's prompt token count of request i (chat adds one role marker)."""
    return PROMPT_TOKENS + 1 + 3 * i + (i % 2)


def test_streamed_requests_are_observed_as_the_client_measured_them(redis_url: str) -> None:
    with _stack(redis_url) as stack:
        proxied = asyncio.run(_call_all(stack.sidecar_url, CONCURRENCY))
        measured = {_input_tokens(i) for i in range(REQUESTS)}
        assert wait_until(lambda: measured <= {o.input_tokens for o in stack.observations()}, 15)
        observations = {o.input_tokens: o for o in stack.observations()}
        direct = asyncio.run(_call_all(stack.engine_url, 2 * CONCURRENCY))
        written = stack.sidecar_counter("observations", outcome="written")
        records = stack.records()

    # Warm-ups sent before the first scrape have no server state and are not observed.
    assert len(records) == written and len(observations) >= REQUESTS
    # Streams running past the first-token delay also sent their TTFT at the first token,
    # under the finish record's id, before it.
    finished = {o.observation_id: o for o in records if o.finished}
    early = [o for o in records if not o.finished]
    assert len(early) >= REQUESTS // 2
    for record in early:
        finish = finished[record.observation_id]
        assert (record.ttft_ms, record.tpot_ms) == (finish.ttft_ms, None)
        assert record.timestamp < finish.timestamp
    errors: dict[str, list[float]] = {"ttft_ms": [], "tpot_ms": []}
    for i, (seen, baseline) in enumerate(zip(proxied, direct, strict=True)):
        assert seen.body == baseline.body, f"request {i}: proxied bytes differ from direct"
        assert seen.tokens == MAX_TOKENS
        obs = observations[_input_tokens(i)]
        assert (obs.pod, obs.accelerator, obs.role, obs.model) == (POD, "H100", "both", obs.model)
        assert (obs.output_tokens, obs.max_tokens) == (MAX_TOKENS, MAX_TOKENS)
        for name, errs in errors.items():
            errs.append(abs(getattr(obs, name) / getattr(seen, name) - 1))
        assert obs.running_requests + obs.waiting_requests <= CONCURRENCY
    for name, errs in errors.items():
        # A request's client stamp can lag by a scheduling slice on a busy machine, so a
        # few may differ by more than 10%; but the sidecar measures what the client sees.
        assert sum(err > 0.10 for err in errs) <= len(errs) // 10, (name, errs)
        assert statistics.median(errs) < 0.03, name
    assert observations[_input_tokens(0)].model  # asked from the engine's /v1/models
    loads = [o.running_requests + o.waiting_requests for o in observations.values()]
    assert max(loads) >= CONCURRENCY // 2  # the state at arrival saw the concurrent load
    assert max(o.kv_cache_usage for o in observations.values()) > 0


def test_engine_killed_mid_stream_reaches_the_client_and_writes_nothing(redis_url: str) -> None:
    with _stack(redis_url) as stack:
        path, body = _request(0)
        asyncio.run(_call_all_one(stack.sidecar_url, path, body))
        assert wait_until(lambda: len(stack.observations()) == 1, 10)

        long_body = {**body, "max_tokens": 5_000}
        tokens = 0
        with (
            httpx.Client(base_url=stack.sidecar_url, timeout=30) as client,
            pytest.raises(httpx.RemoteProtocolError),
            client.stream("POST", path, json=long_body) as response,
        ):
            assert response.status_code == 200
            for line in response.iter_lines():
                tokens += _has_text(line.encode())
                if tokens == 3:
                    stack.engine.send_signal(signal.SIGKILL)

        assert tokens >= 3
        assert wait_until(
            lambda: stack.sidecar_counter("requests", kind="streamed", outcome="failed") == 1, 10
        )
        assert stack.sidecar_counter("observations", outcome="written") == 1
        assert len(stack.observations()) == 1
        gone = httpx.post(f"{stack.sidecar_url}{path}", json=body, timeout=30)
        assert gone.status_code == 502  # the engine is unreachable now


def test_client_hanging_up_mid_stream_reaches_the_engine_and_writes_nothing(redis_url: str) -> None:
    with _stack(redis_url) as stack:
        path, body = _request(0)
        asyncio.run(_call_all_one(stack.sidecar_url, path, body))
        assert wait_until(lambda: len(stack.observations()) == 1, 10)
        models = [
            httpx.get(f"{url}/v1/models").content for url in (stack.sidecar_url, stack.engine_url)
        ]
        assert models[0] == models[1]

        tokens = 0
        with (
            httpx.Client(base_url=stack.sidecar_url, timeout=30) as client,
            client.stream("POST", path, json={**body, "max_tokens": 5_000}) as response,
        ):
            for line in response.iter_lines():
                tokens += _has_text(line.encode())
                if tokens == 3:
                    break  # leaving the block closes the unfinished response's connection

        assert wait_until(
            lambda: stack.sidecar_counter("requests", kind="streamed", outcome="disconnected") == 1,
            10,
        )
        assert wait_until(lambda: _engine_running(stack.engine_url) == 0, 10)  # aborted there
        assert stack.sidecar_counter("observations", outcome="written") == 1
        assert len(stack.observations()) == 1


def _engine_running(engine_url: str) -> float | None:
    return parse_engine_metrics(httpx.get(f"{engine_url}/metrics").text).running_requests


async def _call_all_one(base_url: str, path: str, body: dict[str, object]) -> ClientView:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        return await _call(client, path, body)
