"""The zoo's worlds: seeded, drifting where they say, their signal where they say it is,
and no request carrying its own answer length (issue 28's leak)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from zoo import WORLDS, generate
from zoo.signal import claims, importance
from zoo.world import Regime, World

from latency_oracle.sim.synthetic_stream import generate_stream

NEW_WORLDS = ("queue_counts", "chunked_steps", "batch_wait")
N = 4_000


@pytest.mark.parametrize("name", NEW_WORLDS)
def test_a_world_is_the_same_stream_under_the_same_seed(name: str) -> None:
    a, b, c = (
        generate(WORLDS[name], N, 7),
        generate(WORLDS[name], N, 7),
        generate(WORLDS[name], N, 8),
    )
    for field, values in a.fields.items():
        np.testing.assert_array_equal(values, b.fields[field])
    np.testing.assert_array_equal(a.ttft_ms, b.ttft_ms)
    np.testing.assert_array_equal(a.tpot_ms, b.tpot_ms)
    assert not np.array_equal(a.ttft_ms, c.ttft_ms)


def _undrifted(name: str) -> World:
    world = WORLDS[name]
    return replace(world, drift=replace(world.drift, to=Regime()))


@pytest.mark.parametrize("name", NEW_WORLDS)
def test_a_world_drifts_exactly_where_it_says(name: str) -> None:
    """Beside the same world without its drift (same seed, same draws), the stream is the
    same up to the drift point and far from it right after."""
    drifted, calm = generate(WORLDS[name], N, 2), generate(_undrifted(name), N, 2)
    at = drifted.drift_at
    assert at == N // 2
    np.testing.assert_array_equal(drifted.true_ttft_p90[:at], calm.true_ttft_p90[:at])
    ratio = drifted.true_ttft_p90[at : at + 1_000] / calm.true_ttft_p90[at : at + 1_000]
    assert np.median(ratio) > 1.5


def test_the_recurring_world_returns_exactly_to_its_first_regime() -> None:
    """2k blocks after the drift at 5,000: B, then A again (the undrifted world's very
    samples), then B."""
    drifted, calm = (
        generate(WORLDS["chunked_steps"], 10_000, 3),
        generate(_undrifted("chunked_steps"), 10_000, 3),
    )
    ratio = drifted.true_ttft_p90 / calm.true_ttft_p90
    assert np.median(ratio[5_000:7_000]) > 2.0 and np.median(ratio[9_000:]) > 2.0
    np.testing.assert_array_equal(ratio[:5_000], 1.0)
    np.testing.assert_array_equal(ratio[7_000:9_000], 1.0)


def test_chunked_ttft_jumps_by_a_step_at_each_chunk_boundary() -> None:
    from zoo.laws import PodState, chunked_ttft, decode_step_ms

    ahead = np.array([2_040.0, 2_056.0, 4_090.0, 4_100.0])
    state = PodState(
        own_tokens=ahead,
        queued_tokens=np.zeros(4),
        waiting=np.zeros(4),
        running=np.full(4, 40.0),
        context_tokens=np.full(4, 40_000.0),
        prompt_mean=np.full(4, 1_000.0),
        output_mean=np.full(4, 200.0),
        chunk_tokens=np.full(4, 2_048.0),
        max_batch=64,
        per_request_ms=20.0,
    )
    ttft = chunked_ttft(state)
    step = float(decode_step_ms(np.array([40.0]), np.array([40_000.0]))[0])
    # 16 tokens across a boundary cost a whole decode step; 10 tokens within one, almost nothing.
    assert ttft[1] - ttft[0] == pytest.approx(step, rel=0.05)
    assert ttft[3] - ttft[2] == pytest.approx(step, rel=0.05)
    assert ttft[0] < ttft[1] < ttft[2] < ttft[3]


@pytest.mark.parametrize("name", NEW_WORLDS)  # the others: python -m zoo.signal
def test_documented_signal_carries_signal_and_documented_noise_none(name: str) -> None:
    """Each world's ``ttft_signal`` / ``tpot_signal`` / ``noise`` (docs/accuracy.md's table),
    held to zoo.signal's measure before the drift: a signal field says something alone or
    the forest leans on it; a noise field neither."""
    world = WORLDS[name]
    stream = generate(world, N, 1)
    rng = np.random.default_rng(0)
    before = slice(0, stream.drift_at)
    for target, signal in (("ttft", world.ttft_signal), ("tpot", world.tpot_signal)):
        found = importance(stream, target, before, rng, "before")
        for field in signal:
            assert found.alone[field] < 0.9 or found.shuffled[field] > 1.1, (target, field, found)
        for field in world.noise:
            assert found.alone[field] > 0.95 and found.shuffled[field] < 1.2, (
                target,
                field,
                found,
            )


def test_new_worlds_speak_llmds_in_flight_language() -> None:
    """llm-d's prefill count: words of every prompt on the pod, decoding ones included."""
    stream = generate(WORLDS["batch_wait"], N, 1)
    f = stream.fields
    assert np.all(f["decode_tokens_in_flight"] == 0)
    # Words, not tokens: about 0.75 a token.
    assert 0.7 < np.median(f["input_words"] / f["input_tokens"]) < 0.8
    # Running prompts count too: a pod with no one waiting still has words in flight.
    idle_queue = (f["waiting_requests"] == 0) & (f["running_requests"] > 10)
    assert np.all(f["prefill_tokens_in_flight"][idle_queue] > 0)


@pytest.mark.parametrize("name", list(WORLDS))
def test_no_zoo_request_carries_its_own_answer_length(name: str) -> None:
    """Two streams with the same clients but different true answer lengths report the same
    arrival fields: nothing a router or a learner sees at prediction time knows them."""
    a, b = generate(WORLDS[name], 2_000, 5), generate(WORLDS[name], 2_000, 5, answers_seed=6)
    assert not np.array_equal(a.fields["output_tokens"], b.fields["output_tokens"])
    for field in a.fields.keys() - {"output_tokens"}:
        np.testing.assert_array_equal(a.fields[field], b.fields[field], err_msg=field)
    np.testing.assert_array_equal(a.true_ttft_p90, b.true_ttft_p90)
    # Caps are the clients' mix, and answers stop at them.
    capped = a.fields["max_tokens"] > 0
    assert 0.3 < capped.mean() < 0.9  # 65% of clients cap, 64 clients
    assert np.all(a.fields["output_tokens"][capped] <= a.fields["max_tokens"][capped])


def test_no_synthetic_request_carries_its_own_answer_length() -> None:
    a = generate_stream(600, seed=4)
    b = generate_stream(600, seed=4, output_log_mean=5.5)
    outcome = {"output_tokens", "ttft_ms", "tpot_ms", "timestamp"}  # timestamp: when made
    assert [o.output_tokens for o in a.observations] != [o.output_tokens for o in b.observations]
    for x, y in zip(a.observations, b.observations, strict=True):
        assert x.model_dump(exclude=outcome) == y.model_dump(exclude=outcome)
    assert all(o.max_tokens == 0 or o.output_tokens <= o.max_tokens for o in a.observations)


def test_the_docs_list_what_every_world_claims() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs" / "accuracy.md"
    assert claims() in docs.read_text()
