"""The simulated engine's ``/metrics``, under vLLM's metric names, current and older.

Gauges and counters are read from the engine at scrape time (a custom collector), so they
are never stale; latency histograms are observed as requests finish. Each app gets its own
registry: several engines can live in one test process.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from latency_oracle.sim.engine.records import FinishedRequest
from latency_oracle.sim.engine.scheduler import Engine

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
TPOT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)


class _EngineStateCollector(Collector):
    def __init__(self, engine: Engine, model_name: str) -> None:
        self._engine = engine
        self._model_name = model_name

    def collect(self) -> Iterator[Metric]:
        state = self._engine.state()
        labels = ["model_name"]
        values = [self._model_name]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric(values, value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=labels)
            family.add_metric(values, value)
            return family

        queries, hits = state.prefix_cache_queries, state.prefix_cache_hits
        yield gauge("vllm:num_requests_running", "Requests in the batch.", state.running_requests)
        yield gauge("vllm:num_requests_waiting", "Requests queued.", state.waiting_requests)
        yield gauge("vllm:kv_cache_usage_perc", "KV-cache use, 1 = full.", state.kv_cache_usage)
        yield gauge(
            "vllm:gpu_cache_usage_perc", "Older name of kv_cache_usage_perc.", state.kv_cache_usage
        )
        yield gauge(
            "vllm:gpu_prefix_cache_hit_rate",
            "Older: prefix-cache hit rate over all queries.",
            hits / queries if queries else 0.0,
        )
        yield counter("vllm:prefix_cache_queries", "Prompt tokens looked up.", queries)
        yield counter("vllm:prefix_cache_hits", "Prompt tokens found cached.", hits)
        yield counter("vllm:num_preemptions", "Requests preempted.", state.preemptions)


class EngineMetrics:
    """The registry behind one simulated engine's ``/metrics``."""

    def __init__(self, engine: Engine, model_name: str) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_EngineStateCollector(engine, model_name))
        self._ttft = self._histogram(
            "vllm:time_to_first_token_seconds", "Time to first token.", TTFT_BUCKETS, model_name
        )
        self._tpot = self._histogram(
            "vllm:time_per_output_token_seconds",
            "Mean time per output token after the first, per request.",
            TPOT_BUCKETS,
            model_name,
        )

    def _histogram(
        self, name: str, doc: str, buckets: tuple[float, ...], model_name: str
    ) -> Histogram:
        family = Histogram(name, doc, ["model_name"], buckets=buckets, registry=self.registry)
        return family.labels(model_name)

    def record(self, finished: FinishedRequest) -> None:
        self._ttft.observe(finished.ttft)
        tpot = finished.tpot
        if tpot is not None:
            self._tpot.observe(tpot)
