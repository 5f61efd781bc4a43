"""The simulated engine as an OpenAI-compatible HTTP server with vLLM's ``/metrics``.

A thin shell: requests are tokenized deterministically (``sim/engine/openai_text.py``), queued in
the simulated engine, and answered token by token as ``sim/engine/driver.py`` releases
them in real time. Responses follow vLLM's wire format (SSE chunks, a usage chunk when
``stream_options.include_usage`` is set, ``data: [DONE]``). An answer ends where the
simulated model puts its EOS (``AnswerLengths``: drawn from a workload's output lengths
by the prompt) or at the client's cap, whichever comes first (``finish_reason`` "stop" or
"length"); vLLM's ``ignore_eos`` runs it to the cap. As in vLLM, ``max_tokens`` defaults
to 16 for completions and to the context left for chat. A response is a pure function
of the prompt, ``max_tokens`` and model (its id and text are derived from them, and
``created`` is the server's start time), so two identical calls return identical bytes:
a proxy can be checked byte for byte against a direct call.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from latency_oracle.features.schema import MAX_TOKENS
from latency_oracle.sim.engine.driver import EngineDriver, TokenEvent
from latency_oracle.sim.engine.exported_metrics import EngineMetrics
from latency_oracle.sim.engine.openai_text import (
    AnswerLengths,
    block_hashes,
    chat_tokens,
    fingerprint,
    generated_token,
    text_tokens,
)
from latency_oracle.sim.engine.records import FinishedRequest
from latency_oracle.sim.engine.scheduler import Engine

DEFAULT_MAX_TOKENS = 16
DONE = b"data: [DONE]\n\n"


class StreamOptions(BaseModel):
    include_usage: bool = False


class _GenerationBody(BaseModel):
    """Fields both endpoints honour; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    ignore_eos: bool = False
    stream: bool = False
    stream_options: StreamOptions | None = None


class CompletionBody(_GenerationBody):
    prompt: str | list[int] = Field(description="Text, or token ids (one token each).")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = Field(min_length=1, max_length=64)
    content: str


class ChatBody(_GenerationBody):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _error(status: int, message: str, param: str | None) -> Response:
    body = {"object": "error", "message": message, "type": "BadRequestError", "param": param}
    return Response(_json({**body, "code": status}), status, media_type="application/json")


class _Generation:
    """One request's wire format: completion or chat, streamed or not."""

    def __init__(self, chat: bool, digest: str, created: int, model: str, body: Any) -> None:
        self.chat = chat
        self.digest = digest
        self.head = {
            "id": ("chatcmpl-" if chat else "cmpl-") + digest,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": model,
        }
        self.include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(self, index: int, finish: str | None) -> bytes:
        text = generated_token(self.digest, index)
        if self.chat:
            choice = {"index": 0, "delta": {"content": text}, "logprobs": None}
            choice["finish_reason"] = finish
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            choice["stop_reason"] = None
        return b"data: " + _json({**self.head, "choices": [choice]}) + b"\n\n"

    def role_chunk(self) -> bytes:
        delta = {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return b"data: " + _json({**self.head, "choices": [choice]}) + b"\n\n"

    def usage_chunk(self, usage: dict[str, Any]) -> bytes:
        return b"data: " + _json({**self.head, "choices": [], "usage": usage}) + b"\n\n"

    def full(self, tokens: int, finish: str, usage: dict[str, Any]) -> bytes:
        text = "".join(generated_token(self.digest, i) for i in range(tokens))
        if self.chat:
            message = {"role": "assistant", "content": text}
            choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None}
            choice["finish_reason"] = finish
            head = {**self.head, "object": "chat.completion"}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            choice["stop_reason"] = None
            head = self.head
        return _json({**head, "choices": [choice], "usage": usage})


