"""``latency-oracle evaluate``: the cluster evaluation from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from latency_oracle.sim.evaluation.workloads import WORKLOADS

# Registering the command stays light (the evaluation and its policies are imported when it
# runs): the CLI builds every subcommand's parser, and the sidecar's process must not load
# the learners. Flags left unset take the evaluation's own defaults.


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers like 1,2,3") from exc
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: loads must be > 0")
    return values


def _names(text: str) -> list[str]:
    from latency_oracle.sim.evaluation.evaluated_policies import POLICY_NAMES

    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown policies {unknown}; choose from {', '.join(POLICY_NAMES)}"
        )
    return names


def _run(args: argparse.Namespace) -> None:
    from latency_oracle.settings import Settings
    from latency_oracle.sim.evaluation.evaluated_policies import POLICY_NAMES
    from latency_oracle.sim.evaluation.load_sweep import (
        DEFAULT_LOADS,
        DEFAULT_SLO_SCALE,
        Workload,
        evaluate,
    )
    from latency_oracle.sim.evaluation.report import write_report
    from latency_oracle.sim.traces import azure_trace

    settings = Settings(mlflow_enabled=False)
    if args.suite:
        _run_suite(args, settings)
        return
    policies = args.policies or list(POLICY_NAMES)
    trace = args.trace
    if trace is None and args.workload == "azure":
        trace = azure_trace(settings)
    workload = Workload(args.workload, trace, args.duration, args.seed)
    evaluation = evaluate(
        workload,
        args.load or DEFAULT_LOADS,
        policies,
        seed=args.seed,
        settings=settings,
        slo_scale=DEFAULT_SLO_SCALE if args.slo_scale is None else args.slo_scale,
        with_shifts=not args.no_shifts,
        show_progress=not args.quiet,
    )
    path = write_report(evaluation, args.out)
    print(f"report: {path}")


def _run_suite(args: argparse.Namespace, settings: object) -> None:
    from latency_oracle.sim.evaluation.suite import SUITE_POLICIES, run_suite
    from latency_oracle.sim.evaluation.suite_report import write_suite_report

    suite = run_suite(
        settings,  # type: ignore[arg-type]
        seed=args.seed,
        policies=args.policies or SUITE_POLICIES,
        show_progress=not args.quiet,
    )
    path = write_suite_report(suite, args.out)
    print(f"report: {path} ({suite.wall_s / 60:.1f} min)")


def add_evaluate_command(commands: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` on the CLI's subcommands."""
    evaluate = commands.add_parser(
        "evaluate",
        help="replay a trace through routing policies on simulated pods; Markdown + PNG report",
    )
    evaluate.add_argument(
        "--load",
        type=_floats,
        help="comma-separated load factors (time compression of the arrivals; default "
        "1,1.5,2,2.5,3,3.5)",
    )
    evaluate.add_argument("--policies", type=_names, help="comma-separated policies (default: all)")
    evaluate.add_argument(
        "--workload", choices=WORKLOADS, default="azure", help="azure trace or a synthetic one"
    )
    evaluate.add_argument(
        "--trace", type=Path, help="trace file to replay (CSV or JSONL); overrides --workload"
    )
    evaluate.add_argument(
        "--duration",
        type=float,
        default=3600.0,
        help="seconds of a synthetic workload, or of a trace from its start",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of jitter, ties, synthetic")
    evaluate.add_argument(
        "--slo-scale",
        type=float,
        help="SLOs = this x the unloaded latency of the median prompt on the slowest pod "
        "(default 5)",
    )
    evaluate.add_argument(
        "--suite",
        action="store_true",
        help="the verdict over four workloads (Azure code trace, decode-heavy conversation, "
        "arXiv summarization, bursty), each swept from 2x to its knee; --load, --workload, "
        "--trace, --duration and --slo-scale do not apply",
    )
    evaluate.add_argument("--no-shifts", action="store_true", help="skip the shift scenario")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument(
        "--out", type=Path, default=Path("evaluation-report"), help="report folder"
    )
    evaluate.set_defaults(handler=_run)
