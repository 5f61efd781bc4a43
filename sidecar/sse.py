"""Timing an OpenAI-style server-sent-event stream as it passes through, byte for byte.

The meter sees every event as it arrives: it stamps the first and last events that carry
generated text (TTFT and TPOT come from those stamps, not from role-only or empty
chunks), counts them (in-flight decode work grows by one token per text-bearing choice:
an engine streams one token per chunk unless it speculates), keeps the final ``usage``
for token counts, and removes the usage-only chunk when the proxy asked for it on the
client's behalf. Every other event is forwarded with its original bytes, so the client
cannot tell the proxy is there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

_DELIMITERS = (b"\r\n\r\n", b"\n\n")


class StreamMeter:
    def __init__(
        self, strip_usage_chunk: bool, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.strip_usage_chunk = strip_usage_chunk
        self.clock = clock
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.usage: dict[str, Any] | None = None
        self.tokens = 0  # choices that carried generated text, over all events so far
        self.done = False
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of ``chunk`` to forward now: its complete events, minus a stripped one."""
        now = self.clock()
        buffer = self._pending + chunk
        forward = []
        start = 0
        while True:
            end, delimiter = _next_event_end(buffer, start)
            if end < 0:
                break
            stop = end + len(delimiter)
            if self._keep(buffer[start:end], now):
                forward.append(buffer[start:stop])
            start = stop
        self._pending = buffer[start:]
        return b"".join(forward)

    def tail(self) -> bytes:
        """Bytes after the last complete event, forwarded as they are when the stream ends."""
        rest, self._pending = self._pending, b""
        return rest

    def _keep(self, event: bytes, now: float) -> bool:
        payload = _event_data(event)
        if payload is None:
            return True
        if payload.strip() == b"[DONE]":
            self.done = True
            return True
        try:
            chunk = json.loads(payload)
        except ValueError:
            return True
        if not isinstance(chunk, dict):
            return True
        choices = chunk.get("choices")
        texts = sum(map(_has_text, choices)) if isinstance(choices, list) else 0
        if texts:
            if self.first_token_at is None:
                self.first_token_at = now
            self.last_token_at = now
            self.tokens += texts
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            return not (self.strip_usage_chunk and choices == [])
        return True


def _next_event_end(buffer: bytes, start: int) -> tuple[int, bytes]:
    best, found = -1, b""
    for delimiter in _DELIMITERS:
        index = buffer.find(delimiter, start)
        if index >= 0 and (best < 0 or index < best):
            best, found = index, delimiter
    return best, found


def _event_data(event: bytes) -> bytes | None:
    """The event's ``data`` field (multi-line data joined by newlines), None if it has none."""
    lines = [line for line in event.splitlines() if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[6:] if line[5:6] == b" " else line[5:] for line in lines)


def _has_text(choice: object) -> bool:
    if not isinstance(choice, dict):
        return False
    if choice.get("text"):
        return True
    delta = choice.get("delta")
    return isinstance(delta, dict) and bool(delta.get("content") or delta.get("reasoning_content"))
