"""Every Grafana panel's PromQL returns data from a real Prometheus scraping real predictors.

Three predictors are scraped: the demo's (its own process, fed by simulated engines through
their sidecars, with requests routed by it), an embedded one in this process that learns a
shifted synthetic stream (so drift and promotion events exist within seconds), and a Redis
replica (so the sync-staleness and outage-buffer series exist); the demo's sidecars are
scraped on /sidecar/metrics. A Debian ``prometheus`` scrapes them every second and also
loads the alert rules, so a rule file Prometheus refuses fails here too.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from demo_feed import feed, learner_settings, route_all
from live_server import live_server
from polling import wait_until
from redis_support import delete_prefix, unique_prefix

from latency_oracle.features.redis.observation_store import connect
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.demo.launcher import demo_env, launched, replay_load
from latency_oracle.sim.evaluation.workloads import read_trace
from latency_oracle.sim.processes import answers, free_port

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "latency-oracle.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
PROMETHEUS = shutil.which("prometheus")
# Grafana's interval variable (scraping every second, 15s holds enough samples for rate())
# and the dashboard's own variables at "All"; ${accelerator} before $accelerator.
GRAFANA_VARIABLES = {
    "$__rate_interval": "15s",
    "$namespace": ".*",
    "${accelerator}": ".*",
    "$accelerator": ".*",
}
N = 3_600
SHIFT_AT = 2_000

pytestmark = [
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus (Debian package) not installed"),
    pytest.mark.slow,
]


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((f"{panel['title']} [{target['refId']}]", expr))
    return queries


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    """A Prometheus process; yields its API client and the config to write targets into."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs: []\n")
    process = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, timeout=10)
    try:
        assert wait_until(lambda: answers(f"{base}/-/ready"), 30), "prometheus did not become ready"
        yield client, config
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)


def scrape(client: httpx.Client, config: Path, targets: list[str], sidecars: list[str]) -> None:
    """Point Prometheus at predictors and sidecars (host:port) with the alert rules; reload."""
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {"job_name": "latency-oracle", "static_configs": [{"targets": targets}]},
                    {
                        "job_name": "latency-oracle-sidecar",
                        "metrics_path": "/sidecar/metrics",
                        "static_configs": [{"targets": sidecars}],
                    },
                ],
            }
        )
    )
    assert client.post("/-/reload").status_code == 200
    rules = client.get("/api/v1/rules").json()["data"]["groups"]
    assert {g["name"] for g in rules} >= {
        "latency-oracle-quality",
        "latency-oracle-routing",
        "latency-oracle-sidecar",
    }


def query(client: httpx.Client, expr: str) -> list[dict[str, object]]:
    answer = client.get("/api/v1/query", params={"query": expr}).json()
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


def targets_up(client: httpx.Client, count: int) -> bool:
    return len(query(client, "up == 1")) == count


def test_every_panel_query_returns_data(
    prometheus: tuple[httpx.Client, Path], tmp_path: Path, redis_url: str
) -> None:
    api, config = prometheus
    learner = OracleService(learner_settings(tmp_path / "learner"))
    prefix = unique_prefix()
    replica_settings = learner_settings(
        tmp_path / "replica", redis_url=redis_url, redis_key_prefix=prefix
    )
    try:
        with (
            launched(demo_env(Settings()), tmp_path) as demo,
            live_server(create_app(learner.settings, learner)) as learner_url,
            live_server(create_app(replica_settings)) as replica_url,
            httpx.Client(base_url=learner_url, timeout=30) as learner_client,
            httpx.Client(base_url=replica_url, timeout=30) as replica_client,
        ):
            urls = (demo.predictor, learner_url, replica_url)
            sidecars = [u.removeprefix("http://") for u in demo.sidecars.values()]
            scrape(api, config, [u.removeprefix("http://") for u in urls], sidecars)
            up = 3 + len(sidecars)
            assert wait_until(lambda: targets_up(api, up), 30), "targets not scraped"
            stats = asyncio.run(
                replay_load(demo.predictor, demo.sidecars, _burst(tmp_path), 1.0, 4.0, False)
            )
            assert stats.decisions > 0 and stats.learned > 0
            feed(replica_client, 400, SHIFT_AT, chunk=200)
            feed(learner_client, N, SHIFT_AT)
            assert learner.wait_learned(N, 120), "the learner did not catch up"

            queries = panel_queries()
            assert len(queries) >= 16
            assert route_all(learner_client) == ["place", "shed", "queue"]

            def panels_have_data() -> bool:
                route_all(learner_client)  # traffic keeps flowing while scrapes land
                return all(query(api, expr) for _, expr in queries)

            wait_until(panels_have_data, 30, 0.5)
            empty = [title for title, expr in queries if not query(api, expr)]
            assert not empty, f"panels without data: {empty}"

            # Asked while the targets are up: a stopped target's series go stale at once.
            kinds = {r["metric"]["kind"] for r in query(api, "latency_oracle_model_events_total")}
            assert "drift" in kinds
            decisions = query(api, "sum by (decision) (latency_oracle_route_decisions_total)")
            assert {r["metric"]["decision"] for r in decisions} == {"place", "shed", "queue"}
            demo_instance = demo.predictor.removeprefix("http://")
            from_engines = query(
                api,
                f'latency_oracle_observations_total{{outcome="accepted",instance="{demo_instance}"}}'
                f" > 0",
            )
            assert from_engines, "the engine-fed predictor reported no accepted observations"
    finally:
        delete_prefix(connect(redis_url, 2.0), prefix)


def _burst(folder: Path) -> list:
    """A few seconds of requests of growing prompts, routed by the demo's predictor."""
    trace = folder / "burst.jsonl"
    trace.write_text(
        "\n".join(
            json.dumps({"arrival": i * 0.05, "input_tokens": 200 + 40 * i, "output_tokens": 4})
            for i in range(60)
        )
    )
    return read_trace(trace)
