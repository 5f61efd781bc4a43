"""Installing the product as a user would: a wheel built from the sources, in a fresh venv.

The wheel is built from a copy of the tracked sources (no build folder or in-place
extension of the developer's checkout can leak into it), without build isolation (the
dev extras carry setuptools), so it needs no network. The fresh venv gets the wheel
only; its third-party dependencies are read from the running venv's site-packages through
a ``.pth`` line, which adds them as plain folders: the developer's editable install (a
``.pth`` hook of its own) is not activated, so ``latency_oracle`` comes from the wheel.
Processes run in an empty folder with a clean environment, so nothing beside them (no
``../shared``, no checkout) can be what makes them work.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(out: Path, *, compiler: bool) -> Path:
    """The wheel of the working tree's sources; ``compiler=False`` builds it with CC=false."""
    sources = out / "sources"
    sources.mkdir(parents=True)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        if (ROOT / name).is_file():  # listed but deleted in the working tree: not a source
            (sources / name).parent.mkdir(parents=True, exist_ok=True)
            (sources / name).write_bytes((ROOT / name).read_bytes())
    env = {**os.environ, **({} if compiler else {"CC": "false", "LDSHARED": "false"})}
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "-w", str(out / "dist"), str(sources)], env=env, check=True)
    (wheel,) = (out / "dist").glob("latency_oracle-*.whl")
    return wheel


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@dataclass(frozen=True, slots=True)
class FreshVenv:
    """A venv holding only the wheel; commands run in an empty folder, clean environment."""

    root: Path
    work: Path

    @classmethod
    def with_wheel(cls, root: Path, wheel: Path) -> FreshVenv:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
        venv = cls(root, root.parent / "work")
        venv.work.mkdir()
        pip = [sys.executable, "-m", "pip", "--python", str(venv.python), "install", "-q"]
        subprocess.run([*pip, "--no-deps", "--no-index", str(wheel)], check=True)
        ours = {sysconfig.get_paths()[kind] for kind in ("purelib", "platlib")}
        site = venv.run_python("import sysconfig; print(sysconfig.get_paths()['purelib'])")
        (Path(site) / "dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
        return venv

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def cli(self) -> Path:
        return self.root / "bin" / "latency-oracle"

    def env(self, **extra: str) -> dict[str, str]:
        """No LATENCY_ORACLE_* or PYTHONPATH of the test run: only what is given here."""
        return {
            "PATH": f"{self.root / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.work),
            "LATENCY_ORACLE_STATE_DIR": str(self.work / "state"),
            "LATENCY_ORACLE_MLFLOW_ENABLED": "false",
            **extra,
        }

    def run_python(self, code: str) -> str:
        done = subprocess.run(
            [str(self.python), "-c", code],
            cwd=self.work,
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """``latency-oracle <args>`` in the background, its output in ``log``."""
        with log.open("wb") as sink:
            return subprocess.Popen(
                [str(self.cli), *args],
                cwd=self.work,
                env=self.env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
