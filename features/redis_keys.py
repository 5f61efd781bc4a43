"""Names of every Redis key the service uses, in one place so writers and readers agree.

Observations are sharded into one stream per accelerator type plus the ``global`` stream,
which receives every observation: each stream is one unit of trainer work, and each model
key is trained from exactly one stream, so no two trainers ever learn the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

from latency_oracle.features.accelerators import GLOBAL_ACCELERATOR

GLOBAL_SHARD = GLOBAL_ACCELERATOR
TRAINER_GROUP = "trainers"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str

    @property
    def shards(self) -> str:
        """Set of shard names that have ever received an observation."""
        return f"{self.prefix}:shards"

    def stream(self, shard: str) -> str:
        return f"{self.prefix}:obs:{shard}"

    def seen(self, observation_id: str) -> str:
        return f"{self.prefix}:seen:{observation_id}"

    def snapshot(self, shard: str) -> str:
        """The shard's checkpoint: model snapshot bytes with the last applied stream id."""
        return f"{self.prefix}:snapshot:{shard}"

    @property
    def versions(self) -> str:
        """Hash shard -> checkpoint version, polled by predictors to find new snapshots."""
        return f"{self.prefix}:versions"

    @property
    def pins(self) -> str:
        """Hash model-key label -> pinned registered version: what the whole fleet serves."""
        return f"{self.prefix}:pins"

    def pinned(self, label: str) -> str:
        """The pinned version's model set (snapshot bytes), so replicas need no MLflow."""
        return f"{self.prefix}:pinned:{label}"

    @property
    def applied(self) -> str:
        """Hash trainer name -> stream entries it has checkpointed (how work was shared)."""
        return f"{self.prefix}:applied"

    def lease(self, shard: str) -> str:
        return f"{self.prefix}:lease:{shard}"

    @property
    def trainers(self) -> str:
        """Sorted set trainer name -> last heartbeat, to size each trainer's fair share."""
        return f"{self.prefix}:trainers"

    def pod(self, name: str) -> str:
        return f"{self.prefix}:pod:{name}"

    @property
    def pods(self) -> str:
        """Sorted set pod name -> last report time, so live pods are listed without SCAN."""
        return f"{self.prefix}:pods"
