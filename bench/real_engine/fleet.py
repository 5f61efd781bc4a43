"""N real engines, each optionally behind its own sidecar, with a predictor beside them.

``Fleet`` is a context manager: on entry it installs what is missing (the engine venv,
the models), starts every engine (all at once: each takes 35-70 s to load), waits until
they serve, then starts a sidecar in front of each, delivering to the predictor. On exit,
also on an exception or Ctrl-C, it stops everything it started. ``restart`` brings one
engine back with another spec on the same port, behind the same sidecar: a drift the
sidecar and the predictor are not told about, as in production.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from latency_oracle.sim.processes import cli_argv, free_port, running_process
from real_engine.engine import Engine, EngineSpec
from real_engine.install import ensure_model, ensure_venv, home

log = logging.getLogger(__name__)

SIDECAR_START_TIMEOUT_S = 60.0


@dataclass
class Pod:
    """One engine and, when the fleet runs sidecars, the sidecar in front of it."""

    spec: EngineSpec
    engine: Engine
    accelerator: str
    sidecar_url: str | None = None

    @property
    def url(self) -> str:
        """Where clients send requests: the sidecar when there is one, else the engine."""
        return self.sidecar_url or self.engine.url


class Fleet:
    def __init__(
        self,
        specs: list[EngineSpec],
        *,
        accelerators: dict[str, str] | None = None,
        predictor_url: str | None = None,
        embedded_predictor: bool = False,
        scrape_interval_s: float = 0.1,
        root: Path | None = None,
    ) -> None:
        """``predictor_url`` or ``embedded_predictor`` gives each engine a sidecar;
        ``accelerators`` labels pods by engine name (default ``CPU``)."""
        self.specs = specs
        self.accelerators = accelerators or {}
        self.predictor_url = predictor_url
        self.embedded_predictor = embedded_predictor
        self.scrape_interval_s = scrape_interval_s
        self.root = root or home()
        self.pods: dict[str, Pod] = {}
        self._stack = ExitStack()

    @property
    def sidecars(self) -> bool:
        return self.predictor_url is not None or self.embedded_predictor

    def __enter__(self) -> Fleet:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        python = ensure_venv(self.root)
        models = {s.preset: ensure_model(s.preset, root=self.root) for s in self.specs}
        logs = self.root / "logs"
        if self.embedded_predictor:
            self.predictor_url = self._start_predictor(logs)
        for spec in self.specs:
            engine = Engine(spec, python, models[spec.preset], free_port(), logs)
            self._stack.callback(engine.stop)
            engine.start()
            self.pods[spec.name] = Pod(spec, engine, self.accelerators.get(spec.name, "CPU"))
        for pod in self.pods.values():
            pod.engine.wait_ready()
            log.info("%s serves at %s (%s)", pod.spec.name, pod.engine.url, pod.spec)
        if self.sidecars:
            self.add_sidecars(str(self.predictor_url))

    def add_sidecars(self, predictor_url: str) -> None:
        """A sidecar before each engine that has none, delivering to ``predictor_url``."""
        self.predictor_url = predictor_url
        for pod in self.pods.values():
            if pod.sidecar_url is None:
                pod.sidecar_url = self._start_sidecar(pod)

    def close(self) -> None:
        """Stop everything now (as leaving the ``with`` block does; idempotent)."""
        self._stack.close()

    def _start_predictor(self, logs: Path) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            "LATENCY_ORACLE_STATE_DIR": str(logs / f"predictor-state-{port}"),
            "LATENCY_ORACLE_MLFLOW_ENABLED": "false",
            "LATENCY_ORACLE_LOG_LEVEL": "warning",
        }
        self._stack.enter_context(
            running_process(cli_argv("serve", "--port", str(port)), env, f"{url}/healthz")
        )
        return url

    def _start_sidecar(self, pod: Pod) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            "LATENCY_ORACLE_PREDICTOR_URL": str(self.predictor_url),
            "LATENCY_ORACLE_ACCELERATOR": pod.accelerator,
            "LATENCY_ORACLE_POD_NAME": pod.spec.name,
            "LATENCY_ORACLE_SCRAPE_INTERVAL_S": str(self.scrape_interval_s),
            "LATENCY_ORACLE_LOG_LEVEL": "warning",
        }
        argv = cli_argv("sidecar", "--engine-url", pod.engine.url, "--port", str(port))
        argv += ["--host", "127.0.0.1"]
        self._stack.enter_context(
            running_process(argv, env, f"{url}/sidecar/readyz", SIDECAR_START_TIMEOUT_S)
        )
        return url

    def restart(self, name: str, spec: EngineSpec) -> None:
        """Stop engine ``name`` and start ``spec`` in its place (same port, same sidecar)."""
        pod = self.pods[name]
        pod.engine.stop()
        model = ensure_model(spec.preset, root=self.root)
        engine = Engine(spec, pod.engine.python, model, pod.engine.port, pod.engine.log_path.parent)
        self._stack.callback(engine.stop)
        engine.start()
        engine.wait_ready()
        pod.spec, pod.engine = spec, engine

    def describe(self) -> list[str]:
        """One line per pod: where its engine and sidecar listen, and how it was started."""
        lines = [f"predictor {self.predictor_url}"] if self.predictor_url else []
        for pod in self.pods.values():
            s = pod.spec
            lines.append(
                f"{s.name}: engine {pod.engine.url}"
                + (f"  sidecar {pod.sidecar_url}" if pod.sidecar_url else "")
                + f"  model {s.served_name} ({s.preset})  cpus {s.cpus}"
                + f"  max-num-batched-tokens {s.max_num_batched_tokens}"
                + f"  accelerator {pod.accelerator}  log {pod.engine.log_path}"
            )
        return lines
