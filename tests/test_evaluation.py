"""A short evaluation end to end: sweep, chosen load, shifts, report with plots, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latency_oracle.cli import main
from latency_oracle.settings import Settings
from latency_oracle.sim.evaluation.evaluated_policies import POLICY_NAMES
from latency_oracle.sim.evaluation.load_sweep import Workload, choose_load, evaluate
from latency_oracle.sim.evaluation.report import write_report


def test_a_short_evaluation_reports_every_policy_with_plots(
    tmp_path: Path, settings: Settings
) -> None:
    workload = Workload("poisson", duration_s=60.0, seed=3)
    warm_soon = settings.model_copy(update={"min_samples": 30})
    evaluation = evaluate(workload, loads=(1.0, 3.0), settings=warm_soon, show_progress=False)
    assert [s.policy for s in evaluation.at(1.0)] == list(POLICY_NAMES)
    for summary in evaluation.sweep:
        assert 0.0 <= summary.attainment <= 1.0
        assert summary.ttft_ms[0] <= summary.ttft_ms[1] <= summary.ttft_ms[2]
        assert summary.goodput > 0.0
        assert summary.shed_rate == 0.0 or summary.policy == "latency-oracle-shed"
        # The verdict's p90 counts a shed request as never answered: never below the served p90.
        assert summary.ttft_p90_all_ms >= summary.ttft_ms[1]
        if summary.shed_rate == 0.0:
            assert summary.ttft_p90_all_ms == summary.ttft_ms[1]
    by_policy = {s.policy: s for s in evaluation.at(3.0)}
    assert by_policy["round-robin"].ttft_ms[1] > by_policy["oracle"].ttft_ms[1]
    assert by_policy["latency-oracle"].ttft_coverage is not None
    assert by_policy["round-robin"].ttft_coverage is None
    assert evaluation.chosen_load == choose_load(evaluation.sweep, (1.0, 3.0))
    assert [s.kind for s in evaluation.shifts] == ["surge", "long-prompts", "degrade"]
    assert {s.policy for s in evaluation.shift_summaries} == set(POLICY_NAMES)
    report = write_report(evaluation, tmp_path / "out").read_text()
    for heading in ("## Verdict", "## SLO attainment and goodput vs load", "## Scheduled shifts"):
        assert heading in report
    assert f"TTFT <= {evaluation.slo.ttft_ms:g} ms" in report
    assert "Seed: 0" in report and "numpy" in report and "git" in report
    for plot in ("slo_vs_load.png", "latency_over_time.png", "shifts.png"):
        assert (tmp_path / "out" / plot).read_bytes()[:4] == b"\x89PNG"
        assert f"]({plot})" in report


def test_evaluate_command_replays_a_jsonl_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "mine.jsonl"
    trace.write_text(
        "\n".join(
            json.dumps({"arrival": i * 0.2, "input_tokens": 500 + 37 * i, "output_tokens": 8})
            for i in range(150)
        )
    )
    out = tmp_path / "report"
    flags = ["--load", "1,4", "--quiet", "--no-shifts", "--out", str(out), "--seed", "7"]
    main(
        [
            "evaluate",
            "--trace",
            str(trace),
            "--policies",
            "round-robin,least-requests,oracle",
            *flags,
        ]
    )
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    text = (out / "report.md").read_text()
    assert "trace replay of `mine.jsonl`" in text and "Seed: 7" in text
    assert "| oracle |" in text and "| latency-oracle |" not in text


def test_evaluate_command_rejects_unknown_policies(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--policies", "round-robin,psychic"])
    assert "unknown policies ['psychic']" in capsys.readouterr().err
