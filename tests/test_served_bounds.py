"""What is served stays near what was seen: no extrapolation explodes, and a new pair is
right about its own speed after its first outcomes, whatever its size or hardware label."""

from __future__ import annotations

import numpy as np
import pytest

from latency_oracle.features.engineering import N_FEATURES, RequestColumns, build_features
from latency_oracle.features.schema import Observation, PredictionRequest
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.registry import PRIOR_MODEL, ModelRegistry
from latency_oracle.models.river_linear import RiverQuantileLinear

QUANTILES = (0.5, 0.9, 0.99)


def _observations(
    n: int, accelerator: str, model: str, ttft_ms: float, tpot_ms: float, seed: int = 0
) -> list[Observation]:
    """A light load (queues of 0-2) with lognormal latencies around the given medians."""
    rng = np.random.default_rng(seed)
    noise = rng.lognormal(0.0, 0.25, size=(n, 2))
    return [
        Observation(
            observation_id=f"{accelerator}-{model}-{seed}-{i}",
            timestamp=1e9 + i,
            accelerator=accelerator,
            model=model,
            pod=f"{accelerator}-pod",
            input_tokens=int(rng.integers(20, 400)),
            output_tokens=32,
            running_requests=int(rng.integers(0, 3)),
            waiting_requests=int(rng.integers(0, 2)),
            kv_cache_usage=float(rng.uniform(0.0, 0.1)),
            ttft_ms=ttft_ms * float(noise[i, 0]),
            tpot_ms=tpot_ms * float(noise[i, 1]),
        )
        for i in range(n)
    ]


def _extreme(accelerator: str, model: str) -> PredictionRequest:
    """A pod state far outside anything learned: a queue of thousands."""
    return PredictionRequest(
        accelerator=accelerator,
        model=model,
        pod=f"{accelerator}-pod",
        input_tokens=100_000,
        running_requests=2_000,
        waiting_requests=5_000,
        kv_cache_usage=1.0,
        prefill_tokens_in_flight=5_000_000,
        decode_tokens_in_flight=1_000_000,
    )


def test_linear_model_does_not_extrapolate_beyond_the_states_it_learned() -> None:
    observations = _observations(600, "L4", "m", 40.0, 5.0)
    features = build_features(RequestColumns.from_requests(observations))
    y = np.log([o.tpot_ms for o in observations]) + 0.3 * features[:, 5]  # waiting matters
    learner = RiverQuantileLinear(QUANTILES, N_FEATURES)
    learner.learn_many(features, y)
    far = build_features(RequestColumns.from_requests([_extreme("L4", "m")]))
    assert np.exp(learner.predict_many(far)[0, 1]) < 20 * np.exp(y.max())


@pytest.mark.parametrize("n_learned", [20, 300, 1_200])
def test_no_served_prediction_exceeds_twenty_times_the_largest_outcome_seen(
    n_learned: int,
) -> None:
    registry = ModelRegistry(ModelConfig())
    observations = _observations(n_learned, "CPU", "tiny", 35.0, 4.0)
    for start in range(0, n_learned, 100):
        registry.learn(observations[start : start + 100])
    batch = registry.predict(
        RequestColumns.from_requests([_extreme("CPU", "tiny")]), served_models=np.array(["tiny"])
    )
    assert batch.ttft_model[0] != PRIOR_MODEL
    assert batch.ttft_ms.max() <= 20 * max(o.ttft_ms for o in observations)
    assert batch.tpot_ms.max() <= 20 * max(o.tpot_ms for o in observations)


@pytest.mark.parametrize(
    ("accelerator", "model", "ttft_ms"),
    [
        ("L4", "tiny", 33.0),
        ("CPU", "tiny", 33.0),
        ("H100", "llama-70b", 900.0),
        ("CPU", "big", 8_000.0),
    ],
)
def test_a_new_pair_answers_within_3x_of_its_truth_after_20_outcomes(
    accelerator: str, model: str, ttft_ms: float
) -> None:
    """The physics prior assumes a 7B model at spec FLOP/s (245 ms on an "L4", 7.4 s on a
    "CPU" for a tiny model measured at 30-37 ms); 20 outcomes must outweigh it."""
    registry = ModelRegistry(ModelConfig())
    registry.learn(_observations(20, accelerator, model, ttft_ms, 5.0, seed=1))
    fresh = _observations(2_000, accelerator, model, ttft_ms, 5.0, seed=2)
    truth_p90 = np.quantile([o.ttft_ms for o in fresh], 0.9)
    requests = [
        PredictionRequest(**o.model_dump(include=set(PredictionRequest.model_fields)))
        for o in fresh[:50]
    ]
    batch = registry.predict(
        RequestColumns.from_requests(requests), served_models=np.array([model] * 50, dtype=object)
    )
    p90 = batch.ttft_ms[:, QUANTILES.index(0.9)]
    assert np.all(batch.cold)  # still learning: says so
    assert np.all(p90 < 3 * truth_p90) and np.all(p90 > truth_p90 / 3)
