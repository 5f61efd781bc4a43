"""An engine's Prometheus text exposition, mapped to the pod-state fields models learn from.

Engines name the same quantity differently across versions and projects (vLLM renamed
``gpu_cache_usage_perc`` to ``kv_cache_usage_perc`` and replaced the hit-rate gauge by
query/hit counters; SGLang has its own names), so each field lists every name it may
appear under, newest first. A data-parallel engine exposes one series per engine (label
``engine``): request counts and counters add up, fractions average.

Scrapes run on the proxy's event loop every fraction of a second. prometheus_client's
parser took ~1 ms of loop time for the simulated engine's 65 lines, and a real engine
exposes several hundred (histograms): each scrape a stall in front of whatever request was
passing through. So only the sample lines of known names reach the parser (a prefix test
per line); an exposition with none of them is parsed whole, so garbage is still an error.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from latency_oracle.features.schema import MAX_REQUESTS, MAX_TOKENS, ServerState
from prometheus_client.parser import text_string_to_metric_families

# Field -> sample names it may be exposed under, preferred first.
_SUMMED: dict[str, tuple[str, ...]] = {
    "running_requests": ("vllm:num_requests_running", "sglang:num_running_reqs"),
    "waiting_requests": ("vllm:num_requests_waiting", "sglang:num_queue_reqs"),
    "prefill_tokens_in_flight": ("vllm:num_prefill_tokens_in_flight",),
    "decode_tokens_in_flight": ("vllm:num_decode_tokens_in_flight", "sglang:num_used_tokens"),
    "prefix_cache_queries": ("vllm:prefix_cache_queries_total",),
    "prefix_cache_hits": ("vllm:prefix_cache_hits_total",),
}
_AVERAGED: dict[str, tuple[str, ...]] = {
    "kv_cache_usage": (
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "sglang:token_usage",
    ),
    "prefix_cache_hit_rate": ("vllm:gpu_prefix_cache_hit_rate", "sglang:cache_hit_rate"),
}
_FIELD_BY_NAME = {
    name: field
    for table in (_SUMMED, _AVERAGED)
    for field, names in table.items()
    for name in names
}
_KNOWN_NAMES = tuple(_FIELD_BY_NAME)


@dataclass(frozen=True, slots=True)
class EngineSample:
    """One scrape's values; None where the engine exposes no metric for a field."""

    running_requests: float | None = None
    waiting_requests: float | None = None
    kv_cache_usage: float | None = None
    prefill_tokens_in_flight: float | None = None
    decode_tokens_in_flight: float | None = None
    prefix_cache_queries: float | None = None
    prefix_cache_hits: float | None = None
    prefix_cache_hit_rate: float | None = None

    def server_state(self) -> ServerState:
        """The schema's record, with values clamped into its bounds (absent fields are 0)."""
        return ServerState(
            running_requests=_count(self.running_requests, MAX_REQUESTS),
            waiting_requests=_count(self.waiting_requests, MAX_REQUESTS),
            kv_cache_usage=min(max(self.kv_cache_usage or 0.0, 0.0), 1.0),
            prefill_tokens_in_flight=_count(self.prefill_tokens_in_flight, MAX_TOKENS),
            decode_tokens_in_flight=_count(self.decode_tokens_in_flight, MAX_TOKENS),
        )


def parse_engine_metrics(text: str) -> EngineSample:
    """Read the known metrics out of an exposition; unknown metrics are ignored.

    Raises ``ValueError`` when the text is not a Prometheus exposition.
    """
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    known = [line for line in text.splitlines() if line.lstrip().startswith(_KNOWN_NAMES)]
    for family in text_string_to_metric_families("\n".join(known) + "\n" if known else text):
        for sample in family.samples:
            field = _FIELD_BY_NAME.get(sample.name)
            if field is not None and sample.value == sample.value:  # NaN: no value
                values[field][sample.name].append(sample.value)
    found: dict[str, float] = {}
    for table, combine in ((_SUMMED, sum), (_AVERAGED, _mean)):
        for field, names in table.items():
            name = next((n for n in names if n in values[field]), None)
            if name is not None:
                found[field] = combine(values[field][name])
    return EngineSample(**found)


class PrefixHitRate:
    """Prefix-cache hit rate over the last scrape interval, from cumulative counters.

    Counters give the rate of what happened since the previous scrape, which is what a
    request arriving now will meet; a lifetime average would hide a cache that just went
    cold. An interval without queries keeps the previous rate; a counter reset (engine
    restart) starts a new baseline.
    """

    def __init__(self) -> None:
        self._previous: tuple[float, float] | None = None
        self.rate: float | None = None

    def update(self, sample: EngineSample) -> float | None:
        if sample.prefix_cache_queries is None or sample.prefix_cache_hits is None:
            self.rate = sample.prefix_cache_hit_rate
            return self.rate
        current = (sample.prefix_cache_queries, sample.prefix_cache_hits)
        previous, self._previous = self._previous, current
        if previous is not None and current[0] >= previous[0] and current[1] >= previous[1]:
            queried = current[0] - previous[0]
            if queried > 0:
                self.rate = min((current[1] - previous[1]) / queried, 1.0)
        return self.rate


def _count(value: float | None, limit: int) -> int:
    return min(max(round(value or 0.0), 0), limit)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
