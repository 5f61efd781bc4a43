"""The contract every learner passes, as river's ``checks`` does for its estimators."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from latency_oracle.features.engineering import N_FEATURES, RequestColumns, build_features
from latency_oracle.models.batch_forest import BatchQuantileForest
from latency_oracle.models.learner import Learner, NotFittedError
from latency_oracle.models.persistence.allowed_types import SNAPSHOT_TYPES
from latency_oracle.models.prior import prefill_backlog_log_ms
from latency_oracle.models.river_linear import RiverQuantileLinear
from latency_oracle.models.rolling_quantile import RollingQuantile
from latency_oracle.models.xgboost_learner import IncrementalXGBoost
from latency_oracle.sim.synthetic_stream import SyntheticStream

QUANTILES = (0.5, 0.9, 0.99)

# Each learner also as the TTFT models use it: fitted to the residual over the prefill backlog.
LEARNERS: dict[str, Callable[[], Learner]] = {
    "river_linear": lambda: RiverQuantileLinear(QUANTILES, N_FEATURES),
    "river_linear residual": lambda: RiverQuantileLinear(
        QUANTILES, N_FEATURES, offset=prefill_backlog_log_ms
    ),
    "xgboost": lambda: IncrementalXGBoost(QUANTILES, N_FEATURES, window=512, boost_every=128),
    "xgboost residual": lambda: IncrementalXGBoost(
        QUANTILES, N_FEATURES, window=512, boost_every=128, offset=prefill_backlog_log_ms
    ),
    "rolling_quantile": lambda: RollingQuantile(QUANTILES, N_FEATURES),
    # Refitting in line, so each batch's effect is seen at once (the background refit has
    # its own tests in test_batch_forest.py).
    "batch_xgboost": lambda: BatchQuantileForest(
        QUANTILES, N_FEATURES, refit_every=128, rounds=20, background=False
    ),
    "batch_xgboost residual": lambda: BatchQuantileForest(
        QUANTILES,
        N_FEATURES,
        refit_every=128,
        rounds=20,
        offset=prefill_backlog_log_ms,
        background=False,
    ),
}


@pytest.fixture(params=sorted(LEARNERS))
def make(request: pytest.FixtureRequest) -> Callable[[], Learner]:
    return LEARNERS[request.param]


@pytest.fixture
def learner(make: Callable[[], Learner]) -> Learner:
    return make()


@pytest.fixture(scope="module")
def data(stream: SyntheticStream) -> tuple[np.ndarray, np.ndarray]:
    features = build_features(RequestColumns.from_requests(stream.observations))
    y = np.log([o.ttft_ms for o in stream.observations])
    return features, y


def test_follows_the_protocol(learner: Learner) -> None:
    assert isinstance(learner, Learner)
    assert learner.quantiles == QUANTILES


def test_refuses_to_predict_before_learning(learner: Learner, data) -> None:
    assert not learner.is_fitted and learner.serving_function() is None
    with pytest.raises(NotFittedError):
        learner.predict_many(data[0][:3])


def test_learns_ordered_finite_quantiles(learner: Learner, data) -> None:
    features, y = data
    for start in range(0, 2_000, 100):
        learner.learn_many(features[start : start + 100], y[start : start + 100])
    assert learner.n_samples == 2_000
    predicted = learner.predict_many(features[2_000:])
    assert predicted.shape == (1_000, len(QUANTILES))
    assert np.isfinite(predicted).all()
    coverage = (y[2_000:, None] <= predicted).mean(axis=0)
    assert coverage[0] < coverage[1] < coverage[2]
    assert 0.3 < coverage[0] < 0.7 and coverage[2] > 0.85


def test_learn_one_and_predict_one_match_the_batch_calls(learner: Learner, data) -> None:
    features, y = data
    learner.learn_many(features[:300], y[:300])
    learner.learn_one(features[300], float(y[300]))
    assert learner.n_samples == 301
    np.testing.assert_allclose(
        learner.predict_one(features[5]), learner.predict_many(features[:10])[5]
    )


def test_published_function_is_immutable(learner: Learner, data) -> None:
    features, y = data
    learner.learn_many(features[:600], y[:600])
    function = learner.serving_function()
    assert function is not None
    before = function(features[:20]).copy()
    learner.learn_many(features[600:1_200], y[600:1_200] + 1.0)
    np.testing.assert_array_equal(function(features[:20]), before)
    assert not np.array_equal(learner.predict_many(features[:20]), before)


@pytest.mark.parametrize("rows", [20, 200])
def test_leading_quantiles_equal_the_full_functions_first_columns(
    learner: Learner, data, rows: int
) -> None:
    """Routing's cheaper path must answer exactly what the full prediction would."""
    features, y = data
    learner.learn_many(features[:1_000], y[:1_000])
    function = learner.serving_function()
    assert function is not None
    full = function(features[:rows])
    for k in range(1, len(QUANTILES) + 1):
        np.testing.assert_allclose(function.leading(k)(features[:rows]), full[:, :k], atol=1e-6)


def test_snapshot_restores_identical_predictions(
    learner: Learner, make: Callable[[], Learner], data
) -> None:
    features, y = data
    learner.learn_many(features[:700], y[:700])
    fresh = make()
    fresh.restore(learner.snapshot(SNAPSHOT_TYPES), SNAPSHOT_TYPES)
    np.testing.assert_array_equal(
        fresh.predict_many(features[:50]), learner.predict_many(features[:50])
    )
    assert fresh.n_samples == learner.n_samples
    fresh.learn_many(features[700:900], y[700:900])
    assert fresh.n_samples == 900


def test_snapshot_of_other_quantiles_is_refused(learner: Learner, data) -> None:
    other = type(learner)((0.5, 0.95), N_FEATURES)
    with pytest.raises(ValueError, match="does not match"):
        other.restore(learner.snapshot(SNAPSHOT_TYPES), SNAPSHOT_TYPES)


def test_reset_forgets_everything(learner: Learner, data) -> None:
    features, y = data
    learner.learn_many(features[:400], y[:400])
    learner.reset()
    assert learner.n_samples == 0 and not learner.is_fitted
