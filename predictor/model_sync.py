"""Keeps a predictor replica's models current with the trainers' checkpoints in Redis.

A background thread polls the per-shard checkpoint versions (one small hash read) and
decodes a shard's snapshot only when its version moved, then swaps its keys into the
registry; predictions keep reading published models meanwhile. If Redis is unreachable
the last good models keep serving and the error and staleness are reported. A snapshot
that is refused (unsigned, forged, corrupt or unusable) is reported and skipped: its
shard keeps its last good models, and the next good checkpoint is loaded as usual.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from latency_oracle.models.redis_checkpoint import CheckpointStore
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.models.snapshot import refusal_reason

log = logging.getLogger(__name__)


class ModelSync:
    """Loads new shard checkpoints into a registry, off the request path."""

    def __init__(
        self,
        checkpoints: CheckpointStore,
        models: ModelRegistry,
        on_error: Callable[[Exception], None] = lambda _: None,
        on_refused: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.checkpoints = checkpoints
        self.models = models
        self.on_error = on_error
        self.on_refused = on_refused
        self.last_error: str | None = None
        self.last_success: float | None = None
        self.started = time.monotonic()
        self._versions: dict[str, int] = {}
        # Shards whose newest checkpoint was refused: their last good models serve.
        self.corrupt: dict[str, str] = {}

    def sync_once(self) -> list[str]:
        """Load every shard whose checkpoint changed; the shards loaded."""
        loaded = []
        for shard, version in self.checkpoints.versions().items():
            if self._versions.get(shard) == version:
                continue
            self._versions[shard] = version
            if self._load(shard):
                loaded.append(shard)
        self.last_success = time.monotonic()
        self.last_error = None
        return loaded

    def _load(self, shard: str) -> bool:
        """Load one shard's checkpoint; False (reported) if it is refused or missing."""
        try:
            checkpoint = self.checkpoints.read(shard)
            if checkpoint is not None:
                self.models.merge_state(checkpoint.model_sets)
        except redis.RedisError:
            del self._versions[shard]  # read it again once Redis answers
            raise
        except Exception as exc:  # anything in a snapshot must not stop the sync
            reason = refusal_reason(exc)
            log.error("refused checkpoint of shard %s (%s): %s", shard, reason, exc)
            self.on_error(exc)
            self.on_refused(reason)
            self.corrupt[shard] = f"{reason}: {type(exc).__name__}: {exc}"[:300]
            return False
        if checkpoint is None:
            return False
        self.corrupt.pop(shard, None)
        return True

    def poll(self) -> None:
        """One sync; a failure is recorded, and the current models keep serving."""
        try:
            self.sync_once()
        except Exception as exc:  # the sync thread must outlive any failure
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.on_error(exc)

    def sync_forever(self, stop: threading.Event, interval_s: float) -> None:
        while not stop.wait(interval_s):
            self.poll()

    def staleness_s(self) -> float:
        """Seconds since the last successful sync (since start, before the first one)."""
        return time.monotonic() - (self.last_success or self.started)
