"""The CLI's own behaviour: a missing input is named, not a traceback."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from latency_oracle.cli import main


def test_missing_reference_data_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENCY_ORACLE_SHARED_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--quiet", "--out", str(tmp_path / "report")])
    message = str(exit_info.value)
    assert "azure_code_2023.csv" in message and "LATENCY_ORACLE_SHARED_DATA_DIR" in message


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"latency-oracle {version('latency-oracle')}"
