"""``latency-oracle evaluate``: the cluster evaluation from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from sim.evaluation import DEFAULT_LOADS, DEFAULT_SLO_SCALE
from sim.policies import POLICY_NAMES
from sim.workloads import WORKLOADS


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers like 1,2,3") from exc
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: loads must be > 0")
    return values


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown policies {unknown}; choose from {', '.join(POLICY_NAMES)}"
        )
    return names


def _run(args: argparse.Namespace) -> None:
    from latency_oracle.settings import Settings
    from sim.evaluation import Workload, evaluate
    from sim.report import write_report
    from sim.workloads import azure_trace

    settings = Settings(mlflow_enabled=False)
    trace = args.trace
    if trace is None and args.workload == "azure":
        trace = azure_trace(settings)
    workload = Workload(args.workload, trace, args.duration, args.seed)
    evaluation = evaluate(
        workload,
        args.load,
        args.policies,
        seed=args.seed,
        settings=settings,
        slo_scale=args.slo_scale,
        with_shifts=not args.no_shifts,
        show_progress=not args.quiet,
    )
    path = write_report(evaluation, args.out)
    print(f"report: {path}")


def add_evaluate_command(commands: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` on the CLI's subcommands."""
    evaluate = commands.add_parser(
        "evaluate",
        help="replay a trace through routing policies on simulated pods; Markdown + PNG report",
    )
    evaluate.add_argument(
        "--load",
        type=_floats,
        default=list(DEFAULT_LOADS),
        help="comma-separated load factors (time compression of the arrivals)",
    )
    evaluate.add_argument(
        "--policies", type=_names, default=list(POLICY_NAMES), help="comma-separated policies"
    )
    evaluate.add_argument(
        "--workload", choices=WORKLOADS, default="azure", help="azure trace or a synthetic one"
    )
    evaluate.add_argument(
        "--trace", type=Path, help="trace file to replay (CSV or JSONL); overrides --workload"
    )
    evaluate.add_argument(
        "--duration", type=float, default=3600.0, help="seconds of a synthetic workload"
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of jitter, ties, synthetic")
    evaluate.add_argument(
        "--slo-scale",
        type=float,
        default=DEFAULT_SLO_SCALE,
        help="SLOs = this x the unloaded latency of the median prompt on the slowest pod",
    )
    evaluate.add_argument("--no-shifts", action="store_true", help="skip the shift scenario")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument(
        "--out", type=Path, default=Path("evaluation-report"), help="report folder"
    )
    evaluate.set_defaults(handler=_run)
