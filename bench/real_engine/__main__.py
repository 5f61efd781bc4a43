"""``python bench/real_engine up``: real vLLM engines (and sidecars) until Ctrl-C.

    .venv/bin/python bench/real_engine up                       # one tiny engine
    .venv/bin/python bench/real_engine up --engine name=a --engine name=b,preset=large \\
        --sidecars                                               # two pods, sidecars, predictor
    .venv/bin/python bench/real_engine install                  # venv and models only

``--engine`` takes ``key=value`` pairs of ``EngineSpec`` (name, preset, served_name,
cpus, max_num_batched_tokens, max_num_seqs, max_model_len, kv_cache_gib,
kv_cache_tokens) plus ``accelerator`` (the pod's label for the predictor, default CPU).
Engines of different speeds: other cores (``cpus=2-3``), another model (``preset=large``,
served as ``small-llama``), a smaller batch (``max_num_batched_tokens=256``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from dataclasses import fields
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/real_engine`: import as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from real_engine.engine import EngineSpec
from real_engine.fleet import Fleet
from real_engine.install import ensure_model, ensure_venv

_INTS = {f.name for f in fields(EngineSpec) if str(f.type).startswith("int")}


def parse_engine(text: str, index: int) -> tuple[EngineSpec, str]:
    """``name=a,preset=large,cpus=1`` -> (spec, accelerator label)."""
    values: dict[str, object] = {"name": f"engine-{index}"}
    accelerator = "CPU"
    for pair in filter(None, text.split(",")):
        key, _, value = pair.partition("=")
        if key == "accelerator":
            accelerator = value
        elif key in _INTS:
            values[key] = int(value)
        elif key in {f.name for f in fields(EngineSpec)}:
            values[key] = value
        else:
            raise SystemExit(f"--engine: unknown key {key!r}")
    if values.get("preset") == "large" and "served_name" not in values:
        values["served_name"] = "small-llama"
    return EngineSpec(**values), accelerator  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start engines and print where they listen")
    up.add_argument("--engine", action="append", default=[], help="key=value,... (repeat)")
    up.add_argument("--sidecars", action="store_true", help="a sidecar per engine")
    up.add_argument("--predictor-url", help="sidecars deliver here (default: start one)")
    install = sub.add_parser("install", help="install the engine venv and make the models")
    install.add_argument("--preset", action="append", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "install":
        print(ensure_venv())
        for preset in args.preset or ["tiny"]:
            print(ensure_model(preset))
        return
    parsed = [parse_engine(text, i) for i, text in enumerate(args.engine or [""])]
    specs = [spec for spec, _ in parsed]
    labels = {spec.name: label for spec, label in parsed}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Fleet(
        specs,
        accelerators=labels,
        predictor_url=args.predictor_url,
        embedded_predictor=args.sidecars and not args.predictor_url,
    ) as fleet:
        for line in fleet.describe():
            print(line, flush=True)
        print("serving; Ctrl-C stops every engine", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
