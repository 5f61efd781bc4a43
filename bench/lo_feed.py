"""Feed a zoo stream through Latency Oracle's APIs in one process: learn what finished,
then predict the next batch of arrivals (``Stream.schedule``).

With ``first_token_s`` set, each request is also learned at its first token, as the
sidecar reports it (``sidecar_first_token_record_s``): a request still running that long
after its first token sends its TTFT then, under the id of its finish record. The engine
reports a request's prefix-cache hits only at the end, so the record carries the share of
prompt tokens found cached by the requests finished so far, as the sidecar's
``hit_share``. Through llm-d's API, the TTFT
entry is sent at the first token and the TPOT entry at the end, as llm-d's EPP does.

Two doors, each its own service (so neither learns from the other's copy of the data):
the native API (``/v1/predictions`` then ``/v1/observations``) and llm-d's
(``/predict/bulk/strict`` then ``/add_training_data_bulk``), both through the ASGI app.
The feed waits until the service's learning thread has learned what it sent before it
predicts the next batch, however slow the machine.
llm-d's API carries no accelerator type (an llm-d pool is one type), so a stream with
several types gets one llm-d service per type, as such a fleet would run them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from zoo import Stream

from latency_oracle.models.keys import GLOBAL_ACCELERATOR, ModelKey, Target
from latency_oracle.operations.metrics import quantile_label
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings

HEADLINE = quantile_label(0.9)


@dataclass
class Served:
    """One door's served p90s and the raw (pre-calibration) p90s of its champions, per sample."""

    ttft: np.ndarray
    tpot: np.ndarray
    raw_ttft: np.ndarray
    raw_tpot: np.ndarray


def _service(state: Path, accelerator: str = "unknown") -> tuple[TestClient, OracleService]:
    settings = Settings(
        state_dir=state, mlflow_enabled=False, snapshot_interval_s=1e9, llmd_accelerator=accelerator
    )
    service = OracleService(settings)
    return TestClient(create_app(settings, service)), service


def _learned(service: OracleService, total: int) -> None:
    assert service.wait_learned(total, timeout_s=120), "the learning thread fell behind"


def _raw_p90(
    service: OracleService, features: np.ndarray, accelerator: str, target: Target
) -> np.ndarray:
    """The serving champion's p90 before its conformal offsets, as the registry would pick it."""
    serving = service.models.serving(ModelKey(accelerator, target)) or service.models.serving(
        ModelKey(GLOBAL_ACCELERATOR, target)
    )
    if serving is None:
        return np.full(len(features), np.nan)
    q = service.config.headline_index
    return np.exp(serving.function(features)[:, q])


def _tpot(value: float) -> float | None:
    """A TPOT to send: None where there is none (a one-token answer in a recording)."""
    return float(value) if np.isfinite(value) else None


def _records(stream: Stream, rows: np.ndarray) -> list[dict[str, object]]:
    f = stream.fields
    return [
        {
            "accelerator": str(stream.accelerator[i]),
            "pod": str(stream.pod[i]),
            "input_tokens": int(f["input_tokens"][i]),
            "prefix_cache_hit_tokens": int(f["prefix_cache_hit_tokens"][i]),
            "max_tokens": int(f["max_tokens"][i]),
            "running_requests": int(f["running_requests"][i]),
            "waiting_requests": int(f["waiting_requests"][i]),
            "kv_cache_usage": float(f["kv_cache_usage"][i]),
            "prefill_tokens_in_flight": int(f["prefill_tokens_in_flight"][i]),
            "decode_tokens_in_flight": int(f["decode_tokens_in_flight"][i]),
        }
        for i in rows.tolist()
    ]


