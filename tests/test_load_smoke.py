"""A reduced ``bench/load_test.py`` from a second process: every level answers without errors.

Times are not asserted (the machine is shared); the bench prints them. The full-size run
and its figures are ``python bench/load_test.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed"),
]


def test_load_levels_answer_without_errors(tmp_path: Path) -> None:
    figures_path = tmp_path / "load.json"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load_test.py"), "--smoke", "--json", figures_path],
        check=True,
        timeout=120,
        cwd=ROOT,
    )
    figures = json.loads(figures_path.read_text())
    assert set(figures["levels"]) == {"/v1/predictions", "/predict/bulk/strict", "/v1/route"}
    for levels in figures["levels"].values():
        assert [level["errors"] for level in levels] == [0] * len(levels)
        assert all(level["requests_per_s"] > 0 for level in levels)
    assert figures["versus_trivial"]["errors"] == 0
    assert figures["knee"]["/v1/predictions"] in (1, 8)
