"""The ``latency-oracle`` command: one entry point for every process of the product."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from importlib.metadata import version

from latency_oracle.settings import ENV_PREFIX, Settings, check_model_version
from latency_oracle.sim.demo.launcher import add_demo_command
from latency_oracle.sim.engine.sim_engine_cli import add_sim_engine_command
from latency_oracle.sim.evaluation.evaluate_cli import add_evaluate_command


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from latency_oracle.predictor.app import create_app

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    if args.model_version:
        overrides["model_versions"] = dict(args.model_version)
    settings = Settings(**overrides)
    _configure_logging(settings)
    if args.workers > 1:
        _serve_workers(settings, args.workers)
        return
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


def _serve_workers(settings: Settings, workers: int) -> None:
    """Worker processes each build the app from the environment, as replicas of one Redis.

    With the embedded store every worker would learn its own models from the share of
    observations it happened to receive, so several workers need Redis mode.
    """
    import json
    import os

    import uvicorn

    if not settings.redis_url:
        raise SystemExit("--workers > 1 needs LATENCY_ORACLE_REDIS_URL (shared models)")
    os.environ[f"{ENV_PREFIX}MODEL_VERSIONS"] = json.dumps(settings.model_versions)
    uvicorn.run(
        "latency_oracle.predictor.app:create_app",
        factory=True,
        workers=workers,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


def _train(_: argparse.Namespace) -> None:
    from latency_oracle.trainer.loop import run_until_signalled

    settings = Settings()
    _configure_logging(settings)
    run_until_signalled(settings)


def _redis_migrate(args: argparse.Namespace) -> None:
    from latency_oracle.trainer.layout_migration import MigrationRefused, migrate

    settings = Settings()
    _configure_logging(settings)
    try:
        report = migrate(settings, drop_unlearned=args.drop_unlearned, delete_old=args.delete_old)
    except MigrationRefused as exc:
        raise SystemExit(f"latency-oracle redis-migrate: {exc}") from None
    print(
        f"checkpoints moved to {len(report.shards)} shard(s) {report.shards}, already there: "
        f"{report.skipped}; pins moved: {report.pins}; layout-1 keys deleted: {report.deleted}"
    )


def _sidecar(args: argparse.Namespace) -> None:
    from latency_oracle.sidecar.app import serve_sidecar

    flags = {"engine_url": args.engine_url, "sidecar_host": args.host, "sidecar_port": args.port}
    settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    _configure_logging(settings)
    serve_sidecar(settings)


def _review(args: argparse.Namespace) -> None:
    from latency_oracle.review import open_ui, review

    settings = Settings()
    raise SystemExit(open_ui(settings, args.port) if args.ui else review(settings))


def _model_version(text: str) -> tuple[str, int]:
    """``H100/ttft=3`` -> ("H100/ttft", 3), or an argparse error naming the flag."""
    label, _, number = text.partition("=")
    try:
        version = int(number)
        check_model_version(label, version)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc
    return label, version


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latency-oracle", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version('latency-oracle')}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the prediction API (embedded store)")
    serve.add_argument("--host", help="listen address (LATENCY_ORACLE_HOST)")
    serve.add_argument("--port", type=int, help="listen port (LATENCY_ORACLE_PORT)")
    serve.add_argument(
        "--model-version",
        action="append",
        type=_model_version,
        metavar="ACCELERATOR/TARGET=N",
        help="serve this registered MLflow version of a model key (repeatable; rollback)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes; more than one needs Redis mode (shared models)",
    )
    serve.set_defaults(handler=_serve)
    train = commands.add_parser(
        "train", help="run a trainer worker on the Redis streams (LATENCY_ORACLE_REDIS_URL)"
    )
    train.set_defaults(handler=_train)
    migrate = commands.add_parser(
        "redis-migrate",
        help="move a Redis deployment's keys from layout 1 to layout 2 (Redis Cluster "
        "support; docs/redis-cluster.md), as the admin user, old trainers stopped",
    )
    migrate.add_argument(
        "--drop-unlearned",
        action="store_true",
        help="leave observations layout-1 trainers have not learned behind",
    )
    migrate.add_argument(
        "--delete-old", action="store_true", help="delete every layout-1 key once moved"
    )
    migrate.set_defaults(handler=_redis_migrate)
    review = commands.add_parser(
        "review", help="model versions, loss, coverage and drifts per key, from MLflow"
    )
    review.add_argument("--ui", action="store_true", help="open the MLflow UI on the same store")
    review.add_argument("--port", type=int, default=5000, help="port of the MLflow UI")
    review.set_defaults(handler=_review)
    sidecar = commands.add_parser(
        "sidecar", help="run the measuring proxy and metrics scraper beside an engine"
    )
    sidecar.add_argument("--engine-url", help="engine base URL (LATENCY_ORACLE_ENGINE_URL)")
    sidecar.add_argument("--host", help="listen address (LATENCY_ORACLE_SIDECAR_HOST)")
    sidecar.add_argument("--port", type=int, help="listen port (LATENCY_ORACLE_SIDECAR_PORT)")
    sidecar.set_defaults(handler=_sidecar)
    add_sim_engine_command(commands)
    add_evaluate_command(commands)
    add_demo_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except FileNotFoundError as exc:  # a missing input is the user's to fix: say which
        hint = "reference data is read from LATENCY_ORACLE_SHARED_DATA_DIR when it is set"
        raise SystemExit(f"latency-oracle {args.command}: {exc}; {hint}") from None


if __name__ == "__main__":
    main()
