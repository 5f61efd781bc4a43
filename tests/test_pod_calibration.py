"""Per-pod corrections: a pod slower than its model says is covered again, others untouched."""

from __future__ import annotations

import numpy as np

from latency_oracle.features.engineering import RequestColumns
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.pod_calibration import PodOffsets
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.sim.synthetic_stream import generate_stream

QUANTILES = (0.5, 0.9, 0.99)


def scores(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """Conformal scores of a calibrated model: each column misses at its level's rate."""
    z = rng.normal(size=(n, 1)) + shift
    return z - np.array([0.0, 1.2816, 2.3263])  # standard normal 50/90/99% quantiles


def test_healthy_pods_get_no_correction() -> None:
    rng = np.random.default_rng(0)
    offsets = PodOffsets(QUANTILES, window=64, min_samples=16, max_pods=100)
    pods = np.array([f"pod-{i % 20}" for i in range(20 * 64)], dtype=object)
    offsets.update(pods, scores(rng, len(pods)))
    assert len(offsets) == 20
    assert len(offsets.published()) <= 1  # two-sigma noise flags about one in forty


def test_a_slow_pod_is_raised_until_it_covers_again() -> None:
    rng = np.random.default_rng(1)
    offsets = PodOffsets(QUANTILES, window=64, min_samples=16, max_pods=100)
    slow = scores(rng, 64, shift=np.log(2.0) / 0.35)  # twice as slow, in sigma units
    offsets.update(np.array(["slow"] * 64, dtype=object), slow)
    correction = offsets.published()["slow"]
    assert correction[1] > 0
    assert 0.85 <= np.mean(slow[:, 1] <= correction[1]) <= 0.95
    healthy = scores(rng, 64)
    offsets.update(np.array(["slow"] * 64, dtype=object), healthy)  # the pod recovered
    assert "slow" not in offsets.published()


def test_a_drift_every_pod_shares_is_left_to_the_shared_calibration() -> None:
    """All pods slow down together: none is singled out (raising each on top of the
    shared offsets over-widened them all after a drift)."""
    rng = np.random.default_rng(3)
    offsets = PodOffsets(QUANTILES, window=32, min_samples=16, max_pods=100)
    pods = np.array([f"pod-{i % 4}" for i in range(4 * 32)], dtype=object)
    offsets.update(pods, scores(rng, len(pods)))
    raised = []
    for _ in range(3):
        offsets.update(pods, scores(rng, len(pods), shift=1.5))
        raised.append(sum(1 for c in offsets.published().values() if c[1] > 0))
    assert max(raised) <= 1  # two-sigma noise may flag one; the drift flags none


def test_pods_are_capped_and_unnamed_rows_ignored() -> None:
    rng = np.random.default_rng(2)
    offsets = PodOffsets(QUANTILES, window=16, min_samples=4, max_pods=3)
    for name in ["a", "b", "c", "d", ""]:
        offsets.update(np.array([name] * 8, dtype=object), scores(rng, 8, shift=5.0))
    assert len(offsets) == 3
    assert sorted(offsets.published()) == ["b", "c", "d"]  # "a" evicted, "" never kept


def test_registry_covers_a_pod_running_at_half_speed() -> None:
    """Two pods of one type share a model; one runs at half speed and nothing in the
    features says so. Served prequentially, each pod's own p90 covers 90% +- 4%."""
    stream = generate_stream(6_000, seed=5)
    observations = [
        o.model_copy(
            update={"pod": "slow", "ttft_ms": 2 * o.ttft_ms, "tpot_ms": 2 * o.tpot_ms}
            if i % 2
            else {"pod": "fast"}
        )
        for i, o in enumerate(stream.observations)
    ]
    registry = ModelRegistry(ModelConfig())
    columns = RequestColumns.from_requests(observations)
    p90 = np.empty(len(observations))
    for start in range(0, len(observations), 64):
        rows = np.arange(start, min(start + 64, len(observations)))
        p90[rows] = registry.predict(columns.take(rows)).ttft_ms[:, 1]
        registry.learn(observations[start : start + 64])
    ttft = np.array([o.ttft_ms for o in observations])
    tail = np.arange(len(observations)) >= 3_000
    for name in ("slow", "fast"):
        rows = tail & (columns.pod == name)
        assert 0.86 <= np.mean(ttft[rows] <= p90[rows]) <= 0.94, name
