"""The sidecar's proxy against a real vLLM: what it measures, estimates and passes on.

Real streams (completions and chat, streamed or not, with and without ``include_usage``,
prompts as text and as token ids) go through a sidecar to the harness's tiny engine. The
client measures TTFT and TPOT itself; the sidecar's observations must agree, carry the
engine's own token counts, and the client must get the engine's answer as if no proxy
were there (no usage chunk it did not ask for).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from polling import wait_until
from real_engine_support import MODEL, SidecarStack, sidecar_before

from latency_oracle.features.engineering import FEATURE_NAMES, RequestColumns, build_features
from latency_oracle.sidecar.completion_request import read_completion_request
from latency_oracle.sidecar.prompt_tokens import PromptTokenEstimate

pytestmark = pytest.mark.slow

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "engines",
    "stream",
    "tokens",
]


def text_of(n_words: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, n_words))


@pytest.fixture(scope="module")
def stack(real_engine: object) -> Iterator[SidecarStack]:
    engine_url = real_engine.pods["real-pod-0"].engine.url  # type: ignore[attr-defined]
    with sidecar_before(engine_url) as stack:
        yield stack


CLIENT = httpx.Client(timeout=120)  # one client: building one costs ms (its TLS context)


def _stream(url: str, path: str, body: dict[str, object]) -> dict[str, object]:
    """The client's own view: TTFT, TPOT, the events it received, the usage if any."""
    request = CLIENT.build_request("POST", url + path, json=body)
    first = last = None
    texts = 0
    usage = None
    events = []
    sent = time.perf_counter()
    with CLIENT.stream(
        request.method, request.url, content=request.content, headers=request.headers
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line)
            if line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            now = time.perf_counter()
            if any(
                c.get("text") or (c.get("delta") or {}).get("content") for c in chunk["choices"]
            ):
                first = first or now
                last = now
                texts += 1
            usage = chunk.get("usage") or usage
    assert first is not None and last is not None
    return {
        "ttft_ms": (first - sent) * 1e3,
        "span_ms": (last - first) * 1e3,
        "texts": texts,
        "usage": usage,
        "events": events,
    }


CASES = [
    ("/v1/completions", "text", True),
    ("/v1/completions", "text", False),
    ("/v1/completions", "ids", True),
    ("/v1/completions", "ids", False),
    ("/v1/chat/completions", "text", True),
    ("/v1/chat/completions", "text", False),
]


@pytest.mark.parametrize(("path", "form", "usage"), CASES)
def test_real_streams_are_observed_as_the_client_measured_them(
    stack: SidecarStack, path: str, form: str, usage: bool
) -> None:
    seen = {o.observation_id for o in stack.observations()}
    views = []
    for i in range(3):
        n = 40 + 37 * i + 11 * CASES.index((path, form, usage))
        body: dict[str, object] = {"model": MODEL, "stream": True, "max_tokens": 48}
        body["min_tokens"] = 12  # enough tokens for a TPOT whatever the EOS draws
        if usage:
            body["stream_options"] = {"include_usage": True}
        if path.endswith("chat/completions"):
            body["messages"] = [{"role": "user", "content": text_of(n, i)}]
        else:
            body["prompt"] = list(range(100, 100 + n)) if form == "ids" else text_of(n, i)
        views.append(_stream(stack.sidecar_url, path, body))
    for view in views:
        assert view["events"][-1] == "data: [DONE]"
        # The client gets a usage chunk exactly when it asked for one.
        assert (view["usage"] is not None) is usage
    assert wait_until(lambda: len(stack.observations()) - len(seen) >= 3, 15)
    new = [o for o in stack.observations() if o.observation_id not in seen]
    assert len(new) == 3
    gaps = []
    for observation, view in zip(sorted(new, key=lambda o: o.timestamp), views, strict=True):
        assert observation.model == MODEL
        # A byte-level BPE token can end inside a UTF-8 character: vLLM then streams it
        # with the next one, so text events may be fewer than tokens.
        assert view["texts"] <= observation.output_tokens <= 2 * view["texts"]
        assert observation.output_tokens >= 12
        if view["usage"] is not None:
            assert observation.input_tokens == view["usage"]["prompt_tokens"]
            assert observation.output_tokens == view["usage"]["completion_tokens"]
        # The sidecar sees the request after the client sent it and the first token before
        # the client gets it, so its TTFT is never longer; the hops between them cost a
        # few ms, tens on a machine as busy as these (loose bounds: this runs in CI).
        assert observation.ttft_ms <= view["ttft_ms"] + 1
        gaps.append(view["ttft_ms"] - observation.ttft_ms)
        client_tpot = view["span_ms"] / (observation.output_tokens - 1)
        assert observation.tpot_ms == pytest.approx(client_tpot, rel=0.25, abs=5)
    assert statistics.median(gaps) < 100  # ms: the hops, and the waits of a busy machine


