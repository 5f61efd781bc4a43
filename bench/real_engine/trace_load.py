"""A production trace as real requests: its arrivals and prompt sizes, its clients' caps.

A window of the Azure code trace (``sim/traces.py``) is replayed with its arrival times
scaled to a target rate (the fleet's capacity, not Azure's). Each request keeps its
prompt size (a slice of the harness's corpus, as token ids) and the ``max_tokens`` its
client sends (``TraceRow.sent_cap``: the documented mix of ``sim/client_caps.py``). Its
answer ends at the model's EOS (the shaped EOS row of ``make_model.py``) or its cap:
the trace's own output length is never sent and never shown to a router.

Clients that send no cap use the chat API (vLLM's completions API would cap them at 16
tokens); the others send their prompt as token ids to the completions API. No request
carries a sampling seed: vLLM 0.32's CPU engine dies on the first seeded request ("CPU
Generator does not use offset"), so answers are sampled afresh in every run. The engines
serve 8,192 tokens of context: a prompt is cut so that it and its cap fit (the trace's
longest prompts lose their tail).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latency_oracle.sim.traces import TraceRow, read_trace
from real_engine.prompts import Corpus

CONTEXT_TOKENS = 8192
CHAT_TEMPLATE_TOKENS = 16  # what the chat template adds around a message, at most
MIN_PROMPT_TOKENS = 8


@dataclass(frozen=True)
class TraceRequest:
    """One request as its client sends it (and nothing a router may not know)."""

    index: int  # position in the trace
    arrival_s: float  # from the window's start, scaled
    corpus_start: int  # the prompt: corpus tokens [corpus_start, corpus_start + prompt_tokens)
    prompt_tokens: int
    max_tokens: int  # 0: the client sends none

    @property
    def chat(self) -> bool:
        return self.max_tokens == 0

    def body(self, corpus: Corpus, model: str) -> tuple[str, dict[str, object]]:
        """(path, JSON body) of the streamed request."""
        body: dict[str, object] = {
            "model": model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        stop = self.corpus_start + self.prompt_tokens
        if self.chat:
            text = corpus.text_of(self.corpus_start, stop)
            body["messages"] = [{"role": "user", "content": text}]
            return "/v1/chat/completions", body
        body["prompt"] = corpus.ids[self.corpus_start : stop].tolist()
        body["max_tokens"] = self.max_tokens
        return "/v1/completions", body


def window(rows: list[TraceRow], start: int, count: int) -> list[tuple[int, TraceRow]]:
    """``count`` rows from position ``start`` (wrapping around the trace), with positions."""
    return [((start + i) % len(rows), rows[(start + i) % len(rows)]) for i in range(count)]


def arrivals(rows: list[tuple[int, TraceRow]], rate: float) -> np.ndarray:
    """Arrival times (s from the first) with the window's gaps scaled to ``rate`` per s on
    average: the trace's burstiness kept, its level set by the fleet."""
    times = np.array([row.arrival for _, row in rows], dtype=float)
    # A wrapped window's first row after the wrap arrives at once (a negative gap).
    gaps = np.clip(np.diff(times, prepend=times[0]), 0.0, None)
    mean_gap = float(gaps[1:].mean()) if len(gaps) > 1 else 0.0
    if mean_gap <= 0:
        return np.arange(len(rows)) / rate
    return np.cumsum(gaps) / (mean_gap * rate)


def prompt_tokens(row: TraceRow, cap: int) -> int:
    """The trace's prompt size, cut so that it and the cap fit the engine's context."""
    room = CONTEXT_TOKENS - CHAT_TEMPLATE_TOKENS - (cap or 0) - 1
    return max(MIN_PROMPT_TOKENS, min(row.input_tokens, room))


def requests(
    trace: Path, corpus_tokens: int, start: int, count: int, rate: float, seed: int = 0
) -> list[TraceRequest]:
    """The window's requests: scaled arrivals, the clients' caps, corpus prompts."""
    rows = window(read_trace(trace), start, count)
    times = arrivals(rows, rate)
    out = []
    for (index, row), at in zip(rows, times, strict=True):
        cap = row.sent_cap(index, seed) or 0
        length = prompt_tokens(row, cap)
        rng = np.random.default_rng([seed, index])
        first = int(rng.integers(0, corpus_tokens - length))
        out.append(TraceRequest(index, float(at), first, length, cap))
    return out
