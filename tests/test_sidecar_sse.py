"""The stream meter times content tokens, reads usage and strips only the injected chunk."""

from __future__ import annotations

import json
from collections.abc import Iterator

from latency_oracle.sidecar.completion_request import read_completion_request
from latency_oracle.sidecar.sse import StreamMeter


def _event(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


ROLE = _event({"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
HELLO = _event({"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hello"}}]})
EMPTY = _event({"id": "c1", "choices": [{"index": 0, "delta": {"content": ""}}]})
WORLD = _event({"id": "c1", "choices": [{"index": 0, "delta": {"content": " world"}}]})
FINISH = _event({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
USAGE = _event(
    {
        "id": "c1",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    }
)
DONE = b"data: [DONE]\n\n"
STREAM = [ROLE, HELLO, EMPTY, WORLD, FINISH, USAGE, DONE]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _split_everywhere(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _run(meter: StreamMeter, chunks: list[bytes], clock: _Clock) -> bytes:
    out = []
    for i, chunk in enumerate(chunks):
        clock.now = float(i)
        out.append(meter.feed(chunk))
    out.append(meter.tail())
    return b"".join(out)


def test_injected_usage_chunk_is_removed_and_everything_else_is_byte_identical() -> None:
    clock = _Clock()
    meter = StreamMeter(strip_usage_chunk=True, clock=clock)
    forwarded = _run(meter, STREAM, clock)
    assert forwarded == b"".join(s for s in STREAM if s is not USAGE)
    assert meter.usage == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    assert (meter.first_token_at, meter.last_token_at) == (1.0, 3.0)  # role/empty: no token
    assert meter.tokens == 2  # generated tokens seen so far: the in-flight decode count
    assert meter.done


def test_usage_the_client_asked_for_is_kept() -> None:
    clock = _Clock()
    meter = StreamMeter(strip_usage_chunk=False, clock=clock)
    assert _run(meter, STREAM, clock) == b"".join(STREAM)
    assert meter.usage is not None


def test_events_split_across_reads_are_reassembled_without_changing_bytes() -> None:
    whole = b"".join(STREAM).replace(b"\n\n", b"\r\n\r\n")
    expected = whole.replace(USAGE.replace(b"\n\n", b"\r\n\r\n"), b"")
    for size in (1, 7, 64):
        clock = _Clock()
        meter = StreamMeter(strip_usage_chunk=True, clock=clock)
        assert _run(meter, list(_split_everywhere(whole, size)), clock) == expected
        assert meter.usage is not None and meter.done


def test_completions_text_counts_and_non_json_events_pass_through() -> None:
    clock = _Clock()
    meter = StreamMeter(strip_usage_chunk=True, clock=clock)
    chunks = [
        b": keep-alive comment\n\n",
        _event({"choices": [{"index": 0, "text": ""}]}),
        _event({"choices": [{"index": 0, "text": "a"}]}),
        b"event: odd\ndata: not json\n\n",
        b"data: [DONE]\n\ntrailing-bytes",
    ]
    assert _run(meter, chunks, clock) == b"".join(chunks)
    assert (meter.first_token_at, meter.last_token_at) == (2.0, 2.0)
    assert meter.tokens == 1


def test_stream_request_gets_usage_requested_on_its_behalf() -> None:
    body = json.dumps({"model": "m", "stream": True, "max_tokens": 64, "prompt": "x"}).encode()
    plan = read_completion_request(body)
    assert plan is not None and plan.streamed and plan.strip_usage_chunk
    assert plan.max_tokens == 64 and plan.single_choice
    assert json.loads(plan.upstream_body)["stream_options"] == {"include_usage": True}


def test_usage_is_asked_for_without_rewriting_the_rest_or_losing_other_options() -> None:
    body = '  {"stream": true, "prompt": "caf\u00e9 \\u00e9", "n": 1}'.encode()
    plan = read_completion_request(body)
    assert plan is not None and plan.strip_usage_chunk
    assert plan.upstream_body == b'{"stream_options":{"include_usage":true},' + body.strip()[1:]
    for options, sent in (
        ("null", {"include_usage": True}),
        ('{"x": 1}', {"x": 1, "include_usage": True}),
    ):
        plan = read_completion_request(f'{{"stream": true, "stream_options": {options}}}'.encode())
        assert plan is not None and json.loads(plan.upstream_body)["stream_options"] == sent


def test_request_that_asked_for_usage_goes_upstream_unchanged() -> None:
    body = b'{"stream": true, "stream_options": {"include_usage": true}, "n": 2}'
    plan = read_completion_request(body)
    assert plan is not None and not plan.strip_usage_chunk and not plan.single_choice
    assert plan.upstream_body == body


def test_unreadable_requests_pass_through_unmeasured() -> None:
    assert read_completion_request(b"not json") is None
    assert read_completion_request(b"[1, 2]") is None
    assert read_completion_request(b'{"stream": true, "stream_options": 3}') is None
    plan = read_completion_request(b'{"max_tokens": "12", "max_completion_tokens": 5}')
    assert plan is not None and not plan.streamed and plan.max_tokens == 5
