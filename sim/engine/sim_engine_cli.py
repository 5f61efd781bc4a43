"""``latency-oracle sim-engine``: the simulated engine as a server (tests, demo, sidecar dev).

Kept out of ``latency_oracle/cli.py`` so that file stays a list of commands; heavy imports
happen only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> None:
    import uvicorn

    from latency_oracle.settings import Settings
    from latency_oracle.sim.engine.gpu_profiles import canonical_model, shared_data_dir
    from latency_oracle.sim.engine.openai_text import AnswerLengths
    from latency_oracle.sim.engine.records import EngineConfig
    from latency_oracle.sim.engine.scheduler import Engine
    from latency_oracle.sim.engine.server import create_sim_app
    from latency_oracle.sim.traces import read_trace

    settings = Settings()
    config = EngineConfig(max_num_batched_tokens=args.max_num_batched_tokens)
    engine = Engine.create(
        args.accelerator,
        args.model,
        tp=args.tp,
        seed=args.seed,
        config=config,
        data_dir=shared_data_dir(settings),
    )
    name = args.served_model_name or canonical_model(args.model)
    answers = None
    if args.answer_lengths is not None:
        answers = AnswerLengths(row.output_tokens for row in read_trace(args.answer_lengths))
    uvicorn.run(
        create_sim_app(
            engine,
            name,
            speed=args.speed,
            prompt_tokens_details=args.enable_prompt_tokens_details,
            answers=answers,
        ),
        host=args.host,
        port=args.port,
        log_level=settings.log_level,
        access_log=False,
    )


def add_sim_engine_command(commands: argparse._SubParsersAction) -> None:
    """Register ``sim-engine`` on the CLI's subcommands."""
    sim = commands.add_parser(
        "sim-engine",
        help="run a simulated vLLM-like engine (OpenAI API + /metrics) on measured GPU timings",
    )
    sim.add_argument("--accelerator", default="H100", help="H100, A100, A40 (measured), L4...")
    sim.add_argument("--model", default="Llama-2-7b-hf", help="Llama-2-7b-hf or Llama-2-70b-hf")
    sim.add_argument("--tp", type=int, default=1, choices=(1, 2, 4, 8), help="tensor parallel")
    sim.add_argument("--served-model-name", help="model name in the API (default: --model)")
    sim.add_argument("--host", default="127.0.0.1", help="listen address")
    sim.add_argument("--port", type=int, default=8000, help="listen port")
    sim.add_argument("--seed", type=int, default=0, help="seed of the step-time jitter")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    sim.add_argument(
        "--max-num-batched-tokens", type=int, default=2048, help="token budget of one step"
    )
    sim.add_argument(
        "--enable-prompt-tokens-details",
        action="store_true",
        help="report prefix-cache hits in usage.prompt_tokens_details (as vLLM's flag does)",
    )
    sim.add_argument(
        "--answer-lengths",
        type=Path,
        help="trace (CSV or JSONL) whose output lengths the model's answers follow, each "
        "ending in EOS unless max_tokens comes first (default: the Azure code trace)",
    )
    sim.set_defaults(handler=_run)
