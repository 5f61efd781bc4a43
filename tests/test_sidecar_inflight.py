"""The sidecar's own count of work in flight, and its estimate of a prompt's tokens."""

from __future__ import annotations

import threading

import pytest

from latency_oracle.sidecar.completion_request import read_completion_request
from latency_oracle.sidecar.inflight import InflightCounter
from latency_oracle.sidecar.prompt_tokens import INITIAL_TOKENS_PER_CHAR, PromptTokenEstimate


def test_a_request_is_prefill_until_its_first_token_then_decode_until_it_finishes() -> None:
    counter = InflightCounter()
    assert counter.arrive("a", 1_000) == (0, 0)
    assert counter.arrive("b", 300) == (1_000, 0)  # what b found when it arrived
    assert (counter.prefill_tokens, counter.decode_tokens) == (1_300, 0)
    counter.first_token("a")
    assert (counter.prefill_tokens, counter.decode_tokens) == (300, 1_001)
    counter.tokens("a", 4)
    assert counter.arrive("c", 10) == (300, 1_005)
    counter.finish("a")
    counter.finish("b")  # hung up before its first token
    counter.finish("c")
    assert (counter.prefill_tokens, counter.decode_tokens, len(counter)) == (0, 0, 0)


def test_events_out_of_order_or_repeated_never_drive_counts_negative() -> None:
    counter = InflightCounter()
    counter.finish("never-arrived")
    counter.first_token("never-arrived")
    counter.tokens("never-arrived", 3)
    counter.arrive("a", 100)
    counter.arrive("a", 999)  # a repeated id is counted once
    counter.tokens("a", 5)  # no tokens before the first one
    counter.first_token("a")
    counter.first_token("a")
    counter.tokens("a", -7)
    assert (counter.prefill_tokens, counter.decode_tokens) == (0, 101)
    counter.finish("a")
    counter.finish("a")
    assert (counter.prefill_tokens, counter.decode_tokens, len(counter)) == (0, 0, 0)


def test_reported_cache_hits_net_the_backlog_by_their_recent_share() -> None:
    counter = InflightCounter()
    for i in range(200):  # requests that found 3/4 of their prompt cached
        counter.arrive(f"r{i}", 1_000)
        counter.first_token(f"r{i}", cached_tokens=750)
        counter.finish(f"r{i}", cached_tokens=0)  # reported once: the first report stands
    assert counter.hit_share == pytest.approx(0.75, abs=0.01)
    counter.arrive("new", 4_000)
    assert counter.prefill_tokens == pytest.approx(1_000, abs=40)
    counter.finish("new", cached_tokens=4_000)  # at the end, as vLLM reports them
    assert counter.prefill_tokens == 0
    assert counter.hit_share > 0.75


def test_counts_stay_exact_under_threads() -> None:
    counter = InflightCounter()

    def run(worker: int) -> None:
        for i in range(2_000):
            rid = f"{worker}-{i}"
            counter.arrive(rid, 7)
            counter.first_token(rid)
            counter.tokens(rid, 2)
            counter.finish(rid)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (counter.prefill_tokens, counter.decode_tokens, len(counter)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("body", "chat", "chars", "ids"),
    [
        (b'{"prompt": "hello world"}', False, 11, 0),
        (b'{"prompt": [1, 2, 3]}', False, 0, 3),
        (b'{"prompt": ["ab", "cde"]}', False, 5, 0),
        (b'{"prompt": [[1, 2], [3]]}', False, 0, 3),
        (b'{"messages": [{"role": "user", "content": "abcd"}]}', True, 4, 0),
        (
            b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "ab"},'
            b' {"type": "image_url", "image_url": {"url": "x"}}]}]}',
            True,
            2,
            0,
        ),
        (b'{"prompt": {"odd": true}}', False, 0, 0),
    ],
)
def test_the_prompt_is_measured_from_the_request(
    body: bytes, chat: bool, chars: int, ids: int
) -> None:
    plan = read_completion_request(body, chat=chat)
    assert plan is not None
    assert (plan.chat, plan.prompt_chars, plan.prompt_token_ids) == (chat, chars, ids)


def test_the_token_estimate_learns_the_engines_tokens_per_character() -> None:
    estimate = PromptTokenEstimate()
    text = read_completion_request(b'{"prompt": "' + b"x" * 1_000 + b'"}')
    chat = read_completion_request(b'{"messages": [{"content": "abcd"}]}', chat=True)
    ids = read_completion_request(b'{"prompt": [5, 6, 7]}')
    assert text is not None and chat is not None and ids is not None
    assert estimate.estimate(text) == round(1_000 * INITIAL_TOKENS_PER_CHAR)
    for _ in range(60):
        estimate.learn(text, 180)  # this engine: 0.18 tokens per character
    assert estimate.estimate(text) == pytest.approx(180, abs=2)
    assert estimate.tokens_per_char[True] == INITIAL_TOKENS_PER_CHAR  # chat learns apart
    assert estimate.estimate(ids) == 3  # ids are exact and teach nothing
    estimate.learn(ids, 3)
    assert estimate.estimate(text) == pytest.approx(180, abs=2)
