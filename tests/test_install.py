"""The built wheel stands alone, and installs and serves without a C compiler.

Each test builds a wheel from the sources, installs it in a fresh venv and runs the
product from an empty folder (``tests/install_support.py``): the reference data, the
licence and the compiled loops must come from the wheel, or their fallbacks must.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from install_support import FreshVenv, build_wheel, wheel_files
from polling import wait_until

from latency_oracle.features.native import COMPILED, FALLBACK
from latency_oracle.sim.processes import free_port

pytestmark = pytest.mark.slow
LOOPS = ("feature_rows", "forest_walk")
PREDICTION = {"accelerator": "H100", "input_tokens": 1_200, "running_requests": 3}


@contextmanager
def serving(venv: FreshVenv, log: Path) -> Iterator[str]:
    """``latency-oracle serve`` from the venv, until it is ready; stopped on exit."""
    port = free_port()
    process = venv.start("serve", "--port", str(port), log=log)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_until(ready, 90, every_s=0.2), log.read_text()
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_without_a_c_compiler_it_installs_and_serves_on_the_numpy_fallback(
    tmp_path: Path,
) -> None:
    wheel = build_wheel(tmp_path / "build", compiler=False)
    assert not [name for name in wheel_files(wheel) if name.endswith(".so")]
    venv = FreshVenv.with_wheel(tmp_path / "venv", wheel)
    log = tmp_path / "serve.log"
    with serving(venv, log) as base:
        ready = httpx.get(f"{base}/readyz").json()
        prediction = httpx.post(f"{base}/v1/predictions", json=PREDICTION)
    assert ready["status"] == "ready"  # slower, not broken
    assert ready["compute"] == dict.fromkeys(LOOPS, FALLBACK)
    assert prediction.status_code == 200, prediction.text
    assert "using the numpy fallback" in log.read_text()  # said at start-up


def test_the_wheel_alone_serves_and_runs_the_demo_on_learned_predictions(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "build", compiler=True)
    files = wheel_files(wheel)
    assert {"latency_oracle/features/_feature_rows", "latency_oracle/models/_forest_walk"} <= {
        name.split(".", 1)[0] for name in files if name.endswith(".so")
    }
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in files)
    assert any(name.startswith("latency_oracle/sim/data/traces/") for name in files)
    venv = FreshVenv.with_wheel(tmp_path / "venv", wheel)
    where = venv.run_python("import latency_oracle.sim as s; print(s.__file__)")
    assert Path(where).is_relative_to(venv.root)  # the wheel's, not the checkout's
    assert not (venv.work.parent / "shared").exists()
    version = subprocess.run(
        [str(venv.cli), "--version"], capture_output=True, text=True, check=True, env=venv.env()
    )
    assert version.stdout.startswith("latency-oracle ")
    with serving(venv, tmp_path / "serve.log") as base:
        assert httpx.get(f"{base}/readyz").json()["compute"] == dict.fromkeys(LOOPS, COMPILED)
    demo = subprocess.run(
        [str(venv.cli), "demo", "--duration", "45", "--quiet"],
        cwd=venv.work,
        env=venv.env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    took_over = re.search(r"learned predictions took over: ([\d.]+) s into the demo", demo.stdout)
    assert took_over, demo.stdout  # not "never": routing ran on learned predictions
    assert re.search(r"decisions [1-9]\d* ", demo.stdout), demo.stdout
