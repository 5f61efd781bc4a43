"""What a router in front of the simulated cluster may know of a pod, and nothing more.

Production routers see three things: the engine's ``/metrics`` scraped every 0.2 s (vLLM's
names only: requests running and waiting, KV-cache use and size, prefix-cache counters),
the counts its pod's sidecar keeps of the work it proxied (prompt tokens awaiting a first
token, decode context), and what they routed where. ``Scrape`` and ``PodView`` hold exactly
that, as plain records: no engine is reachable from them, so a policy cannot peek at the
simulator's queues or KV blocks (a test walks their references to prove it). Prefix-cache
hits are estimated as llm-d's endpoint picker does, from an index of the prompt block
hashes routed to each pod, evicted least-recently-routed first at the pod's cache size.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from latency_oracle.features.schema import ServerState
from latency_oracle.sidecar.inflight import InflightCounter
from latency_oracle.sim.engine.scheduler import Engine
from latency_oracle.sim.evaluation.workloads import ClientRequest


@dataclass(frozen=True, slots=True)
class PodSpec:
    name: str
    accelerator: str


@dataclass(frozen=True, slots=True)
class Scrape:
    """One scrape of a pod: vLLM's gauges and counters, and its sidecar's counts then."""

    running_requests: int  # vllm:num_requests_running
    waiting_requests: int  # vllm:num_requests_waiting
    kv_cache_usage: float  # vllm:kv_cache_usage_perc
    prefix_cache_queries: int  # vllm:prefix_cache_queries (cumulative tokens)
    prefix_cache_hits: int  # vllm:prefix_cache_hits
    prefill_tokens: int  # the sidecar's prompt tokens awaiting a first token
    decode_tokens: int  # the sidecar's context of requests in decode

    def server_state(self, prefill_tokens: int, decode_tokens: int) -> ServerState:
        """The pod state with the given sidecar counts (the scrape's, or an arrival's)."""
        return ServerState(
            running_requests=self.running_requests,
            waiting_requests=self.waiting_requests,
            kv_cache_usage=min(max(self.kv_cache_usage, 0.0), 1.0),
            prefill_tokens_in_flight=prefill_tokens,
            decode_tokens_in_flight=decode_tokens,
        )


def scrape(engine: Engine, sidecar: InflightCounter) -> Scrape:
    """Read a pod as its sidecar does: only what ``sim/engine/exported_metrics.py`` exports."""
    state = engine.state()
    return Scrape(
        running_requests=state.running_requests,
        waiting_requests=state.waiting_requests,
        kv_cache_usage=state.kv_cache_usage,
        prefix_cache_queries=state.prefix_cache_queries,
        prefix_cache_hits=state.prefix_cache_hits,
        prefill_tokens=sidecar.prefill_tokens,
        decode_tokens=sidecar.decode_tokens,
    )


class PrefixIndex:
    """Prompt block hashes routed to one pod, least recently routed first (an LRU of the
    pod's cache size in blocks): the router's guess of what the pod has cached."""

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity_blocks = max(capacity_blocks, 1)
        self._blocks: OrderedDict[Hashable, None] = OrderedDict()

    def match(self, hashes: Sequence[Hashable]) -> int:
        """Leading blocks of ``hashes`` the index holds (a chain: a miss ends the match)."""
        blocks = self._blocks
        matched = 0
        for block in hashes:
            if block not in blocks:
                break
            matched += 1
        return matched

    def add(self, hashes: Sequence[Hashable]) -> None:
        """The pod was sent these blocks: they are now its most recently used."""
        blocks = self._blocks
        for block in hashes:
            blocks[block] = None
            blocks.move_to_end(block)
        while len(blocks) > self.capacity_blocks:
            blocks.popitem(last=False)


@dataclass(slots=True)
class PodView:
    """What a policy knows of one pod when it decides (plain records, no engine)."""

    spec: PodSpec
    scraped: Scrape
    scraped_at: float
    kv_capacity_tokens: int  # vllm:cache_config_info num_gpu_blocks x block_size
    block_size: int
    prefix: PrefixIndex
    placed_since_scrape: int = 0
    placed_tokens_since_scrape: int = 0

    @property
    def requests(self) -> int:
        """Waiting + running requests, counting placements the scrape has not seen."""
        return (
            self.scraped.running_requests + self.scraped.waiting_requests + self.placed_since_scrape
        )

    @property
    def queued_prefill_tokens(self) -> int:
        """The sidecar's prefill backlog at the scrape, plus prompts placed since."""
        return self.scraped.prefill_tokens + self.placed_tokens_since_scrape

    @property
    def kv_cache_usage(self) -> float:
        """Scraped KV-cache use plus the prompts placed since, as a fraction of the cache."""
        return self.scraped.kv_cache_usage + self.placed_tokens_since_scrape / max(
            self.kv_capacity_tokens, 1
        )

    def cached_tokens(self, request: ClientRequest) -> int:
        """Prompt tokens the prefix index expects this pod to hold for the request."""
        if not request.block_hashes:
            return 0
        usable = request.block_hashes[: (request.prompt_tokens - 1) // self.block_size]
        return self.prefix.match(usable) * self.block_size

    def server_state(self) -> ServerState:
        """The scraped state as the routing API's candidates carry it (a router adds its own
        placements since the scrape itself)."""
        return self.scraped.server_state(self.scraped.prefill_tokens, self.scraped.decode_tokens)
