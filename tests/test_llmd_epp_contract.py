"""llm-d's endpoint picker (EPP) against Latency Oracle: the client's real call sequence.

Replays, against a fresh server, what the EPP's latency-predictor client sends, as read
from llm-d/llm-d-inference-scheduler at commit 520af47896e5f06e43d09aca281a1149187b0ffd
(``pkg/epp/framework/plugins/requestcontrol/dataproducer/predictedlatency/`` and its
``latencypredictorclient`` package). Written from reading that Go source:

- At start the client reads ``GET /status`` and ``GET /model/download/info``; every 60 s
  it reads ``/model/download/info``, then in native-XGBoost mode (its default)
  ``/model/ttft/xgb/json`` and ``/model/tpot/xgb/json``, then ``/status``.
- Every second it flushes its buffer in one ``POST /add_training_data_bulk`` (at most
  1,000 entries, stratified) and expects 202; any other status drops the batch for good.
- Per request: a TTFT entry at the first token (``actual_tpot_ms`` 0,
  ``num_tokens_generated`` 0, the pod's prefix score, prefill tokens in flight), and in
  streaming mode a TPOT entry at the end (``actual_ttft_ms`` 0, the request's mean TPOT,
  ``num_tokens_generated`` 0, ``prefix_cache_score`` 0). ``decode_tokens_in_flight`` is
  always 0, ``pod_type`` is omitted when empty, latencies are whole milliseconds for TTFT,
  timestamps are Go's RFC 3339 with nanoseconds. Non-streaming mode sends TTFT entries
  only (the whole request's latency).
- Scheduling: every candidate pod is a row (``num_tokens_generated`` 1); concurrent
  callers' rows are merged into one ``POST /predict/bulk/strict`` and the answer is split
  back by offsets. In streaming mode, sampled tokens call ``POST /predict`` for TPOT.
- The client sends no ``Authorization`` header.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from latency_oracle.features.schema import Observation
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import generate_stream

REQUESTS_PER_SECOND = 10
CANDIDATES = 4
CALLERS_PER_MERGE = 5
SECONDS = 60
PREDICTION_FIELDS = {
    "ttft_ms": float,
    "tpot_ms": float,
    "predicted_at": str,
    "model_type": str,
    "objective_type": str,
    "quantile": float,
}


def go_time(moment: datetime) -> str:
    """Go's ``time.Time`` JSON: RFC 3339 with nanoseconds, trailing zeros trimmed."""
    nanos = f"{moment.microsecond * 1000:09d}".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{nanos}" if nanos else "") + "Z"


