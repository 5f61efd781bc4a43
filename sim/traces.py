"""Trace files: CSV or JSONL request logs, read into rows or refused naming the line.

A row is what a production log records of a request: when it arrived, its prompt and
output token counts, maybe its session and the ``max_tokens`` its client sent. Column
names vary between published traces; each field takes the first of its known names.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latency_oracle.settings import Settings
from latency_oracle.sim.client_caps import client_cap, client_of
from latency_oracle.sim.engine.gpu_profiles import shared_data_dir

AZURE_TRACE = "traces/azure_code_2023.csv"
ARXIV_LENGTHS = "traces/arxiv_summarization_lengths.csv"

# Column names a trace may use for each field (the first present wins).
_ARRIVAL = ("arrived_at", "arrival", "arrival_time", "timestamp")
_INPUT = ("num_prefill_tokens", "input_tokens", "prompt_tokens")
_OUTPUT = ("num_decode_tokens", "output_tokens", "completion_tokens")
_SESSION = ("session_id", "session", "conversation_id")
_CAP = ("max_tokens", "max_completion_tokens")


class TraceError(ValueError):
    """A trace row that cannot be replayed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class TraceRow:
    arrival: float
    input_tokens: int
    output_tokens: int
    session: str | None
    max_tokens: int | None = None  # the client's cap; None: none sent (or none recorded)
    cap_recorded: bool = False  # the trace says what cap the client sent

    def sent_cap(self, index: int, seed: int = 0) -> int | None:
        """The ``max_tokens`` the row's client sent: the trace's when it records one, else
        its client's from the documented mix (``sim/client_caps.py``); ``index`` is the
        row's position in the trace."""
        if self.cap_recorded:
            return self.max_tokens
        return client_cap(client_of(index, self.session, seed), seed)


def read_trace(path: Path) -> list[TraceRow]:
    """Rows of a CSV (header row) or JSONL (one object per line) trace, in arrival order."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = list(_jsonl_rows(path))
    else:
        rows = list(_csv_rows(path))
    if not rows:
        raise TraceError(f"{path}: no requests")
    return sorted(rows, key=lambda row: row.arrival)


def _csv_rows(path: Path) -> Iterable[TraceRow]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        for line, record in enumerate(reader, start=2):
            yield _row(path, line, record)


def _jsonl_rows(path: Path) -> Iterable[TraceRow]:
    with path.open() as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except ValueError as exc:
                raise TraceError(f"{path}:{line}: not JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise TraceError(f"{path}:{line}: expected a JSON object")
            yield _row(path, line, record)


def _row(path: Path, line: int, record: dict[str, object]) -> TraceRow:
    where = f"{path}:{line}"
    arrival = _number(where, record, _ARRIVAL, float)
    input_tokens = _number(where, record, _INPUT, int)
    output_tokens = _number(where, record, _OUTPUT, int)
    if not np.isfinite(arrival) or arrival < 0:
        raise TraceError(f"{where}: arrival time must be a finite number >= 0, got {arrival}")
    if input_tokens < 1 or output_tokens < 1:
        raise TraceError(f"{where}: input and output tokens must be >= 1")
    session = next((record[k] for k in _SESSION if record.get(k) not in (None, "")), None)
    cap, recorded = _cap(where, record)
    return TraceRow(
        arrival,
        input_tokens,
        output_tokens,
        None if session is None else str(session),
        cap,
        recorded,
    )


def _cap(where: str, record: dict[str, object]) -> tuple[int | None, bool]:
    """The row's ``max_tokens`` (None: an empty cell or 0, no cap sent), and whether the
    trace records caps at all."""
    values = {k: record[k] for k in _CAP if record.get(k) not in (None, "")}
    if not values:
        return None, any(k in record for k in _CAP)
    cap = int(_number(where, values, _CAP, int))
    if cap < 0:
        raise TraceError(f"{where}: max_tokens must be >= 0")
    return cap or None, True


def _number(where: str, record: dict[str, object], names: Sequence[str], kind: type) -> float:
    name = next((n for n in names if n in record), None)
    if name is None:
        raise TraceError(f"{where}: missing column, expected one of {', '.join(names)}")
    value = record[name]
    try:
        number = kind(float(value)) if kind is int else kind(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise TraceError(f"{where}: {name}={value!r} is not a number") from exc
    if kind is int and float(value) != number:  # type: ignore[arg-type]
        raise TraceError(f"{where}: {name}={value!r} is not a whole number of tokens")
    return number


def azure_trace(settings: Settings | None = None) -> Path:
    return shared_data_dir(settings) / AZURE_TRACE


def arxiv_lengths(settings: Settings | None = None) -> np.ndarray:
    """(n, 2) prompt and output token counts of arXiv summarization requests."""
    with (shared_data_dir(settings) / ARXIV_LENGTHS).open(newline="") as handle:
        rows = [
            (int(r["num_prefill_tokens"]), int(r["num_decode_tokens"]))
            for r in csv.DictReader(handle)
        ]
    return np.array(rows, dtype=np.int64)
