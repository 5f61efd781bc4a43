"""Deterministic stand-ins for a tokenizer and a model's output, for the HTTP engine.

A "token" is a whitespace-separated word cut into pieces of at most four characters
(close to the ~4 characters per token of English BPE). Prompts sent as token-id lists
count one token per id. Generated tokens are short words drawn deterministically from the
request's fingerprint, each exactly one token under the same rule, so a chat transcript
fed back as the next prompt tokenizes the way it was generated and shares its prefix.
Where an answer ends (its EOS) is the model's own business: ``AnswerLengths`` draws it
from a workload's output lengths, as a function of the prompt alone, so nothing a client
or router sends (``max_tokens`` included) tells it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

import numpy as np

CHARS_PER_TOKEN = 4
# Output words, each at most CHARS_PER_TOKEN characters: one token each.
_VOCABULARY = (
    "the of and to in is it for on was with as at by be this are or from an "
    "but not they he she we you all one had has can if do so up out more "
    "like into time only new see any some just than what when who will how "
    "its our"
)
_WORDS = tuple(_VOCABULARY.split())


def text_tokens(text: str) -> list[str]:
    """The pieces a prompt text counts as tokens."""
    return [
        word[i : i + CHARS_PER_TOKEN]
        for word in text.split()
        for i in range(0, len(word), CHARS_PER_TOKEN)
    ]


def chat_tokens(messages: Sequence[tuple[str, str]]) -> list[str]:
    """A chat's tokens: a role marker then the content of each (role, content) message."""
    tokens: list[str] = []
    for role, content in messages:
        tokens.append(f"<|{role}|>")
        tokens.extend(text_tokens(content))
    return tokens


def block_hashes(tokens: Sequence[str], block_size: int) -> tuple[bytes, ...]:
    """Chained hashes of the full blocks: block i's hash covers every token up to it."""
    hashes: list[bytes] = []
    previous = b""
    for start in range(0, len(tokens) - block_size + 1, block_size):
        piece = "\x1f".join(tokens[start : start + block_size]).encode()
        previous = hashlib.blake2b(previous + piece, digest_size=16).digest()
        hashes.append(previous)
    return tuple(hashes)


def fingerprint(content: object) -> str:
    """A stable digest of what defines a response (prompt, max_tokens, model)."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(canonical, digest_size=12).hexdigest()


def generated_token(digest: str, index: int) -> str:
    """The ``index``-th output token of the response with this fingerprint."""
    return " " + _WORDS[(int(digest[:8], 16) + 31 * index) % len(_WORDS)]


class AnswerLengths:
    """The length of the simulated model's answer to a prompt: the quantile, at a level
    hashed from the model and the prompt, of a workload's output lengths. Deterministic
    (the same prompt always gets the same answer) and distributed as the workload's."""

    def __init__(self, lengths: Iterable[int]) -> None:
        ordered = np.sort(np.fromiter(lengths, dtype=np.int64))
        if not len(ordered) or ordered[0] < 1:
            raise ValueError("answer lengths need at least one length, all >= 1")
        self._ordered = ordered

    def of(self, model: str, tokens: Sequence[str]) -> int:
        """Tokens the model generates for ``tokens`` before its EOS."""
        level = int(fingerprint([model, list(tokens)]), 16) / 16**24
        return int(self._ordered[int(level * len(self._ordered))])