def create_sim_app(
    engine: Engine,
    model_name: str,
    speed: float = 1.0,
    prompt_tokens_details: bool = False,
    answers: AnswerLengths | None = None,
) -> FastAPI:
    """The HTTP engine around ``engine``, released in real time scaled by ``speed``.

    ``prompt_tokens_details`` reports each request's prefix-cache hits in its usage
    (``prompt_tokens_details.cached_tokens``), as vLLM does with
    ``--enable-prompt-tokens-details``: in the final usage only, once the request is done.
    ``answers`` says where the model ends each answer (default: the Azure code trace's
    output lengths).
    """
    answers = answers or default_answer_lengths()
    driver = EngineDriver(engine, speed)
    metrics = EngineMetrics(engine, model_name)
    driver.finished_listeners.append(metrics.record)
    created = int(time.time())
    block = engine.config.block_size

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        driver.start()
        yield
        await driver.stop()

    app = FastAPI(title="Latency Oracle simulated engine", lifespan=lifespan)
    app.state.driver = driver

    async def generate(
        chat: bool, body: _GenerationBody, tokens: list[str], max_tokens: int | None
    ) -> Response:
        if body.model is not None and body.model != model_name:
            return _error(404, f"The model `{body.model}` does not exist.", "model")
        if not tokens:
            return _error(400, "the prompt has no tokens", "messages" if chat else "prompt")
        if max_tokens is None and not chat:
            max_tokens = DEFAULT_MAX_TOKENS
        limit = max_tokens or max(engine.max_sequence_tokens - len(tokens), 1)
        answer = limit if body.ignore_eos else answers.of(model_name, tokens)
        digest = fingerprint([model_name, tokens, max_tokens, chat])
        try:
            request_id, queue = driver.submit(
                len(tokens), answer, max_tokens, block_hashes(tokens, block)
            )
        except ValueError as exc:
            return _error(400, str(exc), "max_tokens")
        wire = _Generation(chat, digest, created, model_name, body)
        finish = "stop" if answer < limit else "length"
        usage = _Usage(len(tokens), min(answer, limit), finish, prompt_tokens_details)
        if body.stream:
            stream = _stream(wire, queue, usage, lambda: driver.abort(request_id))
            return StreamingResponse(stream, media_type="text/event-stream")
        try:
            finished = await _finished(queue)
        finally:
            driver.abort(request_id)
        return Response(
            wire.full(usage.completion_tokens, finish, usage.report(finished)),
            media_type="application/json",
        )

    @app.post("/v1/completions")
    async def completions(body: CompletionBody) -> Response:
        prompt = body.prompt
        tokens = text_tokens(prompt) if isinstance(prompt, str) else [str(t) for t in prompt]
        return await generate(False, body, tokens, body.max_tokens)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatBody) -> Response:
        tokens = chat_tokens([(m.role, m.content) for m in body.messages])
        return await generate(True, body, tokens, body.max_completion_tokens or body.max_tokens)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": model_name, "object": "model", "created": created, "owned_by": "sim"}
        card["max_model_len"] = engine.max_sequence_tokens
        return {"object": "list", "data": [card]}

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def default_answer_lengths() -> AnswerLengths:
    """Answers as long as the Azure code trace's outputs (the package's own data)."""
    from latency_oracle.sim.traces import azure_trace, read_trace

    return AnswerLengths(row.output_tokens for row in read_trace(azure_trace()))


@dataclass(frozen=True, slots=True)
class _Usage:
    """A request's usage report, with its prefix-cache hits when details are on."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS) or "length" (the cap or the context limit)
    details: bool

    def report(self, finished: FinishedRequest | None) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.details and finished is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": finished.cached_tokens}
        return usage


async def _finished(queue: asyncio.Queue[TokenEvent]) -> FinishedRequest:
    """The request's summary, after whatever tokens are still queued before it."""
    while (event := await queue.get()).finished is None:
        pass
    return event.finished


async def _stream(
    wire: _Generation,
    queue: asyncio.Queue[TokenEvent],
    usage: _Usage,
    abort: Callable[[], None],
) -> AsyncIterator[bytes]:
    """SSE chunks as tokens are released; an early exit (client gone) aborts the request."""
    sent = 0
    tokens = usage.completion_tokens
    try:
        while sent < tokens:
            event = await queue.get()
            if event.finished is not None:
                break
            if wire.chat and sent == 0:
                yield wire.role_chunk()
            sent += 1
            yield wire.chunk(sent - 1, usage.finish_reason if sent == tokens else None)
        if wire.include_usage:
            finished = await _finished(queue) if usage.details else None
            yield wire.usage_chunk(usage.report(finished))
        yield DONE
    finally:
        abort()
