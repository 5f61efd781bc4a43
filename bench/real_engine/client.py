"""A streaming OpenAI client that measures what its user sees: the truth of each request.

TTFT is from sending the request to the first event carrying generated text; TPOT is the
time from that event to the last text event, over the tokens after the first (usage's
``completion_tokens``, which the client asked for). Times are ``time.perf_counter``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

CUT = "cut at the deadline"


@dataclass
class Measured:
    sent: float
    first_token: float | None = None
    last_token: float | None = None
    finished: float | None = None
    status: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    text_events: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200 and self.first_token is not None

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token is None else (self.first_token - self.sent) * 1e3

    @property
    def output_tokens(self) -> int:
        return int(self.usage.get("completion_tokens") or self.text_events)

    @property
    def tpot_ms(self) -> float | None:
        n = self.output_tokens
        if self.first_token is None or self.last_token is None or n < 2:
            return None
        # All tokens in one event (a byte-level token completing the next one's
        # character): no time between tokens was seen, so no TPOT (the sidecar agrees).
        span = self.last_token - self.first_token
        return span * 1e3 / (n - 1) if span > 0 else None

    @property
    def cached_tokens(self) -> int | None:
        details = self.usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens")
        return cached if isinstance(cached, int) else None


def _has_text(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta") or {}
    return bool(choice.get("text") or delta.get("content"))


async def stream(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    on_first_token: Callable[[], None] | None = None,
    deadline: float | None = None,
) -> Measured:
    """POST a streamed completion and time it; errors are recorded, never raised.

    ``deadline`` (a ``time.perf_counter`` time): the stream is cut there, its times so
    far kept, and ``error`` says it was cut (a run that ends does not wait for the tail).
    """
    measured = Measured(sent=time.perf_counter())
    try:
        async with asyncio.timeout_at(_loop_time(deadline)):
            await _read(client, url, body, measured, on_first_token)
    except TimeoutError:
        measured.error = CUT
    except (httpx.HTTPError, ValueError) as exc:
        measured.error = repr(exc)[:200]
    measured.finished = time.perf_counter()
    return measured


def _loop_time(deadline: float | None) -> float | None:
    """A ``perf_counter`` time on the event loop's clock."""
    if deadline is None:
        return None
    return asyncio.get_running_loop().time() + deadline - time.perf_counter()


async def _read(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    measured: Measured,
    on_first_token: Callable[[], None] | None,
) -> None:
    async with client.stream("POST", url, json=body) as response:
        measured.status = response.status_code
        if response.status_code != 200:
            measured.error = (await response.aread())[:200].decode(errors="replace")
            return
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            now = time.perf_counter()
            chunk = json.loads(line[6:])
            choices = chunk.get("choices") or []
            if any(_has_text(c) for c in choices):
                if measured.first_token is None and on_first_token is not None:
                    on_first_token()
                measured.first_token = measured.first_token or now
                measured.last_token = now
                measured.text_events += 1
            for choice in choices:
                measured.finish_reason = choice.get("finish_reason") or measured.finish_reason
            if chunk.get("usage"):
                measured.usage = chunk["usage"]
