"""The records validate at the edge, and one feature function serves training and prediction."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from features.accelerators import normalize_accelerator
from features.engineering import FEATURE_NAMES, RequestColumns, build_features
from features.schema import Observation, PredictionRequest


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("h100-sxm5", "H100"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("AMD Instinct MI300X", "MI300X"),
        ("NVIDIA L4", "L4"),
        ("Gaudi 3", "Gaudi3"),
        ("Intel Xeon Platinum", "CPU"),
        ("my new chip!", "my-new-chip"),
        ("   ", "unknown"),
    ],
)
def test_accelerator_names_are_normalised(raw: str, canonical: str) -> None:
    assert normalize_accelerator(raw) == canonical


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"input_tokens": -1}, "input_tokens"),
        ({"kv_cache_usage": 1.7}, "kv_cache_usage"),
        ({"kv_cache_usage": float("nan")}, "kv_cache_usage"),
        ({"ttft_ms": float("inf")}, "ttft_ms"),
        ({"running_requests": "12"}, "running_requests"),
        ({"role": "router"}, "role"),
        ({"tpot_ms": 0.0, "output_tokens": 10}, "tpot_ms"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_observations_name_the_field(change: dict[str, object], field: str) -> None:
    raw = {"accelerator": "H100", "input_tokens": 10, "ttft_ms": 20.0} | change
    with pytest.raises(ValidationError) as info:
        Observation.model_validate(raw)
    assert field in {str(part) for error in info.value.errors() for part in error["loc"]}


def test_tpot_needs_two_output_tokens_and_outcome_is_required() -> None:
    with pytest.raises(ValidationError, match="tpot_ms needs output_tokens"):
        Observation(accelerator="H100", input_tokens=5, output_tokens=1, tpot_ms=9.0)
    with pytest.raises(ValidationError, match="needs ttft_ms, tpot_ms or both"):
        Observation(accelerator="H100", input_tokens=5)
    with pytest.raises(ValidationError, match="cannot exceed input_tokens"):
        PredictionRequest(accelerator="H100", input_tokens=5, prefix_cache_hit_tokens=6)


def test_observation_and_prediction_request_give_identical_features() -> None:
    shape = {
        "accelerator": "A100",
        "input_tokens": 900,
        "prefix_cache_score": 0.5,
        "output_tokens": 3,
        "running_requests": 7,
        "waiting_requests": 2,
        "kv_cache_usage": 0.4,
        "prefill_tokens_in_flight": 1_000,
        "decode_tokens_in_flight": 2_000,
    }
    trained = build_features(
        RequestColumns.from_requests([Observation(**shape, ttft_ms=50.0, tpot_ms=9.0)])
    )
    served = build_features(RequestColumns.from_requests([PredictionRequest(**shape)]))
    assert trained.shape == (1, len(FEATURE_NAMES))
    np.testing.assert_array_equal(trained, served)
    column = dict(zip(FEATURE_NAMES, served[0], strict=True))
    assert column["log_uncached_tokens"] == pytest.approx(np.log1p(450))
    assert column["log_queued_prefill_work"] == pytest.approx(np.log1p(1_450))
    assert column["hardware_known"] == 1.0


def test_hit_tokens_win_over_score_and_unknown_hardware_is_flagged() -> None:
    request = PredictionRequest(
        accelerator="weird-asic",
        input_tokens=100,
        prefix_cache_score=0.9,
        prefix_cache_hit_tokens=10,
    )
    column = dict(
        zip(FEATURE_NAMES, build_features(RequestColumns.from_requests([request]))[0], strict=True)
    )
    assert column["log_cached_tokens"] == pytest.approx(np.log1p(10))
    assert column["hardware_known"] == 0.0
    assert np.isfinite(list(column.values())).all()
