"""Refresh ``tests/fixtures/vllm_metrics.txt``: a real vLLM's ``/metrics`` after some traffic.

    .venv/bin/python bench/real_engine/capture_metrics.py [--engine-url URL]

Without ``--engine-url`` it starts the harness's tiny engine, sends a few requests (two
sharing a prefix, so the prefix-cache counters move) and captures the exposition while
one more request is still running (so the running gauge and KV use are not zero). The
sidecar's parser may read only names found in this capture or the older fixtures, and
the simulated engine may export only those (``tests/test_sidecar_metrics_parser.py``).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from real_engine.engine import EngineSpec
from real_engine.fleet import Fleet
from real_engine.install import VLLM_PIN

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "vllm_metrics.txt"
PREFIX = "def shared_prefix(): return " * 40


def capture(engine_url: str, model: str) -> str:
    """The engine's exposition while one long request runs, after a few finished ones."""
    with httpx.Client(base_url=engine_url, timeout=120) as client:
        for tail in ("first", "second", "third"):
            body = {"model": model, "prompt": PREFIX + tail, "max_tokens": 8}
            client.post("/v1/completions", json=body).raise_for_status()
        body = {"model": model, "prompt": PREFIX + "long", "max_tokens": 400, "min_tokens": 400}
        running = threading.Thread(
            target=client.post, args=("/v1/completions",), kwargs={"json": body}
        )
        running.start()
        deadline = time.monotonic() + 60
        text = client.get("/metrics").text
        while "vllm:num_requests_running{" not in text or _running(text) < 1:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
            text = client.get("/metrics").text
        running.join()
    return text


def _running(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("vllm:num_requests_running{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def header() -> str:
    return (
        f"# A real vLLM V1 /metrics exposition ({VLLM_PIN}, CPU build, the harness's tiny\n"
        "# model), captured by bench/real_engine/capture_metrics.py while one request ran.\n"
        "# The sidecar's parser must read only names found here or in vllm_metrics_older.txt.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-url", help="capture this engine instead of starting one")
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args()
    if args.engine_url:
        text = capture(args.engine_url, args.model)
    else:
        with Fleet([EngineSpec(name="capture")]) as fleet:
            text = capture(fleet.pods["capture"].engine.url, args.model)
    args.out.write_text(header() + text)
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")


if __name__ == "__main__":
    main()
