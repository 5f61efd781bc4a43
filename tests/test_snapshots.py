"""Snapshots survive restarts; corrupt or incompatible ones are refused, never half-loaded."""

from __future__ import annotations

import numpy as np
import pytest

from latency_oracle.features.engineering import RequestColumns
from latency_oracle.models.persistence.snapshot import (
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
)
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import SyntheticStream


def _trained(settings: Settings, stream: SyntheticStream) -> OracleService:
    service = OracleService(settings)
    for start in range(0, 800, 200):
        service.models.learn(stream.observations[start : start + 200])
    return service


def test_restart_restores_the_same_predictions(settings: Settings, stream: SyntheticStream) -> None:
    before = _trained(settings, stream)
    before.save_snapshot()
    after = OracleService(settings)
    assert after.restore_snapshot()
    columns = RequestColumns.from_requests(stream.observations[2_000:2_050])
    np.testing.assert_array_equal(
        after.models.predict(columns).ttft_ms, before.models.predict(columns).ttft_ms
    )
    assert {m.key: m.n_samples for m in after.models.model_sets()} == {
        m.key: m.n_samples for m in before.models.model_sets()
    }


def test_corrupt_snapshot_is_ignored(settings: Settings, stream: SyntheticStream) -> None:
    _trained(settings, stream).save_snapshot()
    data = bytearray(settings.snapshot_path.read_bytes())
    data[-10] ^= 0xFF
    settings.snapshot_path.write_bytes(bytes(data))
    fresh = OracleService(settings)
    assert not fresh.restore_snapshot()
    assert fresh.models.model_sets() == []


def test_snapshot_checks(settings: Settings, stream: SyntheticStream) -> None:
    service = _trained(settings, stream)
    data = encode_snapshot(service.models.export_state(), (0.5, 0.9, 0.99))
    assert set(decode_snapshot(data, (0.5, 0.9, 0.99))["model_sets"]) == set(
        service.models.export_state()
    )
    with pytest.raises(SnapshotError, match="quantiles"):
        decode_snapshot(data, (0.5, 0.9))
    with pytest.raises(SnapshotError, match="truncated"):
        decode_snapshot(data[:5], (0.5, 0.9, 0.99))
    with pytest.raises(SnapshotError, match="not a Latency Oracle snapshot"):
        decode_snapshot(b"x" * 100, (0.5, 0.9, 0.99))
