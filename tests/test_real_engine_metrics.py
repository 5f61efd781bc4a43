"""The sidecar's scraper against a real vLLM's ``/metrics``, and its in-flight counts
against the engine's own running and waiting gauges."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from polling import wait_until
from prometheus_client.parser import text_string_to_metric_families
from real_engine_support import MODEL, SidecarStack, sidecar_before

from latency_oracle.sidecar.metrics_parser import METRIC_NAMES, parse_engine_metrics

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).parent / "fixtures" / "vllm_metrics.txt"


def names(text: str) -> set[str]:
    found = set()
    for family in text_string_to_metric_families(text):
        found.add(family.name)
        found.update(sample.name for sample in family.samples)
    return found


@pytest.fixture(scope="module")
def stack(real_engine: object) -> Iterator[SidecarStack]:
    engine_url = real_engine.pods["real-pod-0"].engine.url  # type: ignore[attr-defined]
    with sidecar_before(engine_url) as stack:
        yield stack


def test_the_live_exposition_holds_every_current_name_the_parser_reads(
    stack: SidecarStack,
) -> None:
    body = {"model": MODEL, "prompt": "warm the counters up", "max_tokens": 2}
    httpx.post(f"{stack.engine_url}/v1/completions", json=body, timeout=60).raise_for_status()
    live = httpx.get(f"{stack.engine_url}/metrics").text
    read = {n for n in METRIC_NAMES if n.startswith("vllm:")} & names(FIXTURE.read_text())
    assert read, "the fixture holds none of the parser's names"
    assert read <= names(live)
    sample = parse_engine_metrics(live)
    assert sample.running_requests is not None and sample.waiting_requests is not None
    assert sample.kv_cache_usage is not None
    assert sample.prefix_cache_queries and sample.prefix_cache_queries > 0


def test_the_fixture_is_a_capture_of_this_engine(stack: SidecarStack) -> None:
    """tests/fixtures/vllm_metrics.txt comes from bench/real_engine/capture_metrics.py: the
    families it holds are those the engine exports (none made up, none renamed since)."""
    body = {"model": MODEL, "prompt": "and the histograms", "max_tokens": 2}
    httpx.post(f"{stack.engine_url}/v1/completions", json=body, timeout=60).raise_for_status()
    live = names(httpx.get(f"{stack.engine_url}/metrics").text)
    captured = {n for n in names(FIXTURE.read_text()) if n.startswith("vllm:")}
    assert captured <= live


def _gauges(engine_url: str) -> tuple[float, float]:
    sample = parse_engine_metrics(httpx.get(f"{engine_url}/metrics").text)
    return sample.running_requests or 0.0, sample.waiting_requests or 0.0


def test_in_flight_counts_follow_the_engines_running_and_waiting_gauges(
    stack: SidecarStack,
) -> None:
    n, prompt_ids = 6, 300
    bodies = [
        {
            "model": MODEL,
            "prompt": list(range(1000 + 10 * i, 1000 + 10 * i + prompt_ids)),
            "stream": True,
            "max_tokens": 600,
            "min_tokens": 600,
        }
        for i in range(n)
    ]

    def send(body: dict[str, object]) -> None:
        with httpx.stream(
            "POST", f"{stack.sidecar_url}/v1/completions", json=body, timeout=300
        ) as response:
            for _ in response.iter_bytes():
                pass

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    try:
        # All in decode: the engine runs n, the sidecar holds no prefill backlog and at
        # least every prompt plus a token each as decode work.
        assert wait_until(
            lambda: (
                _gauges(stack.engine_url) == (n, 0)
                and stack.sidecar_gauge("prefill_tokens_in_flight") == 0
                and stack.sidecar_gauge("decode_tokens_in_flight") >= n * (prompt_ids + 1)
            ),
            120,
        )
        decode = stack.sidecar_gauge("decode_tokens_in_flight")
        assert decode <= n * (prompt_ids + 600)
    finally:
        for thread in threads:
            thread.join()
    assert wait_until(
        lambda: (
            _gauges(stack.engine_url) == (0, 0)
            and stack.sidecar_gauge("decode_tokens_in_flight") == 0
            and stack.sidecar_gauge("prefill_tokens_in_flight") == 0
        ),
        30,
    )
