"""The ``max_tokens`` clients send: a cap fixed per client, drawn from a documented mix.

A trace rarely records the caps its clients sent; where it does (a ``max_tokens`` column),
replay uses them. Otherwise every request belongs to a client (its session when it has
one, else one of ``CLIENTS`` clients drawn per request), and each client always sends the
same cap, drawn once from ``CAP_MIX``: no cap at all (the engine then allows the context
left after the prompt), or one of the round numbers SDKs and applications use. Draws are
hashes of the seed and the client or request, so a request keeps its cap at every load.

The cap is what the request carries; its true length is the model's (its EOS). A request
ends at whichever comes first, so a small cap cuts long answers short.
"""

from __future__ import annotations

import hashlib

import numpy as np

# (cap, share of clients): None is no max_tokens at all.
CAP_MIX: tuple[tuple[int | None, float], ...] = (
    (None, 0.35),
    (256, 0.10),
    (512, 0.15),
    (1024, 0.20),
    (2048, 0.10),
    (4096, 0.10),
)
CLIENTS = 64  # clients of a workload without sessions


def _level(*parts: object) -> float:
    """A uniform level in [0, 1) hashed from ``parts`` (stable across runs and machines)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def client_of(index: int, session: str | None, seed: int) -> str:
    """The client that sent request ``index``: its session, else one drawn for it."""
    if session is not None:
        return f"session:{session}"
    return f"client:{int(_level('client', seed, index) * CLIENTS)}"


def client_cap(client: str, seed: int) -> int | None:
    """The cap ``client`` sends with every request (None: it sends none)."""
    level = _level("cap", seed, client)
    total = 0.0
    for cap, share in CAP_MIX:
        total += share
        if level < total:
            return cap
    return CAP_MIX[-1][0]


def sessionless_caps(n: int, seed: int) -> np.ndarray:
    """(n,) caps of ``n`` requests from session-less clients, in order (0: no cap, as the
    observation schema writes it). Each client's cap is drawn once."""
    caps: dict[str, int] = {}
    out = np.empty(n, dtype=np.int64)
    for index in range(n):
        client = client_of(index, None, seed)
        if client not in caps:
            caps[client] = client_cap(client, seed) or 0
        out[index] = caps[client]
    return out
