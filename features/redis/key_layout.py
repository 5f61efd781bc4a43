"""Names of every Redis key the service uses, in one place so writers and readers agree.

The layout is built for Redis Cluster and used unchanged on a single Redis, so there is one
code path and one ACL file. Every key carries a hash tag (the part in braces), and Redis
Cluster puts keys with the same tag in the same hash slot, hence on the same master:

- ``{P:S}:...`` one slot per shard ``S``: its stream, idempotency ids, lease, checkpoint and
  checkpoint meta. Every script and transaction that touches a shard names only these, so
  none crosses slots, and shards spread over the cluster's masters.
- ``{P:pods:B}:...`` one slot per pod-state bucket ``B`` (a pod's bucket is fixed by its
  name), so the 10,000s of pods' reports spread over the masters too.
- ``{P}:...`` the global slot: the few keys that must be global (the shard set, checkpoint
  versions, trainer heartbeats, fleet pins). They are small, written rarely and read a few
  times a second per process, never per observation.

A shard is one (accelerator type, served model) pair, named ``H100`` or ``H100/<model>``
(accelerator names never contain ``/``), plus ``global``, the global model's sample.
This is layout 2; layout 1 (``P:obs:<accelerator>``, one global stream fed by every write)
is moved over by ``latency-oracle redis-migrate`` (``features.redis_migrate``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from latency_oracle.features.accelerators import GLOBAL_ACCELERATOR

GLOBAL_SHARD = GLOBAL_ACCELERATOR
TRAINER_GROUP = "trainers"
# Pod-state buckets: each is one hash slot, so a cluster spreads pods over up to this many
# masters. Fixed (not a setting): every writer and reader must agree on a pod's bucket.
POD_BUCKETS = 64
LAYOUT_VERSION = 2
# Characters that would end or open a hash tag inside a name, escaped like a URL does.
_TAG_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


def shard_of(accelerator: str, model: str) -> str:
    """The shard learning (accelerator, served model): ``H100``, or ``H100/<served model>``."""
    return f"{accelerator}/{model}" if model else accelerator


def pod_bucket(pod: str) -> int:
    """The fixed bucket of a pod's state (CRC-32 of its name: stable across processes)."""
    return zlib.crc32(pod.encode()) % POD_BUCKETS


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError("a Redis key prefix may not contain '{' or '}' (hash tags)")

    @property
    def patterns(self) -> tuple[str, str]:
        """SCAN patterns matching every key of this prefix: the global slot's and the rest."""
        return f"{{{self.prefix}}}:*", f"{{{self.prefix}:*"

    # -- the global slot ---------------------------------------------------------------

    @property
    def shards(self) -> str:
        """Set of shard names that have ever received an observation."""
        return f"{{{self.prefix}}}:shards"

    @property
    def versions(self) -> str:
        """Hash shard -> checkpoint version, polled by predictors to find new snapshots."""
        return f"{{{self.prefix}}}:versions"

    @property
    def trainers(self) -> str:
        """Sorted set trainer name -> last heartbeat, to size each trainer's fair share."""
        return f"{{{self.prefix}}}:trainers"

    @property
    def pins(self) -> str:
        """Hash model-key label -> pinned registered version: what the whole fleet serves."""
        return f"{{{self.prefix}}}:pins"

    def pinned(self, label: str) -> str:
        """The pinned version's model set (snapshot bytes), so replicas need no MLflow; in
        the pins' slot, so a pin and its model set change in one transaction."""
        return f"{{{self.prefix}}}:pinned:{label}"

    # -- one slot per shard ------------------------------------------------------------

    def _shard(self, shard: str) -> str:
        return f"{{{self.prefix}:{shard.translate(_TAG_ESCAPES)}}}"

    def stream(self, shard: str) -> str:
        return f"{self._shard(shard)}:obs"

    def seen(self, shard: str, dedup_id: str) -> str:
        """An idempotency id (``observation_store.dedup_id``) already appended to this shard."""
        return f"{self._shard(shard)}:seen:{dedup_id}"

    def snapshot(self, shard: str) -> str:
        """The shard's checkpoint: model snapshot bytes with the last applied stream id."""
        return f"{self._shard(shard)}:snapshot"

    def meta(self, shard: str) -> str:
        """Hash written with each checkpoint: ``version``, ``observed`` (JSON: observations
        counted per model key, learned or not) and ``applied:<trainer>`` (entries it
        checkpointed: how work was shared)."""
        return f"{self._shard(shard)}:meta"

    def lease(self, shard: str) -> str:
        return f"{self._shard(shard)}:lease"

    # -- one slot per pod bucket -------------------------------------------------------

    def pod(self, bucket: int, name: str) -> str:
        """A pod's latest state (JSON), expiring ``pod_ttl_s`` after its last report."""
        return f"{{{self.prefix}:pods:{bucket}}}:pod:{name}"

    def pod_index(self, bucket: int) -> str:
        """Sorted set pod name -> Redis server time of its last report (microseconds), so
        readers fetch only the pods that reported since they last looked."""
        return f"{{{self.prefix}:pods:{bucket}}}:index"
