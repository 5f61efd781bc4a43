"""Prometheus metrics: counters updated as things happen, model gauges read at scrape time.

Model quality gauges are collected from the registry when ``/metrics`` is scraped rather
than pushed on every update, so a learner that fails shows on the very next scrape and the
learning loop pays nothing for metrics it is not asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from latency_oracle.operations.label_cap import LabelCap

if TYPE_CHECKING:  # names for type hints only: the sidecar reads PREFIX without the ML stack
    from latency_oracle.models.registry import LearnReport
    from latency_oracle.models.status import KeyStatus

log = logging.getLogger(__name__)

PREFIX = "latency_oracle"

# *_created series double the scrape size for no use on a long-running service.
disable_created_metrics()


def quantile_label(q: float) -> str:
    """0.9 -> "p90", 0.99 -> "p99", 0.999 -> "p99.9": the names people read (API, UI, MLflow)."""
    return f"p{q * 100:g}"


def predicted_quantile_label(q: float) -> str:
    """0.9 -> "0.9": the value of the ``predicted_quantile`` Prometheus label.

    Not ``quantile``, which Prometheus reserves for summaries' own quantiles, and a
    number, as Prometheus writes ``le`` and ``quantile``, so rules can compare it.
    """
    return f"{q:g}"


class LearningMetrics:
    """What every process that learns exports (predictor and trainer), in its own registry.

    One definition, so a learner failing shows under the same names wherever it learns,
    and one set of alert rules covers both (several apps can share a process, hence a
    registry each).
    """

    def __init__(self, max_label_values: int = 256) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.cardinality_capped = Counter(
            f"{PREFIX}_cardinality_capped",
            "Times a cap on client-controlled names bit, by kind: accelerator (models "
            "evicted), pod (live pod state evicted) or metric_label (reported as other).",
            ["kind"],
            registry=self.registry,
        )
        self.implausible_skipped = Counter(
            f"{PREFIX}_observations_implausible_skipped",
            "Observations the learners skipped as outside the plausibility bounds.",
            registry=self.registry,
        )
        self.accelerator_label = LabelCap(
            "accelerator",
            max_label_values,
            self.cardinality_capped.labels("metric_label").inc,
        )
        self.learned = Counter(
            f"{PREFIX}_observations_learned",
            "Observations applied to models.",
            registry=self.registry,
        )
        self.learner_failures = Counter(
            f"{PREFIX}_learner_failures",
            "Learner exceptions or divergences (the learner was reset).",
            ["accelerator", "target", "learner"],
            registry=self.registry,
        )
        self.model_events = Counter(
            f"{PREFIX}_model_events",
            "Drifts detected, challengers promoted or dropped, per model key.",
            ["accelerator", "target", "kind"],
            registry=self.registry,
        )

    def record_learning(self, report: LearnReport) -> None:
        self.learned.inc(report.observations - report.implausible)
        self.implausible_skipped.inc(report.implausible)
        if report.evicted:
            self.cardinality_capped.labels("accelerator").inc(len(report.evicted))
            log.warning(
                "accelerator cap reached: models of %d least recently seen types evicted (e.g. %s)",
                len(report.evicted),
                report.evicted[0],
            )
        for failure in report.failures:
            self.learner_failures.labels(
                self.accelerator_label(failure.key.accelerator),
                failure.key.target.value,
                failure.learner,
            ).inc()
        for event in report.events:
            self.model_events.labels(
                self.accelerator_label(event.key.accelerator),
                event.key.target.value,
                event.kind.value,
            ).inc()

    def watch(self, statuses: Callable[[], Iterable[KeyStatus]]) -> None:
        """Expose the gauges of the model keys ``statuses()`` returns, at scrape time."""
        self.registry.register(_ModelCollector(statuses))


class ServiceMetrics(LearningMetrics):
    """The predictor's metrics: learning plus requests, observations and routing."""

    def __init__(self, max_label_values: int = 256) -> None:
        super().__init__(max_label_values)
        self.http_duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route", "method", "status"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=self.registry,
        )
        self.predictions = Counter(
            f"{PREFIX}_predictions", "Items predicted.", ["cold"], registry=self.registry
        )
        self.observations = Counter(
            f"{PREFIX}_observations",
            "Observations received, by outcome: accepted, duplicate, rejected, implausible, "
            "buffer_full.",
            ["outcome"],
            registry=self.registry,
        )
        self.llmd_entries_skipped = Counter(
            f"{PREFIX}_llmd_training_entries_skipped_total",
            "llm-d training entries not learned (the rest of their flush was), by reason: "
            "no_label, or <llm-d field>_out_of_bounds.",
            ["reason"],
            registry=self.registry,
        )
        self.route_decisions = Counter(
            f"{PREFIX}_route_decisions",
            "Routing decisions by outcome: place, shed or queue.",
            ["decision"],
            registry=self.registry,
        )
        self.learn_cycle_errors = Counter(
            f"{PREFIX}_learn_cycle_errors",
            "Learning cycles that failed outside any learner.",
            registry=self.registry,
        )

    def watch_backlog(self, buffered: Callable[[], int]) -> None:
        """Expose the observations accepted but not yet learned, at scrape time."""
        Gauge(
            f"{PREFIX}_observation_backlog",
            "Observations accepted, not yet learned.",
            registry=self.registry,
        ).set_function(buffered)