def test_an_unstreamed_request_passes_with_its_usage_and_writes_nothing(
    stack: SidecarStack,
) -> None:
    before = len(stack.observations())
    body = {"model": MODEL, "prompt": text_of(60, 1), "max_tokens": 16}
    answer = httpx.post(f"{stack.sidecar_url}/v1/completions", json=body, timeout=60).json()
    assert answer["usage"]["prompt_tokens"] > 0
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")
    time.sleep(0.5)  # an observation, were one written, would be queued by now
    assert len(stack.observations()) == before


def _usage(stack: SidecarStack, path: str, body: dict[str, object]) -> dict[str, object]:
    body = {**body, "model": MODEL, "max_tokens": 1}
    response = httpx.post(stack.sidecar_url + path, json=body, timeout=60)
    assert response.status_code == 200
    return response.json()["usage"]


@pytest.mark.parametrize("chat", [False, True])
def test_prompt_token_estimate_learns_the_real_tokenizer(stack: SidecarStack, chat: bool) -> None:
    """The sidecar's estimate of a text prompt's tokens (characters times a learned ratio,
    chat apart), taught by the engine's ``usage.prompt_tokens`` as the proxy teaches it."""
    estimate = PromptTokenEstimate()
    errors = []
    for i in range(40):
        words = text_of(int(20 + 30 * (i % 7)), 100 + i)
        path = "/v1/chat/completions" if chat else "/v1/completions"
        body: dict[str, object] = (
            {"messages": [{"role": "user", "content": words}]} if chat else {"prompt": words}
        )
        plan = read_completion_request(json.dumps(body).encode(), chat=chat)
        assert plan is not None
        truth = _usage(stack, path, body)["prompt_tokens"]
        assert isinstance(truth, int)
        if i >= 20:  # judged once it has learned from 20 reports
            errors.append(abs(estimate.estimate(plan) - truth) / truth)
        estimate.learn(plan, truth)
    assert statistics.median(errors) < 0.15
    ids_plan = read_completion_request(b'{"prompt": [5, 6, 7, 8]}')
    assert ids_plan is not None and estimate.estimate(ids_plan) == 4  # ids: exact


def test_cached_tokens_are_reported_observed_and_become_features(stack: SidecarStack) -> None:
    shared = text_of(600, 7)
    seen = {o.observation_id for o in stack.observations()}
    bodies = [
        {
            "model": MODEL,
            "prompt": shared + tail,
            "stream": True,
            "max_tokens": 4,
            "min_tokens": 2,
            "stream_options": {"include_usage": True},
        }
        for tail in (" first", " second")
    ]
    views = [_stream(stack.sidecar_url, "/v1/completions", body) for body in bodies]
    cached = views[1]["usage"]["prompt_tokens_details"]["cached_tokens"]  # type: ignore[index]
    assert cached >= 0.8 * views[1]["usage"]["prompt_tokens"]  # type: ignore[index]
    assert wait_until(lambda: len(stack.observations()) - len(seen) >= 2, 15)
    second = max(
        (o for o in stack.observations() if o.observation_id not in seen),
        key=lambda o: o.timestamp,
    )
    assert second.prefix_cache_hit_tokens == cached
    row = build_features(RequestColumns.from_requests([second]))[0]
    names = {name: i for i, name in enumerate(FEATURE_NAMES)}
    assert row[names["prefix_hit_fraction"]] == pytest.approx(cached / second.input_tokens)
    assert row[names["log_uncached_tokens"]] < row[names["log_input_tokens"]]
