"""Keeps a predictor replica's models current with the trainers' checkpoints in Redis.

A background thread polls the per-shard checkpoint versions (one small hash read) and
decodes a shard's snapshot only when its version moved, then swaps its keys into the
registry; predictions keep reading published models meanwhile. Keys the fleet has pinned
to a registered version (``models/persistence/redis_pins.py``) serve that version instead, whatever
the trainers checkpoint, until the pin is released. If Redis is unreachable the last good
models keep serving and the error and staleness are reported. A snapshot that is refused
(unsigned, forged, corrupt or unusable) is reported and skipped: its shard (or pin) keeps
its last good models, and the next good one is loaded as usual.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from latency_oracle.models.keys import ModelKey
from latency_oracle.models.learned_share import fleet_observed
from latency_oracle.models.persistence.redis_checkpoint import CheckpointStore
from latency_oracle.models.persistence.redis_pins import FleetPins
from latency_oracle.models.persistence.snapshot import refusal_reason
from latency_oracle.models.registry import ModelRegistry

log = logging.getLogger(__name__)


class ModelSync:
    """Loads new shard checkpoints into a registry, off the request path."""

    def __init__(
        self,
        checkpoints: CheckpointStore,
        models: ModelRegistry,
        pins: FleetPins | None = None,
        on_error: Callable[[Exception], None] = lambda _: None,
        on_refused: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.checkpoints = checkpoints
        self.models = models
        self.pins = pins
        # Keys the fleet serves a pinned version of, and which: checkpoints never replace them.
        self.pinned: dict[ModelKey, int] = {}
        self._pins_read: dict[ModelKey, int] = {}  # pin version last read, good or refused
        self.on_error = on_error
        self.on_refused = on_refused
        self.last_error: str | None = None
        self.last_success: float | None = None
        self.started = time.monotonic()
        self._versions: dict[str, int] = {}
        # Shards whose newest checkpoint was refused: their last good models serve.
        self.corrupt: dict[str, str] = {}
        # Observations each shard's keys counted, as of its checkpoint loaded last.
        self._observed: dict[str, dict[str, int]] = {}

    def sync_once(self) -> list[str]:
        """Apply pin changes, then load every shard whose checkpoint changed; the shards loaded."""
        if self.pins is not None:
            self._sync_pins(self.pins)
        loaded = []
        for shard, version in self.checkpoints.versions().items():
            if self._versions.get(shard) == version:
                continue
            self._versions[shard] = version
            if self._load(shard):
                loaded.append(shard)
        if loaded:
            self._count_observed()
        self.last_success = time.monotonic()
        self.last_error = None
        return loaded

    def _sync_pins(self, fleet: FleetPins) -> None:
        """Install newly pinned versions; on a released pin, reload the trainers' models."""
        pins = fleet.pins()
        for key, pin in pins.items():
            if self._pins_read.get(key) == pin.version:
                continue  # installed, or refused once: a refused pin is not decoded again
            self._pins_read[key] = pin.version
            label = f"pin {key.label()}"
            try:
                model_set = fleet.model_set(key)
            except redis.RedisError:
                del self._pins_read[key]  # read it again once Redis answers
                raise
            except Exception as exc:  # a bad pin must not stop the sync either
                self._refused(label, exc)
                continue
            self.corrupt.pop(label, None)
            self.models.merge_state({key: model_set})
            self.pinned[key] = pin.version
            log.info("serving pinned version %d of %s", pin.version, key.label())
        self._pins_read = {key: v for key, v in self._pins_read.items() if key in pins}
        released = [key for key in self.pinned if key not in pins]
        for key in released:
            del self.pinned[key]
            log.info("pin of %s released: serving the trainers' model again", key.label())
        if released:
            self._versions.clear()  # reload every shard, so the released keys come back

    def _load(self, shard: str) -> bool:
        """Load one shard's checkpoint, bar its pinned keys; False (reported) if it is
        refused or missing."""
        try:
            checkpoint = self.checkpoints.read(shard)
            if checkpoint is not None:
                self.models.merge_state(
                    {k: m for k, m in checkpoint.model_sets.items() if k not in self.pinned}
                )
                if checkpoint.output_lengths is not None:  # the global shard's
                    self.models.import_output_lengths(checkpoint.output_lengths)
        except redis.RedisError:
            del self._versions[shard]  # read it again once Redis answers
            raise
        except Exception as exc:  # anything in a snapshot must not stop the sync
            self._refused(shard, exc)
            return False
        if checkpoint is None:
            return False
        self.corrupt.pop(shard, None)
        self._observed[shard] = checkpoint.observed
        return True

    def _count_observed(self) -> None:
        """Every key's observation count, so statuses say what share each learned: a
        shard's keys as counted by its trainer, the global keys every shard's summed."""
        counts = {
            ModelKey.parse(label): n
            for per_key in self._observed.values()
            for label, n in per_key.items()
        }
        counts |= fleet_observed(self._observed)  # the global keys: the fleet's, summed
        self.models.count_observed(counts)

    def _refused(self, what: str, exc: Exception) -> None:
        reason = refusal_reason(exc)
        log.error("refused snapshot of %s (%s): %s", what, reason, exc)
        self.on_error(exc)
        self.on_refused(reason)
        self.corrupt[what] = f"{reason}: {type(exc).__name__}: {exc}"[:300]

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
