"""The batch-refit trees: refits in the background, bounded memory, forgetting by age,
a snapshot through the safe codec, and a seat in the champion election."""

from __future__ import annotations

import numpy as np
import pytest

from latency_oracle.features.engineering import N_FEATURES, RequestColumns, build_features
from latency_oracle.models.batch_forest import KV_BANDS, QUEUE_BANDS, BatchQuantileForest
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.models.model_set import ModelSet
from latency_oracle.models.persistence.allowed_types import SNAPSHOT_TYPES
from latency_oracle.sim.synthetic_stream import SyntheticStream

QUANTILES = (0.5, 0.9, 0.99)


@pytest.fixture(scope="module")
def data(stream: SyntheticStream) -> tuple[np.ndarray, np.ndarray]:
    features = build_features(RequestColumns.from_requests(stream.observations))
    return features, np.log([o.ttft_ms for o in stream.observations])


def test_learning_goes_on_while_a_refit_runs(data) -> None:
    features, y = data
    learner = BatchQuantileForest(QUANTILES, N_FEATURES, refit_every=100, rounds=30)
    learner.learn_many(features[:200], y[:200])  # starts the first refit in the background
    for start in range(200, 1_000, 100):  # never waits for it
        learner.learn_many(features[start : start + 100], y[start : start + 100])
    assert learner.n_samples == 1_000
    learner.wait_for_refit()
    assert learner.is_fitted and learner.last_refit_samples > 0 and learner.last_refit_s > 0
    assert np.isfinite(learner.predict_many(features[:10])).all()


def test_memory_is_bounded_per_bucket(data) -> None:
    features, y = data
    learner = BatchQuantileForest(QUANTILES, N_FEATURES, per_bucket=16, background=False)
    for _ in range(5):
        learner.learn_many(features, y)
    assert learner.stored <= QUEUE_BANDS * KV_BANDS * 16
    assert learner.stored < len(y)


def test_forget_keeps_only_the_latest_samples(data) -> None:
    features, y = data
    learner = BatchQuantileForest(QUANTILES, N_FEATURES, background=False)
    learner.learn_many(features[:2_000], y[:2_000])
    learner.forget(300)
    assert learner.stored <= 300
    assert learner.is_fitted


def test_a_model_set_with_a_refit_in_flight_round_trips_through_the_codec(data) -> None:
    features, y = data
    model_set = ModelSet(ModelKey("H100", Target.TTFT), ModelConfig(batch_refit_every=64))
    for start in range(0, 1_500, 100):
        model_set.learn(features[start : start + 100], y[start : start + 100])
    batch = model_set.slot("batch_xgboost").learner
    assert isinstance(batch, BatchQuantileForest)
    batch.wait_for_refit()
    restored = SNAPSHOT_TYPES.decode(SNAPSHOT_TYPES.encode(model_set))
    again = restored.slot("batch_xgboost").learner
    np.testing.assert_array_equal(
        again.predict_many(features[:20]), batch.predict_many(features[:20])
    )
    assert again.stored == batch.stored
    again.learn_many(features[1_500:1_700], y[1_500:1_700])  # and learns on
    assert again.n_samples == 1_700


def test_it_stands_in_the_champion_election(data) -> None:
    features, y = data
    model_set = ModelSet(ModelKey("H100", Target.TTFT), ModelConfig(batch_refit_every=128))
    for start in range(0, 2_500, 100):
        model_set.learn(features[start : start + 100], y[start : start + 100])
        model_set.slot("batch_xgboost").learner.wait_for_refit()
    slot = model_set.slot("batch_xgboost")
    assert slot.eligible() and len(slot.evaluator) > 0
    assert model_set.champion in {s.learner.name for s in model_set.slots}
