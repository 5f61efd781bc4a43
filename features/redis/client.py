"""One Redis client for a single server or a Redis Cluster, chosen by asking the server.

``LATENCY_ORACLE_REDIS_URL`` may name a single Redis or any node of a cluster: on first use
the client asks ``INFO cluster`` and, where ``cluster_enabled:1``, becomes redis-py's
``RedisCluster`` (which discovers the other nodes and follows slots as they move).
The question is asked lazily, so a process started while Redis is down runs, reports the
outage like any other, and connects once Redis answers.

Two things differ on a cluster and are made uniform here:

- redis-py's cluster errors (no node reachable, a slot not covered during a failover)
  derive from ``RedisClusterException``, not ``redis.RedisError``, which every caller
  handles as an outage; they are raised as ``ClusterUnavailable``, a ``ConnectionError``.
- a cluster pipeline cannot load scripts: ``run_scripts`` runs ``EVALSHA``s in one
  pipeline and loads a script wherever a node answers ``NOSCRIPT`` (a promoted replica
  has an empty script cache), then runs those calls again (they never ran).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.connection import Encoder
from redis.exceptions import NoPermissionError, NoScriptError, RedisClusterException
from redis.retry import Retry

log = logging.getLogger(__name__)

KeyArg = str | bytes
ScriptArg = str | bytes | int | float
ScriptCall = tuple[Script, Sequence[KeyArg], Sequence[ScriptArg]]


def _cluster_retry() -> Retry:
    """Two quick retries (each after a topology refresh), then the error: redis-py's default
    (ten, backing off to a second) holds a caller for many seconds while a master is down,
    where every caller here buffers or retries on its own and must not block."""
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2)


class ClusterUnavailable(redis.ConnectionError):
    """The cluster cannot serve the call now (no node answers, or a slot has no master)."""


def _converting(call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def converted(*args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except RedisClusterException as exc:
            raise ClusterUnavailable(f"{type(exc).__name__}: {exc}") from exc

    return converted


def is_cluster(url: str, **options: Any) -> bool:
    """Whether the server at ``url`` runs in cluster mode (``INFO cluster``).

    A user not allowed ``INFO`` (every role's ACL allows it; an anonymous client may only
    ``PING``) cannot tell, and is given a single-server client.
    """
    with redis.Redis.from_url(url, **options) as probe:
        try:
            return str(probe.info("cluster").get("cluster_enabled", 0)) == "1"
        except NoPermissionError:
            log.warning("user may not run INFO: cannot tell a cluster, connecting as to one server")
            return False


class RedisClient:
    """A redis-py client (``Redis`` or ``RedisCluster``) created on first use.

    Commands, ``pipeline()`` and ``register_script()`` read as on redis-py's clients;
    every call raises ``redis.RedisError`` subclasses only.
    """

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.options = options
        self._client: redis.Redis | RedisCluster | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> redis.Redis | RedisCluster:
        """The connected client; detects the server's mode on the first call."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = _converting(self._connect)()
        return self._client

    def _connect(self) -> redis.Redis | RedisCluster:
        if is_cluster(self.url, **self.options):
            return RedisCluster.from_url(self.url, retry=_cluster_retry(), **self.options)
        return redis.Redis.from_url(self.url, **self.options)

    @property
    def cluster(self) -> bool:
        return isinstance(self.client, RedisCluster)

    def register_script(self, script: str) -> Script:
        """A script bound to this client; nothing is sent until it runs."""
        return Script(self, script)  # type: ignore[arg-type]  # duck-typed like redis-py's

    def get_encoder(self) -> Encoder:
        """How scripts are encoded to compute their SHA-1, without connecting (redis-py's
        default encoding, which both client kinds use here)."""
        return Encoder("utf-8", "strict", decode_responses=False)

    def pipeline(self, transaction: bool = True) -> Any:
        """A pipeline (a MULTI/EXEC transaction unless ``transaction=False``); on a cluster a
        transaction must keep every key in one hash slot."""
        pipe = self.client.pipeline(transaction=transaction)
        pipe.execute = _converting(pipe.execute)
        return pipe

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        return _converting(attribute) if callable(attribute) else attribute


def run_scripts(client: RedisClient, calls: Sequence[ScriptCall]) -> list[Any]:
    """Run ``calls`` in one pipeline (each script's keys in one slot); their replies in order.

    Raises the first error a call answered, after loading scripts a node did not know.
    """
    if not calls:
        return []
    replies = _evalsha_all(client, calls)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        for script in {calls[i][0].script for i in missing}:
            client.script_load(script)  # every master of a cluster
        retried = _evalsha_all(client, [calls[i] for i in missing])
        for i, reply in zip(missing, retried, strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _evalsha_all(client: RedisClient, calls: Sequence[ScriptCall]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for script, keys, args in calls:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    return list(pipe.execute(raise_on_error=False))
