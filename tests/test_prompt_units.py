"""Callers that do not tokenize: prompt sizes in characters or words, converted with the
tokens per unit learned per served model from the sidecar's reports."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latency_oracle.features.schema import Observation
from latency_oracle.models.output_length import OutputLengths
from latency_oracle.models.prompt_units import DEFAULT_TOKENS_PER, PromptUnit
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.llmd.bodies import request_columns
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sidecar.completion_request import prompt_words, read_completion_request

REQUEST = {"accelerator": "H100", "model": "tiny", "running_requests": 2, "kv_cache_usage": 0.2}


def _finished(model: str, tokens: int, chars: int, words: int) -> Observation:
    return Observation(
        accelerator="H100",
        model=model,
        input_tokens=tokens,
        output_tokens=20,
        ttft_ms=50.0,
        tpot_ms=5.0,
        prompt_chars=chars,
        prompt_words=words,
    )


def test_ratios_are_learned_per_served_model_from_finished_text_prompts() -> None:
    lengths = OutputLengths()
    assert lengths.tokens_per("tiny", PromptUnit.CHARS) == DEFAULT_TOKENS_PER[PromptUnit.CHARS]
    first_token = _finished("tiny", 999, 10, 2).model_copy(update={"finished": False})
    lengths.learn([_finished("tiny", 500, 3_000, 400) for _ in range(50)] + [first_token])
    lengths.learn([_finished("big", 900, 3_000, 600) for _ in range(50)])
    assert lengths.tokens_per("tiny", PromptUnit.CHARS) == pytest.approx(1 / 6, rel=0.02)
    assert lengths.tokens_per("tiny", PromptUnit.WORDS) == pytest.approx(1.25, rel=0.02)
    assert lengths.tokens_per("big", PromptUnit.WORDS) == pytest.approx(1.5, rel=0.02)
    # A model never seen converts at the fleet's ratio, between the two.
    assert 1.25 < lengths.tokens_per("new", PromptUnit.WORDS) < 1.5
    restored = OutputLengths()
    exported = lengths.export()
    assert exported is not None
    restored.restore(exported)
    assert restored.tokens_per("big", PromptUnit.CHARS) == lengths.tokens_per(
        "big", PromptUnit.CHARS
    )


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[TestClient, OracleService]]:
    """A predictor app and its service."""
    service = OracleService(settings)
    with TestClient(create_app(settings, service)) as client:
        yield client, service


def test_a_prediction_in_characters_or_words_is_the_prediction_in_tokens(
    served: tuple[TestClient, OracleService],
) -> None:
    client, service = served
    body = [_finished("tiny", 500, 2_500, 400).model_dump(mode="json") for _ in range(200)]
    for i, record in enumerate(body):
        record["observation_id"] = f"units-{i}"
    assert client.post("/v1/observations", json=body).status_code == 202
    assert service.wait_learned(200, timeout_s=20)
    chars_ratio = service.models.output_lengths.tokens_per("tiny", PromptUnit.CHARS)
    words_ratio = service.models.output_lengths.tokens_per("tiny", PromptUnit.WORDS)
    assert chars_ratio == pytest.approx(0.2, rel=1e-3)
    assert words_ratio == pytest.approx(1.25, rel=1e-3)

    def ttft(**size: int) -> dict[str, float]:
        return client.post("/v1/predictions", json=REQUEST | size).json()["ttft_ms"]

    assert ttft(prompt_chars=10_000) == ttft(input_tokens=round(10_000 * chars_ratio))
    assert ttft(prompt_words=1_600) == ttft(input_tokens=round(1_600 * words_ratio))


@pytest.mark.parametrize(
    ("size", "field"),
    [
        ({}, "input_tokens"),
        ({"input_tokens": 10, "prompt_chars": 40}, "prompt_chars"),
        ({"prompt_chars": 40, "prompt_words": 8}, "prompt_words"),
        ({"prompt_words": -1}, "prompt_words"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/predictions", "/v1/route"])
def test_none_or_several_prompt_sizes_are_a_422_naming_the_field(
    served: tuple[TestClient, OracleService], path: str, size: dict[str, int], field: str
) -> None:
    client, _ = served
    body = REQUEST | size if path == "/v1/predictions" else {"model": "tiny", **size}
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert any(field in error["loc"] for error in response.json()["detail"])


def test_route_takes_characters(served: tuple[TestClient, OracleService]) -> None:
    client, _ = served
    pod = {"pod": "p", "accelerator": "H100", "running_requests": 1, "kv_cache_usage": 0.1}
    response = client.post("/v1/route", json={"prompt_chars": 4_000, "pods": [pod]})
    assert response.status_code == 200, response.text
    assert response.json()["decision"] == "place"


def test_llmd_word_counts_become_tokens() -> None:
    row = {
        "kv_cache_percentage": 0.1,
        "input_token_length": 300,
        "num_request_waiting": 0,
        "num_request_running": 1,
        "num_tokens_generated": 0,
        "prefix_cache_score": 0.5,
        "prefill_tokens_in_flight": 1_000,
    }
    words = request_columns([row], "H100", tokens_per_word=1.5)
    tokens = request_columns([row], "H100")
    assert np.array_equal(words.input_tokens, [450.0]) and np.array_equal(
        tokens.input_tokens, [300]
    )
    assert np.array_equal(words.cached_tokens, 0.5 * words.input_tokens)


def test_the_sidecar_counts_characters_and_words_of_text_prompts() -> None:
    chat = b'{"messages":[{"role":"user","content":"one two  three\\nfour"}],"stream":true}'
    plan = read_completion_request(chat, chat=True)
    assert plan is not None and (plan.prompt_chars, prompt_words(plan.prompt)) == (19, 4)
    ids = read_completion_request(b'{"prompt":[1,2,3],"stream":true}')
    assert ids is not None and prompt_words(ids.prompt) == 0
