"""The pre-commit configuration is valid and runs the checks CI runs.

pre-commit itself is not a dependency (contributors install it if they want the hooks),
so this reads the file against pre-commit's documented schema: local hooks of the
``system`` language, run from the project's venv, at hook stages pre-commit knows.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
HOOKS = {hook["id"]: hook for repo in CONFIG["repos"] for hook in repo["hooks"]}
# https://pre-commit.com/#pre-commit-configyaml---hooks and ---top-level
HOOK_KEYS = {
    "id", "name", "entry", "language", "files", "exclude", "types", "types_or",
    "exclude_types", "always_run", "fail_fast", "verbose", "pass_filenames",
    "require_serial", "description", "language_version", "minimum_pre_commit_version",
    "args", "stages", "additional_dependencies", "alias", "log_file",
}  # fmt: skip
STAGES = {
    "commit-msg", "post-checkout", "post-commit", "post-merge", "post-rewrite",
    "pre-commit", "pre-merge-commit", "pre-push", "pre-rebase", "prepare-commit-msg", "manual",
}  # fmt: skip


def test_config_follows_pre_commits_schema() -> None:
    assert set(CONFIG) <= {"repos", "default_install_hook_types", "default_stages", "exclude"}
    assert set(CONFIG.get("default_install_hook_types", [])) <= STAGES
    for repo in CONFIG["repos"]:
        assert repo["repo"] == "local"  # nothing downloaded: the venv's own tools
        for hook in repo["hooks"]:
            assert set(hook) <= HOOK_KEYS, hook["id"]
            assert {"id", "name", "entry", "language"} <= set(hook), hook["id"]
            assert hook["language"] == "system"
            assert set(hook.get("stages", [])) <= STAGES, hook["id"]


def test_hooks_run_the_venvs_tools() -> None:
    for hook in HOOKS.values():
        tool = hook["entry"].split()[0]
        assert tool.startswith(".venv/bin/"), tool
        assert (Path(sys.executable).parent / Path(tool).name).exists(), tool


def test_ruff_hooks_check_what_ci_checks() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/ruff check ." in ci and ".venv/bin/ruff format --check ." in ci
    assert HOOKS["ruff-check"]["entry"].startswith(".venv/bin/ruff check")
    assert HOOKS["ruff-format"]["entry"].startswith(".venv/bin/ruff format")


def test_fast_tests_select_by_a_registered_marker() -> None:
    entry = HOOKS["fast-tests"]["entry"]
    assert entry.startswith(".venv/bin/pytest") and HOOKS["fast-tests"]["pass_filenames"] is False
    expression = re.search(r'-m "([^"]+)"', entry)
    assert expression is not None
    pytest_config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    registered = {m.split(":")[0] for m in pytest_config["ini_options"]["markers"]}
    used = set(re.findall(r"\b(?!not\b|and\b|or\b)\w+", expression.group(1)))
    assert used and used <= registered, used
