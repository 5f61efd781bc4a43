"""``GET /ui``: a server-rendered status page, for a look without a Grafana at hand.

One HTML document with inline SVG and a meta refresh: nothing to build, nothing fetched
from elsewhere, so it works in an air-gapped cluster through ``kubectl port-forward``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from latency_oracle.models.status import KeyStatus
from latency_oracle.operations.metrics import quantile_label
from latency_oracle.predictor.activity import ActivityView, Outcome, QualitySample, RouteRecord
from latency_oracle.predictor.service import OracleService
from latency_oracle.predictor.svg_charts import Series, chart

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
ACTUAL_COLOR = "#555"
ROUTES_SHOWN = 25
STYLE = """
body { font: 13px system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; } h2 { font-size: 14px; margin: 18px 0 4px; }
.row { display: flex; flex-wrap: wrap; gap: 10px; }
.chart { border: 1px solid #eee; background: #fff; } .chart text { font-size: 10px; }
.chart .title { font-weight: 600; } .muted { color: #777; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; text-align: left; }
tr:nth-child(even) { background: #f6f6f6; }
.place { color: #2ca02c; } .shed { color: #d62728; } .queue { color: #ff7f0e; }
"""


def ui_router(service: OracleService) -> APIRouter:
    api = APIRouter()

    @api.get(
        "/ui", response_class=HTMLResponse, summary="Status page: quality, predictions, routes"
    )
    async def status_page() -> HTMLResponse:
        return HTMLResponse(render_page(service))

    return api


def render_page(service: OracleService) -> str:
    view = service.activity.view()
    readiness = service.readiness()
    quantiles = service.config.quantiles
    now = time.time()
    sections = [
        _key_section(status, view, quantiles, now)
        for status in sorted(service.models.statuses(), key=lambda s: s.key.label())
    ]
    refresh = service.settings.ui_refresh_s
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{refresh}'>"
        f"<title>Latency Oracle status</title><style>{STYLE}</style></head><body>"
        f"<h1>Latency Oracle</h1><div class='muted'>{escape(readiness.status)}"
        f"{''.join(f' · {escape(p)}' for p in readiness.problems)} · {stamp} · "
        f"refreshes every {refresh}s</div>"
        + ("".join(sections) or "<p>No model has learned anything yet.</p>")
        + _routes_section(view.routes)
        + "</body></html>"
    )


def _key_section(
    status: KeyStatus, view: ActivityView, quantiles: tuple[float, ...], now: float
) -> str:
    label = status.key.label()
    history = view.quality.get(label, [])
    outcomes = view.outcomes.get(label, [])
    charts = [
        _coverage_chart(history, quantiles, now),
        _loss_chart(history, quantiles, now),
        _prediction_chart(outcomes, quantiles),
    ]
    return (
        f"<h2>{escape(label)}</h2><div class='muted'>champion "
        f"{escape(status.champion or 'none')} · {status.samples} samples</div>"
        f"<div class='row'>{''.join(charts)}</div>"
    )


def _minutes_ago(history: list[QualitySample], now: float) -> list[float]:
    return [(s.at - now) / 60.0 for s in history]


def _coverage_chart(history: list[QualitySample], quantiles: tuple[float, ...], now: float) -> str:
    xs = _minutes_ago(history, now)
    series = []
    for i, q in enumerate(quantiles):
        color = PALETTE[i % len(PALETTE)]
        series.append(Series(quantile_label(q), color, xs, [s.coverage[i] for s in history]))
        if xs:
            series.append(Series("", color, [xs[0], xs[-1]], [q, q], dashed=True))
    return chart("coverage (dashed: nominal) vs minutes ago", series, "coverage", "{:.2f}")


def _loss_chart(history: list[QualitySample], quantiles: tuple[float, ...], now: float) -> str:
    xs = _minutes_ago(history, now)
    series = [
        Series(quantile_label(q), PALETTE[i % len(PALETTE)], xs, [s.pinball_ms[i] for s in history])
        for i, q in enumerate(quantiles)
    ]
    return chart("pinball loss, ms, vs minutes ago", series, "loss")


def _prediction_chart(outcomes: list[Outcome], quantiles: tuple[float, ...]) -> str:
    xs = list(range(len(outcomes)))
    series = [
        Series(
            quantile_label(q), PALETTE[i % len(PALETTE)], xs, [o.predicted_ms[i] for o in outcomes]
        )
        for i, q in enumerate(quantiles)
    ]
    series.append(Series("actual", ACTUAL_COLOR, xs, [o.actual_ms for o in outcomes], dots=True))
    return chart("predicted vs actual, ms, recent requests", series, "predictions", "{:.0f}")


def _routes_section(routes: list[RouteRecord]) -> str:
    counts: dict[str, int] = {}
    for record in routes:
        counts[record.decision] = counts.get(record.decision, 0) + 1
    summary = ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "none yet"
    rows = "".join(
        f"<tr class='route'><td>{datetime.fromtimestamp(r.at, UTC).strftime('%H:%M:%S')}</td>"
        f"<td class='{escape(r.decision)}'>{escape(r.decision)}</td>"
        f"<td>{escape(r.pod or '-')}</td><td>{escape(r.policy)}</td>"
        f"<td>{escape(r.reason)}</td></tr>"
        for r in reversed(routes[-ROUTES_SHOWN:])
    )
    return (
        f"<h2>Recent route decisions</h2><div class='muted'>last {len(routes)}: {summary}</div>"
        "<table><tr><th>time</th><th>decision</th><th>pod</th><th>policy</th>"
        f"<th>reason</th></tr>{rows}</table>"
    )
