"""Versioned, signed model snapshots that cannot execute code when read.

Layout (format 6): ``LOSNAP``, the format version (u16, big-endian), the digest scheme
(u8: 0 = SHA-256 checksum, unsigned; 1 = HMAC-SHA256 under the snapshot key), the 32-byte
digest, then the body. The digest covers the header's first fields and the body, so
neither can be swapped. The body is zlib-compressed: the length of a JSON document (u32,
big-endian), the document, then the binary blobs it refers to (``models.persistence.codec``: numpy
arrays as raw bytes with dtype and shape, XGBoost boosters in XGBoost's own UBJSON model
format). The document's root holds the served quantiles, the feature names, the model
sets, the writer's extra metadata and, when the writer learned them, the output lengths
(``models/output_length.py``; absent from older snapshots, which read as before).

Readers given a key accept only snapshots signed with it: anyone able to write the store
but not holding the key (a sidecar, a leaked Redis password) cannot get a model served.
Without a key, snapshots are written unsigned and readers check the checksum only; the
format still builds nothing but allow-listed types. Formats up to 5 were pickles and are
refused: reading one could run code.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import zlib
from pathlib import Path
from typing import Any

from latency_oracle.features.engineering import FEATURE_NAMES
from latency_oracle.models.keys import ModelKey
from latency_oracle.models.model_set import ModelSet
from latency_oracle.models.output_length import LengthCounts
from latency_oracle.models.persistence.allowed_types import SNAPSHOT_TYPES
from latency_oracle.models.persistence.codec import DecodeError, EncodeError

__all__ = [
    "EncodeError",
    "SnapshotError",
    "SnapshotSignatureError",
    "decode_snapshot",
    "encode_snapshot",
    "refusal_reason",
    "write_atomically",
]

MAGIC = b"LOSNAP"
FORMAT_VERSION = 7  # 7: the baseline's fitted scale and floor, pods' peer miss rates;
# 6: no pickle: JSON document + blobs (models.persistence.codec), HMAC signatures
LAST_PICKLE_FORMAT = 5
UNSIGNED, HMAC_SHA256 = 0, 1
MAX_BODY_BYTES = 1 << 30  # a decompression bomb stops here
_PREFIX = struct.Struct(f">{len(MAGIC)}sHB")
_HEADER_SIZE = _PREFIX.size + 32


class SnapshotError(ValueError):
    """The snapshot is corrupt, truncated, or from an incompatible version."""


class SnapshotSignatureError(SnapshotError):
    """The snapshot is unsigned or not signed with this process's key: it is refused."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "unsigned" or "forged": a metric label


def refusal_reason(exc: Exception) -> str:
    """Why a snapshot was not loaded, as a metric label: unsigned, forged, corrupt (checksum
    or format) or invalid (it decoded, but its content could not be used)."""
    if isinstance(exc, SnapshotSignatureError):
        return exc.reason
    return "corrupt" if isinstance(exc, SnapshotError) else "invalid"


def encode_snapshot(
    model_sets: dict[ModelKey, ModelSet],
    quantiles: tuple[float, ...],
    extra: dict[str, Any] | None = None,
    key: bytes | None = None,
    output_lengths: dict[str, LengthCounts] | None = None,
) -> bytes:
    """The snapshot of ``model_sets`` (and ``output_lengths``, when given): signed with
    ``key`` when given, else unsigned.

    Raises ``EncodeError`` (naming the type and attribute path) if the state holds a type
    that ``models.persistence.allowed_types`` does not list.
    """
    payload: dict[str, Any] = {
        "quantiles": tuple(quantiles),
        "features": tuple(FEATURE_NAMES),
        "model_sets": model_sets,
        "extra": extra or {},
    }
    if output_lengths is not None:
        payload["output_lengths"] = output_lengths
    body = zlib.compress(SNAPSHOT_TYPES.encode(payload), level=1)
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, UNSIGNED if key is None else HMAC_SHA256)
    return prefix + _digest(prefix, body, key) + body


def decode_snapshot(
    data: bytes, quantiles: tuple[float, ...], key: bytes | None = None
) -> dict[str, Any]:
    """The payload of a snapshot, checked for integrity, signature and compatibility.

    With a ``key``, only a snapshot signed with it is read (``SnapshotSignatureError``).
    """
    if len(data) < _HEADER_SIZE:
        raise SnapshotError("snapshot truncated: shorter than its header")
    magic, version, scheme = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError("not a Latency Oracle snapshot")
    if version <= LAST_PICKLE_FORMAT:
        raise SnapshotError(
            f"snapshot format {version} is pickle-based and is refused (reading it could run "
            f"code); it is replaced by the next snapshot a trainer writes"
        )
    if version != FORMAT_VERSION:
        raise SnapshotError(f"snapshot format {version}, this build reads {FORMAT_VERSION}")
    _verify(data, scheme, key)
    payload = _payload(data[_HEADER_SIZE:])
    if tuple(payload["features"]) != tuple(FEATURE_NAMES):
        raise SnapshotError("snapshot was trained on a different feature set")
    if tuple(payload["quantiles"]) != tuple(quantiles):
        raise SnapshotError(f"snapshot serves quantiles {payload['quantiles']}, not {quantiles}")
    return payload


def _digest(prefix: bytes, body: bytes, key: bytes | None) -> bytes:
    if key is None:
        return hashlib.sha256(prefix + body).digest()
    return hmac.new(key, prefix + body, hashlib.sha256).digest()


def _verify(data: bytes, scheme: int, key: bytes | None) -> None:
    """Checksum or signature; a signed snapshot read without a key (a reviewer loading an
    MLflow version) cannot be verified, and is read as the safe format it is."""
    prefix, digest = data[: _PREFIX.size], data[_PREFIX.size : _HEADER_SIZE]
    if scheme not in (UNSIGNED, HMAC_SHA256):
        raise SnapshotError(f"unknown snapshot digest scheme {scheme}")
    if key is not None and scheme == UNSIGNED:
        raise SnapshotSignatureError("unsigned", "snapshot is unsigned; a signed one is required")
    if key is None and scheme == HMAC_SHA256:
        return
    if not hmac.compare_digest(_digest(prefix, data[_HEADER_SIZE:], key), digest):
        if key is None:
            raise SnapshotError("snapshot checksum mismatch")
        raise SnapshotSignatureError("forged", "snapshot signature does not match the key")


def _payload(body: bytes) -> dict[str, Any]:
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(body, MAX_BODY_BYTES)
        if inflater.unconsumed_tail:
            raise SnapshotError(f"snapshot body over {MAX_BODY_BYTES} bytes uncompressed")
        payload = SNAPSHOT_TYPES.decode(raw)
    except (zlib.error, DecodeError) as exc:
        raise SnapshotError(f"snapshot body unreadable: {exc}") from exc
    if type(payload) is not dict or not {"quantiles", "features", "model_sets", "extra"} <= set(
        payload
    ):
        raise SnapshotError("snapshot body is not a model snapshot")
    model_sets = payload["model_sets"]
    if type(model_sets) is not dict or not all(
        isinstance(k, ModelKey) and isinstance(v, ModelSet) for k, v in model_sets.items()
    ):
        raise SnapshotError("snapshot's model sets are not model sets by key")
    lengths = payload.setdefault("output_lengths", None)
    if lengths is not None and (
        type(lengths) is not dict
        or not all(type(k) is str and isinstance(v, LengthCounts) for k, v in lengths.items())
    ):
        raise SnapshotError("snapshot's output lengths are not counts by served model")
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
