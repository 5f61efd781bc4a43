"""The README's promises: its settings table is the real one, its commands are CI's."""

from __future__ import annotations

from pathlib import Path

from latency_oracle.settings import settings_table

ROOT = Path(__file__).resolve().parents[1]


def test_settings_table_matches_the_settings_object() -> None:
    assert settings_table() in (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/pytest" in readme and ci.rstrip().endswith(".venv/bin/pytest")
