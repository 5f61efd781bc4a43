"""Workloads: trace files parse or fail naming the line; load and shifts reshape arrivals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latency_oracle.sim.evaluation.workloads import (
    Shift,
    SyntheticSpec,
    apply_shifts,
    replay,
    synthetic,
)
from latency_oracle.sim.traces import TraceError, azure_trace, read_trace


def _csv(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + body)
    return path


def test_csv_and_jsonl_traces_replay_the_same(tmp_path: Path) -> None:
    csv_path = _csv(tmp_path, "0.5,100,10\n0.0,200,20\n2.0,300,30\n")
    jsonl = tmp_path / "trace.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps({"arrival": a, "input_tokens": i, "output_tokens": o, "session_id": s})
            for a, i, o, s in [(0.5, 100, 10, "x"), (0.0, 200, 20, "y"), (2.0, 300, 30, "x")]
        )
        + "\n\n"
    )
    from_csv, from_jsonl = read_trace(csv_path), read_trace(jsonl)
    assert [(r.arrival, r.input_tokens) for r in from_csv] == [(0.0, 200), (0.5, 100), (2.0, 300)]
    assert [(r.arrival, r.output_tokens) for r in from_jsonl] == [(0.0, 20), (0.5, 10), (2.0, 30)]
    assert [r.session for r in from_jsonl] == ["y", "x", "x"]
    arrivals = replay(from_jsonl, load=2.0, prefix_tokens=64)
    assert [a.request.arrival for a in arrivals] == [0.0, 0.25, 1.0]
    assert arrivals[1].request.block_hashes == arrivals[2].request.block_hashes
    assert len(arrivals[1].request.block_hashes) == 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("0.0,100,10\n1.0,abc,5\n", "trace.csv:3: num_prefill_tokens='abc' is not a number"),
        ("0.0,100,10\n-1.0,100,5\n", "trace.csv:3: arrival time must be a finite number >= 0"),
        ("0.0,100,0\n", "trace.csv:2: input and output tokens must be >= 1"),
        ("0.0,10.5,3\n", "trace.csv:2: num_prefill_tokens='10.5' is not a whole number"),
        ("0.0,nan,3\n", "trace.csv:2: num_prefill_tokens='nan' is not a number"),
    ],
)
def test_bad_csv_rows_name_the_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(TraceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_trace(_csv(tmp_path, body))


def test_bad_jsonl_lines_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"arrival": 0, "input_tokens": 5, "output_tokens": 1}\n{oops\n')
    with pytest.raises(TraceError, match=r"t.jsonl:2: not JSON"):
        read_trace(path)
    path.write_text('{"arrival": 0, "input_tokens": 5}\n')
    with pytest.raises(TraceError, match=r"t.jsonl:1: missing column, expected one of num_decode"):
        read_trace(path)
    path.write_text("[1, 2, 3]\n")
    with pytest.raises(TraceError, match=r"t.jsonl:1: expected a JSON object"):
        read_trace(path)
    path.write_text("\n")
    with pytest.raises(TraceError, match="no requests"):
        read_trace(path)


def test_azure_trace_replays_whole_and_compressed() -> None:
    rows = read_trace(azure_trace())
    assert len(rows) == 8_819
    at_one, at_three = replay(rows, 1.0), replay(rows, 3.0)
    assert at_three[-1].request.arrival == pytest.approx(at_one[-1].request.arrival / 3)


def test_shifts_surge_and_long_prompts_reshape_only_what_follows() -> None:
    arrivals = synthetic(SyntheticSpec("poisson", rate=5.0, duration_s=200, seed=1))
    shifted = apply_shifts(
        arrivals, [Shift("surge", 100.0, factor=2.0), Shift("long-prompts", 120.0)], seed=1
    )
    assert len(shifted) == len(arrivals)
    before = [a for a in arrivals if a.request.arrival < 100]
    assert shifted[: len(before)] == before
    assert shifted[-1].request.arrival == pytest.approx(
        100 + (arrivals[-1].request.arrival - 100) / 2
    )

    def median(values: list[int]) -> int:
        return sorted(values)[len(values) // 2]

    late = [a.request for a in shifted if a.request.arrival >= 120]
    early = [a.request for a in shifted if a.request.arrival < 100]
    assert median([r.prompt_tokens for r in late]) > 1.5 * median([r.prompt_tokens for r in early])
    assert median([r.output_tokens for r in late]) > 5 * median([r.output_tokens for r in early])


def test_synthetic_workloads_are_seeded_and_chat_shares_prefixes() -> None:
    spec = SyntheticSpec("bursty", rate=4.0, duration_s=300, seed=3)
    assert synthetic(spec) == synthetic(spec)
    gaps = [
        b.request.arrival - a.request.arrival
        for a, b in zip(synthetic(spec), synthetic(spec)[1:], strict=False)
    ]
    mean = sum(gaps) / len(gaps)
    cv = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5 / mean
    assert cv > 1.5  # bursty: far more variable than Poisson (CV 1)
    chat = synthetic(SyntheticSpec("chat", rate=4.0, duration_s=120, seed=3))
    by_session: dict[str, list] = {}
    for arrival in chat:
        by_session.setdefault(str(arrival.session), []).append(arrival.request)
    turns = max(by_session.values(), key=len)
    assert len(turns) >= 3
    assert turns[1].block_hashes[:32] == turns[0].block_hashes[:32]
    assert len(turns[-1].block_hashes) > len(turns[0].block_hashes)
    long = synthetic(SyntheticSpec("long-prompt", rate=1.0, duration_s=300, seed=3))
    assert sorted(a.request.prompt_tokens for a in long)[len(long) // 2] > 2_000


def test_a_traces_max_tokens_column_is_used_and_otherwise_each_client_keeps_one_cap(
    tmp_path: Path,
) -> None:
    capped = tmp_path / "capped.csv"
    capped.write_text(
        "arrived_at,num_prefill_tokens,num_decode_tokens,max_tokens\n"
        "0.0,100,50,64\n1.0,100,50,0\n2.0,100,50,\n3.0,100,30,4096\n"
    )
    arrivals = replay(read_trace(capped))
    assert [a.request.max_tokens for a in arrivals] == [64, None, None, 4096]
    assert [a.sent.max_tokens for a in arrivals] == [64, None, None, 4096]
    assert all(not hasattr(a.sent, "output_tokens") for a in arrivals)
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_text(
        "\n".join(
            json.dumps({"arrival": i, "input_tokens": 10, "output_tokens": 5, "session": i % 3})
            for i in range(30)
        )
    )
    by_session: dict[str | None, set[int | None]] = {}
    for arrival in replay(read_trace(sessions), seed=7):
        by_session.setdefault(arrival.session, set()).add(arrival.request.max_tokens)
    assert all(len(caps) == 1 for caps in by_session.values())  # one cap per client
    mix = {a.request.max_tokens for a in replay(read_trace(azure_trace()))}
    assert mix == {None, 256, 512, 1024, 2048, 4096}  # the documented mix, all of it
