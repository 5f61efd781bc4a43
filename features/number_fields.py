"""The raw numbers of a request, in the order of a row of ``RequestColumns.numbers``.

Its own module because three readers share it: ``features/engineering.py`` (which builds
the rows), and the feature rows, compiled and numpy, which read them in this order; the
compiled ones name the same columns and are checked against this tuple at import.
"""

from __future__ import annotations

# A pod's role is one of engineering's ``ROLE_CODES``.
NUMBER_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "cached_tokens",
    "max_tokens",
    "running_requests",
    "waiting_requests",
    "kv_cache_usage",
    "prefill_tokens_in_flight",
    "decode_tokens_in_flight",
    "role",
)
