"""The TTFT learners fit how much of the roofline baseline to trust, and forget on drift."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_residual_learning import QUANTILES, h100_columns

from latency_oracle.features.engineering import N_FEATURES, build_features, monotone_signs
from latency_oracle.models.baseline_fit import FittedOffset, fit_offset
from latency_oracle.models.evaluation import pinball_loss
from latency_oracle.models.prior import prefill_backlog_log_ms
from latency_oracle.models.xgboost_learner import IncrementalXGBoost


def test_fit_recovers_floor_and_scale_of_a_scaled_baseline() -> None:
    rng = np.random.default_rng(0)
    base_ms = rng.uniform(5, 500, 2_000)
    y_ms = (40.0 + 3.0 * base_ms) * rng.lognormal(0.0, 0.1, 2_000)
    fitted = fit_offset(prefill_backlog_log_ms, np.log(base_ms), np.log(y_ms))
    assert math.exp(fitted.log_scale) == pytest.approx(3.0, rel=0.1)
    assert math.exp(fitted.log_floor) == pytest.approx(40.0, rel=0.25)


def test_a_baseline_the_outcomes_ignore_gets_no_slope() -> None:
    rng = np.random.default_rng(1)
    base_ms = rng.lognormal(5.0, 1.5, 2_000)  # unrelated to the outcome
    y_ms = 80.0 * rng.lognormal(0.0, 0.2, 2_000)
    fitted = fit_offset(prefill_backlog_log_ms, np.log(base_ms), np.log(y_ms))
    assert math.exp(fitted.log_scale) * np.median(base_ms) < 0.1 * 80.0
    assert math.exp(fitted.log_floor) == pytest.approx(80.0, rel=0.1)


def test_unfitted_offset_is_the_baseline_as_imposed() -> None:
    features = build_features(h100_columns(np.array([0.0, 4e4]), np.array([100, 100])))
    np.testing.assert_allclose(
        FittedOffset(prefill_backlog_log_ms)(features), prefill_backlog_log_ms(features)
    )


def noise_stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """In-flight prefill tokens that are noise, the outcome driven by the prompt alone."""
    rng = np.random.default_rng(seed)
    prompt = rng.integers(200, 2_000, n).astype(float)
    queued = rng.lognormal(9.5, 1.2, n)
    ttft = (30.0 + 0.05 * prompt) * rng.lognormal(0.0, 0.15, n)
    return build_features(h100_columns(queued, prompt)), np.log(ttft)


def trees(offset: bool) -> IncrementalXGBoost:
    return IncrementalXGBoost(
        QUANTILES,
        N_FEATURES,
        window=2_048,
        boost_every=256,
        monotone=monotone_signs("ttft"),
        offset=prefill_backlog_log_ms if offset else None,
    )


def p90_loss(learner: IncrementalXGBoost, features: np.ndarray, y_log: np.ndarray) -> float:
    predicted = np.exp(learner.predict_many(features))
    return float(pinball_loss(np.exp(y_log), predicted, np.array(QUANTILES))[:, 1].mean())


def test_a_wrong_baseline_costs_almost_nothing() -> None:
    """With the roofline imposed, noise tokens in flight made TTFT p90s 10x too wide."""
    features, y = noise_stream(4_000, seed=2)
    with_offset, plain = trees(offset=True), trees(offset=False)
    for learner in (with_offset, plain):
        learner.learn_many(features[:3_000], y[:3_000])
    held_out = features[3_000:], y[3_000:]
    assert p90_loss(with_offset, *held_out) < 1.15 * p90_loss(plain, *held_out)


def test_forget_rebuilds_the_forest_on_recent_samples_only() -> None:
    features, y = noise_stream(3_000, seed=3)
    learner = trees(offset=False)
    learner.learn_many(features[:2_000], y[:2_000])
    slower = y[2_000:2_200] + math.log(3.0)  # the pod got three times slower
    learner.learn_many(features[2_000:2_200], slower)
    learner.forget(200)
    ratio = np.exp(learner.predict_many(features[2_200:])[:, 0] - y[2_200:])
    assert 2.0 < np.median(ratio) < 4.5


@pytest.mark.parametrize(
    ("base_log", "y_log"),
    [
        ([800.0, 900.0], [1.0, 2.0]),  # a baseline beyond float range
        ([-800.0, -900.0], [-800.0, -700.0]),  # outcomes and baseline that round to zero
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),  # no spread at all
    ],
)
def test_extreme_samples_fit_a_finite_offset(base_log: list[float], y_log: list[float]) -> None:
    """Whatever a hostile or broken stream sends, the fit stays finite (no NaN offsets)."""
    fitted = fit_offset(prefill_backlog_log_ms, np.array(base_log), np.array(y_log))
    assert math.isfinite(fitted.log_scale)
    assert fitted.log_floor == -math.inf or math.isfinite(fitted.log_floor)
