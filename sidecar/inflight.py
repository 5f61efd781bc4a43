"""Work in flight on one engine, counted from the requests that pass the counter.

No engine exports how many prompt tokens are waiting for their prefill or how many tokens
its running requests hold (vLLM exports request counts, KV usage and cache counters), yet
those are what a request's TTFT depends on. Whoever sees every request of a pod (its
sidecar, or the cluster simulator standing in for one) can count them: a request's prompt
is prefill backlog from its arrival to its first token, then it is decode work (prompt
plus tokens generated so far) until it finishes.

Prefix-cache hits make part of a prompt free. vLLM reports a request's cached tokens
(``usage.prompt_tokens_details.cached_tokens``, with ``--enable-prompt-tokens-details``)
only in the final usage chunk, after the request has left the backlog, so the backlog
cannot be netted request by request. It is netted by expectation instead: the share of
prompt tokens that recent requests found cached (a decaying average over requests),
times the prompts waiting now. Without any report the share stays 0 and the backlog is gross.

All methods are short and never block or await, so they are atomic on an event loop; a
lock makes them safe from threads as well (the simulator or a threaded server).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# Weight of the newest report in the hit share: about the last 20 reports count.
HIT_SHARE_DECAY = 0.05


@dataclass(slots=True)
class _Request:
    prompt_tokens: int
    generated: int = 0
    decoding: bool = False
    hits_reported: bool = False


class InflightCounter:
    """Prefill backlog and decode tokens of the requests between arrival and finish.

    One per engine: the sidecar calls ``arrive`` when a request comes in, ``first_token``
    and ``tokens`` as its stream goes out, and ``finish`` when it ends however it ends;
    ``prefill_tokens`` and ``decode_tokens`` are published with the pod's state.

    Examples
    --------
    >>> from latency_oracle.sidecar import InflightCounter
    >>> counter = InflightCounter()
    >>> counter.arrive("a", prompt_tokens=1000)  # what it found: nothing in flight
    (0, 0)
    >>> counter.arrive("b", prompt_tokens=200)
    (1000, 0)
    >>> counter.first_token("a", cached_tokens=0)  # a's prompt moves to decode
    >>> counter.tokens("a", 9)
    >>> counter.prefill_tokens, counter.decode_tokens, len(counter)
    (200, 1010, 2)
    >>> counter.finish("a")
    >>> counter.finish("b")
    >>> counter.prefill_tokens, counter.decode_tokens, len(counter)
    (0, 0, 0)
    """

    def __init__(self) -> None:
        self._requests: dict[str, _Request] = {}
        self._waiting_prompt = 0  # gross prompt tokens awaiting their first token
        self._decode = 0
        self._hit_share = 0.0
        self._lock = threading.Lock()

    @property
    def prefill_tokens(self) -> int:
        """Prompt tokens awaiting their first token, net of expected prefix-cache hits."""
        return max(round(self._waiting_prompt * (1.0 - self._hit_share)), 0)

    @property
    def decode_tokens(self) -> int:
        """Prompt plus generated tokens of the requests in decode."""
        return max(self._decode, 0)

    @property
    def hit_share(self) -> float:
        """Share of prompt tokens recent requests found in the prefix cache (0 unknown)."""
        return self._hit_share

    def __len__(self) -> int:
        return len(self._requests)

    def arrive(self, request_id: str, prompt_tokens: int) -> tuple[int, int]:
        """Count a new request; the (prefill, decode) tokens it found on arrival.

        A repeated id is counted once (the first arrival stands).

        Parameters
        ----------
        request_id
            The request's id, unique while it is in flight.
        prompt_tokens
            Its prompt's length in tokens (gross: cache hits are netted by expectation).

        Returns
        -------
        tuple of int
            The prefill backlog and decode tokens in flight before it: the state the
            request arrived into, what its observation records.
        """
        with self._lock:
            seen = (self.prefill_tokens, self.decode_tokens)
            if request_id not in self._requests:
                prompt = max(int(prompt_tokens), 0)
                self._requests[request_id] = _Request(prompt)
                self._waiting_prompt += prompt
            return seen

    def first_token(self, request_id: str, cached_tokens: int | None = None) -> None:
        """The request's first token: its prompt moves from the backlog to decode."""
        with self._lock:
            request = self._requests.get(request_id)
            if request is None or request.decoding:
                return
            request.decoding = True
            request.generated = 1
            self._waiting_prompt -= request.prompt_tokens
            self._decode += request.prompt_tokens + 1
            self._learn_hits(request, cached_tokens)

    def tokens(self, request_id: str, n: int = 1) -> None:
        """``n`` more generated tokens of a request in decode."""
        with self._lock:
            request = self._requests.get(request_id)
            if request is None or not request.decoding or n <= 0:
                return
            request.generated += n
            self._decode += n

    def finish(self, request_id: str, cached_tokens: int | None = None) -> None:
        """The request is over (done, failed or hung up); unknown ids are ignored.

        ``cached_tokens``, when the engine reported them at the end (vLLM's final usage),
        teach the expected hit share if the first token did not bring them.
        """
        with self._lock:
            request = self._requests.pop(request_id, None)
            if request is None:
                return
            if request.decoding:
                self._decode -= request.prompt_tokens + request.generated
            else:
                self._waiting_prompt -= request.prompt_tokens
            self._learn_hits(request, cached_tokens)

    def _learn_hits(self, request: _Request, cached_tokens: int | None) -> None:
        if cached_tokens is None or request.hits_reported or request.prompt_tokens <= 0:
            return
        request.hits_reported = True
        share = min(max(cached_tokens / request.prompt_tokens, 0.0), 1.0)
        self._hit_share += HIT_SHARE_DECAY * (share - self._hit_share)