def parse_go_time(text: str) -> datetime:
    """What Go's RFC 3339 decoding of a ``time.Time`` accepts (here: Python's parser)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Epp:
    """The client's side of the contract: its buffer, its calls, its checks of the answers."""

    http: TestClient
    streaming: bool = True
    pod_type: str = ""
    base: str = ""
    pending: list[dict[str, Any]] = field(default_factory=list)
    flush_codes: list[int] = field(default_factory=list)

    def start(self) -> dict[str, Any]:
        status = self.http.get(f"{self.base}/status")
        assert status.status_code == 200
        self.check_status(status.json())
        assert self.http.get(f"{self.base}/model/download/info").status_code == 200
        return status.json()

    def check_status(self, body: dict[str, Any]) -> None:
        """Decodes as the client's ``ServerStatusResponse``."""
        assert isinstance(body["is_ready"], bool)
        assert isinstance(body["model_type"], str) and isinstance(body["quantile"], float)
        assert all(isinstance(v, bool) for v in body["models_exist"].values())
        if body["last_model_load"] is not None:
            parse_go_time(body["last_model_load"])

    def row(
        self, obs: Observation, generated: int, prefix_score: float, prefill: int | None = None
    ) -> dict[str, Any]:
        """``buildPredictionRequest``: the pod's metrics, the prompt's word count, the
        prefill tokens the EPP counts in flight on the pod (left 0 by TPOT sampling)."""
        row: dict[str, Any] = {
            "kv_cache_percentage": obs.kv_cache_usage,
            "input_token_length": obs.input_tokens,
            "num_request_waiting": obs.waiting_requests,
            "num_request_running": obs.running_requests,
            "num_tokens_generated": generated,
            "prefix_cache_score": prefix_score,
            "prefill_tokens_in_flight": obs.prefill_tokens_in_flight
            if prefill is None
            else prefill,
            "decode_tokens_in_flight": 0,
        }
        if self.pod_type:
            row["pod_type"] = self.pod_type
        return row

    def schedule(self, batch: list[Observation]) -> None:
        """Concurrent callers' candidate rows, merged into one strict call and split back."""
        callers = [
            [
                self.row(obs, 1, (obs.prefix_cache_score or 0.0) * c / CANDIDATES)
                for c in range(CANDIDATES)
            ]
            for obs in batch
        ]
        merged = [row for rows in callers for row in rows]
        response = self.http.post(f"{self.base}/predict/bulk/strict", json={"requests": merged})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total_requests"] == len(merged) == len(body["predictions"])
        assert body["processing_time_ms"] > 0
        offset = 0
        for rows in callers:
            for prediction in body["predictions"][offset : offset + len(rows)]:
                self.check_prediction(prediction)
            offset += len(rows)

    def check_prediction(self, prediction: dict[str, Any]) -> None:
        """Decodes as the client's ``PredictionResponse``, with usable numbers."""
        for name, kind in PREDICTION_FIELDS.items():
            assert isinstance(prediction[name], kind), (name, prediction)
        parse_go_time(prediction["predicted_at"])
        assert prediction["ttft_ms"] > 0 and prediction["tpot_ms"] > 0

    def serve(self, obs: Observation, now: datetime) -> None:
        """One request's life: TPOT sampling while streaming, then its training entries."""
        ttft = float(round(obs.ttft_ms or 0.0))
        if self.streaming:
            sampled = self.http.post(f"{self.base}/predict", json=self.row(obs, 3, 0.0, prefill=0))
            assert sampled.status_code == 200, sampled.text
            self.check_prediction(sampled.json())
        labels = {"actual_ttft_ms": ttft, "actual_tpot_ms": 0.0, "timestamp": go_time(now)}
        if not self.streaming:  # the "TTFT" is the whole request's latency
            decode = (obs.tpot_ms or 0.0) * (obs.output_tokens - 1)
            labels["actual_ttft_ms"] = float(round(ttft + decode))
        score = obs.prefix_cache_score or 0.0
        self.pending.append({**self.row(obs, 0, score), **labels})
        if self.streaming and obs.tpot_ms is not None:
            tpot = {"actual_ttft_ms": 0.0, "actual_tpot_ms": obs.tpot_ms, "timestamp": go_time(now)}
            self.pending.append({**self.row(obs, 0, 0.0), **tpot})

    def flush(self) -> dict[str, Any]:
        batch, self.pending = self.pending[:1000], []
        response = self.http.post(f"{self.base}/add_training_data_bulk", json={"entries": batch})
        self.flush_codes.append(response.status_code)
        return response.json()

    def refresh(self) -> None:
        """The 60 s tick: model info, native trees, status; each must answer 200."""
        info = self.http.get(f"{self.base}/model/download/info")
        assert info.status_code == 200
        assert info.json()["model_type"] == "xgboost"
        assert info.json()["native_prediction"].startswith("not offered")
        for target in ("ttft", "tpot"):
            trees = self.http.get(f"{self.base}/model/{target}/xgb/json")
            assert trees.status_code == 200 and trees.json() == []
            assert "no trees exported" in trees.headers["warning"]
        status = self.http.get(f"{self.base}/status")
        assert status.status_code == 200
        self.check_status(status.json())

    def run_minute(self, observations: list[Observation]) -> None:
        """A minute of traffic: each second schedule, serve and flush its requests."""
        for second in range(SECONDS):
            now = datetime.now(UTC)
            batch = observations[second * REQUESTS_PER_SECOND : (second + 1) * REQUESTS_PER_SECOND]
            for start in range(0, len(batch), CALLERS_PER_MERGE):
                self.schedule(batch[start : start + CALLERS_PER_MERGE])
            for obs in batch:
                self.serve(obs, now)
            self.flush()
        self.refresh()


@pytest.fixture
def epp_settings(settings: Settings) -> Settings:
    """The production readiness threshold (300 samples), the EPP's pool on H100s."""
    return settings.model_copy(update={"min_samples": 300, "llmd_accelerator": "H100"})


def _server(settings: Settings) -> Iterator[tuple[TestClient, OracleService]]:
    service = OracleService(settings)
    with TestClient(create_app(settings, service)) as client:
        yield client, service


@pytest.fixture
def server(epp_settings: Settings) -> Iterator[tuple[TestClient, OracleService]]:
    yield from _server(epp_settings)


def _minute_of_traffic(seed: int) -> list[Observation]:
    return generate_stream(SECONDS * REQUESTS_PER_SECOND, seed=seed).observations


def test_a_fresh_server_answers_the_first_calls(server: tuple[TestClient, OracleService]) -> None:
    client, _ = server
    epp = Epp(client)
    status = epp.start()
    assert status["is_ready"] is True
    assert status["model_source"] == {"ttft": "prior", "tpot": "prior"}
    assert status["quantile"] == 0.9 and status["objective_type"] == "quantile"
    first = _minute_of_traffic(seed=11)[:REQUESTS_PER_SECOND]
    epp.schedule(first[:CALLERS_PER_MERGE])  # before any training: 200, from the prior
    for obs in first:
        epp.serve(obs, datetime.now(UTC))
    receipt = epp.flush()
    assert epp.flush_codes == [202]
    assert receipt["accepted"] == 2 * REQUESTS_PER_SECOND and receipt["skipped"] == {}
    epp.schedule(first[CALLERS_PER_MERGE:])  # within the first flush with labels: 200
    epp.refresh()


