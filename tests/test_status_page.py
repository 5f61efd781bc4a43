"""``GET /ui`` in a real headless Chromium: the charts render with data, and a screenshot.

A predictor learns a shifted synthetic stream and routes requests over real HTTP; the
browser's DOM (after parsing and layout) must hold, for every model key, a coverage, a
loss and a predicted-vs-actual chart whose series carry points, plus the recent route
decisions. The screenshot lands in ``tests/artifacts/status-page.png`` (gitignored).
A second test opens the page of a running demo (engines, sidecars, predictor processes).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from demo_feed import feed, learner_settings, route_all
from live_server import live_server
from polling import wait_until

from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.demo.launcher import demo_env, launched, replay_load
from latency_oracle.sim.evaluation.workloads import read_trace

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHART_KINDS = ("coverage", "loss", "predictions")
N = 3_600
SHIFT_AT = 2_000

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium (Debian package) not installed"),
    pytest.mark.slow,
]


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def charts(dom: str) -> dict[str, list[str]]:
    """Each chart's SVG markup by model key: {"H100/ttft": [svg, svg, svg], ...}."""
    sections = re.split(r"<h2>", dom)[1:]
    return {
        section.split("</h2>", 1)[0]: re.findall(r"<svg[^>]*data-chart.*?</svg>", section, re.S)
        for section in sections
        if "data-chart" in section
    }


def points(svg: str) -> dict[str, int]:
    return {
        name: int(count)
        for name, count in re.findall(r'data-series="([^"]+)" data-points="(\d+)"', svg)
    }


def test_status_page_renders_charts_with_data_in_chromium(tmp_path: Path) -> None:
    service = OracleService(learner_settings(tmp_path, ui_sample_interval_s=0.1))
    with live_server(create_app(service.settings, service)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            feed(client, N, SHIFT_AT)
            assert service.wait_learned(N, 120)
            assert route_all(client) == ["place", "shed", "queue"]
        assert wait_until(
            lambda: all(len(h) >= 3 for h in service.activity.view().quality.values()), 10
        )
        dom = chromium(tmp_path / "profile", "--dump-dom", f"{url}/ui").stdout
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "status-page.png"
        screenshot.unlink(missing_ok=True)
        chromium(tmp_path / "profile", f"--screenshot={screenshot}", f"{url}/ui")

    by_key = charts(dom)
    assert set(by_key) == {"H100/ttft", "H100/tpot", "global/ttft", "global/tpot"}
    for key, svgs in by_key.items():
        assert [re.search(r'data-chart="(\w+)"', s)[1] for s in svgs] == list(CHART_KINDS)
        coverage, loss, predictions = map(points, svgs)
        assert set(coverage) == set(loss) == {"p50", "p90", "p99"}, key
        assert min(coverage.values()) >= 3 and min(loss.values()) >= 3, key
        assert predictions["actual"] == service.settings.ui_recent_items, key
        assert min(predictions.values()) == service.settings.ui_recent_items, key
        assert re.search(r'd="M[\d.]+,[\d.]+ L', svgs[0]), "coverage drawn as a line"
    decisions = re.findall(r"<tr class=\"route\"><td>[^<]*</td><td class=\"(\w+)\"", dom)
    assert {"place", "shed", "queue"} <= set(decisions)
    assert 'http-equiv="refresh"' in dom
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000  # charts, not a blank page


def test_status_page_of_a_running_demo(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text(
        "\n".join(
            json.dumps({"arrival": i * 0.03, "input_tokens": 300 + 7 * i, "output_tokens": 8})
            for i in range(240)
        )
    )
    env = demo_env(Settings()) | {"LATENCY_ORACLE_UI_SAMPLE_INTERVAL_S": "0.2"}
    with launched(env, tmp_path) as demo:
        stats = asyncio.run(
            replay_load(demo.predictor, demo.sidecars, read_trace(trace), 1.0, 8.0, False)
        )
        assert stats.decisions > 0 and stats.learned > 0
        dom = chromium(tmp_path / "profile", "--dump-dom", f"{demo.predictor}/ui").stdout
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "status-page-demo.png"
        chromium(tmp_path / "profile", f"--screenshot={screenshot}", f"{demo.predictor}/ui")

    # The demo's sidecars name the engines' served model: keys are accelerator/target/model.
    by_key = {"/".join(k.split("/")[:2]): v for k, v in charts(dom).items() if k.count("/") > 1}
    assert {"H100/ttft", "A100/ttft", "L4/ttft"} <= set(by_key)
    coverage, _, predictions = map(points, by_key["H100/ttft"])
    assert coverage and min(coverage.values()) >= 2 and predictions["actual"] > 0
    assert re.findall(r"<tr class=\"route\">", dom), "recent route decisions are listed"
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
