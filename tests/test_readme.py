"""The README's promises: short, every figure next to its command, commands that run as written.

A *figure* is a number with a unit or a ratio in the README's prose (code blocks and code
spans aside): `45%`, `0.21x`, `2.5 times`, `5.3 ms`, `12 s`, `6,039 obs/s`, `73 MiB`, or a
count of a whole, `26 of 27`, `9 in 10`. Each figure's *block* (a paragraph, a list item,
or one table row) must name a command in a code span: a benchmark script (`bench/....py`,
run by `python` or not) or a `latency-oracle` subcommand. Every command the README names,
in prose or in code blocks, must exist as written: the script and each flag it is given,
the subcommand and its arguments (parsed by the CLI's own parser).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from latency_oracle.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_BYTES = 15_000

# Units a measured number carries, ratios among them (x, the multiplication sign, times).
_UNITS = (
    "%|x\\b|\u00d7|times\\b|ms\\b|us\\b|\u00b5s\\b|s\\b|seconds?\\b|min\\b|minutes?\\b"
    "|MiB\\b|GiB\\b|MB\\b|GB\\b|KB\\b|req/s|obs/s"
)
FIGURE = re.compile(rf"(?<![\w.])\d[\d,]*(?:\.\d+)?\s?(?:{_UNITS})|\b\d[\d,]* (?:of|in) \d[\d,]*\b")
CODE_SPAN = re.compile(r"`([^`]+)`")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
BENCH = re.compile(r"^(?:\.venv/bin/)?(?:python3? )?(bench/[\w/]+\.py)((?: [^&|;#]*)?)")
CLI = re.compile(r"(?:^|[\s/])latency-oracle ([^&|;#`\n]+)")


def blocks(markdown: str) -> list[str]:
    """Paragraphs, list items and table rows of the prose, fenced code blocks left out."""
    found: list[str] = []
    current: list[str] = []
    for line in FENCE.sub("", markdown).split("\n"):
        starts_item = re.match(r"\s*(?:[-*]|\d+\.) ", line) is not None
        if line.startswith("|") or line.startswith("#") or not line.strip() or starts_item:
            if current:
                found.append(" ".join(current))
            current = []
            if line.startswith("|") or line.startswith("#"):
                found.append(line)
                continue
        if line.strip():
            current.append(line.strip())
    if current:
        found.append(" ".join(current))
    return found


def figures(block: str) -> list[str]:
    return FIGURE.findall(CODE_SPAN.sub("", block))


def commands(block: str) -> list[str]:
    """The code spans of ``block`` that are commands: a bench script or the CLI."""
    return [
        span for span in CODE_SPAN.findall(block) if BENCH.match(span) or CLI.search(" " + span)
    ]


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size <= MAX_BYTES, f"README.md is {size} bytes; move detail into docs/"


def test_every_figure_names_the_command_that_reproduces_it() -> None:
    bare = [
        (figures(block), block[:120])
        for block in blocks(README.read_text())
        if figures(block) and not commands(block)
    ]
    assert not bare, bare


def test_the_readme_states_its_three_figures() -> None:
    """The claims table keeps three rows, each a figure with its command."""
    text = README.read_text()
    claims = text[text.index("## Why use it") :].split("\n## ", 1)[0]
    rows = [line for line in claims.split("\n") if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 3, rows  # header + three figures
    for row in rows[1:]:
        assert figures(row) and commands(row), row


def _all_invocations(markdown: str) -> list[str]:
    """Every bench script or CLI call, from code spans and fenced blocks alike."""
    spans = CODE_SPAN.findall(FENCE.sub("", markdown))
    fenced = [line for block in FENCE.findall(markdown) for line in block.split("\n")]
    return [text for text in spans + fenced if BENCH.match(text) or CLI.search(" " + text)]


@pytest.mark.parametrize("invocation", _all_invocations(README.read_text()))
def test_every_command_exists_as_written(invocation: str) -> None:
    bench = BENCH.match(invocation)
    if bench:
        script = ROOT / bench.group(1)
        assert script.is_file(), script
        source = script.read_text()
        for flag in re.findall(r"(--[\w-]+)", bench.group(2)):
            assert f'"{flag}"' in source, f"{script.name} takes no {flag}"
        return
    for cli in CLI.finditer(" " + invocation):
        argv = cli.group(1).split()
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse's way of refusing
            pytest.fail(f"latency-oracle {' '.join(argv)}: refused ({exc})")


def test_readme_links_point_at_files_that_exist() -> None:
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    relative = [t for t in targets if "://" not in t]
    assert relative
    missing = [t for t in relative if not (ROOT / t).exists()]
    assert not missing, missing


def test_ci_runs_the_readme_test_command() -> None:
    readme = README.read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "```bash\n.venv/bin/pytest\n```" in readme
    assert ci.rstrip().endswith(".venv/bin/pytest")


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("p90 TTFT 45% lower", ["45%"]),
        ("p50 5.3-5.9 ms against 24.0-28.0 ms (0.21-0.23x)", ["5.9 ms", "28.0 ms", "0.23x"]),
        (
            "in 26 of 27 windows, 2.5 times the rate, 6,039 obs/s",
            ["26 of 27", "2.5 times", "6,039 obs/s"],
        ),
        ("p90 and p99, Python 3.11+, port 8080, `--speed 4` replays 4x", ["4x"]),
        ("H100, llama-70b, 127.0.0.1:6379, 10,000 candidates", []),
    ],
)
def test_what_counts_as_a_figure(text: str, found: list[str]) -> None:
    assert figures(text) == found