def test_a_minute_of_streaming_traffic_trains_both_targets(
    server: tuple[TestClient, OracleService],
) -> None:
    client, service = server
    epp = Epp(client)
    epp.start()
    epp.run_minute(_minute_of_traffic(seed=12))
    assert set(epp.flush_codes) == {202}
    assert service.wait_learned(2 * SECONDS * REQUESTS_PER_SECOND, timeout_s=60)
    status = client.get("/status").json()
    assert status["models_exist"] == {"ttft_model": True, "tpot_model": True}
    assert all(source.endswith("@H100") for source in status["model_source"].values())
    for target in Target:
        assert service.models.serving(ModelKey("H100", target)) is not None, target


def test_non_streaming_mode_trains_ttft_and_still_answers_tpot(
    server: tuple[TestClient, OracleService],
) -> None:
    client, service = server
    epp = Epp(client, streaming=False)
    epp.start()
    epp.run_minute(_minute_of_traffic(seed=13))
    assert set(epp.flush_codes) == {202}
    assert service.wait_learned(SECONDS * REQUESTS_PER_SECOND, timeout_s=60)
    status = client.get("/status").json()
    assert status["models_exist"] == {"ttft_model": True, "tpot_model": False}
    assert status["model_source"]["tpot"] == "prior"
    epp.schedule(_minute_of_traffic(seed=14)[:CALLERS_PER_MERGE])


def test_a_flush_with_one_implausible_entry_loses_only_that_entry(
    server: tuple[TestClient, OracleService],
) -> None:
    client, service = server
    epp = Epp(client)
    for obs in _minute_of_traffic(seed=15)[:500]:
        epp.serve(obs, datetime.now(UTC))
    epp.pending[7]["actual_ttft_ms"] = 700_000.0  # a stuck stream: over the 600 s bound
    sent = len(epp.pending)
    receipt = epp.flush()
    assert epp.flush_codes == [202]
    assert receipt["accepted"] == sent - 1
    assert receipt["skipped"] == {"actual_ttft_ms_out_of_bounds": 1}
    assert service.wait_learned(sent - 1, timeout_s=30)
    counter = "latency_oracle_llmd_training_entries_skipped_total"
    reason = '{reason="actual_ttft_ms_out_of_bounds"}'
    assert f"{counter}{reason} 1.0" in client.get("/metrics").text


def test_a_malformed_flush_is_still_a_422(server: tuple[TestClient, OracleService]) -> None:
    client, service = server
    epp = Epp(client)
    epp.serve(_minute_of_traffic(seed=16)[0], datetime.now(UTC))
    epp.pending[0]["kv_cache_percentage"] = "lots"
    response = client.post("/add_training_data_bulk", json={"entries": epp.pending})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "entries", 0, "kv_cache_percentage"]
    assert service.store.pending() == 0


def test_disaggregated_pods_and_pools_reach_their_own_models(epp_settings: Settings) -> None:
    """pod_type becomes the role; an EPP whose URL names its pool's hardware trains that
    accelerator's models instead of the default bucket."""
    for client, service in _server(epp_settings):
        epp = Epp(client, pod_type="decode", base="/accelerators/MI300X")
        assert epp.start()["accelerator"] == "MI300X"
        epp.run_minute(_minute_of_traffic(seed=17))
        assert set(epp.flush_codes) == {202}
        assert service.wait_learned(2 * SECONDS * REQUESTS_PER_SECOND, timeout_s=60)
        keys = {m.key for m in service.models.model_sets()}
        assert ModelKey("MI300X", Target.TPOT) in keys
        assert ModelKey("H100", Target.TTFT) not in keys


def test_the_epp_needs_no_token_when_llmd_is_open(epp_settings: Settings) -> None:
    secured = epp_settings.model_copy(
        update={"api_token": SecretStr("write-secret"), "read_token": SecretStr("read-secret")}
    )
    for client, _ in _server(secured):  # closed: the EPP, which sends no token, is refused
        assert client.post("/add_training_data_bulk", json={"entries": []}).status_code == 401
    for client, _ in _server(secured.model_copy(update={"llmd_open": True})):
        epp = Epp(client)
        epp.start()
        minute = _minute_of_traffic(seed=18)[:REQUESTS_PER_SECOND]
        epp.schedule(minute[:CALLERS_PER_MERGE])
        for obs in minute:
            epp.serve(obs, datetime.now(UTC))
        epp.flush()
        assert epp.flush_codes == [202]
        native = {"accelerator": "H100", "input_tokens": 10, "output_tokens": 5, "ttft_ms": 9.0}
        assert client.post("/v1/observations", json=native).status_code == 401
        assert (
            client.post(
                "/v1/predictions", json={"accelerator": "H100", "input_tokens": 10}
            ).status_code
            == 401
        )
