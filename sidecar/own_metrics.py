"""The sidecar's own Prometheus metrics, served on ``/sidecar/metrics``.

Its ``/metrics`` path belongs to the engine (the proxy passes it through), so the
sidecar's counters live under a path no engine uses. They make visible what never
becomes an observation: non-streamed requests, failed streams, dropped writes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from latency_oracle.operations.metrics import PREFIX

SIDECAR = f"{PREFIX}_sidecar"


class SidecarMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{SIDECAR}_requests",
            "Proxied requests by kind (streamed, unstreamed, passthrough) and outcome "
            "(observed, not_observed, engine_error, failed, disconnected).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.unstreamed_latency = Histogram(
            f"{SIDECAR}_unstreamed_latency_seconds",
            "End-to-end latency of non-streamed completions (no TTFT: never learned).",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=self.registry,
        )
        self.proxy_overhead = Histogram(
            f"{SIDECAR}_proxy_overhead_seconds",
            "Time from a request's arrival to its hand-off to the engine: reading, parsing "
            "and rewriting the body, the part of the added latency the proxy itself spends.",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25),
            registry=self.registry,
        )
        self.unstreamed_tokens = Counter(
            f"{SIDECAR}_unstreamed_tokens",
            "Tokens of non-streamed completions, by direction (input, output).",
            ["direction"],
            registry=self.registry,
        )
        self.observations = Counter(
            f"{SIDECAR}_observations",
            "Observations by fate: written, dropped_queue_full, rejected (by the store).",
            ["outcome"],
            registry=self.registry,
        )
        self.sink_errors = Counter(
            f"{SIDECAR}_sink_errors",
            "Failed writes to the store, by record (observations, pod_state); retried.",
            ["record"],
            registry=self.registry,
        )
        self.scrape_errors = Counter(
            f"{SIDECAR}_scrape_errors",
            "Failed scrapes of the engine's /metrics.",
            registry=self.registry,
        )
        self.queued = Gauge(
            f"{SIDECAR}_queued_observations",
            "Observations waiting to be written to the store.",
            registry=self.registry,
        )
        self.scrape_age = Gauge(
            f"{SIDECAR}_scrape_age_seconds",
            "Seconds since the last successful scrape of the engine.",
            registry=self.registry,
        )
        self.prefill_tokens_in_flight = Gauge(
            f"{SIDECAR}_prefill_tokens_in_flight",
            "Prompt tokens of proxied requests awaiting their first token (the sidecar's "
            "count, net of the expected prefix-cache hits).",
            registry=self.registry,
        )
        self.decode_tokens_in_flight = Gauge(
            f"{SIDECAR}_decode_tokens_in_flight",
            "Prompt plus generated tokens of proxied requests in decode (the sidecar's count).",
            registry=self.registry,
        )
        self.prefix_cache_hit_rate = Gauge(
            f"{SIDECAR}_prefix_cache_hit_rate",
            "Engine prefix-cache hit rate over the last scrape interval.",
            registry=self.registry,
        )
