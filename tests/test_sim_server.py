"""The simulated engine over HTTP: a real ``latency-oracle sim-engine`` process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from polling import wait_until
from prometheus_client.parser import text_string_to_metric_families
from sim_support import SimEngineProcess, sim_engine_process

from latency_oracle.sim.traces import azure_trace, read_trace

MODEL = "Llama-2-7b-hf"


@pytest.fixture(scope="module")
def engine() -> Iterator[SimEngineProcess]:
    with sim_engine_process("H100", speed=1.0) as process:
        yield process


def _events(body: bytes) -> list[str]:
    assert body.endswith(b"\n\n")
    events = body.decode().split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events)
    return [e.removeprefix("data: ") for e in events]


def _metrics(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("model_name") == MODEL and "le" not in sample.labels
    }


def test_completion_streams_valid_sse_with_usage(engine: SimEngineProcess) -> None:
    # Words cut into pieces of at most 4 characters: 1 + 1 + 1 + 1 + 2 = 6 tokens.
    body = {"prompt": "a bb ccc dddd eeeee", "max_tokens": 7, "stream": True}
    with_usage = {**body, "stream_options": {"include_usage": True}}
    raw = httpx.post(f"{engine.url}/v1/completions", json=with_usage, timeout=10).content
    events = _events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    texts = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    assert len(texts) == 7 and all(t.startswith(" ") for t in texts)
    assert [c["choices"][0]["finish_reason"] for c in chunks[:7]] == [None] * 6 + ["length"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 6, "completion_tokens": 7, "total_tokens": 13}
    plain = httpx.post(f"{engine.url}/v1/completions", json=body, timeout=10).content
    assert b"usage" not in plain
    assert _events(plain) == [*events[:-2], "[DONE]"]  # the same minus the usage chunk


def test_identical_requests_get_identical_bytes(engine: SimEngineProcess) -> None:
    body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5, "stream": True}
    calls = [
        httpx.post(f"{engine.url}/v1/chat/completions", json=body, timeout=10).content
        for _ in range(2)
    ]
    assert calls[0] == calls[1]
    chunks = [json.loads(e) for e in _events(calls[0])[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) == 5


def test_non_streaming_answers_carry_text_and_usage(engine: SimEngineProcess) -> None:
    answer = httpx.post(
        f"{engine.url}/v1/completions", json={"prompt": list(range(40)), "max_tokens": 3}
    ).json()
    assert answer["usage"] == {"prompt_tokens": 40, "completion_tokens": 3, "total_tokens": 43}
    assert len(answer["choices"][0]["text"].split()) == 3
    models = httpx.get(f"{engine.url}/v1/models").json()
    assert models["data"][0]["id"] == MODEL


def test_answers_end_at_the_models_eos_or_the_cap(engine: SimEngineProcess) -> None:
    """The engine ends each answer where its model would (a length drawn from the Azure
    code trace's outputs by the prompt alone), unless the cap comes first."""
    lengths = sorted(r.output_tokens for r in read_trace(azure_trace()))
    usages = []
    for i in range(16):
        body = {"prompt": f"question {i} " * 20, "max_tokens": 200}
        answer = httpx.post(f"{engine.url}/v1/completions", json=body, timeout=30).json()
        usages.append((answer["usage"]["completion_tokens"], answer["choices"][0]))
        again = httpx.post(f"{engine.url}/v1/completions", json=body, timeout=30).json()
        assert again["usage"] == answer["usage"]  # the same prompt, the same answer
    assert all(c["finish_reason"] == ("stop" if n < 200 else "length") for n, c in usages)
    assert len({n for n, _ in usages}) > 5 and all(lengths[0] <= n <= 200 for n, _ in usages)
    eos = usages[0][0]
    body = {"prompt": "question 0 " * 20, "max_tokens": eos - 1}
    cut = httpx.post(f"{engine.url}/v1/completions", json=body, timeout=30).json()
    assert cut["usage"]["completion_tokens"] == eos - 1
    assert cut["choices"][0]["finish_reason"] == "length"
    forced = httpx.post(
        f"{engine.url}/v1/completions",
        json={**body, "max_tokens": 2 * eos, "ignore_eos": True},
        timeout=30,
    ).json()
    assert forced["usage"]["completion_tokens"] == 2 * eos
    default = httpx.post(f"{engine.url}/v1/completions", json={"prompt": "question 0 " * 20})
    assert default.json()["usage"]["completion_tokens"] == min(eos, 16)  # vLLM's default cap


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"prompt": "x", "max_tokens": 0}, 422, "max_tokens"),
        ({"max_tokens": 3}, 422, "prompt"),
        ({"prompt": "x", "max_tokens": 9_000_000}, 400, "max_tokens"),
        ({"prompt": "   ", "max_tokens": 3}, 400, "prompt"),
        ({"prompt": "x", "model": "other"}, 404, "model"),
    ],
)
def test_bad_requests_get_4xx_naming_the_field(
    engine: SimEngineProcess, body: dict[str, object], status: int, field: str
) -> None:
    response = httpx.post(f"{engine.url}/v1/completions", json=body)
    assert response.status_code == status
    assert field in response.text


def test_metrics_parse_and_follow_load_and_disconnects(engine: SimEngineProcess) -> None:
    prompt = "a shared prompt " * 40  # 200 tokens: 12 full blocks of 16
    long = {"prompt": prompt, "max_tokens": 5_000, "ignore_eos": True, "stream": True}
    before = _metrics(engine.url)
    httpx.post(f"{engine.url}/v1/completions", json={"prompt": prompt, "max_tokens": 1})
    with ExitStack() as streams, httpx.Client(timeout=30) as client:
        for _ in range(6):
            streams.enter_context(client.stream("POST", f"{engine.url}/v1/completions", json=long))
        assert wait_until(
            lambda: _metrics(engine.url)["vllm:num_requests_running"] == 6, timeout_s=10
        )
        loaded = _metrics(engine.url)
        assert 0 < loaded["vllm:kv_cache_usage_perc"] == loaded["vllm:gpu_cache_usage_perc"]
    # The clients went away: the engine aborts their requests.
    assert wait_until(lambda: _metrics(engine.url)["vllm:num_requests_running"] == 0, 10)
    after = _metrics(engine.url)
    assert after["vllm:kv_cache_usage_perc"] == 0
    queries = after["vllm:prefix_cache_queries_total"] - before["vllm:prefix_cache_queries_total"]
    hits = after["vllm:prefix_cache_hits_total"] - before["vllm:prefix_cache_hits_total"]
    assert queries == 7 * 200 and hits == 6 * 192  # the six reuse the first's blocks


def test_a_killed_engine_breaks_the_stream() -> None:
    body = {"prompt": "hello", "max_tokens": 5_000, "stream": True}
    with (
        sim_engine_process("A100") as process,
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{process.url}/v1/completions", json=body) as response,
    ):
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        process.kill()
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in lines:
                pass