def redis_errors(registry: CollectorRegistry) -> Counter:
    """Failed Redis calls: one metric for replicas and trainers, so one alert covers both."""
    return Counter(
        f"{PREFIX}_redis_errors",
        "Failed Redis calls, by operation: write (observations), sync (models), pods (the "
        "live pod states routing uses) or train (a trainer's read, learn and checkpoint step).",
        ["operation"],
        registry=registry,
    )


def snapshots_refused(registry: CollectorRegistry) -> Counter:
    """Snapshots a replica or trainer refused to load: a forged one is an attack alarm."""
    return Counter(
        f"{PREFIX}_snapshots_refused",
        "Model snapshots refused, by reason: unsigned or forged (signature), corrupt "
        "(checksum, format) or invalid (decoded but unusable). The last good models serve.",
        ["reason"],
        registry=registry,
    )


class _ModelCollector(Collector):
    """Model gauges from published key statuses: a scrape never walks live learner slots.

    A key of one served model adds a ``model`` label; keys naming none have exactly the
    series they always had. Served models are bounded by the registry's cap on keys.
    """

    def __init__(self, statuses: Callable[[], Iterable[KeyStatus]]) -> None:
        self.statuses = statuses

    def collect(self) -> Iterator[Metric]:
        samples = _gauge(f"{PREFIX}_model_samples", "Samples learned per model key.")
        observed = _gauge(
            f"{PREFIX}_model_observations",
            "Observations counted per model key, learned or not: a sampled key (the global "
            "model's sample of each shard, a hot key past its rate ceiling) learns a share.",
        )
        share = _gauge(
            f"{PREFIX}_model_learned_share",
            "Share of each model key's observations its models learned (1 when all were).",
        )
        updated = _gauge(
            f"{PREFIX}_model_last_update_timestamp_seconds",
            "Unix time of each model key's last update.",
        )
        champion = _gauge(f"{PREFIX}_model_champion", "1 for the learner serving each key.")
        failed = _gauge(
            f"{PREFIX}_learner_failed", "1 while a learner is failed (reset, not serving)."
        )
        coverage = _gauge(
            f"{PREFIX}_model_coverage",
            "Fraction of recent outcomes at or below each served quantile.",
        )
        pinball = _gauge(
            f"{PREFIX}_model_pinball_loss_seconds",
            "Recent mean pinball loss of each quantile, seconds.",
        )
        mae = _gauge(f"{PREFIX}_model_mae_seconds", "Recent MAE of the median, seconds.")
        for status in self.statuses():
            key = {"accelerator": status.key.accelerator, "target": status.key.target.value}
            if status.key.model:
                key["model"] = status.key.model
            _add(samples, key, status.samples)
            _add(observed, key, status.samples if status.observed is None else status.observed)
            _add(share, key, status.learned_share)
            _add(updated, key, status.last_update or 0.0)
            for learner in status.learners:
                labels = {**key, "learner": learner.name}
                _add(champion, labels, float(status.champion == learner.name))
                _add(failed, labels, float(learner.failed))
                scores = learner.scores
                if scores.samples == 0:
                    continue
                _add(mae, labels, scores.mae / 1e3)  # learners score in ms
                for q, cov, loss in zip(
                    status.quantiles, scores.coverage, scores.pinball, strict=True
                ):
                    quantile = {**labels, "predicted_quantile": predicted_quantile_label(q)}
                    _add(coverage, quantile, cov)
                    _add(pinball, quantile, loss / 1e3)
        yield from (samples, observed, share, updated, champion, failed, coverage, pinball, mae)


def _gauge(name: str, documentation: str) -> Metric:
    """A gauge family whose samples may differ in label names (``model`` only where set)."""
    return Metric(name, documentation, "gauge")


def _add(family: Metric, labels: dict[str, str], value: float) -> None:
    family.add_sample(family.name, labels, value)
