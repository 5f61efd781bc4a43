"""Introspection reads published key statuses, never live learner slots.

One thread learns (drifts and promotions included, which swap learner slots) while this
one reads ``/v1/models``, ``/metrics``, ``/readyz`` and ``/ui`` and samples the status
page's history as fast as it can: every answer must be whole and self-consistent, and
no count may ever go backwards.
"""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from latency_oracle.models.model_set import ModelSet
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import generate_stream, served_model_stream

ENDPOINTS = ("/v1/models", "/metrics", "/readyz", "/ui")


def _check_models(body: dict, seen: dict[str, int], settings: Settings) -> int:
    """Check one ``/v1/models`` answer against itself and earlier ones; keys that moved."""
    moved = 0
    for model in body["models"]:
        names = [learner["name"] for learner in model["learners"]]
        assert model["champion"] is None or model["champion"] in names, model
        assert not model["serving"] or model["samples"] >= settings.min_samples, model
        for learner in model["learners"]:
            assert learner["window"]["samples"] <= min(model["samples"], settings.eval_window)
            assert learner["state"] in ("warming", "ok", "failed")
        before = seen.get(model["key"])
        if before is not None:
            assert model["samples"] >= before, f"{model['key']} went back from {before}"
            moved += model["samples"] > before
        seen[model["key"]] = model["samples"]
    return moved


def _check_metrics(text: str, seen: dict[str, int]) -> None:
    for family in text_string_to_metric_families(text):
        if family.name != "latency_oracle_model_samples":
            continue
        for sample in family.samples:
            labels = sample.labels
            key = "/".join(
                filter(None, (labels["accelerator"], labels["target"], labels.get("model")))
            )
            # A scrape after a /v1/models read never shows fewer samples for a key.
            assert sample.value >= seen.get(key, 0), key


def test_introspection_while_learning_hammers(settings: Settings) -> None:
    service = OracleService(settings)
    shifted = generate_stream(1_600, seed=21, shift_at=800, id_prefix="drift").observations
    named = served_model_stream(600, seed=22, accelerator="A100", model="m", slowdown=3.0)
    batches = [shifted[i : i + 60] for i in range(0, len(shifted), 60)]
    batches += [named.observations[i : i + 60] for i in range(0, 600, 60)]
    total = sum(len(b) for b in batches)
    with TestClient(create_app(settings, service)) as client:
        fed = threading.Event()

        def feed() -> None:
            for batch in batches:
                while True:  # the buffer is large; retry only if the learner lags far behind
                    try:
                        service.ingest(batch)
                        break
                    except Exception:  # StoreFull: let the learner catch up
                        service.wait_learned(service.learned_total + 1, timeout_s=1)
            fed.set()

        feeder = threading.Thread(target=feed, name="feeder")
        feeder.start()
        seen: dict[str, int] = {}
        reads = moved = 0
        while not (fed.is_set() and service.learned_total >= total):
            for path in ENDPOINTS:
                response = client.get(path)
                assert response.status_code == 200, (path, response.text)
                if path == "/v1/models":
                    moved += _check_models(response.json(), seen, settings)
                elif path == "/metrics":
                    _check_metrics(response.text, seen)
                elif path == "/readyz":
                    assert response.json()["status"] in ("ready", "degraded")
            service.activity.sample(service.models)
            reads += 1
            if reads > 10_000:
                break
        feeder.join(timeout=30)
        assert service.wait_learned(total, timeout_s=60)
        # Reads overlapped learning: several keys were seen moving between reads.
        assert moved >= 2, (moved, reads)
        # At rest, the statuses are exactly the model sets' state.
        final = {m["key"]: m for m in client.get("/v1/models").json()["models"]}
        live: list[ModelSet] = service.models.model_sets()
        assert {m.key.label(): m.n_samples for m in live} == {
            k: m["samples"] for k, m in final.items()
        }
        assert {m.key.label(): m.champion for m in live} == {
            k: m["champion"] for k, m in final.items()
        }
