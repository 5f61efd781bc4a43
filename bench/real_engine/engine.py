"""One vLLM OpenAI server process, pinned to its cores, started and stopped cleanly.

vLLM's CPU engine runs three processes (API server, engine core, worker) and, on a small
machine, busy-waits for about a second after each step. So each engine is pinned, the
whole process tree, to the cores its spec names (its compute threads too, through
``VLLM_CPU_OMP_THREADS_BIND``), and the other cores stay free for the sidecars, the
predictor and the load generator. By default engines use the last core and leave core 0.

The server is the leader of its own process group: stopping it signals the group, so
its engine core and worker go with it; and it dies with the harness that started it
(``PR_SET_PDEATHSIG``), so a killed test session leaves no engine behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

START_TIMEOUT_S = 420.0
STOP_TIMEOUT_S = 20.0
_PR_SET_PDEATHSIG = 1
KV_BLOCK_TOKENS = 128  # vLLM's CPU default block size


def default_cpus() -> str:
    """The last core of those this process may use (core 0 stays for everything else)."""
    cores = sorted(os.sched_getaffinity(0))
    return str(cores[-1])


@dataclass(frozen=True)
class EngineSpec:
    """How one engine is started; ``replace`` it to restart with another setting."""

    name: str = "engine-0"
    preset: str = "tiny"  # the model (make_model.PRESETS)
    served_name: str = "tiny-llama"  # what clients and the predictor call the model
    cpus: str = field(default_factory=default_cpus)  # cores, e.g. "1" or "2-3"
    max_num_batched_tokens: int = 2048
    max_num_seqs: int = 64
    max_model_len: int = 8192
    kv_cache_gib: int = 2
    # KV-cache capacity: vLLM's CPU engine sizes its cache by memory (VLLM_CPU_KVCACHE_SPACE),
    # and 2 GiB hold ~500k tokens of the tiny model, so its KV use would never leave 0 and
    # it would never preempt. A GPU's cache fills under load; this one does too.
    kv_cache_tokens: int | None = 32_768
    extra_args: tuple[str, ...] = ()

    def with_(self, **changes: object) -> EngineSpec:
        return replace(self, **changes)  # type: ignore[arg-type]


def _pinned(cpus: set[int]) -> None:
    """In the child before exec: its own session, pinned, and dying with its parent."""
    os.sched_setaffinity(0, cpus)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def parse_cpus(cpus: str) -> set[int]:
    """'1' -> {1}; '2-3,5' -> {2, 3, 5}."""
    chosen: set[int] = set()
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    return chosen


class Engine:
    """A running vLLM server; ``start`` it, ``stop`` it (idempotent)."""

    def __init__(self, spec: EngineSpec, python: Path, model: Path, port: int, logs: Path):
        self.spec = spec
        self.python = python
        self.model = model
        self.port = port
        self.log_path = logs / f"{spec.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        s = self.spec
        return [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            *("--model", str(self.model), "--served-model-name", s.served_name),
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--dtype", "bfloat16", "--max-model-len", str(s.max_model_len)),
            *("--max-num-batched-tokens", str(s.max_num_batched_tokens)),
            *("--max-num-seqs", str(s.max_num_seqs)),
            "--enable-prefix-caching",
            "--enable-prompt-tokens-details",
            "--enable-chunked-prefill",
            *self._kv_blocks(),
            *("--uvicorn-log-level", "warning"),
            *s.extra_args,
        ]

    def _kv_blocks(self) -> list[str]:
        tokens = self.spec.kv_cache_tokens
        if tokens is None:
            return []
        blocks = -(-tokens // KV_BLOCK_TOKENS)
        return ["--block-size", str(KV_BLOCK_TOKENS), "--num-gpu-blocks-override", str(blocks)]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "VLLM_CPU_KVCACHE_SPACE": str(self.spec.kv_cache_gib),
            "VLLM_CPU_OMP_THREADS_BIND": self.spec.cpus,
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "VLLM_LOGGING_LEVEL": "WARNING",
        }

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cpus = parse_cpus(self.spec.cpus)
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                self.argv(),
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=lambda: _pinned(cpus),
            )

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until ``/health`` answers 200; raises (with the log's tail) if it dies or hangs."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited during start-up:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.spec.name} not ready in {timeout_s:.0f} s")
            time.sleep(0.5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # Stragglers of the group (engine core, worker) once the leader is gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
