"""A reduced ``bench/soak.py``: predictor and trainer memory stays flat after warm-up.

20,000 observations over 4 accelerator types and 500 pods through the Redis path, with
model windows small enough to fill during warm-up; the full million is the bench's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Room for allocator slack and the model sync's decode buffers (about 10 MiB measured);
# a leak of 2 KiB per observation would show as 32 MiB here.
MAX_GROWTH_MIB = 25

pytestmark = pytest.mark.slow


def test_memory_is_flat_after_warmup(tmp_path: Path, redis_url: str) -> None:
    figures_path = tmp_path / "soak.json"
    subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "soak.py"), "--observations", "20000"),
            *("--accelerators", "4", "--small-windows", "--json", str(figures_path)),
            # The batch-refit trees' reservoirs and refit cadence settle over the first
            # ~10,000 observations of 8 keys: growth is measured over the second half.
            *("--warmup-fraction", "0.5"),
            *("--redis-url", redis_url),
        ],
        check=True,
        timeout=180,
        cwd=ROOT,
    )
    figures = json.loads(figures_path.read_text())
    assert figures["observations"] == 20_000
    for role in ("predictor", "trainer"):
        rss = figures[f"{role}_rss_mb"]
        assert rss["end"] - rss["after_warmup"] < MAX_GROWTH_MIB, (role, figures["samples"])
