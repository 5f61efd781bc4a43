"""Prompt tokens from what a caller can count: characters or words, learned per served model.

Gateways and llm-d's endpoint picker do not tokenize: they know a prompt's characters or
its whitespace-separated words (llm-d's ``input_token_length`` is a word count). The
models learn in tokens. The sidecar reports, for every finished request whose prompt
was text, the engine's ``usage.prompt_tokens`` beside the prompt's characters and words
(``Observation.prompt_chars``, ``prompt_words``), so the tokens per character and per
word of each served model are learned here, and a caller's count is converted with
them.

The state is four decayed sums per served model (and the fleet's): tokens and characters
over the records that carried characters, tokens and words over those that carried
words. The ratio of sums weights long prompts as their tokens do. A served model borrows
``PRIOR_UNITS`` of its parent's ratio (the fleet's, whose parent is ``DEFAULT_TOKENS_PER``,
typical of English BPE tokenizers), so a new model converts sensibly from its first
request and follows its own tokenizer within a few prompts. The sums live in the served
model's ``LengthCounts`` (``models.output_length``) and travel with them in snapshots
and checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

from latency_oracle.features.schema import MAX_TOKENS, Observation

__all__ = [
    "DEFAULT_TOKENS_PER",
    "PromptUnit",
    "empty_sums",
    "learn_sums",
    "to_tokens",
    "tokens_per",
]


class PromptUnit(StrEnum):
    """The unit a caller gives a prompt's size in: the request field that carries it."""

    TOKENS = "input_tokens"
    CHARS = "prompt_chars"
    WORDS = "prompt_words"


DEFAULT_TOKENS_PER = {PromptUnit.CHARS: 0.25, PromptUnit.WORDS: 1.33}
# Pseudo-units of the parent's ratio a served model starts from: about two prompts' worth.
PRIOR_UNITS = {PromptUnit.CHARS: 2_000.0, PromptUnit.WORDS: 400.0}
WINDOW = 2_000.0  # records over which the sums decay by 1/e: a tokenizer change is followed
# Positions in the sums: (tokens, units) of each unit's records.
_SLOTS = {PromptUnit.CHARS: (0, 1), PromptUnit.WORDS: (2, 3)}


def empty_sums() -> np.ndarray:
    return np.zeros(4)


def learn_sums(sums: np.ndarray, observations: Sequence[Observation]) -> None:
    """Add finished text prompts' tokens beside their characters and words (in place)."""
    for unit, field in ((PromptUnit.CHARS, "prompt_chars"), (PromptUnit.WORDS, "prompt_words")):
        pairs = [
            (o.input_tokens, getattr(o, field))
            for o in observations
            if o.finished and getattr(o, field) and o.input_tokens
        ]
        if not pairs:
            continue
        tokens_at, units_at = _SLOTS[unit]
        sums[[tokens_at, units_at]] *= (1.0 - 1.0 / WINDOW) ** len(pairs)
        sums[tokens_at] += sum(t for t, _ in pairs)
        sums[units_at] += sum(u for _, u in pairs)


def tokens_per(sums: np.ndarray, unit: PromptUnit, parent: float | None = None) -> float:
    """Tokens per ``unit`` learned in ``sums``, shrunk towards ``parent`` (default: the
    typical tokenizer's); 1 for tokens."""
    if unit == PromptUnit.TOKENS:
        return 1.0
    prior = DEFAULT_TOKENS_PER[unit] if parent is None else parent
    tokens_at, units_at = _SLOTS[unit]
    weight = PRIOR_UNITS[unit]
    return float((sums[tokens_at] + weight * prior) / (sums[units_at] + weight))


def to_tokens(amount: int, ratio: float) -> int:
    """A caller's count in tokens: at least one for a non-empty prompt, within bounds."""
    if amount <= 0:
        return 0
    return int(min(max(round(amount * ratio), 1), MAX_TOKENS))
