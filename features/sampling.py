"""Deterministic samples of observations, decided by their ids.

Whether an observation is in a sample depends only on its id (and the sample's salt), never
on which process decides or when: a retried write, a trainer that takes a shard over, or a
test that counts what should have been learned all reach the same answer. Ids are random,
so a fixed rate picks an unbiased sample; different salts make different samples
independent (the global model's sample says nothing about a hot key's).
"""

from __future__ import annotations

import hashlib

# The global model's sample of every shard (features.redis.observation_store).
GLOBAL_SAMPLE = b"global"
# A hot key's sample (trainer.hot_keys).
HOT_KEY_SAMPLE = b"hot-key"
_SCALE = float(1 << 64)


def stable_fraction(observation_id: str, salt: bytes) -> float:
    """A number in [0, 1) fixed by the id and the salt, uniform over random ids."""
    digest = hashlib.blake2b(observation_id.encode(), digest_size=8, person=salt).digest()
    return int.from_bytes(digest, "big") / _SCALE


def in_sample(observation_id: str, rate: float, salt: bytes) -> bool:
    """Whether the id is in the sample that keeps ``rate`` of all ids (1: every one)."""
    return rate >= 1.0 or (rate > 0.0 and stable_fraction(observation_id, salt) < rate)
