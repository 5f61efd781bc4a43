"""TTFT models learn the residual over the prefill backlog, so they rise past seen queues."""

from __future__ import annotations

import numpy as np
import pytest

from latency_oracle.features.accelerators import hardware_spec
from latency_oracle.features.engineering import (
    N_FEATURES,
    RequestColumns,
    build_features,
    monotone_signs,
)
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.models.learner import Learner
from latency_oracle.models.prior import (
    FIXED_OVERHEAD_MS,
    PARAMETERS,
    PREFILL_EFFICIENCY,
    prefill_backlog_log_ms,
)
from latency_oracle.models.river_linear import RiverQuantileLinear
from latency_oracle.models.rolling_quantile import RollingQuantile
from latency_oracle.models.xgboost_learner import IncrementalXGBoost

QUANTILES = (0.5, 0.9, 0.99)
MAX_QUEUE = 20_000


def h100_columns(queued: np.ndarray, prompt: np.ndarray) -> RequestColumns:
    n = len(queued)
    return RequestColumns.of(
        accelerator=np.full(n, "H100", dtype=object),
        pod=np.full(n, "h100-0", dtype=object),
        role=np.zeros(n),
        input_tokens=prompt,
        cached_tokens=np.zeros(n),
        max_tokens=np.full(n, 128.0),
        running_requests=np.full(n, 8.0),
        waiting_requests=np.ceil(queued / 1_000),
        kv_cache_usage=np.full(n, 0.3),
        prefill_tokens_in_flight=queued,
        decode_tokens_in_flight=np.full(n, 4_000.0),
    )


def queue_stream(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """TTFT that drains queued prefill work at a steady rate, seen up to MAX_QUEUE tokens."""
    rng = np.random.default_rng(seed)
    queued = rng.uniform(0, MAX_QUEUE, n)
    prompt = rng.integers(200, 2_000, n)
    median_ms = 25.0 + 0.08 * (queued + prompt)
    ttft = median_ms * rng.lognormal(0.0, 0.2, n)
    return build_features(h100_columns(queued, prompt)), np.log(ttft)


def trees(offset: bool) -> IncrementalXGBoost:
    return IncrementalXGBoost(
        QUANTILES,
        N_FEATURES,
        window=1_024,
        boost_every=256,
        monotone=monotone_signs("ttft"),
        offset=prefill_backlog_log_ms if offset else None,
    )


def p90_at(learner: Learner, queued: float) -> float:
    features = build_features(h100_columns(np.array([queued]), np.array([1_000])))
    return float(np.exp(learner.predict_many(features)[0, 1]))


def test_residual_trees_predict_higher_at_twice_the_deepest_queue_seen() -> None:
    features, y = queue_stream(3_000)
    learner = trees(offset=True)
    learner.learn_many(features, y)
    at_max, at_twice = p90_at(learner, MAX_QUEUE), p90_at(learner, 2 * MAX_QUEUE)
    # The truth nearly doubles (0.08 ms per queued token); it must at least rise by half.
    assert at_twice > 1.5 * at_max


def test_plain_trees_predict_flat_beyond_the_deepest_queue_seen() -> None:
    """The failure the residual fixes: without it, twice the queue predicts the same."""
    features, y = queue_stream(3_000)
    learner = trees(offset=False)
    learner.learn_many(features, y)
    assert p90_at(learner, 2 * MAX_QUEUE) == pytest.approx(p90_at(learner, MAX_QUEUE))


def test_residual_trees_stay_calibrated_inside_the_seen_range() -> None:
    features, y = queue_stream(4_000, seed=1)
    learner = trees(offset=True)
    learner.learn_many(features[:3_000], y[:3_000])
    coverage = (y[3_000:, None] <= learner.predict_many(features[3_000:])).mean(axis=0)
    assert 0.4 < coverage[0] < 0.6 and 0.83 < coverage[1] < 0.96


def test_backlog_baseline_is_the_roofline_drain_time_plus_overhead() -> None:
    queued, prompt = np.array([0.0, 5_000.0, 50_000.0]), np.array([999, 999, 999])
    features = build_features(h100_columns(queued, prompt))
    spec = hardware_spec("H100")
    assert spec is not None
    tokens = queued + prompt + 1  # the feature's log1p
    expected = 2 * PARAMETERS * tokens / (spec.tflops * 1e12 * PREFILL_EFFICIENCY) * 1e3
    np.testing.assert_allclose(
        np.exp(prefill_backlog_log_ms(features)), expected + FIXED_OVERHEAD_MS, rtol=1e-9
    )


@pytest.mark.parametrize("accelerator", ["H100", "global"])
def test_only_ttft_learners_fit_the_residual(accelerator: str) -> None:
    config = ModelConfig()
    ttft = config.make_learners(ModelKey(accelerator, Target.TTFT))
    tpot = config.make_learners(ModelKey(accelerator, Target.TPOT))
    state_aware = [x for x in ttft if not isinstance(x, RollingQuantile)]  # state-blind by design
    assert all(learner.offset is prefill_backlog_log_ms for learner in state_aware)
    assert all(learner.offset is None for learner in tpot)
    assert any(isinstance(learner, IncrementalXGBoost) for learner in ttft)
    assert accelerator == "global" or any(isinstance(x, RiverQuantileLinear) for x in ttft)
