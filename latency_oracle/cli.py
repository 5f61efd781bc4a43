"""The ``latency-oracle`` command: one entry point for every process of the product."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from latency_oracle.settings import Settings


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from predictor.app import create_app

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = Settings(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latency-oracle", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the prediction API (embedded store)")
    serve.add_argument("--host", help="listen address (LATENCY_ORACLE_HOST)")
    serve.add_argument("--port", type=int, help="listen port (LATENCY_ORACLE_PORT)")
    serve.set_defaults(handler=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
