"""The documentation says what the code says: the settings table is generated from the object."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from latency_oracle.settings import settings_table

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_settings_table_matches_the_settings_object() -> None:
    assert settings_table() in (DOCS / "settings.md").read_text()
    check = subprocess.run(
        [sys.executable, "-m", "latency_oracle.settings", "--check", "docs/settings.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
