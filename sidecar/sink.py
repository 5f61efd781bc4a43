"""Where a sidecar's observations and pod state go: Redis, or a predictor over HTTP.

Both sides of the product take the same records through one interface, so the sidecar
does not care whether it runs with the Redis feature store or beside the embedded
predictor. Both back ends dedup observations by id, which is what lets the writer retry
a batch after an ambiguous failure without ever counting a request twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import httpx
import redis

from latency_oracle.features.pod_state import PodState
from latency_oracle.features.redis.observation_store import RedisObservationStore, store_for
from latency_oracle.features.schema import Observation
from latency_oracle.settings import Settings


class SinkUnavailable(RuntimeError):
    """The back end cannot take writes now; the same records may be retried later."""


class SinkRejected(RuntimeError):
    """The back end refused the records themselves; retrying them cannot succeed."""


class ObservationSink(Protocol):
    """Where the sidecar delivers: Redis in production, the predictor's HTTP API for a
    single replica. Delivery retries with backoff on ``SinkUnavailable`` and drops what a
    sink refuses (``SinkRejected``), counting them."""

    async def write(self, observations: Sequence[Observation]) -> None:
        """Store the observations (idempotent by id); raises SinkUnavailable/SinkRejected."""
        ...

    async def publish(self, state: PodState) -> None:
        """Replace this pod's live state; raises SinkUnavailable/SinkRejected."""
        ...

    async def aclose(self) -> None: ...


class RedisSink:
    """The Redis feature store; its blocking client runs in a worker thread."""

    def __init__(self, store: RedisObservationStore) -> None:
        self.store = store

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisSink:
        return cls(store_for(settings))

    async def write(self, observations: Sequence[Observation]) -> None:
        try:
            await asyncio.to_thread(self.store.append, observations)
        except redis.RedisError as exc:
            raise SinkUnavailable(f"redis: {exc}") from exc

    async def publish(self, state: PodState) -> None:
        try:
            await asyncio.to_thread(self.store.put_pod_state, state)
        except redis.RedisError as exc:
            raise SinkUnavailable(f"redis: {exc}") from exc

    async def aclose(self) -> None:
        await asyncio.to_thread(self.store.client.close)


class PredictorSink:
    """A predictor's ``/v1/observations`` and ``/v1/pods`` (the embedded default)."""

    def __init__(self, base_url: str, timeout_s: float, token: str | None = None) -> None:
        auth = {} if token is None else {"authorization": f"Bearer {token}"}
        self.client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, headers=auth)

    async def write(self, observations: Sequence[Observation]) -> None:
        body = b"[" + b",".join(o.model_dump_json().encode() for o in observations) + b"]"
        await self._send("/v1/observations", body)

    async def publish(self, state: PodState) -> None:
        await self._send("/v1/pods", state.model_dump_json().encode())

    async def _send(self, path: str, body: bytes) -> None:
        try:
            response = await self.client.post(
                path, content=body, headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise SinkUnavailable(f"predictor {path}: {exc!r}") from exc
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise SinkUnavailable(f"predictor {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise SinkRejected(f"predictor {path}: HTTP {response.status_code} {response.text}")

    async def aclose(self) -> None:
        await self.client.aclose()


def sink_from_settings(settings: Settings) -> ObservationSink:
    """Redis when a Redis URL is set, else the predictor URL; one of them is required."""
    if settings.redis_url:
        return RedisSink.from_settings(settings)
    if settings.predictor_url:
        token = settings.api_token.get_secret_value() if settings.api_token else None
        return PredictorSink(settings.predictor_url, settings.redis_timeout_s, token)
    raise ValueError(
        "the sidecar needs LATENCY_ORACLE_REDIS_URL or LATENCY_ORACLE_PREDICTOR_URL "
        "to deliver its observations"
    )
