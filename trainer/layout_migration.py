"""Moves a deployment's Redis keys from layout 1 to layout 2 (``features.redis.key_layout``).

Layout 1, before Redis Cluster support, named keys ``<P>:obs:<accelerator>``,
``<P>:snapshot:<accelerator>``, ``<P>:versions``, ``<P>:pins``, ``<P>:pinned:<label>`` and
so on; layout 2 puts hash tags in every name and shards per (accelerator, served model).
The snapshot format is unchanged: models move, they are not retrained.

``latency-oracle redis-migrate``, run once with the admin user after the old trainers
stopped and before the new ones start (writers of either version may run):

- every layout-1 checkpoint is split into layout 2's shards (a served model's keys to its
  own shard, the global keys to ``global``), each checkpoint signed with the snapshot key
  as trainers sign theirs, counting its models' samples as observed, and announced;
- fleet pins move with their model sets;
- observations still waiting in layout-1 streams stop it, unless told to leave them
  (``--drop-unlearned``): an old trainer should drain them first;
- idempotency ids, pod states, leases and heartbeats are not moved: sidecars report
  again within a second, trainers take leases afresh, and a write retried across the
  switch may be stored twice;
- ``--delete-old`` then deletes every layout-1 key of the prefix.

Running it again skips the shards and pins already moved.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

import redis

from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import (
    GLOBAL_SHARD,
    TRAINER_GROUP,
    RedisKeys,
    shard_of,
)
from latency_oracle.features.redis.observation_store import connect_as
from latency_oracle.models.keys import GLOBAL_ACCELERATOR, ModelKey
from latency_oracle.models.model_set import ModelSet
from latency_oracle.models.persistence.redis_checkpoint import NO_ENTRY_ID
from latency_oracle.models.persistence.snapshot import decode_snapshot, encode_snapshot
from latency_oracle.settings import Settings

# Layout 1's key families under "<prefix>:" (SCAN patterns).
LAYOUT_1_FAMILIES = (
    *("shards", "versions", "applied", "pins", "trainers", "pods"),
    *("obs:*", "seen:*", "snapshot:*", "pinned:*", "lease:*", "pod:*"),
)


class MigrationRefused(RuntimeError):
    """Layout-1 state that moving now would lose; the message says what to do."""


@dataclass
class MigrationReport:
    shards: list[str] = field(default_factory=list)  # layout-2 shards given a checkpoint
    skipped: list[str] = field(default_factory=list)  # already had one
    pins: list[str] = field(default_factory=list)
    deleted: int = 0  # layout-1 keys deleted


class LayoutMigration:
    """Layout 1 to layout 2 for one key prefix, through an admin client of a single Redis."""

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        quantiles: tuple[float, ...],
        signing_key: bytes | None,
    ) -> None:
        self.client = client
        self.old = prefix  # layout 1: "<prefix>:<name>"
        self.keys = RedisKeys(prefix)
        self.quantiles = quantiles
        self.signing_key = signing_key

    def run(self, *, drop_unlearned: bool = False, delete_old: bool = False) -> MigrationReport:
        report = MigrationReport()
        old_shards = sorted(m.decode() for m in self.client.smembers(f"{self.old}:shards"))
        self._check_idle(old_shards, drop_unlearned)
        for shard, model_sets in sorted(self._split(old_shards).items()):
            (report.shards if self._write(shard, model_sets) else report.skipped).append(shard)
        report.pins = self._move_pins()
        if delete_old:
            report.deleted = self._delete_old()
        return report

    def _check_idle(self, old_shards: list[str], drop_unlearned: bool) -> None:
        leased = list(self.client.scan_iter(f"{self.old}:lease:*", count=1_000))
        if leased:
            raise MigrationRefused(
                f"{len(leased)} layout-1 shard lease(s) live: stop the old trainers first"
            )
        waiting = {shard: self._backlog(f"{self.old}:obs:{shard}") for shard in old_shards}
        waiting = {shard: n for shard, n in waiting.items() if n}
        if waiting and not drop_unlearned:
            raise MigrationRefused(
                f"observations not yet learned in layout-1 streams {waiting}: let an old "
                "trainer drain them, or pass --drop-unlearned to leave them behind"
            )

    def _backlog(self, stream: str) -> int:
        try:
            groups = self.client.xinfo_groups(stream)
        except redis.ResponseError:  # no stream
            return 0
        group = next((g for g in groups if g["name"].decode() == TRAINER_GROUP), None)
        if group is None:
            return int(self.client.xlen(stream))
        return int(group["pending"]) + int(group.get("lag") or 0)

    def _split(self, old_shards: list[str]) -> dict[str, dict[ModelKey, ModelSet]]:
        """Every layout-1 checkpoint's model sets, by the layout-2 shard that learns them."""
        by_shard: dict[str, dict[ModelKey, ModelSet]] = defaultdict(dict)
        for old in old_shards:
            data = self.client.get(f"{self.old}:snapshot:{old}")
            if data is None:
                continue
            payload = decode_snapshot(data, self.quantiles, self.signing_key)
            for key, model_set in payload["model_sets"].items():
                new = (
                    GLOBAL_SHARD
                    if key.accelerator == GLOBAL_ACCELERATOR
                    else shard_of(key.accelerator, key.model)
                )
                by_shard[new][key] = model_set
        return by_shard

    def _write(self, shard: str, model_sets: dict[ModelKey, ModelSet]) -> bool:
        """The shard's first checkpoint; False when it has one already."""
        if self.client.exists(self.keys.snapshot(shard)):
            return False
        data = encode_snapshot(
            model_sets, self.quantiles, {"applied_id": NO_ENTRY_ID}, self.signing_key
        )
        observed = {key.label(): m.n_samples for key, m in model_sets.items()}
        with self.client.pipeline(transaction=True) as tx:  # one slot: the shard's
            tx.set(self.keys.snapshot(shard), data)
            tx.hset(self.keys.meta(shard), mapping={"version": 1, "observed": json.dumps(observed)})
            tx.execute()
        self.client.sadd(self.keys.shards, shard)
        self.client.hset(self.keys.versions, shard, 1)
        return True

    def _move_pins(self) -> list[str]:
        moved = []
        for label, meta in self.client.hgetall(f"{self.old}:pins").items():
            name = label.decode()
            data = self.client.get(f"{self.old}:pinned:{name}")
            if data is None or self.client.hexists(self.keys.pins, name):
                continue
            with self.client.pipeline(transaction=True) as tx:  # the global slot
                tx.set(self.keys.pinned(name), data)
                tx.hset(self.keys.pins, name, meta)
                tx.execute()
            moved.append(name)
        return moved

    def _delete_old(self) -> int:
        """Every layout-1 key of the prefix, family by family (another deployment's prefix
        may start with this one's: ``<prefix>:*`` alone would match its keys)."""
        deleted = 0
        for family in LAYOUT_1_FAMILIES:
            keys = list(self.client.scan_iter(f"{self.old}:{family}", count=1_000))
            for start in range(0, len(keys), 1_000):
                deleted += int(self.client.delete(*keys[start : start + 1_000]))
        return deleted


def migrate(settings: Settings, *, drop_unlearned: bool, delete_old: bool) -> MigrationReport:
    """Migrate the deployment ``settings`` name, as its (admin) Redis user."""
    client = connect_as(settings)
    if client.cluster:
        raise MigrationRefused("layout 1 never ran on a Redis Cluster: nothing to migrate")
    migration = LayoutMigration(
        client, settings.redis_key_prefix, settings.quantiles, settings.snapshot_signing_key
    )
    return migration.run(drop_unlearned=drop_unlearned, delete_old=delete_old)
