"""The suite's verdict as Markdown: one table of workload x load, then each workload's runs.

Every comparison is the service's routing against the best heuristic of its cell, in
words that match the signs ("higher" when it is higher), and every target says met or
NOT met per cell, so a reader sees where it stands rather than a headline.
"""

from __future__ import annotations

import math
from pathlib import Path

from latency_oracle.sim.evaluation.cluster import DEFAULT_ACCELERATORS
from latency_oracle.sim.evaluation.load_sweep import Summary
from latency_oracle.sim.evaluation.report import change
from latency_oracle.sim.evaluation.suite import (
    EARLY_S,
    LEARNED,
    SAME,
    TTFT_CUT_TARGET,
    Cell,
    Suite,
    WorkloadSweep,
    cell_checks,
)

REPRODUCE = "latency-oracle evaluate --suite --out docs/evaluation"


def write_suite_report(suite: Suite, out: Path) -> Path:
    """Write ``report.md`` under ``out``; its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.md"
    path.write_text(render_suite(suite))
    return path


def render_suite(suite: Suite) -> str:
    load1, load5, load15 = suite.load_average
    lines = [
        "# Cluster evaluation: the service's routing vs heuristics over four workloads",
        "",
        f"- Cluster: six simulated vLLM pods ({', '.join(DEFAULT_ACCELERATORS)}), "
        "Llama-2-7B, step costs from measured GPU profiles (`sim/engine/scheduler.py`).",
        "- What every policy sees (`sim/evaluation/pod_view.py`), heuristics and Latency Oracle "
        "alike: each pod's vLLM `/metrics` scraped every 0.2 s (requests running and waiting, "
        "KV-cache use, prefix-cache counters), its sidecar's counts of in-flight prompt and "
        "decode tokens, its own placements since the scrape, and prefix-cache hits estimated from"
        " an index of the prompt blocks it routed to each pod (an LRU of the pod's cache size). "
        "No engine internals.",
        "- Requests as clients send them (`sim/client_caps.py`): each carries its client's "
        "`max_tokens`, fixed per client or session (no cap for 35% of clients, else 256, "
        "512, 1,024, 2,048 or 4,096), and ends at its true length (the model's EOS, from the "
        "workload's data) or at the cap, whichever comes first. No policy sees the true "
        "length: Latency Oracle routes on the cap and a learned output-length distribution "
        "(`models/output_length.py`), and learns from the cap each request was sent with. "
        "Reports before this setup gave every request a cap equal to its true length and "
        "let Latency Oracle route and learn on it, which no production router can.",
        "- SLOs per workload, from its data: 5x the unloaded TTFT and decode step of the "
        "median prompt on the slowest pod. Attainment = share of requests meeting both; "
        "goodput = such requests per second.",
        f"- Loads: from 2x in 0.5x steps up to the knee, the first load where the best "
        "heuristic's attainment is under 90%. Latency Oracle starts cold in every run "
        f"(nothing learned); 'first 5 min' is the p90 TTFT of requests arriving in the first "
        f"{EARLY_S:.0f} simulated seconds.",
        "- Best heuristic of a cell: the one with the highest attainment (then lowest p90 "
        "TTFT) among round-robin, least-requests, least-kv-cache, prefix-affinity.",
        "- Latency Oracle routes as the service does: the default policy (`slo-attainment`), "
        "shedding a request no pod is predicted to serve within its SLOs. A shed request "
        "counts as a miss in attainment and goodput and as never answered in the p90 TTFT "
        "of the verdict; the other latencies are over the requests served.",
        f"- Targets per cell: p90 TTFT at least {TTFT_CUT_TARGET:.0%} lower; attainment, "
        f"goodput, TPOT p90, TTFT p99 and first-5-min p90 TTFT no worse (within {SAME:.0%}).",
        f"- Seed {suite.seed}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in suite.versions.items())
        + ".",
        f"- Cost of this run: {suite.wall_s / 60:.1f} min wall, {suite.cpu_s / 60:.1f} min "
        f"CPU, one process; load average at the end {load1:.1f} / {load5:.1f} / "
        f"{load15:.1f} (1/5/15 min) on a shared machine.",
        f"- Reproduce: `{REPRODUCE}`.",
        "",
    ]
    lines += _verdict(suite)
    for sweep in suite.sweeps:
        lines += _workload_section(sweep, suite.policies)
    return "\n".join(lines) + "\n"


def _verdict(suite: Suite) -> list[str]:
    judged = [
        (sweep, load) for sweep in suite.sweeps for load in sweep.loads if LEARNED in suite.policies
    ]
    if not judged:
        return ["## Verdict", "", "Not judged: latency-oracle did not run.", ""]
    met = sum(all(c.ok for c in _checks(s, x)) for s, x in judged)
    cuts = [_cut(s.cells[x, LEARNED].summary, s.best_heuristic(x).summary) for s, x in judged]
    lines = [
        "## Verdict",
        "",
        f"Every target met in {met} of {len(judged)} cells. p90 TTFT against the best "
        f"heuristic: {_cut_words(min(cuts))} at worst, {_cut_words(max(cuts))} at best "
        f"(the target: {TTFT_CUT_TARGET:.0%} lower; the project's earlier claim: 40% lower).",
        "",
        "Each value is latency-oracle / the best heuristic of the cell.",
        "",
        "| workload | load | best heuristic | attainment | goodput (req/s) | shed "
        "| TTFT p50 (ms) | TTFT p90 (ms) | TTFT p99 (ms) | TPOT p90 (ms) "
        "| first 5 min p90 TTFT (ms) | targets missed |",
        "|" + "---|" * 12,
    ]
    for sweep, load in judged:
        mine, best = sweep.cells[load, LEARNED], sweep.best_heuristic(load)
        m, b = mine.summary, best.summary
        missed = [c.what for c in _checks(sweep, load) if not c.ok]
        lines.append(
            f"| {sweep.workload} | {load:g}x{' (knee)' if load == sweep.knee else ''} "
            f"| {b.policy} | {m.attainment:.1%} / {b.attainment:.1%} "
            f"| {m.goodput:.2f} / {b.goodput:.2f} | {m.shed_rate:.1%} "
            f"| {m.ttft_ms[0]:.0f} / {b.ttft_ms[0]:.0f} "
            f"| {_p90(m)} / {_p90(b)} ({change(m.ttft_p90_all_ms, b.ttft_p90_all_ms)}) "
            f"| {m.ttft_ms[2]:.0f} / {b.ttft_ms[2]:.0f} ({change(m.ttft_ms[2], b.ttft_ms[2])}) "
            f"| {m.tpot_ms[1]:.1f} / {b.tpot_ms[1]:.1f} "
            f"| {mine.early_ttft_p90_ms:.0f} / {best.early_ttft_p90_ms:.0f} "
            f"| {', '.join(missed) if missed else 'none'} |"
        )
    unreached = [s.workload for s in suite.sweeps if s.knee is None]
    if unreached:
        lines += [
            "",
            f"Knee not reached within the sweep for: {', '.join(unreached)} (the best "
            "heuristic kept at least 90% attainment at every load run).",
        ]
    return [*lines, ""]


def _cut(mine: Summary, theirs: Summary) -> float:
    """How much lower (negative: higher) the p90 TTFT counting sheds is than theirs."""
    ratio = mine.ttft_p90_all_ms / theirs.ttft_p90_all_ms
    return 1 - ratio if math.isfinite(ratio) else -math.inf


def _p90(summary: Summary) -> str:
    """p90 TTFT counting sheds as never answered ("inf" once they reach the p90)."""
    value = summary.ttft_p90_all_ms
    return f"{value:.0f}" if math.isfinite(value) else "inf"


def _checks(sweep: WorkloadSweep, load: float):
    return cell_checks(sweep.cells[load, LEARNED], sweep.best_heuristic(load))


def _cut_words(cut: float) -> str:
    if not math.isfinite(cut):
        return "unbounded (sheds reach its p90)"
    return f"{abs(cut):.0%} {'lower' if cut >= 0 else 'higher'}"


def _workload_section(sweep: WorkloadSweep, policies: list[str]) -> list[str]:
    knee = f"{sweep.knee:g}x" if sweep.knee is not None else "not reached"
    lines = [
        f"## {sweep.workload}",
        "",
        f"{sweep.description}. SLOs: TTFT <= {sweep.slo.ttft_ms:g} ms, TPOT <= "
        f"{sweep.slo.tpot_ms:g} ms. Knee: {knee}.",
        "",
        "| load | policy | attainment | goodput (req/s) | shed | TTFT p50 / p90 / p99 (ms) "
        "| TPOT p90 (ms) | first 5 min p90 TTFT (ms) | heuristic placements | learned from "
        "| wall (s) |",
        "|" + "---|" * 11,
    ]
    for load in sweep.loads:
        for policy in policies:
            cell = sweep.cells.get((load, policy))
            if cell is not None:
                lines.append(_row(load, policy, cell))
    return [*lines, ""]


def _row(load: float, policy: str, cell: Cell) -> str:
    s = cell.summary
    learned = "" if cell.warm_after_s is None else f"{cell.warm_after_s:.0f} s"
    cold = str(cell.cold_decisions) if policy == LEARNED else ""
    return (
        f"| {load:g}x | {policy} | {s.attainment:.1%} | {s.goodput:.2f} | {s.shed_rate:.1%} "
        f"| {s.ttft_ms[0]:.0f} / {s.ttft_ms[1]:.0f} / {s.ttft_ms[2]:.0f} | {s.tpot_ms[1]:.1f} "
        f"| {cell.early_ttft_p90_ms:.0f} | {cold} | {learned} | {s.wall_s:.1f} |"
    )
