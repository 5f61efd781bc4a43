"""Model review through a real MLflow store: SQLite tracking + Model Registry in tmp dirs."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from polling import wait_until

from latency_oracle.cli import main
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.drift import EventKind, ModelEvent
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.models.persistence.snapshot import decode_snapshot
from latency_oracle.operations.mlflow.pyfunc import EXAMPLE_REQUEST
from latency_oracle.operations.mlflow.server_client import (
    CHAMPION_ALIAS,
    KEY_TAG,
    registered_model_name,
)
from latency_oracle.operations.model_versions import open_store
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.review import ui_command
from latency_oracle.settings import Settings
from latency_oracle.sim.processes import free_port
from latency_oracle.sim.synthetic_stream import generate_stream

SHIFT_AT = 2_000
N = 3_600
# A stream whose fresh challenger beats the adapting champion by the margin: on about
# half the seeds the two end level and nothing is promoted.
PROMOTING_SEED = 2
BATCH = 128
KEY = ModelKey("H100", Target.TPOT)


def model_settings(state_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "state_dir": state_dir,
        "min_samples": 300,
        "eval_window": 500,
        "calibration_window": 500,
        "xgb_window": 512,
        "xgb_boost_every": 128,
        "challenger_window": 300,
        "learn_batch_size": BATCH,
        "snapshot_interval_s": 3600,
        "tracking_every_observations": 500,
        "tracking_flush_timeout_s": 300,  # the fixture reads everything it logged
    }
    return Settings(**{**values, **overrides})


def drive(service: OracleService, n: int, shift_at: int | None, seed: int = 1) -> None:
    """Learn the stream in fixed batches on this thread, so runs are deterministic."""
    service.ingest(generate_stream(n, seed=seed, shift_at=shift_at).observations)
    while service.learn_cycle(timeout_s=0):
        pass


def counter(service: OracleService, name: str, **labels: str) -> float:
    return service.metrics.registry.get_sample_value(name, labels or None) or 0.0


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OracleService]:
    """A service that learned a stream with an abrupt shift, its logs flushed to MLflow."""
    settings = model_settings(tmp_path_factory.mktemp("mlflow") / "state")
    service = OracleService(settings)
    service.tracker.start()
    drive(service, N, SHIFT_AT, seed=PROMOTING_SEED)
    service.tracker.stop()
    yield service


def promoted_events(service: OracleService) -> list[ModelEvent]:
    return list(next(m for m in service.models.model_sets() if m.key == KEY).drift.events)


def test_shift_gives_drift_promotion_and_new_champion_version(shifted: OracleService) -> None:
    kinds = [e.kind for e in promoted_events(shifted)]
    assert kinds == [EventKind.DRIFT, EventKind.PROMOTION]
    assert counter(shifted, "latency_oracle_tracking_errors_total") == 0
    assert counter(shifted, "latency_oracle_tracking_dropped_total", kind="version") == 0

    client = open_store(shifted.settings).client
    name = registered_model_name(KEY)
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    assert versions == [1, 2]  # first serving champion, then the promoted challenger
    champion = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    assert int(champion.version) == 2
    assert "challenger" in champion.description
    assert client.get_model_version(name, "1").description == "first serving champion"


def test_logged_metrics_show_loss_before_and_after_the_shift(shifted: OracleService) -> None:
    store = open_store(shifted.settings)
    [run] = store.client.search_runs([store.experiment_id], f"tags.`{KEY_TAG}` = '{KEY.label()}'")
    history = {
        m.step: m.value for m in store.client.get_metric_history(run.info.run_id, "pinball_p90_ms")
    }
    drifts = {
        m.step: m.value for m in store.client.get_metric_history(run.info.run_id, "drift_events")
    }
    before = [loss for step, loss in history.items() if step < SHIFT_AT]
    after = [loss for step, loss in history.items() if step >= SHIFT_AT]
    assert before and after
    # the slower, busier regime has larger latencies, so a larger loss, visible in the log
    assert max(after) > 1.2 * np.mean(before)
    assert drifts[max(drifts)] == 1 and drifts[min(drifts)] == 0
    assert run.data.params["drift_delta"] == str(shifted.config.drift_delta)
    assert run.data.tags["champion"] == shifted.models.serving(KEY).learner


def test_review_table_compares_champion_and_challenger_per_window(
    shifted: OracleService, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LATENCY_ORACLE_STATE_DIR", str(shifted.settings.state_dir))
    with pytest.raises(SystemExit) as exited:
        main(["review"])
    assert exited.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["key", "versions", "champion"]
    rows = [line.split() for line in lines if line.startswith(KEY.label())]
    assert len(rows) == 2  # the last two logged windows
    for row in rows:
        assert row[1:4] == ["2", "2", "-"]  # two versions, champion alias on 2, no challenger
        champion, challenger = row[5], row[8]
        learners = {"xgboost", "river_linear", "batch_xgboost", "rolling_quantile"}
        assert champion != challenger and {champion, challenger} <= learners
        assert 0.5 < float(row[7]) <= 1.0 and float(row[6]) > 0.0  # p90 loss and coverage
        assert "champion" in " ".join(row[11:-1]) or "challenger" in " ".join(row[11:-1])
        assert row[-1] == "1"  # one drift
    assert int(rows[0][4]) < int(rows[1][4])  # windows in stream order


def load_champion_pyfunc(settings: Settings, key: ModelKey) -> object:
    import mlflow.pyfunc

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{registered_model_name(key)}@champion")


def test_champion_loads_as_an_mlflow_pyfunc_that_predicts_quantiles(
    shifted: OracleService,
) -> None:
    import pandas as pd

    model = load_champion_pyfunc(shifted.settings, KEY)
    signature = model.metadata.signature
    assert signature.outputs.input_names() == ["p50", "p90", "p99"]
    assert "input_tokens" in signature.inputs.input_names()
    requests = generate_stream(32, seed=7).observations
    requests = [r.model_copy(update={"accelerator": KEY.accelerator}) for r in requests]
    frame = pd.DataFrame([r.model_dump(include=set(EXAMPLE_REQUEST)) for r in requests])
    predicted = model.predict(frame)
    assert list(predicted.columns) == ["p50", "p90", "p99"] and len(predicted) == 32
    values = predicted.to_numpy()
    assert np.all(values > 0) and np.all(np.diff(values, axis=1) >= 0)
    # the numbers the service serves for those requests from that version
    version = open_store(shifted.settings).load_version(KEY, 2)
    service = OracleService(shifted.settings)
    service.models.merge_state(decode_snapshot(version, service.config.quantiles)["model_sets"])
    served = service.predict(requests)
    assert np.allclose(values, served.tpot_ms)


def test_xgboost_boosters_are_logged_in_the_xgboost_flavour(shifted: OracleService) -> None:
    import mlflow.xgboost
    import xgboost

    store = open_store(shifted.settings)
    logged = store.client.search_logged_models(experiment_ids=[store.experiment_id])
    boosters = [m for m in logged if m.name == "xgboost"]
    assert boosters, [m.name for m in logged]
    booster = mlflow.xgboost.load_model(boosters[0].model_uri)
    assert isinstance(booster, xgboost.Booster) and booster.num_boosted_rounds() > 0


def test_rollback_api_serves_a_registered_version_and_names_bad_fields(
    shifted: OracleService,
) -> None:
    service = OracleService(shifted.settings)
    service.models.merge_state(shifted.models.export_state())
    promoted = service.models.serving(KEY)
    client = TestClient(create_app(shifted.settings, service))
    url = f"/v1/models/{KEY.accelerator}/{KEY.target.value}/rollback"

    response = client.post(url, json={"version": 1})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1
    rolled_back = service.models.serving(KEY)
    assert rolled_back is not None and rolled_back.n_samples < promoted.n_samples
    store = open_store(shifted.settings)
    assert store.champion_version(KEY) == 1

    assert client.post(url, json={"version": 2}).status_code == 200  # and forward again
    [promotion] = [e for e in promoted_events(shifted) if e.kind == EventKind.PROMOTION]
    assert service.models.serving(KEY).n_samples == promotion.samples

    missing = client.post(url, json={"version": 99})
    assert missing.status_code == 404 and missing.json()["detail"][0]["loc"] == ["body", "version"]
    unknown = client.post("/v1/models/B200/tpot/rollback", json={"version": 1})
    assert unknown.status_code == 404
    assert unknown.json()["detail"][0]["loc"] == ["path", "accelerator"]
    for bad_url, body, field in [
        ("/v1/models/H100/latency/rollback", {"version": 1}, "target"),
        (url, {"version": 0}, "version"),
        (url, {"version": "1"}, "version"),
        (url, {}, "version"),
    ]:
        rejected = client.post(bad_url, json=body)
        assert rejected.status_code == 422
        assert rejected.json()["detail"][0]["loc"][-1] == field


def test_serve_pins_a_registered_version_at_start(shifted: OracleService) -> None:
    settings = shifted.settings.model_copy(
        update={"model_versions": {"h100/tpot": 1}, "mlflow_enabled": False}
    )
    service = OracleService(settings)
    service.start()
    try:
        assert service.version_problems == []
        assert service.models.serving(KEY).n_samples < shifted.models.serving(KEY).n_samples
    finally:
        service.stop()
        open_store(shifted.settings).set_champion(KEY, 2)


def test_cli_rejects_malformed_model_versions() -> None:
    for bad in ["H100=3", "H100/latency=3", "H100/ttft=0", "H100/ttft=x"]:
        with pytest.raises(SystemExit) as exited:
            main(["serve", "--model-version", bad])
        assert exited.value.code == 2


def test_ui_command_uses_the_same_store(tmp_path: Path) -> None:
    settings = model_settings(tmp_path)
    command = ui_command(settings, 5005)
    assert command is None or command[-4:] == [
        "--backend-store-uri",
        settings.mlflow_tracking_uri,
        "--port",
        "5005",
    ]


def predictions(service: OracleService) -> np.ndarray:
    requests = generate_stream(64, seed=99).observations
    batch = service.predict(requests)
    return np.concatenate([batch.ttft_ms, batch.tpot_ms], axis=1)


def unreachable_tracking_service(state_dir: Path, uri: str, **overrides: object) -> OracleService:
    """A service whose tracker logs to ``uri`` and gives up fast; stop() does not wait."""
    settings = model_settings(
        state_dir,
        mlflow_uri=uri,
        mlflow_timeout_s=1,
        mlflow_retries=0,
        tracking_flush_timeout_s=0,
        **overrides,
    )
    service = OracleService(settings, model_config=in_line_refits(settings))
    service.tracker.start()
    return service


def in_line_refits(settings: Settings) -> ModelConfig:
    """Batch trees refitted at the sample they are due: two services fed alike predict
    alike (a background refit lands whenever its thread finishes)."""
    return ModelConfig.from_settings(settings, background_refits=False)


def test_dead_mlflow_server_leaves_learning_and_predictions_unchanged(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    off = model_settings(tmp_path / "off", mlflow_enabled=False)
    reference = OracleService(off, model_config=in_line_refits(off))
    drive(reference, 1_500, None)
    service = unreachable_tracking_service(tmp_path / "dead", dead, tracking_every_observations=100)
    drive(service, 1_500, None)
    assert (
        service.metrics.registry.get_sample_value("latency_oracle_observations_learned_total")
        == 1_500
    )
    np.testing.assert_array_equal(predictions(service), predictions(reference))
    assert wait_until(
        lambda: counter(service, "latency_oracle_tracking_errors_total") > 0, timeout_s=60.0
    )
    assert counter(service, "latency_oracle_tracking_logged_total", kind="metrics") == 0
    service.tracker.stop()


def test_hung_mlflow_server_drops_records_and_counts_them(tmp_path: Path) -> None:
    with socket.socket() as hung:  # accepts connections, never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        service = unreachable_tracking_service(
            tmp_path,
            f"http://127.0.0.1:{hung.getsockname()[1]}",
            tracking_every_observations=1,
            tracking_queue_size=2,
        )
        drive(service, 1_500, None)
        assert service.learned_total == 1_500
        assert service.models.serving(KEY) is not None
        dropped = sum(
            counter(service, "latency_oracle_tracking_dropped_total", kind=kind)
            for kind in ("metrics", "version")
        )
        assert dropped > 0
        scrape = TestClient(create_app(service.settings, service)).get("/metrics").text
        assert "latency_oracle_tracking_dropped_total" in scrape
        service.tracker.stop()


def test_serving_start_up_does_not_import_mlflow(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from latency_oracle.settings import Settings\n"
        "from predictor.app import create_app\n"
        f"create_app(Settings(state_dir={str(tmp_path)!r}))\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported on start-up'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_tracker_is_idle_when_disabled(tmp_path: Path) -> None:
    service = OracleService(model_settings(tmp_path, mlflow_enabled=False))
    service.tracker.start()
    drive(service, 600, None)
    assert service.tracker.pending() == 0
    assert counter(service, "latency_oracle_tracking_logged_total", kind="metrics") == 0
