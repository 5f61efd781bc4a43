"""The records validate at the edge, and one feature function serves training and prediction."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from latency_oracle.features._feature_rows import gather
from latency_oracle.features.accelerators import normalize_accelerator
from latency_oracle.features.engineering import (
    FEATURE_NAMES,
    NUMBER_FIELDS,
    ROLE_CODES,
    RequestColumns,
    build_features,
    record_numbers,
)
from latency_oracle.features.schema import Observation, PodRole, PredictionRequest


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


def test_every_feature_column_is_its_formula() -> None:
    """The compiled feature rows, column by name, for a prefill pod and a decode pod of
    different hardware in one batch (each row its own spec-sheet figures)."""
    prefill = PredictionRequest(
        accelerator="H100",
        role="prefill",
        input_tokens=1_000,
        prefix_cache_hit_tokens=250,
        max_tokens=64,
        running_requests=3,
        waiting_requests=2,
        kv_cache_usage=0.25,
        prefill_tokens_in_flight=4_000,
        decode_tokens_in_flight=9_000,
    )
    decode = prefill.model_copy(update={"accelerator": "L4", "role": "decode"})
    rows = build_features(RequestColumns.from_requests([prefill, decode]))
    uncached, queued = 750, 4_750
    for row, (tflops, hbm_gbps, memory_gb), roles in (
        (rows[0], (989.0, 3350.0, 80.0), (1.0, 0.0)),
        (rows[1], (121.0, 300.0, 24.0), (0.0, 1.0)),
    ):
        expected = {
            "log_input_tokens": np.log1p(1_000),
            "log_cached_tokens": np.log1p(250),
            "log_uncached_tokens": np.log1p(uncached),
            "prefix_hit_fraction": 0.25,
            "running_requests": 3,
            "waiting_requests": 2,
            "log_running_requests": np.log1p(3),
            "log_waiting_requests": np.log1p(2),
            "kv_cache_usage": 0.25,
            "log_prefill_in_flight": np.log1p(4_000),
            "log_decode_in_flight": np.log1p(9_000),
            "log_queued_prefill_work": np.log1p(queued),
            "log_max_tokens": np.log1p(64),
            "role_prefill": roles[0],
            "role_decode": roles[1],
            "log_tflops": np.log(tflops),
            "log_hbm_gbps": np.log(hbm_gbps),
            "log_memory_gb": np.log(memory_gb),
            "hardware_known": 1.0,
            "log_prefill_compute_time": np.log1p(queued) - np.log(tflops),
            "log_decode_memory_time": np.log1p(9_000 + 3) - np.log(hbm_gbps),
        }
        assert list(expected) == list(FEATURE_NAMES)
        np.testing.assert_allclose(row, list(expected.values()), rtol=1e-12)


def test_columns_of_inconsistent_width_are_refused() -> None:
    columns = RequestColumns.from_requests([PredictionRequest(accelerator="H100", input_tokens=9)])
    narrow = RequestColumns(columns.accelerator, columns.pod, columns.numbers[:, :-1])
    with pytest.raises(ValueError, match="inconsistent sizes"):
        build_features(narrow)


def test_an_empty_batch_has_no_rows() -> None:
    empty = RequestColumns.from_requests([])
    assert build_features(empty).shape == (0, len(FEATURE_NAMES))


def test_record_numbers_turn_the_prefix_cache_hint_into_cached_tokens() -> None:
    records = [
        PredictionRequest(
            accelerator="H100", input_tokens=100, prefix_cache_hit_tokens=30, prefix_cache_score=0.9
        ),
        PredictionRequest(accelerator="H100", input_tokens=100, prefix_cache_score=0.25),
        PredictionRequest(accelerator="L4", input_tokens=100, role=PodRole.DECODE, max_tokens=7),
    ]
    numbers = record_numbers(records)
    column = {name: numbers[:, i].tolist() for i, name in enumerate(NUMBER_FIELDS)}
    assert column["cached_tokens"] == [30.0, 25.0, 0.0]  # hit tokens win over the fraction
    assert column["role"] == [0.0, 0.0, float(ROLE_CODES[PodRole.DECODE])]
    assert column["max_tokens"] == [0.0, 0.0, 7.0]
    shared = record_numbers(records[1:2], input_tokens=400.0, max_tokens=5.0)
    assert shared[0, NUMBER_FIELDS.index("cached_tokens")] == 100.0  # of the shared prompt
    assert shared[0, NUMBER_FIELDS.index("max_tokens")] == 5.0


def test_gather_reads_attributes_as_numbers_and_refuses_anything_else() -> None:
    record = PredictionRequest(accelerator="H100", input_tokens=9, kv_cache_usage=0.5)
    out = np.full((2, 3), -1.0)
    gather([record, record], ("input_tokens", "prefix_cache_score", None), out)
    assert out[:, 0].tolist() == [9.0, 9.0]
    assert np.isnan(out[:, 1]).all()  # an attribute of None reads as NaN
    assert out[:, 2].tolist() == [-1.0, -1.0]  # a name of None leaves its column alone
    with pytest.raises(TypeError):
        gather([record], ("accelerator",), np.empty((1, 1)))
    with pytest.raises(AttributeError):
        gather([record], ("no_such_field",), np.empty((1, 1)))
    with pytest.raises(ValueError, match="wrong size"):
        gather([record], ("input_tokens",), np.empty((2, 1)))
