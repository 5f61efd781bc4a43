"""The simulated KV-cache block pool with vLLM-style automatic prefix caching.

Blocks are counted, not stored. A block is free, owned by one request, or cached under
the hash of the prompt prefix it holds. Cached blocks are shared: every request using one
holds a reference, and a cached block nobody references is still free memory that the
pool hands out again, least recently released first, when it runs out of truly free
blocks. That is why KV usage (what vLLM reports) counts only referenced blocks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence


class KVBlockPool:
    """Block accounting for one engine; O(1) per block, no per-step scans."""

    def __init__(self, total_blocks: int) -> None:
        self.total_blocks = total_blocks
        self._free = total_blocks
        self._refs: dict[Hashable, int] = {}
        self._evictable: OrderedDict[Hashable, None] = OrderedDict()

    @property
    def available(self) -> int:
        """Blocks an allocation can get: free ones plus unreferenced cached ones."""
        return self._free + len(self._evictable)

    @property
    def used(self) -> int:
        """Blocks referenced by requests (vLLM's KV-cache usage numerator)."""
        return self.total_blocks - self.available

    @property
    def cached_blocks(self) -> int:
        return len(self._refs)

    def allocate(self, blocks: int) -> bool:
        """Take ``blocks`` for one request's own use, evicting LRU cached ones if needed."""
        if blocks > self.available:
            return False
        from_free = min(blocks, self._free)
        self._free -= from_free
        for _ in range(blocks - from_free):
            digest, _ = self._evictable.popitem(last=False)
            del self._refs[digest]
        return True

    def release(self, blocks: int) -> None:
        self._free += blocks

    def match(self, hashes: Sequence[Hashable], max_blocks: int) -> int:
        """Leading blocks of a prompt found in the cache (a chain: stops at the first miss)."""
        refs = self._refs
        count = 0
        for digest in hashes[:max_blocks]:
            if digest not in refs:
                break
            count += 1
        return count

    def acquire(self, hashes: Sequence[Hashable]) -> None:
        """Reference cached blocks (found by ``match``) so they cannot be evicted."""
        for digest in hashes:
            refs = self._refs[digest]
            if refs == 0:
                del self._evictable[digest]
            self._refs[digest] = refs + 1

    def release_cached(self, hashes: Sequence[Hashable]) -> None:
        for digest in hashes:
            refs = self._refs[digest] - 1
            self._refs[digest] = refs
            if refs == 0:
                self._evictable[digest] = None

    def fork(self) -> KVBlockPool:
        """An independent copy (what-if simulation of one more request)."""
        fork = KVBlockPool(self.total_blocks)
        fork._free = self._free
        fork._refs = dict(self._refs)
        fork._evictable = OrderedDict(self._evictable)
        return fork

    def publish(self, hashes: Sequence[Hashable]) -> list[Hashable]:
        """Turn a request's own blocks holding these prefixes into cached, referenced ones.

        Returns the hashes actually published: a prefix another request cached first
        stays the caller's own block.
        """
        published = [digest for digest in hashes if digest not in self._refs]
        for digest in published:
            self._refs[digest] = 1
        return published
