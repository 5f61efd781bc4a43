"""Fleet-wide model pins in Redis: a rollback or pin that every replica and trainer honours.

A pin says "serve registered version N of this key". It is stored once, in Redis, with the
pinned model set itself (in the snapshot format), so every predictor replica installs the
same model within its sync interval without asking MLflow, and a restart keeps it.
Trainers keep learning the key from its stream (exactly-once needs that), but what they
learn is a *challenger*: replicas never let a trainer checkpoint replace a pinned key, and
the MLflow ``champion`` alias stays on the pinned version until the pin is lifted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import RedisKeys
from latency_oracle.models.keys import ModelKey
from latency_oracle.models.model_set import ModelSet
from latency_oracle.models.persistence.snapshot import (
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
)


@dataclass(frozen=True, slots=True)
class Pin:
    """One key's pinned registered version, and when it was set."""

    key: ModelKey
    version: int
    pinned_at: float


class FleetPins:
    """Reads and writes the pins every replica and trainer of one deployment shares."""

    def __init__(
        self,
        client: RedisClient,
        keys: RedisKeys,
        quantiles: tuple[float, ...],
        signing_key: bytes | None = None,
    ) -> None:
        """``signing_key``: the snapshot key pinned model sets are signed and checked with."""
        self.client = client
        self.keys = keys
        self.quantiles = quantiles
        self.signing_key = signing_key

    def pin(self, model_set: ModelSet, version: int) -> Pin:
        """Make ``version`` (whose model set this is) what the whole fleet serves for its key."""
        key = model_set.key
        pin = Pin(key, version, time.time())
        data = encode_snapshot(
            {key: model_set}, self.quantiles, {"version": version}, self.signing_key
        )
        with self.client.pipeline(transaction=True) as tx:
            tx.set(self.keys.pinned(key.label()), data)
            tx.hset(
                self.keys.pins, key.label(), json.dumps({"version": version, "at": pin.pinned_at})
            )
            tx.execute()
        return pin

    def unpin(self, key: ModelKey) -> bool:
        """Let the trainers' learned model serve ``key`` again; False if it was not pinned."""
        with self.client.pipeline(transaction=True) as tx:
            tx.hdel(self.keys.pins, key.label())
            tx.delete(self.keys.pinned(key.label()))
            removed, _ = tx.execute()
        return bool(removed)

    def pins(self) -> dict[ModelKey, Pin]:
        """Every pin in force (one small hash read: replicas poll it with the versions)."""
        found = {}
        for label, raw in self.client.hgetall(self.keys.pins).items():
            key = ModelKey.parse(label.decode())
            meta = json.loads(raw)
            found[key] = Pin(key, int(meta["version"]), float(meta["at"]))
        return found

    def model_set(self, key: ModelKey) -> ModelSet:
        """The pinned model set of ``key``; ``SnapshotError`` if missing or unreadable."""
        data = self.client.get(self.keys.pinned(key.label()))
        if data is None:
            raise SnapshotError(f"pin of {key.label()} has no stored model set")
        payload = decode_snapshot(data, self.quantiles, self.signing_key)
        model_set = payload["model_sets"].get(key)
        if model_set is None:
            raise SnapshotError(f"stored pin of {key.label()} holds no model set for it")
        return model_set
