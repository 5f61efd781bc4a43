"""Feed a zoo stream through Latency Oracle's APIs, predict then train, in one process.

Two doors, each its own service (so neither learns from the other's copy of the data):
the native API (``/v1/predictions`` then ``/v1/observations``) and llm-d's
(``/predict/bulk/strict`` then ``/add_training_data_bulk``), both through the ASGI app.
After each batch the feed waits until the service's learning thread has learned it, so
every batch is learned before the next is predicted, however slow the machine.
llm-d's API carries no accelerator type (an llm-d pool is one type), so a stream with
several types gets one llm-d service per type, as such a fleet would run them.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from latency_oracle.models.keys import GLOBAL_ACCELERATOR, ModelKey, Target
from latency_oracle.operations.metrics import quantile_label
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from zoo import Stream

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


def _records(stream: Stream, rows: range) -> list[dict[str, object]]:
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
        for i in rows
    ]


def _finished(stream: Stream, i: int) -> float:
    out = stream.fields["output_tokens"][i]
    return float(stream.timestamp[i] + (stream.ttft_ms[i] + stream.tpot_ms[i] * (out - 1)) / 1e3)


def feed_native(stream: Stream, features: np.ndarray, batch: int = 100) -> Served:
    """Predict each batch through ``/v1/predictions``, then learn it via ``/v1/observations``."""
    out = Served(*(np.empty(len(stream)) for _ in range(4)))
    with tempfile.TemporaryDirectory() as state:
        client, service = _service(Path(state))
        with client:
            for start in range(0, len(stream), batch):
                rows = range(start, min(start + batch, len(stream)))
                requests = _records(stream, rows)
                body = client.post("/v1/predictions", json=requests).json()["predictions"]
                out.ttft[start : rows.stop] = [p["ttft_ms"][HEADLINE] for p in body]
                out.tpot[start : rows.stop] = [p["tpot_ms"][HEADLINE] for p in body]
                _raw_into(out, service, stream, features, rows)
                observations = [
                    {
                        **request,
                        "observation_id": f"{stream.name}-{i}",
                        "timestamp": _finished(stream, i),
                        "output_tokens": int(stream.fields["output_tokens"][i]),
                        "ttft_ms": float(stream.ttft_ms[i]),
                        "tpot_ms": float(stream.tpot_ms[i]),
                    }
                    for i, request in zip(rows, requests, strict=True)
                ]
                response = client.post("/v1/observations", json=observations)
                assert response.status_code in (200, 202), response.text
                _learned(service, rows.stop)
    return out


def _raw_into(
    out: Served, service: OracleService, stream: Stream, features: np.ndarray, rows: range
) -> None:
    sl = slice(rows.start, rows.stop)
    accelerators = stream.accelerator[sl]
    for accelerator in np.unique(accelerators):
        mask = np.flatnonzero(accelerators == accelerator) + rows.start
        out.raw_ttft[mask] = _raw_p90(service, features[mask], str(accelerator), Target.TTFT)
        out.raw_tpot[mask] = _raw_p90(service, features[mask], str(accelerator), Target.TPOT)


def _llmd_entries(stream: Stream, rows: np.ndarray) -> list[dict[str, object]]:
    f = stream.fields
    return [
        {
            "kv_cache_percentage": float(f["kv_cache_usage"][i]),
            "input_token_length": int(f["input_tokens"][i]),
            "num_request_waiting": int(f["waiting_requests"][i]),
            "num_request_running": int(f["running_requests"][i]),
            "num_tokens_generated": 0,
            "prefix_cache_score": float(f["prefix_cache_hit_tokens"][i] / f["input_tokens"][i]),
            "prefill_tokens_in_flight": int(f["prefill_tokens_in_flight"][i]),
            "decode_tokens_in_flight": int(f["decode_tokens_in_flight"][i]),
        }
        for i in rows
    ]


def feed_llmd(stream: Stream, features: np.ndarray, batch: int = 100) -> Served:
    """Predict via ``/predict/bulk/strict``, then learn via ``/add_training_data_bulk``."""
    out = Served(*(np.empty(len(stream)) for _ in range(4)))
    with tempfile.TemporaryDirectory() as state, ExitStack() as running:
        doors = {
            str(a): _service(Path(state) / str(a), str(a)) for a in np.unique(stream.accelerator)
        }
        for client, _ in doors.values():
            running.enter_context(client)
        sent = dict.fromkeys(doors, 0)
        for start in range(0, len(stream), batch):
            rows = np.arange(start, min(start + batch, len(stream)))
            for accelerator, (client, service) in doors.items():
                mine = rows[stream.accelerator[rows] == accelerator]
                if len(mine) == 0:
                    continue
                requests = _llmd_entries(stream, mine)
                _predict_llmd(client, requests, out, mine)
                out.raw_ttft[mine] = _raw_p90(service, features[mine], accelerator, Target.TTFT)
                out.raw_tpot[mine] = _raw_p90(service, features[mine], accelerator, Target.TPOT)
                entries = [
                    {
                        **request,
                        "num_tokens_generated": int(stream.fields["output_tokens"][i]),
                        "actual_ttft_ms": float(stream.ttft_ms[i]),
                        "actual_tpot_ms": float(stream.tpot_ms[i]),
                        "timestamp": _finished(stream, i),
                    }
                    for i, request in zip(mine.tolist(), requests, strict=True)
                ]
                response = client.post("/add_training_data_bulk", json={"entries": entries})
                assert response.status_code == 202, response.text
                sent[accelerator] += len(entries)
                _learned(service, sent[accelerator])
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
