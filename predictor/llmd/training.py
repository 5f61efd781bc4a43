"""llm-d training entries as native observations: what each entry means, and which to skip.

How llm-d's endpoint picker forms its entries (read from its source; for users, the docs'
llm-d page, ``docs/llm-d.md``, "What the EPP's entries mean here"):

- A **TTFT entry** per request at its first token: ``actual_ttft_ms`` set,
  ``actual_tpot_ms`` 0, ``num_tokens_generated`` 0. In non-streaming mode this "TTFT" is
  the whole request's latency, and no TPOT entry follows.
- A **TPOT entry** per streamed request at its end: ``actual_tpot_ms`` is the request's
  mean time per output token after the first, with ``actual_ttft_ms`` 0,
  ``num_tokens_generated`` 0 and ``prefix_cache_score`` 0.

So ``num_tokens_generated: 0`` beside a TPOT is not "no tokens": it is one TPOT sample
whose token count the client did not send. It is learned as a request with two output
tokens, the fewest for which a TPOT exists; the count only dates the request's arrival
(finish time minus its decode time), never a feature, and never an output length: an
entry is ``finished`` (teaches output length, ``features.labels``) only with a real
count. Each entry is its own observation id, as the sidecar's first-token and finish
records are one id's two records: either way TTFT and TPOT are each learned once per
request.

The client drops a whole flush on any non-202 and never retries it, so one implausible
entry (a TTFT of hours from a stuck stream, a negative clock) must not cost the other
999: such entries are skipped and counted by reason (a metric, and a log line at most
every ``LOG_EVERY_S``), and the answer is 202 with the count accepted. A body that is not
llm-d's shape at all is still a 422.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import ValidationError

from latency_oracle.features.schema import Observation
from latency_oracle.predictor.llmd.bodies import LlmdEntry, role_of

log = logging.getLogger(__name__)
LOG_EVERY_S = 60.0
NO_LABEL = "no_label"
# Native field -> the llm-d field a client sees it as.
_LLMD_FIELDS = {
    "ttft_ms": "actual_ttft_ms",
    "tpot_ms": "actual_tpot_ms",
    "input_tokens": "input_token_length",
    "output_tokens": "num_tokens_generated",
    "timestamp": "timestamp",
    "pod": "pod",
}


def out_of_bounds(native_field: str) -> str:
    """The skip reason of an entry whose ``native_field`` broke a bound, in llm-d's names."""
    return f"{_LLMD_FIELDS.get(native_field, native_field)}_out_of_bounds"


def observation(
    entry: LlmdEntry, accelerator: str, tokens_per_word: float = 1.0
) -> Observation | str:
    """The native observation of ``entry``, or the reason it cannot be one; its word
    counts in tokens at ``tokens_per_word`` (as ``bodies.request_columns``)."""
    ttft, tpot = entry["actual_ttft_ms"], entry["actual_tpot_ms"]
    if ttft <= 0 and tpot <= 0:
        return NO_LABEL
    generated = entry["num_tokens_generated"]
    stamp = entry.get("timestamp")

    try:
        return Observation(
            accelerator=accelerator,
            pod=entry.get("pod", ""),
            role=role_of(entry.get("pod_type") or ""),
            input_tokens=round(entry["input_token_length"] * tokens_per_word),
            prefix_cache_score=entry["prefix_cache_score"],
            output_tokens=max(generated, 2) if tpot > 0 else generated,
            running_requests=entry["num_request_running"],
            waiting_requests=entry["num_request_waiting"],
            kv_cache_usage=entry["kv_cache_percentage"],
            prefill_tokens_in_flight=round(  # words, as input_token_length
                entry.get("prefill_tokens_in_flight", 0) * tokens_per_word
            ),
            decode_tokens_in_flight=entry.get("decode_tokens_in_flight", 0),
            timestamp=(stamp or datetime.now(UTC)).timestamp(),
            ttft_ms=ttft or None,
            tpot_ms=tpot or None,
            finished=tpot > 0 and generated > 0,
        )
    except ValidationError as exc:
        location = exc.errors()[0]["loc"]
        return out_of_bounds(str(location[0]) if location else "entry")


def observations(
    entries: Sequence[LlmdEntry], accelerator: str, tokens_per_word: float = 1.0
) -> tuple[list[Observation], Counter[str]]:
    """The entries that are observations, and the others counted by reason."""
    kept: list[Observation] = []
    skipped: Counter[str] = Counter()
    for entry in entries:
        result = observation(entry, accelerator, tokens_per_word)
        if isinstance(result, str):
            skipped[result] += 1
        else:
            kept.append(result)
    return kept, skipped


class SkipLog:
    """One warning line per ``every_s`` at most, summing the skips since the last one."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self.every_s = every_s
        self._pending: Counter[str] = Counter()
        self._last = float("-inf")
        self._lock = threading.Lock()

    def note(self, skipped: Counter[str]) -> None:
        if not skipped:
            return
        with self._lock:
            self._pending.update(skipped)
            now = time.monotonic()
            if now - self._last < self.every_s:
                return
            summary, self._pending, self._last = dict(self._pending), Counter(), now
        log.warning("llm-d training entries skipped (not learned) by reason: %s", summary)