def schedule(
    stream: Stream, instant: bool = False, first_token_s: float | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rows to predict, rows whose first-token record is known, rows that finished):
    ``Stream.schedule``, plus the first-token records sent since the last batch when
    ``first_token_s`` is set (requests still running that long after their first token)."""
    if instant or first_token_s is None:
        for rows, known in stream.schedule(instant=instant):
            yield rows, np.arange(0), known
        return
    sent_at = stream.timestamp + stream.ttft_ms / 1e3 + first_token_s
    early = np.flatnonzero(sent_at < stream.finished)
    early = early[np.argsort(sent_at[early], kind="stable")]
    done = 0
    for rows, known in stream.schedule():
        now = stream.timestamp[rows[0]]
        due = int(np.searchsorted(sent_at[early], now, side="right"))
        yield rows, early[done:due], known
        done = due


def feed_native(
    stream: Stream,
    features: np.ndarray,
    instant: bool = False,
    first_token_s: float | None = None,
    prompt_chars: np.ndarray | None = None,
    max_hit_share: float = 1.0,
) -> Served:
    """Predict each batch through ``/v1/predictions``; learn finished requests (and, with
    ``first_token_s``, first tokens) first via ``/v1/observations``. With
    ``prompt_chars``, finished requests report each prompt's characters beside its tokens
    (as the sidecar does) and predictions give the prompt's size in characters only, as a
    caller that does not tokenize sends it. First-token records are sent only while the
    share of prompt tokens found cached is at most ``max_hit_share``, as the sidecar's
    ``sidecar_first_token_max_hit_share`` rules."""
    out = Served(*(np.empty(len(stream)) for _ in range(4)))
    finished = stream.finished
    first_token = stream.timestamp + stream.ttft_ms / 1e3
    prompts, hits = stream.fields["input_tokens"], stream.fields["prefix_cache_hit_tokens"]
    finished_prompt = finished_hits = 0.0
    with tempfile.TemporaryDirectory() as state:
        client, service = _service(Path(state))
        with client:
            sent = 0
            for rows, early, known in schedule(stream, instant, first_token_s):
                finished_prompt += float(prompts[known].sum())
                finished_hits += float(hits[known].sum())
                hit_share = finished_hits / max(finished_prompt, 1.0)
                if hit_share > max_hit_share:
                    early = early[:0]  # these requests teach TTFT at their finish
                observations = [
                    {
                        **record,
                        "observation_id": f"{stream.name}-{i}",
                        "timestamp": float(first_token[i]),
                        "prefix_cache_hit_tokens": None,  # the engine reports it at the end
                        "prefix_cache_score": hit_share,
                        "output_tokens": 1,
                        "ttft_ms": float(stream.ttft_ms[i]),
                        "finished": False,
                    }
                    for i, record in zip(early.tolist(), _records(stream, early), strict=True)
                ]
                observations += [
                    {
                        **record,
                        "observation_id": f"{stream.name}-{i}",
                        "timestamp": float(finished[i]),
                        "output_tokens": int(stream.fields["output_tokens"][i]),
                        "ttft_ms": float(stream.ttft_ms[i]),
                        "tpot_ms": _tpot(stream.tpot_ms[i]),
                    }
                    | ({} if prompt_chars is None else {"prompt_chars": int(prompt_chars[i])})
                    for i, record in zip(known.tolist(), _records(stream, known), strict=True)
                ]
                if observations:
                    response = client.post("/v1/observations", json=observations)
                    assert response.status_code in (200, 202), response.text
                    sent += response.json()["accepted"]
                    _learned(service, sent)
                queries = _records(stream, rows)
                if prompt_chars is not None:
                    queries = [
                        _in_chars(q, int(prompt_chars[i]))
                        for i, q in zip(rows.tolist(), queries, strict=True)
                    ]
                body = client.post("/v1/predictions", json=queries)
                predictions = body.json()["predictions"]
                out.ttft[rows] = [p["ttft_ms"][HEADLINE] for p in predictions]
                out.tpot[rows] = [p["tpot_ms"][HEADLINE] for p in predictions]
                _raw_into(out, service, stream, features, rows)
    return out


def _in_chars(query: dict[str, object], chars: int) -> dict[str, object]:
    """The query as a caller that counts characters sends it (no tokens, no hit tokens:
    its prefix-cache hint is the hit share)."""
    tokens, hits = query.pop("input_tokens"), query.pop("prefix_cache_hit_tokens")
    assert isinstance(tokens, int) and isinstance(hits, int)
    return query | {"prompt_chars": chars, "prefix_cache_score": hits / max(tokens, 1)}


def _raw_into(
    out: Served, service: OracleService, stream: Stream, features: np.ndarray, rows: np.ndarray
) -> None:
    accelerators = stream.accelerator[rows]
    for accelerator in np.unique(accelerators):
        mine = rows[accelerators == accelerator]
        out.raw_ttft[mine] = _raw_p90(service, features[mine], str(accelerator), Target.TTFT)
        out.raw_tpot[mine] = _raw_p90(service, features[mine], str(accelerator), Target.TPOT)


def _llmd_entries(stream: Stream, rows: np.ndarray) -> list[dict[str, object]]:
    f = stream.fields
    return [
        {
            "kv_cache_percentage": float(f["kv_cache_usage"][i]),
            # llm-d counts words where a world reports them (zoo.schedulers).
            "input_token_length": int(f.get("input_words", f["input_tokens"])[i]),
            "num_request_waiting": int(f["waiting_requests"][i]),
            "num_request_running": int(f["running_requests"][i]),
            "num_tokens_generated": 0,
            "prefix_cache_score": float(f["prefix_cache_hit_tokens"][i] / f["input_tokens"][i]),
            "prefill_tokens_in_flight": int(f["prefill_tokens_in_flight"][i]),
            "decode_tokens_in_flight": int(f["decode_tokens_in_flight"][i]),
        }
        for i in rows.tolist()
    ]


def feed_llmd(
    stream: Stream, features: np.ndarray, instant: bool = False, first_token_s: float | None = None
) -> Served:
    """Predict via ``/predict/bulk/strict``; learn finished requests first via
    ``/add_training_data_bulk`` (with ``first_token_s``, TTFT entries at the first token
    and TPOT entries at the end, as llm-d's EPP sends them)."""
    out = Served(*(np.empty(len(stream)) for _ in range(4)))
    finished = stream.finished
    first_token = stream.timestamp + stream.ttft_ms / 1e3
    ttft_sent = np.zeros(len(stream), dtype=bool)
    with tempfile.TemporaryDirectory() as state, ExitStack() as running:
        doors = {
            str(a): _service(Path(state) / str(a), str(a)) for a in np.unique(stream.accelerator)
        }
        for client, _ in doors.values():
            running.enter_context(client)
        sent = dict.fromkeys(doors, 0)
        for rows, early, known in schedule(stream, instant, first_token_s):
            for accelerator, (client, service) in doors.items():
                mine_early = early[stream.accelerator[early] == accelerator]
                learn = known[stream.accelerator[known] == accelerator]
                entries = [
                    {**entry, "actual_ttft_ms": float(stream.ttft_ms[i]), "actual_tpot_ms": 0.0}
                    | {"timestamp": float(first_token[i])}
                    for i, entry in zip(
                        mine_early.tolist(), _llmd_entries(stream, mine_early), strict=True
                    )
                ]
                ttft_sent[mine_early] = True
                entries += [
                    {
                        **entry,
                        "num_tokens_generated": int(stream.fields["output_tokens"][i]),
                        "actual_ttft_ms": 0.0 if ttft_sent[i] else float(stream.ttft_ms[i]),
                        "actual_tpot_ms": _tpot(stream.tpot_ms[i]) or 0.0,
                        "timestamp": float(finished[i]),
                    }
                    for i, entry in zip(learn.tolist(), _llmd_entries(stream, learn), strict=True)
                ]
                if entries:
                    response = client.post("/add_training_data_bulk", json={"entries": entries})
                    assert response.status_code == 202, response.text
                    sent[accelerator] += response.json()["accepted"]
                    _learned(service, sent[accelerator])
                mine = rows[stream.accelerator[rows] == accelerator]
                if len(mine):
                    _predict_llmd(client, _llmd_entries(stream, mine), out, mine)
                    out.raw_ttft[mine] = _raw_p90(service, features[mine], accelerator, Target.TTFT)
                    out.raw_tpot[mine] = _raw_p90(service, features[mine], accelerator, Target.TPOT)
    return out


def _predict_llmd(
    client: TestClient, requests: list[dict[str, object]], out: Served, rows: np.ndarray
) -> None:
    """Served p90s into ``out``; NaN while the service is not ready (llm-d's EPP skips it)."""
    response = client.post("/predict/bulk/strict", json={"requests": requests})
    if response.status_code != 200:
        out.ttft[rows] = out.tpot[rows] = np.nan
        return
    body = response.json()["predictions"]
    out.ttft[rows] = [p["ttft_ms"] for p in body]
    out.tpot[rows] = [p["tpot_ms"] for p in body]
