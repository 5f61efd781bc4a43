"""An engine's Prometheus text exposition, mapped to the pod-state fields models learn from.

Only names that real engines export are read (``tests/fixtures/vllm_metrics.txt`` is a
capture of a real vLLM's exposition, refreshed by
``bench/real_engine/capture_metrics.py``, and a test holds the parser to it). Engines name
the same quantity differently across versions and projects (vLLM renamed
``gpu_cache_usage_perc`` to ``kv_cache_usage_perc``, replaced the hit-rate gauge of its V0
engine by query/hit counters, first ``gpu_prefix_cache_*`` then ``prefix_cache_*``; SGLang
has its own names), so each field lists every name it may appear under, newest first.
Counters are read as Prometheus exposes them (``_total``) and under their bare family
name, as other exporters write them. A data-parallel engine exposes one series per engine
(label ``engine``): request counts and counters add up, fractions average.

No engine exports tokens in flight (prefill backlog, decode tokens): the sidecar counts
those itself from the requests it proxies (``sidecar/inflight.py``).

Scrapes run on the proxy's event loop every fraction of a second. prometheus_client's
parser took ~1 ms of loop time for the simulated engine's 65 lines, and a real engine
exposes several hundred (histograms): each scrape a stall in front of whatever request was
passing through. So only the sample lines of known names reach the parser (a prefix test
per line); an exposition with none of them is parsed whole, so garbage is still an error.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from latency_oracle.features.schema import MAX_REQUESTS, ServerState


def _counter(*families: str) -> tuple[str, ...]:
    """A counter's sample names: Prometheus's ``_total`` first, then the bare family."""
    return tuple(name for family in families for name in (f"{family}_total", family))


# Field -> sample names it may be exposed under, preferred first.
_SUMMED: dict[str, tuple[str, ...]] = {
    "running_requests": ("vllm:num_requests_running", "sglang:num_running_reqs"),
    "waiting_requests": ("vllm:num_requests_waiting", "sglang:num_queue_reqs"),
    "prefix_cache_queries": _counter("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries"),
    "prefix_cache_hits": _counter("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits"),
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
# Every sample name the parser reads (tests hold them to real expositions).
METRIC_NAMES = tuple(_FIELD_BY_NAME)


@dataclass(frozen=True, slots=True)
class EngineSample:
    """One scrape's values; None where the engine exposes no metric for a field."""

    running_requests: float | None = None
    waiting_requests: float | None = None
    kv_cache_usage: float | None = None
    prefix_cache_queries: float | None = None
    prefix_cache_hits: float | None = None
    prefix_cache_hit_rate: float | None = None

    def server_state(self) -> ServerState:
        """The schema's record, values clamped into its bounds (absent fields are 0).

        Its tokens in flight stay 0 here: the sidecar fills them from its own count.
        """
        return ServerState(
            running_requests=_count(self.running_requests, MAX_REQUESTS),
            waiting_requests=_count(self.waiting_requests, MAX_REQUESTS),
            kv_cache_usage=min(max(self.kv_cache_usage or 0.0, 0.0), 1.0),
        )


def parse_engine_metrics(text: str) -> EngineSample:
    """Read the known metrics out of an exposition; unknown metrics are ignored.

    Raises ``ValueError`` when the text is not a Prometheus exposition.
    """
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    known = [line for line in text.splitlines() if line.lstrip().startswith(METRIC_NAMES)]
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
