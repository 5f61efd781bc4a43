"""Snapshots cannot run code: only allow-listed types are built, pickles are refused, and a
snapshot key makes readers refuse anything its holders did not sign."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from latency_oracle.features.engineering import FEATURE_NAMES, RequestColumns
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.drift import EventKind
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.models.persistence.allowed_types import SNAPSHOT_TYPES
from latency_oracle.models.persistence.codec import DecodeError, EncodeError
from latency_oracle.models.persistence.snapshot import (
    MAGIC,
    SnapshotError,
    SnapshotSignatureError,
    decode_snapshot,
    encode_snapshot,
)
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import SyntheticStream, generate_stream

QUANTILES = (0.5, 0.9, 0.99)
KEY = b"k" * 32


class _Shell:
    """What an attacker's pickle would carry: unpickling it creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def trained() -> ModelRegistry:
    registry = ModelRegistry(ModelConfig(min_samples=100, eval_window=500, xgb_boost_every=128))
    registry.learn(generate_stream(1_200, seed=3).observations)
    return registry


def _document(data: bytes) -> tuple[bytes, bytes]:
    """A snapshot's header and its decompressed body (to craft hostile ones from)."""
    return data[:41], zlib.decompress(data[41:])


def _seal(prefix: bytes, raw: bytes, key: bytes | None = None) -> bytes:
    """A snapshot with a valid checksum (or signature) around ``raw``."""
    import hmac

    body = zlib.compress(raw)
    digest = (
        hashlib.sha256(prefix + body).digest()
        if key is None
        else hmac.new(key, prefix + body, hashlib.sha256).digest()
    )
    return prefix + digest + body


def test_round_trip_keeps_predictions_and_state(
    trained: ModelRegistry, stream: SyntheticStream
) -> None:
    data = encode_snapshot(trained.export_state(), QUANTILES, {"applied_id": "7-1"}, key=KEY)
    payload = decode_snapshot(data, QUANTILES, KEY)
    assert payload["extra"] == {"applied_id": "7-1"}
    restored = ModelRegistry(trained.config)
    restored.import_state(payload["model_sets"])
    columns = RequestColumns.from_requests(stream.observations[:64])
    np.testing.assert_array_equal(
        restored.predict(columns).ttft_ms, trained.predict(columns).ttft_ms
    )
    # the restored learners keep learning (XGBoost continues boosting its loaded booster)
    restored.learn(generate_stream(600, seed=4).observations)
    assert all(m.n_samples == 1_800 for m in restored.model_sets() if m.key.accelerator == "H100")


def test_a_model_set_racing_a_challenger_round_trips() -> None:
    config = ModelConfig(
        min_samples=300, eval_window=500, xgb_window=512, xgb_boost_every=128,
        challenger_window=300,
    )  # fmt: skip
    registry = ModelRegistry(config)
    stream = generate_stream(3_000, seed=1, shift_at=2_000).observations
    for start in range(0, len(stream), 128):
        report = registry.learn(stream[start : start + 128])
        if any(e.kind == EventKind.DRIFT for e in report.events):
            break
    racing = [m for m in registry.model_sets() if m.drift.race is not None]
    assert racing
    payload = decode_snapshot(encode_snapshot(registry.export_state(), QUANTILES), QUANTILES)
    restored = payload["model_sets"][racing[0].key]
    assert restored.drift.race is not None
    assert [e.kind for e in restored.drift.events] == [e.kind for e in racing[0].drift.events]


def test_an_unregistered_type_refuses_to_encode_naming_its_path(trained: ModelRegistry) -> None:
    model_set = trained.export_state()[ModelKey("H100", Target.TTFT)]
    model_set.slots[0].learner.stray = {"cache": _Shell(Path("/nonexistent"))}
    try:
        with pytest.raises(EncodeError, match=r"slots\[0\]\.learner\.stray\['cache'\].*_Shell"):
            encode_snapshot({model_set.key: model_set}, QUANTILES)
    finally:
        del model_set.slots[0].learner.stray
    with pytest.raises(EncodeError, match="dtype object"):
        SNAPSHOT_TYPES.encode(np.array([None]))


