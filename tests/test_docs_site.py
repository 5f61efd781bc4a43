"""The documentation site builds with ``mkdocs build --strict``, and says what the code says.

Strict mode (with the ``validation`` levels in ``mkdocs.yml``) fails on a page left out of
the nav, a link to a missing page or heading, and a Python name mkdocstrings cannot find;
the build also generates the OpenAPI document from the app. The settings table in
``docs/settings.md`` is checked against the settings object itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from latency_oracle.settings import settings_table

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# Not pages: the build's own Python hooks.
NOT_PAGES = {DOCS / "hooks"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # no banner about MkDocs 2
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def _nav_pages(entries: list[object]) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages += _nav_pages(value)
        else:
            pages.append(str(value))
    return pages


def test_every_page_is_in_the_nav_once() -> None:
    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = {
        str(p.relative_to(DOCS))
        for p in DOCS.rglob("*.md")
        if not any(parent in NOT_PAGES for parent in p.parents)
    }
    assert sorted(nav) == sorted(set(nav)), "a page is listed twice"
    assert set(nav) == pages


def test_the_site_builds_strict_with_the_generated_openapi_document(site: Path) -> None:
    document = json.loads((site / "openapi.json").read_text())
    for path in ("/v1/predictions", "/v1/observations", "/v1/route", "/predict/bulk/strict"):
        assert path in document["paths"], path
    api_page = (site / "api" / "index.html").read_text()
    assert "<code>/v1/route</code>" in api_page  # the operations table was generated
    assert 'href="../openapi.json"' in api_page


# The core entry points (issue 31), whatever else the reference lists.
CORE_NAMES = (
    "latency_oracle.models.registry.ModelRegistry.learn",
    "latency_oracle.models.registry.ModelRegistry.predict",
    "latency_oracle.routing.router.Router.route",
    "latency_oracle.features.engineering.build_features",
    "latency_oracle.features.engineering.RequestColumns",
    "latency_oracle.sidecar.inflight.InflightCounter",
    "latency_oracle.settings.Settings",
)


def test_the_python_api_is_read_from_the_code(site: Path) -> None:
    listed = re.findall(r"^::: (\S+)$", (DOCS / "api-reference.md").read_text(), re.M)
    reference = (site / "api-reference" / "index.html").read_text()
    for name in (*listed, *CORE_NAMES):
        assert f'id="{name}"' in reference, name
    # A method's docstring, rendered: the reference follows the code, not a copy of it.
    assert "Apply a batch of observations to every model set they concern" in reference


def test_settings_table_matches_the_settings_object() -> None:
    assert settings_table() in (DOCS / "settings.md").read_text()
    check = subprocess.run(
        [sys.executable, "-m", "latency_oracle.settings", "--check", "docs/settings.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
