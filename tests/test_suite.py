"""evaluate --suite: sweeps to the knee, one verdict per cell, words that match the signs."""

from __future__ import annotations

from pathlib import Path

import pytest

from latency_oracle.settings import Settings
from latency_oracle.sim.evaluation.load_sweep import Workload
from latency_oracle.sim.evaluation.report import change
from latency_oracle.sim.evaluation.suite import LEARNED, cell_checks, run_suite
from latency_oracle.sim.evaluation.suite_report import REPRODUCE, write_suite_report


def test_change_words_follow_the_sign() -> None:
    assert change(127.0, 100.0) == "27% higher"
    assert change(73.0, 100.0) == "27% lower"
    assert change(100.2, 100.0) == "the same"


def test_a_small_suite_sweeps_to_the_knee_and_judges_every_cell(
    tmp_path: Path, settings: Settings
) -> None:
    warm_soon = settings.model_copy(update={"min_samples": 30})
    workloads = [
        Workload("conversation", duration_s=60.0, seed=1, rate=6.0),
        Workload("bursty", duration_s=60.0, seed=2, rate=1.0),
    ]
    policies = ("least-requests", "least-kv-cache", LEARNED)
    suite = run_suite(warm_soon, policies=policies, workloads=workloads, show_progress=False)
    assert [s.workload for s in suite.sweeps] == ["conversation", "bursty"]
    for sweep in suite.sweeps:
        assert sweep.loads[0] == 2.0
        assert all((load, p) in sweep.cells for load in sweep.loads for p in policies)
        if sweep.knee is not None:  # the sweep stops at the first load under 90%
            assert sweep.loads[-1] == sweep.knee
            assert sweep.best_heuristic(sweep.knee).summary.attainment < 0.9
            assert all(sweep.best_heuristic(x).summary.attainment >= 0.9 for x in sweep.loads[:-1])
        for load in sweep.loads:
            checks = cell_checks(sweep.cells[load, LEARNED], sweep.best_heuristic(load))
            assert checks[0].what == "p90 TTFT >= 25% lower"
    assert suite.wall_s > 0 and suite.cpu_s > 0
    text = write_suite_report(suite, tmp_path).read_text()
    assert "## Verdict" in text and "## conversation" in text and "## bursty" in text
    assert REPRODUCE in text
    for sweep in suite.sweeps:
        for load in sweep.loads:
            assert f"| {sweep.workload} | {load:g}x" in text


@pytest.mark.parametrize(
    ("mine", "theirs", "ok"),
    [((70.0, 990.0), (100.0, 1000.0), True), ((80.0, 990.0), (100.0, 1000.0), False)],
)
def test_a_cell_passes_only_with_a_quarter_off_p90_ttft(
    mine: tuple[float, float], theirs: tuple[float, float], ok: bool
) -> None:
    from latency_oracle.sim.evaluation.load_sweep import Summary
    from latency_oracle.sim.evaluation.suite import Cell

    def cell(p90: float, p99: float) -> Cell:
        summary = Summary(
            "x", 2.0, 100, 0.95, 5.0, 0.0, (50.0, p90, p99), p90, (10.0, 20.0, 30.0),
            None, None, None, 1.0,
        )  # fmt: skip
        return Cell(summary, p90, 0, None)

    assert cell_checks(cell(*mine), cell(*theirs))[0].ok is ok
    assert all(c.ok for c in cell_checks(cell(*mine), cell(*theirs))[1:])
