"""Versioned, checksummed model snapshots, so a restart (or a new replica) loses no learning.

Layout: magic, format version, SHA-256 of the body, then the zlib-compressed pickle of the
model sets. The checksum catches truncated or corrupted files before unpickling. Snapshots
are written by our own trainer into our own store; pickle is not for untrusted input.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

from latency_oracle.features.engineering import FEATURE_NAMES
from latency_oracle.models.keys import ModelKey
from latency_oracle.models.model_set import ModelSet

MAGIC = b"LOSNAP"
FORMAT_VERSION = 6  # 2: drift state; 3: monotone constraints; 4: forest sibling layout;
# 5: forest trees name their output column (int32 arrays for the C walk), and TTFT
# learners fit the residual over the prefill backlog (models.residual); 6: the backlog's
# fitted scale and floor (models.baseline_fit), pods' peer miss rates, rebuild cadence
_HEADER = struct.Struct(f">{len(MAGIC)}sH32s")


class SnapshotError(ValueError):
    """The snapshot is corrupt, truncated, or from an incompatible version."""


def encode_snapshot(
    model_sets: dict[ModelKey, ModelSet],
    quantiles: tuple[float, ...],
    extra: dict[str, Any] | None = None,
) -> bytes:
    payload = {
        "quantiles": tuple(quantiles),
        "features": FEATURE_NAMES,
        "model_sets": model_sets,
        "extra": extra or {},
    }
    body = zlib.compress(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL), level=1)
    return _HEADER.pack(MAGIC, FORMAT_VERSION, hashlib.sha256(body).digest()) + body


def decode_snapshot(data: bytes, quantiles: tuple[float, ...]) -> dict[str, Any]:
    """The payload of a snapshot, checked for integrity and compatibility."""
    if len(data) < _HEADER.size:
        raise SnapshotError("snapshot truncated: shorter than its header")
    magic, version, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError("not a Latency Oracle snapshot")
    if version != FORMAT_VERSION:
        raise SnapshotError(f"snapshot format {version}, this build reads {FORMAT_VERSION}")
    body = data[_HEADER.size :]
    if hashlib.sha256(body).digest() != digest:
        raise SnapshotError("snapshot checksum mismatch")
    payload = pickle.loads(zlib.decompress(body))
    if payload["features"] != FEATURE_NAMES:
        raise SnapshotError("snapshot was trained on a different feature set")
    if tuple(payload["quantiles"]) != tuple(quantiles):
        raise SnapshotError(f"snapshot serves quantiles {payload['quantiles']}, not {quantiles}")
    return payload


def write_atomically(path: Path, data: bytes) -> None:
    """Write then rename, so a crash mid-write never leaves a half snapshot behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
