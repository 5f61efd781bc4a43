"""The drift -> promotion flow against a real ``mlflow server`` on PostgreSQL, as deployed.

The test creates its own database on the machine's PostgreSQL (127.0.0.1:5432, trust
auth), runs the MLflow tracking server on it exactly as the Kubernetes manifests do
(``--backend-store-uri postgresql://...``, proxied artifacts), points the predictor at
the server over HTTP, and drops the database afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from polling import wait_until
from test_mlflow_tracking import (
    KEY,
    SHIFT_AT,
    N,
    counter,
    drive,
    load_champion_pyfunc,
    model_settings,
    promoted_events,
)

from latency_oracle.models.drift import EventKind
from latency_oracle.operations.mlflow.server_client import CHAMPION_ALIAS, registered_model_name
from latency_oracle.operations.model_versions import open_store
from latency_oracle.predictor.service import OracleService
from latency_oracle.sim.processes import answers, free_port

PG_HOST, PG_PORT = "127.0.0.1", 5432
SERVER_MISSING = importlib.util.find_spec("flask") is None  # mlflow-skinny has no server
pytestmark = [
    pytest.mark.skipif(SERVER_MISSING, reason="the full mlflow package (server) is not installed"),
    pytest.mark.slow,
]
psycopg = pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) not installed")


def admin_connection() -> psycopg.Connection:
    """An autocommit connection to the maintenance database, as whichever user trusts us."""
    errors = []
    for user in ("postgres", os.environ.get("USER") or "root"):
        try:
            return psycopg.connect(
                host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", autocommit=True
            )
        except psycopg.OperationalError as exc:
            errors.append(str(exc))
    pytest.skip(f"no PostgreSQL on {PG_HOST}:{PG_PORT}: {errors}")


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database's SQLAlchemy URI; dropped (connections and all) afterwards."""
    name = f"latency_oracle_test_{uuid.uuid4().hex[:10]}"
    with admin_connection() as admin:
        user = admin.info.user
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mlflow_server(database: str, tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on the database; its URL. The whole process group is stopped after."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            f"--backend-store-uri={database}",
            f"--artifacts-destination={tmp_path / 'artifacts'}",
            "--host=127.0.0.1",
            f"--port={port}",
            "--workers=1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "mlflow-server.log").open("wb"),
        start_new_session=True,  # its uvicorn workers and job runners share our group id
    )
    url = f"http://127.0.0.1:{port}"
    try:
        started = wait_until(
            lambda: answers(f"{url}/health") or process.poll() is not None, 120, 0.2
        )
        log = (tmp_path / "mlflow-server.log").read_text()[-2000:]
        assert started and process.poll() is None, f"mlflow server did not start:\n{log}"
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a loaded machine: stop it for good
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_drift_promotes_a_challenger_registered_in_postgresql(
    mlflow_server: str, database: str, tmp_path: Path
) -> None:
    settings = model_settings(tmp_path / "state", mlflow_uri=mlflow_server)
    service = OracleService(settings)
    service.tracker.start()
    drive(service, N, SHIFT_AT)
    service.tracker.stop()

    assert [e.kind for e in promoted_events(service)] == [EventKind.DRIFT, EventKind.PROMOTION]
    assert counter(service, "latency_oracle_tracking_errors_total") == 0
    client = open_store(settings).client
    name = registered_model_name(KEY)
    champion = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    assert int(champion.version) == 2
    assert "challenger" in champion.description

    # The server wrote it to PostgreSQL: read the registry's tables directly.
    with psycopg.connect(database.replace("postgresql+psycopg", "postgresql")) as db:
        versions = db.execute(
            "SELECT version FROM model_versions WHERE name = %s ORDER BY version", (name,)
        ).fetchall()
        alias = db.execute(
            "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = %s",
            (name, CHAMPION_ALIAS),
        ).fetchone()
        drift_metrics = db.execute(
            "SELECT max(value) FROM metrics WHERE key = 'drift_events'"
        ).fetchone()
    assert [v for (v,) in versions] == [1, 2]
    assert alias == (2,)
    assert drift_metrics == (1.0,)

    # A reviewer loads the champion from the server and compares it with its challenger.
    import pandas as pd

    model = load_champion_pyfunc(settings, KEY)
    predicted = model.predict(pd.DataFrame([{"input_tokens": 512}, {"input_tokens": 4096}]))
    assert list(predicted.columns) == ["p50", "p90", "p99"]
    assert (predicted.to_numpy() > 0).all()
    rows = open_store(settings).review("p90")
    [row] = [r for r in rows if r.key == KEY.label()]
    assert (row.versions, row.champion_version) == (2, "2")
    assert row.windows and all(w.champion is not None for w in row.windows)
