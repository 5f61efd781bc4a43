"""``latency-oracle review``: what the MLflow store says about every model key.

The table reads the same store the service logs to (embedded SQLite or a tracking
server); ``--ui`` starts MLflow's own UI on it, for metric plots and version history.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence

from latency_oracle.operations.metrics import quantile_label
from latency_oracle.operations.mlflow_store import KeyReview
from latency_oracle.settings import Settings

COLUMNS = ("key", "versions", "champion version", "learner", "samples", "loss", "cover", "drifts")


def render_table(rows: Sequence[KeyReview], headline: str) -> str:
    """A plain-text table; loss and coverage are of the headline quantile."""
    header = [*COLUMNS[:5], f"{headline} loss ms", f"{headline} coverage", COLUMNS[7]]
    body = [
        [
            row.key,
            str(row.versions),
            row.champion_version,
            row.champion,
            _number(row.samples, "{:.0f}"),
            _number(row.headline_loss, "{:.4g}"),
            _number(row.coverage, "{:.3f}"),
            _number(row.drift_events, "{:.0f}"),
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    )


def review(settings: Settings) -> int:
    from latency_oracle.operations.model_versions import open_store

    headline = quantile_label(settings.headline_quantile)
    rows = open_store(settings).review(headline)
    if not rows:
        print(f"no model keys logged yet in {settings.mlflow_tracking_uri}")
        return 1
    print(render_table(rows, headline))
    return 0


def ui_command(settings: Settings, port: int) -> list[str] | None:
    """The MLflow UI command on this deployment's store; None without the full mlflow."""
    if importlib.util.find_spec("flask") is None:
        return None
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.mlflow_tracking_uri,
        "--port",
        str(port),
    ]


def open_ui(settings: Settings, port: int) -> int:
    command = ui_command(settings, port)
    if command is None:
        print(
            "The MLflow UI needs the full mlflow package (this install has mlflow-skinny):\n"
            "  pip install 'latency-oracle[ui]'\n"
            f"then run: mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}",
            file=sys.stderr,
        )
        return 2
    os.execv(command[0], command)


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
