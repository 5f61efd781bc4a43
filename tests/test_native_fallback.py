"""Without a C compiler: the numpy fallbacks give the compiled loops' results bit for bit,
the choice is logged and shown on /readyz, and the columns are checked by name at import."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from latency_oracle.features import _feature_rows, _feature_rows_fallback, native
from latency_oracle.features.engineering import (
    _GATHERED,
    FEATURE_NAMES,
    NUMBER_FIELDS,
    RequestColumns,
    check_columns,
    hardware_matrix,
)
from latency_oracle.features.schema import PredictionRequest
from latency_oracle.operations.readiness import Readiness
from latency_oracle.sim.synthetic_stream import SyntheticStream

FEATURE_ROWS = (_feature_rows, _feature_rows_fallback)


def rows_of(module: object, numbers: np.ndarray, hardware: np.ndarray) -> np.ndarray:
    out = np.full((len(numbers), len(FEATURE_NAMES)), -7.0)
    module.build(np.ascontiguousarray(numbers), hardware, out)  # type: ignore[attr-defined]
    return out


def test_both_feature_rows_have_the_columns_of_engineering() -> None:
    for module in FEATURE_ROWS:
        check_columns(module)  # raises on any difference
        assert module.FEATURE_NAMES == FEATURE_NAMES
        assert module.NUMBER_FIELDS == NUMBER_FIELDS


def test_fallback_feature_rows_equal_the_compiled_ones_bit_for_bit(
    stream: SyntheticStream,
) -> None:
    columns = RequestColumns.from_requests(stream.observations)
    edges = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0, 0, 0],  # an empty request on an idle pod
            [1e6, 2e6, 1e5, 1e4, 1e4, 1.0, 1e9, 1e9, 1],  # more cached than input, huge queues
            [5, 5, 1, 1, 0, 0.999, 3, 0, 2],
            [np.nan, 0, 1, 2, 3, 0.5, 4, 5, 0],  # NaN stays NaN in both
        ]
    )
    hardware = hardware_matrix(columns.accelerator)  # one row per request: mixed types
    for numbers, spec in (
        (columns.numbers, hardware),
        (columns.numbers[:64], hardware_matrix(np.array(["L4"] * 64, dtype=object))),
        (edges, hardware[:1]),
        (edges, np.array([[1.0, 0.0, -1.0, 0.0]] * 4)),  # off log's domain: -inf, NaN
        (np.empty((0, len(NUMBER_FIELDS))), np.empty((0, 4))),
    ):
        compiled, fallback = (rows_of(module, numbers, spec) for module in FEATURE_ROWS)
        np.testing.assert_array_equal(fallback, compiled)  # NaN where NaN, bits elsewhere


def test_fallback_gather_equals_the_compiled_one(stream: SyntheticStream) -> None:
    records = stream.observations[:200]
    names = tuple(name if name != "role" else None for name in _GATHERED)
    compiled, fallback = (np.full((len(records), len(names)), -1.0) for _ in FEATURE_ROWS)
    _feature_rows.gather(records, names, compiled)
    _feature_rows_fallback.gather(tuple(records), names, fallback)
    np.testing.assert_array_equal(fallback, compiled)


@pytest.mark.parametrize("module", FEATURE_ROWS, ids=("compiled", "fallback"))
def test_both_feature_rows_refuse_what_the_compiled_refuses(module: object) -> None:
    record = PredictionRequest(accelerator="H100", input_tokens=9)
    with pytest.raises(TypeError):
        module.gather([record], ("accelerator",), np.empty((1, 1)))  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        module.gather([record], ("nope",), np.empty((1, 1)))  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="wrong size"):
        module.gather([record], ("input_tokens",), np.empty((2, 1)))  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="inconsistent sizes"):
        module.build(np.zeros((2, 9)), np.ones((2, 4)), np.empty((1, 21)))  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        read_only = np.empty((1, 21))
        read_only.flags.writeable = False
        module.build(np.zeros((1, 9)), np.ones((1, 4)), read_only)  # type: ignore[attr-defined]


def test_feature_rows_of_other_columns_are_refused_at_import() -> None:
    swapped = (FEATURE_NAMES[1], FEATURE_NAMES[0], *FEATURE_NAMES[2:])
    stale = SimpleNamespace(__name__="stale", FEATURE_NAMES=swapped, NUMBER_FIELDS=NUMBER_FIELDS)
    with pytest.raises(ImportError, match="log_cached_tokens"):
        check_columns(stale)
    with pytest.raises(ImportError, match="NUMBER_FIELDS"):
        check_columns(SimpleNamespace(FEATURE_NAMES=FEATURE_NAMES))  # a build without names


def test_a_missing_extension_falls_back_with_a_warning_and_readyz_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(native, "_paths", dict(native._paths))  # this test's choices only
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        module = native.load(
            "latency_oracle.features._not_built", "latency_oracle.features._feature_rows_fallback"
        )
    assert module is _feature_rows_fallback
    assert "not_built" in caplog.text and "numpy fallback" in caplog.text
    body = Readiness.judge([], []).body()
    assert body["status"] == "ready"  # slower, still correct: no reason to pull the pod
    assert body["compute"]["not_built"] == native.FALLBACK  # type: ignore[index]
    assert body["compute"]["feature_rows"] == native.COMPILED  # type: ignore[index]
