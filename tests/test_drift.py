"""Drift detection, challenger races and promotion inside model sets (no MLflow)."""

from __future__ import annotations

import numpy as np
import pytest

from latency_oracle.features.engineering import N_FEATURES
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.drift import EventKind, ModelEvent, ResidualDriftDetector
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.models.registry import LearnReport, ModelRegistry
from latency_oracle.models.ring import RingBuffer
from latency_oracle.models.river_linear import RiverQuantileLinear
from latency_oracle.sim.synthetic_stream import generate_stream

CONFIG = ModelConfig(
    min_samples=300,
    eval_window=500,
    calibration_window=500,
    xgb_window=512,
    xgb_boost_every=128,
    challenger_window=300,
)
BATCH = 128
SHIFT_AT = 2_000
PROMOTING_SEED = 2
KEY = ModelKey("H100", Target.TPOT)


def learn_stream(
    registry: ModelRegistry, n: int, shift_at: int | None, seed: int = 1
) -> list[LearnReport]:
    stream = generate_stream(n, seed=seed, shift_at=shift_at)
    return [registry.learn(stream.observations[i : i + BATCH]) for i in range(0, n, BATCH)]


def events(reports: list[LearnReport], kind: EventKind) -> list[ModelEvent]:
    return [e for r in reports for e in r.events if e.kind == kind and e.key == KEY]


def test_detector_flags_a_mean_shift_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    detector = ResidualDriftDetector(delta=0.002, grace=100)
    assert not detector.update(rng.normal(0.0, 0.35, 5_000))
    assert detector.update(rng.normal(0.5, 0.35, 500))


def test_stationary_stream_raises_no_drift() -> None:
    registry = ModelRegistry(CONFIG)
    reports = learn_stream(registry, 4_000, shift_at=None)
    assert [e for r in reports for e in r.events] == []


@pytest.fixture(scope="module")
def shifted() -> tuple[ModelRegistry, list[LearnReport]]:
    registry = ModelRegistry(CONFIG)
    # A stream whose fresh challenger beats the adapting champion by the margin: on about
    # half the seeds the two end level and nothing is promoted.
    return registry, learn_stream(registry, 3_600, shift_at=SHIFT_AT, seed=PROMOTING_SEED)


def test_shift_is_detected_soon_after_it_happens(shifted) -> None:
    _, reports = shifted
    drifts = events(reports, EventKind.DRIFT)
    assert len(drifts) == 1
    assert SHIFT_AT <= drifts[0].samples <= SHIFT_AT + 3 * BATCH


def test_challenger_is_promoted_with_lower_loss_and_serves(shifted) -> None:
    registry, reports = shifted
    [drift] = events(reports, EventKind.DRIFT)
    [promotion] = events(reports, EventKind.PROMOTION)
    assert promotion.samples > drift.samples
    assert promotion.learner == drift.learner  # a fresh learner of the champion's kind
    challenger_loss, champion_loss = (
        float(part.split()[-2]) for part in promotion.detail.split(":")[1].split(",")
    )
    assert challenger_loss < champion_loss * (1 - CONFIG.champion_margin)
    model_set = next(m for m in registry.model_sets() if m.key == KEY)
    assert model_set.champion == promotion.learner
    assert model_set.drift.race is None
    assert model_set.drift.promotions == 1
    serving = registry.serving(KEY)
    assert serving is not None and serving.learner == promotion.learner
    # the promoted slot learned post-drift data only
    assert model_set.slot(promotion.learner).learner.n_samples < 3_600 - SHIFT_AT


def test_challenger_never_serves_and_a_failing_one_is_reset() -> None:
    registry = ModelRegistry(CONFIG)
    stream = generate_stream(3_000, seed=1, shift_at=SHIFT_AT).observations
    position = 0
    while position < len(stream):
        report = registry.learn(stream[position : position + BATCH])
        position += BATCH
        if any(e.kind == EventKind.DRIFT and e.key == KEY for e in report.events):
            break
    model_set = next(m for m in registry.model_sets() if m.key == KEY)
    race = model_set.drift.race
    assert race is not None
    assert all(slot is not race.slot for slot in model_set.slots)
    race.slot.learner = ExplodingLearner(CONFIG.quantiles)
    report = registry.learn(stream[position : position + BATCH])
    [failure] = [f for f in report.failures if f.key == KEY]
    assert failure.learner.endswith("challenger") and "exploded" in failure.error
    assert race.slot.health.state == "failed"
    assert not race.challenger_wins(CONFIG)
    assert registry.serving(KEY).learner == model_set.champion


class ExplodingLearner(RiverQuantileLinear):
    """A learner whose update raises, as a learner bug would."""

    def __init__(self, quantiles: tuple[float, ...]) -> None:
        super().__init__(quantiles, N_FEATURES)

    def learn_many(self, features: np.ndarray, y: np.ndarray) -> None:
        raise FloatingPointError("exploded")


def test_detection_tells_how_many_samples_came_after_the_change() -> None:
    rng = np.random.default_rng(4)
    detector = ResidualDriftDetector(delta=0.002, grace=100)
    assert detector.update(rng.normal(0.0, 0.1, 2_000)) == 0
    after = 0
    for _ in range(20):
        after = detector.update(rng.normal(1.0, 0.1, 50))
        if after:
            break
    assert 1 <= after <= 1_000  # ADWIN's post-change window, not the whole history


def test_ring_latest_is_the_most_recent_rows_in_order() -> None:
    ring = RingBuffer(4, 1)
    ring.extend(np.arange(6.0).reshape(-1, 1))
    np.testing.assert_array_equal(ring.latest(3)[:, 0], [3.0, 4.0, 5.0])
    np.testing.assert_array_equal(ring.latest(9)[:, 0], [2.0, 3.0, 4.0, 5.0])
