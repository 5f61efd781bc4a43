"""How many observations each model key has seen, where its models learn only a share.

In Redis mode a key may learn a sample: the global model learns ``global_sample_rate`` of
every shard, and a hot shard learns about ``hot_key_max_rate`` entries a second. Each
shard's trainer counts every observation of its keys, exactly (the counts are
checkpointed with the models, ``models.persistence.redis_checkpoint``); the global keys' count is
every shard's, summed. Statuses carry the count (``KeyStatus.observed``), so
``/v1/models`` and ``/metrics`` say what share was learned.
"""

from __future__ import annotations

from collections import Counter

from latency_oracle.features.accelerators import GLOBAL_ACCELERATOR
from latency_oracle.features.redis.key_layout import GLOBAL_SHARD
from latency_oracle.models.keys import ModelKey, Target

_TARGET_BITS = ((Target.TTFT, 1), (Target.TPOT, 2))


class ObservedCounts:
    """Observations per model key of one shard, learned or not (exact: checkpointed)."""

    def __init__(self, shard: str, counts: dict[str, int] | None = None) -> None:
        accelerator, _, model = shard.partition("/")
        self.is_global = shard == GLOBAL_SHARD
        pair = (GLOBAL_ACCELERATOR, "") if self.is_global else (accelerator, model)
        self._labels = {
            target: ModelKey(pair[0], target, pair[1]).label() for target, _ in _TARGET_BITS
        }
        self.counts: Counter[str] = Counter(counts or {})

    def count(self, mask: int) -> None:
        """One observation that measured the targets in ``mask`` (stream field ``t``)."""
        for target, bit in _TARGET_BITS:
            if mask & bit:
                self.counts[self._labels[target]] += 1

    def by_key(self) -> dict[ModelKey, int]:
        return {ModelKey.parse(label): n for label, n in self.counts.items()}


def fleet_observed(per_shard: dict[str, dict[str, int]]) -> dict[ModelKey, int]:
    """The global keys' counts: every shard's observations per target (the global model
    counts them all, whatever share of them it learns), plus its own (pairs beyond the cap)."""
    totals: Counter[ModelKey] = Counter()
    for counts in per_shard.values():
        for label, n in counts.items():
            key = ModelKey.parse(label)
            totals[ModelKey(GLOBAL_ACCELERATOR, key.target)] += n
    return dict(totals)
