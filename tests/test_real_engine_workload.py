"""A short live run on the real engine (``bench/real_engine/live.py`` in small): sane behaviour.

The full run and its accuracy figures are a documented command (docs/real-engine.md);
here the same code path runs briefly on the session's engine, drift included, and the
recording it writes must hold what it promises: every request measured, observed by the
sidecar, predicted by both doors before it was sent, answers ending before their caps,
and the scoring table computed. Accuracy bars are not asserted here.

This module restarts the session's engine (the drift) and stops it at the end: it runs
after the other real-engine modules (pytest orders files by name).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from real_engine import live, recording, score
from real_engine.engine import EngineSpec
from real_engine_support import MODEL, POD

pytestmark = pytest.mark.slow

PHASES = [live.Phase("light", 8, 1.0), live.Phase("busy", 8, 3.0)]


def test_a_short_live_run_records_predicts_and_scores(real_engine: object, tmp_path: Path) -> None:
    engine = EngineSpec(name=POD, served_name=MODEL)
    plan = live.Plan(engine, engine.with_(max_num_batched_tokens=512, max_num_seqs=16), PHASES)
    path = live.run(plan, tmp_path / "short.csv.gz", fleet=real_engine)  # type: ignore[arg-type]
    try:
        c = recording.read(path)
        n = len(c["request"])
        assert n >= 10
        assert set(c["drift"]) == {0.0, 1.0}
        ok = np.isfinite(c["ttft_ms"])
        assert ok.mean() >= 0.95  # every request answered (a few may be cut by the restart)
        assert np.isfinite(c["sc_ttft_ms"][ok]).mean() >= 0.9  # and observed by the sidecar
        # Before each request both doors answered with a finite p90.
        for column in ("route_ttft_p90", "route_tpot_p90", "llmd_ttft_p90", "llmd_tpot_p90"):
            missing = np.flatnonzero(~np.isfinite(c[column]))
            when = [(c["drift"][i], c["arrival_s"][i]) for i in missing]
            assert missing.size == 0, (column, when)
        # The sidecar's count matches the engine's (prompt tokens exactly, output too).
        seen = ok & np.isfinite(c["sc_input_tokens"])
        assert (c["sc_input_tokens"][seen] == c["prompt_tokens"][seen]).all()
        assert (c["sc_output_tokens"][seen] == c["output_tokens"][seen]).all()
        # Answers end on their own: EOS before the cap for most of them.
        assert (c["finish_reason"][ok] == "stop").mean() > 0.5
        rec = recording.load(path)
        assert len(rec) == int(seen.sum())
        rows = score.table(rec, warmup=0, first_after=5)
        assert rows[0].startswith("| target |") and len(rows) > 2
    finally:
        real_engine.close()  # type: ignore[attr-defined]
