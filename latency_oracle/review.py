"""``latency-oracle review``: champion against challenger, per model key and window, from MLflow.

The table reads the same store the service logs to (embedded SQLite or a tracking
server); ``--ui`` starts MLflow's own UI on it, for metric plots and version history.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence

from latency_oracle.operations.metrics import quantile_label
from latency_oracle.operations.mlflow.server_client import KeyReview, LearnerWindow, WindowReview
from latency_oracle.settings import Settings

HEADER = (
    "key",
    "versions",
    "champion v",
    "challenger v",
    "window end",
    "champion",
    "loss ms",
    "cover",
    "challenger",
    "loss ms",
    "cover",
    "verdict",
    "drifts",
)


def verdict(window: WindowReview, margin: float) -> str:
    """Promote only a challenger that beats the champion by the election margin."""
    champion, challenger = window.champion, window.challenger
    if champion is None or challenger is None:
        return "-"
    gain = 1.0 - challenger.loss / champion.loss if champion.loss > 0 else 0.0
    if gain > margin:
        return f"challenger {gain:.0%} lower loss"
    return f"keep champion ({-gain:+.0%})" if gain < 0 else "keep champion (within margin)"


def render_table(rows: Sequence[KeyReview], headline: str, margin: float) -> str:
    """One line per key and logged window; loss and coverage are of the headline quantile."""
    header = [*HEADER[:6], f"{headline} loss ms", f"{headline} cover", HEADER[8]]
    header += [f"{headline} loss ms", f"{headline} cover", *HEADER[11:]]
    body = []
    for row in rows:
        for window in row.windows or [WindowReview(0, None, None)]:
            body.append(
                [
                    row.key,
                    str(row.versions),
                    row.champion_version,
                    row.challenger_version,
                    str(window.samples),
                    *_learner(window.champion),
                    *_learner(window.challenger),
                    verdict(window, margin),
                    _number(row.drift_events, "{:.0f}"),
                ]
            )
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
    print(render_table(rows, headline, settings.champion_margin))
    return 0


def _learner(window: LearnerWindow | None) -> list[str]:
    if window is None:
        return ["-", "-", "-"]
    return [window.learner, f"{window.loss:.4g}", _number(window.coverage, "{:.3f}")]


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
