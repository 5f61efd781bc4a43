"""A zoo of independent latency streams, each a world that knows its own true p90.

Run from ``bench/`` (``import zoo``). Nothing here uses ``latency_oracle.sim``'s physics;
clients' caps come from its documented mix (``sim.client_caps``).
"""

from __future__ import annotations

from zoo.fleet import CHAT_DECODE, MIXED_FLEET, SHARED_PREFIX
from zoo.inflight import CHUNKED_BESIDE, INFLIGHT_ABSENT, INFLIGHT_NOISE
from zoo.queueing import HEAVY_TAILS, INFLIGHT_TOKENS, QUEUE_BIG_MODEL
from zoo.schedulers import BATCH_WAIT, CHUNKED_STEPS, QUEUE_COUNTS
from zoo.world import Stream, World, generate

WORLDS: dict[str, World] = {
    world.name: world
    for world in (
        QUEUE_BIG_MODEL,
        INFLIGHT_TOKENS,
        INFLIGHT_NOISE,
        INFLIGHT_ABSENT,
        CHUNKED_BESIDE,
        HEAVY_TAILS,
        MIXED_FLEET,
        SHARED_PREFIX,
        CHAT_DECODE,
        QUEUE_COUNTS,
        CHUNKED_STEPS,
        BATCH_WAIT,
    )
}

__all__ = ["WORLDS", "Stream", "World", "generate"]
