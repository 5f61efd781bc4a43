"""The requests a load generator sends: prompts, shared prefixes, clients and their caps.

Prompts are slices of a tokenized corpus (the Python standard library's docs and
sources, tokenized once by the served model's own tokenizer in the engine venv), so the
client knows each prompt's token count exactly, as a client that tokenizes does, and can
send the same slice as token ids or as the text it came from. Some requests share a
prefix (one of a few long "system prompts"), which the engine's prefix cache serves.

Each request belongs to a client session whose ``max_tokens`` cap is fixed and drawn as
clients set it: none, or one of a few round numbers. The answer usually ends before the
cap (the model's EOS, see ``make_model.py``); the router never sees how long it will be.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CAPS = (0, 256, 512, 1024, 4096)  # 0: the client sends no max_tokens
CAP_WEIGHTS = (0.3, 0.2, 0.2, 0.15, 0.15)
SHARED_PREFIXES = 8
SHARED_SHARE = 0.35
MIN_TOKENS, MAX_TOKENS = 20, 3500
SESSIONS = 24

_TOKENIZE = r"""
import json, sys, sysconfig, pathlib, numpy as np
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
root = pathlib.Path(sysconfig.get_paths()["stdlib"])
files = sorted(root.glob("*.py"))[1::2] + sorted((root / "email").glob("*.py"))
text = "\n".join(f.read_text(errors="replace") for f in files)
enc = tok.encode(text, add_special_tokens=False)
ends = np.array([e for _, e in enc.offsets], dtype=np.int64)
starts = np.array([s for s, _ in enc.offsets], dtype=np.int64)
np.savez_compressed(sys.argv[2], ids=np.array(enc.ids, dtype=np.int32), starts=starts, ends=ends)
pathlib.Path(sys.argv[3]).write_text(text)
"""


@dataclass(frozen=True)
class Corpus:
    text: str
    ids: np.ndarray
    starts: np.ndarray  # character span of each token in ``text``
    ends: np.ndarray

    @classmethod
    def load(cls, python: Path, model: Path, cache: Path) -> Corpus:
        """Tokenize once per model with its tokenizer (the engine venv has ``tokenizers``)."""
        arrays, text = cache / f"{model.name}-corpus.npz", cache / f"{model.name}-corpus.txt"
        if not arrays.exists():
            cache.mkdir(parents=True, exist_ok=True)
            argv = [str(python), "-c", _TOKENIZE, str(model / "tokenizer.json")]
            subprocess.run([*argv, str(arrays), str(text)], check=True)
        loaded = np.load(arrays)
        return cls(text.read_text(), loaded["ids"], loaded["starts"], loaded["ends"])

    def text_of(self, start: int, stop: int) -> str:
        return self.text[self.starts[start] : self.ends[stop - 1]]


@dataclass(frozen=True)
class Session:
    """A client: its API, how it sends prompts, and its fixed cap."""

    index: int
    chat: bool
    token_ids: bool
    max_tokens: int


@dataclass(frozen=True)
class Prompt:
    session: Session
    ids: list[int]
    text: str
    prefix_id: int  # -1: no shared prefix

    def body(self, model: str) -> tuple[str, dict[str, object]]:
        """(path, JSON body) of the streamed request the client sends."""
        body: dict[str, object] = {
            "model": model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.session.max_tokens:
            body["max_tokens"] = self.session.max_tokens
        if self.session.chat:
            body["messages"] = [{"role": "user", "content": self.text}]
            return "/v1/chat/completions", body
        body["prompt"] = self.ids if self.session.token_ids else self.text
        return "/v1/completions", body


class Workload:
    """Draws prompts: lengths log-uniform in [20, 3500], a third sharing a long prefix."""

    def __init__(self, corpus: Corpus, seed: int) -> None:
        self.corpus = corpus
        self.rng = np.random.default_rng(seed)
        self.sessions = [self._session(i) for i in range(SESSIONS)]
        # Shared prefixes: fixed slices of 300-2,000 tokens.
        self.prefixes = [self._span(int(self.rng.integers(300, 2000))) for _ in range(8)]

    def _session(self, index: int) -> Session:
        """A client. Only chat clients send no cap: vLLM's completions API caps an answer
        at 16 tokens when ``max_tokens`` is absent (OpenAI's default), so completions
        clients set one, as they do in practice."""
        chat = bool(self.rng.random() < 0.3)
        cap = int(self.rng.choice(CAPS, p=CAP_WEIGHTS))
        while cap == 0 and not chat:
            cap = int(self.rng.choice(CAPS, p=CAP_WEIGHTS))
        return Session(index, chat, token_ids=bool(self.rng.random() < 0.3), max_tokens=cap)

    def _span(self, length: int) -> tuple[int, int]:
        start = int(self.rng.integers(0, len(self.corpus.ids) - length))
        return start, start + length

    def _length(self) -> int:
        return int(np.exp(self.rng.uniform(np.log(MIN_TOKENS), np.log(MAX_TOKENS))))

    def next(self) -> Prompt:
        session = self.sessions[int(self.rng.integers(len(self.sessions)))]
        ids_of = self.corpus.ids
        if self.rng.random() < SHARED_SHARE:
            prefix_id = int(self.rng.integers(len(self.prefixes)))
            p_start, p_stop = self.prefixes[prefix_id]
            tail = min(self._length() // 4 + MIN_TOKENS, MAX_TOKENS - (p_stop - p_start))
            t_start, t_stop = self._span(tail)
            ids = [*ids_of[p_start:p_stop].tolist(), *ids_of[t_start:t_stop].tolist()]
            text = self.corpus.text_of(p_start, p_stop) + self.corpus.text_of(t_start, t_stop)
        else:
            prefix_id = -1
            start, stop = self._span(self._length())
            ids = ids_of[start:stop].tolist()
            text = self.corpus.text_of(start, stop)
        return Prompt(session, ids, text, prefix_id)


def describe(workload: Workload) -> str:
    caps = [s.max_tokens for s in workload.sessions]
    return json.dumps({"sessions": len(caps), "caps": caps})
