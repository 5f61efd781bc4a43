"""The compiled forest walk (models/forest.py and its C loop) against XGBoost itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from latency_oracle.features.engineering import N_FEATURES, RequestColumns, build_features
from latency_oracle.models import _forest_walk, _forest_walk_fallback
from latency_oracle.models.forest import CompiledForest
from latency_oracle.models.xgboost_learner import IncrementalXGBoost
from latency_oracle.sim.synthetic_stream import SyntheticStream

QUANTILES = (0.5, 0.9, 0.99)


@pytest.fixture(scope="module")
def features(stream: SyntheticStream) -> np.ndarray:
    return build_features(RequestColumns.from_requests(stream.observations))


@pytest.fixture(scope="module")
def forest(stream: SyntheticStream, features: np.ndarray) -> CompiledForest:
    y = np.log([o.ttft_ms for o in stream.observations])
    learner = IncrementalXGBoost(QUANTILES, N_FEATURES, window=512, boost_every=128)
    learner.learn_many(features[:1_500], y[:1_500])
    compiled = learner.serving_function()
    assert isinstance(compiled, CompiledForest)
    return compiled


@pytest.mark.parametrize("rows", [1, 64, 500])
def test_walk_matches_xgboost(forest: CompiledForest, features: np.ndarray, rows: int) -> None:
    batch = features[1_500 : 1_500 + rows]
    reference = forest.booster.inplace_predict(batch).reshape(rows, -1)
    np.testing.assert_allclose(forest(batch), reference, rtol=1e-5, atol=1e-5)


def test_leading_answers_the_first_quantiles(forest: CompiledForest, features: np.ndarray) -> None:
    batch = features[1_500:1_564]
    np.testing.assert_allclose(forest.leading(2)(batch), forest(batch)[:, :2], atol=1e-12)


def test_rows_of_the_wrong_width_are_refused(forest: CompiledForest, features: np.ndarray) -> None:
    with pytest.raises(ValueError, match="features"):
        forest(features[:4, :-1])


def test_an_index_out_of_bounds_is_refused_at_compile_time(forest: CompiledForest) -> None:
    bad_left = forest.left.copy()
    bad_left[forest.roots[0]] = forest.value.size  # a root whose children are past the end
    with pytest.raises(ValueError, match="out of bounds"):
        replace(forest, left=bad_left)
    with pytest.raises(ValueError, match="out of bounds"):
        replace(forest, feature=np.full_like(forest.feature, N_FEATURES))


@pytest.mark.parametrize("rows", [1, 17, 64, 500])
def test_the_numpy_fallback_walks_to_the_same_sums_bit_for_bit(
    forest: CompiledForest, features: np.ndarray, rows: int
) -> None:
    """Rows in blocks of 16 and the rows past the last block; every quantile column."""
    x = np.ascontiguousarray(features[1_500 : 1_500 + rows], np.float32)
    arrays = (forest.feature, forest.threshold, forest.left, forest.value, forest.roots)
    sums = []
    for module in (_forest_walk, _forest_walk_fallback):
        out = forest.base[None, :].repeat(rows, axis=0)
        module.walk(x, N_FEATURES, *arrays, forest.output, forest.depth, out, forest.base.size)
        sums.append(out)
    np.testing.assert_array_equal(sums[1], sums[0])


@pytest.mark.parametrize("walk", [_forest_walk.walk, _forest_walk_fallback.walk])
def test_the_walk_refuses_arrays_of_inconsistent_sizes(
    forest: CompiledForest, walk: Callable[..., None]
) -> None:
    x = np.zeros((2, N_FEATURES), np.float32)
    out = np.zeros((2, 3))
    arrays = (forest.feature, forest.threshold, forest.left, forest.value, forest.roots)
    with pytest.raises(ValueError, match="inconsistent"):
        walk(x, N_FEATURES, *arrays, forest.output[:-1], forest.depth, out, 3)
    with pytest.raises(ValueError, match="inconsistent"):
        walk(x, N_FEATURES, *arrays, forest.output, forest.depth, out[:1], 3)
