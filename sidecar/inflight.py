"""In-flight work a sidecar counts itself, since no engine exports it.

The sidecar proxies every request to its engine, so it knows each request's prompt
length, when its first token came out and how many tokens it has streamed since. From
that it keeps two sums per pod: prompt tokens still awaiting their first token (the
prefill backlog, net of prefix-cache hits once the engine reports them) and the context
of requests in decode (prompt plus generated so far). A request that goes around the
sidecar is invisible to it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(slots=True)
class _Request:
    prompt_tokens: int
    prefill: int  # what it adds to the prefill backlog now (0 once in decode)
    decode: int  # what it adds to the decode context now (0 until its first token)


class InflightCounter:
    """Prefill backlog and decode context of the requests in flight through one sidecar."""

    def __init__(self) -> None:
        self._requests: dict[str, _Request] = {}
        self._prefill = 0
        self._decode = 0
        self._lock = threading.Lock()

    def arrive(self, request_id: str, prompt_tokens: int) -> tuple[int, int]:
        """Count a new request; returns (prefill, decode) tokens as they were before it."""
        prompt = max(int(prompt_tokens), 0)
        with self._lock:
            before = (self._prefill, self._decode)
            if request_id not in self._requests:
                self._requests[request_id] = _Request(prompt, prompt, 0)
                self._prefill += prompt
            return before

    def first_token(self, request_id: str, cached_tokens: int | None = None) -> None:
        """The request left prefill; its context now counts as decode work."""
        with self._lock:
            request = self._requests.get(request_id)
            if request is None or request.decode:
                return
            self._prefill -= request.prefill
            request.prefill = 0
            request.decode = request.prompt_tokens + 1
            self._decode += request.decode

    def tokens(self, request_id: str, n: int = 1) -> None:
        """``n`` more tokens streamed for a request in decode."""
        with self._lock:
            request = self._requests.get(request_id)
            if request is None or not request.decode or n <= 0:
                return
            request.decode += n
            self._decode += n

    def finish(self, request_id: str) -> None:
        """The request ended (done, failed or hung up): it counts no more."""
        with self._lock:
            request = self._requests.pop(request_id, None)
            if request is not None:
                self._prefill -= request.prefill
                self._decode -= request.decode

    @property
    def prefill_tokens(self) -> int:
        return self._prefill

    @property
    def decode_tokens(self) -> int:
        return self._decode
