"""What llm-d's endpoint picker knows of a pod: scraped gauges, its own counts, its cache index.

The EPP scrapes each pod's ``/metrics`` (running and waiting requests, KV-cache use),
counts the tokens it has itself sent there and not yet seen finish (prefill until the
first token, then decode), and scores a prompt's prefix against the blocks it has sent
to that pod before (chained hashes of 16-token blocks, as its prefix-cache scorer does).
That is all llm-d's latency predictor gets; no true output length, no engine internals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from dataclasses import dataclass

import httpx

from latency_oracle.sidecar.inflight import InflightCounter
from latency_oracle.sidecar.metrics_parser import EngineSample, parse_engine_metrics

BLOCK = 16
MAX_BLOCKS = 200_000


class PrefixIndex:
    """Chained hashes of the 16-token blocks sent to one pod (LRU-bounded)."""

    def __init__(self) -> None:
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def _hashes(self, ids: list[int]) -> list[int]:
        hashes, previous = [], 0
        for start in range(0, len(ids) - BLOCK + 1, BLOCK):
            previous = hash((previous, tuple(ids[start : start + BLOCK])))
            hashes.append(previous)
        return hashes

    def score(self, ids: list[int]) -> float:
        """Share of the prompt covered by leading blocks already sent to this pod."""
        matched = 0
        for h in self._hashes(ids):
            if h not in self._blocks:
                break
            matched += 1
        return min(matched * BLOCK / max(len(ids), 1), 1.0)

    def add(self, ids: list[int]) -> None:
        for h in self._hashes(ids):
            self._blocks[h] = None
            self._blocks.move_to_end(h)
        while len(self._blocks) > MAX_BLOCKS:
            self._blocks.popitem(last=False)


@dataclass(frozen=True)
class EppFeatures:
    """One candidate as llm-d's predictor is asked about it (its field names)."""

    kv_cache_percentage: float
    input_token_length: int
    num_request_waiting: int
    num_request_running: int
    prefix_cache_score: float
    prefill_tokens_in_flight: int
    decode_tokens_in_flight: int

    def request(self) -> dict[str, object]:
        """A ``/predict/bulk/strict`` row (the EPP sends 1 generated token at scheduling)."""
        return {**self.__dict__, "num_tokens_generated": 1}


class PodView:
    """The EPP's live view of one pod, its gauges refreshed by ``run``."""

    def __init__(self, metrics_url: str, interval_s: float = 0.2) -> None:
        self.metrics_url = metrics_url
        self.interval_s = interval_s
        self.sample = EngineSample()
        self.inflight = InflightCounter()
        self.prefixes = PrefixIndex()

    async def run(self, client: httpx.AsyncClient) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = await client.get(self.metrics_url, timeout=2.0)
                if response.status_code == 200:
                    self.sample = parse_engine_metrics(response.text)
            await asyncio.sleep(self.interval_s)

    def features(self, ids: list[int]) -> EppFeatures:
        s = self.sample
        return EppFeatures(
            kv_cache_percentage=min(max(s.kv_cache_usage or 0.0, 0.0), 1.0),
            input_token_length=len(ids),
            num_request_waiting=round(s.waiting_requests or 0),
            num_request_running=round(s.running_requests or 0),
            prefix_cache_score=self.prefixes.score(ids),
            prefill_tokens_in_flight=self.inflight.prefill_tokens,
            decode_tokens_in_flight=self.inflight.decode_tokens,
        )


def training_entries(
    features: EppFeatures, ttft_ms: float | None, tpot_ms: float | None
) -> list[dict[str, object]]:
    """The EPP's ``/add_training_data_bulk`` entries for a finished request: a TTFT entry
    (sent at the first token) and a TPOT entry (sent at the end, with no prefix score and
    no token count, as the EPP sends it)."""
    base = {**features.request(), "num_tokens_generated": 0}
    entries = []
    if ttft_ms is not None:
        entries.append({**base, "actual_ttft_ms": ttft_ms, "actual_tpot_ms": 0})
    if tpot_ms is not None:
        entries.append(
            {
                **base,
                "prefix_cache_score": 0,
                "actual_ttft_ms": 0,
                "actual_tpot_ms": tpot_ms,
            }
        )
    return entries
