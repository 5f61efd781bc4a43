"""Recorded real-engine runs: one CSV row per request, and a loader for the benches.

A recording is ``<name>.csv.gz`` (one row per request) plus ``<name>.json`` (the
command, engine specs, phases, machine load). Its columns, units and meaning are listed
in ``bench/data/real_engine/README.md``; ``COLUMNS`` below is their order.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIDECAR_FIELDS = (
    "running_requests",
    "waiting_requests",
    "kv_cache_usage",
    "prefill_tokens_in_flight",
    "decode_tokens_in_flight",
    "input_tokens",
    "output_tokens",
    "max_tokens",
    "prefix_cache_hit_tokens",
    "ttft_ms",
    "tpot_ms",
)
EPP_FIELDS = (
    "kv_cache_percentage",
    "num_request_waiting",
    "num_request_running",
    "prefix_cache_score",
    "prefill_tokens_in_flight",
    "decode_tokens_in_flight",
)
COLUMNS = (
    "request",
    "phase",
    "phase_rate",
    "drift",
    "engine_config",
    "pod",
    "accelerator",
    "served_model",
    "arrival_s",
    "first_token_s",
    "finished_s",
    "api",
    "prompt_form",
    "session",
    "max_tokens",
    "shared_prefix",
    "client_input_tokens",
    "prompt_tokens",
    "cached_tokens",
    "output_tokens",
    "finish_reason",
    "ttft_ms",
    "tpot_ms",
    *(f"sc_{f}" for f in SIDECAR_FIELDS),
    *(f"epp_{f}" for f in EPP_FIELDS),
    "route_ttft_p90",
    "route_tpot_p90",
    "route_cold",
    "llmd_ttft_p90",
    "llmd_tpot_p90",
)
TEXT_COLUMNS = frozenset(
    {"phase", "engine_config", "pod", "accelerator", "served_model", "api", "prompt_form"}
    | {"finish_reason"}
)


def write(path: Path, rows: list[dict[str, object]], meta: dict[str, object]) -> None:
    """``path`` (.csv.gz) and its ``.json`` beside it; missing values are empty cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", newline="") as out:
        writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    path.with_suffix("").with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read(path: Path) -> dict[str, np.ndarray]:
    """Columns by name: numbers as float arrays (NaN where empty), text as object arrays."""
    with gzip.open(path, "rt", newline="") as source:
        rows = list(csv.DictReader(source))
    columns: dict[str, np.ndarray] = {}
    for name in COLUMNS:
        values = [row.get(name, "") for row in rows]
        if name in TEXT_COLUMNS:
            columns[name] = np.array(values, dtype=object)
        else:
            columns[name] = np.array([float(v) if v != "" else np.nan for v in values])
    return columns


@dataclass
class Recording:
    """A recording as the accuracy benches replay it: what the sidecar observed, in order.

    ``fields`` holds the observation fields by schema name, from the sidecar's own record
    (its state at arrival, the request's shape); ``ttft_ms``/``tpot_ms`` are the client's
    truth (they match the sidecar's to about a millisecond on one machine). Requests the
    sidecar wrote no observation for (failed, cut off) are left out.
    """

    name: str
    accelerator: np.ndarray
    pod: np.ndarray
    model: np.ndarray
    fields: dict[str, np.ndarray]
    timestamp: np.ndarray  # arrival (s)
    first_token: np.ndarray
    finished: np.ndarray
    ttft_ms: np.ndarray
    tpot_ms: np.ndarray  # NaN for single-token answers
    phase: np.ndarray
    drift: np.ndarray
    columns: dict[str, np.ndarray]  # every recorded column, same rows

    def __len__(self) -> int:
        return len(self.ttft_ms)

    @property
    def drift_at(self) -> int:
        """Index of the first request after the drift (len when there is none)."""
        after = np.flatnonzero(self.drift > 0)
        return int(after[0]) if len(after) else len(self)

    def schedule(
        self, batch: int = 10, instant: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows to predict, rows to learn first), as ``zoo.Stream.schedule``: batches of
        arrivals, each after the outcomes that finished before its first arrival
        (``instant``: each batch learned right after it is predicted)."""
        previous = np.arange(0)
        order = np.argsort(self.finished, kind="stable")
        done = 0
        for start in range(0, len(self), batch):
            rows = np.arange(start, min(start + batch, len(self)))
            if instant:
                yield rows, previous
                previous = rows
                continue
            known = int(np.searchsorted(self.finished[order], self.timestamp[start], "right"))
            yield rows, order[done:known]
            done = known


def load(path: Path) -> Recording:
    c = read(path)
    keep = np.isfinite(c["sc_ttft_ms"]) & np.isfinite(c["ttft_ms"])
    c = {k: v[keep] for k, v in c.items()}
    fields = {f: c[f"sc_{f}"] for f in SIDECAR_FIELDS if f not in ("ttft_ms", "tpot_ms")}
    fields["prefix_cache_hit_tokens"] = np.nan_to_num(fields["prefix_cache_hit_tokens"])
    return Recording(
        name=path.name.removesuffix(".csv.gz"),
        accelerator=c["accelerator"],
        pod=c["pod"],
        model=c["served_model"],
        fields=fields,
        timestamp=c["arrival_s"],
        first_token=c["first_token_s"],
        finished=c["finished_s"],
        ttft_ms=c["ttft_ms"],
        # A TPOT of 0 (all tokens in one event; recorded so before the client said None)
        # is no TPOT, as the sidecar has it.
        tpot_ms=np.where(c["tpot_ms"] > 0, c["tpot_ms"], np.nan),
        phase=c["phase"],
        drift=c["drift"],
        columns=c,
    )


DATA = Path(__file__).resolve().parents[1] / "data" / "real_engine"


def recordings() -> list[Path]:
    """The shipped recordings, oldest first."""
    return sorted(DATA.glob("*.csv.gz"))