def test_old_pickle_snapshots_are_refused_without_being_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    body = zlib.compress(pickle.dumps({"x": _Shell(marker)}))
    old = struct.pack(">6sH32s", MAGIC, 5, hashlib.sha256(body).digest()) + body
    with pytest.raises(SnapshotError, match="format 5 is pickle-based and is refused"):
        decode_snapshot(old, QUANTILES)
    assert not marker.exists()


@pytest.mark.parametrize(
    "node",
    [
        {"t": "obj", "c": "posix.system", "v": {}},
        {"t": "fn", "c": "os.system"},
        {"t": "nd", "dtype": "|O", "shape": [1], "b": 0},
        {"t": "ad", "c": "builtins.eval", "v": "1"},
        {"t": "ref", "i": 99},
        {"t": "tuple", "v": [{"t": "ref", "i": 2}]},  # a tuple inside itself
        {"t": "list", "v": [{"t": "nd", "dtype": "<f8", "shape": [4], "b": 0}]},
    ],
)
def test_hostile_documents_build_nothing(trained: ModelRegistry, node: dict) -> None:
    """Even a correctly checksummed snapshot only builds allow-listed types."""
    header, _ = _document(encode_snapshot(trained.export_state(), QUANTILES))
    root = {
        "t": "dict",
        "v": [["quantiles", {"t": "tuple", "v": list(QUANTILES)}], ["model_sets", node]],
    }
    document = json.dumps({"root": root, "blobs": [8]}).encode()
    raw = struct.pack(">I", len(document)) + document + b"\0" * 8
    with pytest.raises(SnapshotError, match=r"unreadable|not a model snapshot"):
        decode_snapshot(_seal(header[:9], raw), QUANTILES)
    with pytest.raises(DecodeError):
        SNAPSHOT_TYPES.decode(raw)


def test_the_key_decides_what_is_read(trained: ModelRegistry) -> None:
    state = trained.export_state()
    unsigned = encode_snapshot(state, QUANTILES)
    signed = encode_snapshot(state, QUANTILES, key=KEY)
    with pytest.raises(SnapshotSignatureError, match="unsigned") as refused:
        decode_snapshot(unsigned, QUANTILES, KEY)
    assert refused.value.reason == "unsigned"
    with pytest.raises(SnapshotSignatureError, match="signature") as forged:
        decode_snapshot(encode_snapshot(state, QUANTILES, key=b"x" * 32), QUANTILES, KEY)
    assert forged.value.reason == "forged"
    tampered = bytearray(signed)
    tampered[-10] ^= 0xFF
    with pytest.raises(SnapshotSignatureError):
        decode_snapshot(bytes(tampered), QUANTILES, KEY)
    downgraded = bytearray(signed)
    downgraded[8] = 0  # claims to be unsigned, digest left as it was
    with pytest.raises(SnapshotError):
        decode_snapshot(bytes(downgraded), QUANTILES)
    assert decode_snapshot(signed, QUANTILES, KEY)["features"] == tuple(FEATURE_NAMES)
    # without the key (a reviewer loading an MLflow version) a signed one still reads
    assert set(decode_snapshot(signed, QUANTILES)["model_sets"]) == set(state)


def test_a_keyed_predictor_restores_only_its_own_signed_file(
    settings: Settings, stream: SyntheticStream
) -> None:
    keyed = Settings(**{**settings.model_dump(), "snapshot_key": "p" * 32})
    service = OracleService(keyed)
    service.models.learn(stream.observations[:600])
    service.save_snapshot()
    assert OracleService(keyed).restore_snapshot()
    unsigned = encode_snapshot(service.models.export_state(), keyed.quantiles)
    keyed.snapshot_path.write_bytes(unsigned)
    fresh = OracleService(keyed)
    assert not fresh.restore_snapshot() and fresh.models.model_sets() == []
